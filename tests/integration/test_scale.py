"""Capped and paged feeds at and past their limits, over HTTP, with histories bigger than a page.

Behaviour only (what is answered, in which order, what is counted as dropped); how long a read
takes at tens of thousands of rows is measured by hand, never asserted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator.config import BundleConfig

from .conftest import StartApps, lone_mailjet, reset_then_no_500s

CONFIG = BundleConfig(mailjet_api_key="scale-key", mailjet_secret_key="scale-secret", journal_capacity=50)


@pytest.fixture(scope="module")
def http(serve: StartApps) -> Iterator[httpx.Client]:
    with lone_mailjet(serve, CONFIG) as (_, client):
        yield client


@pytest.fixture(autouse=True)
def fresh(http: httpx.Client) -> Iterator[None]:
    yield from reset_then_no_500s(http)


def send(http: httpx.Client, count: int, offset: int = 0) -> list[int]:
    messages = [
        {"From": {"Email": "shop@example.com"}, "To": [{"Email": f"u{n}@example.com"}], "Subject": "s", "TextPart": "t"}
        for n in range(offset, offset + count)
    ]
    response = http.post("/v3.1/send", json={"Messages": messages})
    assert response.status_code == 200, response.text
    return [message["To"][0]["MessageID"] for message in response.json()["Messages"]]


def requests_feed(http: httpx.Client, **params: Any) -> httpx.Response:
    return http.get("/_emulator/requests", params=params)


def test_the_journal_answers_the_newest_matches_and_counts_every_drop(http: httpx.Client) -> None:
    for n in range(120):
        http.get(f"/v3/REST/contact/{n + 1}") if n % 2 else http.get("/v3/REST/contactslist")
    body = requests_feed(http, limit=10).json()
    assert (body["dropped"], body["capacity"]) == (70, 50)
    ids = [entry["id"] for entry in body["requests"]]
    assert ids == list(range(111, 121))
    lists = requests_feed(http, path="CONTACTSLIST", limit=3).json()["requests"]
    assert [entry["id"] for entry in lists] == [115, 117, 119]
    assert len(requests_feed(http, limit=10_000).json()["requests"]) == 50
    assert requests_feed(http, limit=0).json()["requests"] == []
    assert requests_feed(http, limit=10_001).status_code == 400
    assert requests_feed(http, method="DELETE").json()["requests"] == []
    assert http.post("/_emulator/reset").status_code == 200
    body = requests_feed(http).json()
    assert (body["requests"], body["dropped"]) == ([], 0)


def test_email_events_of_one_message_among_many_and_the_newest_of_a_kind(http: httpx.Client) -> None:
    ids = send(http, 50) + send(http, 50, offset=50)
    assert http.post("/_emulator/clock", json={"advance": "1m"}).status_code == 200
    for message_id in ids[::10]:
        assert http.post(f"/_emulator/messages/{message_id}/events", json={"event": "open"}).status_code == 201
    one = http.get("/_emulator/email-events", params={"MessageID": ids[40]}).json()["email_events"]
    assert [(event["MessageID"], event["event"]) for event in one] == [(ids[40], "sent"), (ids[40], "open")]
    opens = http.get("/_emulator/email-events", params={"event": "open", "limit": 2}).json()["email_events"]
    assert [event["MessageID"] for event in opens] == [ids[80], ids[90]]
    newest = http.get("/_emulator/email-events", params={"limit": 1}).json()["email_events"]
    assert [(event["MessageID"], event["event"]) for event in newest] == [(ids[90], "open")]
    everything = http.get("/_emulator/email-events", params={"limit": 10_000}).json()["email_events"]
    assert len(everything) == 110 and [event["id"] for event in everything] == list(range(1, 111))
    assert http.get("/_emulator/email-events", params={"MessageID": 42}).json()["email_events"] == []
    assert http.get("/_emulator/email-events", params={"limit": 10_001}).status_code == 400


def test_a_listing_pages_through_every_contact_at_the_limits(http: httpx.Client) -> None:
    contacts = [{"Email": f"c{n}@example.com"} for n in range(1_500)]
    job = http.post("/v3/REST/contactslist/1/managemanycontacts", json={"Action": "addnoforce", "Contacts": contacts})
    assert job.status_code == 201, job.text
    assert http.post("/_emulator/clock", json={"advance": "2s"}).status_code == 200

    def page(**params: Any) -> dict[str, Any]:
        response = http.get("/v3/REST/contact", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    assert page(countOnly=1) == {"Count": 1_500, "Data": [], "Total": 1_500}
    first = page(Limit=0)  # Limit=0 gives the maximum, 1000
    assert (first["Count"], first["Total"], len(first["Data"])) == (1_000, 1_000, 1_000)
    rest = page(Limit=1_000, Offset=1_000)
    assert (rest["Count"], len(rest["Data"])) == (500, 500)
    seen = [row["Email"] for row in first["Data"] + rest["Data"]]
    assert sorted(seen) == sorted(c["Email"] for c in contacts) and len(set(seen)) == 1_500
    # Limit=0 takes no Offset: paging with it gets the first 1,000 again (mailjet-apiv3-nodejs#68).
    assert page(Limit=0, Offset=1_000) == first
    assert page(Limit=10, Offset=1_500) == {"Count": 0, "Data": [], "Total": 0}
    assert page(Limit=10, Offset=10**15) == {"Count": 0, "Data": [], "Total": 0}
    newest = page(Limit=1, Sort="ID DESC")["Data"]
    assert newest[0]["ID"] == max(row["ID"] for row in first["Data"] + rest["Data"])
