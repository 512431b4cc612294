"""Fault injection over HTTP: the ASGI middleware that applies `FaultRules`, and the control routes.

- `POST /_emulator/faults` adds a rule (answers it with its `id`, 201); `GET` lists them with their
  `matched`/`fired` counts; `DELETE` clears all; `DELETE /_emulator/faults/{id}` removes one.
- `FaultMiddleware` sits outside the journal: a request it answers, drops or holds is journaled
  here with `"fault": rule_id`; a late pass-through is journaled by `JournalMiddleware`, which reads
  the rule id this middleware leaves in the scope.

A `respond` fault answers in the shape the real service uses for that status (see
`segment_fault_response`, `mailjet_fault_response`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from http import HTTPStatus
from typing import Any, Callable

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from destination.asgi import QuietDisconnect

from .auth import basic_credentials
from .control import ControlError, ControlTokenMiddleware, control_error_response, read_json_object
from .faults import DROP, TIMEOUT, FaultRule, FaultRuleError, FaultRules
from .journal import CONTROL_PREFIX, FAULT_SCOPE_KEY, Exchange, Journal, JournalMiddleware
from .server import STOPPING_SCOPE_KEY

# A held request (`timeout`) is released after this long if the client never gives up.
HOLD_CAP_SECONDS = 30.0
# How often a request a delay holds looks whether its state was replaced, while a control call runs.
_WATCH_SECONDS = 0.05

Renderer = Callable[[FaultRule, Scope], tuple[int, dict[str, str], bytes]]


# ---------------------------------------------------------------- what each service answers


def mailjet_fault_response(rule: FaultRule, scope: Scope) -> tuple[int, dict[str, str], bytes]:
    status = rule.status or 503
    if status == 429:
        # Observed (mailjet-apiv3-nodejs#178): the real 429 is an HTML page, not JSON, with no
        # Retry-After header. The page text beyond the heading is ours.
        page = (
            "<html><head><title>429 Too Many Requests</title></head><body>"
            "<h1>429 Too Many Requests</h1>You have sent too many requests in a given amount of time."
            "</body></html>"
        )
        return status, {"content-type": "text/html; charset=utf-8"}, page.encode()
    message = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if scope["path"].lower().startswith("/v3.1/"):
        body: dict[str, Any] = {"ErrorIdentifier": str(uuid.uuid4()), "StatusCode": status, "ErrorMessage": message}
    else:
        body = {"ErrorInfo": "", "ErrorMessage": message, "StatusCode": status}
    return status, {"content-type": "application/json"}, json.dumps(body).encode()


def segment_fault_response(rule: FaultRule, scope: Scope) -> tuple[int, dict[str, str], bytes]:
    status = rule.status or 503
    headers = {"content-type": "application/json"}
    if status == 429:
        # Documented (reference/segment.md §1.7): both headers hold the seconds to wait.
        headers["retry-after"] = str(rule.retry_after)
        headers["x-ratelimit-reset"] = str(rule.retry_after)
    # The body shape analytics-python reads (`code`, `message`); the code names are ours.
    code = {429: "rate_limited", 500: "internal_error", 502: "bad_gateway", 503: "service_unavailable",
            504: "gateway_timeout"}.get(status, "error")
    message = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return status, headers, json.dumps({"code": code, "message": message}).encode()


# ---------------------------------------------------------------- whose request it is


def basic_username(scope: Scope, body: bytes | None) -> str | None:
    """The Basic-auth username (Mailjet's API key)."""
    credentials = basic_credentials(_header(scope, b"authorization"))
    return credentials[0] if credentials else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


# ---------------------------------------------------------------- the middleware


class FaultMiddleware:
    """Pure ASGI middleware: lets a request through, or fails it as the first firing rule says.

    Control paths are never faulted, so a rule cannot lock the tests out of the control API.
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: FaultRules,
        journal: Journal,
        render: Renderer,
        credential: Callable[[Scope, bytes | None], str | None],
        body_limit: int,
        tenant_epoch: Callable[[str | None], object] | None = None,
    ) -> None:
        self.app = app
        self.rules = rules
        self.journal = journal
        self.render = render
        self.credential = credential
        self.body_limit = body_limit
        self.tenant_epoch = tenant_epoch
        # Non-GET control calls under way, and an event set (then replaced) as one starts or ends (_delayed).
        self._control_calls = 0
        self._control_call_moved = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(CONTROL_PREFIX):
            if scope["method"] in ("GET", "HEAD"):
                await self.app(scope, receive, send)
                return
            # It may replace state (a reset, an import), then wait for the calls in flight: the
            # requests a delay holds watch their state while it runs (_delayed).
            self._control_calls += 1
            self._wake_held_requests()
            try:
                await self.app(scope, receive, send)
            finally:
                self._control_calls -= 1
                self._wake_held_requests()
            return
        # Most servers have no rule: their requests (the ingestion path) skip the lookup.
        at_headers = self.rules.candidates(scope["method"], scope["path"]) if self.rules else []
        if not at_headers:
            await self.app(scope, receive, send)
            return
        # The whole request arrives before a rule is chosen, as at a slow or failing server: a rule
        # fires on a request it can act on at once, so the state the request belongs to is the one
        # at its firing (which a test sees, then resets or imports). It meets the rules in place
        # both at its headers and then (a reset or DELETE meanwhile removed some). A client gone
        # mid-body sent no request. Read ahead no further than the service takes: the rest of a larger
        # body (which it refuses) is passed on, or thrown away, as it comes.
        body = _ReadAhead(receive)
        await body.read(self.body_limit)
        # A body over the cap is looked in for no credential, however much of it came before the
        # read stopped: whether a rule fires does not depend on how the body was cut into chunks.
        content = body.content() if body.size <= self.body_limit else None
        candidates = [rule for rule in self.rules.candidates(scope["method"], scope["path"]) if rule in at_headers]
        credential = self.credential(scope, content) if FaultRules.needs_credential(candidates) else None
        rule = None if body.disconnected else FaultRules.choose(candidates, credential)
        if rule is None:
            await self.app(scope, body.replay(), send)
            return
        # A late answer is still computed even if the client has given up meanwhile.
        late_answer = rule.action not in (DROP, TIMEOUT) and rule.status is None
        forgotten = self._state_watch(scope, content, credential, late_answer)
        if not late_answer:
            await body.discard_rest()
        if (rule.delay_ms and not await self._delayed(scope, rule.delay_ms / 1000, forgotten)) or forgotten():
            # The server is stopping, or the request belongs to a state forgotten while it was held:
            # answering it (and journaling it) would show a test an exchange of the test before. Its
            # client sees the connection close unanswered, as a held request's does (see _hold).
            _close_connection(receive)
            await _until_disconnect(receive)
        elif late_answer:
            scope[FAULT_SCOPE_KEY] = rule.id  # the real answer, late; journaled downstream
            await self.app(scope, body.replay(), send)
        elif rule.action == DROP:
            await self._drop(scope, receive, body.content(), rule)
        elif rule.action == TIMEOUT:
            await self._hold(scope, receive, body.content(), rule, forgotten)
        else:
            await self._respond(scope, send, body.content(), rule)

    def _wake_held_requests(self) -> None:
        """A control call that may replace state has started or ended (_delayed)."""
        self._control_call_moved.set()
        self._control_call_moved = asyncio.Event()

    async def _delayed(self, scope: Scope, seconds: float, forgotten: Callable[[], bool]) -> bool:
        """Wait `seconds`; False as soon as the server is asked to stop or `forgotten()` holds, so that
        such a request is closed then, not at the end of its delay. State is replaced only by control
        calls (a reset, an import): `forgotten()` is asked every `_WATCH_SECONDS` while one runs,
        and after it."""
        stopping = scope.get(STOPPING_SCOPE_KEY)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if (stopping is not None and stopping.is_set()) or forgotten():
                return False
            if self._control_calls:
                await asyncio.sleep(min(left, _WATCH_SECONDS))
                continue
            wakers = [asyncio.ensure_future(self._control_call_moved.wait())]
            if stopping is not None:
                wakers.append(asyncio.ensure_future(stopping.wait()))
            try:
                await asyncio.wait(wakers, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waker in wakers:
                    waker.cancel()
        return True

    def _state_watch(self, scope: Scope, content: bytes | None, credential: str | None, late_answer: bool) -> Callable[[], bool]:
        """Whether the state the request belongs to has been replaced since now: the server's (a
        reset), or, for a request still to be applied, its own account's or workspace's (a reset of
        it, or a snapshot import: `tenant_epoch`)."""
        arrived = self.journal.generation
        tenant_epoch = self.tenant_epoch
        if not late_answer or tenant_epoch is None:
            return lambda: self.journal.generation != arrived
        tenant = credential if credential is not None else self.credential(scope, content)
        epoch = tenant_epoch(tenant)
        return lambda: self.journal.generation != arrived or tenant_epoch(tenant) != epoch

    async def _respond(self, scope: Scope, send: Send, body: bytes, rule: FaultRule) -> None:
        status, headers, content = self.render(rule, scope)
        entry = self._journal(scope, body, rule)
        entry.status = status
        entry.keep_response(content)
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})

    async def _drop(self, scope: Scope, receive: Receive, body: bytes, rule: FaultRule) -> None:
        self._journal(scope, body, rule)
        _close_connection(receive)
        await _until_disconnect(receive)

    async def _hold(self, scope: Scope, receive: Receive, body: bytes, rule: FaultRule, forgotten: Callable[[], bool]) -> None:
        """Answer nothing until the client disconnects; after the cap, once the server is asked to
        stop, or once the state the request belongs to is replaced (a reset), drop the connection.
        Held on, it made uvicorn's graceful shutdown wait its 2 s, then cancel the request, and the
        destination's call waiting on it, with ERRORs and tracebacks logged."""
        self._journal(scope, body, rule)
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        held = asyncio.ensure_future(self._delayed(scope, HOLD_CAP_SECONDS, forgotten))
        try:
            await asyncio.wait((disconnected, held), return_when=asyncio.FIRST_COMPLETED)
            if not disconnected.done():
                _close_connection(receive)
            await disconnected
        finally:
            disconnected.cancel()
            held.cancel()

    def _journal(self, scope: Scope, body: bytes, rule: FaultRule) -> Exchange:
        """The faulted exchange, with no status: a dropped or held request is never answered."""
        entry = self.journal.record(scope, body, fault=rule.id)
        entry.status = None
        return entry


