"""Engage sync cost: an initial sync over N profiles, then a sync after 1 % of them changed.

Model level, no HTTP: profiles are built in the fake Segment's profile store, the engine reads
them, and every identify it produces goes through the backend's ingest path (Engage source),
as in the running emulator, and with the garbage collector set as `segjet up` sets it. Run from the repository root: `.venv/bin/python -m benchmarks.engage_sync [--profiles 10000 100000]`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import time
from datetime import timedelta
from typing import Iterator

from emulator.common.clock import Clock, iso
from emulator.common.server import tune_gc_for_serving
from emulator.config import BundleConfig
from emulator.segment.engage import EngageSpace
from emulator.segment.models import SegmentBackend, Source, StoredMessage

ORDER = "Order Completed"


def record(backend: SegmentBackend, message: dict, timestamp) -> None:
    # Straight into the profile store: building 100k profiles through HTTP is not what is measured.
    message = {**message, "messageId": f"bench-{random.getrandbits(64):x}", "timestamp": iso(timestamp)}
    backend.profiles.record(StoredMessage(message, Source.named("bench", "bench")), timestamp)


@contextlib.contextmanager
def serving_gc() -> Iterator[None]:
    """The garbage collector as `segjet up` sets it (`tune_gc_for_serving`), then back to the defaults.

    Syncs run in the serving process. With the interpreter's default thresholds, 11 full collections
    walking every profile ran inside the initial sync at 100k profiles and lengthened it (5.4-5.6 s
    against 3.6-4.8 s on a busy 2-core VM), which flattered the 1 %-change ratio. Profiles are
    built under these settings too, as they arrive in a running server after its start-up heap is
    frozen.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    tune_gc_for_serving()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def build(profiles: int, seed: int) -> tuple[Clock, SegmentBackend, EngageSpace]:
    random.seed(seed)
    clock = Clock()
    config = BundleConfig(
        engage_sync_interval="manual",
        engage_audiences=[{"name": "Order Completed Last 30 Days", "rule": {"event": ORDER, "within": "30d"}}],
        engage_traits=[{"name": "Revenue 90 Days", "computed": "sum", "event": ORDER, "property": "revenue",
                        "within": "90d"}],
    )
    backend = SegmentBackend.from_config(config, clock)
    space = EngageSpace(backend, config, clock, owner="segment")
    now = clock.now()
    for index in range(profiles):
        user_id = f"user-{index}"
        record(backend, {"type": "identify", "userId": user_id, "traits": {"email": f"{user_id}@example.com"}}, now)
        for _ in range(random.choice((0, 1, 1, 2, 3))):
            ago = timedelta(seconds=random.uniform(0, 60 * 86400))
            record(backend, {"type": "track", "userId": user_id, "event": ORDER,
                             "properties": {"revenue": random.randint(5, 200)}}, now - ago)
    return clock, backend, space


def change(backend: SegmentBackend, space: EngageSpace, clock: Clock, profiles: int) -> int:
    """1 % of the profiles order again (through the listener path), and one hour passes."""
    users = random.sample(range(profiles), profiles // 100)
    for index in users:
        message = {"type": "track", "userId": f"user-{index}", "event": ORDER, "properties": {"revenue": 42}}
        record(backend, message, clock.now())
        space.engine.observe(message)
    clock.advance(timedelta(hours=1))
    return len(users)


def warm_up(clock: Clock) -> None:
    # Contract validators compile on first use; that one-off cost is not a sync's.
    scratch = SegmentBackend(clock, [])
    scratch.ingest({"type": "identify", "userId": "warm-up", "traits": {"email": "w@example.com"}},
                   Source.named("warm-up", "warm-up"))


def run(profiles: int, seed: int) -> None:
    with serving_gc():
        clock, backend, space = build(profiles, seed)
        warm_up(clock)
        started = time.perf_counter()
        initial = space.engine.sync()
        initial_seconds = time.perf_counter() - started

        changed = change(backend, space, clock, profiles)
        started = time.perf_counter()
        incremental = space.engine.sync()
        change_seconds = time.perf_counter() - started

    print(f"profiles {profiles:>7}: initial sync {initial_seconds * 1000:8.1f} ms "
          f"({initial.evaluated} evaluations, {len(initial.sent)} identifies) | "
          f"1% change sync {change_seconds * 1000:7.1f} ms ({changed} users ordered, 1 h passed: "
          f"{incremental.evaluated} evaluations, {len(incremental.sent)} identifies) | "
          f"ratio {change_seconds / initial_seconds:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for count in args.profiles:
        run(count, args.seed)


if __name__ == "__main__":
    main()
