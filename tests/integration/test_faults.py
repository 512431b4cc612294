"""Fault injection over HTTP on both fakes: rules through the control API and `--faults`, each
action seen by real clients (httpx, analytics-python, mailjet_rest), the journal and reset."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailjet_rest import Client as MailjetClient
from mailjet_rest.errors import ApiRateLimitError
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError

from emulator.bundle import BackgroundBundle
from emulator.common import fault_routes
from emulator.cli import build_parser, config_from_args
from emulator.config import BundleConfig

from .conftest import SegjetUp
from .polling import wait_for

MANAGECONTACT = "/v3/REST/contactslist/*/managecontact"
# A request held across a reset or an import: held far longer than a test waits for its outcome
# (15 s), as it is closed when its state is forgotten, not at the end of its delay.
HELD_ACROSS_MS = 60_000


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=1)) as info:
        yield info


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        for url in (stack["segment_url"], stack["mailjet_url"]):
            client.post(f"{url}/_emulator/reset").raise_for_status()
        yield client


def add_fault(http: httpx.Client, url: str, rule: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"{url}/_emulator/faults", json=rule)
    assert response.status_code == 201, response.text
    return response.json()


def manage(http: httpx.Client, stack: dict[str, Any], path: str = "/v3/REST/contactslist/1/managecontact") -> httpx.Response:
    return http.post(
        stack["mailjet_url"] + path,
        auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]),
        json={"Email": "ada@example.com", "Action": "addnoforce"},
    )


def journal(http: httpx.Client, url: str) -> list[dict[str, Any]]:
    return http.get(f"{url}/_emulator/requests").json()["requests"]


def test_mailjet_503_in_mailjet_shape_case_insensitive_then_spent(http: httpx.Client, stack: dict[str, Any]) -> None:
    rule = add_fault(http, stack["mailjet_url"], {"method": "POST", "path": MANAGECONTACT, "status": 503, "times": 1})
    assert rule["id"] and rule["times"] == 1
    failed = manage(http, stack, "/V3/rest/ContactsList/1/ManageContact")
    assert failed.status_code == 503
    assert failed.json() == {"ErrorInfo": "", "ErrorMessage": "Service Unavailable", "StatusCode": 503}
    assert manage(http, stack).status_code == 201
    entries = journal(http, stack["mailjet_url"])
    assert [(entry["status"], entry["fault"]) for entry in entries] == [(503, rule["id"]), (201, None)]
    assert entries[0]["body"] == {"Email": "ada@example.com", "Action": "addnoforce"}
    listed = http.get(f"{stack['mailjet_url']}/_emulator/faults").json()["faults"]
    assert [(r["id"], r["matched"], r["fired"], r["spent"]) for r in listed] == [(rule["id"], 1, 1, True)]


def test_mailjet_429_is_an_html_page_as_the_real_one(http: httpx.Client, stack: dict[str, Any]) -> None:
    add_fault(http, stack["mailjet_url"], {"path": "/v3/REST/contact", "status": 429})
    mailjet = MailjetClient(auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]), api_url=stack["mailjet_url"] + "/")
    with pytest.raises(ApiRateLimitError) as failure:  # mailjet_rest 1.9 raises on 429
        mailjet.contact.get()
    assert "<h1>429 Too Many Requests</h1>" in str(failure.value)


def test_a_mailjet_rule_refuses_retry_after_which_its_429_never_announces(http: httpx.Client, stack: dict[str, Any]) -> None:
    refused = http.post(f"{stack['mailjet_url']}/_emulator/faults", json={"path": "/v3/REST/contact", "status": 429,
                                                                        "retry_after": 5})
    assert refused.status_code == 400 and "unknown field(s) retry_after" in refused.json()["error"]
    rule = add_fault(http, stack["mailjet_url"], {"path": "/v3/REST/contact", "status": 429})
    assert "retry_after" not in rule
    assert add_fault(http, stack["segment_url"], {"path": "/v1/batch", "status": 429})["retry_after"] == 1
    answer = http.get(stack["mailjet_url"] + "/v3/REST/contact", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]))
    assert answer.status_code == 429 and answer.headers["content-type"].startswith("text/html")


def test_mailjet_fault_on_send_v31_uses_the_v31_error_shape(http: httpx.Client, stack: dict[str, Any]) -> None:
    add_fault(http, stack["mailjet_url"], {"path": "/v3.1/send", "status": 500})
    answer = http.post(stack["mailjet_url"] + "/v3.1/send", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]), json={})
    assert answer.status_code == 500
    assert set(answer.json()) == {"ErrorIdentifier", "StatusCode", "ErrorMessage"}
    # Mailjet's paths ignore case, the rule's glob too, and so does the choice of error shape.
    answer = http.post(stack["mailjet_url"] + "/V3.1/Send", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]), json={})
    assert answer.status_code == 500 and set(answer.json()) == {"ErrorIdentifier", "StatusCode", "ErrorMessage"}


def test_a_rule_for_one_api_key_spares_the_others(http: httpx.Client, stack: dict[str, Any]) -> None:
    add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, "api_key": "someone-else"})
    assert manage(http, stack).status_code == 201
    add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, "api_key": stack["mailjet_api_key"]})
    assert manage(http, stack).status_code == 503


def test_drop_closes_the_connection_without_an_answer(http: httpx.Client, stack: dict[str, Any]) -> None:
    rule = add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, "action": "drop", "times": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        manage(http, stack)
    assert manage(http, stack).status_code == 201  # a new connection works
    entries = journal(http, stack["mailjet_url"])
    assert [(entry["status"], entry["fault"]) for entry in entries] == [(None, rule["id"]), (201, None)]
    assert entries[0]["response"] is None and entries[1]["response"]


def test_timeout_holds_the_request_until_the_client_gives_up(http: httpx.Client, stack: dict[str, Any]) -> None:
    rule = add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, "action": "timeout", "times": 1})
    with httpx.Client(timeout=0.3) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post(
                stack["mailjet_url"] + "/v3/REST/contactslist/1/managecontact",
                auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]), json={"Email": "x@example.com"},
            )
    # The client may give up before the server has read the request (a busy machine): the held
    # request is journaled once read.
    held = wait_for(lambda: journal(http, stack["mailjet_url"]), "the held request in the journal")
    assert [(e["status"], e["fault"]) for e in held] == [(None, rule["id"])]
    # Mailjet did nothing with the held request.
    contacts = http.get(stack["mailjet_url"] + "/v3/REST/contact", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]))
    assert contacts.json()["Total"] == 0


def test_a_mailjet_rule_meets_a_send_of_several_megabytes_once_it_has_arrived_whole(http: httpx.Client, stack: dict[str, Any]) -> None:
    # Send v3.1 takes 15 MB of attachments: the rule acts on the whole body (journaled whole), as
    # the fake Mailjet's 25 MB cap allows, not on its first megabyte.
    add_fault(http, stack["mailjet_url"], {"method": "POST", "path": "/v3.1/send", "status": 503})
    attachment = {"ContentType": "text/plain", "Filename": "big.txt", "Base64Content": "QUJD" * 500_000}
    content = json.dumps({"Messages": [{"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}],
                                        "TextPart": "t", "Attachments": [attachment]}]}).encode()
    answer = http.post(stack["mailjet_url"] + "/v3.1/send", content=content, headers={"Content-Type": "application/json"},
                       auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]))
    assert answer.status_code == 503
    [entry] = journal(http, stack["mailjet_url"])
    assert entry["body"] == {"truncated": True, "bytes": len(content)}


def test_a_timeout_hold_is_closed_unanswered_at_its_cap(http: httpx.Client, stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Past HOLD_CAP_SECONDS (30 s; here shortened) a client that never gives up sees the connection
    # close, not a hang until the bundle stops.
    monkeypatch.setattr(fault_routes, "HOLD_CAP_SECONDS", 0.5)
    add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, "action": "timeout"})
    with pytest.raises(httpx.RemoteProtocolError):
        manage(http, stack)  # its client waits 10 s


def test_null_status_answers_for_real_late_and_is_journaled(http: httpx.Client, stack: dict[str, Any]) -> None:
    rule = add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, "status": None, "delay_ms": 20})
    assert manage(http, stack).status_code == 201
    assert [(e["status"], e["fault"]) for e in journal(http, stack["mailjet_url"])] == [(201, rule["id"])]


def test_a_late_answer_gets_the_whole_body_however_large(http: httpx.Client, stack: dict[str, Any]) -> None:
    # Send v3.1 takes up to 15 MB of attachments; the rule must not cut what it passes on.
    rule = add_fault(http, stack["mailjet_url"], {"path": "/v3.1/send", "status": None, "delay_ms": 10})
    attachment = base64.b64encode(b"x" * 1_500_000).decode()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "Subject": "Report", "TextPart": "attached",
               "Attachments": [{"ContentType": "application/pdf", "Filename": "r.pdf", "Base64Content": attachment}]}
    answer = http.post(stack["mailjet_url"] + "/v3.1/send", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]),
                       json={"Messages": [message]})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["Messages"][0]["Status"] == "success"
    (entry,) = journal(http, stack["mailjet_url"])
    assert (entry["status"], entry["fault"]) == (200, rule["id"])


def test_a_write_key_rule_that_does_not_fire_passes_the_whole_body_on(http: httpx.Client, stack: dict[str, Any]) -> None:
    add_fault(http, stack["segment_url"], {"path": "/v1/batch", "write_key": "another-key"})
    events = [{"type": "track", "userId": "u", "event": "E", "properties": {"pad": "x" * 10_000}} for _ in range(120)]
    body = json.dumps({"writeKey": stack["write_key"], "batch": events}).encode()
    assert len(body) > 1024 * 1024
    answer = http.post(stack["segment_url"] + "/v1/batch", content=body, headers={"Content-Type": "application/json"})
    # Segment's own answer to the whole body, not invalid_json for the first MB of it.
    assert answer.status_code == 400 and answer.json()["code"] == "payload_too_large", answer.text
    assert str(len(body)) in answer.json()["message"]


def test_segment_429_carries_retry_headers_and_analytics_python_reads_it(http: httpx.Client, stack: dict[str, Any]) -> None:
    rule = add_fault(
        http, stack["segment_url"],
        {"method": "POST", "path": "/v1/*", "status": 429, "retry_after": 7, "write_key": stack["write_key"], "times": 1},
    )
    answer = http.post(stack["segment_url"] + "/v1/track", json={"writeKey": stack["write_key"], "userId": "u", "event": "E"})
    assert answer.status_code == 429
    assert (answer.headers["retry-after"], answer.headers["x-ratelimit-reset"]) == ("7", "7")
    assert answer.json() == {"code": "rate_limited", "message": "Too Many Requests"}
    entry = journal(http, stack["segment_url"])[0]
    assert entry["fault"] == rule["id"] and entry["body"]["writeKey"] == "<redacted>"

    add_fault(http, stack["segment_url"], {"path": "/v1/batch", "status": 503, "times": 1})
    client = SegmentClient(stack["write_key"], host=stack["segment_url"], sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as failure:
        client.identify("u1", {"email": "u1@example.com"})
    assert failure.value.status == 503 and failure.value.code == "service_unavailable"
    client.identify("u1", {"email": "u1@example.com"})  # the rule is spent
    assert http.get(stack["segment_url"] + "/_emulator/events", params={"userId": "u1"}).json()["events"]


def test_segment_write_key_rule_reads_a_gzipped_body(http: httpx.Client, stack: dict[str, Any]) -> None:
    add_fault(http, stack["segment_url"], {"path": "/v1/batch", "write_key": stack["write_key"]})
    client = SegmentClient("another-key", host=stack["segment_url"], sync_mode=True, max_retries=0, gzip=True)
    client.identify("u2", {"email": "u2@example.com"})  # another write key: untouched
    client = SegmentClient(stack["write_key"], host=stack["segment_url"], sync_mode=True, max_retries=0, gzip=True)
    with pytest.raises(APIError):
        client.identify("u2", {"email": "u2@example.com"})


def test_control_routes_are_never_faulted_and_reset_clears_rules(http: httpx.Client, stack: dict[str, Any]) -> None:
    for url in (stack["segment_url"], stack["mailjet_url"]):
        add_fault(http, url, {"path": "/*", "action": "drop"})
        assert http.get(f"{url}/_emulator/health").status_code == 200
        http.post(f"{url}/_emulator/reset").raise_for_status()
        assert http.get(f"{url}/_emulator/faults").json() == {"faults": []}


def test_delete_one_and_all_and_bad_rules(http: httpx.Client, stack: dict[str, Any]) -> None:
    url = stack["mailjet_url"]
    first, second = add_fault(http, url, {"path": "/a"}), add_fault(http, url, {"path": "/b"})
    assert http.delete(f"{url}/_emulator/faults/{first['id']}").status_code == 204
    missing = http.delete(f"{url}/_emulator/faults/{first['id']}")
    assert missing.status_code == 404 and "error" in missing.json()
    assert [rule["id"] for rule in http.get(f"{url}/_emulator/faults").json()["faults"]] == [second["id"]]
    assert http.delete(f"{url}/_emulator/faults").json() == {"faults": []}
    bad = http.post(f"{url}/_emulator/faults", json={"path": "/a", "rate": 3})
    assert bad.status_code == 400 and "rate" in bad.json()["error"]
    assert http.post(f"{url}/_emulator/faults", content=b"[").status_code == 400


def test_faults_file_loads_rules_into_both_fakes(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({
        "segment": [{"path": "/v1/batch", "status": 500, "retry_after": 3}],
        "mailjet": [{"method": "POST", "path": MANAGECONTACT, "status": 429, "rate": 0.5, "seed": 9}],
    }))
    args = build_parser().parse_args(
        ["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0", "--faults", str(path)]
    )
    with BackgroundBundle(config_from_args(args)) as info, httpx.Client() as client:
        segment_rules = client.get(info["segment_url"] + "/_emulator/faults").json()["faults"]
        mailjet_rules = client.get(info["mailjet_url"] + "/_emulator/faults").json()["faults"]
    assert [(r["path"], r["status"], r["retry_after"]) for r in segment_rules] == [("/v1/batch", 500, 3)]
    assert [(r["path"], r["rate"], r["seed"]) for r in mailjet_rules] == [(MANAGECONTACT, 0.5, 9)]


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{", "--faults"),
        ('{"sendgrid": []}', "expected"),
        ('{"mailjet": [{"path": "x"}]}', "path must be"),
        ('{"mailjet": [{"path": "/v3/REST/contact", "retry_after": 5}]}', "mailjet rule 0: unknown field(s) retry_after"),
        # Checked as the fake Mailjet matches paths, case-insensitively: the control API, named as a --faults problem.
        ('{"mailjet": [{"path": "/_Emulator/reset"}]}', "mailjet rule 0: path '/_Emulator/reset' only matches"),
    ],
)
def test_a_bad_faults_file_stops_segjet_up(tmp_path: Path, content: str, complaint: str, capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.cli import main

    path = tmp_path / "faults.json"
    path.write_text(content)
    code = main(["up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0", "--faults", str(path)])
    assert code == 1
    assert complaint in capsys.readouterr().err


def test_segment_write_key_rule_reads_the_body_as_the_fake_does(http: httpx.Client, stack: dict[str, Any]) -> None:
    import gzip
    import zlib

    add_fault(http, stack["segment_url"], {"path": "/v1/identify", "write_key": stack["write_key"], "status": 503})
    body = json.dumps({"userId": "u3", "writeKey": stack["write_key"]}).encode()
    url = stack["segment_url"] + "/v1/identify"
    # The fake reads x-gzip (and any case) as gzip: so does the rule, and it fires.
    for encoding in ("x-gzip", "GZIP"):
        answer = http.post(url, content=gzip.compress(body), headers={"Content-Encoding": encoding})
        assert answer.status_code == 503, encoding
    # The fake refuses deflate unread: the rule cannot read a write key there either, so it is the fake's 400.
    answer = http.post(url, content=zlib.compress(body), headers={"Content-Encoding": "deflate"})
    assert answer.status_code == 400 and answer.json()["code"] == "unsupported_content_encoding"
    # Even when the bytes under that header are plain JSON: the fake does not read them, nor does the rule.
    answer = http.post(url, content=body, headers={"Content-Encoding": "br", "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["code"] == "unsupported_content_encoding"
    # No body and no Basic auth: no write key, so the rule does not fire and the fake answers.
    answer = http.post(url, content=b"")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_json"


@pytest.mark.parametrize("rule", [{"status": 503, "delay_ms": HELD_ACROSS_MS}, {"action": "timeout"}], ids=["delay", "timeout"])
def test_a_request_held_across_a_reset_is_closed_unanswered_and_not_journaled(
    http: httpx.Client, stack: dict[str, Any], rule: dict[str, Any]
) -> None:
    # It belongs to the state the reset forgot: answering it (and journaling it) after the reset
    # would show a test an exchange of the test before. A `timeout` hold was kept on past the reset,
    # until the client (here after 10 s) or the 30 s cap gave up.
    add_fault(http, stack["mailjet_url"], {"path": MANAGECONTACT, **rule})
    outcome: list[object] = []

    def held() -> None:
        try:
            outcome.append(manage(http, stack).status_code)
        except httpx.TransportError as exc:
            outcome.append(type(exc))

    sender = threading.Thread(target=held)
    sender.start()
    wait_for(lambda: http.get(f"{stack['mailjet_url']}/_emulator/faults").json()["faults"][0]["fired"],
             "the request to reach the rule")
    http.post(f"{stack['mailjet_url']}/_emulator/reset").raise_for_status()
    sender.join(timeout=15)
    assert outcome == [httpx.RemoteProtocolError]
    assert journal(http, stack["mailjet_url"]) == []


def _held_outcome(send: Any) -> tuple[threading.Thread, list[object]]:
    """Run `send()` (a request a fault holds) in a thread; the list gets its status or its error type."""
    outcome: list[object] = []

    def held() -> None:
        try:
            outcome.append(send().status_code)
        except httpx.TransportError as exc:
            outcome.append(type(exc))

    thread = threading.Thread(target=held)
    thread.start()
    return thread, outcome


def test_a_tracking_call_held_by_a_delay_across_a_snapshot_import_is_closed_unanswered(
    http: httpx.Client, stack: dict[str, Any]
) -> None:
    # An import replaces the whole state, as a reset forgets it: the held identify was applied to
    # the imported workspace (stored, in the profile, delivered), after the import had answered.
    url = stack["segment_url"]
    snapshot = http.get(f"{url}/_emulator/snapshot").json()
    add_fault(http, url, {"path": "/v1/identify", "status": None, "delay_ms": HELD_ACROSS_MS})
    thread, outcome = _held_outcome(lambda: http.post(
        f"{url}/v1/identify", auth=(stack["write_key"], ""), json={"userId": "held-u1", "traits": {"plan": "pro"}}
    ))
    wait_for(lambda: http.get(f"{url}/_emulator/faults").json()["faults"][0]["fired"], "the call to reach the rule")
    assert http.put(f"{url}/_emulator/snapshot", json=snapshot).status_code == 200
    thread.join(timeout=15)
    assert outcome == [httpx.RemoteProtocolError]
    assert http.get(f"{url}/_emulator/events").json()["events"] == []
    assert http.get(f"{url}/_emulator/profiles/held-u1").status_code == 404


def test_a_request_held_across_a_reset_is_closed_before_the_reset_has_waited_for_the_calls_in_flight(
    http: httpx.Client, stack: dict[str, Any]
) -> None:
    # A reset forgets the state, then waits (up to 5 s) for the deliveries in flight to be answered:
    # the held request was closed only when the reset answered.
    add_fault(http, stack["mailjet_url"], {"path": "/v3/*", "action": "timeout"})  # holds the delivery's calls
    identify = http.post(f"{stack['segment_url']}/v1/identify", auth=(stack["write_key"], ""),
                         json={"userId": "q1", "traits": {"email": "q1@example.com"}})
    assert identify.status_code == 200
    wait_for(lambda: http.get(f"{stack['mailjet_url']}/_emulator/faults").json()["faults"][0]["fired"], "the delivery held")
    add_fault(http, stack["segment_url"], {"path": "/v1/track", "status": None, "delay_ms": HELD_ACROSS_MS})
    thread, outcome = _held_outcome(lambda: http.post(
        f"{stack['segment_url']}/v1/track", auth=(stack["write_key"], ""), json={"userId": "held-u3", "event": "Signed Up"}
    ))
    wait_for(lambda: _segment_faults(http, stack)[0]["fired"], "the call to reach the rule")
    resetting = threading.Thread(target=lambda: http.post(f"{stack['segment_url']}/_emulator/reset").raise_for_status())
    resetting.start()
    thread.join(timeout=15)
    assert outcome == [httpx.RemoteProtocolError]
    assert resetting.is_alive()  # still waiting for the delivery the fake Mailjet holds
    resetting.join(timeout=15)


def _half_sent(stack: dict[str, Any], path: str, body: dict[str, Any]) -> tuple[socket.socket, bytes]:
    """A tracking call to the fake Segment whose headers and first bytes of body are sent; answers
    the socket and the rest of the body, to send when the test says."""
    raw = json.dumps(body).encode()
    authorization = "Basic " + base64.b64encode(f"{stack['write_key']}:".encode()).decode()
    host, port = stack["segment_url"].removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(15)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                 f"Authorization: {authorization}\r\nConnection: close\r\n\r\n".encode() + raw[:5])
    time.sleep(0.3)  # the headers and the start of the body are in
    return sock, raw[5:]


def _answer(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def _segment_faults(http: httpx.Client, stack: dict[str, Any]) -> list[dict[str, Any]]:
    return http.get(f"{stack['segment_url']}/_emulator/faults").json()["faults"]


def test_a_whole_reset_during_an_import_waits_for_the_deliveries_of_the_workspaces_the_import_removed(
    http: httpx.Client, stack: dict[str, Any]
) -> None:
    # The import awaited the removed workspace's delivery itself, unseen by the reset's quiesce: the
    # reset answered while the destination's managecontact was still held, and it landed after.
    segment, mailjet = stack["segment_url"], stack["mailjet_url"]
    snapshot = http.get(f"{segment}/_emulator/snapshot").json()
    http.post(f"{segment}/_emulator/sources", json={"name": "ci", "write_key": "wk-removed"}).raise_for_status()
    rule = add_fault(http, mailjet, {"path": MANAGECONTACT, "status": None, "delay_ms": 1500, "times": 1})
    http.post(f"{segment}/v1/identify", auth=("wk-removed", ""),
              json={"userId": "u-removed", "traits": {"email": "removed@example.com"}}).raise_for_status()
    wait_for(lambda: http.get(f"{mailjet}/_emulator/faults").json()["faults"][0]["fired"], "the destination's call to be held")
    importing = threading.Thread(target=lambda: http.put(f"{segment}/_emulator/snapshot", json=snapshot, timeout=30))
    importing.start()
    time.sleep(0.2)  # the import is waiting for the removed workspace's delivery
    http.post(f"{segment}/_emulator/reset", timeout=30).raise_for_status()
    # Landed (journaled once answered) before the reset answered; its status is Mailjet's (a 400 when
    # the destination's property definitions came from an account reset since, which it then mends).
    assert len([entry for entry in journal(http, mailjet) if entry["fault"] == rule["id"]]) == 1
    importing.join(timeout=30)


def test_a_rule_fires_on_a_request_once_its_body_has_arrived(http: httpx.Client, stack: dict[str, Any]) -> None:
    # The rule fired as the headers came: a test saw it fire and imported a snapshot while the body
    # was still on its way (a loaded machine), and the held identify, checked against the state at
    # its body's end, was applied to the imported workspace and answered 200.
    url = stack["segment_url"]
    snapshot = http.get(f"{url}/_emulator/snapshot").json()
    add_fault(http, url, {"path": "/v1/identify", "status": None, "delay_ms": HELD_ACROSS_MS})
    sock, rest = _half_sent(stack, "/v1/identify", {"userId": "held-u2", "traits": {"plan": "pro"}})
    with sock:
        assert _segment_faults(http, stack)[0]["fired"] == 0
        sock.sendall(rest)
        wait_for(lambda: _segment_faults(http, stack)[0]["fired"], "the call to reach the rule")
        assert http.put(f"{url}/_emulator/snapshot", json=snapshot).status_code == 200
        assert _answer(sock) == b""  # closed unanswered
    assert http.get(f"{url}/_emulator/events").json()["events"] == []
    assert http.get(f"{url}/_emulator/profiles/held-u2").status_code == 404


@pytest.mark.parametrize("removal", ["DELETE faults", "POST reset"])
def test_a_rule_removed_while_a_body_arrives_leaves_the_request_alone(http: httpx.Client, stack: dict[str, Any], removal: str) -> None:
    # The rule was chosen at the headers: removed (or the server reset) before the body's end, it
    # still answered its 503, journaled in the fresh journal.
    url = stack["segment_url"]
    add_fault(http, url, {"path": "/v1/track", "status": 503})
    sock, rest = _half_sent(stack, "/v1/track", {"userId": "u-late-body", "event": "Signed Up"})
    with sock:
        method, path = removal.split()
        assert http.request(method, f"{url}/_emulator/{path}").is_success
        sock.sendall(rest)
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")
    assert [(entry["status"], entry["fault"]) for entry in journal(http, url)] == [(200, None)]
    stored = http.get(f"{url}/_emulator/events").json()["events"]
    assert [(event["type"], event["userId"], event["status"]) for event in stored] == [("track", "u-late-body", "accepted")]


def test_a_rule_added_while_a_body_arrives_is_not_met_by_that_request(http: httpx.Client, stack: dict[str, Any]) -> None:
    # Whether it was met depended on another rule for the path, one that never fired here: with
    # none, the request went through as its headers came; with one, it met the rule added since.
    add_fault(http, stack["segment_url"], {"path": "/v1/track", "status": 500, "write_key": "someone-else"})
    sock, rest = _half_sent(stack, "/v1/track", {"userId": "u-mid-body", "event": "Signed Up"})
    with sock:
        add_fault(http, stack["segment_url"], {"path": "/v1/track", "status": 503})
        sock.sendall(rest)
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")
    assert _segment_faults(http, stack)[1]["matched"] == 0


def test_a_request_whose_client_leaves_mid_body_spends_no_rule(http: httpx.Client, stack: dict[str, Any]) -> None:
    # It drew the rule and spent its one firing on a request that never arrived: the next, whole,
    # request went through unfaulted.
    add_fault(http, stack["segment_url"], {"path": "/v1/track", "status": 503, "times": 1})
    sock, _ = _half_sent(stack, "/v1/track", {"userId": "u-gone", "event": "Signed Up"})
    sock.close()
    time.sleep(0.3)  # the server has seen the client go
    assert {key: _segment_faults(http, stack)[0][key] for key in ("matched", "fired", "spent")} == {"matched": 0, "fired": 0, "spent": False}
    whole = http.post(f"{stack['segment_url']}/v1/track", auth=(stack["write_key"], ""), json={"userId": "u-next", "event": "Signed Up"})
    assert whole.status_code == 503


def test_a_mailjet_call_held_by_a_delay_across_a_snapshot_import_is_closed_unanswered(
    http: httpx.Client, stack: dict[str, Any]
) -> None:
    # The same on the fake Mailjet: its import installs new accounts, so the held call's is gone.
    url = stack["mailjet_url"]
    snapshot = http.get(f"{url}/_emulator/snapshot").json()
    add_fault(http, url, {"path": MANAGECONTACT, "status": None, "delay_ms": HELD_ACROSS_MS})
    thread, outcome = _held_outcome(lambda: manage(http, stack))
    wait_for(lambda: http.get(f"{url}/_emulator/faults").json()["faults"][0]["fired"], "the call to reach the rule")
    assert http.put(f"{url}/_emulator/snapshot", json=snapshot).status_code == 200
    thread.join(timeout=15)
    assert outcome == [httpx.RemoteProtocolError]
    contacts = http.get(f"{url}/v3/REST/contact", auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]))
    assert contacts.json()["Total"] == 0


@pytest.mark.parametrize("rule", [{"action": "timeout"}, {"status": None, "delay_ms": 60_000}], ids=["timeout", "delay"])
def test_segjet_up_stops_cleanly_while_a_fault_holds_a_request(segjet_up: SegjetUp, tmp_path: Path, rule: dict[str, Any]) -> None:
    """A held Mailjet call is dropped when the bundle stops: uvicorn's graceful shutdown waited its
    2 s for it, then cancelled it and the destination's request waiting on it, logging an ERROR and
    CancelledError tracebacks (a delay, until it also watched for the stop)."""
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"mailjet": [{"path": MANAGECONTACT, **rule}]}))
    info, process = segjet_up("--faults", str(faults))
    with httpx.Client(timeout=10) as client:
        identify = {"type": "identify", "userId": "held", "traits": {"email": "held@example.com"}}
        client.post(f"{info['segment_url']}/v1/identify", json=identify, auth=(info["write_key"], "")).raise_for_status()
        wait_for(lambda: client.get(f"{info['mailjet_url']}/_emulator/faults").json()["faults"][0]["fired"],
                 "the held managecontact call")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "ERROR" not in output and "Traceback" not in output, output
