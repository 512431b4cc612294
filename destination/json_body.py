"""Reading the JSON the destination is sent (a Segment message, the settings header)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and Mailjet) do not.
    raise ValueError(f"{name} is not valid JSON")


def read_json(raw: bytes) -> Any:
    """`raw` as JSON, or ValueError (UnicodeDecodeError for bytes that are no text).

    json decides, but only after orjson, which refuses nesting deeper than 1,024 levels in its own
    code: json recurses on the interpreter's stack to the recursion limit, where any finalizer the
    garbage collector runs meanwhile fails. (The emulator guards its own servers the same way; the
    destination imports nothing of the emulator.)
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit exceeded"):
            raise ValueError("JSON is nested more than 1,024 levels deep") from None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None
