"""Security basics: every Mailjet REST route needs its key pair, the control token guards
/_emulator/* (and only that), request bodies are capped, secrets stay out of journals and logs,
and `segjet up` warns when it listens beyond loopback."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig
from emulator.harness.client import SegjetClient
from emulator.harness.run import run_scenario
from emulator.mailjet.routes import MAX_BODY_BYTES, REST_ROUTES

TOKEN = "s3cret-control-token"


@pytest.fixture(scope="module")
def guarded() -> Iterator[dict[str, Any]]:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=3, control_token=TOKEN)
    with BackgroundBundle(config) as info:
        yield info


def rest_calls() -> list[tuple[str, str]]:
    calls = []
    for route in REST_ROUTES:
        path = "/v3/REST/" + "/".join("1" if part == "{}" else part for part in route.shape)
        calls += [(method, path) for method in route.handlers]
    return calls + [("POST", "/v3.1/send"), ("GET", "/v3/DATA/batchjob/1/JSONError/application:json/LAST")]


def test_every_mailjet_rest_route_needs_the_key_pair(guarded: dict[str, Any]) -> None:
    wrong = (guarded["mailjet_api_key"], "not-the-secret")
    with httpx.Client(base_url=guarded["mailjet_url"]) as http:
        for method, path in rest_calls():
            for auth in (None, wrong, (guarded["mailjet_api_key"], "")):
                answer = http.request(method, path, auth=auth, json={"Email": "x@example.com"})
                assert answer.status_code == 401, (method, path, auth, answer.text)
                assert answer.json()["StatusCode"] == 401
                assert answer.headers["www-authenticate"].startswith("Basic")


def test_control_api_needs_the_token_in_any_of_three_places(guarded: dict[str, Any]) -> None:
    for url in (guarded["segment_url"], guarded["mailjet_url"]):
        with httpx.Client(base_url=url) as http:
            refused = http.get("/_emulator/requests")
            assert refused.status_code == 401
            # The answer names each of the three places, for a script and for a link alike.
            assert all(place in refused.json()["error"] for place in ("Bearer <token>", "X-Segjet-Token: <token>", "?token=<token>"))
            assert refused.headers["www-authenticate"] == "Bearer"
            assert http.get("/_emulator/requests", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert http.post("/_emulator/faults", json={"path": "/x"}).status_code == 401
            assert http.get("/_emulator/requests", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            # An auth scheme's name is case-insensitive (RFC 9110 §11.1).
            assert http.get("/_emulator/requests", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
            assert http.get("/_emulator/requests", headers={"X-Segjet-Token": TOKEN}).status_code == 200
            assert http.get("/_emulator/requests", params={"token": TOKEN}).status_code == 200
            # Open: health (readiness probes), the dashboard's pages and its static files.
            assert http.get("/_emulator/health").status_code == 200
            assert http.get("/").status_code == 200
            assert http.get("/_emulator/dashboard/static/common.js").status_code == 200
            # The dashboard's data is not: only its pages and static files are open.
            assert http.get("/_emulator/dashboard/info").status_code == 401
    with httpx.Client(base_url=guarded["segment_url"]) as http:
        for path in ("/_emulator/dashboard/trace?user=u1", "/_emulator/dashboard/trace/export?user=u1"):
            assert http.get(path).status_code == 401, path
    with httpx.Client(base_url=guarded["mailjet_url"]) as http:
        for path in ("/_emulator/dashboard/contacts", "/_emulator/dashboard/lists"):
            assert http.get(path).status_code == 401, path


def test_the_token_in_one_place_is_enough_whatever_the_others_hold(guarded: dict[str, Any]) -> None:
    # The first carrier met decided: a proxy's own Bearer header, or an empty X-Segjet-Token, hid a
    # right ?token= (and 401 was the answer).
    for url in (guarded["segment_url"], guarded["mailjet_url"]):
        with httpx.Client(base_url=url) as http:
            for headers in ({"Authorization": "Bearer other"}, {"X-Segjet-Token": ""}, {"X-Segjet-Token": "wrong"}):
                assert http.get("/_emulator/requests", headers=headers, params={"token": TOKEN}).status_code == 200, headers
            both = {"X-Segjet-Token": "wrong", "Authorization": f"Bearer {TOKEN}"}
            assert http.get("/_emulator/requests", headers=both).status_code == 200
            assert http.get("/_emulator/requests", headers={"Authorization": "Bearer other"}).status_code == 401
    # The trace passes on the token that was right, not the first one it meets.
    with httpx.Client(base_url=guarded["segment_url"]) as http:
        trace = http.get("/_emulator/dashboard/trace", params={"user": "u1", "token": TOKEN}, headers={"X-Segjet-Token": "wrong"})
        assert trace.status_code == 200 and trace.json()["unreadSources"] == [], trace.text


def test_public_apis_do_not_need_the_token(guarded: dict[str, Any]) -> None:
    client = SegjetClient({**guarded, "control_token": None})
    try:
        client.identify("u-open", {"email": "open@example.com"})
        assert client.mailjet("GET", "/v3/REST/contact").status_code == 200
    finally:
        client.close()


def test_the_harness_drives_a_guarded_stack(guarded: dict[str, Any]) -> None:
    assert run_scenario(guarded, seed=1, users=1, reset=True) == 0
    client = SegjetClient(guarded)
    try:
        client.reset()
        client.identify("u-token", {"email": "token@example.com", "plan": "pro"})
        assert client.wait_for_contact("token@example.com", {"plan": "pro"})["segment_user_id"] == "u-token"
        assert client.advance_clock("1m")["now"]
        trace = client.http.get(
            guarded["segment_url"] + "/_emulator/dashboard/trace", params={"user": "u-token"}
        ).json()
        assert any(step["kind"] == "mailjet-call" for step in trace["steps"])  # the trace read Mailjet's journal
    finally:
        client.close()


def test_journal_redacts_credentials(guarded: dict[str, Any]) -> None:
    headers = {"X-Segjet-Token": TOKEN}
    with httpx.Client(headers=headers) as http:
        http.post(guarded["segment_url"] + "/v1/identify", json={"writeKey": guarded["write_key"], "userId": "r1"})
        # Basic auth too: alone in a run, this test's own calls must put an Authorization in each journal.
        http.post(guarded["segment_url"] + "/v1/identify", json={"userId": "r2"}, auth=(guarded["write_key"], ""))
        http.get(guarded["mailjet_url"] + "/v3/REST/contact", auth=(guarded["mailjet_api_key"], guarded["mailjet_secret_key"]))
        journals = [
            http.get(url + "/_emulator/requests", params={"limit": 10_000}).text
            for url in (guarded["segment_url"], guarded["mailjet_url"])
        ]
    for text in journals:
        assert TOKEN not in text
        assert guarded["write_key"] not in text
        assert guarded["mailjet_secret_key"] not in text
        assert '"authorization":"<redacted>"' in text.replace(" ", "")


@pytest.mark.parametrize(
    ("path", "head", "status", "error"),
    [
        ("/v3/REST/contact", b'{"Email": "', 413, {"StatusCode": 413}),
        # Send v3.1 documents "mj-0011 payload too big" as a 400 in its own error shape.
        ("/v3.1/send", b'{"Messages": [{"Subject": "', 400, {"ErrorCode": "mj-0011", "StatusCode": 400}),
    ],
)
def test_mailjet_refuses_a_body_over_the_cap_in_the_shape_of_the_api_called(
    guarded: dict[str, Any], path: str, head: bytes, status: int, error: dict[str, Any]
) -> None:
    answer = httpx.post(
        guarded["mailjet_url"] + path, content=head + b"x" * MAX_BODY_BYTES + b'"}',
        auth=(guarded["mailjet_api_key"], guarded["mailjet_secret_key"]), timeout=30,
    )
    assert answer.status_code == status
    assert error.items() <= answer.json().items()


def test_segment_drains_an_oversized_body_and_answers_400(guarded: dict[str, Any]) -> None:
    answer = httpx.post(guarded["segment_url"] + "/v1/batch", content=b"x" * (8 * 1024 * 1024), timeout=30)
    assert answer.status_code == 400 and answer.json()["code"] == "payload_too_large"


def test_up_warns_off_loopback_and_prints_no_secret_after_the_banner(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    secret = "mj-secret-never-logged"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "up", "--host", "0.0.0.0", "--segment-port", "0", "--mailjet-port", "0",
         "--destination-port", "0", "--mailjet-secret-key", secret, "--ready-file", str(ready),
         "--control-token", TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            assert process.poll() is None and time.monotonic() < deadline, "segjet up did not start"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        local = {name: info[name].replace("0.0.0.0", "127.0.0.1") for name in ("segment_url", "mailjet_url")}
        with httpx.Client() as http:
            # Traffic that makes the servers log: bad keys, a failing destination call, a bad control call.
            http.get(local["mailjet_url"] + "/v3/REST/contact", auth=(info["mailjet_api_key"], "wrong"))
            http.post(local["mailjet_url"] + "/_emulator/faults", json={"path": "/*"}, headers={"X-Segjet-Token": TOKEN})
            http.post(local["segment_url"] + "/v1/identify", json={"writeKey": info["write_key"], "userId": "s",
                                                                  "traits": {"email": "s@example.com"}})
            http.get(local["segment_url"] + "/_emulator/events", params={"limit": "x"})
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert "WARNING: listening on 0.0.0.0" in err
    banner, _, after = out.partition("Ctrl-C stops.")
    assert secret in banner  # the startup banner is where credentials are shown
    for text in (after, err):
        assert secret not in text and TOKEN not in text and info["auth_key"] not in text
    assert TOKEN not in banner


@pytest.mark.parametrize(
    ("server", "path"),
    [("segment_url", "/v1/track"), ("mailjet_url", "/v3/REST/contact"), ("mailjet_url", "/_emulator/accounts"),
     ("destination_url", "/")],
)
def test_a_client_gone_mid_body_is_no_logged_error(
    guarded: dict[str, Any], server: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Each server logged a ClientDisconnect traceback as its own bug ("bug in the fake Segment ...").
    host, port = guarded[server].removeprefix("http://").rsplit(":", 1)
    # The destination reads the body only for a known authentication key.
    key = base64.b64encode(f"{guarded['auth_key']}:".encode()).decode()
    with caplog.at_level("ERROR"):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"X-Segjet-Token: {TOKEN}\r\nAuthorization: Basic {key}\r\n"
                         f"Content-Length: 1000\r\n\r\n{{\"userId\": ".encode())
            time.sleep(0.1)
        time.sleep(0.3)
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == []
