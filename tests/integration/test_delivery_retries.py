"""Segment's retries of the Mailjet destination over HTTP: Mailjet faulted, the virtual clock moved.

Real Segment retries a failed destination call "for four hours" (reference/segment.md §5); segjet
keeps a user's messages in order, so its later messages wait behind a retrying one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from emulator.bundle import BackgroundBundle
from emulator.common.clock import parse_iso
from emulator.config import BundleConfig
from emulator.segment.delivery import RETRIES_EXHAUSTED

from .test_clock_moves import Stack

WAIT_SECONDS = 15


@pytest.fixture(scope="module")
def bundle() -> Iterator[Stack]:
    background = BackgroundBundle(
        BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, engage_sync_interval="manual")
    )
    stack = Stack(background.start())
    yield stack
    stack.close()
    background.stop()


@pytest.fixture
def stack(bundle: Stack) -> Stack:
    for client in (bundle.mailjet, bundle.segment):
        assert client.post("/_emulator/reset").status_code == 200
    return bundle


def deliveries(stack: Stack, user_id: str) -> list[dict[str, Any]]:
    return stack.get("/_emulator/deliveries", userId=user_id)["deliveries"]


def test_with_mailjet_down_each_of_a_users_messages_fails_4h_after_its_acceptance(stack):
    # Each message's 4 h counted from its own first attempt: w1's third message was first tried
    # 8 h after it was accepted, and was still retrying at 10 h.
    fault = stack.mailjet.post("/_emulator/faults", json={"path": "/*", "status": 500, "rate": 1})
    assert fault.status_code == 201, fault.text
    for _ in range(3):
        stack.identify("w1", {"email": "w1@example.com"})
    deadline = time.monotonic() + WAIT_SECONDS
    while deliveries(stack, "w1")[0]["state"] != "retrying":
        assert time.monotonic() < deadline, deliveries(stack, "w1")
        time.sleep(0.02)

    for _ in range(17):  # 4 h 15 min; each move fires the retries it makes due before answering
        stack.advance("15m")

    records = deliveries(stack, "w1")
    assert [(record["state"], record["reason"]) for record in records] == [("failed", RETRIES_EXHAUSTED)] * 3, records
    for record in records:
        accepted = parse_iso(record["attempts"][0]["request"]["body"]["receivedAt"])
        # The virtual clock goes on with real time while the attempts run: a second's leeway.
        assert parse_iso(record["attempts"][-1]["at"]) < accepted + timedelta(hours=4, seconds=1)
