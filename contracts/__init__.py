"""JSON-schema contracts for every payload that crosses a hop, and a small loader.

Each file `schemas/<name>.json` is one contract, named by its file name without `.json`
(e.g. `segment.identify`), except the files of shared definitions (`segment.common`,
`mailjet.common`): their root holds only `$defs`, constrains nothing, and is no contract.
Schemas are JSON Schema draft 2020-12; `$ref`s between files use the file name
(`"$ref": "segment.common.json#/$defs/context"`) and are resolved through a `referencing`
registry. Validators are compiled once, on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).parent / "schemas"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (`$.traits.email`), which keyword (`type`), and a readable message.

    `parts` is the same place as keys and list indexes (`("traits", "email")`): the text path cannot
    say where a key holding `.` or `[` ends (`$.integrations.Customer.io`). Not compared: `path` says it.
    """

    path: str
    rule: str
    message: str
    parts: tuple[str | int, ...] = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.rule})"


class UnknownContract(KeyError):
    def __str__(self) -> str:
        name = self.args[0]
        if name in schema_names():
            return f"{name!r} holds definitions the contracts share, not a contract; known: {', '.join(names())}"
        return f"unknown contract {name!r}; known: {', '.join(names())}"


# Keywords of a schema's root that name or describe it; a root with nothing else checks nothing.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "$defs"})


@cache
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def schema_names() -> list[str]:
    """Every schema file: the contracts and the shared definitions they `$ref` (a registry needs them all)."""
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.json"))


def names() -> list[str]:
    """The contracts: every schema file but the shared definitions, whose root would accept any payload."""
    return [name for name in schema_names() if not set(schema(name)) <= _ANNOTATIONS]


def schema(name: str) -> dict[str, Any]:
    """The schema document `name` (a contract, or shared definitions for a `$ref` to reach)."""
    try:
        return _registry().contents(f"{name}.json")
    except LookupError as exc:
        raise UnknownContract(name) from exc


@cache
def _validator(name: str) -> Draft202012Validator:
    if name not in names():
        raise UnknownContract(name)
    return Draft202012Validator(
        schema(name), registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _parts(error: ValidationError) -> list[str | int]:
    """The instance path of the error; a missing required property is reported at its own path
    (`$.event`, not `$`), as Protocols names the field (`properties.products is required`)."""
    parts = list(error.absolute_path)
    if error.validator == "required":
        missing = [key for key in error.validator_value if error.message.startswith(f"{key!r} ")]
        parts += missing[:1]
    return parts


def _json_path(parts: list[str | int]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


MAX_MESSAGE = 300
# How much of the value found a rewritten message quotes.
MAX_SHOWN = 60
# Size keywords: what they count, and which bound they set. jsonschema says "<the whole value> is
# too long", naming no limit; past MAX_MESSAGE characters of the value even "is too long" is cut off.
_SIZES = {
    "maxItems": ("items", "at most"),
    "minItems": ("items", "at least"),
    "maxLength": ("characters", "at most"),
    "minLength": ("characters", "at least"),
    "maxProperties": ("properties", "at most"),
    "minProperties": ("properties", "at least"),
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _message(error: ValidationError) -> str:
    """jsonschema's message, made to say what was expected and what was found: combinators
    (`anyOf`/`oneOf`/`not`) print the whole instance, so the schema's own `description` is used when
    it has one; size rules name the size and the limit; `const` adds the value found; a rule on
    property names says it refused a key. Capped in length: messages are recorded on stored events."""
    message = error.message
    if error.validator in ("anyOf", "oneOf", "not") and isinstance(error.schema, dict) and "description" in error.schema:
        message = error.schema["description"]
    elif error.validator in _SIZES and isinstance(error.instance, (list, str, dict)):
        unit, bound = _SIZES[str(error.validator)]
        message = f"{_shown(error.instance)} has {len(error.instance)} {unit}, expected {bound} {error.validator_value}"
    elif error.validator == "const":
        message = f"{error.validator_value!r} was expected, got {_shown(error.instance)}"
    if "propertyNames" in error.absolute_schema_path:
        # The instance is a key of the object at the error's path, which jsonschema does not say.
        message = f"key {message}"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _sort_key(item: tuple[list[str | int], ValidationError]) -> tuple:
    parts, error = item
    return [(0, part, "") if isinstance(part, int) else (1, 0, part) for part in parts], str(error.validator)


def validate(name: str, payload: Any) -> list[Violation]:
    """Every violation of contract `name` by `payload`, in path order; [] when the payload is valid.
    A rule met twice through shared definitions (`$ref`, `allOf`) is reported once."""
    found = sorted(((_parts(error), error) for error in _validator(name).iter_errors(payload)), key=_sort_key)
    violations = (
        Violation(_json_path(parts), str(error.validator), _message(error), tuple(parts)) for parts, error in found
    )
    return list(dict.fromkeys(violations))


def is_valid(name: str, payload: Any) -> bool:
    return _validator(name).is_valid(payload)
