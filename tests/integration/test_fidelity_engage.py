"""Engage replayed against what Segment documents, over real HTTP (fake Segment, manual syncs).

Each test names its source in segmentio/segment-docs (or /work/shared/reference/segment.md) and
replays the documented example: the calls a user makes, then the identify calls Engage sends,
compared field by field. Deliberate divergences are written in README's "Fidelity" section.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import contracts
from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

ORDER = "Order Completed"


class Engage:
    """The fake Segment's tracking API and Engage control API, one workspace."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.write_key = info["write_key"]
        self.http = httpx.Client(base_url=info["segment_url"], timeout=30)

    def call(self, kind: str, body: dict[str, Any]) -> None:
        answer = self.http.post(f"/v1/{kind}", json={**body, "writeKey": self.write_key})
        assert answer.json() == {"success": True}, answer.text

    def identify(self, user_id: str, **traits: Any) -> None:
        self.call("identify", {"userId": user_id, "traits": traits})

    def track(self, user_id: str, event: str = ORDER, timestamp: str | None = None, **properties: Any) -> None:
        body: dict[str, Any] = {"userId": user_id, "event": event, "properties": properties}
        if timestamp is not None:
            body["timestamp"] = timestamp
        self.call("track", body)

    def define(self, kind: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        answer = self.http.post(f"/_emulator/engage/{kind}", json=body)
        assert answer.status_code == status, answer.text
        return answer.json()

    def sync(self) -> list[dict[str, Any]]:
        answer = self.http.post("/_emulator/engage/sync")
        assert answer.status_code == 200, answer.text
        return answer.json()["sent"]

    def sent(self) -> dict[str, dict[str, Any]]:
        """One sync: userId → traits sent (email left out)."""
        return {m["userId"]: {k: v for k, v in m["traits"].items() if k != "email"} for m in self.sync()}

    def advance(self, duration: str) -> None:
        assert self.http.post("/_emulator/clock", json={"advance": duration}).status_code == 200

    def now(self) -> str:
        return self.http.get("/_emulator/clock").json()["now"]


@pytest.fixture(scope="module")
def bundle() -> Iterator[Engage]:
    background = BackgroundBundle(
        BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, engage_sync_interval="manual")
    )
    engage = Engage(background.start())
    yield engage
    engage.http.close()
    background.stop()


@pytest.fixture
def engage(bundle: Engage) -> Engage:
    assert bundle.http.post("/_emulator/reset").status_code == 200
    return bundle


def test_audience_identify_payload_as_documented(engage):
    # using-engage-data.md "Audience generated events": identify, the audience key set to true;
    # reference/segment.md §4.3 (action-destinations fixtures): context.personas computation_class
    # "audience", computation_id aud_…, computation_key = the audience key, namespace = space_id
    # spa_…, messageId personas_…, integrations {"All": false, <destination>: true}; traits.email
    # ("Email as an identifier is set in traits.email for Identify calls").
    engage.identify("u123", email="u123@example.com")
    engage.track("u123")
    audience = engage.define("audiences", {"name": "First Time Shopper", "rule": {"event": ORDER}})
    (message,) = engage.sync()
    assert contracts.validate("segment.engage_audience_identify", message) == []
    assert message["type"] == "identify" and message["userId"] == "u123"
    assert message["traits"] == {"first_time_shopper": True, "email": "u123@example.com"}
    personas = message["context"]["personas"]
    assert personas == {"computation_class": "audience", "computation_id": audience["id"],
                        "computation_key": "first_time_shopper", "namespace": personas["space_id"],
                        "space_id": personas["space_id"]}
    assert re.fullmatch(r"aud_[0-9A-Za-z]{27}", personas["computation_id"])
    assert re.fullmatch(r"spa_\w+", personas["space_id"])
    assert re.fullmatch(r"personas_[0-9A-Za-z]{27}", message["messageId"])
    assert message["integrations"] == {"All": False, "Mailjet": True}


