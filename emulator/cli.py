"""The `segjet` command: up | demo | check | validate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from destination.http_rules import basic_username_problem

from .bundle import Bundle, data_dir_held, remembered_auth_key
from .common import server
from .common.faults import FaultRuleError, FaultRules
from .common.json_body import decode_json
from .config import BundleConfig
from .segment.engage import parse_sync_interval
from .segment.models import DEFAULT_SOURCE_NAME
from .segment.workspaces import WorkspaceError, check_source


# Users `segjet up --demo` loads, as many as `segjet demo` runs with by default.
DEMO_USERS = 3

# The control token from the environment: an argument is visible to every user in `ps`.
CONTROL_TOKEN_VARIABLE = "SEGJET_CONTROL_TOKEN"

# What a shell reports for a command SIGPIPE ended (128 + 13): output cut short by its reader.
EXIT_BROKEN_PIPE = 141
# Output that could not be written (a full disk, /dev/full): not exit 1, which `validate` and
# `check` give as a verdict; 2, as a report file that could not be written.
EXIT_OUTPUT_UNWRITTEN = 2


def _add_up_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BundleConfig()
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--segment-port", type=_port, default=defaults.segment_port, help="0 picks a free port")
    parser.add_argument("--mailjet-port", type=_port, default=defaults.mailjet_port, help="0 picks a free port")
    parser.add_argument("--destination-port", type=_port, default=defaults.destination_port, help="0 picks a free port")
    parser.add_argument("--write-key", default=defaults.write_key, help="write key of the default Segment source")
    parser.add_argument("--mailjet-api-key", default=defaults.mailjet_api_key)
    parser.add_argument("--mailjet-secret-key", default=defaults.mailjet_secret_key)
    parser.add_argument("--auth-key", default=None, help="Mailjet's Segment authentication key (default: generated)")
    parser.add_argument("--list-id", type=_list_id, default=defaults.list_id)
    parser.add_argument(
        "--seed", type=_whole_number, default=None,
        help="seed of the random draws (Segment's retry backoff, Mailjet's email events), so that a run"
        " repeats (default: random)",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="answer a single call that breaks its contract 400 schema_violation; a batch is still answered"
        " 200, its breaking items stored discarded",
    )
    parser.add_argument(
        "--no-enable", action="store_true", help="leave the Mailjet destination disabled in the fake Segment"
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="write URLs and credentials here as JSON")
    parser.add_argument(
        "--demo", action="store_true",
        help="load demo data first: run segjet demo's round trip against this stack, then keep serving",
    )
    parser.add_argument(
        "--engage-sync-interval", default=defaults.engage_sync_interval, type=_sync_interval,
        help='virtual time between Engage syncs ("2h"), "realtime" or "manual"',
    )
    parser.add_argument(
        "--config", type=Path, default=None,
        help='JSON file of Engage definitions and extra sources of the default workspace:'
        ' {"audiences": [...], "traits": [...], "sources": [{"name": ..., "write_key": ...}]}',
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="keep the fakes' state in this directory across restarts (default: memory only)",
    )
    parser.add_argument(
        "--faults", type=Path, default=None, help='JSON file of fault rules: {"segment": [...], "mailjet": [...]}'
    )
    parser.add_argument(
        "--journal-capacity", type=_capacity, default=defaults.journal_capacity,
        help="requests kept in each server's journal (older ones dropped)",
    )
    parser.add_argument(
        "--events-capacity", type=_capacity, default=defaults.events_capacity,
        help="messages kept in the fake Segment's events feed (older ones dropped; profiles keep everything)",
    )
    parser.add_argument(
        "--control-token", default=os.environ.get(CONTROL_TOKEN_VARIABLE),
        help="require this token on /_emulator/* (Authorization: Bearer T, X-Segjet-Token: T or ?token=T);"
        f" default ${CONTROL_TOKEN_VARIABLE}, which other users cannot read in the process list",
    )


def config_from_args(args: argparse.Namespace) -> BundleConfig:
    config = BundleConfig(
        host=args.host,
        segment_port=args.segment_port,
        mailjet_port=args.mailjet_port,
        destination_port=args.destination_port,
        write_key=args.write_key,
        mailjet_api_key=args.mailjet_api_key,
        mailjet_secret_key=args.mailjet_secret_key,
        list_id=args.list_id,
        seed=args.seed,
        strict=args.strict,
        enable_destination=not args.no_enable,
        engage_sync_interval=args.engage_sync_interval,
        journal_capacity=args.journal_capacity,
        events_capacity=args.events_capacity,
        control_token=_control_token(args.control_token),
        data_dir=str(args.data_dir) if args.data_dir else None,
    )
    _check_credentials(args)
    if args.demo and args.no_enable:
        raise ValueError("--demo runs the round trip through the Mailjet destination; leave out --no-enable")
    if args.auth_key is not None:
        config.auth_key = args.auth_key
    elif config.data_dir:
        # A restart on the same data keeps the key the stored destination settings hold.
        config.auth_key = remembered_auth_key(config.data_dir) or config.auth_key
    if args.config:
        config.engage_audiences, config.engage_traits, config.sources = _config_file(args.config, config.write_key)
    if args.faults:
        config.faults = _fault_rules(args.faults)
    return config


def _check_credentials(args: argparse.Namespace) -> None:
    """ValueError for a key no client could use: most likely `--write-key "$UNSET_VARIABLE"`, which
    started a stack whose default source took no call (the control API refuses such keys too)."""
    try:
        check_source(DEFAULT_SOURCE_NAME, args.write_key)
    except WorkspaceError as exc:
        raise ValueError(f"--write-key: {exc}") from None
    for flag, value in (("--mailjet-api-key", args.mailjet_api_key), ("--mailjet-secret-key", args.mailjet_secret_key),
                        ("--auth-key", args.auth_key)):
        if value is not None and not value.strip():
            generated = ", or leave it out to generate one" if flag == "--auth-key" else ""
            raise ValueError(f"{flag} is empty; give one{generated}")
    for flag, value in (("--mailjet-api-key", args.mailjet_api_key), ("--auth-key", args.auth_key)):
        if value is not None and (problem := basic_username_problem(value)) is not None:
            raise ValueError(f"{flag} {problem}")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # argparse would say "invalid _port value", naming this module's function.
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _sync_interval(text: str) -> str:
    """Checked as the command line is read, not once the ports are bound."""
    try:
        parse_sync_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535; 0 picks a free one)")
    return value


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _capacity(text: str) -> int:
    """How many entries a capped feed keeps: beyond sys.maxsize no deque can be sized to it."""
    value = _whole_number(text)
    if not 1 <= value <= sys.maxsize:
        raise argparse.ArgumentTypeError(f"must be from 1 to {sys.maxsize}")
    return value


# What the destination and the fake Segment's Mailjet tile take as listId (a positive int64).
MAX_LIST_ID = 2**63 - 1


def _list_id(text: str) -> int:
    """A Mailjet list id; refused here, naming the flag, rather than at start as a bad `settings.listId`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIST_ID:
        raise argparse.ArgumentTypeError(f"a Mailjet list id is a whole number from 1 to {MAX_LIST_ID}, got {text!r}")
    return value


