"""Documented examples of Mailjet's Event API and of Segment's Mailjet source, replayed against segjet
over real HTTP and compared field by field.

Sources: the Event API samples and rules in reference/mailjet.md §5 (`api-documentation:guides/_event-api.md`
and the DevGuide), the Mailjet source page and Email spec in reference/segment.md §3 and §7.2
(`segment-docs:src/connections/sources/catalog/cloud-apps/mailjet/index.md`, `src/connections/spec/email.md`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import contracts
from emulator.bundle import BackgroundBundle
from emulator.common.clock import parse_iso
from emulator.common.server import serve_in_background
from emulator.config import BundleConfig

from .polling import wait_for as poll
from .test_email_events import Stack

WAIT_SECONDS = 15
AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36"
# The docs' samples (reference/mailjet.md §5, DevGuide), verbatim: the fields and their JSON types to match.
DOC_SAMPLES: dict[str, dict[str, Any]] = {
    "sent": {"event": "sent", "time": 1433333949, "MessageID": 19421777835146490, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "api@mailjet.com", "mj_campaign_id": 7257, "mj_contact_id": 4, "customcampaign": "", "mj_message_id": "19421777835146490", "smtp_reply": "sent (250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp)", "CustomID": "helloworld", "Payload": ""},
    "open": {"event": "open", "time": 1433103519, "MessageID": 19421777396190490, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "api@mailjet.com", "mj_campaign_id": 7173, "mj_contact_id": 320, "customcampaign": "", "CustomID": "helloworld", "Payload": "", "ip": "127.0.0.1", "geo": "US", "agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"},
    "click": {"event": "click", "time": 1433334653, "MessageID": 19421777836302490, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "api@mailjet.com", "mj_campaign_id": 7272, "mj_contact_id": 4, "customcampaign": "", "CustomID": "helloworld", "Payload": "", "url": "https://mailjet.com", "ip": "127.0.0.1", "geo": "FR", "agent": AGENT},
    "bounce": {"event": "bounce", "time": 1430812195, "MessageID": 13792286917004336, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "bounce@mailjet.com", "mj_campaign_id": 0, "mj_contact_id": 0, "customcampaign": "", "CustomID": "helloworld", "Payload": "", "blocked": False, "hard_bounce": True, "error_related_to": "recipient", "error": "user unknown", "comment": "Host or domain name not found. Name service error for name=lbjsnrftlsiuvbsren.com type=A: Host not found"},
    "blocked": {"event": "blocked", "time": 1430812195, "MessageID": 13792286917004336, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "bounce@mailjet.com", "mj_campaign_id": 0, "mj_contact_id": 0, "customcampaign": "", "CustomID": "helloworld", "Payload": "", "error_related_to": "recipient", "error": "user unknown"},
    "spam": {"event": "spam", "time": 1430812195, "MessageID": 13792286917004336, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "bounce@mailjet.com", "mj_campaign_id": 0, "mj_contact_id": 0, "customcampaign": "", "CustomID": "helloworld", "Payload": "", "source": "JMRPP"},
    "unsub": {"event": "unsub", "time": 1433334941, "MessageID": 20547674933128000, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "api@mailjet.com", "mj_campaign_id": 7276, "mj_contact_id": 126, "customcampaign": "", "CustomID": "helloworld", "Payload": "", "mj_list_id": 1, "ip": "127.0.0.1", "geo": "FR", "agent": AGENT},
}
# What each sample's recipient did, as control events: the docs' own values.
CONTROL = {
    event: {name: DOC_SAMPLES[event][name] for name in names}
    for event, names in {
        "open": ("ip", "geo", "agent"),
        "click": ("url", "ip", "geo", "agent"),
        "bounce": ("blocked", "hard_bounce", "error_related_to", "error", "comment"),
        "spam": ("source",),
        "unsub": ("ip", "geo", "agent"),
    }.items()
}
HTML = '<p>Hello, <a href="https://mailjet.com">Mailjet</a></p>'
# CustomID and EventPayload as Send v3.1 documents them come back as CustomID and Payload.
SENT_FIELDS = {"CustomID": "helloworld", "EventPayload": "Eticket,1234,row,15,seat,B", "CustomCampaign": "SendAPI_campaign"}
SEGMENT_EVENTS = {
    "sent": "Email Delivered", "open": "Email Opened", "click": "Email Link Clicked",
    "bounce": "Email Bounced", "spam": "Email Marked as Spam", "unsub": "Email Unsubscribed",
}


def wait_for(probe: Any, what: str) -> Any:
    return poll(probe, what, WAIT_SECONDS)


@dataclass
class Endpoint:
    """`/ok/...` answers 200; `/status/{code}/...` answers that status; `/redirect/{code}/...` redirects
    to `/ok/landing` with that status. Every request is kept as (method, path, JSON body or None)."""

    received: list[tuple[str, str, Any]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        path = request.url.path
        self.received.append((request.method, path, await request.json() if raw else None))
        parts = path.split("/")
        if parts[1] == "status":
            return JSONResponse({"answered": int(parts[2])}, status_code=int(parts[2]))
        if parts[1] == "redirect":
            return RedirectResponse("/ok/landing", status_code=int(parts[2]))
        return JSONResponse({"ok": True})

    def bodies(self, path: str) -> list[Any]:
        return [body for method, received_path, body in list(self.received) if received_path == path and method == "POST"]


@pytest.fixture(scope="module")
def endpoint_and_bundle() -> Iterator[tuple[Endpoint, dict[str, Any], str]]:
    endpoint = Endpoint()
    app = Starlette(routes=[Route("/{path:path}", endpoint.handle, methods=["GET", "POST"])])
    loop_thread, runner, urls = serve_in_background({"endpoint": app})
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0))
    info = bundle.start()
    yield endpoint, info, urls["endpoint"]
    bundle.stop()
    loop_thread.run(runner.stop())
    loop_thread.close()


@pytest.fixture
def endpoint(endpoint_and_bundle: tuple[Endpoint, dict[str, Any], str]) -> Endpoint:
    return endpoint_and_bundle[0]


@pytest.fixture
def stack(endpoint_and_bundle: tuple[Endpoint, dict[str, Any], str]) -> Stack:
    endpoint, info, endpoint_url = endpoint_and_bundle
    for url in (info["segment_url"], info["mailjet_url"]):
        httpx.post(f"{url}/_emulator/reset").raise_for_status()
    endpoint.received.clear()
    return Stack(info, endpoint_url)


def send(stack: Stack, to: str, **fields: Any) -> int:
    message = {"From": {"Email": "pilot@mailjet.com"}, "To": [{"Email": to}], "Subject": "Your flight plan", "HTMLPart": HTML, **fields}
    answer = stack.mailjet(version="v3.1").send.create(data={"Messages": [message]})
    assert answer.status_code == 200, answer.text
    return answer.json()["Messages"][0]["To"][0]["MessageID"]


def campaign_message(stack: Stack, email: str) -> int:
    """A newsletter to the account's list 1 holding `email`: the message an unsub comes from."""
    added = stack.mailjet().contactslist_managecontact.create(id=1, data={"Email": email, "Action": "addforce"})
    assert added.status_code == 201, added.text
    answer = httpx.post(f"{stack.mailjet_url}/_emulator/campaigns", json={"list_id": 1, "subject": "News", "html": HTML})
    assert answer.status_code == 201, answer.text
    return answer.json()["messages"][0]


