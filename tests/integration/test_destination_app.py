"""The destination over real HTTP, against the fake Mailjet over real HTTP.

No Segment emulator: the tests POST direct-destination requests as Segment would, and read
Mailjet's state back through its public REST API. The destination is given nothing but a Mailjet
URL and a key pair, as it would be in production.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest

import contracts
from destination.app import IDENTIFY_BUDGET_SECONDS, MAX_BODY_BYTES, create_app
from destination.keyring import KeyRing, MailjetAccount
from emulator.segment.delivery import DEFAULT_TIMEOUT_SECONDS as SEGMENT_TIMEOUT_SECONDS
from emulator.common.clock import Clock
from emulator.common.server import LoopThread, Runner, bind, serve_in_background, url_of
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.routes import create_app as create_mailjet_app

API_KEY = "it-api-key"
SECRET_KEY = "it-secret-key"
AUTH_KEY = "it-auth-key"
WRONG_SECRET_AUTH_KEY = "it-auth-key-wrong-secret"
UNREACHABLE_AUTH_KEY = "it-auth-key-unreachable"
LIST_ID = 1


@dataclass
class Stack:
    mailjet_url: str
    destination_url: str


def _closed_port_url() -> str:
    # Bound then closed: nothing listens there, so connecting is refused at once.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    config = BundleConfig(mailjet_api_key=API_KEY, mailjet_secret_key=SECRET_KEY, auth_key=AUTH_KEY, list_id=LIST_ID)
    # The fake Mailjet is told its own URL at build time, so its socket is bound first.
    mailjet_sock = bind("127.0.0.1", 0)
    mailjet_url = url_of(mailjet_sock)
    urls = BundleUrls(segment_url=_closed_port_url(), mailjet_url=mailjet_url, destination_url=_closed_port_url())
    mailjet_loop = LoopThread("it-mailjet")
    mailjet_runner = Runner()
    mailjet_runner.add("mailjet", create_mailjet_app(config, Clock(), urls), mailjet_sock)
    mailjet_loop.run(mailjet_runner.start())

    key_ring = KeyRing(
        {
            AUTH_KEY: MailjetAccount(mailjet_url, API_KEY, SECRET_KEY),
            WRONG_SECRET_AUTH_KEY: MailjetAccount(mailjet_url, API_KEY, "not-the-secret"),
            UNREACHABLE_AUTH_KEY: MailjetAccount(_closed_port_url(), API_KEY, SECRET_KEY),
        }
    )
    destination_loop, destination_runner, served = serve_in_background({"destination": create_app(key_ring)})
    try:
        yield Stack(mailjet_url, served["destination"])
    finally:
        destination_loop.run(destination_runner.stop())
        destination_loop.close()
        mailjet_loop.run(mailjet_runner.stop())
        mailjet_loop.close()


def _basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:".encode()).decode()


def _settings(settings: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(settings).encode()).decode()


def segment_headers(auth_key: str = AUTH_KEY, list_id: Any = str(LIST_ID)) -> dict[str, str]:
    """The headers Segment sends a direct destination (reference/segment.md §5.2)."""
    return {
        "Authorization": _basic(auth_key),
        "X-Segment-Settings": _settings({"apiKey": auth_key, "listId": list_id}),
        "Content-Type": "application/json",
        "User-Agent": "Segment.io/1.0",
        "Accept": "*/*",
        "Cache-Control": "no-cache",
    }


def unique_email() -> str:
    return f"it-{uuid.uuid4().hex[:12]}@example.com"


def identify(email: str | None, traits: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    all_traits = {"email": email} if email else {}
    all_traits.update(traits or {})
    return {
        "type": "identify",
        "messageId": f"it-{uuid.uuid4().hex}",
        "userId": f"user-{uuid.uuid4().hex[:8]}",
        "traits": all_traits,
        "timestamp": "2024-05-01T10:00:00.000Z",
        "receivedAt": "2024-05-01T10:00:00.100Z",
        **fields,
    }


def post(stack: Stack, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(stack.destination_url + "/", content=content, headers=segment_headers() if headers is None else headers, timeout=10)


def mailjet_get(stack: Stack, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.mailjet_url}/v3/REST/{path}", params=params, auth=(API_KEY, SECRET_KEY), timeout=10)


def contact_data(stack: Stack, email: str) -> dict[str, str]:
    response = mailjet_get(stack, f"contactdata/{email}")
    assert response.status_code == 200, response.text
    return {item["Name"]: item["Value"] for item in response.json()["Data"][0]["Data"]}


def property_types(stack: Stack) -> dict[str, str]:
    response = mailjet_get(stack, "contactmetadata", Limit=1000)
    assert response.status_code == 200, response.text
    return {item["Name"]: item["Datatype"] for item in response.json()["Data"]}


def last_mailjet_call(stack: Stack) -> int:
    response = httpx.get(f"{stack.mailjet_url}/_emulator/requests", params={"limit": 1}, timeout=10)
    response.raise_for_status()
    return max((entry["id"] for entry in response.json()["requests"]), default=0)


def mailjet_calls_since(stack: Stack, last: int) -> list[tuple[str, str]]:
    """The fake Mailjet's requests after the one numbered `last` (other tests' are all done by then)."""
    response = httpx.get(f"{stack.mailjet_url}/_emulator/requests", params={"limit": 10_000}, timeout=10)
    response.raise_for_status()
    return [(entry["method"], entry["path"]) for entry in sorted(response.json()["requests"], key=lambda entry: entry["id"]) if entry["id"] > last]


def mailjet_send(stack: Stack, method: str, path: str, body: Any = None) -> None:
    response = httpx.request(method, f"{stack.mailjet_url}/v3/REST/{path}", json=body, auth=(API_KEY, SECRET_KEY), timeout=10)
    assert response.status_code < 300, response.text


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["message"]
    for fragment in fragments:
        assert fragment in message, message


def test_health(stack):
    response = httpx.get(stack.destination_url + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_other_paths_and_methods_are_answered_in_the_contracts_json_shape(stack):
    # Segment only POSTs to the root URL; anything else still gets {"message"}, as every answer does.
    wrong_method = httpx.get(stack.destination_url + "/", timeout=10)
    assert (wrong_method.status_code, wrong_method.json(), wrong_method.headers["allow"]) == (405, {"message": "Method Not Allowed"}, "POST")
    unknown = httpx.post(stack.destination_url + "/v1/identify", content=b"{}", headers=segment_headers(), timeout=10)
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not Found"})


def test_nested_traits_become_typed_properties_in_the_list(stack):
    email = unique_email()
    traits = {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "location": {"latitude": 48.87, "longitude": 2.37, "city": "Paris"},
        "it_age": 36,
        "it_vip": True,
        "it_signed_up_at": "2024-01-02T03:04:05.678Z",
        "it_tags": ["math", "engines"],
    }
    message = identify(email, traits)
    assert contracts.validate("destination.request", message) == []

    response = post(stack, message)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert contracts.validate("destination.response", answer) == []
    assert answer["email"] == email and answer["listId"] == LIST_ID and answer["name"] == "Ada Lovelace"
    assert answer["skipped"] == [{"trait": "it_tags", "reason": "array: a Mailjet property holds a single value"}]

    contact = mailjet_get(stack, f"contact/{email}").json()["Data"][0]
    assert contact["Name"] == "Ada Lovelace" and contact["ID"] == answer["contactId"]
    # contactdata answers every value as a string.
    data = contact_data(stack, email)
    assert data["location_latitude"] == "48.87"
    assert data["location_longitude"] == "2.37"
    assert data["location_city"] == "Paris"
    assert data["it_age"] == "36"
    assert data["it_vip"] == "true"
    assert data["it_signed_up_at"] == "2024-01-02T03:04:05Z"
    assert data["firstName"] == "Ada"
    assert data["segment_user_id"] == message["userId"]
    assert "email" not in data and "it_tags" not in data

    types = property_types(stack)
    assert types["location_latitude"] == "float"
    assert types["location_city"] == "str"
    assert types["it_age"] == "int"
    assert types["it_vip"] == "bool"
    assert types["it_signed_up_at"] == "datetime"
    assert types["segment_user_id"] == "str"

    membership = mailjet_get(stack, "listrecipient", ContactsList=LIST_ID, Contact=contact["ID"]).json()
    assert membership["Count"] == 1
    assert membership["Data"][0]["ListID"] == LIST_ID and membership["Data"][0]["IsUnsubscribed"] is False


def test_second_identify_updates_without_duplicating(stack):
    email = unique_email()
    first = identify(email, {"name": "Ada", "it_plan": "free"})
    assert post(stack, first).status_code == 200
    second = identify(email, {"name": "Ada Lovelace", "it_plan": "pro"}, userId=first["userId"])
    response = post(stack, second)

    assert response.status_code == 200, response.text
    assert contact_data(stack, email)["it_plan"] == "pro"
    listed = mailjet_get(stack, "contact", ContactsList=LIST_ID, Limit=1000).json()["Data"]
    same = [contact for contact in listed if contact["Email"] == email]
    assert len(same) == 1 and same[0]["Name"] == "Ada Lovelace"
    assert mailjet_get(stack, "listrecipient", ContactsList=LIST_ID, Contact=same[0]["ID"]).json()["Count"] == 1
    # The definition was created by the first identify only.
    assert response.json()["createdProperties"] == []


def test_an_update_with_only_a_last_name_keeps_the_full_name(stack):
    # {"lastName": "Byron"} alone once replaced the contact's Name "Ada Lovelace" by "Byron".
    email = unique_email()
    first = identify(email, {"name": "Ada Lovelace"})
    assert post(stack, first).status_code == 200
    response = post(stack, identify(email, {"lastName": "Byron"}, userId=first["userId"]))
    assert response.status_code == 200, response.text
    assert response.json()["name"] is None
    assert mailjet_get(stack, f"contact/{email}").json()["Data"][0]["Name"] == "Ada Lovelace"
    assert contact_data(stack, email)["lastName"] == "Byron"


def test_a_later_identify_does_not_resubscribe_a_contact_who_unsubscribed(stack):
    # addnoforce "does not change the subscription status" (reference/mailjet.md §3); addforce would
    # put the contact back on the list against their choice.
    email = unique_email()
    assert post(stack, identify(email, {"it_plan": "free"})).status_code == 200
    mailjet_send(stack, "POST", f"contactslist/{LIST_ID}/managecontact", {"Email": email, "Action": "unsub"})
    response = post(stack, identify(email, {"it_plan": "pro", "it_unsubscribed": False}))
    assert response.status_code == 200, response.text
    contact_id = response.json()["contactId"]
    (membership,) = mailjet_get(stack, "listrecipient", ContactsList=LIST_ID, Contact=contact_id).json()["Data"]
    assert membership["IsUnsubscribed"] is True
    assert contact_data(stack, email)["it_plan"] == "pro"


def test_engage_audience_trait_becomes_a_boolean_property(stack):
    email = unique_email()
    message = identify(
        email,
        {"it_order_completed_last_30days": True},
        context={"personas": {"computation_class": "audience", "computation_key": "it_order_completed_last_30days"}},
    )
    assert post(stack, message).status_code == 200
    assert contact_data(stack, email)["it_order_completed_last_30days"] == "true"
    assert property_types(stack)["it_order_completed_last_30days"] == "bool"


def test_email_from_context_traits(stack):
    email = unique_email()
    response = post(stack, identify(None, {"it_city": "Lyon"}, context={"traits": {"email": email}}))
    assert response.status_code == 200, response.text
    assert contact_data(stack, email)["it_city"] == "Lyon"


def test_value_not_matching_an_existing_definition_is_skipped(stack):
    email = unique_email()
    assert post(stack, identify(email, {"it_score": 10})).status_code == 200
    response = post(stack, identify(email, {"it_score": "high", "it_note": "kept"}))
    assert response.status_code == 200, response.text
    assert [skipped["trait"] for skipped in response.json()["skipped"]] == ["it_score"]
    assert contact_data(stack, email)["it_score"] == "10"
    assert contact_data(stack, email)["it_note"] == "kept"


def test_unusable_date_or_timestamp_is_skipped_not_a_500(stack):
    # Each was a 500, which Segment retries for 4 h while the user's later identifies queue behind.
    email = unique_email()
    assert post(stack, identify(email, {"it_created_at": "2024-05-01T10:00:00Z"})).status_code == 200
    traits = {"it_created_at": 1714557600000, "it_born": "0001-01-01T00:00:00+01:00", "it_note": "kept"}
    response = post(stack, identify(email, traits))
    assert response.status_code == 200, response.text
    assert response.json()["skipped"] == [
        {"trait": "it_born", "reason": "date-time outside the years 1 to 9999 once in UTC"},
        {
            "trait": "it_created_at",
            "reason": "Mailjet property 'it_created_at' is defined as datetime: 1714557600000 is not a Unix timestamp (seconds) within the years 1 to 9999",
        },
    ]
    assert contact_data(stack, email)["it_created_at"] == "2024-05-01T10:00:00Z"
    assert contact_data(stack, email)["it_note"] == "kept"


def test_overlong_property_name_is_skipped_and_the_contact_still_upserted(stack):
    # The /contactmetadata creation failed and the whole update was answered a final 400.
    email = unique_email()
    deep: dict[str, Any] = {"it": 1}
    for _ in range(200):
        deep = {"a": deep}
    response = post(stack, identify(email, {"it_" + "k" * 300: 1, "it_deep": deep, "it_kept": "yes"}))
    assert response.status_code == 200, response.text
    assert [skipped["reason"] for skipped in response.json()["skipped"]] == ["property name longer than 255 characters"] * 2
    assert contact_data(stack, email)["it_kept"] == "yes"


def _retype(stack: Stack, name: str) -> None:
    mailjet_send(stack, "PUT", f"contactmetadata/{name}", {"Datatype": "str"})


def _delete_and_recreate(stack: Stack, name: str) -> None:
    # What the emulator's reset between tests does while the destination keeps its cache.
    mailjet_send(stack, "DELETE", f"contactmetadata/{name}")
    mailjet_send(stack, "POST", "contactmetadata", {"Name": name, "Datatype": "str", "NameSpace": "static"})


@pytest.mark.parametrize("change", [_retype, _delete_and_recreate])
def test_property_changed_in_mailjet_after_caching_is_not_dropped(stack, change):
    email = unique_email()
    name = f"it_changed_{change.__name__.strip('_')}"
    assert post(stack, identify(email, {name: 5})).status_code == 200
    change(stack, name)
    response = post(stack, identify(email, {name: "gold", f"{name}_new": 1}))
    assert response.status_code == 200, response.text
    assert response.json()["skipped"] == []
    # Created before the definitions were found stale and read again: still reported.
    assert response.json()["createdProperties"] == [{"name": f"{name}_new", "datatype": "int"}]
    assert contact_data(stack, email)[name] == "gold"


def test_a_cached_property_deleted_in_mailjet_is_defined_again_when_mailjet_refuses_it(stack):
    # The cache says the property exists and the value fits it, so only Mailjet's refusal
    # ("Property not defined") can tell the destination to read the definitions again.
    email = unique_email()
    assert post(stack, identify(email, {"it_deleted": "a"})).status_code == 200
    mailjet_send(stack, "DELETE", "contactmetadata/it_deleted")
    last = last_mailjet_call(stack)
    response = post(stack, identify(email, {"it_deleted": "b"}))
    assert response.status_code == 200, response.text
    assert mailjet_calls_since(stack, last) == [
        ("POST", f"/v3/REST/contactslist/{LIST_ID}/managecontact"),
        ("GET", "/v3/REST/contactmetadata"),
        ("POST", "/v3/REST/contactmetadata"),
        ("POST", f"/v3/REST/contactslist/{LIST_ID}/managecontact"),
    ]
    assert contact_data(stack, email)["it_deleted"] == "b"


def test_cached_definitions_cost_no_call_and_a_misfit_one_reread(stack):
    email = unique_email()
    assert post(stack, identify(email, {"it_cached": "a", "it_count_a": 1, "it_count_b": 2})).status_code == 200
    last = last_mailjet_call(stack)
    assert post(stack, identify(email, {"it_cached": "b"})).status_code == 200
    assert mailjet_calls_since(stack, last) == [("POST", f"/v3/REST/contactslist/{LIST_ID}/managecontact")]

    last = last_mailjet_call(stack)
    response = post(stack, identify(email, {"it_count_a": "many", "it_count_b": "more"}))
    assert [skipped["trait"] for skipped in response.json()["skipped"]] == ["it_count_a", "it_count_b"]
    # One read of the definitions for the identify, not one per trait.
    assert mailjet_calls_since(stack, last) == [("GET", "/v3/REST/contactmetadata"), ("POST", f"/v3/REST/contactslist/{LIST_ID}/managecontact")]


def test_invalid_email_refused_by_mailjet_is_not_retried(stack):
    assert post(stack, identify(unique_email(), {"it_city": "Paris"})).status_code == 200
    last = last_mailjet_call(stack)
    # The destination's light check lets it through; the fake Mailjet wants a dot in the domain.
    response = post(stack, identify("user@localhost", {"it_city": "Paris"}))
    assert_error(response, 400, "Object properties invalid", "Email")
    assert mailjet_calls_since(stack, last) == [("POST", f"/v3/REST/contactslist/{LIST_ID}/managecontact")]


def test_sanitized_property_name(stack):
    email = unique_email()
    response = post(stack, identify(email, {"it plan-tier": "gold"}))
    assert response.status_code == 200, response.text
    assert response.json()["renamed"] == [{"trait": "it plan-tier", "property": "it_plan_tier"}]
    assert contact_data(stack, email)["it_plan_tier"] == "gold"


def test_a_33kb_trait_value_is_skipped_and_the_contact_still_upserted(stack):
    email = unique_email()
    response = post(stack, identify(email, {"it_essay": "x" * 33 * 1024, "it_short": "ok"}))
    assert response.status_code == 200, response.text
    assert response.json()["skipped"] == [{"trait": "it_essay", "reason": "text longer than 255 characters"}]
    data = contact_data(stack, email)
    assert data["it_short"] == "ok" and "it_essay" not in data


def test_concurrent_identifies_define_a_new_property_once(stack):
    emails = [unique_email() for _ in range(40)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(
                *(client.post(stack.destination_url + "/", json=identify(email, {"it_burst": index}), headers=segment_headers()) for index, email in enumerate(emails))
            )

    responses = asyncio.run(send_all())
    assert [response.status_code for response in responses] == [200] * len(emails)
    created = [prop for response in responses for prop in response.json()["createdProperties"] if prop["name"] == "it_burst"]
    assert created == [{"name": "it_burst", "datatype": "int"}]
    assert [name for name in property_types(stack) if name.lower() == "it_burst"] == ["it_burst"]
    assert contact_data(stack, emails[-1])["it_burst"] == str(len(emails) - 1)


def test_no_email_is_400(stack):
    assert_error(post(stack, identify(None, {"name": "Nobody"})), 400, "no email")


def test_malformed_or_non_object_json_is_400(stack):
    assert_error(post(stack, b"{not json"), 400, "malformed JSON")
    assert_error(post(stack, "[1, 2]"), 400, "JSON object")


def test_invalid_settings_are_400(stack):
    assert_error(post(stack, identify(unique_email()), headers=segment_headers(list_id="abc")), 400, "listId")
    # Once a 500 (int() refuses more than 4,300 digits), which Segment retries for 4 h.
    assert_error(post(stack, identify(unique_email()), headers=segment_headers(list_id="1" * 5000)), 400, "listId")
    headers = segment_headers()
    headers["X-Segment-Settings"] = "***"
    assert_error(post(stack, identify(unique_email()), headers=headers), 400, "X-Segment-Settings")


def test_unknown_or_missing_key_is_401(stack):
    assert_error(post(stack, identify(unique_email()), headers=segment_headers(auth_key="nobody")), 401, "unknown authentication key")
    headers = segment_headers()
    del headers["Authorization"]
    assert_error(post(stack, identify(unique_email()), headers=headers), 401, "Authorization")


@pytest.mark.parametrize("call_type", ["track", "page", "screen", "group", "alias"])
def test_other_call_types_are_501(stack, call_type):
    message = {"type": call_type, "messageId": "m", "userId": "u1", "event": "Signed Up", "traits": {"email": unique_email()}}
    assert_error(post(stack, message), 501, "identify calls only", call_type)


def test_unknown_list_is_400_with_a_clear_message(stack):
    email = unique_email()
    response = post(stack, identify(email, {"it_city": "Nice"}), headers=segment_headers(list_id="987654"))
    assert_error(response, 400, "list 987654 does not exist", "List ID")
    assert mailjet_get(stack, f"contact/{email}").status_code == 404


def test_wrong_mailjet_key_pair_is_401_naming_the_key_pair(stack):
    response = post(stack, identify(unique_email()), headers=segment_headers(auth_key=WRONG_SECRET_AUTH_KEY))
    assert_error(response, 401, "Mailjet rejected the API key pair")


def test_unreachable_mailjet_is_503_so_segment_retries(stack):
    response = post(stack, identify(unique_email()), headers=segment_headers(auth_key=UNREACHABLE_AUTH_KEY))
    assert_error(response, 503, "temporarily unavailable")


def test_body_nested_too_deeply_is_a_400(stack: Stack) -> None:
    # Found by tests/fuzz: json.loads raised RecursionError, answered 500 (which Segment retries).
    response = post(stack, b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400


def test_non_ascii_authorization_and_settings_are_4xx(stack: Stack) -> None:
    # Found by tests/fuzz: base64 of non-ASCII header text raised ValueError, answered 500.
    response = post(stack, identify("a@example.com"), headers={"Authorization": "Basic \xe9".encode("latin-1")})
    assert response.status_code == 401
    response = post(stack, identify("a@example.com"), headers={**segment_headers(), "X-Segment-Settings": "\xe9".encode("latin-1")})
    assert response.status_code == 400


def test_an_identify_slower_than_segments_timeout_in_total_is_answered_503_in_time(stack: Stack) -> None:
    # Each Mailjet call had its own 4 s budget but an identify makes several: two slow ones made the
    # answer come after Segment's 5 s timeout, while the destination kept writing to Mailjet after
    # Segment had given up (and after an emulator reset).
    faults = f"{stack.mailjet_url}/_emulator/faults"
    for path in ("/v3/REST/contactmetadata", f"/v3/REST/contactslist/{LIST_ID}/managecontact"):
        rule = {"method": "POST", "path": path, "status": None, "delay_ms": 2600, "times": 1}
        assert httpx.post(faults, json=rule, timeout=10).status_code < 300
    try:
        response = post(stack, identify(unique_email(), {f"it_slow_{uuid.uuid4().hex[:8]}": 1}))
    finally:
        httpx.delete(faults, timeout=10).raise_for_status()
    # Cut by the whole identify's budget (under Segment's 5 s), not by one call's own timeout.
    assert_error(response, 503, f"its calls for this identify took over {IDENTIFY_BUDGET_SECONDS:g}s")
    assert IDENTIFY_BUDGET_SECONDS < SEGMENT_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    ("body", "media_type", "explained"),
    [
        ("<html><body>Down for maintenance</body></html>", "text/html", "not JSON"),
        ('{"status": "maintenance"}', "application/json", "answered no Data array"),
    ],
)
def test_a_mailjet_answer_without_its_envelope_is_503_so_segment_retries(body: str, media_type: str, explained: str) -> None:
    # An outage page answered 200 (by Mailjet or a proxy before it) is no REST envelope: the contact
    # may not be updated, and the message is not at fault, so Segment must retry it, not drop it.
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def outage(request: Any) -> Response:
        return Response(body, status_code=200, media_type=media_type)

    stub = Starlette(routes=[Route("/{path:path}", outage, methods=["GET", "POST"])])
    stub_loop, stub_runner, stub_urls = serve_in_background({"mailjet": stub})
    key_ring = KeyRing({AUTH_KEY: MailjetAccount(stub_urls["mailjet"], API_KEY, SECRET_KEY)})
    loop, runner, served = serve_in_background({"destination": create_app(key_ring)})
    try:
        response = post(Stack(stub_urls["mailjet"], served["destination"]), identify(unique_email()))
    finally:
        loop.run(runner.stop())
        loop.close()
        stub_loop.run(stub_runner.stop())
        stub_loop.close()
    assert_error(response, 503, "temporarily unavailable", explained)


def test_a_redirecting_mailjet_url_never_turns_a_post_into_a_get(stack: Stack) -> None:
    # A key ring base URL that Mailjet (or a proxy) redirects, such as http:// to https://: an
    # HTTP client following a 301/302 re-sends a POST as a GET. The contactmetadata POST came back
    # as the list of existing properties (200) and the identify failed with a 500; a managecontact
    # GET answered with an envelope would have been taken for an upsert.
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    async def moved(request: Any) -> RedirectResponse:
        return RedirectResponse(f"{stack.mailjet_url}{request.url.path}?{request.url.query}", status_code=301)

    stub = Starlette(routes=[Route("/{path:path}", moved, methods=["GET", "POST"])])
    stub_loop, stub_runner, stub_urls = serve_in_background({"mailjet": stub})
    key_ring = KeyRing({AUTH_KEY: MailjetAccount(stub_urls["mailjet"], API_KEY, SECRET_KEY)})
    loop, runner, served = serve_in_background({"destination": create_app(key_ring)})
    name = f"it_redirected_{uuid.uuid4().hex[:8]}"
    try:
        response = post(Stack(stub_urls["mailjet"], served["destination"]), identify(unique_email(), {name: 1}))
    finally:
        loop.run(runner.stop())
        loop.close()
        stub_loop.run(stub_runner.stop())
        stub_loop.close()
    assert_error(response, 503, "redirected", stack.mailjet_url)
    assert name not in property_types(stack)


def test_a_404_outside_the_list_path_is_not_blamed_on_the_list_id(stack: Stack) -> None:
    # Answered "contact list 1 does not exist; check the List ID setting": the user would change a
    # List ID that is right, while the fault is the account's base URL (e.g. one ending in /v3).
    faults = f"{stack.mailjet_url}/_emulator/faults"
    rule = {"method": "POST", "path": "/v3/REST/contactmetadata", "status": 404, "times": 1}
    assert httpx.post(faults, json=rule, timeout=10).status_code < 300
    try:
        response = post(stack, identify(unique_email(), {f"it_lost_{uuid.uuid4().hex[:8]}": 1}))
    finally:
        httpx.delete(faults, timeout=10).raise_for_status()
    assert_error(response, 400, "/v3/REST/contactmetadata", "base URL")
    assert "List ID" not in response.json()["message"]


def mailjet_bodies_since(stack: Stack, last: int, path: str) -> list[Any]:
    """The request bodies the fake Mailjet received at `path` after the request numbered `last`."""
    response = httpx.get(f"{stack.mailjet_url}/_emulator/requests", params={"limit": 10_000}, timeout=10)
    response.raise_for_status()
    entries = sorted(response.json()["requests"], key=lambda entry: entry["id"])
    return [entry["body"] for entry in entries if entry["id"] > last and entry["path"] == path]


def _answer_with_a_mailjet_fault(stack: Stack, status: int) -> httpx.Response:
    faults = f"{stack.mailjet_url}/_emulator/faults"
    rule = {"method": "POST", "path": f"/v3/REST/contactslist/{LIST_ID}/managecontact", "status": status, "times": 1}
    assert httpx.post(faults, json=rule, timeout=10).status_code < 300
    try:
        return post(stack, identify(unique_email()))
    finally:
        httpx.delete(faults, timeout=10).raise_for_status()


def test_a_property_mailjet_refuses_to_define_is_skipped_and_the_rest_of_the_update_kept(stack: Stack) -> None:
    # One property definition refused (400: a name the real Mailjet will not take, whose rules are
    # undocumented) was a 400 for the whole identify: no contact, no other trait, and Segment drops it.
    email = unique_email()
    assert post(stack, identify(email)).status_code == 200  # segment_user_id defined before the fault
    refused, kept = f"it_refused_{uuid.uuid4().hex[:8]}", f"it_kept_{uuid.uuid4().hex[:8]}"
    assert post(stack, identify(unique_email(), {kept: "yes"})).status_code == 200
    faults = f"{stack.mailjet_url}/_emulator/faults"
    rule = {"method": "POST", "path": "/v3/REST/contactmetadata", "status": 400, "times": 1}
    assert httpx.post(faults, json=rule, timeout=10).status_code < 300
    try:
        response = post(stack, identify(email, {refused: "no", kept: "still"}))
    finally:
        httpx.delete(faults, timeout=10).raise_for_status()
    assert response.status_code == 200, response.text
    [skipped] = response.json()["skipped"]
    assert skipped["trait"] == refused and skipped["reason"].startswith(f"Mailjet refused to define property {refused!r}: ")
    data = mailjet_get(stack, f"contactdata/{email}").json()["Data"][0]["Data"]
    assert {"Name": kept, "Value": "still"} in data and all(entry["Name"] != refused for entry in data)


@pytest.mark.parametrize("status", [401, 403, 503])
def test_a_property_definition_refused_for_the_account_or_an_outage_still_fails_the_identify(stack: Stack, status: int) -> None:
    faults = f"{stack.mailjet_url}/_emulator/faults"
    rule = {"method": "POST", "path": "/v3/REST/contactmetadata", "status": status, "times": 1}
    assert httpx.post(faults, json=rule, timeout=10).status_code < 300
    try:
        response = post(stack, identify(unique_email(), {f"it_new_{uuid.uuid4().hex[:8]}": 1}))
    finally:
        httpx.delete(faults, timeout=10).raise_for_status()
    assert response.status_code == status, response.text


@pytest.mark.parametrize("status", [429, 500, 502])
def test_mailjet_rate_limiting_or_failing_is_503_so_segment_retries(stack: Stack, status: int) -> None:
    # Segment retries 429 and 5xx but 501 (reference/segment.md §5.1); answered 400, the contact is dropped.
    assert_error(_answer_with_a_mailjet_fault(stack, status), 503, "temporarily unavailable", f"Mailjet {status}")


def test_mailjet_refusing_the_account_is_403(stack: Stack) -> None:
    # reference/segment.md §5.2: 403 forbidden, not retried; a 503 would retry what needs a person.
    assert_error(_answer_with_a_mailjet_fault(stack, 403), 403, "refused this account access")


def test_a_body_over_a_megabyte_is_400(stack: Stack) -> None:
    message = identify(unique_email(), {f"it_k{index}": "x" * 200 for index in range(6000)})
    assert_error(post(stack, message), 400, "larger than 1048576 bytes")


@pytest.mark.parametrize("message", [{"messageId": "m", "traits": {"email": "a@example.com"}}, {"type": "Identify", "traits": {"email": "a@example.com"}}])
def test_a_message_of_no_segment_type_is_400_not_501(stack: Stack, message: dict[str, Any]) -> None:
    # 501 says "a call type this destination does not support"; a message with no type (or none of
    # Segment's) is malformed, a 400 (reference/segment.md §5.2).
    assert_error(post(stack, message), 400, "unknown message type", "expected identify")


def test_a_property_is_sent_as_mailjet_spells_it(stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:8]
    mailjet_send(stack, "POST", "contactmetadata", {"Name": f"It_Spelled_{suffix}", "Datatype": "str", "NameSpace": "static"})
    email = unique_email()
    last = last_mailjet_call(stack)
    response = post(stack, identify(email, {f"it_spelled_{suffix}": "gold"}))
    assert response.status_code == 200, response.text
    assert {"name": f"It_Spelled_{suffix}", "trait": f"it_spelled_{suffix}", "datatype": "str", "value": "gold"} in response.json()["properties"]
    [body] = mailjet_bodies_since(stack, last, f"/v3/REST/contactslist/{LIST_ID}/managecontact")
    assert body["Properties"][f"It_Spelled_{suffix}"] == "gold"
    assert f"it_spelled_{suffix}" not in body["Properties"]
    # Nothing is created for the trait (segment_user_id may be, when this test runs first).
    assert [created for created in response.json()["createdProperties"] if created["name"] != "segment_user_id"] == []


def test_a_property_created_for_a_trait_is_static_and_typed(stack: Stack) -> None:
    # reference/mailjet.md /contactmetadata: {"Datatype":"str","Name":"first_name","NameSpace":"static"}.
    name = f"it_created_{uuid.uuid4().hex[:8]}"
    last = last_mailjet_call(stack)
    assert post(stack, identify(unique_email(), {name: 3})).status_code == 200
    # Only this trait's creation is looked at: run first (alone, or first on an xdist worker), the
    # destination also reads the definitions (a GET, no body) and creates segment_user_id.
    created = [body for body in mailjet_bodies_since(stack, last, "/v3/REST/contactmetadata") if isinstance(body, dict) and body.get("Name") == name]
    assert created == [{"Name": name, "Datatype": "int", "NameSpace": "static"}]


def _status_line_after_sending_all(url: str, headers: dict[str, str], body: bytes) -> str:
    """POST `body` whole before reading anything, as a client that ignores an early answer does."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        return sock.recv(65536).split(b"\r\n", 1)[0].decode()


