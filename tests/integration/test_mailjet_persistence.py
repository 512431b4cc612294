"""The fake Mailjet with a data dir, over real HTTP: a restart on the same dir keeps everything (read
back with the official `mailjet_rest` client), a webhook retry pending at the stop is delivered after
the restart to a real local receiver, and a snapshot export → reset → import gives the same state."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailjet_rest import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.common.clock import Clock
from emulator.common.json_body import MAX_DEPTH
from emulator.common.server import LoopThread, Runner, serve_in_background
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.routes import create_app

CONFIG = BundleConfig(mailjet_api_key="mj-key", mailjet_secret_key="mj-secret", auth_key="seg-auth-key", seed=5)
HTML = '<p>Hello <a href="https://shop.example.com/offer">offer</a></p>'


@dataclass
class Receiver:
    """A webhook endpoint that answers `status` and keeps every body."""

    status: int = 500
    received: list[Any] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.received.append(await request.json())
        return JSONResponse({"status": self.status}, status_code=self.status)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    made = Receiver()
    loop_thread, runner, urls = serve_in_background({"hooks": Starlette(routes=[Route("/{path:path}", made.endpoint, methods=["POST"])])})
    yield made, urls["hooks"]
    loop_thread.run(runner.stop())
    loop_thread.close()


@dataclass
class Server:
    url: str
    http: httpx.Client
    loop_thread: LoopThread
    runner: Runner
    clock_task: Any

    def client(self, **kwargs: Any) -> Client:
        return Client(auth=(CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key), api_url=f"{self.url}/", **kwargs)

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"/_emulator/{path}", **kwargs)

    def stop(self) -> None:
        self.http.close()
        self.clock_task.cancel()
        self.loop_thread.run(self.runner.stop())
        self.loop_thread.close()


def start(data_dir: Path) -> Server:
    clock = Clock()
    app = create_app(replace(CONFIG, data_dir=str(data_dir)), clock, BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    loop_thread, runner, urls = serve_in_background({"mailjet": app})
    # The bundle runs the clock's timer loop; a lone server needs it started here.
    clock_task = asyncio.run_coroutine_threadsafe(clock.run_forever(), loop_thread.loop)
    http = httpx.Client(base_url=urls["mailjet"], auth=(CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key))
    return Server(urls["mailjet"], http, loop_thread, runner, clock_task)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Servers started in a test, stopped at its end (a test restarts by stopping and starting)."""
    started: list[Server] = []
    yield started
    for server in started:
        if not server.loop_thread.loop.is_closed():
            server.stop()


def data(response: Any) -> list[dict[str, Any]]:
    assert response.status_code in (200, 201), response.text
    return response.json()["Data"]


def everything(server: Server, job: int | None = None) -> dict[str, Any]:
    """What a user can read back: REST v3 through the official client, and the control API."""
    mj = server.client()
    big = {"Limit": 1000}
    return {
        "job": data(mj.contact_managemanycontacts.get(id=job)) if job is not None else None,
        "contacts": data(mj.contact.get(filters=big)),
        "lists": data(mj.contactslist.get(filters=big)),
        "recipients": data(mj.listrecipient.get(filters=big)),
        "properties": data(mj.contactmetadata.get(filters=big)),
        "contact_data": data(mj.contactdata.get(filters=big)),
        "webhooks": data(mj.eventcallbackurl.get(filters=big)),
        "app_connection": server.control("GET", "app-connections/segment").json(),
        "messages": server.control("GET", "messages").json()["messages"],
        "email_events": server.control("GET", "email-events").json()["email_events"],
    }


