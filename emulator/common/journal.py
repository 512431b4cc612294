"""The request journal: every HTTP exchange a server answered, newest last, capped in memory.

Modelled on WireMock's request journal: tests and the round-trip checker read it through
`GET /_emulator/requests` to see exactly what crossed a hop.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .clock import Clock, iso

CONTROL_PREFIX = "/_emulator/"
_REDACTED_HEADERS = {"authorization", "x-segment-settings"}
_BODY_LIMIT = 64 * 1024


@dataclass
class Exchange:
    id: int
    at: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    response: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "status": self.status,
            "response": self.response,
        }


def _decode(raw: bytes) -> Any:
    if len(raw) > _BODY_LIMIT:
        return {"truncated": True, "bytes": len(raw)}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deeply
        return raw.decode("utf-8", "replace")


class Journal:
    def __init__(self, clock: Clock, capacity: int = 10_000) -> None:
        self.clock = clock
        self._entries: deque[Exchange] = deque(maxlen=capacity)
        self._ids = itertools.count(1)

    def record(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Exchange:
        safe_headers = {k: ("<redacted>" if k in _REDACTED_HEADERS else v) for k, v in headers.items()}
        entry = Exchange(next(self._ids), iso(self.clock.now()), method, path, query, safe_headers, _decode(body))
        self._entries.append(entry)
        return entry

    def entries(self, method: str | None = None, path_contains: str | None = None, limit: int = 100) -> list[Exchange]:
        selected = [
            entry
            for entry in self._entries
            if (method is None or entry.method == method.upper())
            and (path_contains is None or path_contains.lower() in entry.path.lower())
        ]
        return selected[-limit:] if limit else []

    def clear(self) -> None:
        self._entries.clear()


class JournalMiddleware:
    """Pure ASGI middleware: records request and response bodies of every non-control request."""

    def __init__(self, app: ASGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        response_chunks: list[bytes] = []
        entry: Exchange | None = None

        async def send_and_keep(message: Message) -> None:
            nonlocal entry
            if message["type"] == "http.response.start":
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                entry = self.journal.record(
                    scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
                    headers, b"".join(chunks),
                )
                entry.status = message["status"]
            elif message["type"] == "http.response.body":
                response_chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and entry is not None:
                    entry.response = _decode(b"".join(response_chunks))
            await send(message)

        await self.app(scope, receive_and_keep, send_and_keep)
