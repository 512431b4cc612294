"""Reading the JSON the destination is sent (a Segment message, the settings header) or answered.

A copy of the emulator's reader (emulator/common/json_body.py: the reasons are written there),
because the destination imports nothing of the emulator.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 1024
_TOO_DEEP = "depth limit exceeded"
FALLBACK_MAX_DEPTH = 500
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and Mailjet) do not.
    raise ValueError(f"{name} is not valid JSON")


def read_json(raw: bytes) -> Any:
    """`raw` as JSON, or ValueError (UnicodeDecodeError for bytes that are no text): orjson, then
    json for what orjson refuses (lone surrogates) unless nested too deeply for json to recurse."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith(_TOO_DEEP):
            raise ValueError(f"JSON is nested more than {MAX_DEPTH:,} levels deep") from None
    depth = nesting_depth(raw)
    if depth > FALLBACK_MAX_DEPTH:
        raise ValueError(f"JSON is nested too deeply ({depth:,} levels)")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
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
