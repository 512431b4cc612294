"""HTTP of the fake Segment: parse the request, call `SegmentBackend`, render Segment's shapes.

Tracking API: POST /v1/<endpoint> (see models.ENDPOINTS). Control API under /_emulator/.
The backend is exposed as `app.state.backend` for the components wired beside it (delivery, Engage).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.clock import Clock
from ..common.control import ControlError, control_error_response, control_routes, query_limit
from ..common.journal import CONTROL_PREFIX, Journal, JournalMiddleware
from ..config import BundleConfig, BundleUrls
from ..dashboard import segment_dashboard_routes
from .delivery import DeliveryPipeline
from .delivery_routes import delivery_routes
from .engage import EngageSpace
from .engage_routes import engage_routes
from .models import (
    ACCEPTED,
    DISCARDED,
    ENDPOINTS,
    MAX_BATCH_BYTES,
    MAX_RAW_BODY_BYTES,
    SegmentBackend,
    TrackingApiError,
)

log = logging.getLogger("segjet.segment")

SUCCESS = {"success": True}


def create_app(config: BundleConfig, clock: Clock, urls: BundleUrls) -> Starlette:
    backend = SegmentBackend.from_config(config, clock)
    journal = Journal(clock, config.journal_capacity)
    engage = EngageSpace(backend, config, clock, owner="segment")
    pipeline = DeliveryPipeline.from_config(config, clock, urls)
    backend.add_listener(lambda stored: pipeline.submit(stored.message))

    def reset() -> None:
        backend.reset()
        engage.reset()
        pipeline.reset()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await pipeline.aclose()  # stop the delivery workers and close their connection pool

    async def tracking(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if endpoint not in ENDPOINTS:
            return JSONResponse({"code": "not_found", "message": f"no endpoint /v1/{endpoint}"}, status_code=404)
        try:
            raw = await _read_body(request)
            backend.receive(
                endpoint, raw, request.headers.get("content-encoding"), request.headers.get("authorization")
            )
        except TrackingApiError as exc:
            return JSONResponse(exc.to_json(), status_code=exc.status)
        return JSONResponse(SUCCESS)

    async def events(request: Request) -> Response:
        params = request.query_params
        try:
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
        return JSONResponse({"events": [stored.to_json() for stored in found]})

    async def profile(request: Request) -> Response:
        # Looked up by userId, then by anonymousId (an anonymous visitor has a profile too).
        user_id = request.path_params["user_id"]
        found = backend.profiles.get(user_id)
        if found is None:
            return JSONResponse({"error": f"no profile for userId {user_id!r}"}, status_code=404)
        # Engage computes over userIds only; an anonymous profile is in no audience.
        computed = engage.engine.profile_view(found.user_id) if found.user_id else {"audiences": {}, "computed_traits": {}}
        return JSONResponse({**found.to_json(), **computed})

    async def sources(request: Request) -> Response:
        return JSONResponse({"sources": [source.to_json() for source in backend.sources]})

    app = Starlette(
        routes=[
            Route("/v1/{endpoint}", tracking, methods=["POST"]),
            *control_routes("segment", clock, journal, reset),
            Route("/_emulator/events", events, methods=["GET"]),
            Route("/_emulator/profiles/{user_id:path}", profile, methods=["GET"]),
            Route("/_emulator/sources", sources, methods=["GET"]),
            *engage_routes(engage),
            *delivery_routes(pipeline),
            *segment_dashboard_routes(backend, urls),  # pages at /, /debugger, ...; SSE, validate, trace
        ],
        middleware=[Middleware(JournalMiddleware, journal=journal)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.state.engage = engage
    app.state.pipeline = pipeline
    return app


async def _read_body(request: Request) -> bytes:
    """The raw body, never buffering more than any acceptable request could need.

    An oversized body is still read to its end (and thrown away) so the client, which is
    usually still sending, gets the 400 instead of a reset connection.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_RAW_BODY_BYTES:
            chunks.append(chunk)
    if size > MAX_RAW_BODY_BYTES:
        raise TrackingApiError("payload_too_large", f"request body is {size} bytes; the limit is {MAX_BATCH_BYTES}")
    return b"".join(chunks)


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
    # Only a bug gets here; it is still answered in Segment's error shape, never an HTML page.
    log.error("bug in the fake Segment answering %s %s", request.method, request.url.path, exc_info=exc)
    if _is_control(request):
        return JSONResponse({"error": f"internal error: {exc!r}"}, status_code=500)
    return JSONResponse({"code": "internal_error", "message": f"internal error: {exc!r}"}, status_code=500)