def drive_every_event(stack: Stack) -> dict[str, int]:
    """One message in the situation of each docs sample; answers the MessageID of each event type.

    Nothing here races the clock (it runs with real time, and `sent` comes 1 s after a send): a bounce
    may come before `sent` (in its place) or after it, and the blocked message is a DeduplicateCampaign
    duplicate, blocked where its `sent` would have come."""
    engaged = send(stack, "api@mailjet.com", **SENT_FIELDS)
    for event in ("open", "click", "spam"):
        stack.emit(engaged, event, **CONTROL[event])
    bounced = send(stack, "bounce@mailjet.com", CustomID="helloworld")
    stack.emit(bounced, "bounce", **CONTROL["bounce"])
    twice = {"From": {"Email": "pilot@mailjet.com"}, "To": [{"Email": "twice@mailjet.com"}], "Subject": "Weekly", "TextPart": "t", "CustomCampaign": "weekly"}
    answer = stack.mailjet(version="v3.1").send.create(
        data={"Messages": [twice, {**twice, "DeduplicateCampaign": True, "CustomID": "helloworld"}]}
    )
    assert answer.status_code == 200, answer.text
    blocked = answer.json()["Messages"][1]["To"][0]["MessageID"]
    unsubscribed = campaign_message(stack, "news@mailjet.com")
    stack.emit(unsubscribed, "unsub", mj_list_id=1, **CONTROL["unsub"])
    stack.advance("1s")  # every `sent` (and the duplicate's `blocked`) is due 1 s after its send
    return {"sent": engaged, "open": engaged, "click": engaged, "spam": engaged, "bounce": bounced, "blocked": blocked, "unsub": unsubscribed}