def test_order_completed_last_30_days_enters_then_exits_as_documented(engage):
    # using-engage-data.md: "when a user first completes an order in the last 30 days, Segment sends
    # an identify call with the property order_completed_last_30days: true, and when this user no
    # longer satisfies that criteria (... 30 days elapses ...) Segment sets that value to false".
    # "Later syncs only send updates for those users who were added or removed."
    engage.identify("u1", email="u1@example.com")
    engage.identify("u2", email="u2@example.com")
    engage.track("u1")
    engage.define("audiences", {"name": "Order Completed Last 30 Days", "rule": {"event": ORDER, "within": "30d"}})
    assert engage.sent() == {"u1": {"order_completed_last_30days": True}}
    assert engage.sent() == {}
    engage.advance("31d")
    assert engage.sent() == {"u1": {"order_completed_last_30days": False}}
    assert engage.sent() == {}


def test_lookback_windows_read_the_event_timestamp(engage):
    # faqs.md "How do historical lookback windows work?": "Historical lookback windows are based on
    # the event `timestamp` field": an order stamped 31 days ago, received now, is outside 30 days.
    engage.identify("late", email="late@example.com")
    engage.identify("fresh", email="fresh@example.com")
    engage.track("late", timestamp="2000-01-01T00:00:00Z")
    engage.track("fresh")
    engage.define("audiences", {"name": "Recent Buyers", "rule": {"event": ORDER, "within": "30d"}})
    assert engage.sent() == {"fresh": {"recent_buyers": True}}


def test_and_not_who_did_not_perform(engage):
    # audiences/index.md: "Select `and not who` to indicate users that have not performed an event",
    # e.g. viewed a product but did not complete the order.
    engage.identify("viewer", email="viewer@example.com")
    engage.identify("buyer", email="buyer@example.com")
    for user in ("viewer", "buyer"):
        engage.track(user, "Product Viewed", price=120)
    engage.track("buyer")
    engage.define("audiences", {"name": "Viewed Not Bought", "rule": {"all": [
        {"event": "Product Viewed", "where": {"property": "price", "gt": 100}},
        {"event": ORDER, "at_most": 0},
    ]}})
    assert engage.sent() == {"viewer": {"viewed_not_bought": True}}


def test_an_audience_built_on_a_computed_trait(engage):
    # audiences/index.md "Computed Traits": "create a total_revenue computed trait and use it to
    # generate an audience of big_spender customers that exceed a certain threshold". The audience
    # reads the trait Engage wrote on the profile, so it follows one sync behind.
    engage.identify("whale", email="whale@example.com")
    engage.identify("minnow", email="minnow@example.com")
    engage.track("whale", revenue=700)
    engage.track("minnow", revenue=20)
    engage.define("traits", {"name": "Total Revenue", "computed": "sum", "event": ORDER, "property": "revenue"})
    engage.define("audiences", {"name": "Big Spender", "rule": {"trait": "total_revenue", "gt": 500}})
    assert engage.sent() == {"whale": {"total_revenue": 700}, "minnow": {"total_revenue": 20}}
    assert engage.sent() == {"whale": {"big_spender": True}}


def test_computed_trait_identify_payload_and_event_counter(engage):
    # using-engage-data.md "Computed Trait generated events": identify with the trait key set to the
    # value, computation_class "trait", computation_id tra_… (reference/segment.md §4.3);
    # computed-traits.md: "the user visits your pricing page five times, Segment sends an identify
    # call with the property pricing_page_visits: 5"; "Engage only sends events to the destination if
    # the computed trait value has changed".
    engage.identify("u123", email="u123@example.com")
    for _ in range(5):
        engage.track("u123", "Pricing Page Viewed")
    trait = engage.define("traits", {"name": "Pricing Page Visits", "computed": "count",
                                     "event": "Pricing Page Viewed"})
    (message,) = engage.sync()
    assert contracts.validate("segment.engage_trait_identify", message) == []
    assert message["traits"] == {"pricing_page_visits": 5, "email": "u123@example.com"}
    personas = message["context"]["personas"]
    assert (personas["computation_class"], personas["computation_id"], personas["computation_key"]) == (
        "trait", trait["id"], "pricing_page_visits")
    assert trait["id"].startswith("tra_")
    engage.identify("u123", plan="pro")  # no change to the count: nothing sent
    assert engage.sent() == {}
    engage.track("u123", "Pricing Page Viewed")
    assert engage.sent() == {"u123": {"pricing_page_visits": 6}}


