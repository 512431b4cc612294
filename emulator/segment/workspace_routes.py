"""Control API of workspaces, sources and snapshots of the fake Segment (state in `workspaces.py`, `storage.py`).

- `GET /_emulator/sources[?writeKey=K]` → `{"workspace": id, "sources": [{"id", "name", "writeKey"}]}`
- `POST /_emulator/sources {"name", "write_key"[, "workspace": id]}` → 201 with the source and its
  `workspace`: a new workspace, or the existing one named; 409 when the write key is taken.
- `GET /_emulator/snapshot` → the whole fake Segment (every workspace) as
  `{"format": "segjet-snapshot", "service": "segment", "version": 1, "exported_at", "state"}`.
- `PUT /_emulator/snapshot` replaces the whole state with a snapshot, all or nothing: it is
  validated completely first; a wrong format, service, version or state answers 400 and changes nothing.
"""

from __future__ import annotations

from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.clock import Clock
from ..common.control import ControlError, control_error_response, read_json_object
from ..common.json_body import decode_snapshot
from ..common.snapshot import snapshot_response
from .storage import SnapshotError, snapshot_document, state_from_snapshot
from .workspaces import Workspace, WorkspaceError, Workspaces


def workspace_routes(workspaces: Workspaces, workspace_of: Callable[[Request], Workspace], clock: Clock) -> list[Route]:
    async def sources(request: Request) -> Response:
        try:
            workspace = workspace_of(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(
            {"workspace": workspace.id, "sources": [source.to_json() for source in workspace.backend.sources]}
        )

    async def add_source(request: Request) -> Response:
        try:
            body = await read_json_object(request)
            unknown = sorted(set(body) - {"name", "write_key", "workspace"})
            if unknown:
                raise ControlError(f"unknown field(s): {', '.join(unknown)}; expected name, write_key, workspace")
            try:
                source, workspace = workspaces.add_source(body.get("name"), body.get("write_key"), body.get("workspace"))
            except WorkspaceError as exc:
                raise ControlError(str(exc), exc.status) from exc
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({**source.to_json(), "workspace": workspace.id}, status_code=201)

    async def export_snapshot(request: Request) -> Response:
        return snapshot_response(snapshot_document(workspaces.export(), clock.now()))

    async def import_snapshot(request: Request) -> Response:
        try:
            document = await read_json_object(request, decode_snapshot)
            try:
                states = state_from_snapshot(document)
            except SnapshotError as exc:
                raise ControlError(str(exc)) from exc
            try:
                await workspaces.replace(states)
            except WorkspaceError as exc:  # refused before anything changed
                raise ControlError(str(exc), exc.status) from exc
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(
            {
                "status": "ok",
                "workspaces": len(states),
                "messages": sum(len(state.messages) for state in states),
                "deliveries": sum(len(state.deliveries) for state in states),
            }
        )

    return [
        Route("/_emulator/sources", sources, methods=["GET"]),
        Route("/_emulator/sources", add_source, methods=["POST"]),
        Route("/_emulator/snapshot", export_snapshot, methods=["GET"]),
        Route("/_emulator/snapshot", import_snapshot, methods=["PUT"]),
    ]
