"""Fuzz the fake Segment over real HTTP, on a whole stack (deliveries run behind it).

schemathesis drives the OpenAPI description the server publishes; hypothesis adds the malformed
input a description cannot express. Nothing may answer 5xx, errors keep Segment's shape, and the
server still answers its health check afterwards.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emulator.common.control import MAX_LIST_LIMIT
from emulator.segment.models import ENDPOINTS
from emulator.segment.openapi import openapi_document

from .malformed import FUZZ_SETTINGS, authorizations, gzip_bodies, header_values, json_texts, raw_bodies, url_texts

# The short paths and /v1/import take the same bodies as the long ones; the coverage phase
# (boundary values of every field) runs on the long ones only, to keep the run short.
CONFIG = SchemathesisConfig.from_str(
    """
seed = 1
[[operations]]
include-path-regex = "^/v1/(i|t|p|s|g|a|b|import)$"
phases.coverage.enabled = false
"""
)
# Not the fault rules: a rule the fuzzer adds would fail the calls of every test after it.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG).exclude(path_regex="^/_emulator/faults")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def client(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["segment_url"], timeout=30) as http:
        yield http
    # Whatever the fuzzers sent, the server is still serving, and everything it accepted can be shown.
    with httpx.Client(base_url=stack["segment_url"], timeout=30) as http:
        assert http.get("/_emulator/health").json()["status"] == "ok"
        for path in (f"/_emulator/events?limit={MAX_LIST_LIMIT}", f"/_emulator/deliveries?limit={MAX_LIST_LIMIT}", "/_emulator/snapshot"):
            assert http.get(path).status_code == 200, path
        # Only strings: a discarded message keeps the userId it was sent with (a list, an object).
        stored = http.get(f"/_emulator/events?limit={MAX_LIST_LIMIT}").json()["events"]
        user_ids = {event.get("userId") for event in stored if isinstance(event.get("userId"), str)}
        for user_id in sorted(user_id for user_id in user_ids if user_id)[:200]:
            profile = http.get(f"/_emulator/profiles/{quote(user_id, safe='')}")
            assert profile.status_code in (200, 404), user_id


def write_key_auth(stack: dict[str, Any]) -> str:
    return "Basic " + base64.b64encode(f"{stack['write_key']}:".encode()).decode()


def test_published_description_is_the_one_fuzzed(client: httpx.Client) -> None:
    assert client.get("/_emulator/openapi.json").json() == openapi_document()


@schema.parametrize()
@hypothesis.settings(max_examples=20, suppress_health_check=list(hypothesis.HealthCheck), **FUZZ_SETTINGS)
def test_openapi(case, stack: dict[str, Any]) -> None:
    case.call_and_validate(base_url=stack["segment_url"], headers={"Authorization": write_key_auth(stack)}, checks=CHECKS)


def assert_segment_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code == 200:
        assert body == {"success": True}
    else:
        assert response.status_code == 400 and set(body) == {"code", "message"}, (response.status_code, body)


endpoints = st.sampled_from(sorted(ENDPOINTS))


@given(endpoint=endpoints, body=raw_bodies)
@hypothesis.settings(max_examples=150, **FUZZ_SETTINGS)
def test_tracking_bodies(client: httpx.Client, stack: dict[str, Any], endpoint: str, body: bytes) -> None:
    response = client.post(f"/v1/{endpoint}", content=body, headers={"Authorization": write_key_auth(stack)})
    assert_segment_answer(response)


@given(endpoint=endpoints, body=gzip_bodies, encoding=st.sampled_from(["gzip", "x-gzip", "GZIP", "deflate", "br", "gzip, gzip"]))
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_tracking_encodings(client: httpx.Client, stack: dict[str, Any], endpoint: str, body: bytes, encoding: str) -> None:
    headers = {"Authorization": write_key_auth(stack), "Content-Encoding": encoding}
    assert_segment_answer(client.post(f"/v1/{endpoint}", content=body, headers=headers))


@given(endpoint=endpoints, authorization=authorizations, content_type=header_values)
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_tracking_headers(client: httpx.Client, endpoint: str, authorization: str, content_type: str) -> None:
    body = b'{"userId": "fuzz", "event": "Fuzzed", "traits": {"email": "fuzz@example.com"}}'
    response = client.post(
        f"/v1/{endpoint}", content=body, headers={"Authorization": authorization, "Content-Type": content_type}
    )
    assert_segment_answer(response)


@given(path=url_texts, query=url_texts)
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_control_paths_and_queries(client: httpx.Client, path: str, query: str) -> None:
    for route in ("/_emulator/events", "/_emulator/deliveries", "/_emulator/requests", "/_emulator/profiles/"):
        response = client.get(route + (path if route.endswith("/") else "") + "?" + query)
        assert response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/json"


@given(body=json_texts)
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_control_bodies(client: httpx.Client, body: str) -> None:
    for method, route in (
        ("POST", "/_emulator/clock"),
        ("PUT", "/_emulator/destinations/mailjet"),
        ("POST", "/_emulator/engage/audiences"),
        ("POST", "/_emulator/engage/traits"),
        ("POST", "/_emulator/validate/segment.identify"),
    ):
        response = client.request(method, route, content=body.encode("utf-8", "surrogatepass"))
        assert response.status_code < 500, (route, body, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}


@given(amount=st.one_of(st.integers(min_value=0), st.floats(min_value=0, allow_nan=False)), unit=st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
@hypothesis.settings(max_examples=60, **FUZZ_SETTINGS)
def test_clock_moves(client: httpx.Client, amount: float, unit: str) -> None:
    response = client.post("/_emulator/clock", json={"advance": f"{amount}{unit}"})
    assert response.status_code in (200, 400), response.text
    assert client.post("/_emulator/clock", json={"set": "2030-01-01T00:00:00Z"}).status_code == 200


# Near-valid fault rules and sources: every field present or not, of the right type or not. No
# infinity: httpx cannot send it as JSON (ValueError in the test, not the server; json_texts sends it raw).
_odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["/v1/*", "/_emulator/*", "/", "*", "POST", "drop", "timeout", "respond", "\u0000", "\ud7ff"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
fault_specs = st.dictionaries(
    st.sampled_from(["method", "path", "status", "rate", "times", "delay_ms", "action", "seed", "retry_after",
                     "write_key", "api_key", "other"]),
    _odd_values, max_size=6,
)
source_specs = st.dictionaries(st.sampled_from(["name", "write_key", "workspace", "other"]), _odd_values, max_size=4)


@given(rule=fault_specs, source=source_specs)
@hypothesis.settings(max_examples=150, **FUZZ_SETTINGS)
def test_fault_rules_and_sources(client: httpx.Client, rule: dict[str, Any], source: dict[str, Any]) -> None:
    # A rule that could hold requests would slow the run down, not find a bug: delays stay off.
    rule.pop("delay_ms", None)
    try:
        for route, body in (("/_emulator/faults", rule), ("/_emulator/sources", source)):
            response = client.post(route, json=body)
            assert response.status_code in (201, 400, 404, 409), (route, body, response.text)
            assert set(response.json()) == {"error"} if response.status_code >= 400 else "id" in response.json()
        assert client.get("/_emulator/faults").status_code == 200
    finally:
        assert client.delete("/_emulator/faults").status_code == 200
