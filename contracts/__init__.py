"""JSON-schema contracts for every payload that crosses a hop, and a small loader.

Each file `schemas/<name>.json` is one contract, named by its file name without `.json`
(e.g. `segment.identify`). Schemas are JSON Schema draft 2020-12; `$ref`s between files use
the file name (`"$ref": "segment.common.json#/$defs/context"`) and are resolved through a
`referencing` registry. Validators are compiled once, on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).parent / "schemas"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (`$.traits.email`), which keyword (`type`), and a readable message."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.rule})"


class UnknownContract(KeyError):
    def __str__(self) -> str:
        return f"unknown contract {self.args[0]!r}; known: {', '.join(names())}"


@cache
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def names() -> list[str]:
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.json"))


def schema(name: str) -> dict[str, Any]:
    try:
        return _registry().contents(f"{name}.json")
    except LookupError as exc:
        raise UnknownContract(name) from exc


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        schema(name), registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate(name: str, payload: Any) -> list[Violation]:
    """Every violation of contract `name` by `payload`, in path order; [] when the payload is valid."""
    errors = sorted(_validator(name).iter_errors(payload), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    return [Violation(_json_path(error), str(error.validator), error.message) for error in errors]


def is_valid(name: str, payload: Any) -> bool:
    return _validator(name).is_valid(payload)
