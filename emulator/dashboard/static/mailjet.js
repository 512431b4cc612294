/* The fake Mailjet's pages: Account, App Connections → Segment, Contacts, Messages. */
"use strict";

(() => {
  const { h, fill, api, pretty, dateTime, badge, table, say, copy, currentView, subscribe, debounce, fail, keepFocus, withToken, faultsPanel, capNote, newestOnly } = Segjet;
  const main = document.getElementById("view");
  let onChange = () => {};   // the current view's refresh, called when the model changed
  let info = {};

  const alertRegion = () => h("div", { class: "alert bad", role: "alert" });

  // -------------------------------------------------------------------------------- Account
  // Each change builds the page again, and the reads overlap: one answering after a newer one put
  // the older counts back (for good, when no change followed).
  const accountRead = newestOnly();
  async function viewAccount() {
    const current = accountRead();
    const errors = alertRegion();
    // A read that fails is said (a missing control token, a server gone), not shown as "0 lists".
    const failed = (error) => { fail(errors, error); return null; };
    const [account, connection, lists] = await Promise.all([
      api("GET", "/_emulator/dashboard/info").catch(failed),
      api("GET", "/_emulator/app-connections/segment").catch(failed),
      api("GET", "/_emulator/dashboard/lists").catch(failed),
    ]);
    if (!current()) return;
    fill(main, 
      h("h1", {}, "Mailjet account"),
      h("p", { class: "lede" }, "A fake Mailjet account: REST API v3, Send API v3.1, email events and the Segment app connection. The API secret never reaches this page."),
      errors,
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "stat-label" }, "API key"), h("code", {}, (account && account.apiKey) || "—"),
          h("p", { class: "hint" }, "The secret is the one given to segjet up (--mailjet-secret-key).")),
        h("div", { class: "card" }, h("div", { class: "stat-label" }, "Contact lists"), h("div", { class: "stat" }, lists ? String(lists.lists.length) : "—")),
        h("div", { class: "card" }, h("div", { class: "stat-label" }, "Email events to Segment"),
          h("div", { class: "stat" }, connection ? (connection.sendEvents ? "On" : "Off") : "—"))),
      h("h2", {}, "Where to go"),
      h("ul", {},
        h("li", {}, h("a", { href: "/app-connections" }, "App Connections → Segment"), ": the Segment authentication key, the contact list, the write key."),
        h("li", {}, h("a", { href: "/contacts" }, "Contacts"), ": lists, contacts, their properties and subscriptions."),
        h("li", {}, h("a", { href: "/messages" }, "Messages"), ": emails sent through the Send API, their events, and buttons to open, click, bounce or unsubscribe.")),
      faultsPanel());
    onChange = viewAccount;
  }

  // -------------------------------------------------------------------------------- App Connections
  async function viewAppConnections() {
    const errors = alertRegion();
    const saved = h("div", { class: "alert ok", role: "status" });
    const authKey = h("input", { id: "ac-auth-key", type: "text", readOnly: true, class: "mono" });
    const listSelect = h("select", { id: "ac-list" });
    const listIdOut = h("output", { id: "ac-list-id", for: "ac-list", "aria-live": "polite" });
    const sendEvents = h("input", { id: "ac-send-events", type: "checkbox", role: "switch" });
    const writeKey = h("input", { id: "ac-write-key", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "Segment write key" });
    const segmentUrl = h("input", { id: "ac-segment-url", type: "text" });

    const showListId = () => { listIdOut.textContent = listSelect.value ? `List ID: ${listSelect.value}` : ""; };
    listSelect.addEventListener("change", showListId);
    let savedListId = "";   // the list App Connections holds, "" when it holds none (its list was deleted)

    /** The account's lists as options, keeping `chosen` selected; a placeholder when no list is chosen. */
    function listOptions(lists, chosen) {
      const options = lists.map((l) => h("option", { value: String(l.ID) }, `${l.Name} (${l.SubscriberCount} contacts)`));
      const known = options.some((option) => option.value === chosen);
      fill(listSelect, known ? null : h("option", { value: "", disabled: true }, "No list chosen"), ...options);
      listSelect.value = known ? chosen : "";
    }

    // What the server held when last read. Another tab, a script or a restarted server changes it
    // under the page: a field the user has not edited follows it, and Save sends only the fields
    // edited here, so a stale value shown is never written back over a newer one.
    let loaded = {};   // nothing read yet: the empty form
    const edits = () => ({
      sendEvents: sendEvents.checked !== !!loaded.sendEvents,
      writeKey: writeKey.value.trim() !== (loaded.writeKey || ""),
      segmentUrl: segmentUrl.value.trim() !== (loaded.segmentUrl || ""),
      listId: listSelect.value !== savedListId,
    });

    function show(connection, lists, force = false) {
      const edited = force ? {} : edits();
      authKey.value = connection.authenticationKey || "";
      const held = lists.some((l) => String(l.ID) === String(connection.listId)) ? String(connection.listId) : "";
      listOptions(lists, edited.listId ? listSelect.value : held);
      savedListId = held;
      showListId();
      if (!edited.sendEvents) sendEvents.checked = !!connection.sendEvents;
      if (!edited.writeKey) writeKey.value = connection.writeKey || "";
      if (!edited.segmentUrl) segmentUrl.value = connection.segmentUrl || "";
      loaded = connection;
    }

    // Each change reads the form again, and the reads overlap: one answering after a newer one (or
    // after a save) put older values in the fields the user has not edited. A save's answer is
    // always shown: it is the server's state after it, and makes every read asked before it stale.
    const newest = newestOnly();

    const copyButton = h("button", { type: "button", "aria-label": "Copy authentication key" }, "Copy");
    copyButton.addEventListener("click", async () => { await copy(authKey.value); say("Authentication key copied"); });

    const form = h("form", { class: "settings", "aria-label": "Segment connection" },
      h("div", { class: "field" },
        h("label", { for: "ac-auth-key" }, "Segment Authentication key"),
        h("div", { class: "row" }, authKey, copyButton),
        h("span", { class: "hint" }, "Paste it in Segment: Destinations → Mailjet → Authentication key.")),
      h("div", { class: "field" },
        h("label", { for: "ac-list" }, "Contact list"),
        listSelect,
        listIdOut,
        h("span", { class: "hint" }, "The list Segment sends contact property data to; copy its ID into Segment's List ID.")),
      h("h3", {}, "Send email events to Segment"),
      h("div", { class: "field" }, h("label", { class: "switch" }, sendEvents, "Send email events to Segment")),
      h("div", { class: "field" },
        h("label", { for: "ac-write-key" }, "Segment write key"),
        writeKey,
        h("span", { class: "hint" }, "Email Delivered, Opened, Link Clicked, Bounced, Marked as Spam and Unsubscribed are sent as track calls with this key.")),
      h("details", {}, h("summary", {}, "Advanced"),
        h("div", { class: "field" }, h("label", { for: "ac-segment-url" }, "Segment API URL"), segmentUrl)),
      h("button", { type: "submit", class: "primary" }, "Save"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      errors.textContent = ""; saved.textContent = "";
      const edited = edits();
      const changes = {};
      if (edited.sendEvents) changes.sendEvents = sendEvents.checked;
      if (edited.writeKey) changes.writeKey = writeKey.value.trim() || null;
      // Only a list chosen here is sent: with none (its list deleted) the other settings still save.
      if (listSelect.value && edited.listId) changes.listId = Number(listSelect.value);
      // An emptied URL is sent too: the server's refusal says why, where skipping it said "saved"
      // and put the old URL back in the field.
      if (edited.segmentUrl) changes.segmentUrl = segmentUrl.value.trim();
      newest();
      try {
        const [connection, lists] = await Promise.all([
          api("PUT", "/_emulator/app-connections/segment", changes),
          api("GET", "/_emulator/dashboard/lists"),
        ]);
        show(connection, lists.lists, true);
        saved.textContent = connection.sendEvents && !connection.writeKey
          ? "Segment connection saved. Email events are on but there is no write key: none reaches Segment until one is pasted."
          : "Segment connection saved.";
      } catch (error) { fail(errors, error); }
    });

    fill(main, 
      h("h1", {}, "App Connections"),
      h("section", { class: "card", "aria-labelledby": "ac-segment" },
        h("div", { class: "tile-head" },
          h("div", { class: "tile-logo", style: "background:#52bd94", "aria-hidden": "true" }, "S"),
          h("h2", { id: "ac-segment", style: "margin:0" }, "Segment")),
        errors, saved, form));
    const first = newest();
    try {
      const [connection, lists] = await Promise.all([
        api("GET", "/_emulator/app-connections/segment"),
        api("GET", "/_emulator/dashboard/lists"),
      ]);
      if (first()) show(connection, lists.lists, true);
    } catch (error) { if (first()) fail(errors, error); }
    // Live: the list counts, and each field the user has not edited (unsaved input is kept).
    onChange = async () => {
      const current = newest();
      try {
        const [connection, lists] = await Promise.all([
          api("GET", "/_emulator/app-connections/segment"),
          api("GET", "/_emulator/dashboard/lists"),
        ]);
        if (current()) show(connection, lists.lists);
      } catch { /* keep what is shown */ }
    };
  }

  // -------------------------------------------------------------------------------- Contacts
  // One page at a time, as Mailjet's REST API pages (limit/offset): the whole account, read again at
  // every change, took a quarter of a second of the bundle's event loop at 26,000 contacts.
  const CONTACTS_PAGE = 50;

  async function viewContacts() {
    const errors = alertRegion();
    const search = h("input", { id: "ct-search", type: "search", placeholder: "ada@example.com", autocomplete: "off", spellcheck: "false" });
    const listFilter = h("select", { id: "ct-list" }, h("option", { value: "" }, "All lists"));
    const listsBox = h("div");
    const contactsBox = h("div");
    const position = h("span", { id: "ct-position", class: "hint", "aria-live": "polite", tabindex: "-1" });
    const previous = h("button", { type: "button", disabled: true }, "Previous");
    const next = h("button", { type: "button", disabled: true }, "Next");
    const pager = h("div", { class: "row", role: "group", "aria-label": "Contact pages" }, previous, position, next);
    let offset = 0;
    const newest = newestOnly();   // a read asked before another and answering after it is dropped

    const query = () => {
      const params = new URLSearchParams({ limit: String(CONTACTS_PAGE), offset: String(offset) });
      if (search.value.trim()) params.set("email", search.value.trim());
      if (listFilter.value) params.set("list", listFilter.value);
      return `/_emulator/dashboard/contacts?${params}`;
    };

    function render(page) {
      const { contacts, total } = page;
      const first = contacts.length ? page.offset + 1 : 0;
      position.textContent = total
        ? `Contacts ${first.toLocaleString("en")}–${(page.offset + contacts.length).toLocaleString("en")} of ${total.toLocaleString("en")}`
        : "";
      const focused = document.activeElement;
      previous.disabled = page.offset === 0;
      next.disabled = page.offset + contacts.length >= total;
      // A button disabled under the keyboard's focus sent it back to the top of the document.
      if ((focused === previous || focused === next) && focused.disabled) {
        const other = focused === next ? previous : next;
        (other.disabled ? position : other).focus();
      }
      const filtered = search.value.trim() || listFilter.value;
      keepFocus(contactsBox, () => fill(contactsBox, contacts.length ? table([
        { label: "Email", render: (c) => h("strong", {}, c.Email), class: "wrap" },
        { label: "Name", render: (c) => c.Name || "—", class: "wrap" },
        { label: "ID", render: (c) => String(c.ID), class: "num" },
        { label: "Lists", render: (c) => (c.Lists || []).length
          ? (c.Lists || []).map((s) => h("div", {}, `${s.ListName || "list"} (ID ${s.ListID}) `,
              s.IsUnsubscribed ? badge("unsubscribed", "bad") : badge("subscribed", "ok")))
          : badge("no list") },
        { label: "Properties", render: (c) => Object.keys(c.Properties || {}).length
          ? h("div", { class: "chips" }, Object.entries(c.Properties).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)))
          : "—" },
        { label: "Campaigns", render: (c) => c.IsExcludedFromCampaigns ? badge("excluded", "warn") : "included" },
        { label: "Updated", render: (c) => dateTime(c.LastUpdateAt || c.CreatedAt) },
      ], contacts, { label: "Contacts", rowAttrs: (c) => ({ "data-email": c.Email }) })
        : h("p", { class: "empty" }, filtered ? "No contact matches." : "No contacts yet. Send an identify through Segment with the destination enabled.")));
    }

    /** Read the lists and the page on screen (not the whole account); a page emptied under it (contacts
     *  removed, a reset) steps back to the last page that has any. */
    async function refresh() {
      const current = newest();
      let lists, page;
      try {
        [lists, page] = await Promise.all([
          api("GET", "/_emulator/dashboard/lists").then((d) => d.lists),
          api("GET", query()),
        ]);
        if (!current()) return;
        if (!page.contacts.length && offset > 0) {
          // With none left (a reset) the first page, where Previous is off.
          offset = Math.max(0, Math.floor((page.total - 1) / CONTACTS_PAGE) * CONTACTS_PAGE);
          page = await api("GET", query());
          if (!current()) return;
        }
        errors.textContent = "";
      } catch (error) { if (current()) fail(errors, error); return; }
      const chosen = listFilter.value;
      fill(listFilter, h("option", { value: "" }, "All lists"), ...lists.map((l) => h("option", { value: String(l.ID) }, `${l.Name} (ID ${l.ID})`)));
      // A list deleted under the filter: the filter goes back to every list, and so does the page.
      listFilter.value = lists.some((l) => String(l.ID) === chosen) ? chosen : "";
      fill(listsBox, table([
        { label: "ID", render: (l) => String(l.ID), class: "num" },
        { label: "Name", render: (l) => l.Name, class: "wrap" },
        { label: "Subscribers", render: (l) => String(l.SubscriberCount), class: "num" },
        { label: "Address", render: (l) => h("code", {}, l.Address) },
        { label: "Created", render: (l) => dateTime(l.CreatedAt) },
      ], lists, { label: "Contact lists" }));
      render(page);
      if (listFilter.value !== chosen) { offset = 0; refresh(); }
    }
    const fromStart = () => { offset = 0; refresh(); };
    search.addEventListener("input", debounce(fromStart, 250));
    listFilter.addEventListener("change", fromStart);
    previous.addEventListener("click", () => { offset = Math.max(0, offset - CONTACTS_PAGE); refresh(); });
    next.addEventListener("click", () => { offset += CONTACTS_PAGE; refresh(); });

    fill(main, 
      h("h1", {}, "Contacts"),
      errors,
      h("h2", {}, "Contact lists"), listsBox,
      h("h2", {}, "Contacts"),
      h("div", { class: "toolbar" },
        h("div", { class: "field" }, h("label", { for: "ct-search" }, "Find by email"), search,
          h("span", { class: "hint" }, "The whole address, in any case.")),
        h("div", { class: "field" }, h("label", { for: "ct-list" }, "List"), listFilter),
        pager),
      contactsBox);
    await refresh();
    onChange = refresh;
  }

  // -------------------------------------------------------------------------------- Messages
  async function viewMessages() {
    const errors = alertRegion();
    const messagesBox = h("div");
    const eventsBox = h("div");
    const ACTIONS = [["open", "Open"], ["click", "Click"], ["bounce", "Bounce"], ["unsub", "Unsubscribe"]];

    async function emit(message, event) {
      errors.textContent = "";
      const body = { event };   // a click uses the message's first link unless told otherwise
      try {
        await api("POST", `/_emulator/messages/${message.MessageID}/events`, body);
        say(`${event} recorded for message ${message.MessageID}`);
        refresh();
      } catch (error) { fail(errors, error); }
    }

    function eventList(m) {
      const events = m.events || [];
      return events.length ? h("div", { class: "chips" }, events.map((e) => h("span", { class: "chip" }, e.event || e.type || JSON.stringify(e)))) : "—";
    }

    const CAP = 500;
    // Under steady sending, reads overlap, and one answering after a newer one put the older list
    // back (for good, when no change followed).
    const newest = newestOnly();
    async function refresh() {
      const current = newest();
      let messages, events;
      try {
        [messages, events] = await Promise.all([
          api("GET", `/_emulator/messages?limit=${CAP}`).then((d) => d.messages || []),
          api("GET", `/_emulator/email-events?limit=${CAP}`).then((d) => d.email_events || []).catch(() => null),
        ]);
        if (!current()) return;
        errors.textContent = "";
      } catch (error) { if (current()) fail(errors, error); return; }
      messages = messages.slice().reverse();
      keepFocus(messagesBox, () => fill(messagesBox, capNote(messages.length, CAP, "emails"), messages.length ? table([
        { label: "Sent", render: (m) => dateTime(m.created_at) },
        { label: "To", render: (m) => h("strong", {}, (m.to && m.to.Email) || "?"), class: "wrap" },
        { label: "Subject", render: (m) => m.subject || "", class: "wrap" },
        { label: "MessageID", render: (m) => h("code", {}, String(m.MessageID)) },
        { label: "Status", render: (m) => badge(m.status || "?", m.status === "bounced" || m.status === "blocked" ? "bad" : m.status === "opened" || m.status === "clicked" ? "ok" : "info") },
        { label: "Events", render: eventList },
        { label: "Simulate", render: (m) => h("div", { class: "row", role: "group", "aria-label": `Simulate events for message ${m.MessageID}` },
          ACTIONS.map(([event, label]) => h("button", { type: "button", class: "small", onclick: () => emit(m, event) }, label))) },
      ], messages, { label: "Messages", rowAttrs: (m) => ({ "data-message-id": String(m.MessageID), "data-to": (m.to && m.to.Email) || "" }) })
        : h("p", { class: "empty" }, "No email sent yet. Send one with POST /v3.1/send.")));
      if (events === null) {
        fill(eventsBox, h("p", { class: "empty" }, "The email-events feed is not available on this server."));
      } else {
        events = events.slice().reverse();
        keepFocus(eventsBox, () => fill(eventsBox, capNote(events.length, CAP, "email events"), events.length ? table([
          { label: "Time", render: (e) => dateTime(e.at || (typeof e.time === "number" ? new Date(e.time * 1000).toISOString() : e.time)) },
          { label: "Event", render: (e) => badge(e.event || (e.payload && e.payload.event) || "?", "type") },
          { label: "Email", render: (e) => e.email || (e.payload && e.payload.email) || "", class: "wrap" },
          { label: "MessageID", render: (e) => h("code", {}, String(e.MessageID || (e.payload && e.payload.MessageID) || "")) },
          { label: "Webhook", render: (e) => statusText(e.webhook ?? e.webhook_status) },
          { label: "To Segment", render: (e) => statusText(e.segment ?? e.segment_status ?? e.forward) },
          { label: "Payload", render: (e) => h("details", {}, h("summary", {}, "JSON"), h("pre", {}, pretty(e))) },
        ], events, { label: "Email events" }) : h("p", { class: "empty" }, "No email events yet.")));
      }
    }

    function statusText(value) {
      if (value === undefined || value === null) return "—";
      if (typeof value === "string") value = { state: value };
      const state = String(value.state ?? "?");
      const tone = /sent|deliver|forwarded$|ok|success/i.test(state) && !/not_/.test(state) ? "ok"
        : /fail|error|dead/i.test(state) ? "bad" : /retry|pending|queued/i.test(state) ? "warn" : "";
      const attempts = Array.isArray(value.attempts) ? value.attempts.length : 0;
      return h("div", {}, badge(state.replace(/_/g, " "), tone),
        attempts ? h("span", { class: "hint" }, ` ${attempts} attempt${attempts > 1 ? "s" : ""}`) : null,
        value.reason ? h("div", { class: "hint" }, value.reason) : null);
    }

    fill(main, 
      h("h1", {}, "Messages"),
      h("p", { class: "lede" }, "Emails accepted by the Send API. The buttons act as the recipient: each records an email event, fires webhooks and, when switched on in App Connections, sends the matching track call to Segment."),
      errors, messagesBox,
      h("h2", {}, "Email events"), eventsBox);
    await refresh();
    onChange = refresh;
  }

  // -------------------------------------------------------------------------------- boot
  const views = {
    "/": [viewAccount, "Account"],
    "/app-connections": [viewAppConnections, "App Connections"],
    "/contacts": [viewContacts, "Contacts"],
    "/messages": [viewMessages, "Messages"],
  };

  async function boot() {
    const [view, title] = currentView(views);
    document.title = `${title} · segjet · fake Mailjet`;
    try { info = await api("GET", "/_emulator/dashboard/info"); } catch { /* links only */ }
    if (info.segment_url) document.getElementById("other-dashboard").href = withToken(`${info.segment_url}/`);
    subscribe("/_emulator/stream", debounce(() => onChange(), 150));
    try { await view(); } catch (error) { fill(main, h("h1", {}, title), h("p", { class: "alert bad", role: "alert" }, String(error.message || error))); }
    document.body.dataset.ready = "true";
  }
  boot();
})();
