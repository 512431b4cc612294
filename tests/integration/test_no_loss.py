"""No loss under faults: 10,000 identify calls through analytics-python while the fake Mailjet fails
about 30 % of the destination's calls (503, 429, held until the destination times out, answered
after it gave up), then the virtual clock runs Segment's retries until nothing is pending.

Every accepted message must end `delivered` exactly once, and Mailjet must hold exactly one contact
per user with the right properties and list membership, read back through the REST API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

USERS = 10_000
MANAGECONTACT = "/v3/REST/contactslist/*/managecontact"
# Faults are capped (`times`) a little below what 30 % of the first attempts plus 30 % of each wave
# of retries would draw (about 4,300): the budget runs out after a few waves, so no message can
# meet the ~9 consecutive failures that exhaust Segment's 4-hour retry window. Without a cap, one
# message in 10,000 losing every draw is a real (if rare) outcome, and this test must not flake.
FAULTS = [
    # The destination's read timeout is 4 s: a held request fails it; one answered after 4.5 s is
    # applied by Mailjet after the destination gave up, so the retry must not duplicate the contact.
    {"method": "POST", "path": MANAGECONTACT, "action": "timeout", "rate": 0.01, "times": 3, "seed": 11},
    {"method": "POST", "path": MANAGECONTACT, "status": None, "delay_ms": 4500, "rate": 0.01, "times": 2, "seed": 12},
    {"method": "POST", "path": MANAGECONTACT, "status": 503, "rate": 0.15, "times": 2_000, "seed": 13},
    {"method": "POST", "path": MANAGECONTACT, "status": 429, "rate": 0.18, "times": 2_000, "seed": 14},
    {"path": "/v3/REST/contactmetadata*", "status": 503, "rate": 0.3, "times": 200, "seed": 15},
]
PLANS = ("free", "pro", "team")


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=7, faults={"mailjet": FAULTS})
    with BackgroundBundle(config) as info:
        yield info


def traits_of(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "name": f"User {n}", "plan": PLANS[n % 3], "visits": n}


def send_identifies(info: dict[str, Any]) -> list[str]:
    """10,000 identify calls through analytics-python's batching consumer; answers their messageIds."""
    failures: list[Any] = []
    client = Client(
        info["write_key"], host=info["segment_url"], upload_size=100, max_queue_size=USERS * 2, timeout=60,
        on_error=lambda error, batch: failures.append(error),
    )
    message_ids = []
    for n in range(USERS):
        message_id = str(uuid.UUID(int=n + 1))
        message_ids.append(message_id)
        client.identify(f"u{n}", traits_of(n), message_id=message_id)
    client.flush()
    client.shutdown()
    assert not failures, f"analytics-python could not upload: {failures[:3]}"
    return message_ids


def any_in(http: httpx.Client, info: dict[str, Any], state: str) -> bool:
    response = http.get(f"{info['segment_url']}/_emulator/deliveries", params={"state": state, "limit": 1})
    response.raise_for_status()
    return bool(response.json()["deliveries"])


def run_retries_to_the_end(http: httpx.Client, info: dict[str, Any]) -> None:
    """Wait while first attempts are in flight; when only retries remain, move the clock 2 minutes."""
    # Only a guard against a hang: on a loaded 2-core machine the whole run has taken ~4 minutes.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        queued, retrying = any_in(http, info, "queued"), any_in(http, info, "retrying")
        if not queued and not retrying:
            return
        if not queued:
            http.post(f"{info['segment_url']}/_emulator/clock", json={"advance": "2m"}).raise_for_status()
        time.sleep(0.05)  # polling interval, not a wait for something to happen
    pytest.fail(f"deliveries still pending (some queued: {queued}, some retrying: {retrying})")


def mailjet_pages(http: httpx.Client, info: dict[str, Any], resource: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a REST resource, read 1,000 at a time as a client must: until a page is short
    (Total is the page's count, not the number of matches)."""
    rows: list[dict[str, Any]] = []
    auth = (info["mailjet_api_key"], info["mailjet_secret_key"])
    while True:
        response = http.get(
            f"{info['mailjet_url']}/v3/REST/{resource}", params={**params, "Limit": 1000, "Offset": len(rows)}, auth=auth
        )
        response.raise_for_status()
        page = response.json()
        rows += page["Data"]
        if len(page["Data"]) < 1000:
            return rows


def test_ten_thousand_identifies_survive_a_faulty_mailjet(stack: dict[str, Any]) -> None:
    message_ids = send_identifies(stack)
    http = httpx.Client(timeout=30)
    run_retries_to_the_end(http, stack)

    accepted = http.get(
        f"{stack['segment_url']}/_emulator/events", params={"type": "identify", "status": "accepted", "limit": 10_000}
    ).json()["events"]
    assert sorted(event["messageId"] for event in accepted) == sorted(message_ids)

    deliveries = http.get(f"{stack['segment_url']}/_emulator/deliveries", params={"limit": 10_000}).json()["deliveries"]
    assert sorted(record["messageId"] for record in deliveries) == sorted(message_ids)  # one record each
    assert {record["state"] for record in deliveries} == {"delivered"}
    for record in deliveries:
        successes = [attempt for attempt in record["attempts"] if 200 <= (attempt.get("status") or 0) < 300]
        assert len(successes) == 1, record
    retried = sum(len(record["attempts"]) > 1 for record in deliveries)

    faults = http.get(f"{stack['mailjet_url']}/_emulator/faults").json()["faults"]
    fired = {rule["id"]: rule["fired"] for rule in faults}
    assert all(fired.values()), f"every kind of fault must have happened: {fired}"
    assert retried > 0

    contacts = mailjet_pages(http, stack, "contact")
    emails = [contact["Email"] for contact in contacts]
    assert len(emails) == len(set(emails)) == USERS
    assert set(emails) == {f"user{n}@example.com" for n in range(USERS)}

    properties = {
        row["ContactID"]: {item["Name"]: item["Value"] for item in row["Data"]}
        for row in mailjet_pages(http, stack, "contactdata")
    }
    by_email = {contact["Email"]: contact for contact in contacts}
    for n in range(USERS):
        contact = by_email[f"user{n}@example.com"]
        assert contact["Name"] == f"User {n}"
        assert properties[contact["ID"]] == {
            "name": f"User {n}", "plan": PLANS[n % 3], "visits": str(n), "segment_user_id": f"u{n}"
        }, contact

    members = mailjet_pages(http, stack, "listrecipient", ContactsList=stack["list_id"])
    assert sorted(member["ContactID"] for member in members) == sorted(by_email[e]["ID"] for e in emails)
    assert not any(member["IsUnsubscribed"] for member in members)
