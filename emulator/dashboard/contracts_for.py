"""Which contract a payload seen in a trace should meet, and its violations in a JSON shape."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import contracts

from ..common import fast_validation


@cache
def contract_names() -> frozenset[str]:
    # Read once: the schema files ship with the package, and each read lists their folder and
    # parses every file (~1.5 ms, twice for each Segment step of a trace).
    return frozenset(contracts.names())


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def segment_contract(message: dict[str, Any]) -> str | None:
    """The contract of a stored Segment message: Engage identifies and Email events have their own."""
    call_type = message.get("type")
    if not isinstance(call_type, str):
        return None
    known = contract_names()
    personas = (message.get("context") or {}).get("personas") if isinstance(message.get("context"), dict) else None
    if call_type == "identify" and isinstance(personas, dict):
        kind = "audience" if personas.get("computation_class") == "audience" else "trait"
        name = f"segment.engage_{kind}_identify"
        if name in known:
            return name
    if call_type == "track" and isinstance(message.get("event"), str):
        name = f"segment.{_snake(message['event'])}"
        if name in known:
            return name
    name = f"segment.{call_type}"
    return name if name in known else None


def first_known(*names: str) -> str | None:
    return next((name for name in names if name in contract_names()), None)


def check(contract: str | None, payload: Any) -> dict[str, Any]:
    """`{"contract", "violations": [{"path", "rule", "message"}]}`; no contract → no verdict.

    The compiled check answers first (~1 µs, where jsonschema takes ~1 ms and a trace checks
    thousands of payloads); jsonschema runs only to explain a payload that fails."""
    if contract is None:
        return {"contract": None, "violations": []}
    try:
        found = [] if fast_validation.is_valid(contract, payload) else contracts.validate(contract, payload)
    except RecursionError:
        return {"contract": contract, "violations": [{"path": "$", "rule": "depth", "message": "nested too deeply"}]}
    return {"contract": contract, "violations": [violation_json(v) for v in found]}


def violation_json(violation: contracts.Violation) -> dict[str, str]:
    return {"path": violation.path, "rule": violation.rule, "message": violation.message}
