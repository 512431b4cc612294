"""`segjet up --config FILE`: Engage definitions and the default workspace's extra sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import build_parser, config_from_args
from emulator.config import BundleConfig

AUDIENCE = {"name": "Big Spenders", "rule": {"event": "Order Completed", "within": "30d"}}
WEB = {"name": "web", "write_key": "web-write-key"}


def config_of(tmp_path: Path, document: Any, *flags: str) -> BundleConfig:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return config_from_args(build_parser().parse_args(["up", "--config", str(path), *flags]))


def test_config_file_gives_engage_definitions_and_sources(tmp_path: Path) -> None:
    config = config_of(tmp_path, {"audiences": [AUDIENCE], "sources": [WEB]})
    assert config.engage_audiences == [AUDIENCE] and config.engage_traits == []
    assert config.sources == [WEB]


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ({"web": "web-write-key"}, "audiences, traits and sources must be lists"),
        (["web-write-key"], 'sources[0]: expected {"name": ..., "write_key": ...}'),
        ([{**WEB, "workspace": "w"}], 'sources[0]: expected {"name": ..., "write_key": ...}'),
        ([{**WEB, "name": " "}], 'sources[0]: "name" must be a non-empty string'),
        ([{**WEB, "write_key": " web "}], 'sources[0]: "write_key" must be a non-empty string without surrounding spaces'),
        ([{**WEB, "write_key": "web:key"}], 'sources[0]: "write_key" must not contain \':\''),
        ([WEB, {**WEB, "name": "web again"}], "sources[1]: write key 'web-write-key' is already used by a source"),
        ([{**WEB, "write_key": "main-key"}], "sources[0]: write key 'main-key' is already used by a source"),
    ],
)
def test_a_bad_source_is_refused_with_what_is_wrong(tmp_path: Path, sources: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        config_of(tmp_path, {"sources": sources}, "--write-key", "main-key")
    assert message in str(caught.value)


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r'expected \{"audiences": \[...\], "traits": \[...\], "sources": \[...\]\}'):
        config_of(tmp_path, {"destinations": []})


def test_an_empty_control_token_is_refused_not_taken_as_none() -> None:
    # `--control-token "$UNSET"` in CI left the control API open without a word.
    with pytest.raises(ValueError, match="control token .* is empty"):
        config_from_args(build_parser().parse_args(["up", "--control-token", ""]))


@pytest.mark.parametrize("token", ["tökén", " padded ", "tab\there"])
def test_a_control_token_no_header_can_carry_is_refused(token: str) -> None:
    # Accepted, "tökén" could never be presented in a header (read as Latin-1), only as ?token=.
    with pytest.raises(ValueError, match="printable ASCII"):
        config_from_args(build_parser().parse_args(["up", "--control-token", token]))


def test_the_control_token_comes_from_the_environment_out_of_the_process_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGJET_CONTROL_TOKEN", "from-env")
    assert config_from_args(build_parser().parse_args(["up"])).control_token == "from-env"
    assert config_from_args(build_parser().parse_args(["up", "--control-token", "flag"])).control_token == "flag"


def test_a_port_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--segment-port", "70000"])
    assert "70000 is not a port" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        # `--write-key "$UNSET"` started a stack whose default source took no call.
        (["--write-key", ""], '--write-key: "write_key" must be a non-empty string without surrounding spaces'),
        (["--write-key", " key"], '--write-key: "write_key" must be a non-empty string without surrounding spaces'),
        (["--write-key", "a:b"], '--write-key: "write_key" must not contain \':\''),
        (["--mailjet-api-key", ""], "--mailjet-api-key is empty"),
        (["--mailjet-api-key", "a:b"], "--mailjet-api-key must not contain ':'"),
        (["--mailjet-secret-key", " "], "--mailjet-secret-key is empty"),
        # Was silently replaced by a generated key.
        (["--auth-key", ""], "--auth-key is empty; give one, or leave it out to generate one"),
    ],
)
def test_a_credential_no_client_could_use_is_refused(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        config_from_args(build_parser().parse_args(["up", *flags]))
    assert message in str(caught.value)


def test_the_credentials_given_are_the_stacks() -> None:
    config = config_from_args(build_parser().parse_args(
        ["up", "--write-key", "wk", "--mailjet-api-key", "ak", "--mailjet-secret-key", "s:k", "--auth-key", "auth"]
    ))
    given = (config.write_key, config.mailjet_api_key, config.mailjet_secret_key, config.auth_key)
    assert given == ("wk", "ak", "s:k", "auth")
