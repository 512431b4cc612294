"""The control API every fake server shares, under /_emulator/: health, reset, requests, clock.

Control endpoints speak plain JSON in and out; errors are `{"error": message}` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any, Awaitable, Callable
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .clock import Clock, iso, parse_duration, parse_iso
from .journal import CONTROL_PREFIX, Journal
from .json_body import decode_json

MAX_LIST_LIMIT = 10_000


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def control_error_response(exc: ControlError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def read_json_object(request: Request, decode: Callable[[bytes], Any] = decode_json) -> dict[str, Any]:
    """The body of a control request as a JSON object, or ControlError(400); `decode_snapshot` for a
    snapshot document."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        payload = decode(raw)
    except ValueError as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ControlError("body must be a JSON object")
    return payload


def query_limit(request: Request, default: int = 100) -> int:
    return query_whole(request, "limit", default, MAX_LIST_LIMIT)


def query_whole(request: Request, name: str, default: int, most: int | None = None) -> int:
    """Query parameter `name` as a whole number up to `most`, `default` when absent; ControlError otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ControlError(f"{name} must be an integer, got {raw!r}") from exc
    if most is not None and not 0 <= value <= most:
        raise ControlError(f"{name} must be between 0 and {most}")
    if value < 0:
        raise ControlError(f"{name} must be 0 or more")
    return value


def named_tenant(request: Request, param: str, header: str) -> str | None:
    """The workspace or account key a control call names (`?param=K`, else the header), None when
    it names none. A key given empty (`?writeKey=$UNSET`) still names one, an unknown one (404):
    taken as "none", a scoped reset became the whole-server reset and deleted every other tenant."""
    query = request.query_params.get(param)
    return query if query is not None else request.headers.get(header)


def clock_state(clock: Clock) -> dict[str, Any]:
    due = clock.next_due()
    return {"now": iso(clock.now()), "pending_timers": clock.pending(), "next_due": iso(due) if due else None}


async def move_clock(clock: Clock, body: dict[str, Any]) -> dict[str, Any]:
    """Apply `{"advance": "31d"}` or `{"set": ISO}`, then fire every timer that became due."""
    if ("advance" in body) == ("set" in body):
        raise ControlError('give exactly one of "advance" (e.g. "31d") or "set" (ISO-8601)')
    try:
        if "advance" in body:
            clock.advance(parse_duration(body["advance"]))
        else:
            clock.set(parse_iso(body["set"]))
    except ValueError as exc:
        raise ControlError(str(exc)) from exc
    fired = await clock.run_due()
    return {**clock_state(clock), "fired": fired}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def control_routes(
    service: str,
    clock: Clock,
    journal: Journal,
    reset: Callable[[], None],
    scoped_reset: Callable[[Request], dict[str, Any] | None] | None = None,
    quiesce: Callable[[], Awaitable[None]] | None = None,
    journal_tenant: Callable[[Request], Callable[[str | None], bool] | None] | None = None,
) -> list[Route]:
    """Routes for health, reset, requests and clock; `reset` clears the service's own state.

    `scoped_reset(request)`, when given, handles a reset that names one tenant (e.g. `?writeKey=`):
    it resets that tenant alone and answers extra fields for the reply, or None when the request
    names no tenant, for the whole-service reset (which also clears the journal and the clock offset).
    `quiesce()`, when given, is awaited after either reset: the reset answers once the work the
    service started before it (requests it sent) has ended, so none of it lands after the answer.
    `journal_tenant(request)`, when given, limits `GET requests` to the tenant the request names
    (`?writeKey=`, `?apiKey=`): it answers whether an exchange's credential is that tenant's, None when
    the request names no tenant (every exchange), or raises ControlError (404 for an unknown key).
    """

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service, "now": iso(clock.now())})

    async def do_reset(request: Request) -> Response:
        scoped = None
        if scoped_reset is not None:
            try:
                scoped = scoped_reset(request)
            except ControlError as exc:
                return control_error_response(exc)
        if scoped is None:
            # The clock first: the fresh state is made at the time the reset goes back to, and the
            # timers it arms (the configured Engage definitions' sync) are not cancelled with the old.
            clock.reset(owner=service)
            reset()
            journal.clear()
        if quiesce is not None:
            await quiesce()
        return JSONResponse({"status": "ok", "service": service, **(scoped or {})})

    async def requests(request: Request) -> Response:
        try:
            limit = query_limit(request)
            tenant = journal_tenant(request) if journal_tenant is not None else None
        except ControlError as exc:
            return control_error_response(exc)
        entries = journal.entries(request.query_params.get("method"), request.query_params.get("path"), limit, tenant)
        # `dropped`: exchanges pushed out of the capped journal since the last reset.
        counts = {"dropped": journal.dropped, "capacity": journal.capacity}

        def render() -> bytes:
            # One exchange at a time, as JSONResponse renders: one json.dumps of them all held the
            # interpreter, and so the event loop, for its whole run.
            rendered = b",".join(_json_bytes(entry.to_json()) for entry in entries)
            return b'{"requests":[' + rendered + b"]," + _json_bytes(counts)[1:]

        # Decoding and rendering the newest 10,000 bodies takes seconds; on a worker thread, the
        # event loop all three servers share keeps answering meanwhile (a kept exchange changes no
        # field it reads once answered, bar its response, which is set whole).
        return Response(await asyncio.to_thread(render), media_type="application/json")

    async def clock_get(request: Request) -> Response:
        return JSONResponse(clock_state(clock))

    async def clock_post(request: Request) -> Response:
        try:
            return JSONResponse(await move_clock(clock, await read_json_object(request)))
        except ControlError as exc:
            return control_error_response(exc)

    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/reset", do_reset, methods=["POST"]),
        Route("/_emulator/requests", requests, methods=["GET"]),
        Route("/_emulator/clock", clock_get, methods=["GET"]),
        Route("/_emulator/clock", clock_post, methods=["POST"]),
    ]



# ---------------------------------------------------------------- control token

TOKEN_HEADER = "x-segjet-token"
# Browsers cannot set headers on EventSource or on a download link: those pass `?token=`.
TOKEN_QUERY = "token"
# Where ControlTokenMiddleware leaves the token a request presented rightly.
TOKEN_SCOPE_KEY = "segjet.control_token"
# The dashboard's scripts and styles load through <script>/<link> tags, which carry no header;
# they hold no state, so they stay open.
_OPEN_PREFIXES = ("/_emulator/dashboard/static/", "/_emulator/health")


def presented_tokens(scope: Scope) -> list[str]:
    """The control tokens a request carries: `Authorization: Bearer T`, `X-Segjet-Token: T`, `?token=T`.
    Each is a candidate: a proxy's own Bearer header must not hide a right `?token=`."""
    tokens = []
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name == TOKEN_HEADER:
            tokens.append(value.decode("latin-1").strip())
        elif name == "authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                tokens.append(token.strip())
    for pair in scope.get("query_string", b"").decode("latin-1").split("&"):
        name, _, value = pair.partition("=")
        if name == TOKEN_QUERY:
            tokens.append(unquote_plus(value))
    return tokens


def control_token_of(scope: Scope) -> str | None:
    """The token to pass on to another control API: the one ControlTokenMiddleware found right, else
    (no token asked for) the first one presented."""
    return scope.get(TOKEN_SCOPE_KEY) or next(iter(presented_tokens(scope)), None)


class ControlTokenMiddleware:
    """Pure ASGI middleware: `/_emulator/*` answers 401 `{"error": ...}` without the control token.

    The public APIs (tracking, REST, Send) and the dashboard pages are not affected; health stays
    open so scripts can wait for a server before they know the token is right.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(CONTROL_PREFIX) or path.startswith(_OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        if any(hmac.compare_digest(given.encode(), self.token.encode()) for given in presented_tokens(scope)):
            scope[TOKEN_SCOPE_KEY] = self.token
            await self.app(scope, receive, send)
            return
        message = (
            "the control API needs the token: Authorization: Bearer <token>, X-Segjet-Token: <token> or ?token=<token>"
        )
        response = JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
