"""A fast yes/no answer to "does this message meet contract X?", for the tracking API's hot path.

jsonschema walks the schema and resolves every `$ref` on each call: about 1 ms for a Segment
message, which caps /v1/batch near 1,000 events/s. The tracking API validates every message, so it
asks this check first and runs jsonschema (for the violation details) only when the answer is no.
The check is jsonschema-rs (a compiled validator: ~1 µs a message, ~7 µs for the Python closures
it replaced; benchmarks/, issue 10) over the same schema files, so the answer is the same as
`contracts.is_valid`. Formats keep jsonschema's meaning (jsonschema-rs's own `email` is stricter,
its `date-time` laxer): `date-time`, on every message four times, is rewritten as the equivalent
`pattern`, checked in Rust; the others are checked by jsonschema's format checker. Patterns keep
Python's meaning too (see _python_pattern_format).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache, partial
from typing import Any, Callable

import jsonschema_rs

import contracts

# jsonschema-rs resolves `$ref`s against absolute URIs; the contracts name each other by file
# name, which becomes relative to this base (never fetched: every document is in the registry).
_BASE = "https://segjet.invalid/contracts/"
_FORMATS = contracts.FORMAT_CHECKER  # the checker contracts.validate uses

# jsonschema's `date-time` (rfc3339-validator on the upper-cased text: its pattern, no year 0, no
# day past the month's end) as one regular expression. Calling back into Python for each
# date-time cost 1.5 µs, a tenth of a message's ingestion with distinct timestamps.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
DATE_TIME_PATTERN = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)[Tt]{_TIME}$"


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


# jsonschema reads a pattern with Python's `re` (re.search); jsonschema-rs as ECMA-262 does. They
# differ: Python's `$` also matches before a final newline, its `\d` takes any Unicode digit
# ("١٢"), its `.` any character but "\n". A pattern made only of what both read alike (literal
# ASCII, classes, groups, quantifiers, a leading `^`) stays in Rust: the Segment contracts' prefix
# patterns are ("^spa_"), and so is such a pattern ending `$(?!\n)`, the end of the text to both
# (ECMA-262's `$` alone), as every Mailjet key pattern does. Any other is checked in Python, as a
# format of its own: segment.common's local date-time (`[.]`), which only a few traits carry.
_READ_ALIKE = re.compile(r"\^?[A-Za-z0-9_/:, \-\[\]()|+*?{}]*")
_TEXT_END = r"$(?!\n)"
_PATTERN_FORMAT = "segjet-python-pattern:"


def _ecma_pattern(pattern: str) -> str | None:
    """`pattern` as ECMA-262 must spell it to match what it matches in Python; None when unknown."""
    if _READ_ALIKE.fullmatch(pattern):
        return pattern
    if pattern.endswith(_TEXT_END) and _READ_ALIKE.fullmatch(pattern[: -len(_TEXT_END)]):
        return pattern[: -len(_TEXT_END)] + "$"
    return None


def _with_absolute_id(name: str) -> dict[str, Any]:
    return {**_rewritten(contracts.schema(name)), "$id": f"{_BASE}{name}.json"}


def _rewritten(schema: Any) -> Any:
    """A copy of `schema` that jsonschema-rs reads as jsonschema reads the original: each
    `"format": "date-time"` is DATE_TIME_PATTERN instead, each pattern not read alike is a Python
    check, each patternProperties key is read as Python reads it."""
    if isinstance(schema, list):
        return [_rewritten(item) for item in schema]
    if not isinstance(schema, dict):
        return schema  # a JSON scalar: immutable
    rewritten = {key: _rewritten(value) for key, value in schema.items()}
    extra: list[dict[str, Any]] = []
    if rewritten.get("format") == "date-time":
        del rewritten["format"]
        extra.append({"pattern": DATE_TIME_PATTERN})
    pattern = rewritten.get("pattern")
    if isinstance(pattern, str):
        ecma = _ecma_pattern(pattern)
        if ecma is None:
            del rewritten["pattern"]
            extra.append({"format": _PATTERN_FORMAT + pattern})
        else:
            rewritten["pattern"] = ecma
    if isinstance(rewritten.get("patternProperties"), dict):
        rewritten["patternProperties"] = {_key_pattern(key): value for key, value in rewritten["patternProperties"].items()}
    if extra:
        rewritten["allOf"] = [*rewritten.get("allOf", []), *extra]
    return rewritten


def _key_pattern(pattern: str) -> str:
    """A patternProperties key as ECMA-262 spells it (no format can stand for a key)."""
    ecma = _ecma_pattern(pattern)
    if ecma is None:
        raise ValueError(f"patternProperties key {pattern!r}: no ECMA-262 equivalent of its Python reading known")
    return ecma


def _python_patterns() -> set[str]:
    """Every pattern of the contracts checked in Python (see _ecma_pattern)."""
    found: set[str] = set()
    pending: list[Any] = [contracts.schema(name) for name in contracts.schema_names()]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and _ecma_pattern(pattern) is None:
                found.add(pattern)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _python_pattern_format(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda text: compiled.search(text) is not None  # as jsonschema's `pattern` keyword


@cache
def _registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(f"{_BASE}{name}.json", _with_absolute_id(name)) for name in contracts.schema_names()])


@cache
def _format_checks() -> dict[str, Callable[[str], bool]]:
    # Cached, and called by jsonschema-rs with no Python frame in between on a hit: the same
    # emails and dates come back with each of a user's messages. Not date-time: it is a pattern.
    checks = {
        name: lru_cache(maxsize=4096)(partial(_FORMATS.conforms, format=name))
        for name in _FORMATS.checkers
        if name != "date-time"
    }
    checks.update({_PATTERN_FORMAT + pattern: _python_pattern_format(pattern) for pattern in _python_patterns()})
    return checks


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
