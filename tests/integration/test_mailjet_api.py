"""The fake Mailjet over real HTTP: the official `mailjet_rest` client, and raw httpx for exact shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from mailjet_rest import Client
from mailjet_rest.errors import DoesNotExistError, MailjetAuthError, ValidationError
from starlette.requests import Request

import contracts
from emulator.common.clock import Clock
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet import routes
from emulator.mailjet.openapi import openapi_document

from .conftest import StartApps, lone_mailjet, reset_then_no_500s

CONFIG = BundleConfig(mailjet_api_key="mj-key", mailjet_secret_key="mj-secret", auth_key="seg-auth-key")


@dataclass
class Server:
    url: str
    http: httpx.Client

    def client(self, **kwargs: Any) -> Client:
        return Client(auth=(CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key), api_url=f"{self.url}/", **kwargs)

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"/_emulator/{path}", **kwargs)


@pytest.fixture(scope="module")
def server(serve: StartApps) -> Iterator[Server]:
    with lone_mailjet(serve, CONFIG) as (url, http):
        yield Server(url, http)


@pytest.fixture(autouse=True)
def fresh(server: Server) -> Iterator[None]:
    yield from reset_then_no_500s(server.http)


def data(response: Any) -> list[dict[str, Any]]:
    return response.json()["Data"]


def wait_for(predicate: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------- official client


def test_fresh_account_has_list_1(server: Server) -> None:
    lists = data(server.client().contactslist.get())
    assert [(l["ID"], l["Name"]) for l in lists] == [(1, "segjet")]
    assert contracts.validate("mailjet.contactslist", lists[0]) == []


def test_wrong_key_raises_auth_error(server: Server) -> None:
    client = Client(auth=("mj-key", "wrong"), api_url=f"{server.url}/")
    with pytest.raises(MailjetAuthError) as raised:
        client.contact.get()
    assert raised.value.status_code == 401


def test_contact_create_get_update_and_duplicate(server: Server) -> None:
    mj = server.client()
    created = mj.contact.create(data={"Email": "John.Doe+x@example.com", "Name": "John", "IsExcludedFromCampaigns": "true"})
    assert created.status_code == 201
    contact = data(created)[0]
    assert contracts.validate("mailjet.contact", contact) == []
    assert contact["IsExcludedFromCampaigns"] is True
    by_email = data(mj.contact.get(id="john.doe+x@example.com"))[0]
    assert by_email["ID"] == contact["ID"]
    assert data(mj.contact.update(id=contact["ID"], data={"Name": "Johnny"}))[0]["Name"] == "Johnny"
    assert mj.contact.update(id=contact["ID"], data={"Name": "Johnny"}).status_code == 304
    with pytest.raises(ValidationError, match='MJ18 A Contact resource with value "John.Doe\\+x@example.com" for Email already exists.'):
        mj.contact.create(data={"Email": "John.Doe+x@example.com"})
    with pytest.raises(DoesNotExistError, match="Object not found"):
        mj.contact.get(id=999)


def test_contactslist_crud(server: Server) -> None:
    mj = server.client()
    created = data(mj.contactslist.create(data={"Name": "newsletter"}))[0]
    assert created["ID"] == 2 and created["SubscriberCount"] == 0
    assert data(mj.contactslist.get(id=2))[0]["Name"] == "newsletter"
    assert data(mj.contactslist.update(id=2, data={"Name": "weekly"}))[0]["Name"] == "weekly"
    assert [l["ID"] for l in data(mj.contactslist.get(filters={"Name": "weekly"}))] == [2]
    assert mj.contactslist.delete(id=2).status_code == 204
    with pytest.raises(DoesNotExistError):
        mj.contactslist.get(id=2)
    with pytest.raises(ValidationError, match="Object properties invalid"):
        mj.contactslist.create(data={"Name": ""})


def test_managecontact_with_properties_then_contactdata_as_strings(server: Server) -> None:
    mj = server.client()
    for name, datatype in [("age", "int"), ("vip", "bool"), ("score", "float"), ("signup", "datetime"), ("plan", "str")]:
        created = mj.contactmetadata.create(data={"Name": name, "Datatype": datatype, "NameSpace": "static"})
        assert created.status_code == 201
        assert contracts.validate("mailjet.contactmetadata", data(created)[0]) == []
    body = {"Email": "ann@example.com", "Name": "Ann", "Action": "addnoforce",
            "Properties": {"age": 42, "vip": True, "score": 1.5, "signup": "2024-01-02T03:04:05Z", "plan": "pro"}}
    assert contracts.validate("mailjet.managecontact.request", body) == []
    response = mj.contactslist_managecontact.create(id=1, data=body)
    assert response.status_code == 201
    assert contracts.validate("mailjet.managecontact.response", response.json()) == []
    contact_id = data(response)[0]["ContactID"]
    values = data(mj.contactdata.get(id="ann@example.com"))[0]
    assert contracts.validate("mailjet.contactdata", values) == []
    assert values["ID"] == contact_id
    assert {d["Name"]: d["Value"] for d in values["Data"]} == {
        "age": "42", "vip": "true", "score": "1.5", "signup": "2024-01-02T03:04:05Z", "plan": "pro"}
    recipients = data(mj.listrecipient.get(filters={"ContactsList": 1, "ContactEmail": "ann@example.com"}))
    assert len(recipients) == 1 and recipients[0]["IsUnsubscribed"] is False
    assert contracts.validate("mailjet.listrecipient", recipients[0]) == []


def test_managecontact_errors(server: Server) -> None:
    mj = server.client()
    mj.contactmetadata.create(data={"Name": "age", "Datatype": "int"})
    with pytest.raises(ValidationError) as raised:
        mj.contactslist_managecontact.create(id=1, data={"Email": "a@example.com", "Action": "addnoforce",
                                                         "Properties": {"nope": "x", "age": "old"}})
    assert raised.value.response_body and '"Property not defined"' in raised.value.response_body
    assert '"Property type does not match definition"' in raised.value.response_body
    with pytest.raises(ValidationError, match="Object properties invalid"):
        mj.contactslist_managecontact.create(id=1, data={"Email": "a@example.com"})
    with pytest.raises(DoesNotExistError):
        mj.contactslist_managecontact.create(id=77, data={"Email": "a@example.com", "Action": "addforce"})


def test_contactdata_update_and_undefined_key(server: Server) -> None:
    mj = server.client()
    mj.contact.create(data={"Email": "b@example.com"})
    mj.contactmetadata.create(data={"Name": "first_name", "Datatype": "str"})
    updated = mj.contactdata.update(id="b@example.com", data={"Data": [{"Name": "first_name", "Value": "Bea"}]})
    assert updated.status_code == 200
    assert data(updated)[0]["Data"] == [{"Name": "first_name", "Value": "Bea"}]
    assert mj.contactdata.update(id="b@example.com", data={"Data": [{"name": "first_name", "value": "Bea"}]}).status_code == 304
    with pytest.raises(ValidationError, match='Invalid key name: "createdate"'):
        mj.contactdata.update(id="b@example.com", data={"Data": [{"Name": "createdate", "Value": "x"}]})


def test_contact_lists_of_a_contact(server: Server) -> None:
    mj = server.client()
    mj.contactslist.create(data={"Name": "second"})
    contact_id = data(mj.contact.create(data={"Email": "c@example.com"}))[0]["ID"]
    response = mj.contact_managecontactslists.create(
        id=contact_id, data={"ContactsLists": [{"ListID": 1, "Action": "addforce"}, {"ListID": 2, "Action": "unsub"}]})
    assert response.status_code == 201
    lists = data(mj.contact_getcontactslists.get(id=contact_id))
    assert {(l["ListID"], l["IsUnsub"]) for l in lists} == {(1, False), (2, True)}
    with pytest.raises(ValidationError) as raised:
        mj.contact_managecontactslists.create(id=contact_id, data={"ContactsLists": [{"ListID": 99, "Action": "addforce"}]})
    assert "listID missing or not valid" in raised.value.response_body
    with pytest.raises(DoesNotExistError):
        mj.contact_managecontactslists.create(id=424242, data={"ContactsLists": [{"ListID": 1, "Action": "addforce"}]})


def test_listrecipient_crud(server: Server) -> None:
    mj = server.client()
    mj.contact.create(data={"Email": "d@example.com"})
    created = mj.listrecipient.create(data={"ContactAlt": "d@example.com", "ListID": 1})
    assert created.status_code == 201
    recipient_id = data(created)[0]["ID"]
    with pytest.raises(ValidationError, match="A duplicate ListRecipient already exists."):
        mj.listrecipient.create(data={"ContactAlt": "d@example.com", "ListID": 1})
    unsubscribed = data(mj.listrecipient.update(id=recipient_id, data={"IsUnsubscribed": True}))[0]
    assert unsubscribed["IsUnsubscribed"] is True and unsubscribed["UnsubscribedAt"]
    assert [r["ID"] for r in data(mj.listrecipient.get(filters={"Unsub": "true"}))] == [recipient_id]
    assert mj.listrecipient.delete(id=recipient_id).status_code == 204
    with pytest.raises(ValidationError, match='alternate key value "nobody@example.com" could not be resolved'):
        mj.listrecipient.create(data={"ContactAlt": "nobody@example.com", "ListID": 1})


def test_eventcallbackurl_crud(server: Server) -> None:
    mj = server.client()
    created = mj.eventcallbackurl.create(data={"EventType": "open", "Url": "http://127.0.0.1:9/hook", "Version": 2})
    assert created.status_code == 201
    callback = data(created)[0]
    assert contracts.validate("mailjet.eventcallbackurl", callback) == []
    assert [c["ID"] for c in data(mj.eventcallbackurl.get(filters={"EventType": 6}))] == [callback["ID"]]
    assert data(mj.eventcallbackurl.get(id="open|false"))[0]["ID"] == callback["ID"]
    assert data(mj.eventcallbackurl.update(id=callback["ID"], data={"Version": 1}))[0]["Version"] == 1
    assert mj.eventcallbackurl.delete(id=callback["ID"]).status_code == 204
    with pytest.raises(ValidationError):
        mj.eventcallbackurl.create(data={"EventType": "delivered", "Url": "http://127.0.0.1:9/hook"})


def test_paging_with_limit_offset_sort_and_count_only(server: Server) -> None:
    mj = server.client()
    for index in range(25):
        mj.contact.create(data={"Email": f"user{index:02d}@example.com"})
    first = mj.contact.get().json()
    assert (first["Count"], first["Total"], len(first["Data"])) == (10, 10, 10)  # the page's, documented
    seen = []
    for offset in range(0, 25, 7):
        seen += [c["Email"] for c in data(mj.contact.get(filters={"Limit": 7, "Offset": offset}))]
    assert seen == [f"user{i:02d}@example.com" for i in range(25)]
    descending = data(mj.contact.get(filters={"Sort": "ID DESC", "Limit": 3}))
    assert [c["Email"] for c in descending] == ["user24@example.com", "user23@example.com", "user22@example.com"]
    assert mj.contact.get(filters={"Limit": 0}).json()["Count"] == 25
    assert mj.contact.get(filters={"countOnly": 1}).json() == {"Count": 25, "Data": [], "Total": 25}


# Each REST listing with one row: Sort takes every field of its rows and refuses any other,
# whether or not the listing has rows (it used to read the names from the first row: 200 when empty).
LISTINGS = {
    "/v3/REST/contact": routes.CONTACT_FIELDS,
    "/v3/REST/contactslist": routes.LIST_FIELDS,
    "/v3/REST/listrecipient": routes.RECIPIENT_FIELDS,
    "/v3/REST/contactmetadata": routes.PROPERTY_FIELDS,
    "/v3/REST/contactdata": routes.CONTACT_DATA_FIELDS,
    "/v3/REST/eventcallbackurl": routes.CALLBACK_FIELDS,
    "/v3/REST/contact/s@example.com/getcontactslists": routes.CONTACT_LISTS_FIELDS,
}


def test_sort_takes_the_fields_of_each_listing_and_refuses_others_even_when_empty(server: Server) -> None:
    http = server.http
    # Empty first (list 1 exists from the start: contactslist is never empty, the others are).
    paths = list(LISTINGS)
    for path in [paths[0], *paths[2:6]]:
        assert http.get(f"{path}?Sort=Nope").status_code == 400, path
        assert http.get(f"{path}?Sort=ID+DESC").status_code == 200, path
    assert http.post("/v3/REST/contact", json={"Email": "s@example.com"}).status_code == 201
    assert http.get("/v3/REST/contact/s@example.com/getcontactslists?Sort=Nope").status_code == 400
    assert http.get("/v3/REST/contact/s@example.com/getcontactslists?Sort=ListID").status_code == 200
    assert http.post("/v3/REST/contactmetadata", json={"Name": "tier", "Datatype": "str"}).status_code == 201
    assert http.post("/v3/REST/contactslist/1/managecontact",
                     json={"Email": "s@example.com", "Action": "addnoforce", "Properties": {"tier": "pro"}}).status_code == 201
    assert http.post("/v3/REST/eventcallbackurl", json={"EventType": "open", "Url": "http://127.0.0.1:9/h"}).status_code == 201
    for path, fields in LISTINGS.items():
        rows = http.get(path).json()["Data"]
        assert len(rows) == 1 and sorted(rows[0]) == sorted(fields), path  # the route names its rows' fields
        for name in rows[0]:
            for sort in (name, f"{name.upper()} DESC"):
                assert http.get(path, params={"Sort": sort}).status_code == 200, (path, sort)
        error = http.get(path, params={"Sort": "Nope"})
        assert error.status_code == 400 and error.json()["ErrorMessage"] == 'Sort on property "Nope" is not supported'


def test_managemanycontacts_job_completes_on_the_clock(server: Server) -> None:
    mj = server.client()
    mj.contactmetadata.create(data={"Name": "age", "Datatype": "int"})
    body = {"Action": "addnoforce", "Contacts": [{"Email": "e1@example.com", "Properties": {"age": 3}},
                                                 {"Email": "e2@example.com", "Name": "E2"}]}
    assert contracts.validate("mailjet.managemanycontacts.request", body) == []
    response = mj.contactslist_managemanycontacts.create(id=1, data=body)
    assert response.status_code == 201
    job_id = data(response)[0]["JobID"]
    job = data(mj.contactslist_managemanycontacts.get(id=1, action_id=job_id))[0]
    assert contracts.validate("mailjet.managemanycontacts.job", job) == []
    assert job["Status"] in ("In Progress", "Completed")
    # Real time moves the virtual clock too: poll until the 1 s job completes.
    done = wait_for(lambda: [j for j in data(mj.contactslist_managemanycontacts.get(id=1, action_id=job_id)) if j["Status"] != "In Progress"])
    assert done[0]["Status"] == "Completed" and done[0]["Count"] == 2
    assert mj.contact.get(filters={"ContactsList": 1}).json()["Total"] == 2


def test_contact_managemanycontacts_errors_only_in_the_job_and_clock_advance(server: Server) -> None:
    server.control("POST", "clock", json={"set": "2030-01-01T00:00:00Z"})
    mj = server.client()
    mj.contactslist.create(data={"Name": "second"})
    body = {"ContactsLists": [{"ListID": 1, "Action": "addforce"}, {"ListID": 2, "Action": "addnoforce"}],
            "Contacts": [{"Email": "ok@example.com"}, {"Email": "bad@example.com", "Properties": {"undefined": 1}}]}
    job_id = data(mj.contact_managemanycontacts.create(data=body))[0]["JobID"]
    advanced = server.control("POST", "clock", json={"advance": "2s"}).json()
    assert advanced["fired"] >= 1
    job = data(mj.contact_managemanycontacts.get(action_id=job_id))[0]
    assert job["Status"] == "Error" and job["Count"] == 1
    assert job["Error"] == "property not defined"
    errors = httpx.get(job["ErrorFile"].replace("http://127.0.0.1:9", server.url), auth=server.http.auth).json()
    assert errors == [{"Index": 1, "Email": "bad@example.com", "Error": "property not defined"}]
    assert len(data(mj.contact_getcontactslists.get(id="ok@example.com"))) == 2


def test_a_job_run_late_by_a_clock_jump_is_stamped_with_its_due_time(server: Server) -> None:
    http = server.http
    second = data(http.post("/v3/REST/contactslist", json={"Name": "second"}))[0]["ID"]
    data(http.post("/v3/REST/contact", json={"Email": "old@example.com"}))
    body = {"ContactsLists": [{"ListID": 1, "Action": "addforce"}, {"ListID": second, "Action": "unsub"}],
            "Contacts": [{"Email": "late@example.com"}, {"Email": "old@example.com", "Name": "Old", "IsExcludedFromCampaigns": True}]}
    job_id = data(http.post("/v3/REST/contact/managemanycontacts", json=body))[0]["JobID"]
    server.control("POST", "clock", json={"advance": "1h"})
    job = data(http.get(f"/v3/REST/contact/managemanycontacts/{job_id}"))[0]
    assert job["Status"] == "Completed"
    # The job ran when it was due, one second after it started, whenever the clock got there.
    assert datetime.fromisoformat(job["JobEnd"]) - datetime.fromisoformat(job["JobStart"]) == timedelta(seconds=1)
    late, old = (data(http.get(f"/v3/REST/contact/{email}"))[0] for email in ("late@example.com", "old@example.com"))
    assert late["CreatedAt"] == job["JobEnd"]
    assert (old["LastUpdateAt"], old["ExclusionFromCampaignsUpdatedAt"]) == (job["JobEnd"], job["JobEnd"])
    for contact in (late, old):
        recipients = data(http.get("/v3/REST/listrecipient", params={"Contact": contact["ID"]}))
        assert {r["SubscribedAt"] for r in recipients} == {job["JobEnd"]}
        assert [r["UnsubscribedAt"] for r in recipients if r["ListID"] == second] == [job["JobEnd"]]


def test_a_job_whose_list_was_deleted_before_it_ran_reports_each_contact(server: Server) -> None:
    http = server.http
    doomed = data(http.post("/v3/REST/contactslist", json={"Name": "doomed"}))[0]["ID"]
    body = {"ContactsLists": [{"ListID": 1, "Action": "addforce"}, {"ListID": doomed, "Action": "addforce"}],
            "Contacts": [{"Email": "a@example.com"}]}
    job_id = data(http.post("/v3/REST/contact/managemanycontacts", json=body))[0]["JobID"]
    assert http.delete(f"/v3/REST/contactslist/{doomed}").status_code == 204
    server.control("POST", "clock", json={"advance": "2s"})
    job = data(http.get(f"/v3/REST/contact/managemanycontacts/{job_id}"))[0]
    assert (job["Status"], job["Count"], job["Error"]) == ("Error", 0, "listID missing or not valid")
    errors = httpx.get(job["ErrorFile"].replace("http://127.0.0.1:9", server.url), auth=server.http.auth).json()
    assert errors == [{"Index": 0, "Email": "a@example.com", "Error": "listID missing or not valid"}]
    # As for a property deleted before the job ran: the failed contact is not created.
    assert http.get("/v3/REST/contact/a@example.com").status_code == 404


def test_send_v31_with_the_official_client(server: Server) -> None:
    mj = server.client(version="v3.1")
    body = {"Messages": [{"From": {"Email": "pilot@example.com", "Name": "Pilot"},
                          "To": [{"Email": "passenger@example.com", "Name": "Passenger"}],
                          "Cc": [{"Email": "cc@example.com"}],
                          "Subject": "Your flight", "TextPart": "Hello", "HTMLPart": "<h3>Hello</h3>",
                          "CustomID": "ticket-1", "EventPayload": "row,15"}]}
    assert contracts.validate("mailjet.send.request", body) == []
    response = mj.send.create(data=body)
    assert response.status_code == 200
    result = response.json()
    assert contracts.validate("mailjet.send.response", result) == []
    sent = result["Messages"][0]
    assert sent["Status"] == "success" and sent["CustomID"] == "ticket-1"
    message_id = sent["To"][0]["MessageID"]
    assert sent["To"][0]["MessageHref"].endswith(f"/v3/REST/message/{message_id}")
    stored = server.control("GET", "messages").json()["messages"]
    assert [(m["to"]["Email"], m["recipient_type"]) for m in stored] == [("passenger@example.com", "To"), ("cc@example.com", "Cc")]
    assert stored[0]["MessageID"] == message_id and stored[0]["EventPayload"] == "row,15" and stored[0]["sandbox"] is False
    assert stored[0]["events"] == [] and stored[0]["status"] == "queued"
    # Unknown recipients became contacts.
    assert data(server.client().contact.get(id="passenger@example.com"))[0]["Name"] == "Passenger"


def test_send_v31_sandbox_and_errors(server: Server) -> None:
    mj = server.client(version="v3.1")
    sandbox = mj.send.create(data={"SandboxMode": True, "Messages": [
        {"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}], "TextPart": "x"}]}).json()
    recipient = sandbox["Messages"][0]["To"][0]
    assert (recipient["MessageID"], recipient["MessageUUID"]) == (0, "")
    assert server.control("GET", "messages").json()["messages"][0]["sandbox"] is True
    with pytest.raises(ValidationError, match='At least "HTMLPart", "TextPart" or "TemplateID" must be provided.'):
        mj.send.create(data={"Messages": [{"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}]}]})
    with pytest.raises(ValidationError):
        mj.send.create(data={"InvalidField": True})


# ---------------------------------------------------------------- raw HTTP


def test_401_body_and_header(server: Server) -> None:
    response = httpx.get(f"{server.url}/v3/REST/contact", auth=("mj-key", "nope"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json() == {
        "ErrorInfo": "",
        "ErrorMessage": "API key authentication/authorization failure. You may be unauthorized to access the API or your API key may be expired. Visit API keys management section to check your keys.",
        "StatusCode": 401,
    }
    assert httpx.get(f"{server.url}/v3/REST/contact").status_code == 401
    v31 = httpx.post(f"{server.url}/v3.1/send", json={}, auth=("x", "y"))
    assert v31.status_code == 401 and contracts.validate("mailjet.send.error", v31.json()) == []


def test_contact_has_no_email_filter_so_it_is_ignored_as_mailjet_ignores_it(server: Server) -> None:
    # Observed (reference §1): GET /contact?Email= answered the first contacts, not that one.
    http = server.http
    for email in ("a@example.com", "b@example.com"):
        assert http.post("/v3/REST/contact", json={"Email": email}).status_code == 201
    assert http.get("/v3/REST/contact?Email=b@example.com").json()["Total"] == 2
    assert http.get("/v3/REST/contact/b@example.com").json()["Data"][0]["Email"] == "b@example.com"


def test_paths_and_keys_are_case_insensitive_and_ids_percent_decoded(server: Server) -> None:
    http = server.http
    created = http.post("/V3/rest/ContactsList/1/ManageContact", json={"email": "p+q@example.com", "action": "addforce", "name": "PQ"})
    assert created.status_code == 201
    assert http.get("/v3/REST/contact/p%2Bq%40example.com").json()["Data"][0]["Name"] == "PQ"
    assert http.get("/v3/REST/contact/p+q@example.com").json()["Data"][0]["Name"] == "PQ"
    # An old client's unencoded `+` in a query string still finds the address.
    assert http.get("/v3/REST/listrecipient?ContactsList=1&ContactEmail=p+q@example.com").json()["Total"] == 1
    assert http.get("/v3/REST/listrecipient?contactslist=1&CONTACTEMAIL=p%2Bq%40example.com").json()["Total"] == 1
    assert http.get("/v3/REST/contact?Sort=ID+DESC").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v3/REST/contact", {"Email": "not-an-email"}, 400, "Object properties invalid"),
        ("POST", "/v3/REST/contact", {"Email": "x@example.com", "firstname": "X"}, 400,
         'Invalid json input: object ""->"TContact" has no property "firstname"'),
        ("POST", "/v3/REST/contact", {"Email": "x@example.com", "Name": "n" * 256}, 400, "Object properties invalid"),
        ("POST", "/v3/REST/contactslist", {"Name": ""}, 400, "Object properties invalid"),
        ("POST", "/v3/REST/contactslist/1/managecontact", {"Email": "x@example.com"}, 400, "Object properties invalid"),
        ("POST", "/v3/REST/contactslist/42/managecontact", {"Email": "x@example.com", "Action": "addforce"}, 404, "Object not found"),
        ("POST", "/v3/REST/contactmetadata", {"Name": "x", "Datatype": "string"}, 400, "Object properties invalid"),
        ("DELETE", "/v3/REST/contact/1", None, 401, "Operation not allowed"),  # observed (php#98)
        ("PATCH", "/v3/REST/contactslist/1", {}, 405, "Method not allowed"),
        ("GET", "/v3/REST/nosuchresource", None, 400, 'Unknown resource: "nosuchresource"'),
        # Mailjet's own resources segjet does not serve say so, rather than that they are unknown.
        ("POST", "/v3/REST/csvimport", {"ContactsListID": 1, "DataID": 1}, 400,
         'Resource "csvimport" is not emulated by segjet (README "Fidelity" lists what is)'),
        ("GET", "/v3/REST/Message?CustomID=x", None, 400,
         'Resource "Message" is not emulated by segjet (README "Fidelity" lists what is)'),
        ("POST", "/v3/REST/contactslist/1/ImportList", {"Action": "addforce", "ListID": 2}, 400,
         'Action "ImportList" on resource "contactslist" is not emulated by segjet (README "Fidelity" lists what is)'),
        ("POST", "/v3/DATA/contactslist/1/CSVData/text:plain", None, 400,
         "The CSV import (/v3/DATA/contactslist/{id}/CSVData, /v3/REST/csvimport) is not emulated by segjet;"
         " use /v3/REST/contactslist/{id}/managemanycontacts"),
        ("GET", "/v3/REST/contact/1/history", None, 400, 'Unknown action on resource "contact": "1/history"'),
        ("POST", "/v3/REST/contactslist/1/managecontact/2", {}, 400, 'Unknown action on resource "contactslist": "1/managecontact/2"'),
        ("GET", "/v3/REST/contact/12345", None, 404, "Object not found"),
        ("GET", "/v3.1/REST/contact", None, 404, "Object not found"),
        ("POST", "/v3/send", {"FromEmail": "a@example.com"}, 400, None),
    ],
)
def test_error_statuses_and_bodies(server: Server, method: str, path: str, body: Any, status: int, message: str | None) -> None:
    response = server.http.request(method, path, json=body)
    assert response.status_code == status
    assert contracts.validate("mailjet.error", response.json()) == []
    if message is not None:
        assert response.json()["ErrorMessage"] == message


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_bodies_that_are_not_json_objects(server: Server, raw: bytes) -> None:
    response = server.http.post("/v3/REST/contact", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["ErrorMessage"].startswith("Invalid json input")
    send = server.http.post("/v3.1/send", content=raw, headers={"Content-Type": "application/json"})
    assert send.status_code == 400 and send.json()["ErrorCode"] == "mj-0002"


def test_send_v31_per_message_errors_in_their_real_shape(server: Server) -> None:
    many = [{"Email": f"r{i}@example.com"} for i in range(51)]
    response = server.http.post("/v3.1/send", json={"Messages": [
        {"From": {"Email": "a@example.com"}, "To": [{"Email": "x"}], "TextPart": "t"},
        {"From": {"Email": "a@example.com"}, "To": many, "TextPart": "t"},
        {"From": {"Email": "a@example.com"}, "To": [{"Email": "ok@example.com"}], "TextPart": "t", "Subject": "s" * 256},
    ]})
    assert response.status_code == 400
    result = response.json()
    assert contracts.validate("mailjet.send.response", result) == []
    codes = [[e["ErrorCode"] for e in m["Errors"]] for m in result["Messages"]]
    assert codes == [["mj-0013"], ["send-0015"], ["mj-0006"]]
    assert result["Messages"][0]["Errors"][0]["ErrorMessage"] == '"x" is an invalid email address.'
    assert result["Messages"][0]["Errors"][0]["ErrorRelatedTo"] == ["To[0].Email"]


def test_app_connection_segment(server: Server) -> None:
    settings = server.control("GET", "app-connections/segment").json()
    assert settings == {"authenticationKey": "seg-auth-key", "listId": 1, "sendEvents": False, "writeKey": None,
                        "segmentUrl": "http://127.0.0.1:9/segment"}
    changed = server.control("PUT", "app-connections/segment", json={"writeKey": "wk", "sendEvents": True}).json()
    assert (changed["writeKey"], changed["sendEvents"], changed["listId"]) == ("wk", True, 1)
    bad_list = server.control("PUT", "app-connections/segment", json={"listId": 99})
    assert bad_list.status_code == 400 and "99" in bad_list.json()["error"]
    bad_type = server.control("PUT", "app-connections/segment", json={"sendEvents": "yes"})
    assert bad_type.status_code == 400 and "error" in bad_type.json()
    # Forwards sign with the write key as Basic auth's user name and post to segmentUrl + "/v1/batch":
    # a colon, a query or a fragment was accepted, and every email event then failed.
    refused = {
        "writeKey": ("abc:def", "writeKey must not contain ':', a colon, which Basic auth could not carry"),
        "segmentUrl": ("http://127.0.0.1:9/?src=mj", "segmentUrl must carry no query nor fragment: forwards post to its /v1/batch"),
    }
    for name, (value, error) in refused.items():
        answer = server.control("PUT", "app-connections/segment", json={name: value})
        assert (answer.status_code, answer.json()) == (400, {"error": error})
    for url in ("http://127.0.0.1:9/#x", "http://127.0.0.1:9/?", "http://127.0.0.1:9/#"):
        assert server.control("PUT", "app-connections/segment", json={"segmentUrl": url}).status_code == 400, url
    assert server.control("GET", "app-connections/segment").json() == {**changed, "segmentUrl": "http://127.0.0.1:9/segment"}
    proxied = server.control("PUT", "app-connections/segment", json={"segmentUrl": "http://127.0.0.1:9/proxy/segment/"})
    assert proxied.json()["segmentUrl"] == "http://127.0.0.1:9/proxy/segment"
    server.control("POST", "reset")
    assert server.control("GET", "app-connections/segment").json()["writeKey"] is None


NOT_TWO_KEYS = "api_key and secret_key must be non-empty strings"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"api_key": "k", "secret_key": "s", "name": "n"}, 400, "unknown field(s): name; known: api_key, secret_key"),
        ({"api_key": "k"}, 400, NOT_TWO_KEYS),
        ({"api_key": 7, "secret_key": "s"}, 400, NOT_TWO_KEYS),
        ({"api_key": "k", "secret_key": ""}, 400, NOT_TWO_KEYS),
        ({"api_key": "k:1", "secret_key": "s"}, 400, "api_key must not contain ':', a colon, which Basic auth could not carry"),
        ({"api_key": "mj-key", "secret_key": "s"}, 409, "an account with API key 'mj-key' already exists"),
    ],
)
def test_an_account_is_refused_with_the_status_of_its_problem(server: Server, body: dict[str, Any], status: int, error: str) -> None:
    answer = server.control("POST", "accounts", json=body)
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    assert [account["apiKey"] for account in server.control("GET", "accounts").json()["accounts"]] == ["mj-key"]


def test_the_newest_messages_come_last_and_limit_zero_gives_none(server: Server) -> None:
    mj = server.client(version="v3.1")
    for subject in ("one", "two", "three"):
        message = {"From": {"Email": "f@example.com"}, "To": [{"Email": "t@example.com"}], "Subject": subject, "TextPart": "x"}
        assert mj.send.create(data={"Messages": [message]}).status_code == 200

    def subjects(limit: int) -> list[str]:
        return [m["subject"] for m in server.control("GET", f"messages?limit={limit}").json()["messages"]]

    assert (subjects(2), subjects(0), subjects(5)) == (["two", "three"], [], ["one", "two", "three"])


def test_reset_gives_a_fresh_account(server: Server) -> None:
    mj = server.client()
    mj.contact.create(data={"Email": "gone@example.com"})
    mj.contactslist.create(data={"Name": "gone"})
    assert server.control("POST", "reset").json() == {"status": "ok", "service": "mailjet"}
    assert mj.contact.get().json()["Total"] == 0
    assert [l["ID"] for l in data(mj.contactslist.get())] == [1]
    assert server.control("GET", "health").json()["service"] == "mailjet"


# ---------------------------------------------------------------- found by the fuzzers (tests/fuzz)


def test_newline_in_an_id_is_answered_by_mailjet(server: Server) -> None:
    response = server.http.post("/v3/REST/contactslist/1%0A2/managecontact", json={"Email": "a@example.com", "Action": "addnoforce"})
    assert response.status_code == 404
    assert response.json() == {"ErrorInfo": "", "ErrorMessage": "Object not found", "StatusCode": 404}


def test_non_ascii_authorization_is_a_401(server: Server) -> None:
    response = httpx.get(f"{server.url}/v3/REST/contact", headers={"Authorization": "Basic \xe9".encode("latin-1")})
    assert response.status_code == 401 and response.json()["StatusCode"] == 401


def test_body_nested_too_deeply_is_a_400(server: Server) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    response = server.http.post("/v3/REST/contact", content=deep)
    assert response.status_code == 400 and set(response.json()) == {"ErrorInfo", "ErrorMessage", "StatusCode"}
    response = server.http.post("/v3.1/send", content=deep)
    assert response.status_code == 400 and response.json()["ErrorCode"] == "mj-0002"


# ---------------------------------------------------------------- found in review

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v3/REST/contact/%C2%B2", None, 404),
        ("GET", "/v3/REST/contact/%EF%BC%91", None, 404),  # a fullwidth 1 is not contact 1
        ("PUT", "/v3/REST/contact/%C2%B2", {"Name": "x"}, 404),
        ("GET", "/v3/REST/contact/%C2%B2/getcontactslists", None, 404),
        ("GET", "/v3/REST/contactslist/0_1", None, 404),
        ("GET", "/v3/REST/contactmetadata/%C2%B2", None, 404),
        ("GET", "/v3/REST/eventcallbackurl/%C2%B2", None, 404),
        ("GET", "/v3/REST/contact/managemanycontacts/%C2%B2", None, 404),
        ("GET", "/v3/REST/contactslist/1/managemanycontacts/%C2%B2", None, 404),
        ("GET", "/v3/REST/contactslist/%C2%B2/managemanycontacts/1", None, 404),
        ("GET", "/v3/DATA/batchjob/%C2%B2/x", None, 404),
        ("GET", "/v3/REST/contactdata/%C2%B2", None, 404),
        ("GET", f"/v3/REST/contact/{HUGE}", None, 404),
        ("GET", f"/v3/REST/contactmetadata/{HUGE}", None, 404),
        ("GET", f"/v3/REST/eventcallbackurl/{HUGE}", None, 404),
        ("GET", f"/v3/REST/contact/managemanycontacts/{HUGE}", None, 404),
        ("GET", f"/v3/REST/contact?ContactsList={HUGE}", None, 400),
        ("GET", "/v3/REST/contact?Limit=%EF%BC%91%EF%BC%92", None, 400),
        ("GET", "/v3/REST/contact?Offset=1_0", None, 400),
        ("GET", "/v3/REST/listrecipient?Contact=%C2%B2", None, 400),
        ("POST", "/v3/REST/listrecipient", {"ContactID": HUGE, "ListID": 1}, 400),
        ("POST", "/v3/REST/contact/managemanycontacts", {"ContactsLists": [{"ListID": HUGE, "Action": "addforce"}],
                                                         "Contacts": [{"Email": "a@example.com"}]}, 400),
        ("POST", "/v3/REST/eventcallbackurl", {"EventType": "open", "Url": "http://127.0.0.1:9/hook", "Version": HUGE}, 400),
    ],
)
def test_ids_that_are_not_ascii_digits_or_too_long(server: Server, method: str, path: str, body: Any, status: int) -> None:
    server.client().contact.create(data={"Email": "one@example.com"})
    response = server.http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"ErrorInfo", "ErrorMessage", "StatusCode"}


def test_control_message_ids_are_ascii_digits(server: Server) -> None:
    for raw in ("%C2%B2", HUGE, "1_0"):
        response = server.control("GET", f"email-events?MessageID={raw}")
        assert response.status_code == 400 and set(response.json()) == {"error"}, response.text
    sent = server.http.post("/v3.1/send", json={"Messages": [
        {"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}], "TextPart": "x"}]}).json()
    message_id = str(sent["Messages"][0]["To"][0]["MessageID"])
    fullwidth = "".join(chr(ord(digit) - ord("0") + ord("０")) for digit in message_id)
    for ref in (fullwidth, HUGE):
        response = server.control("POST", f"messages/{ref}/events", json={"event": "open"})
        assert response.status_code == 404 and set(response.json()) == {"error"}, response.text
    assert server.control("GET", f"email-events?MessageID={message_id}").json()["email_events"] == []
    response = server.control("PUT", "app-connections/segment", json={"listId": "１"})
    assert response.status_code == 400 and "listId must be an integer" in response.json()["error"]


def test_property_values_beyond_range_are_type_mismatches(server: Server) -> None:
    mj = server.client()
    mj.contactmetadata.create(data={"Name": "signup", "Datatype": "datetime"})
    mj.contactmetadata.create(data={"Name": "score", "Datatype": "float"})
    mj.contact.create(data={"Email": "c@example.com"})
    for name, value in [("signup", "0001-01-01T00:00:00+01:00"), ("signup", "9999-12-31T23:00:00-05:00"), ("score", "1_000")]:
        response = server.http.post("/v3/REST/contactslist/1/managecontact",
                                    json={"Email": "c@example.com", "Action": "addforce", "Properties": {name: value}})
        assert response.status_code == 400, response.text
        assert response.json()["ErrorInfo"] == {"Properties": [{name: "Property type does not match definition"}]}
        response = server.http.put("/v3/REST/contactdata/c@example.com", json={"Data": [{"Name": name, "Value": value}]})
        assert response.status_code == 400 and response.json()["ErrorMessage"] == "Object properties invalid", response.text
    earliest = server.http.put("/v3/REST/contactdata/c@example.com", json={"Data": [{"Name": "signup", "Value": "0001-01-01T01:00:00+01:00"}]})
    assert data(earliest)[0]["Data"] == [{"Name": "signup", "Value": "0001-01-01T00:00:00Z"}]


def test_job_with_a_datetime_out_of_range_ends_and_the_clock_keeps_running(server: Server) -> None:
    mj = server.client()
    mj.contactmetadata.create(data={"Name": "signup", "Datatype": "datetime"})
    body = {"Action": "addforce", "Contacts": [{"Email": "far@example.com", "Properties": {"signup": "0001-01-01T00:00:00+01:00"}},
                                               {"Email": "ok@example.com", "Properties": {"signup": "2024-01-01"}}]}
    job_id = data(mj.contactslist_managemanycontacts.create(id=1, data=body))[0]["JobID"]
    assert server.control("POST", "clock", json={"advance": "2s"}).status_code == 200
    job = data(mj.contactslist_managemanycontacts.get(id=1, action_id=job_id))[0]
    assert (job["Status"], job["Count"], job["Error"]) == ("Error", 1, "property type does not match definition")
    assert data(mj.contactdata.get(id="ok@example.com"))[0]["Data"] == [{"Name": "signup", "Value": "2024-01-01T00:00:00Z"}]
    # The clock still runs timers: a second job completes on real time alone.
    second = data(mj.contactslist_managemanycontacts.create(id=1, data={"Action": "addforce", "Contacts": [{"Email": "x@example.com"}]}))
    wait_for(lambda: data(mj.contactslist_managemanycontacts.get(id=1, action_id=second[0]["JobID"]))[0]["Status"] == "Completed")


def test_send_v31_refuses_an_email_ending_in_a_newline(server: Server) -> None:
    response = server.http.post("/v3.1/send", json={"Messages": [
        {"From": {"Email": "a@example.com"}, "To": [{"Email": "x@y.co\n"}], "TextPart": "t"}]})
    assert response.status_code == 400
    assert response.json()["Messages"][0]["Errors"][0]["ErrorCode"] == "mj-0013"
    assert server.http.get("/v3/REST/contact").json()["Total"] == 0


def test_send_v31_wrong_method_answers_the_v31_error_shape(server: Server) -> None:
    response = server.http.get("/v3.1/send")
    assert response.status_code == 405
    assert contracts.validate("mailjet.send.error", response.json()) == []
    assert response.json()["ErrorMessage"] == "Method not allowed"
    assert response.headers["Allow"] == "POST"


def test_a_405_names_the_methods_the_resource_takes(server: Server) -> None:
    # RFC 9110 §15.5.6: a 405 MUST carry Allow, the methods the target resource supports.
    for method, path, allowed in [
        ("PATCH", "/v3/REST/contact", "GET, HEAD, POST"),
        ("TRACE", "/v3/REST/contact", "GET, HEAD, POST"),
        ("PATCH", "/v3/REST/contactslist/1", "GET, HEAD, PUT, DELETE"),
        ("POST", "/v3/REST/contact/managemanycontacts/1", "GET, HEAD"),
        ("HEAD", "/v3/REST/contact/managemanycontacts", "POST"),
        ("TRACE", "/v3.1/send", "POST"),
    ]:
        response = server.http.request(method, path)
        assert (response.status_code, response.headers.get("Allow")) == (405, allowed), (method, path)


def test_head_is_answered_as_get_without_the_body(server: Server) -> None:
    # RFC 9110 §9.3.2: HEAD is GET without content; GET and HEAD are what every server supports (§9.1).
    get = server.http.get("/v3/REST/contactslist/1")
    head = server.http.head("/v3/REST/contactslist/1")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", get.headers["content-length"])
    assert server.http.head("/v3/REST/contactslist/987654").status_code == 404
    # The journal shows what crossed: no body went back to the HEAD.
    [journaled] = server.control("GET", "requests", params={"method": "HEAD", "path": "/v3/REST/contactslist/1"}).json()["requests"]
    assert (journaled["status"], journaled["response"]) == (200, "")
    # The job's ErrorFile, served outside /v3/REST, too.
    job = server.http.post("/v3/REST/contact/managemanycontacts", json={"Contacts": [{"Email": "not-an-address"}]}).json()["Data"][0]
    error_file = f"/v3/DATA/batchjob/{job['JobID']}/JSONError/application:json/LAST"
    get, head = server.http.get(error_file), server.http.head(error_file)
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", get.headers["content-length"])
    for method in ("TRACE", "POST", "PUT", "DELETE"):  # all but TRACE were 404 Object not found
        refused = server.http.request(method, error_file)
        assert (refused.status_code, refused.headers.get("Allow")) == (405, "GET, HEAD"), method
        assert refused.json() == {"ErrorInfo": "", "ErrorMessage": "Method not allowed", "StatusCode": 405}
    # Only that path is the file: the job's id alone, or anything after it, was served it too.
    for path in (f"/v3/DATA/batchjob/{job['JobID']}", f"/v3/DATA/batchjob/{job['JobID']}/x/y/z"):
        assert server.http.get(path).status_code == 404, path


def test_a_bug_is_answered_500_saying_the_connection_closes_and_the_next_request_is_served(serve: StartApps) -> None:
    # Starlette raises the error again after the handler's answer and uvicorn closes the
    # connection: without `Connection: close`, a client reusing it met a reset (R35, a full disk).
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("planted")

    app = routes.create_app(CONFIG, Clock(), BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    app.state.service.tenant = bug
    url = serve({"buggy": app})["buggy"]
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            answer = client.get("/_emulator/messages", params={"apiKey": "k"})
            assert (answer.status_code, answer.json(), answer.headers["connection"]) == (
                500, {"error": "internal error: RuntimeError('planted')"}, "close")
    request = Request({"type": "http", "method": "POST", "path": "/v3/REST/contact", "headers": [], "query_string": b""})
    api_answer = asyncio.run(routes._internal_error(request, OSError("disk I/O error")))
    assert (api_answer.status_code, api_answer.headers["connection"]) == (500, "close")
    assert json.loads(api_answer.body)["ErrorMessage"] == "An Unexpected Error occurred during API request"


def test_methods_and_targets_no_route_takes_answer_in_the_shape_of_the_api_called(server: Server) -> None:
    # TRACE is in no route's methods, and `OPTIONS *` (a request target with no path) matches no
    # route: both were Starlette's plain-text answers, which no Mailjet client can parse.
    for path in ("/v3/REST/contact", "/nowhere"):
        response = server.http.request("TRACE", path)
        assert response.status_code == 405, (path, response.text)
        assert response.json() == {"ErrorInfo": "", "ErrorMessage": "Method not allowed", "StatusCode": 405}
    # The Send API's own shape, as its GET has (it was REST v3's: one API, two shapes).
    response = server.http.request("TRACE", "/v3.1/send")
    assert response.status_code == 405, response.text
    assert contracts.validate("mailjet.send.error", response.json()) == []
    assert {**response.json(), "ErrorIdentifier": "x"} == {"ErrorIdentifier": "x", "ErrorMessage": "Method not allowed", "StatusCode": 405}
    response = server.http.request("TRACE", "/_emulator/health")
    assert response.status_code == 405 and set(response.json()) == {"error"}, response.text
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), answer
    assert json.loads(body) == {"ErrorInfo": "", "ErrorMessage": "Object not found", "StatusCode": 404}


def test_send_v31_documented_errors_over_http(server: Server) -> None:
    sender, text = {"Email": "a@example.com"}, "t"
    response = server.http.post("/v3.1/send", json={"Messages": [
        {"From": sender, "To": [], "TextPart": text},
        {"From": sender, "Bcc": [{"Email": "b@example.com"}], "TextPart": text},
        {"From": sender, "To": [{"Email": "c@example.com"}], "TextPart": text,
         "Headers": {"Reply-To": "r@example.com", "X-MJ-CustomID": "x"}},
        {"From": sender, "To": [{"Email": "d@example.com"}], "TextPart": text, "Priority": 5, "TemplateErrorDeliver": True,
         "Attachments": [{"ContentType": "text/plain", "Filename": "", "Base64Content": "aGk="}]},
        {"From": sender, "To": [{"Email": "ok@example.com"}], "TextPart": text, "Priority": 3, "URLTags": "utm_source=x",
         "Headers": {"Reply-To": "r@example.com"}, "Variables": {"day": "Monday"}, "TemplateLanguage": True,
         "InlinedAttachments": [{"ContentType": "image/png", "Filename": "a.png", "ContentID": "id1", "Base64Content": "aGk="}]},
    ]})
    assert response.status_code == 400  # one message failed; the others were still sent
    result = response.json()
    assert contracts.validate("mailjet.send.response", result) == []
    related = [[(e["ErrorCode"], e["ErrorRelatedTo"]) for e in m.get("Errors", [])] for m in result["Messages"]]
    assert related == [
        [("mj-0007", ["To"])],
        [("mj-0003", ["To"])],
        [("send-0011", ['Headers["X-MJ-CustomID"]'])],
        [("mj-0005", ["Priority"]), ("send-0016", ["TemplateLanguage"]), ("mj-0012", ["Attachments[0].Filename"])],
        [],
    ]
    assert result["Messages"][1]["Errors"][0]["ErrorMessage"] == "The To is mandatory but missing from the input"
    assert result["Messages"][4]["Status"] == "success"


def test_published_put_bodies_list_only_fields_a_put_takes(server: Server) -> None:
    # The node client's Put*Body types: a PUT takes fewer fields than the POST (no Email on
    # /contact, only IsUnsubscribed on /listrecipient, only Data on /contactdata).
    http = server.http
    http.post("/v3/REST/contact", json={"Email": "put@example.com"})
    http.post("/v3/REST/contactmetadata", json={"Name": "plan", "Datatype": "str"})
    http.post("/v3/REST/listrecipient", json={"ContactID": 1, "ListID": 1})
    http.post("/v3/REST/eventcallbackurl", json={"EventType": "open", "Url": "http://127.0.0.1:9/hook"})
    paths = openapi_document()["paths"]
    checked = 0
    for path, item in paths.items():
        if "put" not in item or not path.startswith("/v3/REST/"):
            continue
        schema = item["put"]["requestBody"]["content"]["application/json"]["schema"]
        for field in schema["properties"]:
            # null reaches the key check (unknown or read-only) before any value check.
            response = http.put(path.split("{")[0] + "1", json={field: None})
            message = response.json().get("ErrorMessage", "") if response.status_code == 400 else ""
            assert "MJ19" not in message and not message.startswith("Invalid json input"), (path, field, message)
            checked += 1
    assert checked >= 10


def test_contactdata_with_raw_property_pairs_instead_of_data_is_an_invalid_key_name(server: Server) -> None:
    # A Mailjet maintainer (mailjet-apiv3-nodejs PR #304): a PUT /contactdata body of raw pairs
    # ({first_name: "John"}) instead of Data is refused with a 400 "Invalid key name".
    mj = server.client()
    mj.contact.create(data={"Email": "raw@example.com"})
    mj.contactmetadata.create(data={"Name": "first_name", "Datatype": "str"})
    with pytest.raises(ValidationError, match='Invalid key name: "first_name"'):
        mj.contactdata.update(id="raw@example.com", data={"first_name": "John"})
    with pytest.raises(ValidationError, match='Invalid key name: "first_name"'):
        mj.contactdata.create(data={"ContactID": 1, "first_name": "John"})
    # The keys of the object itself keep their own answers (its own ContactID sent back is taken).
    with pytest.raises(ValidationError, match="MJ19"):
        mj.contactdata.update(id="raw@example.com", data={"ContactID": 999, "Data": []})
    assert data(mj.contactdata.get(id="raw@example.com"))[0]["Data"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v3/REST/contact/1", {"Name": "Renamed", "IsExcludedFromCampaigns": "maybe"}),
        ("/v3/REST/contactslist/1", {"Name": "renamed", "IsDeleted": "maybe"}),
        ("/v3/REST/listrecipient/1", {"IsActive": False, "IsUnsubscribed": "maybe"}),
        ("/v3/REST/contactmetadata/1", {"Name": "years", "Datatype": "bogus"}),
        ("/v3/REST/eventcallbackurl/1", {"EventType": "click", "Url": "not a url"}),
        ("/v3/REST/eventcallbackurl/1", {"Version": 2, "Status": "sleeping"}),
    ],
)
def test_a_put_answered_400_changes_nothing(server: Server, path: str, body: dict[str, Any]) -> None:
    # Each PUT applied its valid fields before a later one was refused: the client saw a 400, and the
    # object had changed anyway (and the change was not stored, so a restart undid it).
    http = server.http
    http.post("/v3/REST/contactmetadata", json={"Name": "age", "Datatype": "int"})
    http.post("/v3/REST/contactslist/1/managecontact", json={"Email": "put@example.com", "Name": "Put", "Action": "addnoforce",
                                                            "Properties": {"age": 3}})
    http.post("/v3/REST/eventcallbackurl", json={"EventType": "open", "Url": "http://127.0.0.1:9/hook"})
    before = http.get(path).json()
    contact_data = http.get("/v3/REST/contactdata/1").json()
    response = http.put(path, json=body)
    assert response.status_code == 400, response.text
    assert http.get(path).json() == before
    assert http.get("/v3/REST/contactdata/1").json() == contact_data


def test_published_simulation_seed_is_what_the_server_takes(server: Server) -> None:
    # The description said the seed may be null; the server answers that 400 "seed must be an integer".
    schema = openapi_document()["paths"]["/_emulator/simulation"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["seed"] == {"type": "integer"}
    assert server.control("PUT", "simulation", json={"seed": None}).status_code == 400
    assert server.control("PUT", "simulation", json={"seed": 3}).json()["seed"] == 3


def test_campaign_filter_of_contact_and_contactdata_keeps_the_campaigns_recipients(server: Server) -> None:
    http = server.http
    assert http.post("/v3/REST/contactslist", json={"Name": "promo"}).status_code == 201
    for email, list_id in (("in@example.com", 2), ("out@example.com", 1)):
        assert http.post(f"/v3/REST/contactslist/{list_id}/managecontact", json={"Email": email, "Action": "addforce"}).status_code == 201
    campaign = server.control("POST", "campaigns", json={"list_id": 2, "subject": "s", "html": "<p>x</p>"})
    assert campaign.status_code == 201
    campaign_id = campaign.json()["id"]
    in_id = http.get("/v3/REST/contact/in@example.com").json()["Data"][0]["ID"]
    assert [r["Email"] for r in http.get(f"/v3/REST/contact?campaign={campaign_id}").json()["Data"]] == ["in@example.com"]
    assert [r["ContactID"] for r in http.get(f"/v3/REST/contactdata?Campaign={campaign_id}").json()["Data"]] == [in_id]
    assert http.get("/v3/REST/contact?Campaign=999").json()["Total"] == 0


def test_a_job_removing_unknown_emails_creates_no_contacts(server: Server) -> None:
    mj = server.client()
    job_id = data(mj.contactslist_managemanycontacts.create(id=1, data={"Action": "remove", "Contacts": [{"Email": "nobody@example.com"}]}))[0]["JobID"]
    server.control("POST", "clock", json={"advance": "2s"})
    assert data(mj.contactslist_managemanycontacts.get(id=1, action_id=job_id))[0]["Status"] == "Completed"
    assert mj.contact.get().json()["Total"] == 0


def test_a_list_job_is_not_found_under_another_list(server: Server) -> None:
    http = server.http
    other = http.post("/v3/REST/contactslist", json={"Name": "other"}).json()["Data"][0]["ID"]
    job_id = http.post("/v3/REST/contactslist/1/managemanycontacts", json={"Action": "addforce", "Contacts": [{"Email": "j@example.com"}]}).json()["Data"][0]["JobID"]
    assert http.get(f"/v3/REST/contactslist/1/managemanycontacts/{job_id}").status_code == 200
    wrong = http.get(f"/v3/REST/contactslist/{other}/managemanycontacts/{job_id}")
    assert (wrong.status_code, wrong.json()) == (404, {"ErrorInfo": "", "ErrorMessage": "Object not found", "StatusCode": 404})


def test_sort_asc_and_desc_over_http(server: Server) -> None:
    http = server.http
    for name in ("b", "c", "a"):
        http.post("/v3/REST/contactslist", json={"Name": name})
    names = lambda sort: [row["Name"] for row in http.get(f"/v3/REST/contactslist?Sort={sort}&Limit=3").json()["Data"]]  # noqa: E731
    assert names("Name+ASC") == ["a", "b", "c"]
    assert names("Name+DESC") == ["segjet", "c", "b"]


def test_an_empty_body_reports_the_missing_fields(server: Server) -> None:
    response = server.http.post("/v3/REST/contact", content=b"", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["ErrorInfo"] == "MJ08 Property Email is invalid: MJ03 A non-empty value is required"


def test_a_path_outside_the_apis_is_object_not_found(server: Server) -> None:
    response = server.http.get("/v3/nothing/here")
    assert (response.status_code, response.json()) == (404, {"ErrorInfo": "", "ErrorMessage": "Object not found", "StatusCode": 404})


def test_a_rest_body_over_the_limit_is_a_413_in_the_rest_shape(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "MAX_BODY_BYTES", 1000)
    response = server.http.post("/v3/REST/contact", json={"Email": "big@example.com", "Name": "x" * 2000})
    assert response.status_code == 413
    assert contracts.validate("mailjet.error", response.json()) == [] and response.json()["StatusCode"] == 413
    monkeypatch.undo()
    assert server.http.get("/v3/REST/contact/big@example.com").status_code == 404


def test_basic_auth_without_a_secret_is_a_401(server: Server) -> None:
    # "mj-key" alone (no colon): no secret, so no account, whatever the key.
    token = base64.b64encode(CONFIG.mailjet_api_key.encode()).decode()
    response = httpx.get(f"{server.url}/v3/REST/contact", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401


def test_a_trailing_slash_names_the_same_resource(server: Server) -> None:
    http = server.http
    assert http.post("/v3/REST/contact/", json={"Email": "slash@example.com"}).status_code == 201
    assert http.get("/v3/REST/contact/slash@example.com/").json()["Data"][0]["Email"] == "slash@example.com"
    assert http.get("/v3/REST/contactslist/").json()["Count"] == 1


def test_contactdata_post_sets_values_and_delete_clears_them(server: Server) -> None:
    # reference/mailjet.md /contactdata: POST {"ContactID", "Data"} also exists; DELETE answers 204.
    http = server.http
    assert http.post("/v3/REST/contactmetadata", json={"Name": "plan", "Datatype": "str"}).status_code == 201
    contact_id = http.post("/v3/REST/contact", json={"Email": "cd@example.com"}).json()["Data"][0]["ID"]
    created = http.post("/v3/REST/contactdata", json={"ContactID": contact_id, "Data": [{"Name": "plan", "Value": "pro"}]})
    assert created.status_code == 201
    assert created.json() == {"Count": 1, "Data": [{"ContactID": contact_id, "Data": [{"Name": "plan", "Value": "pro"}], "ID": contact_id}], "Total": 1}
    assert contracts.validate("mailjet.contactdata", created.json()["Data"][0]) == []
    deleted = http.delete(f"/v3/REST/contactdata/{contact_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert data(http.get(f"/v3/REST/contactdata/{contact_id}"))[0]["Data"] == []


def test_an_unknown_control_path_is_a_control_404(server: Server) -> None:
    # Not answered in Mailjet's shape: /_emulator/ is segjet's own API, whose errors are {"error"}.
    response = server.http.get("/_emulator/no-such-endpoint")
    assert response.status_code == 404
    assert "no control endpoint GET /_emulator/no-such-endpoint" in response.json()["error"]


def test_a_control_path_called_with_another_method_is_a_405_naming_its_methods(server: Server) -> None:
    # As the fake Segment answers it: the catch-all of Mailjet's API called it "no control endpoint".
    response = server.http.request("PATCH", "/_emulator/accounts")
    assert (response.status_code, response.json()) == (405, {"error": "Method Not Allowed"})
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
