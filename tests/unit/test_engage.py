"""Engage engine: keys, rules at window edges, computed traits, incremental sync, expiry."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import contracts
from emulator.common.clock import Clock, iso
from emulator.config import BundleConfig
from emulator.segment.models import SegmentBackend, Source, emails_carried, parse_tracking_request
from emulator.segment.engage import (
    ENGAGE_SOURCE_NAME,
    SAMPLE_SIZE,
    SYNC_RETRY,
    DefinitionError,
    DefinitionInUse,
    DuplicateKeyError,
    EngageEngine,
    EngageScheduler,
    EngageSpace,
    UnknownDefinition,
    _Computation,
    check_dependencies,
    definition_from_json,
    parse_audience,
    parse_rule,
    parse_sync_interval,
    snake_case_key,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)
ORDER = "Order Completed"
LAST_30 = {"name": "Order Completed Last 30 Days", "rule": {"event": ORDER, "within": "30d"}}


@dataclass(frozen=True)
class Event:
    timestamp: datetime
    properties: dict[str, Any]


@dataclass
class World:
    """Profiles plus an engine observing them, on a hand-moved clock."""

    now: datetime = T0
    traits_of: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_of: dict[str, dict[str, list[Event]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    emitted: list[dict[str, Any]] = field(default_factory=list)
    emails_of: dict[str, list[str]] = field(default_factory=dict)  # as the profile store keeps them
    user_of_anonymous: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = iter(range(10**9))
        self.engine = EngageEngine(self, self.emitted.append, lambda: self.now, "spa_test",
                                   new_id=lambda: f"{next(ids):027d}")

    # ProfileSource
    def user_ids(self):
        return list(self.traits_of.keys() | self.events_of.keys())

    def traits(self, user_id):
        return self.traits_of.get(user_id, {})

    def emails(self, user_id):
        return self.emails_of.get(user_id, [])

    def events(self, user_id, event, since):
        found = self.events_of[user_id][event] if user_id in self.events_of else []
        return sorted((item for item in found if since is None or item.timestamp >= since), key=lambda e: e.timestamp)

    def linked_user_id(self, anonymous_id):
        return self.user_of_anonymous.get(anonymous_id)

    def merged_user_ids(self, user_id):
        return [other for other, survivor in self.user_of_anonymous.items() if survivor == user_id and other != user_id]

    # what the Segment backend does on accepted messages
    def identify(self, user_id: str, **traits: Any) -> None:
        self.traits_of.setdefault(user_id, {}).update(traits)
        emails = self.emails_of.setdefault(user_id, [])
        emails += [email for email in emails_carried({"traits": traits}) if email not in emails]
        self.engine.observe({"type": "identify", "userId": user_id, "traits": traits})

    def track(self, user_id: str, event: str = ORDER, ago: timedelta = timedelta(), **properties: Any) -> None:
        self.events_of[user_id][event].append(Event(self.now - ago, properties))
        self.engine.observe({"type": "track", "userId": user_id, "event": event, "properties": properties})

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def member(self, rule: dict, user_id: str = "u1") -> bool:
        key = f"a{len(self.engine.audiences())}"
        self.engine.define_audience({"name": key, "rule": rule})
        return self.engine.profile_view(user_id)["audiences"][key]

    def sync(self) -> dict[str, Any]:
        """userId → traits sent by one sync (without email)."""
        sent = self.engine.sync().sent
        return {m["userId"]: {k: v for k, v in m["traits"].items() if k != "email"} for m in sent}


# --- keys ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Order Completed Last 30 Days", "order_completed_last_30days"),
        ("First Time Shopper", "first_time_shopper"),
        ("Dormant Shoppers", "dormant_shoppers"),
        ("total_revenue_180_days", "total_revenue_180_days"),
        ("  High   Value  Users ", "high_value_users"),
        ("High-Value Users!", "high_value_users"),
        ("VIP's (EU) / 2025", "vip_s_eu_2025"),
        ("orderCompletedLast30Days", "order_completed_last30days"),
        ("HTMLEmailOpeners", "html_email_openers"),
        ("Top 10 Users", "top_10users"),
        ("30-Day Buyers", "30_day_buyers"),
        ("Version 2 3", "version_2_3"),
        ("Café Clients", "cafe_clients"),
    ],
)
def test_snake_case_key(name, key):
    assert snake_case_key(name) == key


def test_snake_case_key_needs_latin_characters():
    with pytest.raises(DefinitionError, match="give a key"):
        snake_case_key("顧客 !!")


def test_audience_key_defaults_to_snake_case_and_is_unique():
    world = World()
    audience = world.engine.define_audience(LAST_30)
    assert audience.key == "order_completed_last_30days"
    assert audience.id.startswith("aud_")
    with pytest.raises(DuplicateKeyError):
        world.engine.define_audience(LAST_30)
    with pytest.raises(DuplicateKeyError):  # traits and audiences share the profile's key space
        world.engine.define_trait({"name": "x", "key": "order_completed_last_30days", "computed": "count",
                                   "event": ORDER})
    assert world.engine.define_audience({**LAST_30, "key": "buyers"}).key == "buyers"


@pytest.mark.parametrize("key", ["Bad Key", "_lead", "UPPER", "", 5, "buyers\n"])  # `$` let "\n" through
def test_explicit_key_must_be_snake_case(key):
    with pytest.raises(DefinitionError, match="key"):
        World().engine.define_audience({**LAST_30, "key": key})


def test_delete_audience():
    world = World()
    world.engine.define_audience(LAST_30)
    assert world.engine.delete_audience("order_completed_last_30days").key == "order_completed_last_30days"
    assert world.engine.audiences() == []
    with pytest.raises(UnknownDefinition):
        world.engine.delete_audience("order_completed_last_30days")


def test_delete_trait():
    # Computed traits could be defined but never deleted (audiences could).
    world = World()
    world.engine.define_trait({"name": "Orders", "computed": "count", "event": ORDER})
    world.engine.define_audience(LAST_30)
    with pytest.raises(UnknownDefinition, match="no computed trait"):
        world.engine.delete_trait("order_completed_last_30days")  # an audience's key
    with pytest.raises(UnknownDefinition, match="no audience"):
        world.engine.delete_audience("orders")  # a trait's key
    assert world.engine.delete_trait("orders").key == "orders"
    assert world.engine.traits() == []
    assert [audience.key for audience in world.engine.audiences()] == ["order_completed_last_30days"]
    with pytest.raises(UnknownDefinition):
        world.engine.delete_trait("orders")
    # Its key is free again, and a trait defined under it starts unsynced (a backfill).
    world.track("u1")
    world.engine.sync()
    world.engine.define_trait({"name": "Orders", "computed": "count", "event": ORDER})
    assert world.sync() == {"u1": {"orders": 1}}


@pytest.mark.parametrize("kind", ["audience", "trait"])
def test_a_definition_another_one_reads_is_not_deleted(kind):
    # Deleting it left the reader reading a trait no sync would ever change again (the profile keeps
    # the last value sent): refused with 409, naming the readers, for audiences and traits alike.
    world = World()
    if kind == "audience":
        world.engine.define_audience({"name": "Buyers", "rule": {"event": ORDER}})
    else:
        world.engine.define_trait({"name": "Buyers", "computed": "count", "event": ORDER})
    world.engine.define_audience({"name": "Loyal", "rule": {"trait": "buyers", "exists": True}})
    world.engine.define_audience({"name": "Lapsed", "rule": {"not": {"trait": "buyers.x", "exists": True}}})
    delete = world.engine.delete_audience if kind == "audience" else world.engine.delete_trait
    with pytest.raises(DefinitionInUse, match="'loyal', 'lapsed'") as refused:
        delete("buyers")
    assert refused.value.status == 409
    # There is no redefining in place (no PUT): the message says how a reader is changed.
    assert str(refused.value).endswith("delete them first (a definition is changed by deleting and adding it again)")
    assert len(world.engine.audiences()) + len(world.engine.traits()) == 3  # nothing removed
    world.engine.delete_audience("loyal")
    world.engine.delete_audience("lapsed")
    assert delete("buyers").key == "buyers"


def test_deleting_a_definition_forgets_the_emails_only_it_was_sent_with():
    # The email last sent per userId was kept after the only definition that told the user went, so
    # an email change re-evaluated the user in every definition, where a restart (which rebuilds it
    # from the definitions left) did not: `evaluated` differed across a restart.
    world = World()
    world.identify("u1", email="a@example.com")
    world.track("u1")
    world.engine.define_trait({"name": "Orders", "computed": "count", "event": ORDER})
    world.engine.define_audience({"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    world.engine.sync()
    world.engine.delete_trait("orders")
    world.identify("u1", email="b@example.com")
    assert world.engine.sync().evaluated == 0


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"event": ORDER, "within": "30 days"}, "bad window"),
        ({"event": ORDER, "within": "30m"}, "bad window"),
        ({"event": ORDER, "within": "0d"}, "bad window"),
        ({"event": ORDER, "within": "30d\n"}, "bad window"),
        ({"event": ORDER, "at_least": 1, "at_most": 3}, "not both"),
        ({"event": ORDER, "at_least": 0}, "at_least"),
        ({"event": ORDER, "at_most": -1}, "at_most"),
        ({"event": ORDER, "at_least": True}, "at_least"),
        ({"event": ORDER, "where": {"property": "revenue", "greater": 3}}, "unknown operator 'greater'"),
        ({"event": ORDER, "where": {"property": "revenue", "gt": 3, "lt": 9}}, "exactly one operator"),
        ({"event": ORDER, "where": {"property": "revenue", "gt": [1]}}, "number or a string"),
        ({"event": ORDER, "count": 3}, "unknown field 'count'"),
        ({"event": ""}, "event must be"),
        ({"trait": "plan", "like": "pro"}, "unknown operator 'like'"),
        ({"trait": "", "equals": "pro"}, "rule.trait must be a non-empty string"),
        ({"trait": 5, "equals": "pro"}, "rule.trait must be a non-empty string"),
        ({"event": ORDER, "where": {"revenue": 3}}, r"rule.where: expected \{'property': P"),
        ({"trait": "plan", "exists": "yes"}, "true or false"),
        ({"all": []}, "non-empty list"),
        ({"any": [{"event": ORDER}, {"bogus": 1}]}, r"rule.any\[1\]"),
        ({"not": {"trait": "plan"}}, "exactly one operator"),
        ({"all": [{"event": ORDER}], "any": []}, "no sibling"),
        ([], "JSON object"),
    ],
)
def test_rule_validation(rule, message):
    with pytest.raises(DefinitionError, match=message):
        parse_rule(rule)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rule": {"event": ORDER}}, "name"),
        ({"name": "x"}, "rule"),
        ({"name": "x", "rule": {"event": ORDER}, "color": "red"}, "unknown field 'color'"),
        ({"name": "   ", "key": "blank", "rule": {"event": ORDER}}, "non-empty 'name'"),  # a key does not excuse it
    ],
)
def test_audience_validation(body, message):
    with pytest.raises(DefinitionError, match=message):
        World().engine.define_audience(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "computed": "median", "event": ORDER, "property": "p"}, "computed must be one of"),
        ({"name": "x", "computed": "sum", "event": ORDER}, "needs a 'property'"),
        ({"name": "x", "computed": "last", "event": ORDER, "property": ""}, "needs a 'property'"),
        ({"name": "x", "computed": "count", "event": ORDER, "property": "p"}, "no 'property'"),
        ({"name": "x", "computed": "count"}, "event"),
        ({"name": "x", "computed": "count", "event": ORDER, "within": "1y"}, "bad window"),
    ],
)
def test_trait_validation(body, message):
    with pytest.raises(DefinitionError, match=message):
        World().engine.define_trait(body)


# --- event rules at window edges -------------------------------------------------------------------

def test_window_is_inclusive_to_the_millisecond():
    world = World()
    world.track("u1", ago=timedelta(days=30))
    world.track("u2", ago=timedelta(days=30) + MS)
    world.engine.define_audience(LAST_30)
    assert world.engine.profile_view("u1")["audiences"]["order_completed_last_30days"] is True
    assert world.engine.profile_view("u2")["audiences"]["order_completed_last_30days"] is False


def test_hour_windows():
    world = World()
    world.track("u1", ago=timedelta(hours=12))
    assert world.member({"event": ORDER, "within": "12h"}) is True
    assert world.member({"event": ORDER, "within": "11h"}) is False


def test_no_window_means_any_time():
    world = World()
    world.track("u1", ago=timedelta(days=3000))
    assert world.member({"event": ORDER}) is True


@pytest.mark.parametrize(("orders", "at_least", "expected"), [(2, 3, False), (3, 3, True), (4, 3, True)])
def test_at_least_boundary(orders, at_least, expected):
    world = World()
    for _ in range(orders):
        world.track("u1", ago=timedelta(days=1))
    world.track("u1", ago=timedelta(days=40))  # outside the window: not counted
    assert world.member({"event": ORDER, "within": "30d", "at_least": at_least}) is expected


@pytest.mark.parametrize(("orders", "at_most", "expected"), [(0, 0, True), (1, 0, False), (2, 2, True), (3, 2, False)])
def test_at_most_boundary(orders, at_most, expected):
    world = World()
    world.identify("u1", email="u1@example.com")
    for _ in range(orders):
        world.track("u1", ago=timedelta(days=1))
    assert world.member({"event": ORDER, "within": "30d", "at_most": at_most}) is expected


def test_did_not_perform_counts_only_the_window():
    world = World()
    world.track("u1", ago=timedelta(days=31))
    assert world.member({"event": ORDER, "within": "30d", "at_most": 0}) is True


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"property": "revenue", "gt": 10}, True),
        ({"property": "revenue", "gt": 25}, False),
        ({"property": "revenue", "gte": 25}, True),
        ({"property": "revenue", "lt": 25}, False),
        ({"property": "revenue", "lte": 25}, True),
        ({"property": "revenue", "equals": 25.0}, True),
        ({"property": "revenue", "not_equals": 25}, False),
        ({"property": "currency", "equals": "EUR"}, True),
        ({"property": "currency", "gt": 3}, False),  # a string never orders against a number
        ({"property": "coupon", "exists": False}, True),
        ({"property": "coupon", "exists": True}, False),
        ({"property": "coupon", "not_equals": "X"}, True),
        ({"property": "shipping.country", "equals": "FR"}, True),
        ({"property": "gift", "equals": 1}, False),  # true is not 1
        ({"any": [{"property": "revenue", "gt": 100}, {"property": "currency", "equals": "EUR"}]}, True),
        ({"all": [{"property": "revenue", "gt": 100}, {"property": "currency", "equals": "EUR"}]}, False),
        ({"not": {"property": "currency", "equals": "EUR"}}, False),
    ],
)
def test_where_conditions(where, expected):
    world = World()
    world.track("u1", revenue=25, currency="EUR", shipping={"country": "FR"}, gift=True)
    assert world.member({"event": ORDER, "within": "30d", "where": where}) is expected


def test_where_filters_before_counting():
    world = World()
    world.track("u1", revenue=5)
    world.track("u1", revenue=50)
    rule = {"event": ORDER, "at_least": 2, "where": {"property": "revenue", "gt": 10}}
    assert world.member(rule) is False
    world.track("u1", revenue=11)
    assert world.engine.profile_view("u1")["audiences"]["a0"] is True


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"trait": "plan", "equals": "pro"}, True),
        ({"trait": "plan", "not_equals": "pro"}, False),
        ({"trait": "missing", "not_equals": "pro"}, True),
        ({"trait": "age", "gte": 30}, True),
        ({"trait": "age", "gt": 30}, False),
        ({"trait": "age", "lt": 31}, True),
        ({"trait": "age", "lte": 29}, False),
        ({"trait": "signup", "gte": "2025-01-01"}, True),
        ({"trait": "email", "exists": True}, True),
        ({"trait": "phone", "exists": True}, False),
        ({"trait": "address.city", "equals": "Lyon"}, True),
    ],
)
def test_trait_conditions(condition, expected):
    world = World()
    world.identify("u1", email="u1@example.com", plan="pro", age=30, signup="2025-02-10", address={"city": "Lyon"})
    assert world.member(condition) is expected


def test_all_any_not():
    world = World()
    world.identify("u1", plan="pro")
    world.track("u1", ago=timedelta(days=2))
    ordered = {"event": ORDER, "within": "30d"}
    pro = {"trait": "plan", "equals": "pro"}
    free = {"trait": "plan", "equals": "free"}
    assert world.member({"all": [ordered, pro]}) is True
    assert world.member({"all": [ordered, free]}) is False
    assert world.member({"any": [free, ordered]}) is True
    assert world.member({"any": [free, {"not": ordered}]}) is False
    assert world.member({"not": {"all": [ordered, free]}}) is True


# --- computed traits -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("computed", "expected"),
    [("count", 4), ("sum", 70), ("avg", 17.5), ("most_frequent", "EUR"), ("first", "USD"), ("last", "GBP")],
)
def test_computed_traits(computed, expected):
    world = World()
    world.track("u1", ago=timedelta(days=100), revenue=1000, currency="JPY")  # outside 90d
    world.track("u1", ago=timedelta(days=80), revenue=10, currency="USD")
    world.track("u1", ago=timedelta(days=20), revenue=20, currency="EUR")
    world.track("u1", ago=timedelta(days=10), revenue=30, currency="EUR")
    world.track("u1", ago=timedelta(days=1), revenue=10, currency="GBP")
    world.track("u1", "Product Viewed", revenue=99, currency="EUR")  # another event
    prop = {"count": None, "sum": "revenue", "avg": "revenue"}.get(computed, "currency")
    body = {"name": f"t {computed}", "computed": computed, "event": ORDER, "within": "90d"}
    if prop:
        body["property"] = prop
    trait = world.engine.define_trait(body)
    assert trait.id.startswith("tra_")
    assert world.engine.profile_view("u1")["computed_traits"][trait.key] == expected


def test_most_frequent_tie_goes_to_the_first_alphabetical_value():
    # computed-traits.md: "In the case of a tie, Segment returns the first alphabetical value." It went
    # to the value seen most recently.
    world = World()
    for days, currency in ((4, "EUR"), (3, "USD"), (2, "EUR"), (1, "USD")):
        world.track("u1", ago=timedelta(days=days), currency=currency)
    world.engine.define_trait({"name": "c", "computed": "most_frequent", "event": ORDER, "property": "currency"})
    assert world.engine.profile_view("u1")["computed_traits"]["c"] == "EUR"
    for rating in (9, 10, 9, 10, False, True, False, True):  # GUESS: other values by their JSON text
        world.track("u1", rating=rating)
    world.engine.define_trait({"name": "r", "computed": "most_frequent", "event": ORDER, "property": "rating"})
    assert world.engine.profile_view("u1")["computed_traits"]["r"] == 10


def test_most_frequent_needs_the_property_tracked_at_least_twice():
    # computed-traits.md: "the most frequent computed trait requires the event property to have been
    # tracked at least twice." One value was enough; a second one lapsing leaves no value again.
    world = World()
    world.track("u1", ago=timedelta(days=5), currency="EUR")
    world.track("u1", "Product Viewed", currency="EUR")  # another event
    world.track("u1", currency=None)  # no value
    world.engine.define_trait({"name": "c", "computed": "most_frequent", "event": ORDER, "property": "currency",
                               "within": "7d"})
    assert world.engine.profile_view("u1")["computed_traits"] == {}
    assert world.sync() == {}
    world.track("u1", ago=timedelta(days=1), currency="USD")
    assert world.sync() == {"u1": {"c": "EUR"}}
    world.advance(timedelta(days=2, milliseconds=1))
    assert world.sync() == {"u1": {"c": None}}


def test_most_frequent_counts_one_number_whatever_its_json_spelling():
    # JSON has one number type: 4 and 4.0 are the same rating (a Python client sends 4.0, analytics.js
    # 4). They were counted apart, so 5 (sent three times) beat 4 (sent four times). true stays apart from 1.
    world = World()
    for rating in (4, 4.0, 4, 4.0, 5, 5, 5, True, True, True, 1):
        world.track("u1", rating=rating)
    world.engine.define_trait({"name": "r", "computed": "most_frequent", "event": ORDER, "property": "rating"})
    assert world.engine.profile_view("u1")["computed_traits"]["r"] == 4
    world.track("u1", rating=1)
    world.track("u1", rating=1.0)
    world.track("u1", rating=1)
    assert world.engine.profile_view("u1")["computed_traits"]["r"] is not True  # 1 x4 ties 4 x4, and sorts first
    assert world.engine.profile_view("u1")["computed_traits"]["r"] == 1


def test_sum_and_avg_ignore_non_numbers():
    world = World()
    world.track("u1", revenue=10)
    world.track("u1", revenue="12")
    world.track("u1", revenue=True)
    world.engine.define_trait({"name": "s", "computed": "sum", "event": ORDER, "property": "revenue"})
    world.engine.define_trait({"name": "a", "computed": "avg", "event": ORDER, "property": "revenue"})
    assert world.engine.profile_view("u1")["computed_traits"] == {"s": 10, "a": 10.0}


def test_computed_trait_window_lapses():
    world = World()
    world.track("u1", ago=timedelta(days=89), revenue=10)
    world.track("u1", ago=timedelta(days=1), revenue=5)
    world.engine.define_trait({"name": "r", "computed": "sum", "event": ORDER, "property": "revenue", "within": "90d"})
    assert world.sync() == {"u1": {"r": 15}}
    world.advance(timedelta(days=1))
    assert world.sync() == {}  # exactly 90 days old: still inside
    world.advance(MS)
    assert world.sync() == {"u1": {"r": 5}}
    world.advance(timedelta(days=89))
    assert world.sync() == {"u1": {"r": 0}}  # the last order lapsed: an absent sum reads 0
    world.advance(timedelta(days=1))
    assert world.sync() == {}


# --- incremental sync ------------------------------------------------------------------------------

def _shop(world: World) -> None:
    for user in ("alice", "bob", "carol", "dave"):
        world.identify(user, email=f"{user}@example.com")
    world.track("alice", ago=timedelta(days=1))
    world.track("bob", ago=timedelta(days=20))
    world.track("carol", ago=timedelta(days=29))
    world.track("dave", ago=timedelta(days=45))


def test_first_sync_sends_every_member_then_only_changes():
    world = World()
    _shop(world)
    world.engine.define_audience(LAST_30)
    first = world.engine.sync()
    assert [m["userId"] for m in first.sent] == ["alice", "bob", "carol"]
    assert first.evaluated == 4
    assert world.engine.sync().sent == []  # nothing changed
    world.track("dave")  # enters
    world.identify("alice", plan="pro")  # irrelevant to the audience
    second = world.engine.sync()
    assert [(m["userId"], m["traits"]["order_completed_last_30days"]) for m in second.sent] == [("dave", True)]
    assert second.evaluated == 1
    assert world.emitted == first.sent + second.sent


def test_exits_send_false_when_the_window_lapses():
    world = World()
    _shop(world)
    world.engine.define_audience(LAST_30)
    world.engine.sync()
    world.advance(timedelta(days=1))
    assert world.engine.sync().evaluated == 0  # carol's order is exactly 30 days old: still in
    world.advance(MS)
    result = world.engine.sync()
    assert result.evaluated == 1  # only carol's window lapsed
    assert world_traits(result) == {"carol": False}
    world.track("bob")  # orders again inside the window: stays
    world.advance(timedelta(days=29))
    result = world.engine.sync()
    assert world_traits(result) == {"alice": False}
    assert result.evaluated == 2  # alice's and bob's first orders lapsed; bob has a newer one
    assert world.engine.profile_view("bob")["audiences"]["order_completed_last_30days"] is True
    audience = world.engine.audiences()[0]
    assert world.engine.describe(audience) == {**audience.to_json(), "synced": True, "members": 1, "member_sample": ["bob"]}


def world_traits(result) -> dict[str, Any]:
    return {m["userId"]: m["traits"]["order_completed_last_30days"] for m in result.sent}


def test_expiry_with_at_least_waits_for_the_count_to_fall_below():
    world = World()
    world.track("u1", ago=timedelta(days=25))
    world.track("u1", ago=timedelta(days=20))
    world.track("u1", ago=timedelta(days=10))
    world.engine.define_audience({"name": "Repeat", "rule": {"event": ORDER, "within": "30d", "at_least": 2}})
    assert world.sync() == {"u1": {"repeat": True}}
    world.advance(timedelta(days=5, milliseconds=1))  # 25-day-old order lapses; two remain
    assert world.sync() == {}
    world.advance(timedelta(days=5))  # the 20-day-old one lapses
    assert world.sync() == {"u1": {"repeat": False}}


def test_did_not_perform_audience_entered_by_lapse():
    world = World()
    world.identify("u1", email="u1@example.com")
    world.identify("u2", email="u2@example.com")
    world.track("u1", ago=timedelta(days=29))
    world.engine.define_audience({"name": "Dormant", "rule": {"event": ORDER, "within": "30d", "at_most": 0}})
    assert world.sync() == {"u2": {"dormant": True}}
    world.advance(timedelta(days=1, milliseconds=1))
    assert world.sync() == {"u1": {"dormant": True}}
    world.track("u2")
    world.identify("u3", email="u3@example.com")  # a new profile can be dormant straight away
    assert world.sync() == {"u2": {"dormant": False}, "u3": {"dormant": True}}


def test_trait_condition_changes_are_picked_up():
    world = World()
    world.identify("u1", plan="free")
    world.engine.define_audience({"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    assert world.sync() == {}
    world.identify("u1", plan="pro")
    assert world.sync() == {"u1": {"pro": True}}
    world.identify("u1", plan="free")
    assert world.sync() == {"u1": {"pro": False}}


def test_computed_traits_sent_only_when_the_value_changes():
    world = World()
    _shop(world)
    world.identify("erin", email="erin@example.com")  # no orders: no value, nothing sent
    world.engine.define_trait({"name": "Orders 90 Days", "computed": "count", "event": ORDER, "within": "90d"})
    assert world.sync() == {u: {"orders_90days": 1} for u in ("alice", "bob", "carol", "dave")}
    world.track("alice")
    world.track("bob", "Product Viewed")
    assert world.sync() == {"alice": {"orders_90days": 2}}
    assert world.sync() == {}


def test_payloads_follow_design_and_contracts():
    world = World()
    _shop(world)
    world.identify("nomail")
    world.track("nomail")
    audience = world.engine.define_audience(LAST_30)
    trait = world.engine.define_trait({"name": "Total Revenue", "computed": "count", "event": ORDER})
    sent = world.engine.sync().sent
    alice = next(m for m in sent if m["userId"] == "alice" and m["context"]["personas"]["computation_class"] == "audience")
    assert alice == {
        "type": "identify",
        "userId": "alice",
        "traits": {"order_completed_last_30days": True, "email": "alice@example.com"},
        "context": {"personas": {"computation_class": "audience", "computation_id": audience.id,
                                 "computation_key": "order_completed_last_30days",
                                 "namespace": "spa_test", "space_id": "spa_test"}},
        "integrations": {"All": False, "Mailjet": True},
        "messageId": alice["messageId"],
        "timestamp": "2025-03-01T12:00:00.000Z",
    }
    assert alice["messageId"].startswith("personas_")
    assert len({m["messageId"] for m in sent}) == len(sent)
    nomail = next(m for m in sent if m["userId"] == "nomail")
    assert "email" not in nomail["traits"]
    counts = [m for m in sent if m["context"]["personas"]["computation_class"] == "trait"]
    assert {m["context"]["personas"]["computation_id"] for m in counts} == {trait.id}
    for message in sent:
        klass = message["context"]["personas"]["computation_class"]
        name = "segment.engage_audience_identify" if klass == "audience" else "segment.engage_trait_identify"
        assert contracts.validate(name, message) == [], message


def test_definitions_created_after_profiles_backfill_and_new_definitions_sync_on_their_own():
    world = World()
    _shop(world)
    world.engine.define_audience(LAST_30)
    world.engine.sync()
    world.engine.define_audience({"name": "Old Buyers", "rule": {"event": ORDER, "within": "60d"}})
    assert world.sync() == {u: {"old_buyers": True} for u in ("alice", "bob", "carol", "dave")}


def test_reset_restores_given_definitions_with_fresh_state():
    world = World()
    _shop(world)
    world.engine.define_audience({"name": "Temp", "rule": {"event": ORDER}})
    world.engine.sync()
    world.engine.reset(audiences=[LAST_30])
    assert [a.key for a in world.engine.audiences()] == ["order_completed_last_30days"]
    assert set(world.sync()) == {"alice", "bob", "carol"}


# --- scheduling on the virtual clock ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [("2h", timedelta(hours=2)), ("realtime", "realtime"), ("manual", "manual"), ("90s", timedelta(seconds=90))],
)
def test_parse_sync_interval(text, expected):
    assert parse_sync_interval(text) == expected


@pytest.mark.parametrize("text", ["", "often", "0s", "-2h"])
def test_parse_sync_interval_rejects(text):
    with pytest.raises(DefinitionError):
        parse_sync_interval(text)


class ClockWorld(World):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        super().__init__()

    # The world's notion of now (the engine's and the events') follows the virtual clock.
    @property
    def now(self):
        return self.clock.now()

    @now.setter
    def now(self, value):
        pass


def test_interval_schedule_syncs_as_the_clock_advances():
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        scheduler = EngageScheduler(world.engine, clock, "2h", owner="segment")
        _shop(world)
        world.engine.define_audience(LAST_30)
        scheduler.arm()
        clock.advance(timedelta(hours=1))
        await clock.run_due()
        assert world.emitted == []
        clock.advance(timedelta(hours=1))
        await clock.run_due()
        assert {m["userId"] for m in world.emitted} == {"alice", "bob", "carol"}
        clock.advance(timedelta(days=31))  # one sync at the new time, not one per missed interval
        assert await clock.run_due() == 1
        assert {m["userId"] for m in world.emitted[3:]} == {"alice", "bob", "carol"}
        clock.reset(owner="segment")  # a service reset drops the timer; arm() schedules a new one
        scheduler.arm()
        assert clock.pending() == 1

    asyncio.run(scenario())


def test_an_interval_schedule_follows_the_clock_set_back():
    # The timer armed 10 days ahead stayed there: after `POST clock {"set": earlier}` no sync ran
    # for 10 days, though the schedule promises one every interval.
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        scheduler = EngageScheduler(world.engine, clock, "2h", owner="segment")
        start = world.engine.define_audience(LAST_30).created_at  # the schedule's anchor
        scheduler.arm()
        clock.advance(timedelta(days=10))
        await clock.run_due()
        scheduler.arm()
        clock.set(start + timedelta(minutes=30))
        world.track("alice")
        scheduler.arm()  # as after any message that can change what to send
        assert clock.next_due() == start + timedelta(hours=2)
        clock.advance(timedelta(hours=2))
        await clock.run_due()
        assert [m["userId"] for m in world.emitted] == ["alice"]

    asyncio.run(scenario())


def test_an_interval_schedule_follows_the_clock_set_back_with_no_message():
    # The schedule was re-armed only by a message or a definition: after the clock went back ten
    # days with neither, the next sync waited the ten days out.
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        scheduler = EngageScheduler(world.engine, clock, "2h", owner="segment")
        start = world.engine.define_audience(LAST_30).created_at
        scheduler.arm()
        clock.advance(timedelta(days=10))
        await clock.run_due()
        clock.set(start + timedelta(minutes=30))
        assert clock.next_due() == start + timedelta(hours=2) and clock.pending() == 1
        scheduler.close()
        clock.set(start + timedelta(minutes=40))  # a closed schedule arms nothing
        assert clock.pending() == 0

    asyncio.run(scenario())


def test_a_realtime_space_looks_at_every_profile_again_when_the_clock_is_set_back():
    # After a lapse was sent, the clock set back puts the order inside its window again: the profile
    # answered `true` while the destination kept `false`, until alice's next event.
    async def scenario():
        clock = Clock()
        world, _ = await _alice_bought_in_a_realtime_space(clock)
        start = clock.now()
        clock.advance(timedelta(days=31))
        await clock.run_due()
        clock.set(start + timedelta(days=1))
        assert await clock.run_due() == 1
        assert [m["traits"]["order_completed_last_30days"] for m in world.emitted] == [True, False, True]
        # Its lapse is scheduled again from the earlier time, and nothing is due before it.
        assert clock.next_due() > start + timedelta(days=29)
        clock.set(start + timedelta(days=2))  # forward: nothing to look at again
        assert await clock.run_due() == 0

    asyncio.run(scenario())


def test_realtime_schedule_syncs_changes_and_lapses():
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        scheduler = EngageScheduler(world.engine, clock, "realtime", owner="segment")
        world.engine.define_audience(LAST_30)
        scheduler.arm()
        await clock.run_due()
        world.track("alice")
        scheduler.arm()
        await clock.run_due()
        assert [(m["userId"], m["traits"]["order_completed_last_30days"]) for m in world.emitted] == [("alice", True)]
        clock.advance(timedelta(days=30, milliseconds=1))
        await clock.run_due()
        assert world.emitted[-1]["traits"]["order_completed_last_30days"] is False

    asyncio.run(scenario())


async def _alice_bought_in_a_realtime_space(clock: Clock) -> tuple[ClockWorld, EngageScheduler]:
    """A realtime space with LAST_30 in which alice's order has just synced."""
    world = ClockWorld(clock)
    scheduler = EngageScheduler(world.engine, clock, "realtime", owner="segment")
    world.engine.define_audience(LAST_30)
    world.track("alice")
    scheduler.arm()
    await clock.run_due()
    return world, scheduler


