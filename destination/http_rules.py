"""What an outgoing call needs to be made at all: a URL that can be posted to, a Basic auth user name.

The destination's key ring checks its accounts with these; the fake Mailjet checks webhook URLs and
API keys with the same rules (the emulator may import the destination, never the reverse).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def unreachable_url(url: str) -> str | None:
    """Why an http(s) URL could never be posted to (a port that is no port, a broken IPv6 host, a
    host name with an empty label or one over 63 characters, credentials Basic auth cannot carry),
    or None. Accepted, such a URL failed every attempt for a day."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return str(exc)
    if not parts.hostname:
        return "no host"
    try:
        parts.hostname.encode("idna")  # as the resolver is asked, which raised on each attempt
    except UnicodeError:
        return "host name labels must be 1 to 63 characters"
    for credential in (parts.username, parts.password):
        if credential is not None and not _latin1(unquote(credential)):
            return "user name and password must be Latin-1 (Basic auth)"
    return None


def basic_username_problem(name: str) -> str | None:
    """Why `name` cannot be a Basic auth user name (an API key, a Segment authentication key), or
    None: the user name ends at the first colon (RFC 7617)."""
    if ":" in name:
        return "must not contain ':', a colon, which Basic auth could not carry"
    return None


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
