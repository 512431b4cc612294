"""The bundle driven the way its users drive it: with the official client libraries.

analytics-python (`segment.analytics.Client`) posts to the fake Segment, in sync mode and through
its background consumer (batching, gzip, retries, on_error); mailjet_rest 1.9 (`Client(version=
"v3")` and `"v3.1"`) calls the fake Mailjet as Mailjet's own samples and live tests do
(mailjet/mailjet-apiv3-python `samples/contacts_sample.py`, `samples/smoke_readme_runner.py`,
`tests/integration/test_client.py`). What the fakes store is compared with what the clients sent.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailjet_rest import Client as MailjetClient
from mailjet_rest.builders import MessageBuilder
from mailjet_rest.errors import (
    ApiError,
    DoesNotExistError,
    MailjetAuthError,
    ValidationError,
)
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError, DatetimeSerializer

from emulator.bundle import BackgroundBundle
from emulator.common.clock import parse_iso
from emulator.config import BundleConfig

from .polling import wait_for

# analytics-python's own limits (segment/analytics/consumer.py): MAX_MSG_SIZE and BATCH_SIZE_LIMIT.
CLIENT_MAX_MSG_BYTES = 32 << 10
CLIENT_BATCH_BYTES = 475_000


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0)) as info:
        yield info


@pytest.fixture(autouse=True)
def fresh(stack: dict[str, Any]) -> Iterator[None]:
    for url in (stack["segment_url"], stack["mailjet_url"]):
        httpx.post(f"{url}/_emulator/reset").raise_for_status()
    yield
    # Whatever a client did, no exchange was answered by a crash (a 5xx a test's fault rule sent aside).
    for url in (stack["segment_url"], stack["mailjet_url"]):
        entries = control(url, "requests", limit=10_000)["requests"]
        statuses = [entry["status"] for entry in entries if entry["fault"] is None]
        assert all(status is None or status < 500 for status in statuses), statuses


def control(base: str, route: str, method: str = "GET", body: Any = None, **params: Any) -> Any:
    response = httpx.request(method, f"{base}/_emulator/{route}", params=params, json=body, timeout=30)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


# ================================================================ analytics-python → fake Segment


def segment_events(stack: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    return control(stack["segment_url"], "events", limit=10_000, **params)["events"]


def batch_requests(stack: dict[str, Any]) -> list[dict[str, Any]]:
    return control(stack["segment_url"], "requests", path="/v1/batch", limit=10_000)["requests"]


def on_wire(message: dict[str, Any]) -> dict[str, Any]:
    """A message as analytics-python serialises it in its POST (segment/analytics/request.py)."""
    return json.loads(json.dumps(message, cls=DatetimeSerializer))


def test_every_call_type_is_stored_as_analytics_python_sent_it(stack: dict[str, Any]) -> None:
    failures: list[Any] = []
    client = SegmentClient(
        stack["write_key"], host=stack["segment_url"], sync_mode=True, max_retries=0,
        on_error=lambda error, batch: failures.append(error),
    )
    happened = datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    context = {"ip": "203.0.113.9", "locale": "fr-FR", "traits": {"plan": "pro"}}
    integrations = {"All": False, "Mailjet": True}
    properties = {
        "revenue": Decimal("19.99"),  # cleaned to a float
        "day": date(2024, 2, 29),  # isoformat
        "at": datetime(2024, 2, 29, 12, 0, tzinfo=timezone.utc),
        "label": "Crème brûlée 🍮 ☃ \u202e",
        "tags": ("a", "b"),  # a list
        "nested": {"k": [1, 2.5, None, True], "empty": {}},
    }
    common: dict[str, Any] = {"context": context, "timestamp": happened, "integrations": integrations}
    sent = [
        client.identify("u-1", {"email": "zoe@example.com", "name": "Zoë Ünïcode"}, anonymous_id="anon-1", **common),
        client.track("u-1", "Order Completed", properties, anonymous_id="anon-1", **common),
        client.page("u-1", "Docs", "Pricing", {"url": "https://example.com/pricing?q=é"}, **common),
        client.screen(None, "App", "Home", {"build": 42}, anonymous_id="anon-1", **common),
        client.group("u-1", "g-1", {"name": "Initech", "employees": 42}, **common),
        client.alias("anon-1", "u-1", **common),
        client.track(7, "Numeric User"),  # analytics-python stringifies numeric ids
    ]
    assert not failures
    assert all(ok for ok, _ in sent)

    stored = segment_events(stack)
    assert len(stored) == len(sent)
    for (_, message), kept in zip(sent, stored):
        wire = on_wire(message)
        assert kept["messageId"] == wire["messageId"]
        assert (kept["status"], kept["discard_reason"], kept["violations"]) == ("accepted", None, [])
        for key, value in wire.items():
            if key == "timestamp":
                # Segment keeps the client's time as originalTimestamp and corrects the timestamp
                # for the client's clock: receivedAt - (sentAt - originalTimestamp).
                assert kept["originalTimestamp"] == value
            else:
                assert kept[key] == value, key
        assert kept["context"]["library"] == {"name": "analytics-python", "version": message["context"]["library"]["version"]}
        skew = parse_iso(kept["timestamp"]) - parse_iso(wire["timestamp"])
        assert abs(skew) < timedelta(minutes=1)  # the virtual clock was reset to real time
        assert parse_iso(kept["sentAt"]) <= parse_iso(kept["receivedAt"]) + timedelta(seconds=1)
    track = stored[1]
    assert track["properties"]["revenue"] == 19.99 and track["properties"]["tags"] == ["a", "b"]
    assert track["properties"]["day"] == "2024-02-29" and track["properties"]["at"] == "2024-02-29T12:00:00+00:00"
    assert stored[-1]["userId"] == "7"
    assert set(control(stack["segment_url"], "profiles/u-1")["anonymousIds"]) == {"anon-1"}


def test_the_readme_snippet_with_analytics_pythons_module_api(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from segment import analytics

    # The module keeps one default client; this test's own is dropped afterwards.
    monkeypatch.setattr(analytics, "default_client", None)
    monkeypatch.setattr(analytics, "write_key", stack["write_key"])
    monkeypatch.setattr(analytics, "host", stack["segment_url"])  # no /v1: the client appends /v1/batch
    failures: list[Any] = []
    monkeypatch.setattr(analytics, "on_error", lambda error, batch: failures.append(error))
    ok, message = analytics.identify("u1", {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro"})
    analytics.flush()
    analytics.default_client.join()  # stop its consumer thread
    assert ok and not failures
    [stored] = segment_events(stack, type="identify")
    assert (stored["messageId"], stored["traits"], stored["status"]) == (message["messageId"], message["traits"], "accepted")


def test_background_consumer_batches_gzip_and_keeps_the_order(stack: dict[str, Any]) -> None:
    failures: list[Any] = []
    client = SegmentClient(
        stack["write_key"], host=stack["segment_url"], gzip=True, upload_size=10, upload_interval=0.05,
        max_retries=0, on_error=lambda error, batch: failures.append(error),
    )
    ids = [client.track(f"u{i % 3}", "Viewed", {"i": i})[1]["messageId"] for i in range(35)]
    client.flush()
    client.join()
    assert not failures

    assert [event["messageId"] for event in segment_events(stack, event="Viewed")] == ids
    requests = batch_requests(stack)
    assert all(request["headers"]["content-encoding"] == "gzip" and request["status"] == 200 for request in requests)
    # The journal shows each gzipped batch inflated: never more than upload_size items.
    sizes = [len(request["body"]["batch"]) for request in requests]
    assert sum(sizes) == 35 and max(sizes) <= 10 and len(sizes) >= 4
    assert all(request["body"]["writeKey"] == "<redacted>" for request in requests)


def test_batches_at_analytics_python_size_limits_are_accepted_whole(stack: dict[str, Any]) -> None:
    failures: list[Any] = []
    client = SegmentClient(
        stack["write_key"], host=stack["segment_url"], upload_size=100, upload_interval=0.2,
        max_retries=0, on_error=lambda error, batch: failures.append(error),
    )
    ids = []
    for i in range(31):  # items just under the client's 32 KB: batches stop past its 475,000 bytes
        ok, message = client.track(f"big-{i}", "Big", {"pad": "x" * 32_250, "i": i})
        assert ok and len(json.dumps(message, cls=DatetimeSerializer).encode()) < CLIENT_MAX_MSG_BYTES
        ids.append(message["messageId"])
    for i in range(4):  # escaped by the client (6 bytes a character), 2 bytes each in UTF-8
        ids.append(client.track(f"uni-{i}", "Big", {"pad": "é" * 5_300, "i": i})[1]["messageId"])
    client.flush()
    client.join()
    assert not failures

    stored = segment_events(stack, event="Big")
    assert [event["messageId"] for event in stored] == ids
    assert {(event["status"], event["discard_reason"]) for event in stored} == {("accepted", None)}
    requests = batch_requests(stack)
    assert {request["status"] for request in requests} == {200}
    largest = max(request["body"]["bytes"] for request in requests if request["body"].get("truncated"))
    assert largest > CLIENT_BATCH_BYTES  # the client's biggest batch, under the 500 KB limit


def test_analytics_python_retries_through_5xx_and_each_event_is_stored_once(stack: dict[str, Any]) -> None:
    control(stack["segment_url"], "faults", "POST", {"method": "POST", "path": "/v1/batch", "status": 503, "times": 2})
    failures: list[Any] = []
    client = SegmentClient(
        stack["write_key"], host=stack["segment_url"], max_retries=3, upload_interval=0.05,
        on_error=lambda error, batch: failures.append(error),
    )
    ids = [client.identify(f"r{i}", {"email": f"r{i}@example.com"})[1]["messageId"] for i in range(3)]
    client.flush()
    client.join()
    assert not failures
    assert [event["messageId"] for event in segment_events(stack)] == ids
    requests = batch_requests(stack)
    assert [request["status"] for request in requests] == [503, 503, 200]
    assert [request["headers"].get("x-retry-count") for request in requests] == [None, "1", "2"]
    assert requests[0]["response"] == {"code": "service_unavailable", "message": "Service Unavailable"}


def test_exhausted_retries_reach_on_error_with_segments_code_and_message(stack: dict[str, Any]) -> None:
    control(stack["segment_url"], "faults", "POST", {"method": "POST", "path": "/v1/batch", "status": 500})
    failures: list[tuple[Any, int]] = []
    client = SegmentClient(
        stack["write_key"], host=stack["segment_url"], max_retries=1, upload_interval=0.05,
        on_error=lambda error, batch: failures.append((error, len(batch))),
    )
    client.track("u-x", "Lost")
    client.flush()
    client.join()
    [(error, size)] = failures
    assert isinstance(error, APIError) and (error.status, error.code, size) == (500, "internal_error", 1)
    assert len(batch_requests(stack)) == 2  # the first try and one retry, then the client gives up
    assert segment_events(stack) == []


def test_a_nan_property_is_a_final_400_the_client_reports_without_retrying(stack: dict[str, Any]) -> None:
    failures: list[Any] = []
    client = SegmentClient(
        stack["write_key"], host=stack["segment_url"], max_retries=3, upload_interval=0.05,
        on_error=lambda error, batch: failures.append(error),
    )
    client.track("u-nan", "Measured", {"value": math.nan})  # json.dumps writes NaN, which is not JSON
    client.flush()
    client.join()
    [error] = failures
    assert isinstance(error, APIError) and (error.status, error.code) == (400, "invalid_json")
    assert len(batch_requests(stack)) == 1
    assert segment_events(stack) == []


def test_identify_values_reach_mailjet_as_its_strings(stack: dict[str, Any]) -> None:
    client = SegmentClient(stack["write_key"], host=stack["segment_url"], sync_mode=True, max_retries=0)
    _, message = client.identify("u-zoe", {
        "email": "zoe.rt@example.com",
        "name": "Zoë 🎉",
        "score": Decimal("9.5"),
        "birthday": date(1990, 5, 6),
        "signup": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        "active": True,
        "visits": 3,
        "address": {"city": "Zürich"},
    })
    mailjet = mailjet_client(stack)
    delivered = wait_for(
        lambda: [d for d in control(stack["segment_url"], "deliveries", messageId=message["messageId"])["deliveries"]
                 if d["state"] == "delivered"],
        "the identify to reach Mailjet",
    )
    assert delivered
    values = {pair["Name"]: pair["Value"] for pair in mailjet.contactdata.get(id="zoe.rt@example.com").json()["Data"][0]["Data"]}
    assert values == {
        "segment_user_id": "u-zoe",
        "name": "Zoë 🎉",
        "score": "9.5",
        "birthday": "1990-05-06T00:00:00Z",
        "signup": "2024-01-02T01:04:05Z",
        "active": "true",
        "visits": "3",
        "address_city": "Zürich",
    }
    assert mailjet.contact.get(id="zoe.rt@example.com").json()["Data"][0]["Name"] == "Zoë 🎉"


# ================================================================ mailjet_rest → fake Mailjet


def mailjet_client(stack: dict[str, Any], version: str = "v3", **auth: str) -> MailjetClient:
    key = (auth.get("key", stack["mailjet_api_key"]), auth.get("secret", stack["mailjet_secret_key"]))
    return MailjetClient(auth=key, api_url=stack["mailjet_url"] + "/", version=version)


def data(response: Any) -> list[dict[str, Any]]:
    return response.json()["Data"]


def test_contact_lifecycle_as_mailjets_own_samples_run_it(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    created = mailjet.contact.create(data={"IsExcludedFromCampaigns": "true", "Name": "New Contact", "Email": "passenger+1@mailjet.com"})
    assert created.status_code == 201
    [contact] = data(created)
    assert contact["IsExcludedFromCampaigns"] is True and contact["ExclusionFromCampaignsUpdatedAt"] != ""
    for ref in (contact["ID"], "passenger+1@mailjet.com", "PASSENGER+1@mailjet.com"):  # ids and emails (quoted, dots as %2E)
        assert data(mailjet.contact.get(id=ref))[0]["ID"] == contact["ID"]
    updated = mailjet.contact.update(id=contact["ID"], data={"Name": "CI Test User"})
    assert updated.status_code == 200 and data(updated)[0]["Name"] == "CI Test User"
    assert mailjet.contact.update(id=contact["ID"], data={"Name": "CI Test User"}).status_code == 304

    mailjet.contact.create(data={"Email": "another@mailjet.com"})
    listed = mailjet.contact.get(filters={"limit": 2, "sort": "Email desc"})  # the README runner's spelling
    assert [c["Email"] for c in data(listed)] == ["passenger+1@mailjet.com", "another@mailjet.com"]
    first = data(mailjet.contact.get(filters={"Sort": "email+DESC"}))[0]  # the docs' spelling, "+" sent as %2B
    assert first["Email"] == "passenger+1@mailjet.com"

    # contactmetadata + contactdata, with the README runner's lower-case "value".
    meta = data(mailjet.contactmetadata.create(data={"Datatype": "str", "Name": "first_name", "NameSpace": "static"}))[0]
    response = mailjet.contactdata.update(id=contact["ID"], data={"Data": [{"Name": "first_name", "value": "John"}]})
    assert response.status_code == 200
    assert data(mailjet.contactdata.get(id=contact["ID"]))[0]["Data"] == [{"Name": "first_name", "Value": "John"}]
    assert mailjet.contactmetadata.delete(id=meta["ID"]).status_code == 204


def test_deleting_a_contact_through_v3_is_refused_as_mailjet_refuses_it(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    contact_id = data(mailjet.contact.create(data={"Email": "gdpr@example.com"}))[0]["ID"]
    with pytest.raises(MailjetAuthError) as refused:
        mailjet.contact.delete(id=contact_id)
    assert refused.value.status_code == 401
    assert json.loads(refused.value.response_body)["ErrorMessage"] == "Operation not allowed"
    assert data(mailjet.contact.get(id=contact_id))[0]["Email"] == "gdpr@example.com"  # still there


def test_deleting_a_contact_never_deletes_it(stack: dict[str, Any]) -> None:
    """Whatever the status, the v3 DELETE neither crashes nor removes the contact (GDPR delete is v4)."""
    mailjet = mailjet_client(stack)
    contact_id = data(mailjet.contact.create(data={"Email": "kept@example.com"}))[0]["ID"]
    with pytest.raises(ApiError):
        mailjet.contact.delete(id=contact_id)
    assert data(mailjet.contact.get(id=contact_id))[0]["Email"] == "kept@example.com"


def test_total_counts_the_page_unless_count_only(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    for i in range(3):
        mailjet.contact.create(data={"Email": f"page{i}@example.com"})
    page = mailjet.contact.get(filters={"Limit": 2}).json()
    assert (page["Count"], len(page["Data"]), page["Total"]) == (2, 2, 2)
    assert mailjet.contact.get(filters={"countOnly": 1}).json() == {"Count": 3, "Data": [], "Total": 3}


def test_count_only_counts_every_match_and_stream_pages_through_all(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    job = data(mailjet.contactslist_managemanycontacts.create(
        id=1, data={"Action": "addforce", "Contacts": [{"Email": f"s{i}@example.com"} for i in range(25)]}
    ))[0]["JobID"]
    control(stack["mailjet_url"], "clock", "POST", {"advance": "2s"})
    assert data(mailjet.contactslist_managemanycontacts.get(id=1, action_id=job))[0]["Status"] == "Completed"
    assert mailjet.contact.get(filters={"countOnly": 1}).json() == {"Count": 25, "Data": [], "Total": 25}
    streamed = list(mailjet.contact.stream(chunk_size=10))
    assert sorted(c["Email"] for c in streamed) == sorted(f"s{i}@example.com" for i in range(25))
    assert len(list(mailjet.listrecipient.stream(filters={"ContactsList": 1}, chunk_size=7))) == 25
    assert [c["ID"] for c in mailjet.contact.stream(filters={"Sort": "ID DESC"}, chunk_size=10)][:3] == [25, 24, 23]


def test_lists_and_subscriptions_with_the_docs_string_values(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    contact_id = data(mailjet.contact.create(data={"Email": "sub@example.com"}))[0]["ID"]
    news = data(mailjet.contactslist.create(data={"Name": "News"}))[0]
    assert data(mailjet.contactslist.get(filters={"Name": "News"}))[0]["ID"] == news["ID"]
    assert data(mailjet.contactslist.update(id=news["ID"], data={"Name": "News 2"}))[0]["Name"] == "News 2"

    # samples/contacts_sample.py: string "true" and ids given as numbers or strings.
    recipient = data(mailjet.listrecipient.create(data={"IsUnsubscribed": "true", "ContactID": contact_id, "ListID": str(news["ID"])}))[0]
    assert (recipient["IsUnsubscribed"], recipient["ListName"]) == (True, "News 2")
    # filters={"Unsub": False} reaches the server as "Unsub=False".
    assert data(mailjet.listrecipient.get(filters={"ContactsList": news["ID"], "Unsub": False})) == []
    assert [r["ID"] for r in data(mailjet.listrecipient.get(filters={"ContactEmail": "sub@example.com"}))] == [recipient["ID"]]

    managed = mailjet.contact_managecontactslists.create(
        id="sub@example.com", data={"ContactsLists": [{"Action": "addnoforce", "ListID": "1"}, {"Action": "addforce", "ListID": news["ID"]}]}
    )
    assert managed.status_code == 201
    lists = {row["ListID"]: row["IsUnsub"] for row in data(mailjet.contact_getcontactslists.get(id=contact_id))}
    assert lists == {1: False, news["ID"]: False}  # addforce resubscribed

    with pytest.raises(ValidationError) as bad_list:
        mailjet.contact_managecontactslists.create(id=contact_id, data={"ContactsLists": [{"Action": "addforce", "ListID": 999}]})
    error = json.loads(bad_list.value.response_body)["ErrorMessage"]
    assert error["ContactsLists"][0]["Error"] == "listID missing or not valid"

    upserted = mailjet.contactslist_managecontact.create(id=1, data={"Email": "mc@example.com", "Name": "M C", "Action": "addnoforce"})
    assert upserted.status_code == 201 and data(upserted)[0]["Email"] == "mc@example.com"
    assert mailjet.contactslist.delete(id=news["ID"]).status_code == 204
    with pytest.raises(DoesNotExistError):
        mailjet.contactslist.get(id=news["ID"])


def test_managemanycontacts_jobs_polled_as_the_samples_poll_them(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    list_job = data(mailjet.contactslist_managemanycontacts.create(id=1, data={
        "Action": "addnoforce",
        "Contacts": [
            {"Email": "passenger@mailjet.com", "IsExcludedFromCampaigns": "false", "Name": "Passenger 1"},
            {"Email": "not an email"},
        ],
    }))[0]["JobID"]
    all_lists_job = data(mailjet.contact_managemanycontacts.create(data={
        "Contacts": [{"Email": "jimsmith@example.com", "Name": "Jim", "IsExcludedFromCampaigns": "true"}],
        "ContactsLists": [{"Action": "addnoforce", "ListID": 1}],
    }))[0]["JobID"]
    assert data(mailjet.contactslist_managemanycontacts.get(id=1, action_id=list_job))[0]["Status"] == "In Progress"
    control(stack["mailjet_url"], "clock", "POST", {"advance": "2s"})

    [done] = data(mailjet.contactslist_managemanycontacts.get(id=1, action_id=list_job))
    assert (done["Status"], done["Count"]) == ("Error", 1)
    errors = httpx.get(done["ErrorFile"], auth=(stack["mailjet_api_key"], stack["mailjet_secret_key"])).json()
    assert [row["Email"] for row in errors] == ["not an email"]
    assert data(mailjet.contact_managemanycontacts.get(id=all_lists_job))[0]["Status"] == "Completed"
    assert data(mailjet.contact.get(id="jimsmith@example.com"))[0]["IsExcludedFromCampaigns"] is True


def test_eventcallbackurl_crud_and_its_composite_key(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    created = mailjet.eventcallbackurl.create(data={"EventType": "open", "Url": "https://www.example.com/webhook_1", "Status": "alive"})
    assert created.status_code == 201
    hook = data(created)[0]
    assert (hook["Version"], hook["IsBackup"]) == (1, False)
    assert data(mailjet.eventcallbackurl.get(id="open|false"))[0]["ID"] == hook["ID"]
    with pytest.raises(ValidationError, match="MJ18"):
        mailjet.eventcallbackurl.create(data={"EventType": "open", "Url": "https://www.example.com/other"})
    changed = mailjet.eventcallbackurl.update(id=hook["ID"], data={"Url": "https://www.example.com/webhook_2", "Version": 2})
    assert data(changed)[0]["Url"] == "https://www.example.com/webhook_2"
    assert mailjet.eventcallbackurl.delete(id=hook["ID"]).status_code == 204
    assert data(mailjet.eventcallbackurl.get()) == []


def test_errors_reach_mailjet_rest_as_its_exception_classes(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack)
    with pytest.raises(DoesNotExistError) as missing:
        mailjet.contact.get(id="nobody@example.com")
    assert missing.value.status_code == 404 and "Object not found" in str(missing.value)
    mailjet.contact.create(data={"Email": "dup@example.com"})
    with pytest.raises(ValidationError, match="MJ18 A Contact resource with value"):
        mailjet.contact.create(data={"Email": "dup@example.com"})
    with pytest.raises(MailjetAuthError) as unauthorized:
        mailjet_client(stack, key="invalid_public", secret="invalid_private").contact.get(filters={"limit": 1})
    assert unauthorized.value.status_code == 401
    # The SDK's live tests: v3.1 without Messages, and the pre-2017 v3 send, are 400s.
    with pytest.raises(ValidationError) as no_messages:
        mailjet_client(stack, "v3.1").send.create(data={"InvalidField": True})
    assert no_messages.value.status_code == 400
    with pytest.raises(ValidationError):
        mailjet.send.create(data={})


def test_send_v31_with_the_sdk_message_builder(stack: dict[str, Any]) -> None:
    mailjet = mailjet_client(stack, "v3.1")
    builder = MessageBuilder()
    builder.set_sender("pilot@mailjet.com", "Mailjet Pilot").set_reply_to("no-reply@example.com")
    builder.add_recipient("passenger1@mailjet.com", "Passenger 1").add_cc("copilot@example.com").add_bcc("tower@example.com")
    builder.set_subject("Your email flight plan! ✈").set_content(text="Dear passenger", html='<h3>Hi <a href="https://www.mailjet.com/">Mailjet</a></h3>')
    with tempfile.TemporaryDirectory() as folder:
        attachment = Path(folder) / "plan.txt"
        attachment.write_text("Hello from CI!", encoding="utf-8")
        builder.attach_file(attachment, base_dir=Path(folder))
        message = builder.build()
    message["CustomID"] = "Readme_Test_Send_001"

    sandbox = mailjet.send.create(data={"Messages": [message], "SandboxMode": True})
    assert sandbox.status_code == 200
    [result] = sandbox.json()["Messages"]
    assert (result["Status"], result["CustomID"], result["To"][0]["MessageID"]) == ("success", "Readme_Test_Send_001", 0)

    sent = mailjet.send.create(data={"Messages": [message]}).json()["Messages"][0]
    ids = [r["MessageID"] for kind in ("To", "Cc", "Bcc") for r in sent[kind]]
    assert len(set(ids)) == 3 and all(isinstance(i, int) and i > 0 for i in ids)
    stored = control(stack["mailjet_url"], "messages")["messages"]
    assert sorted(m["MessageID"] for m in stored if not m["sandbox"]) == sorted(ids)
    assert {m["MessageID"] for m in stored if m["sandbox"]} == {0}  # shown, never delivered
    assert {m["subject"] for m in stored} == {"Your email flight plan! ✈"}

    with pytest.raises(ValidationError) as refused:
        mailjet.send.create(data={"Messages": [{"From": {"Email": "pilot@mailjet.com"}, "Subject": "x", "TextPart": "x"}]})
    [error] = json.loads(refused.value.response_body)["Messages"][0]["Errors"]
    assert (error["ErrorCode"], error["ErrorRelatedTo"]) == ("mj-0003", ["To"])
