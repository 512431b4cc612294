"""A fast yes/no answer to "does this message meet contract X?", compiled once per contract.

jsonschema walks the schema and resolves every `$ref` on each call: about 1 ms for a Segment
message, which caps /v1/batch near 1,000 events/s. The tracking API validates every message, so it
asks this compiled predicate first and runs jsonschema (for the violation details) only when the
answer is no. Only the keywords our contracts use are compiled; a contract using any other keyword
is checked by jsonschema itself, so the answer never differs from `contracts.is_valid`.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any, Callable

import contracts
from jsonschema import Draft202012Validator

Check = Callable[[Any], bool]

# Keywords that never affect validity.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "title", "description", "examples", "default", "deprecated",
     "readOnly", "writeOnly"}
)
_FORMATS = Draft202012Validator.FORMAT_CHECKER  # the checker contracts.validate uses


class _Unsupported(Exception):
    pass


def is_valid(name: str, payload: Any) -> bool:
    """Same answer as `contracts.is_valid(name, payload)`, much faster for compiled contracts."""
    return _check_for(name)(payload)


@cache
def _check_for(name: str) -> Check:
    contracts.schema(name)  # an unknown contract raises here, as contracts.is_valid would
    try:
        return _Compiler().reference(f"{name}.json", "")
    except _Unsupported:
        return lambda payload: contracts.is_valid(name, payload)


@lru_cache(maxsize=4096)
def _conforms(value: str, format_name: str) -> bool:
    # Timestamps repeat a lot (a batch's sentAt is on every item), and RFC 3339 parsing is not free.
    return _FORMATS.conforms(value, format_name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    # As jsonschema: 1.0 is an integer, True is not.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON Schema means it: true is not 1, 1 is 1.0, containers compare deeply."""
    if left.__class__ is str and right.__class__ is str:  # the common case: type and event names
        return left == right
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[key], right[key]) for key in left)
    return type(left) is type(right) and left == right


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda value: True
    if len(checks) == 1:
        return checks[0]

    def check(value: Any) -> bool:
        for each in checks:
            if not each(value):
                return False
        return True

    return check


class _Compiler:
    def __init__(self) -> None:
        self._compiled: dict[tuple[str, str], Check] = {}

    def reference(self, document: str, pointer: str) -> Check:
        key = (document, pointer)
        if key not in self._compiled:
            slot: list[Check] = []
            self._compiled[key] = lambda value: slot[0](value)  # a recursive $ref calls back through the slot
            slot.append(self.compile(_resolve(contracts.schema(document.removesuffix(".json")), pointer), document))
            self._compiled[key] = slot[0]
        return self._compiled[key]

    def compile(self, schema: Any, document: str) -> Check:
        if schema is True:
            return lambda value: True
        if schema is False:
            return lambda value: False
        if not isinstance(schema, dict):
            raise _Unsupported(schema)
        checks: list[Check] = []
        for keyword, argument in schema.items():
            if keyword in _ANNOTATIONS or keyword in ("additionalProperties", "then", "else"):
                continue  # the last three are compiled with "properties" and "if"
            checks.append(self._keyword(keyword, argument, schema, document))
        if "additionalProperties" in schema and "properties" not in schema:
            checks.append(self._properties({}, schema["additionalProperties"], document))
        return _all(checks)

    def _keyword(self, keyword: str, argument: Any, schema: dict[str, Any], document: str) -> Check:
        if keyword == "$ref":
            target, _, pointer = argument.partition("#")
            return self.reference(target or document, pointer)
        if keyword == "type":
            kinds = [_TYPES[argument]] if isinstance(argument, str) else [_TYPES[name] for name in argument]
            return kinds[0] if len(kinds) == 1 else (lambda value: any(kind(value) for kind in kinds))
        if keyword == "properties":
            return self._properties(argument, schema.get("additionalProperties"), document)
        if keyword == "required":
            names = tuple(argument)
            return lambda value: not isinstance(value, dict) or all(name in value for name in names)
        if keyword == "const":
            return lambda value: _json_equal(value, argument)
        if keyword == "enum":
            return lambda value: any(_json_equal(value, option) for option in argument)
        if keyword == "minLength":
            return lambda value: not isinstance(value, str) or len(value) >= argument
        if keyword == "maxLength":
            return lambda value: not isinstance(value, str) or len(value) <= argument
        if keyword == "pattern":
            regex = re.compile(argument)
            return lambda value: not isinstance(value, str) or regex.search(value) is not None
        if keyword == "format":
            return lambda value: not isinstance(value, str) or _conforms(value, argument)
        if keyword == "minProperties":
            return lambda value: not isinstance(value, dict) or len(value) >= argument
        if keyword == "items" and isinstance(argument, (dict, bool)) and "prefixItems" not in schema:
            item = self.compile(argument, document)
            return lambda value: not isinstance(value, list) or all(item(element) for element in value)
        if keyword == "minItems":
            return lambda value: not isinstance(value, list) or len(value) >= argument
        if keyword == "maxItems":
            return lambda value: not isinstance(value, list) or len(value) <= argument
        if keyword == "allOf":
            return _all([self.compile(part, document) for part in argument])
        if keyword == "anyOf":
            options = [self.compile(part, document) for part in argument]
            return lambda value: any(option(value) for option in options)
        if keyword == "not":
            negated = self.compile(argument, document)
            return lambda value: not negated(value)
        if keyword == "if":
            condition = self.compile(argument, document)
            then = self.compile(schema.get("then", True), document)
            otherwise = self.compile(schema.get("else", True), document)
            return lambda value: then(value) if condition(value) else otherwise(value)
        raise _Unsupported(keyword)

    def _properties(self, properties: dict[str, Any], additional: Any, document: str) -> Check:
        known = {name: self.compile(subschema, document) for name, subschema in properties.items()}
        extra = None if additional is None else self.compile(additional, document)

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for name, element in value.items():
                rule = known.get(name, extra)
                if rule is not None and not rule(element):
                    return False
            return True

        return check


def _resolve(document: Any, pointer: str) -> Any:
    """The part of `document` a JSON pointer (`/$defs/context`) names."""
    for token in filter(None, pointer.split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document
