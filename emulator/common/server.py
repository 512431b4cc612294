"""Run several ASGI apps as real uvicorn servers on real sockets, in one event loop.

Sockets are bound before the apps are built, so port 0 gives a free port with no
find-then-close race, and every app can be told the real URLs of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any, Coroutine, Iterator, TypeVar

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

T = TypeVar("T")

# How long the servers keep an idle keep-alive connection (uvicorn's default, set explicitly), and
# how long the servers' own aiohttp clients keep theirs: shorter, so that a client never sends a
# POST on a connection the server is closing (aiohttp retries no POST; with its 15 s default, 3 of
# 24 POSTs sent after ~5 s idle failed with ServerDisconnected).
KEEP_ALIVE_SECONDS = 5
CLIENT_IDLE_SECONDS = 4.0
# Where in each request's ASGI scope a Runner's servers put its `stopping` event, for the app.
STOPPING_SCOPE_KEY = "segjet.stopping"
# The most a request's head (its request line and headers) may hold, far above any client's.
MAX_HEAD_BYTES = 1024 * 1024


class HeadBoundHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 400 and closing once a request's head passes
    MAX_HEAD_BYTES. httptools sets no limit (h11's is 16 KB): a 100 MB header was read whole, the
    event loop the three servers share busy for seconds, and the memory kept. Bytes are counted as
    they come, from the end of one request to the end of the next one's headers."""

    _head_bytes = 0
    _in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.send_400_response("Request head too large.")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (every server runs on it), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the loop `new_event_loop` picks."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def tune_gc_for_serving() -> None:
    """Keep the cyclic garbage collector off what a serving process holds for good.

    - Freeze what is alive once the servers are up: imports, compiled contracts and Faker's data
      are hundreds of thousands of objects; each full collection walked them all, pausing the one
      event loop for 50-100 ms under load (most of the round trip's p99 at 200/s, benchmarks/).
    - Collect the young generations every 2,000 new containers rather than 700, the middle one
      every other time (so what survives is scanned about 1.5 times, not twice, while it is still
      in the CPU's cache, and never piles up into long pauses: 0.6 µs an ingested event, pauses
      under 2 ms), and the oldest almost never: stored messages, deliveries and contacts
      are acyclic and freed by reference counting when a capped store drops them, yet with the
      defaults every 25 % of churn in the capped events store (200,000 messages) started a full
      collection of all of it, ~0.7 s each, a third of ingestion's time.
    For a process that serves until it stops (`segjet up`), not for tests that start and drop
    bundles: frozen objects are never collected.
    """
    gc.freeze()
    gc.set_threshold(2_000, 0, 2_500)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP; without it Nagle + delayed ACK add ~40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ServerStartError(RuntimeError):
    """A server of the runner did not start (its app's startup failed; uvicorn logged why)."""


class _QuietServer(uvicorn.Server):
    """uvicorn.Server that leaves signal handling to the runner (one handler stops every server),
    and a failed start to it too."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            # uvicorn exits the process when an app's lifespan startup fails (it has logged why). Out
            # of a task, SystemExit ended the whole event loop: the other servers were left open on
            # a dead loop, and a background start waited out its timeout. Here this server just
            # ends unstarted, which Runner.start reports.
            self.should_exit = True


@dataclass
class ServerHandle:
    name: str
    sock: socket.socket
    server: uvicorn.Server
    task: asyncio.Task[None] | None = None


def told_of_stops(app: ASGIApp, stopping: asyncio.Event) -> ASGIApp:
    """`app`, with `stopping` in the scope of every request (under STOPPING_SCOPE_KEY)."""

    async def app_told_of_stops(scope: Scope, receive: Receive, send: Send) -> None:
        scope[STOPPING_SCOPE_KEY] = stopping
        await app(scope, receive, send)

    return app_told_of_stops


class Runner:
    """Starts uvicorn servers on pre-bound sockets and stops them together."""

    def __init__(self) -> None:
        self.handles: list[ServerHandle] = []
        # Set once the runner is asked to stop. A response that lasts as long as its client stays
        # (a dashboard's live feed) ends on it: uvicorn's graceful shutdown waits for every response
        # in progress, and cancelled an open feed after 2 s with an error and a traceback logged.
        self.stopping = asyncio.Event()

    def add(self, name: str, app: ASGIApp, sock: socket.socket) -> ServerHandle:
        # No proxy-header rewriting: the servers face their clients directly, never a proxy.
        config = uvicorn.Config(
            told_of_stops(app, self.stopping), log_level="warning", access_log=False, lifespan="on",
            timeout_graceful_shutdown=2, proxy_headers=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
            http=HeadBoundHttpTools,
        )
        handle = ServerHandle(name, sock, _QuietServer(config))
        self.handles.append(handle)
        return handle

    async def start(self) -> None:
        for handle in self.handles:
            handle.task = asyncio.create_task(handle.server.serve(sockets=[handle.sock]), name=f"uvicorn-{handle.name}")
        while not all(handle.server.started for handle in self.handles):
            failed = [handle for handle in self.handles if handle.task is not None and handle.task.done()]
            if failed:
                raise ServerStartError(f"server {failed[0].name} failed to start")
            await asyncio.sleep(0.005)

    def request_stop(self) -> None:
        self.stopping.set()
        for handle in self.handles:
            handle.server.should_exit = True

    async def wait(self) -> None:
        """Until every server has stopped; then raise the first failure, if any. (gather alone raised
        it at once, with the other servers still running, and the caller closed the loop under them.)"""
        results = await asyncio.gather(
            *(handle.task for handle in self.handles if handle.task is not None), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        self.request_stop()
        await self.wait()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)


class LoopThread:
    """An event loop on a daemon thread, for running servers beside synchronous code (tests, CLI)."""

    def __init__(self, name: str = "segjet-loop") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def serve_in_background(apps: dict[str, ASGIApp], host: str = "127.0.0.1") -> tuple[LoopThread, Runner, dict[str, str]]:
    """Start each app on a free port of `host` on a background loop; answer the loop, runner and URLs."""
    loop_thread = LoopThread()
    runner = Runner()
    urls = {}
    sockets: list[socket.socket] = []
    try:
        for name, app in apps.items():
            sockets.append(bind(host, 0))
            runner.add(name, app, sockets[-1])
            urls[name] = url_of(sockets[-1])
        loop_thread.run(runner.start())
    except BaseException:
        # A failed start holds nothing afterwards: not the servers that did start, nor the thread.
        with contextlib.suppress(Exception):  # a server that failed fails its wait too: the first error is raised
            loop_thread.run(runner.stop())
        for sock in sockets:
            sock.close()
        loop_thread.close()
        raise
    return loop_thread, runner, urls
