"""Moving the shared virtual clock over HTTP: far ahead, onto a boundary, and back.

The real services' clocks never go back; segjet's does (`POST clock {"set": earlier}`, and a
whole-service reset puts it back to wall-clock time). Each test moves it and checks that a
time-based rule still answers as it would at the clock's new time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from emulator.bundle import BackgroundBundle
from emulator.common.clock import iso, parse_iso
from emulator.config import BundleConfig
from emulator.segment.delivery import RETRIES_EXHAUSTED

from .test_engage_sync import AUDIENCE, KEY
from .test_engage_sync import Stack as EngageStack


class Stack(EngageStack):
    """test_engage_sync's stack, and the clock and dedupe reads these tests need."""

    def track(self, body: dict[str, Any]) -> None:
        assert self.post("/v1/track", {**body, "writeKey": self.info["write_key"]}) == {"success": True}

    def now(self) -> Any:
        return parse_iso(self.get("/_emulator/clock")["now"])

    def set_clock(self, moment: Any) -> None:
        self.post("/_emulator/clock", {"set": iso(moment)})

    def message(self, message_id: str) -> list[dict[str, Any]]:
        """Every stored copy of a messageId, oldest first (accepted or discarded)."""
        return self.get("/_emulator/events", messageId=message_id, limit=1000)["events"]


@pytest.fixture(scope="module")
def bundle() -> Iterator[Stack]:
    background = BackgroundBundle(
        BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, engage_sync_interval="manual")
    )
    stack = Stack(background.start())
    yield stack
    stack.close()
    background.stop()


@pytest.fixture
def stack(bundle: Stack) -> Stack:
    for client in (bundle.mailjet, bundle.segment, bundle.mailjet):
        assert client.post("/_emulator/reset").status_code == 200
    return bundle


def test_an_id_accepted_before_the_clock_went_back_a_month_is_not_a_duplicate_a_month_earlier(stack):
    # The id was accepted 31 days after the time the clock went back to: the two calls are a month
    # apart in virtual time, far outside Segment's 24 h window. It was refused as a duplicate for the
    # 31 days + 24 h the clock needed to pass its acceptance again (years, after a set-back of years).
    start = stack.now()
    stack.post("/_emulator/clock", {"advance": "31d"})
    stack.track({"userId": "u", "event": "E", "messageId": "late-id"})
    stack.set_clock(start)
    stack.track({"userId": "u", "event": "E", "messageId": "late-id"})
    stack.track({"userId": "u", "event": "E", "messageId": "late-id"})  # this one is a duplicate
    copies = stack.message("late-id")
    assert [(copy["status"], copy["discard_reason"]) for copy in copies] == [
        ("accepted", None), ("accepted", None), ("discarded", "duplicate_message_id")
    ]


def test_an_id_is_still_a_duplicate_when_the_clock_is_set_back_a_little(stack):
    start = stack.now()
    stack.track({"userId": "u", "event": "E", "messageId": "near-id"})
    stack.set_clock(start - timedelta(hours=23))  # 23 h before its acceptance: within the window
    stack.track({"userId": "u", "event": "E", "messageId": "near-id"})
    assert [copy["status"] for copy in stack.message("near-id")] == ["accepted", "discarded"]


def test_an_audience_lapsed_then_the_clock_set_back_is_entered_again_at_the_next_sync(stack):
    # At the earlier time the order is inside the 30-day window again. The lapse had been acted on
    # (exit sent) and nothing made the profile due for another look: the destination kept `false`
    # while the profile answered `true`, until the user's next event.
    start = stack.now()
    stack.post("/v1/identify", {"userId": "amy", "traits": {"email": "amy@example.com"}, "writeKey": stack.info["write_key"]})
    stack.track({"userId": "amy", "event": "Order Completed"})
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    assert [m["traits"][KEY] for m in stack.post("/_emulator/engage/sync")["sent"]] == [True]
    stack.post("/_emulator/clock", {"advance": "31d"})
    assert [m["traits"][KEY] for m in stack.post("/_emulator/engage/sync")["sent"]] == [False]
    stack.set_clock(start + timedelta(days=1))
    assert stack.get("/_emulator/profiles/amy")["audiences"] == {KEY: True}
    assert [m["traits"][KEY] for m in stack.post("/_emulator/engage/sync")["sent"]] == [True]
    assert stack.post("/_emulator/engage/sync")["sent"] == []  # once


