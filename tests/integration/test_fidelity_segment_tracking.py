"""The fake Segment's tracking API replaying the real world over HTTP: the documented examples of
the HTTP Tracking API and the Spec, and the bodies the official libraries send.

Sources (segmentio/segment-docs unless said otherwise):
- HTTP = src/connections/sources/catalog/libraries/server/http-api/index.md
- COMMON = src/connections/spec/common.md; TRACK = src/connections/spec/track.md
- GO = segmentio/analytics-go (analytics.go `upload`, message.go `batch`, fixtures/test-enqueue-*.json)
- NODE = segmentio/analytics-next packages/node/src/plugins/segmentio/publisher.ts
- AJS = segmentio/analytics-next packages/browser (segmentio/index.ts posts to /v1/<first letter>,
  batched-dispatcher.ts to /v1/b, shared-dispatcher.ts sends Content-Type text/plain)
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator.common.clock import Clock, parse_iso
from emulator.config import BundleConfig, BundleUrls
from emulator.segment.routes import create_app

from .conftest import reset_then_no_500s

DOCS_KEY = "YOUR_WRITE_KEY"  # the placeholder of every HTTP example
BASIC_DOCS_KEY = "abc123"  # HTTP "Basic authentication": 'abc123:' → 'YWJjMTIzOg=='
NODE_KEY = "foo"  # NODE's tests: 'Authorization: Basic Zm9vOg=='
PLACEHOLDER_URLS = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def http(serve: Any) -> Any:
    config = BundleConfig(
        write_key=DOCS_KEY,
        sources=[{"name": "basic", "write_key": BASIC_DOCS_KEY}, {"name": "node", "write_key": NODE_KEY}],
    )
    urls = serve({"segment": create_app(config, Clock(), PLACEHOLDER_URLS)})
    with httpx.Client(base_url=urls["segment"], timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def reset(http: httpx.Client) -> Iterator[None]:
    yield from reset_then_no_500s(http)


def stored(http: httpx.Client) -> list[dict[str, Any]]:
    response = http.get("/_emulator/events")
    assert response.status_code == 200, response.text
    return response.json()["events"]


def post(http: httpx.Client, path: str, payload: Any, **headers: str) -> httpx.Response:
    return http.post(path, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json", **headers})


def assert_success(response: httpx.Response) -> None:
    # HTTP "Errors": 200 for everything but size and JSON errors; the body is {"success": true}
    # (segmentio/analytics-go#205, and Segment's own mocks in analytics-next).
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


# -- the HTTP Tracking API page, example by example ----------------------------------------------

HTTP_EXAMPLES = {
    "identify": {
        "userId": "019mr8mf4r",
        "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons", "industry": "Technology"},
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2012-12-02T00:30:08.276Z",
    },
    "track": {
        "userId": "019mr8mf4r",
        "event": "Item Purchased",
        "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2012-12-02T00:30:12.984Z",
    },
    "page": {"userId": "019mr8mf4r", "name": "Tracking HTTP API", "timestamp": "2012-12-02T00:31:29.738Z"},
    "screen": {"userId": "019mr8mf4r", "name": "Tracking HTTP API", "timestamp": "2012-12-02T00:31:29.738Z"},
    "group": {
        "userId": "019mr8mf4r",
        "groupId": "8e9df332ac",
        "traits": {"name": "Initech", "industry": "Technology", "employees": 420},
        "timestamp": "2012-12-02T00:31:38.208Z",
    },
    "alias": {"previousId": "39239-239239-239239-23923", "userId": "019mr8mf4r", "timestamp": "2012-12-02T00:31:29.738Z"},
}


@pytest.mark.parametrize("call_type", list(HTTP_EXAMPLES))
def test_each_http_api_example_is_accepted_and_kept_as_sent(http: httpx.Client, call_type: str) -> None:
    example = HTTP_EXAMPLES[call_type]
    assert_success(post(http, f"/v1/{call_type}", {**example, "writeKey": DOCS_KEY}))
    [message] = stored(http)
    assert (message["type"], message["status"], message["violations"]) == (call_type, "accepted", [])
    assert {key: message[key] for key in example} == example  # the write key is not kept
    assert "writeKey" not in message
    # No sentAt: nothing to correct; the timestamp as given is also the originalTimestamp (COMMON).
    assert message["originalTimestamp"] == example["timestamp"]
    assert message["messageId"]  # HTTP "Deduplication": added to every payload


def test_the_selecting_destinations_example_keeps_its_integrations_object(http: httpx.Client) -> None:
    integrations = {"All": False, "Mixpanel": True, "Kissmetrics": True, "Google Analytics": False}
    assert_success(post(http, "/v1/identify", {**HTTP_EXAMPLES["identify"], "integrations": integrations, "writeKey": DOCS_KEY}))
    [message] = stored(http)
    assert message["integrations"] == integrations and message["violations"] == []


def test_the_write_key_authentication_curl_example(http: httpx.Client) -> None:
    """HTTP "writeKey authentication": no type, an extra top-level `email`, no auth header."""
    example = {"event": "happy-path-a3ef8a6f-0482-4694-bc4d-4afba03a0eab", "email": "test@example.org", "userId": "123"}
    assert_success(post(http, "/v1/track", {**example, "writeKey": DOCS_KEY}))
    [message] = stored(http)
    assert message["status"] == "accepted" and message["email"] == "test@example.org"
    assert message["source"]["name"] == "segjet"


def test_a_top_level_field_named_like_a_view_key_is_shown_under_call_fields(http: httpx.Client) -> None:
    # Custom top-level fields are kept (the example above); a call's own "source" or "status" was
    # hidden by the keys the events view adds, there and in the Debugger's feed.
    own = {"source": "web", "status": "draft", "discard_reason": 1, "violations": "none", "call_fields": [2]}
    assert_success(post(http, "/v1/track", {"userId": "u1", "event": "E", "writeKey": DOCS_KEY, **own}))
    assert_success(post(http, "/v1/track", {"userId": "u1", "event": "Plain", "writeKey": DOCS_KEY}))
    shadowed, plain = stored(http)
    assert (shadowed["status"], shadowed["source"]["name"], shadowed["call_fields"]) == ("accepted", "segjet", own)
    assert "call_fields" not in plain


def test_the_oauth_example_takes_the_write_key_from_the_payload(http: httpx.Client) -> None:
    """HTTP "OAuth": a Bearer token in the header and the write key in the payload."""
    example = {
        "event": "happy-path-a3ef8a6f-0482-4694-bc4d-4afba03a0eab",
        "email": "test@example.org",
        "messageId": "58524f3a-3b76-4eac-aa97-d88bccdf4f77",
        "userId": "123",
        "type": "track",
        "writeKey": DOCS_KEY,
    }
    assert_success(post(http, "/v1/track", example, Authorization="Bearer some-access-token"))
    [message] = stored(http)
    assert (message["status"], message["messageId"]) == ("accepted", "58524f3a-3b76-4eac-aa97-d88bccdf4f77")


def test_the_basic_authentication_example_header(http: httpx.Client) -> None:
    """HTTP "Basic authentication": 'abc123:' base64-encoded is 'YWJjMTIzOg=='; without the colon
    it "might work due to backward compatibility"."""
    assert base64.b64encode(f"{BASIC_DOCS_KEY}:".encode()).decode() == "YWJjMTIzOg=="
    for header in ("Basic YWJjMTIzOg==", "Basic " + base64.b64encode(BASIC_DOCS_KEY.encode()).decode()):
        assert_success(post(http, "/v1/track", {"userId": "u1", "event": "E"}, Authorization=header))
    assert [(m["source"]["name"], m["status"]) for m in stored(http)] == [("basic", "accepted")] * 2


def test_the_batch_example_merges_its_context_and_flags_its_unpadded_timestamps(http: httpx.Client) -> None:
    device = {"type": "phone", "name": "Apple iPhone 6"}
    batch = [
        {"type": "identify", "userId": "019mr8mf4r", "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
         "timestamp": "2012-12-02T00:30:08.276Z"},
        {"type": "track", "userId": "019mr8mf4r", "event": "Song Played",
         "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"}, "timestamp": "2012-12-02T00:30:12.984Z"},
        {"type": "identify", "userId": "971mj8mk7p", "traits": {"email": "cindy@example.com", "name": "Cindy Gonzalez", "age": 23},
         "timestamp": "2015-2-02T00:30:08.276Z"},
        {"type": "track", "userId": "971mj8mk7p", "event": "Song Played",
         "properties": {"name": "Get Right", "artist": "Jennifer Lopez"}, "timestamp": "2015-2-02T00:30:12.984Z"},
    ]
    assert_success(post(http, "/v1/batch", {"batch": batch, "writeKey": DOCS_KEY, "context": {"device": device}}))
    messages = stored(http)
    assert [(m["type"], m["status"]) for m in messages] == [(item["type"], "accepted") for item in batch]
    assert all(m["context"]["device"] == device for m in messages)  # "merged with any context inside each of the items"
    # README Fidelity: the docs' own "2015-2-02T..." is read, and flagged (not RFC 3339).
    assert [m["timestamp"] for m in messages[2:]] == ["2015-02-02T00:30:08.276Z", "2015-02-02T00:30:12.984Z"]
    assert [m["violations"] == [] for m in messages] == [True, True, False, False]


# -- the Spec's complete examples ----------------------------------------------------------------


def test_the_spec_track_example_gets_the_documented_clock_skew_correction(http: httpx.Client) -> None:
    """TRACK "Example" shows Segment's output: receivedAt 01.266, sentAt 01.169, originalTimestamp
    01.152 give timestamp 01.249 = receivedAt - (sentAt - originalTimestamp) (COMMON "Timestamps").
    Sent with the client's fields, the receivedAt comes from the fake's clock instead."""
    sent = {
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}, "ip": "108.0.78.21"},
        "event": "Course Clicked",
        "integrations": {},
        "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
        "properties": {"title": "Intro to Analytics"},
        "receivedAt": "2015-12-12T19:11:01.266Z",
        "sentAt": "2015-12-12T19:11:01.169Z",
        "timestamp": "2015-12-12T19:11:01.152Z",
        "type": "track",
        "userId": "AiUGstSDIg",
        "writeKey": DOCS_KEY,
    }
    assert_success(post(http, "/v1/track", sent))
    [message] = stored(http)
    assert message["status"] == "accepted" and message["violations"] == []
    assert message["receivedAt"] != sent["receivedAt"]  # set by Segment, whatever the client says
    assert message["originalTimestamp"] == "2015-12-12T19:11:01.152Z"
    assert parse_iso(message["receivedAt"]) - parse_iso(message["timestamp"]) == timedelta(milliseconds=17)
    assert message["messageId"] == sent["messageId"]


def test_the_spec_common_fields_example_passes_the_contract(http: httpx.Client) -> None:
    """COMMON "Structure": every documented context key, as the docs show it (plus the event
    name a track needs)."""
    context = {
        "active": True,
        "app": {"name": "InitechGlobal", "version": "545", "build": "3.0.1.545", "namespace": "com.production.segment"},
        "campaign": {"name": "TPS Innovation Newsletter", "source": "Newsletter", "medium": "email", "term": "tps reports",
                     "content": "image link"},
        "device": {"id": "B5372DB0-C21E-11E4-8DFC-AA07A5B093DB", "advertisingId": "7A3CBEA0-BDF5-11E4-8DFC-AA07A5B093DB",
                   "adTrackingEnabled": True, "manufacturer": "Apple", "model": "iPhone7,2", "name": "maguro", "type": "ios",
                   "token": "ff15bc0c20c4aa6cd50854ff165fd265c838e5405bfeb9571066395b8c9da449"},
        "ip": "8.8.8.8",
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "locale": "en-US",
        "location": {"city": "San Francisco", "country": "United States", "latitude": 40.2964197, "longitude": -76.9411617,
                     "speed": 0},
        "network": {"bluetooth": False, "carrier": "T-Mobile US", "cellular": True, "wifi": False},
        "os": {"name": "iPhone OS", "version": "8.1.3"},
        "page": {"path": "/academy/", "referrer": "", "search": "", "title": "Analytics Academy",
                 "url": "https://segment.com/academy/"},
        "referrer": {"id": "ABCD582CDEFFFF01919", "type": "dataxu"},
        "screen": {"width": 320, "height": 568, "density": 2},
        "groupId": "12345",
        "timezone": "Europe/Amsterdam",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 9_1 like Mac OS X)",
    }
    example = {
        "anonymousId": "507f191e810c19729de860ea", "context": context,
        "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db", "receivedAt": "2015-12-10T04:08:31.909Z",
        "sentAt": "2015-12-10T04:08:31.581Z", "timestamp": "2015-12-10T04:08:31.905Z", "type": "track",
        "userId": "97980cfea0067", "version": 2, "event": "Report Submitted",
    }
    assert_success(post(http, "/v1/track", {**example, "writeKey": DOCS_KEY}))
    [message] = stored(http)
    assert (message["status"], message["violations"], message["context"]) == ("accepted", [], context)


# -- what the official libraries send ------------------------------------------------------------


def test_analytics_go_batch_with_basic_auth_and_batch_level_message_id(http: httpx.Client) -> None:
    """GO: Basic auth (no writeKey in the body); `{"messageId", "sentAt", "batch", "context"}`
    with the library in the batch-level context; time.Time renders nanoseconds."""
    body = {
        "batch": [{"event": "Download", "messageId": "go-1", "properties": {"application": "Segment Desktop"},
                   "timestamp": "2009-11-10T23:00:00Z", "type": "track", "userId": "123456", "anonymousId": "a-123456"}],
        "context": {"library": {"name": "analytics-go", "version": "3.0.0"}},
        "messageId": "go-batch-1",
        "sentAt": "2009-11-10T23:00:00.1234567Z",
    }
    auth = "Basic " + base64.b64encode(f"{DOCS_KEY}:".encode()).decode()
    assert_success(post(http, "/v1/batch", body, Authorization=auth, **{"User-Agent": "analytics-go (version: 3.0.0)"}))
    [message] = stored(http)
    assert (message["status"], message["violations"]) == ("accepted", [])
    assert message["context"]["library"]["name"] == "analytics-go"
    # The item carries the batch's sentAt: corrected by its 123.4567 ms lead; rendered to the
    # millisecond (floored), the timestamp falls 124 ms before receivedAt.
    assert message["sentAt"] == body["sentAt"]
    assert parse_iso(message["receivedAt"]) - parse_iso(message["timestamp"]) == timedelta(milliseconds=124)


def test_analytics_node_batch_with_basic_auth_and_write_key_in_the_body(http: httpx.Client) -> None:
    """NODE: Basic base64(writeKey:), body `{batch, writeKey, sentAt}`, events with `_metadata`."""
    event = {
        "type": "track", "event": "Test", "userId": "u1", "properties": {}, "integrations": {},
        "context": {"library": {"name": "@segment/analytics-node", "version": "2.1.0"}},
        "timestamp": "2025-01-01T12:00:00.000Z", "messageId": "node-next-1735732800000-abc",
        "_metadata": {"nodeVersion": "20.0.0", "jsRuntime": "node"},
    }
    body = {"batch": [event], "writeKey": NODE_KEY, "sentAt": "2025-01-01T12:00:00.250Z"}
    assert_success(post(http, "/v1/batch", body, Authorization="Basic Zm9vOg==", **{"User-Agent": "analytics-node-next/latest"}))
    [message] = stored(http)
    assert (message["source"]["name"], message["status"], message["violations"]) == ("node", "accepted", [])
    assert message["_metadata"] == event["_metadata"]


def test_analytics_js_single_calls_and_batches_in_text_plain(http: httpx.Client) -> None:
    """AJS: one event to /v1/<first letter> with writeKey and sentAt in the body, or a batch to
    /v1/b (also where analytics-kotlin and -swift upload); Content-Type text/plain."""
    page = {
        "type": "page", "name": None, "category": None, "anonymousId": "anon-1", "userId": None,
        "properties": {"path": "/", "referrer": "", "search": "", "title": "Home", "url": "https://example.com/"},
        "context": {"library": {"name": "analytics.js", "version": "npm:next-1.70.0"}, "locale": "en-US",
                    "page": {"path": "/", "referrer": "", "search": "", "title": "Home", "url": "https://example.com/"},
                    "userAgent": "Mozilla/5.0"},
        "integrations": {}, "messageId": "ajs-next-1", "timestamp": "2025-01-01T12:00:00.000Z",
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
        "writeKey": DOCS_KEY, "sentAt": "2025-01-01T12:00:00.010Z",
    }
    text_plain = {"Content-Type": "text/plain"}
    assert_success(http.post("/v1/p", content=json.dumps(page).encode(), headers=text_plain))
    track = {"type": "track", "event": "Clicked", "anonymousId": "anon-1", "properties": {}, "messageId": "ajs-next-2",
             "timestamp": "2025-01-01T12:00:01.000Z"}
    batch = {"writeKey": DOCS_KEY, "batch": [track], "sentAt": "2025-01-01T12:00:01.000Z"}
    assert_success(http.post("/v1/b", content=json.dumps(batch).encode(), headers=text_plain))
    messages = stored(http)
    assert [(m["type"], m["status"], m["violations"]) for m in messages] == [("page", "accepted", []), ("track", "accepted", [])]
    # The page was sent 10 ms after it happened, the track as it happened.
    leads = [parse_iso(m["receivedAt"]) - parse_iso(m["timestamp"]) for m in messages]
    assert leads == [timedelta(milliseconds=10), timedelta(0)]
    # COMMON, context `ip`: "filled in by our servers when it receives a message for client side
    # events only" (this test's client is on the loopback address).
    assert [m["context"].get("ip") for m in messages] == ["127.0.0.1", "127.0.0.1"]


def test_a_server_side_call_gets_context_ip_only_when_it_asks_with_context_direct(http: httpx.Client) -> None:
    """COMMON: the libraries do not collect the ip; HTTP, "Collecting IP Address": `context.direct`
    true makes Segment collect the request's."""
    assert_success(post(http, "/v1/track", {"userId": "u1", "event": "E", "writeKey": DOCS_KEY}))
    assert_success(post(http, "/v1/track", {"userId": "u1", "event": "E", "writeKey": DOCS_KEY,
                                            "context": {"direct": True}}))
    assert [m.get("context") for m in stored(http)] == [None, {"direct": True, "ip": "127.0.0.1"}]


# -- the documented edge rules -------------------------------------------------------------------


def test_the_documented_error_rules(http: httpx.Client) -> None:
    """HTTP "Errors": 400 only for large payloads and JSON errors; no identifier and no event name
    are 200 and the event is not accepted (`no_user_anon_id`, "must have an `event` field")."""
    assert_success(post(http, "/v1/track", {"event": "E", "writeKey": DOCS_KEY}))
    assert_success(post(http, "/v1/track", {"userId": "u1", "writeKey": DOCS_KEY}))
    assert [(m["status"], m["discard_reason"]) for m in stored(http)] == [
        ("discarded", "no_user_anon_id"), ("discarded", "event_not_defined")]
    invalid = http.post("/v1/track", content=b'{"userId": "u1", "event": ', headers={"Content-Type": "application/json"})
    assert invalid.status_code == 400 and set(invalid.json()) == {"code", "message"}
    # "a maximum of 32KB per normal API request"
    too_large = post(http, "/v1/track", {"userId": "u1", "event": "E", "writeKey": DOCS_KEY, "p": "x" * 32 * 1024})
    assert too_large.status_code == 400 and too_large.json()["code"] == "payload_too_large"
    assert len(stored(http)) == 2
