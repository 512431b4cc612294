"""The destination's HTTP face: Segment's partner direct-destination POST at `/`.

Status codes follow Segment's direct-destination contract (reference/segment.md §5.2) and its
retry policy (§5.1): 5xx except 501, and 408, 423 and 429, are retried for four hours; other 4xx
are final.
So every failure that may heal by itself (Mailjet down, slow, rate-limiting) is answered 503,
and every failure a retry cannot fix (bad message, bad settings, bad key) a 4xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .asgi import CONNECTION_CLOSE, BodyTooLarge, QuietDisconnect, read_capped
from .client import MailjetClient, MailjetError, create_http_client
from .identify import apply_identify
from .json_body import read_json
from .keyring import AccountLookup, MailjetAccount
from .mapping import MappingError, map_identify
from .settings import MissingAuthenticationKey, SettingsError, parse_authentication_key, parse_settings

logger = logging.getLogger("destination")

# Segment caps a tracking call at 32 KB and adds its own fields before delivery; anything near a
# megabyte is not from Segment, and keeping it would only cost memory.
MAX_BODY_BYTES = 1024 * 1024

SEGMENT_CALL_TYPES = ("track", "page", "screen", "group", "alias")

# Segment gives a destination about 5 s (its webhooks doc) and records a later answer as a timeout.
# One identify may make several Mailjet calls, each with its own 4 s limit (client.py), so the
# identify as a whole is cut at this budget and answered 503: the answer reaches Segment in time,
# and no Mailjet call starts after Segment has given up. GUESS: 4.5 s leaves Segment's side 0.5 s.
IDENTIFY_BUDGET_SECONDS = 4.5


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _answer_mailjet_error(error: MailjetError, list_id: int) -> JSONResponse:
    if error.temporary:
        logger.warning("Mailjet temporarily unavailable: %s", error)
        return _answer(503, f"Mailjet is temporarily unavailable, retry later: {error}")
    if error.status == 401:
        # Segment treats 401 as final: a wrong key pair will not heal by retrying, and someone has
        # to fix the account's Mailjet API key / secret key behind this authentication key.
        return _answer(401, f"Mailjet rejected the API key pair of the account behind this authentication key: {error}")
    if error.status == 403:
        return _answer(403, f"Mailjet refused this account access: {error}")
    if error.status == 404 and error.path is not None and error.path.startswith("/v3/REST/contactslist/"):
        # The list id is the only id in the paths the destination calls, so a 404 there means the list.
        return _answer(400, f"Mailjet contact list {list_id} does not exist; check the List ID setting ({error})")
    if error.status == 404:
        # contactmetadata has no id in its path: Mailjet serves it at every account, so a 404 there
        # means the key ring's base URL is not Mailjet's API root, not a wrong List ID.
        return _answer(400, f"Mailjet answered 404 for {error.path}: check the Mailjet base URL of the account behind this authentication key ({error})")
    return _answer(400, f"Mailjet rejected the contact update for list {list_id}: {error}")


class Destination:
    def __init__(self, accounts: AccountLookup) -> None:
        self.accounts = accounts
        # Made on first use: an aiohttp session belongs to the event loop that serves the app.
        self._http: aiohttp.ClientSession | None = None
        self._clients: dict[MailjetAccount, MailjetClient] = {}

    def client_for(self, account: MailjetAccount) -> MailjetClient:
        # One MailjetClient per account, so each account keeps its own property cache.
        if self._http is None:
            self._http = create_http_client()
        client = self._clients.get(account)
        if client is None:
            client = self._clients[account] = MailjetClient(self._http, account)
        return client

    async def receive(self, request: Request) -> JSONResponse:
        authorization = request.headers.get("authorization")
        try:
            auth_key = parse_authentication_key(authorization)
        except MissingAuthenticationKey as exc:
            return _answer(401, str(exc))
        account = self.accounts.account_for(auth_key)
        if account is None:
            return _answer(401, "unknown authentication key: copy it from Mailjet, Account settings → App Connections → Segment")

        try:
            message = read_json(await read_capped(request, MAX_BODY_BYTES))
        except BodyTooLarge:
            return _answer(400, f"message larger than {MAX_BODY_BYTES} bytes")
        except ValueError as exc:
            return _answer(400, f"malformed JSON: {exc}")
        if not isinstance(message, dict):
            return _answer(400, f"the message must be a JSON object, got {type(message).__name__}")

        call_type = message.get("type")
        if call_type != "identify":
            if call_type in SEGMENT_CALL_TYPES:
                return _answer(501, f"the Mailjet destination accepts identify calls only, not {call_type}")
            return _answer(400, f"unknown message type {json.dumps(call_type)}: expected identify")

        try:
            settings = parse_settings(authorization, request.headers.get("x-segment-settings"))
            update = map_identify(message)
        except (SettingsError, MappingError) as exc:
            return _answer(400, str(exc))

        try:
            outcome = await asyncio.wait_for(apply_identify(self.client_for(account), settings.list_id, update), IDENTIFY_BUDGET_SECONDS)
        except asyncio.TimeoutError:
            # The client turns its own timeouts into MailjetError: this one is the whole budget's.
            logger.warning("Mailjet calls for one identify took over %gs", IDENTIFY_BUDGET_SECONDS)
            return _answer(503, f"Mailjet is temporarily unavailable, retry later: its calls for this identify took over {IDENTIFY_BUDGET_SECONDS:g}s")
        except MailjetError as exc:
            return _answer_mailjet_error(exc, settings.list_id)
        return JSONResponse(outcome.to_json())

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "service": "destination"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"message": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, but still answered in the contract's shape. 500 makes Segment retry, which is right
    # for a transient fault and harmless for a deterministic one (it fails again, then gives up).
    logger.exception("unexpected error handling %s %s", request.method, request.url.path)
    answer = _answer(500, f"internal error in the Mailjet destination: {exc.__class__.__name__}")
    answer.headers.update(CONNECTION_CLOSE)
    return answer


def create_app(accounts: AccountLookup) -> Starlette:
    destination = Destination(accounts)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await destination.close()

    return Starlette(
        routes=[Route("/", destination.receive, methods=["POST"]), Route("/health", _health, methods=["GET"])],
        middleware=[Middleware(QuietDisconnect)],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
