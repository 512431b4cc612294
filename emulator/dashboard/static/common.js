/* Shared helpers of the segjet dashboard pages. Plain browser JS, no build step, no external URL. */
"use strict";

const Segjet = (() => {
  // The control token (segjet up --control-token): the page is opened once as /?token=T; the token
  // is kept for the browser tab in sessionStorage and taken out of the address bar.
  const TOKEN_KEY = "segjet-control-token";
  const opened = new URLSearchParams(location.search);
  if (opened.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, opened.get("token"));
    opened.delete("token");
    history.replaceState(null, "", location.pathname + (opened.toString() ? `?${opened}` : "") + location.hash);
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  /** A URL the browser loads without our headers (EventSource, a download, the other dashboard): the token rides in the query. */
  function withToken(url) {
    const value = token();
    return value ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(value)}` : url;
  }

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
    if (token()) init.headers["X-Segjet-Token"] = token();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      // fetch says only "Failed to fetch": the server is gone (stopped, or restarting).
      const error = new Error(`cannot reach the server at ${location.origin}: is segjet up still running?`);
      error.status = 0;
      throw error;
    }
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

  /** Subscribe to an SSE feed; `onData(parsed)` per message. Reconnects on its own (EventSource does);
   *  `onOpen()` is called each time it is connected, the first time included: what was stored while
   *  it was away is lost, and so is what was stored between the page's first read and the feed
   *  listening (the two requests race). `onReset()` is called when the feed's `epoch` event names
   *  another epoch than before: the server forgot what the page shows (a reset, or a restart). */
  function subscribe(url, onData, onOpen = () => {}, onReset = () => {}) {
    let source = null;
    let epoch = null;   // kept across connections: a reset while the tab was hidden is caught too
    function connect() {
      const current = new EventSource(withToken(url));
      source = current;
      current.onopen = () => { feedState(true); onOpen(); };
      // A lost feed is said, not left looking live: EventSource tries again on its own (a restarted
      // server is caught up with by onOpen), except after an answer that is no stream (a 401).
      current.onerror = () => feedState(false, current.readyState === EventSource.CLOSED);
      current.onmessage = (event) => {
        // Read as api() reads: a big integer pushed live keeps its digits, and equals the same message fetched.
        try { onData(JSON.parse(event.data, keepBigIntegers)); } catch (error) { console.error("bad SSE data", error); }
      };
      current.addEventListener("epoch", (event) => {
        let value;
        try { value = JSON.parse(event.data); } catch { return; }
        const changed = epoch !== null && value !== epoch;
        epoch = value;
        if (changed) onReset();
      });
    }
    // A browser opens at most 6 connections to one server (HTTP/1.1), and each open feed holds one
    // for good: with 6 tabs of a dashboard open, every other request of every tab waited forever.
    // A hidden tab lets go of its feed, and catches up (onOpen, onReset) when it is shown again.
    document.addEventListener("visibilitychange", () => {
      if (document.hidden && source) { source.close(); source = null; }
      else if (!document.hidden && !source) connect();
    });
    window.addEventListener("pagehide", () => { if (source) source.close(); source = null; });
    window.addEventListener("pageshow", () => { if (!document.hidden && !source) connect(); });   // back from the page cache
    if (!document.hidden) connect();
  }

  const feedListeners = [];
  let feedUp = null;   // null until the feed first answers
  /** Call `fn(up)` each time the live feed connects (true) or is lost (false). */
  function onFeedState(fn) { feedListeners.push(fn); }
  const isFeedDown = () => feedUp === false;

  function feedState(up, closed = false) {
    let banner = document.getElementById("feed-lost");
    if (up) {
      if (banner) banner.remove();
    } else {
      if (!banner) {
        banner = h("div", { id: "feed-lost", class: "alert bad feed-lost", role: "alert" });
        document.querySelector(".topbar").after(banner);
      }
      banner.textContent = closed
        ? "Live updates stopped: the server refused this page's live feed (see the message below). Reload the page once it is fixed."
        : `Lost the connection to the server at ${location.origin}; reconnecting… What this page shows may be out of date.`;
    }
    if (feedUp === up) return;
    feedUp = up;
    for (const fn of feedListeners) fn(up);
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  /** Call `fn` once, `ms` after the first of a run of calls. Unlike debounce, a steady run (a busy
   *  live feed) still gets it called every `ms` instead of never, while the run lasts. */
  function throttle(fn, ms) {
    let timer = null;
    return (...args) => {
      if (timer === null) timer = setTimeout(() => { timer = null; fn(...args); }, ms);
    };
  }

  /** Who a control is, surviving a rebuild: its row's data-* keys (rowAttrs), its tag, label and text. */
  function identity(node) {
    const row = node.closest("tr, li");
    return JSON.stringify([row ? Object.entries(row.dataset) : [], node.tagName, node.getAttribute("aria-label"), node.textContent]);
  }

  /** Rebuild part of a page with `rebuild()`, keeping keyboard focus on the same control: a live page
   *  rebuilds its tables on every change, and the button just pressed would take the focus with it. */
  function keepFocus(container, rebuild) {
    const active = document.activeElement;
    const wanted = active && active !== document.body && container.contains(active) ? identity(active) : null;
    rebuild();
    if (wanted === null || container.contains(document.activeElement)) return;
    const again = [...container.querySelectorAll("button, a[href], input, select, textarea, summary")].find((node) => identity(node) === wanted);
    if (again) again.focus();
  }

  /** A note under a list read with `?limit=cap`, when the read answered `cap` items: the control
   *  APIs answer no total, and without it the older items, not listed, looked lost. */
  function capNote(count, cap, what, tail = "are shown here; older ones are not listed.") {
    return count >= cap ? h("p", { class: "hint", role: "note" }, `Only the newest ${cap.toLocaleString("en")} ${what} ${tail}`) : null;
  }

  /** One way for overlapping reads of the same thing (a poll, a live feed, a button): the newest
   *  wins. `const newest = newestOnly();` once, then per read `const current = newest();` before
   *  awaiting and `if (!current()) return;` after: a read asked before another one and answering
   *  after it would put the older state back (for good, when no change follows). */
  function newestOnly() {
    let latest = 0;
    return () => {
      const mine = ++latest;
      return () => mine === latest;
    };
  }

  /** Show an error in the view's alert region (role=alert) instead of failing silently. */
  function fail(region, error) {
    region.textContent = error instanceof Error ? error.message : String(error);
  }

  /** The server's fault rules (POST /_emulator/faults), small: what fails, how often, and a Remove button. */
  function faultsPanel() {
    const panel = h("section", { "aria-labelledby": "faults-title" }, h("h2", { id: "faults-title" }, "Faults"));
    const problem = h("div", { class: "alert bad", role: "alert" });
    const body = h("div", {}, h("p", { class: "empty" }, "Loading…"));
    panel.append(problem, body);
    let shown = null;   // the rules shown, as JSON: an unchanged answer leaves the table (and focus) alone
    // The poll in flight when Remove was pressed answered after the read that followed: the rule came back.
    const newest = newestOnly();
    async function refresh() {
      const current = newest();
      let rules;
      try { rules = (await api("GET", "/_emulator/faults")).faults; } catch (error) {
        if (!current()) return;
        shown = null; fill(body, h("p", { class: "alert bad", role: "alert" }, error.message)); return;
      }
      if (!current()) return;
      const seen = JSON.stringify(rules);
      if (seen === shown) return;
      shown = seen;
      if (!rules.length) {
        fill(body, h("p", { class: "empty" }, "No fault injected. Add rules with POST /_emulator/faults or segjet up --faults FILE."));
        return;
      }
      // A refused removal (the rule is gone: a script or the other tab removed it) is said, and the
      // list read again either way.
      const remove = async (id) => {
        problem.textContent = "";
        try {
          await api("DELETE", `/_emulator/faults/${encodeURIComponent(id)}`);
          say(`Fault ${id} removed`);
        } catch (error) { fail(problem, error); }
        refresh();
      };
      keepFocus(body, () => fill(body, table([
        { label: "Rule", render: (r) => h("code", {}, r.id) },
        { label: "Request", render: (r) => h("code", {}, `${r.method} ${r.path}`), class: "wrap" },
        { label: "Fault", render: (r) => `${r.action}${r.status ? ` ${r.status}` : ""}${r.delay_ms ? ` +${r.delay_ms} ms` : ""}` },
        { label: "Rate", render: (r) => `${Math.round(r.rate * 100)} %${r.times ? `, ${r.times}×` : ""}` },
        { label: "Fired", render: (r) => r.spent ? badge(`${r.fired}/${r.matched} spent`, "warn") : `${r.fired}/${r.matched}` },
        { label: "", render: (r) => h("button", { class: "small", type: "button", "aria-label": `Remove fault ${r.id}`, onclick: () => remove(r.id) }, "Remove") },
      ], rules, { label: "Fault rules", rowAttrs: (r) => ({ "data-rule": r.id }) })));
    }
    refresh();
    // Rules are added by scripts (POST /_emulator/faults) and fire on requests no feed tells of: read
    // every 2 s, or a rule added while the page was open never showed, nor how often it fired.
    // A rebuilt page makes a new panel: the old one's timer stops once it is out of the document.
    const timer = setInterval(() => { if (panel.isConnected) refresh(); else clearInterval(timer); }, 2000);
    return panel;
  }

  return { h, append, fill, api, pretty, time, dateTime, badge, table, say, copy, currentView, subscribe, onFeedState, isFeedDown, debounce, throttle, fail, keepFocus, withToken, faultsPanel, capNote, newestOnly };
})();