def test_realtime_schedule_acts_on_a_lapse_one_tick_after_the_window_edge():
    # An event exactly `within` old is still inside: a timer due at the edge itself would sync for
    # nothing and re-arm itself at the same moment, round after round.
    class FrozenClock(Clock):  # real time stands still: the test lands on the edge exactly
        def now(self):
            return T0 + self.offset

    async def scenario():
        clock = FrozenClock()
        world, _ = await _alice_bought_in_a_realtime_space(clock)
        assert [m["traits"]["order_completed_last_30days"] for m in world.emitted] == [True]
        assert clock.next_due() == T0 + timedelta(days=30, microseconds=1)
        clock.advance(timedelta(days=30))
        assert await clock.run_due() == 0  # at the edge the order is still inside the window
        assert len(world.emitted) == 1
        clock.advance(timedelta(microseconds=1))
        await clock.run_due()
        assert [m["traits"]["order_completed_last_30days"] for m in world.emitted] == [True, False]

    asyncio.run(scenario())


class FailingSync:
    """A space's sync that raises (a bug) its first `failures` times, then syncs the engine."""

    def __init__(self, engine: EngageEngine, failures: int) -> None:
        self.engine, self.failures, self.calls = engine, failures, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("sync broke")
        return self.engine.sync()


def test_an_interval_sync_that_raises_is_logged_and_the_schedule_goes_on(caplog):
    # The timer re-armed itself only after a sync returned: one that raised ended the schedule
    # until some message arrived, so the exits of lapsed windows were never sent.
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        failing = FailingSync(world.engine, failures=1)
        scheduler = EngageScheduler(world.engine, clock, "2h", owner="segment", sync=failing)
        _shop(world)
        world.engine.define_audience(LAST_30)
        scheduler.arm()
        clock.advance(timedelta(hours=2))
        assert await clock.run_due() == 1
        assert world.emitted == [] and clock.pending() == 1
        clock.advance(timedelta(hours=2))
        await clock.run_due()
        assert failing.calls == 2
        assert {m["userId"] for m in world.emitted} == {"alice", "bob", "carol"}

    asyncio.run(scenario())
    assert "Engage sync of segment failed" in caplog.text and "sync broke" in caplog.text


