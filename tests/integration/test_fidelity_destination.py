"""Documented examples of Segment's delivery and of the Mailjet destination, replayed over real HTTP.

Each test sends what a source document shows into the fake Segment, lets it travel through the
destination to the fake Mailjet, and compares what crossed each hop with what the document says.
The source of every example is named in the test.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

WAIT_SECONDS = 15


class Stack:
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.segment_url: str = info["segment_url"]
        self.mailjet_url: str = info["mailjet_url"]
        self.http = httpx.Client(timeout=30)

    def send(self, call_type: str, body: dict[str, Any]) -> str:
        """POST one call to the tracking API with the bundle's write key; its messageId."""
        message_id = body.setdefault("messageId", f"fid-{uuid.uuid4().hex}")
        answer = self.http.post(f"{self.segment_url}/v1/{call_type}", json=body, auth=(self.info["write_key"], ""))
        assert answer.status_code == 200, answer.text
        return message_id

    def wait_delivery(self, message_id: str, *states: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            answer = self.http.get(f"{self.segment_url}/_emulator/deliveries", params={"messageId": message_id})
            found = answer.json()["deliveries"]
            if found and found[-1]["state"] in states:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"delivery of {message_id} is {found}, expected one of {states}")
            time.sleep(0.01)

    def mailjet_requests(self, path_part: str) -> list[dict[str, Any]]:
        """What reached the fake Mailjet at a path containing `path_part` and was applied (2xx).

        A refused call is left out: each test resets the fake Mailjet, so the destination's cached
        property definitions are stale, and its first managecontact of a test may be refused
        ("Property not defined") and made again after a re-read.
        """
        answer = self.http.get(f"{self.mailjet_url}/_emulator/requests", params={"limit": 10_000})
        answer.raise_for_status()
        entries = sorted(answer.json()["requests"], key=lambda entry: entry["id"])
        return [entry for entry in entries if path_part in entry["path"] and 200 <= (entry["status"] or 0) <= 299]

    def mailjet_fault(self, status: int) -> None:
        rule = {"method": "POST", "path": "/v3/REST/contactslist/*/managecontact", "status": status, "times": 1}
        answer = self.http.post(f"{self.mailjet_url}/_emulator/faults", json=rule)
        assert answer.status_code == 201, answer.text


@pytest.fixture(scope="module")
def bundle() -> Iterator[dict[str, Any]]:
    background = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=5))
    info = background.start()
    yield info
    background.stop()


@pytest.fixture
def stack(bundle: dict[str, Any]) -> Iterator[Stack]:
    stack = Stack(bundle)
    for url in (stack.segment_url, stack.mailjet_url):
        stack.http.post(f"{url}/_emulator/reset").raise_for_status()
    stack.http.delete(f"{stack.mailjet_url}/_emulator/faults").raise_for_status()
    yield stack
    stack.http.close()


def test_the_direct_destination_guides_identify_example(stack: Stack) -> None:
    # segment-docs src/partners/direct-destination.md, "Request body": the identify a destination
    # can expect ("create contacts in an email marketing application").
    example = {
        "anonymousId": "1234",
        "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_5)"},
        "traits": {"name": "John Doe", "email": "john.doe@email.com", "plan": "premium", "logins": 5},
        "userId": "5678",
    }
    message_id = stack.send("identify", example)
    record = stack.wait_delivery(message_id, "delivered", "failed")
    assert record["state"] == "delivered", record

    # Same guide, "Headers": what Segment sends with every request.
    (attempt,) = record["attempts"]
    headers = attempt["request"]["headers"]
    assert headers["Accept"] == "*/*"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Connection"] == "Keep-Alive"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Segment.io/1.0"
    # "Except for the API key (which is sent in the Authorization header), Segment will send the
    # base 64 encoding of the rest of your custom settings": the tile's other setting, listId.
    assert json.loads(base64.b64decode(headers["X-Segment-Settings"])) == {"listId": str(stack.info["list_id"])}
    # The key went out (the destination knew it: delivered), but the record hides it, as the
    # request journals hide every Authorization header.
    assert headers["Authorization"] == "<redacted>"
    assert stack.info["auth_key"] not in json.dumps(record)

    # reference/mailjet.md §3 (_newsletter.md): managecontact {Email, Name, Action, Properties}.
    (call,) = stack.mailjet_requests("/managecontact")
    assert call["method"] == "POST" and call["path"] == f"/v3/REST/contactslist/{stack.info['list_id']}/managecontact"
    assert call["status"] == 201
    assert call["body"] == {
        "Email": "john.doe@email.com",
        "Action": "addnoforce",
        "Name": "John Doe",
        "Properties": {"segment_user_id": "5678", "name": "John Doe", "plan": "premium", "logins": 5},
    }
    # reference/mailjet.md §4 (DevGuide): "All properties used must be defined in advance", with
    # POST /contactmetadata {"Datatype", "Name", "NameSpace": "static"}.
    created = {entry["body"]["Name"]: entry["body"] for entry in stack.mailjet_requests("/contactmetadata") if entry["method"] == "POST"}
    assert created["logins"] == {"Name": "logins", "Datatype": "int", "NameSpace": "static"}
    assert created["plan"] == {"Name": "plan", "Datatype": "str", "NameSpace": "static"}


