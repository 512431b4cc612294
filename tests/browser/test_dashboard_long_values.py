"""The dashboard with what a review found it could not take: a very long email address, and a reset
under an open Trace page. Chromium through Playwright against a whole bundle, as in test_dashboard.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import DESKTOP, open_page, reset_stack, skip_module_without_browser
from tests.integration.polling import wait_for

skip_module_without_browser()

from playwright.sync_api import BrowserContext, Page, expect  # noqa: E402

expect.set_options(timeout=15_000)

PHONE = {"width": 390, "height": 844}
LONG_EMAIL = "a" * 188 + "@example.com"  # 200 characters, none a place to break a line


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    """A client on a freshly reset stack whose Mailjet tile is on, so an identify makes a contact."""
    with httpx.Client(timeout=10) as client:
        reset_stack(client, stack, destination_enabled=True)
        yield client


def identify(stack: dict[str, Any], http: httpx.Client, user_id: str, email: str) -> None:
    """An identify through Segment, waited for until its Mailjet contact exists (the whole hop done)."""
    http.post(f"{stack['segment_url']}/v1/identify", auth=(stack["write_key"], ""),
              json={"userId": user_id, "traits": {"email": email}}).raise_for_status()
    wait_for(lambda: http.get(f"{stack['mailjet_url']}/v3/REST/contact/{email}",
                              auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"])).status_code == 200,
             f"the Mailjet contact {email}")


def send_email(stack: dict[str, Any], http: httpx.Client, to: str) -> str:
    sent = http.post(f"{stack['mailjet_url']}/v3.1/send", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]),
                     json={"Messages": [{"From": {"Email": "demo@segjet.test"}, "To": [{"Email": to}],
                                         "Subject": "Welcome", "HTMLPart": "<p>Hello</p>"}]})
    assert sent.status_code == 200, sent.text
    return str(sent.json()["Messages"][0]["To"][0]["MessageID"])


def sideways_scroll(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_trace_page_shows_the_emptied_trace_after_a_reset(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    # The Trace page ignored the feed's reset: it kept showing a journey the server had forgotten.
    identify(stack, http, "u1", "ada@example.com")
    page = open_page(context, f"{stack['segment_url']}/trace?user=u1")
    journey = page.get_by_role("list", name="Journey")
    expect(journey).to_contain_text("Segment received identify")

    # Mailjet first: the page hears of Segment's reset only, and reads both fakes when it does.
    for url in (stack["mailjet_url"], stack["segment_url"]):
        http.post(f"{url}/_emulator/reset").raise_for_status()
    assert http.get(f"{stack['segment_url']}/_emulator/dashboard/trace", params={"user": "u1"}).json()["steps"] == []
    result = page.locator("#trace-result")
    expect(result).to_contain_text("Nothing recorded for this user yet.")
    expect(journey).to_have_count(0)
    expect(result).to_contain_text("No Mailjet contact for this user.")
    expect(page.get_by_role("link", name="Export as HTML")).to_have_attribute("href", "/_emulator/dashboard/trace/export?user=u1")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_trace_of_a_long_email_fits_the_screen(context: BrowserContext, stack: dict[str, Any], http: httpx.Client,
                                               viewport: dict[str, int], tmp_path: Path) -> None:
    identify(stack, http, "u-long", LONG_EMAIL)
    page = open_page(context, f"{stack['segment_url']}/trace?user=u-long")
    page.set_viewport_size(viewport)
    expect(page.get_by_label("Mailjet contact state")).to_contain_text(LONG_EMAIL)
    assert sideways_scroll(page) <= 0, f"the Trace page scrolls sideways at {viewport['width']}px"

    # The exported file is rendered by the same script and stylesheet.
    exported = tmp_path / "trace.html"
    answer = http.get(f"{stack['segment_url']}/_emulator/dashboard/trace/export", params={"user": "u-long"})
    answer.raise_for_status()
    exported.write_bytes(answer.content)
    page.goto(exported.as_uri())
    expect(page.get_by_label("Mailjet contact state")).to_contain_text(LONG_EMAIL)
    assert sideways_scroll(page) <= 0, f"the exported trace scrolls sideways at {viewport['width']}px"


def test_messages_to_a_long_email_keep_their_buttons_on_screen(context: BrowserContext, stack: dict[str, Any], http: httpx.Client) -> None:
    message_id = send_email(stack, http, LONG_EMAIL)
    page = open_page(context, f"{stack['mailjet_url']}/messages")
    row = page.locator(f'tr[data-message-id="{message_id}"]')
    expect(row).to_contain_text(LONG_EMAIL)
    expect(row.get_by_role("button", name="Open")).to_be_visible()
    # Measured in one go: the live feed may rebuild the table between two reads of the page.
    button_right, shown_right = row.evaluate("""row => {
        const button = [...row.querySelectorAll("button")].find((b) => b.textContent === "Open");
        const wrap = row.closest(".table-wrap").getBoundingClientRect();
        return [button.getBoundingClientRect().right, Math.min(window.innerWidth, wrap.right)];
    }""")
    assert button_right <= shown_right, f"the Open button ends at {button_right}px, off the {shown_right}px shown"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_contacts_with_a_long_email_fit_the_screen(context: BrowserContext, stack: dict[str, Any], http: httpx.Client,
                                                   viewport: dict[str, int]) -> None:
    identify(stack, http, "u-long", LONG_EMAIL)
    page = open_page(context, f"{stack['mailjet_url']}/contacts")
    page.set_viewport_size(viewport)
    table = page.get_by_role("table", name="Contacts")
    expect(table.locator(f'tr[data-email="{LONG_EMAIL}"]')).to_be_visible()
    scroll = table.locator("xpath=..").evaluate("wrap => wrap.scrollWidth - wrap.clientWidth")
    assert scroll <= 0, f"the Contacts table is cut off by {scroll}px at {viewport['width']}px"
    assert sideways_scroll(page) <= 0


LONG_WORD = "W" * 255  # Mailjet's longest Subject and Name, with no place to break a line


def long_subject(stack: dict[str, Any], http: httpx.Client) -> None:
    http.post(f"{stack['mailjet_url']}/v3.1/send", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]),
              json={"Messages": [{"From": {"Email": "demo@segjet.test"}, "To": [{"Email": "ada@example.com"}],
                                  "Subject": LONG_WORD, "TextPart": "x"}]}).raise_for_status()


def long_contact_name(stack: dict[str, Any], http: httpx.Client) -> None:
    http.post(f"{stack['mailjet_url']}/v3/REST/contact", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]),
              json={"Email": "ada@example.com", "Name": LONG_WORD}).raise_for_status()


def long_event_name(stack: dict[str, Any], http: httpx.Client) -> None:
    http.post(f"{stack['segment_url']}/v1/track", auth=(stack["write_key"], ""),
              json={"userId": "U" * 255, "event": LONG_WORD}).raise_for_status()
    wait_for(lambda: http.get(f"{stack['segment_url']}/_emulator/deliveries").json()["deliveries"], "the delivery record")


def long_email_event(stack: dict[str, Any], http: httpx.Client) -> None:
    send_email(stack, http, LONG_EMAIL)
    wait_for(lambda: http.get(f"{stack['mailjet_url']}/_emulator/email-events").json()["email_events"], "the sent event")


def long_audience_name(stack: dict[str, Any], http: httpx.Client) -> None:
    http.post(f"{stack['segment_url']}/_emulator/engage/audiences",
              json={"name": LONG_WORD, "rule": {"event": LONG_WORD, "within": "30d", "at_least": 1}}).raise_for_status()


@pytest.mark.parametrize(
    ("make", "service", "path", "table"),
    [
        (long_subject, "mailjet_url", "/messages", "Messages"),
        (long_contact_name, "mailjet_url", "/contacts", "Contacts"),
        (long_event_name, "segment_url", "/deliveries", "Deliveries"),
        (long_audience_name, "segment_url", "/engage", "Audiences"),
        (long_email_event, "mailjet_url", "/messages", "Email events"),
    ],
    ids=["subject", "contact-name", "event-name", "audience-name", "email-event"],
)
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_long_word_in_a_table_wraps_instead_of_pushing_the_row_off_screen(
    context: BrowserContext, stack: dict[str, Any], http: httpx.Client, make: Any, service: str, path: str, table: str,
    viewport: dict[str, int],
) -> None:
    # Only addresses could break: a 255-character Subject made the Messages table 3,000 px wide,
    # its Status and Open button out of sight.
    make(stack, http)
    page = open_page(context, f"{stack[service]}{path}")
    page.set_viewport_size(viewport)
    shown = page.get_by_role("table", name=table)
    expect(shown).to_contain_text(LONG_EMAIL if table == "Email events" else LONG_WORD)
    scroll = shown.locator("xpath=..").evaluate("wrap => wrap.scrollWidth - wrap.clientWidth")
    assert scroll <= 0, f"the {table} table is cut off by {scroll}px"
