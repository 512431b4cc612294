"""OpenAPI 3.1 description of the fake Segment, served at `GET /_emulator/openapi.json`.

The tracking API as the real one answers it (reference/segment.md §1), request bodies being the
`segment.*` contracts, and the control API under /_emulator/. Not described: the dashboard pages
(with their trace export, an HTML download) and the Server-Sent Events feed
(`/_emulator/events/stream`, a stream without end).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import contracts

from ..common.faults import FaultRules
from ..common.openapi import (
    CONTROL_SECURITY,
    CONTROL_TOKEN_MISSING,
    CONTROL_TOKEN_SCHEME,
    LIMIT,
    contract_components,
    contract_ref,
    control_error,
    control_operation,
    control_paths,
    fault_paths,
    in_tenant,
    json_content,
    json_response,
    snapshot_path,
)
from .delivery import STATES
from .models import ACCEPTED, CALL_TYPES, DISCARDED
from .storage import SERVICE, SNAPSHOT_VERSION

SUCCESS = {
    "type": "object",
    "required": ["success"],
    "properties": {"success": {"const": True}},
    "additionalProperties": False,
}
TRACKING_ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    "additionalProperties": False,
}

# A loose grammar of Engage rules (README "Engage definitions"): enough structure for a fuzzer to
# reach the rule parser with near-valid definitions, not a contract.
ENGAGE_SCHEMAS: dict[str, Any] = {
    "engage.rule": {
        "type": "object",
        "properties": {
            "event": {"type": "string"},
            "within": {"type": "string", "pattern": r"^\d+[dh]$"},
            "at_least": {"type": "integer"},
            "at_most": {"type": "integer"},
            "where": {"$ref": "#/components/schemas/engage.rule"},
            "trait": {"type": "string"},
            "property": {"type": "string"},
            **{op: {} for op in ("equals", "not_equals", "gt", "gte", "lt", "lte")},
            "exists": {"type": "boolean"},
            "all": {"type": "array", "items": {"$ref": "#/components/schemas/engage.rule"}},
            "any": {"type": "array", "items": {"$ref": "#/components/schemas/engage.rule"}},
            "not": {"$ref": "#/components/schemas/engage.rule"},
        },
    },
    "engage.audience": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "key": {"type": "string"},
            "rule": {"$ref": "#/components/schemas/engage.rule"},
        },
    },
    "engage.trait": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "key": {"type": "string"},
            "computed": {"enum": ["count", "sum", "avg", "most_frequent", "first", "last"]},
            "event": {"type": "string"},
            "property": {"type": "string"},
            "within": {"type": "string", "pattern": r"^\d+[dh]$"},
        },
    },
}


def _tracking_operation(contract: str, summary: str) -> dict[str, Any]:
    return {
        "tags": ["tracking"],
        "summary": summary,
        # The write key is Basic auth's username, or the body's `writeKey`: auth is optional.
        "security": [{"writeKey": []}, {}],
        "requestBody": {"required": True, "content": json_content(contract_ref(contract))},
        "responses": {
            "200": json_response("Accepted (also when stored as discarded)", SUCCESS),
            "400": json_response(
                "Invalid JSON, not an object (a batch: no `batch` list, or a batch-level context or"
                " integrations not an object), too large, no write key, bad or unsupported"
                " Content-Encoding; with --strict, a call breaking its contract",
                TRACKING_ERROR,
            ),
        },
    }


def _tracking_paths() -> dict[str, Any]:
    paths = {}
    for call_type in CALL_TYPES:
        for endpoint in (call_type, call_type[0]):  # analytics.js posts to the short paths
            paths[f"/v1/{endpoint}"] = {"post": _tracking_operation(f"segment.{call_type}", f"{call_type} call")}
    for endpoint in ("batch", "b", "import"):
        paths[f"/v1/{endpoint}"] = {"post": _tracking_operation("segment.batch", "A batch of calls")}
    return paths


# A control call acts on the workspace it names (routes.py), else on the default one.
WORKSPACE_PARAMETERS = [
    {"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "A write key of the workspace to act on (default: the default workspace)"},
    {"name": "X-Segjet-Write-Key", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "The same, as a header; the query parameter wins"},
]


def _in_workspace(operation: dict[str, Any]) -> dict[str, Any]:
    return in_tenant(operation, WORKSPACE_PARAMETERS, "No source has the write key named (an empty one too)")


def _default_workspace_only(operation: dict[str, Any]) -> dict[str, Any]:
    """A dashboard read of the default workspace only: naming another workspace is a 400, not a 404."""
    operation["parameters"] = operation.get("parameters", []) + [
        {**parameter, "description": "A write key of the default workspace; any other is a 400"}
        for parameter in WORKSPACE_PARAMETERS
    ]
    return operation


def _trace_operation() -> dict[str, Any]:
    operation = control_operation("One user's journey across both services", errors=(400,))
    # Required, unlike the control API's other query parameters: without it (or blank) the trace is a 400.
    operation["parameters"] = [{
        "name": "user", "in": "query", "required": True, "schema": {"type": "string", "pattern": r"\S"},
        "description": "A userId or an email",
    }]
    return _default_workspace_only(operation)


def _segment_control_paths() -> dict[str, Any]:
    text = {"type": "string"}
    definition_errors = (400, 409)
    return {
        "/_emulator/events": {
            "get": _in_workspace(control_operation(
                "Stored messages, newest last",
                query={
                    "type": text, "userId": text, "event": text, "source": text, "messageId": text,
                    "status": {"enum": [ACCEPTED, DISCARDED]}, "limit": LIMIT,
                },
                errors=(400,),
            ))
        },
        "/_emulator/profiles/{user_id}": {
            "get": _in_workspace({
                **control_operation("One profile by userId or anonymousId", errors=(404,)),
                "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": text}],
            })
        },
        "/_emulator/sources": {
            "get": _in_workspace(control_operation("Sources and their write keys")),
            "post": control_operation(
                "Add a source: to a new workspace, or to the workspace named",
                ok=201,
                body={
                    "type": "object",
                    "required": ["name", "write_key"],
                    "properties": {"name": text, "write_key": text, "workspace": text},
                    "additionalProperties": False,
                },
                errors=(400, 404, 409),
            ),
        },
        "/_emulator/snapshot": snapshot_path("The whole fake Segment, every workspace,", SERVICE, SNAPSHOT_VERSION),
        "/_emulator/destinations/mailjet": {
            "get": _in_workspace(control_operation("The Mailjet destination's settings")),
            "put": _in_workspace(control_operation(
                "Merge settings",
                body={
                    "type": "object",
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "settings": {"type": "object", "properties": {"apiKey": text, "listId": text}},
                    },
                },
                errors=(400,),
            )),
        },
        "/_emulator/deliveries": {
            "get": _in_workspace(control_operation(
                "Delivery records, newest last",
                query={"messageId": text, "state": {"enum": list(STATES)}, "userId": text, "limit": LIMIT},
                errors=(400,),
            ))
        },
        "/_emulator/engage/audiences": {
            "get": _in_workspace(control_operation("Audience definitions")),
            "post": _in_workspace(control_operation(
                "Define an audience", ok=201, body={"$ref": "#/components/schemas/engage.audience"}, errors=definition_errors
            )),
        },
        "/_emulator/engage/audiences/{key}": {
            "delete": _in_workspace({
                # 409: another definition reads the key as a trait.
                **control_operation("Remove an audience", errors=(404, 409)),
                "parameters": [{"name": "key", "in": "path", "required": True, "schema": text}],
            })
        },
        "/_emulator/engage/traits": {
            "get": _in_workspace(control_operation("Computed trait definitions")),
            "post": _in_workspace(control_operation(
                "Define a computed trait", ok=201, body={"$ref": "#/components/schemas/engage.trait"}, errors=definition_errors
            )),
        },
        "/_emulator/engage/traits/{key}": {
            "delete": _in_workspace({
                **control_operation("Remove a computed trait", errors=(404, 409)),
                "parameters": [{"name": "key", "in": "path", "required": True, "schema": text}],
            })
        },
        "/_emulator/engage/sync": {"post": _in_workspace(control_operation("Sync Engage now"))},
        "/_emulator/validate/{contract}": {
            "post": {
                "tags": ["control"],
                "summary": "Validate the JSON body against a contract",
                "security": CONTROL_SECURITY,
                "parameters": [
                    {"name": "contract", "in": "path", "required": True, "schema": {"enum": contracts.names()}}
                ],
                "requestBody": {"required": True, "content": json_content({})},
                "responses": {
                    "200": json_response("The violations found"),
                    "400": control_error("Not JSON, or nested too deeply"),
                    "401": CONTROL_TOKEN_MISSING,
                    "404": control_error("Unknown contract"),
                },
            }
        },
        "/_emulator/contracts": {"get": control_operation("Contract names")},
        "/_emulator/dashboard/info": {
            "get": _default_workspace_only(control_operation("What the dashboard shows in its header", errors=(400,)))
        },
        "/_emulator/dashboard/overview": {
            "get": _default_workspace_only(control_operation(
                "The Overview's steps: whether an identify, and a track named \"Email ...\", were accepted since "
                "the last reset (`{\"identify_accepted\", \"email_event_accepted\"}`), however many messages followed",
                errors=(400,),
            ))
        },
        "/_emulator/dashboard/trace": {
            "get": _trace_operation()
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    contract_names = [f"segment.{call_type}" for call_type in CALL_TYPES] + ["segment.batch"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "segjet fake Segment",
            "version": "1",
            "description": "Segment's HTTP tracking API as segjet emulates it, and segjet's control API.",
        },
        "paths": {**_tracking_paths(), **control_paths(_in_workspace, "workspace", "the tracking calls of the workspace named"),
                  **_segment_control_paths(), **fault_paths(FaultRules.for_segment())},
        "components": {
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "basic", "description": "The write key as username, no password"},
                "controlToken": CONTROL_TOKEN_SCHEME,
            },
            "schemas": {**contract_components(contract_names), **ENGAGE_SCHEMAS},
        },
    }
