"""Decoding the JSON a client sent, the one way both fakes do it."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import orjson

# orjson's reader (yyjson) stops at this depth in its own code, with this message (since orjson
# 3.9.15, CVE-2024-27454).
MAX_DEPTH = 1024
_TOO_DEEP = "depth limit exceeded"
# json recurses once a level on the interpreter's stack (1,000 frames by default): it is given
# only bodies shallow enough to leave room for the frames below it.
FALLBACK_MAX_DEPTH = 500
# A JSON string, or an unterminated one to the end; no backtracking either way.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def decode_json(raw: bytes, fallback: Callable[[bytes], Any] = json.loads) -> Any:
    """`raw` as JSON, or ValueError (UnicodeDecodeError for bytes that are no text).

    orjson first: twice as fast as json. What it refuses goes to `fallback` (json), which decides
    and explains (json also reads lone surrogates, a byte order mark and UTF-16), unless it is
    nested deeper than FALLBACK_MAX_DEPTH: json would recurse to the interpreter's recursion
    limit, where any finalizer the garbage collector runs meanwhile fails (pytest saw
    RecursionError in weakref.finalize). One difference from json is left: an integer beyond 64
    bits becomes a float (RFC 8259 §6 leaves such numbers to the reader; JavaScript and Go read
    every number as a double).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith(_TOO_DEEP):
            raise ValueError(f"JSON is nested more than {MAX_DEPTH:,} levels deep") from None
    depth = nesting_depth(raw)
    if depth > FALLBACK_MAX_DEPTH:
        raise ValueError(f"JSON is nested too deeply ({depth:,} levels)")
    try:
        return fallback(raw)
    except RecursionError:  # the caller's own stack was deep already
        raise ValueError("JSON is nested too deeply") from None


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
