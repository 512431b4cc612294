"""The trace's order of steps that share a second: Mailjet's times have whole seconds only, so the
journey's own order (PHASES) decides, and a delivery follows the message it delivers."""

from __future__ import annotations

import random
from typing import Any

from emulator.dashboard.trace import in_order


def step(kind: str, at: str, message_id: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "at": at, "title": f"{kind} {message_id or ''}".strip(), "payload": {"messageId": message_id} if message_id else {}}


def test_steps_of_one_second_follow_the_journey_and_each_delivery_its_own_message() -> None:
    second = "2026-12-01T10:00:00"
    journey = [
        step("segment", f"{second}.900Z", "m-identify"),
        step("delivery", f"{second}.100Z", "m-identify"),
        step("mailjet-call", f"{second}.000Z"),
        step("email", f"{second}.000Z"),
        step("email-event", f"{second}.000Z"),
        step("segment-email-event", f"{second}.000Z", "m-opened"),
        step("delivery", f"{second}.050Z", "m-opened"),
        step("segment", "2026-12-01T10:00:01.000Z", "m-next"),
    ]
    shuffled = journey[:]
    random.Random(7).shuffle(shuffled)
    assert [s["title"] for s in in_order(shuffled)] == [s["title"] for s in journey]
