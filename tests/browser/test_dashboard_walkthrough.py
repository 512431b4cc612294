"""The demo a user gives, walked in Chromium with its usual mistakes: a second tab, a script changing
settings under an open page, the server restarted under it. What a page shows must be what the
server holds, a Save must change only what the user changed, and a lost feed must be said."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser.conftest import open_page, reset_stack, skip_module_without_browser
from tests.integration.polling import wait_for

skip_module_without_browser()

from playwright.sync_api import BrowserContext, expect  # noqa: E402

from emulator.bundle import BackgroundBundle  # noqa: E402
from emulator.config import BundleConfig  # noqa: E402

expect.set_options(timeout=10_000)


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        reset_stack(client, stack, destination_enabled=False)
        yield client


def test_destinations_page_follows_a_change_made_in_another_tab(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    segment = stack["segment_url"]
    first = open_page(context, f"{segment}/destinations")
    second = open_page(context, f"{segment}/destinations")
    expect(second.get_by_role("switch", name="Enable Destination")).not_to_be_checked()
    first.get_by_role("switch", name="Enable Destination").check()
    expect(first.get_by_text("Destination enabled.")).to_be_visible()
    # The other tab, untouched, shows it without a reload.
    expect(second.get_by_role("switch", name="Enable Destination")).to_be_checked()
    expect(second.get_by_text("Enabled", exact=True)).to_be_visible()
    http.put(f"{segment}/_emulator/destinations/mailjet", json={"settings": {"listId": "7"}}).raise_for_status()
    expect(second.get_by_label("List ID")).to_have_value("7")


def test_saving_destination_settings_keeps_what_another_tab_changed(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    segment = stack["segment_url"]
    page = open_page(context, f"{segment}/destinations")
    expect(page.get_by_label("Authentication key")).to_have_value(stack["auth_key"])
    page.get_by_label("List ID").fill("2")
    # Meanwhile another tab (or a script) puts another key and turns the tile on.
    http.put(f"{segment}/_emulator/destinations/mailjet", json={"enabled": True, "settings": {"apiKey": "key-from-elsewhere"}}).raise_for_status()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    config = http.get(f"{segment}/_emulator/destinations/mailjet").json()
    assert config == {"enabled": True, "settings": {"apiKey": "key-from-elsewhere", "listId": "2"}}
    expect(page.get_by_label("Authentication key")).to_have_value("key-from-elsewhere")
    expect(page.get_by_label("List ID")).to_have_value("2")


def test_app_connections_follows_another_tab_and_saves_only_what_changed(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    mailjet = stack["mailjet_url"]
    first = open_page(context, f"{mailjet}/app-connections")
    second = open_page(context, f"{mailjet}/app-connections")
    first.get_by_label("Segment write key").fill(stack["write_key"])
    first.get_by_role("switch", name="Send email events to Segment").check()
    first.get_by_role("button", name="Save").click()
    expect(first.get_by_text("Segment connection saved.")).to_be_visible()
    # The second tab shows it without a reload ...
    expect(second.get_by_label("Segment write key")).to_have_value(stack["write_key"])
    expect(second.get_by_role("switch", name="Send email events to Segment")).to_be_checked()
    # ... and a Save there of an edit made before it heard of a change keeps that change.
    second.get_by_label("Segment write key").fill("typed-in-the-second-tab")
    http.put(f"{mailjet}/_emulator/app-connections/segment", json={"sendEvents": False}).raise_for_status()
    second.get_by_role("button", name="Save").click()
    expect(second.get_by_text("Segment connection saved.")).to_be_visible()
    connection = http.get(f"{mailjet}/_emulator/app-connections/segment").json()
    assert connection["writeKey"] == "typed-in-the-second-tab" and connection["sendEvents"] is False
    expect(second.get_by_role("switch", name="Send email events to Segment")).not_to_be_checked()


def test_app_connections_warns_when_events_are_on_without_a_write_key(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    http.put(f"{stack['mailjet_url']}/_emulator/app-connections/segment", json={"writeKey": None, "sendEvents": False}).raise_for_status()
    page = open_page(context, f"{stack['mailjet_url']}/app-connections")
    page.get_by_role("switch", name="Send email events to Segment").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#view")).to_contain_text("no write key")


def test_overview_says_why_it_cannot_read_the_workspace(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    page = context.new_page()
    page.route("**/_emulator/destinations/mailjet", lambda route: route.fulfill(
        status=401, content_type="application/json", body='{"error": "the control API needs the token"}'))
    page.goto(stack["segment_url"] + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_role("alert").first).to_contain_text("needs the token")


def test_trace_shows_an_email_events_delivery_after_the_event(stack: dict[str, Any], http: httpx.Client) -> None:
    # The skipped delivery of the "Email Link Clicked" track was listed before the click that made it.
    segment, mailjet = stack["segment_url"], stack["mailjet_url"]
    http.put(f"{segment}/_emulator/destinations/mailjet", json={"enabled": True}).raise_for_status()
    http.put(f"{mailjet}/_emulator/app-connections/segment", json={"writeKey": stack["write_key"], "sendEvents": True}).raise_for_status()
    http.post(f"{segment}/v1/identify", json={"writeKey": stack["write_key"], "userId": "t1", "traits": {"email": "t1@example.com"}}).raise_for_status()
    sent = http.post(f"{mailjet}/v3.1/send", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]),
                     json={"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "t1@example.com"}],
                                         "Subject": "Hi", "HTMLPart": "<p><a href='https://example.com/'>x</a></p>"}]})
    message_id = sent.json()["Messages"][0]["To"][0]["MessageID"]
    http.post(f"{mailjet}/_emulator/messages/{message_id}/events", json={"event": "click"}).raise_for_status()

    def forwarded_and_delivered() -> tuple[list[dict[str, Any]], str] | None:
        steps = http.get(f"{segment}/_emulator/dashboard/trace", params={"user": "t1"}).json()["steps"]
        tracked = [s for s in steps if s["title"] == "Segment received track “Email Link Clicked”"]
        if tracked and any(s["kind"] == "delivery" and s["payload"].get("messageId") == tracked[0]["payload"]["messageId"] for s in steps):
            return steps, tracked[0]["payload"]["messageId"]
        return None

    steps, track_id = wait_for(forwarded_and_delivered, "the click's track in Segment and its (skipped) delivery")
    titles = [(s["kind"], s["title"], (s["payload"] or {}).get("messageId")) for s in steps]
    click = next(i for i, s in enumerate(titles) if s[1] == "Mailjet email event “click”")
    received = next(i for i, s in enumerate(titles) if s[2] == track_id and s[0] == "segment-email-event")
    delivered = next(i for i, s in enumerate(titles) if s[2] == track_id and s[0] == "delivery")
    assert click < received < delivered, titles


def test_pages_say_when_the_server_is_gone_and_catch_up_after_a_restart(context: BrowserContext) -> None:
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0))
    info = bundle.start()
    ports = {name: urlsplit(info[f"{name}_url"]).port for name in ("segment", "mailjet", "destination")}
    try:
        debugger = open_page(context, f"{info['segment_url']}/debugger")
        connection = open_page(context, f"{info['mailjet_url']}/app-connections")
        expect(debugger.get_by_text(re.compile(r"^Live"))).to_be_visible()
        httpx.post(f"{info['segment_url']}/v1/identify", json={"writeKey": info["write_key"], "userId": "before-restart"})
        expect(debugger.get_by_role("list", name="Events")).to_contain_text("before-restart")
        bundle.stop()
        for page in (debugger, connection):
            expect(page.get_by_role("alert").filter(has_text="connection")).to_be_visible()
        expect(debugger.get_by_text(re.compile(r"^Live"))).to_have_count(0)
        # Started again on the same ports, with another authentication key (no --data-dir).
        bundle = BackgroundBundle(BundleConfig(segment_port=ports["segment"], mailjet_port=ports["mailjet"],
                                               destination_port=ports["destination"]))
        again = bundle.start()
        assert again["auth_key"] != info["auth_key"]
        httpx.post(f"{again['segment_url']}/v1/identify", json={"writeKey": again["write_key"], "userId": "after-restart"})
        expect(debugger.get_by_role("list", name="Events")).to_contain_text("after-restart", timeout=15_000)
        # The restarted server (no --data-dir) holds no message from before: none is listed either.
        expect(debugger.get_by_role("list", name="Events")).not_to_contain_text("before-restart")
        expect(debugger.get_by_text(re.compile(r"^Live"))).to_be_visible()
        for page in (debugger, connection):
            expect(page.get_by_role("alert").filter(has_text="connection")).to_have_count(0)
        # The key shown is the one the server holds now, not the one it held before.
        expect(connection.get_by_label("Segment Authentication key")).to_have_value(again["auth_key"], timeout=15_000)
    finally:
        bundle.stop()


def test_engage_names_the_rule_when_its_json_is_broken(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    page = open_page(context, f"{stack['segment_url']}/engage")
    page.get_by_label("Audience name").fill("Buyers")
    page.get_by_label("Rule (JSON)").fill('{"event": "Order Completed",}')
    page.get_by_role("button", name="Create audience").click()
    expect(page.get_by_role("alert").first).to_contain_text("The rule is not valid JSON")


def test_pages_forget_what_a_reset_removed(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    # The Segment pages only ever added what the feed pushed: after a reset the Debugger kept
    # listing the forgotten messages, and the Overview and Engage kept their counts and audiences.
    segment = stack["segment_url"]
    http.post(f"{segment}/v1/track", auth=(stack["write_key"], ""), json={"userId": "u-gone", "event": "Before Reset"}).raise_for_status()
    http.post(f"{segment}/_emulator/engage/audiences", json={"name": "Gone Soon", "rule": {"event": "Before Reset"}}).raise_for_status()
    debugger = open_page(context, f"{segment}/debugger")
    overview = open_page(context, f"{segment}/")
    engage = open_page(context, f"{segment}/engage")
    events = debugger.get_by_role("list", name="Events")
    expect(events).to_contain_text("Before Reset")
    debugger.get_by_role("button").filter(has_text="Before Reset").click()
    expect(debugger.get_by_role("region", name="Event details")).to_contain_text("u-gone")
    expect(engage.get_by_role("table", name="Audiences")).to_contain_text("Gone Soon")
    http.post(f"{segment}/_emulator/reset").raise_for_status()
    expect(events).to_contain_text("No messages yet")
    expect(debugger.get_by_role("region", name="Event details")).not_to_contain_text("u-gone")
    expect(engage.locator("#view")).to_contain_text("No audiences defined.")
    count = overview.locator(".card").filter(has_text="Messages shown in the Debugger").locator(".stat")
    expect(count).to_have_text("0")
    http.post(f"{segment}/v1/track", auth=(stack["write_key"], ""), json={"userId": "u-new", "event": "After Reset"}).raise_for_status()
    expect(events).to_contain_text("After Reset")
    expect(events).not_to_contain_text("Before Reset")


HIDE_TAB = """(hidden) => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_hidden_tabs_let_go_of_their_feeds(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    # A browser opens at most 6 connections to one server and each tab's live feed held one: with
    # the six Segment pages open in tabs, the sixth never finished loading, nor did any request after.
    segment = stack["segment_url"]
    tabs = []
    for path in ("/", "/debugger", "/destinations", "/deliveries", "/engage", "/trace", "/debugger"):
        tab = open_page(context, f"{segment}{path}")
        tab.evaluate(HIDE_TAB, True)  # the user moves on to the next tab
        tabs.append(tab)
    http.post(f"{segment}/v1/track", auth=(stack["write_key"], ""), json={"userId": "u-tabs", "event": "While Hidden"}).raise_for_status()
    debugger = tabs[1]
    debugger.evaluate(HIDE_TAB, False)  # back to the Debugger: it catches up
    expect(debugger.get_by_role("list", name="Events")).to_contain_text("While Hidden")
    http.post(f"{segment}/v1/track", auth=(stack["write_key"], ""), json={"userId": "u-tabs", "event": "Seen Live"}).raise_for_status()
    expect(debugger.get_by_role("list", name="Events")).to_contain_text("Seen Live")


def test_app_connections_says_why_an_emptied_segment_url_is_not_saved(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    # An emptied URL was left out of the Save, which said "saved" and put the old URL back.
    page = open_page(context, f"{stack['mailjet_url']}/app-connections")
    page.get_by_text("Advanced").click()
    expect(page.get_by_label("Segment API URL")).to_have_value(stack["segment_url"])
    page.get_by_label("Segment API URL").fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").first).to_contain_text("segmentUrl")
    expect(page.get_by_text("Segment connection saved.")).to_have_count(0)
    assert http.get(f"{stack['mailjet_url']}/_emulator/app-connections/segment").json()["segmentUrl"] == stack["segment_url"]
