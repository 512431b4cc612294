"""The dashboards with a control token: opened once as /?token=T, they keep working (fetches, the
SSE feed, the link to the other dashboard), and the Faults list shows each server's rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import skip_module_without_browser

skip_module_without_browser()

from playwright.sync_api import Browser, expect  # noqa: E402

from emulator.bundle import BackgroundBundle  # noqa: E402
from emulator.config import BundleConfig  # noqa: E402

TOKEN = "dashboard-token"


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, control_token=TOKEN)
    with BackgroundBundle(config) as info:
        yield info


def test_token_once_then_pages_feeds_and_faults_work(browser: Browser, stack: dict[str, Any]) -> None:
    with httpx.Client(headers={"X-Segjet-Token": TOKEN}) as http:
        http.post(stack["segment_url"] + "/_emulator/faults", json={"path": "/v1/batch", "status": 503, "rate": 0.5}).raise_for_status()
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(stack["segment_url"] + f"/?token={TOKEN}")
        expect(page.locator("body[data-ready=true]")).to_be_attached()
        assert "token" not in page.url  # taken out of the address bar
        expect(page.get_by_role("table", name="Fault rules")).to_contain_text("/v1/batch")
        expect(page.get_by_role("table", name="Fault rules")).to_contain_text("respond 503")

        page.goto(stack["segment_url"] + "/debugger")  # no token in the URL: sessionStorage has it
        expect(page.locator("body[data-ready=true]")).to_be_attached()
        httpx.post(stack["segment_url"] + "/v1/identify", json={"writeKey": stack["write_key"], "userId": "live-1"})
        expect(page.locator("#view")).to_contain_text("live-1")  # from the SSE feed or the first fetch

        page.goto(stack["segment_url"] + "/")
        expect(page.locator("body[data-ready=true]")).to_be_attached()
        page.get_by_role("button", name="Remove fault fault-1").click()
        expect(page.locator("#view")).to_contain_text("No fault injected")

        page.locator("#other-dashboard").click()  # the other server, another origin: the token goes along
        page.wait_for_url(stack["mailjet_url"] + "/")
        expect(page.locator("body[data-ready=true]")).to_be_attached()
        expect(page.locator("#view")).to_contain_text("No fault injected")
    finally:
        context.close()


def test_without_the_token_the_page_says_why(browser: Browser, stack: dict[str, Any]) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(stack["mailjet_url"] + "/")
        expect(page.locator("body[data-ready=true]")).to_be_attached(timeout=15_000)
        expect(page.locator("#view")).to_contain_text("token", timeout=15_000)
        # The reads that failed are said on top, not shown as an account with no list.
        expect(page.locator("#view .alert.bad").first).to_contain_text("token")
        expect(page.locator(".card", has_text="Contact lists")).to_contain_text("—")
    finally:
        context.close()
