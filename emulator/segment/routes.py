"""HTTP of the fake Segment: parse the request, call `SegmentBackend`, render Segment's shapes.

Tracking API: POST /v1/<endpoint> (see models.ENDPOINTS); the write key picks the workspace. It
alone answers cross-origin requests (`TrackingCors`), as analytics.js in any page needs.
Control API under /_emulator/; a call names its workspace with `?writeKey=K` or the header
`X-Segjet-Write-Key: K`, else it acts on the default workspace. `app.state.workspaces` is the
registry; `app.state.backend`, `engage` and `pipeline` are the default workspace's.
With `config.data_dir`, the state is kept in `DIR/segment.sqlite3` (storage.py).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..common.clock import Clock
from ..common.control import ControlError, control_error_response, control_routes, named_tenant, query_limit
from ..common.fault_routes import basic_username, fault_routes, segment_fault_response, service_middleware
from ..common.faults import FaultRules
from ..common.http import CONNECTION_CLOSE, BeforeAnswer, BodyTooLarge, read_capped
from ..common.journal import CONTROL_PREFIX, Journal
from ..common.openapi import openapi_route
from ..config import BundleConfig, BundleUrls
from ..dashboard import segment_dashboard_routes
from .delivery_routes import delivery_routes
from .engage_routes import engage_routes
from .models import (
    ACCEPTED,
    DISCARDED,
    ENDPOINTS,
    MAX_BATCH_BYTES,
    MAX_CALL_BYTES,
    MAX_RAW_BODY_BYTES,
    TrackingApiError,
    parse_tracking_request,
)
from .openapi import openapi_document
from .storage import SegmentStore
from .workspace_routes import workspace_routes
from .workspaces import Workspace, Workspaces

log = logging.getLogger("segjet.segment")

SUCCESS = {"success": True}
WRITE_KEY_PARAM = "writeKey"
WRITE_KEY_HEADER = "x-segjet-write-key"
TRACKING_PREFIX = "/v1/"
# What analytics-next reads of a 429 (`x-ratelimit-reset` in batched-dispatcher.ts, `Retry-After` in
# shared-dispatcher.ts): not CORS-safelisted, so a page of another origin sees them only if exposed.
EXPOSED_HEADERS = ("Retry-After", "X-RateLimit-Reset")


class TrackingCors:
    """Pure ASGI middleware: CORS on the tracking API (`/v1/...`) only, outermost.

    analytics.js posts from the page's origin to api.segment.io, and Segment's custom-proxy guide has
    the proxy pass OPTIONS through (segment-docs custom-proxy.md), so the real API answers preflights.
    What it answers is not published. GUESS: the permissive answer a proxy needs for analytics.js to
    work with any of its settings: any origin, echoed with credentials allowed (analytics-next has a
    `credentials` option, and `*` fails a credentialed fetch), any requested header mirrored (Basic
    auth, X-Retry-Count, the headers a page adds), POST, a private-network preflight accepted.
    Outermost, so a preflight is never faulted, journaled or held, and every answer under /v1/ (200,
    4xx, a fault's 429/5xx) is readable. The control API, the dashboard and the fake Mailjet get no
    CORS: README "Security" relies on a page not reading them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            # Every origin by a pattern, not `["*"]`: with `*`, starlette before 1.0 echoes the origin
            # only to a request that carries a cookie, and answers `*` (with credentials allowed, which
            # a browser refuses) to the others; an allowed origin matched by a pattern is echoed by
            # every version.
            allow_origin_regex=".*",
            allow_methods=["POST"],
            allow_headers=["*"],
            allow_credentials=True,
            allow_private_network=True,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Paths are case-sensitive here (Segment's are): `/V1/t` is a 404 and gets no CORS either.
        if scope["type"] == "http" and scope["path"].startswith(TRACKING_PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def tracking_write_key(scope: Scope, body: bytes | None) -> str | None:
    """The write key a request carries, as the tracking API reads it: the Basic auth username, else
    the `writeKey` of a body the tracking API would take (`parse_tracking_request`). For the fault
    rules' `write_key` and `GET /_emulator/requests?writeKey=`: a body the API refuses carries none."""
    username = basic_username(scope, None)
    if username:
        return username
    path = scope.get("path", "")
    endpoint = path.removeprefix(TRACKING_PREFIX)
    if not body or not path.startswith(TRACKING_PREFIX) or endpoint not in ENDPOINTS:
        return None
    try:
        return parse_tracking_request(endpoint, body, Headers(scope=scope).get("content-encoding")).write_key
    except TrackingApiError:
        return None


def create_app(config: BundleConfig, clock: Clock, urls: BundleUrls) -> Starlette:
    workspaces = Workspaces(config, clock, urls)
    store = SegmentStore(config.data_dir) if config.data_dir else None
    if store is not None:
        workspaces.attach(store)  # restores what the database holds; nothing is delivered again
    default = workspaces.default
    journal = Journal(clock, config.journal_capacity)
    faults = FaultRules.for_segment()
    faults.add_all(config.faults.get("segment", []))

    def named_write_key(request: Request) -> str | None:
        return named_tenant(request, WRITE_KEY_PARAM, WRITE_KEY_HEADER)

    def workspace_epoch(write_key: str | None) -> tuple[Workspace, int]:
        # What a reset or snapshot import of the workspace a tracking call goes to changes (fault_routes holds calls).
        workspace = workspaces.for_tracking(write_key or "")
        return workspace, workspace.backend.generation

    def workspace_of(request: Request) -> Workspace:
        key = named_write_key(request)
        if key is None:
            return default
        workspace = workspaces.for_write_key(key)
        if workspace is None:
            raise ControlError(f"no source has write key {key!r}; create one with POST /_emulator/sources", 404)
        return workspace

    def reset() -> None:
        workspaces.reset()
        faults.clear()

    def reset_workspace(request: Request) -> dict[str, str] | None:
        # A reset naming a write key resets that workspace alone: other workspaces, the journal
        # and the bundle's clock are left as they are (parallel jobs share them).
        if named_write_key(request) is None:
            return None
        workspace = workspace_of(request)
        workspace.reset()
        return {"workspace": workspace.id}

    def journal_tenant(request: Request) -> Callable[[str | None], bool] | None:
        # `GET requests?writeKey=K`: the exchanges whose tracking calls went to K's workspace.
        if named_write_key(request) is None:
            return None
        workspace = workspace_of(request)
        return lambda key: workspaces.for_tracking(key or "") is workspace

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        workspaces.resume()  # deliveries restored from the database that wait for no retry
        yield
        await workspaces.aclose()  # stop the delivery workers, close their connections and the database

    async def tracking(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if endpoint not in ENDPOINTS:
            return JSONResponse({"code": "not_found", "message": f"no endpoint /v1/{endpoint}"}, status_code=404)
        try:
            try:
                raw = await read_capped(request, MAX_RAW_BODY_BYTES)
            except BodyTooLarge as exc:
                limit = MAX_CALL_BYTES if ENDPOINTS[endpoint] else MAX_BATCH_BYTES  # as decode_body says it
                raise TrackingApiError(
                    "payload_too_large", f"request body is {exc.size} bytes; the limit is {limit} bytes"
                ) from None
            call = parse_tracking_request(
                endpoint, raw, request.headers.get("content-encoding"), request.headers.get("authorization"),
                request.client.host if request.client else None,
            )
            workspaces.for_tracking(call.write_key).backend.accept(call)
        except TrackingApiError as exc:
            return JSONResponse(exc.to_json(), status_code=exc.status)
        return JSONResponse(SUCCESS)

    async def events(request: Request) -> Response:
        params = request.query_params
        try:
            backend = workspace_of(request).backend
            limit = query_limit(request)
            status = params.get("status")
            if status not in (None, ACCEPTED, DISCARDED):
                raise ControlError(f"status must be {ACCEPTED} or {DISCARDED}, got {status!r}")
        except ControlError as exc:
            return control_error_response(exc)
        found = backend.events(
            type=params.get("type"),
            user_id=params.get("userId"),
            event=params.get("event"),
            source=params.get("source"),
            status=status,
            message_id=params.get("messageId"),
            limit=limit,
        )
        return JSONResponse({"events": [stored.to_json() for stored in found], "dropped": backend.dropped})

    async def profile(request: Request) -> Response:
        # Looked up by userId, then by anonymousId (an anonymous visitor has a profile too).
        user_id = request.path_params["user_id"]
        try:
            workspace = workspace_of(request)
        except ControlError as exc:
            return control_error_response(exc)
        found = workspace.backend.profiles.get(user_id)
        if found is None:
            return JSONResponse({"error": f"no profile for userId {user_id!r}"}, status_code=404)
        # Engage computes over userIds only; an anonymous profile is in no audience.
        engine = workspace.engage.engine
        computed = engine.profile_view(found.user_id) if found.user_id else {"audiences": {}, "computed_traits": {}}
        return JSONResponse({**found.to_json(), **computed})

    app = Starlette(
        routes=[
            Route("/v1/{endpoint}", tracking, methods=["POST"]),
            *control_routes("segment", clock, journal, reset, reset_workspace, workspaces.quiesce, journal_tenant),
            *fault_routes(faults),
            Route("/_emulator/events", events, methods=["GET"]),
            Route("/_emulator/profiles/{user_id:path}", profile, methods=["GET"]),
            *workspace_routes(workspaces, workspace_of, clock),
            openapi_route(openapi_document),
            *engage_routes(lambda request: workspace_of(request).engage),
            *delivery_routes(lambda request: workspace_of(request).pipeline),
            # The dashboard shows the default workspace.
            *segment_dashboard_routes(default.backend, urls, named_write_key),  # pages at /, /debugger, ...; SSE, validate, trace
        ],
        middleware=[Middleware(TrackingCors)] + service_middleware(
            faults, journal, segment_fault_response, tracking_write_key, config.control_token, MAX_RAW_BODY_BYTES,
            tenant_epoch=workspace_epoch,
        ) + ([Middleware(BeforeAnswer, hook=store.flush)] if store is not None else []),
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    # Starlette answered `/v1/track/` with an empty 307 to `/v1/track`: no answer in Segment's shape,
    # and a client that does not follow redirects saw its call neither stored nor refused. Such a
    # path is an unknown path (404 not_found), as every other one.
    app.router.redirect_slashes = False
    app.state.workspaces = workspaces
    app.state.backend = default.backend
    app.state.engage = default.engage
    app.state.pipeline = default.pipeline
    return app


def _is_control(request: Request) -> bool:
    return request.url.path.startswith(CONTROL_PREFIX)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, in the shape of the API that was called."""
    assert isinstance(exc, HTTPException)
    if _is_control(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return JSONResponse({"code": code, "message": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Only a bug (or a data dir that cannot be written) gets here; it is still answered in
    # Segment's error shape, never an HTML page, with CONNECTION_CLOSE.
    log.error("bug in the fake Segment answering %s %s", request.method, request.url.path, exc_info=exc)
    if _is_control(request):
        return JSONResponse({"error": f"internal error: {exc!r}"}, status_code=500, headers=CONNECTION_CLOSE)
    return JSONResponse({"code": "internal_error", "message": f"internal error: {exc!r}"}, status_code=500, headers=CONNECTION_CLOSE)
