"""HTTP pieces both fakes share: a capped body reader, a bounded gzip inflater, a hook that runs
before each answer, the client session of their own outgoing calls, and how an answer those calls
got is recorded."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The capped body reader and the exception handler's headers live with the destination, which must
# not import the emulator; the fakes take them from here.
from destination.asgi import CONNECTION_CLOSE, BodyTooLarge, read_capped

from .json_body import decode_json
from .server import CLIENT_IDLE_SECONDS

__all__ = [
    "ANSWER_KEEP_BYTES", "CONNECTION_CLOSE", "GZIP_ENCODINGS", "BeforeAnswer", "BodyTooLarge", "Inflated", "gunzip_bounded",
    "outgoing_session", "read_answer", "read_capped", "recorded_body",
]

# At most this much of an answer to our own outgoing calls is read and kept: an endpoint answering
# megabytes (every 30 s for a day, for a retried webhook) must not fill the server's memory.
ANSWER_KEEP_BYTES = 64 * 1024


def outgoing_session(limit: int = 100, **options: Any) -> aiohttp.ClientSession:
    """The session of a fake's own outgoing calls (Segment's deliveries, Mailjet's webhooks and
    Segment forwards); made in the serving loop. `limit` caps its connections; `options` are
    aiohttp.ClientSession's.

    aiohttp, not httpx: on the bundle's one event loop an httpx request cost ~15x the CPU (~800 µs
    against ~50 µs; benchmarks/, issue 10). It ignores proxy variables unless trust_env is set, as an
    offline tool must. No cookie jar: aiohttp's default one sent what one endpoint set back with
    every later call to its host (another account's webhooks included). GUESS: neither Segment's
    senders nor Mailjet's keep cookies between calls.
    """
    connector = aiohttp.TCPConnector(limit=limit, keepalive_timeout=CLIENT_IDLE_SECONDS)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), **options)


async def read_answer(response: aiohttp.ClientResponse) -> bytes:
    """An answer's body, at most ANSWER_KEEP_BYTES + 1 bytes of it (one more says it is longer).
    One `content.read(n)` is not enough: it returns what has arrived so far, so an answer sent in
    pieces (chunked) was kept cut after the first."""
    limit = ANSWER_KEEP_BYTES + 1
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def recorded_body(raw: bytes, text_limit: int) -> Any:
    """An answer's body as kept in a delivery's attempts: its JSON, else its text cut to
    `text_limit` characters; None when it is empty. `raw` is read with `read_answer`: a longer
    one is only said to be longer."""
    if not raw:
        return None
    if len(raw) > ANSWER_KEEP_BYTES:
        return {"truncated": True, "bytes": f"more than {ANSWER_KEEP_BYTES}"}
    try:
        return decode_json(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:text_limit]


GZIP_ENCODINGS = ("gzip", "x-gzip")


@dataclass(frozen=True)
class Inflated:
    """A gzip body inflated up to a limit. `data` holds at most limit + 1 bytes (one more says it is
    longer); `whole`: the gzip member ended within them; `trailing`: bytes follow that member."""

    data: bytes
    whole: bool
    trailing: bool


def gunzip_bounded(raw: bytes, limit: int) -> Inflated:
    """Inflate `raw` as gzip (framing required), never past limit + 1 bytes: a small body must not
    inflate into gigabytes. Raises zlib.error when `raw` is not gzip data."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    data = inflater.decompress(raw, limit + 1)
    return Inflated(data, inflater.eof, bool(inflater.unused_data))


class BeforeAnswer:
    """Pure ASGI middleware: calls `hook` when a response starts (persistence: a 2xx is already stored)."""

    def __init__(self, app: ASGIApp, hook: Callable[[], None]) -> None:
        self.app = app
        self.hook = hook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_after_hook(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.hook()
            await send(message)

        await self.app(scope, receive, send_after_hook)