def test_a_realtime_sync_that_raises_is_retried_later_not_at_once():
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        failing = FailingSync(world.engine, failures=2)
        scheduler = EngageScheduler(world.engine, clock, "realtime", owner="segment", sync=failing)
        world.engine.define_audience(LAST_30)
        world.track("alice")
        scheduler.arm()
        assert await clock.run_due() == 1  # not fired again and again while the first sync is pending
        world.track("bob")
        scheduler.arm()  # a new message does not bring the retry forward either
        assert await clock.run_due() == 0 and clock.pending() == 1
        clock.advance(timedelta(minutes=1))
        assert await clock.run_due() == 1 and failing.calls == 2
        clock.advance(timedelta(minutes=1))
        await clock.run_due()
        assert failing.calls == 3
        assert sorted(m["userId"] for m in world.emitted) == ["alice", "bob"]

    asyncio.run(scenario())


def test_profiles_a_sync_had_not_finished_when_it_raised_are_synced_at_the_retry(monkeypatch):
    # The sync raised (a bug) after taking the dirty profiles: those it had not finished were in
    # no set any more, nothing was pending, and no retry was scheduled; alice was never told.
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        scheduler = EngageScheduler(world.engine, clock, "realtime", owner="segment")
        world.engine.define_audience(LAST_30)
        scheduler.arm()
        await clock.run_due()
        broken = [True]
        record = _Computation.record

        def record_once_broken(self, user_id, value):
            if broken.pop() if broken else False:
                raise RuntimeError("record broke")
            record(self, user_id, value)

        monkeypatch.setattr(_Computation, "record", record_once_broken)
        world.track("alice")
        scheduler.arm()
        await clock.run_due()
        assert world.emitted == [] and clock.pending() == 1  # the retry
        clock.advance(SYNC_RETRY)
        await clock.run_due()
        assert [m["userId"] for m in world.emitted] == ["alice"]

    asyncio.run(scenario())


