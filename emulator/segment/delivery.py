"""Delivery of accepted messages from the fake Segment to the Mailjet destination, with Segment's retries.

State and rules only; HTTP in and out of the control API is in `delivery_routes.py`. The one place
this module does I/O is the POST to the destination endpoint, as Segment does for a partner "direct
destination" (reference/segment.md §5.2).

How a message travels:
- The message store calls `DeliveryPipeline.submit(message)` with every accepted message. Messages
  the Mailjet destination would never get are recorded `skipped` at once, without any request.
- The others join their user's FIFO lane (userId, else anonymousId). A lane is served by one worker
  at a time, so a user's messages reach the destination in the order Segment accepted them, and a
  message waits while the one before it is retrying. Lanes of different users run concurrently on a
  fixed pool of workers sharing one HTTP connection pool.
- A retryable failure puts the lane to sleep until `next_attempt_at` on the virtual clock
  (`clock.call_at`); `POST /_emulator/clock` therefore fires due retries, and sends what waited
  behind them, before it answers.

Record states (`GET /_emulator/deliveries`):
- `queued`: accepted for delivery, not attempted yet (the first attempt may be in flight);
- `retrying`: at least one attempt failed with a retryable error; `next_attempt_at` says when next;
- `delivered`: the destination answered 2xx;
- `failed`: a final error (non-retryable status, retries exhausted, or an internal error such as a
  message that cannot be encoded); `reason` says why;
- `skipped`: never sent; `reason` is Segment's Delivery Overview code.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..common.clock import Clock, iso, parse_iso
from ..common.feeds import newest
from ..common.http import outgoing_session, read_answer, recorded_body
from ..common.journal import REDACTED
from ..config import BundleConfig, BundleUrls

if TYPE_CHECKING:
    from ..common.clock import Timer

logger = logging.getLogger(__name__)

DESTINATION_NAME = "Mailjet"
# Timers are owned by the workspace: resetting one workspace cancels its retries only.
CLOCK_OWNER = "segment"

QUEUED = "queued"
RETRYING = "retrying"
DELIVERED = "delivered"
FAILED = "failed"
SKIPPED = "skipped"
STATES = (QUEUED, RETRYING, DELIVERED, FAILED, SKIPPED)
FINISHED = (DELIVERED, FAILED, SKIPPED)

# The Mailjet tile in Segment's catalog declares identify only (reference/segment.md §7.1).
SUPPORTED_TYPES = frozenset({"identify"})
# Segment's Delivery Overview vocabulary for "filtered at destination".
UNSUPPORTED_EVENT_TYPE = "UNSUPPORTED_EVENT_TYPE"
FILTERED_BY_INTEGRATIONS_OBJECT = "FILTERED_BY_INTEGRATIONS_OBJECT"

# "retry failed destination API calls for four hours with a randomized exponential backoff"
# (reference/segment.md §5.1). The schedule itself is not published: we guess a first wait drawn
# from 30-60 s that doubles after each failure (about 8 retries in the window) and clamp the last
# attempt to the end of the window, so a destination down for 4 h gets one attempt at the 4 h mark.
# The window counts from the message's acceptance (its receivedAt), not from its first attempt: a
# message waiting behind its user's retrying one gets no fresh 4 h when its turn comes.
RETRY_WINDOW = timedelta(hours=4)
FIRST_BACKOFF_SECONDS = (30.0, 60.0)
RETRIES_EXHAUSTED = "retries exhausted after 4h"
# Actions framework policy (packages/core/src/errors.ts): 4xx are final except these; 5xx are
# retried except 501 (unsupported call type). Timeouts and connection errors are retried too.
RETRYABLE_4XX = frozenset({408, 423, 429})
NOT_RETRYABLE_5XX = frozenset({501})

# Segment's webhooks must answer within 5 s; we assume the same budget for direct destinations.
DEFAULT_TIMEOUT_SECONDS = 5.0
# Concurrent requests to the destination (workers = pooled connections); beyond ~16 nothing is
# gained on localhost.
DEFAULT_MAX_IN_FLIGHT = 16
DEFAULT_MAX_RECORDS = 100_000
_RESPONSE_TEXT_LIMIT = 16 * 1024
# Segment's integration error codes: on a 307 "Segment will automatically retry the request using
# the redirected URL" (reference/segment.md). GUESS: a 308 too, as it keeps the method and body
# alike; 301/302/303 are final failures (they would make the POST a GET); aiohttp's hop limit.
FOLLOWED_REDIRECTS = frozenset({307, 308})
MAX_REDIRECTS = 10


# Mailjet ids are int64 (reference/mailjet.md §3: ListID).
MAX_LIST_ID = 2**63 - 1


class DestinationConfigError(ValueError):
    """A destination setting that Segment's UI would not accept; answered 400 by the control API."""