def test_a_restart_on_the_same_data_dir_keeps_everything(tmp_path: Path, servers: list[Server]) -> None:
    first = start(tmp_path)
    servers.append(first)
    mj = first.client()
    assert mj.contactmetadata.create(data={"Name": "plan", "Datatype": "str"}).status_code == 201
    assert mj.contactslist_managecontact.create(
        id=1, data={"Email": "ada@example.com", "Name": "Ada", "Action": "addnoforce", "Properties": {"plan": "pro"}}
    ).status_code == 201
    vip = data(mj.contactslist.create(data={"Name": "VIP"}))[0]["ID"]
    ada = data(mj.contact.get(id="ada@example.com"))[0]["ID"]
    assert mj.listrecipient.create(data={"ContactID": ada, "ListID": vip, "IsUnsubscribed": True}).status_code == 201
    assert mj.eventcallbackurl.create(data={"EventType": "open", "Url": "http://127.0.0.1:9/hook"}).status_code == 201
    job = mj.contact_managemanycontacts.create(data={"Contacts": [{"Email": "bob@example.com"}]}).json()["Data"][0]["JobID"]
    assert first.control("POST", "clock", json={"advance": "2s"}).status_code == 200  # the job runs
    assert data(mj.contact_managemanycontacts.get(id=job))[0]["Status"] == "Completed"
    assert first.control("PUT", "app-connections/segment", json={"writeKey": "wk-1"}).status_code == 200
    sent = first.client(version="v3.1").send.create(data={"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}],
                                             "Subject": "Hi", "HTMLPart": HTML}]})
    message_id = sent.json()["Messages"][0]["To"][0]["MessageID"]
    assert first.control("POST", f"messages/{message_id}/events", json={"event": "click"}).status_code == 201
    before = everything(first, job)
    first.stop()

    second = start(tmp_path)
    servers.append(second)
    assert everything(second, job) == before
    assert data(second.client().contact.get(id="ADA@example.com"))[0]["ID"] == ada  # the email index is rebuilt
    assert [e["event"] for e in before["email_events"]] == ["sent", "click"]
    # New objects continue the stored numbering.
    assert data(second.client().contactslist.create(data={"Name": "Later"}))[0]["ID"] == vip + 1


def wait_for_webhook(server: Server, state: str) -> dict[str, Any]:
    """The one email event, once its webhook delivery is in `state` (the clock answers before the webhook does)."""
    deadline = time.monotonic() + 15
    while True:
        (event,) = server.control("GET", "email-events").json()["email_events"]
        if event["webhook"]["state"] == state:
            return event
        assert time.monotonic() < deadline, f"the webhook delivery stayed {event['webhook']['state']}, not {state}"
        time.sleep(0.02)


def test_a_change_no_request_saved_yet_is_saved_at_the_stop(tmp_path: Path, servers: list[Server]) -> None:
    # A timer's or a worker's change is written by the next request's save: the stop must write it
    # too (the fake Segment's store flushes at its close), or a restart loses it.
    app = create_app(replace(CONFIG, data_dir=str(tmp_path)), Clock(), BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    loop_thread, runner, _ = serve_in_background({"mailjet": app})

    async def change_outside_a_request() -> None:
        app.state.service.default.account.create_contact({"Email": "late@example.com"})

    loop_thread.run(change_outside_a_request())
    loop_thread.run(runner.stop())
    loop_thread.close()
    servers.append(restarted := start(tmp_path))
    assert [c["Email"] for c in data(restarted.client().contact.get(id="late@example.com"))] == ["late@example.com"]


def test_a_webhook_retry_pending_at_the_stop_is_delivered_after_the_restart(
    tmp_path: Path, servers: list[Server], receiver: tuple[Receiver, str]
) -> None:
    hooks, hooks_url = receiver
    hooks.status, hooks.received[:] = 500, []
    first = start(tmp_path)
    servers.append(first)
    mj = first.client()
    assert mj.eventcallbackurl.create(data={"EventType": "sent", "Url": f"{hooks_url}/mailjet"}).status_code == 201
    sent = first.client(version="v3.1").send.create(data={"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}],
                                             "Subject": "Hi", "TextPart": "Hello"}]})
    message_id = sent.json()["Messages"][0]["To"][0]["MessageID"]
    first.control("POST", "clock", json={"advance": "1s"})  # sent → the webhook answers 500
    event = wait_for_webhook(first, "retrying")
    assert len(hooks.received) == 1
    first.stop()

    hooks.status = 200
    second = start(tmp_path)
    servers.append(second)
    # A fresh server's clock starts at real time again; the retry was due 30 s after the failure.
    second.control("POST", "clock", json={"advance": "40s"})
    event = wait_for_webhook(second, "delivered")
    assert [a["status"] for a in event["webhook"]["attempts"]] == [500, 200]
    assert [body["MessageID"] for body in hooks.received] == [message_id, message_id]
    assert hooks.received[1]["event"] == "sent"