def test_what_a_sync_recorded_before_it_raised_is_still_sent():
    # The identifies were emitted only after every definition was looked at: a sync raising on a
    # later definition had already noted alice as told, so her entry was never sent, at any sync.
    class Flaky(World):
        broken = False

        def user_ids(self):
            if self.broken:
                raise RuntimeError("profile store broke")
            return super().user_ids()

    world = Flaky()
    world.engine.define_audience(LAST_30)
    assert world.sync() == {}
    world.identify("alice", email="alice@example.com")
    world.track("alice")
    world.engine.define_audience({"name": "Anyone", "rule": {"event": ORDER, "at_most": 5}})  # backfills
    world.broken = True
    with pytest.raises(RuntimeError):
        world.engine.sync()
    assert [m["traits"] for m in world.emitted] == [{"order_completed_last_30days": True, "email": "alice@example.com"}]
    world.broken = False
    assert world.sync() == {"alice": {"anyone": True}}


def _told_pairs(sent: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(key, m["traits"]["email"]) for m in sent for key in m["traits"] if key != "email"]


def _told_by_two_audiences_then_a_new_email(world: World) -> None:
    """u1 (a@) told by Pro (reading a trait) and LAST_30 (reading events), then given b@."""
    world.identify("u1", email="a@example.com", plan="pro")
    world.track("u1")
    world.engine.define_audience({"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    world.engine.define_audience(LAST_30)
    world.engine.sync()
    world.identify("u1", email="b@example.com")


def test_an_email_a_failed_evaluation_did_not_send_to_is_sent_to_at_the_retry():
    # The emails told are kept per user: Pro's send to b@ counted for every definition, so the
    # retry of LAST_30 (its evaluation raised) found b@ told and never sent to it (R47).
    world = BrokenWorld()
    _told_by_two_audiences_then_a_new_email(world)
    world.broken = "u1"  # LAST_30 reads u1's events and fails; Pro reads a trait
    assert _told_pairs(world.engine.sync().sent) == [("pro", "b@example.com")]
    world.broken = None
    assert _told_pairs(world.engine.sync().sent) == [("order_completed_last_30days", "b@example.com")]
    assert world.engine.sync().sent == []


def test_an_email_a_sync_that_raised_did_not_reach_is_sent_to_at_the_next_sync():
    # The sync raised (a bug) before LAST_30: Pro's send to b@ counted for it too, and it never sent.
    class Flaky(World):
        calls_left: int | None = None  # linked_user_id answers this many more times, then raises

        def linked_user_id(self, anonymous_id):
            if self.calls_left is not None:
                if self.calls_left == 0:
                    raise RuntimeError("profile store broke")
                self.calls_left -= 1
            return super().linked_user_id(anonymous_id)

    world = Flaky()
    _told_by_two_audiences_then_a_new_email(world)
    world.calls_left = 1  # Pro looks u1 up; LAST_30's lookup raises
    with pytest.raises(RuntimeError):
        world.engine.sync()
    assert _told_pairs(world.emitted[-1:]) == [("pro", "b@example.com")]
    world.calls_left = None
    assert _told_pairs(world.engine.sync().sent) == [("order_completed_last_30days", "b@example.com")]
    assert world.engine.sync().sent == []


def _member_given_new_emails(world: World, first: str, *later: str) -> None:
    """u1, with the email `first`, synced as a member of LAST_30, then given the `later` emails."""
    world.identify("u1", email=first)
    world.track("u1")
    world.engine.define_audience(LAST_30)
    world.engine.sync()
    for email in later:
        world.identify("u1", email=email)


def test_two_emails_added_between_syncs_are_each_sent_what_the_user_was_told():
    world = World()
    _member_given_new_emails(world, "a@example.com", "b@example.com", "c@example.com")
    assert [m["traits"]["email"] for m in world.engine.sync().sent] == ["b@example.com", "c@example.com"]
    assert world.engine.sync().sent == []


def test_manual_schedule_sets_no_timer():
    clock = Clock()
    world = ClockWorld(clock)
    world.engine.define_audience(LAST_30)
    EngageScheduler(world.engine, clock, "manual", owner="segment").arm()
    assert clock.pending() == 0


def test_only_relevant_messages_mark_profiles_dirty():
    world = World()
    _shop(world)
    world.engine.define_audience(LAST_30)
    world.engine.sync()
    world.track("alice", "Product Viewed")  # an event no definition reads
    world.identify("bob", plan="free")  # a trait no definition reads
    assert world.engine.sync().evaluated == 0
    # A new anonymousId with a known userId may merge history in; so may an alias.
    world.engine.observe({"type": "page", "userId": "alice", "anonymousId": "anon-1"})
    world.engine.observe({"type": "alias", "userId": "bob", "previousId": "anon-2"})
    world.engine.observe({"type": "track", "anonymousId": "anon-3", "event": ORDER})  # anonymous: not synced
    assert world.engine.sync().evaluated == 2


def test_an_audience_of_audience_members_follows_engage_identifies():
    world = World()
    _shop(world)
    buyers = world.engine.define_audience(LAST_30)
    world.engine.define_audience({"name": "Buyers Again", "rule": {"trait": buyers.key, "equals": True}})
    world.engine.sync()  # nothing carries the trait yet: the fake backend merges Engage identifies below
    for message in world.emitted:
        world.traits_of[message["userId"]].update(message["traits"])
        world.engine.observe_own(message)
    assert world.sync() == {u: {"buyers_again": True} for u in ("alice", "bob", "carol")}


# --- robustness (reviewed defects) -----------------------------------------------------------------

@pytest.mark.parametrize(("within", "problem"), [
    # `\d` took any Unicode digit after the first: "3٠d" was stored and counted as 30 days, while the
    # OpenAPI description's pattern (ECMA regex, ASCII digits) and the clock's durations refuse it.
    ("1٠h", "bad window"), ("3٠d", "bad window"), ("1２h", "bad window"),
    # "999999999d" was accepted and overflowed every sync; "1000000000d" overflowed while parsing.
    ("3651d", "too long"), ("87601h", "too long"), ("999999999d", "too long"), ("1000000000d", "too long"),
    ("10" * 30 + "h", "too long"),
])
def test_windows_refused(within, problem):
    world = World()
    with pytest.raises(DefinitionError, match=problem):
        world.engine.define_audience({"name": "a", "rule": {"event": ORDER, "within": within}})
    with pytest.raises(DefinitionError, match=problem):
        world.engine.define_trait({"name": "t", "computed": "count", "event": ORDER, "within": within})


def test_the_longest_window_is_accepted():
    world = World()
    world.track("u1", ago=timedelta(days=3650))
    world.engine.define_audience({"name": "a", "rule": {"event": ORDER, "within": "3650d"}})
    world.engine.define_trait({"name": "t", "computed": "count", "event": ORDER, "within": "87600h"})
    assert world.engine.profile_view("u1") == {"audiences": {"a": True}, "computed_traits": {"t": 1}}


def test_far_future_timestamps_never_lapse_instead_of_overflowing():
    # An event stamped near year 9999 made `timestamp + within` overflow: every sync answered 500.
    world = World()
    world.events_of["u1"][ORDER].append(Event(datetime(9999, 12, 20, tzinfo=timezone.utc), {"revenue": 5}))
    world.engine.observe({"type": "track", "userId": "u1", "event": ORDER})
    world.engine.define_audience(LAST_30)
    world.engine.define_trait({"name": "r", "computed": "sum", "event": ORDER, "property": "revenue", "within": "30d"})
    assert [m["traits"] for m in world.engine.sync().sent] == [{"order_completed_last_30days": True}, {"r": 5}]
    assert world.engine.next_lapse() is None
    assert world.engine.profile_view("u1")["audiences"] == {"order_completed_last_30days": True}


def test_a_window_reaching_before_datetimes_range_covers_all_time():
    world = World(now=datetime(1, 1, 2, tzinfo=timezone.utc))
    world.events_of["u1"][ORDER].append(Event(datetime(1, 1, 1, tzinfo=timezone.utc), {}))
    world.engine.observe({"type": "track", "userId": "u1", "event": ORDER})
    world.engine.define_audience(LAST_30)
    assert world.engine.profile_view("u1")["audiences"] == {"order_completed_last_30days": True}


class BrokenWorld(World):
    """A profile source that fails on one user's events, as a bug in a rule would."""

    broken: str | None = None

    def events(self, user_id, event, since):
        if user_id == self.broken:
            raise RuntimeError("cannot read events")
        return super().events(user_id, event, since)


def test_a_profile_failing_to_evaluate_is_evaluated_again_at_the_next_sync_and_the_others_are_synced():
    # The dirty set was cleared and alice's membership recorded before bob's evaluation raised out
    # of the sync, so alice's entry was never sent and the next sync had nothing left to look at.
    world = BrokenWorld()
    world.engine.define_audience(LAST_30)
    world.engine.sync()
    world.track("alice")
    world.track("bob")
    world.track("carol")
    world.broken = "bob"
    assert world.sync() == {user: {"order_completed_last_30days": True} for user in ("alice", "carol")}
    assert not world.engine.has_pending()  # a realtime schedule does not retry it at once
    world.broken = None
    assert world.sync() == {"bob": {"order_completed_last_30days": True}}
    assert world.sync() == {}


def test_a_lapse_whose_evaluation_failed_is_evaluated_by_the_next_sync():
    world = BrokenWorld()
    world.track("alice")
    world.track("bob", ago=timedelta(days=10))
    world.engine.define_audience(LAST_30)
    assert set(world.sync()) == {"alice", "bob"}
    world.advance(timedelta(days=31))  # both lapse
    world.broken = "bob"
    assert world.sync() == {"alice": {"order_completed_last_30days": False}}
    world.broken = None
    assert world.sync() == {"bob": {"order_completed_last_30days": False}}


def test_an_anonymous_call_on_a_known_users_profile_is_synced():
    # The profile store files a call with only a linked anonymousId on the user's profile; Engage
    # used to ignore it, so the profile view said "member" while no sync ever sent it.
    world = World()
    world.engine.define_audience({"name": "Buyers", "rule": {"event": ORDER}})
    world.user_of_anonymous["anon-1"] = "u1"
    world.identify("u1", email="u1@example.com")
    world.engine.observe({"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    assert world.sync() == {}
    world.events_of["u1"][ORDER].append(Event(world.now, {}))
    assert world.engine.observe({"type": "track", "anonymousId": "anon-1", "event": ORDER})
    assert world.sync() == {"u1": {"buyers": True}}
    assert not world.engine.observe({"type": "track", "anonymousId": "anon-2", "event": ORDER})  # not linked


@pytest.mark.parametrize(
    "definitions",
    [
        [{"name": "Newcomers", "key": "newcomer", "rule": {"not": {"trait": "newcomer", "equals": True}}}],
        [{"name": "Plan", "key": "plan", "rule": {"trait": "plan.tier", "exists": True}}],
        [{"name": "A", "rule": {"trait": "b", "equals": True}},
         {"name": "B", "rule": {"any": [{"event": ORDER}, {"not": {"trait": "a", "equals": True}}]}}],
        [{"name": "A", "rule": {"trait": "b", "equals": True}}, {"name": "B", "rule": {"trait": "c", "equals": True}},
         {"name": "C", "rule": {"trait": "a", "equals": True}}],
    ],
)
def test_an_audience_depending_on_its_own_value_is_refused(definitions):
    # A negated self-reference flipped at every sync, and in realtime mode synced without end.
    world = World()
    *accepted, last = definitions
    for body in accepted:
        world.engine.define_audience(body)
    with pytest.raises(DefinitionError, match="its own value"):
        world.engine.define_audience(last)
    assert [a.key for a in world.engine.audiences()] == [body.get("key") or body["name"].lower() for body in accepted]


def test_a_realtime_schedule_settles_with_audiences_of_audience_members():
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)

        def emit(message):  # what the backend does with Engage's identifies
            world.emitted.append(message)
            world.traits_of.setdefault(message["userId"], {}).update(message["traits"])
            world.engine.observe_own(message)
            scheduler.arm()

        world.engine.emit = emit
        scheduler = EngageScheduler(world.engine, clock, "realtime", owner="segment")
        buyers = world.engine.define_audience(LAST_30)
        world.engine.define_audience({"name": "Not Buyers", "rule": {"not": {"trait": buyers.key, "equals": True}}})
        world.track("alice")
        scheduler.arm()
        await clock.run_due()
        # Both evaluated before alice carried the first audience's trait; the second then follows it.
        assert [m["traits"] for m in world.emitted] == [
            {"order_completed_last_30days": True}, {"not_buyers": True}, {"not_buyers": False},
        ]
        assert clock.pending() == 1  # only alice's lapse, 30 days ahead

    asyncio.run(scenario())


def test_a_sum_or_average_beyond_a_doubles_range_is_no_value_and_one_within_it_is():
    # Two 1e308 revenues summed to inf: the sync answered 500 and delivery sent `Infinity`.
    world = World()
    world.track("u1", revenue=1e308)
    world.track("u2", revenue=1e308)
    world.track("u2", revenue=1e308)
    world.engine.define_trait({"name": "s", "computed": "sum", "event": ORDER, "property": "revenue"})
    world.engine.define_trait({"name": "a", "computed": "avg", "event": ORDER, "property": "revenue"})

    def sent() -> list[tuple[str, dict[str, Any]]]:
        messages = world.engine.sync().sent
        json.dumps(messages, allow_nan=False)  # valid JSON, as the control API renders it
        return [(m["userId"], m["traits"]) for m in messages]

    # u2's sum has no value to send; its average, 1e308, is a double (the total was divided after it overflowed).
    assert sent() == [("u1", {"s": 1e308}), ("u1", {"a": 1e308}), ("u2", {"a": 1e308})]
    assert world.engine.profile_view("u2")["computed_traits"] == {"a": 1e308}
    world.track("u1", revenue=1e308)
    assert sent() == [("u1", {"s": None})]  # what was sent no longer holds; the average still does
    assert world.engine.profile_view("u1")["computed_traits"] == {"s": None, "a": 1e308}
    world.track("u1", revenue=-1e308)  # a running total that left the range and came back: 1e308
    assert sent() == [("u1", {"s": 1e308}), ("u1", {"a": 1e308 / 3})]


def test_integers_beyond_a_doubles_range_sum_exactly_and_never_overflow():
    world = World()
    world.track("u1", revenue=10**400)  # only a Python caller gives one: a JSON body with it is refused
    world.engine.define_trait({"name": "s", "computed": "sum", "event": ORDER, "property": "revenue"})
    world.engine.define_trait({"name": "a", "computed": "avg", "event": ORDER, "property": "revenue"})
    assert world.engine.profile_view("u1")["computed_traits"] == {"s": 10**400}
    world.track("u1", revenue=1.5)
    assert world.engine.profile_view("u1")["computed_traits"] == {}


def test_a_window_with_thousands_of_digits_is_refused_not_a_crash():
    # int() refuses strings over 4,300 digits with a plain ValueError: POST engage/audiences and
    # engage/traits answered 500 (the trait route dropped the connection).
    world = World()
    within = "9" * 5000 + "d"
    with pytest.raises(DefinitionError, match="too long"):
        world.engine.define_audience({"name": "a", "rule": {"event": ORDER, "within": within}})
    with pytest.raises(DefinitionError, match="too long"):
        world.engine.define_trait({"name": "t", "computed": "count", "event": ORDER, "within": within})


def test_an_interval_reaching_past_datetimes_range_schedules_nothing():
    # "100000000d" is a valid duration, but the next sync's time overflowed: every definition
    # answered 500 and every tracked call logged a failed listener.
    clock = Clock()
    world = ClockWorld(clock)
    scheduler = EngageScheduler(world.engine, clock, "100000000d", owner="segment")
    world.engine.define_audience(LAST_30)
    scheduler.arm()
    assert clock.pending() == 0


def test_a_trait_whose_name_has_a_dot_is_followed():
    # A rule on "a.b" reads the trait named "a.b" when the profile has one, but only changes to
    # the trait "a" marked the profile for evaluation: the audience never saw "a.b" change.
    world = World()
    world.identify("u1", email="u1@example.com")
    world.engine.define_audience({"name": "Dotted", "rule": {"trait": "plan.tier", "equals": "gold"}})
    assert world.sync() == {}
    world.identify("u1", **{"plan.tier": "gold"})
    assert world.sync() == {"u1": {"dotted": True}}


@pytest.mark.parametrize(("reserved", "body"), [
    ("email", {"name": "Email", "rule": {"event": ORDER}}),
    ("email", {"name": "x", "key": "email", "rule": {"event": ORDER}}),
    # Spellings the Mailjet destination reads as the email: it took the membership for the address.
    ("Email", {"name": "x", "key": "Email", "rule": {"event": ORDER}}),
    ("E_mail", {"name": "x", "key": "E_mail", "rule": {"event": ORDER}}),
    ("segment_user_id", {"name": "Segment User Id", "rule": {"event": ORDER}}),
    ("segment_user_id", {"name": "x", "key": "segment_user_id", "rule": {"event": ORDER}}),
])
def test_reserved_keys_are_refused(reserved, body):
    # "email": Engage writes the profile's email next to the key in the same traits, so the
    # membership was overwritten by the address and never reached the destination.
    # "segment_user_id": the bundle's Mailjet destination writes the userId to that contact property
    # and skips a trait of that name, so the value was synced at every change but never reached Mailjet.
    world = World()
    with pytest.raises(DefinitionError, match=reserved):
        world.engine.define_audience(body)
    with pytest.raises(DefinitionError, match=reserved):
        world.engine.define_trait({"name": body["name"], **({"key": body["key"]} if "key" in body else {}),
                                   "computed": "count", "event": ORDER})
    assert world.engine.audiences() == [] and world.engine.traits() == []


def test_a_workspace_reset_restarts_the_schedule_from_the_new_definitions():
    # A reset of one workspace (POST reset?writeKey=K) keeps the clock, so the old schedule's timer
    # stayed armed: syncs kept the old definitions' marks instead of counting from the new ones.
    async def scenario():
        clock = Clock()
        config = BundleConfig(engage_audiences=[LAST_30])
        space = EngageSpace(SegmentBackend(clock, [Source.named("app", "wk")]), config, clock, owner="segment")
        space.scheduler.arm()
        first_due = clock.next_due()
        clock.advance(timedelta(hours=1))
        space.reset()  # the config's definition again, created now
        assert clock.pending() == 1
        assert clock.next_due() - first_due >= timedelta(hours=1) - timedelta(seconds=5)
        clock.advance(timedelta(hours=1, minutes=1))
        await clock.run_due()
        assert space.engine.describe(space.engine.audiences()[0])["synced"] is False

    asyncio.run(scenario())


def test_an_email_added_to_a_profile_resends_what_the_destination_was_told():
    # Segment docs (engage/using-engage-data.md, "New external identifiers added to a profile"):
    # Engage re-syncs an audience or computed trait when an email is added to the profile, although
    # the value is unchanged. Without it a member synced before having an email (the Mailjet
    # destination refuses that identify) never reached Mailjet.
    world = World()
    world.track("u1")  # no email yet
    world.identify("u2", email="u2@example.com")
    world.track("u2")
    world.engine.define_audience(LAST_30)
    world.engine.define_trait({"name": "Orders", "computed": "count", "event": ORDER})
    first = world.engine.sync().sent
    assert [m["traits"] for m in first if m["userId"] == "u1"] == [{"order_completed_last_30days": True}, {"orders": 1}]

    def sent() -> list[tuple[str, dict[str, Any]]]:
        return [(m["userId"], m["traits"]) for m in world.engine.sync().sent]

    world.identify("u1", email="u1@example.com")
    assert sent() == [("u1", {"order_completed_last_30days": True, "email": "u1@example.com"}),
                      ("u1", {"orders": 1, "email": "u1@example.com"})]
    assert sent() == []
    world.identify("u1", email="u1@example.com", plan="pro")  # the same address again: nothing new
    world.identify("u2", email="u2@example.com")
    assert sent() == []
    world.identify("u1", email="ada@example.com")  # another address: Engage sends to it too
    world.track("u1")
    # An unchanged value goes to the new address only, a changed one to each of the profile's.
    assert sent() == [("u1", {"order_completed_last_30days": True, "email": "ada@example.com"}),
                      ("u1", {"orders": 2, "email": "u1@example.com"}),
                      ("u1", {"orders": 2, "email": "ada@example.com"})]
    # A restart restores what was told; the addresses already sent to are not sent to again.
    world.engine.restore(world.engine.export_state())
    world.identify("u1", email="ada@example.com")
    assert sent() == []
    world.identify("u2", email="bob@example.com")
    assert sent() == [("u2", {"order_completed_last_30days": True, "email": "bob@example.com"}),
                      ("u2", {"orders": 1, "email": "bob@example.com"})]


def test_each_change_is_sent_once_per_email_of_the_profile_exits_included():
    # Segment docs (engage/using-engage-data.md, "Multiple identifiers of the same type"): a profile
    # with several emails gets one event per email. Only the newest was sent to, so the contact of
    # an earlier address kept `true` in Mailjet after the user left the audience.
    world = World()
    _member_given_new_emails(world, "old@example.com", "new@example.com")
    assert [m["traits"] for m in world.engine.sync().sent] == [
        {"order_completed_last_30days": True, "email": "new@example.com"}]
    world.advance(timedelta(days=31))
    assert [m["traits"] for m in world.engine.sync().sent] == [
        {"order_completed_last_30days": False, "email": "old@example.com"},
        {"order_completed_last_30days": False, "email": "new@example.com"}]


def test_an_email_given_only_in_context_traits_is_sent_to():
    # Unify takes context.traits.email as an email external id too: a member whose address came
    # that way got Engage's identify without an email, which the Mailjet destination refuses.
    _, backend, space = _space_on_backend()
    _call(backend, "track", userId="uy", event=ORDER)
    space.define_audience(LAST_30)
    assert [m["traits"] for m in space.sync().sent] == [{"order_completed_last_30days": True}]
    _call(backend, "identify", userId="uy", context={"traits": {"email": "uy@example.com"}})
    assert [m["traits"] for m in space.sync().sent] == [
        {"order_completed_last_30days": True, "email": "uy@example.com"}]
    assert space.sync().sent == []


@pytest.mark.parametrize("first", ["a1", "a2"])
def test_after_an_alias_every_definition_that_told_the_survivor_sends_to_the_merged_email(first):
    # The merged-away user's emails counted as told for the survivor as soon as the first definition
    # took over its state: A1, told only to p@, sent nothing to q@ when A2 came first (R44).
    _, backend, space = _space_on_backend()
    _call(backend, "identify", userId="u1", traits={"email": "p@example.com", "plan": "pro"})
    _call(backend, "identify", userId="u2", traits={"email": "q@example.com", "tier": "gold"})
    definitions = {"a1": {"name": "A1", "rule": {"trait": "plan", "equals": "pro"}},
                   "a2": {"name": "A2", "rule": {"trait": "tier", "equals": "gold"}}}
    for key in sorted(definitions, key=lambda key: key != first):
        space.define_audience(definitions[key])
    space.sync()
    _call(backend, "alias", previousId="u2", userId="u1")
    sent = sorted((m["userId"], key, m["traits"]["email"]) for m in space.sync().sent for key in m["traits"] if key != "email")
    assert sent == [("u1", "a1", "q@example.com"), ("u1", "a2", "p@example.com"), ("u1", "a2", "q@example.com")]
    assert space.sync().sent == []


def test_a_user_told_nothing_now_is_done_with_a_new_email_after_one_sync():
    # A user who had left every audience, then changed address, was evaluated in every definition at
    # every sync: nothing was sent to the new address, so it never counted as told (R44).
    world = World()
    world.identify("u1", email="a@example.com")
    world.track("u1")
    world.engine.define_audience(LAST_30)
    world.engine.define_audience({"name": "Buyers", "rule": {"event": ORDER, "within": "7d"}})
    world.engine.sync()
    world.advance(timedelta(days=31))
    assert [m["traits"]["email"] for m in world.engine.sync().sent] == ["a@example.com", "a@example.com"]
    world.identify("u1", email="b@example.com")
    assert world.engine.sync().sent == []  # told nothing now: nothing to send to the new address
    world.track("u1", event="Page Viewed")  # read by no definition
    assert world.engine.sync().evaluated == 0


def test_after_an_alias_a_survivor_told_null_sends_its_next_value_to_the_merged_users_emails_too():
    # The survivor's null kept the merged-away user's value out, and nothing was sent: q@ kept "s2" (R48).
    clock, backend, space = _space_on_backend()
    space.define_trait({"name": "Last Sku", "computed": "last", "event": ORDER, "property": "sku", "within": "10d"})
    _call(backend, "identify", userId="u1", traits={"email": "p@example.com"})
    _call(backend, "track", userId="u1", event=ORDER, properties={"sku": "s1"})
    _call(backend, "identify", userId="u2", traits={"email": "q@example.com"})

    def told() -> list[tuple[str, Any, str]]:
        return sorted((m["userId"], m["traits"]["last_sku"], m["traits"]["email"]) for m in space.sync().sent)

    assert told() == [("u1", "s1", "p@example.com")]
    clock.advance(timedelta(days=11))
    assert told() == [("u1", None, "p@example.com")]
    _call(backend, "track", userId="u2", event=ORDER, properties={"sku": "s2"})
    assert told() == [("u2", "s2", "q@example.com")]
    clock.advance(timedelta(days=11))  # u2's value lapses, and before the next sync u2 merges into u1
    _call(backend, "alias", previousId="u2", userId="u1")
    assert told() == [("u1", None, "p@example.com"), ("u1", None, "q@example.com")]
    assert told() == []


def test_an_exit_reaches_every_email_a_merge_brought_even_past_the_limit():
    # A merge kept five of the two profiles' six emails: the sixth, told `true`, never got the exit (R44).
    clock, backend, space = _space_on_backend()
    for user_id, prefix in (("u1", "p"), ("u2", "q")):
        for number in range(3):
            _call(backend, "identify", userId=user_id, traits={"email": f"{prefix}{number}@example.com"})
        _call(backend, "track", userId=user_id, event=ORDER)
    space.define_audience(LAST_30)
    assert len(space.sync().sent) == 6
    _call(backend, "alias", previousId="u2", userId="u1")
    assert sorted(m["traits"]["email"] for m in space.sync().sent) == [f"q{number}@example.com" for number in range(3)]
    clock.advance(timedelta(days=31))
    exits = space.sync().sent
    assert sorted(m["traits"]["email"] for m in exits if m["traits"]["order_completed_last_30days"] is False) == [
        f"{prefix}{number}@example.com" for prefix in "pq" for number in range(3)]


def test_a_long_chain_of_audiences_reading_each_other_is_checked_without_recursion():
    # The dependency check recursed once per link: the 996th audience of a chain defined from its
    # start (each reading the next one's key) answered 500 with RecursionError (so did a snapshot).
    chain = [parse_audience({"name": f"a{index}", "rule": {"trait": f"a{index + 1}", "equals": True}}, T0)
             for index in range(5000)]
    check_dependencies(chain)
    closing = parse_audience({"name": "a5000", "rule": {"trait": "a0", "equals": True}}, T0)
    with pytest.raises(DefinitionError, match=r"'a0' would depend on its own value \(a0 → a1 → a2 → .* → a5000 → a0\)"):
        check_dependencies([*chain, closing])


def _space_on_backend() -> tuple[Clock, SegmentBackend, EngageSpace]:
    """A clock at T0, a backend, and an Engage space on it that syncs when told."""
    clock = Clock()
    clock.set(T0)
    backend = SegmentBackend(clock, [Source.named("app", "wk")])
    space = EngageSpace(backend, BundleConfig(engage_sync_interval="manual"), clock, owner="segment")
    return clock, backend, space


def _old_user_who_ordered() -> tuple[Clock, SegmentBackend, EngageSpace]:
    """User "old" (with an email) ordered once; the last-30-days audience is defined, not synced."""
    clock, backend, space = _space_on_backend()
    _call(backend, "identify", userId="old", traits={"email": "p@example.com"})
    _call(backend, "track", userId="old", event=ORDER)
    space.define_audience(LAST_30)
    return clock, backend, space


def _call(backend: SegmentBackend, call_type: str, **body: Any) -> None:
    [stored] = backend.accept(parse_tracking_request(call_type, json.dumps({"writeKey": "wk", **body}).encode()))
    assert stored.accepted, stored.discard_reason


def test_after_an_alias_merges_two_users_engage_syncs_under_the_surviving_user_id():
    # alias previousId=old userId=new merges old's profile into new's (ProfileStore._alias), and
    # calls still sent with userId "old" land on the merged profile. Engage kept its per-user state
    # under "old": a later order under the old id was sent as {"userId": "old", "orders": 2}
    # ("new" kept orders 1), and the lapse sent every exit twice, once per userId.
    clock, backend, space = _old_user_who_ordered()
    space.define_trait({"name": "Orders", "computed": "count", "event": ORDER, "within": "30d"})

    def sent() -> list[tuple[str, dict[str, Any]]]:
        return [(m["userId"], {k: v for k, v in m["traits"].items() if k != "email"}) for m in space.sync().sent]

    assert sent() == [("old", {"order_completed_last_30days": True}), ("old", {"orders": 1})]
    _call(backend, "alias", previousId="old", userId="new")
    # The surviving userId is a new identifier of the profile: what it holds is sent under it once.
    assert sent() == [("new", {"order_completed_last_30days": True}), ("new", {"orders": 1})]
    _call(backend, "track", userId="old", event=ORDER, timestamp=iso(T0 + timedelta(days=1)))
    assert sent() == [("new", {"orders": 2})]
    clock.advance(timedelta(days=32))
    assert sent() == [("new", {"order_completed_last_30days": False}), ("new", {"orders": 0})]
    states = {state.definition.key: state for state in space.engine.export_state()}
    assert states["order_completed_last_30days"].members == []
    assert states["orders"].values == {"new": 0}


def test_an_exit_told_under_a_merged_away_user_id_is_sent_under_the_survivor():
    # "old" was told it is a member; the merged profile takes the survivor's traits and no longer
    # qualifies. The destination must be told false (under the surviving userId), not be left at true.
    _, backend, space = _space_on_backend()
    _call(backend, "identify", userId="old", traits={"email": "p@example.com", "plan": "pro"})
    _call(backend, "identify", userId="new", traits={"email": "p@example.com", "plan": "free"})
    space.define_audience({"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    assert [(m["userId"], m["traits"]["pro"]) for m in space.sync().sent] == [("old", True)]
    _call(backend, "alias", previousId="old", userId="new")
    assert [(m["userId"], m["traits"]["pro"]) for m in space.sync().sent] == [("new", False)]
    assert space.sync().sent == []
    assert space.engine.describe(space.engine.audiences()[0])["members"] == 0


def test_state_kept_under_a_merged_away_user_id_is_taken_over_on_restore():
    # Engage state exported before the alias was synced (a restart between the two) still names
    # "old"; the restored engine must not sync it under that id.
    clock, backend, space = _old_user_who_ordered()
    space.sync()
    kept = space.engine.export_state()
    _call(backend, "alias", previousId="old", userId="new")
    space.restore(kept)
    assert [(m["userId"], m["traits"]["order_completed_last_30days"]) for m in space.sync().sent] == [("new", True)]
    clock.advance(timedelta(days=31))
    assert [(m["userId"], m["traits"]["order_completed_last_30days"]) for m in space.sync().sent] == [("new", False)]
    assert space.engine.export_state()[0].members == []  # "old" is not kept as a member forever


def test_an_email_changed_before_a_restart_is_still_sent_to_after_it():
    # Engage re-sends what it told when the profile gets a new email. What address it last sent
    # with was not kept: a restart took the profile's current email as already sent with, so a
    # change made before the restart (the default schedule syncs every 2 h) was never sent.
    clock, backend, space = _space_on_backend()
    _call(backend, "identify", userId="u1", traits={"email": "old@example.com"})
    _call(backend, "track", userId="u1", event=ORDER)
    _call(backend, "identify", userId="u2", traits={"email": "same@example.com"})
    _call(backend, "track", userId="u2", event=ORDER)
    _call(backend, "track", userId="u3", event=ORDER)  # sent without an email
    space.define_audience(LAST_30)
    assert len(space.sync().sent) == 3
    _call(backend, "identify", userId="u1", traits={"email": "new@example.com"})
    _call(backend, "identify", userId="u3", traits={"email": "u3@example.com"})

    kept = space.engine.export_state()
    restarted = SegmentBackend(clock, [Source.named("app", "wk")])
    restarted.restore(list(backend.messages))
    space = EngageSpace(restarted, BundleConfig(engage_sync_interval="manual"), clock, owner="segment")
    space.restore(kept)
    assert sorted((m["userId"], m["traits"]["email"]) for m in space.sync().sent) == [
        ("u1", "new@example.com"), ("u3", "u3@example.com")]
    assert space.sync().sent == []


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), [1, float("nan")],
                                   {"a": {"b": float("inf")}}, {"x", "y"}, T0, {1: "a"}])
@pytest.mark.parametrize("operator", ["equals", "not_equals", "gt"])
def test_a_comparison_value_json_cannot_hold_is_refused(value, operator):
    # Read with Python's json (the --config file: `Infinity`, `NaN`) or given in Python
    # (BundleConfig), such a value was accepted, and then every answer showing the definition
    # (GET engage/audiences, POST's own 201) failed with 500.
    for rule in ({"trait": "plan", operator: value}, {"event": ORDER, "where": {"property": "revenue", operator: value}}):
        with pytest.raises(DefinitionError, match=operator):
            World().engine.define_audience({"name": "x", "rule": rule})
    # JSON's own values still go through, nested ones too.
    world = World()
    world.engine.define_audience({"name": "x", "rule": {"trait": "plan", "equals": [1, 2.5, None, {"a": ["b", True]}]}})
    json.dumps(world.engine.describe(world.engine.audiences()[0]), allow_nan=False)


def test_deleting_an_audience_moves_the_schedule_to_the_remaining_definitions():
    # The schedule counts from the earliest definition; deleting it left its timer armed, so the next
    # sync came at the deleted audience's mark (a restart would have used the remaining one's), and
    # deleting the last audience left a timer for a sync of nothing.
    async def scenario():
        clock = Clock()
        backend = SegmentBackend(clock, [Source.named("app", "wk")])
        space = EngageSpace(backend, BundleConfig(), clock, owner="segment")
        space.define_audience(LAST_30)
        clock.advance(timedelta(hours=1))
        later = space.define_audience({"name": "Buyers", "rule": {"event": ORDER}})
        space.delete_audience("order_completed_last_30days")
        assert clock.pending() == 1
        assert clock.next_due() == later.created_at + timedelta(hours=2)
        space.delete_audience("buyers")
        assert clock.pending() == 0

    asyncio.run(scenario())


def test_deleting_a_trait_moves_the_schedule_to_the_remaining_definitions():
    # As for an audience: the interval counts from the earliest definition left, none left: no timer.
    async def scenario():
        clock = Clock()
        backend = SegmentBackend(clock, [Source.named("app", "wk")])
        space = EngageSpace(backend, BundleConfig(), clock, owner="segment")
        changes = []
        space.changes = type("Changes", (), {"engage_changed": lambda self: changes.append(1),
                                             "engage_removed": lambda self, key: changes.append(key)})()
        space.define_trait({"name": "Orders", "computed": "count", "event": ORDER})
        clock.advance(timedelta(hours=1))
        later = space.define_audience({"name": "Buyers", "rule": {"event": ORDER}})
        changes.clear()
        space.delete_trait("orders")
        assert changes == ["orders", 1]  # stored (--data-dir) at once, with its members and values gone
        assert clock.pending() == 1
        assert clock.next_due() == later.created_at + timedelta(hours=2)
        space.delete_audience("buyers")
        assert clock.pending() == 0

    asyncio.run(scenario())


def test_profiles_with_value_leaves_out_profiles_last_told_null():
    # A computed trait whose events all lapsed sends null; the profile was still counted in
    # GET engage/traits' `profiles_with_value`, which then never went down.
    world = World()
    world.track("u1", plan="pro")
    world.track("u2", ago=timedelta(days=20), plan="free")
    trait = world.engine.define_trait({"name": "Last Plan", "computed": "last", "event": ORDER, "property": "plan",
                                       "within": "30d"})
    assert world.sync() == {"u1": {"last_plan": "pro"}, "u2": {"last_plan": "free"}}
    assert world.engine.describe(trait)["profiles_with_value"] == 2
    world.advance(timedelta(days=11))
    assert world.sync() == {"u2": {"last_plan": None}}
    assert world.engine.describe(trait)["profiles_with_value"] == 1


def _nested_not(levels: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"trait": "plan", "equals": "pro"}
    for _ in range(levels):
        rule = {"not": rule}
    return rule


def test_a_definition_nested_deeper_than_a_body_may_be_is_refused():
    # An HTTP body nests at most 254 levels; a --config file or a BundleConfig had no limit, and a
    # rule ~700 levels deep stopped `segjet up` with a RecursionError traceback.
    world = World()
    world.engine.define_audience({"name": "deepest", "rule": _nested_not(252)})  # 254 levels, as over HTTP
    for body in ({"name": "deeper", "rule": _nested_not(253)}, {"name": "far", "rule": _nested_not(5000)}):
        with pytest.raises(DefinitionError, match="more than 254 levels"):
            world.engine.define_audience(body)
    with pytest.raises(DefinitionError, match="more than 254 levels"):
        world.engine.define_audience({"name": "deep value", "rule": {"trait": "plan", "equals": _nested_not(5000)}})
    assert [audience.key for audience in world.engine.audiences()] == ["deepest"]


# --- rules the tests above did not pin (found by mutating the engine) -----------------------------

def test_a_trait_set_to_null_does_not_exist_and_a_missing_one_equals_nothing():
    world = World()
    world.identify("u1", phone=None)
    assert world.member({"trait": "phone", "exists": True}) is False
    assert world.member({"trait": "phone", "exists": False}) is True
    assert world.member({"trait": "phone", "equals": None}) is True  # present, and null
    assert world.member({"trait": "fax", "equals": None}) is False  # missing: equals nothing, not even null
    assert world.member({"trait": "fax", "not_equals": None}) is True


def test_a_combined_rule_lapses_when_its_first_child_can_change():
    # Bought in the last 30 days AND viewed in the last 10: the member leaves when the view lapses
    # (10 days), not when the order does; a lapse taken from the later child kept them in 20 days too long.
    world = World()
    world.track("u1")
    world.track("u1", "Product Viewed")
    world.engine.define_audience({"name": "Hot", "rule": {"all": [{"event": ORDER, "within": "30d"},
                                                                  {"event": "Product Viewed", "within": "10d"}]}})
    assert world.sync() == {"u1": {"hot": True}}
    assert world.engine.next_lapse() == T0 + timedelta(days=10)
    world.advance(timedelta(days=10, milliseconds=1))
    assert world.sync() == {"u1": {"hot": False}}


def test_first_last_and_most_frequent_skip_null_values():
    world = World()
    world.track("u1", ago=timedelta(days=3), plan=None)
    world.track("u1", ago=timedelta(days=2), plan="pro")
    world.track("u1", ago=timedelta(days=2), plan="pro")  # most_frequent needs the property twice
    world.track("u1", ago=timedelta(days=1), plan=None)
    for kind in ("first", "last", "most_frequent"):
        world.engine.define_trait({"name": kind, "computed": kind, "event": ORDER, "property": "plan"})
    assert world.engine.profile_view("u1")["computed_traits"] == {"first": "pro", "last": "pro", "most_frequent": "pro"}


def test_most_frequent_ignores_objects_and_lists():
    # They cannot be counted (an object or list is no single value); counting them raised TypeError.
    world = World()
    world.track("u1", tag="a")
    world.track("u1", tag="a")  # most_frequent needs the property twice
    for _ in range(3):
        world.track("u1", tag={"x": 1})
        world.track("u1", tag=["a"])
    world.engine.define_trait({"name": "Tag", "computed": "most_frequent", "event": ORDER, "property": "tag"})
    assert world.engine.profile_view("u1")["computed_traits"] == {"tag": "a"}
    assert world.sync() == {"u1": {"tag": "a"}}


def test_a_null_key_is_derived_from_the_name():
    world = World()
    assert world.engine.define_audience({"name": "Pro Users", "key": None, "rule": {"event": ORDER}}).key == "pro_users"
    assert world.engine.define_trait({"name": "Orders", "key": None, "computed": "count", "event": ORDER}).key == "orders"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "tra_2abc"}, "id must be a string starting with 'aud_'"),
        ({"id": "aud_"}, "id must be"),
        ({"id": 7}, "id must be"),
        ({"kind": "segment"}, "kind must be"),
        ({"created_at": "yesterday"}, "created_at"),
    ],
)
def test_a_stored_definition_is_checked_when_loaded(changes, message):
    stored = World().engine.define_audience(LAST_30).to_json()
    assert definition_from_json(stored).to_json() == stored
    with pytest.raises(DefinitionError, match=message):
        definition_from_json({**stored, **changes})


