"""Where email events go: Event API webhooks and, when App Connections says so, Segment track calls.

Each account has its own outbox. Both deliveries run on the virtual clock: every send and every
retry is a timer of the account (owner "mailjet"), so `POST /_emulator/clock` fires what became due, and waits for it, before it answers.
A retry due during a clock jump happens once, at the new time; attempts skipped by the jump are not
replayed one by one. The only HTTP is `HttpTransport`, one shared `aiohttp.ClientSession`.

Webhooks (reference/mailjet.md §5):
- an event goes to the live primary `/eventcallbackurl` of its type, else to the live backup;
- Version 1: one POST per event, a JSON object; Version 2: one POST per URL per second of event
  time, a JSON array of the events of that second (types mixed), sent when the second is over;
- only 200 counts as delivered; anything else is retried every 30 s until 24 h after the first
  failure, then the delivery fails and its webhook's Status becomes `dead` (the backup takes over).

Segment (the Mailjet source, reference/segment.md §7.2 and §8):
- each forwarded event is one track call; calls are batched (at most 100, as analytics-python) to
  `POST {segmentUrl}/v1/batch` with `{"batch", "writeKey", "sentAt"}`, one batch in flight at a time;
- analytics-python's rules: 200 succeeds; other 4xx except 429 are final; 429, 5xx, other statuses
  and connection errors are retried with exponential backoff (1 s, 2 s, 4 s, ...), up to 10 retries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from ..common.clock import iso
from ..common.http import recorded_body
from ..common.server import CLIENT_IDLE_SECONDS
from .events import SEGMENT_EVENTS, EmailEvent, track_call
from .models import Account

log = logging.getLogger(__name__)

WEBHOOK_RETRY_INTERVAL = timedelta(seconds=30)
WEBHOOK_RETRY_WINDOW = timedelta(hours=24)
# Guess: no webhook timeout is documented (reference §8.7); a slow answer counts as a failure.
WEBHOOK_TIMEOUT_SECONDS = 5.0
SEGMENT_BATCH_SIZE = 100  # analytics-python upload_size
SEGMENT_MAX_RETRIES = 10  # analytics-python max_retries
SEGMENT_TIMEOUT_SECONDS = 15.0  # analytics-python timeout
_RESPONSE_TEXT_LIMIT = 2000

PENDING, RETRYING, DELIVERED, FAILED = "pending", "retrying", "delivered", "failed"
QUEUED, NOT_FORWARDED = "queued", "not_forwarded"


@dataclass(frozen=True)
class Outcome:
    """What one POST got: an HTTP status and body, or an error (timeout, refused connection)."""

    status: int | None
    body: Any = None
    error: str | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else str(self.error)


class HttpTransport:
    """The one HTTP client of the fake Mailjet's outgoing calls (all accounts), created in the serving event loop."""

    def __init__(self) -> None:
        self._client: aiohttp.ClientSession | None = None

    async def post_json(self, url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        if self._client is None:
            # aiohttp, as the fake Segment's delivery: an httpx request cost ~15x the CPU on the
            # bundle's one event loop (benchmarks/). It ignores proxy variables unless told to.
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=CLIENT_IDLE_SECONDS))
        content = json.dumps(body, separators=(",", ":")).encode()
        try:
            # aiohttp turns user:password@ in a URL into Basic auth, which is how Mailjet webhooks authenticate.
            async with self._client.post(
                url, data=content, headers={"Content-Type": "application/json", **headers},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status, raw = response.status, await response.read()
        except asyncio.TimeoutError:
            return Outcome(None, error=f"timeout: no answer within {timeout:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(None, error=f"connection error: {exc or type(exc).__name__}")
        return Outcome(status, recorded_body(raw, _RESPONSE_TEXT_LIMIT))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _attempt_json(at: datetime, outcome: Outcome) -> dict[str, Any]:
    return {"at": iso(at), "status": outcome.status, "response": outcome.body, "error": outcome.error}


# ---------------------------------------------------------------- webhooks


@dataclass
class WebhookDelivery:
    """One POST to a webhook URL (one event for Version 1, the events of one second for Version 2)."""

    id: int
    url: str
    version: int
    callback_ids: set[int]
    events: list[EmailEvent]
    due: datetime
    second: int
    generation: int
    state: str = PENDING
    reason: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    first_failure_at: datetime | None = None

    def body(self) -> Any:
        if self.version == 1:
            return self.events[0].payload
        return [record.payload for record in self.events]

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "version": self.version,
            "callback_ids": sorted(self.callback_ids),
            "batch_size": len(self.events),
            "next_attempt_at": iso(self.due) if self.state in (PENDING, RETRYING) else None,
            "reason": self.reason,
            "attempts": self.attempts,
        }


class Webhooks:
    """Routes each event of one account to its webhook and delivers with Mailjet's retry rule."""

    def __init__(self, account: Account, transport: HttpTransport) -> None:
        self._account = account
        self._clock = account.clock
        self._transport = transport
        self._generation = 0
        self.deliveries: dict[int, WebhookDelivery] = {}
        self.next_id = 1
        self._waiting: dict[int, WebhookDelivery] = {}
        self._open_batches: dict[str, WebhookDelivery] = {}  # Version 2, by URL: the batch still filling

    def close(self) -> None:
        """The account was reset: attempts in flight belong to the old generation, their results are dropped."""
        self._generation += 1

    def restore(self, deliveries: list[WebhookDelivery], next_id: int) -> None:
        """Replace every delivery (storage and snapshots); no timer is armed until `resume_timers`."""
        self.deliveries = {delivery.id: delivery for delivery in deliveries}
        self.next_id = next_id
        self._waiting = {d.id: d for d in deliveries if d.state in (PENDING, RETRYING)}
        self._open_batches = {}
        for delivery in deliveries:
            delivery.generation = self._generation
            if delivery.version == 2 and delivery.state == PENDING and not delivery.attempts:
                self._open_batches[delivery.url] = delivery

    def resume_timers(self) -> None:
        for delivery in self._waiting.values():
            self._account.timers.call_at(delivery.due, self._fire_due)

    def route(self, record: EmailEvent) -> None:
        callbacks = self._account.callbacks_for(record.event)
        if not callbacks:
            return
        callback = callbacks[0]
        second = int(record.at.timestamp())
        if callback.version == 2:
            batch = self._open_batches.get(callback.url)
            # An open batch has not been sent yet (it leaves `_open_batches` when its timer fires).
            if batch is not None and batch.second == second:
                batch.events.append(record)
                batch.callback_ids.add(callback.id)
                record.webhook = batch
                self._account.touch("webhook", batch.id)
                return
        # Version 2 waits for the end of the event's second, so the second's events travel together.
        due = record.at if callback.version == 1 else datetime.fromtimestamp(second + 1, tz=timezone.utc)
        delivery = WebhookDelivery(
            self.next_id, callback.url, callback.version, {callback.id}, [record], due, second, self._generation
        )
        self.next_id += 1
        self.deliveries[delivery.id] = delivery
        if callback.version == 2:
            self._open_batches[callback.url] = delivery
        record.webhook = delivery
        self._wait(delivery)

    def _wait(self, delivery: WebhookDelivery) -> None:
        self._waiting[delivery.id] = delivery
        self._account.touch("webhook", delivery.id)
        self._account.timers.call_at(delivery.due, self._fire_due)

    async def _fire_due(self) -> None:
        """Timer callback: attempt every delivery that is due; URLs concurrently, each URL's in order."""
        now = self._clock.now()
        by_url: dict[str, list[WebhookDelivery]] = {}
        for delivery in sorted(self._waiting.values(), key=lambda d: d.id):
            if delivery.due <= now:
                del self._waiting[delivery.id]
                if self._open_batches.get(delivery.url) is delivery:
                    del self._open_batches[delivery.url]
                by_url.setdefault(delivery.url, []).append(delivery)
        await asyncio.gather(*(self._attempt_in_order(deliveries) for deliveries in by_url.values()))

    async def _attempt_in_order(self, deliveries: list[WebhookDelivery]) -> None:
        # Guess: Mailjet promises no order; keeping it per URL makes `sent` arrive before its `open`.
        for delivery in deliveries:
            await self._attempt(delivery)

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        account = self._account
        callbacks = [account.callbacks.get(callback_id) for callback_id in delivery.callback_ids]
        if all(callback is None or callback.status == "dead" for callback in callbacks):
            delivery.state = FAILED
            delivery.reason = "the webhook was deleted or suspended (Status dead) before this attempt"
            account.touch("webhook", delivery.id)
            return
        at = self._clock.now()
        try:
            outcome = await self._transport.post_json(delivery.url, delivery.body(), {}, WEBHOOK_TIMEOUT_SECONDS)
        except Exception as exc:  # a bug must not stop the other deliveries of this timer
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)
            outcome = Outcome(None, error=f"internal error: {exc!r}")
        if delivery.generation != self._generation:
            return
        delivery.attempts.append(_attempt_json(at, outcome))
        account.touch("webhook", delivery.id)
        if outcome.status == 200:
            delivery.state, delivery.reason = DELIVERED, None
            return
        # Documented: "Any other HTTP code will result in our server retrying the request later."
        if delivery.first_failure_at is None:
            delivery.first_failure_at = at
        deadline = delivery.first_failure_at + WEBHOOK_RETRY_WINDOW
        if at >= deadline:
            delivery.state = FAILED
            delivery.reason = f"{outcome.describe()}; retried every 30 s for 24 h, webhook suspended (Status dead)"
            for callback in callbacks:
                if callback is not None:
                    callback.status = "dead"
                    account.touch("callback", callback.id)
            return
        delivery.state, delivery.reason = RETRYING, outcome.describe()
        delivery.due = min(at + WEBHOOK_RETRY_INTERVAL, deadline)
        self._wait(delivery)


