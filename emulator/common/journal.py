"""The request journal: every HTTP exchange a server answered, newest last, capped in memory.

Modelled on WireMock's request journal: tests and the round-trip checker read it through
`GET /_emulator/requests` to see exactly what crossed a hop.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .clock import Clock, iso
from .feeds import newest
from .http import GZIP_ENCODINGS, gunzip_bounded
from .json_body import decode_json

CONTROL_PREFIX = "/_emulator/"
# Where FaultMiddleware leaves the id of the fault rule that delayed a request it let through.
FAULT_SCOPE_KEY = "segjet.fault"
REDACTED = "<redacted>"  # what a hidden credential shows as, here and in delivery records
_REDACTED_HEADERS = {"authorization", "x-segment-settings", "x-segjet-token"}
# The control token passed as `?token=` (EventSource, download links, the dashboard's first load).
_REDACTED_QUERY_PARAMS = {"token"}
# A Segment write key in a body (or in a batch's events) is a credential like the Authorization
# header, so it is hidden too.
_REDACTED_BODY_FIELDS = {"writeKey"}
# The same fields in a body shown as the text it came as (it is no JSON): a string value, escapes
# included, or the rest of a body cut inside it.
_REDACTED_TEXT_FIELDS = re.compile(
    '"(' + "|".join(map(re.escape, _REDACTED_BODY_FIELDS)) + r')"\s*:\s*"(?:[^"\\]|\\.)*"?'
)
_BODY_LIMIT = 64 * 1024
# A kept body from this size on is held zlib-compressed (level 1: ~3.5 ns a byte, JSON ~10 times
# smaller): the journal holds 10,000 exchanges, and 10,000 batches of 100 events held ~200 MB raw,
# a fifth of a million-event run's memory (benchmarks/, `rss_bytes_per_event`).
_COMPRESS_FROM = 1024
_UNSEEN = object()  # an exchange's credential before a tenant-scoped read first looks for it
# A header value is kept up to this long: uvicorn takes headers of megabytes, and the journal holds
# 10,000 exchanges until a reset.
_HEADER_LIMIT = 8 * 1024


@dataclass
class Exchange:
    """One exchange as it crossed the wire; bodies and headers are decoded only when read, off the hot path."""

    id: int
    at: str
    method: str
    path: str
    query: bytes
    raw_headers: list[tuple[bytes, bytes]]
    # A body over _BODY_LIMIT is never shown, so only its size is kept: the journal holds 10,000
    # exchanges, and a batch can be 500 KB. Kept bodies are packed (`_packed`).
    request_packed: bytes
    request_size: int
    status: int | None = 0
    response_packed: bytes = b""
    response_size: int = 0
    # The fault rule that failed or delayed this exchange; a dropped or held request has no status.
    fault: str | None = None
    # The credential (write key, API key) the request carried, worked out on the first tenant-scoped
    # read rather than on the hot path; `_UNSEEN` until then.
    credential: object = _UNSEEN

    @property
    def request_body(self) -> bytes:
        return _unpacked(self.request_packed, self.request_size)

    @property
    def response_body(self) -> bytes:
        return _unpacked(self.response_packed, self.response_size)

    def keep_response(self, body: bytes) -> None:
        self.response_packed, self.response_size = _packed(body), len(body)

    def to_json(self) -> dict[str, Any]:
        headers = {}
        for raw_name, raw_value in self.raw_headers:
            name = raw_name.decode("latin-1").lower()
            headers[name] = REDACTED if name in _REDACTED_HEADERS else raw_value.decode("latin-1")
        body = self.request_body
        if headers.get("content-encoding", "").strip().lower() in GZIP_ENCODINGS and self.request_size <= _BODY_LIMIT:
            inflated = _gunzipped(body)
            if inflated is not None and len(inflated) > _BODY_LIMIT:
                body = None
            elif inflated is not None:
                body = inflated
        return {
            "id": self.id,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": _redacted_query(self.query.decode("latin-1")),
            "headers": headers,
            "body": _decode(body, self.request_size) if body is not None else {"truncated": True, "bytes": self.request_size},
            "status": self.status,
            "response": _decode(self.response_body, self.response_size) if self.status is not None else None,
            "fault": self.fault,
        }


def _redacted_query(query: str) -> str:
    """The query string with each credential's value hidden, its names and order kept."""
    pairs = [pair.partition("=") for pair in query.split("&")]
    return "&".join(
        f"{name}={REDACTED}" if name in _REDACTED_QUERY_PARAMS else name + separator + value
        for name, separator, value in pairs
    )


def _packed(body: bytes) -> bytes:
    """What the journal holds of a whole body: nothing over _BODY_LIMIT, compressed from _COMPRESS_FROM."""
    if len(body) > _BODY_LIMIT:
        return b""
    return zlib.compress(body, 1) if len(body) >= _COMPRESS_FROM else body


def _unpacked(packed: bytes, size: int) -> bytes:
    """The body `_packed` kept, of `size` bytes (b"" when it was not kept)."""
    return zlib.decompress(packed) if packed and size >= _COMPRESS_FROM else packed


def _gunzipped(raw: bytes) -> bytes | None:
    """A gzipped body inflated for showing (clients gzip batches), at most one byte past what the
    journal shows; None when it is not whole gzip data (it is then shown as it came)."""
    try:
        inflated = gunzip_bounded(raw, _BODY_LIMIT)
    except zlib.error:
        return None
    return inflated.data if inflated.whole or len(inflated.data) > _BODY_LIMIT else None