def test_snapshot_export_reset_import_gives_the_same_state(tmp_path: Path, servers: list[Server]) -> None:
    server = start(tmp_path)
    servers.append(server)
    mj = server.client()
    mj.contactmetadata.create(data={"Name": "plan", "Datatype": "str"})
    for email in ("ada@example.com", "bob@example.com"):
        mj.contactslist_managecontact.create(id=1, data={"Email": email, "Action": "addnoforce", "Properties": {"plan": "free"}})
    server.client(version="v3.1").send.create(data={"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}],
                                      "Subject": "Hi", "TextPart": "Hello"}]})
    server.control("POST", "clock", json={"advance": "1s"})
    assert server.control("POST", "accounts", json={"api_key": "second", "secret_key": "s2"}).status_code == 201
    snapshot = server.control("GET", "snapshot").json()
    assert (snapshot["format"], snapshot["service"], snapshot["version"]) == ("segjet-snapshot", "mailjet", 1)
    before = everything(server)

    assert server.control("POST", "reset").status_code == 200
    assert everything(server)["contacts"] == []
    imported = server.control("PUT", "snapshot", json=snapshot)
    assert imported.status_code == 200, imported.text
    assert everything(server) == before
    assert server.control("GET", "snapshot").json()["state"] == snapshot["state"]
    assert data(Client(auth=("second", "s2"), api_url=f"{server.url}/").contact.get()) == []  # the second account is back

    for bad, words in [({**snapshot, "version": 9}, "version"), ({**snapshot, "service": "segment"}, "service"),
                       ({"format": "other"}, "format"), ({**snapshot, "state": {"accounts": "x"}}, "accounts")]:
        refused = server.control("PUT", "snapshot", json=bad)
        assert refused.status_code == 400 and words in refused.json()["error"]
    assert everything(server) == before  # all or nothing

    server.stop()
    restarted = start(tmp_path)
    servers.append(restarted)
    assert everything(restarted) == before  # the import was stored


