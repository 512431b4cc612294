"""Several Mailjet accounts on one fake server, over real HTTP with the official `mailjet_rest` client
and each account's own key pair: contacts, lists, properties, messages, email events, webhooks, jobs,
App Connections and resets never cross from one account to another."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mailjet_rest import Client
from mailjet_rest.errors import DoesNotExistError, MailjetAuthError, ValidationError

from emulator.common.clock import Clock
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.routes import create_app

from .conftest import StartApps

CONFIG = BundleConfig(mailjet_api_key="key-a", mailjet_secret_key="secret-a", auth_key="auth-a")
A = ("key-a", "secret-a")
B = ("key-b", "secret-b")


@dataclass
class Server:
    url: str
    http: httpx.Client

    def client(self, keys: tuple[str, str], **kwargs: Any) -> Client:
        return Client(auth=keys, api_url=f"{self.url}/", **kwargs)

    def control(self, method: str, path: str, api_key: str | None = None, **kwargs: Any) -> httpx.Response:
        params = {"apiKey": api_key} if api_key else None
        return self.http.request(method, f"/_emulator/{path}", params=params, **kwargs)

    def send(self, keys: tuple[str, str], to: str) -> int:
        message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": to}], "Subject": "Hi", "TextPart": "Hello"}
        answer = self.client(keys, version="v3.1").send.create(data={"Messages": [message]})
        assert answer.status_code == 200, answer.text
        return answer.json()["Messages"][0]["To"][0]["MessageID"]


@pytest.fixture(scope="module")
def server(serve: StartApps) -> Iterator[Server]:
    clock = Clock()
    app = create_app(CONFIG, clock, BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    url = serve({"mailjet": app}, clock)["mailjet"]
    with httpx.Client(base_url=url) as http:
        yield Server(url, http)


@pytest.fixture(autouse=True)
def two_accounts(server: Server) -> None:
    assert server.control("POST", "reset").status_code == 200  # a plain reset drops every added account
    created = server.control("POST", "accounts", json={"api_key": B[0], "secret_key": B[1]})
    assert created.status_code == 201, created.text


def data(response: Any) -> list[dict[str, Any]]:
    assert response.status_code in (200, 201), response.text
    return response.json()["Data"]


def test_a_new_account_has_its_own_list_and_segment_key(server: Server) -> None:
    accounts = server.control("GET", "accounts").json()["accounts"]
    assert [(a["apiKey"], a["apiKeyId"], a["listId"]) for a in accounts] == [("key-a", 1, 1), ("key-b", 2, 1)]
    assert accounts[0]["authenticationKey"] == "auth-a" and len(accounts[1]["authenticationKey"]) == 32
    assert server.control("GET", "app-connections/segment", B[0]).json()["authenticationKey"] == accounts[1]["authenticationKey"]
    assert [l["ID"] for l in data(server.client(B).contactslist.get())] == [1]
    again = server.control("POST", "accounts", json={"api_key": B[0], "secret_key": "x"})
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    assert server.control("POST", "accounts", json={"api_key": "", "secret_key": "x"}).status_code == 400
    unknown = server.control("GET", "messages", "nobody")
    assert unknown.status_code == 404 and "POST /_emulator/accounts" in unknown.json()["error"]
    with pytest.raises(MailjetAuthError):
        server.client(("key-b", "secret-a")).contact.get()  # one account's key with another's secret


def test_an_account_cannot_take_another_accounts_authentication_key(server: Server) -> None:
    # The key says which account the destination writes to: two accounts with one would be a coin toss.
    taken = server.control("PUT", "app-connections/segment", B[0], json={"authenticationKey": "auth-a", "sendEvents": True})
    assert taken.status_code == 409 and "auth-a" not in taken.json()["error"] and "key-a" in taken.json()["error"]
    assert server.control("GET", "app-connections/segment", B[0]).json()["sendEvents"] is False  # nothing changed
    own = server.control("PUT", "app-connections/segment", json={"authenticationKey": "auth-a"})
    assert own.status_code == 200  # its own key again is no conflict
    colon = server.control("PUT", "app-connections/segment", json={"authenticationKey": "auth:a"})
    assert colon.status_code == 400 and "':'" in colon.json()["error"]  # Basic auth's user name ends there
    snapshot = server.control("GET", "snapshot").json()
    for account in snapshot["state"]["accounts"]:
        account["account"]["app_connection"]["authentication_key"] = "one-key"
    refused = server.control("PUT", "snapshot", json=snapshot)
    assert refused.status_code == 400 and "authentication_key" in refused.json()["error"]
    snapshot["state"]["accounts"] = snapshot["state"]["accounts"][:1]
    snapshot["state"]["accounts"][0]["account"]["app_connection"]["authentication_key"] = "auth:a"
    refused = server.control("PUT", "snapshot", json=snapshot)
    assert refused.status_code == 400 and "':'" in refused.json()["error"]


def test_contacts_lists_and_properties_are_per_account(server: Server) -> None:
    a, b = server.client(A), server.client(B)
    a.contactmetadata.create(data={"Name": "plan", "Datatype": "str"})
    a.contactslist_managecontact.create(id=1, data={"Email": "ada@example.com", "Action": "addnoforce", "Properties": {"plan": "pro"}})
    a.contactslist.create(data={"Name": "VIP"})
    assert data(b.contact.get()) == [] and data(b.listrecipient.get()) == [] and data(b.contactmetadata.get()) == []
    with pytest.raises(DoesNotExistError):
        b.contact.get(id="ada@example.com")
    with pytest.raises(ValidationError, match="Object properties invalid"):  # B has no property "plan"
        b.contactslist_managecontact.create(id=1, data={"Email": "ada@example.com", "Action": "addnoforce", "Properties": {"plan": "x"}})
    # The same names and emails live side by side, each with its own IDs.
    b.contactslist.create(data={"Name": "VIP"})
    b.contactslist_managecontact.create(id=1, data={"Email": "ada@example.com", "Name": "Other Ada", "Action": "addnoforce"})
    assert [c["Name"] for c in data(a.contact.get())] == [""] and [c["Name"] for c in data(b.contact.get())] == ["Other Ada"]
    assert data(a.contactdata.get(id="ada@example.com"))[0]["Data"] == [{"Name": "plan", "Value": "pro"}]
    assert data(b.contactdata.get(id="ada@example.com"))[0]["Data"] == []


def test_messages_events_webhooks_and_jobs_are_per_account(server: Server) -> None:
    a, b = server.client(A), server.client(B)
    a.eventcallbackurl.create(data={"EventType": "sent", "Url": "http://127.0.0.1:9/a"})
    job = a.contact_managemanycontacts.create(data={"Contacts": [{"Email": "job@example.com"}]}).json()["Data"][0]["JobID"]
    from_a, from_b = server.send(A, "ada@example.com"), server.send(B, "bob@example.com")
    assert from_a != from_b  # MessageIDs are unique across accounts, as Mailjet's are
    server.control("POST", "clock", json={"advance": "2s"})
    assert data(b.eventcallbackurl.get()) == []
    with pytest.raises(DoesNotExistError):
        b.contact_managemanycontacts.get(id=job)
    assert [m["MessageID"] for m in server.control("GET", "messages").json()["messages"]] == [from_a]
    assert [m["MessageID"] for m in server.control("GET", "messages", B[0]).json()["messages"]] == [from_b]
    events_a = server.control("GET", "email-events").json()["email_events"]
    events_b = server.control("GET", "email-events", B[0]).json()["email_events"]
    assert [(e["MessageID"], e["event"]) for e in events_a] == [(from_a, "sent")]
    assert [(e["MessageID"], e["event"]) for e in events_b] == [(from_b, "sent")]
    assert events_a[0]["webhook"]["state"] != "none" and events_b[0]["webhook"]["state"] == "none"  # only A has a webhook
    # A control event names a message of the account it is scoped to.
    assert server.control("POST", f"messages/{from_a}/events", B[0], json={"event": "open"}).status_code == 404
    assert server.control("POST", f"messages/{from_b}/events", B[0], json={"event": "open"}).status_code == 201
    assert server.control("PUT", "simulation", B[0], json={"open_rate": 0.5}).json()["open_rate"] == 0.5
    assert server.control("GET", "simulation").json()["open_rate"] == 0
    # The header names the account as well as the query does.
    by_header = server.http.get("/_emulator/messages", headers={"X-Segjet-Api-Key": B[0]}).json()["messages"]
    assert [m["MessageID"] for m in by_header] == [from_b]


def test_app_connections_are_per_account(server: Server) -> None:
    server.control("PUT", "app-connections/segment", B[0], json={"writeKey": "wk-b", "sendEvents": True})
    assert server.control("GET", "app-connections/segment").json()["writeKey"] is None
    assert server.control("GET", "app-connections/segment", B[0]).json()["writeKey"] == "wk-b"
    other_list = data(server.client(A).contactslist.create(data={"Name": "Only in A"}))[0]["ID"]
    refused = server.control("PUT", "app-connections/segment", B[0], json={"listId": other_list})
    assert refused.status_code == 400 and "not a contact list of this account" in refused.json()["error"]


def test_reset_of_one_account_leaves_the_other(server: Server) -> None:
    a, b = server.client(A), server.client(B)
    a.contactslist_managecontact.create(id=1, data={"Email": "ada@example.com", "Action": "addnoforce"})
    b.contactslist_managecontact.create(id=1, data={"Email": "bob@example.com", "Action": "addnoforce"})
    key_b = server.control("GET", "app-connections/segment", B[0]).json()["authenticationKey"]
    answer = server.control("POST", "reset", B[0])
    assert answer.status_code == 200 and answer.json()["apiKey"] == B[0]
    assert data(b.contact.get()) == [] and [c["Email"] for c in data(a.contact.get())] == ["ada@example.com"]
    assert server.control("GET", "app-connections/segment", B[0]).json()["authenticationKey"] == key_b  # same keys
    assert server.control("POST", "reset", "nobody").status_code == 404
    server.control("POST", "reset", A[0])
    assert data(a.contact.get()) == [] and data(b.contact.get()) == []
    assert len(server.control("GET", "accounts").json()["accounts"]) == 2  # a scoped reset keeps the account


@pytest.mark.parametrize("how", ["query", "header"])
def test_a_reset_naming_an_empty_api_key_resets_nothing(server: Server, how: str) -> None:
    # A CI job resetting "its" account with an unset variable (`?apiKey=$KEY`) named no account, and
    # got the whole-server reset: every other job's account was deleted mid-run.
    server.client(B).contactslist_managecontact.create(id=1, data={"Email": "bob@example.com", "Action": "addnoforce"})
    named = {"params": {"apiKey": ""}} if how == "query" else {"headers": {"X-Segjet-Api-Key": ""}}
    answer = server.http.post("/_emulator/reset", **named)
    assert answer.status_code == 404 and "''" in answer.json()["error"]
    assert [c["Email"] for c in data(server.client(B).contact.get())] == ["bob@example.com"]
    assert server.http.get("/_emulator/messages", **named).status_code == 404


def test_a_call_held_by_a_fault_across_a_reset_of_its_account_is_not_applied(server: Server) -> None:
    # A whole reset drops a request a fault still holds (the journal's generation); a reset of one
    # account did not: the held upsert then ran against the fresh account, a contact from before the
    # reset appearing after it.
    # Held a minute: the request is closed at the reset of its account, not at the end of its delay.
    rule = {"path": "/v3/REST/contactslist/*/managecontact", "status": None, "delay_ms": 60_000, "api_key": B[0]}
    assert server.control("POST", "faults", json=rule).status_code == 201
    results: list[Any] = []

    def upsert() -> None:
        try:
            results.append(server.client(B).contactslist_managecontact.create(
                id=1, data={"Email": "held@example.com", "Action": "addnoforce"}).status_code)
        except Exception as exc:  # noqa: BLE001 - closed unanswered: the client's connection error
            results.append(exc)

    thread = threading.Thread(target=upsert)
    thread.start()
    deadline = time.monotonic() + 10
    while server.control("GET", "faults").json()["faults"][0]["fired"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert server.control("POST", "reset", B[0]).status_code == 200
    thread.join(timeout=15)
    assert results and results[0] != 201
    assert data(server.client(B).contact.get()) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/v3/REST/contact", {"Email": "straddle@example.com"}), ("PUT", "/_emulator/simulation?apiKey=key-b", {"open_rate": 0.5})],
)
def test_a_write_whose_body_arrives_across_a_reset_of_its_account_lands_in_the_fresh_one(
    server: Server, method: str, path: str, body: dict[str, Any]
) -> None:
    # The account used to be picked before the body was read: the write went to the account the
    # reset had replaced, was answered 2xx, and was nowhere to be found.
    raw = json.dumps(body).encode()
    authorization = "Basic " + base64.b64encode(f"{B[0]}:{B[1]}".encode()).decode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                f"Authorization: {authorization}\r\nConnection: close\r\n\r\n")
        sock.sendall(head.encode() + raw[:5])
        time.sleep(0.2)
        assert server.control("POST", "reset", B[0]).status_code == 200
        sock.sendall(raw[5:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] in (b"200", b"201"), answer[:200]
    if path.startswith("/v3/REST/contact"):
        assert [c["Email"] for c in data(server.client(B).contact.get())] == ["straddle@example.com"]
    else:
        assert server.control("GET", "simulation", B[0]).json()["open_rate"] == 0.5


def test_a_journal_read_naming_an_account_shows_only_its_calls(server: Server) -> None:
    server.http.get("/v3/REST/contactslist", auth=B)
    server.http.get("/v3/REST/contactslist", auth=A)
    server.http.get("/v3/REST/contactslist", auth=(B[0], "wrong"))
    of_b = server.control("GET", "requests", B[0]).json()["requests"]
    assert [(entry["path"], entry["status"]) for entry in of_b] == [("/v3/REST/contactslist", 200), ("/v3/REST/contactslist", 401)]
    of_a = server.http.get("/_emulator/requests", params={"apiKey": A[0], "path": "/v3/"}).json()["requests"]
    assert [entry["status"] for entry in of_a] == [200]
    assert server.control("GET", "requests", "nobody").status_code == 404
    assert len(server.http.get("/_emulator/requests", params={"path": "/v3/"}).json()["requests"]) == 3
