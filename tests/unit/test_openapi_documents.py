"""The OpenAPI 3.1 descriptions the fakes publish (`GET /_emulator/openapi.json`) against the apps.

A description is what a user generates a client from and what tests/fuzz drives: every route the
app serves is in it (but for the few left out on purpose, named here), nothing else is, and the
statuses and query parameters it gives are the ones the routes really answer and read.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from starlette.datastructures import QueryParams
from starlette.routing import Route

from emulator.common.clock import Clock
from emulator.common.server import serve_in_background
from emulator.config import BundleConfig, BundleUrls
from emulator.dashboard import mailjet_routes, segment_routes
from emulator.mailjet import models as mailjet_models
from emulator.mailjet.events import CONTROL_FIELDS
from emulator.mailjet import routes as mailjet_app
from emulator.mailjet.openapi import PAGING
from emulator.mailjet.openapi import openapi_document as mailjet_document
from emulator.segment.models import ENDPOINTS
from emulator.segment.openapi import openapi_document as segment_document
from emulator.segment.routes import create_app as create_segment_app

PLACEHOLDER_URLS = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")
CONFIG = BundleConfig()
TOKEN = "openapi-test-token"
DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {"segment": segment_document, "mailjet": mailjet_document}
# The query parameter and header naming the workspace (Segment) or account (Mailjet) of a control call.
TENANT = {"segment": ("writeKey", "x-segjet-write-key"), "mailjet": ("apiKey", "x-segjet-api-key")}
UNKNOWN_TENANT_TEXT = {"segment": "no source has write key", "mailjet": "no Mailjet account with API key"}
# Path parameters made concrete for a request.
PATH_VALUES = {"user_id": "u1", "key": "k", "contract": "segment.identify"}
METHODS = ("get", "put", "post", "delete", "patch")


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _operations(routes: list[Any]) -> set[tuple[str, str]]:
    return {
        (method.lower(), _normalise(route.path))
        for route in routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }


def _pages(paths: list[str]) -> set[tuple[str, str]]:
    return {("get", path) for path in paths}


# Left out on purpose (each module's docstring says so): the dashboard pages, the Server-Sent Events
# feeds (streams without end) and the trace's HTML download.
NOT_DESCRIBED = {
    "segment": _pages(segment_routes.PAGES)
    | {("get", "/_emulator/events/stream"), ("get", "/_emulator/dashboard/trace/export")},
    "mailjet": _pages(mailjet_routes.PAGES) | {("get", "/_emulator/stream")},
}
# The fake Mailjet's public API is one catch-all route (paths are case-insensitive); `api` matches
# REST v3 through `REST_ROUTES`, and these two by hand.
MAILJET_HAND_MATCHED = {("post", "/v3.1/send"), ("get", "/v3/data/batchjob/{}/jsonerror/application:json/last")}


def _app(service: str, config: BundleConfig = CONFIG) -> Any:
    create = create_segment_app if service == "segment" else mailjet_app.create_app
    return create(config, Clock(), PLACEHOLDER_URLS)


def _served(service: str) -> set[tuple[str, str]]:
    served = _operations(_app(service).routes) - NOT_DESCRIBED[service]
    if service == "segment":
        served.remove(("post", "/v1/{}"))
        served |= {("post", f"/v1/{endpoint}") for endpoint in ENDPOINTS}
    else:
        served -= {(method.lower(), "/{}") for method in mailjet_app.ALL_METHODS}
        served |= {
            (method.lower(), "/v3/rest/" + "/".join(route.shape))
            for route in mailjet_app.REST_ROUTES
            for method in route.handlers
        }
        served |= MAILJET_HAND_MATCHED
    return served


def _described(service: str) -> set[tuple[str, str]]:
    described = set()
    for path, item in DOCUMENTS[service]()["paths"].items():
        # Mailjet's public paths are case-insensitive; its document uses Mailjet's documented case.
        normal = _normalise(path.lower() if service == "mailjet" and not path.startswith("/_emulator/") else path)
        described |= {(method, normal) for method in item if method in METHODS}
    return described


def _described_operations(service: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENTS[service]()["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES.get(match.group(1), "1"), path)


def _query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"}


# ---------------------------------------------------------------- the documents alone


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_the_description_is_valid_openapi_3_1(service: str) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    document = DOCUMENTS[service]()
    assert document["openapi"].startswith("3.1.")
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_every_route_served_is_described_and_nothing_else(service: str) -> None:
    # The fake Mailjet's description left out its account and snapshot control routes and the error
    # file of a bulk job, although its docstring said only the dashboard and the feed were left out.
    served, described = _served(service), _described(service)
    assert sorted(served - described) == [], "served but not described"
    assert sorted(described - served) == [], "described but not served"


# ---------------------------------------------------------------- against running servers


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    token_config = BundleConfig(control_token=TOKEN)
    loop_thread, runner, started = serve_in_background({
        "segment": _app("segment"), "mailjet": _app("mailjet"),
        "segment-token": _app("segment", token_config), "mailjet-token": _app("mailjet", token_config),
    })
    yield started
    loop_thread.run(runner.stop())
    loop_thread.close()


def _client(urls: dict[str, str], service: str) -> httpx.Client:
    # The public APIs need the credentials of the configured workspace or account; the control API ignores them.
    username, password = (CONFIG.write_key, "") if service == "segment" else (CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key)
    return httpx.Client(base_url=urls[service], auth=(username, password), timeout=30)


def _probe(http: httpx.Client, method: str, path: str, operation: dict[str, Any], **kwargs: Any) -> httpx.Response:
    if "requestBody" in operation and "content" not in kwargs:
        kwargs.setdefault("json", {})
    return http.request(method.upper(), _concrete(path), **kwargs)


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_every_status_a_probe_gets_is_documented(urls: dict[str, str], service: str) -> None:
    # The fake Mailjet answers 404 to `?apiKey=` naming no account (reset, requests, every
    # account-scoped call), which its description did not list.
    param, _ = TENANT[service]
    undocumented = []
    with _client(urls, service) as http:
        for method, path, operation in _described_operations(service):
            probes: list[dict[str, Any]] = [{}, {"params": {param: "no-such-key"}}]
            if "requestBody" in operation:
                probes.append({"content": b"[1]", "headers": {"content-type": "application/json"}})
            for probe in probes:
                status = _probe(http, method, path, operation, **probe).status_code
                if str(status) not in operation["responses"]:
                    undocumented.append((method, path, status, sorted(probe)))
    assert undocumented == []


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_calls_that_take_a_workspace_or_account_say_so(urls: dict[str, str], service: str) -> None:
    # Every control call that acts on the tenant `?writeKey=`/`?apiKey=` names (or the header) documents
    # both ways of naming it and the 404 for an unknown one; and no other call claims to take one.
    param, header = TENANT[service]
    scoped, wrong = [], []
    with _client(urls, service) as http:
        for method, path, operation in _described_operations(service):
            if not path.startswith("/_emulator/"):
                continue
            for how in ({"params": {param: "no-such-key"}}, {"headers": {header: "no-such-key"}}):
                answer = _probe(http, method, path, operation, **how)
                takes_it = answer.status_code == 404 and UNKNOWN_TENANT_TEXT[service] in answer.text
                named = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
                documented = {("query", param.lower()), ("header", header)} <= named and "404" in operation["responses"]
                if takes_it:
                    scoped.append((method, path))
                if takes_it != documented:
                    wrong.append((method, path, answer.status_code, sorted(how)))
    assert ("post", "/_emulator/reset") in scoped and ("get", "/_emulator/requests") in scoped
    assert wrong == []


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_the_control_token_and_its_401_are_documented(urls: dict[str, str], service: str) -> None:
    # With --control-token, every control call but health answers 401 without the token.
    undocumented = []
    with _client(urls, f"{service}-token") as http:
        for method, path, operation in _described_operations(service):
            if not path.startswith("/_emulator/"):
                continue
            status = _probe(http, method, path, operation).status_code
            security = operation.get("security", DOCUMENTS[service]().get("security", []))
            documented = "401" in operation["responses"] and {"controlToken": []} in security
            if (status == 401) != documented:
                undocumented.append((method, path, status))
    assert undocumented == []


def test_a_rest_body_too_large_is_a_documented_413(urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mailjet_app, "MAX_BODY_BYTES", 8)
    undocumented = []
    with _client(urls, "mailjet") as http:
        for method, path, operation in _described_operations("mailjet"):
            if path.startswith("/v3/REST/") and "requestBody" in operation:
                status = _probe(http, method, path, operation, json={"Name": "more than eight bytes"}).status_code
                assert status == 413, (method, path)
                if "413" not in operation["responses"]:
                    undocumented.append((method, path))
    assert undocumented == []


def test_the_error_file_of_a_bulk_job_is_described_as_served(urls: dict[str, str]) -> None:
    # The ErrorFile a managemanycontacts job points at is a public route of the fake Mailjet.
    with _client(urls, "mailjet") as http:
        job = http.post("/v3/REST/contact/managemanycontacts", json={"Contacts": [{"Email": "not an address"}]})
        assert job.status_code == 201, job.text
        paths = mailjet_document()["paths"]
        (path,) = [p for p in paths if p.startswith("/v3/DATA/batchjob/")]
        answer = http.get(path.replace("{job_id}", str(job.json()["Data"][0]["JobID"])))
        assert str(answer.status_code) in paths[path]["get"]["responses"]
        assert answer.status_code == 200 and isinstance(answer.json(), list)


# ---------------------------------------------------------------- query parameters


class _Reads:
    """The query parameter names routes read while it is installed (control: `request.query_params`;
    Mailjet REST: `Query.get` of the listing filters)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: set[str] = set()
        original_get, original_contains = QueryParams.get, QueryParams.__contains__
        original_query_get = mailjet_models.Query.get

        def get(params: QueryParams, key: Any, default: Any = None) -> Any:
            self.names.add(key)
            return original_get(params, key, default)

        def contains(params: QueryParams, key: Any) -> bool:
            self.names.add(key)
            return original_contains(params, key)

        def query_get(query: mailjet_models.Query, name: str) -> str | None:
            self.names.add(name)
            return original_query_get(query, name)

        monkeypatch.setattr(QueryParams, "get", get)
        monkeypatch.setattr(QueryParams, "__contains__", contains)
        monkeypatch.setattr(mailjet_models.Query, "get", query_get)


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_the_query_parameters_documented_are_the_ones_read(
    urls: dict[str, str], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /contact and /contactdata read a `Campaign` filter, the Mailjet dashboard's contacts `email`,
    # and Segment's trace `writeKey`; none was described.
    reads = _Reads(monkeypatch)
    mismatched = []
    with _client(urls, service) as http:
        for method, path, operation in _described_operations(service):
            if method != "get":
                continue
            reads.names.clear()
            assert _probe(http, method, path, operation).status_code < 500
            documented = set(_query_parameters(operation))
            if path.startswith("/v3/REST/") and documented:
                documented -= set(PAGING)  # parsed by Query.parse for every listing, not read by name
            if reads.names != documented:
                mismatched.append((path, sorted(reads.names - documented), sorted(documented - reads.names)))
    assert mismatched == []


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_every_value_a_query_parameter_allows_is_accepted(urls: dict[str, str], service: str) -> None:
    # Each enum value and each bound a description gives must get past the route's own checks.
    refused = []
    with _client(urls, service) as http:
        for method, path, operation in _described_operations(service):
            if method != "get":
                continue
            for name, schema in _query_parameters(operation).items():
                values = list(schema.get("enum", [])) + [schema[b] for b in ("minimum", "maximum") if b in schema]
                for value in values:
                    answer = _probe(http, method, path, operation, params={name: value if isinstance(value, str) else json.dumps(value)})
                    if answer.status_code == 400:
                        refused.append((path, name, value, answer.text[:120]))
    assert refused == []


def test_basic_auth_of_the_probes_is_what_the_servers_take(urls: dict[str, str]) -> None:
    # The probes above reach the public APIs' handlers, not their 401.
    with _client(urls, "mailjet") as http:
        assert http.get("/v3/REST/contact").status_code == 200
    auth = "Basic " + base64.b64encode(f"{CONFIG.write_key}:".encode()).decode()
    with httpx.Client(base_url=urls["segment"], timeout=30) as http:
        assert http.post("/v1/track", json={"userId": "u", "event": "E"}, headers={"Authorization": auth}).status_code == 200


# ---------------------------------------------------------------- response and request bodies

# Statuses answered with no body; every other documented success carries one.
BODYLESS = {"204", "304"}
# Bodies that get a probe past the route's checks to its success answer.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v3/REST/contactslist/{list_id}/managecontact"): {"Email": "probe@example.com", "Action": "addnoforce"},
}


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_every_success_with_a_body_describes_it(service: str) -> None:
    # managecontact's 201 was described with no content, so its answer was never checked against
    # `mailjet.managecontact.response` (schemathesis's response conformance passed whatever came).
    undescribed = [
        (method, path, status)
        for method, path, operation in _described_operations(service)
        for status, response in operation["responses"].items()
        if status.startswith("2") and status not in BODYLESS and "content" not in response
    ]
    assert undescribed == []