def test_aggregation_first_and_last_as_documented(engage):
    # computed-traits.md: an aggregation computes a sum or average of a numeric event property;
    # "first" returns the first event property value seen, "last" the last one.
    engage.identify("u1", email="u1@example.com")
    for revenue, campaign in ((10, "spring"), (20, "summer"), (60, "autumn")):
        engage.track("u1", revenue=revenue, utm_campaign=campaign)
    for name, computed, prop in (("Revenue", "sum", "revenue"), ("Avg Order", "avg", "revenue"),
                                 ("First Utm", "first", "utm_campaign"), ("Last Utm", "last", "utm_campaign")):
        engage.define("traits", {"name": name, "computed": computed, "event": ORDER, "property": prop})
    sent = engage.sync()  # one identify per computed trait
    assert [message["traits"] for message in sent] == [
        {"revenue": 90, "email": "u1@example.com"}, {"avg_order": 30.0, "email": "u1@example.com"},
        {"first_utm": "spring", "email": "u1@example.com"}, {"last_utm": "autumn", "email": "u1@example.com"}]


def test_most_frequent_tie_returns_the_first_alphabetical_value(engage):
    # computed-traits.md (engage/audiences and unify/Traits): "In the case of a tie, Segment returns
    # the first alphabetical value."
    engage.identify("u1", email="u1@example.com")
    for category in ("hats", "shoes", "hats", "shoes"):  # the latest is "shoes"
        engage.track("u1", "Product Viewed", category=category)
    engage.define("traits", {"name": "Top Category", "computed": "most_frequent", "event": "Product Viewed",
                             "property": "category"})
    assert engage.sent() == {"u1": {"top_category": "hats"}}
    engage.track("u1", "Product Viewed", category="shoes")
    assert engage.sent() == {"u1": {"top_category": "shoes"}}
    engage.track("u1", "Product Viewed", category="Sandals")  # capitals sort first, as in ASCII (GUESS)
    engage.track("u1", "Product Viewed", category="Sandals")
    engage.track("u1", "Product Viewed", category="Sandals")
    assert engage.sent() == {"u1": {"top_category": "Sandals"}}


def test_most_frequent_needs_the_property_tracked_at_least_twice(engage):
    # computed-traits.md: "the most frequent computed trait requires the event property to have been
    # tracked at least twice."
    engage.identify("u1", email="u1@example.com")
    engage.track("u1", "Product Viewed", category="shoes")
    engage.define("traits", {"name": "Top Category", "computed": "most_frequent", "event": "Product Viewed",
                             "property": "category"})
    assert engage.sent() == {}
    assert engage.http.get("/_emulator/profiles/u1").json()["computed_traits"] == {}
    engage.track("u1", "Product Viewed", category="hats")
    assert engage.sent() == {"u1": {"top_category": "hats"}}


def test_a_new_email_on_the_profile_re_syncs_an_unchanged_value(engage):
    # using-engage-data.md "New external identifiers added to a profile": "When that email address is
    # added to the profile, Engage re-syncs the computed trait that includes an email".
    engage.track("shopper", "Category Viewed", category="Shoes")
    engage.track("shopper", "Category Viewed", category="Shoes")
    engage.define("traits", {"name": "Last Viewed Category", "computed": "last", "event": "Category Viewed",
                             "property": "category"})
    assert [m["traits"] for m in engage.sync()] == [{"last_viewed_category": "Shoes"}]
    engage.identify("shopper", email="shopper@example.com")
    assert [m["traits"] for m in engage.sync()] == [
        {"last_viewed_category": "Shoes", "email": "shopper@example.com"}]


def test_a_cycle_between_audiences_is_refused(engage):
    # faqs.md: "The audience would create a cycle by referencing another audience" when audience X
    # refers to Y and Y is changed to refer back to X.
    engage.define("audiences", {"name": "X", "key": "aud_x", "rule": {"trait": "aud_y", "equals": True}})
    refused = engage.define("audiences", {"name": "Y", "key": "aud_y", "rule": {"trait": "aud_x", "equals": True}},
                            status=400)
    assert "its own value" in refused["error"]
