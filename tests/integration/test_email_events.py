"""Email events across the whole bundle: a user identified through analytics-python becomes a Mailjet
contact, is sent an email through mailjet_rest, opens and clicks it, and the fake Segment receives
the Email events with the user's userId; webhooks reach a real local receiver (Version 1 and 2),
a failing one is retried on the virtual clock until it is dead.

Every hop is a real server; waits poll server state, and retries are driven by `POST /_emulator/clock`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from mailjet_rest import Client as MailjetClient
from mailjet_rest.errors import DoesNotExistError
from segment.analytics import Client as SegmentClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import contracts
from emulator.bundle import BackgroundBundle
from emulator.common.server import serve_in_background
from emulator.config import BundleConfig

from .polling import wait_for as poll

WAIT_SECONDS = 15
LINK = "https://shop.example.com/offer"
HTML = f'<p>Hello Ada, <a href="{LINK}">see the offer</a></p>'
SEGMENT_CONTRACTS = {
    "Email Delivered": "segment.email_delivered",
    "Email Opened": "segment.email_opened",
    "Email Link Clicked": "segment.email_link_clicked",
}
# Bookkeeping the fake Segment keeps beside each stored message (not part of the wire message).
STORE_FIELDS = ("source", "status", "discard_reason", "violations")


def wait_for(probe: Callable[[], Any], what: str) -> Any:
    return poll(probe, what, WAIT_SECONDS)


def wait_rows(stack: Stack, done: Callable[[list[dict[str, Any]]], bool], what: str, **query: Any) -> list[dict[str, Any]]:
    """Poll `GET /_emulator/email-events` until the rows satisfy `done`."""

    def probe() -> list[dict[str, Any]] | None:
        rows = stack.email_events(**query)
        return rows if rows and done(rows) else None

    return wait_for(probe, what)


@dataclass
class Receiver:
    """A webhook endpoint: `/ok/...` answers 200, `/slow/...` answers 200 after half a second,
    `/fail/...` answers 500; every POST is kept."""

    received: list[tuple[str, Any]] = field(default_factory=list)
    authorizations: dict[str, str | None] = field(default_factory=dict)  # by path, the last seen
    content_types: dict[str, str | None] = field(default_factory=dict)  # by path, the last seen
    answered_slowly: list[str] = field(default_factory=list)  # paths, as each slow answer goes out

    async def endpoint(self, request: Request) -> Response:
        self.authorizations[request.url.path] = request.headers.get("authorization")
        self.content_types[request.url.path] = request.headers.get("content-type")
        self.received.append((request.url.path, await request.json()))
        if request.url.path.startswith("/slow"):
            await asyncio.sleep(0.5)
            self.answered_slowly.append(request.url.path)
            return JSONResponse({"success": True})
        if request.url.path.startswith("/fail"):
            return JSONResponse({"error": "scripted failure"}, status_code=500)
        if request.url.path.startswith("/split"):
            async def pieces() -> AsyncIterator[bytes]:
                yield b'{"error": "scripted '
                await asyncio.sleep(0.05)
                yield b'failure in pieces"}'
            return StreamingResponse(pieces(), status_code=500, media_type="application/json")
        return JSONResponse({"ok": True})

    def bodies(self, path: str) -> list[Any]:
        return [body for received_path, body in list(self.received) if received_path == path]


@dataclass
class Stack:
    info: dict[str, Any]
    receiver_url: str

    @property
    def segment_url(self) -> str:
        return self.info["segment_url"]

    @property
    def mailjet_url(self) -> str:
        return self.info["mailjet_url"]

    def mailjet(self, **kwargs: Any) -> MailjetClient:
        auth = (self.info["mailjet_api_key"], self.info["mailjet_secret_key"])
        return MailjetClient(auth=auth, api_url=self.mailjet_url + "/", **kwargs)

    def identify(self, user_id: str, traits: dict[str, Any]) -> None:
        SegmentClient(self.info["write_key"], host=self.segment_url, sync_mode=True).identify(user_id, traits)

    def contact_properties(self, email: str) -> dict[str, str] | None:
        try:
            answer = self.mailjet().contactdata.get(id=email)
        except DoesNotExistError:
            return None
        return {item["Name"]: item["Value"] for item in answer.json()["Data"][0]["Data"]}

    def connect_segment(self, **changes: Any) -> None:
        answer = httpx.put(f"{self.mailjet_url}/_emulator/app-connections/segment", json=changes)
        assert answer.status_code == 200, answer.text

    def send_email(self, to: str, subject: str = "Your offer") -> int:
        message = {"From": {"Email": "shop@example.com", "Name": "Shop"}, "To": [{"Email": to}], "Subject": subject, "HTMLPart": HTML}
        answer = self.mailjet(version="v3.1").send.create(data={"Messages": [message]})
        assert answer.status_code == 200, answer.text
        return answer.json()["Messages"][0]["To"][0]["MessageID"]

    def emit(self, message_id: int, event: str, **fields: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.mailjet_url}/_emulator/messages/{message_id}/events", json={"event": event, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def email_events(self, **query: Any) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.mailjet_url}/_emulator/email-events", params=query)
        answer.raise_for_status()
        return answer.json()["email_events"]

    def segment_events(self, **query: Any) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.segment_url}/_emulator/events", params={"limit": 1000, **query})
        answer.raise_for_status()
        return answer.json()["events"]

    def register_webhook(self, event_type: str, path: str, version: int) -> int:
        answer = self.mailjet().eventcallbackurl.create(data={"EventType": event_type, "Url": self.receiver_url + path, "Version": version})
        assert answer.status_code == 201, answer.text
        return answer.json()["Data"][0]["ID"]

    def advance(self, duration: str) -> None:
        httpx.post(f"{self.mailjet_url}/_emulator/clock", json={"advance": duration}).raise_for_status()


@pytest.fixture(scope="module")
def receiver_and_bundle() -> Iterator[tuple[Receiver, dict[str, Any], str]]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["POST"])])
    loop_thread, runner, urls = serve_in_background({"receiver": app})
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0))
    info = bundle.start()
    yield receiver, info, urls["receiver"]
    bundle.stop()
    loop_thread.run(runner.stop())
    loop_thread.close()


@pytest.fixture
def stack(receiver_and_bundle: tuple[Receiver, dict[str, Any], str]) -> Stack:
    receiver, info, receiver_url = receiver_and_bundle
    for url in (info["segment_url"], info["mailjet_url"]):
        httpx.post(f"{url}/_emulator/reset").raise_for_status()
    receiver.received.clear()
    receiver.authorizations.clear()
    receiver.content_types.clear()
    receiver.answered_slowly.clear()
    return Stack(info, receiver_url)


@pytest.fixture
def receiver(receiver_and_bundle: tuple[Receiver, dict[str, Any], str]) -> Receiver:
    return receiver_and_bundle[0]


def wire_message(stored: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in stored.items() if key not in STORE_FIELDS}


def test_identified_user_gets_email_events_in_segment_with_their_user_id(stack: Stack) -> None:
    stack.identify("ada-1", {"email": "ada@example.com", "firstName": "Ada"})
    properties = wait_for(lambda: stack.contact_properties("ada@example.com"), "the contact made by the destination")
    assert properties["segment_user_id"] == "ada-1"
    stack.connect_segment(writeKey=stack.info["write_key"], sendEvents=True)

    message_id = stack.send_email("ada@example.com")
    opened = stack.emit(message_id, "open")
    clicked = stack.emit(message_id, "click", url=LINK)
    assert contracts.validate("mailjet.event.open", opened["payload"]) == []
    assert clicked["payload"]["url"] == LINK

    def arrived() -> dict[str, dict[str, Any]] | None:
        found = {event["event"]: event for event in stack.segment_events(userId="ada-1", type="track")}
        return found if set(SEGMENT_CONTRACTS) <= set(found) else None

    found = wait_for(arrived, "Email Delivered, Opened and Link Clicked in the fake Segment")
    for name, contract in SEGMENT_CONTRACTS.items():
        stored = found[name]
        assert (stored["status"], stored["violations"]) == ("accepted", [])
        assert contracts.validate(contract, wire_message(stored)) == [], name
        assert stored["properties"]["email_id"] == str(message_id)
        assert stored["properties"]["email_subject"] == "Your offer"
        assert stored["context"]["traits"]["email"] == "ada@example.com"
        assert stored["context"]["integration"] == {"name": "mailjet", "version": "1.0.0"}
    assert found["Email Link Clicked"]["properties"]["link_url"] == LINK
    assert found["Email Opened"]["context"]["ip"] == opened["payload"]["ip"]
    assert found["Email Opened"]["context"]["userAgent"] == opened["payload"]["agent"]

    records = wait_rows(
        stack, lambda rows: all(row["segment"]["state"] == "delivered" for row in rows), "forwards delivered", MessageID=message_id
    )
    assert [row["event"] for row in records] == ["sent", "open", "click"]
    assert {row["segment"]["messageId"] for row in records} == {found[name]["messageId"] for name in SEGMENT_CONTRACTS}
    messages = httpx.get(f"{stack.mailjet_url}/_emulator/messages").json()["messages"]
    assert [(m["MessageID"], m["status"], [e["event"] for e in m["events"]]) for m in messages] == [
        (message_id, "clicked", ["sent", "open", "click"])
    ]


def test_webhooks_version_1_get_one_object_per_post(stack: Stack, receiver: Receiver) -> None:
    stack.register_webhook("sent", "/ok/v1", version=1)
    stack.register_webhook("open", "/ok/v1", version=1)
    message_id = stack.send_email("bob@example.com")
    stack.emit(message_id, "open", ip="10.0.0.7", geo="DE", agent="Mutt/2.2")
    bodies = wait_for(lambda: len(receiver.bodies("/ok/v1")) == 2 and receiver.bodies("/ok/v1"), "two Version 1 posts")
    assert all(isinstance(body, dict) for body in bodies)
    assert [body["event"] for body in bodies] == ["sent", "open"]
    assert receiver.content_types["/ok/v1"] == "application/json"  # "Events are POSTed as JSON" (§5)
    for body in bodies:
        assert contracts.validate(f"mailjet.event.{body['event']}", body) == []
        assert body["MessageID"] == message_id and body["email"] == "bob@example.com"
    assert (bodies[1]["ip"], bodies[1]["geo"], bodies[1]["agent"]) == ("10.0.0.7", "DE", "Mutt/2.2")
    records = wait_rows(stack, lambda rows: all(row["webhook"]["state"] == "delivered" for row in rows), "delivered webhooks")
    assert [row["webhook"]["attempts"][0]["status"] for row in records] == [200, 200]


def test_webhook_credentials_in_the_url_are_sent_as_basic_auth(stack: Stack, receiver: Receiver) -> None:
    # Mailjet's way to protect an endpoint: https://user:password@host/path as the callback URL.
    stack.receiver_url = stack.receiver_url.replace("http://", "http://hook-user:s3cret@")
    stack.register_webhook("sent", "/ok/auth", version=1)
    stack.send_email("carol@example.com")
    wait_for(lambda: receiver.bodies("/ok/auth"), "the sent event's post")
    assert receiver.authorizations["/ok/auth"] == "Basic aG9vay11c2VyOnMzY3JldA=="  # hook-user:s3cret


def test_webhooks_version_2_get_the_events_of_a_second_in_one_array(stack: Stack, receiver: Receiver) -> None:
    for event_type in ("sent", "open", "click"):
        stack.register_webhook(event_type, "/ok/v2", version=2)
    # A recipient who opens and clicks at once: sent, open and click share one second of event time.
    answer = httpx.put(
        f"{stack.mailjet_url}/_emulator/simulation", json={"open_rate": 1, "click_rate": 1, "delay": "0s", "seed": 4}
    )
    assert answer.json()["active"] is True
    message_id = stack.send_email("cy@example.com")
    (body,) = wait_for(lambda: receiver.bodies("/ok/v2"), "a Version 2 post")
    assert isinstance(body, list) and [event["event"] for event in body] == ["sent", "open", "click"]
    assert {event["MessageID"] for event in body} == {message_id} and body[2]["url"] == LINK
    for event in body:
        assert contracts.validate(f"mailjet.event.{event['event']}", event) == []
    assert len({event["time"] for event in body}) == 1


def test_a_reset_answers_once_the_webhook_call_in_flight_is_answered(stack: Stack, receiver: Receiver) -> None:
    stack.register_webhook("sent", "/slow/hook", version=1)
    stack.send_email("dee@example.com")
    wait_for(lambda: receiver.bodies("/slow/hook"), "the webhook call to start")
    httpx.post(f"{stack.mailjet_url}/_emulator/reset").raise_for_status()
    assert receiver.answered_slowly == ["/slow/hook"]


def test_a_whole_reset_during_an_account_reset_waits_for_the_webhook_call_in_flight_too(stack: Stack, receiver: Receiver) -> None:
    # The account's reset took the call to wait for and cleared the list: a whole reset arriving
    # meanwhile found nothing to wait for and answered before the call had its answer.
    stack.register_webhook("sent", "/slow/hook", version=1)
    stack.send_email("dee@example.com")
    wait_for(lambda: receiver.bodies("/slow/hook"), "the webhook call to start")
    account_reset = threading.Thread(target=lambda: httpx.post(
        f"{stack.mailjet_url}/_emulator/reset", params={"apiKey": stack.info["mailjet_api_key"]}, timeout=30))
    account_reset.start()
    time.sleep(0.1)  # the account's reset is waiting for the call (it answers after 0.5 s)
    httpx.post(f"{stack.mailjet_url}/_emulator/reset", timeout=30).raise_for_status()
    assert receiver.answered_slowly == ["/slow/hook"]
    account_reset.join(timeout=30)


def test_a_snapshot_import_answers_once_the_webhook_call_in_flight_is_answered(stack: Stack, receiver: Receiver) -> None:
    # As a reset: the import replaces the accounts, and a call of the old state must not land after it.
    document = httpx.get(f"{stack.mailjet_url}/_emulator/snapshot").json()
    stack.register_webhook("sent", "/slow/hook", version=1)
    stack.send_email("dee@example.com")
    wait_for(lambda: receiver.bodies("/slow/hook"), "the webhook call to start")
    httpx.put(f"{stack.mailjet_url}/_emulator/snapshot", json=document, timeout=30).raise_for_status()
    assert receiver.answered_slowly == ["/slow/hook"]


def test_a_reset_of_the_account_answers_once_its_segment_forward_in_flight_is_answered(
    stack: Stack, receiver: Receiver
) -> None:
    stack.connect_segment(segmentUrl=f"{stack.receiver_url}/slow", writeKey=stack.info["write_key"], sendEvents=True)
    stack.send_email("eve@example.com")
    wait_for(lambda: receiver.bodies("/slow/v1/batch"), "the Segment batch to start")
    answer = httpx.post(f"{stack.mailjet_url}/_emulator/reset", params={"apiKey": stack.info["mailjet_api_key"]})
    answer.raise_for_status()
    assert receiver.answered_slowly == ["/slow/v1/batch"]


def test_a_failing_webhook_is_retried_on_the_virtual_clock_and_dies_after_24h(stack: Stack, receiver: Receiver) -> None:
    callback_id = stack.register_webhook("sent", "/fail/hook", version=1)
    stack.send_email("dee@example.com")
    (row,) = wait_rows(stack, lambda rows: bool(rows[0]["webhook"]["attempts"]), "a first attempt", event="sent")
    webhook = row["webhook"]
    assert (webhook["state"], webhook["attempts"][0]["status"]) == ("retrying", 500)
    # The clock starts each retry and answers; the attempt's result is recorded when it comes.
    for attempts in (2, 3):
        stack.advance("30s")
        (row,) = wait_rows(stack, lambda rows, n=attempts: len(rows[0]["webhook"]["attempts"]) == n, f"attempt {attempts}", event="sent")
        assert row["webhook"]["state"] == "retrying"
    stack.advance("24h")
    (row,) = wait_rows(stack, lambda rows: rows[0]["webhook"]["state"] != "retrying", "the last attempt", event="sent")
    webhook = row["webhook"]
    assert webhook["state"] == "failed" and "Status dead" in webhook["reason"]
    assert [attempt["status"] for attempt in webhook["attempts"]] == [500, 500, 500, 500]
    assert len(receiver.bodies("/fail/hook")) == 4
    callback = stack.mailjet().eventcallbackurl.get(id=callback_id).json()["Data"][0]
    assert callback["Status"] == "dead"
    assert contracts.validate("mailjet.eventcallbackurl", callback) == []


def test_an_answer_sent_in_pieces_is_recorded_whole(stack: Stack, receiver: Receiver) -> None:
    # One `content.read(n)` returns what has arrived so far: the attempt kept '{"error": "scripted '.
    stack.register_webhook("sent", "/split/hook", version=1)
    stack.send_email("fay@example.com")
    (row,) = wait_rows(stack, lambda rows: bool(rows[0]["webhook"]["attempts"]), "a first attempt", event="sent")
    assert row["webhook"]["attempts"][0]["response"] == {"error": "scripted failure in pieces"}


def test_with_send_events_off_nothing_reaches_segment(stack: Stack) -> None:
    stack.connect_segment(writeKey=stack.info["write_key"], sendEvents=False)
    message_id = stack.send_email("eve@example.com")
    stack.emit(message_id, "open")
    rows = stack.email_events(MessageID=message_id)
    assert [(row["event"], row["segment"]["state"]) for row in rows] == [("sent", "not_forwarded"), ("open", "not_forwarded")]
    assert all("sendEvents is off" in row["segment"]["reason"] for row in rows)
    # The forward decision is taken when the event happens: nothing is left in flight.
    assert stack.segment_events(type="track") == []


def test_a_wrong_write_key_shows_as_unknown_write_key_in_segment(stack: Stack) -> None:
    stack.connect_segment(writeKey="not-a-segment-key", sendEvents=True)
    message_id = stack.send_email("fay@example.com")
    stored = wait_for(lambda: stack.segment_events(event="Email Delivered"), "the track call in the fake Segment")[0]
    assert (stored["status"], stored["discard_reason"]) == ("discarded", "unknown_write_key")
    assert stored["source"]["writeKey"] == "not-a-segment-key"
    assert stored["anonymousId"] == "fay@example.com" and stored.get("userId") is None
    assert stored["properties"]["email_id"] == str(message_id)
    # Segment answered 200 (it does not check keys at the edge), so for Mailjet the batch was delivered.
    (row,) = wait_rows(stack, lambda rows: rows[0]["segment"]["state"] == "delivered", "delivered", MessageID=message_id)
    assert row["segment"]["attempts"][0]["status"] == 200


def test_control_errors_over_http(stack: Stack) -> None:
    unknown = httpx.post(f"{stack.mailjet_url}/_emulator/messages/42/events", json={"event": "open"})
    assert unknown.status_code == 404 and "no message" in unknown.json()["error"]
    message_id = stack.send_email("gus@example.com")
    bad = httpx.post(f"{stack.mailjet_url}/_emulator/messages/{message_id}/events", json={"event": "click", "url": "https://elsewhere.example.com/"})
    assert bad.status_code == 400 and "is not a link" in bad.json()["error"]
    stack.emit(message_id, "open")
    bounce = httpx.post(f"{stack.mailjet_url}/_emulator/messages/{message_id}/events", json={"event": "bounce"})
    assert bounce.status_code == 400 and "cannot bounce" in bounce.json()["error"]
    assert [row["event"] for row in stack.email_events(MessageID=message_id)] == ["sent", "open"]
    rate = httpx.put(f"{stack.mailjet_url}/_emulator/simulation", json={"open_rate": 2})
    assert rate.status_code == 400 and "from 0 to 1" in rate.json()["error"]
    campaign = httpx.post(f"{stack.mailjet_url}/_emulator/campaigns", json={"list_id": 77, "subject": "s", "html": HTML})
    assert campaign.status_code == 400 and "not a contact list" in campaign.json()["error"]


def test_no_open_events_for_an_email_sent_with_open_tracking_disabled(stack: Stack) -> None:
    # TrackOpens "disabled": Mailjet adds no open pixel, so it can record no open, simulated or posted;
    # the Segment source likewise says "You need to enable Open Tracking" for Email Opened.
    answer = httpx.put(f"{stack.mailjet_url}/_emulator/simulation", json={"open_rate": 1, "delay": "0s", "seed": 4})
    assert answer.status_code == 200, answer.text
    base = {"From": {"Email": "shop@example.com"}, "Subject": "Your offer", "HTMLPart": HTML}
    sent = stack.mailjet(version="v3.1").send.create(data={"Messages": [
        {**base, "To": [{"Email": "untracked@example.com"}], "TrackOpens": "disabled"},
        {**base, "To": [{"Email": "tracked@example.com"}]},
    ]})
    assert sent.status_code == 200, sent.text
    untracked, tracked = (result["To"][0]["MessageID"] for result in sent.json()["Messages"])
    wait_rows(stack, lambda rows: [row["event"] for row in rows] == ["sent", "open"], "the tracked email's open", MessageID=tracked)
    wait_rows(stack, lambda rows: [row["event"] for row in rows] == ["sent"], "the untracked email's sent", MessageID=untracked)
    refused = httpx.post(f"{stack.mailjet_url}/_emulator/messages/{untracked}/events", json={"event": "open"})
    assert refused.status_code == 400 and 'TrackOpens "disabled"' in refused.json()["error"]
    assert [row["MessageID"] for row in stack.email_events(event="open")] == [tracked]
    # Without click tracking, no click either; the open is still recorded.
    no_clicks = stack.mailjet(version="v3.1").send.create(
        data={"Messages": [{**base, "To": [{"Email": "noclicks@example.com"}], "TrackClicks": "disabled"}]}
    ).json()["Messages"][0]["To"][0]["MessageID"]
    click = httpx.post(f"{stack.mailjet_url}/_emulator/messages/{no_clicks}/events", json={"event": "click", "url": LINK})
    assert click.status_code == 400 and 'TrackClicks "disabled"' in click.json()["error"]
    wait_rows(stack, lambda rows: [row["event"] for row in rows] == ["sent", "open"], "the open without clicks", MessageID=no_clicks)


def test_an_account_whose_api_key_basic_auth_cannot_carry_is_refused(stack: Stack) -> None:
    # Basic auth splits at the first colon (RFC 7617), so such an account could never authenticate.
    answer = httpx.post(f"{stack.mailjet_url}/_emulator/accounts", json={"api_key": "team:a", "secret_key": "s"})
    assert answer.status_code == 400 and "colon" in answer.json()["error"]
    assert httpx.get(f"{stack.mailjet_url}/_emulator/accounts").json()["accounts"][-1]["apiKey"] != "team:a"
    made = httpx.post(f"{stack.mailjet_url}/_emulator/accounts", json={"api_key": "team-a", "secret_key": "s:with:colons"})
    assert made.status_code == 201, made.text
    client = MailjetClient(auth=("team-a", "s:with:colons"), api_url=stack.mailjet_url + "/")
    assert client.contactslist.get().status_code == 200


def test_control_listings_keep_the_newest_last(stack: Stack) -> None:
    sent = [stack.send_email(f"list{index}@example.com") for index in range(3)]
    messages = httpx.get(f"{stack.mailjet_url}/_emulator/messages", params={"limit": 2}).json()["messages"]
    assert [message["MessageID"] for message in messages] == sent[1:]
    for message_id in sent:
        stack.emit(message_id, "open")
    assert [row["MessageID"] for row in stack.email_events(event="open", limit=2)] == sent[1:]
    assert httpx.get(f"{stack.mailjet_url}/_emulator/messages", params={"limit": 0}).json()["messages"] == []
    campaign = httpx.post(f"{stack.mailjet_url}/_emulator/campaigns", json={"list_id": 1, "subject": "s", "html": HTML})
    assert campaign.status_code == 201 and campaign.json()["list_id"] == 1


def test_an_account_is_made_of_an_api_key_and_a_secret_key_only(stack: Stack) -> None:
    answer = httpx.post(f"{stack.mailjet_url}/_emulator/accounts", json={"api_key": "team-b", "secret_key": "s", "name": "B"})
    assert answer.status_code == 400 and "unknown field(s): name" in answer.json()["error"]
    assert all(account["apiKey"] != "team-b" for account in httpx.get(f"{stack.mailjet_url}/_emulator/accounts").json()["accounts"])