def test_lapses_after_the_clocks_last_moment_are_not_scheduled():
    # The clock stops at year 9000: an event whose window ends after it never lapses.
    world = World()
    world.events_of["u1"][ORDER].append(Event(datetime(8999, 12, 25, tzinfo=timezone.utc), {}))
    world.engine.observe({"type": "track", "userId": "u1", "event": ORDER})
    world.engine.define_audience(LAST_30)
    assert world.sync() == {"u1": {"order_completed_last_30days": True}}
    assert world.engine.next_lapse() is None


def test_an_alias_merging_two_members_sends_nothing_new():
    # Both userIds were told true; after the merge the survivor still is a member and was told so
    # already: nothing to send (no re-send "as a new identifier" of what it had itself).
    _, backend, space = _space_on_backend()
    for user_id in ("old", "new"):
        _call(backend, "identify", userId=user_id, traits={"email": "p@example.com"})
        _call(backend, "track", userId=user_id, event=ORDER)
    space.define_audience(LAST_30)
    assert sorted(m["userId"] for m in space.sync().sent) == ["new", "old"]
    _call(backend, "alias", previousId="old", userId="new")
    assert space.sync().sent == []
    assert space.engine.export_state()[0].members == ["new"]
    # The dashboard names the members Engage holds: "old" was still shown from its last identify.
    [audience] = space.engine.audiences()
    assert (space.engine.describe(audience)["members"], space.engine.describe(audience)["member_sample"]) == (1, ["new"])


