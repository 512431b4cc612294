"""The two settings of the Mailjet tile in Segment, as a direct destination receives them.

Segment sends the `apiKey` setting ("Authentication key") as the Basic auth username with an
empty password (`Authorization: Basic base64(key:)`, "the colon is always present"), and the
other settings as base64 JSON in `X-Segment-Settings` (reference/segment.md §5.2, §7.1).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .json_body import read_json


_INT64_MAX = 2**63 - 1


class SettingsError(ValueError):
    """The settings Segment sent cannot be used; answered 400 (Segment does not retry it)."""


class MissingAuthenticationKey(ValueError):
    """No usable authentication key in `Authorization`; answered 401."""


@dataclass(frozen=True)
class DestinationSettings:
    api_key: str
    list_id: int


def parse_authentication_key(authorization: str | None) -> str:
    """The Segment authentication key: the username of `Authorization: Basic base64(key:)`."""
    if not authorization:
        raise MissingAuthenticationKey("missing Authorization header: expected Basic auth with the Mailjet authentication key as username")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise MissingAuthenticationKey(f"unsupported Authorization scheme {scheme!r}: expected Basic")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except ValueError as exc:  # bad base64 (binascii.Error), non-ASCII header text, or a key not UTF-8
        raise MissingAuthenticationKey("Authorization header is not valid base64 of 'key:'") from exc
    # The password is always empty for direct destinations; tolerate a missing colon.
    key = decoded.partition(":")[0]
    if not key:
        raise MissingAuthenticationKey("empty authentication key in Authorization header")
    return key


def parse_settings_header(header: str | None) -> dict[str, Any]:
    """The settings object carried base64-encoded in `X-Segment-Settings`; {} when absent."""
    if header is None or not header.strip():
        return {}
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except ValueError as exc:  # bad base64 (binascii.Error), or non-ASCII header text
        raise SettingsError("X-Segment-Settings is not valid base64") from exc
    try:
        settings = read_json(raw)
    except ValueError as exc:
        raise SettingsError(f"X-Segment-Settings is not base64 of JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise SettingsError(f"X-Segment-Settings must be a JSON object, got {type(settings).__name__}")
    return settings


def parse_list_id(value: Any) -> int:
    """`listId` is a string setting holding a positive integer (Mailjet list ids are integers)."""
    # A JSON number is accepted too: a hand-written settings header often has one.
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise SettingsError(f"setting listId must be a string holding a positive integer, got {json.dumps(value)}")
    # Mailjet ids are int64 (ListID, reference/mailjet.md §3). The length is checked before int():
    # past 4,300 digits int() raises a ValueError of its own, which would be answered 500.
    digits = text.lstrip("0")
    if not text.isascii() or not text.isdigit() or not digits or len(digits) > 19 or int(digits) > _INT64_MAX:
        raise SettingsError(f"setting listId must be a positive integer (a Mailjet contact list id), got {_shorten(json.dumps(value))}")
    return int(digits)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def parse_settings(authorization: str | None, settings_header: str | None) -> DestinationSettings:
    """Both settings from the request headers; raises MissingAuthenticationKey or SettingsError."""
    api_key = parse_authentication_key(authorization)
    settings = parse_settings_header(settings_header)
    # listId is required with a default of "1" in the tile, so Segment always sends a value; its
    # absence means a caller other than Segment, and guessing list 1 could fill the wrong list.
    if "listId" not in settings:
        raise SettingsError("setting listId is required (X-Segment-Settings has no listId)")
    return DestinationSettings(api_key=api_key, list_id=parse_list_id(settings["listId"]))
