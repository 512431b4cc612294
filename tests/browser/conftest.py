"""What the browser tests share: Debian's Chromium driven by Playwright, one browser per module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

CHROMIUM = Path(os.environ.get("SEGJET_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialing out, and this machine has no network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


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