def _document_validator(service: str, schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of `schema` whose `#/components/...` references resolve inside the document."""
    return Draft202012Validator({**schema, "components": DOCUMENTS[service]()["components"]})


@pytest.mark.parametrize("service", sorted(DOCUMENTS))
def test_a_success_answer_is_the_body_described(urls: dict[str, str], service: str) -> None:
    # Every 2xx a probe gets has a body exactly when its description has content, and matches its schema.
    wrong = []
    with _client(urls, service) as http:
        for method, path, operation in _described_operations(service):
            body = VALID_BODIES.get((method, path))
            answer = _probe(http, method, path, operation, **({"json": body} if body is not None else {}))
            if not answer.is_success:
                continue
            response = operation["responses"][str(answer.status_code)]
            if "content" not in response:
                if answer.content:
                    wrong.append((method, path, answer.status_code, "body not described"))
                continue
            schema = response["content"]["application/json"]["schema"]
            if not _document_validator(service, schema).is_valid(answer.json()):
                wrong.append((method, path, answer.status_code, answer.text[:120]))
    assert wrong == []


def _body_schema(service: str, method: str, path: str) -> dict[str, Any]:
    return DOCUMENTS[service]()["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


CAMPAIGN = {"list_id": 1, "subject": "Hello", "html": "<p>Hi</p>"}
# (service, method, path, body, whether the server takes it): the request body schema must agree.
BODY_CASES = [
    ("mailjet", "post", "/_emulator/campaigns", CAMPAIGN, True),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "text": "Hi", "name": "N", "from": "a@example.com"}, True),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "text": None, "from": {"Email": "a@example.com", "Name": "A"}}, True),
    *[("mailjet", "post", "/_emulator/campaigns", {k: v for k, v in CAMPAIGN.items() if k != missing}, False) for missing in CAMPAIGN],
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "subject": ""}, False),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "html": ""}, False),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "text": 1}, False),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "from": "nobody"}, False),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "bcc": "x"}, False),
    ("mailjet", "put", "/_emulator/simulation", {"delay": "1.5h"}, True),
    ("mailjet", "put", "/_emulator/simulation", {"delay": "250ms"}, True),
    ("mailjet", "put", "/_emulator/simulation", {"delay": "1.5"}, False),
    ("mailjet", "post", "/_emulator/faults", {"path": "/v3/REST/contact", "status": 500, "api_key": "probe-key"}, True),
    ("mailjet", "post", "/_emulator/faults", {"path": "/v3/*", "retry_after": 1}, False),
    ("mailjet", "post", "/_emulator/faults", {"method": "GET"}, False),
    ("segment", "post", "/_emulator/faults", {"path": "/v1/track", "action": "drop", "write_key": "probe-key", "retry_after": 2}, True),
    ("segment", "post", "/_emulator/faults", {"path": "/v1/*", "rate": 2}, False),
    # The server's own rules, which the schema did not state.
    ("mailjet", "post", "/_emulator/faults", {"path": "/v3/REST/contact", "action": "drop", "status": 503}, False),
    ("segment", "post", "/_emulator/faults", {"path": "/v1/track", "action": "timeout", "status": 500}, False),
    ("segment", "post", "/_emulator/faults", {"path": "/v1/track", "action": "timeout", "status": None}, True),
    ("segment", "post", "/_emulator/faults", {"path": "/_emulator/x"}, False),
    ("mailjet", "post", "/_emulator/faults", {"path": "/_EMULATOR/x"}, False),
    ("segment", "post", "/_emulator/faults", {"path": "/_emulator*"}, True),
    ("segment", "post", "/_emulator/faults", {"path": "/v1/*", "method": "GET\n"}, False),
    ("mailjet", "post", "/_emulator/campaigns", {**CAMPAIGN, "from": {"Email": "a@example.com", "X": 1}}, True),
]


@pytest.mark.parametrize(("service", "method", "path", "body", "taken"), BODY_CASES)
def test_a_request_body_schema_takes_what_the_server_takes(
    urls: dict[str, str], service: str, method: str, path: str, body: dict[str, Any], taken: bool
) -> None:
    # The campaign body named no required field and allowed unknown ones; the simulation's `delay`
    # refused the fractions the server takes ("1.5h").
    with _client(urls, service) as http:
        answer = http.request(method.upper(), path, json=body)
        http.delete("/_emulator/faults")
    assert answer.is_success == taken, answer.text
    assert _document_validator(service, _body_schema(service, method, path)).is_valid(body) == taken


def test_the_trace_requires_its_user(urls: dict[str, str]) -> None:
    (user,) = [p for p in segment_document()["paths"]["/_emulator/dashboard/trace"]["get"]["parameters"] if p["name"] == "user"]
    with _client(urls, "segment") as http:
        assert http.get("/_emulator/dashboard/trace", params={"user": " "}).status_code == 400
        assert http.get("/_emulator/dashboard/trace").status_code == 400
    assert user["required"] is True


def test_an_authentication_key_another_account_has_is_a_documented_409(urls: dict[str, str]) -> None:
    path = "/_emulator/app-connections/segment"
    with _client(urls, "mailjet") as http:
        assert http.post("/_emulator/accounts", json={"api_key": "openapi-other", "secret_key": "s"}).status_code == 201
        taken = http.get(path).json()["authenticationKey"]
        answer = http.put(path, params={"apiKey": "openapi-other"}, json={"authenticationKey": taken})
        http.post("/_emulator/reset")
    assert answer.status_code == 409, answer.text
    assert "409" in DOCUMENTS["mailjet"]()["paths"][path]["put"]["responses"]


def test_the_email_event_body_documents_every_field_an_event_takes() -> None:
    documented = set(_body_schema("mailjet", "post", "/_emulator/messages/{message_id}/events")["properties"])
    assert documented == {"event", *(name for fields in CONTROL_FIELDS.values() for name in fields)}
