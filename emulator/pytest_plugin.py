"""pytest plugin (entry point `pytest11`): the `segjet` fixture.

One stack per test session (so one per pytest-xdist worker) on free ports, reset before each
test. The fixture is a `SegjetClient`: see emulator/harness/client.py for its helpers.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .bundle import BackgroundBundle
from .config import BundleConfig
from .harness.client import SegjetClient


@pytest.fixture(scope="session")
def segjet_stack() -> Iterator[SegjetClient]:
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=0))
    stack = SegjetClient(bundle.start())
    try:
        yield stack
    finally:
        stack.close()
        bundle.stop()


@pytest.fixture
def segjet(segjet_stack: SegjetClient) -> SegjetClient:
    """The segjet stack, reset to a fresh state for this test."""
    segjet_stack.reset()
    return segjet_stack
