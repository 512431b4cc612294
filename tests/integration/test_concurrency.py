"""Concurrency: what parallel clients do to the stack over real HTTP.

analytics-python's consumer threads, a destination retried while a new identify arrives, a CI
suite's per-test reset while deliveries are in flight, the dashboard polling: each test fires the
competing requests at once (httpx.AsyncClient + asyncio.gather, many of them, several rounds) and
asserts invariants on the END state that hold whatever the interleaving — nothing answered 2xx is
lost, nothing is duplicated, counts agree, no 500 — never on timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

from .conftest import TWO_TENANTS, StartApps
from .polling import wait_for

MANAGECONTACT = "/v3/REST/contactslist/*/managecontact"
# Concurrent requests in flight per burst: more than the delivery pool (16) and uvicorn's accept
# backlog stays comfortable on a shared 2-core machine.
PARALLEL = 40


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=5, engage_sync_interval="manual")
    with BackgroundBundle(config) as info:
        yield info


def reset_both(http: httpx.Client, stack: dict[str, Any]) -> None:
    """The harness's reset: Mailjet, Segment, Mailjet."""
    for url in (stack["mailjet_url"], stack["segment_url"], stack["mailjet_url"]):
        assert http.post(f"{url}/_emulator/reset").status_code == 200


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    """A client for both fakes, after `reset_both`; afterwards no exchange of either server was
    answered by its exception handler."""
    with httpx.Client(timeout=30) as client:
        reset_both(client, stack)
        yield client
        for url in (stack["segment_url"], stack["mailjet_url"]):
            entries = client.get(f"{url}/_emulator/requests?limit=10000").json()["requests"]
            # Answers of a fault rule (503s a test asked for) are not the server's own.
            bugs = [entry for entry in entries if (entry["status"] or 0) >= 500 and entry.get("fault") is None]
            assert bugs == [], bugs[:3]


# ---------------------------------------------------------------- helpers


def run(*coroutines: Any) -> list[Any]:
    """Run the coroutines concurrently on a fresh loop of the test's thread; their results in order."""

    async def together() -> list[Any]:
        return list(await asyncio.gather(*coroutines))

    return asyncio.run(together())


