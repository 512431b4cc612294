"""The envelope of a snapshot document, the same for every fake: `GET|PUT /_emulator/snapshot`."""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from .clock import iso

SNAPSHOT_FORMAT = "segjet-snapshot"
# The largest id or id counter a snapshot may hold. Ids are SQLite integer keys (at most 2**63 - 1)
# and counters hand out the next ones: a counter near that limit gave an id no save could write,
# and every later save failed with it. 2**53 (JavaScript's largest exact integer, which the
# dashboards read ids as) leaves room for more ids than any emulator run makes.
MAX_ID = 2**53


# An integer orjson would read as a double (outside [-2**63, 2**64)) has at least 19 digits: found
# as 19 marks in a row once digits are marked (bytes.translate; a regex took as long as json.loads).
_DIGITS_MARKED = bytes.maketrans(b"0123456789", b"##########")
_LONG_NUMBER = b"#" * 19
# Text with no more brackets than this nests no deeper, far below where json.loads recursed too
# deep (~1,000 levels); orjson.dumps checks a value from longer text (it stops at 255 levels).
_ORJSON_DUMPS_DEPTH = 255


def read_stored_json(data: Any) -> Any:
    """A stored row's JSON text exactly as `json.loads(data)` reads it (value, or the error it
    raises), in half the time: a restart reads every row.

    orjson is used only where it gives json's value: on text (not bytes) without a run of 19 digits
    (json keeps a longer integer whole, orjson makes it a double), and, for text with over 255
    brackets, only if orjson can encode the value again (no deeper than 255 levels: json recursed,
    and past ~1,000 levels raised RecursionError). What orjson refuses (NaN, lone surrogates,
    damage by hand) goes to json, which accepts or refuses it with its own message, as before.
    (orjson and json read floats to the same double.)
    """
    if isinstance(data, str):
        # surrogatepass: such text is no UTF-8, so orjson refuses it and json decides.
        raw = data.encode("utf-8", "surrogatepass")
        if _LONG_NUMBER not in raw.translate(_DIGITS_MARKED):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
            else:
                if raw.count(b"[") + raw.count(b"{") <= _ORJSON_DUMPS_DEPTH:
                    return value  # no deeper than its brackets
                try:
                    orjson.dumps(value)
                    return value
                except orjson.JSONEncodeError:
                    pass
    return json.loads(data)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a whole state is read (also a decorator): every object
    made is kept, so its passes, each walking all the objects kept so far, found nothing and took a
    third of a restart. Sync code only (the event loop is held anyway); the collector is turned back
    on only if it was on, so nested uses and other threads' are left as they were."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def snapshot_document(service: str, version: int, exported_at: datetime, state: Any) -> dict[str, Any]:
    return {"format": SNAPSHOT_FORMAT, "service": service, "version": version, "exported_at": iso(exported_at),
            "state": state}


def snapshot_response(document: dict[str, Any]) -> Response:
    """A snapshot document as the answer to `GET /_emulator/snapshot`, rendered with orjson: json took
    2.1 s of the event loop every server of the bundle shares at 100,000 messages, orjson 0.26 s.
    What orjson refuses (an integer beyond 64 bits) is rendered by json, as any other answer."""
    try:
        return Response(orjson.dumps(document), media_type="application/json")
    except orjson.JSONEncodeError:
        return JSONResponse(document)


def snapshot_state(document: Any, service: str, version: int, error: type[ValueError]) -> Any:
    """The `state` of a snapshot of `service` at `version`; raises `error` naming what does not fit."""
    if not isinstance(document, dict):
        raise error("a snapshot must be a JSON object")
    if document.get("format") != SNAPSHOT_FORMAT:
        raise error(f"format must be {SNAPSHOT_FORMAT!r}, got {document.get('format')!r}")
    if document.get("service") != service:
        raise error(f"service must be {service!r}: this is the fake {service}; the snapshot is of {document.get('service')!r}")
    if type(document.get("version")) is not int or document["version"] != version:  # `true == 1` in Python
        raise error(f"version must be {version}: snapshot version {document.get('version')!r} is not supported")
    if "state" not in document:
        raise error("missing state")
    return document["state"]
