"""Pieces of the OpenAPI 3.1 descriptions both fakes publish at `GET /_emulator/openapi.json`.

Contracts are JSON Schema 2020-12 files that `$ref` each other by file name. A description embeds
the ones it uses under `components/schemas/<contract name>`, each with its `$ref`s rewritten to
point inside the document, so any OpenAPI tool (schemathesis included) resolves them without
fetching files. Each contract keeps its own `$defs`, reached as `#/components/schemas/<name>/$defs/x`.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import ACTIONS, MAX_DELAY_MS, RESPOND, FaultRules
from .journal import CONTROL_PREFIX
from .snapshot import SNAPSHOT_FORMAT

import contracts

OPENAPI_PATH = "/_emulator/openapi.json"
# Keywords of a contract file that name or version the file itself, meaningless once embedded.
_FILE_KEYWORDS = ("$schema", "$id")


def contract_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _rewrite(node: Any, owner: str, found: set[str]) -> Any:
    """A copy of `node` with every `$ref` pointing into the document; collects the contracts it names."""
    if isinstance(node, list):
        return [_rewrite(item, owner, found) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            file, _, fragment = value.partition("#")
            target = file.removesuffix(".json") if file else owner
            found.add(target)
            rewritten[key] = contract_ref(target)["$ref"] + fragment
        else:
            rewritten[key] = _rewrite(value, owner, found)
    return rewritten


def contract_components(names: list[str]) -> dict[str, Any]:
    """`components/schemas` holding the named contracts and every contract they reference."""
    components: dict[str, Any] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in components:
            continue
        found: set[str] = set()
        body = {key: value for key, value in contracts.schema(name).items() if key not in _FILE_KEYWORDS}
        components[name] = _rewrite(body, name, found)
        pending.extend(found - components.keys())
    return dict(sorted(components.items()))


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": json_content(schema or {"type": "object"})}


CONTROL_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}


def control_error(description: str) -> dict[str, Any]:
    return json_response(description, CONTROL_ERROR)


# With `--control-token T` (common/control.py ControlTokenMiddleware) every control call but health
# answers 401 without the token; without it they are open, hence the empty alternative.
CONTROL_TOKEN_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "The --control-token, when the server has one; also taken as `X-Segjet-Token: T` or `?token=T`",
}
CONTROL_SECURITY: list[dict[str, list[str]]] = [{"controlToken": []}, {}]
CONTROL_TOKEN_MISSING = control_error("The server has a control token and the request did not carry it")


def control_operation(
    summary: str,
    *,
    ok: int = 200,
    body: dict[str, Any] | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
    token: bool = True,
) -> dict[str, Any]:
    """One operation of the control API: JSON object in (when `body`), JSON object out, `{"error"}` on 4xx.
    `token`: behind the control token (all but health)."""
    responses = {str(ok): json_response("OK"), **{str(status): control_error("error") for status in errors}}
    if token:
        responses["401"] = CONTROL_TOKEN_MISSING
    operation: dict[str, Any] = {
        "tags": ["control"],
        "summary": summary,
        "security": CONTROL_SECURITY if token else [],
        "responses": responses,
    }
    if query:
        operation["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in query.items()
        ]
    if body is not None:
        operation["requestBody"] = {"required": False, "content": json_content(body)}
    return operation


LIMIT = {"type": "integer", "minimum": 0, "maximum": 10_000}
DURATION = {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d|w)$"}


def in_tenant(operation: dict[str, Any], parameters: list[dict[str, Any]], not_found: str) -> dict[str, Any]:
    """`operation` taking the `parameters` that name its tenant (a workspace, an account), and
    answering 404 `not_found` for a name no tenant has."""
    return {
        **operation,
        "parameters": [*operation.get("parameters", []), *parameters],
        "responses": {**operation["responses"], "404": control_error(not_found)},
    }


def control_paths(
    scoped: Callable[[dict[str, Any]], dict[str, Any]], tenant: str, journal_scope: str
) -> dict[str, Any]:
    """The control API every fake shares (emulator/common/control.py) and this description's own route.

    Reset and the journal may name one `tenant` ("workspace", "account"): `scoped` adds its
    parameters to an operation; `journal_scope` says which calls the journal then keeps.
    """
    return {
        "/_emulator/health": {"get": control_operation("Health: {status, service, now}", token=False)},
        "/_emulator/reset": {"post": scoped(control_operation(f"Forget all state of this server, or of the {tenant} named"))},
        "/_emulator/requests": {
            "get": scoped(control_operation(
                f"The request journal, newest last ({journal_scope})",
                query={"method": {"type": "string"}, "path": {"type": "string"}, "limit": LIMIT},
                errors=(400,),
            ))
        },
        "/_emulator/clock": {
            "get": control_operation("The virtual clock"),
            "post": control_operation(
                "Move the virtual clock, then fire the timers that became due",
                body={
                    "type": "object",
                    "properties": {"advance": DURATION, "set": {"type": "string", "format": "date-time"}},
                },
                errors=(400,),
            ),
        },
        OPENAPI_PATH: {"get": control_operation("This OpenAPI description")},
    }


def openapi_route(document: Callable[[], dict[str, Any]]) -> Route:
    """`GET /_emulator/openapi.json`; `document` builds the description (cached by its module)."""

    async def openapi(request: Request) -> Response:
        return JSONResponse(document())

    return Route(OPENAPI_PATH, openapi, methods=["GET"])


def fault_paths(rules: FaultRules) -> dict[str, Any]:
    """The fault rules' control routes (common/fault_routes.py), with the fields `rules` takes."""
    count_or_null = {"type": ["integer", "null"], "minimum": 1}
    control = CONTROL_PREFIX
    if rules.case_insensitive_paths:
        control = "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in CONTROL_PREFIX)
    rule = {
        "type": "object",
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "pattern": "^/", "not": {"pattern": f"^{control}"},
                     "description": "A glob (* matches anything); never the control API"},
            # (?!\n): Python's `$`, the server's, also matches before a final newline.
            "method": {"type": "string", "pattern": r"^([A-Za-z]+(-[A-Za-z]+)*|\*)$(?!\n)"},
            "action": {"enum": list(ACTIONS)},
            "status": {"type": ["integer", "null"], "minimum": 400, "maximum": 599},
            "rate": {"type": "number", "minimum": 0, "maximum": 1},
            "times": count_or_null,
            "delay_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS},
            "seed": {"type": ["integer", "null"]},
            rules.credential_field: {"type": ["string", "null"]},
            **({"retry_after": {"type": "integer", "minimum": 0}} if rules.has_retry_after else {}),
        },
        "additionalProperties": False,
        # Nothing is answered by a drop or a timeout: a status would mean nothing.
        "if": {"required": ["action"], "properties": {"action": {"enum": [action for action in ACTIONS if action != RESPOND]}}},
        "then": {"properties": {"status": {"type": "null"}}},
    }
    removed = {
        "tags": ["control"],
        "summary": "Remove one rule",
        "security": CONTROL_SECURITY,
        "parameters": [{"name": "rule_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"204": {"description": "Removed"}, "401": CONTROL_TOKEN_MISSING, "404": control_error("No rule has this id")},
    }
    return {
        "/_emulator/faults": {
            "get": control_operation("The fault rules, each with its matched and fired counts"),
            "post": control_operation("Add a fault rule; answers it with its id", ok=201, body=rule, errors=(400,)),
            "delete": control_operation("Remove every fault rule"),
        },
        "/_emulator/faults/{rule_id}": {"delete": removed},
    }


def snapshot_path(whole: str, service: str, version: int) -> dict[str, Any]:
    """`GET|PUT /_emulator/snapshot` of a service; `whole` names what a snapshot holds."""
    return {
        "get": control_operation(f"{whole} as a snapshot document"),
        "put": control_operation(
            "Replace the whole state with a snapshot document, all or nothing",
            body={
                "type": "object",
                "required": ["format", "service", "version", "state"],
                "properties": {
                    "format": {"const": SNAPSHOT_FORMAT},
                    "service": {"const": service},
                    "version": {"const": version},
                    "exported_at": {"type": "string"},
                    "state": {"type": "object"},
                },
            },
            errors=(400,),
        ),
    }
