"""`segjet demo` (starts the stack here) and `segjet check` (uses running servers)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from ..bundle import BackgroundBundle
from ..config import BundleConfig
from .client import SegjetClient
from .report import HopPrinter, shown, summary_table, write_json, write_junit
from .scenario import Scenario, control_token_hint

# A report file that could not be written: a usage error (its path), as argparse's exit code.
EXIT_REPORT_UNWRITTEN = 2
UP_HINT = ": is `segjet up` running at that URL?"


def run_scenario(
    info: dict[str, Any], seed: int, users: int, junit: Path | None = None, json_file: Path | None = None,
    reset: bool = False,
) -> int:
    client = SegjetClient(info)
    try:
        if (mix_up := _services_mixed_up(client)) is not None:
            print(f"segjet check: {mix_up}", file=sys.stderr)
            return 1
        if reset:
            try:
                client.reset()
            except httpx.HTTPError as exc:
                # One line, whatever the server answered (another app's HTML page, control characters; the
                # client cuts an answer's text at 500 characters).
                answer = shown(str(exc).replace("\n", " "))
                print(f"segjet check: cannot reset the stack: {_server_called(client, exc.request)}: {answer}"
                      f"{control_token_hint(exc) or UP_HINT}", file=sys.stderr)
                return 1
        scenario = Scenario(client, seed=seed, user_count=users)
        results = scenario.run(HopPrinter())
    finally:
        client.close()
    print()
    print(summary_table(results))
    code = 0 if all(result.ok for result in results) else 1
    for flag, path, write in (
        ("--junit", junit, lambda path: write_junit(path, results)),
        ("--json", json_file, lambda path: write_json(path, results, scenario.traces())),
    ):
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            # After the run, which is shown above; a CI job must not take the missing report for a pass.
            print(f"segjet check: cannot write {flag} {path}: {exc.strerror or exc}", file=sys.stderr)
            code = EXIT_REPORT_UNWRITTEN
    return code


_FAKES = {"segment": "the fake Segment", "mailjet": "the fake Mailjet"}


def _services_mixed_up(client: SegjetClient) -> str | None:
    """What is wrong when a URL answers as the other fake, before a reset or hop acts on the wrong one
    (both fakes have `/_emulator/reset`; the first hop then failed with a bare 404)."""
    given = (("--segment-url", client.segment_url, "segment"), ("--mailjet-url", client.mailjet_url, "mailjet"))
    found = [client.service_at(url) for _, url, _ in given]
    if found == ["mailjet", "segment"]:
        return (f"--segment-url {client.segment_url} is the fake Mailjet, and --mailjet-url {client.mailjet_url}"
                " the fake Segment: are the two swapped?")
    for (flag, url, wanted), service in zip(given, found):
        if service in _FAKES and service != wanted:
            return f"{flag} {url} is {_FAKES[service]}, not {_FAKES[wanted]}"
    return None


def _server_called(client: SegjetClient, request: httpx.Request) -> str:
    """Which fake `request` went to, with the URL and flag it was given by (base URLs have no path)."""
    if request.url.join("/") == httpx.URL(client.mailjet_url).join("/"):
        return f"the fake Mailjet at {client.mailjet_url} (--mailjet-url)"
    return f"the fake Segment at {client.segment_url} (--segment-url)"


def demo(seed: int, users: int, keep_running: bool) -> int:
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=seed))
    info = bundle.start()
    try:
        print(f"segjet demo: fake Segment {info['segment_url']}, fake Mailjet {info['mailjet_url']}, "
              f"destination {info['destination_url']}\n", flush=True)
        code = run_scenario(info, seed, users)
        if keep_running:
            print(f"\nServers left running; dashboard {info['dashboard_url']}. Ctrl-C stops.", flush=True)
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
        return code
    finally:
        bundle.stop()
