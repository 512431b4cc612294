"""Control API of delivery: the Mailjet tile's settings and the delivery records.

- `GET /_emulator/destinations/mailjet` → `{"enabled", "settings": {"apiKey", "listId"}}`
- `PUT /_emulator/destinations/mailjet` merges `{"enabled": bool}` and/or `{"settings": {...}}`
- `GET /_emulator/deliveries?messageId=&state=&userId=&limit=` → `{"deliveries": [...]}`, newest last
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.control import ControlError, control_error_response, query_limit, read_json_object
from .delivery import STATES, DeliveryPipeline, DestinationConfigError


def delivery_routes(pipeline: DeliveryPipeline) -> list[Route]:
    async def get_destination(request: Request) -> Response:
        return JSONResponse(pipeline.destination.to_json())

    async def put_destination(request: Request) -> Response:
        try:
            update = await read_json_object(request)
            try:
                return JSONResponse(pipeline.configure(update).to_json())
            except DestinationConfigError as exc:
                raise ControlError(str(exc)) from exc
        except ControlError as exc:
            return control_error_response(exc)

    async def deliveries(request: Request) -> Response:
        try:
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
        return JSONResponse({"deliveries": records})

    return [
        Route("/_emulator/destinations/mailjet", get_destination, methods=["GET"]),
        Route("/_emulator/destinations/mailjet", put_destination, methods=["PUT"]),
        Route("/_emulator/deliveries", deliveries, methods=["GET"]),
    ]
