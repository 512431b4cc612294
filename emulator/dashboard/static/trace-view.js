/* Renders one user's trace. Self-contained (no other script needed): the exported HTML inlines it. */
"use strict";

const SegjetTrace = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const KIND_LABEL = {
    "segment": "Segment",
    "engage": "Engage",
    "delivery": "Delivery",
    "mailjet-call": "Mailjet API",
    "email": "Email",
    "email-event": "Email event",
    "segment-email-event": "Segment",
  };

  function verdict(step) {
    if (!step.contract) return el("span", { class: "badge" }, "no contract");
    const broken = (step.violations || []).length;
    return broken
      ? el("span", { class: "badge bad" }, `✗ ${step.contract}: ${broken} violation${broken > 1 ? "s" : ""}`)
      : el("span", { class: "badge ok" }, `✓ ${step.contract}`);
  }

  function stepNode(step, index) {
    const violations = step.violations || [];
    const stored = step.storedViolations || [];
    return el("li", { class: `svc-${step.service || "segment"}` },
      el("article", { class: "step", "aria-label": `Step ${index + 1}: ${step.title}` },
        el("div", { class: "step-head" },
          el("span", { class: "badge info" }, KIND_LABEL[step.kind] || step.kind),
          el("span", { class: "step-title" }, step.title),
          el("span", { class: "step-time" }, step.at ? step.at.replace("T", " ") : "time unknown"),
          verdict(step)),
        el("div", { class: "step-summary" }, step.summary || ""),
        violations.length
          ? el("ul", { class: "violations" }, violations.map((v) => el("li", {}, `${v.path}: ${v.message} (${v.rule})`)))
          : null,
        stored.length
          ? el("ul", { class: "violations" }, stored.map((v) => el("li", {}, `recorded by Segment: ${v.description || v.field}`)))
          : null,
        el("details", {}, el("summary", {}, "Payload"), el("pre", {}, JSON.stringify(step.payload, null, 2)))));
  }

  function contactNode(contact) {
    if (!contact) return el("p", { class: "empty" }, "No Mailjet contact for this user.");
    const lists = (contact.Lists || []).map((s) =>
      `${s.ListName || "list"} (ID ${s.ListID}): ${s.IsUnsubscribed ? "unsubscribed" : "subscribed"}`);
    const props = Object.entries(contact.Properties || {}).map(([k, v]) => el("span", { class: "chip" }, `${k}=${v}`));
    return el("div", { class: "card", "aria-label": "Mailjet contact state" },
      el("h3", {}, `Mailjet contact ${contact.Email} (ID ${contact.ID})`),
      el("p", {}, lists.length ? lists.join(" · ") : "in no list"),
      el("div", { class: "chips" }, props.length ? props : el("span", { class: "empty" }, "no properties")));
  }

  /** Which sources the trace read only in part, or not at all: without it a step it never read
   *  (older than the newest records it reads) looked like a hop lost on the way. */
  function partialNote(data) {
    const cut = data.truncatedSources || [];
    const dropped = data.droppedSources || [];
    const unread = data.unreadSources || [];
    if (!cut.length && !dropped.length && !unread.length) return null;
    return el("div", { class: "alert warn", role: "note", "aria-label": "Partial trace" },
      el("strong", {}, "Partial trace. "),
      cut.length ? `Only the newest ${data.readLimit ? data.readLimit.toLocaleString("en") + " " : ""}records of ${cut.join(", ")} were read: older steps of this user may be missing from it, not lost. ` : null,
      dropped.length ? `${dropped.join(", ")} dropped their oldest records (the store is full): older steps of this user may be gone from it. ` : null,
      unread.length ? `Could not read ${unread.join(", ")}: their steps are missing.` : null);
  }

  /** Fill `container` with the summary, the timeline and the current contact state. */
  function render(container, data) {
    const steps = data.steps || [];
    const broken = steps.filter((s) => (s.violations || []).length).length;
    // No partial note is null, which replaceChildren would write as the text "null".
    container.replaceChildren(...[
      el("p", { class: "lede" },
        `userId ${data.userId || "unknown"} · email ${data.email || "unknown"} · ${steps.length} steps · `,
        broken ? el("span", { class: "badge bad" }, `${broken} with contract violations`) : el("span", { class: "badge ok" }, "every checked payload meets its contract")),
      partialNote(data),
      steps.length
        ? el("ol", { class: "timeline", "aria-label": "Journey" }, steps.map(stepNode))
        : el("p", { class: "empty" }, "Nothing recorded for this user yet."),
      el("h2", {}, "Contact state now"),
      contactNode(data.contact)].filter((node) => node !== null));
  }

  return { render };
})();
