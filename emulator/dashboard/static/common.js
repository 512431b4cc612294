/* Shared helpers of the segjet dashboard pages. Plain browser JS, no build step, no external URL. */
"use strict";

const Segjet = (() => {
  /** Build an element: h("button", {class: "primary", onclick: fn}, "Save"). Text is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Replace a node's children; null, undefined and false children are skipped. */
  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  /** JSON in, JSON out; a non-2xx answer throws an Error carrying the server's message. */
  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text, keepBigIntegers) : null; } catch { data = text; }
    if (!response.ok) {
      const message = (data && (data.error || data.message || data.ErrorMessage)) || `${response.status} ${response.statusText}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  /** Mailjet MessageIDs exceed 2^53: keep such integers as their exact digits (a string). */
  function keepBigIntegers(key, value, context) {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
      return context.source;
    }
    return value;
  }

  const pretty = (value) => JSON.stringify(value, null, 2);

  function time(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return date.toISOString().slice(11, 19);
  }

  function dateTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return date.toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function badge(text, tone) {
    return h("span", { class: `badge ${tone || ""}` }, text);
  }

  /** A table; columns = [{label, render(row) -> node|text, class}]; stacks into cards on phones. */
  function table(columns, rows, options = {}) {
    const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label))));
    const body = h("tbody", {}, rows.map((row) =>
      h("tr", options.rowAttrs ? options.rowAttrs(row) : {},
        columns.map((c) => h("td", { "data-label": c.label, class: c.class || "" }, c.render(row))))));
    return h("div", { class: "table-wrap" },
      h("table", { class: "stack", "aria-label": options.label || null }, head, body));
  }

  let toastTimer = null;
  function say(message) {
    const region = document.getElementById("status");
    if (!region) return;
    region.textContent = message;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { region.textContent = ""; }, 3500);
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = h("textarea", { "aria-hidden": "true", style: "position:fixed;left:-9999px" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
  }

  /** Mark the current page in the top navigation and answer the view name for the path. */
  function currentView(routes) {
    const path = location.pathname.replace(/\/+$/, "") || "/";
    for (const link of document.querySelectorAll(".topbar nav a")) {
      if (link.getAttribute("href") === path) link.setAttribute("aria-current", "page");
    }
    return routes[path] || routes["/"];
  }

  /** Subscribe to an SSE feed; `onData(parsed)` per message. Reconnects on its own (EventSource does). */
  function subscribe(url, onData) {
    const source = new EventSource(url);
    source.onmessage = (event) => {
      try { onData(JSON.parse(event.data)); } catch (error) { console.error("bad SSE data", error); }
    };
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  /** Show an error in the view's alert region (role=alert) instead of failing silently. */
  function fail(region, error) {
    region.textContent = error instanceof Error ? error.message : String(error);
  }

  return { h, append, fill, api, pretty, time, dateTime, badge, table, say, copy, currentView, subscribe, debounce, fail };
})();
