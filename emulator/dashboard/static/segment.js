/* The fake Segment's pages: Overview, Debugger, Destinations, Event Delivery, Engage, Trace. */
"use strict";

(() => {
  const { h, fill, api, pretty, time, dateTime, badge, table, say, copy, currentView, subscribe, onFeedState, isFeedDown, debounce, throttle, fail, keepFocus, withToken, faultsPanel, capNote, newestOnly } = Segjet;
  const main = document.getElementById("view");
  const CAP = 500;
  let onMessage = () => {};   // the current view's handler for each message the SSE feed pushes
  // The current view's catch-up each time the feed connects (what was stored before it listened is
  // not on it): the views that refresh on any message refresh; the Debugger re-reads the latest messages.
  let onReconnect = () => onMessage();
  // The current view's answer to a reset (or a restarted server): what it shows may be gone. The
  // views that read everything again on a message do so; the Debugger starts its list over.
  let onReset = () => onReconnect();
  let info = { sources: [], mailjet_url: null };

  const alertRegion = () => h("div", { class: "alert bad", role: "alert" });

  // -------------------------------------------------------------------------------- helpers
  /** A field as the sender wrote it: a discarded message keeps ids and names of any JSON type, which
   *  String() would show as "[object Object]" (and h() would flatten an array into "ab"). */
  const text = (value) => typeof value === "string" ? value : value === null || value === undefined ? "" : JSON.stringify(value);

  function summary(m) {
    const traits = m.traits || {};
    switch (m.type) {
      case "identify": return text(traits.email || traits.name || "Identify");
      case "track": return text(m.event || "(no event)");
      case "page": case "screen": return text(m.name || m.type);
      case "group": return `group ${text(m.groupId)}`;
      case "alias": return `${text(m.previousId)} → ${text(m.userId)}`;
      default: return text(m.type || "not a message");
    }
  }

  /** A stored message as it was sent: the keys the events API adds out, the call's own fields of
   *  those names (`call_fields`) back in. */
  function asSent(m) {
    const added = ["source", "status", "discard_reason", "violations", "call_fields"];
    return { ...Object.fromEntries(Object.entries(m).filter(([k]) => !added.includes(k))), ...(m.call_fields || {}) };
  }

  function prettyCall(m) {
    const who = m.userId ? JSON.stringify(m.userId) : JSON.stringify(m.anonymousId ?? null);
    const printers = {
      identify: () => [who, pretty(m.traits || {})],
      track: () => [who, JSON.stringify(m.event), pretty(m.properties || {})],
      page: () => [who, JSON.stringify(m.category ?? null), JSON.stringify(m.name ?? null), pretty(m.properties || {})],
      screen: () => [who, JSON.stringify(m.name ?? null), pretty(m.properties || {})],
      group: () => [who, JSON.stringify(m.groupId), pretty(m.traits || {})],
      alias: () => [JSON.stringify(m.previousId), JSON.stringify(m.userId)],
    };
    // Own keys only: the type is the sender's to write, and "constructor" would find Object().
    const args = typeof m.type === "string" && Object.hasOwn(printers, m.type) ? printers[m.type] : null;
    if (!args) return pretty(m);
    const context = m.context ? `\n\n// context\n${pretty(m.context)}` : "";
    return `analytics.${m.type}(${args().join(", ")})${context}`;
  }

  // A message's identity: its messageId, status and receivedAt, and a digest of all of it, since a
  // client that reuses a messageId sends several in one batch (one receivedAt), each discarded.
  const keys = new WeakMap();
  function keyOf(m) {
    let key = keys.get(m);
    if (key === undefined) {
      const json = JSON.stringify(m);
      let digest = 0x811c9dc5;   // FNV-1a
      for (let i = 0; i < json.length; i++) digest = Math.imul(digest ^ json.charCodeAt(i), 0x01000193);
      key = `${text(m.messageId)}|${m.status}|${m.receivedAt}|${(digest >>> 0).toString(36)}`;
      keys.set(m, key);
    }
    return key;
  }

  function statusBadges(m) {
    const out = [];
    if (m.status === "discarded") out.push(badge(`discarded: ${m.discard_reason}`, "bad"));
    if ((m.violations || []).length) out.push(badge(`${m.violations.length} violation${m.violations.length > 1 ? "s" : ""}`, "warn"));
    if (!out.length) out.push(badge("accepted", "ok"));
    return out;
  }

  // -------------------------------------------------------------------------------- Overview
  // The newest build of the page: under traffic it reads itself again each second, and a read
  // answering after a newer one put the older page back (a done step "to do", for good once idle).
  const overviewRead = newestOnly();
  async function viewOverview() {
    const current = overviewRead();
    const errors = alertRegion();
    // A read that fails is said (a missing control token, a server gone), not shown as "to do".
    const failed = (fallback) => (error) => { fail(errors, error); return fallback; };
    // The steps come from the server's own record (GET /_emulator/dashboard/overview), not from the
    // newest messages: 500 more after the identify, and a step done went back to "to do".
    const [destination, events, steps] = await Promise.all([
      api("GET", "/_emulator/destinations/mailjet").catch(failed(null)),
      api("GET", `/_emulator/events?limit=${CAP}`).catch(failed({ events: [] })),
      api("GET", "/_emulator/dashboard/overview").catch(failed({})),
    ]);
    if (!current()) return;
    const mj = info.mailjet_url;
    const source = info.sources[0] || {};
    const step = (done, title, ...body) => h("li", { class: "card" },
      h("h3", {}, done ? badge("done", "ok") : badge("to do", "warn"), " ", title), ...body);
    keepFocus(main, () => fill(main, 
      h("h1", {}, "Getting started"),
      h("p", { class: "lede" }, "Walk the Segment → Mailjet setup with no real accounts. Every button calls the same control API a script would."),
      errors,
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "stat-label" }, "Source"), h("div", { class: "stat" }, source.name || "—"),
          h("div", { class: "row" }, h("code", {}, source.writeKey || ""),
            h("button", { class: "small", type: "button", "aria-label": "Copy write key", onclick: async () => { await copy(source.writeKey || ""); say("Write key copied"); } }, "Copy"))),
        h("div", { class: "card" }, h("div", { class: "stat-label" }, "Messages shown in the Debugger"), h("div", { class: "stat" }, String(events.events.length))),
        h("div", { class: "card" }, h("div", { class: "stat-label" }, "Mailjet destination"),
          h("div", { class: "stat" }, destination ? (destination.enabled ? "Enabled" : "Disabled") : "—"))),
      h("h2", {}, "Steps"),
      h("ol", { class: "steps", style: "padding-left:1.2rem" },
        step(destination && destination.settings && destination.settings.apiKey, "Copy the Segment authentication key in Mailjet",
          h("p", {}, "Mailjet → Account → ", mj ? h("a", { href: withToken(`${mj}/app-connections`) }, "App Connections → Segment") : "App Connections", ": copy the key and pick a contact list.")),
        step(destination && destination.settings && destination.settings.apiKey, "Configure the Mailjet destination",
          h("p", {}, h("a", { href: "/destinations" }, "Destinations"), ": paste the key and the list ID, Save.")),
        step(destination && destination.enabled, "Enable the destination",
          h("p", {}, "Switch on ", h("a", { href: "/destinations" }, "Enable Destination"), ".")),
        step(steps.identify_accepted, "Send an identify",
          h("pre", {}, `curl -s ${location.origin}/v1/identify -u ${source.writeKey || "WRITE_KEY"}: \\\n  -H 'Content-Type: application/json' \\\n  -d '{"userId": "u1", "traits": {"email": "ada@example.com"}}'`),
          h("p", {}, "Watch it arrive in the ", h("a", { href: "/debugger" }, "Debugger"), ", then its ", h("a", { href: "/deliveries" }, "delivery"), ".")),
        step(steps.email_event_accepted, "Get email events back",
          h("p", {}, "In Mailjet's App Connections paste the write key and switch events on; send an email and open it from ",
            mj ? h("a", { href: withToken(`${mj}/messages`) }, "Messages") : "Messages", "."))),
      faultsPanel()));
    // Throttled, not debounced: steady traffic would starve a debounce, and the page never change.
    // Once a second at most, as each time the page is rebuilt (keyboard focus is kept).
    onMessage = throttle(viewOverview, 1000);
  }

  // -------------------------------------------------------------------------------- Debugger
  async function viewDebugger() {
    const state = { messages: [], keys: new Set(), paused: false, pending: [], selected: null, mode: "pretty" };
    const errors = alertRegion();
    const sourceSelect = h("select", { id: "dbg-source" },
      h("option", { value: "" }, "All sources"),
      info.sources.map((s) => h("option", { value: s.id }, `${s.name} (${s.writeKey})`)));
    const search = h("input", { id: "dbg-search", type: "search", placeholder: "type, event, userId, email…" });
    const liveButton = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
    const indicator = h("span", { class: "hint", "aria-live": "polite" });
    const list = h("ol", { class: "events", "aria-label": "Events" });
    const detail = h("section", { class: "card detail", "aria-label": "Event details" },
      h("h2", {}, "Event details"), h("p", { class: "empty" }, "Select an event to see it."));

    fill(main, 
      h("h1", {}, "Debugger"),
      h("p", { class: "lede" }, `The last ${CAP} messages this workspace received, newest first. Discarded messages and contract violations are marked.`),
      errors,
      h("div", { class: "toolbar" },
        h("div", { class: "field" }, h("label", { for: "dbg-source" }, "Source"), sourceSelect),
        h("div", { class: "field" }, h("label", { for: "dbg-search" }, "Search"), search),
        h("div", { class: "row" }, liveButton, indicator)),
      h("div", { class: "debugger" }, list, detail));

    function add(messages) {
      for (const m of messages) {
        const key = keyOf(m);
        if (state.keys.has(key)) continue;
        state.keys.add(key);
        state.messages.push(m);
      }
      state.messages.sort((a, b) => String(a.receivedAt).localeCompare(String(b.receivedAt)));
      while (state.messages.length > CAP) state.keys.delete(keyOf(state.messages.shift()));
    }

    function visible() {
      const needle = search.value.trim().toLowerCase();
      const source = sourceSelect.value;
      return state.messages.filter((m) =>
        (!source || (m.source && m.source.id === source)) &&
        (!needle || JSON.stringify(m).toLowerCase().includes(needle))).reverse();
    }

    function renderList() {
      // The list is rebuilt (the live feed does it often): keep keyboard focus on the row that had it.
      const focused = list.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
      const shown = visible();
      fill(indicator, 
        h("span", { class: "live-dot", "aria-hidden": "true" }),
        state.paused ? `Paused · ${state.pending.length} new` : isFeedDown() ? "Reconnecting…" : "Live",
        ` · showing ${shown.length} of ${state.messages.length}`);
      indicator.parentElement.classList.toggle("paused", state.paused);
      fill(list, ...(shown.length ? shown.map((m) => {
        const key = keyOf(m);
        return h("li", {}, h("button", {
          type: "button",
          class: `event-row ${m.status === "discarded" ? "discarded" : ""}`,
          dataset: { key },
          "aria-current": key === state.selected ? "true" : "false",
          onclick: () => { state.selected = key; renderList(); renderDetail(m); },
        },
          h("span", { class: "time" }, time(m.receivedAt)),
          h("span", { class: "type-cell" }, badge(text(m.type || "?"), "type")),
          h("span", { class: "what" }, summary(m), h("br"), h("span", { class: "who" }, text(m.userId || m.anonymousId))),
          h("span", {}, statusBadges(m))));
      }) : [h("li", { class: "empty", style: "padding:0.8rem" },
        state.messages.length ? "No message matches the search or source." : "No messages yet. Send one with analytics-python or curl.")]));
      if (focused !== undefined) {
        const again = [...list.querySelectorAll(".event-row")].find((row) => row.dataset.key === focused);
        if (again) again.focus();
      }
    }

    function renderDetail(m) {
      const body = h("pre", { "aria-label": state.mode === "pretty" ? "Pretty view" : "Raw view" },
        state.mode === "pretty" ? prettyCall(asSent(m)) : pretty(asSent(m)));
      const tab = (mode, label) => h("button", {
        type: "button", class: "small", "aria-pressed": String(state.mode === mode),
        onclick: () => { state.mode = mode; renderDetail(m); },
      }, label);
      // The trace matches string ids only: no link for an id of another JSON type.
      const person = [m.userId, m.anonymousId].find((id) => typeof id === "string" && id);
      fill(detail, 
        h("h2", {}, "Event details"),
        h("dl", { class: "kv" },
          h("dt", {}, "Type"), h("dd", {}, text(m.type || "?")),
          m.event ? [h("dt", {}, "Event"), h("dd", {}, text(m.event))] : null,
          h("dt", {}, "userId"), h("dd", {}, text(m.userId || "—")),
          h("dt", {}, "anonymousId"), h("dd", {}, text(m.anonymousId || "—")),
          h("dt", {}, "messageId"), h("dd", { class: "mono" }, text(m.messageId)),
          h("dt", {}, "Source"), h("dd", {}, m.source ? (m.source.name || `unknown key ${m.source.writeKey}`) : "—"),
          h("dt", {}, "Received"), h("dd", {}, dateTime(m.receivedAt)),
          h("dt", {}, "Status"), h("dd", {}, statusBadges(m))),
        m.status === "discarded" ? h("div", { class: "alert bad" }, `Discarded: ${m.discard_reason}`) : null,
        (m.violations || []).length ? h("div", { class: "alert bad" }, h("strong", {}, "Contract violations"),
          h("ul", { class: "violations" }, m.violations.map((v) => h("li", {}, `${v.type}: ${v.description}`)))) : null,
        h("div", { class: "tabs", role: "group", "aria-label": "View" }, tab("pretty", "Pretty"), tab("raw", "Raw")),
        body,
        person ? h("p", {}, h("a", { href: `/trace?user=${encodeURIComponent(person)}` }, "Trace this user across both services →")) : null);
    }

    liveButton.addEventListener("click", () => {
      state.paused = !state.paused;
      liveButton.setAttribute("aria-pressed", String(state.paused));
      if (!state.paused) { add(state.pending); state.pending = []; }
      renderList();
    });
    search.addEventListener("input", debounce(renderList, 120));
    sourceSelect.addEventListener("change", renderList);
    onFeedState(() => renderList());

    const receive = (messages) => {
      // What is not shown yet and, once the list is full, no older than its oldest row: one trimmed
      // off the end is no news, though the discarded-message poll answers it again every 3 s.
      const floor = state.messages.length >= CAP ? String(state.messages[0].receivedAt) : null;
      const fresh = messages.filter((m) =>
        !state.keys.has(keyOf(m)) && (floor === null || String(m.receivedAt).localeCompare(floor) >= 0));
      if (state.paused) {
        // The discarded-message poll answers the same messages every 3 s: queue each one once.
        const waiting = new Set(state.pending.map(keyOf));
        const before = state.pending.length;
        for (const m of fresh) {
          const key = keyOf(m);
          if (!waiting.has(key)) { waiting.add(key); state.pending.push(m); }
        }
        if (state.pending.length === before) return;
      } else {
        if (!fresh.length) return;   // nothing new: a rebuilt list would only lose focus and selection
        add(fresh);
      }
      renderList();
    };
    onMessage = (m) => receive([m]);
    // Counts resets: a read asked before one and answered after it would bring back what it removed.
    let generation = 0;
    const fetchLatest = async () => (await api("GET", `/_emulator/events?limit=${CAP}`)).events;
    const receiveRead = async (read) => {
      const asked = generation;
      const messages = await read();
      if (asked === generation) receive(messages.filter((m) => !state.keys.has(keyOf(m))));
    };
    onReconnect = async () => {
      try { await receiveRead(fetchLatest); }
      catch { /* the server may be restarting; the next reconnect tries again */ }
    };
    onReset = async () => {
      // The server forgot every message listed (a reset, a snapshot imported, a restart without
      // --data-dir): the list starts over from what it holds now, and a selection of a gone message goes.
      generation += 1;
      Object.assign(state, { messages: [], keys: new Set(), pending: [], selected: null });
      fill(detail, h("h2", {}, "Event details"), h("p", { class: "empty" }, "Select an event to see it."));
      renderList();
      await onReconnect();
    };
    try {
      add(await fetchLatest());
    } catch (error) { fail(errors, error); }
    renderList();
    // The backend's listeners see accepted messages only; discarded ones are picked up by polling.
    // The newest CAP of them, as many as the list holds: with 100, a burst of more discards between
    // two polls left the older ones out for good, though newer than every row listed.
    setInterval(async () => {
      try { await receiveRead(async () => (await api("GET", `/_emulator/events?status=discarded&limit=${CAP}`)).events); }
      catch { /* the server may be restarting */ }
    }, 3000);
  }

  // -------------------------------------------------------------------------------- Destinations
  async function viewDestinations() {
    const errors = alertRegion();
    const saved = h("div", { class: "alert ok", role: "status" });
    const apiKey = h("input", { id: "dest-api-key", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": "dest-api-key-hint" });
    const listId = h("input", { id: "dest-list-id", type: "text", inputmode: "numeric", value: "1", "aria-describedby": "dest-list-id-hint" });
    const enabled = h("input", { id: "dest-enabled", type: "checkbox", role: "switch" });
    const pill = h("span");
    // What the server held when last read. Another tab, a script or a restarted server changes it
    // under the page: a field the user has not edited follows it, and Save sends only the fields
    // edited here, so a stale value shown is never written back over a newer one.
    let loaded = null;
    const shown = (value) => value || "";
    const edited = (input, value) => input.value.trim() !== shown(value);

    function show(config, force = false) {
      const before = loaded ? loaded.settings : {};
      if (force || !edited(apiKey, before.apiKey)) apiKey.value = shown(config.settings.apiKey);
      if (force || !edited(listId, before.listId || "1")) listId.value = config.settings.listId || "1";
      enabled.checked = !!config.enabled;
      fill(pill, config.enabled ? badge("Enabled", "ok") : badge("Disabled"));
      loaded = config;
    }

    // The 2 s poll in flight when the switch was turned (or Save pressed) answered after it, and
    // turned the switch back until the next poll. A write's answer is always shown: it is the
    // server's state after it, and makes every read asked before it stale.
    const newest = newestOnly();
    async function reread() {
      const current = newest();
      try {
        const config = await api("GET", "/_emulator/destinations/mailjet");
        if (current()) show(config);
      } catch { /* the banner says when the server is gone */ }
    }

    const form = h("form", { class: "settings", "aria-label": "Mailjet settings" },
      h("div", { class: "field" },
        h("label", { for: "dest-api-key" }, "Authentication key"),
        apiKey,
        h("span", { class: "hint", id: "dest-api-key-hint" }, "Your Mailjet Authentication key (Mailjet → App Connections → Segment).")),
      h("div", { class: "field" },
        h("label", { for: "dest-list-id" }, "List ID"),
        listId,
        h("span", { class: "hint", id: "dest-list-id-hint" }, "Please provide the default list id for which contacts will be associated with.")),
      h("button", { type: "submit", class: "primary" }, "Save"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      errors.textContent = ""; saved.textContent = "";
      const settings = {};
      if (!loaded || edited(apiKey, loaded.settings.apiKey)) settings.apiKey = apiKey.value.trim();
      if (!loaded || edited(listId, loaded.settings.listId || "1")) settings.listId = listId.value.trim();
      try {
        newest();
        show(await api("PUT", "/_emulator/destinations/mailjet", { settings }), true);
        saved.textContent = "Settings saved.";
      } catch (error) { fail(errors, error); }
    });
    enabled.addEventListener("change", async () => {
      errors.textContent = ""; saved.textContent = "";
      const wanted = enabled.checked;
      try {
        newest();
        show(await api("PUT", "/_emulator/destinations/mailjet", { enabled: wanted }));
        saved.textContent = wanted ? "Destination enabled." : "Destination disabled.";
      } catch (error) {
        enabled.checked = !wanted;
        fail(errors, error);
      }
    });

    fill(main, 
      h("h1", {}, "Destinations"),
      h("section", { class: "card", "aria-labelledby": "tile-mailjet" },
        h("div", { class: "tile-head" },
          h("div", { class: "tile-logo", "aria-hidden": "true" }, "MJ"),
          h("div", {}, h("h2", { id: "tile-mailjet", style: "margin:0" }, "Mailjet"),
            h("span", { class: "hint" }, "Email Marketing · cloud mode · accepts Identify calls only")),
          pill),
        h("h3", {}, "Settings"),
        errors, saved,
        form,
        h("div", { class: "field", style: "margin-top:1rem" }, h("label", { class: "switch" }, enabled, "Enable Destination"))));
    const first = newest();
    try {
      const config = await api("GET", "/_emulator/destinations/mailjet");
      if (first()) show(config, true);
    } catch (error) { if (first()) fail(errors, error); }
    onMessage = () => {};
    onReconnect = reread;   // a restarted server may hold other settings
    setInterval(reread, 2000);   // no feed tells of a change made in another tab or by a script
  }

  // -------------------------------------------------------------------------------- Event Delivery
  async function viewDeliveries() {
    const errors = alertRegion();
    // Every state GET /_emulator/deliveries gives a record (delivery.py STATES): a message waiting
    // behind its user's retrying one, or in flight, is `queued`, and was counted nowhere.
    const STATES = ["queued", "retrying", "delivered", "failed", "skipped"];
    const stateSelect = h("select", { id: "dlv-state" },
      h("option", { value: "" }, "All states"),
      STATES.map((s) => h("option", { value: s }, s)));
    const stats = h("div", { class: "cards" });
    const statsNote = h("div");
    const rows = h("div");
    const detail = h("section", { class: "card", "aria-label": "Delivery details" });
    let selected = null;
    const tone = { queued: "info", delivered: "ok", retrying: "warn", failed: "bad", skipped: "" };

    fill(main, 
      h("h1", {}, "Event Delivery"),
      h("p", { class: "lede" }, "Each message routed to the Mailjet destination: queued, retrying, delivered, failed or skipped, with what was sent and what came back."),
      errors, stats, statsNote,
      h("div", { class: "toolbar" }, h("div", { class: "field" }, h("label", { for: "dlv-state" }, "State"), stateSelect),
        h("button", { type: "button", onclick: () => refresh() }, "Refresh")),
      rows, detail);

    // Details of one record asked, then of another: the first answering last showed its message
    // under the second one's heading.
    const newestDetail = newestOnly();
    async function showDetail(record) {
      const current = newestDetail();
      selected = record.messageId;
      let sent = null;
      // The accepted message only: a discarded duplicate (a client's retry) shares its messageId, and was never delivered.
      try { sent = (await api("GET", `/_emulator/events?messageId=${encodeURIComponent(record.messageId)}&status=accepted&limit=1`)).events[0]; } catch { /* shown as unknown */ }
      if (!current()) return;
      const wire = sent ? asSent(sent) : null;
      fill(detail, 
        h("h2", {}, `Delivery of ${record.messageId}`),
        h("dl", { class: "kv" },
          h("dt", {}, "State"), h("dd", {}, badge(record.state, tone[record.state])),
          h("dt", {}, "Reason"), h("dd", {}, record.reason || "—"),
          h("dt", {}, "Next attempt"), h("dd", {}, record.next_attempt_at ? dateTime(record.next_attempt_at) : "—")),
        h("h3", {}, "Request to destination"),
        wire ? h("pre", {}, pretty(wire)) : h("p", { class: "empty" }, "The message is no longer in the store."),
        h("h3", {}, `Attempts (${(record.attempts || []).length})`),
        (record.attempts || []).map((a, i) => h("div", {},
          h("p", {}, h("strong", {}, `#${i + 1}`), ` ${dateTime(a.at)} · `, badge(a.status == null ? "no response" : `HTTP ${a.status}`, a.status >= 200 && a.status < 300 ? "ok" : "bad")),
          h("pre", { "aria-label": `Response from destination, attempt ${i + 1}` }, pretty(a.response ?? null)))));
    }

    let shownRecords = null;   // what the cards and the table show, as JSON
    const newest = newestOnly();   // the 2 s poll asked before a change of filter and answering after it is dropped
    async function refresh() {
      const current = newest();
      let all, records;
      const state = stateSelect.value;
      try {
        // The cards count every state, whatever the table is filtered to: counted from the filtered
        // read, each other state's card said 0.
        [all, records] = await Promise.all([
          api("GET", `/_emulator/deliveries?limit=${CAP}`).then((d) => d.deliveries),
          state ? api("GET", `/_emulator/deliveries?limit=${CAP}&state=${state}`).then((d) => d.deliveries) : null,
        ]);
        if (!current()) return;
        errors.textContent = "";
      } catch (error) { if (current()) fail(errors, error); return; }
      records ??= all;
      // The 2 s poll mostly answers what is shown: rebuilding it anyway threw keyboard focus off.
      const seen = JSON.stringify([state, all, records]);
      if (seen === shownRecords) return;
      shownRecords = seen;
      const count = (s) => all.filter((r) => r.state === s).length;
      // The counts are of the records read: said, or 500 delivered read as all there are.
      fill(stats, ...STATES.map((s) =>
        h("div", { class: "card" }, h("div", { class: "stat-label" }, s[0].toUpperCase() + s.slice(1)), h("div", { class: "stat" }, String(count(s))))));
      fill(statsNote, capNote(all.length, CAP, "delivery records", "are counted above; older ones are not."));
      records = records.slice().reverse();
      keepFocus(rows, () => fill(rows, capNote(records.length, CAP, state ? `${state} delivery records` : "delivery records"), records.length ? table([
        { label: "Last attempt", render: (r) => dateTime((r.attempts || []).slice(-1)[0]?.at) || "—" },
        { label: "Message", render: (r) => h("button", { type: "button", class: "small", onclick: () => showDetail(r), "aria-label": `Details of ${r.messageId}` }, r.messageId), class: "wrap" },
        { label: "Type", render: (r) => [badge(r.type || "?", "type"), r.event ? ` ${r.event}` : ""], class: "wrap" },
        { label: "userId", render: (r) => r.userId || "—", class: "wrap" },
        { label: "State", render: (r) => badge(r.state, tone[r.state]) },
        { label: "Attempts", render: (r) => String((r.attempts || []).length), class: "num" },
        { label: "Reason", render: (r) => r.reason || "", class: "wrap" },
      ], records, { label: "Deliveries" }) : h("p", { class: "empty" }, state && all.length ? `No ${state} delivery record.` : "Nothing routed to the destination yet.")));
      if (selected) {
        const again = records.find((r) => r.messageId === selected);
        if (again) showDetail(again);
      }
    }
    stateSelect.addEventListener("change", refresh);
    await refresh();
    setInterval(refresh, 2000);   // retries change records without new messages
    onMessage = throttle(refresh, 200);
    // After a reset the record detailed is gone: its details are not left showing.
    onReset = () => { selected = null; fill(detail); refresh(); };
  }

  // -------------------------------------------------------------------------------- Engage
  const ENGAGE_READ = 2000;
  async function viewEngage() {
    const errors = alertRegion();
    const clockNow = h("span", { class: "mono" });
    const syncOut = h("div");
    const body = h("div");
    const advance = h("input", { id: "eng-advance", type: "text", value: "31d", size: "6" });
    const name = h("input", { id: "eng-name", type: "text", placeholder: "Order Completed Last 30 Days" });
    const rule = h("textarea", { id: "eng-rule" });
    rule.value = pretty({ event: "Order Completed", within: "30d", at_least: 1 });

    // Messages, Sync, Advance clock and Create audience each read the page again, and the reads
    // overlap: one answering after a newer one put the older page (or time) back.
    const newestClock = newestOnly();
    async function refreshClock() {
      const current = newestClock();
      try {
        const now = (await api("GET", "/_emulator/clock")).now;
        if (current()) clockNow.textContent = now;
      } catch { /* ignore */ }
    }

    const newest = newestOnly();
    async function refresh() {
      const current = newest();
      const [audiences, traits, identifies] = await Promise.all([
        api("GET", "/_emulator/engage/audiences").catch((e) => ({ error: e })),
        api("GET", "/_emulator/engage/traits").catch((e) => ({ error: e })),
        api("GET", `/_emulator/events?type=identify&limit=${ENGAGE_READ}`).catch(() => ({ events: [] })),
      ]);
      if (!current()) return;
      const synced = identifies.events.filter((m) => m.context && m.context.personas).reverse();
      // The members and values Engage holds now (the first by userId), not those its identify calls
      // once carried: a member merged away, or of a deleted definition whose key was used again, stayed.
      const chips = (labels, count) => labels.length
        ? h("div", { class: "chips" }, labels.map((label) => h("span", { class: "chip" }, label)),
            count > labels.length ? h("span", { class: "hint" }, `and ${(count - labels.length).toLocaleString("en")} more`) : null)
        : "—";
      const valueLabels = (values) => Object.entries(values || {}).map(([u, v]) => `${u}=${JSON.stringify(v)}`);
      fill(body, 
        h("h2", {}, "Audiences"),
        audiences.error ? h("p", { class: "alert bad" }, `Audiences unavailable: ${audiences.error.message}`)
          : (audiences.audiences || []).length ? table([
            { label: "Name", render: (a) => a.name, class: "wrap" },
            { label: "Key", render: (a) => h("code", {}, a.key), class: "wrap" },
            { label: "Rule", render: (a) => h("code", {}, JSON.stringify(a.rule)), class: "wrap" },
            { label: "Synced", render: (a) => a.synced ? badge("synced", "ok") : badge("not yet") },
            { label: "Members", render: (a) => [String(a.members ?? "—"), " ", chips(a.member_sample || [], a.members)] },
          ], audiences.audiences, { label: "Audiences" }) : h("p", { class: "empty" }, "No audiences defined."),
        h("h2", {}, "Computed traits"),
        traits.error ? h("p", { class: "alert bad" }, `Computed traits unavailable: ${traits.error.message}`)
          : (traits.traits || []).length ? table([
            { label: "Name", render: (t) => t.name, class: "wrap" },
            { label: "Key", render: (t) => h("code", {}, t.key), class: "wrap" },
            { label: "Computation", render: (t) => `${t.computed} of ${t.event}${t.property ? "." + t.property : ""} within ${t.within || "all time"}`, class: "wrap" },
            { label: "Profiles", render: (t) => String(t.profiles_with_value ?? "—") },
            { label: "Values", render: (t) => chips(valueLabels(t.value_sample), t.profiles_with_value) },
          ], traits.traits, { label: "Computed traits" }) : h("p", { class: "empty" }, "No computed traits defined."),
        h("h2", {}, "Sync history"),
        h("p", { class: "hint" }, "The identify calls Engage sent to destinations (messages carrying context.personas)."),
        // The history comes from the newest identify calls only (any identify, not Engage's alone).
        capNote(identifies.events.length, ENGAGE_READ, "identify calls (of any sender)", "are read for the history shown; older syncs are not in it."),
        synced.length ? table([
          { label: "Time", render: (m) => dateTime(m.receivedAt) },
          { label: "userId", render: (m) => m.userId || m.anonymousId, class: "wrap" },
          { label: "Computation", render: (m) => h("code", {}, text(m.context.personas.computation_key)), class: "wrap" },
          { label: "Value", render: (m) => JSON.stringify((m.traits || {})[m.context.personas.computation_key]), class: "wrap" },
          { label: "messageId", render: (m) => h("code", {}, m.messageId), class: "wrap" },
        ], synced, { label: "Sync history" }) : h("p", { class: "empty" }, "Nothing synced yet."));
      refreshClock();
    }

    const syncButton = h("button", { type: "button", class: "primary" }, "Sync now");
    syncButton.addEventListener("click", async () => {
      errors.textContent = "";
      try {
        const answer = await api("POST", "/_emulator/engage/sync");
        fill(syncOut, h("h3", {}, "Last sync sent"), h("pre", {}, pretty(answer)));
        say("Engage synced");
        refresh();
      } catch (error) { fail(errors, error); }
    });
    const clockForm = h("form", { class: "row", "aria-label": "Virtual clock" },
      h("label", { for: "eng-advance" }, "Advance the clock by"), advance, h("button", { type: "submit" }, "Advance clock"));
    clockForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      errors.textContent = "";
      try {
        const answer = await api("POST", "/_emulator/clock", { advance: advance.value.trim() });
        say(`Clock now ${answer.now}; ${answer.fired} timer(s) fired`);
        refresh();
      } catch (error) { fail(errors, error); }
    });
    const audienceForm = h("form", { class: "card settings", "aria-label": "New audience" },
      h("h2", {}, "New audience"),
      h("div", { class: "field" }, h("label", { for: "eng-name" }, "Audience name"), name),
      h("div", { class: "field" }, h("label", { for: "eng-rule" }, "Rule (JSON)"), rule),
      h("button", { type: "submit", class: "primary" }, "Create audience"));
    audienceForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      errors.textContent = "";
      try {
        let parsed;
        try { parsed = JSON.parse(rule.value); } catch (error) { throw new Error(`The rule is not valid JSON: ${error.message}`); }
        const created = await api("POST", "/_emulator/engage/audiences", { name: name.value.trim(), rule: parsed });
        say(`Audience ${created.key} created`);
        refresh();
      } catch (error) { fail(errors, error); }
    });

    fill(main, 
      h("h1", {}, "Engage"),
      h("p", { class: "lede" }, "Audiences and computed traits, their members, and what each sync sent. Time is virtual: advance it to age events out of a window."),
      errors,
      h("div", { class: "card" }, h("div", { class: "row" }, syncButton, clockForm), h("p", { class: "hint" }, "Virtual time: ", clockNow), syncOut),
      body, audienceForm);
    await refresh();
    onMessage = throttle(refresh, 500);
  }

  // -------------------------------------------------------------------------------- Trace
  async function viewTrace() {
    const errors = alertRegion();
    const input = h("input", { id: "trace-user", type: "text", list: "trace-users", autocomplete: "off", placeholder: "u1 or ada@example.com" });
    const users = h("datalist", { id: "trace-users" });
    const result = h("div", { id: "trace-result" });
    const exportLink = h("a", { class: "button", hidden: true }, "Export as HTML");
    const form = h("form", { class: "toolbar", "aria-label": "Pick a user" },
      h("div", { class: "field", style: "flex:1 1 16rem" }, h("label", { for: "trace-user" }, "User ID or email"), input, users),
      h("button", { type: "submit", class: "primary" }, "Show trace"), exportLink);

    const newest = newestOnly();   // a trace asked before another and answering after it is dropped
    async function show(user) {
      const current = newest();
      errors.textContent = "";
      exportLink.hidden = true;   // until this user's trace is shown, the link would export another's
      fill(result, h("p", {}, "Loading…"));
      try {
        const data = await api("GET", `/_emulator/dashboard/trace?user=${encodeURIComponent(user)}`);
        if (!current()) return;
        SegjetTrace.render(result, data);
        exportLink.href = withToken(`/_emulator/dashboard/trace/export?user=${encodeURIComponent(user)}`);
        exportLink.setAttribute("download", `segjet-trace-${user.replace(/[^A-Za-z0-9._-]+/g, "_")}.html`);
        exportLink.hidden = false;
      } catch (error) { if (current()) { fill(result); fail(errors, error); } }
    }
    function showEntered() {
      const user = input.value.trim();
      if (!user) { errors.textContent = "Enter a userId or an email."; return; }
      history.replaceState(null, "", `/trace?user=${encodeURIComponent(user)}`);
      show(user);
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); showEntered(); });

    fill(main, 
      h("h1", {}, "Trace"),
      h("p", { class: "lede" }, "One user's journey across both fakes, in order: identify → delivery attempts → Mailjet API calls → emails → email events back in Segment, each payload checked against its contract."),
      errors, form, result);
    try {
      const seen = new Set();
      for (const m of (await api("GET", "/_emulator/events?limit=2000")).events) {
        for (const v of [m.userId, (m.traits || {}).email]) if (v && typeof v === "string") seen.add(v);
      }
      fill(users, ...[...seen].map((v) => h("option", { value: v })));
    } catch { /* suggestions only */ }
    const wanted = new URLSearchParams(location.search).get("user");
    if (wanted) { input.value = wanted; show(wanted); }
    onMessage = () => {};
    // The server forgot the journey shown (a reset, a snapshot imported, a restart): shown again, as
    // it is now, with its export link; an empty input has nothing shown to redo.
    onReset = () => { if (input.value.trim()) showEntered(); };
  }

  // -------------------------------------------------------------------------------- boot
  const views = {
    "/": [viewOverview, "Overview"],
    "/debugger": [viewDebugger, "Debugger"],
    "/destinations": [viewDestinations, "Destinations"],
    "/deliveries": [viewDeliveries, "Event Delivery"],
    "/engage": [viewEngage, "Engage"],
    "/trace": [viewTrace, "Trace"],
  };

  async function boot() {
    const [view, title] = currentView(views);
    document.title = `${title} · segjet · fake Segment`;
    try { info = await api("GET", "/_emulator/dashboard/info"); } catch { /* links only */ }
    if (info.mailjet_url) document.getElementById("other-dashboard").href = withToken(`${info.mailjet_url}/`);
    subscribe("/_emulator/events/stream", (m) => onMessage(m), () => onReconnect(), () => onReset());
    try { await view(); } catch (error) { fill(main, h("h1", {}, title), h("p", { class: "alert bad", role: "alert" }, String(error.message || error))); }
    document.body.dataset.ready = "true";
  }
  boot();
})();
