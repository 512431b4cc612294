"""Engage over the whole bundle: analytics-python → fake Segment → Engage sync → destination → fake Mailjet.

Users order through the official client, an audience is defined and synced, Mailjet contacts get
the audience key as a property; 31 virtual days later only the users who left are sent again.
Waits poll server state; the clock is moved with `POST /_emulator/clock`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from segment.analytics import Client as SegmentClient

import contracts
from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

WAIT_SECONDS = 15
KEY = "order_completed_last_30days"
AUDIENCE = {"name": "Order Completed Last 30 Days", "rule": {"event": "Order Completed", "within": "30d"}}


class Stack:
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.segment = httpx.Client(base_url=info["segment_url"], timeout=30)
        self.mailjet = httpx.Client(
            base_url=info["mailjet_url"], auth=(info["mailjet_api_key"], info["mailjet_secret_key"]), timeout=30
        )
        self.analytics = SegmentClient(info["write_key"], host=info["segment_url"], sync_mode=True)

    def close(self) -> None:
        self.segment.close()
        self.mailjet.close()

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        self.analytics.identify(user_id, traits)

    def order(self, user_id: str, revenue: float) -> None:
        self.analytics.track(user_id, "Order Completed", {"revenue": revenue})

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
        answer = self.segment.post(path, json=body or {})
        assert answer.status_code == status, answer.text
        return answer.json()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        answer = self.segment.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def sync(self) -> dict[str, bool]:
        """POST engage/sync; userId → the audience value sent."""
        sent = self.post("/_emulator/engage/sync")["sent"]
        for message in sent:
            assert contracts.validate("segment.engage_audience_identify", message) == [], message
        return {message["userId"]: message["traits"][KEY] for message in sent}

    def engage_deliveries(self) -> list[dict[str, Any]]:
        deliveries = self.get("/_emulator/deliveries", limit=10_000)["deliveries"]
        return [item for item in deliveries if item["messageId"].startswith("personas_")]

    def wait_until_delivered(self, count: int) -> list[dict[str, Any]]:
        """Wait until `count` Engage identifies were delivered, and none is still on its way."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = self.engage_deliveries()
            if len(found) >= count and all(item["state"] == "delivered" for item in found):
                assert len(found) == count, found
                return found
            assert time.monotonic() < deadline, f"expected {count} delivered Engage identifies, have {found}"
            time.sleep(0.02)

    def contact_property(self, email: str, name: str) -> str | None:
        """The contact's property as Mailjet shows it (a string); None while there is no such contact."""
        answer = self.mailjet.get(f"/v3/REST/contactdata/{email}")
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        (entry,) = answer.json()["Data"]
        return {item["Name"]: item["Value"] for item in entry["Data"]}.get(name)

    def wait_for_property(self, email: str, name: str, value: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while (current := self.contact_property(email, name)) != value:
            assert time.monotonic() < deadline, f"{email}: {name} is {current!r}, expected {value!r}"
            time.sleep(0.02)

    def advance(self, duration: str) -> None:
        self.post("/_emulator/clock", {"advance": duration})


def _stack(config: BundleConfig) -> Iterator[Stack]:
    background = BackgroundBundle(config)
    stack = Stack(background.start())
    yield stack
    stack.close()
    background.stop()


@pytest.fixture(scope="module")
def manual() -> Iterator[Stack]:
    """Syncs only on POST engage/sync, so each step's sync is the one the test asserts on."""
    yield from _stack(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, engage_sync_interval="manual"))


@pytest.fixture(scope="module")
def scheduled() -> Iterator[Stack]:
    yield from _stack(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0))


@pytest.fixture
def stack(manual: Stack) -> Stack:
    for client in (manual.segment, manual.mailjet):
        assert client.post("/_emulator/reset").status_code == 200
    return manual


USERS = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com",
         "dave": "dave@example.com"}