def test_mailjets_segment_guide_location_example_is_flattened(stack: Stack) -> None:
    # Mailjet's Segment user guide (reference/mailjet.md §7): traits.location {latitude, longitude}
    # "becomes the properties location_latitude and location_longitude".
    message_id = stack.send("identify", {
        "userId": "geo-1", "traits": {"email": "geo@example.com", "location": {"latitude": 48.87, "longitude": 2.37}},
    })
    assert stack.wait_delivery(message_id, "delivered", "failed")["state"] == "delivered"
    (call,) = stack.mailjet_requests("/managecontact")
    properties = call["body"]["Properties"]
    assert properties["location_latitude"] == 48.87 and properties["location_longitude"] == 2.37


def test_an_engage_audience_identify_reaches_mailjet_although_all_is_false(stack: Stack) -> None:
    # segment-docs src/engage/using-engage-data.md (reference/segment.md §4.3): Engage sends identify
    # with `integrations {"All": false, "<Destination>": true}` and the audience key as a trait.
    message_id = stack.send("identify", {
        "userId": "aud-1", "messageId": f"personas_{uuid.uuid4().hex}",
        "traits": {"high_value_users": True, "email": "aud@example.com"},
        "context": {"personas": {"computation_class": "audience", "computation_key": "high_value_users"}},
        "integrations": {"All": False, "Mailjet": True},
    })
    assert stack.wait_delivery(message_id, "delivered", "failed")["state"] == "delivered"
    (call,) = stack.mailjet_requests("/managecontact")
    assert call["body"]["Properties"]["high_value_users"] is True


@pytest.mark.parametrize(
    ("integrations", "state"),
    [
        # "destination flags are case sensitive and match the destination's name in the docs"
        # (segment-docs src/guides/filtering-data.md): "mailjet" is not the Mailjet destination.
        ({"mailjet": False}, "delivered"),
        ({"Mailjet": False}, "skipped"),
        ({"All": False}, "skipped"),
        # "The All flag is superseded by any destination specific options" (same page).
        ({"All": False, "Mailjet": {"listId": "1"}}, "delivered"),
    ],
)
def test_the_integrations_object_as_segment_documents_it(stack: Stack, integrations: dict[str, Any], state: str) -> None:
    message_id = stack.send("identify", {"userId": "int-1", "traits": {"email": "int@example.com"}, "integrations": integrations})
    record = stack.wait_delivery(message_id, "delivered", "failed", "skipped")
    assert record["state"] == state, record
    if state == "skipped":
        assert record["reason"] == "FILTERED_BY_INTEGRATIONS_OBJECT" and record["attempts"] == []


@pytest.mark.parametrize("call_type", ["track", "page", "screen", "group", "alias"])
def test_calls_the_catalog_does_not_list_never_reach_the_destination(stack: Stack, call_type: str) -> None:
    # Segment's catalog entry for Mailjet (reference/segment.md §7.1): identify only; Delivery
    # Overview's "Filtered at destination" code UNSUPPORTED_EVENT_TYPE.
    body = {"userId": "other-1", "event": "Signed Up", "groupId": "g-1", "previousId": "p-1", "traits": {"email": "o@example.com"}}
    record = stack.wait_delivery(stack.send(call_type, body), "skipped", "delivered", "failed")
    assert record["state"] == "skipped" and record["reason"] == "UNSUPPORTED_EVENT_TYPE"
    assert stack.mailjet_requests("/managecontact") == []


