"""The fake Segment with a data directory, over real HTTP: restarts keep state, retries resume, snapshots round-trip.

A "restart" stops the Segment server and starts a new app on the same data directory and the
same clock (the bundle's clock is shared and kept by the bundle itself). The destination is a
real server that can be told to fail, to hang, or to work.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.common.clock import Clock
from emulator.common.json_body import MAX_DEPTH
from emulator.common.server import LoopThread, Runner, serve_in_background
from emulator.config import BundleConfig, BundleUrls
from emulator.segment.routes import create_app

KEY = "persist-key"
WAIT_SECONDS = 15


class Destination:
    """A destination endpoint whose answer the test chooses: 503, 200, or hanging until released."""

    def __init__(self) -> None:
        self.mode = "fail"
        self.received: list[dict[str, Any]] = []
        self.release: asyncio.Event | None = None
        self.app = Starlette(routes=[Route("/", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        body = await request.json()
        if self.mode == "hang":
            self.release = self.release or asyncio.Event()
            await self.release.wait()
            return JSONResponse({"message": "released"}, status_code=503)
        if self.mode == "fail":
            return JSONResponse({"message": "Mailjet unavailable"}, status_code=503)
        self.received.append(body)
        return JSONResponse({"message": "ok"})


class Segment:
    """One life of the fake Segment on `data_dir`; `restart()` starts the next one."""

    def __init__(self, data_dir: Path, destination_url: str, **config: Any) -> None:
        self.clock = Clock()
        self.config = BundleConfig(**{"write_key": KEY, "data_dir": str(data_dir), "engage_sync_interval": "manual", **config})
        self.urls = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", destination_url)
        self._server: tuple[LoopThread, Runner] | None = None
        self.url = ""
        self.start()

    def start(self) -> None:
        loop_thread, runner, urls = serve_in_background({"segment": create_app(self.config, self.clock, self.urls)})
        self._server = (loop_thread, runner)
        self.url = urls["segment"]

    def stop(self) -> None:
        assert self._server is not None
        loop_thread, runner = self._server
        loop_thread.run(runner.stop())
        loop_thread.close()
        self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(self.url + path, params=params, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def send(self, method: str, path: str, body: Any = None, status: int = 200, **params: Any) -> Any:
        answer = httpx.request(method, self.url + path, json=body, params=params, timeout=30)
        assert answer.status_code == status, answer.text
        return answer.json()

    def identify(self, user_id: str, traits: dict[str, Any]) -> str:
        client = Client(KEY, host=self.url, sync_mode=True)
        _, message = client.identify(user_id, traits)
        return message["messageId"]

    def delivery(self, message_id: str) -> dict[str, Any]:
        [record] = self.get("/_emulator/deliveries", messageId=message_id)["deliveries"]
        return record

    def wait_for(self, what: str, check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = check()
            if found:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def destination() -> Iterator[tuple[Destination, str]]:
    receiver = Destination()
    loop_thread, runner, urls = serve_in_background({"destination": receiver.app})
    yield receiver, urls["destination"]
    if receiver.release is not None:
        loop_thread.loop.call_soon_threadsafe(receiver.release.set)
    loop_thread.run(runner.stop())
    loop_thread.close()


@pytest.fixture
def segment(tmp_path: Path, destination: tuple[Destination, str]) -> Iterator[Segment]:
    receiver, url = destination
    receiver.mode, receiver.received = "fail", []
    fake = Segment(tmp_path, url)
    yield fake
    if fake._server is not None:
        fake.stop()


def test_a_restart_keeps_messages_profiles_engage_and_destination_settings(segment: Segment) -> None:
    segment.identify("u1", {"email": "ada@example.com", "plan": "pro"})
    segment.send("POST", "/v1/track", {"userId": "u1", "event": "Order Completed", "writeKey": KEY})
    segment.send("POST", "/_emulator/engage/audiences", {"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}},
                 status=201)
    assert segment.send("POST", "/_emulator/engage/sync")["count"] == 1
    segment.send("PUT", "/_emulator/destinations/mailjet", {"settings": {"listId": "42"}})
    events_before = segment.get("/_emulator/events")["events"]
    profile_before = segment.get("/_emulator/profiles/u1")
    audiences_before = segment.get("/_emulator/engage/audiences")

    segment.restart()

    assert segment.get("/_emulator/events")["events"] == events_before
    assert segment.get("/_emulator/profiles/u1") == profile_before
    assert segment.get("/_emulator/engage/audiences") == audiences_before
    assert segment.get("/_emulator/destinations/mailjet")["settings"]["listId"] == "42"
    # Engage remembers what it sent: nothing again, then only the change.
    assert segment.send("POST", "/_emulator/engage/sync")["count"] == 0
    segment.identify("u1", {"plan": "free"})
    sent = segment.send("POST", "/_emulator/engage/sync")["sent"]
    assert [(message["userId"], message["traits"]["pro"]) for message in sent] == [("u1", False)]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/_emulator/destinations/mailjet", {"enabled": True, "settings": {"listId": "7"}}),
     ("/_emulator/engage/audiences", {"name": "Pro Users", "rule": {"trait": "plan", "equals": "pro"}})],
    ids=["destination", "engage"],
)
def test_a_workspace_call_whose_body_arrives_after_a_reset_removed_the_workspace_is_refused(
    segment: Segment, path: str, body: dict[str, Any]
) -> None:
    # The workspace was looked up before the body was read: the call was applied to the removed
    # workspace (200/201), its row written back, and the next start brought the workspace back.
    segment.send("POST", "/_emulator/sources", {"name": "ci", "write_key": "wk-gone"}, status=201)
    raw = json.dumps(body).encode()
    host, port = segment.url.removeprefix("http://").split(":")
    method = "PUT" if "destinations" in path else "POST"
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(f"{method} {path}?writeKey=wk-gone HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n".encode() + raw[:5])
        time.sleep(0.3)  # the headers and the start of the body are in
        segment.send("POST", "/_emulator/reset")
        sock.sendall(raw[5:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
    segment.restart()
    gone = httpx.get(segment.url + "/_emulator/sources", params={"writeKey": "wk-gone"}, timeout=30)
    assert gone.status_code == 404, gone.text


def test_a_deleted_computed_trait_stays_deleted_across_a_restart(segment: Segment) -> None:
    segment.identify("u1", {"email": "ada@example.com"})
    segment.send("POST", "/v1/track", {"userId": "u1", "event": "Order Completed", "writeKey": KEY})
    segment.send("POST", "/_emulator/engage/traits", {"name": "Orders", "computed": "count", "event": "Order Completed"},
                 status=201)
    segment.send("POST", "/_emulator/engage/traits", {"name": "Spent", "computed": "sum", "event": "Order Completed",
                                                      "property": "revenue"}, status=201)
    assert segment.send("POST", "/_emulator/engage/sync")["count"] == 1  # orders: 1 (no revenue: no sum)
    assert segment.send("DELETE", "/_emulator/engage/traits/orders")["key"] == "orders"

    segment.restart()

    assert [trait["key"] for trait in segment.get("/_emulator/engage/traits")["traits"]] == ["spent"]
    assert segment.send("POST", "/_emulator/engage/sync")["count"] == 0


def test_an_email_changed_before_a_restart_is_sent_to_at_the_first_sync_after_it(segment: Segment) -> None:
    # Engage re-sends what it told when a profile gets a new email; after a restart the profile's
    # current email was taken as already sent with, so a change made before it was never sent.
    segment.identify("u1", {"email": "ada@example.com", "plan": "pro"})
    segment.send("POST", "/_emulator/engage/audiences", {"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}},
                 status=201)
    assert segment.send("POST", "/_emulator/engage/sync")["count"] == 1
    segment.identify("u1", {"email": "ada@new.example.com"})

    segment.restart()

    sent = segment.send("POST", "/_emulator/engage/sync")["sent"]
    assert [(message["userId"], message["traits"]) for message in sent] == [
        ("u1", {"pro": True, "email": "ada@new.example.com"})]
    assert segment.send("POST", "/_emulator/engage/sync")["count"] == 0


def test_a_retry_pending_at_shutdown_resumes_after_the_restart_and_delivers(
    segment: Segment, destination: tuple[Destination, str]
) -> None:
    receiver, _ = destination
    message_id = segment.identify("u1", {"email": "ada@example.com"})
    retrying = segment.wait_for("a retry", lambda: (r := segment.delivery(message_id))["state"] == "retrying" and r)
    assert retrying["attempts"][0]["status"] == 503

    segment.restart()
    receiver.mode = "ok"
    assert segment.delivery(message_id)["next_attempt_at"] == retrying["next_attempt_at"]
    segment.send("POST", "/_emulator/clock", {"set": retrying["next_attempt_at"]})

    delivered = segment.wait_for("the delivery", lambda: (r := segment.delivery(message_id))["state"] == "delivered" and r)
    assert [attempt["status"] for attempt in delivered["attempts"]] == [503, 200]
    assert [body["messageId"] for body in receiver.received] == [message_id]


def test_a_delivery_in_flight_at_shutdown_is_sent_again_after_the_restart(
    segment: Segment, destination: tuple[Destination, str]
) -> None:
    receiver, _ = destination
    receiver.mode = "hang"
    message_id = segment.identify("u1", {"email": "ada@example.com"})
    segment.wait_for("the request to reach the destination", lambda: receiver.release is not None)
    assert segment.delivery(message_id)["state"] == "queued"

    receiver.mode = "ok"
    segment.restart()  # the hanging attempt dies with the old server

    delivered = segment.wait_for("the delivery", lambda: (r := segment.delivery(message_id))["state"] == "delivered" and r)
    assert [attempt["status"] for attempt in delivered["attempts"]] == [200]
    assert [body["messageId"] for body in receiver.received] == [message_id]


def test_snapshot_export_reset_import_gives_the_same_state(segment: Segment) -> None:
    segment.identify("u1", {"email": "ada@example.com", "plan": "pro"})
    segment.send("POST", "/_emulator/engage/audiences", {"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}},
                 status=201)
    segment.send("POST", "/_emulator/engage/sync")
    segment.send("POST", "/_emulator/sources", {"name": "ci", "write_key": "persist-ci"}, status=201)
    segment.send("POST", "/v1/identify", {"userId": "c1", "writeKey": "persist-ci"})
    # Stable state: each user's first delivery waits for a retry (later ones queue behind it).
    for key in (KEY, "persist-ci"):
        segment.wait_for("a retry", lambda: segment.get("/_emulator/deliveries", writeKey=key)["deliveries"][0]["state"] == "retrying")
    exported = segment.get("/_emulator/snapshot")
    assert (exported["format"], exported["service"], exported["version"]) == ("segjet-snapshot", "segment", 1)

    segment.send("POST", "/_emulator/reset")  # the whole server: the ci workspace goes too
    assert segment.get("/_emulator/events")["events"] == []
    assert len(segment.get("/_emulator/snapshot")["state"]["workspaces"]) == 1

    answer = segment.send("PUT", "/_emulator/snapshot", exported)
    assert answer["workspaces"] == 2
    assert segment.get("/_emulator/snapshot")["state"] == exported["state"]
    segment.restart()  # the import was written to the database too
    assert segment.get("/_emulator/snapshot")["state"] == exported["state"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "format must be 'segjet-snapshot'"),
        ({"service": "mailjet"}, "snapshot is of 'mailjet'"),
        ({"version": 99}, "version 99 is not supported"),
        ({"state": {"workspaces": [{"write_key": "k"}]}}, "state.workspaces[0].sources must be a list"),
    ],
)
def test_a_wrong_snapshot_answers_400_and_changes_nothing(segment: Segment, change: dict[str, Any], message: str) -> None:
    segment.identify("u1", {"email": "ada@example.com"})
    before = segment.get("/_emulator/snapshot")["state"]
    answer = httpx.put(segment.url + "/_emulator/snapshot", json={**segment.get("/_emulator/snapshot"), **change})
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert httpx.put(segment.url + "/_emulator/snapshot", content=b"{nope").status_code == 400
    assert httpx.put(segment.url + "/_emulator/snapshot", content=b"[" * 5000 + b"]" * 5000).status_code == 400
    assert segment.get("/_emulator/snapshot")["state"] == before


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (0, lambda m: m.pop("type"), "invalid_type"),
        (1, lambda m: m.pop("previousId"), "id_required"),
        (0, lambda m: m.update(userId=["u1"]), "id_not_string"),
        (0, lambda m: m.update(traits=["email"]), "traits_not_object"),
        (2, lambda m: m.update(properties=[]), "properties_not_object"),
    ],
)
def test_a_snapshot_with_an_accepted_message_ingestion_would_discard_answers_400(
    segment: Segment, index: int, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    # Such a message used to pass the check: PUT answered 500 with the state half replaced, or
    # GET profiles failed afterwards.
    segment.identify("u1", {"email": "ada@example.com"})
    segment.send("POST", "/v1/alias", {"userId": "u1", "previousId": "anon-1", "writeKey": KEY})
    segment.send("POST", "/v1/track", {"userId": "u1", "event": "Order Completed", "writeKey": KEY})
    document = segment.get("/_emulator/snapshot")
    messages_before = copy.deepcopy(document["state"]["workspaces"][0]["messages"])
    change(document["state"]["workspaces"][0]["messages"][index]["message"])
    answer = httpx.put(segment.url + "/_emulator/snapshot", json=document)
    assert answer.status_code == 400, answer.text
    assert f"messages[{index}].message" in answer.json()["error"] and message in answer.json()["error"]
    assert segment.get("/_emulator/snapshot")["state"]["workspaces"][0]["messages"] == messages_before
    assert segment.get("/_emulator/profiles/u1")["traits"] == {"email": "ada@example.com"}


def test_whatever_the_tracking_api_accepted_comes_back_from_a_snapshot_and_a_restart(segment: Segment) -> None:
    # A page's `event` of 123 made its delivery record unloadable (every restart failed), and a
    # message nested near the limit made the snapshot too deep for PUT.
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH - 2):  # under the message and its properties: as deep as accepted
        deep = {"n": deep}
    segment.send("POST", "/v1/page", {"userId": "u1", "name": "Home", "event": 123, "writeKey": KEY})
    segment.send("POST", "/v1/track", {"userId": "u1", "event": "Deep", "properties": {"deep": deep}, "writeKey": KEY})
    exported = segment.get("/_emulator/snapshot")
    segment.send("PUT", "/_emulator/snapshot", exported)
    assert segment.get("/_emulator/snapshot")["state"] == exported["state"]
    segment.restart()
    assert segment.get("/_emulator/snapshot")["state"] == exported["state"]
    too_deep = copy.deepcopy(exported)
    too_deep["state"]["workspaces"][0]["messages"][-1]["message"]["properties"]["deep"] = {"n": deep}
    answer = httpx.put(segment.url + "/_emulator/snapshot", json=too_deep)
    assert answer.status_code == 400 and "nested more than 254 levels" in answer.json()["error"]


def test_a_snapshot_time_out_of_range_once_in_utc_answers_400(segment: Segment) -> None:
    segment.send("POST", "/_emulator/engage/audiences", {"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}},
                 status=201)
    document = segment.get("/_emulator/snapshot")
    document["state"]["workspaces"][0]["engage"][0]["definition"]["created_at"] = "9999-12-31T23:59:59-05:00"
    answer = httpx.put(segment.url + "/_emulator/snapshot", json=document)
    assert answer.status_code == 400 and "created_at" in answer.json()["error"]


@pytest.mark.parametrize(("held_by", "given_as"), [
    ("its own key", "--config"), ("its other source", "--config"), ("its other source", "--write-key"),
])
def test_a_workspace_holding_a_config_source_key_is_refused_not_emptied_or_split(
    tmp_path: Path, destination: tuple[Destination, str], held_by: str, given_as: str
) -> None:
    # Its own key went to the default workspace and it was saved with no source: every later start
    # failed. Its other source was moved to the default workspace and the messages sent with it left
    # in the old one, which no key reached; the export that followed was refused on import.
    plain = Segment(tmp_path / "a", destination[1])
    created = plain.send("POST", "/_emulator/sources", {"name": "w", "write_key": "persist-w"}, status=201)
    config_key = "persist-w"
    if held_by == "its other source":
        config_key = "persist-x"
        plain.send("POST", "/_emulator/sources", {"name": "x", "write_key": config_key, "workspace": created["workspace"]}, status=201)
    document = plain.get("/_emulator/snapshot")
    plain.stop()
    if given_as == "--config":
        configured = Segment(tmp_path / "b", destination[1], sources=[{"name": "ci", "write_key": config_key}])
    else:
        configured = Segment(tmp_path / "b", destination[1], write_key=config_key)
    try:
        before = configured.get("/_emulator/snapshot")["state"]
        answer = httpx.put(configured.url + "/_emulator/snapshot", json=document)
        assert answer.status_code == 400, answer.text
        assert config_key in answer.json()["error"] and "--config" in answer.json()["error"]
        assert configured.get("/_emulator/snapshot")["state"] == before
    finally:
        configured.stop()


def test_a_delivery_seq_beyond_what_sqlite_keys_hold_answers_400_and_tracking_keeps_working(segment: Segment) -> None:
    # PUT answered 500 with the state replaced in memory only; from then on every flush failed, so
    # every tracking call answered 500 until a restart, which brought back the state before the import.
    segment.identify("u1", {"email": "ada@example.com"})
    document = segment.get("/_emulator/snapshot")
    document["state"]["workspaces"][0]["deliveries"][0]["seq"] = 2**63
    answer = httpx.put(segment.url + "/_emulator/snapshot", json=document)
    assert answer.status_code == 400 and "deliveries[0].seq" in answer.json()["error"], answer.text
    message_id = segment.identify("u2", {"email": "bob@example.com"})
    segment.restart()
    assert [event["messageId"] for event in segment.get("/_emulator/events")["events"]][-1] == message_id


def test_a_received_at_the_clock_never_shows_answers_400_and_changes_nothing(segment: Segment) -> None:
    # Rebuilding the dedupe window overflowed datetime halfway through the import: PUT answered 500
    # with the workspace emptied in memory (still whole in the database, so a restart brought it back).
    segment.identify("u1", {"email": "ada@example.com"})
    before = segment.get("/_emulator/snapshot")
    document = copy.deepcopy(before)
    document["state"]["workspaces"][0]["messages"][0]["message"]["receivedAt"] = "9999-12-31T23:59:59.000Z"
    answer = httpx.put(segment.url + "/_emulator/snapshot", json=document)
    assert answer.status_code == 400 and "messages[0].message.receivedAt" in answer.json()["error"], answer.text
    assert segment.get("/_emulator/snapshot")["state"] == before["state"]


def test_an_import_larger_than_the_feed_keeps_its_profiles_across_a_restart(
    segment: Segment, tmp_path: Path, destination: tuple[Destination, str]
) -> None:
    for n in range(10):
        segment.identify("u1", {f"t{n}": n})
    exported = segment.get("/_emulator/snapshot")
    small = Segment(tmp_path / "small", destination[1], events_capacity=3)
    try:
        small.send("PUT", "/_emulator/snapshot", exported)
        traits = {f"t{n}": n for n in range(10)}
        assert small.get("/_emulator/profiles/u1")["traits"] == traits
        small.restart()  # the database holds every imported message, as it holds every tracked one
        assert small.get("/_emulator/profiles/u1")["traits"] == traits
        assert len(small.get("/_emulator/events")["events"]) == 3
    finally:
        small.stop()


def _engaged(segment: Segment) -> dict[str, Any]:
    """An export with an identify, a track, an audience with a member and a sum with a value."""
    segment.identify("u1", {"email": "ada@example.com", "plan": "pro"})
    segment.send("POST", "/v1/track", {"userId": "u1", "event": "Order Completed", "properties": {"total": 3},
                                       "writeKey": KEY})
    segment.send("POST", "/_emulator/engage/audiences", {"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}},
                 status=201)
    segment.send("POST", "/_emulator/engage/traits",
                 {"name": "Spent", "computed": "sum", "event": "Order Completed", "property": "total"}, status=201)
    segment.send("POST", "/_emulator/engage/sync")
    return segment.get("/_emulator/snapshot")


def _rename_spent_email(workspace: dict[str, Any]) -> None:
    # No key: the parser derives it from the name, as POST engage/traits does.
    definition = workspace["engage"][1]["definition"]
    del definition["key"]
    definition["name"] = "Email"


@pytest.mark.parametrize(
    ("change", "place", "message"),
    [
        (lambda ws: ws["engage"][1]["definition"].update(key="email"), "engage[1].definition", "'email'"),
        (_rename_spent_email, "engage[1].definition", "'email'"),
        (lambda ws: ws["engage"][0]["definition"].update(key="segment_user_id"), "engage[0].definition",
         "'segment_user_id'"),
        (lambda ws: ws["sources"].append({"name": "odd", "writeKey": "odd:key"}), "sources[1]", "':'"),
        (lambda ws: ws["sources"].append({"name": "odd", "writeKey": ""}), "sources[1].writeKey", "non-empty"),
        (lambda ws: ws["messages"][1]["source"].update(writeKey="persist-other"), "messages[1].source",
         "'persist-other'"),
        (lambda ws: ws["engage"][0].update(members=["u1", "u1"]), "engage[0].members", "'u1'"),
        (lambda ws: ws["engage"][0].update(values={"u1": True}), "engage[0].values", "audience"),
        (lambda ws: ws["engage"][1].update(members=["u1"]), "engage[1].members", "computed trait"),
        (lambda ws: ws["engage"][1]["values"].update(u1="3"), "engage[1].values", "number"),
    ],
)
def test_a_snapshot_holding_what_the_api_never_makes_answers_400_and_changes_nothing(
    segment: Segment, change: Callable[[dict[str, Any]], Any], place: str, message: str
) -> None:
    # Each was imported (200): Engage then sent {"email": 3} over the profile's email, and a
    # source's key could never sign a call.
    before = _engaged(segment)
    document = copy.deepcopy(before)
    change(document["state"]["workspaces"][0])
    answer = httpx.put(segment.url + "/_emulator/snapshot", json=document)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert f"state.workspaces[0].{place}" in error and message in error, error
    assert segment.get("/_emulator/snapshot")["state"] == before["state"]


def test_an_export_at_the_edges_of_ingestion_imports_back(segment: Segment) -> None:
    # No false refusals: an item just under 32 KB stored over it (the batch's context merged in), its
    # id accepted again 24 h later, Engage's own messages and values.
    item = {"type": "track", "userId": "u1", "event": "Big", "properties": {"pad": "x" * 32_000}}
    batch = {"batch": [{**item, "messageId": "m1"}], "context": {"shared": "y" * 20_000}, "writeKey": KEY}
    segment.send("POST", "/v1/batch", batch)
    segment.send("POST", "/_emulator/clock", {"advance": "24h"})
    segment.send("POST", "/v1/batch", batch)
    exported = _engaged(segment)
    messages = exported["state"]["workspaces"][0]["messages"]
    assert [stored["status"] for stored in messages[:2]] == ["accepted", "accepted"]
    assert len(json.dumps(messages[0]["message"])) > 32 * 1024
    segment.send("PUT", "/_emulator/snapshot", exported)
    assert segment.get("/_emulator/snapshot")["state"] == exported["state"]


def test_an_id_accepted_again_after_a_clock_set_back_past_its_sweep_imports_back(segment: Segment) -> None:
    # The dedupe window had swept the id out (a call 25 h later) before the clock went back: the
    # second acceptance, 1 h after the first, was ingestion's answer, and the import replays it so.
    call = {"userId": "u1", "event": "E", "messageId": "again", "writeKey": KEY}
    segment.send("POST", "/v1/track", call)
    start = segment.get("/_emulator/clock")["now"]
    segment.send("POST", "/_emulator/clock", {"advance": "25h"})
    segment.send("POST", "/v1/track", {**call, "messageId": "sweeper"})
    segment.send("POST", "/_emulator/clock", {"set": start})
    segment.send("POST", "/_emulator/clock", {"advance": "1h"})
    segment.send("POST", "/v1/track", call)
    exported = segment.get("/_emulator/snapshot")
    assert [stored["status"] for stored in exported["state"]["workspaces"][0]["messages"]] == ["accepted"] * 3
    segment.send("PUT", "/_emulator/snapshot", exported)
    assert segment.get("/_emulator/snapshot")["state"] == exported["state"]