def test_a_job_holding_json_as_deep_as_accepted_comes_back_from_a_snapshot(tmp_path: Path, servers: list[Server]) -> None:
    # Jobs keep the contacts as sent; the snapshot nests them deeper than a body may be, and PUT refused it.
    server = start(tmp_path)
    servers.append(server)
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH - 3):  # under the body, its Contacts list and the contact: as deep as accepted
        deep = {"n": deep}
    job = server.http.post("/v3/REST/contact/managemanycontacts", json={"Contacts": [{"Email": "a@example.com", "Deep": deep}]})
    assert job.status_code == 201, job.text
    assert server.http.post("/v3/REST/contact", json={"Email": "b@example.com"}).status_code == 201
    snapshot = server.control("GET", "snapshot").json()
    assert server.control("PUT", "snapshot", json=snapshot).status_code == 200
    assert server.control("GET", "snapshot").json()["state"] == snapshot["state"]
    bad = copy.deepcopy(snapshot)
    bad["state"]["accounts"][0]["contacts"][0]["created_at"] = "9999-12-31T23:59:59-05:00"
    refused = server.control("PUT", "snapshot", json=bad)
    assert refused.status_code == 400 and "created_at" in refused.json()["error"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("next_ids.contact", 2**63), ("next_ids.list", 2**53 + 1), ("next_webhook_id", 2**63), ("next_event_id", 2**63),
     ("next_event_id", 0)],
)
def test_a_snapshot_counter_beyond_what_sqlite_keys_hold_answers_400_and_the_server_keeps_working(
    tmp_path: Path, servers: list[Server], field: str, value: int
) -> None:
    # Accepted, it handed out an id SQLite cannot store: that save failed, and so did every later
    # one, so every request of the server answered 500 or had its connection dropped. (An event
    # numbered 0 was never stored at all.)
    server = start(tmp_path)
    servers.append(server)
    assert server.http.post("/v3/REST/contact", json={"Email": "a@example.com"}).status_code == 201
    snapshot = server.control("GET", "snapshot").json()
    bad = copy.deepcopy(snapshot)
    row = bad["state"]["accounts"][0]["account"]
    if field.startswith("next_ids."):
        row["next_ids"][field.split(".")[1]] = value
    else:
        row[field] = value
    refused = server.control("PUT", "snapshot", json=bad)
    assert refused.status_code == 400 and field in refused.json()["error"], refused.text
    assert server.http.post("/v3/REST/contact", json={"Email": "b@example.com"}).status_code == 201
    assert server.http.post("/v3/REST/contactslist", json={"Name": "more"}).status_code == 201
    server.stop()
    restarted = start(tmp_path)
    servers.append(restarted)
    assert [contact["Email"] for contact in data(restarted.client().contact.get())] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(
    ("collection", "change", "words"),
    [
        ("properties", {"datatype": "blob"}, "properties[0].datatype: must be one of str, int, float, bool, datetime"),
        ("callbacks", {"version": 3}, "callbacks[0].version: must be one of 1, 2"),
        ("jobs", {"status": "Weird"}, "jobs[0].status: must be one of In Progress, Completed, Error"),
    ],
)
def test_a_snapshot_value_the_api_never_gives_answers_400_and_changes_nothing(
    tmp_path: Path, servers: list[Server], collection: str, change: dict[str, Any], words: str
) -> None:
    # Accepted, a property of Datatype "blob" refused every value written to it ("Property type does
    # not match definition"), a webhook of Version 3 got Version 2 bodies, a job "Weird" never ran.
    server = start(tmp_path)
    servers.append(server)
    mj = server.client()
    assert mj.contactmetadata.create(data={"Name": "plan", "Datatype": "str"}).status_code == 201
    assert mj.eventcallbackurl.create(data={"EventType": "open", "Url": "http://127.0.0.1:9/hook"}).status_code == 201
    assert mj.contact_managemanycontacts.create(data={"Contacts": [{"Email": "job@example.com"}]}).status_code == 201
    snapshot = server.control("GET", "snapshot").json()
    before = server.control("GET", "snapshot").json()["state"]
    bad = copy.deepcopy(snapshot)
    bad["state"]["accounts"][0][collection][0].update(change)
    refused = server.control("PUT", "snapshot", json=bad)
    assert refused.status_code == 400 and words in refused.json()["error"], refused.text
    assert server.control("GET", "snapshot").json()["state"] == before
    managed = mj.contactslist_managecontact.create(id=1, data={"Email": "ada@example.com", "Action": "addnoforce", "Properties": {"plan": "pro"}})
    assert managed.status_code == 201, managed.text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda a: a["contacts"][0]["properties"].update(nope="x"), "contacts[0].properties: 'nope' is not the name of a property"),
        (lambda a: a["contacts"][0]["properties"].update(PLAN="pro"), "contacts[0].properties: 'PLAN' is not the name of a property"),
        (lambda a: a["contacts"][0].update(email="not-an-address"), 'contacts[0].email: "not-an-address" is not an address'),
        (lambda a: a["contacts"][0].update(delivered_count=-1), "contacts[0].delivered_count: must be 0 or more"),
        (lambda a: a["account"].update(api_key="a:b"), "account.api_key: must not contain ':'"),
        (lambda a: a["jobs"][0].update(list_id=99), "jobs[0].list_id: 99 is not the id of a list this account created"),
    ],
)
def test_a_snapshot_holding_what_the_api_never_holds_answers_400_and_changes_nothing(
    tmp_path: Path, servers: list[Server], change: Any, words: str
) -> None:
    # Accepted, each was out of reach or broke later: a value under a name no property has was never
    # read nor deleted with a property, an address no lookup could find, an API key Basic auth cannot
    # carry, a job that the next list created took for its own.
    server = start(tmp_path)
    servers.append(server)
    mj = server.client()
    assert mj.contactmetadata.create(data={"Name": "plan", "Datatype": "str"}).status_code == 201
    managed = mj.contactslist_managecontact.create(id=1, data={"Email": "ada@example.com", "Action": "addnoforce", "Properties": {"plan": "pro"}})
    assert managed.status_code == 201, managed.text
    assert mj.contactslist_managemanycontacts.create(id=1, data={"Action": "addforce", "Contacts": [{"Email": "job@example.com"}]}).status_code == 201
    snapshot = server.control("GET", "snapshot").json()
    bad = copy.deepcopy(snapshot)
    change(bad["state"]["accounts"][0])
    refused = server.control("PUT", "snapshot", json=bad)
    assert refused.status_code == 400 and words in refused.json()["error"], refused.text
    assert server.control("GET", "snapshot").json()["state"]["accounts"][0]["contacts"][0]["email"] == "ada@example.com"