@dataclass(frozen=True)
class DestinationConfig:
    """The Mailjet tile in the Segment workspace: on/off, its two settings, and where it is served."""

    url: str
    enabled: bool
    settings: dict[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise DestinationConfigError("enabled must be true or false")
        unknown = sorted(set(self.settings) - {"apiKey", "listId"})
        if unknown:
            raise DestinationConfigError(f"unknown Mailjet setting(s): {', '.join(unknown)}; expected apiKey, listId")
        api_key = self.settings.get("apiKey", "")
        if not isinstance(api_key, str):
            raise DestinationConfigError("settings.apiKey (the Mailjet authentication key) must be a string")
        if self.enabled and not api_key:
            raise DestinationConfigError("settings.apiKey (the Mailjet authentication key) is required to enable the destination")
        list_id = self.settings.get("listId")
        # The setting is a string in Segment's catalog; Mailjet list ids are positive int64s (the
        # destination refuses any other). The length is checked before int(): past 4,300 digits
        # int() raises a ValueError of its own, which the control API would answer 500.
        digits = list_id.lstrip("0") if isinstance(list_id, str) else ""
        if (
            not isinstance(list_id, str) or not list_id.isascii() or not list_id.isdigit()
            or not digits or len(digits) > 19 or int(digits) > MAX_LIST_ID
        ):
            raise DestinationConfigError(f'settings.listId must be a string holding a positive integer, e.g. "1"; got {json.dumps(list_id)}')

    def merged(self, update: dict[str, Any]) -> DestinationConfig:
        """A copy with the fields of `update` (`enabled`, `settings.apiKey`, `settings.listId`) applied."""
        unknown = sorted(set(update) - {"enabled", "settings"})
        if unknown:
            raise DestinationConfigError(f"unknown field(s): {', '.join(unknown)}; expected enabled, settings")
        settings = update.get("settings", {})
        if not isinstance(settings, dict):
            raise DestinationConfigError("settings must be an object, e.g. {\"listId\": \"2\"}")
        return DestinationConfig(self.url, update.get("enabled", self.enabled), {**self.settings, **settings})

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "settings": dict(self.settings)}


def skip_reason(message: dict[str, Any]) -> str | None:
    """Why the Mailjet destination would not receive `message`, or None when it would."""
    # The integrations object is applied before the destination's supported types, as Segment
    # routes on it first (a guess: both land in Delivery Overview's "Filtered at destination").
    integrations = message.get("integrations")
    if isinstance(integrations, dict):
        choice = integrations.get(DESTINATION_NAME)
        if choice is False or (choice is None and integrations.get("All") is False):
            return FILTERED_BY_INTEGRATIONS_OBJECT
    if message.get("type") not in SUPPORTED_TYPES:
        return UNSUPPORTED_EVENT_TYPE
    return None


def is_retryable(status: int | None) -> bool:
    """Whether Segment retries an attempt that ended with `status` (None: timeout or connection error)."""
    if status is None:
        return True
    if 500 <= status <= 599:
        return status not in NOT_RETRYABLE_5XX
    return status in RETRYABLE_4XX


def backoff_delay(seed: int, message_id: str, failures: int) -> timedelta:
    """Wait after the `failures`-th failed attempt: uniform 30-60 s, doubled per earlier failure.

    Drawn from (seed, messageId, failures) rather than one shared generator, so a message's schedule
    is reproducible whatever other messages fail around it.
    """
    low, high = FIRST_BACKOFF_SECONDS
    jitter = random.Random(f"{seed}:{message_id}:{failures}").uniform(low, high)
    return timedelta(seconds=jitter * 2 ** (failures - 1))


