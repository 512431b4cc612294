"""Settings of one segjet bundle: addresses, credentials, and behaviour switches."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any


def new_authentication_key() -> str:
    """A fresh Segment authentication key, as Mailjet shows one per account on its App Connections page."""
    return secrets.token_hex(16)


@dataclass
class BundleConfig:
    host: str = "127.0.0.1"
    segment_port: int = 8701
    mailjet_port: int = 8702
    destination_port: int = 8703
    write_key: str = "segjet-write-key"
    mailjet_api_key: str = "segjet-api-key"
    mailjet_secret_key: str = "segjet-secret-key"
    auth_key: str = field(default_factory=new_authentication_key)
    list_id: int = 1
    seed: int | None = None
    strict: bool = False
    # False skips the contract check at ingest (no violations recorded, --strict has nothing to
    # reject): only for measuring what validation costs (benchmarks/).
    validate: bool = True
    enable_destination: bool = True
    # Extra Segment sources beyond the default one: [{"name": ..., "write_key": ...}].
    sources: list[dict[str, Any]] = field(default_factory=list)
    # Capped feeds: the newest entries are kept, older ones dropped and counted ("dropped").
    journal_capacity: int = 10_000
    events_capacity: int = 200_000
    # Fault rules loaded at start (`--faults FILE`): {"segment": [rule...], "mailjet": [rule...]}.
    faults: dict[str, list[Any]] = field(default_factory=dict)
    # When set, /_emulator/* needs `Authorization: Bearer <token>`, `X-Segjet-Token: <token>` or `?token=<token>`.
    control_token: str | None = None
    # Engage: definitions as in DESIGN §3 (also POST /_emulator/engage/...), and when syncs run:
    # a duration of virtual time ("2h"), "realtime" (on each change) or "manual" (POST engage/sync).
    engage_audiences: list[dict[str, Any]] = field(default_factory=list)
    engage_traits: list[dict[str, Any]] = field(default_factory=list)
    engage_sync_interval: str = "2h"
    # `segjet up --data-dir DIR`: each fake keeps its state in DIR (segment.sqlite3, mailjet.sqlite3)
    # and finds it again after a restart. None: memory only.
    data_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BundleUrls:
    segment_url: str
    mailjet_url: str
    destination_url: str
