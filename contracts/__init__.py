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
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
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


def _format_checker() -> FormatChecker:
    """Draft 2020-12's format checks, with a date-time that ends where its text ends: rfc3339-validator
    reads its pattern with Python's `$`, which also matches before a final newline, so
    "2025-01-01T00:00:00Z\n" passed. RFC 3339 has no newline, and ECMA-262's `$` (other validators) none."""
    checker = FormatChecker(())
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    rfc3339, raises = checker.checkers["date-time"]

    def date_time(instance: object) -> bool:
        return not (isinstance(instance, str) and instance.endswith("\n")) and rfc3339(instance)

    checker.checkers["date-time"] = (date_time, raises)
    return checker


FORMAT_CHECKER = _format_checker()

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
        schema(name), registry=_registry(), format_checker=FORMAT_CHECKER
    )


def _parts(error: ValidationError) -> list[str | int]:
    """The instance path of the error; a missing required property is reported at its own path
    (`$.event`, not `$`), as Protocols names the field (`properties.products is required`)."""
    parts = list(error.absolute_path)
    if error.validator == "required" and (key := _missing_key(error)) is not None:
        parts.append(key)
    return parts


def _missing_key(error: ValidationError) -> str | None:
    """The key a `required` error is about: jsonschema reports each missing key on its own."""
    return next((key for key in error.validator_value if error.message.startswith(f"{key!r} ")), None)


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


def _json(value: Any) -> str:
    """A value as the payload spelled it (`null`, `true`, `"text"`), not as Python's repr."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def _shown(value: Any) -> str:
    text = _json(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


# A key pattern of mailjet.common.json: the key's letters in either case, to the end of the text (`^[Aa][Cc][Tt]...$(?!\n)`).
_ANY_CASE_LETTER = re.compile(r"\[([A-Z])([a-z])\]")
_ANY_CASE_KEY = re.compile(r"\^((?:\[[A-Z][a-z]\]|[0-9_])+)\$\(\?!\\n\)")


def _unknown_keys(error: ValidationError) -> str:
    """additionalProperties: which keys, and the keys the object may hold (a key pattern that
    matches any case is named in lower case, with "any case" said)."""
    schema, instance = error.schema, error.instance
    known = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    extras = [key for key in instance if key not in known and not any(re.search(p, key) for p in patterns)]
    any_case = [_ANY_CASE_LETTER.sub(lambda m: m.group(2), key[1]) for p in patterns if (key := _ANY_CASE_KEY.fullmatch(p))]
    if not extras:
        return error.message
    message = f"unknown key{'s' if len(extras) > 1 else ''} {', '.join(_json(key) for key in extras)}"
    if len(any_case) == len(patterns) and (known or patterns):
        allowed = ", ".join(known + any_case)
        message += f"; allowed{' (in any case)' if any_case else ''}: {allowed}"
    return message


def _message(error: ValidationError) -> str:
    """What was expected and what was found, values written as JSON: jsonschema's own messages
    show Python's repr (`None`, `True`, `'text'`), and combinators (`anyOf`/`oneOf`/`not`) print the
    whole instance, so the schema's own `description` is used when it has one; size rules name the
    size and the limit; a rule on property names says it refused a key. Capped in length: messages
    are recorded on stored events."""
    rule, expected, found = error.validator, error.validator_value, error.instance
    if rule in ("anyOf", "oneOf", "not") and isinstance(error.schema, dict) and "description" in error.schema:
        message = error.schema["description"]
    elif rule in _SIZES and isinstance(found, (list, str, dict)):
        unit, bound = _SIZES[str(rule)]
        message = f"{_shown(found)} has {len(found)} {unit}, expected {bound} {expected}"
    elif rule == "type":
        message = f"{_shown(found)} is not of type {expected if isinstance(expected, str) else ' or '.join(expected)}"
    elif rule == "const":
        message = f"{_json(expected)} was expected, got {_shown(found)}"
    elif rule == "enum":
        message = f"{_shown(found)} is not one of {_json(expected)}"
    elif rule == "pattern":
        described = f" ({error.schema['description']})" if isinstance(error.schema, dict) and "description" in error.schema else ""
        message = f"{_shown(found)} does not match {expected}{described}"
    elif rule == "format":
        message = f"{_shown(found)} is not a valid {expected}"
    elif rule == "required" and (key := _missing_key(error)) is not None:
        message = f"{_json(key)} is required"
    elif rule == "dependentRequired" and isinstance(found, dict):
        needs = [f"{_json(key)} needs {_json(need)}" for key, needs in expected.items() if key in found for need in needs if need not in found]
        message = "; ".join(needs)
    elif rule == "additionalProperties" and isinstance(found, dict) and isinstance(error.schema, dict):
        message = _unknown_keys(error)
    else:
        message = error.message
    if "propertyNames" in error.absolute_schema_path:
        # The instance is a key of the object at the error's path, which jsonschema does not say;
        # a description (a combinator's) does not show it either.
        described = rule in ("anyOf", "oneOf", "not") and isinstance(error.schema, dict) and "description" in error.schema
        message = f"key {_json(found)}: {message}" if described else f"key {message}"
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