def _base_url(text: str) -> str:
    """The base URL of a running server, without a trailing slash; what httpx could not call (a bad
    port, no scheme) or what names more than a server (a path, query or fragment) is a usage error
    here, not a traceback or a 404 from the first request."""
    import httpx  # here, as the harness is imported where it runs: `segjet up` starts without them

    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if url.port is not None and url.port > 65535:
        # httpx takes it, and the connection wraps it modulo 65536: onto another server, which
        # `segjet check` would then reset.
        raise argparse.ArgumentTypeError(f"{text!r}: port {url.port} is not a port (1-65535)")
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an http:// or https:// URL, e.g. http://127.0.0.1:8701")
    # The control API is called at {url}/_emulator/...: under a path, query or fragment it is not
    # there. raw_path holds the path and any "?"; an empty fragment ("#") shows only in the text.
    if url.raw_path != b"/" or "#" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a server's base URL, with no path, query or fragment, e.g. http://127.0.0.1:8701"
        )
    return text.rstrip("/")


def _fault_rules(path: Path) -> dict[str, list[Any]]:
    """The rules of a --faults file; ValueError says what is wrong (each rule is checked at start)."""
    try:
        document = decode_json(path.read_bytes())  # as the control API reads a rule
    except (OSError, ValueError) as exc:
        raise ValueError(f"--faults {path}: {exc}") from exc
    if not isinstance(document, dict) or set(document) - {"segment", "mailjet"}:
        raise ValueError(f'--faults {path}: expected {{"segment": [rules...], "mailjet": [rules...]}}')
    if not all(isinstance(rules, list) for rules in document.values()):
        raise ValueError(f"--faults {path}: segment and mailjet must be lists of rules")
    # Checked here, before any port is bound, as each fake checks them.
    for service, rules in (("segment", FaultRules.for_segment()), ("mailjet", FaultRules.for_mailjet())):
        try:
            rules.add_all(document.get(service, []))
        except FaultRuleError as exc:
            raise ValueError(f"--faults {path}: {service} {exc}") from exc
    return document