def test_audience_sync_enters_then_only_leavers_are_sent(stack):
    for user_id, email in USERS.items():
        stack.identify(user_id, {"email": email, "plan": "pro"})
    for user_id in ("alice", "bob", "carol"):  # dave never orders
        stack.order(user_id, 25.0)

    audience = stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    assert audience["key"] == KEY and audience["id"].startswith("aud_")
    first = stack.post("/_emulator/engage/sync")
    for message in first["sent"]:
        assert contracts.validate("segment.engage_audience_identify", message) == [], message
    assert {message["userId"]: message["traits"][KEY] for message in first["sent"]} == {
        "alice": True, "bob": True, "carol": True}
    # The first sync is a backfill: each of the 4 profiles is evaluated once (one definition).
    assert (first["count"], first["evaluated"]) == (3, 4)
    stack.wait_until_delivered(3)
    for user_id in ("alice", "bob", "carol"):
        stack.wait_for_property(USERS[user_id], KEY, "true")
    assert stack.contact_property(USERS["dave"], KEY) is None

    # The identifies went through ingestion under the Engage source, like any tracked call.
    engage_events = stack.get("/_emulator/events", source="Engage")["events"]
    assert sorted(event["userId"] for event in engage_events) == ["alice", "bob", "carol"]
    assert {event["source"]["name"] for event in engage_events} == {"Engage"}
    assert all(event["status"] == "accepted" for event in engage_events)
    # No change, nothing sent, nothing even looked at: Engage's own identifies do not feed back.
    assert stack.post("/_emulator/engage/sync") == {"count": 0, "evaluated": 0, "sent": []}

    stack.advance("20d")
    stack.order("bob", 12.0)  # inside the window: bob stays
    stack.advance("11d")
    assert stack.get("/_emulator/profiles/alice")["audiences"] == {KEY: False}
    assert stack.sync() == {"alice": False, "carol": False}

    deliveries = stack.wait_until_delivered(5)
    for user_id in ("alice", "carol"):
        stack.wait_for_property(USERS[user_id], KEY, "false")
    assert stack.contact_property(USERS["bob"], KEY) == "true"
    per_user = {user_id: sum(1 for item in deliveries if item["userId"] == user_id) for user_id in USERS}
    assert per_user == {"alice": 2, "bob": 1, "carol": 2, "dave": 0}


def test_computed_trait_and_profile_view(stack):
    stack.identify("erin", {"email": "erin@example.com"})
    stack.order("erin", 10.0)
    stack.order("erin", 15.5)
    trait = stack.post("/_emulator/engage/traits", {"name": "Revenue 90 Days", "computed": "sum", "event":
                       "Order Completed", "property": "revenue", "within": "90d"}, status=201)
    assert trait["key"] == "revenue_90days" and trait["id"].startswith("tra_")
    sent = stack.post("/_emulator/engage/sync")["sent"]
    assert [(m["userId"], m["traits"]) for m in sent] == [("erin", {"revenue_90days": 25.5, "email": "erin@example.com"})]
    assert contracts.validate("segment.engage_trait_identify", sent[0]) == []
    stack.wait_until_delivered(1)
    stack.wait_for_property("erin@example.com", "revenue_90days", "25.5")
    profile = stack.get("/_emulator/profiles/erin")
    assert profile["computed_traits"] == {"revenue_90days": 25.5}
    assert profile["audiences"] == {}
    assert stack.get("/_emulator/engage/traits")["traits"][0]["profiles_with_value"] == 1


def test_definition_errors(stack):
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    duplicate = stack.post("/_emulator/engage/audiences", AUDIENCE, status=409)
    assert KEY in duplicate["error"]
    bad = stack.post("/_emulator/engage/audiences",
                     {"name": "x", "rule": {"event": "E", "within": "1 month"}}, status=400)
    assert "bad window" in bad["error"]
    assert stack.segment.delete("/_emulator/engage/audiences/nope").status_code == 404
    # A computed trait's key is no audience: DELETE audiences/{key} leaves it (and answers 404).
    stack.post("/_emulator/engage/traits", {"name": "Orders", "computed": "count", "event": "E"}, status=201)
    missing = stack.segment.delete("/_emulator/engage/audiences/orders")
    assert missing.status_code == 404 and "orders" in missing.json()["error"]
    assert [trait["key"] for trait in stack.get("/_emulator/engage/traits")["traits"]] == ["orders"]
    assert stack.segment.delete(f"/_emulator/engage/audiences/{KEY}").json()["key"] == KEY
    assert stack.get("/_emulator/engage/audiences") == {"audiences": []}


def test_a_computed_trait_is_deleted_over_http(stack):
    # There was no DELETE engage/traits/{key}: a computed trait, once defined, stayed for good.
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    trait = stack.post("/_emulator/engage/traits", {"name": "Orders", "computed": "count", "event": "E"}, status=201)
    for path in ("/_emulator/engage/traits/nope", f"/_emulator/engage/traits/{KEY}"):  # unknown; an audience's key
        missing = stack.segment.delete(path)
        assert missing.status_code == 404 and "no computed trait" in missing.json()["error"], path
    assert stack.segment.delete("/_emulator/engage/traits/orders", params={"writeKey": "nobody"}).status_code == 404
    # One an audience reads is refused (409, naming it), as is an audience another one reads.
    reader = stack.post("/_emulator/engage/audiences",
                        {"name": "Frequent", "rule": {"trait": "orders", "gte": 3}}, status=201)
    stack.post("/_emulator/engage/audiences", {"name": "Not Buyers", "rule": {"not": {"trait": KEY, "equals": True}}},
               status=201)
    for path, reading in (("/_emulator/engage/traits/orders", "frequent"), (f"/_emulator/engage/audiences/{KEY}", "not_buyers")):
        refused = stack.segment.delete(path)
        assert refused.status_code == 409, refused.text
        assert set(refused.json()) == {"error"} and repr(reading) in refused.json()["error"], refused.text
    assert stack.segment.delete("/_emulator/engage/audiences/frequent").json()["key"] == reader["key"]
    removed = stack.segment.delete("/_emulator/engage/traits/orders")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {key: value for key, value in trait.items() if key not in ("synced", "profiles_with_value", "value_sample")}
    assert stack.get("/_emulator/engage/traits") == {"traits": []}
    state = stack.get("/_emulator/snapshot")["state"]["workspaces"][0]["engage"]
    assert [item["definition"]["key"] for item in state] == [KEY, "not_buyers"]


def test_scheduled_sync_follows_the_virtual_clock(scheduled):
    for client in (scheduled.segment, scheduled.mailjet):
        assert client.post("/_emulator/reset").status_code == 200
    scheduled.identify("frank", {"email": "frank@example.com"})
    scheduled.order("frank", 30.0)
    scheduled.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    scheduled.advance("2h")  # the default interval: the first sync fires as the clock passes it
    scheduled.wait_for_property("frank@example.com", KEY, "true")
    scheduled.advance("31d")  # one sync at the new time sends the exit
    scheduled.wait_for_property("frank@example.com", KEY, "false")
    assert len(scheduled.wait_until_delivered(2)) == 2


def _send(stack: Stack, call: str, body: dict[str, Any]) -> None:
    assert stack.post(f"/v1/{call}", {**body, "writeKey": stack.info["write_key"]}) == {"success": True}


def test_a_far_future_timestamp_and_over_long_windows(stack):
    # An event stamped near year 9999 overflowed the window arithmetic: every sync and the profile
    # answered 500. Windows too long for a datetime were accepted (or answered 500).
    stack.identify("gina", {"email": "gina@example.com"})
    _send(stack, "track", {"userId": "gina", "event": "Order Completed", "timestamp": "9999-12-20T00:00:00Z"})
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    assert stack.sync() == {"gina": True}
    assert stack.get("/_emulator/profiles/gina")["audiences"] == {KEY: True}
    for within in ("999999999d", "1000000000d"):
        refused = stack.post("/_emulator/engage/audiences", {"name": "Long", "rule": {"event": "E", "within": within}},
                             status=400)
        assert "too long" in refused["error"]
    assert stack.post("/_emulator/engage/sync")["count"] == 0


