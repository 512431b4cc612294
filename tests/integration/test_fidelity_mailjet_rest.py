"""REST API v3 replayed from the real world: documented examples and official-client calls.

Each request is copied from a public source and sent over HTTP; the answer is compared with what
that source shows Mailjet answering (status, envelope, field names and types, error bodies).
Sources:
- Guides: mailjet/api-documentation `guides/_filtering-resources.md` (Limit, Offset, Sort,
  countOnly, unique keys, first occurrence of a filter), `guides/_newsletter.md` (lists, contacts,
  contact properties, managecontact) and `guides/_contacts_bulk.md` (managecontactslists and its
  per-item errors, managemanycontacts, job polling);
- mailjet_rest (the venv's 1.9.1): its README "Standard REST Actions" and "Webhooks" snippets;
- observed error bodies listed in /work/shared/reference/mailjet.md §1 (php#239, php#38, go#72,
  php#244, nodejs#185, php-simple#46, java#48, java#46, nodejs#293).
Where the sources say nothing (whether Datatype or EventType may be left out), nothing is asserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from mailjet_rest import Client

import contracts
from emulator.config import BundleConfig
from emulator.mailjet.openapi import openapi_document

from .conftest import StartApps, lone_mailjet, reset_then_no_500s

CONFIG = BundleConfig(mailjet_api_key="mj-key", mailjet_secret_key="mj-secret", auth_key="seg-auth-key")


@dataclass
class Server:
    url: str
    http: httpx.Client

    def client(self) -> Client:
        return Client(auth=(CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key), api_url=f"{self.url}/")


@pytest.fixture(scope="module")
def server(serve: StartApps) -> Iterator[Server]:
    with lone_mailjet(serve, CONFIG) as (url, http):
        yield Server(url, http)


@pytest.fixture(autouse=True)
def fresh(server: Server) -> Iterator[None]:
    yield from reset_then_no_500s(server.http)


def rows(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    # Every REST v3 answer is the envelope, Count and Total both the page's (filtering guide).
    assert set(body) == {"Count", "Data", "Total"} and body["Count"] == body["Total"] == len(body["Data"]), body
    return body["Data"]


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"ErrorInfo", "ErrorMessage", "StatusCode"} and body["StatusCode"] == status, body
    return body


# ---------------------------------------------------------------- _newsletter.md


def test_newsletter_guide_list_contact_property_and_static_data(server: Server) -> None:
    http = server.http
    created = http.post("/v3/REST/contactslist", json={"Name": "myList"})
    assert created.status_code == 201
    assert sorted(rows(created)[0]) == ["Address", "CreatedAt", "ID", "IsDeleted", "Name", "SubscriberCount"]
    contact = http.post("/v3/REST/contact", json={"Email": "Mister@mailjet.com"})
    assert contact.status_code == 201 and contracts.validate("mailjet.contact", rows(contact)[0]) == []
    # The guide defines "Age" as a `str` and then sets it from the JSON number 30, with a lowercase "value".
    for name in ("Age", "Country"):
        defined = http.post("/v3/REST/contactmetadata", json={"Datatype": "str", "Name": name, "NameSpace": "static"})
        assert defined.status_code == 201
        assert rows(defined)[0] == {"Datatype": "str", "ID": rows(defined)[0]["ID"], "Name": name, "NameSpace": "static"}
    contact_id = rows(contact)[0]["ID"]
    updated = http.put(f"/v3/REST/contactdata/{contact_id}",
                       json={"Data": [{"Name": "Age", "value": 30}, {"Name": "Country", "value": "US"}]})
    assert updated.status_code == 200
    assert rows(updated) == [{"ContactID": contact_id, "Data": [{"Name": "Age", "Value": "30"}, {"Name": "Country", "Value": "US"}],
                              "ID": contact_id}]


def test_newsletter_guide_managecontact_echoes_the_contact(server: Server) -> None:
    http = server.http
    for name in ("property1", "propertyN"):
        http.post("/v3/REST/contactmetadata", json={"Datatype": "str", "Name": name})
    body = {"Email": "mrsmith@mailjet.com", "Name": "MrSmith", "Action": "addnoforce",
            "Properties": {"property1": "value", "propertyN": "valueN"}}
    response = http.post("/v3/REST/contactslist/1/managecontact", json=body)
    assert response.status_code == 201
    answer = rows(response)[0]
    assert {key: answer[key] for key in ("Email", "Action", "Name", "Properties")} == {
        key: body[key] for key in ("Email", "Action", "Name", "Properties")}
    assert isinstance(answer["ContactID"], int)
    # "with all properties available for that contact" (the API reference, in mailjet-apiv3-go): the
    # contact's, under their defined names, not only those this call sent.
    http.post("/v3/REST/contactmetadata", json={"Datatype": "int", "Name": "Score"})
    again = rows(http.post("/v3/REST/contactslist/1/managecontact",
                           json={"Email": "MrSmith@mailjet.com", "Action": "addnoforce", "Properties": {"score": 7}}))[0]
    assert again["Properties"] == {"property1": "value", "propertyN": "valueN", "Score": "7"}
    unsub = rows(http.post("/v3/REST/contactslist/1/managecontact", json={"Email": "mrsmith@mailjet.com", "Action": "unsub"}))[0]
    assert unsub["Properties"] == again["Properties"]
    # Undefined properties: the guide's documented 400.
    undefined = http.post("/v3/REST/contactslist/1/managecontact", json={**body, "Properties": {"nope": "x"}})
    assert error(undefined, 400) == {"ErrorInfo": {"Properties": [{"nope": "Property not defined"}]},
                                     "ErrorMessage": "Object properties invalid", "StatusCode": 400}


# ---------------------------------------------------------------- _filtering-resources.md


def test_filtering_guide_limit_offset_sort_count_only_and_unique_keys(server: Server) -> None:
    http = server.http
    for index in range(12):
        http.post("/v3/REST/contact", json={"Email": f"user{index:02d}@example.com"})
    assert len(rows(http.get("/v3/REST/contact"))) == 10  # "The default value is 10"
    assert len(rows(http.get("/v3/REST/contact?Limit=150"))) == 12
    assert rows(http.get("/v3/REST/contact?Offset=25000")) == []
    assert len(rows(http.get("/v3/REST/contact?Limit=150&Offset=5"))) == 7
    emails = [row["Email"] for row in rows(http.get("/v3/REST/contact?Limit=0"))]  # Limit=0: the maximum
    assert len(emails) == 12
    assert [row["Email"] for row in rows(http.get("/v3/REST/contact?Sort=email&Limit=0"))] == sorted(emails)
    assert [row["Email"] for row in rows(http.get("/v3/REST/contact?Sort=email+DESC&Limit=0"))] == sorted(emails, reverse=True)
    # "Use the filter countOnly ... { "Count": 152, "Data": [ ], "Total": 152 }"
    assert http.get("/v3/REST/contact?countOnly=1").json() == {"Count": 12, "Data": [], "Total": 12}
    # "Only the first occurrence of a filter is taken in account."
    assert len(rows(http.get("/v3/REST/contact?Limit=3&Limit=5"))) == 3
    # Unique keys: /contact/$EMAIL_ADDRESS_OR_CONTACT_ID and /eventcallbackurl/$EventType|$isBackup.
    assert rows(http.get("/v3/REST/contact/user03@example.com"))[0]["ID"] == 4
    http.post("/v3/REST/eventcallbackurl", json={"EventType": "open", "Url": "https://www.example.com/hook"})
    assert rows(http.get("/v3/REST/eventcallbackurl/open|false"))[0]["EventType"] == "open"
    assert rows(http.get("/v3/REST/eventcallbackurl/open%7Cfalse"))[0]["EventType"] == "open"


def test_filtering_guide_contacts_of_a_list(server: Server) -> None:
    http = server.http
    http.post("/v3/REST/contact", json={"Email": "out@example.com"})
    http.post("/v3/REST/contactslist/1/managecontact", json={"Email": "in@example.com", "Action": "addforce"})
    assert [row["Email"] for row in rows(http.get("/v3/REST/contact?ContactsList=1"))] == ["in@example.com"]


# ---------------------------------------------------------------- _contacts_bulk.md


def test_bulk_guide_managecontactslists_with_string_list_ids(server: Server) -> None:
    http = server.http
    http.post("/v3/REST/contactslist", json={"Name": "second"})
    contact_id = rows(http.post("/v3/REST/contact", json={"Email": "bulk@example.com"}))[0]["ID"]
    response = http.post(f"/v3/REST/contact/{contact_id}/managecontactslists", json={"ContactsLists": [
        {"ListID": "1", "Action": "addnoforce"}, {"ListID": "2", "Action": "addforce"}]})
    assert response.status_code == 201
    assert [sorted(item.items()) for item in rows(response)[0]["ContactsLists"]] == [
        [("Action", "addnoforce"), ("ListID", 1)], [("Action", "addforce"), ("ListID", 2)]]
    # The guide's per-item error form, the client's values echoed.
    bad = http.post(f"/v3/REST/contact/{contact_id}/managecontactslists", json={"ContactsLists": [
        {"ListID": "original_list_id", "Action": "original_string_action"}]})
    assert error(bad, 400)["ErrorMessage"] == {"ContactsLists": [
        {"ListID": "original_list_id", "Action": "original_string_action", "Error": "listID missing or not valid"}]}
    # The blog post announcing the action: "$ID (this can be numerical ID ... or email address)".
    assert http.post("/v3/REST/contact/bulk@example.com/managecontactslists",
                     json={"ContactsLists": [{"ListID": 2, "Action": "unsub"}]}).status_code == 201


def test_bulk_guide_managemanycontacts_job_polled_as_the_curl_sample_polls_it(server: Server) -> None:
    http = server.http
    http.post("/v3/REST/contactslist", json={"Name": "second"})
    for name in ("Property1", "Property2"):
        http.post("/v3/REST/contactmetadata", json={"Datatype": "str", "Name": name})
    contacts = [{"Email": email, "Name": name, "Properties": {"Property1": "value", "Property2": "value2"}}
                for email, name in (("jimsmith@example.com", "Jim"), ("janetdoe@example.com", "Janet"))]
    # The guide's body: lowercase "action" in ContactsLists.
    created = http.post("/v3/REST/contact/managemanycontacts", json={
        "ContactsLists": [{"ListID": 1, "action": "addnoforce"}, {"ListID": 2, "action": "addforce"}], "Contacts": contacts})
    assert created.status_code == 201 and list(rows(created)[0]) == ["JobID"]
    job_id = rows(created)[0]["JobID"]
    assert http.post("/_emulator/clock", json={"advance": "2s"}).status_code == 200
    job = rows(http.get(f"/v3/REST/contact/managemanycontacts/{job_id}"))[0]
    assert contracts.validate("mailjet.managemanycontacts.job", job) == []
    assert (job["Status"], job["Count"], job["Error"], job["ErrorFile"]) == ("Completed", 2, "", "")
    listed = http.post("/v3/REST/contactslist/2/managemanycontacts", json={"Action": "unsub", "Contacts": contacts[:1]})
    list_job = rows(listed)[0]["JobID"]
    # The curl sample's path: /contactslist/$ID/ManageManyContacts/$JOBID (mixed case).
    polled = http.get(f"/v3/REST/contactslist/2/ManageManyContacts/{list_job}")
    assert polled.status_code == 200 and rows(polled)[0]["ContactsLists"] == [{"ListID": 2, "Action": "unsub"}]


def test_exclusion_list_guide_and_listrecipient_sample_with_string_values(server: Server) -> None:
    # api-documentation guides/_exclusionlist.md: PUT /contact/$ID_OR_EMAIL {"IsExcludedFromCampaigns": "true"}.
    http = server.http
    created = http.post("/v3/REST/contact", json={"IsExcludedFromCampaigns": "true", "Name": "New Contact",
                                                  "Email": "passenger@mailjet.com"})
    assert created.status_code == 201 and rows(created)[0]["IsExcludedFromCampaigns"] is True
    assert http.put("/v3/REST/contact/passenger@mailjet.com", json={"IsExcludedFromCampaigns": "true"}).status_code == 304
    included = http.put("/v3/REST/contact/passenger@mailjet.com", json={"IsExcludedFromCampaigns": "false"})
    assert included.status_code == 200 and rows(included)[0]["IsExcludedFromCampaigns"] is False
    assert rows(http.get("/v3/REST/contact?IsExcludedFromCampaigns=false"))[0]["Email"] == "passenger@mailjet.com"
    # The DevGuide's POST /listrecipient sample: every value a string, ID and alternate key both given.
    contact_id = rows(created)[0]["ID"]
    subscribed = http.post("/v3/REST/listrecipient", json={
        "IsUnsubscribed": "true", "ContactID": str(contact_id), "ContactAlt": "passenger@mailjet.com", "ListID": "1",
        "ListAlt": "abcdef123"})
    assert subscribed.status_code == 201
    recipient = rows(subscribed)[0]
    assert contracts.validate("mailjet.listrecipient", recipient) == []
    assert (recipient["ContactID"], recipient["ListID"], recipient["IsUnsubscribed"], recipient["IsActive"]) == (contact_id, 1, True, True)
    # php-simple#62 (Mailjet staff): "is X in list Y" is GET /listrecipient?ContactsList=&ContactEmail=.
    found = rows(http.get("/v3/REST/listrecipient?ContactsList=1&ContactEmail=passenger@mailjet.com"))
    assert [row["ID"] for row in found] == [recipient["ID"]]
    assert rows(http.get("/v3/REST/listrecipient?ContactsList=1&ContactEmail=nobody@mailjet.com")) == []


# ---------------------------------------------------------------- mailjet_rest README


def test_python_readme_filters_pagination_and_stream(server: Server) -> None:
    mj = server.client()
    for index in range(30):
        server.http.post("/v3/REST/contact", json={"Email": f"r{index:02d}@example.com", "IsExcludedFromCampaigns": index % 3 == 0})
    # README "Using filtering": lowercase keys, "Email desc", a string boolean.
    page = mj.contact.get(filters={"limit": 4, "offset": 2, "sort": "Email desc", "IsExcludedFromCampaigns": "false"})
    assert [row["Email"] for row in rows(page)] == ["r26@example.com", "r25@example.com", "r23@example.com", "r22@example.com"]
    # README "Lazy Pagination": Limit/Offset chunks until a short page; filters from parse_qs.
    assert len(list(mj.contact.stream(chunk_size=7))) == 30
    tail = [row["Email"] for row in mj.contact.stream(filters=parse_qs("offset=27&sort=Email+desc"), chunk_size=2)]
    assert tail == ["r02@example.com", "r01@example.com", "r00@example.com"]


def test_python_readme_webhook_actions_and_delete(server: Server) -> None:
    mj = server.client()
    created = mj.eventcallbackurl.create(data={"EventType": "open", "Url": "https://www.mydomain.com/webhook", "Status": "alive"})
    assert created.status_code == 201
    callback = rows(created)[0]
    assert contracts.validate("mailjet.eventcallbackurl", callback) == [] and callback["Version"] == 1
    assert mj.eventcallbackurl.delete(id=callback["ID"]).status_code == 204  # "Returns 204 No Content"
    mj.contact.create(data={"Email": "actions@example.com"})
    acted = mj.contact_managecontactslists.create(id="actions@example.com", data={"ContactsLists": [{"ListID": "1", "Action": "addnoforce"}]})
    assert acted.status_code == 201


# ---------------------------------------------------------------- observed error bodies (reference §1)


def test_observed_error_bodies(server: Server) -> None:
    http = server.http
    http.post("/v3/REST/contact", json={"Email": "foo@domain.tld"})
    assert error(http.post("/v3/REST/contact", json={"Email": "foo@domain.tld"}), 400)["ErrorMessage"] == (
        'MJ18 A Contact resource with value "foo@domain.tld" for Email already exists.')  # php#239
    assert error(http.get("/v3/REST/contactdata/424242"), 404)["ErrorMessage"] == "Object not found"  # php-simple#10
    assert error(http.post("/v3/REST/contact/424242/managecontactslists",
                           json={"ContactsLists": [{"ListID": 1, "Action": "addnoforce"}]}), 404)["ErrorMessage"] == "Object not found"
    assert error(http.post("/v3/REST/contactslist", json={"Name": ""}), 400) == {  # php#38
        "ErrorInfo": "MJ08 Property Name is invalid: MJ04 Value must have at least length 1",
        "ErrorMessage": "Object properties invalid", "StatusCode": 400}
    assert error(http.post("/v3/REST/listrecipient", json={"ContactID": "", "ListID": 1}), 400)["ErrorInfo"] == (
        "MJ08 Property Contact is invalid: MJ03 A non-empty value is required")  # go#72
    assert error(http.post("/v3/REST/contact", json={"email": "x@y.co", "firstname": "X"}), 400)["ErrorMessage"] == (
        'Invalid json input: object ""->"TContact" has no property "firstname"')  # php#244
    assert error(http.post("/v3/REST/listrecipient", json={"ContactAlt": "x@y.co", "ListID": 1}), 400)["ErrorMessage"] == (
        'Property "Contact", alternate key value "x@y.co" could not be resolved to an ID')  # nodejs#185
    assert http.post("/v3/REST/listrecipient", json={"ContactAlt": "foo@domain.tld", "ListID": 1}).status_code == 201
    assert error(http.post("/v3/REST/listrecipient", json={"ContactAlt": "foo@domain.tld", "ListID": 1}), 400)["ErrorMessage"] == (
        "A duplicate ListRecipient already exists.")  # php-simple#46
    assert error(http.post("/v3/REST/contactslist/1", json={"Name": "x"}), 405)["ErrorMessage"] == "Method not allowed"  # java#48
    assert error(http.put("/v3/REST/listrecipient/1", json={"IsUnsubscribed": True, "UnsubscribedAt": "2018-01-01T00:00:00"}),
                 400)["ErrorMessage"] == 'Internal error: MJ19 Setting a value for property "UnsubscribedAt" is not allowed'  # java#46
    assert error(http.put("/v3/REST/contactdata/foo@domain.tld", json={"Data": [{"Name": "createdate", "Value": "x"}]}),
                 400)["ErrorMessage"] == 'Invalid key name: "createdate"'  # nodejs#293


# ---------------------------------------------------------------- the published description


def test_published_sort_pattern_takes_the_documented_sort_values(server: Server) -> None:
    # The OpenAPI document described Sort as `Name( ASC| DESC)`, upper case only: the mailjet_rest
    # README's own filters ("Email desc", and its stated default "ID asc") and a multi-key Sort,
    # all of which the server takes, failed the published schema.
    pattern = openapi_document()["paths"]["/v3/REST/contact"]["get"]["parameters"]
    sort = next(parameter for parameter in pattern if parameter["name"] == "Sort")["schema"]["pattern"]
    server.http.post("/v3/REST/contact", json={"Email": "sort@example.com"})
    for value in ("email", "email DESC", "email+DESC", "Email desc", "ID asc", "ID ASC", "Name DESC,ID"):
        assert server.http.get("/v3/REST/contact", params={"Sort": value}).status_code == 200, value
        assert re.fullmatch(sort, value), value
    assert server.http.get("/v3/REST/contact", params={"Sort": "Nope"}).status_code == 400
    assert not re.fullmatch(sort, "ID DESCENDING") and not re.fullmatch(sort, "ID,")
