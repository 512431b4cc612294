"""Decoding the JSON a client sent, the one way both fakes do it: the reader the destination uses
(destination/json_body.py, with the reasons for each rule), and a variant for snapshot documents."""

from __future__ import annotations

from typing import Any

from destination.json_body import MAX_DEPTH, fits_depth, nesting_depth, read_json_nested, read_with_json
from destination.json_body import read_json as decode_json

__all__ = ["MAX_DEPTH", "decode_json", "decode_snapshot", "fits_depth", "nesting_depth", "read_with_json"]

# How much deeper a snapshot nests what it holds (document, state, workspaces, list, record, ...).
SNAPSHOT_WRAPPING = 8


def decode_snapshot(raw: bytes) -> Any:
    """A snapshot document, read as `decode_json` reads a body but without its depth limit: it holds
    values that may each nest MAX_DEPTH levels, a few levels down, and its loaders check each with
    `fits_depth`. (orjson still stops at 1,024 levels; json, for what orjson refuses, at
    MAX_DEPTH + SNAPSHOT_WRAPPING.)"""
    return read_json_nested(raw, MAX_DEPTH + SNAPSHOT_WRAPPING)
