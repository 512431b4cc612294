"""No loss in the reverse direction: email events → webhooks and → the fake Segment, under faults.

300 emails (240 through Send v3.1, a campaign of 60 to a contact list, so that unsubscribes can
happen) meet a seeded recipient simulation (sent, open, click, spam, unsub, bounce). Meanwhile:
- the fake Segment answers `/v1/batch` with 503, 429, closes the connection, holds it until the
  forwarder gives up, or applies it and answers after the forwarder gave up (the at-least-once case);
- a local receiver answers the webhooks (Version 1 and Version 2) with 500, 429, 503, a 302, a 201,
  closes the connection, or answers 200 after Mailjet's timeout, for a share of the posts.
The virtual clock then runs every retry until nothing is pending.

Asserted (the product's rule: nothing accepted is lost, nothing duplicated):
- every event Mailjet recorded that the Segment source forwards is ACCEPTED by Segment exactly once,
  as the right track call; extra copies (a late answer's batch applied, then retried with the same
  messageIds) are stored as discarded `duplicate_message_id`, nothing else is discarded;
- every event reached its webhook at least once and its delivery record says delivered; for each
  post the record's attempts match, one for one, what the receiver answered.

Mailjet's timeouts (webhook 5 s, Segment 15 s) are shortened in-process so the held and late
answers cost about a second of real time each.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from mailjet_rest import Client as MailjetClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.bundle import BackgroundBundle
from emulator.common.server import serve_in_background
from emulator.config import BundleConfig
from emulator.mailjet import outbound
from emulator.mailjet.events import SEGMENT_EVENTS

from .polling import wait_for

TRANSACTIONAL = 240  # through /v3.1/send, 48 messages a call
CAMPAIGN = 60  # contacts of list 1, mailed by one campaign (unsub needs a list)
LINKS = ("https://shop.example.com/offer", "https://shop.example.com/help")
HTML = f'<p>Hi, <a href="{LINKS[0]}">the offer</a> or <a href="{LINKS[1]}">help</a></p>'
SIMULATION = {
    "open_rate": 0.6, "click_rate": 0.5, "bounce_rate": 0.1, "spam_rate": 0.1, "unsub_rate": 0.4,
    "delay": "10m", "seed": 5,
}
# The shortened timeouts: what a held or late answer costs in real time.
WEBHOOK_TIMEOUT = 1.5
SEGMENT_TIMEOUT = 1.0
SLOW_ANSWER_SECONDS = 2.0  # the receiver's late 200, beyond WEBHOOK_TIMEOUT
BATCH = "/v1/batch"
# Faults of the fake Segment. Their `times` add up to 10, SEGMENT_MAX_RETRIES: no batch can meet
# the 11 failures in a row that make the forwarder give up, whatever the batching (which depends
# on timing), so every batch must end delivered.
SEGMENT_FAULTS = [
    {"method": "POST", "path": BATCH, "action": "drop", "rate": 0.3, "times": 1, "seed": 25},
    {"method": "POST", "path": BATCH, "action": "timeout", "rate": 0.15, "times": 2, "seed": 21},
    # Applied by the fake Segment, answered after the forwarder gave up: its retry repeats the calls.
    {"method": "POST", "path": BATCH, "status": None, "delay_ms": 1500, "rate": 0.15, "times": 2, "seed": 22},
    {"method": "POST", "path": BATCH, "status": 503, "rate": 0.25, "times": 2, "seed": 23},
    {"method": "POST", "path": BATCH, "status": 429, "rate": 0.25, "times": 3, "seed": 24},
]
# The ids the rules above get, in order (fault-2, the held requests, is checked as any timed-out attempt).
DROP_RULE, LATE_RULE = "fault-1", "fault-3"
# Webhooks: Version 1 per type, Version 2 for the engagement events sharing one URL (mixed arrays).
WEBHOOKS = [
    ("sent", "/v1/sent", 1), ("open", "/v1/open", 1), ("bounce", "/v1/bounce", 1),
    ("click", "/v2/engage", 2), ("spam", "/v2/engage", 2), ("unsub", "/v2/engage", 2),
]
OK, CLOSE, SLOW = 200, "close", "slow"


def receiver_plan(path: str, body: Any) -> list[int | str]:
    """What the receiver answers the successive posts of one body before it answers 200: decided by
    the events it carries (not by arrival order, which depends on timing), so each run is the same."""
    events = sorted((payload["MessageID"], payload["event"]) for payload in (body if isinstance(body, list) else [body]))
    draw = int(hashlib.sha256(f"{path} {events}".encode()).hexdigest()[:8], 16) / 2**32
    for bound, answers in ((0.70, []), (0.80, [500]), (0.85, [302]), (0.89, [201]), (0.94, [429, 503]), (0.985, [CLOSE])):
        if draw < bound:
            return answers
    return [SLOW]


@dataclass
class Receiver:
    """The webhook endpoint: every post kept with what it was answered, by body."""

    answers: dict[str, list[int | str]] = field(default_factory=dict)  # body key → answers, in order
    bodies: dict[str, tuple[str, Any]] = field(default_factory=dict)  # body key → (path, body)

    async def endpoint(self, request: Request) -> Response:
        body = await request.json()
        key = request.url.path + " " + json.dumps(body, sort_keys=True)
        given = self.answers.setdefault(key, [])
        self.bodies[key] = (request.url.path, body)
        plan = receiver_plan(request.url.path, body)
        answer = plan[len(given)] if len(given) < len(plan) else OK
        given.append(answer)
        if answer == CLOSE:
            # No answer at all: the connection under the request goes (uvicorn's transport).
            request.receive.__self__.transport.close()  # type: ignore[attr-defined]
            return Response(status_code=204)  # never sent: uvicorn drops sends after a disconnect
        if answer == SLOW:
            await asyncio.sleep(SLOW_ANSWER_SECONDS)
            return JSONResponse({"ok": True})
        if answer == 302:
            return Response(status_code=302, headers={"location": "/elsewhere"})
        return JSONResponse({"ok": answer == OK}, status_code=int(answer))


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[dict[str, Any], Receiver, str]]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["POST"])])
    loop_thread, runner, urls = serve_in_background({"receiver": app})
    patch = pytest.MonkeyPatch()
    # Read by each attempt (module globals): the bundle runs in this process.
    patch.setattr(outbound, "WEBHOOK_TIMEOUT_SECONDS", WEBHOOK_TIMEOUT)
    patch.setattr(outbound, "SEGMENT_TIMEOUT_SECONDS", SEGMENT_TIMEOUT)
    config = BundleConfig(
        segment_port=0, mailjet_port=0, destination_port=0, seed=7, faults={"segment": SEGMENT_FAULTS}
    )
    try:
        with BackgroundBundle(config) as info:
            yield info, receiver, urls["receiver"]
    finally:
        patch.undo()
        loop_thread.run(runner.stop())
        loop_thread.close()


def mailjet(info: dict[str, Any], **kwargs: Any) -> MailjetClient:
    return MailjetClient(auth=(info["mailjet_api_key"], info["mailjet_secret_key"]), api_url=info["mailjet_url"] + "/", **kwargs)


def set_up(http: httpx.Client, info: dict[str, Any], receiver_url: str) -> None:
    client = mailjet(info)
    for event_type, path, version in WEBHOOKS:
        answer = client.eventcallbackurl.create(data={"EventType": event_type, "Url": receiver_url + path, "Version": version})
        assert answer.status_code == 201, answer.text
    connect = {"writeKey": info["write_key"], "sendEvents": True}
    http.put(f"{info['mailjet_url']}/_emulator/app-connections/segment", json=connect).raise_for_status()
    http.put(f"{info['mailjet_url']}/_emulator/simulation", json=SIMULATION).raise_for_status()
    for n in range(CAMPAIGN):
        answer = client.contactslist_managecontact.create(
            id=info["list_id"], data={"Email": f"member{n}@example.com", "Action": "addforce"}
        )
        assert answer.status_code == 201, answer.text


def send_emails(http: httpx.Client, info: dict[str, Any]) -> None:
    send = mailjet(info, version="v3.1").send
    for start in range(0, TRANSACTIONAL, 48):
        messages = [
            {"From": {"Email": "shop@example.com"}, "To": [{"Email": f"buyer{n}@example.com"}], "Subject": f"Order {n}", "HTMLPart": HTML}
            for n in range(start, start + 48)
        ]
        answer = send.create(data={"Messages": messages})
        assert answer.status_code == 200, answer.text
    campaign = {"list_id": info["list_id"], "subject": "News", "html": HTML}
    answer = http.post(f"{info['mailjet_url']}/_emulator/campaigns", json=campaign)
    assert answer.status_code == 201 and len(answer.json()["messages"]) == CAMPAIGN, answer.text


def email_events(http: httpx.Client, info: dict[str, Any]) -> list[dict[str, Any]]:
    answer = http.get(f"{info['mailjet_url']}/_emulator/email-events", params={"limit": 10_000})
    answer.raise_for_status()
    return answer.json()["email_events"]


def settled(rows: list[dict[str, Any]]) -> bool:
    """No webhook delivery and no Segment forward still waiting or in flight."""
    return not any(
        row["webhook"]["state"] in ("pending", "retrying") or row["segment"]["state"] in ("queued", "retrying")
        for row in rows
    )


def segment_in_flight(rows: list[dict[str, Any]], now: str) -> bool:
    """Whether a batch to Segment is being sent (or about to be): a retry due, or, none retrying,
    events queued (the head batch's first attempt)."""
    forwards = [row["segment"] for row in rows]
    retrying = [forward for forward in forwards if forward["state"] == "retrying"]
    if retrying:
        return any(forward["next_attempt_at"] <= now for forward in retrying)  # both ISO, UTC, ms
    return any(forward["state"] == "queued" for forward in forwards)


def run_to_the_end(http: httpx.Client, info: dict[str, Any]) -> list[dict[str, Any]]:
    """Move the clock a minute at a time, past every simulated event (two `delay`s after `sent`), then
    on until every delivery and forward has ended. Each move waits for the Segment batch in flight to
    be answered, so that the batching, and the faults each batch meets, do not depend on timing."""
    moves = 0
    # Only a guard against a hang; the loop ends when the records say so.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = http.get(f"{info['mailjet_url']}/_emulator/clock").json()["now"]
        rows = email_events(http, info)
        if moves >= 25 and settled(rows):
            return rows
        if not segment_in_flight(rows, now):
            http.post(f"{info['mailjet_url']}/_emulator/clock", json={"advance": "1m"}).raise_for_status()
            moves += 1
        time.sleep(0.02)  # polling interval, not a wait for something to happen
    pytest.fail("email events still pending after 60 s")


def expected_attempt(answer: int | str) -> tuple[int | None, str]:
    """The status and error prefix a delivery attempt records for what the receiver answered."""
    if answer == CLOSE:
        return None, "connection error"
    if answer == SLOW:
        return None, "timeout"
    return int(answer), ""


def explains(recorded: list[tuple[int | None, str]], answers: list[int | str], unanswered: int = 1) -> bool:
    """Is each delivery attempt recorded the receiver's answer to it, in order? On a loaded machine
    an answer sent after the sender's timeout (a 200, a 201, a close...) is recorded as the timeout
    it was (README: a 200 after the timeout counts as a failure), and retried; and an attempt can
    time out before the receiver read its body, leaving the receiver no answer for it: `unanswered`
    such attempts at most."""
    if not recorded:
        return not answers
    (status, error), rest = recorded[0], recorded[1:]
    timed_out = status is None and error.startswith("timeout")
    if answers:
        want_status, want_error = expected_attempt(answers[0])
        if (timed_out or (status == want_status and error.startswith(want_error))) and explains(rest, answers[1:], unanswered):
            return True
    return timed_out and unanswered > 0 and explains(rest, answers, unanswered - 1)


def journal_explains(attempts: list[dict[str, Any]], entries: list[dict[str, Any]]) -> bool:
    """Is each POST of one batch in the fake Segment's journal one of the batch's attempts? An attempt
    that was answered has its exchange, with that status; one that met a closed connection, the
    dropped request; one that timed out, any exchange (held, answered late by the fault, or on a
    loaded machine answered after the timeout) or, once a batch at most, none: the forwarder gave up
    before the fake Segment read the request (the loop busy meanwhile), which it then never saw."""
    unmatched = Counter(entry["fault"] if entry["status"] is None else entry["status"] for entry in entries)
    timeouts = 0
    for attempt in attempts:
        if (attempt["error"] or "").startswith("timeout"):
            timeouts += 1
            continue
        kind = attempt["status"] if attempt["status"] is not None else DROP_RULE
        if unmatched[kind] == 0:
            return False
        unmatched[kind] -= 1
    return sum(unmatched.values()) <= timeouts <= sum(unmatched.values()) + 1


def test_email_events_survive_failing_webhooks_and_a_faulty_segment(
    stack: tuple[dict[str, Any], Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    info, receiver, receiver_url = stack
    http = httpx.Client(timeout=30)
    set_up(http, info, receiver_url)
    send_emails(http, info)
    rows = run_to_the_end(http, info)
    # Each clock move made every event it made due happen before it answered (README, Control API).
    assert not [r.getMessage() for r in caplog.records if r.name == "emulator.common.clock" and r.levelno >= logging.WARNING]

    kinds = Counter(row["event"] for row in rows)
    assert set(kinds) == {"sent", "open", "click", "bounce", "spam", "unsub"}, kinds
    assert len(rows) > 500, kinds
    keys = [(row["MessageID"], row["event"]) for row in rows]
    assert len(keys) == len(set(keys))  # the simulation makes at most one event of a type per message

    # ---- Segment: each forwarded event accepted exactly once, as its track call.
    forwarded = {row["segment"]["messageId"]: row for row in rows}
    assert len(forwarded) == len(rows) and None not in forwarded
    for row in rows:
        assert row["segment"]["state"] == "delivered", row["segment"]
        assert row["segment"]["attempts"][-1]["status"] == 200
    # The attempts recorded are the POSTs the fake Segment got: its journal, where an exchange is
    # recorded once answered (a late answer's after its batch's retry: wait for them). A batch is
    # told by the messageIds it carries (two batches sent in one millisecond with the same outcomes
    # have equal attempt records).
    segment_faults = {rule["id"]: rule["fired"] for rule in http.get(f"{info['segment_url']}/_emulator/faults").json()["faults"]}
    assert all(segment_faults.values()), f"every kind of Segment fault must have happened: {segment_faults}"

    def whole_journal() -> list[dict[str, Any]] | None:
        answer = http.get(f"{info['segment_url']}/_emulator/requests", params={"path": BATCH, "limit": 10_000})
        entries: list[dict[str, Any]] = answer.json()["requests"]
        late = [entry for entry in entries if entry["fault"] == LATE_RULE]
        return entries if len(late) == segment_faults[LATE_RULE] else None

    entries = wait_for(whole_journal, "every late answer in the fake Segment's journal")
    assert {entry["status"] for entry in entries if entry["fault"] == LATE_RULE} == {200}
    assert {entry["status"] for entry in entries if entry["fault"] is None} == {200}
    posts: dict[frozenset[str], list[dict[str, Any]]] = {}
    for entry in entries:
        posts.setdefault(frozenset(call["messageId"] for call in entry["body"]["batch"]), []).append(entry)
    assert set().union(*posts) == set(forwarded)
    for ids, group in posts.items():
        attempts = forwarded[next(iter(ids))]["segment"]["attempts"]
        assert journal_explains(attempts, group), (attempts, [(entry["fault"], entry["status"]) for entry in group])
    stored = http.get(f"{info['segment_url']}/_emulator/events", params={"type": "track", "limit": 10_000}).json()["events"]
    accepted = [event for event in stored if event["status"] == "accepted"]
    assert Counter(event["messageId"] for event in accepted) == Counter(list(forwarded))  # each once
    for event in accepted:
        row = forwarded[event["messageId"]]
        assert event["event"] == SEGMENT_EVENTS[row["event"]]
        assert event["properties"]["email_id"] == str(row["MessageID"])
        assert event["anonymousId"] == row["email"]
    discarded = [event for event in stored if event["status"] != "accepted"]
    # The late answers were applied, then retried: their copies are the only ones discarded.
    assert {event["discard_reason"] for event in discarded} == {"duplicate_message_id"}
    copies = Counter(event["messageId"] for event in stored)
    for message_id, count in copies.items():
        # One copy from the delivered attempt, at most one more for each attempt that timed out.
        batch = forwarded[message_id]["segment"]["attempts"]
        assert count <= 1 + sum((attempt["error"] or "").startswith("timeout") for attempt in batch), batch

    # ---- Webhooks: each event delivered; the records agree with what the receiver saw.
    by_event: dict[tuple[int, str], str] = {}  # (MessageID, event) → the body key that carried it
    for key, (_, body) in receiver.bodies.items():
        for payload in body if isinstance(body, list) else [body]:
            event_key = (payload["MessageID"], payload["event"])
            assert by_event.setdefault(event_key, key) == key, f"{event_key} posted in two different bodies"
    assert set(by_event) == set(keys), "the receiver got exactly the events Mailjet recorded"
    for row in rows:
        webhook = row["webhook"]
        assert (webhook["state"], webhook["reason"]) == ("delivered", None), webhook
        key = by_event[(row["MessageID"], row["event"])]
        path, body = receiver.bodies[key]
        assert webhook["url"] == receiver_url + path
        assert webhook["version"] == (2 if isinstance(body, list) else 1)
        assert webhook["batch_size"] == (len(body) if isinstance(body, list) else 1)
        answers = receiver.answers[key]
        recorded = [(attempt["status"], attempt["error"] or "") for attempt in webhook["attempts"]]
        assert answers[-1] == OK and recorded[-1] == (OK, ""), (recorded, answers)
        assert explains(recorded, answers), (recorded, answers)
    seen = {answer for answers in receiver.answers.values() for answer in answers}
    assert seen == {500, 302, 201, 429, 503, CLOSE, SLOW, OK}, seen
    http.close()
