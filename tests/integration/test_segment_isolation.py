"""Workspaces by write key on one fake Segment: messages, profiles, Engage, destination settings,
deliveries and resets stay separate, as parallel CI jobs sharing one server need."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.common.clock import Clock
from emulator.config import BundleConfig, BundleUrls
from emulator.segment.routes import create_app

DEFAULT_KEY = "iso-default"
WAIT_SECONDS = 15


class Destination:
    """Records each delivery with the authentication key it came with (Basic auth username)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self.app = Starlette(routes=[Route("/", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        auth_key = base64.b64decode(request.headers["authorization"].split()[1]).decode().rstrip(":")
        self.received.append((auth_key, (await request.json())["userId"]))
        return JSONResponse({"message": "ok"})


@pytest.fixture(scope="module")
def stack(serve: Any) -> tuple[str, Destination]:
    destination = Destination()
    destination_url = serve({"destination": destination.app})["destination"]
    config = BundleConfig(write_key=DEFAULT_KEY, auth_key="auth-default", engage_sync_interval="manual")
    urls = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", destination_url)
    return serve({"segment": create_app(config, Clock(), urls)})["segment"], destination


@pytest.fixture
def http(stack: tuple[str, Destination]) -> Iterator[httpx.Client]:
    url, destination = stack
    destination.received.clear()
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def new_workspace(http: httpx.Client, key: str) -> str:
    answer = http.post("/_emulator/sources", json={"name": f"job {key}", "write_key": key})
    assert answer.status_code == 201, answer.text
    return answer.json()["workspace"]


def identify(url: str, key: str, user_id: str, traits: dict[str, Any]) -> str:
    ok, message = Client(key, host=url, sync_mode=True).identify(user_id, traits)
    assert ok
    return message["messageId"]


def get(http: httpx.Client, path: str, key: str | None = None, **params: Any) -> Any:
    answer = http.get(path, params={**params, **({"writeKey": key} if key else {})})
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_delivered(http: httpx.Client, key: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        records = get(http, "/_emulator/deliveries", key, state="delivered")["deliveries"]
        if len(records) >= count:
            return records
        assert time.monotonic() < deadline, f"{key}: {records}"
        time.sleep(0.01)


def test_two_write_keys_keep_messages_profiles_engage_settings_and_deliveries_apart(
    http: httpx.Client, stack: tuple[str, Destination]
) -> None:
    url, destination = stack
    a, b = "iso-a", "iso-b"
    workspace_a, workspace_b = new_workspace(http, a), new_workspace(http, b)
    assert workspace_a != workspace_b
    http.put("/_emulator/destinations/mailjet", params={"writeKey": b}, json={"settings": {"apiKey": "auth-b"}})

    identify(url, a, "same-user", {"email": "a@example.com", "plan": "pro"})
    identify(url, b, "same-user", {"email": "b@example.com"})

    events_a = get(http, "/_emulator/events", a)["events"]
    assert [event["traits"]["email"] for event in events_a] == ["a@example.com"]
    assert get(http, "/_emulator/profiles/same-user", b)["traits"] == {"email": "b@example.com"}
    assert get(http, "/_emulator/events")["events"] == []  # the default workspace saw nothing

    # Header form of the scope, and Engage per workspace.
    answer = http.post("/_emulator/engage/audiences", headers={"X-Segjet-Write-Key": a},
                       json={"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    assert answer.status_code == 201
    assert get(http, "/_emulator/engage/audiences", b)["audiences"] == []
    synced = http.post("/_emulator/engage/sync", params={"writeKey": a}).json()["sent"]
    assert [message["userId"] for message in synced] == ["same-user"]
    space_a = synced[0]["context"]["personas"]["space_id"]
    engage_events = get(http, "/_emulator/events", a, source="Engage")["events"]
    assert [event["context"]["personas"]["space_id"] for event in engage_events] == [space_a]
    assert get(http, "/_emulator/events", b, source="Engage")["events"] == []

    delivered_a = wait_delivered(http, a, 2)
    delivered_b = wait_delivered(http, b, 1)
    assert {record["messageId"] for record in delivered_a}.isdisjoint(record["messageId"] for record in delivered_b)
    assert sorted(destination.received) == [("auth-b", "same-user"), ("auth-default", "same-user"), ("auth-default", "same-user")]
    assert get(http, "/_emulator/destinations/mailjet", a)["settings"]["apiKey"] == "auth-default"


def test_a_reset_with_a_write_key_clears_that_workspace_only(http: httpx.Client, stack: tuple[str, Destination]) -> None:
    url, _ = stack
    c, d = "iso-c", "iso-d"
    new_workspace(http, c)
    new_workspace(http, d)
    identify(url, c, "u1", {"email": "c@example.com"})
    identify(url, d, "u1", {"email": "d@example.com"})
    identify(url, DEFAULT_KEY, "u1", {"email": "default@example.com"})
    wait_delivered(http, d, 1)

    answer = http.post("/_emulator/reset", params={"writeKey": c})
    assert answer.status_code == 200 and answer.json()["workspace"] == get(http, "/_emulator/sources", c)["workspace"]
    assert get(http, "/_emulator/events", c)["events"] == []
    assert get(http, "/_emulator/deliveries", c)["deliveries"] == []
    assert len(get(http, "/_emulator/events", d)["events"]) == 1
    assert len(get(http, "/_emulator/events")["events"]) == 1
    # The source stays: the job keeps sending with its key.
    identify(url, c, "u2", {"email": "c2@example.com"})
    assert [event["userId"] for event in get(http, "/_emulator/events", c)["events"]] == ["u2"]
    # The journal and the bundle's clock are shared by every job: a scoped reset leaves them alone.
    moved = http.post("/_emulator/clock", json={"advance": "1h"}).json()["now"]
    journaled = len(get(http, "/_emulator/requests", limit=1000)["requests"])
    assert http.post("/_emulator/reset", params={"writeKey": c}).status_code == 200
    assert get(http, "/_emulator/clock")["now"] >= moved
    assert len(get(http, "/_emulator/requests", limit=1000)["requests"]) >= journaled

    # A reset without a key is the whole server's: added workspaces go, the default one is emptied.
    assert http.post("/_emulator/reset").status_code == 200
    assert get(http, "/_emulator/events")["events"] == []
    assert http.get("/_emulator/events", params={"writeKey": d}).status_code == 404


def test_sources_join_a_workspace_and_write_keys_are_checked(http: httpx.Client, stack: tuple[str, Destination]) -> None:
    url, _ = stack
    workspace = new_workspace(http, "iso-e")
    joined = http.post("/_emulator/sources", json={"name": "mobile", "write_key": "iso-e-mobile", "workspace": workspace})
    assert joined.status_code == 201 and joined.json()["workspace"] == workspace
    identify(url, "iso-e-mobile", "u1", {"email": "e@example.com"})
    assert [event["source"]["name"] for event in get(http, "/_emulator/events", "iso-e")["events"]] == ["mobile"]
    listed = get(http, "/_emulator/sources", "iso-e-mobile")
    assert listed["workspace"] == workspace
    assert [source["writeKey"] for source in listed["sources"]] == ["iso-e", "iso-e-mobile"]

    assert http.post("/_emulator/sources", json={"name": "x", "write_key": "iso-e"}).status_code == 409
    assert http.post("/_emulator/sources", json={"name": "x", "write_key": DEFAULT_KEY}).status_code == 409
    assert http.post("/_emulator/sources", json={"name": "x", "write_key": "iso-f", "workspace": "ws_nope"}).status_code == 404
    assert http.post("/_emulator/sources", json={"name": "", "write_key": "iso-g"}).status_code == 400
    for path in ("/_emulator/events", "/_emulator/deliveries", "/_emulator/engage/audiences", "/_emulator/sources"):
        answer = http.get(path, params={"writeKey": "iso-unknown"})
        assert answer.status_code == 404 and "iso-unknown" in answer.json()["error"]
    assert http.post("/_emulator/reset", params={"writeKey": "iso-unknown"}).status_code == 404
    # An unknown write key on the tracking API is still a 200, recorded in the default workspace.
    identify(url, "iso-unknown", "u9", {"email": "x@example.com"})
    [unknown] = get(http, "/_emulator/events", status="discarded", userId="u9")["events"]
    assert unknown["discard_reason"] == "unknown_write_key"


def test_a_write_key_basic_auth_would_cut_is_refused(http: httpx.Client, stack: tuple[str, Destination]) -> None:
    # Basic auth ends the username at the first colon: analytics-python's calls with "iso:h" came as
    # key "iso", were answered 200 and stored discarded (unknown_write_key) in the default workspace.
    answer = http.post("/_emulator/sources", json={"name": "colon", "write_key": "iso:h"})
    assert answer.status_code == 400 and ":" in answer.json()["error"]
    assert http.get("/_emulator/sources", params={"writeKey": "iso:h"}).status_code == 404