def settled_rows(stack: Stack, done: Any, what: str) -> list[dict[str, Any]]:
    """Every email event, once each satisfies `done` (all seven types present)."""

    def probe() -> list[dict[str, Any]] | None:
        rows = stack.email_events()
        return rows if {row["event"] for row in rows} == set(DOC_SAMPLES) and all(done(row) for row in rows) else None

    return wait_for(probe, what)


def test_every_documented_sample_comes_back_with_its_fields_and_types(stack: Stack, endpoint: Endpoint) -> None:
    for event_type in DOC_SAMPLES:
        # The docs' endpoint example: {"EventType": "open", "Url": ...}, Version 1 by default.
        stack.register_webhook(event_type, f"/ok/{event_type}", version=1)
    ids = drive_every_event(stack)
    rows = settled_rows(stack, lambda row: row["webhook"]["state"] == "delivered", "every webhook post")
    for row in rows:
        event_type, sample = row["event"], DOC_SAMPLES[row["event"]]
        (body,) = [body for body in endpoint.bodies(f"/ok/{event_type}") if body == row["payload"]]
        assert isinstance(body, dict), "Version 1: one JSON object per POST"
        assert list(body) == list(sample), event_type  # the docs' fields, in the docs' order
        for name, value in sample.items():
            assert type(body[name]) is type(value), (event_type, name, body[name])
        assert contracts.validate(f"mailjet.event.{event_type}", body) == []
        for name, value in CONTROL.get(event_type, {}).items():
            assert body[name] == value, (event_type, name)
        assert body["time"] == int(parse_iso(row["at"]).timestamp())  # the Unix second of the event
        if event_type != "sent":
            assert body["MessageID"] == ids[event_type]
    (sent,) = [row["payload"] for row in rows if row["event"] == "sent" and row["MessageID"] == ids["sent"]]
    assert (sent["CustomID"], sent["Payload"], sent["customcampaign"]) == ("helloworld", "Eticket,1234,row,15,seat,B", "SendAPI_campaign")
    assert sent["mj_message_id"] == str(ids["sent"]) and sent["mj_campaign_id"] > 0
    payloads = {row["event"]: row["payload"] for row in rows if row["event"] != "sent"}
    # A plain transactional email has mj_campaign_id 0, as in the docs' bounce sample.
    assert (payloads["bounce"]["mj_campaign_id"], payloads["bounce"]["CustomID"]) == (0, "helloworld")
    # Blocked: the documented pair for a DeduplicateCampaign duplicate; no `sent` for it.
    assert (payloads["blocked"]["error_related_to"], payloads["blocked"]["error"]) == ("mailjet", "duplicate in campaign")
    assert not any(row["event"] == "sent" and row["MessageID"] == ids["blocked"] for row in rows)
    assert payloads["unsub"]["mj_list_id"] == 1 and payloads["unsub"]["mj_campaign_id"] > 0


