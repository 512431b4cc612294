"""What the browser tests share: Debian's Chromium driven by Playwright, one browser per module, and
a desktop-sized context that fails the test on any JavaScript error of its pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

CHROMIUM = Path(os.environ.get("SEGJET_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialing out, and this machine has no network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}


def skip_module_without_browser() -> None:
    """Skip the test module importing this where Playwright or Chromium is missing (call it at import)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the machine
        pytest.skip("playwright is not installed: pip install playwright (the `test` extra)", allow_module_level=True)
    if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    """A whole bundle with the Mailjet destination off, so the pages can walk the setup."""
    with BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, enable_destination=False)) as info:
        yield info


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    opened = browser.new_context(viewport=DESKTOP)
    opened.set_default_timeout(15_000)
    errors: list[str] = []
    opened.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        yield opened
    finally:
        opened.close()
    assert not errors, f"JavaScript errors on the pages: {errors}"


def open_page(context: Any, url: str) -> Any:
    """A new page of `context` at `url`, once the dashboard says it is ready."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def reset_stack(client: httpx.Client, stack: dict[str, Any], destination_enabled: bool) -> None:
    """Both fakes reset, and the Mailjet tile set up (on: an identify makes a contact)."""
    for url in (stack["segment_url"], stack["mailjet_url"]):
        client.post(f"{url}/_emulator/reset").raise_for_status()
    client.put(f"{stack['segment_url']}/_emulator/destinations/mailjet",
               json={"enabled": destination_enabled, "settings": {"apiKey": stack["auth_key"], "listId": "1"}}).raise_for_status()
