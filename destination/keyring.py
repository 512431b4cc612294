"""Which Mailjet account a Segment authentication key stands for.

Real Mailjet shows one authentication key per account on App Connections → Segment; the
destination looks the key up and calls that account's API with its API key pair. The base URL is
per account so the same code talks to `https://api.mailjet.com/` or to a fake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol
from urllib.parse import urlsplit

from .http_rules import basic_username_problem, unreachable_url


class KeyRingError(ValueError):
    """A key ring file or object that cannot be loaded."""


@dataclass(frozen=True)
class MailjetAccount:
    base_url: str
    api_key: str
    # Kept out of repr so that logs and tracebacks never show the secret.
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        # Paths are appended as "/v3/REST/...": accept "https://api.mailjet.com/" and the bare host alike.
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


class AccountLookup(Protocol):
    """What the destination asks of its keys: the account an authentication key stands for, or None."""

    def account_for(self, auth_key: str) -> MailjetAccount | None: ...


class KeyRing:
    """Authentication key → Mailjet account, fixed at start (a file: `python -m destination --keyring`)."""

    def __init__(self, accounts: Mapping[str, MailjetAccount]) -> None:
        self._accounts = dict(accounts)

    def account_for(self, auth_key: str) -> MailjetAccount | None:
        return self._accounts.get(auth_key)

    def __len__(self) -> int:
        return len(self._accounts)

    @classmethod
    def from_json(cls, data: Any) -> KeyRing:
        """From `{"accounts": {auth_key: {"base_url", "api_key", "secret_key"}}}`."""
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), dict):
            raise KeyRingError('a key ring is a JSON object {"accounts": {auth_key: {"base_url", "api_key", "secret_key"}}}')
        accounts = {}
        for auth_key, entry in data["accounts"].items():
            if not auth_key:
                raise KeyRingError("an authentication key in the key ring is empty")
            missing = [name for name in ("base_url", "api_key", "secret_key") if not isinstance(entry, dict) or not isinstance(entry.get(name), str) or not entry[name]]
            if missing:
                raise KeyRingError(f"key ring entry {auth_key!r} lacks non-empty string field(s): {', '.join(missing)}")
            # Refused here, not met as a 503 at every identify (which Segment retries for hours).
            problem = _base_url_problem(entry["base_url"]) or _username_problem("authentication key", auth_key) or _username_problem(
                "api_key", entry["api_key"]
            )
            if problem is not None:
                raise KeyRingError(f"key ring entry {auth_key!r}: {problem}")
            accounts[auth_key] = MailjetAccount(entry["base_url"], entry["api_key"], entry["secret_key"])
        return cls(accounts)

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"cannot read key ring {path}: {exc}") from exc
        return cls.from_json(data)


def _base_url_problem(url: str) -> str | None:
    """Why `url` cannot be an account's base URL (paths such as /v3/REST/contact are appended), or None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a broken IPv6 host
        return f"base_url {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"base_url {url!r} is not an http(s) URL with a host"
    if parts.query or parts.fragment or parts.username is not None:
        return f"base_url {url!r} must carry no query, fragment nor user:password (the API key pair signs each call)"
    unreachable = unreachable_url(url)
    return None if unreachable is None else f"base_url {url!r}: {unreachable}"


def _username_problem(what: str, value: str) -> str | None:
    """Segment sends the authentication key, and the destination the API key, as a Basic auth user name."""
    problem = basic_username_problem(value)
    return None if problem is None else f"the {what} {problem}"