def test_a_definition_names_its_first_members_and_values_by_user_id():
    _, backend, space = _space_on_backend()
    for number in range(SAMPLE_SIZE + 5):
        _call(backend, "identify", userId=f"u{number:03d}", traits={"email": f"u{number}@example.com"})
        _call(backend, "track", userId=f"u{number:03d}", event=ORDER, properties={"revenue": number})
    audience = space.define_audience(LAST_30)
    trait = space.define_trait({"name": "Spent", "computed": "sum", "event": ORDER, "property": "revenue"})
    space.sync()
    shown = space.engine.describe(audience)
    assert shown["members"] == SAMPLE_SIZE + 5 and shown["member_sample"] == [f"u{n:03d}" for n in range(SAMPLE_SIZE)]
    values = space.engine.describe(trait)
    assert values["profiles_with_value"] == SAMPLE_SIZE + 5
    assert values["value_sample"] == {f"u{n:03d}": n for n in range(SAMPLE_SIZE)}


def test_a_change_pending_under_a_user_id_merged_away_before_the_sync_is_synced_under_the_survivor():
    # "old" was told nothing (no member, no value) when it ordered and was merged into "new" before
    # the next sync: its pending change is evaluated on the merged profile, under "new" alone.
    _, backend, space = _space_on_backend()
    for user_id in ("old", "new"):
        _call(backend, "identify", userId=user_id, traits={"email": "p@example.com"})
    space.define_audience(LAST_30)
    space.define_trait({"name": "Last Sku", "computed": "last", "event": ORDER, "property": "sku"})
    assert space.sync().sent == []
    _call(backend, "track", userId="old", event=ORDER, properties={"sku": "A1"})
    _call(backend, "alias", previousId="old", userId="new")
    assert [(m["userId"], {k: v for k, v in m["traits"].items() if k != "email"}) for m in space.sync().sent] == [
        ("new", {"order_completed_last_30days": True}), ("new", {"last_sku": "A1"})]
    states = {state.definition.key: state for state in space.engine.export_state()}
    assert (states["order_completed_last_30days"].members, states["last_sku"].values) == (["new"], {"new": "A1"})


