"""The scripted round trip, written once and used by `segjet demo`, `segjet check` and the tests.

identify → contacts in the list → "Order Completed" → an Engage audience syncs `true` → the
clock moves 31 days → it syncs `false` → an email goes out → open and click → Email events
arrive in Segment with the user's userId. After each hop the scenario checks the state on both
sides and validates every payload that crossed the hop against its contract, and records one
trace per user linked by Segment `messageId`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
from faker import Faker
from segment.analytics.request import APIError

import contracts

from .client import SegjetClient, SegjetHTTPError, SegjetTimeout, path_segment
from .client import checked as succeeded  # `checked` names the hops' count of payloads checked

AUDIENCE_NAME = "Order Completed Last 30 Days"
AUDIENCE_KEY = "order_completed_last_30days"
# The README's --config example, so a stack started with it passes the check (orders are over 10).
AUDIENCE_RULE = {"event": "Order Completed", "within": "30d", "at_least": 1, "where": {"property": "revenue", "gt": 10}}
EMAIL_EVENTS = {
    "Email Delivered": "segment.email_delivered",
    "Email Opened": "segment.email_opened",
    "Email Link Clicked": "segment.email_link_clicked",
}
LINK = "https://shop.segjet.test/offer"
WRITE_KEY_HINT = ": is --write-key the one `segjet up` was given?"
MAILJET_TILE = "/_emulator/destinations/mailjet"
LIST_ID_HINT = "; or give segjet check the list with --list-id"
# The server's 401 names the headers a script sends; a `segjet check` user passes a flag instead.
CONTROL_TOKEN_HINT = (
    ": the servers were started with a control token; give segjet check the same one"
    " (--control-token T or $SEGJET_CONTROL_TOKEN)"
)


def control_token_hint(exc: BaseException) -> str:
    """CONTROL_TOKEN_HINT when `exc` is a control call refused for its token (401), else ""."""
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401 \
            and exc.request.url.path.startswith("/_emulator/"):
        return CONTROL_TOKEN_HINT
    return ""


def _http_error_text(exc: BaseException) -> str:
    """`exc`'s message, led by the request it met when the message does not name it: httpx's
    transport errors say only "[Errno 111] Connection refused"; its status errors and requests' name it."""
    if isinstance(exc, httpx.RequestError):
        return f"{exc.request.method} {exc.request.url}: {exc}"
    return str(exc)