@pytest.fixture(scope="module")
def every_2h() -> Iterator[Stack]:
    background = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0))
    stack = Stack(background.start())
    yield stack
    stack.close()
    background.stop()


def test_a_scheduled_sync_after_the_clock_went_back_comes_at_the_next_mark_of_the_earlier_time(every_2h):
    # The timer armed for the mark after the later time stayed there: with no message to re-arm the
    # schedule, no sync ran for the ten days set back. And the profile it had looked at ten days on
    # (order too old for the audience) was not looked at again at the earlier time.
    stack = every_2h
    for client in (stack.mailjet, stack.segment, stack.mailjet):
        assert client.post("/_emulator/reset").status_code == 200
    start = stack.now()
    stack.post("/v1/identify", {"userId": "ivy", "traits": {"email": "ivy@example.com"}, "writeKey": stack.info["write_key"]})
    stack.track({"userId": "ivy", "event": "Order Completed"})
    day = {"name": "Ordered Today", "rule": {"event": "Order Completed", "within": "1d"}}
    stack.post("/_emulator/engage/audiences", day, status=201)
    stack.post("/_emulator/clock", {"advance": "10d"})  # the first sync: ivy's order is 10 days old
    engage = {"source": "Engage", "userId": "ivy"}
    assert stack.get("/_emulator/events", **engage)["events"] == []
    stack.set_clock(start + timedelta(minutes=30))
    assert parse_iso(stack.get("/_emulator/clock")["next_due"]) < start + timedelta(hours=3)  # the definition's 2 h mark
    stack.post("/_emulator/clock", {"advance": "2h"})
    synced = stack.get("/_emulator/events", **engage)["events"]
    assert [event["traits"]["ordered_today"] for event in synced] == [True]



def test_mailjet_timers_armed_before_a_set_back_keep_their_time_and_fire_once(stack):
    # README: pending timers keep their virtual times. The `sent` of a message and a
    # managemanycontacts job armed before the clock went back an hour are neither lost nor run
    # twice: they happen once the clock reaches their time again.
    start = stack.now()
    answer = stack.mailjet.post("/v3.1/send", json={"Messages": [{
        "From": {"Email": "shop@example.com"}, "To": [{"Email": "amy@example.com"}], "Subject": "Hi", "TextPart": "x",
    }]})
    assert answer.status_code == 200, answer.text
    message_id = answer.json()["Messages"][0]["To"][0]["MessageID"]
    job = stack.mailjet.post("/v3/REST/contactslist/1/managemanycontacts",
                             json={"Action": "addnoforce", "Contacts": [{"Email": "bea@example.com"}]})
    assert job.status_code == 201, job.text
    job_id = job.json()["Data"][0]["JobID"]
    stack.set_clock(start - timedelta(hours=1))
    stack.post("/_emulator/clock", {"advance": "59m"})

    def sent() -> list[dict[str, Any]]:
        return stack.mailjet.get("/_emulator/email-events", params={"MessageID": message_id}).json()["email_events"]

    def job_state() -> dict[str, Any]:
        return stack.mailjet.get(f"/v3/REST/contactslist/1/managemanycontacts/{job_id}").json()["Data"][0]

    assert sent() == [] and job_state()["Status"] == "In Progress"
    stack.post("/_emulator/clock", {"advance": "1m"})
    stack.post("/_emulator/clock", {"advance": "1m"})
    assert [record["event"] for record in sent()] == ["sent"]
    state = job_state()
    assert state["Status"] == "Completed" and state["JobEnd"] >= state["JobStart"]


