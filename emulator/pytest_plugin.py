"""pytest plugin (entry point `pytest11`): the `segjet` fixture.

One stack per test session (so one per pytest-xdist worker) on free ports, reset before each
test. The fixture is a fresh `SegjetClient` for each test: see emulator/harness/client.py for its helpers.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .bundle import BackgroundBundle
from .config import BundleConfig
from .harness.client import SegjetClient


@pytest.fixture(scope="session")
def segjet_stack() -> Iterator[SegjetClient]:
    """The session's stack, and the client whose connections every test's client shares."""
    with BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=0)) as info:
        stack = SegjetClient(info)
        try:
            yield stack
        finally:
            stack.close()


@pytest.fixture
def segjet(segjet_stack: SegjetClient) -> SegjetClient:
    """The segjet stack, reset to a fresh state for this test, driven by a client of this test's own:
    an attribute a test changes (`write_key` for a workspace of its own) does not reach the next test."""
    client = segjet_stack.for_next_test()
    client.reset()
    return client
