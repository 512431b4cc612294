"""`segjet up --data-dir` killed with SIGKILL mid-load, then started again on the same ports and data.

Every identify answered 200 before the kill must be stored after the restart and end up delivered
to the fake Mailjet; deliveries that were waiting for a retry (Mailjet faulted with 503) resume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import requests
from segment.analytics import Client

WAIT_SECONDS = 60


def free_ports(count: int) -> list[int]:
    # The ports must stay the same across the restart, so they are chosen here and passed in.
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start(data_dir: Path, ports: list[int], ready: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "up", "--data-dir", str(data_dir), "--ready-file", str(ready),
         "--segment-port", str(ports[0]), "--mailjet-port", str(ports[1]), "--destination-port", str(ports[2]),
         "--engage-sync-interval", "manual"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(f"segjet up exited: {process.stderr.read().decode() if process.stderr else ''}")
        assert time.monotonic() < deadline, "segjet up never became ready"
        time.sleep(0.05)
    return process, json.loads(ready.read_text())


def wait_for(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def test_sigkill_mid_load_loses_no_answered_message_and_retries_resume(tmp_path: Path) -> None:
    data_dir, ready, ports = tmp_path / "data", tmp_path / "ready.json", free_ports(3)
    process, info = start(data_dir, ports, ready)
    segment, mailjet = info["segment_url"], info["mailjet_url"]
    try:
        # Mailjet fails: the first deliveries wait for retries when the process dies.
        fault = {"method": "POST", "path": "/v3/REST/contactslist/*/managecontact", "status": 503}
        assert httpx.post(f"{mailjet}/_emulator/faults", json=fault).status_code in (200, 201)
        answered: list[str] = []
        refused: list[Exception] = []  # an answer other than 200 (APIError): the test fails on it

        def send() -> None:
            client = Client(info["write_key"], host=segment, sync_mode=True, timeout=10)
            for n in range(100_000):
                try:
                    _, message = client.identify(f"user-{n}", {"email": f"user-{n}@example.com"})
                except requests.exceptions.RequestException:  # the server is gone: stop
                    return
                except Exception as exc:  # noqa: BLE001 - raised in this thread, failed in the test's
                    refused.append(exc)
                    return
                answered.append(message["messageId"])

        sender = threading.Thread(target=send)
        sender.start()
        wait_for("some answered identifies", lambda: len(answered) >= 150)
        wait_for("a retry", lambda: httpx.get(f"{segment}/_emulator/deliveries", params={"state": "retrying"}).json()["deliveries"])
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        sender.join()
        assert refused == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    process, info = start(data_dir, ports, ready)
    try:
        assert info["segment_url"] == segment
        stored = httpx.get(f"{segment}/_emulator/events", params={"limit": 10_000}).json()["events"]
        assert set(answered) <= {event["messageId"] for event in stored}
        # The fault rules were not kept; advancing the clock fires the retries that resumed.
        def all_delivered() -> bool:
            httpx.post(f"{segment}/_emulator/clock", json={"advance": "10m"})
            records = httpx.get(f"{segment}/_emulator/deliveries", params={"limit": 10_000}).json()["deliveries"]
            delivered = {record["messageId"] for record in records if record["state"] == "delivered"}
            return set(answered) <= delivered

        wait_for("every answered identify delivered", all_delivered)
        records = httpx.get(f"{segment}/_emulator/deliveries", params={"limit": 10_000}).json()["deliveries"]
        assert any(record["attempts"][0]["status"] == 503 for record in records)  # a retry resumed
        auth = (info["mailjet_api_key"], info["mailjet_secret_key"])
        first = httpx.get(f"{mailjet}/v3/REST/contact/user-0@example.com", auth=auth)
        assert first.status_code == 200, first.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