def test_an_alias_keeps_the_value_the_survivor_was_told():
    # "old" was told plan a, "new" plan b; the merged profile's last plan is b, which "new" was told:
    # nothing to send. Taking over old's a in place of new's b sent b again.
    _, backend, space = _space_on_backend()
    for user_id, plan, day in (("old", "a", 1), ("new", "b", 2)):
        _call(backend, "identify", userId=user_id, traits={"email": "p@example.com"})
        _call(backend, "track", userId=user_id, event="Plan Chosen", properties={"plan": plan},
              timestamp=iso(T0 - timedelta(days=3 - day)))
    space.define_trait({"name": "Plan", "computed": "last", "event": "Plan Chosen", "property": "plan"})
    assert sorted((m["userId"], m["traits"]["plan"]) for m in space.sync().sent) == [("new", "b"), ("old", "a")]
    _call(backend, "alias", previousId="old", userId="new")
    assert space.sync().sent == []
    assert space.engine.export_state()[0].values == {"new": "b"}


def test_a_realtime_schedule_syncs_a_change_before_a_pending_lapse():
    # After a sync the timer waits for the next lapse (30 days away); a change must bring it forward.
    async def scenario():
        clock = Clock()
        world, scheduler = await _alice_bought_in_a_realtime_space(clock)
        assert clock.next_due() > clock.now() + timedelta(days=29)
        world.track("bob")
        scheduler.arm()
        await clock.run_due()
        assert [m["userId"] for m in world.emitted] == ["alice", "bob"]

    asyncio.run(scenario())


def test_restoring_definitions_moves_the_interval_schedule_to_theirs():
    async def scenario():
        clock = Clock()
        backend = SegmentBackend(clock, [Source.named("app", "wk")])
        space = EngageSpace(backend, BundleConfig(), clock, owner="segment")
        space.define_audience(LAST_30)
        clock.advance(timedelta(hours=1))
        other = EngageSpace(SegmentBackend(clock, [Source.named("app", "wk")]), BundleConfig(), clock, owner="other")
        kept = other.define_audience({"name": "Buyers", "rule": {"event": ORDER}})
        other.close()
        space.restore(other.engine.export_state())
        assert clock.pending() == 1
        assert clock.next_due() == kept.created_at + timedelta(hours=2)

    asyncio.run(scenario())


def test_a_first_sync_that_sends_nothing_is_still_stored_as_synced():
    # Storage writes only when told; a first sync of an empty audience marks it synced (its next
    # sync is not a backfill), so it must be told even though nothing was sent.
    class Changes:
        count = 0

        def engage_changed(self) -> None:
            self.count += 1

        def engage_told(self, computation: str, told: Any) -> None:
            pass

    _, _, space = _space_on_backend()
    space.changes = changes = Changes()
    space.define_audience(LAST_30)
    written = changes.count
    assert space.sync().sent == []
    assert changes.count == written + 1
    space.sync()
    assert changes.count == written + 1  # nothing changed: nothing to write


def test_a_dotted_trait_path_through_a_string_or_a_list_is_no_value():
    # `"x" in "xyz"` is true for a string: walking into it must stop, not index the string.
    world = World()
    world.identify("u1", plan="xyz", tags=["x"])
    assert world.member({"trait": "plan.x", "exists": True}) is False
    assert world.member({"trait": "tags.x", "exists": True}) is False
    assert world.member({"trait": "plan.x", "not_equals": 1}) is True