def test_an_anonymous_event_on_a_known_users_profile_is_synced(stack):
    buyers = stack.post("/_emulator/engage/audiences", {"name": "Buyers", "rule": {"event": "Order Completed"}},
                        status=201)
    _send(stack, "identify", {"userId": "hal", "anonymousId": "anon-1", "traits": {"email": "hal@example.com"}})
    assert stack.post("/_emulator/engage/sync")["sent"] == []
    _send(stack, "track", {"anonymousId": "anon-1", "event": "Order Completed"})
    assert stack.get("/_emulator/profiles/hal")["audiences"] == {buyers["key"]: True}
    sent = stack.post("/_emulator/engage/sync")["sent"]
    assert [(message["userId"], message["traits"][buyers["key"]]) for message in sent] == [("hal", True)]


def test_an_audience_reading_its_own_value_is_refused(stack):
    # It flipped at every sync; in realtime mode it synced without end and the server stopped answering.
    refused = stack.post("/_emulator/engage/audiences", {"name": "Newcomers", "key": "newcomer",
                                                         "rule": {"not": {"trait": "newcomer", "equals": True}}},
                         status=400)
    assert "its own value" in refused["error"]
    assert stack.get("/_emulator/engage/audiences") == {"audiences": []}


def test_a_sum_beyond_a_doubles_range_breaks_nothing(stack):
    # inf made the sync answer 500, then /events and /profiles, and delivery sent `Infinity`.
    stack.identify("ivan", {"email": "ivan@example.com"})
    for _ in range(2):
        _send(stack, "track", {"userId": "ivan", "event": "Order Completed", "properties": {"revenue": 1e308}})
    stack.post("/_emulator/engage/traits", {"name": "Revenue", "computed": "sum", "event": "Order Completed",
                                            "property": "revenue"}, status=201)
    assert stack.post("/_emulator/engage/sync")["sent"] == []
    assert stack.get("/_emulator/profiles/ivan")["computed_traits"] == {}
    assert stack.get("/_emulator/events", userId="ivan")["events"]


def test_definitions_that_crashed_the_routes_are_answered_400(stack):
    # A window of 5,000 digits answered 500 (audiences) or dropped the connection (traits); the key
    # "email" was accepted, and Engage's identify then carried the address in place of the value.
    within = "9" * 5000 + "d"
    for path, body, reason in (
        ("audiences", {"name": "Long", "rule": {"event": "E", "within": within}}, "too long"),
        ("traits", {"name": "Long", "computed": "count", "event": "E", "within": within}, "too long"),
        ("audiences", {"name": "Email", "rule": {"event": "E"}}, "'email'"),
        ("traits", {"name": "x", "key": "email", "computed": "count", "event": "E"}, "'email'"),
    ):
        refused = stack.post(f"/_emulator/engage/{path}", body, status=400)
        assert reason in refused["error"], (path, refused)
    assert stack.get("/_emulator/engage/audiences") == {"audiences": []}
    assert stack.get("/_emulator/engage/traits") == {"traits": []}


def test_a_member_synced_before_having_an_email_reaches_mailjet_once_it_has_one(stack):
    # The destination refuses an identify without an email (failed, not retried); Engage sent the
    # membership only when it changed, so a user who ordered before identifying never got it.
    stack.order("jill", 20.0)
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    assert stack.sync() == {"jill": True}
    deadline = time.monotonic() + WAIT_SECONDS
    while [item["state"] for item in stack.engage_deliveries()] != ["failed"]:
        assert time.monotonic() < deadline, stack.engage_deliveries()
        time.sleep(0.02)
    stack.identify("jill", {"email": "jill@example.com"})
    sent = stack.post("/_emulator/engage/sync")["sent"]
    assert [(message["userId"], message["traits"]) for message in sent] == [
        ("jill", {KEY: True, "email": "jill@example.com"})
    ]
    stack.wait_for_property("jill@example.com", KEY, "true")
    stack.identify("jill", {"email": "jill@example.com", "plan": "pro"})
    assert stack.sync() == {}


