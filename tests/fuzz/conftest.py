"""The stack each fuzz module drives: a whole bundle on free ports, seeded, Engage syncing only when asked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=7, engage_sync_interval="manual")
    with BackgroundBundle(config) as info:
        yield info
