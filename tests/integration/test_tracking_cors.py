"""CORS on the fake Segment's tracking API, so analytics.js in a page of another origin can call it.

analytics.js posts `Content-Type: text/plain` bodies to `/v1/<t|i|p|s|g|a>` and `/v1/b`
(reference/segment.md §1.1); an `Authorization`, `X-Retry-Count` or any header a user adds makes the
browser send a preflight `OPTIONS` first. Segment's custom-proxy guide has the proxy pass `OPTIONS`
on to api.segment.io (segment-docs `custom-proxy.md`), so the real API answers preflights itself.
Only `/v1/...` answers cross-origin: the control API, the dashboard and the fake Mailjet stay
without CORS (README "Security": a page must not read them).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator.common.clock import Clock
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.routes import create_app as create_mailjet_app
from emulator.segment.routes import create_app as create_segment_app

WRITE_KEY = "cors-write-key"
TOKEN = "cors-control-token"
ORIGIN = "http://localhost:5173"
PLACEHOLDER_URLS = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")
# What Chromium sends before analytics.js's POST with Basic auth and a retry count.
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
}
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
CROSS_ORIGIN_POST = {"Origin": ORIGIN, "Content-Type": "text/plain", **AUTH}


@pytest.fixture(scope="module")
def urls(serve: Any) -> dict[str, str]:
    config = BundleConfig(write_key=WRITE_KEY, control_token=TOKEN)
    return serve({
        "segment": create_segment_app(config, Clock(), PLACEHOLDER_URLS),
        "mailjet": create_mailjet_app(config, Clock(), PLACEHOLDER_URLS),
    })


@pytest.fixture(scope="module")
def http(urls: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=urls["segment"], timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def reset(http: httpx.Client) -> None:
    assert http.post("/_emulator/reset", headers={"X-Segjet-Token": TOKEN}).status_code == 200


def stored(http: httpx.Client) -> list[dict[str, Any]]:
    answer = http.get("/_emulator/events", headers={"X-Segjet-Token": TOKEN})
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def allowed_headers(answer: httpx.Response) -> set[str]:
    return {name.strip().lower() for name in answer.headers.get("access-control-allow-headers", "").split(",")}


def exposed_headers(answer: httpx.Response) -> set[str]:
    return {name.strip().lower() for name in answer.headers.get("access-control-expose-headers", "").split(",")}


def assert_origin_allowed(answer: httpx.Response) -> None:
    # The origin itself, never `*`: the answer allows credentials, and a browser refuses `*` with
    # them (a fetch with `credentials: "include"`, and no cookie for the fake, failed under starlette
    # 0.51-0.52, whose CORSMiddleware echoed the origin only to a request carrying a cookie).
    assert answer.headers.get("access-control-allow-origin") == ORIGIN, dict(answer.headers)
    assert answer.headers.get("access-control-allow-credentials") == "true", dict(answer.headers)
    # An echoed origin must vary by Origin, or a shared cache hands one page's answer to another.
    assert "origin" in answer.headers.get("vary", "").lower()


def assert_no_cors(answer: httpx.Response) -> None:
    leaked = {name for name in answer.headers if name.lower().startswith("access-control-")}
    assert not leaked, (answer.request.method, answer.request.url, leaked)


@pytest.mark.parametrize("endpoint", ["t", "i", "p", "s", "g", "a", "b", "track", "batch", "import"])
def test_preflight_allows_what_analytics_js_sends(http: httpx.Client, endpoint: str) -> None:
    answer = http.options(f"/v1/{endpoint}", headers=PREFLIGHT)
    assert 200 <= answer.status_code < 300, answer.text
    assert_origin_allowed(answer)
    assert "POST" in {method.strip() for method in answer.headers["access-control-allow-methods"].split(",")}
    assert {"authorization", "content-type", "x-retry-count"} <= allowed_headers(answer)
    assert int(answer.headers["access-control-max-age"]) > 0


def test_preflight_allows_a_header_the_page_adds(http: httpx.Client) -> None:
    # analytics.js lets a page add headers (deliveryStrategy.config.headers); one version sent `Trace`.
    answer = http.options("/v1/t", headers={**PREFLIGHT, "Access-Control-Request-Headers": "content-type,trace,x-team"})
    assert answer.status_code == 200
    assert {"trace", "x-team"} <= allowed_headers(answer)


def test_preflight_stores_nothing_and_is_not_faulted(http: httpx.Client) -> None:
    rule = http.post("/_emulator/faults", headers={"X-Segjet-Token": TOKEN}, json={"path": "/v1/t", "status": 503})
    assert rule.status_code == 201, rule.text
    # The page must get past the preflight to see the 503 it is testing against.
    assert http.options("/v1/t", headers=PREFLIGHT).status_code == 200
    failed = http.post("/v1/t", headers=CROSS_ORIGIN_POST, content=json.dumps({"userId": "u1", "event": "E"}))
    assert failed.status_code == 503
    assert_origin_allowed(failed)
    assert stored(http) == []


def test_text_plain_call_with_basic_auth_is_stored_and_readable(http: httpx.Client) -> None:
    body = {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}, "messageId": "cors-t-1"}
    answer = http.post("/v1/t", headers={**CROSS_ORIGIN_POST, "X-Retry-Count": "1"}, content=json.dumps(body))
    assert answer.status_code == 200
    assert answer.json() == {"success": True}
    assert_origin_allowed(answer)
    batch = {
        "writeKey": WRITE_KEY,
        "sentAt": "2024-01-01T00:00:00.000Z",
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}, "messageId": "cors-b-1"},
            {"type": "page", "anonymousId": "anon-1", "name": "Home", "messageId": "cors-b-2"},
        ],
    }
    answer = http.post("/v1/b", headers={"Origin": ORIGIN, "Content-Type": "text/plain"}, content=json.dumps(batch))
    assert answer.status_code == 200
    assert_origin_allowed(answer)
    events = {event["messageId"]: event for event in stored(http)}
    assert set(events) == {"cors-t-1", "cors-b-1", "cors-b-2"}
    # Accepted under the configured source: the write key came through (Basic auth, then the body).
    assert all(event["status"] == "accepted" and event["source"]["id"] for event in events.values()), events


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/t", "{not json", 400),
        ("POST", "/v1/t", json.dumps({"userId": "u1", "event": "E", "pad": "x" * 40_000}), 400),
        ("POST", "/v1/nope", "{}", 404),
        ("GET", "/v1/t", None, 405),
    ],
)
def test_errors_are_readable_cross_origin(
    http: httpx.Client, method: str, path: str, body: str | None, status: int
) -> None:
    answer = http.request(method, path, headers=CROSS_ORIGIN_POST, content=body)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"code", "message"}
    assert_origin_allowed(answer)


def test_a_rate_limit_exposes_the_headers_analytics_js_reads(http: httpx.Client) -> None:
    # analytics-next reads `x-ratelimit-reset` (batched dispatcher) and `Retry-After` of a 429: a
    # cross-origin page sees neither unless the answer exposes them.
    rule = {"path": "/v1/b", "status": 429, "retry_after": 7}
    assert http.post("/_emulator/faults", headers={"X-Segjet-Token": TOKEN}, json=rule).status_code == 201
    answer = http.post("/v1/b", headers=CROSS_ORIGIN_POST, content=json.dumps({"batch": []}))
    assert answer.status_code == 429
    assert_origin_allowed(answer)
    assert {"retry-after", "x-ratelimit-reset"} <= exposed_headers(answer)


def test_a_call_without_origin_is_answered_as_before(http: httpx.Client) -> None:
    answer = http.post("/v1/track", auth=(WRITE_KEY, ""), json={"userId": "u1", "event": "E"})
    assert answer.status_code == 200
    assert answer.json() == {"success": True}
    assert_no_cors(answer)


@pytest.mark.parametrize(
    "path",
    ["/_emulator/events", "/_emulator/reset", "/_emulator/requests", "/_emulator/health", "/_emulator/faults", "/",
     "/_emulator/openapi.json", "/v1", "/V1/t"],
)
def test_the_control_api_and_dashboard_stay_without_cors(http: httpx.Client, path: str) -> None:
    for headers in ({"Origin": ORIGIN}, {"Origin": ORIGIN, "X-Segjet-Token": TOKEN}):
        assert_no_cors(http.get(path, headers=headers))
    assert_no_cors(http.options(path, headers={**PREFLIGHT, "Access-Control-Request-Headers": "x-segjet-token"}))
    assert_no_cors(http.post(path, headers={"Origin": ORIGIN, "Content-Type": "text/plain"}, content="{}"))


def test_the_fake_mailjet_stays_without_cors(urls: dict[str, str]) -> None:
    with httpx.Client(base_url=urls["mailjet"], timeout=30) as mailjet:
        for path in ("/v3/REST/contact", "/v3.1/send", "/v1/t", "/_emulator/requests"):
            assert_no_cors(mailjet.options(path, headers=PREFLIGHT))
            assert_no_cors(mailjet.get(path, headers={"Origin": ORIGIN}))
