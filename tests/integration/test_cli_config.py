"""`segjet up --config FILE` with sources: the default workspace takes their write keys."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.cli import build_parser, config_from_args


def test_a_config_source_is_in_the_default_workspace_and_takes_messages(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"sources": [{"name": "web", "write_key": "web-write-key"}]}), encoding="utf-8")
    args = build_parser().parse_args(
        ["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0", "--config", str(path)]
    )
    with BackgroundBundle(config_from_args(args)) as info, httpx.Client(base_url=info["segment_url"]) as client:
        listed = client.get("/_emulator/sources").json()["sources"]
        assert [(source["name"], source["writeKey"]) for source in listed] == [
            ("segjet", info["write_key"]), ("web", "web-write-key"),
        ]
        sent = client.post("/v1/track", auth=("web-write-key", ""), json={"userId": "u1", "event": "Signed Up"})
        assert sent.status_code == 200
        [stored] = client.get("/_emulator/events", params={"event": "Signed Up"}).json()["events"]
        assert stored["status"] == "accepted" and stored["discard_reason"] is None


def test_a_config_definition_json_cannot_render_back_is_refused_at_start(tmp_path: Path) -> None:
    # Python's json reads `Infinity` and `NaN`: the audience was accepted, and then every answer
    # showing it (GET /_emulator/engage/audiences, the dashboard's Engage page) failed with 500.
    path = tmp_path / "config.json"
    path.write_text('{"audiences": [{"name": "Big Spenders", "rule": {"event": "Order Completed",'
                    ' "where": {"property": "revenue", "gt": Infinity}}}]}', encoding="utf-8")
    args = build_parser().parse_args(
        ["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0", "--config", str(path)]
    )
    # Read as the fake Segment reads a body; a BundleConfig given in Python is checked by Engage.
    with pytest.raises(ValueError, match=r"config\.json: Infinity is not valid JSON"):
        config_from_args(args)