def test_a_snapshot_of_what_deletions_and_datatype_changes_leave_behind_imports(tmp_path: Path, servers: list[Server]) -> None:
    # A value written before its property's Datatype changed is kept (as the REST API keeps it), and
    # a job, a campaign and a webhook delivery keep naming a list or webhook deleted since.
    server = start(tmp_path)
    servers.append(server)
    mj = server.client()
    score = data(mj.contactmetadata.create(data={"Name": "score", "Datatype": "str"}))[0]["ID"]
    news = data(mj.contactslist.create(data={"Name": "News"}))[0]["ID"]
    for email in ("ada@example.com", "bob@example.com"):
        managed = mj.contactslist_managecontact.create(id=news, data={"Email": email, "Action": "addnoforce", "Properties": {"score": "high"}})
        assert managed.status_code == 201, managed.text
    assert mj.contactmetadata.update(id=score, data={"Datatype": "int"}).status_code == 200
    assert mj.contactslist_managemanycontacts.create(id=news, data={"Action": "addforce", "Contacts": [{"Email": "job@example.com"}]}).status_code == 201
    hook = data(mj.eventcallbackurl.create(data={"EventType": "sent", "Url": "http://127.0.0.1:9/hook"}))[0]["ID"]
    campaign = server.control("POST", "campaigns", json={"list_id": news, "subject": "Spring", "html": HTML})
    assert campaign.status_code in (200, 201), campaign.text
    assert server.control("POST", "clock", json={"advance": "2s"}).status_code == 200  # sent: a webhook delivery
    assert mj.eventcallbackurl.delete(id=hook).status_code == 204
    assert mj.contactslist.delete(id=news).status_code == 204
    snapshot = server.control("GET", "snapshot").json()
    account = snapshot["state"]["accounts"][0]
    assert [contact["properties"] for contact in account["contacts"]][:2] == [{"score": "high"}] * 2
    assert account["jobs"][0]["list_id"] == news and account["campaigns"][0]["list_id"] == news
    assert account["webhooks"][0]["callback_ids"] == [hook]

    imported = server.control("PUT", "snapshot", json=snapshot)
    assert imported.status_code == 200, imported.text
    assert data(mj.contactdata.get(filters={"Limit": 1000}))[0]["Data"] == [{"Name": "score", "Value": "high"}]
