"""A fast yes/no answer to "does this message meet contract X?", for the tracking API's hot path.

jsonschema walks the schema and resolves every `$ref` on each call: about 1 ms for a Segment
message, which caps /v1/batch near 1,000 events/s. The tracking API validates every message, so it
asks this check first and runs jsonschema (for the violation details) only when the answer is no.
The check is jsonschema-rs (a compiled validator: ~1 µs a message, ~7 µs for the Python closures
it replaced; benchmarks/, issue 10) over the same schema files, so the answer is the same as
`contracts.is_valid`. Formats keep jsonschema's meaning (jsonschema-rs's own `email` is stricter,
its `date-time` laxer): `date-time`, on every message four times, is rewritten as the equivalent
`pattern`, checked in Rust; the others are checked by jsonschema's format checker.
"""

from __future__ import annotations

from functools import cache, lru_cache, partial
from typing import Any, Callable

import jsonschema_rs
from jsonschema import Draft202012Validator

import contracts

# jsonschema-rs resolves `$ref`s against absolute URIs; the contracts name each other by file
# name, which becomes relative to this base (never fetched: every document is in the registry).
_BASE = "https://segjet.invalid/contracts/"
_FORMATS = Draft202012Validator.FORMAT_CHECKER  # the checker contracts.validate uses

# jsonschema's `date-time` (rfc3339-validator on the upper-cased text: its pattern, no year 0, no
# day past the month's end) as one regular expression. Calling back into Python for each
# date-time cost 1.5 µs, a tenth of a message's ingestion with distinct timestamps.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
# `\n?$`: Python's `$`, in rfc3339-validator, also matches before a final newline; Rust's does not.
DATE_TIME_PATTERN = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)[Tt]{_TIME}\n?$"


def is_valid(name: str, payload: Any) -> bool:
    """Same answer as `contracts.is_valid(name, payload)`, much faster."""
    validator = _validator(name)
    try:
        return validator.is_valid(payload)
    except ValueError:
        # A value JSON cannot hold (bytes, a set: only a message built in Python can have one),
        # which jsonschema-rs refuses to read: jsonschema itself answers.
        return contracts.is_valid(name, payload)


def all_valid(name: str, payloads: list[Any]) -> bool:
    """Same as `all(is_valid(name, payload) for payload in payloads)`, in one call: a batch's
    messages of one type are checked at once (~0.3 µs a message less than one call each)."""
    validator = _array_validator(name)
    try:
        return validator.is_valid(payloads)
    except ValueError:
        return all(contracts.is_valid(name, payload) for payload in payloads)


def _with_absolute_id(name: str) -> dict[str, Any]:
    return {**_date_time_as_pattern(contracts.schema(name)), "$id": f"{_BASE}{name}.json"}


def _date_time_as_pattern(schema: Any) -> Any:
    """A copy of `schema` where each `"format": "date-time"` is DATE_TIME_PATTERN instead."""
    if isinstance(schema, list):
        return [_date_time_as_pattern(item) for item in schema]
    if not isinstance(schema, dict):
        return schema  # a JSON scalar: immutable
    rewritten = {key: _date_time_as_pattern(value) for key, value in schema.items()}
    if rewritten.get("format") == "date-time":
        del rewritten["format"]
        rewritten["allOf"] = [*rewritten.get("allOf", []), {"pattern": DATE_TIME_PATTERN}]
    return rewritten


@cache
def _registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(f"{_BASE}{name}.json", _with_absolute_id(name)) for name in contracts.schema_names()])


@cache
def _format_checks() -> dict[str, Callable[[str], bool]]:
    # Cached, and called by jsonschema-rs with no Python frame in between on a hit: the same
    # emails and dates come back with each of a user's messages. Not date-time: it is a pattern.
    return {
        name: lru_cache(maxsize=4096)(partial(_FORMATS.conforms, format=name))
        for name in _FORMATS.checkers
        if name != "date-time"
    }


@cache
def _validator(name: str) -> Any:
    # An unknown contract raises UnknownContract here, as contracts.is_valid would.
    return _compile(_with_absolute_id(name))


@cache
def _array_validator(name: str) -> Any:
    contracts.schema(name)  # an unknown contract raises here too
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array",
              "items": {"$ref": f"{_BASE}{name}.json"}}
    return _compile(schema)


def _compile(schema: dict[str, Any]) -> Any:
    # Every document is in the registry, so nothing is ever fetched.
    return jsonschema_rs.validator_for(
        schema,
        registry=_registry(),
        validate_formats=True,
        formats=_format_checks(),
    )
