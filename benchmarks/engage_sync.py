"""Engage sync cost: an initial sync over N profiles, then a sync after 1 % of them changed.

Model level, no HTTP: profiles are built in the profile store of the default workspace, wired
as `segjet up` wires it (`Workspaces`: backend, Engage space, delivery pipeline), and the sync is
the one `POST /_emulator/engage/sync` and the schedule run (`EngageSpace.sync`). Every identify
it produces goes through the backend's ingest path (Engage source) and is handed to the delivery
pipeline, which records and queues it for the destination, as in the running emulator; the
delivery's HTTP is not timed (it runs after the sync, on the event loop). The garbage collector
is set as `segjet up` sets it. Run from the repository root:
`.venv/bin/python -m benchmarks.engage_sync [--profiles 10000 100000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

from emulator.common.clock import Clock, iso
from emulator.common.server import tune_gc_for_serving
from emulator.config import BundleConfig, BundleUrls
from emulator.segment.engage import EngageSpace, SyncResult
from emulator.segment.models import SegmentBackend, Source, StoredMessage
from emulator.segment.workspaces import Workspace, Workspaces

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


# Never contacted: the pipeline's workers send only when the event loop runs them, and nothing
# here yields to the loop between building the profiles and closing the pipeline.
_UNUSED_URLS = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")


def build(profiles: int, seed: int) -> tuple[Clock, Workspace]:
    """The default workspace as `segjet up` makes it, with `profiles` profiles. Call in a running
    event loop (the delivery pipeline starts its workers there), and `aclose` its pipeline after."""
    random.seed(seed)
    clock = Clock()
    config = BundleConfig(
        engage_sync_interval="manual",
        engage_audiences=[{"name": "Order Completed Last 30 Days", "rule": {"event": ORDER, "within": "30d"}}],
        engage_traits=[{"name": "Revenue 90 Days", "computed": "sum", "event": ORDER, "property": "revenue",
                        "within": "90d"}],
    )
    workspace = Workspaces(config, clock, _UNUSED_URLS).default
    backend = workspace.backend
    now = clock.now()
    for index in range(profiles):
        user_id = f"user-{index}"
        record(backend, {"type": "identify", "userId": user_id, "traits": {"email": f"{user_id}@example.com"}}, now)
        for _ in range(random.choice((0, 1, 1, 2, 3))):
            ago = timedelta(seconds=random.uniform(0, 60 * 86400))
            record(backend, {"type": "track", "userId": user_id, "event": ORDER,
                             "properties": {"revenue": random.randint(5, 200)}}, now - ago)
    return clock, workspace


def change(backend: SegmentBackend, space: EngageSpace, clock: Clock, profiles: int) -> int:
    """1 % of the profiles order again (through the listener path), and one hour passes."""
    users = random.sample(range(profiles), profiles // 100)
    for index in users:
        message = {"type": "track", "userId": f"user-{index}", "event": ORDER, "properties": {"revenue": 42}}
        record(backend, message, clock.now())
        space.engine.observe(message)
    clock.advance(timedelta(hours=1))
    return len(users)


def warm_up(workspace: Workspace) -> None:
    """One-off costs that are not a sync's: contract validators compile on first use, and the
    delivery pipeline makes its connection pool and workers on its first message. In a running
    server both happened when the profiles' own calls arrived."""
    scratch = SegmentBackend(workspace.backend.clock, [])
    scratch.ingest({"type": "identify", "userId": "warm-up", "traits": {"email": "w@example.com"}},
                   Source.named("warm-up", "warm-up"))
    workspace.pipeline.submit({"type": "identify", "userId": "warm-up", "messageId": "warm-up",
                               "traits": {"email": "w@example.com"}})


@dataclass
class Measured:
    initial: SyncResult
    initial_seconds: float
    changed: int  # users who ordered between the syncs
    incremental: SyncResult
    change_seconds: float


def measure(profiles: int, seed: int) -> Measured:
    """Time the initial sync over `profiles` profiles, then the sync after 1 % of them changed."""

    async def timed() -> Measured:
        clock, workspace = build(profiles, seed)
        space = workspace.engage
        try:
            warm_up(workspace)
            started = time.perf_counter()
            initial = space.sync()
            initial_seconds = time.perf_counter() - started
            changed = change(workspace.backend, space, clock, profiles)
            started = time.perf_counter()
            incremental = space.sync()
            return Measured(initial, initial_seconds, changed, incremental, time.perf_counter() - started)
        finally:
            await workspace.pipeline.aclose()

    with serving_gc():
        return asyncio.run(timed())


def run(profiles: int, seed: int) -> None:
    measured = measure(profiles, seed)
    initial, initial_seconds, changed = measured.initial, measured.initial_seconds, measured.changed
    incremental, change_seconds = measured.incremental, measured.change_seconds
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