def destination_headers(settings: dict[str, str]) -> dict[str, str]:
    """Headers of Segment's request to a direct destination (reference/segment.md §5.2)."""
    others = {name: value for name, value in settings.items() if name != "apiKey"}
    credentials = base64.b64encode(f"{settings.get('apiKey', '')}:".encode()).decode()
    return {
        "Accept": "*/*",
        "Authorization": f"Basic {credentials}",
        "Cache-Control": "no-cache",
        "Connection": "Keep-Alive",
        "Content-Type": "application/json",
        "User-Agent": "Segment.io/1.0",
        "X-Segment-Settings": base64.b64encode(json.dumps(others, separators=(",", ":")).encode()).decode(),
    }


class DeliveryChanges(Protocol):
    """Told of every change worth keeping across a restart (storage.py writes them)."""

    def delivery_changed(self, record: DeliveryRecord) -> None: ...

    # `dropped`: how many records the cap has pushed out since the last reset, `record` included.
    def delivery_dropped(self, record: DeliveryRecord, dropped: int) -> None: ...

    def destination_changed(self) -> None: ...


@dataclass(slots=True)
class DeliveryRecord:
    seq: int  # order of intake in the workspace; the storage's row id
    message_id: str
    type: str | None
    user_id: str | None
    event: str | None
    body: dict[str, Any]
    state: str = QUEUED
    reason: str | None = None
    next_attempt_at: datetime | None = None
    # A tuple, replaced at each attempt: most records are skipped and never attempted, and one
    # shared () costs the garbage collector nothing (every stored event has a record).
    attempts: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "type": self.type,
            "userId": self.user_id,
            "event": self.event,
            "destination": DESTINATION_NAME,
            "state": self.state,
            "reason": self.reason,
            "next_attempt_at": iso(self.next_attempt_at) if self.next_attempt_at else None,
            "attempts": list(self.attempts),
        }


@dataclass
class _Outcome:
    status: int | None
    response: Any
    error: str | None
    message: str


@dataclass(eq=False)
class _Lane:
    """One user's FIFO of messages still to deliver."""

    key: str
    generation: int
    pending: deque[DeliveryRecord] = field(default_factory=deque)
    scheduled: bool = False  # waiting in the ready queue for a worker
    active: bool = False  # a worker or the retry timer is sending its head
    timer: Timer | None = None  # set while its head waits for a retry

    @property
    def idle(self) -> bool:
        return not (self.scheduled or self.active or self.timer)


