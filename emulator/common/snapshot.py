"""The envelope of a snapshot document, the same for every fake: `GET|PUT /_emulator/snapshot`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .clock import iso

SNAPSHOT_FORMAT = "segjet-snapshot"
# The largest id or id counter a snapshot may hold. Ids are SQLite integer keys (at most 2**63 - 1)
# and counters hand out the next ones: a counter near that limit gave an id no save could write,
# and every later save failed with it. 2**53 (JavaScript's largest exact integer, which the
# dashboards read ids as) leaves room for more ids than any emulator run makes.
MAX_ID = 2**53


def snapshot_document(service: str, version: int, exported_at: datetime, state: Any) -> dict[str, Any]:
    return {"format": SNAPSHOT_FORMAT, "service": service, "version": version, "exported_at": iso(exported_at),
            "state": state}


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