def test_a_grouped_handler_created_as_the_docs_show_gets_json_arrays(stack: Stack, endpoint: Endpoint) -> None:
    # The docs' "Grouping events" examples (curl, Python, PHP) send Version as the string "2".
    for event_type in ("sent", "open"):
        answer = httpx.post(
            f"{stack.mailjet_url}/v3/REST/eventcallbackurl",
            auth=(stack.info["mailjet_api_key"], stack.info["mailjet_secret_key"]),
            json={"EventType": event_type, "Url": f"{stack.receiver_url}/ok/grouped", "Version": "2"},
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["Data"][0]["Version"] == 2
    # A recipient who opens at once: sent and open share one second of event time.
    answer = httpx.put(f"{stack.mailjet_url}/_emulator/simulation", json={"open_rate": 1, "delay": "0s", "seed": 1})
    assert answer.status_code == 200, answer.text
    message_id = send(stack, "grouped@mailjet.com")
    stack.advance("1s")
    (body,) = wait_for(lambda: endpoint.bodies("/ok/grouped"), "one grouped post")
    # "all the events will be delivered to your webhook in a JSON array"; "event types ... can be mixed".
    assert isinstance(body, list) and [(event["event"], event["MessageID"]) for event in body] == [("sent", message_id), ("open", message_id)]
    for event in body:
        assert list(event) == list(DOC_SAMPLES[event["event"]])


def test_the_mailjet_source_sends_its_collections_as_email_spec_track_calls(stack: Stack) -> None:
    stack.connect_segment(writeKey=stack.info["write_key"], sendEvents=True)
    ids = drive_every_event(stack)
    rows = settled_rows(stack, lambda row: row["segment"]["state"] in ("delivered", "not_forwarded"), "every forward settled")
    stored = {event["messageId"]: event for event in stack.segment_events(type="track")}
    assert len(stored) == len(rows) - 1  # one track call per event but blocked, which has no collection
    for row in rows:
        if row["event"] == "blocked":
            assert row["segment"]["state"] == "not_forwarded"
            continue
        event = stored[row["segment"]["messageId"]]
        assert event["event"] == SEGMENT_EVENTS[row["event"]]  # the source page's Collections
        assert (event["status"], event["violations"]) == ("accepted", []), event["event"]
        # No userId is known for these recipients: "the email address will be passed in as the anonymousId".
        assert "userId" not in event and event["anonymousId"] == event["context"]["traits"]["email"] == row["email"]
        assert event["context"]["integration"] == {"name": "mailjet", "version": "1.0.0"}
        assert event["properties"]["email_id"] == str(row["MessageID"])
        assert all(isinstance(value, str) for value in event["properties"].values())  # the Email spec's types
        if "ip" in row["payload"]:
            assert (event["context"]["ip"], event["context"]["userAgent"]) == (row["payload"]["ip"], row["payload"]["agent"])
    by_name = {event["event"]: event for event in stored.values() if event["properties"]["email_id"] != str(ids["unsub"])}
    opened = by_name["Email Opened"]["properties"]
    assert (opened["email_subject"], opened["campaign_name"]) == ("Your flight plan", "SendAPI_campaign")
    assert opened["campaign_id"].isdigit()
    assert by_name["Email Link Clicked"]["properties"]["link_url"] == "https://mailjet.com"
    assert (by_name["Email Bounced"]["properties"]["campaign_id"], by_name["Email Bounced"]["properties"]["campaign_name"]) == ("", "")
    (unsub,) = [event["properties"] for event in stored.values() if event["event"] == "Email Unsubscribed"]
    assert (unsub["list_id"], unsub["list_name"], unsub["campaign_name"], unsub["email_id"]) == ("1", "segjet", "News", str(ids["unsub"]))


@pytest.mark.parametrize("status", [201, 204, 500])
def test_a_webhook_answering_anything_but_200_is_retried_every_30s(stack: Stack, endpoint: Endpoint, status: int) -> None:
    # "It must return a 200 OK HTTP code ... Any other HTTP code will result in our server retrying the request later."
    stack.register_webhook("sent", f"/status/{status}/hook", version=1)
    message_id = send(stack, "retry@mailjet.com")
    stack.advance("1s")
    row = wait_for(lambda: (r := row_of_or_none(stack, message_id)) and r["webhook"]["attempts"] and r, "a first attempt")
    assert (row["webhook"]["state"], row["webhook"]["attempts"][0]["status"]) == ("retrying", status)
    stack.advance("30s")
    wait_for(lambda: len(endpoint.bodies(f"/status/{status}/hook")) == 2, "the retry 30 s later")


def row_of_or_none(stack: Stack, message_id: int) -> dict[str, Any] | None:
    rows = stack.email_events(MessageID=message_id, event="sent")
    return rows[0] if rows else None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_answering_a_redirect_is_retried_not_followed(stack: Stack, endpoint: Endpoint, status: int) -> None:
    # A redirect is not the 200 the Event API asks for. Followed, a 301/302/303 turns the POST into a
    # GET without the event, whose 200 would count the event as delivered while nobody received it.
    stack.register_webhook("sent", f"/redirect/{status}/hook", version=1)
    message_id = send(stack, "moved@mailjet.com")
    stack.advance("1s")
    row = wait_for(lambda: (r := row_of_or_none(stack, message_id)) and r["webhook"]["attempts"] and r, "a first attempt")
    webhook = row["webhook"]
    assert (webhook["state"], webhook["attempts"][0]["status"], webhook["reason"]) == ("retrying", status, f"HTTP {status}")
    assert {(method, path) for method, path, _ in endpoint.received} == {("POST", f"/redirect/{status}/hook")}  # no GET, no landing


def test_a_redirect_from_segment_does_not_count_as_delivered(stack: Stack, endpoint: Endpoint) -> None:
    # Same for the Segment forward: only Segment's 200 delivers a batch; a 3xx is retried as analytics-python
    # retries any status that is not a 4xx.
    stack.connect_segment(segmentUrl=f"{stack.receiver_url}/redirect/302", writeKey=stack.info["write_key"], sendEvents=True)
    message_id = send(stack, "moved@mailjet.com")
    stack.advance("1s")
    row = wait_for(lambda: (r := row_of_or_none(stack, message_id)) and r["segment"]["attempts"] and r, "a first Segment attempt")
    assert (row["segment"]["state"], row["segment"]["attempts"][0]["status"]) == ("retrying", 302)
    # The retry may already have come (1 s later): never to where the redirect pointed.
    assert {(method, path) for method, path, _ in endpoint.received} == {("POST", "/redirect/302/v1/batch")}


def test_a_segment_url_fixed_in_app_connections_takes_the_forwards_still_waiting(stack: Stack, endpoint: Endpoint) -> None:
    # The forward retrying against the wrong URL kept it after the fix, and held every later event
    # behind it until its 10 retries ran out (~17 minutes), then failed.
    stack.connect_segment(segmentUrl=f"{stack.receiver_url}/status/503", writeKey=stack.info["write_key"], sendEvents=True)
    first = send(stack, "early@mailjet.com")
    stack.advance("1s")
    wait_for(lambda: (r := row_of_or_none(stack, first)) and r["segment"]["state"] == "retrying", "a first failed forward")
    stack.connect_segment(segmentUrl=stack.info["segment_url"])
    later = send(stack, "late@mailjet.com")
    stack.advance("2s")  # the retry is due 1 s after the failure; the later `sent` 1 s after its send
    delivered = wait_for(lambda: len(calls := stack.segment_events(event="Email Delivered")) == 2 and calls,
                         "both Email Delivered calls in the fake Segment")
    assert sorted(call["properties"]["email_id"] for call in delivered) == sorted([str(first), str(later)])
    assert {path for _, path, _ in endpoint.received} == {"/status/503/v1/batch"}
