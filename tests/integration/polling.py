"""Waiting on server state: poll until it holds, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """The first truthy answer of `probe`, polled every 20 ms; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
