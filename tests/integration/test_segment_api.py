"""The fake Segment over real HTTP: the official analytics-python client, then raw httpx calls."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from emulator.common.clock import Clock, parse_iso
from emulator.config import BundleConfig, BundleUrls
from emulator.segment.routes import create_app

WRITE_KEY = "it-write-key"
MOBILE_KEY = "it-mobile-key"
# Nothing is delivered in this issue, so the other services only need addresses.
PLACEHOLDER_URLS = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def urls(serve: Any) -> dict[str, str]:
    config = BundleConfig(write_key=WRITE_KEY, sources=[{"name": "mobile", "write_key": MOBILE_KEY}])
    strict = BundleConfig(write_key=WRITE_KEY, strict=True)
    return serve({
        "segment": create_app(config, Clock(), PLACEHOLDER_URLS),
        "strict": create_app(strict, Clock(), PLACEHOLDER_URLS),
    })


@pytest.fixture(scope="module")
def http(urls: dict[str, str]) -> Any:
    with httpx.Client(base_url=urls["segment"], timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def strict_http(urls: dict[str, str]) -> Any:
    with httpx.Client(base_url=urls["strict"], timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def reset(http: httpx.Client, strict_http: httpx.Client) -> None:
    for client in (http, strict_http):
        assert client.post("/_emulator/reset").status_code == 200


def events(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/_emulator/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()["events"]


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def post(http: httpx.Client, path: str, payload: Any, **headers: str) -> httpx.Response:
    return http.post(path, content=json.dumps(payload).encode(), headers=headers)


def advance(http: httpx.Client, duration: str) -> None:
    assert http.post("/_emulator/clock", json={"advance": duration}).status_code == 200


# -- the official client -------------------------------------------------------------------------


@pytest.mark.parametrize("use_gzip", [False, True])
def test_analytics_python_calls_are_stored_with_segment_fields(
    http: httpx.Client, urls: dict[str, str], use_gzip: bool
) -> None:
    advance(http, "1d")  # the virtual clock runs a day ahead of the client's
    client = Client(WRITE_KEY, host=urls["segment"], sync_mode=True, gzip=use_gzip, max_retries=0)
    happened = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    client.identify("u1", {"email": "ann@example.com", "plan": "pro"}, anonymous_id="anon-1")
    client.track("u1", "Order Completed", {"revenue": 42.5}, timestamp=happened)
    client.page("u1", "Docs", "Pricing", {"url": "https://example.com/pricing"})
    client.screen("u1", "App", "Home")
    client.group("u1", "g1", {"name": "Initech"})
    client.alias("anon-2", "u1")

    stored = events(http)
    assert [e["type"] for e in stored] == ["identify", "track", "page", "screen", "group", "alias"]
    assert {(e["status"], e["discard_reason"]) for e in stored} == {("accepted", None)}
    assert {e["source"]["name"] for e in stored} == {"segjet"}
    assert all(e["violations"] == [] for e in stored)
    identify, track, page, screen, group, alias = stored
    assert identify["userId"] == "u1" and identify["anonymousId"] == "anon-1"
    assert identify["traits"] == {"email": "ann@example.com", "plan": "pro"}
    assert identify["context"]["library"]["name"] == "analytics-python"
    assert track["event"] == "Order Completed" and track["properties"] == {"revenue": 42.5}
    assert page["name"] == "Pricing" and page["category"] == "Docs"
    assert screen["name"] == "Home"
    assert group["groupId"] == "g1" and group["traits"] == {"name": "Initech"}
    assert alias["previousId"] == "anon-2" and alias["userId"] == "u1"

    # receivedAt is virtual time; the timestamp is corrected for the client's clock being a day behind.
    received = parse_iso(track["receivedAt"])
    clock_now = parse_iso(http.get("/_emulator/clock").json()["now"])
    assert timedelta(0) <= clock_now - received < timedelta(minutes=1)
    assert parse_iso(track["originalTimestamp"]) == happened
    skew = parse_iso(track["timestamp"]) - happened
    assert timedelta(hours=23, minutes=59) < skew < timedelta(days=1, minutes=1)

    profile = http.get("/_emulator/profiles/u1").json()
    assert profile["traits"] == {"email": "ann@example.com", "plan": "pro"}
    assert set(profile["anonymousIds"]) == {"anon-1", "anon-2"}


def test_analytics_python_sees_400s_as_api_errors(urls: dict[str, str]) -> None:
    client = Client("", host=urls["segment"], sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as caught:
        client.track("u1", "Order Completed")
    assert (caught.value.status, caught.value.code) == (400, "missing_write_key")


# -- authentication and sources ---------------------------------------------------------------


@pytest.mark.parametrize("credentials", [f"{WRITE_KEY}:", WRITE_KEY])
def test_basic_auth_with_and_without_colon(http: httpx.Client, credentials: str) -> None:
    response = post(http, "/v1/track", {"userId": "u1", "event": "E"}, **basic(credentials))
    assert response.status_code == 200 and response.json() == {"success": True}
    assert events(http)[0]["status"] == "accepted"


def test_write_key_in_body_and_text_plain_short_path(http: httpx.Client) -> None:
    response = http.post(
        "/v1/t",
        content=json.dumps({"writeKey": MOBILE_KEY, "anonymousId": "a1", "event": "Clicked"}),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    [stored] = events(http, source="mobile")
    assert stored["type"] == "track" and stored["source"]["name"] == "mobile"


def test_missing_write_key_is_400(http: httpx.Client) -> None:
    response = post(http, "/v1/identify", {"userId": "u1"})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_write_key" and response.json()["message"]


def test_unknown_write_key_is_200_and_recorded(http: httpx.Client) -> None:
    response = post(http, "/v1/identify", {"userId": "u1", "traits": {"a": 1}}, **basic("who-knows:"))
    assert response.status_code == 200 and response.json() == {"success": True}
    [stored] = events(http)
    assert (stored["status"], stored["discard_reason"]) == ("discarded", "unknown_write_key")
    assert stored["source"] == {"id": None, "name": None, "writeKey": "who-knows"}
    assert http.get("/_emulator/profiles/u1").status_code == 404


def test_sources_lists_the_default_and_configured_ones(http: httpx.Client) -> None:
    sources = http.get("/_emulator/sources").json()["sources"]
    assert [(s["name"], s["writeKey"]) for s in sources] == [("segjet", WRITE_KEY), ("mobile", MOBILE_KEY)]
    assert all(s["id"].startswith("src_") for s in sources)


# -- bodies: gzip, size limits, bad input ---------------------------------------------------------


def test_gzip_body_is_accepted_and_gzip_header_over_plain_body_is_400(http: httpx.Client) -> None:
    payload = json.dumps({"writeKey": WRITE_KEY, "batch": [{"type": "track", "userId": "u1", "event": "E"}]}).encode()
    response = http.post("/v1/batch", content=gzip.compress(payload), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert events(http)[0]["event"] == "E"
    response = http.post("/v1/batch", content=payload, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_gzip"


def test_a_33kb_single_call_is_400(http: httpx.Client) -> None:
    payload = {"writeKey": WRITE_KEY, "userId": "u1", "event": "E", "properties": {"pad": "x" * 33 * 1024}}
    response = post(http, "/v1/track", payload)
    assert response.status_code == 400 and response.json()["code"] == "payload_too_large"
    assert events(http) == []


def test_a_501kb_batch_is_400(http: httpx.Client) -> None:
    item = {"type": "track", "userId": "u1", "event": "E", "properties": {"pad": "x" * 1000}}
    items = [item] * 520
    payload = {"writeKey": WRITE_KEY, "batch": items}
    assert len(json.dumps(payload)) > 501 * 1024
    response = post(http, "/v1/batch", payload)
    assert response.status_code == 400 and response.json()["code"] == "payload_too_large"


def test_a_batch_with_an_item_over_32kb_is_400_and_stores_nothing(http: httpx.Client) -> None:
    # Docs ("Max request size"): 32 KB per event in a batch, "400 Bad Request if these limits are exceeded".
    big = {"type": "track", "userId": "u1", "event": "Big", "properties": {"pad": "x" * 33 * 1024}}
    small = {"type": "track", "userId": "u1", "event": "Small"}
    response = post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": [small, big]})
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["message"].startswith("batch item 1 is ")
    assert events(http) == []


def test_a_2501_event_batch_is_200_and_recorded_as_dropped(http: httpx.Client) -> None:
    items = [{"type": "track", "userId": "u1", "event": "E"}] * 2501
    response = post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": items})
    assert response.status_code == 200 and response.json() == {"success": True}
    stored = events(http, limit=10_000)
    assert len(stored) == 2501
    assert {(e["status"], e["discard_reason"]) for e in stored} == {("discarded", "batch_too_many_events")}


BAD_BODIES = [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe\x00garbage", "invalid_json"),
    (b"[1, 2, 3]", "invalid_payload"),
    (json.dumps({"writeKey": WRITE_KEY, "batch": "nope"}).encode(), "invalid_payload"),
    (json.dumps({"writeKey": WRITE_KEY, "batch": {"type": "track"}}).encode(), "invalid_payload"),
    (b"x" * (3 * 1024 * 1024), "payload_too_large"),
]


@pytest.mark.parametrize("raw,code", BAD_BODIES, ids=["syntax", "not-utf8", "not-object", "batch-str", "batch-obj", "3MB"])
def test_bad_bodies_get_400_in_segment_shape(http: httpx.Client, raw: bytes, code: str) -> None:
    response = http.post("/v1/batch", content=raw, headers=basic(f"{WRITE_KEY}:"))
    assert response.status_code == 400
    assert response.json()["code"] == code and isinstance(response.json()["message"], str)


def test_a_body_too_large_to_read_names_the_limit_of_its_endpoint(http: httpx.Client) -> None:
    raw = b"x" * (3 * 1024 * 1024)
    single = http.post("/v1/track", content=raw, headers=basic(f"{WRITE_KEY}:"))
    assert single.status_code == 400 and single.json()["code"] == "payload_too_large"
    assert single.json()["message"].endswith(f"the limit is {32 * 1024} bytes")
    whole = http.post("/v1/batch", content=raw, headers=basic(f"{WRITE_KEY}:"))
    assert whole.json()["message"].endswith(f"the limit is {500 * 1024} bytes")


BAD_ITEMS = [
    ({"type": "identify", "userId": "u1", "traits": "x"}, "traits_not_object"),
    ({"type": "track", "userId": "u1", "event": "E", "properties": [1]}, "properties_not_object"),
    ({"type": "track", "event": "E", "userId": None, "anonymousId": ""}, "no_user_anon_id"),
    ({"type": "track", "userId": "u1"}, "event_not_defined"),
    ({"type": "track", "userId": "u1", "event": {"name": "E"}}, "event_not_string"),
    ({"type": "alias", "userId": "u1"}, "id_required"),
    ({"type": "launch", "userId": "u1"}, "invalid_type"),
    (17, "bad_request"),
]


@pytest.mark.parametrize("item,reason", BAD_ITEMS, ids=[reason for _, reason in BAD_ITEMS])
def test_bad_items_get_200_and_are_recorded_discarded(http: httpx.Client, item: Any, reason: str) -> None:
    good = {"type": "identify", "userId": "u2"}
    response = post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": [item, good]})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert [(e["status"], e["discard_reason"]) for e in events(http)] == [("discarded", reason), ("accepted", None)]


def test_bad_input_never_gets_a_500_and_the_server_keeps_serving(http: httpx.Client) -> None:
    for raw, _ in BAD_BODIES:
        http.post("/v1/track", content=raw)
        http.post("/v1/batch", content=raw, headers={"Content-Encoding": "gzip"})
    for item, _ in BAD_ITEMS:
        post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": [item]})
        post(http, "/v1/track", item if isinstance(item, dict) else [item], **basic(WRITE_KEY))
    post(http, "/v1/page", {"writeKey": WRITE_KEY, "userId": "u1", "name": 5, "category": [], "timestamp": 9})
    post(http, "/v1/track", {"writeKey": WRITE_KEY, "userId": "u1", "event": "E", "timestamp": "0001-01-01T00:00:00Z",
                             "sentAt": "9999-12-31T23:59:59Z", "messageId": 12})
    post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": [], "context": [], "integrations": 3})
    statuses = {entry["status"] for entry in http.get("/_emulator/requests", params={"limit": 1000}).json()["requests"]}
    assert statuses <= {200, 400}
    assert http.get("/_emulator/health").json()["status"] == "ok"


def test_deeply_nested_json_is_answered_and_stays_readable(http: httpx.Client) -> None:
    def nested(depth: int) -> str:
        return '{"writeKey": "%s", "userId": "u1", "event": "E", "properties": {"d": %s1%s}}' % (
            WRITE_KEY, '{"a": ' * depth, "}" * depth)

    assert http.post("/v1/track", content=nested(250)).status_code == 200
    for depth in (300, 1000, 4000):
        too_deep = http.post("/v1/track", content=nested(depth))
        assert too_deep.status_code == 400 and too_deep.json()["code"] == "invalid_json"
        assert "nested more than 254 levels" in too_deep.json()["message"]
    assert [e["status"] for e in events(http)] == ["accepted"]
    assert http.get("/_emulator/profiles/u1").status_code == 200
    assert [r["status"] for r in http.get("/_emulator/requests").json()["requests"]] == [200, 400, 400, 400]


def test_a_lone_surrogate_is_kept_as_the_replacement_character_and_stays_readable(http: httpx.Client) -> None:
    raw = '{"writeKey": "%s", "userId": "u1", "traits": {"name": "Ada \\ud83d"}}' % WRITE_KEY
    assert http.post("/v1/identify", content=raw).status_code == 200
    [stored] = events(http)
    assert stored["traits"] == {"name": "Ada \ufffd"}
    assert http.get("/_emulator/profiles/u1").json()["traits"] == {"name": "Ada \ufffd"}
    assert http.get("/_emulator/snapshot").status_code == 200


def test_unknown_paths_and_methods_answer_in_segment_shape(http: httpx.Client) -> None:
    missing = post(http, "/v1/launch", {"writeKey": WRITE_KEY})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong_method = http.get("/v1/track")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"


def test_a_path_with_a_trailing_slash_is_not_found_not_redirected(http: httpx.Client) -> None:
    # Starlette's default answered an empty 307 to the path without the slash: no error in Segment's
    # shape, and a client that does not follow redirects saw its call neither stored nor refused.
    for path in ("/v1/track/", "/v1/launch/"):
        answer = post(http, path, {"writeKey": WRITE_KEY, "userId": "u", "event": "Slashed"})
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert http.get("/_emulator/events/").status_code == 404
    assert events(http) == []


def test_unknown_control_paths_and_methods_answer_in_the_control_apis_shape(http: httpx.Client) -> None:
    missing = http.get("/_emulator/launch")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong_method = http.delete("/_emulator/events")
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"error": "Method Not Allowed"})
    assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_an_empty_control_body_is_read_as_an_empty_object(http: httpx.Client) -> None:
    before = http.get("/_emulator/destinations/mailjet").json()
    put = http.put("/_emulator/destinations/mailjet", content=b"")
    assert (put.status_code, put.json()) == (200, before)
    clock = http.post("/_emulator/clock", content=b" \n")
    assert clock.status_code == 400 and clock.json()["error"].startswith('give exactly one of "advance"')


def test_a_bug_is_answered_500_in_the_shape_of_the_api_called_not_an_html_page(serve: Any) -> None:
    app = create_app(BundleConfig(write_key=WRITE_KEY), Clock(), PLACEHOLDER_URLS)

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("planted")

    app.state.backend.accept = bug
    app.state.backend.events = bug
    url = serve({"buggy": app})["buggy"]
    # One client: uvicorn closes a connection whose app raised (Starlette re-raises after the
    # handler's answer), so the 500 says `Connection: close`, and the next request takes a new
    # connection instead of meeting the close (a reset, R35).
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            tracking = client.post("/v1/track", json={"writeKey": WRITE_KEY, "userId": "u", "event": "E"})
            assert (tracking.status_code, tracking.json(), tracking.headers["connection"]) == (
                500, {"code": "internal_error", "message": "internal error: RuntimeError('planted')"}, "close")
            control = client.get("/_emulator/events")
            assert (control.status_code, control.json(), control.headers["connection"]) == (
                500, {"error": "internal error: RuntimeError('planted')"}, "close")


# -- dedupe and the virtual clock ---------------------------------------------------------------


def test_duplicate_message_id_is_dropped_within_24h_and_accepted_after(http: httpx.Client) -> None:
    call = {"writeKey": WRITE_KEY, "userId": "u1", "event": "E", "messageId": "dup-1"}
    assert post(http, "/v1/track", call).status_code == 200
    assert post(http, "/v1/track", call).status_code == 200
    advance(http, "25h")
    assert post(http, "/v1/track", call).status_code == 200
    first, duplicate, later = events(http, messageId="dup-1")
    assert [e["discard_reason"] for e in (first, duplicate, later)] == [None, "duplicate_message_id", None]
    gap = parse_iso(later["receivedAt"]) - parse_iso(first["receivedAt"])
    assert timedelta(hours=25) <= gap < timedelta(hours=25, minutes=1)


def test_the_events_feed_filters_by_message_id(http: httpx.Client) -> None:
    for message_id in ("feed-a", "feed-b"):
        assert post(http, "/v1/track", {"writeKey": WRITE_KEY, "userId": "u1", "event": "E", "messageId": message_id}).status_code == 200
    assert [e["messageId"] for e in events(http, messageId="feed-a")] == ["feed-a"]
    assert events(http, messageId="feed-c") == []


# -- --strict and violations ---------------------------------------------------------------------


def test_violations_are_recorded_without_strict(http: httpx.Client) -> None:
    payload = {"writeKey": WRITE_KEY, "userId": "u1", "event": "Order Completed", "properties": {"revenue": "12"}}
    assert post(http, "/v1/track", payload).status_code == 200
    [stored] = events(http)
    assert stored["status"] == "accepted"
    assert stored["violations"] == stored["context"]["protocols"]["violations"] == [
        {"type": "Invalid Type", "field": "properties.revenue",
         "description": "Invalid type. Expected: number, null, given: string"}
    ]


def test_strict_rejects_violating_calls_and_drops_violating_batch_items(strict_http: httpx.Client) -> None:
    bad = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": "12"}}
    response = post(strict_http, "/v1/track", {"writeKey": WRITE_KEY, **bad})
    assert response.status_code == 400 and response.json()["code"] == "schema_violation"
    assert "Expected: number" in response.json()["message"]
    good = {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 12}}
    response = post(strict_http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": [{"type": "track", **bad}, good]})
    assert response.status_code == 200
    assert [e["discard_reason"] for e in events(strict_http)] == ["schema_violation", "schema_violation", None]


# -- control API: events, profiles, journal --------------------------------------------------------


def test_events_filters_and_limits(http: httpx.Client) -> None:
    items = [{"type": "track", "userId": f"u{i % 2}", "event": f"E{i % 3}"} for i in range(9)]
    items.append({"type": "identify", "userId": "u0"})
    assert post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": items}).status_code == 200
    assert len(events(http)) == 10
    assert [e["type"] for e in events(http, limit=1)] == ["identify"]
    assert [e["event"] for e in events(http, type="track", userId="u0", event="E0")] == ["E0", "E0"]
    assert events(http, status="discarded") == []
    assert len(events(http, source="segjet", status="accepted")) == 10
    for params in ({"limit": "many"}, {"limit": 10_001}, {"status": "lost"}):
        response = http.get("/_emulator/events", params=params)
        assert response.status_code == 400 and "error" in response.json()


def test_the_events_feed_says_how_many_messages_it_dropped(serve: Any) -> None:
    small = BundleConfig(write_key=WRITE_KEY, events_capacity=2)
    url = serve({"small": create_app(small, Clock(), PLACEHOLDER_URLS)})["small"]
    with httpx.Client(base_url=url, timeout=30) as client:
        batch = [{"type": "track", "userId": "u", "event": f"E{n}"} for n in range(5)]
        assert post(client, "/v1/batch", {"writeKey": WRITE_KEY, "batch": batch}).status_code == 200
        feed = client.get("/_emulator/events").json()
        assert [event["event"] for event in feed["events"]] == ["E3", "E4"] and feed["dropped"] == 3


def test_profiles_merge_traits_and_keep_history(http: httpx.Client) -> None:
    batch = [
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "ann@example.com"}},
        {"type": "track", "anonymousId": "a1", "event": "Viewed"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"plan": "free"}},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 10}},
    ]
    assert post(http, "/v1/batch", {"writeKey": WRITE_KEY, "batch": batch}).status_code == 200
    profile = http.get("/_emulator/profiles/u1").json()
    assert profile["userId"] == "u1" and profile["anonymousIds"] == ["a1"]
    assert profile["traits"] == {"email": "ann@example.com", "plan": "pro"}
    tracks = [e for e in profile["events"] if e["type"] == "track"]
    assert [(e["event"], e["properties"]) for e in tracks] == [("Viewed", {}), ("Order Completed", {"revenue": 10})]
    assert all(e["messageId"] and e["timestamp"] for e in profile["events"])
    assert http.get("/_emulator/profiles/a1").json()["userId"] == "u1"
    missing = http.get("/_emulator/profiles/nobody")
    assert missing.status_code == 404 and "error" in missing.json()


def test_journal_shows_tracking_calls(http: httpx.Client) -> None:
    post(http, "/v1/identify", {"writeKey": WRITE_KEY, "userId": "u1"})
    [entry] = http.get("/_emulator/requests", params={"path": "/v1/"}).json()["requests"]
    assert entry["path"] == "/v1/identify" and entry["status"] == 200
    assert entry["body"]["userId"] == "u1" and entry["response"] == {"success": True}


def test_journal_keeps_only_the_size_of_a_body_over_64_kb(http: httpx.Client) -> None:
    batch = [{"type": "track", "userId": f"u{n}", "event": "Viewed", "properties": {"text": "x" * 300}} for n in range(300)]
    raw = json.dumps({"writeKey": WRITE_KEY, "batch": batch}).encode()
    assert 64 * 1024 < len(raw) < 500 * 1024
    assert http.post("/v1/batch", content=raw).status_code == 200
    [entry] = http.get("/_emulator/requests", params={"path": "/v1/batch"}).json()["requests"]
    assert entry["body"] == {"truncated": True, "bytes": len(raw)} and entry["response"] == {"success": True}


# -- found by the fuzzers (tests/fuzz) -----------------------------------------------------------


def test_non_ascii_authorization_is_no_write_key_not_a_500(http: httpx.Client) -> None:
    response = http.post("/v1/identify", content=b'{"userId": "u1"}', headers={"Authorization": "Basic \xe9t\xe9".encode("latin-1")})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_write_key"


@pytest.mark.parametrize("move", [{"advance": "99999999999999999999w"}, {"advance": "400000w"}, {"set": "9999-12-31T23:59:59Z"},
                                  {"advance": "999999999d"}])  # the largest timedelta: now + it overflows datetime
def test_clock_refuses_to_leave_datetime_range(http: httpx.Client, move: dict[str, str]) -> None:
    response = http.post("/_emulator/clock", json=move)
    assert response.status_code == 400 and "error" in response.json()
    assert http.get("/_emulator/health").json()["status"] == "ok"


def test_control_body_nested_too_deeply_is_a_400(http: httpx.Client) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path in (("POST", "/_emulator/clock"), ("POST", "/_emulator/validate/segment.identify")):
        response = http.request(method, path, content=deep)
        assert response.status_code == 400 and "error" in response.json()


def test_number_out_of_float_range_is_invalid_json(http: httpx.Client) -> None:
    # Found by tests/fuzz: 1e999 was stored as inf, and GET /_emulator/events then answered 500.
    response = http.post("/v1/identify", content=b'{"userId": "u1", "traits": {"n": 1e999}}', headers=basic(f"{WRITE_KEY}:"))
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"
    assert http.get("/_emulator/events").status_code == 200


def test_the_published_description_names_every_control_route_of_the_fake_segment() -> None:
    # Its docstring said only the dashboard pages and the event stream were left out, yet adding
    # a source and the snapshot were missing.
    from starlette.routing import Route

    from emulator.segment.openapi import openapi_document

    app = create_app(BundleConfig(write_key=WRITE_KEY), Clock(), PLACEHOLDER_URLS)
    paths = openapi_document()["paths"]
    missing = [
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/_emulator/")
        # Not described (openapi.py): the stream, the dashboard's own routes, the shared fault rules.
        and not route.path.startswith(("/_emulator/events/stream", "/_emulator/dashboard/trace/export", "/_emulator/faults"))
        for method in sorted((route.methods or set()) - {"HEAD"})
        if method.lower() not in paths.get(route.path.replace(":path}", "}"), {})
    ]
    assert missing == []


def test_the_published_description_says_which_routes_take_a_workspace(http: httpx.Client) -> None:
    # Every control route that acts on the workspace named by `?writeKey=` or `X-Segjet-Write-Key`
    # (and answers 404 for a key no source has) was described without either parameter or the 404:
    # a client built from the description could only ever reach the default workspace.
    from emulator.segment.openapi import openapi_document

    scoped, undocumented = [], []
    for path, operations in openapi_document()["paths"].items():
        if not path.startswith("/_emulator/"):
            continue
        concrete = path.replace("{user_id}", "u1").replace("{key}", "k").replace("{contract}", "segment.identify")
        for method, operation in operations.items():
            # An empty body: whatever does not check the key first refuses it, and nothing changes.
            answer = http.request(method.upper(), concrete, params={"writeKey": "no-such-key"}, json={})
            if answer.status_code != 404 or "no source has write key" not in answer.text:
                continue
            scoped.append((method, path))
            named = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
            if not {("query", "writekey"), ("header", "x-segjet-write-key")} <= named or "404" not in operation["responses"]:
                undocumented.append((method, path))
    assert ("get", "/_emulator/events") in scoped and ("post", "/_emulator/reset") in scoped
    assert undocumented == []

