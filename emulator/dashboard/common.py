"""Pieces both dashboards share: the page shell, static files, and a Server-Sent Events fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..common.server import STOPPING_SCOPE_KEY

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/_emulator/dashboard/static"
# A queue per connected browser holds at most this many unsent items; a slow client loses the oldest.
CLIENT_QUEUE_SIZE = 1000
KEEPALIVE_SECONDS = 15.0
# How often a feed with an epoch looks whether it changed (a reset): at most this late on the page.
EPOCH_CHECK_SECONDS = 0.5
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def page_routes(shell: str, paths: list[str]) -> list[BaseRoute]:
    """Every path answers the same HTML shell; the page's script picks the view from the path."""
    html = (STATIC_DIR / shell).read_text(encoding="utf-8")  # once, not on the event loop at each request

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return [Route(path, page, methods=["GET"]) for path in paths]


def static_mount() -> Mount:
    return Mount(STATIC_PREFIX, app=StaticFiles(directory=STATIC_DIR), name="dashboard-static")


def sse_data(item: Any) -> str:
    return f"data: {json.dumps(item, separators=(',', ':'), default=str)}\n\n"


def sse_event(name: str, item: Any) -> str:
    """A named event: a page's `onmessage` never sees it, so no sender's message can pass for one."""
    return f"event: {name}\n{sse_data(item)}"


def sse_response(request: Request, events: AsyncIterator[str]) -> Response:
    """A feed's answer. A HEAD gets the feed's headers and no body, its events never started: Starlette
    answers HEAD on every GET route, and the endless body, never sent, held the connection (the next
    request on it got nothing) while the feed ran on for nobody."""
    if request.method == "HEAD":
        return Response(media_type="text/event-stream", headers=SSE_HEADERS)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def stopping_of(request: Request) -> asyncio.Event:
    """Set when the server is asked to stop (`Runner.stopping`): a feed then ends, so that the graceful
    shutdown finds no response left to wait for. A server no Runner runs never sets it."""
    stopping = request.scope.get(STOPPING_SCOPE_KEY)
    return stopping if stopping is not None else asyncio.Event()


class Broadcaster:
    """Fan-out of items to every connected SSE client: one bounded asyncio queue each.

    `publish` is synchronous and runs on the event loop (the Segment backend calls its listeners
    there); a full queue drops its oldest item, so a slow browser never slows ingestion down.
    """

    def __init__(self, capacity: int = CLIENT_QUEUE_SIZE) -> None:
        self.capacity = capacity
        # Each holds its client's items as SSE text; `None` wakes its feed when the server stops.
        self._queues: set[asyncio.Queue[str | None]] = set()

    @property
    def clients(self) -> int:
        return len(self._queues)

    def publish(self, item: Any) -> None:
        # Encoded once for every client: encoded per client, 20,000 events took 3.15 s with 45 feeds
        # open, not 1.53 s.
        text = sse_data(item)
        for queue in self._queues:
            _put_dropping_oldest(queue, text)

    def subscribe(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=self.capacity)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self._queues.discard(queue)

    def stream(self, request: Request, epoch: Callable[[], str] | None = None) -> Response:
        """The feed; with `epoch`, also an `event: epoch` at connect and whenever `epoch()` changes.

        A page only ever adds what the feed pushes: told nothing of a reset (or of a restarted
        server, whose epoch is another), it kept showing messages the server had forgotten.
        """
        stopping = stopping_of(request)

        def wake(queue: asyncio.Queue[str | None], stopped: asyncio.Future[Any]) -> None:
            if not stopped.cancelled():  # cancelled: the feed has ended
                _put_dropping_oldest(queue, None)

        async def events() -> AsyncIterator[str]:
            # Subscribed once the body runs, inside the `try`: a response cancelled before its body
            # started (the client left at once) would otherwise keep a queue that nobody unsubscribes.
            queue = self.subscribe()
            stopped = asyncio.ensure_future(stopping.wait())
            stopped.add_done_callback(partial(wake, queue))
            try:
                yield ": connected\n\n"
                current = epoch() if epoch is not None else None
                if epoch is not None:
                    yield sse_event("epoch", current)
                idle = 0.0
                wait = EPOCH_CHECK_SECONDS if epoch is not None else KEEPALIVE_SECONDS
                while not stopping.is_set():
                    try:
                        text = await asyncio.wait_for(queue.get(), timeout=wait)
                    except asyncio.TimeoutError:
                        text, idle = None, idle + wait
                    if epoch is not None and (now := epoch()) != current:
                        # What is queued may be from before the change: the page reads the store
                        # again on this event, which holds whatever of it is still true.
                        current, idle = now, 0.0
                        while not queue.empty():
                            queue.get_nowait()
                        yield sse_event("epoch", current)
                    elif text is not None:
                        idle = 0.0
                        yield text
                    elif idle >= KEEPALIVE_SECONDS:
                        idle = 0.0
                        yield ": keepalive\n\n"
            finally:
                stopped.cancel()
                self.unsubscribe(queue)

        return sse_response(request, events())


def _put_dropping_oldest(queue: asyncio.Queue[str | None], entry: str | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(entry)


def polling_stream(request: Request, probe: Callable[[], Any], interval: float = 0.5) -> Response:
    """An SSE stream that sends `{"kind": "changed", "version": N}` whenever `probe()` answers a new value.

    For a model with no change hook: the server polls its own state, the browser refetches.
    """
    stopping = stopping_of(request)

    async def events() -> AsyncIterator[str]:
        yield ": connected\n\n"
        last: Any = object()
        version = 0
        idle = 0.0
        while not stopping.is_set():
            current = probe()
            if current != last:
                last = current
                version += 1
                idle = 0.0
                yield sse_data({"kind": "changed", "version": version})
            elif idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keepalive\n\n"
            # Waits for the stop as much as for the next poll: a feed open when the server stops ends at once.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)
            idle += interval

    return sse_response(request, events())
