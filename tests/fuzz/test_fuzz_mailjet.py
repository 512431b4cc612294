"""Fuzz the fake Mailjet, and the destination in front of it, over real HTTP.

schemathesis drives the OpenAPI description the fake publishes, with the account's API key pair so
requests get past 401; hypothesis adds the malformed input a description cannot express (ids with
any percent-encoding, listing parameters, bodies, Authorization). Nothing may answer 5xx, errors
keep Mailjet's shape, and the server still answers its health check afterwards. The destination
may answer 5xx only with its documented 503 (Mailjet unavailable).
"""

from __future__ import annotations

import base64
import json
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

from emulator.mailjet.openapi import openapi_document

from .malformed import FUZZ_SETTINGS, authorizations, json_texts, raw_bodies, url_texts

# Not the fault rules: a rule the fuzzer adds would fail the calls of every test after it.
schema = schemathesis.openapi.from_dict(openapi_document(), config=SchemathesisConfig.from_str("seed = 1")).exclude(
    path_regex="^/_emulator/faults"
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REST_ERROR_KEYS = {"ErrorInfo", "ErrorMessage", "StatusCode"}
RESOURCES = ["contact", "contactslist", "listrecipient", "contactmetadata", "contactdata", "eventcallbackurl"]


@pytest.fixture(scope="module")
def client(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    auth = (stack["mailjet_api_key"], stack["mailjet_secret_key"])
    with httpx.Client(base_url=stack["mailjet_url"], auth=auth, timeout=30) as http:
        # Something to find: a contact with properties in list 1.
        http.post("/v3/REST/contactmetadata", json={"Name": "plan", "Datatype": "str"})
        http.post("/v3/REST/contactslist/1/managecontact", json={"Email": "a+b@example.com", "Action": "addnoforce", "Properties": {"plan": "pro"}})
        yield http
        # Whatever the fuzzers sent, the server is still serving, and everything it kept can be shown.
        assert http.get("/_emulator/health").json()["status"] == "ok"
        for path in ("/v3/REST/contact?Limit=1000", "/v3/REST/contactdata?Limit=1000", "/v3/REST/contactmetadata",
                     "/v3/REST/contactslist", "/v3/REST/listrecipient?Limit=1000", "/v3/REST/eventcallbackurl",
                     "/_emulator/messages", "/_emulator/email-events", "/_emulator/snapshot"):
            assert http.get(path).status_code == 200, path


def test_published_description_is_the_one_fuzzed(client: httpx.Client) -> None:
    assert client.get("/_emulator/openapi.json").json() == openapi_document()


@schema.parametrize()
@hypothesis.settings(max_examples=20, suppress_health_check=list(hypothesis.HealthCheck), **FUZZ_SETTINGS)
def test_openapi(case, stack: dict[str, Any]) -> None:
    auth = "Basic " + base64.b64encode(f"{stack['mailjet_api_key']}:{stack['mailjet_secret_key']}".encode()).decode()
    case.call_and_validate(base_url=stack["mailjet_url"], headers={"Authorization": auth}, checks=CHECKS)


def assert_mailjet_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert REST_ERROR_KEYS <= set(body), body
        assert body["StatusCode"] == response.status_code


@given(resource=st.sampled_from(RESOURCES), ref=url_texts, tail=st.sampled_from(["", "/managecontact", "/getcontactslists", "/managecontactslists"]),
       method=st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH", "TRACE"]))
@hypothesis.settings(max_examples=120, **FUZZ_SETTINGS)
def test_ids_with_any_encoding(client: httpx.Client, resource: str, ref: str, tail: str, method: str) -> None:
    # TRACE is in no route's methods: Starlette's own 405, which must keep Mailjet's shape too.
    response = client.request(method, f"/v3/REST/{resource}/{ref}{tail}", content=b"{}" if method in ("PUT", "POST") else None)
    assert_mailjet_answer(response)


listing_params = st.lists(
    st.tuples(st.sampled_from(["Limit", "Offset", "Sort", "countOnly", "limit", "SORT", "ContactsList", "Email", "IsExcludedFromCampaigns",
                               "Contact", "Unsub", "Version", "Backup", "ExcludeID"]), url_texts),
    max_size=4,
)


@given(resource=st.sampled_from(RESOURCES), params=listing_params)
@hypothesis.settings(max_examples=120, **FUZZ_SETTINGS)
def test_listing_parameters(client: httpx.Client, resource: str, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{name}={value}" for name, value in params)
    assert_mailjet_answer(client.get(f"/v3/REST/{resource}?{query}"))


@given(path=st.sampled_from([f"/v3/REST/{r}" for r in RESOURCES] + ["/v3/REST/contactslist/1/managecontact", "/v3/REST/contact/managemanycontacts"]),
       body=raw_bodies, method=st.sampled_from(["POST", "PUT"]))
@hypothesis.settings(max_examples=120, **FUZZ_SETTINGS)
def test_rest_bodies(client: httpx.Client, path: str, body: bytes, method: str) -> None:
    if method == "PUT":
        path = {"/v3/REST/contactslist/1/managecontact": path}.get(path, path + "/1")
    assert_mailjet_answer(client.request(method, path, content=body))


@given(body=raw_bodies)
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_send_bodies(client: httpx.Client, body: bytes) -> None:
    response = client.post("/v3.1/send", content=body)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        answer = response.json()
        # Send v3.1 answers a whole-request error, or per-message errors in "Messages".
        assert {"ErrorMessage", "StatusCode"} <= set(answer) or "Messages" in answer, answer


@given(authorization=authorizations, path=st.sampled_from(["/v3/REST/contact", "/v3.1/send", "/v3/REST/contactslist/1"]))
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_authorization_garbage(stack: dict[str, Any], authorization: bytes, path: str) -> None:
    response = httpx.post(stack["mailjet_url"] + path, content=b"{}", headers={"Authorization": authorization}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["StatusCode"] == 401


@given(body=json_texts, route=st.sampled_from([("PUT", "/_emulator/app-connections/segment"), ("PUT", "/_emulator/simulation"),
                                               ("POST", "/_emulator/campaigns"), ("POST", "/_emulator/messages/1/events"),
                                               ("POST", "/_emulator/clock")]))
@hypothesis.settings(max_examples=80, **FUZZ_SETTINGS)
def test_control_bodies(client: httpx.Client, body: str, route: tuple[str, str]) -> None:
    response = client.request(route[0], route[1], content=body.encode("utf-8", "surrogatepass"))
    assert response.status_code < 500, (route, body, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


# ---------------------------------------------------------------- the destination


def _basic(username: bytes) -> bytes:
    return b"Basic " + base64.b64encode(username + b":")


destination_bodies = st.one_of(
    raw_bodies,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["identify", "track", "page", "bogus"]), "messageId": st.text(max_size=10)},
        optional={
            "userId": st.text(max_size=10),
            "traits": st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
                                      | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), max_size=5),
            "context": st.fixed_dictionaries({}, optional={"traits": st.fixed_dictionaries({"email": st.emails() | st.text(max_size=10)})}),
        },
    ).map(lambda message: json.dumps(message).encode()),
)
settings_headers = st.one_of(
    st.none(),
    st.binary(max_size=40).map(base64.b64encode),
    st.fixed_dictionaries({}, optional={"listId": st.one_of(st.integers(), st.text(max_size=6), st.none()), "apiKey": st.text(max_size=6)})
    .map(lambda settings: base64.b64encode(json.dumps(settings).encode())),
)


def authentication_key(stack: dict[str, Any]) -> str:
    """The key the destination takes now: the one App Connections shows, which the OpenAPI fuzzing
    above may have changed (PUT app-connections, a snapshot import) since the stack started."""
    return httpx.get(f"{stack['mailjet_url']}/_emulator/app-connections/segment", timeout=30).json()["authenticationKey"]


@given(body=destination_bodies, settings=settings_headers, good_key=st.booleans(), garbage_auth=authorizations)
@hypothesis.settings(max_examples=120, **FUZZ_SETTINGS)
def test_destination_requests(stack: dict[str, Any], body: bytes, settings: bytes | None, good_key: bool, garbage_auth: bytes) -> None:
    headers = {"Authorization": _basic(authentication_key(stack).encode()) if good_key else garbage_auth, "Content-Type": "application/json"}
    if settings is not None:
        headers["X-Segment-Settings"] = settings
    response = httpx.post(stack["destination_url"] + "/", content=body, headers=headers, timeout=30)
    assert response.status_code < 500 or response.status_code in (501, 503), response.text
    assert "message" in response.json()


trait_values = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=300) | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@given(email=st.emails(), traits=st.dictionaries(st.text(max_size=300), trait_values, max_size=6))
@hypothesis.settings(max_examples=60, **FUZZ_SETTINGS)
def test_destination_identifies_reach_mailjet_and_never_fail_it(stack: dict[str, Any], email: str, traits: dict[str, Any]) -> None:
    # The test above mostly stops at the destination's own checks (auth, settings, JSON): these
    # identifies are valid, so each goes on to Mailjet, whose answers must never be a failure (the
    # destination turns a Mailjet 5xx into 503, which the test above accepts).
    settings = base64.b64encode(json.dumps({"listId": stack["list_id"]}).encode())
    headers = {"Authorization": _basic(authentication_key(stack).encode()), "X-Segment-Settings": settings}
    body = {"type": "identify", "messageId": "fuzz", "userId": "u-fuzz", "traits": {**traits, "email": email}}
    response = httpx.post(stack["destination_url"] + "/", json=body, headers=headers, timeout=30)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        contact = httpx.get(f"{stack['mailjet_url']}/v3/REST/contact/{quote(email.strip(), safe='')}",
                            auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"]), timeout=30)
        assert contact.status_code == 200, contact.text