def test_a_webhook_retry_armed_before_a_set_back_is_attempted_once_at_its_time(stack):
    hook = stack.mailjet.post("/v3/REST/eventcallbackurl", json={"EventType": "sent", "Url": "http://127.0.0.1:9/hook"})
    assert hook.status_code == 201, hook.text
    answer = stack.mailjet.post("/v3.1/send", json={"Messages": [{
        "From": {"Email": "shop@example.com"}, "To": [{"Email": "amy@example.com"}], "Subject": "Hi", "TextPart": "x",
    }]})
    message_id = answer.json()["Messages"][0]["To"][0]["MessageID"]

    def webhook() -> dict[str, Any]:
        (record,) = stack.mailjet.get("/_emulator/email-events", params={"MessageID": message_id}).json()["email_events"]
        return record["webhook"]

    stack.post("/_emulator/clock", {"advance": "2s"})  # `sent`, and its first attempt (refused)
    for _ in range(500):
        if webhook()["attempts"]:
            break
        time.sleep(0.01)
    first = webhook()
    assert first["state"] == "retrying" and len(first["attempts"]) == 1, first
    due = parse_iso(first["next_attempt_at"])
    stack.set_clock(due - timedelta(hours=1))
    assert len(webhook()["attempts"]) == 1
    stack.set_clock(due)
    for _ in range(500):
        if len(webhook()["attempts"]) > 1:
            break
        time.sleep(0.01)
    stack.post("/_emulator/clock", {"advance": "1s"})
    assert len(webhook()["attempts"]) == 2, webhook()


def deliveries(stack: Stack, user_id: str) -> list[dict[str, Any]]:
    return stack.get("/_emulator/deliveries", userId=user_id)["deliveries"]


def test_with_mailjet_down_each_of_a_users_messages_fails_4h_after_its_acceptance(stack):
    # Real Segment retries a failed destination call "for four hours" (reference/segment.md §5);
    # segjet keeps a user's messages in order, so its later messages wait behind a retrying one.
    # Each message's 4 h counted from its own first attempt: w1's third message was first tried
    # 8 h after it was accepted, and was still retrying at 10 h.
    fault = stack.mailjet.post("/_emulator/faults", json={"path": "/*", "status": 500, "rate": 1})
    assert fault.status_code == 201, fault.text
    started = time.monotonic()
    for _ in range(3):
        stack.identify("w1", {"email": "w1@example.com"})
    deadline = time.monotonic() + 15
    while deliveries(stack, "w1")[0]["state"] != "retrying":
        assert time.monotonic() < deadline, deliveries(stack, "w1")
        time.sleep(0.02)

    def waits_on_the_clock(records: list[dict[str, Any]]) -> bool:
        """Every message ended, or the first one not ended retrying at a time still to come. A message
        behind a failed one is sent by a delivery worker after the move answers: moved on before
        that (a loaded machine), its first attempt would be the next move's, 15 min later."""
        waiting = [record for record in records if record["state"] not in ("failed", "delivered")]
        return not waiting or (waiting[0]["state"] == "retrying" and parse_iso(waiting[0]["next_attempt_at"]) > stack.now())

    for _ in range(17):  # 4 h 15 min; each move fires the retries it makes due before answering
        stack.advance("15m")
        deadline = time.monotonic() + 15
        while not waits_on_the_clock(records := deliveries(stack, "w1")):
            assert time.monotonic() < deadline, records
            time.sleep(0.02)

    deadline = time.monotonic() + 15
    while True:
        records = deliveries(stack, "w1")
        if [(record["state"], record["reason"]) for record in records] == [("failed", RETRIES_EXHAUSTED)] * 3:
            break
        assert time.monotonic() < deadline, records
        time.sleep(0.02)
    # The virtual clock goes on with real time while the attempts run (a second on a quiet machine,
    # more on a loaded one): the leeway is the real time the test took.
    leeway = timedelta(seconds=time.monotonic() - started)
    for record in records:
        accepted = parse_iso(record["attempts"][0]["request"]["body"]["receivedAt"])
        assert parse_iso(record["attempts"][-1]["at"]) < accepted + timedelta(hours=4) + leeway
