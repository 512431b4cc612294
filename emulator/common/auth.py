"""HTTP Basic credentials, as both fakes read them."""

from __future__ import annotations

import base64


def basic_credentials(authorization: str | None) -> tuple[str, str | None] | None:
    """`(username, password)` of a Basic `Authorization` header; password None when there is no colon.

    None when the header is absent, not Basic, or not valid base64 UTF-8.
    """
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # bad base64 (binascii.Error), non-ASCII header text, or credentials not UTF-8
        return None
    username, separator, password = decoded.partition(":")
    return username, (password if separator else None)