class HopFailed(Exception):
    """A hop's state or contract check failed; `detail` says where (hop, payload path, rule)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class HopResult:
    name: str
    ok: bool
    detail: str
    payloads_checked: int = 0
    seconds: float = 0.0
    skipped: bool = False  # not run because an earlier hop failed (`ok` is False too)


@dataclass
class User:
    user_id: str
    email: str
    traits: dict[str, Any]
    orders: bool
    trace: list[dict[str, Any]] = field(default_factory=list)

    def note(self, hop: str, what: str, message_id: str | None = None) -> None:
        self.trace.append({"hop": hop, "what": what, "messageId": message_id})


def _email_id(message: dict[str, Any]) -> Any:
    properties = message.get("properties")
    return properties.get("email_id") if isinstance(properties, dict) else None


def _expected_properties(traits: dict[str, Any], user_id: str) -> dict[str, Any]:
    # What the destination sets (DESIGN §4 "Destination"): nested objects flattened with "_".
    expected: dict[str, Any] = {"segment_user_id": user_id}
    for name, value in traits.items():
        if isinstance(value, dict):
            expected.update({f"{name}_{inner}": inner_value for inner, inner_value in value.items()})
        elif name not in ("email", "name"):
            expected[name] = value
    return expected


def make_users(seed: int, count: int) -> list[User]:
    fake = Faker()
    fake.seed_instance(seed)
    users = []
    for index in range(count):
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}.{index}@{fake.free_email_domain()}".lower()
        traits = {
            "email": email,
            "firstName": first,
            "lastName": last,
            "plan": fake.random_element(["free", "pro", "enterprise"]),
            "logins": fake.random_int(1, 50),
            "address": {"city": fake.city(), "country": fake.country_code()},
        }
        users.append(User(f"user-{seed}-{index}", email, traits, orders=index % 2 == 0))
    return users


def check_contract(hop: str, name: str, payload: Any) -> None:
    violations = contracts.validate(name, payload)
    if violations:
        first = violations[0]
        raise HopFailed(f"{hop}: payload breaks contract {name} at {first.path} ({first.rule}): {first.message}")


class Scenario:
    """Runs the hops in order against a live stack; stops at the first failure."""

    def __init__(self, client: SegjetClient, seed: int = 0, user_count: int = 3, timeout: float = 15) -> None:
        self.client = client
        self.users = make_users(seed, user_count)
        self.timeout = timeout
        self.message_ids: dict[str, dict[str, int]] = {}
        # What the stack held before this run's traffic, so that a check with --no-reset (or a second
        # run on the same stack) looks only at what this run caused: Engage identify calls stored
        # before the orders, and the Mailjet journal's last entry before each hop's requests.
        self._engage_before: set[str] = set()
        self._journal_marks: dict[str, int] = {}

    def hops(self) -> list[tuple[str, Callable[[], tuple[str, int]]]]:
        return [
            ("App Connections: write key pasted, email events on", self.connect_mailjet_to_segment),
            ("identify → fake Segment", self.identify),
            ("Segment → destination → Mailjet contacts", self.contacts_in_list),
            ("Order Completed → fake Segment", self.order_events),
            ("Engage audience syncs true", self.audience_true),
            ("clock +31d → audience syncs false", self.audience_false),
            ("email sent through Send API v3.1", self.send_emails),
            ("open and click → Email events in Segment", self.email_events),
        ]

    def run(self, on_hop: Callable[[HopResult], None] = lambda result: None) -> list[HopResult]:
        """Run every hop in order, calling `on_hop` after each; after the first failure the rest are
        answered as skipped, so reports tell hops that never ran from hops that failed."""
        results: list[HopResult] = []
        for name, hop in self.hops():
            if results and not results[-1].ok:
                result = HopResult(name, False, "not run: an earlier hop failed", skipped=True)
            else:
                result = self._run_hop(name, hop)
            results.append(result)
            on_hop(result)
        return results

    @staticmethod
    def _run_hop(name: str, hop: Callable[[], tuple[str, int]]) -> HopResult:
        started = time.monotonic()
        try:
            detail, checked = hop()
            return HopResult(name, True, detail, checked, time.monotonic() - started)
        except HopFailed as exc:
            return HopResult(name, False, exc.detail, 0, time.monotonic() - started)
        except (httpx.HTTPError, OSError, APIError) as exc:
            # A stack that answers oddly or not at all is a failed hop, not a crash of the checker
            # (identify and track go through analytics-python: its APIError, and requests' errors,
            # which are OSErrors).
            return HopResult(
                name, False, f"{name}: HTTP error: {_http_error_text(exc)}{control_token_hint(exc)}", 0,
                time.monotonic() - started,
            )
        except json.JSONDecodeError as exc:
            # A 2xx that is no JSON: most likely another web app on the port the check was given.
            return HopResult(
                name, False, f"{name}: a server answered something that is not JSON ({exc}): is each URL a segjet"
                " server's?", 0, time.monotonic() - started,
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            # A 2xx JSON answer without the fields a segjet server answers (another app's JSON API on
            # that port: `{}` to every call): a failed hop, as a non-JSON answer is, not a traceback.
            return HopResult(
                name, False, f"{name}: a server answered something that is not what a segjet server answers"
                f" ({type(exc).__name__}: {exc}): is each URL a segjet server's?", 0, time.monotonic() - started,
            )

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        return {user.user_id: user.trace for user in self.users}

    # -- hops --------------------------------------------------------------------------------
    def connect_mailjet_to_segment(self) -> tuple[str, int]:
        settings = self.client.mailjet_settings(
            {"writeKey": self.client.write_key, "sendEvents": True, "segmentUrl": self.client.segment_url}
        )
        if not settings.get("sendEvents") or settings.get("writeKey") != self.client.write_key:
            raise HopFailed(f"App Connections did not keep the write key and switch: {settings}")
        return f"Mailjet sends email events to {self.client.segment_url}", 0

    def identify(self) -> tuple[str, int]:
        self._journal_marks["/managecontact"] = self._journal_last_id()  # the deliveries' calls come next
        checked = 0
        for user in self.users:
            message_id = self.client.identify(user.user_id, user.traits)
            try:
                stored = self._wait_event(f"identify of {user.user_id}", message_id=message_id)
            except SegjetHTTPError as exc:
                if exc.response.status_code != 404:
                    raise
                # The run's first call to the write key's workspace: 404 when no source has the key.
                raise HopFailed(f"identify of {user.user_id}: {exc}{WRITE_KEY_HINT}") from exc
            if stored.get("violations"):
                raise HopFailed(f"identify of {user.user_id}: Segment recorded violations {stored['violations']}")
            check_contract("identify", "segment.identify", stored)
            user.note("identify", "accepted by the fake Segment", stored["messageId"])
            checked += 1
        return f"{len(self.users)} identify calls accepted", checked

    def contacts_in_list(self) -> tuple[str, int]:
        list_id = self._contacts_list_id()
        checked = 0
        for user in self.users:
            identify_id = user.trace[0]["messageId"]
            delivery = self._wait_delivery(identify_id)
            for attempt in delivery["attempts"]:
                check_contract("Segment → destination", "destination.request", attempt["request"]["body"])
                checked += 1
            check_contract("destination → Segment", "destination.response", delivery["attempts"][-1]["response"])
            checked += 1
            user.note("delivery", f"delivered to the destination in {len(delivery['attempts'])} attempt(s)", identify_id)
            expected = _expected_properties(user.traits, user.user_id)
            try:
                self.client.wait_for_contact(user.email, expected, timeout=self.timeout)
            except SegjetTimeout as exc:
                # Its last sight: the properties found, and what became of the identify.
                raise HopFailed(f"Mailjet contact {user.email}: expected {expected}; last seen: {exc.last_seen}") from exc
            if not self._in_list(user.email, list_id):
                raise HopFailed(
                    f"Mailjet contact {user.email} is not subscribed to list {list_id}{self._no_such_list(list_id)}"
                )
            user.note("mailjet", f"contact in list {list_id} with {len(expected)} properties", identify_id)
        checked += self._check_journal("destination → Mailjet", "POST", "/managecontact", "mailjet.managecontact")
        return f"{len(self.users)} contacts in list {list_id} with their properties", checked

    def order_events(self) -> tuple[str, int]:
        self._engage_before = {message["messageId"] for message in self._engage_identifies()}
        buyers = [user for user in self.users if user.orders]
        for user in buyers:
            message_id = self.client.track(user.user_id, "Order Completed", {"revenue": 42.5, "currency": "USD"})
            stored = self._wait_event(f"Order Completed of {user.user_id}", message_id=message_id)
            check_contract("track", "segment.track", stored)
            user.note("track", "Order Completed accepted", stored["messageId"])
        return f"{len(buyers)} of {len(self.users)} users completed an order", len(buyers)

    def audience_true(self) -> tuple[str, int]:
        # The audience may already exist: from `segjet up --config` (reset keeps those) or a check
        # run with --no-reset before. The same rule is reused; another rule would change the outcome.
        existing = {a["key"]: a for a in self.client.segment("GET", "/_emulator/engage/audiences")["audiences"]}
        if AUDIENCE_KEY in existing:
            rule = existing[AUDIENCE_KEY]["rule"]
            if rule != AUDIENCE_RULE:
                # It may come from the control API (a reset drops it) or from --config (a reset redefines it).
                raise HopFailed(
                    f"the fake Segment already has audience {AUDIENCE_KEY!r} with rule {rule}, and the check "
                    f"needs {AUDIENCE_RULE}: remove it with `DELETE /_emulator/engage/audiences/{AUDIENCE_KEY}`"
                    " (in the --write-key's workspace), or run the check without --no-reset, whose reset drops"
                    " what the control API defined; one from `segjet up --config` comes back at each reset:"
                    " start `segjet up` without that audience in --config, or with this rule"
                )
        else:
            key = self.client.define_audience(AUDIENCE_NAME, AUDIENCE_RULE)
            if key != AUDIENCE_KEY:
                raise HopFailed(f"audience key: expected {AUDIENCE_KEY!r}, Segment made {key!r}")
        return self._sync_and_expect(True, "audience")

    def audience_false(self) -> tuple[str, int]:
        self.client.advance_clock("31d")
        return self._sync_and_expect(False, "audience exit")

    def send_emails(self) -> tuple[str, int]:
        self._journal_marks["/v3.1/send"] = self._journal_last_id()
        for user in self.users:
            html = f'<p>Hello {user.traits["firstName"]}, <a href="{LINK}">see the offer</a></p>'
            message_id = self.client.send_email(user.email, "Your offer", html)
            user.note("email", f"message {message_id} sent")
            self.message_ids[user.user_id] = {"MessageID": message_id}
        checked = self._check_journal("Send API v3.1", "POST", "/v3.1/send", "mailjet.send")
        return f"{len(self.users)} emails sent", checked

    def email_events(self) -> tuple[str, int]:
        checked = arrived = 0  # payloads checked (Mailjet's events and Segment's calls); calls arrived
        for user in self.users:
            message_id = self.message_ids[user.user_id]["MessageID"]
            self.client.emit_email_event(message_id, "open")
            self.client.emit_email_event(message_id, "click", url=LINK)
            for record in self.client.mailjet_email_events(message_id):
                check_contract("Mailjet event", f"mailjet.event.{record['event']}", record["payload"])
                checked += 1
            email_id = str(message_id)
            for event, contract in EMAIL_EVENTS.items():
                # This message's event: an earlier run's for the same user (--no-reset) must not stand in for it.
                stored = self._wait_event(
                    f"{event} of {user.user_id}", lambda message, wanted=email_id: _email_id(message) == wanted,
                    event=event, user_id=user.user_id,
                )
                check_contract(f"Mailjet → Segment ({event})", contract, stored)
                user.note("email event", f"{event} arrived in Segment", stored["messageId"])
                checked += 1
                arrived += 1
        return f"{arrived} email events arrived in Segment with the users' userId", checked

    # -- helpers -----------------------------------------------------------------------------
    def _sync_and_expect(self, member_value: bool, hop: str) -> tuple[str, int]:
        # The scheduled sync may already have run while the clock moved; either way the identify
        # calls Engage sent are stored under its source, so the check reads them there.
        self.client.sync_engage()
        run_users = {user.user_id for user in self.users}
        sent_to = {
            message["userId"]: message
            for message in self._engage_identifies()
            if message["messageId"] not in self._engage_before and message.get("userId") in run_users
            and message.get("traits", {}).get(AUDIENCE_KEY) is member_value
        }
        expected = {user.user_id for user in self.users if user.orders}
        if set(sent_to) != expected:
            raise HopFailed(f"{hop} sync: expected identify calls for {sorted(expected)}, sent {sorted(sent_to)}")
        for user in self.users:
            if user.user_id not in sent_to:
                continue
            message = sent_to[user.user_id]
            check_contract(f"{hop} sync", "segment.engage_audience_identify", message)
            self._wait_delivery(message["messageId"])
            try:
                self.client.wait_for_contact(user.email, {AUDIENCE_KEY: member_value}, timeout=self.timeout)
            except SegjetTimeout as exc:
                raise HopFailed(f"{hop}: Mailjet contact {user.email} never got {AUDIENCE_KEY}={member_value}") from exc
            user.note("engage", f"{AUDIENCE_KEY}={member_value} synced to Mailjet", message["messageId"])
        calls = "identify call" if len(sent_to) == 1 else "identify calls"
        return f"{len(sent_to)} {calls} with {AUDIENCE_KEY}={str(member_value).lower()}", len(sent_to)

    def _engage_identifies(self) -> list[dict[str, Any]]:
        return self.client.events(source="Engage", type="identify", limit=10_000)

    def _journal_last_id(self) -> int:
        newest = self.client.mailjet_requests(limit=1)
        return newest[-1]["id"] if newest else 0

    def _check_journal(self, hop: str, method: str, path: str, contract_prefix: str) -> int:
        """Validate each request and response of the Mailjet journal entries that crossed this hop:
        calls to `path` itself (the journal's filter is a fragment: `/managecontact` is also in
        `/managecontactslists`) made since the hop began."""
        since = self._journal_marks.get(path, 0)
        journal = self.client.mailjet_journal(method=method, path=path)
        entries = [
            entry for entry in journal["requests"]
            if entry["id"] > since and entry["path"].lower().endswith(path.lower())
        ]
        if not entries:
            dropped = journal.get("dropped") or 0
            why = (f" (it keeps the newest {journal.get('capacity')} requests and has dropped {dropped}: the"
                   " hop's may be among them; see --journal-capacity)") if dropped else ""
            raise HopFailed(f"{hop}: the fake Mailjet journal shows no {method} {path}{why}")
        for entry in entries:
            check_contract(hop, f"{contract_prefix}.request", entry["body"])
            if entry["status"] < 300:
                check_contract(hop, f"{contract_prefix}.response", entry["response"])
        return 2 * len(entries)

    def _wait_event(
        self, what: str, match: Callable[[dict[str, Any]], bool] | None = None, **filters: str
    ) -> dict[str, Any]:
        """The newest stored message matching `filters` (as `SegjetClient.events`) and `match`, which
        must be accepted."""
        def probe() -> dict[str, Any] | None:
            found = self.client.events(limit=1 if match is None else 10_000, **filters)
            found = [message for message in found if match is None or match(message)]
            return found[-1] if found else None

        try:
            stored = self.client.wait_until(probe, self.timeout, what)
        except SegjetTimeout as exc:
            raise HopFailed(f"{what} never reached the fake Segment") from exc
        if stored["status"] != "accepted":
            # Stored all the same, so only the status tells a discarded message from a delivered one.
            reason = stored.get("discard_reason")
            hint = WRITE_KEY_HINT if reason == "unknown_write_key" else ""
            raise HopFailed(f"{what} was stored discarded, not accepted: {reason}{hint}")
        return stored

    def _wait_delivery(self, message_id: str) -> dict[str, Any]:
        # What the last probe read, for the timeout message (no extra request).
        seen: list[list[dict[str, Any]]] = [[]]

        def probe() -> dict[str, Any] | None:
            seen[0] = records = self.client.deliveries(message_id=message_id)
            final = [r for r in records if r["state"] in ("delivered", "failed", "skipped")]
            return final[-1] if final else None

        try:
            record = self.client.wait_until(probe, self.timeout, f"delivery of {message_id}")
        except SegjetTimeout as exc:
            if not seen[0]:
                raise HopFailed(
                    f"message {message_id} was never delivered to the Mailjet destination "
                    "(is the destination enabled in the fake Segment?)"
                ) from exc
            # A record still queued or retrying: what its attempts met says more than any hint.
            newest = seen[0][-1]
            reason = f": {newest['reason']}" if newest.get("reason") else ""
            raise HopFailed(
                f"message {message_id} was not delivered to the Mailjet destination within {self.timeout:g}s: "
                f"its delivery is {newest['state']} after {len(newest['attempts'])} attempt(s){reason}"
            ) from exc
        if record["state"] != "delivered":
            raise HopFailed(f"message {message_id} was {record['state']}: {record.get('reason')}")
        return record

    def _contacts_list_id(self) -> int:
        """The client's list, else the one the Mailjet tile of the write key's workspace writes to: where
        the destination puts the contacts (`segjet up --list-id 5`, or a tile changed since)."""
        if self.client.list_id is not None:
            return self.client.list_id
        what = "cannot read the list the fake Segment's Mailjet tile writes to"
        try:
            tile = self.client.segment("GET", MAILJET_TILE)
        except httpx.HTTPError as exc:
            raise HopFailed(f"{what}: {exc}{control_token_hint(exc)}{LIST_ID_HINT}") from exc
        try:
            return int(tile["settings"]["listId"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HopFailed(f"{what}: GET {MAILJET_TILE} answered {tile!r}{LIST_ID_HINT}") from exc

    def _no_such_list(self, list_id: int) -> str:
        """Why no contact is in list `list_id` when the account has no such list, else "". A tile's list
        that does not exist fails the deliveries first, so this is mostly a --list-id mistyped or of another account."""
        if self.client.mailjet("GET", f"/v3/REST/contactslist/{list_id}").status_code != 404:
            return ""
        setting = "--list-id" if self.client.list_id is not None else f"the List ID setting of {MAILJET_TILE}"
        return (f": the fake Mailjet account {self.client.mailjet_api_key} has no list {list_id}; check {setting}"
                " (GET /v3/REST/contactslist shows its lists)")

    def _in_list(self, email: str, list_id: int) -> bool:
        contact = self.client.mailjet("GET", f"/v3/REST/contact/{path_segment(email)}")
        if contact.status_code != 200:
            return False
        contact_id = contact.json()["Data"][0]["ID"]
        recipients = succeeded(self.client.mailjet(
            "GET", "/v3/REST/listrecipient", params={"ContactsList": list_id, "Contact": contact_id}
        )).json()["Data"]
        return any(not recipient.get("IsUnsubscribed") for recipient in recipients)
