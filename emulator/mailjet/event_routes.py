"""Control API of email events (thin: parse, call `EmailEvents`, render JSON).

Each call is about one account: `?apiKey=K` or `X-Segjet-Api-Key: K`, else the configured one.

- `POST /_emulator/messages/{MessageID}/events` `{"event": ..., fields}` → 201 the event record
- `GET /_emulator/email-events?MessageID=&event=&limit=` → `{"email_events": [record, ...]}`, newest last
- `GET|PUT /_emulator/simulation` → the simulation settings (PUT merges the fields given)
- `POST /_emulator/campaigns` `{"list_id", "subject", "html", "from"?, "name"?, "text"?}` → 201 the campaign
"""

from __future__ import annotations

from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.control import ControlError, control_error_response, query_limit, read_json_object
from .events import EmailEventError, EmailEvents
from .models import read_id


def email_event_routes(events_of: Callable[[Request], EmailEvents]) -> list[Route]:
    """`events_of(request)`: the email events of the account the request names (ControlError if unknown).

    A body is read before the account is looked up: a reset of the account while the body arrives
    replaces it, and the change must go to the account that is, not to the one that was.
    """

    async def emit(request: Request) -> Response:
        try:
            body = await read_json_object(request)
            events = events_of(request)
            record = events.apply(request.path_params["message_id"], body)
        except ControlError as exc:
            return control_error_response(exc)
        except EmailEventError as exc:
            return control_error_response(ControlError(exc.message, exc.status))
        return JSONResponse(record.to_json(), status_code=201)

    async def email_events(request: Request) -> Response:
        params = request.query_params
        try:
            events = events_of(request)
            limit = query_limit(request)
            raw_id = params.get("MessageID")
            message_id = None if raw_id is None else read_id(raw_id)
            if raw_id is not None and message_id is None:
                raise ControlError(f"MessageID must be an integer, got {raw_id!r}")
        except ControlError as exc:
            return control_error_response(exc)
        found = events.events(message_id, params.get("event"), limit)
        return JSONResponse({"email_events": [record.to_json() for record in found]})

    async def simulation_get(request: Request) -> Response:
        try:
            events = events_of(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(events.simulation.to_json())

    async def simulation_put(request: Request) -> Response:
        try:
            changes = await read_json_object(request)
            events = events_of(request)
            try:
                simulation = events.configure_simulation(changes)
            except ValueError as exc:
                raise ControlError(str(exc)) from exc
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(simulation.to_json())

    async def campaign_post(request: Request) -> Response:
        try:
            body = await read_json_object(request)
            campaign = events_of(request).send_campaign(body)
        except ControlError as exc:
            return control_error_response(exc)
        except EmailEventError as exc:
            return control_error_response(ControlError(exc.message, exc.status))
        return JSONResponse(campaign.to_json(), status_code=201)

    return [
        Route("/_emulator/messages/{message_id}/events", emit, methods=["POST"]),
        Route("/_emulator/email-events", email_events, methods=["GET"]),
        Route("/_emulator/simulation", simulation_get, methods=["GET"]),
        Route("/_emulator/simulation", simulation_put, methods=["PUT"]),
        Route("/_emulator/campaigns", campaign_post, methods=["POST"]),
    ]
