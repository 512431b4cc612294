"""One user's journey across both fakes, assembled from their control APIs.

A pure HTTP client of `GET /_emulator/...` on the fake Segment and the fake Mailjet (control
requests are not journaled, so building a trace leaves no mark in either journal). The Segment
side serves it as `GET /_emulator/dashboard/trace?user=`; the browser never talks to Mailjet.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from typing import Any

import aiohttp

from destination.mapping import MappingError, find_email

from ..common.clock import parse_iso
from ..common.http import outgoing_session
from ..segment.models import VIEW_KEYS
from .contracts_for import check, contract_names, first_known, segment_contract

LIMIT = 10_000
# Order of steps that share a timestamp (Mailjet times have whole seconds only).
PHASES = {
    "segment": 0,
    "engage": 0,
    "delivery": 1,
    "mailjet-call": 2,
    "email": 3,
    "email-event": 4,
    "segment-email-event": 5,
}


class Reads:
    """What the trace could not read whole: the sources that answered LIMIT records (the newest ones:
    older records, if any, are not in the trace), those whose capped store has dropped its oldest
    records (their answer's `dropped`, e.g. `--journal-capacity`), and those not read at all.

    Said in the trace (`truncated`: any of the three, `truncatedSources`, `droppedSources`,
    `unreadSources`; `readLimit` is LIMIT): a step missing from a partial read looked like a hop
    lost on the way, where it was only not read. A source of exactly LIMIT records is said to be
    cut too: the control APIs answer no total.
    """

    def __init__(self) -> None:
        self.truncated: list[str] = []
        self.dropped: list[str] = []
        self.unread: list[str] = []

    def to_json(self) -> dict[str, Any]:
        return {"truncated": bool(self.truncated or self.dropped or self.unread), "truncatedSources": self.truncated,
                "droppedSources": self.dropped, "unreadSources": self.unread, "readLimit": LIMIT}


async def _get(
    http: aiohttp.ClientSession, url: str, key: str, params: dict[str, Any] | None = None,
    source: str | None = None, reads: Reads | None = None,
) -> list[Any]:
    """`key` of the JSON answer, or [] when that control route does not exist (yet) or failed; with
    `reads`, a failure, an answer of `params["limit"]` records (there may be older ones) and one
    whose store has `dropped` records are noted there under `source`."""
    value: Any = None
    body: Any = None
    try:
        async with http.get(url, params=params) as response:
            body = json.loads(await response.read()) if response.status == 200 else None
        value = body.get(key) if isinstance(body, dict) else None
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        pass
    if not isinstance(value, list):
        if reads is not None and source is not None:
            reads.unread.append(source)
        return []
    limit = (params or {}).get("limit")
    if reads is not None and source is not None:
        if isinstance(limit, int) and len(value) >= limit:
            reads.truncated.append(source)
        dropped = body.get("dropped") if isinstance(body, dict) else None
        if isinstance(dropped, int) and dropped > 0:
            reads.dropped.append(source)
    return value


async def _configured_api_key(http: aiohttp.ClientSession, mailjet_url: str) -> str | None:
    """The API key of the Mailjet account the dashboard shows (the configured one), None when unknown."""
    try:
        async with http.get(f"{mailjet_url}/_emulator/dashboard/info") as response:
            body = json.loads(await response.read()) if response.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return None
    api_key = body.get("apiKey") if isinstance(body, dict) else None
    return api_key if isinstance(api_key, str) and api_key else None


def _time_key(value: Any) -> datetime:
    """An ISO time from a control API; a step without one (None) sorts last."""
    try:
        return parse_iso(value)
    except (ValueError, TypeError):
        return datetime.max.replace(tzinfo=timezone.utc)


def _when(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _email_of(message: dict[str, Any]) -> str | None:
    """The address the destination reads from a call: the contact it writes to. (A discarded event's
    fields may be any JSON value: MappingError, no address.)"""
    try:
        return find_email(message)
    except MappingError:
        return None


def _same_email(value: Any, email: str | None) -> bool:
    # Mailjet matches emails case-insensitively (README, Fidelity), by their lower case as the fake
    # Mailjet's contacts do (not casefold: "Straße" and "strasse" are two contacts), so the trace does too.
    return isinstance(value, str) and email is not None and value.lower() == email.lower()


def _names(value: Any, emails: tuple[str, ...], user_id: str | None, path: str = "") -> bool:
    """Does `value` (any JSON value) hold one of the user's emails or their userId, or a segment of
    `path` an email?

    Whole strings, not substrings: `u1` is inside `u10`, `ada@example.co` inside `ada@example.com`,
    and neither is that user. A Mailjet path names a contact by email or Mailjet id, never by the
    Segment userId: a userId "1" is not `/contactslist/1/managecontact`.
    """
    lowered = {email.lower() for email in emails}
    # Lower-casing never shortens a string (each character becomes one or more), so a longer one is
    # no email of theirs: bodies hold long strings, and lower-casing each was most of a journal's walk.
    longest = max(map(len, lowered), default=0)
    if any(part.lower() in lowered for part in path.split("/")):
        return True
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and (
            (len(item) <= longest and item.lower() in lowered) or (user_id is not None and item == user_id)
        ):
            return True
    return False


def _shown(value: Any) -> str:
    """A value for a title: a string as it is, any other JSON value (a discarded call's `event` may
    be an object) as JSON, not as Python's repr of it."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _step(kind: str, at: Any, title: str, summary: str, payload: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "at": _when(at), "title": title, "summary": summary, "payload": payload, **extra}


async def build_trace(
    segment_url: str, mailjet_url: str, user: str, timeout: float = 10, control_token: str | None = None
) -> dict[str, Any]:
    """`{"user", "userId", "email", "steps": [...], "contact": {...}|None, "truncated",
    "truncatedSources", "droppedSources", "unreadSources", "readLimit"}`, steps oldest first
    (`Reads` for the last five)."""
    user = user.strip()
    reads = Reads()
    # The control token the browser presented, passed on: both servers share it in a bundle.
    # Only a printable ASCII token can be a header, and only such a token can be the bundle's
    # (cli.py): another (a control character made every call fail, and the trace empty), presented
    # to an open control API, is not needed to read it.
    usable = control_token and control_token.isascii() and control_token.isprintable()
    headers = {"X-Segjet-Token": control_token} if usable else {}
    # The servers' outgoing session (aiohttp): never through the environment's HTTP(S)_PROXY
    # (trust_env is off), and `timeout` bounds connecting and each read, not the whole answer.
    session_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    async with outgoing_session(timeout=session_timeout, headers=headers) as http:
        events = await _get(http, f"{segment_url}/_emulator/events", "events", {"limit": LIMIT}, "Segment events", reads)
        user_id, email = await asyncio.to_thread(_identify_user, user, events)  # reads every event: off the loop
        deliveries = await _get(
            http, f"{segment_url}/_emulator/deliveries", "deliveries", {"limit": LIMIT}, "Segment deliveries", reads
        )
        # The journal holds every account's calls, the messages, events and contact read below the
        # configured account's only: a parallel job's account sending the same test user is not this trace.
        api_key = await _configured_api_key(http, mailjet_url)
        journal = await _get(http, f"{mailjet_url}/_emulator/requests", "requests",
                             {"limit": LIMIT, **({"apiKey": api_key} if api_key else {})}, "Mailjet API calls", reads)
        messages = await _get(http, f"{mailjet_url}/_emulator/messages", "messages", {"limit": LIMIT}, "Mailjet emails", reads)
        email_events = await _get(
            http, f"{mailjet_url}/_emulator/email-events", "email_events", {"limit": LIMIT}, "Mailjet email events", reads
        )
        contacts = (
            await _get(http, f"{mailjet_url}/_emulator/dashboard/contacts", "contacts", {"email": email}, "Mailjet contact", reads)
            if email else []
        )
    # Picking the user's records out of up to 10,000 of each source and checking each step takes
    # seconds of CPU on a busy stack: done off the event loop the three servers share, where it
    # held deliveries in flight past their timeout.
    steps = await asyncio.to_thread(_steps_of_user, user, user_id, email, events, deliveries, journal, messages, email_events)
    return {"user": user, "userId": user_id, "email": email, "steps": steps, "contact": contacts[0] if contacts else None,
            **reads.to_json()}


def _steps_of_user(
    user: str, user_id: str | None, email: str | None, events: list[dict[str, Any]], all_deliveries: list[dict[str, Any]],
    all_calls: list[dict[str, Any]], all_messages: list[dict[str, Any]], all_email_events: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The user's steps among the records the control APIs answered, oldest first."""
    # A tuple, not a set: a discarded event's userId or anonymousId may be any JSON value (a dict).
    ids = tuple(value for value in (user_id, email, user) if value)
    emails = _emails_of_user(email, user_id, events)
    # An anonymous visitor's calls (no userId) are the user's once an identify tied the two;
    # a call with another userId is another user's, even on the same device.
    linked = _linked_ids(ids, events)
    mine = [
        event for event in events
        if event.get("userId") in ids or event.get("anonymousId") in ids
        or (not event.get("userId") and event.get("anonymousId") in linked) or event.get("userId") in linked
        or any(_same_email(_email_of(event), address) for address in emails)
    ]
    message_ids = {event.get("messageId") for event in mine if isinstance(event.get("messageId"), str)}
    # When each message was accepted: a record never attempted (skipped, or queued) has no time
    # of its own, and stands at its message's. Only accepted messages have a record; a discarded
    # duplicate's messageId must not move it.
    received = {
        event["messageId"]: event.get("receivedAt") for event in reversed(mine)
        if event.get("messageId") in message_ids and event.get("status", "accepted") == "accepted"
    }
    deliveries = [record for record in all_deliveries if record.get("messageId") in message_ids]
    journal = _journal_of_user(all_calls, emails, user_id, deliveries)
    messages = [message for message in all_messages if _names(message.get("to"), emails, None)]
    email_events = [
        event for event in all_email_events if any(_same_email(event.get("email"), address) for address in emails)
    ]
    steps = (
        [_segment_step(event) for event in mine]
        + [step for record in deliveries for step in _delivery_steps(record, received.get(record.get("messageId")))]
        + [_journal_step(entry) for entry in journal]
        + [_message_step(message) for message in messages]
        + [_email_event_step(event) for event in email_events]
    )
    return in_order(steps)


def in_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`steps` oldest first: by the second, then within a second by phase (PHASES: Mailjet's times
    have whole seconds only); a delivery comes after its own message (an email event's track,
    forwarded by Mailjet, is delivered after the email event, not before the email was sent)."""
    # A sender's messageId can be any JSON value: only strings are looked up.
    def message_id(step: dict[str, Any]) -> str | None:
        found = step["payload"].get("messageId") if isinstance(step["payload"], dict) else None
        return found if isinstance(found, str) else None

    kind_of = {
        found: step["kind"] for step in steps
        if step["kind"] in ("segment", "engage", "segment-email-event") and (found := message_id(step)) is not None
    }

    def phase(step: dict[str, Any]) -> float:
        if step["kind"] == "delivery":
            found = message_id(step)
            own = kind_of.get(found) if found is not None else None
            return max(PHASES["delivery"], PHASES.get(own or "", 0) + 0.5)
        return PHASES.get(step["kind"], 9)

    return sorted(steps, key=lambda step: (_time_key(step["at"]).replace(microsecond=0), phase(step), _time_key(step["at"])))


def _journal_of_user(
    entries: list[dict[str, Any]], emails: tuple[str, ...], user_id: str | None, deliveries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Mailjet calls that name the user, and the property-definition calls (`/contactmetadata`,
    which name no one) made between the user's first delivery attempt and last call naming them."""
    if not emails and not user_id:
        return []
    named = [e for e in entries if _names([e.get("body"), e.get("response")], emails, user_id, str(e.get("path", "")))]
    starts = [attempt.get("at") for record in deliveries for attempt in record.get("attempts") or [] if attempt.get("at")]
    if not named or not starts:
        return named
    low, high = min(_time_key(at) for at in starts), max(_time_key(e.get("at")) for e in named)
    # A definition call that also names the user (a userId that is a property's name) is one step, not two.
    named_ids = {e.get("id") for e in named}
    shared = [
        {**e, "shared": True} for e in entries
        if "contactmetadata" in str(e.get("path", "")).lower() and low <= _time_key(e.get("at")) <= high
        and e.get("id") not in named_ids
    ]
    return sorted(named + shared, key=lambda e: e.get("id", 0))


def _identify_user(user: str, events: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(userId, email) for a userId or an email: the email is the one the user's latest identify
    gave (else the latest any call of theirs carries), not that of the latest call naming one: an
    "Email Delivered" track the Mailjet App Connection sends back names the address it went to,
    which may be the user's previous one."""
    user_id = email = None
    if "@" in user:
        email = user
        for event in events:
            address = _email_of(event)
            # A discarded call's userId may be any JSON value (`id_not_string`); only a string names a user.
            if _same_email(address, user) and isinstance(event.get("userId"), str) and event["userId"]:
                user_id = event["userId"]
                email = address  # as the user's calls spell it, not as it was searched for
    else:
        user_id = user
        identified = None
        for event in events:
            if event.get("userId") == user and _email_of(event):
                email = _email_of(event)
                if event.get("type") == "identify":
                    identified = email
        email = identified or email
    return user_id, email


def _emails_of_user(email: str | None, user_id: str | None, events: list[dict[str, Any]]) -> tuple[str, ...]:
    """`email` and every other address the user's calls carried (a user may change theirs): the
    emails sent to an earlier address, and its events, are still the user's."""
    found = {email.lower(): email} if email else {}
    for event in events:
        if user_id is not None and event.get("userId") == user_id and (other := _email_of(event)):
            found.setdefault(other.lower(), other)
    return tuple(found.values())


def _linked_ids(user_ids: tuple[Any, ...], events: list[dict[str, Any]]) -> tuple[str, ...]:
    """The anonymousIds Segment merges into the user: those the user's calls carried along with
    their userId, and the previousIds of their alias calls."""
    linked: list[str] = []
    for event in events:
        if event.get("userId") not in user_ids:
            continue
        for value in (event.get("anonymousId"), event.get("previousId") if event.get("type") == "alias" else None):
            if isinstance(value, str) and value and value not in linked and value not in user_ids:
                linked.append(value)
    return tuple(linked)


def _segment_step(event: dict[str, Any]) -> dict[str, Any]:
    call_type = _shown(event.get("type") or "?")
    wire = {key: value for key, value in event.items() if key not in VIEW_KEYS} | (event.get("call_fields") or {})
    verdict = check(segment_contract(wire), wire)
    personas = (event.get("context") or {}).get("personas") if isinstance(event.get("context"), dict) else None
    event_name = event.get("event")
    if isinstance(personas, dict):
        kind, title = "engage", f"Engage sync: identify ({_shown(personas.get('computation_key', '?'))})"
    elif call_type == "track" and isinstance(event_name, str) and event_name.startswith("Email "):
        kind, title = "segment-email-event", f"Segment received track “{event_name}”"
    else:
        shown = f" “{_shown(event_name)}”" if event_name is not None and event_name != "" else ""
        kind, title = "segment", f"Segment received {call_type}{shown}"
    status = event.get("status", "accepted")
    summary = f"messageId {event.get('messageId')} · {status}"
    if event.get("discard_reason"):
        summary += f" ({event['discard_reason']})"
    return _step(kind, event.get("receivedAt"), title, summary, wire, service="segment", status=status,
                 storedViolations=event.get("violations") or [], **verdict)


def _delivery_steps(record: dict[str, Any], received_at: Any = None) -> list[dict[str, Any]]:
    """One step per attempt; a record with none (skipped, or queued) is one step at its next
    attempt's time, else at `received_at`, its message's."""
    attempts = record.get("attempts") or []
    steps = []
    for number, attempt in enumerate(attempts, start=1):
        steps.append(_step(
            "delivery", attempt.get("at"),
            f"Delivery to Mailjet destination, attempt {number}",
            f"HTTP {attempt.get('status')} · record {record.get('state')}" + (f" · {record['reason']}" if record.get("reason") else ""),
            {"messageId": record.get("messageId"), "attempt": attempt},
            service="segment", state=record.get("state"),
            **(check("destination.response", attempt.get("response")) if _ok(attempt.get("status")) else _no_verdict()),
        ))
    if not attempts:
        steps.append(_step(
            "delivery", record.get("next_attempt_at") or received_at, "Delivery to Mailjet destination",
            f"{record.get('state')}" + (f" · {record['reason']}" if record.get("reason") else ""),
            record, service="segment", state=record.get("state"), **_no_verdict(),
        ))
    return steps


# (method, path pattern) → (request contract, response contract when 2xx, item contract of the response's Data)
_CALL_CONTRACTS: list[tuple[str, re.Pattern[str], str | None, str | None, str | None]] = [
    ("POST", re.compile(r"^/v3/rest/contactslist/[^/]+/managecontact$"), "mailjet.managecontact.request", "mailjet.managecontact.response", None),
    ("POST", re.compile(r"^/v3/rest/contactslist/[^/]+/managemanycontacts$"), "mailjet.managemanycontacts.request", None, None),
    ("POST", re.compile(r"^/v3/rest/contact/managemanycontacts$"), "mailjet.contact.managemanycontacts.request", None, None),
    ("POST", re.compile(r"^/v3/rest/contactmetadata$"), None, None, "mailjet.contactmetadata"),
    ("GET", re.compile(r"^/v3/rest/contactmetadata$"), None, None, "mailjet.contactmetadata"),
    ("GET", re.compile(r"^/v3/rest/contactdata/[^/]+$"), None, None, "mailjet.contactdata"),
    ("GET", re.compile(r"^/v3/rest/contact/[^/]+$"), None, None, "mailjet.contact"),
    ("POST", re.compile(r"^/v3.1/send$"), "mailjet.send.request", "mailjet.send.response", None),
]


def _journal_step(entry: dict[str, Any]) -> dict[str, Any]:
    path = str(entry.get("path", ""))
    method = str(entry.get("method", "")).upper()
    verdict = _call_verdict(method, path.lower(), entry.get("body"), entry.get("status"), entry.get("response"))
    title = f"Mailjet API {method} {path}" + (" (property definitions, not only this user's)" if entry.get("shared") else "")
    return _step("mailjet-call", entry.get("at"), title, f"HTTP {entry.get('status')}", entry, service="mailjet", **verdict)


def _call_verdict(method: str, path: str, body: Any, status: Any, response: Any) -> dict[str, Any]:
    """Request and response checked against their contracts; violations say which side broke."""
    for wanted_method, pattern, request_contract, response_contract, item_contract in _CALL_CONTRACTS:
        if method != wanted_method or not pattern.match(path):
            continue
        checks: list[tuple[str, str | None, Any]] = [("request", request_contract, body)]
        if _ok(status):
            checks.append(("response", response_contract, response))
            data = response.get("Data") if isinstance(response, dict) else None
            checks += [(f"response Data[{i}]", item_contract, item) for i, item in enumerate(data or []) if item_contract]
        elif isinstance(status, int) and status >= 400:
            checks.append(("response", first_known("mailjet.send.error" if "v3.1" in path else "mailjet.error"), response))
        names, violations = [], []
        for side, contract, payload in checks:
            if contract is None or contract not in contract_names():
                continue
            if contract not in names:
                names.append(contract)
            violations += [{**v, "path": f"{side} {v['path']}"} for v in check(contract, payload)["violations"]]
        return {"contract": " + ".join(names) or None, "violations": violations}
    return _no_verdict()


def _ok(status: Any) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _no_verdict() -> dict[str, Any]:
    return {"contract": None, "violations": []}


def _message_step(message: dict[str, Any]) -> dict[str, Any]:
    to = message.get("to") or {}
    return _step(
        "email", message.get("created_at"),
        f"Mailjet sent email “{message.get('subject', '')}”",
        f"MessageID {message.get('MessageID')} · to {to.get('Email', '?') if isinstance(to, dict) else to} · {message.get('status', '')}",
        message, service="mailjet", **_no_verdict(),
    )


def _email_event_step(event: dict[str, Any]) -> dict[str, Any]:
    name = event.get("event") or "?"
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else event
    verdict = check(first_known(f"mailjet.event.{name}"), payload)
    summary = f"MessageID {event.get('MessageID', payload.get('MessageID', '?'))}"
    for label, status in (("webhook", event.get("webhook")), ("to Segment", event.get("segment"))):
        if isinstance(status, dict):
            summary += f" · {label}: {status.get('state')}" + (f" ({status['reason']})" if status.get("reason") else "")
    return _step("email-event", event.get("at"), f"Mailjet email event “{name}”", summary, event, service="mailjet", **verdict)