class _ReadAhead:
    """A request body read before the app sees it. The app is given what was read, then the rest
    straight from the client, so it always gets the whole body, however little was read here."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._messages: list[Message] = []
        self._ended = False
        self.size = 0  # bytes of the body read so far
        self.disconnected = False  # the client went before the body ended

    async def read(self, limit: int) -> None:
        """Read on until the body has ended or more than `limit` bytes of it are in."""
        while not self._ended and self.size <= limit:
            message = await self._receive()
            self._messages.append(message)
            self._take(message)

    async def discard_rest(self) -> None:
        """Read the rest of the body and throw it away (a faulted request never reaches the app)."""
        while not self._ended:
            self._take(await self._receive())

    def _take(self, message: Message) -> None:
        self.size += len(message.get("body", b""))
        self._ended = message["type"] != "http.request" or not message.get("more_body", False)
        self.disconnected = message["type"] == "http.disconnect"

    def content(self) -> bytes:
        """The part of the body read ahead: what a rule matches on, and the journal's copy."""
        return b"".join(message.get("body", b"") for message in self._messages)

    def replay(self) -> Receive:
        """A receive that gives the messages read ahead, then defers to the server's."""
        pending = deque(self._messages)

        async def receive() -> Message:
            return pending.popleft() if pending else await self._receive()

        return receive


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _close_connection(receive: Receive) -> None:
    """Close the TCP connection under this request without answering.

    ASGI has no way to say "no response"; uvicorn's `receive` is a method of its request cycle,
    which holds the transport. Closing it makes the client see the connection end with no answer.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("fault action drop needs uvicorn (the server's transport is not reachable)")
    transport.close()


# ---------------------------------------------------------------- control routes


def fault_routes(rules: FaultRules) -> list[Route]:
    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": [rule.to_json() for rule in rules.rules()]})

    async def add_fault(request: Request) -> Response:
        try:
            spec = await read_json_object(request)
            try:
                rule = rules.add(spec)
            except FaultRuleError as exc:
                raise ControlError(str(exc)) from exc
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(rule.to_json(), status_code=201)

    async def clear_faults(request: Request) -> Response:
        rules.clear()
        return JSONResponse({"faults": []})

    async def delete_fault(request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        if not rules.remove(rule_id):
            return control_error_response(ControlError(f"no fault rule {rule_id!r}", 404))
        return Response(status_code=204)

    return [
        Route("/_emulator/faults", list_faults, methods=["GET"]),
        Route("/_emulator/faults", add_fault, methods=["POST"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/faults/{rule_id}", delete_fault, methods=["DELETE"]),
    ]


def service_middleware(
    rules: FaultRules,
    journal: Journal,
    render: Renderer,
    credential: Callable[[Scope, bytes | None], str | None],
    control_token: str | None,
    body_limit: int,
    tenant_epoch: Callable[[str | None], object] | None = None,
) -> list[Middleware]:
    """The middleware stack both fakes share, outermost first: a client gone mid-body is no error,
    control token, faults, journal. `body_limit` is the largest body the service takes.

    `tenant_epoch(credential)` changes when the account or workspace a request's credential names
    is reset or replaced by a snapshot import: a request a fault held across that is closed
    unanswered, as across a whole reset.
    """
    journal.credential = credential  # whose each exchange is, for `GET requests?writeKey=` / `?apiKey=`
    stack = [Middleware(QuietDisconnect)]
    if control_token is not None:
        stack.append(Middleware(ControlTokenMiddleware, token=control_token))
    return stack + [
        Middleware(
            FaultMiddleware, rules=rules, journal=journal, render=render, credential=credential,
            body_limit=body_limit, tenant_epoch=tenant_epoch,
        ),
        Middleware(JournalMiddleware, journal=journal),
    ]
