"""Reading JSON the one way segjet does it: what the destination is sent (a Segment message, the
settings header) or answered, and every body either fake reads (emulator/common/json_body.py uses
this module: the destination imports nothing of the emulator, the emulator may import it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Iterable

import orjson

# The deepest JSON any body may nest: what orjson can encode again (it stops at 255 levels, with
# JSONEncodeError). Every answer that shows a message nests it a level or two deeper, and Python's
# json, which renders those answers, recurses on the interpreter's stack: at ~1,000 levels (what
# orjson reads) a message was accepted and then broke every answer and delivery that showed it.
MAX_DEPTH = 254
# orjson's reader (yyjson) stops at 1,024 levels in its own code, with this message (since orjson
# 3.9.15, CVE-2024-27454).
_ORJSON_TOO_DEEP = "depth limit exceeded"
# A JSON string, or an unterminated one to the end; no backtracking either way.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def read_with_json(raw: bytes | str) -> Any:
    """json.loads, but only JSON's own numbers: no NaN or Infinity, no number beyond a double, and
    integers as orjson reads them (beyond 64 bits a double), so a body reads the same either way."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_orjson_int)


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not, nor does any encoder that renders
    # the value back (Starlette's JSONResponse, orjson).
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 parses to inf, which no JSON encoder can render back.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _orjson_int(text: str) -> int | float:
    # orjson keeps an integer in [-2**63, 2**64) and reads a longer one as a double (refusing one
    # beyond a double's range): json alone kept 10**400 whole, and only when orjson had refused
    # something else in the body (a lone surrogate).
    number = int(text)
    if -(2**63) <= number < 2**64:
        return number
    try:
        return _finite_float(text)
    except OverflowError:
        raise ValueError(f"number {text[:40]} is out of range") from None


def read_json(raw: bytes, fallback: Callable[[bytes], Any] = read_with_json) -> Any:
    """`raw` as JSON, or ValueError (UnicodeDecodeError for bytes that are no text).

    orjson first: twice as fast as json. What it refuses goes to `fallback` (json), which decides
    and explains (json also reads lone surrogates, a byte order mark and UTF-16), unless it is
    nested deeper than MAX_DEPTH: json recurses on the interpreter's stack, and near its limit any
    finalizer the garbage collector runs meanwhile fails (pytest saw RecursionError in
    weakref.finalize). A lone surrogate escape ("\\ud800") is read as U+FFFD, as Go's
    encoding/json reads it (Segment's edge is Go): kept as a surrogate, the string could never be
    encoded as UTF-8 again, so every answer showing it would fail. One difference from json is
    left: an integer beyond 64 bits becomes a float (RFC 8259 §6 leaves such numbers to the
    reader; JavaScript and Go read every number as a double).
    """
    value = read_json_nested(raw, MAX_DEPTH, fallback)
    if not fits_depth(value):
        raise _too_deep(MAX_DEPTH)
    return value


def fits_depth(value: Any) -> bool:
    """Whether `value` nests at most MAX_DEPTH levels: the exact check, and the cheapest (orjson
    encodes at most that deep; ~1 µs for 10 KB)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        return "Recursion limit" not in str(exc)  # anything else (an integer beyond 64 bits) is no depth
    return True


def read_json_nested(raw: bytes, max_depth: int, fallback: Callable[[bytes], Any] = read_with_json) -> Any:
    """`raw` as `read_json` reads it, but the depth is left to the caller (`fits_depth`): orjson reads
    up to its own 1,024 levels, and json, for what orjson refuses, up to `max_depth`."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith(_ORJSON_TOO_DEEP):
            raise _too_deep(max_depth) from None
    if nesting_depth(_as_utf8(raw)) > max_depth:
        raise _too_deep(max_depth)
    try:
        value = fallback(raw)
    except RecursionError:  # the caller's own stack was deep already
        raise ValueError("JSON is nested too deeply") from None
    # Always walked: a UTF-16 body (which json also reads) hides its escapes from a byte search.
    return _without_lone_surrogates(value)


def _as_utf8(raw: bytes) -> bytes:
    """`raw` in UTF-8 when json would read it as UTF-16 or UTF-32, for `nesting_depth` only (the
    fallback decides on the bytes as they came): there an escaped quote is `\\`, NUL, `"`, and the
    byte search took that `"` for the string's end, hiding every bracket after it."""
    encoding = json.detect_encoding(raw)
    if encoding in ("utf-8", "utf-8-sig"):
        return raw
    return raw.decode(encoding, "replace").encode("utf-8")


def _too_deep(max_depth: int) -> ValueError:
    return ValueError(f"JSON is nested more than {max_depth} levels deep")


def _without_lone_surrogates(value: Any) -> Any:
    """`value` with each lone surrogate in its strings (keys too) replaced by U+FFFD; objects and
    arrays are changed in place, walked without recursion. (json has joined every valid pair.)"""
    if isinstance(value, str):
        return _SURROGATE.sub(REPLACEMENT_CHARACTER, value)
    pending = [value] if isinstance(value, (dict, list)) else []
    while pending:
        container = pending.pop()
        slots: Iterable[Any]
        if isinstance(container, dict):
            entries = [(_SURROGATE.sub(REPLACEMENT_CHARACTER, key), item) for key, item in container.items()]
            container.clear()
            container.update(entries)
            slots = list(container)
        else:
            slots = range(len(container))
        for slot in slots:
            item = container[slot]
            if isinstance(item, str):
                container[slot] = _SURROGATE.sub(REPLACEMENT_CHARACTER, item)
            elif isinstance(item, (dict, list)):
                pending.append(item)
    return value


def nesting_depth(raw: bytes) -> int:
    """How deep the arrays and objects of `raw` nest (brackets inside strings ignored), counted
    without recursion; `raw` need not be valid JSON."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest
