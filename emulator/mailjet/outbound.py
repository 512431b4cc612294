"""Where email events go: Event API webhooks and, when App Connections says so, Segment track calls.

Each account has its own outbox. Both deliveries run on the virtual clock: every send and every
retry is a timer of the account (owner "mailjet"), so `POST /_emulator/clock` starts what became due
before it answers. The timer only starts the HTTP, as a task: the clock is shared by all three
servers, and a slow endpoint must not hold it (a webhook attempt may take 5 s, a Segment batch 15 s).
The result is recorded when the answer arrives; until then the delivery shows its last state.
A retry due during a clock jump happens once, at the new time; attempts skipped by the jump are not
replayed one by one. The only HTTP is `HttpTransport`, one shared `aiohttp.ClientSession`.

Webhooks (reference/mailjet.md §5):
- an event goes to the live primary `/eventcallbackurl` of its type, else to the live backup;
- Version 1: one POST per event, a JSON object; Version 2: one POST per URL per second of event
  time, a JSON array of the events of that second (types mixed), sent when the second is over;
- each URL gets its deliveries one after another, different URLs at the same time;
- only 200 counts as delivered; anything else (a redirect too: none is followed) is retried every
  30 s until 24 h after the first failure, then the delivery fails. Its webhook's Status becomes
  `dead` (the backup takes over) only if the URL answered nothing but failures all that time;
- a retry goes to the webhook's URL of the moment, so fixing the URL delivers what was waiting.

Segment (the Mailjet source, reference/segment.md §7.2 and §8):
- each forwarded event is one track call; calls are batched (at most 100 and 475,000 bytes, as
  analytics-python) to `POST {segmentUrl}/v1/batch` with `{"batch", "writeKey", "sentAt"}`, one
  batch in flight at a time;
- analytics-python's rules: 200 succeeds; other 4xx except 429 are final; 429, 5xx, other statuses
  and connection errors are retried with exponential backoff (1 s, 2 s, 4 s, ...), up to 10 retries.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import logging
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from ..common.clock import iso, parse_iso
from ..common.http import outgoing_session, read_answer, recorded_body
from .events import NOT_FORWARDED, SEGMENT_EVENTS, EmailEvent, track_call, unix_time
from .models import Account, EventCallback

log = logging.getLogger(__name__)

WEBHOOK_RETRY_INTERVAL = timedelta(seconds=30)
WEBHOOK_RETRY_WINDOW = timedelta(hours=24)
# Guess: no webhook timeout is documented (reference §8.7); a slow answer counts as a failure.
WEBHOOK_TIMEOUT_SECONDS = 5.0
SEGMENT_BATCH_SIZE = 100  # analytics-python upload_size
# analytics-python's BATCH_SIZE_LIMIT: "Our servers only accept batches less than 500KB", less
# room for `sentAt`; a larger batch is refused whole (400, not retried).
SEGMENT_BATCH_BYTES = 475_000
SEGMENT_MAX_RETRIES = 10  # analytics-python max_retries
# analytics-python's MAX_MSG_SIZE: a bigger message is refused when it is enqueued; Segment answers
# 400 to a batch holding one.
SEGMENT_CALL_BYTES = 32 << 10
SEGMENT_TIMEOUT_SECONDS = 15.0  # analytics-python timeout
_RESPONSE_TEXT_LIMIT = 2000

PENDING, RETRYING, DELIVERED, FAILED = "pending", "retrying", "delivered", "failed"
QUEUED = "queued"


@dataclass(frozen=True)
class Outcome:
    """What one POST got: an HTTP status and body, or an error (timeout, refused connection)."""

    status: int | None
    body: Any = None
    error: str | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else str(self.error)


# An attempt segjet stopped in the middle of: the receiver may have had the call, but no answer came.
STOPPED_WAITING = Outcome(None, error="no answer: segjet stopped while waiting for it")


class HttpTransport:
    """The one HTTP client of the fake Mailjet's outgoing calls (all accounts), created in the serving
    event loop, and the keeper of the tasks that make those calls."""

    def __init__(self) -> None:
        self._client: aiohttp.ClientSession | None = None
        self._tasks: dict[asyncio.Task[None], Account] = {}  # each with the account whose call it makes

    def spawn(self, work: Coroutine[Any, Any, None], account: Account) -> None:
        """Run `work` (attempts and the recording of their results) as a task of the running loop,
        so that the timer callback that starts it returns without waiting on the network."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[task] = account
        task.add_done_callback(self._finished)

    def in_flight(self, account: Account) -> list[asyncio.Task[None]]:
        """The tasks making `account`'s calls now."""
        return [task for task, owner in self._tasks.items() if owner is account]

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("an outgoing delivery failed unexpectedly", exc_info=task.exception())

    async def post_json(self, url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        if self._client is None:
            self._client = outgoing_session()
        content = json.dumps(body, separators=(",", ":")).encode()
        try:
            # aiohttp turns user:password@ in a URL into Basic auth, which is how Mailjet webhooks authenticate.
            # Redirects are not followed: the Event API counts only a 200 ("Any other HTTP code will result
            # in our server retrying", reference §5), and a followed 301/302/303 turns the POST into a GET
            # without the body, whose 200 would count events nobody received as delivered. GUESS: Mailjet
            # does not follow a 307/308 either. Segment never redirects /v1/batch; a 3xx is retried there.
            async with self._client.post(
                url, data=content, headers={"Content-Type": "application/json", **headers},
                timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
            ) as response:
                status, raw = response.status, await read_answer(response)
        except asyncio.TimeoutError:
            return Outcome(None, error=f"timeout: no answer within {timeout:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(None, error=f"connection error: {exc or type(exc).__name__}")
        return Outcome(status, recorded_body(raw, _RESPONSE_TEXT_LIMIT))

    async def aclose(self) -> None:
        """Server shutdown: attempts in flight are cancelled (each recorded as one its receiver did
        not answer, `STOPPED_WAITING`, and sent again after a restart), then the connections close."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None


def _attempt_json(at: datetime, outcome: Outcome) -> dict[str, Any]:
    return {"at": iso(at), "status": outcome.status, "response": outcome.body, "error": outcome.error}


# ---------------------------------------------------------------- webhooks


@dataclass
class WebhookDelivery:
    """One POST to a webhook URL (one event for Version 1, the events of one second for Version 2).

    `url` is where it goes: its webhook's URL, followed when that changes; `first_failure_at` is
    the first failure at that URL."""

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
        # The waiting deliveries by due time, (due, id, n, delivery), with stale entries (a delivery
        # sent or re-scheduled since) skipped when popped: each delivery's timer fires `_fire_due`,
        # which scanned and sorted every waiting delivery, so 20,000 retrying against a down
        # endpoint cost 20,000 sorts of 20,000 per 30 s cycle (~10 s of the shared loop's CPU).
        self._due: list[tuple[datetime, int, int, WebhookDelivery]] = []
        self._pushes = itertools.count()
        # Version 2, by (URL, second of event time): the batches still filling. By second too: a timer
        # runs after the clock passed it, so an event of an earlier second may come after one of
        # the current second, whose batch must stay open for the rest of its second.
        self._open_batches: dict[tuple[str, int], WebhookDelivery] = {}
        # By URL: deliveries due, sent one after another by the one task that drains the lane.
        self._lanes: dict[str, deque[WebhookDelivery]] = {}
        # By URL: the virtual time of the last 200 it answered, which proves it alive (see `_give_up`).
        self._last_ok: dict[str, datetime] = {}

    def close(self) -> None:
        """The account was reset: attempts in flight belong to the old generation, their results are dropped."""
        self._generation += 1

    def restore(self, deliveries: list[WebhookDelivery], next_id: int) -> None:
        """Replace every delivery (storage and snapshots); no timer is armed until `resume_timers`."""
        self.deliveries = {delivery.id: delivery for delivery in deliveries}
        self.next_id = next_id
        self._waiting = {d.id: d for d in deliveries if d.state in (PENDING, RETRYING)}
        self._due = [(d.due, d.id, next(self._pushes), d) for d in self._waiting.values()]
        heapq.heapify(self._due)
        self._open_batches = {}
        oks: list[tuple[datetime, str]] = []
        for delivery in deliveries:
            delivery.generation = self._generation
            if delivery.version == 2 and delivery.state == PENDING and not delivery.attempts:
                self._open_batches[(delivery.url, delivery.second)] = delivery
            if delivery.state == DELIVERED and delivery.attempts:
                # A delivery ends at its first 200, at the URL it still names.
                try:
                    oks.append((parse_iso(delivery.attempts[-1]["at"]), delivery.url))
                except (KeyError, TypeError, ValueError):  # a hand-made snapshot: nothing proven
                    pass
        # In time order, as they were answered; one after the clock's time now came before it was
        # set back, and proves nothing of what comes next.
        now = self._clock.now()
        self._last_ok = {url: at for at, url in sorted(oks) if at <= now}

    def _note_ok(self, url: str, at: datetime) -> None:
        # The last 200 answered, whatever its time: a 200 of a later virtual time, answered before
        # the clock was set back, is no sign of life during a failure that began since.
        self._last_ok[url] = at

    def resume_timers(self) -> None:
        for delivery in self._waiting.values():
            self._account.timers.call_at(delivery.due, self._fire_due)

    def route(self, record: EmailEvent) -> None:
        callbacks = self._account.callbacks_for(record.event)
        if not callbacks:
            return
        callback = callbacks[0]
        second = unix_time(record.at)
        if callback.version == 2:
            batch = self._open_batches.get((callback.url, second))
            # An open batch has not been sent yet (it leaves `_open_batches` when its timer fires).
            if batch is not None:
                batch.events.append(record)
                batch.callback_ids.add(callback.id)
                record.webhook = batch
                self._account.touch("webhook", batch.id)
                return
        # Version 2 waits for the end of the event's second, so the second's events travel together.
        due = record.at if callback.version == 1 else datetime.fromtimestamp(second + 1, tz=timezone.utc)
        # Not before now: an event a clock move made due is routed after its own time, and a timer
        # scheduled in the past of a clock run ends that run's round (clock.run_due); one event per
        # round, the clock's 100 rounds ran out with events still due when `POST clock` answered.
        due = max(due, self._clock.now())
        delivery = WebhookDelivery(
            self.next_id, callback.url, callback.version, {callback.id}, [record], due, second, self._generation
        )
        self.next_id += 1
        self.deliveries[delivery.id] = delivery
        if callback.version == 2:
            self._open_batches[(callback.url, second)] = delivery
        record.webhook = delivery
        self._wait(delivery)

    def _wait(self, delivery: WebhookDelivery) -> None:
        self._waiting[delivery.id] = delivery
        heapq.heappush(self._due, (delivery.due, delivery.id, next(self._pushes), delivery))
        self._account.touch("webhook", delivery.id)
        self._account.timers.call_at(delivery.due, self._fire_due)

    def _fire_due(self) -> None:
        """Timer callback: put every due delivery in its URL's lane, in order, and return at once."""
        now = self._clock.now()
        due: list[WebhookDelivery] = []
        while self._due and self._due[0][0] <= now:
            at, _, _, delivery = heapq.heappop(self._due)
            if self._waiting.get(delivery.id) is delivery and delivery.due == at:
                del self._waiting[delivery.id]
                due.append(delivery)
        for delivery in sorted(due, key=lambda d: d.id):
            if self._open_batches.get((delivery.url, delivery.second)) is delivery:
                del self._open_batches[(delivery.url, delivery.second)]
            url = self._target(delivery) or delivery.url
            lane = self._lanes.get(url)
            if lane is None:
                lane = self._lanes[url] = deque()
                self._transport.spawn(self._drain(url, lane), self._account)
            lane.append(delivery)

    async def _drain(self, url: str, lane: deque[WebhookDelivery]) -> None:
        # Guess: Mailjet promises no order; first attempts in order per URL make `sent` arrive before
        # its `open` (a retry waits for its own time and holds nothing back).
        try:
            while lane:
                delivery = lane[0]
                try:
                    await self._attempt(delivery)
                except Exception as exc:
                    # It ends failed rather than holding the deliveries behind it pending forever.
                    log.exception("webhook delivery %s failed unexpectedly", delivery.id)
                    delivery.state, delivery.reason = FAILED, f"internal error: {type(exc).__name__}: {exc}"
                    self._account.touch("webhook", delivery.id)
                    self._account.changes.save()  # outside any request or timer, as an answer is
                lane.popleft()
        finally:
            if self._lanes.get(url) is lane:
                del self._lanes[url]

    def _live_callbacks(self, delivery: WebhookDelivery) -> list[EventCallback]:
        found = (self._account.callbacks.get(callback_id) for callback_id in sorted(delivery.callback_ids))
        return [callback for callback in found if callback is not None and callback.status != "dead"]

    def _target(self, delivery: WebhookDelivery) -> str | None:
        """Where the delivery goes now: its URL while one of its live webhooks still has it, else
        the URL its webhook was given since; None when every one of its webhooks was deleted or suspended."""
        live = self._live_callbacks(delivery)
        if not live:
            return None
        # Guess: Mailjet does not say what becomes of waiting retries when a webhook's URL changes.
        # Changing the URL is its documented cure for a failing endpoint, so they follow the webhook.
        return delivery.url if any(callback.url == delivery.url for callback in live) else live[0].url

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        if delivery.generation != self._generation:
            return  # the account was reset while this waited in its lane
        account = self._account
        url = self._target(delivery)
        if url is None:
            delivery.state = FAILED
            delivery.reason = "the webhook was deleted or suspended (Status dead) before this attempt"
            account.touch("webhook", delivery.id)
            account.changes.save()
            return
        if url != delivery.url:
            # The 24 hours before a suspension count failures at the URL the webhook has now.
            delivery.url, delivery.first_failure_at = url, None
        at = self._clock.now()
        try:
            outcome = await self._transport.post_json(url, delivery.body(), {}, WEBHOOK_TIMEOUT_SECONDS)
        except asyncio.CancelledError:
            if delivery.generation == self._generation:
                # No verdict on an answer never heard (not even past the 24 h): sent again at the restart.
                delivery.attempts.append({**_attempt_json(at, STOPPED_WAITING), "url": delivery.url})
                delivery.state, delivery.reason, delivery.due = RETRYING, STOPPED_WAITING.describe(), at
                account.touch("webhook", delivery.id)
            raise
        except Exception as exc:  # a bug must not stop the other deliveries of this lane
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)
            outcome = Outcome(None, error=f"internal error: {exc!r}")
        if delivery.generation != self._generation:
            return
        self._record(delivery, at, outcome)
        # The answer came outside any request or timer, which are what save otherwise (--data-dir).
        account.changes.save()

    def _record(self, delivery: WebhookDelivery, at: datetime, outcome: Outcome) -> None:
        delivery.attempts.append({**_attempt_json(at, outcome), "url": delivery.url})
        self._account.touch("webhook", delivery.id)
        if outcome.status == 200:
            delivery.state, delivery.reason = DELIVERED, None
            self._note_ok(delivery.url, at)
            return
        # Documented: "Any other HTTP code will result in our server retrying the request later."
        if delivery.first_failure_at is None:
            delivery.first_failure_at = at
        failing_since = delivery.first_failure_at
        deadline = failing_since + WEBHOOK_RETRY_WINDOW
        if at >= deadline:
            delivery.state = FAILED
            delivery.reason = f"{outcome.describe()}; retried every 30 s for 24 h, {self._give_up(delivery, failing_since)}"
            return
        delivery.state, delivery.reason = RETRYING, outcome.describe()
        delivery.due = min(at + WEBHOOK_RETRY_INTERVAL, deadline)
        self._wait(delivery)

    def _give_up(self, delivery: WebhookDelivery, failing_since: datetime) -> str:
        """Suspend the webhooks of a delivery that failed for 24 h, unless its URL proved alive meanwhile; say which."""
        # Documented: retries "stop 24 hours after the initial failure, unless a new event is
        # generated", and a backup URL takes over from a suspended one. Guess: what suspends a URL is
        # 24 h of nothing but failures; one event it keeps refusing, while it answers 200 to the
        # others, only fails that event.
        last_ok = self._last_ok.get(delivery.url)
        if last_ok is not None and failing_since <= last_ok <= self._clock.now():
            return "given up; the webhook stays alive: its URL answered 200 to other events meanwhile"
        live = self._live_callbacks(delivery)
        suspended = [callback for callback in live if callback.url == delivery.url]
        if not suspended:
            # Changed during the last attempt, which went to the URL of its start.
            return "given up; the webhook has another URL now" if live else "given up; the webhook was deleted or suspended meanwhile"
        for callback in suspended:
            callback.status = "dead"
            self._account.touch("callback", callback.id)
        return "webhook suspended (Status dead)"


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
        self._sending = False  # the task of `_send` is running

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
        if self._current is not None or self._queue:
            # A batch in flight when the server stopped (no `due`) is sent again at once.
            due = self._current.due if self._current is not None else None
            self._account.timers.call_at(due or self._clock.now(), self._wake)

    def retarget(self, url: str) -> None:
        """Send what still waits (queued forwards, the batch being retried) to Segment at `url`."""
        for forward in self._queue:
            if forward.url != url:
                forward.url = url
                self._account.touch("event", forward.record_id)
        for batch in self.batches.values():
            if batch.state in (QUEUED, RETRYING) and batch.url != url:
                batch.url = url
                self._account.touch("segment_batch", batch.id)

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
            if (size := _json_size(call)) > SEGMENT_CALL_BYTES:
                reason = f"its track call is {size} bytes, over the {SEGMENT_CALL_BYTES} Segment takes (analytics-python drops it)"
                record.segment = SegmentForward(name, reason=reason)
                return
            forward = SegmentForward(name, call, connection.segment_url, connection.write_key, record_id=record.id)
            record.segment = forward
            self._queue.append(forward)
            # A running task takes it up; a batch waiting for its retry keeps it queued behind.
            if self._current is None and not self._sending:
                account.timers.call_at(self._clock.now(), self._wake)

    def _wake(self) -> None:
        """Timer callback: start sending unless a task is at it already; returns at once."""
        if not self._sending:
            self._sending = True
            self._transport.spawn(self._send(self._generation), self._account)

    async def _send(self, generation: int) -> None:
        """Send batches one at a time until the queue is empty or a batch waits for its retry."""
        try:
            while generation == self._generation:
                batch = self._current
                if batch is None:
                    if not self._queue:
                        return
                    batch = self._current = self._next_batch()
                elif batch.due is not None and batch.due > self._clock.now():
                    return  # not due yet: its retry timer wakes the sending up
                await self._attempt(batch)
                if batch.generation != self._generation:
                    return
                # The answer came outside any request or timer, which are what save otherwise (--data-dir).
                self._account.changes.save()
                if batch.state == RETRYING:
                    return  # its retry timer wakes the sending up again
                self._current = None
        finally:
            self._sending = False

    def _next_batch(self) -> SegmentBatch:
        """The next batch from the head of the queue: calls to the same URL with the same write key,
        as many as analytics-python puts in one upload (by count and by bytes)."""
        first = self._queue.popleft()
        forwards = [first]
        size = _json_size(first.call)
        while (
            self._queue
            and len(forwards) < SEGMENT_BATCH_SIZE
            and (self._queue[0].url, self._queue[0].write_key) == (first.url, first.write_key)
            and size + (next_size := _json_size(self._queue[0].call)) <= SEGMENT_BATCH_BYTES
        ):
            forwards.append(self._queue.popleft())
            size += next_size
        batch = SegmentBatch(self.next_batch_id, first.url, first.write_key, forwards, self._generation)
        self.next_batch_id += 1
        self.batches[batch.id] = batch
        for forward in forwards:
            forward.batch = batch
        self._account.touch("segment_batch", batch.id)
        return batch

    async def _attempt(self, batch: SegmentBatch) -> None:
        at = self._clock.now()
        body = {"batch": [forward.call for forward in batch.forwards], "writeKey": batch.write_key, "sentAt": iso(at)}
        # Guess: the write key also as Basic auth username, as Segment asks partners to send it in a header.
        token = base64.b64encode(f"{batch.write_key}:".encode()).decode()
        try:
            outcome = await self._transport.post_json(
                f"{batch.url}/v1/batch", body, {"Authorization": f"Basic {token}"}, SEGMENT_TIMEOUT_SECONDS
            )
        except asyncio.CancelledError:
            if batch.generation == self._generation:
                # No verdict on an answer never heard (no retry counted): sent again at the restart.
                batch.attempts.append(_attempt_json(at, STOPPED_WAITING))
                batch.state, batch.reason, batch.due = RETRYING, STOPPED_WAITING.describe(), at
                self._account.touch("segment_batch", batch.id)
            raise
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
            self._account.timers.call_at(batch.due, self._wake)


def _json_size(call: dict[str, Any] | None) -> int:
    """Bytes of one call in the batch's JSON (a queued forward always has its call)."""
    return len(json.dumps(call, separators=(",", ":")).encode())


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