@pytest.mark.parametrize("email", ["", 42, None, {"work": "w@example.com"}])
def test_an_email_trait_that_is_no_address_is_not_sent_as_the_email(email):
    world = World()
    world.identify("u1", email=email)
    world.track("u1")
    world.engine.define_audience(LAST_30)
    (message,) = world.engine.sync().sent
    assert message["traits"] == {"order_completed_last_30days": True}


def test_an_interval_schedule_counts_from_the_earliest_definition():
    async def scenario():
        clock = Clock()
        world = ClockWorld(clock)
        scheduler = EngageScheduler(world.engine, clock, "2h", owner="segment")
        start = world.engine.define_audience(LAST_30).created_at
        scheduler.arm()
        clock.advance(timedelta(hours=1))
        world.engine.define_audience({"name": "Buyers", "rule": {"event": ORDER}})
        scheduler.arm()
        clock.advance(timedelta(hours=1))
        assert await clock.run_due() == 1
        assert clock.next_due() == start + timedelta(hours=4)

    asyncio.run(scenario())


def test_a_bad_configured_definition_is_named_by_its_place_in_the_config():
    world = World()
    with pytest.raises(DefinitionError, match=r"^engage audiences\[1\]: .*bad window"):
        world.engine.reset(audiences=[LAST_30, {"name": "x", "rule": {"event": ORDER, "within": "1y"}}])
    with pytest.raises(DefinitionError, match=r"^engage traits\[0\]: computed must be one of"):
        world.engine.reset(traits=[{"name": "x", "computed": "median", "event": ORDER, "property": "p"}])
    with pytest.raises(DuplicateKeyError, match=r"^engage traits\[0\]: key 'order_completed_last_30days'"):
        world.engine.reset(audiences=[LAST_30], traits=[{"name": "Order Completed Last 30 Days", "computed": "count",
                                                         "event": ORDER}])


def test_true_is_not_1_inside_arrays_and_objects_either():
    # JSON equality was only applied at the top: Python's [1] == [True] held, so a trait [1]
    # "equalled" [true], and a `last` value going from [1] to [true] was taken as unchanged and never sent.
    world = World()
    world.identify("u1", flags=[1], prefs={"news": 1}, scores=[1.0, {"a": [2]}])
    assert world.member({"trait": "flags", "equals": [True]}) is False
    assert world.member({"trait": "flags", "not_equals": [True]}) is True
    assert world.member({"trait": "flags", "equals": [1, 1]}) is False
    assert world.member({"trait": "flags", "equals": []}) is False
    assert world.member({"trait": "prefs", "equals": {"news": True}}) is False
    assert world.member({"trait": "scores", "equals": [1, {"a": [2.0]}]}) is True  # 1 and 1.0: one number
    assert world.member({"trait": "scores", "equals": [1, {"a": [2.0], "b": None}]}) is False
    world = World()
    world.track("u2", flags=[1])
    world.engine.define_trait({"name": "Flags", "computed": "last", "event": ORDER, "property": "flags"})
    assert world.sync() == {"u2": {"flags": [1]}}
    world.track("u2", flags=[True])
    assert world.sync() == {"u2": {"flags": [True]}}
    world.track("u2", flags=[1.0])
    assert world.sync() == {"u2": {"flags": [1.0]}}
    world.track("u2", flags=[1])
    assert world.sync() == {}  # 1.0 and 1 are one JSON number


def test_a_profile_re_evaluated_many_times_keeps_exactly_its_latest_lapse():
    # Each evaluation leaves the previous lapse behind as a stale heap entry, and the heap is
    # rebuilt now and then: only the latest lapse of each profile may schedule work, and a rebuild
    # must keep the other profiles' lapses.
    world = World()
    world.engine.define_audience(LAST_30)
    world.track("u2")  # its lapse stays at the top of the heap, under u1's stale entries
    world.track("u1")
    assert world.sync() == {"u1": {"order_completed_last_30days": True}, "u2": {"order_completed_last_30days": True}}
    for _ in range(150):
        world.advance(timedelta(minutes=1))
        world.track("u1")
        assert world.engine.sync().evaluated == 1
    last_order = world.now
    world.advance(T0 + timedelta(days=30, milliseconds=1) - world.now)
    assert world.sync() == {"u2": {"order_completed_last_30days": False}}
    world.advance(last_order + timedelta(days=30) - world.now)  # u1's earlier orders lapsed, not the last
    assert world.engine.sync().evaluated == 0
    assert world.engine.next_lapse() == last_order + timedelta(days=30)
    world.advance(MS)
    assert world.sync() == {"u1": {"order_completed_last_30days": False}}
    assert world.engine.next_lapse() is None


def test_a_realtime_space_syncs_as_user_messages_arrive():
    async def scenario():
        clock = Clock()
        backend = SegmentBackend(clock, [Source.named("app", "wk")])
        space = EngageSpace(backend, BundleConfig(engage_sync_interval="realtime"), clock, owner="segment")
        space.define_audience(LAST_30)
        await clock.run_due()  # the first sync: no profiles yet
        assert clock.pending() == 0
        _call(backend, "identify", userId="u1", traits={"email": "u1@example.com"})
        _call(backend, "track", userId="u1", event=ORDER)
        assert clock.pending() == 1
        await clock.run_due()
        sent = backend.events(source=ENGAGE_SOURCE_NAME)
        assert [(m.user_id, m.message["traits"]["order_completed_last_30days"]) for m in sent] == [("u1", True)]

    asyncio.run(scenario())


def test_the_next_lapse_is_the_latest_one_scheduled_for_a_profile():
    # A realtime schedule arms its timer at next_lapse(): the lapse an order replaced must not count.
    world = World()
    world.engine.define_audience(LAST_30)
    world.track("u1")
    world.sync()
    world.advance(timedelta(days=1))
    world.track("u1")
    assert world.sync() == {}
    assert world.engine.next_lapse() == world.now + timedelta(days=30)


def test_a_new_email_sent_under_a_merged_away_user_id_reaches_the_survivor():
    # A client still identifying with the old userId lands on the merged profile: its new email is
    # the survivor's, and what the survivor was told is sent again with it.
    _, backend, space = _old_user_who_ordered()
    space.sync()
    _call(backend, "alias", previousId="old", userId="new")
    assert [(m["userId"], m["traits"]["email"]) for m in space.sync().sent] == [("new", "p@example.com")]
    _call(backend, "identify", userId="old", traits={"email": "q@example.com"})
    assert [(m["userId"], m["traits"]) for m in space.sync().sent] == [
        ("new", {"order_completed_last_30days": True, "email": "q@example.com"})]


def test_an_alias_through_an_anonymous_id_hands_the_merged_user_ids_state_to_the_survivor():
    # alias previousId=<an anonymousId of u2> userId=u1 merges u2's profile into u1's. Engage only
    # took over state kept under the previousId itself, so "u2" stayed told forever (counted in
    # profiles_with_value, its exit never sent) until a restart's restore took it over and changed
    # what Engage showed without sending anything (a differential test found it in realtime mode).
    _, backend, space = _space_on_backend()
    _call(backend, "identify", userId="u1", traits={"email": "p@example.com"})
    _call(backend, "track", userId="u1", event=ORDER)
    _call(backend, "identify", userId="u2", anonymousId="anon-2", traits={"email": "q@example.com"})
    _call(backend, "track", userId="u2", event=ORDER)
    space.define_trait({"name": "Orders", "computed": "count", "event": ORDER, "within": "30d"})
    assert sorted((m["userId"], m["traits"]["orders"]) for m in space.sync().sent) == [("u1", 1), ("u2", 1)]
    _call(backend, "alias", previousId="anon-2", userId="u1")
    # The merged profile has both users' emails: the change goes to each.
    assert [(m["userId"], m["traits"]["orders"], m["traits"]["email"]) for m in space.sync().sent] == [
        ("u1", 2, "p@example.com"), ("u1", 2, "q@example.com")]
    [trait] = space.engine.traits()
    assert space.engine.export_state()[0].values == {"u1": 2}
    assert space.engine.describe(trait)["profiles_with_value"] == 1
    # A restart keeps what was last synced, and its first sync has nothing to send.
    space.restore(space.engine.export_state())
    assert space.sync().sent == []
    assert space.engine.export_state()[0].values == {"u1": 2}


def test_an_alias_through_an_anonymous_id_sends_the_merged_members_exit_under_the_survivor():
    # u2 was told it is a member; the merged profile takes u1's plan and no longer qualifies: the
    # destination is told false under u1 (as for an alias of the userId itself), not left at true.
    _, backend, space = _space_on_backend()
    _call(backend, "identify", userId="u1", traits={"email": "p@example.com", "plan": "free"})
    _call(backend, "identify", userId="u2", anonymousId="anon-2", traits={"email": "p@example.com", "plan": "pro"})
    space.define_audience({"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    assert [(m["userId"], m["traits"]["pro"]) for m in space.sync().sent] == [("u2", True)]
    _call(backend, "alias", previousId="anon-2", userId="u1")
    assert [(m["userId"], m["traits"]["pro"]) for m in space.sync().sent] == [("u1", False)]
    assert space.engine.export_state()[0].members == []


class _ToldChanges:
    """Storage's view of a space: what each sync hands it to write."""

    def __init__(self) -> None:
        self.definitions = 0
        self.told: list[tuple[str, dict[str, Any]]] = []
        self.removed: list[str] = []

    def engage_changed(self) -> None:
        self.definitions += 1

    def engage_told(self, computation: str, told: Any) -> None:
        self.told.append((computation, dict(told)))

    def engage_removed(self, computation: str) -> None:
        self.removed.append(computation)


def test_a_sync_hands_storage_only_the_user_ids_whose_told_state_changed():
    # Storage rewrote every definition's whole member list and values at each sync that sent
    # anything (O(all members) per identify with --data-dir); it now writes what this hands it.
    clock, backend, space = _space_on_backend()
    for user_id in ("u1", "u2", "u3"):
        _call(backend, "track", userId=user_id, event=ORDER, properties={"revenue": 5})
    space.define_audience(LAST_30)
    space.define_trait({"name": "Orders", "computed": "count", "event": ORDER, "within": "30d"})
    space.changes = changes = _ToldChanges()
    space.sync()
    assert changes.definitions == 1  # both first synced: `synced` is in the definitions' row
    assert changes.told == [
        ("order_completed_last_30days", {"u1": (True, None), "u2": (True, None), "u3": (True, None)}),
        ("orders", {"u1": (False, 1), "u2": (False, 1), "u3": (False, 1)}),
    ]
    changes.told.clear()
    _call(backend, "track", userId="u2", event=ORDER)
    space.sync()
    assert changes.told == [("orders", {"u2": (False, 2)})] and changes.definitions == 1
    changes.told.clear()
    clock.advance(timedelta(days=31))  # every order lapses: members leave, counts go to 0
    space.sync()
    assert changes.told == [
        ("order_completed_last_30days", {"u1": None, "u2": None, "u3": None}),
        ("orders", {"u1": (False, 0), "u2": (False, 0), "u3": (False, 0)}),
    ]
    changes.told.clear()
    assert space.sync().sent == [] and changes.told == []  # nothing changed: nothing to write
    space.delete_trait("orders")
    assert changes.removed == ["orders"]


def test_a_merge_hands_storage_both_the_merged_away_user_id_and_the_survivor():
    clock, backend, space = _old_user_who_ordered()
    space.sync()
    space.changes = changes = _ToldChanges()
    _call(backend, "alias", previousId="old", userId="new")
    space.sync()
    assert changes.told == [("order_completed_last_30days", {"old": None, "new": (True, None)})]
    assert space.engine.take_told() == {}  # taken once


def test_integers_beyond_a_doubles_range_that_cancel_leave_the_sum_of_the_rest():
    # Python's sum of 10**309 and 1.5 raises OverflowError; the exact total is 1.5.
    world = World()
    for revenue in (10**309, 1.5, -(10**309)):
        world.track("u1", revenue=revenue)  # only a Python caller gives such integers
    world.engine.define_trait({"name": "s", "computed": "sum", "event": ORDER, "property": "revenue"})
    world.engine.define_trait({"name": "a", "computed": "avg", "event": ORDER, "property": "revenue"})
    assert world.engine.profile_view("u1")["computed_traits"] == {"s": 1.5, "a": 0.5}
