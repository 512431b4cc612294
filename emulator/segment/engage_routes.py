"""HTTP of Engage in the fake Segment's control API: definitions and syncs (state in `engage.py`).

- `GET|POST /_emulator/engage/audiences`: list; define (201 with the stored definition, its `key`
  and `id`; 400 for an invalid definition, 409 for a key already used by an audience or a trait).
- `DELETE /_emulator/engage/audiences/{key}`: 200 with the removed definition; 404 when unknown;
  409 when another definition reads its key as a trait (the error names them).
- `GET|POST /_emulator/engage/traits`, `DELETE /_emulator/engage/traits/{key}`: computed traits, same answers.
- `POST /_emulator/engage/sync`: sync now; answers `{"count", "evaluated", "sent": [identify...]}`.

Each call acts on the Engage space of the workspace `workspace_of(request)` names (`?writeKey=`).
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.control import ControlError, control_error_response, read_json_object
from .engage import DefinitionError, DefinitionInUse, EngageSpace, UnknownDefinition


def engage_routes(space_of: Callable[[Request], EngageSpace]) -> list[Route]:
    """`space_of(request)` answers the request's Engage space or raises ControlError (unknown write key)."""

    async def audiences(request: Request) -> Response:
        try:
            engine = space_of(request).engine
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({"audiences": [engine.describe(audience) for audience in engine.audiences()]})

    async def define_audience(request: Request) -> Response:
        return await _define(request, EngageSpace.define_audience)

    async def delete_audience(request: Request) -> Response:
        return _delete(request, EngageSpace.delete_audience)

    async def delete_trait(request: Request) -> Response:
        return _delete(request, EngageSpace.delete_trait)

    async def traits(request: Request) -> Response:
        try:
            engine = space_of(request).engine
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({"traits": [engine.describe(trait) for trait in engine.traits()]})

    async def define_trait(request: Request) -> Response:
        return await _define(request, EngageSpace.define_trait)

    async def sync(request: Request) -> Response:
        try:
            return JSONResponse(space_of(request).sync().to_json())
        except ControlError as exc:
            return control_error_response(exc)

    def _delete(request: Request, delete: Callable[[EngageSpace, str], Any]) -> Response:
        try:
            removed = delete(space_of(request), request.path_params["key"])
        except ControlError as exc:
            return control_error_response(exc)
        except (UnknownDefinition, DefinitionInUse) as exc:
            return control_error_response(ControlError(str(exc), status=exc.status))
        return JSONResponse(removed.to_json())

    async def _define(request: Request, define: Callable[[EngageSpace, Any], Any]) -> Response:
        try:
            space_of(request)  # an unknown write key is told before a bad body
            body = await read_json_object(request)
            # Looked up again once the body is in: a reset meanwhile may have removed the workspace
            # (see put_destination).
            space = space_of(request)
            definition = define(space, body)
        except ControlError as exc:
            return control_error_response(exc)
        except DefinitionError as exc:
            return control_error_response(ControlError(str(exc), status=exc.status))
        return JSONResponse(space.engine.describe(definition), status_code=201)

    return [
        Route("/_emulator/engage/audiences", audiences, methods=["GET"]),
        Route("/_emulator/engage/audiences", define_audience, methods=["POST"]),
        Route("/_emulator/engage/audiences/{key}", delete_audience, methods=["DELETE"]),
        Route("/_emulator/engage/traits", traits, methods=["GET"]),
        Route("/_emulator/engage/traits", define_trait, methods=["POST"]),
        Route("/_emulator/engage/traits/{key}", delete_trait, methods=["DELETE"]),
        Route("/_emulator/engage/sync", sync, methods=["POST"]),
    ]
