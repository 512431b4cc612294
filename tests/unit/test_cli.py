"""`segjet up --config FILE`: Engage definitions and the default workspace's extra sources."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emulator import cli
from emulator.cli import build_parser, config_from_args, main
from emulator.config import BundleConfig
from emulator.harness import run, validate

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
        (["--auth-key", "a:b"], "--auth-key must not contain ':'"),  # as App Connections refuses it
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
        # Just outside each range.
        (["demo", "--users", "0"], "argument --users: must be at least 1"),
        (["check", "--segment-url", "http://a", "--mailjet-url", "http://b", "--users", "0"],
         "argument --users: must be at least 1"),
        (["up", "--journal-capacity", "0"], "argument --journal-capacity: must be from 1 to"),
        (["up", "--events-capacity", "0"], "argument --events-capacity: must be from 1 to"),
        (["up", "--mailjet-port", "-1"], "argument --mailjet-port: -1 is not a port"),
        (["up", "--destination-port", "65536"], "argument --destination-port: 65536 is not a port"),
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
        # Check calls {url}/_emulator/reset: under a path, query or fragment that is no server's control API.
        ("http://127.0.0.1:8701/v1", "no path, query or fragment"),
        ("http://127.0.0.1:8701//", "no path, query or fragment"),
        ("http://127.0.0.1:8701?x=1", "no path, query or fragment"),
        ("http://127.0.0.1:8701/?", "no path, query or fragment"),
        ("http://127.0.0.1:8701/#top", "no path, query or fragment"),
        ("http://127.0.0.1:8701#", "no path, query or fragment"),
        # httpx took it and the connection wrapped it modulo 65536, onto another server (R49).
        ("http://127.0.0.1:104925", "port 104925 is not a port"),
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

    monkeypatch.setattr(validate, "main", interrupted)
    assert main(["validate", "segment.track", "-"]) == 130
    assert capsys.readouterr().err == "segjet: interrupted\n"


def test_output_piped_into_a_reader_that_stops_early_ends_without_a_traceback(tmp_path: Path) -> None:
    # `segjet validate segment.track events.jsonl | head -1`: once head exits, the next write fails (EPIPE).
    payloads = tmp_path / "events.jsonl"
    payloads.write_text('{"event": 5}\n' * 20_000, encoding="utf-8")
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "validate", "segment.track", str(payloads)],
            stdout=subprocess.PIPE, stderr=stderr,
        )
        assert process.stdout is not None
        assert process.stdout.readline().endswith(b"invalid against segment.track\n")
        process.stdout.close()
        code = process.wait(timeout=60)
    err = stderr_path.read_text(encoding="utf-8")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == cli.EXIT_BROKEN_PIPE


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this machine")
def test_output_that_cannot_be_written_is_no_verdict_and_no_traceback(tmp_path: Path) -> None:
    # `segjet validate ... > /dev/full` died with an OSError traceback and exit 1, which a CI job
    # reads as "some payload invalid".
    payload = tmp_path / "track.json"
    payload.write_text('{"type": "track", "event": "E", "userId": "u", "messageId": "m"}', encoding="utf-8")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "emulator", "validate", "segment.track", str(payload)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 2  # as an unwritable report file; 1 says a payload is invalid
    assert done.stderr == "segjet: cannot write the output: No space left on device\n"


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


def test_each_up_flag_reaches_the_bundle_config(tmp_path: Path) -> None:
    config = config_from_args(build_parser().parse_args([
        "up", "--host", "127.0.0.2", "--segment-port", "0", "--mailjet-port", "65535", "--destination-port", "8",
        "--list-id", "7", "--seed", "42", "--strict", "--no-enable", "--engage-sync-interval", "manual",
        "--journal-capacity", "5", "--events-capacity", "6", "--data-dir", str(tmp_path / "data"),
    ]))
    assert (config.host, config.segment_port, config.mailjet_port, config.destination_port) == ("127.0.0.2", 0, 65535, 8)
    assert (config.list_id, config.seed, config.strict, config.enable_destination) == (7, 42, True, False)
    assert (config.engage_sync_interval, config.journal_capacity, config.events_capacity) == ("manual", 5, 6)
    assert config.data_dir == str(tmp_path / "data")
    defaults = config_from_args(build_parser().parse_args(["up"]))
    assert (defaults.seed, defaults.strict, defaults.enable_destination, defaults.engage_sync_interval) == (
        None, False, True, "2h")
    # 0 is a seed like any other, not "no seed" (the runs it seeds repeat; unseeded ones do not).
    assert config_from_args(build_parser().parse_args(["up", "--seed", "0"])).seed == 0


def test_segjet_up_starts_without_the_harness_and_its_clients() -> None:
    # `segjet up` imports what serves; the harness's httpx, faker and analytics client come with the
    # commands that run it (and faker with the first made-up recipient).
    code = ("import sys, emulator.cli, emulator.bundle; "
            "print(sorted(name for name in ('httpx', 'faker', 'segment.analytics', 'emulator.harness') if name in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_check_and_demo_run_with_the_flags_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(run, "run_scenario", lambda *args, **kwargs: calls.append((args, kwargs)) or 0)
    monkeypatch.setattr(run, "demo", lambda *args: calls.append(args) or 0)
    monkeypatch.delenv("SEGJET_CONTROL_TOKEN", raising=False)
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    assert main(["check", "--segment-url", "http://s:1/", "--mailjet-url", "http://m:2", "--write-key", "wk",
                 "--mailjet-api-key", "ak", "--mailjet-secret-key", "sk", "--list-id", "9", "--seed", "4",
                 "--users", "5", "--control-token", "tok", "--junit", str(junit), "--json", str(report)]) == 0
    (info, seed, users, junit_given, json_given), kwargs = calls.pop()
    assert info == {"segment_url": "http://s:1", "mailjet_url": "http://m:2", "write_key": "wk",
                    "mailjet_api_key": "ak", "mailjet_secret_key": "sk", "list_id": 9, "control_token": "tok"}
    assert (seed, users, junit_given, json_given, kwargs) == (4, 5, junit, report, {"reset": True})
    assert main(["check", "--segment-url", "http://s", "--mailjet-url", "http://m", "--no-reset"]) == 0
    assert calls.pop()[1] == {"reset": False}
    assert main(["demo", "--seed", "3", "--users", "2", "--keep-running"]) == 0
    assert calls.pop() == (3, 2, True)
    assert main(["demo"]) == 0
    assert calls.pop() == (0, cli.DEMO_USERS, False)


def test_the_ready_file_is_private_even_when_it_was_there_before(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text("a previous run's", encoding="utf-8")
    ready.chmod(0o644)
    cli._write_private(ready, '{"write_key": "k"}\n')
    assert ready.read_text(encoding="utf-8") == '{"write_key": "k"}\n'
    assert ready.stat().st_mode & 0o777 == 0o600
    assert not ready.with_name("ready.json.tmp").exists()


def test_a_start_that_fails_leaves_no_previous_ready_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A script waiting for the file must not read the URLs of a stack that is gone.
    ready = tmp_path / "ready.json"
    ready.write_text('{"segment_url": "http://127.0.0.1:1"}', encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["up", "--segment-port", str(port), "--mailjet-port", "0", "--destination-port", "0",
                     "--ready-file", str(ready)])
    assert code == 1
    assert f"segjet: cannot start: the fake Segment cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not ready.exists()


def test_the_ready_file_is_written_aside_in_a_new_file_never_through_a_link(tmp_path: Path) -> None:
    # It was written to the fixed "PATH.tmp", following a link there: the link's target got the
    # credentials (and mode 0600), and PATH became the link.
    target = tmp_path / "victim.txt"
    target.write_text("precious", encoding="utf-8")
    ready = tmp_path / "ready.json"
    (tmp_path / "ready.json.tmp").symlink_to(target)
    cli._write_private(ready, '{"write_key": "k"}\n')
    assert target.read_text(encoding="utf-8") == "precious"
    assert not ready.is_symlink() and json.loads(ready.read_text(encoding="utf-8")) == {"write_key": "k"}
    assert ready.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready.json", "ready.json.tmp", "victim.txt"]
    # A write that fails leaves no file aside.
    with pytest.raises(UnicodeEncodeError):
        cli._write_private(ready, "\ud800")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready.json", "ready.json.tmp", "victim.txt"]


@pytest.mark.parametrize("kind", ["link", "directory"])
def test_a_ready_file_path_that_is_no_regular_file_is_refused_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    # It was removed and replaced by a file: as root, `--ready-file /dev/stdout` or /dev/null took
    # the system's node away.
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone's", encoding="utf-8")
    ready = tmp_path / "ready.json"
    ready.symlink_to(target) if kind == "link" else ready.mkdir()
    code = main(["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0", "--ready-file", str(ready)])
    assert code == 1
    assert f"segjet: cannot start: --ready-file {ready}: not a regular file" in capsys.readouterr().err
    assert (ready.is_symlink() and target.read_text(encoding="utf-8") == "someone's") if kind == "link" else ready.is_dir()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"])
def test_up_on_loopback_warns_of_nothing(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli._warn_if_exposed(host, None)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "myhost.example"])
def test_up_reachable_from_elsewhere_warns_and_says_whether_the_control_api_is_open(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli._warn_if_exposed(host, None)
    err = capsys.readouterr().err
    assert f"segjet: WARNING: listening on {host}, reachable from other machines" in err
    assert "control API (/_emulator/) is open; see --control-token" in err
    cli._warn_if_exposed(host, "token")
    err = capsys.readouterr().err
    assert "WARNING" in err and "control API" not in err


def test_a_restart_on_a_data_dir_keeps_the_generated_authentication_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bundle.json").write_text(json.dumps({"auth_key": "from-the-first-start"}), encoding="utf-8")
    restarted = config_from_args(build_parser().parse_args(["up", "--data-dir", str(data)]))
    assert restarted.auth_key == "from-the-first-start"
    given = config_from_args(build_parser().parse_args(["up", "--data-dir", str(data), "--auth-key", "mine"]))
    assert given.auth_key == "mine"
    assert config_from_args(build_parser().parse_args(["up"])).auth_key != "from-the-first-start"


def test_a_data_dir_segjet_makes_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from emulator.bundle import _lock_data_dir

    lock = _lock_data_dir(str(tmp_path / "new" / "data"))
    try:
        assert (tmp_path / "new" / "data").stat().st_mode & 0o777 == 0o700
    finally:
        lock.close()


README = Path(__file__).parents[2] / "README.md"


def _options(command: str) -> set[str]:
    parser = build_parser()
    subcommands = next(action for action in parser._actions if action.dest == "command").choices
    return {option for action in subcommands[command]._actions for option in action.option_strings} - {"-h", "--help"}


def _flags_in(text: str) -> set[str]:
    import re

    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*[a-z])", text))


def test_the_readme_names_every_flag_of_up_and_check_and_no_other() -> None:
    # A new user learns the flags from the README: each one it shows must exist, and each one the
    # command takes must be written down.
    readme = README.read_text(encoding="utf-8")
    running = readme.split("## Running it", 1)[1].split("### Security", 1)[0]
    assert _flags_in(running) == _options("up")
    synopsis = readme.split("`segjet check --segment-url", 1)[1].split("`", 1)[0]
    assert _flags_in("--segment-url" + synopsis) == _options("check")
    demo = readme.split("`segjet demo` starts the stack", 1)[1].split("`segjet check --segment-url", 1)[0]
    assert _flags_in(demo) == _options("demo")


def test_the_help_of_up_says_what_the_readme_says_of_strict_seed_and_the_token() -> None:
    # `segjet up --help` said --strict rejects contract violations with 400 (a batch is answered 200),
    # left --seed unexplained, and named two of the three ways to present the control token.
    up = next(action for action in build_parser()._actions if action.dest == "command").choices["up"]
    helps = {option: action.help or "" for action in up._actions for option in action.option_strings}
    assert "batch" in helps["--strict"]
    assert "repeat" in helps["--seed"]
    assert "?token=T" in helps["--control-token"]


def test_up_stopped_while_its_demo_runs_writes_no_ready_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It wrote the ready file and printed "segjet is up" for servers already stopping.
    def stopped_midway(info: dict[str, Any], seed: int, users: int) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # as Ctrl-C does, while a hop runs
        time.sleep(0.5)
        return 1

    monkeypatch.setattr(run, "run_scenario", stopped_midway)
    ready = tmp_path / "ready.json"
    code = main(["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0", "--demo",
                 "--ready-file", str(ready)])
    out, err = capsys.readouterr()
    assert code == 1
    assert not ready.exists()
    assert "segjet is up" not in out and "segjet stopped" in out
    assert "keep running" not in err


@pytest.mark.parametrize(("flags", "refusal"), [([], "is in use by another segjet"), (["--write-key", ""], "--write-key")])
def test_a_start_refused_while_another_bundle_holds_the_data_dir_leaves_its_ready_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], refusal: str
) -> None:
    # The same `segjet up` run twice (the second maybe with a bad flag): the second, refused,
    # removed the first's ready file.
    from emulator.bundle import Bundle

    data_dir, ready = tmp_path / "data", tmp_path / "ready.json"
    running = Bundle(BundleConfig(data_dir=str(data_dir)))  # holds the data dir's lock
    try:
        ready.write_text('{"segment_url": "http://127.0.0.1:8701"}', encoding="utf-8")
        code = main(["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0",
                     "--data-dir", str(data_dir), "--ready-file", str(ready), *flags])
    finally:
        asyncio.run(running.stop())
    assert code == 1
    assert refusal in capsys.readouterr().err
    assert ready.read_text(encoding="utf-8") == '{"segment_url": "http://127.0.0.1:8701"}'


def test_a_start_that_fails_on_its_data_dir_leaves_no_previous_ready_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A damaged bundle.json is no segjet holding the data dir: the file is a dead run's.
    data_dir, ready = tmp_path / "data", tmp_path / "ready.json"
    data_dir.mkdir()
    (data_dir / "bundle.json").write_text("not json", encoding="utf-8")
    ready.write_text('{"segment_url": "http://127.0.0.1:1"}', encoding="utf-8")
    code = main(["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0",
                 "--data-dir", str(data_dir), "--ready-file", str(ready)])
    assert code == 1
    assert "bundle.json" in capsys.readouterr().err
    assert not ready.exists()
