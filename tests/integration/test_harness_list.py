"""`segjet check` against a stack whose Mailjet tile writes to another list than 1, and its advice
on an audience it cannot reuse."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.cli import main
from emulator.config import BundleConfig
from emulator.harness.scenario import AUDIENCE_KEY, AUDIENCE_NAME

HOPS = 8
TILE = "/_emulator/destinations/mailjet"


@pytest.fixture(scope="module")
def list_5_stack() -> Iterator[dict[str, Any]]:
    """A stack started as `segjet up --list-id 5`."""
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=5, list_id=5)
    with BackgroundBundle(config) as info:
        yield info


def check(info: dict[str, Any], *flags: str) -> int:
    return main(["check", "--segment-url", info["segment_url"], "--mailjet-url", info["mailjet_url"],
                 "--users", "1", *flags])


def test_check_without_list_id_reads_the_list_the_tile_writes_to(list_5_stack, capsys):
    assert check(list_5_stack) == 0, capsys.readouterr().out
    assert "1 contacts in list 5 with their properties" in capsys.readouterr().out


def test_an_explicit_list_id_wins_over_the_tiles(list_5_stack, capsys):
    assert check(list_5_stack, "--list-id", "1") == 1
    out = capsys.readouterr().out
    assert "is not subscribed to list 1" in out


class _TileGoneProxy(BaseHTTPRequestHandler):
    """Forwards every request to `upstream` but the Mailjet tile's, answered 404 as a server
    without that route would."""

    upstream = ""

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] == TILE:
            status, headers, content = 404, {"Content-Type": "text/plain"}, b"Not Found"
        else:
            kept = {name: value for name, value in self.headers.items()
                    if name.lower() not in ("host", "content-length", "connection", "accept-encoding")}
            with httpx.Client(trust_env=False) as http:
                answer = http.request(self.command, self.upstream + self.path, headers=kept, content=body)
            status, content = answer.status_code, answer.content
            headers = {"Content-Type": answer.headers.get("Content-Type", "application/json")}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_a_tile_that_cannot_be_read_fails_the_contacts_hop_saying_so(list_5_stack, capsys):
    handler = type("Handler", (_TileGoneProxy,), {"upstream": list_5_stack["segment_url"]})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        info = {**list_5_stack, "segment_url": f"http://127.0.0.1:{proxy.server_address[1]}"}
        code = check(info)
    finally:
        proxy.shutdown()
        proxy.server_close()
    out = capsys.readouterr().out
    assert code == 1
    assert "cannot read the list the fake Segment's Mailjet tile writes to" in out
    assert f"GET {info['segment_url']}{TILE}" in out and "404 Not Found" in out and "--list-id" in out
    assert f"2 passed, 1 failed, {HOPS - 3} skipped" in out


def test_an_audience_with_another_rule_is_explained_with_the_control_api_fix(list_5_stack, capsys):
    # Defined on the running stack, not in --config: the advice must name what removes it there.
    segment = httpx.Client(base_url=list_5_stack["segment_url"], trust_env=False)
    with segment:
        segment.post("/_emulator/engage/audiences",
                     json={"name": AUDIENCE_NAME, "rule": {"event": "Order Completed", "within": "7d"}}
                     ).raise_for_status()
        assert check(list_5_stack, "--no-reset") == 1
        out = capsys.readouterr().out
        assert f"DELETE /_emulator/engage/audiences/{AUDIENCE_KEY}" in out
        assert "without --no-reset" in out and "--config" in out
        # Following the advice clears the way.
        segment.delete(f"/_emulator/engage/audiences/{AUDIENCE_KEY}").raise_for_status()
    assert check(list_5_stack, "--no-reset") == 0, capsys.readouterr().out
