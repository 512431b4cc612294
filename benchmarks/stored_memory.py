"""Resident memory per stored event (fake Segment) and per contact (fake Mailjet), model level.

Run in a fresh process by benchmarks/run.py: RSS is read before and after filling the models.
Events go through `SegmentBackend.receive("batch", ...)`, the tracking route's model call (JSON
decoding, enrichment, validation, dedupe index, message log, profiles), 100 per batch, ten per
user (1,000,000 events over 100,000 users; identify 1 in 5, else track), each with its own
timestamp and the batch with a sentAt as analytics-python sends them, all kept (the events
feed's capacity is raised to the count). Not included: HTTP, the request journal (capped at 10,000
requests) and the delivery records (capped at 100,000), which `segjet up` also keeps.
Contacts go through `Account.manage_contact`, as the destination's managecontact call does.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from emulator.common.clock import Clock
from emulator.config import BundleConfig
from emulator.mailjet.models import MailjetBackend
from emulator.segment.models import SegmentBackend

EVENTS_PER_USER = 10  # 1,000,000 events from 100,000 users; the quick run keeps the same shape


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    config = BundleConfig(seed=0, events_capacity=max(args.events, 1))
    clock = Clock()
    segment = SegmentBackend.from_config(config, clock)
    mailjet = MailjetBackend(config, clock, "http://127.0.0.1:8702", "http://127.0.0.1:8701")
    account = mailjet.default_account
    for name in ("plan", "segment_user_id"):
        account.create_property({"Name": name, "Datatype": "str", "NameSpace": "static"})
    users = max(1, args.events // EVENTS_PER_USER)
    segment.receive("batch", batch_of(0, 100, users))  # compile validators and warm caches before measuring
    segment.reset()
    gc.collect()

    before = rss_bytes()
    accepted = 0
    for start in range(0, args.events, 100):
        stored = segment.receive("batch", batch_of(start, min(100, args.events - start), users))
        accepted += sum(1 for message in stored if message.accepted)
    if accepted != args.events:  # a discarded event costs less: the figure is per stored event
        raise SystemExit(f"only {accepted} of {args.events} events were accepted")
    gc.collect()
    after_events = rss_bytes()
    for n in range(args.contacts):
        account.manage_contact("1", {"Email": f"user-{n}@example.com", "Name": f"User {n}", "Action": "addnoforce",
                                     "Properties": {"plan": "pro", "segment_user_id": f"user-{n}"}})
    gc.collect()
    after_contacts = rss_bytes()
    print(json.dumps({
        "rss_events_stored": args.events,
        "rss_bytes_per_event": round((after_events - before) / args.events),
        "rss_contacts_stored": args.contacts,
        "rss_bytes_per_contact": round((after_contacts - after_events) / args.contacts),
        # Context: the growth of both stores over the events alone, for a reading of the target as
        # "RSS after the events and the contacts, per event" (the process's start-up RSS left out).
        "rss_bytes_per_event_with_contacts": round((after_contacts - before) / args.events),
        "rss_total_mb": round(after_contacts / 2**20, 1),
    }))


if __name__ == "__main__":
    main()