# ---------------------------------------------------------------- Segment


@dataclass
class SegmentBatch:
    """One `POST /v1/batch` and its retries; shared by the events it carries."""

    id: int
    url: str
    write_key: str
    forwards: list[SegmentForward]
    generation: int
    state: str = QUEUED
    reason: str | None = None
    retries: int = 0
    due: datetime | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SegmentForward:
    """How one event fares on its way to Segment."""

    event_name: str | None
    call: dict[str, Any] | None = None
    url: str = ""
    write_key: str = ""
    reason: str | None = None
    batch: SegmentBatch | None = None
    record_id: int = 0  # the email event it carries

    @property
    def state(self) -> str:
        if self.call is None:
            return NOT_FORWARDED
        return self.batch.state if self.batch is not None else QUEUED

    def to_json(self) -> dict[str, Any]:
        batch = self.batch
        return {
            "state": self.state,
            "event": self.event_name,
            "messageId": self.call["messageId"] if self.call is not None else None,
            "reason": batch.reason if batch is not None else self.reason,
            "next_attempt_at": iso(batch.due) if batch is not None and batch.state == RETRYING and batch.due else None,
            "attempts": batch.attempts if batch is not None else [],
            "call": self.call,
        }


class SegmentForwarder:
    """Sends one account's email events to Segment as track calls, as the Mailjet source does with a
    pasted write key."""

    def __init__(self, account: Account, transport: HttpTransport) -> None:
        self._account = account
        self._clock = account.clock
        self._transport = transport
        self._generation = 0
        self.batches: dict[int, SegmentBatch] = {}
        self.next_batch_id = 1
        self._queue: deque[SegmentForward] = deque()
        self._current: SegmentBatch | None = None

    def close(self) -> None:
        """The account was reset: the result of a batch in flight is dropped."""
        self._generation += 1

    def restore(self, batches: list[SegmentBatch], queued: list[SegmentForward], next_batch_id: int) -> None:
        """Replace the batches and the queue (storage and snapshots); no timer is armed until `resume_timers`."""
        self.batches = {batch.id: batch for batch in batches}
        self.next_batch_id = next_batch_id
        self._queue = deque(queued)
        self._current = None
        for batch in batches:
            batch.generation = self._generation
            if batch.state in (QUEUED, RETRYING):
                self._current = batch  # one batch in flight at a time

    def resume_timers(self) -> None:
        timers = self._account.timers
        if self._current is not None:
            # A batch in flight when the server stopped is sent again at once.
            timers.call_at(self._current.due or self._clock.now(), self._retry)
        elif self._queue:
            timers.call_at(self._clock.now(), self._pump)

    def queued(self) -> list[SegmentForward]:
        return list(self._queue)

    def route(self, record: EmailEvent) -> None:
        account = self._account
        connection = account.app_connection
        name = SEGMENT_EVENTS.get(record.event)
        if name is None:
            record.segment = SegmentForward(None, reason=f"the Mailjet source has no Segment event for {record.event}")
        elif not connection.send_events:
            record.segment = SegmentForward(name, reason="sendEvents is off in App Connections → Segment")
        elif not connection.write_key:
            record.segment = SegmentForward(name, reason="no Segment write key in App Connections → Segment")
        else:
            # The write key and URL of the moment the event happened, as a client built with them would send.
            call = track_call(record, account, str(uuid.uuid4()))
            forward = SegmentForward(name, call, connection.segment_url, connection.write_key, record_id=record.id)
            record.segment = forward
            self._queue.append(forward)
            if self._current is None:
                account.timers.call_at(self._clock.now(), self._pump)

    async def _pump(self) -> None:
        """Timer callback: send batches until the queue is empty or a batch waits for a retry."""
        if self._current is not None:
            return
        while self._queue:
            first = self._queue.popleft()
            forwards = [first]
            while (
                self._queue
                and len(forwards) < SEGMENT_BATCH_SIZE
                and (self._queue[0].url, self._queue[0].write_key) == (first.url, first.write_key)
            ):
                forwards.append(self._queue.popleft())
            batch = SegmentBatch(self.next_batch_id, first.url, first.write_key, forwards, self._generation)
            self.next_batch_id += 1
            self.batches[batch.id] = batch
            for forward in forwards:
                forward.batch = batch
            self._account.touch("segment_batch", batch.id)
            self._current = batch
            await self._attempt(batch)
            if batch.generation != self._generation or batch.state == RETRYING:
                return
            self._current = None

    async def _retry(self) -> None:
        batch = self._current
        # due is None only for a restored batch that was in flight: it goes again now.
        if batch is None or (batch.due is not None and batch.due > self._clock.now()):
            return
        await self._attempt(batch)
        if batch.generation == self._generation and batch.state != RETRYING:
            self._current = None
            await self._pump()

    async def _attempt(self, batch: SegmentBatch) -> None:
        at = self._clock.now()
        body = {"batch": [forward.call for forward in batch.forwards], "writeKey": batch.write_key, "sentAt": iso(at)}
        # Guess: the write key also as Basic auth username, as Segment asks partners to send it in a header.
        token = base64.b64encode(f"{batch.write_key}:".encode()).decode()
        try:
            outcome = await self._transport.post_json(
                f"{batch.url}/v1/batch", body, {"Authorization": f"Basic {token}"}, SEGMENT_TIMEOUT_SECONDS
            )
        except Exception as exc:  # a bug must not leave the forwarder stuck on this batch
            log.exception("Segment batch failed unexpectedly")
            outcome = Outcome(None, error=f"internal error: {exc!r}")
        if batch.generation != self._generation:
            return
        batch.attempts.append(_attempt_json(at, outcome))
        self._account.touch("segment_batch", batch.id)
        status = outcome.status
        if status == 200:
            batch.state, batch.reason, batch.due = DELIVERED, None, None
        elif status is not None and 400 <= status < 500 and status != 429:
            batch.state, batch.reason, batch.due = FAILED, f"{outcome.describe()}: {_segment_message(outcome.body)}", None
        elif batch.retries >= SEGMENT_MAX_RETRIES:
            batch.state, batch.reason, batch.due = FAILED, f"{outcome.describe()}; gave up after {SEGMENT_MAX_RETRIES} retries", None
        else:
            batch.retries += 1
            # analytics-python uses backoff.expo with full jitter; we keep the exponential steps and drop
            # the jitter so a test can step the clock to each retry.
            batch.state, batch.reason = RETRYING, outcome.describe()
            batch.due = at + timedelta(seconds=2 ** (batch.retries - 1))
            self._account.timers.call_at(batch.due, self._retry)


def _segment_message(body: Any) -> str:
    """Segment's error text: `{"code", "message"}` JSON, else the raw text."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(body)[:_RESPONSE_TEXT_LIMIT]


class Outbox:
    """Both destinations of one account's email events, behind one listener."""

    def __init__(self, account: Account, transport: HttpTransport) -> None:
        self.webhooks = Webhooks(account, transport)
        self.segment = SegmentForwarder(account, transport)

    def route(self, record: EmailEvent) -> None:
        self.webhooks.route(record)
        self.segment.route(record)

    def resume_timers(self) -> None:
        self.webhooks.resume_timers()
        self.segment.resume_timers()

    def close(self) -> None:
        self.webhooks.close()
        self.segment.close()