def test_after_an_alias_the_audience_follows_the_surviving_user_id_to_mailjet(stack):
    # Engage kept what it told under the userId an alias merged away, and synced the merged profile
    # under it: an exit went out once per userId, and the contact kept the old id.
    stack.identify("kim-old", {"email": "kim@example.com"})
    stack.order("kim-old", 20.0)
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    assert stack.sync() == {"kim-old": True}
    stack.wait_for_property("kim@example.com", "segment_user_id", "kim-old")
    stack.analytics.alias("kim-old", "kim")
    assert stack.sync() == {"kim": True}  # the survivor is a new identifier: sent once under it
    stack.wait_for_property("kim@example.com", "segment_user_id", "kim")
    stack.order("kim-old", 30.0)  # a client still sending the old id lands on the merged profile
    assert stack.sync() == {}
    stack.advance("31d")
    assert stack.sync() == {"kim": False}
    stack.wait_for_property("kim@example.com", KEY, "false")
    assert stack.get("/_emulator/engage/audiences")["audiences"][0]["members"] == 0


def test_a_user_who_changed_email_leaves_the_audience_on_both_mailjet_contacts(stack):
    # Segment docs (engage/using-engage-data.md, "Multiple identifiers of the same type"): one event
    # per email of the profile. The exit went to the newest address only: the contact of the earlier
    # one kept `true` in Mailjet for good.
    old, new = "lena.old@example.com", "lena.new@example.com"
    stack.identify("lena", {"email": old})
    stack.order("lena", 20.0)
    stack.post("/_emulator/engage/audiences", AUDIENCE, status=201)
    assert stack.sync() == {"lena": True}
    stack.identify("lena", {"email": new})
    assert stack.sync() == {"lena": True}  # to the new address only: the old one has it
    assert stack.get("/_emulator/profiles/lena")["emails"] == [old, new]
    stack.advance("31d")
    sent = stack.post("/_emulator/engage/sync")["sent"]
    assert [(message["userId"], message["traits"]) for message in sent] == [
        ("lena", {KEY: False, "email": old}), ("lena", {KEY: False, "email": new})]
    for email in (old, new):
        stack.wait_for_property(email, KEY, "false")


def test_a_whole_reset_starts_the_configured_definitions_at_the_reset_clock_with_their_sync_armed() -> None:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, engage_audiences=[AUDIENCE])
    for stack in _stack(config):
        stack.advance("31d")
        stack.post("/_emulator/reset")
        (audience,) = stack.get("/_emulator/engage/audiences")["audiences"]
        clock = stack.get("/_emulator/clock")
        # Made at the real time the reset went back to, not 31 days ahead of it.
        assert audience["created_at"] <= clock["now"]
        assert clock["pending_timers"] >= 1, "the 2 h sync of the configured audience is armed"


def test_a_key_the_mailjet_destination_takes_for_the_user_id_is_refused(stack):
    # The destination writes the userId to the contact property segment_user_id and skips a trait of
    # that name: the audience was answered 201 and synced, and Mailjet never saw its value.
    for path, body in (
        ("audiences", {"name": "Segment User Id", "rule": {"event": "Order Completed"}}),
        ("traits", {"name": "x", "key": "segment_user_id", "computed": "count", "event": "Order Completed"}),
    ):
        refused = stack.post(f"/_emulator/engage/{path}", body, status=400)
        assert refused == {"error": "the key 'segment_user_id' is taken by the Mailjet destination, which stores the "
                                    "userId in that contact property; give another key"}
    assert stack.get("/_emulator/engage/audiences") == {"audiences": []}
    assert stack.get("/_emulator/engage/traits") == {"traits": []}