async def burst(requests: list[tuple[str, str, dict[str, Any]]], limit: int = PARALLEL) -> list[httpx.Response]:
    """Send `(method, url, httpx kwargs)` requests at once, at most `limit` in flight; responses in order."""
    gate = asyncio.Semaphore(limit)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=limit)) as client:

        async def one(method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
            async with gate:
                return await client.request(method, url, **kwargs)

        return list(await asyncio.gather(*(one(method, url, kwargs) for method, url, kwargs in requests)))


def identify_call(stack: dict[str, Any], user_id: str, traits: dict[str, Any], message_id: str | None = None) -> tuple[str, str, dict[str, Any]]:
    body = {"userId": user_id, "traits": traits, "messageId": message_id or str(uuid.uuid4())}
    return "POST", f"{stack['segment_url']}/v1/identify", {"json": body, "auth": (stack["write_key"], "")}


def mailjet_auth(stack: dict[str, Any]) -> tuple[str, str]:
    return stack["mailjet_api_key"], stack["mailjet_secret_key"]


def deliveries(http: httpx.Client, stack: dict[str, Any], **query: Any) -> list[dict[str, Any]]:
    answer = http.get(f"{stack['segment_url']}/_emulator/deliveries", params={"limit": 10000, **query})
    answer.raise_for_status()
    return answer.json()["deliveries"]


def segment_events(http: httpx.Client, stack: dict[str, Any], **query: Any) -> list[dict[str, Any]]:
    answer = http.get(f"{stack['segment_url']}/_emulator/events", params={"limit": 10000, **query})
    answer.raise_for_status()
    return answer.json()["events"]


def settled(http: httpx.Client, stack: dict[str, Any], timeout: float = 60) -> list[dict[str, Any]]:
    """Every delivery record once none is queued or retrying (retries run by moving the clock)."""

    def probe() -> tuple[list[dict[str, Any]]] | None:
        records = deliveries(http, stack)
        if any(record["state"] == "retrying" for record in records) and not any(record["state"] == "queued" for record in records):
            http.post(f"{stack['segment_url']}/_emulator/clock", json={"advance": "10m"}).raise_for_status()
            return None
        # In a tuple: no record at all is settled too (a reset answered after every call), and
        # wait_for takes an empty list for "not yet".
        return None if any(record["state"] in ("queued", "retrying") for record in records) else (records,)

    return wait_for(probe, "every delivery to finish", timeout)[0]


def mailjet_emails(http: httpx.Client, stack: dict[str, Any]) -> list[str]:
    answer = http.get(f"{stack['mailjet_url']}/v3/REST/contact", params={"Limit": 1000}, auth=mailjet_auth(stack))
    answer.raise_for_status()
    return [contact["Email"] for contact in answer.json()["Data"]]


def list_members(http: httpx.Client, stack: dict[str, Any]) -> list[int]:
    answer = http.get(
        f"{stack['mailjet_url']}/v3/REST/listrecipient", params={"ContactsList": stack["list_id"], "Limit": 1000},
        auth=mailjet_auth(stack),
    )
    answer.raise_for_status()
    return [row["ContactID"] for row in answer.json()["Data"]]


def contact_properties(http: httpx.Client, stack: dict[str, Any], email: str) -> dict[str, str]:
    answer = http.get(f"{stack['mailjet_url']}/v3/REST/contactdata/{email}", auth=mailjet_auth(stack))
    answer.raise_for_status()
    return {item["Name"]: item["Value"] for item in answer.json()["Data"][0]["Data"]}


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


# ---------------------------------------------------------------- Segment → destination → Mailjet


@pytest.mark.parametrize("round_", range(3))
def test_parallel_identifies_of_many_users_are_all_stored_delivered_once_and_in_mailjet(stack, http, round_):
    users = 120
    calls = [identify_call(stack, f"u{round_}-{n}", {"email": f"u{round_}-{n}@example.com", "plan": "pro", "n": n}) for n in range(users)]
    assert statuses(run(burst(calls))[0]) == [200] * users

    records = settled(http, stack)
    sent_ids = sorted(call[2]["json"]["messageId"] for call in calls)
    assert sorted(event["messageId"] for event in segment_events(http, stack, type="identify")) == sent_ids
    assert sorted(record["messageId"] for record in records) == sent_ids  # one record each, no duplicate
    assert {record["state"] for record in records} == {"delivered"}
    assert sorted(mailjet_emails(http, stack)) == sorted(f"u{round_}-{n}@example.com" for n in range(users))
    members = list_members(http, stack)
    assert len(members) == len(set(members)) == users


def test_parallel_identifies_of_one_user_reach_mailjet_in_the_order_segment_accepted_them(stack, http):
    # One user's lane is FIFO whatever the arrival order: the contact ends with the traits of the
    # message Segment stored last, and every message is delivered exactly once.
    calls = [identify_call(stack, "same-user", {"email": "same@example.com", "step": n}) for n in range(60)]
    assert statuses(run(burst(calls))[0]) == [200] * 60

    records = settled(http, stack)
    assert len(records) == 60 and {record["state"] for record in records} == {"delivered"}
    stored = segment_events(http, stack, type="identify")
    assert [record["messageId"] for record in records] == [event["messageId"] for event in stored]
    assert contact_properties(http, stack, "same@example.com")["step"] == str(stored[-1]["traits"]["step"])


def test_parallel_identifies_of_different_users_with_one_email_make_one_contact(stack, http):
    calls = [identify_call(stack, f"twin-{n}", {"email": "twin@example.com", "twin_n": n}) for n in range(50)]
    assert statuses(run(burst(calls))[0]) == [200] * 50

    records = settled(http, stack)
    assert len(records) == 50 and {record["state"] for record in records} == {"delivered"}, [
        record["reason"] for record in records if record["state"] != "delivered"
    ]
    assert mailjet_emails(http, stack) == ["twin@example.com"]
    assert len(list_members(http, stack)) == 1


def test_the_same_message_id_sent_in_parallel_is_stored_and_delivered_once(stack, http):
    message_id = str(uuid.uuid4())
    calls = [identify_call(stack, "dup", {"email": "dup@example.com", "n": n}, message_id=message_id) for n in range(40)]
    assert statuses(run(burst(calls))[0]) == [200] * 40

    records = settled(http, stack)
    assert [record["messageId"] for record in records] == [message_id]
    assert [event["messageId"] for event in segment_events(http, stack, status="accepted")] == [message_id]


def test_parallel_batches_and_single_calls_lose_nothing(stack, http):
    batches = [
        (
            "POST", f"{stack['segment_url']}/v1/batch",
            {"json": {"writeKey": stack["write_key"], "batch": [
                {"type": "identify", "userId": f"b{b}-{n}", "traits": {"email": f"b{b}-{n}@example.com"}, "messageId": f"b{b}-{n}"}
                for n in range(20)
            ]}},
        )
        for b in range(10)
    ]
    singles = [identify_call(stack, f"s{n}", {"email": f"s{n}@example.com"}, message_id=f"s{n}") for n in range(50)]
    assert statuses(run(burst(batches + singles))[0]) == [200] * 60

    records = settled(http, stack)
    expected = sorted([f"b{b}-{n}" for b in range(10) for n in range(20)] + [f"s{n}" for n in range(50)])
    assert sorted(record["messageId"] for record in records) == expected
    assert {record["state"] for record in records} == {"delivered"}
    assert len(mailjet_emails(http, stack)) == len(expected)


def test_parallel_clock_moves_fire_each_due_retry_once(stack, http):
    # Mailjet refuses the first 30 managecontact calls: those identifies wait for a retry. Ten
    # clock moves at once must run each due retry once: attempts = messages + refusals.
    users, refused = 60, 30
    fault = http.post(
        f"{stack['mailjet_url']}/_emulator/faults",
        json={"method": "POST", "path": MANAGECONTACT, "status": 503, "rate": 1, "times": refused},
    )
    assert fault.status_code in (200, 201), fault.text
    calls = [identify_call(stack, f"r{n}", {"email": f"r{n}@example.com"}) for n in range(users)]
    assert statuses(run(burst(calls))[0]) == [200] * users
    wait_for(lambda: not deliveries(http, stack, state="queued"), "first attempts to end", 30)
    assert len(deliveries(http, stack, state="retrying")) == refused

    clock = [("POST", f"{stack['segment_url']}/_emulator/clock", {"json": {"advance": "5m"}}) for _ in range(10)]
    assert statuses(run(burst(clock))[0]) == [200] * 10

    records = settled(http, stack)
    assert {record["state"] for record in records} == {"delivered"}
    assert sum(len(record["attempts"]) for record in records) == users + refused
    assert len(mailjet_emails(http, stack)) == users


# ---------------------------------------------------------------- resets while work is in flight


def test_reset_while_deliveries_are_in_flight_leaves_nothing_behind(stack, http):
    # The harness's per-test reset (Mailjet, Segment, Mailjet) fired right after a burst was
    # accepted, while its deliveries are out: once the resets answered, nothing of the burst may
    # appear anywhere, however long one waits.
    for round_ in range(4):
        calls = [identify_call(stack, f"z{round_}-{n}", {"email": f"z{round_}-{n}@example.com"}) for n in range(80)]
        assert statuses(run(burst(calls))[0]) == [200] * 80
        for url in (stack["mailjet_url"], stack["segment_url"], stack["mailjet_url"]):
            assert http.post(f"{url}/_emulator/reset").status_code == 200
        time.sleep(0.3)  # not a wait for anything: room for a straggler to show, which must not exist
        assert segment_events(http, stack) == []
        assert deliveries(http, stack) == []
        assert mailjet_emails(http, stack) == []
        assert list_members(http, stack) == []


def test_segment_resets_racing_tracking_calls_keep_events_and_deliveries_in_step(stack, http):
    # Identify calls and whole-Segment resets at once. Whatever survives the last reset is
    # consistent: each stored identify has exactly one delivery record, each ends delivered, and
    # each delivered contact is in Mailjet (Mailjet itself is not reset here).
    calls = [identify_call(stack, f"y{n}", {"email": f"y{n}@example.com"}, message_id=f"y{n}") for n in range(150)]
    resets = [("POST", f"{stack['segment_url']}/_emulator/reset", {}) for _ in range(6)]
    mixed = calls[:50] + resets[:2] + calls[50:100] + resets[2:4] + calls[100:] + resets[4:]
    answers = run(burst(mixed))[0]
    assert statuses(answers) == [200] * len(mixed)

    records = settled(http, stack)
    stored = segment_events(http, stack, type="identify")
    assert sorted(record["messageId"] for record in records) == sorted(event["messageId"] for event in stored)
    assert {record["state"] for record in records} <= {"delivered"}
    emails = set(mailjet_emails(http, stack))
    assert {event["traits"]["email"] for event in stored} <= emails


def test_snapshot_import_racing_tracking_calls_keeps_events_and_deliveries_in_step(stack, http):
    seed = [identify_call(stack, f"snap{n}", {"email": f"snap{n}@example.com"}, message_id=f"snap{n}") for n in range(10)]
    assert statuses(run(burst(seed))[0]) == [200] * 10
    settled(http, stack)
    snapshot = http.get(f"{stack['segment_url']}/_emulator/snapshot").json()

    calls = [identify_call(stack, f"w{n}", {"email": f"w{n}@example.com"}, message_id=f"w{n}") for n in range(120)]
    imports = [("PUT", f"{stack['segment_url']}/_emulator/snapshot", {"json": snapshot}) for _ in range(4)]
    mixed = calls[:40] + imports[:2] + calls[40:80] + imports[2:] + calls[80:]
    assert statuses(run(burst(mixed))[0]) == [200] * len(mixed)

    records = settled(http, stack)
    stored = segment_events(http, stack, type="identify")
    ids = sorted(event["messageId"] for event in stored)
    assert sorted(record["messageId"] for record in records) == ids
    assert {f"snap{n}" for n in range(10)} <= set(ids)
    assert {record["state"] for record in records} == {"delivered"}


# ---------------------------------------------------------------- Mailjet REST and Send


def test_parallel_creates_of_one_contact_make_one(stack, http):
    url = f"{stack['mailjet_url']}/v3/REST/contact"
    calls = [("POST", url, {"json": {"Email": "once@example.com"}, "auth": mailjet_auth(stack)}) for _ in range(30)]
    answers = run(burst(calls))[0]
    assert sorted(statuses(answers)) == [201] + [400] * 29
    assert all("MJ18" in answer.text for answer in answers if answer.status_code == 400)
    assert mailjet_emails(http, stack) == ["once@example.com"]


def test_parallel_creates_of_one_property_make_one(stack, http):
    url = f"{stack['mailjet_url']}/v3/REST/contactmetadata"
    body = {"Name": "tier", "Datatype": "str", "NameSpace": "static"}
    answers = run(burst([("POST", url, {"json": body, "auth": mailjet_auth(stack)}) for _ in range(30)]))[0]
    assert sorted(statuses(answers)) == [201] + [400] * 29
    listed = http.get(url, params={"Limit": 1000}, auth=mailjet_auth(stack)).json()["Data"]
    assert [item["Name"] for item in listed] == ["tier"]


def test_parallel_managecontact_of_one_email_make_one_contact_and_one_membership(stack, http):
    url = f"{stack['mailjet_url']}/v3/REST/contactslist/{stack['list_id']}/managecontact"
    calls = [
        ("POST", url, {"json": {"Email": "m@example.com", "Action": "addnoforce", "Name": f"M {n}"}, "auth": mailjet_auth(stack)})
        for n in range(40)
    ]
    answers = run(burst(calls))[0]
    assert set(statuses(answers)) <= {200, 201}, [answer.text for answer in answers if answer.status_code >= 300]
    contact_ids = {answer.json()["Data"][0]["ContactID"] for answer in answers}
    assert len(contact_ids) == 1
    assert mailjet_emails(http, stack) == ["m@example.com"]
    assert list_members(http, stack) == list(contact_ids)


def test_parallel_sends_get_distinct_message_ids_and_are_all_recorded(stack, http):
    url = f"{stack['mailjet_url']}/v3.1/send"

    def message(n: int) -> dict[str, Any]:
        return {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": f"to{n}@example.com"}], "Subject": f"s{n}", "TextPart": "hi"}]}

    answers = run(burst([("POST", url, {"json": message(n), "auth": mailjet_auth(stack)}) for n in range(80)]))[0]
    assert statuses(answers) == [200] * 80
    ids = [answer.json()["Messages"][0]["To"][0]["MessageID"] for answer in answers]
    assert len(set(ids)) == 80
    listed = http.get(f"{stack['mailjet_url']}/_emulator/messages", params={"limit": 1000}).json()
    rows = listed["messages"] if isinstance(listed, dict) else listed
    assert sorted(row["MessageID"] for row in rows) == sorted(ids)


def test_email_events_forwarded_from_parallel_sends_reach_segment_once_each(stack, http):
    connect = http.put(
        f"{stack['mailjet_url']}/_emulator/app-connections/segment", json={"writeKey": stack["write_key"], "sendEvents": True}
    )
    assert connect.status_code == 200, connect.text
    url = f"{stack['mailjet_url']}/v3.1/send"

    def message(n: int) -> dict[str, Any]:
        return {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": f"fw{n}@example.com"}], "Subject": "s", "TextPart": "hi"}]}

    answers = run(burst([("POST", url, {"json": message(n), "auth": mailjet_auth(stack)}) for n in range(60)]))[0]
    assert statuses(answers) == [200] * 60
    ids = [answer.json()["Messages"][0]["To"][0]["MessageID"] for answer in answers]
    # Opens fired in parallel with the sends' own `sent` events (open on a queued message delivers it first).
    opens = [("POST", f"{stack['mailjet_url']}/_emulator/messages/{mid}/events", {"json": {"event": "open"}}) for mid in ids]
    assert statuses(run(burst(opens))[0]) == [201] * 60
    http.post(f"{stack['mailjet_url']}/_emulator/clock", json={"advance": "5s"}).raise_for_status()

    def forwarded() -> list[dict[str, Any]] | None:
        events = segment_events(http, stack, type="track")
        return events if len(events) >= 120 else None

    events = wait_for(forwarded, "120 forwarded email events", 30)
    time.sleep(0.3)  # room for a duplicate to show, which must not exist
    events = segment_events(http, stack, type="track")
    pairs = sorted((event["event"], event["properties"]["email_id"]) for event in events)
    expected = sorted([("Email Delivered", str(mid)) for mid in ids] + [("Email Opened", str(mid)) for mid in ids])
    assert [(name, str(email_id)) for name, email_id in pairs] == expected


# ---------------------------------------------------------------- control API


def test_parallel_source_creations_with_one_write_key_make_one(stack, http):
    url = f"{stack['segment_url']}/_emulator/sources"
    answers = run(burst([("POST", url, {"json": {"name": f"job {n}", "write_key": "shared-key"}}) for n in range(20)]))[0]
    assert sorted(statuses(answers)) == [201] + [409] * 19


def test_parallel_engage_syncs_send_each_member_once(stack, http):
    members = 30
    calls = [identify_call(stack, f"e{n}", {"email": f"e{n}@example.com", "plan": "pro"}) for n in range(members)]
    assert statuses(run(burst(calls))[0]) == [200] * members
    audience = http.post(
        f"{stack['segment_url']}/_emulator/engage/audiences", json={"name": "Pro Users", "rule": {"trait": "plan", "equals": "pro"}}
    )
    assert audience.status_code == 201, audience.text
    syncs = run(burst([("POST", f"{stack['segment_url']}/_emulator/engage/sync", {}) for _ in range(10)]))[0]
    assert statuses(syncs) == [200] * 10
    sent = [message["userId"] for answer in syncs for message in answer.json()["sent"]]
    assert sorted(sent) == sorted(f"e{n}" for n in range(members))
    settled(http, stack)
    synced = [event for event in segment_events(http, stack, type="identify") if "pro_users" in event.get("traits", {})]
    assert sorted(event["userId"] for event in synced) == sorted(sent)


# ---------------------------------------------------------------- the destination's property cache


def destination_call(stack: dict[str, Any], traits: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """An identify POSTed straight to the destination, as Segment sends it."""
    settings = base64.b64encode(json.dumps({"listId": str(stack["list_id"])}).encode()).decode()
    headers = {"X-Segment-Settings": settings}
    body = {"type": "identify", "userId": traits["email"], "traits": traits, "messageId": str(uuid.uuid4())}
    return "POST", stack["destination_url"] + "/", {"json": body, "headers": headers, "auth": (stack["auth_key"], "")}


def test_a_property_deleted_while_another_identify_creates_one_is_defined_again(stack, http):
    mailjet = stack["mailjet_url"]
    new_name = f"fresh_{uuid.uuid4().hex[:8]}"
    # The destination caches `plan` as defined.
    assert statuses(run(burst([destination_call(stack, {"email": "prime@example.com", "plan": "free"})]))[0]) == [200]
    # B's creation of a new property is held 1.5 s at Mailjet, while B holds the definitions lock: A
    # waits behind it, within the 4.5 s an identify may take, with room for a stall of a loaded machine.
    fault = http.post(
        f"{mailjet}/_emulator/faults",
        json={"method": "POST", "path": "/v3/REST/contactmetadata", "status": None, "delay_ms": 1500, "rate": 1, "times": 1},
    )
    assert fault.status_code in (200, 201), fault.text

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        b = asyncio.ensure_future(burst([destination_call(stack, {"email": "b@example.com", new_name: 1})]))
        await asyncio.to_thread(wait_for, lambda: http.get(f"{mailjet}/_emulator/faults").json()["faults"][0]["fired"] == 1, "B held")
        # Meanwhile `plan` is deleted in Mailjet (its UI, or a test's setup).
        deleted = http.delete(f"{mailjet}/v3/REST/contactmetadata/plan", auth=mailjet_auth(stack))
        assert deleted.status_code == 204, deleted.text
        a = await burst([destination_call(stack, {"email": "a@example.com", "plan": "pro"})])
        return (await b)[0], a[0]

    b, a = asyncio.run(scenario())
    assert b.status_code == 200, b.text
    assert a.status_code == 200, a.text
    assert contact_properties(http, stack, "a@example.com")["plan"] == "pro"


def test_parallel_identifies_after_a_reset_are_all_delivered_though_the_destination_cached_the_old_properties(stack, http):
    # The pytest plugin's flow: each test resets both fakes, and the destination still caches the
    # properties the previous test defined (`plan`, `segment_user_id`). The next test's identifies
    # run in parallel, some with a trait never seen: every one must reach Mailjet. 15 rounds: a
    # round lost identifies about 7 times in 10 before the fix.
    lost: list[str] = []
    for round_ in range(15):
        for url in (stack["mailjet_url"], stack["segment_url"], stack["mailjet_url"]):
            assert http.post(f"{url}/_emulator/reset").status_code == 200
        calls = [
            identify_call(stack, f"c{round_}-{n}", {"email": f"c{round_}-{n}@example.com", "plan": "pro", **({f"new_{round_}_{n}": 1} if n % 2 else {})})
            for n in range(40)
        ]
        assert statuses(run(burst(calls))[0]) == [200] * 40
        lost += [record["reason"] for record in settled(http, stack) if record["state"] != "delivered"]
        if lost:
            break
    assert lost == []


# ---------------------------------------------------------------- Mailjet: replacing the state while calls are out


def replace_mailjet_by_reset(http: httpx.Client, stack: dict[str, Any], snapshot: dict[str, Any]) -> httpx.Response:
    return http.post(f"{stack['mailjet_url']}/_emulator/reset")


def replace_mailjet_by_snapshot(http: httpx.Client, stack: dict[str, Any], snapshot: dict[str, Any]) -> httpx.Response:
    return http.put(f"{stack['mailjet_url']}/_emulator/snapshot", json=snapshot)


@pytest.mark.parametrize("replace", [
    replace_mailjet_by_reset,
    replace_mailjet_by_snapshot,
])
def test_mailjet_state_replaced_while_an_email_event_forward_is_out_answers_after_it(stack, http, replace):
    # A forward held 2 s at the fake Segment is out when Mailjet's state is replaced. As for a
    # reset (the harness resets Mailjet first for this), the replacement must answer only once that
    # call has its answer, so nothing of the old state reaches Segment after it.
    mailjet, segment = stack["mailjet_url"], stack["segment_url"]
    snapshot = http.get(f"{mailjet}/_emulator/snapshot").json()
    connect = http.put(f"{mailjet}/_emulator/app-connections/segment", json={"writeKey": stack["write_key"], "sendEvents": True})
    assert connect.status_code == 200, connect.text
    fault = http.post(
        f"{segment}/_emulator/faults",
        json={"method": "POST", "path": "/v1/batch", "status": None, "delay_ms": 2000, "rate": 1, "times": 1},
    )
    assert fault.status_code in (200, 201), fault.text
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "held@example.com"}], "Subject": "s", "TextPart": "hi"}
    sent = http.post(f"{mailjet}/v3.1/send", json={"Messages": [message]}, auth=mailjet_auth(stack))
    assert sent.status_code == 200, sent.text
    http.post(f"{mailjet}/_emulator/clock", json={"advance": "2s"}).raise_for_status()
    wait_for(lambda: http.get(f"{segment}/_emulator/faults").json()["faults"][0]["fired"] == 1, "the forward held at Segment")

    assert replace(http, stack, snapshot).status_code == 200
    landed = [event["event"] for event in segment_events(http, stack, type="track")]
    # Whatever the outcome, let the held call end before the next test resets Segment.
    wait_for(lambda: segment_events(http, stack, type="track"), "the held forward to land", 10)
    assert landed == ["Email Delivered"]


# ---------------------------------------------------------------- webhooks under parallel events


class Hooks:
    """A webhook endpoint keeping every POSTed body, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []

    async def endpoint(self, request: Request) -> Response:
        self.received.append((request.url.path, await request.json()))
        return Response(status_code=200)

    def events(self) -> list[dict[str, Any]]:
        """Every event received, Version 2 arrays unpacked."""
        found: list[dict[str, Any]] = []
        for _, body in list(self.received):
            found.extend(body if isinstance(body, list) else [body])
        return found


@pytest.fixture(scope="module")
def hooks(serve: StartApps) -> tuple[Hooks, str]:
    receiver = Hooks()
    url = serve({"hooks": Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["POST"])])})["hooks"]
    return receiver, url


def test_parallel_email_events_reach_their_webhooks_once_each(stack, http, hooks):
    receiver, hooks_url = hooks
    receiver.received.clear()
    mailjet = stack["mailjet_url"]
    for event_type, version in (("sent", 1), ("open", 2), ("click", 2)):
        created = http.post(
            f"{mailjet}/v3/REST/eventcallbackurl", auth=mailjet_auth(stack),
            json={"EventType": event_type, "Url": f"{hooks_url}/{event_type}", "Version": version},
        )
        assert created.status_code == 201, created.text
    url = f"{mailjet}/v3.1/send"

    def message(n: int) -> dict[str, Any]:
        html = '<p><a href="https://shop.example.com/x">x</a></p>'
        return {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": f"wh{n}@example.com"}], "Subject": "s", "HTMLPart": html}]}

    answers = run(burst([("POST", url, {"json": message(n), "auth": mailjet_auth(stack)}) for n in range(50)]))[0]
    ids = [answer.json()["Messages"][0]["To"][0]["MessageID"] for answer in answers]
    events = [
        ("POST", f"{mailjet}/_emulator/messages/{mid}/events", {"json": {"event": kind, **({"url": "https://shop.example.com/x"} if kind == "click" else {})}})
        for mid in ids for kind in ("open", "click")
    ]
    assert statuses(run(burst(events))[0]) == [201] * len(events)
    moves = [("POST", f"{mailjet}/_emulator/clock", {"json": {"advance": "2s"}}) for _ in range(5)]
    assert statuses(run(burst(moves))[0]) == [200] * 5

    wait_for(lambda: len(receiver.events()) >= 150, "150 webhook events", 30)
    time.sleep(0.3)  # room for a duplicate to show, which must not exist
    got = sorted((event["event"], event["MessageID"]) for event in receiver.events())
    assert got == sorted((kind, mid) for mid in ids for kind in ("sent", "open", "click"))


# ---------------------------------------------------------------- tenants side by side


def test_a_tenant_resetting_itself_in_a_loop_loses_nothing_of_another(tenant_b):
    # Job B resets its own workspace and account over and over while job A streams identifies.
    # B's identifies carry no email: a scoped reset points B's destination back at the bundle's
    # authentication key (A's account, as documented), where they are refused (400) unwritten.
    stack, a, b = tenant_b, TWO_TENANTS["a"], TWO_TENANTS["b"]
    calls = [
        ("POST", f"{stack.segment_url}/v1/identify", {"json": {"userId": f"ta{n}", "traits": {"email": f"ta{n}@example.com"}}, "auth": (a["write_key"], "")})
        for n in range(100)
    ]
    b_calls = [
        ("POST", f"{stack.segment_url}/v1/identify", {"json": {"userId": f"tb{n}", "traits": {"name": f"B {n}"}}, "auth": (b["write_key"], "")})
        for n in range(60)
    ]
    resets = [("POST", f"{stack.segment_url}/_emulator/reset", {"params": {"writeKey": b["write_key"]}}) for _ in range(4)]
    resets += [("POST", f"{stack.mailjet_url}/_emulator/reset", {"params": {"apiKey": b["api_key"]}}) for _ in range(4)]
    mixed = [item for group in zip(calls[:60], b_calls) for item in group] + calls[60:]
    mixed = mixed[:40] + resets[:4] + mixed[40:100] + resets[4:] + mixed[100:]
    assert statuses(run(burst(mixed))[0]) == [200] * len(mixed)

    http = stack.http

    def a_done() -> list[dict[str, Any]] | None:
        records = http.get(f"{stack.segment_url}/_emulator/deliveries", params={"writeKey": a["write_key"], "limit": 10000}).json()["deliveries"]
        return records if records and all(record["state"] in ("delivered", "failed") for record in records) else None

    records = wait_for(a_done, "A's deliveries to finish", 60)
    assert sorted(record["userId"] for record in records) == sorted(f"ta{n}" for n in range(100))
    assert {record["state"] for record in records} == {"delivered"}
    contacts = http.get(f"{stack.mailjet_url}/v3/REST/contact", params={"Limit": 1000}, auth=(a["api_key"], a["secret_key"])).json()["Data"]
    assert sorted(contact["Email"] for contact in contacts) == sorted(f"ta{n}@example.com" for n in range(100))
    # B's survivors are consistent with themselves: one record per stored identify.
    b_events = http.get(f"{stack.segment_url}/_emulator/events", params={"writeKey": b["write_key"], "type": "identify", "limit": 10000}).json()["events"]
    b_records = http.get(f"{stack.segment_url}/_emulator/deliveries", params={"writeKey": b["write_key"], "limit": 10000}).json()["deliveries"]
    assert sorted(event["messageId"] for event in b_events) == sorted(record["messageId"] for record in b_records)


def test_parallel_account_creations_with_one_api_key_make_one(stack, http):
    url = f"{stack['mailjet_url']}/_emulator/accounts"
    answers = run(burst([("POST", url, {"json": {"api_key": "shared", "secret_key": f"s{n}"}}) for n in range(20)]))[0]
    assert sorted(statuses(answers)) == [201] + [409] * 19


def test_overlapping_contact_jobs_and_managecontact_calls_make_one_contact_per_email(stack, http):
    mailjet, list_id = stack["mailjet_url"], stack["list_id"]
    emails = [f"job{n}@example.com" for n in range(30)]
    jobs = [
        ("POST", f"{mailjet}/v3/REST/contactslist/{list_id}/managemanycontacts",
         {"json": {"Action": "addnoforce", "Contacts": [{"Email": email} for email in emails]}, "auth": mailjet_auth(stack)})
        for _ in range(5)
    ]
    singles = [
        ("POST", f"{mailjet}/v3/REST/contactslist/{list_id}/managecontact",
         {"json": {"Email": email, "Action": "addnoforce"}, "auth": mailjet_auth(stack)})
        for email in emails
    ]
    answers = run(burst(jobs + singles))[0]
    assert set(statuses(answers)) <= {200, 201}, [answer.text for answer in answers if answer.status_code >= 300]
    moves = [("POST", f"{mailjet}/_emulator/clock", {"json": {"advance": "1m"}}) for _ in range(5)]
    assert statuses(run(burst(moves))[0]) == [200] * 5
    for answer in answers[:5]:
        job_id = answer.json()["Data"][0]["JobID"]
        job = http.get(f"{mailjet}/v3/REST/contactslist/{list_id}/managemanycontacts/{job_id}", auth=mailjet_auth(stack)).json()["Data"][0]
        assert job["Status"] == "Completed", job
    assert sorted(mailjet_emails(http, stack)) == sorted(emails)
    members = list_members(http, stack)
    assert len(members) == len(set(members)) == 30


# ---------------------------------------------------------------- Engage in realtime under a burst


@pytest.fixture(scope="module")
def realtime() -> Iterator[dict[str, Any]]:
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=6, engage_sync_interval="realtime")
    with BackgroundBundle(config) as info:
        yield info


def test_realtime_audience_under_parallel_identifies_syncs_each_member_once(realtime):
    stack = realtime
    with httpx.Client(timeout=30) as http:
        reset_both(http, stack)
        audience = http.post(
            f"{stack['segment_url']}/_emulator/engage/audiences", json={"name": "Pro Users", "rule": {"trait": "plan", "equals": "pro"}}
        )
        assert audience.status_code == 201, audience.text
        users = 80
        # Each user identifies twice at once (plan pro, then pro again with another trait): one
        # audience entry each, however the calls and the syncs interleave.
        calls = [identify_call(stack, f"rt{n}", {"email": f"rt{n}@example.com", "plan": "pro", "k": k}) for n in range(users) for k in range(2)]
        assert statuses(run(burst(calls))[0]) == [200] * len(calls)

        def synced() -> list[dict[str, Any]] | None:
            found = [event for event in segment_events(http, stack, type="identify") if "pro_users" in event.get("traits", {})]
            return found if len(found) >= users else None

        wait_for(synced, "every member synced", 30)
        records = settled(http, stack)
        entries = [event for event in segment_events(http, stack, type="identify") if "pro_users" in event.get("traits", {})]
        assert sorted(event["userId"] for event in entries) == sorted(f"rt{n}" for n in range(users))
        assert {event["traits"]["pro_users"] for event in entries} == {True}
        assert {record["state"] for record in records} == {"delivered"}
        assert contact_properties(http, stack, "rt7@example.com")["pro_users"] == "true"


# ---------------------------------------------------------------- what a restart finds after racing writes


def test_a_restart_after_racing_calls_resets_and_imports_finds_the_state_it_left(tmp_path):
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=8, data_dir=str(tmp_path))

    def state(http: httpx.Client, stack: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
        events = sorted(event["messageId"] for event in segment_events(http, stack))
        records = sorted((record["messageId"], record["state"]) for record in deliveries(http, stack))
        return events, records, sorted(mailjet_emails(http, stack))

    with BackgroundBundle(config) as stack, httpx.Client(timeout=30) as http:
        seed = [identify_call(stack, f"p{n}", {"email": f"p{n}@example.com"}, message_id=f"p{n}") for n in range(10)]
        assert statuses(run(burst(seed))[0]) == [200] * 10
        settled(http, stack)
        snapshot = http.get(f"{stack['segment_url']}/_emulator/snapshot").json()
        calls = [identify_call(stack, f"q{n}", {"email": f"q{n}@example.com"}, message_id=f"q{n}") for n in range(150)]
        others = [
            ("POST", f"{stack['segment_url']}/_emulator/reset", {}),
            ("PUT", f"{stack['segment_url']}/_emulator/snapshot", {"json": snapshot}),
            ("POST", f"{stack['segment_url']}/_emulator/reset", {}),
            ("PUT", f"{stack['segment_url']}/_emulator/snapshot", {"json": snapshot}),
        ]
        mixed = calls[:30] + others[:1] + calls[30:60] + others[1:2] + calls[60:90] + others[2:3] + calls[90:120] + others[3:] + calls[120:]
        assert statuses(run(burst(mixed))[0]) == [200] * len(mixed)
        settled(http, stack)
        before = state(http, stack)
    with BackgroundBundle(config) as stack, httpx.Client(timeout=30) as http:
        after = state(http, stack)
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]


def test_the_harness_reset_while_email_events_and_deliveries_are_out_leaves_nothing_behind(stack, http):
    # Both directions at once: identifies on their way to Mailjet, email events on their way to
    # Segment; then the pytest plugin's reset. Nothing of either may show up after it answered.
    from emulator.harness.client import SegjetClient

    harness = SegjetClient(stack)
    try:
        mailjet = stack["mailjet_url"]
        for round_ in range(3):
            connect = http.put(f"{mailjet}/_emulator/app-connections/segment", json={"writeKey": stack["write_key"], "sendEvents": True})
            assert connect.status_code == 200, connect.text
            sends = [
                ("POST", f"{mailjet}/v3.1/send", {"auth": mailjet_auth(stack), "json": {"Messages": [
                    {"From": {"Email": "shop@example.com"}, "To": [{"Email": f"h{round_}-{n}@example.com"}], "Subject": "s", "TextPart": "hi"}
                ]}})
                for n in range(30)
            ]
            answers = run(burst(sends))[0]
            ids = [answer.json()["Messages"][0]["To"][0]["MessageID"] for answer in answers]
            opens = [("POST", f"{mailjet}/_emulator/messages/{mid}/events", {"json": {"event": "open"}}) for mid in ids]
            calls = [identify_call(stack, f"h{round_}-{n}", {"email": f"hi{round_}-{n}@example.com"}) for n in range(60)]
            assert set(statuses(run(burst(opens + calls))[0])) == {200, 201}
            harness.reset()
            time.sleep(0.3)  # not a wait for anything: room for a straggler to show, which must not exist
            assert segment_events(http, stack) == []
            assert deliveries(http, stack) == []
            assert mailjet_emails(http, stack) == []
            assert http.get(f"{mailjet}/_emulator/email-events").json()["email_events"] == []
    finally:
        harness.close()


def test_dashboard_polling_during_bursts_and_resets_never_fails(stack, http):
    # The dashboard polls its trace, lists and contacts while a job streams identifies and resets.
    segment, mailjet = stack["segment_url"], stack["mailjet_url"]
    polls = [
        ("GET", f"{segment}/_emulator/dashboard/trace", {"params": {"user": f"d{n % 5}"}}) for n in range(20)
    ] + [("GET", f"{mailjet}/_emulator/dashboard/contacts", {}) for _ in range(10)] + [
        ("GET", f"{mailjet}/_emulator/dashboard/lists", {}) for _ in range(10)
    ]
    calls = [identify_call(stack, f"d{n % 5}", {"email": f"d{n % 5}@example.com", "n": n}) for n in range(100)]
    resets = [("POST", f"{url}/_emulator/reset", {}) for url in (mailjet, segment, mailjet, segment)]
    mixed: list[tuple[str, str, dict[str, Any]]] = []
    for n in range(100):
        mixed.append(calls[n])
        if n % 3 == 0 and polls:
            mixed.append(polls.pop())
        if n % 25 == 24:
            mixed.append(resets.pop())
    mixed += polls
    answers = run(burst(mixed))[0]
    assert [answer.status_code for answer in answers if answer.status_code != 200] == [], [
        answer.text for answer in answers if answer.status_code != 200
    ][:3]
    records = settled(http, stack)
    stored = segment_events(http, stack, type="identify")
    assert sorted(record["messageId"] for record in records) == sorted(event["messageId"] for event in stored)


def test_the_harness_client_shared_by_threads_loses_nothing(stack, http):
    # A test suite drives one SegjetClient (the `segjet` fixture) from a thread pool.
    from concurrent.futures import ThreadPoolExecutor

    from emulator.harness.client import SegjetClient

    harness = SegjetClient(stack)
    try:
        def one(n: int) -> tuple[str, dict[str, str]]:
            message_id = harness.identify(f"th{n}", {"email": f"th{n}@example.com", "n": n})
            return message_id, harness.wait_for_contact(f"th{n}@example.com", {"n": n}, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(48)))
        assert [properties["n"] for _, properties in results] == [str(n) for n in range(48)]
        records = settled(http, stack)
        assert sorted(record["messageId"] for record in records) == sorted(message_id for message_id, _ in results)
    finally:
        harness.close()


def test_analytics_python_with_four_consumer_threads_loses_nothing(stack, http):
    from segment.analytics import Client

    failures: list[Any] = []
    client = Client(
        stack["write_key"], host=stack["segment_url"], thread=4, upload_size=25, max_queue_size=5000,
        on_error=lambda error, batch: failures.append(error),
    )
    sent = []
    for n in range(600):
        sent.append(client.identify(f"ap{n}", {"email": f"ap{n}@example.com", "n": n})[1]["messageId"])
    client.flush()
    client.shutdown()
    assert failures == []
    records = settled(http, stack)
    assert sorted(record["messageId"] for record in records) == sorted(sent)
    assert {record["state"] for record in records} == {"delivered"}
    assert len(mailjet_emails(http, stack)) == 600
