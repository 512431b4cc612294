"""Fixtures shared by the integration tests: real servers on free ports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

from destination.app import create_app as create_destination_app
from emulator.bundle import AppConnectionKeys
from emulator.common.clock import Clock
from emulator.common.server import LoopThread, Runner, bind, serve_in_background, url_of
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.routes import create_app as create_mailjet_app
from emulator.segment.routes import create_app as create_segment_app

StartApps = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def serve() -> Iterator[StartApps]:
    """`serve({"name": app, ...}, clock=None) -> {"name": url}`: real uvicorn servers, stopped after
    the module. With `clock`, its timer loop runs on the servers' event loop, as the bundle runs it."""
    started: list[tuple[LoopThread, Runner, Future[None] | None]] = []

    def start(apps: dict[str, ASGIApp], clock: Clock | None = None) -> dict[str, str]:
        loop_thread, runner, urls = serve_in_background(apps)
        timers = asyncio.run_coroutine_threadsafe(clock.run_forever(), loop_thread.loop) if clock else None
        started.append((loop_thread, runner, timers))
        return urls

    yield start
    for loop_thread, runner, timers in started:
        if timers is not None:
            timers.cancel()
        loop_thread.run(runner.stop())
        loop_thread.close()


@contextmanager
def lone_mailjet(serve: StartApps, config: BundleConfig) -> Iterator[tuple[str, httpx.Client]]:
    """A fake Mailjet alone, on its own running clock (its Segment URL leads nowhere): its URL, and
    an httpx client for it with the config's API key pair."""
    clock = Clock()
    app = create_mailjet_app(config, clock, BundleUrls("http://127.0.0.1:9/segment", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    url = serve({"mailjet": app}, clock)["mailjet"]
    with httpx.Client(base_url=url, auth=(config.mailjet_api_key, config.mailjet_secret_key)) as http:
        yield url, http


def reset_then_no_500s(http: httpx.Client) -> Iterator[None]:
    """For an autouse fixture (`yield from`): reset the server `http` talks to, run the test, then
    check that no exchange of it was answered by the exception handler, only by a rule."""
    assert http.post("/_emulator/reset").status_code == 200
    yield
    statuses = [entry["status"] for entry in http.get("/_emulator/requests?limit=10000").json()["requests"]]
    assert all(status is None or status < 500 for status in statuses), statuses


@dataclass
class TwoTenantStack:
    """A bundle whose destination knows two Mailjet accounts: A (the configured one, default workspace
    `ws-a`) and B (added per test by `tenant_b`); one event loop, one running virtual clock."""

    segment_url: str
    mailjet_url: str
    http: httpx.Client


TWO_TENANTS = {
    "a": {"write_key": "ws-a", "api_key": "key-a", "secret_key": "secret-a", "auth_key": "auth-a"},
    "b": {"write_key": "ws-b", "api_key": "key-b", "secret_key": "secret-b", "auth_key": "auth-b"},
}


@pytest.fixture(scope="module")
def two_tenant_stack() -> Iterator[TwoTenantStack]:
    a = TWO_TENANTS["a"]
    loop_thread = LoopThread()
    sockets = [bind("127.0.0.1", 0) for _ in range(3)]
    urls = BundleUrls(*(url_of(sock) for sock in sockets))
    clock = Clock()
    config = BundleConfig(
        write_key=a["write_key"], mailjet_api_key=a["api_key"], mailjet_secret_key=a["secret_key"],
        auth_key=a["auth_key"], seed=0,
    )
    runner = Runner()
    mailjet_app = create_mailjet_app(config, clock, urls)
    runner.add("segment", create_segment_app(config, clock, urls), sockets[0])
    runner.add("mailjet", mailjet_app, sockets[1])
    # As the bundle wires it: B's key is known once B's App Connections page shows it (`tenant_b`).
    runner.add("destination", create_destination_app(AppConnectionKeys(mailjet_app.state.service, urls.mailjet_url)), sockets[2])
    loop_thread.run(runner.start())
    clock_task = asyncio.run_coroutine_threadsafe(clock.run_forever(), loop_thread.loop)
    http = httpx.Client(timeout=30)
    yield TwoTenantStack(urls.segment_url, urls.mailjet_url, http)
    http.close()
    clock_task.cancel()
    loop_thread.run(runner.stop())
    loop_thread.close()


@pytest.fixture
def tenant_b(two_tenant_stack: TwoTenantStack) -> TwoTenantStack:
    """Both fakes reset, then tenant B set up as a parallel job would: its own source (workspace), its
    own Mailjet account, each pointing at the other; A's App Connections send events to `ws-a`."""
    stack, a, b = two_tenant_stack, TWO_TENANTS["a"], TWO_TENANTS["b"]
    http, segment, mailjet = stack.http, stack.segment_url, stack.mailjet_url
    for url in (segment, mailjet):
        assert http.post(f"{url}/_emulator/reset").status_code == 200
    steps = [
        http.post(f"{segment}/_emulator/sources", json={"name": "job b", "write_key": b["write_key"]}),
        http.post(f"{mailjet}/_emulator/accounts", json={"api_key": b["api_key"], "secret_key": b["secret_key"]}),
        http.put(f"{mailjet}/_emulator/app-connections/segment", params={"apiKey": b["api_key"]},
                 json={"authenticationKey": b["auth_key"], "writeKey": b["write_key"], "sendEvents": True}),
        http.put(f"{mailjet}/_emulator/app-connections/segment", json={"writeKey": a["write_key"], "sendEvents": True}),
        http.put(f"{segment}/_emulator/destinations/mailjet", params={"writeKey": b["write_key"]},
                 json={"settings": {"apiKey": b["auth_key"]}}),
    ]
    for answer in steps:
        assert answer.status_code in (200, 201), answer.text
    return stack


SegjetUp = Callable[..., tuple[dict, subprocess.Popen]]


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return json.loads(path.read_text())
        if process.poll() is not None:
            raise AssertionError(f"segjet up exited early: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.05)
    raise AssertionError("segjet up never wrote its ready file")


@pytest.fixture
def segjet_up(tmp_path: Path) -> Iterator[SegjetUp]:
    """`segjet_up(*flags)`: `segjet up` on free ports in a subprocess, its stdout and stderr read
    together as text; answers (ready info, process), and kills what is still running after the test."""
    started: list[subprocess.Popen] = []

    def start(*flags: str) -> tuple[dict, subprocess.Popen]:
        ready = tmp_path / f"ready-{len(started)}.json"
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0",
             "--ready-file", str(ready), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append(process)
        return wait_for_file(ready, process), process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