def test_a_body_far_over_the_cap_gets_its_400_not_a_reset_connection(stack: Stack) -> None:
    # Were the destination to stop reading at the cap, uvicorn would close a `Connection: close`
    # socket with the rest unread, and the client, still sending, would see a reset instead of the
    # answer. A reset is racy, so the body (well past the socket buffers) is sent several times.
    body = json.dumps(identify(unique_email(), {"it_big": "x" * (8 * MAX_BODY_BYTES)})).encode()
    headers = segment_headers() | {"Connection": "close"}
    for _ in range(5):
        assert _status_line_after_sending_all(stack.destination_url, headers, body) == "HTTP/1.1 400 Bad Request"


def test_a_bug_is_answered_500_saying_the_connection_closes_and_the_next_request_is_served() -> None:
    # Starlette raises the error again after the handler's answer and uvicorn closes the
    # connection: without `Connection: close`, Segment's next request on it met a reset.
    class BrokenKeys:
        def account_for(self, auth_key: str) -> MailjetAccount | None:
            raise RuntimeError("planted")

    loop, runner, served = serve_in_background({"destination": create_app(BrokenKeys())})
    try:
        with httpx.Client(base_url=served["destination"], timeout=30) as client:
            for _ in range(3):
                answer = client.post("/", json=identify(unique_email()), headers=segment_headers())
                assert (answer.status_code, answer.json(), answer.headers["connection"]) == (
                    500, {"message": "internal error in the Mailjet destination: RuntimeError"}, "close")
    finally:
        loop.run(runner.stop())
        loop.close()