class DeliveryPipeline:
    """Delivers accepted messages to the Mailjet destination endpoint and records every attempt."""

    def __init__(
        self,
        clock: Clock,
        destination_url: str,
        seed: int | None = None,
        *,
        api_key: str = "",
        list_id: str = "1",
        enabled: bool = True,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_records: int = DEFAULT_MAX_RECORDS,
        owner: str = CLOCK_OWNER,
    ) -> None:
        self._clock = clock
        self._owner = owner
        self.changes: DeliveryChanges | None = None
        self._next_seq = 1
        self._initial_destination = DestinationConfig(destination_url.rstrip("/"), enabled, {"apiKey": api_key, "listId": list_id})
        self._destination = self._initial_destination
        self._seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self._timeout = timeout_seconds
        self._max_in_flight = max_in_flight
        self._max_records = max_records
        self._generation = 0
        self._lanes: dict[str, _Lane] = {}
        self._waiting: dict[str, _Lane] = {}
        # The waiting lanes by due time, (due, n, lane, timer); an entry whose lane no longer waits
        # on that timer is skipped when popped. Each lane's timer fires `_fire_due`, which scanned
        # every waiting lane: thousands of users retrying made each retry wave quadratic.
        self._due: list[tuple[datetime, int, _Lane, Timer]] = []
        self._pushes = itertools.count()
        self._records: deque[DeliveryRecord] = deque()
        # Unfinished records that reached the front of `_records` when room was needed, oldest
        # first; every one is older than all of `_records`, so `_held` + `_records` is intake order.
        self._held: deque[DeliveryRecord] = deque()
        # Records pushed out by `max_records` since the last reset (oldest first).
        self.dropped = 0
        # Created on first use, inside the event loop that serves the app.
        self._ready: asyncio.Queue[_Lane] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._client: aiohttp.ClientSession | None = None
        # Bounds concurrent requests across the workers and the retry timer to the pool size
        # (asyncio primitives bind to the running loop on first use, so this is safe to build here).
        self._in_flight = asyncio.Semaphore(max_in_flight)
        # Requests out to the destination, by the generation that sent them, and a signal at each
        # answer: `quiesce` waits for those sent before the last reset.
        self._sending: dict[int, int] = {}
        self._answered = asyncio.Event()

    @classmethod
    def from_config(
        cls, config: BundleConfig, clock: Clock, urls: BundleUrls, owner: str = CLOCK_OWNER
    ) -> DeliveryPipeline:
        """The bundle's pipeline: the Mailjet tile set up with the account's authentication key and list.

        With `enable_destination` False (`--no-enable`) it is off and has no key, as a destination
        newly added in Segment has none until the user pastes it. The list stays the account's: the
        tile always holds one (DestinationConfig requires it), and the one App Connections shows is
        what the user would pick.
        """
        return cls(
            clock,
            urls.destination_url,
            config.seed,
            api_key=config.auth_key if config.enable_destination else "",
            list_id=str(config.list_id),
            enabled=config.enable_destination,
            owner=owner,
        )

    # --- configuration -------------------------------------------------------------------------

    @property
    def destination(self) -> DestinationConfig:
        return self._destination

    def configure(self, update: dict[str, Any]) -> DestinationConfig:
        """Merge `update` into the destination's config; DestinationConfigError leaves it unchanged.

        Messages already queued or retrying keep going after a change, and their next attempt uses
        the new settings (a guess: Segment reads the settings when it sends).
        """
        self._destination = self._destination.merged(update)
        if self.changes is not None:
            self.changes.destination_changed()
        return self._destination

    # --- intake --------------------------------------------------------------------------------

    def submit(self, message: dict[str, Any]) -> None:
        """Route one accepted message, in Segment's wire format as stored (`StoredMessage.message`).

        Called by the message store's listener, synchronously; must run in the event loop.
        """
        # A disabled destination is not part of the routing at all, so nothing is recorded for it,
        # as Segment shows no delivery for a destination that is off.
        if not self._destination.enabled:
            return
        reason = skip_reason(message)
        record = DeliveryRecord(
            seq=self._next_seq,
            message_id=str(message.get("messageId")),
            type=message.get("type"),
            user_id=message.get("userId"),
            # Only a track call's event is its name (ingest checked it); another call may carry
            # any value there, which the record is no place for.
            event=message.get("event") if message.get("type") == "track" else None,
            # Not a copy: a stored message is never changed, so this is the message as accepted.
            body=message,
            state=QUEUED if reason is None else SKIPPED,
            reason=reason,
        )
        self._next_seq += 1
        self._remember(record)
        if reason is None:
            lane = self._lane_for(record)
            lane.pending.append(record)
            if lane.idle:
                self._schedule(lane)
        if self.changes is not None:
            self.changes.delivery_changed(record)

    def _lane_for(self, record: DeliveryRecord) -> _Lane:
        key = _lane_key(record.body)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key, self._generation)
        return lane

    # --- reading -------------------------------------------------------------------------------

    def records(
        self, message_id: str | None = None, state: str | None = None, user_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Delivery records, oldest first, the newest `limit` of those matching every filter given."""
        # A scan, not an index by messageId: at most `max_records` (100,000) records, a few ms, and
        # an index cost every ingested message a dict entry (~5 % of ingestion, benchmarks/).
        def keep(record: DeliveryRecord) -> bool:
            return (
                (message_id is None or record.message_id == message_id)
                and (state is None or record.state == state)
                and (user_id is None or record.user_id == user_id)
            )

        newest_first = itertools.chain(reversed(self._records), reversed(self._held))
        return [record.to_json() for record in newest(newest_first, limit, keep)]

    # --- lifecycle -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every record and pending delivery, cancel retry timers, restore the startup config."""
        # Attempts in flight belong to the old generation: their results are dropped.
        self._generation += 1
        for lane in self._waiting.values():
            if lane.timer is not None:
                Clock.cancel(lane.timer)
        self._lanes.clear()
        self._waiting.clear()
        self._due.clear()
        self._records.clear()
        self._held.clear()
        self.dropped = 0
        self._next_seq = 1
        self._destination = self._initial_destination

    def restore(self, destination: dict[str, Any], records: Iterable[DeliveryRecord], dropped: int = 0) -> None:
        """Take back the destination settings, the records kept before a restart, oldest first,
        and how many records the cap had dropped (`dropped`; records past the cap add to it).

        Unfinished records rejoin their user's lane in order: a lane whose head was retrying
        waits for its `next_attempt_at` on the clock again; a lane whose head was queued (maybe
        in flight when the process stopped) is sent again by `resume()`, once the loop runs.
        Call on a fresh or reset pipeline.
        """
        self._destination = self._initial_destination.merged(destination)
        self.dropped = dropped
        for record in records:
            self._remember(record)
            self._next_seq = max(self._next_seq, record.seq + 1)
            if record.state in (QUEUED, RETRYING):
                self._lane_for(record).pending.append(record)
        for lane in self._lanes.values():
            head = lane.pending[0]
            if head.state == RETRYING and head.next_attempt_at is not None:
                self._wait_for_retry(lane, head.next_attempt_at)

    def resume(self) -> None:
        """Start sending the restored lanes that wait for no retry; must run in the event loop."""
        for lane in list(self._lanes.values()):
            if lane.idle:
                self._schedule(lane)

    async def quiesce(self) -> None:
        """Return once every request sent to the destination before the last `reset()` has its answer.

        The destination answers after its last Mailjet call, so from then on nothing from before the
        reset can still reach Mailjet through it. Each request ends within the timeout (5 s).
        """
        while any(generation != self._generation for generation in self._sending):
            self._answered.clear()
            await self._answered.wait()

    def all_records(self) -> list[DeliveryRecord]:
        """Every record kept, oldest first (for the snapshot)."""
        return [*self._held, *self._records]

    async def aclose(self) -> None:
        """Stop the workers and the retry timers, and close the connection pool (app shutdown)."""
        for lane in self._waiting.values():
            if lane.timer is not None:
                Clock.cancel(lane.timer)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._ready = None

    # --- delivery ------------------------------------------------------------------------------

    def _remember(self, record: DeliveryRecord) -> None:
        # Only finished records make room: an unfinished one dropped from the store would be gone
        # after a restart, though its message was answered 200. Unfinished ones at the front are
        # set aside in `_held` (each once, so intake stays O(1)) and the oldest finished record
        # behind them goes: stopping at an unfinished front, one message retrying for 4 h kept
        # every record after it. A held record that finishes is dropped first once it leads
        # `_held`; one behind an unfinished held record waits for it (the log then holds more
        # than max_records by the held records, which were all unfinished when set aside).
        while len(self._held) + len(self._records) >= self._max_records:
            if self._held and self._held[0].state in FINISHED:
                oldest = self._held.popleft()
            else:
                while self._records and self._records[0].state not in FINISHED:
                    self._held.append(self._records.popleft())
                if not self._records:
                    break
                oldest = self._records.popleft()
            self.dropped += 1
            if self.changes is not None:
                self.changes.delivery_dropped(oldest, self.dropped)
        self._records.append(record)

    def _schedule(self, lane: _Lane) -> None:
        ready = self._start()
        lane.scheduled = True
        ready.put_nowait(lane)

    def _start(self) -> asyncio.Queue[_Lane]:
        """The ready queue; the queue, connection pool and workers are made on first use, in the serving loop."""
        if self._ready is None:
            self._ready = asyncio.Queue()
            self._client = outgoing_session(
                self._max_in_flight,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # Only the headers of Segment's request (destination_headers), not aiohttp's own.
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            self._workers = [
                asyncio.create_task(self._work(), name=f"segment-delivery-{n}") for n in range(self._max_in_flight)
            ]
        return self._ready

    async def _work(self) -> None:
        assert self._ready is not None
        while True:
            lane = await self._ready.get()
            lane.scheduled = False
            if lane.generation != self._generation or lane.active:
                continue
            try:
                await self._serve(lane)
            except Exception:  # a bug must not cost the pool a worker
                logger.exception("delivery of lane %s failed unexpectedly", lane.key)

    async def _fire_due(self) -> None:
        """Timer callback: retry every lane whose head is due, concurrently; the workers send what
        follows. The clock holds every timer of the three servers while this runs (Clock.run_due):
        a user's backlog drained here held Mailjet's jobs and webhooks and Engage's syncs as long."""
        self._start()  # a retry restored from the database may be the first thing this pipeline sends
        now = self._clock.now()
        due: list[_Lane] = []
        while self._due and self._due[0][0] <= now:
            _, _, lane, timer = heapq.heappop(self._due)
            if self._waiting.get(lane.key) is not lane or lane.timer is not timer:
                continue  # reset, or already served by another lane's callback
            del self._waiting[lane.key]
            # One callback serves every due lane; their own timers have nothing left to do.
            Clock.cancel(timer)
            lane.timer = None
            due.append(lane)
        results = await asyncio.gather(*(self._serve(lane, head_only=True) for lane in due), return_exceptions=True)
        for lane, result in zip(due, results):
            if isinstance(result, Exception):
                logger.error("retry of lane %s failed unexpectedly", lane.key, exc_info=result)

    def _wait_for_retry(self, lane: _Lane, at: datetime) -> None:
        lane.timer = self._clock.call_at(at, self._fire_due, owner=self._owner)
        self._waiting[lane.key] = lane
        heapq.heappush(self._due, (at, next(self._pushes), lane, lane.timer))

    async def _serve(self, lane: _Lane, head_only: bool = False) -> None:
        """Send the lane's messages in order until it is empty or its head must wait for a retry;
        with `head_only`, its head only, and the rest is left to the workers."""
        lane.active = True
        try:
            while lane.pending:
                record = lane.pending[0]
                try:
                    await self._attempt(record, lane.generation)
                except Exception as exc:
                    # The record ends failed rather than holding its user's later messages forever.
                    logger.exception("delivery of message %s failed unexpectedly", record.message_id)
                    record.state, record.reason = FAILED, f"internal error: {type(exc).__name__}: {exc}"
                    record.next_attempt_at = None
                if lane.generation != self._generation:
                    return  # reset while in flight: the record belongs to the forgotten state
                if self.changes is not None:
                    self.changes.delivery_changed(record)
                if record.state == RETRYING:
                    self._wait_for_retry(lane, record.next_attempt_at)
                    return
                lane.pending.popleft()
                if head_only and lane.pending:
                    break
            if not lane.pending and self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
        finally:
            lane.active = False
        if lane.pending and lane.idle and lane.generation == self._generation:
            self._schedule(lane)

    async def _attempt(self, record: DeliveryRecord, generation: int) -> None:
        assert self._client is not None
        # Nothing goes out while a request from before the last reset is: sent now, a message
        # accepted since would reach Mailjet before its user's older one still out (a snapshot
        # import restores through a reset too), and Mailjet would keep the older value.
        await self.quiesce()
        async with self._in_flight:
            if generation != self._generation:
                return  # reset while waiting for a free slot: nothing is sent, and the caller sees the reset
            # Settings are read per attempt, so a retry after a settings change uses the new ones.
            destination = self._destination
            headers = destination_headers(destination.settings)
            at = self._clock.now()
            self._sending[generation] = self._sending.get(generation, 0) + 1
            try:
                outcome = await self._send(destination.url + "/", headers, record.body)
            finally:
                self._sending[generation] -= 1
                if not self._sending[generation]:
                    del self._sending[generation]
                self._answered.set()
        attempt = {
            "at": iso(at),
            "status": outcome.status,
            "response": outcome.response,
            "error": outcome.error,
            "request": {"method": "POST", "url": destination.url + "/", "headers": _recorded_headers(headers), "body": record.body},
        }
        record.attempts = (*record.attempts, attempt)
        self._settle(record, outcome)

    async def _send(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> _Outcome:
        content = json.dumps(body, separators=(",", ":")).encode()
        try:
            # The timeout bounds the whole attempt, redirects included: a reset waits for it (quiesce).
            async with asyncio.timeout(self._timeout):
                status, raw = await self._post_following_redirects(url, headers, content)
        except asyncio.TimeoutError:
            return _Outcome(None, None, "ETIMEDOUT", f"timeout: no response within {self._timeout:g}s")
        except aiohttp.ClientConnectorError as exc:
            return _Outcome(None, None, "ECONNREFUSED", f"connection error: {exc or type(exc).__name__}")
        except aiohttp.ClientError as exc:
            return _Outcome(None, None, "ECONNRESET", f"connection error: {exc or type(exc).__name__}")
        parsed = recorded_body(raw, _RESPONSE_TEXT_LIMIT)
        return _Outcome(status, parsed, None, _destination_message(status, parsed))

    async def _post_following_redirects(self, target: str, headers: dict[str, str], content: bytes) -> tuple[int, bytes]:
        """The final answer's status and body, after at most MAX_REDIRECTS 307/308s."""
        assert self._client is not None
        for _ in range(MAX_REDIRECTS + 1):
            # Redirects are followed here, not by aiohttp: it turns a POST answered 301, 302 or 303
            # into a GET without the event, whose 200 would be recorded as a delivery.
            async with self._client.post(target, data=content, headers=headers, allow_redirects=False) as response:
                status, raw = response.status, await read_answer(response)
                location = response.headers.get("Location")
            if status not in FOLLOWED_REDIRECTS or not location:
                break
            moved = urljoin(target, location)
            if urlsplit(moved)[:2] != urlsplit(target)[:2]:
                # As aiohttp and browsers do: the destination's key is not handed to another origin.
                headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            target = moved
        return status, raw

    def _settle(self, record: DeliveryRecord, outcome: _Outcome) -> None:
        record.next_attempt_at = None
        if outcome.status is not None and 200 <= outcome.status <= 299:
            record.state, record.reason = DELIVERED, None
            return
        if not is_retryable(outcome.status):
            # The destination's own words are the most useful reason (e.g. "no email in traits").
            record.state, record.reason = FAILED, outcome.message
            return
        now = self._clock.now()
        # receivedAt is the virtual clock's time at ingestion; every accepted message has one. A
        # message whose turn came after its window closed has had its one attempt.
        deadline = parse_iso(record.body["receivedAt"]) + RETRY_WINDOW
        if now >= deadline:
            record.state, record.reason = FAILED, RETRIES_EXHAUSTED
            return
        record.state = RETRYING
        record.reason = outcome.message if outcome.status is None else f"HTTP {outcome.status}: {outcome.message}"
        failures = len(record.attempts)
        next_attempt_at = min(now + backoff_delay(self._seed, record.message_id, failures), deadline)
        record.next_attempt_at = _ceil_to_millisecond(next_attempt_at)


def _ceil_to_millisecond(moment: datetime) -> datetime:
    # The control API shows times to the millisecond; rounding up makes `POST clock {"set": next_attempt_at}`
    # with the value shown fire the retry, where truncation would stop a few microseconds short.
    extra = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - extra) if extra else moment


def _recorded_headers(headers: dict[str, str]) -> dict[str, str]:
    """The request's headers as a record shows them: the authentication key hidden, as the request
    journal hides every Authorization header (records are served by the control API and written to
    snapshots). Unlike the journal, X-Segment-Settings is shown: it holds only listId here (the
    apiKey travels in Authorization), and shows which list each attempt used."""
    return {**headers, "Authorization": REDACTED}


def _lane_key(message: dict[str, Any]) -> str:
    for name in ("userId", "anonymousId"):
        value = message.get(name)
        if value not in (None, ""):
            return f"{name}:{value}"
    # Accepted messages always have one of the two; this keeps a malformed one from sharing a lane.
    return f"messageId:{message.get('messageId')}"


def _destination_message(status: int, body: Any) -> str:
    """The destination's explanation: `{"message": ...}` per the direct-destination contract, else the text."""
    if isinstance(body, dict):
        for name in ("message", "error"):
            if isinstance(body.get(name), str) and body[name]:
                return body[name]
    if isinstance(body, str) and body.strip():
        return body.strip()
    return f"HTTP {status}"
