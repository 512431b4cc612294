"""The events the memory benchmark stores (`bench_memory` in benchmarks/run.py), and their sending.

100 per batch, ten per user (1,000,000 events over 100,000 users; identify 1 in 5, else track),
each with its own timestamp and the batch with a sentAt as analytics-python sends them.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx

EVENTS_PER_USER = 10  # 1,000,000 events from 100,000 users; the quick run keeps the same shape
BATCH = 100
SENDERS = 8
AUTH = ("segjet-write-key", "")


def send_events(segment_url: str, events: int, first: int = 0) -> None:
    """POST events `first` to `first + events` to /v1/batch, from SENDERS threads, each on its own connection."""
    users = max(1, events // EVENTS_PER_USER)
    starts = range(first, first + events, BATCH)

    def send(share: range) -> None:
        with httpx.Client(timeout=60) as client:
            for start in share:
                size = min(BATCH, first + events - start)
                client.post(f"{segment_url}/v1/batch", content=batch_of(start, size, users), auth=AUTH).raise_for_status()

    with ThreadPoolExecutor(SENDERS) as pool:
        for done in [pool.submit(send, starts[i::SENDERS]) for i in range(SENDERS)]:
            done.result()


def batch_of(start: int, size: int, users: int) -> bytes:
    items = []
    for n in range(start, start + size):
        user = f"user-{n % users}"
        timestamp = _stamp(n)
        if n % 5 == 0:
            items.append({"type": "identify", "userId": user, "messageId": f"m-{n}", "timestamp": timestamp,
                          "traits": {"email": f"{user}@example.com", "plan": "pro", "name": f"User {n % users}"}})
        else:
            items.append({"type": "track", "userId": user, "event": "Order Completed", "messageId": f"m-{n}",
                          "timestamp": timestamp,
                          "properties": {"revenue": n % 200, "currency": "EUR", "order_id": f"o-{n}"}})
    payload = {"batch": items, "writeKey": "segjet-write-key", "sentAt": _stamp(start + size),
               "context": {"library": {"name": "analytics-python", "version": "2.3.4"}}}
    return json.dumps(payload).encode()


_EPOCH = datetime(2025, 3, 1, tzinfo=timezone.utc)


def _stamp(n: int) -> str:
    # As analytics-python stamps each call: isoformat of an aware datetime, microseconds included.
    return (_EPOCH + timedelta(microseconds=n * 1_237)).isoformat()