def _decode(raw: bytes, size: int) -> Any:
    if size > _BODY_LIMIT:
        return {"truncated": True, "bytes": size}
    try:
        decoded = decode_json(raw)
    except ValueError:
        return _REDACTED_TEXT_FIELDS.sub(rf'"\1":"{REDACTED}"', raw.decode("utf-8", "replace"))
    if isinstance(decoded, dict):
        decoded = _redacted(decoded)
        # analytics.js (analytics-next's segmentio normalize) puts the write key in every event,
        # and its batched dispatcher sends those events as a batch.
        if isinstance(decoded.get("batch"), list):
            decoded["batch"] = [_redacted(item) if isinstance(item, dict) else item for item in decoded["batch"]]
    return decoded


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    if not _REDACTED_BODY_FIELDS & fields.keys():
        return fields
    return {k: (REDACTED if k in _REDACTED_BODY_FIELDS else v) for k, v in fields.items()}


# Reads the credential of a request (segment/routes.py `tracking_write_key`, fault_routes `basic_username`)
# from its scope (headers and path) and body.
Credential = Callable[[Scope, "bytes | None"], "str | None"]


class Journal:
    """The newest `capacity` exchanges; older ones are dropped and counted in `dropped`.

    `credential`, when set (service_middleware sets it), tells whose an exchange is, so a read can be
    limited to one workspace or account: parallel jobs share one server and its journal.
    """

    def __init__(self, clock: Clock, capacity: int = 10_000) -> None:
        self.clock = clock
        self.capacity = capacity
        self._entries: deque[Exchange] = deque(maxlen=capacity)
        self._ids = itertools.count(1)
        self.dropped = 0
        # Bumped by `clear()`, which a whole-service reset calls: a request that arrived in an older
        # generation belongs to the state the reset forgot (FaultMiddleware drops it if still held).
        self.generation = 0
        self.credential: Credential | None = None

    def credential_of(self, entry: Exchange) -> str | None:
        """The credential the exchange's request carried, from the headers and body kept: a body
        over 64 KB is not kept, so a write key only inside such a body is not seen (None)."""
        if entry.credential is _UNSEEN:
            scope = {"headers": entry.raw_headers, "path": entry.path}
            entry.credential = self.credential(scope, entry.request_body) if self.credential is not None else None
        return entry.credential  # type: ignore[return-value]

    def record(self, scope: Scope, body: bytes, fault: str | None = None, size: int | None = None) -> Exchange:
        """Keep an exchange; `size` is the body's whole size when only its start (`body`) was kept."""
        headers = scope["headers"]
        if any(len(value) > _HEADER_LIMIT for _, value in headers):
            headers = [(name, value[:_HEADER_LIMIT] + b"...") if len(value) > _HEADER_LIMIT else (name, value)
                       for name, value in headers]
        entry = Exchange(
            next(self._ids), iso(self.clock.now()), scope["method"], scope["path"],
            scope.get("query_string", b""), headers, _packed(body), len(body) if size is None else size, fault=fault,
        )
        if len(self._entries) == self.capacity:
            self.dropped += 1
        self._entries.append(entry)
        return entry

    def entries(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        limit: int = 100,
        tenant: Callable[[str | None], bool] | None = None,
    ) -> list[Exchange]:
        """The newest `limit` matches, oldest first; `tenant(credential)` says whether an exchange is
        the named tenant's."""
        # From the newest back, stopping at `limit`: filtering the whole journal (and working out
        # every exchange's credential) made each read grow with the history kept, not the answer.
        wanted_method = method.upper() if method is not None else None
        wanted_path = path_contains.lower() if path_contains is not None else None

        def keep(entry: Exchange) -> bool:
            return (
                (wanted_method is None or entry.method == wanted_method)
                and (wanted_path is None or wanted_path in entry.path.lower())
                and (tenant is None or tenant(self.credential_of(entry)))
            )

        return newest(reversed(self._entries), limit, keep)

    def clear(self) -> None:
        self._entries.clear()
        self.dropped = 0
        self.generation += 1


class JournalMiddleware:
    """Pure ASGI middleware: records request and response bodies of every non-control request."""

    def __init__(self, app: ASGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        # Only a body the journal would show is kept: the app drains oversized bodies through this
        # receive, and keeping a gigabyte upload here cost twice its size in memory.
        chunks: list[bytes] = []
        size = 0

        async def receive_and_keep() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= _BODY_LIMIT:
                    chunks.append(chunk)
                else:
                    chunks.clear()
            return message

        response_chunks: list[bytes] = []
        entry: Exchange | None = None

        async def send_and_keep(message: Message) -> None:
            nonlocal entry
            if message["type"] == "http.response.start":
                entry = self.journal.record(scope, b"".join(chunks), scope.get(FAULT_SCOPE_KEY), size)
                entry.status = message["status"]
            elif message["type"] == "http.response.body":
                if scope["method"] != "HEAD":  # uvicorn sends no body to a HEAD: none crossed back
                    response_chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and entry is not None:
                    entry.keep_response(b"".join(response_chunks))
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_keep)
        except ClientDisconnect:
            raise  # the client left: it is answered nothing (QuietDisconnect), so nothing crossed back
        except Exception:
            if entry is None:
                # Starlette answers an unhandled exception with a 500 from outside every middleware
                # (ServerErrorMiddleware, with the app's `Exception` handler): journaled with its
                # status, its body unseen from here.
                entry = self.journal.record(scope, b"".join(chunks), scope.get(FAULT_SCOPE_KEY), size)
                entry.status = 500
            raise
