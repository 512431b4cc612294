"""Control API of delivery: the Mailjet tile's settings and the delivery records.

- `GET /_emulator/destinations/mailjet` → `{"enabled", "settings": {"apiKey", "listId"}}`
- `PUT /_emulator/destinations/mailjet` merges `{"enabled": bool}` and/or `{"settings": {...}}`
- `GET /_emulator/deliveries?messageId=&state=&userId=&limit=` → `{"deliveries": [...]}`, newest last

Each call acts on the pipeline of the workspace `pipeline_of(request)` names (`?writeKey=`).
"""

from __future__ import annotations

from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.control import ControlError, control_error_response, query_limit, read_json_object
from .delivery import STATES, DeliveryPipeline, DestinationConfigError


def delivery_routes(pipeline_of: Callable[[Request], DeliveryPipeline]) -> list[Route]:
    """`pipeline_of(request)` answers the request's pipeline or raises ControlError (unknown write key)."""

    async def get_destination(request: Request) -> Response:
        try:
            return JSONResponse(pipeline_of(request).destination.to_json())
        except ControlError as exc:
            return control_error_response(exc)

    async def put_destination(request: Request) -> Response:
        try:
            pipeline_of(request)  # an unknown write key is told before a bad body
            update = await read_json_object(request)
            # Looked up again once the body is in: a reset meanwhile may have removed the workspace,
            # whose settings, applied, would come back from its store at the next start.
            pipeline = pipeline_of(request)
            try:
                return JSONResponse(pipeline.configure(update).to_json())
            except DestinationConfigError as exc:
                raise ControlError(str(exc)) from exc
        except ControlError as exc:
            return control_error_response(exc)

    async def deliveries(request: Request) -> Response:
        try:
            pipeline = pipeline_of(request)
            limit = query_limit(request)
            state = request.query_params.get("state")
            if state is not None and state not in STATES:
                raise ControlError(f"state must be one of {', '.join(STATES)}; got {state!r}")
        except ControlError as exc:
            return control_error_response(exc)
        records = pipeline.records(
            message_id=request.query_params.get("messageId"),
            state=state,
            user_id=request.query_params.get("userId"),
            limit=limit,
        )
        return JSONResponse({"deliveries": records, "dropped": pipeline.dropped})

    return [
        Route("/_emulator/destinations/mailjet", get_destination, methods=["GET"]),
        Route("/_emulator/destinations/mailjet", put_destination, methods=["PUT"]),
        Route("/_emulator/deliveries", deliveries, methods=["GET"]),
    ]
