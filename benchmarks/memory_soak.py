"""Memory soak: send many events through a bundle and print its RSS as they go.

The capped feeds (events feed, request journals, delivery records) stop growing once full; what
keeps growing is the stores of record (profiles and their event history, Mailjet contacts, the
24-hour dedupe window of messageIds). The bundle runs in this process, so RSS is the bundle's
(plus the sender's small share). Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.memory_soak --events 200000 --events-capacity 20000 --journal-capacity 2000
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from pathlib import Path

import httpx

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

BATCH = 500


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def call(kind: str, user: int, n: int) -> dict[str, object]:
    message: dict[str, object] = {"type": kind, "userId": f"u{user}", "messageId": str(uuid.uuid4())}
    if kind == "track":
        message.update(event="Soak", properties={"n": n, "pad": "x" * 200})
    else:
        message["traits"] = {"email": f"u{user}@example.com", "n": n, "pad": "x" * 200}
    return message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="calls to send")
    parser.add_argument(
        "--type", choices=("track", "identify"), default="track",
        # ProfileStore.record adds every accepted call, identify included, to its profile's history.
        help="the calls sent; either kind adds an entry to its profile's call history (a store of record)",
    )
    parser.add_argument("--users", type=int, default=200, help="distinct userIds the events cycle through")
    parser.add_argument("--events-capacity", type=int, default=20_000)
    parser.add_argument("--journal-capacity", type=int, default=2_000)
    parser.add_argument("--every", type=int, default=20_000, help="print RSS every N events")
    parser.add_argument("--no-destination", action="store_true", help="leave the destination off: no delivery records")
    parser.add_argument(
        "--advance", default=None,
        help='move the virtual clock this much at each print (e.g. "25h" lets the 24 h dedupe window empty)',
    )
    args = parser.parse_args()

    config = BundleConfig(
        segment_port=0, mailjet_port=0, destination_port=0, seed=1,
        events_capacity=args.events_capacity, journal_capacity=args.journal_capacity,
        enable_destination=not args.no_destination,
    )
    with BackgroundBundle(config) as info, httpx.Client(timeout=60) as http:
        url = info["segment_url"] + "/v1/batch"
        print(f"events-capacity {args.events_capacity}, journal-capacity {args.journal_capacity}, "
              f"{args.users} users, {args.type} calls, destination {'off' if args.no_destination else 'on (skipped records)'}, "
              f"clock advance per print {args.advance or 'none'}")
        print(f"{'sent':>9} {'RSS MB':>8} {'feed':>7} {'dropped':>8} {'journal dropped':>16} {'s':>6}")
        started = time.monotonic()
        sent = 0
        while sent < args.events:
            batch = [call(args.type, (sent + i) % args.users, sent + i) for i in range(min(BATCH, args.events - sent))]
            http.post(url, json={"writeKey": info["write_key"], "batch": batch}).raise_for_status()
            sent += len(batch)
            # Crossed a multiple of --every (batches are BATCH calls, so it need not be one of BATCH's).
            if sent // args.every != (sent - len(batch)) // args.every or sent == args.events:
                if args.advance:
                    http.post(info["segment_url"] + "/_emulator/clock", json={"advance": args.advance}).raise_for_status()
                gc.collect()
                feed = http.get(info["segment_url"] + "/_emulator/events", params={"limit": 1}).json()
                journal = http.get(info["segment_url"] + "/_emulator/requests", params={"limit": 0}).json()
                shown = min(sent, args.events_capacity)
                print(f"{sent:>9} {rss_mb():>8.1f} {shown:>7} {feed['dropped']:>8} {journal['dropped']:>16} "
                      f"{time.monotonic() - started:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