@pytest.mark.parametrize(("mailjet_status", "first_status"), [(429, 503), (503, 503)])
def test_a_temporary_mailjet_error_is_retried_by_segment(stack: Stack, mailjet_status: int, first_status: int) -> None:
    # segment-docs src/partners/faqs.md: retried "if they fail due to temporary errors like timeouts,
    # 429 Too Many Request status codes, and 5xx status codes"; the destination answers 503 for a
    # Mailjet 429 or 5xx (direct-destination.md: 503 "temporarily down ... avoid dropping messages").
    stack.mailjet_fault(mailjet_status)
    message_id = stack.send("identify", {"userId": "tmp-1", "traits": {"email": "tmp@example.com"}})
    record = stack.wait_delivery(message_id, "retrying", "failed", "delivered")
    assert record["state"] == "retrying" and [a["status"] for a in record["attempts"]] == [first_status]
    stack.http.post(f"{stack.segment_url}/_emulator/clock", json={"set": record["next_attempt_at"]}).raise_for_status()
    record = stack.wait_delivery(message_id, "delivered", "failed")
    assert record["state"] == "delivered" and [a["status"] for a in record["attempts"]] == [first_status, 200]


def test_a_permanent_error_is_not_retried(stack: Stack) -> None:
    # segment-docs src/partners/faqs.md: "Segment does not retry requests that fail due to permanent
    # errors like authentication failures or 4xx status codes"; direct-destination.md's example 400
    # {"message": "Missing email address"} for a tool that needs an email.
    message_id = stack.send("identify", {"userId": "perm-1", "traits": {"plan": "pro"}})
    record = stack.wait_delivery(message_id, "failed", "retrying", "delivered")
    assert record["state"] == "failed" and [a["status"] for a in record["attempts"]] == [400]
    assert "no email" in record["reason"] and record["next_attempt_at"] is None


def test_trait_text_of_an_existing_propertys_type_is_sent_not_skipped(stack: Stack) -> None:
    # Mailjet's contact-properties reference (reference/mailjet.md §4) types a property `Value` as a
    # string whose accepted form "depends on the respective contactmetadata's type", and its docs
    # send booleans as "true". A web form sends "45" for a trait an SDK first sent as 45.
    auth = (stack.info["mailjet_api_key"], stack.info["mailjet_secret_key"])
    for name, datatype in (("amount", "int"), ("flag", "bool"), ("ratio", "float")):
        body = {"Name": name, "Datatype": datatype, "NameSpace": "static"}
        answer = stack.http.post(f"{stack.mailjet_url}/v3/REST/contactmetadata", json=body, auth=auth)
        assert answer.status_code == 201, answer.text
    # A userId: the destination's cached definitions may still hold segment_user_id, which the
    # reset before this test removed from Mailjet (a KeyError, answered 500, once met that case).
    texts = stack.send("identify", {"userId": "txt-1", "traits": {"email": "txt@example.com", "amount": "45", "flag": "true", "ratio": "0.75"}})
    record = stack.wait_delivery(texts, "delivered", "failed")
    assert record["state"] == "delivered" and record["attempts"][-1]["response"]["skipped"] == [], record
    # An integral number is exactly an int.
    integral = stack.send("identify", {"userId": "txt-1", "traits": {"email": "txt@example.com", "amount": 46.0}})
    record = stack.wait_delivery(integral, "delivered", "failed")
    assert record["state"] == "delivered" and record["attempts"][-1]["response"]["skipped"] == [], record

    sent = [call["body"]["Properties"] for call in stack.mailjet_requests("/managecontact")]
    assert sent == [
        {"amount": 45, "flag": True, "ratio": 0.75, "segment_user_id": "txt-1"},
        {"amount": 46, "segment_user_id": "txt-1"},
    ]
    answer = stack.http.get(f"{stack.mailjet_url}/v3/REST/contactdata/txt@example.com", auth=auth)
    values = {item["Name"]: item["Value"] for item in answer.json()["Data"][0]["Data"]}
    assert values == {"amount": "46", "flag": "true", "ratio": "0.75", "segment_user_id": "txt-1"}