def _control_token(given: str | None) -> str | None:
    if given is not None and not given.strip():
        # Most likely `--control-token "$UNSET_VARIABLE"` in CI: refused rather than left open.
        raise ValueError(
            f"the control token (--control-token or ${CONTROL_TOKEN_VARIABLE}) is empty; give one, or neither"
            " for an open control API"
        )
    if given is not None and not (given.isascii() and given.isprintable() and given == given.strip()):
        # It travels in a header, read as Latin-1 and trimmed: another token could never be presented.
        raise ValueError("the control token must be printable ASCII without surrounding spaces")
    return given


def _remove_ready_file(path: Path | None) -> None:
    """A script waiting for the ready file must not read a previous run's URLs. Only a regular file
    is one: a device, a link or a directory there (/dev/stdout, /dev/null) is no previous run's, and
    was replaced by a file."""
    if path is None:
        return
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OSError(f"--ready-file {path}: not a regular file (the ready file is written aside, then renamed there)")
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise OSError(f"--ready-file {path}: {exc.strerror or exc}") from None


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by this user only (the ready file holds the credentials and the token),
    aside and renamed, so that a reader never sees it half written. The file aside is a new one
    (mkstemp: a random name, mode 0600, never an existing file or a link, which a fixed
    "PATH.tmp" followed, writing the credentials into its target)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _warn_if_exposed(host: str, control_token: str | None) -> None:
    """The fakes accept any traffic and hold test credentials: say so when they are reachable from elsewhere."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if not loopback:
        print(
            f"segjet: WARNING: listening on {host}, reachable from other machines. The fakes take any traffic,"
            " show their credentials on the dashboard"
            + ("" if control_token else " and their control API (/_emulator/) is open; see --control-token")
            + ".",
            file=sys.stderr, flush=True,
        )


def _config_file(path: Path, write_key: str) -> tuple[list[Any], list[Any], list[dict[str, str]]]:
    """Audiences, computed traits and extra sources of a --config file; ValueError says what is wrong.

    The Engage definitions are checked when the fake Segment starts; the sources here, as
    `POST /_emulator/sources` checks them, since the default workspace takes them without a check.
    """
    try:
        # As the control API reads a body: strict JSON (no NaN), at most MAX_DEPTH levels.
        document = decode_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--config {path}: {exc}") from exc
    if not isinstance(document, dict) or set(document) - {"audiences", "traits", "sources"}:
        raise ValueError(f'--config {path}: expected {{"audiences": [...], "traits": [...], "sources": [...]}}')
    audiences, traits, sources = (document.get(key, []) for key in ("audiences", "traits", "sources"))
    if not all(isinstance(value, list) for value in (audiences, traits, sources)):
        raise ValueError(f"--config {path}: audiences, traits and sources must be lists")
    taken = {write_key}
    for index, source in enumerate(sources):
        where = f"--config {path}: sources[{index}]"
        if not isinstance(source, dict) or set(source) != {"name", "write_key"}:
            raise ValueError(f'{where}: expected {{"name": ..., "write_key": ...}}')
        name, key = source["name"], source["write_key"]
        try:
            check_source(name, key)
        except WorkspaceError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if key in taken:
            raise ValueError(f"{where}: write key {key!r} is already used by a source")
        taken.add(key)
    return audiences, traits, sources


def _print_ready(info: dict[str, Any]) -> None:
    print("segjet is up", flush=True)
    print(f"  fake Segment   {info['segment_url']}   write key {info['write_key']}")
    print(f"  fake Mailjet   {info['mailjet_url']}   API key {info['mailjet_api_key']} / {info['mailjet_secret_key']}")
    print(f"  destination    {info['destination_url']}   authentication key {info['auth_key']}, list {info['list_id']}")
    print(f"  dashboard      {info['dashboard_url']}")
    if info.get("control_token"):
        # The token is the user's own; it is not echoed. The page keeps it for the browser session.
        print("  control API    needs the --control-token; open the dashboard once as /?token=<token>")
    print("Ctrl-C stops.", flush=True)


async def _up(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        _warn_if_exposed(config.host, config.control_token)
        bundle = Bundle(config)
    except BaseException:
        # A segjet holding the data dir keeps its ready file, most likely this one (the same command
        # run twice, maybe with a bad flag); otherwise the file is a dead run's.
        if not (args.data_dir and data_dir_held(str(args.data_dir))):
            with contextlib.suppress(OSError):  # the error to tell is the start's
                _remove_ready_file(args.ready_file)
        raise
    try:
        _remove_ready_file(args.ready_file)
    except OSError:
        await bundle.stop()  # the data dir's lock goes with it
        raise
    info = await bundle.start()
    server.tune_gc_for_serving()
    bundle.runner.install_signal_handlers()
    demo_code = 0
    if args.demo:
        from .harness import run

        # In a thread: the scenario's client is synchronous, and this loop serves its requests.
        demo_code = await asyncio.to_thread(run.run_scenario, info, args.seed or 0, DEMO_USERS)
        if bundle.runner.stopping.is_set():
            # Stopped (Ctrl-C, SIGTERM) while the demo ran: no ready file, no URLs of servers going away.
            await bundle.wait()
            print("segjet stopped", flush=True)
            return demo_code
        if demo_code != 0:
            print("segjet: the demo round trip failed (see above); the servers keep running, and the exit"
                  " status will be 1", file=sys.stderr, flush=True)
        print(flush=True)
    if args.ready_file:
        try:
            _write_private(args.ready_file, json.dumps(info, indent=2) + "\n")
        except OSError as exc:
            # A script waits for this file: stop cleanly (the data dir's lock and stores) and say which file.
            await bundle.stop()
            raise OSError(f"--ready-file {args.ready_file}: {exc.strerror or exc}") from None
    _print_ready(info)
    await bundle.wait()
    print("segjet stopped", flush=True)
    return demo_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segjet", description="Offline Segment → Mailjet emulator and contract harness")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_up_arguments(commands.add_parser("up", help="start fake Segment, fake Mailjet and the destination"))
    demo = commands.add_parser("demo", help="start the stack here and run the scripted round trip")
    demo.add_argument("--seed", type=_whole_number, default=0, help="seed of the faker-made users")
    demo.add_argument("--users", type=_positive_int, default=DEMO_USERS)
    demo.add_argument("--keep-running", action="store_true", help="leave the servers up afterwards")
    check = commands.add_parser("check", help="run the scripted round trip against running servers")
    check.add_argument("--segment-url", type=_base_url, required=True)
    check.add_argument("--mailjet-url", type=_base_url, required=True)
    check.add_argument("--write-key", default=BundleConfig.write_key,
                       help="the source to send with; the check reads that source's workspace")
    check.add_argument("--mailjet-api-key", default=BundleConfig.mailjet_api_key,
                       help="the Mailjet account to check; its App Connections page is the one set up")
    check.add_argument("--mailjet-secret-key", default=BundleConfig.mailjet_secret_key)
    check.add_argument("--list-id", type=_list_id, default=None,
                       help="the Mailjet list the contacts must be in (default: the list the Mailjet tile of"
                       " --write-key's source writes to)")
    check.add_argument("--seed", type=_whole_number, default=0)
    check.add_argument("--users", type=_positive_int, default=3)
    check.add_argument(
        "--no-reset", action="store_true",
        help="keep the servers' state (by default check resets both fakes so the scenario starts clean)",
    )
    check.add_argument("--control-token", default=os.environ.get(CONTROL_TOKEN_VARIABLE),
                       help=f"the servers' --control-token, if they have one (default ${CONTROL_TOKEN_VARIABLE})")
    check.add_argument("--junit", type=Path, default=None, help="write a JUnit XML report here")
    check.add_argument("--json", type=Path, default=None, help="write a JSON report (hops and traces) here")
    validate = commands.add_parser("validate", help="validate JSON payloads against a contract")
    validate.add_argument("contract", help="contract name, e.g. segment.identify")
    validate.add_argument("files", nargs="+", help="JSON files (one document or JSON lines); - for stdin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _run_command(args)
        sys.stdout.flush()  # a reader gone away shows here, not as "Exception ignored" at exit
        return code
    except KeyboardInterrupt:
        # Ctrl-C during `demo`, `check` or `validate -` is the user's choice, not a crash: no traceback.
        print("segjet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `segjet validate ... | head`: the reader stopped early, as it may. Python's documented recipe:
        # stdout onto /dev/null, so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # The commands handle the files they read and write themselves: what is left is the
        # standard output, which then goes to /dev/null too, so that the flush at exit is quiet.
        print(f"segjet: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OUTPUT_UNWRITTEN


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "up":
        try:
            return server.run(_up(args))
        except BrokenPipeError:
            raise  # stdout's reader left (`| head`): main's exit, not a failed start
        # ValueError: a bad --config or Engage definition; ServerStartError: an app's startup failed.
        except (OSError, ValueError, server.ServerStartError) as exc:
            print(f"segjet: cannot start: {exc}", file=sys.stderr)
            return 1
    # The harness (httpx, faker, segment-analytics-python) is imported by the commands that run it:
    # its imports took a third of `segjet up`'s start-up, which needs none of it (`up --demo` imports
    # it when it runs the demo).
    from .harness import run, validate

    if args.command == "validate":
        return validate.main(args.contract, args.files)
    if args.command == "demo":
        return run.demo(args.seed, args.users, args.keep_running)
    if args.command == "check":
        try:
            control_token = _control_token(args.control_token)
        except ValueError as exc:
            # As `segjet up` refuses it: no server has such a token (and httpx could not send it).
            print(f"segjet check: {exc}", file=sys.stderr)
            return 2
        info = {
            "segment_url": args.segment_url,
            "mailjet_url": args.mailjet_url,
            "write_key": args.write_key,
            "mailjet_api_key": args.mailjet_api_key,
            "mailjet_secret_key": args.mailjet_secret_key,
            "list_id": args.list_id,
            "control_token": control_token,
        }
        return run.run_scenario(info, args.seed, args.users, args.junit, args.json, reset=not args.no_reset)
    return 2
