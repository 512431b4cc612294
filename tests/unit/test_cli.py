"""`segjet up --config FILE`: Engage definitions and the default workspace's extra sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator import cli
from emulator.cli import build_parser, config_from_args, main
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # argparse named the converter: "invalid _port value: 'abc'".
        (["up", "--segment-port", "abc"], "argument --segment-port: abc is not a port"),
        (["up", "--journal-capacity", "many"], "argument --journal-capacity: 'many' is not a whole number"),
        (["demo", "--users", "two"], "argument --users: 'two' is not a whole number"),
        # Beyond what a deque can be sized to: an OverflowError traceback once the servers were built.
        (["up", "--events-capacity", str(2**63)], f"argument --events-capacity: must be from 1 to {2**63 - 1}"),
        (["up", "--journal-capacity", str(10**30)], f"argument --journal-capacity: must be from 1 to {2**63 - 1}"),
        # Was refused at start as "settings.listId must be a string holding a positive integer", a
        # setting the user never gave.
        (["up", "--list-id", "0"], f"argument --list-id: a Mailjet list id is a whole number from 1 to {2**63 - 1}"),
        (["check", "--segment-url", "http://a", "--mailjet-url", "http://b", "--list-id", str(2**63)],
         f"argument --list-id: a Mailjet list id is a whole number from 1 to {2**63 - 1}"),
    ],
)
def test_a_bad_number_is_a_usage_error_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "Invalid port"),  # httpx.InvalidURL escaped the checker as a traceback
        ("127.0.0.1:8701", "expected an http:// or https:// URL"),
        ("ftp://127.0.0.1:8701", "expected an http:// or https:// URL"),
        ("http://", "expected an http:// or https:// URL"),
    ],
)
def test_check_refuses_a_url_it_could_not_call(url: str, problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    for flag, other in (("--segment-url", "--mailjet-url"), ("--mailjet-url", "--segment-url")):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["check", flag, url, other, "http://127.0.0.1:1"])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {flag}: " in err and problem in err


def test_check_takes_a_url_with_a_trailing_slash() -> None:
    args = build_parser().parse_args(["check", "--segment-url", "http://127.0.0.1:8701/", "--mailjet-url", "https://h"])
    assert (args.segment_url, args.mailjet_url) == ("http://127.0.0.1:8701", "https://h")


@pytest.mark.parametrize("token", ["tökén", "", " padded "])
def test_check_refuses_a_control_token_no_server_could_have(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    # `segjet up` refuses these; check sent "tökén" in a header, and httpx crashed encoding it.
    code = main(["check", "--segment-url", "http://127.0.0.1:1", "--mailjet-url", "http://127.0.0.1:1",
                 "--control-token", token])
    assert code == 2
    assert capsys.readouterr().err.startswith("segjet check: the control token ")


def test_ctrl_c_during_a_command_exits_130_without_a_traceback(monkeypatch, capsys) -> None:
    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.validate, "main", interrupted)
    assert main(["validate", "segment.track", "-"]) == 130
    assert capsys.readouterr().err == "segjet: interrupted\n"


def test_a_bad_engage_sync_interval_is_a_usage_error_before_any_port_is_bound(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["up", "--engage-sync-interval", "3x"])
    assert exit_info.value.code == 2
    assert "--engage-sync-interval: engage sync interval: invalid duration '3x'" in capsys.readouterr().err


def test_a_config_file_nested_beyond_any_body_is_refused_not_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"audiences": [' + "[" * 2000 + "]" * 2000 + "]}")
    with pytest.raises(ValueError, match="nested more than 254 levels"):
        config_from_args(build_parser().parse_args(["up", "--config", str(deep)]))


def test_demo_without_the_destination_enabled_is_refused() -> None:
    # The demo data is the round trip through the destination: with it off, every hop after the first fails.
    with pytest.raises(ValueError, match="--demo .* leave out --no-enable"):
        config_from_args(build_parser().parse_args(["up", "--demo", "--no-enable"]))
