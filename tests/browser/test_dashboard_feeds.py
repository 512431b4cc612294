"""The dashboard's JSON and SSE feeds over real HTTP, without a browser."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from emulator.dashboard.common import Broadcaster
from emulator.dashboard.segment_routes import export_html


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        for url in (stack["segment_url"], stack["mailjet_url"]):
            client.post(f"{url}/_emulator/reset").raise_for_status()
        yield client


def first_data(lines: Iterator[str], event: str | None = None) -> Any:
    """The data of the first item of the stream named `event` (None: an unnamed one, a message)."""
    name = None
    for line in lines:
        if line.startswith("event:"):
            name = line[len("event:"):].strip()
        elif line.startswith("data:") and name == event:
            return json.loads(line[len("data:"):])
        elif not line:
            name = None
    raise AssertionError("the stream ended without data")


def test_segment_stream_sends_each_stored_message(stack: dict[str, Any], http: httpx.Client) -> None:
    with httpx.Client(timeout=10) as listener, listener.stream("GET", f"{stack['segment_url']}/_emulator/events/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        http.post(f"{stack['segment_url']}/v1/identify", auth=(stack["write_key"], ""),
                  json={"userId": "u1", "traits": {"email": "ada@example.com"}}).raise_for_status()
        message = first_data(lines)
    assert message["type"] == "identify" and message["userId"] == "u1" and message["status"] == "accepted"


def test_segment_stream_names_a_new_epoch_after_a_reset(stack: dict[str, Any], http: httpx.Client) -> None:
    # Nothing on the feed told a page of a reset: it kept listing messages the server had forgotten.
    with httpx.Client(timeout=10) as listener, listener.stream("GET", f"{stack['segment_url']}/_emulator/events/stream") as stream:
        lines = stream.iter_lines()
        before = first_data(lines, "epoch")
        http.post(f"{stack['segment_url']}/_emulator/reset").raise_for_status()
        after = first_data(lines, "epoch")
    assert isinstance(before, str) and isinstance(after, str) and after != before
    with httpx.Client(timeout=10) as listener, listener.stream("GET", f"{stack['segment_url']}/_emulator/events/stream") as stream:
        assert first_data(stream.iter_lines(), "epoch") == after  # a reconnection to the same state: the same epoch


def test_segment_stream_refuses_another_workspaces_key(stack: dict[str, Any], http: httpx.Client) -> None:
    # It streamed the default workspace's messages to a caller naming another workspace.
    assert http.get(f"{stack['segment_url']}/_emulator/events/stream", params={"writeKey": "other-job"}).status_code == 400
    with http.stream("GET", f"{stack['segment_url']}/_emulator/events/stream", params={"writeKey": stack["write_key"]}) as own:
        assert own.status_code == 200 and next(own.iter_lines()) == ": connected"


def test_mailjet_stream_tells_of_changes(stack: dict[str, Any], http: httpx.Client) -> None:
    auth = (stack["mailjet_api_key"], stack["mailjet_secret_key"])
    with httpx.Client(timeout=10) as listener, listener.stream("GET", f"{stack['mailjet_url']}/_emulator/stream") as stream:
        lines = stream.iter_lines()
        first = first_data(lines)
        http.post(f"{stack['mailjet_url']}/v3/REST/contact", auth=auth, json={"Email": "bo@example.com"}).raise_for_status()
        second = first_data(lines)
    assert first["kind"] == second["kind"] == "changed" and second["version"] > first["version"]


def test_mailjet_stream_tells_of_webhook_delivery_changes(stack: dict[str, Any], http: httpx.Client) -> None:
    auth = (stack["mailjet_api_key"], stack["mailjet_secret_key"])
    mailjet = stack["mailjet_url"]
    http.post(f"{mailjet}/v3/REST/eventcallbackurl", auth=auth, json={"EventType": "sent", "Url": "http://127.0.0.1:9/down"}).raise_for_status()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "Subject": "Hi", "TextPart": "x"}
    http.post(f"{mailjet}/v3.1/send", auth=auth, json={"Messages": [message]}).raise_for_status()
    http.post(f"{mailjet}/_emulator/clock", json={"advance": "1s"}).raise_for_status()

    def attempts() -> int:
        rows = http.get(f"{mailjet}/_emulator/email-events").json()["email_events"]
        return len(rows[0]["webhook"]["attempts"]) if rows else 0

    deadline = time.monotonic() + 10
    while attempts() < 1:
        assert time.monotonic() < deadline, "no first webhook attempt"
        time.sleep(0.02)
    with httpx.Client(timeout=10) as listener, listener.stream("GET", f"{mailjet}/_emulator/stream") as stream:
        lines = stream.iter_lines()
        first = first_data(lines)
        # The retry changes nothing but the webhook delivery's attempts: the page must still hear of it.
        http.post(f"{mailjet}/_emulator/clock", json={"advance": "31s"}).raise_for_status()
        second = first_data(lines)
    assert second["version"] > first["version"] and attempts() == 2


def test_dashboard_reads_of_the_mailjet_model_need_no_secret(stack: dict[str, Any], http: httpx.Client) -> None:
    lists = http.get(f"{stack['mailjet_url']}/_emulator/dashboard/lists").json()["lists"]
    assert [item["ID"] for item in lists] == [1]
    auth = (stack["mailjet_api_key"], stack["mailjet_secret_key"])
    http.post(f"{stack['mailjet_url']}/v3/REST/contactslist/1/managecontact", auth=auth,
              json={"Email": "ada@example.com", "Action": "addnoforce"}).raise_for_status()
    contacts = http.get(f"{stack['mailjet_url']}/_emulator/dashboard/contacts", params={"email": "ADA@example.com"}).json()["contacts"]
    assert contacts[0]["Email"] == "ada@example.com"
    assert contacts[0]["Lists"][0]["ListID"] == 1 and contacts[0]["Lists"][0]["IsUnsubscribed"] is False
    info = http.get(f"{stack['mailjet_url']}/_emulator/dashboard/info").json()
    assert stack["mailjet_secret_key"] not in json.dumps(info)


def test_pages_and_static_files_are_served(stack: dict[str, Any], http: httpx.Client) -> None:
    for url, paths in ((stack["segment_url"], ["/", "/debugger", "/destinations", "/deliveries", "/engage", "/trace"]),
                       (stack["mailjet_url"], ["/", "/app-connections", "/contacts", "/messages"])):
        for path in paths:
            page = http.get(f"{url}{path}")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            assert "http://" not in page.text and "https://" not in page.text, f"{path} must not load anything external"
        for asset in ("common.js", "dashboard.css", "trace-view.js"):
            assert http.get(f"{url}/_emulator/dashboard/static/{asset}").status_code == 200


def test_validation_endpoint_answers_violations(stack: dict[str, Any], http: httpx.Client) -> None:
    url = f"{stack['segment_url']}/_emulator/validate"
    good = http.post(f"{url}/segment.identify", json={"type": "identify", "userId": "u1", "messageId": "m1",
                                                      "timestamp": "2024-01-01T00:00:00.000Z", "traits": {}})
    assert good.status_code == 200 and good.json() == {"contract": "segment.identify", "violations": []}
    bad = http.post(f"{url}/segment.identify", json={"type": "identify"})
    assert bad.status_code == 200 and bad.json()["violations"]
    assert {"path", "rule", "message"} <= set(bad.json()["violations"][0])
    assert http.post(f"{url}/no.such.contract", json={}).status_code == 404
    # Shared definitions are no contract, and the answer says so, as `segjet validate` does.
    shared = http.post(f"{url}/segment.common", json={})
    assert shared.status_code == 404 and "holds definitions the contracts share" in shared.json()["error"]
    assert http.post(f"{url}/segment.identify", content=b"{not json").status_code == 400


def test_trace_of_an_unknown_user_is_empty_and_user_is_required(stack: dict[str, Any], http: httpx.Client) -> None:
    trace = http.get(f"{stack['segment_url']}/_emulator/dashboard/trace", params={"user": "nobody"}).json()
    assert trace["steps"] == [] and trace["contact"] is None
    assert http.get(f"{stack['segment_url']}/_emulator/dashboard/trace").status_code == 400


def test_trace_with_a_token_no_header_can_carry_answers_not_a_500(stack: dict[str, Any], http: httpx.Client) -> None:
    # The open control API let "?token=é" through, and the trace put it in a header: 500.
    answer = http.get(f"{stack['segment_url']}/_emulator/dashboard/trace", params={"user": "u1", "token": "é"})
    assert answer.status_code == 200 and answer.json()["steps"] == []


def test_trace_survives_events_whose_ids_are_not_strings(stack: dict[str, Any], http: httpx.Client) -> None:
    # Found by tests/fuzz: a discarded event with a dict anonymousId made the trace answer 500.
    body = {"userId": {"a": 1}, "anonymousId": {"b": 2}, "messageId": {"c": 3}, "writeKey": stack["write_key"]}
    assert http.post(f"{stack['segment_url']}/v1/track", json=body).status_code == 200
    body = {"userId": "nobody", "context": [1], "writeKey": stack["write_key"]}
    assert http.post(f"{stack['segment_url']}/v1/identify", json=body).status_code == 200
    response = http.get(f"{stack['segment_url']}/_emulator/dashboard/trace", params={"user": "nobody"})
    assert response.status_code == 200


def test_trace_by_email_skips_a_user_id_that_is_not_a_string(stack: dict[str, Any], http: httpx.Client) -> None:
    auth = (stack["mailjet_api_key"], stack["mailjet_secret_key"])
    http.get(f"{stack['mailjet_url']}/v3/REST/contact", auth=auth).raise_for_status()  # the Mailjet journal is searched
    body = {"userId": 42, "traits": {"email": "zed@example.com"}}  # discarded: id_not_string
    assert http.post(f"{stack['segment_url']}/v1/identify", auth=(stack["write_key"], ""), json=body).status_code == 200
    for route in ("trace", "trace/export"):
        response = http.get(f"{stack['segment_url']}/_emulator/dashboard/{route}", params={"user": "zed@example.com"})
        assert response.status_code == 200, route
    trace = http.get(f"{stack['segment_url']}/_emulator/dashboard/trace", params={"user": "zed@example.com"}).json()
    assert trace["userId"] is None and [step["status"] for step in trace["steps"]] == ["discarded"]


def test_export_cannot_be_broken_out_of_by_the_data() -> None:
    html = export_html({"user": "</script><script>alert(1)</script>", "steps": [], "contact": None})
    assert "</script><script>alert(1)" not in html
    assert html.count("<script") == 3


def test_a_slow_client_loses_its_oldest_items() -> None:
    async def scenario() -> list[int]:
        feed = Broadcaster(capacity=3)
        queue = feed.subscribe()
        for item in range(5):
            feed.publish(item)
        received = [queue.get_nowait() for _ in range(queue.qsize())]
        feed.unsubscribe(queue)
        feed.publish(99)
        assert feed.clients == 0
        return received

    assert asyncio.run(scenario()) == ["data: 2\n\n", "data: 3\n\n", "data: 4\n\n"]


def test_trace_leaves_out_users_whose_ids_only_contain_the_users(stack: dict[str, Any], http: httpx.Client) -> None:
    # u1 / ada@example.co is a prefix of u10 / ada@example.com: neither's Mailjet calls nor emails are the other's.
    segment, mailjet = stack["segment_url"], stack["mailjet_url"]
    auth = (stack["mailjet_api_key"], stack["mailjet_secret_key"])
    for user_id, email in (("u1", "ada@example.co"), ("u10", "ada@example.com")):
        http.post(f"{segment}/v1/identify", auth=(stack["write_key"], ""),
                  json={"userId": user_id, "traits": {"email": email}}).raise_for_status()
        http.post(f"{mailjet}/v3/REST/contactslist/1/managecontact", auth=auth,
                  json={"Email": email, "Action": "addnoforce"}).raise_for_status()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "Subject": "Hi", "TextPart": "x"}
    http.post(f"{mailjet}/v3.1/send", auth=auth, json={"Messages": [message]}).raise_for_status()
    trace = http.get(f"{segment}/_emulator/dashboard/trace", params={"user": "u1"}).json()
    assert trace["email"] == "ada@example.co"
    calls = [step["payload"]["body"] for step in trace["steps"] if step["kind"] == "mailjet-call"]
    assert calls == [{"Email": "ada@example.co", "Action": "addnoforce"}]
    assert [step for step in trace["steps"] if step["kind"] == "email"] == []
    # An email is one address whatever its case, as Mailjet matches it.
    by_email = http.get(f"{segment}/_emulator/dashboard/trace", params={"user": "ADA@example.co"}).json()
    assert by_email["userId"] == "u1"
    assert [step["kind"] for step in by_email["steps"]] == ["segment", "mailjet-call"]
    # A userId that is also a number in Mailjet's paths (list 1) names no call of those paths.
    http.post(f"{segment}/v1/identify", auth=(stack["write_key"], ""), json={"userId": "1"}).raise_for_status()
    numeric = http.get(f"{segment}/_emulator/dashboard/trace", params={"user": "1"}).json()
    assert [step["kind"] for step in numeric["steps"]] == ["segment"]


def test_a_stream_whose_client_left_before_it_started_keeps_no_queue() -> None:
    # Starlette cancels a streaming response whose client disconnects before its body is iterated;
    # a queue subscribed outside the body was then never unsubscribed, and got every message forever.
    async def scenario() -> tuple[int, int, int]:
        feed = Broadcaster()
        get = Request({"type": "http", "method": "GET", "path": "/_emulator/events/stream", "headers": []})
        never_started = feed.stream(get)
        before = feed.clients
        del never_started
        started = feed.stream(get)
        body = started.body_iterator
        assert await body.__anext__() == ": connected\n\n"
        during = feed.clients
        await body.aclose()
        return before, during, feed.clients

    assert asyncio.run(scenario()) == (0, 1, 0)


def test_the_contacts_feed_reads_only_its_contacts_subscriptions() -> None:
    # Reading every subscription for each contact took 1.4 s of the bundle's one event loop for 5,000
    # contacts (and minutes for 100,000), and the Contacts page asks again at every change: a page
    # reads its own contacts' subscriptions by the account's index, never the account's whole list.
    from emulator.common.clock import Clock
    from emulator.config import BundleConfig
    from emulator.dashboard.mailjet_routes import contacts_json
    from emulator.mailjet.models import MailjetBackend

    account = MailjetBackend(BundleConfig(seed=7), Clock(), "http://mj.test", "http://segment.test").default_account
    for number in range(20):
        account.manage_contact("1", {"Email": f"c{number}@example.com", "Action": "addnoforce"})

    class CountingDict(dict):  # type: ignore[type-arg]
        reads = 0

        def values(self):  # type: ignore[no-untyped-def]
            CountingDict.reads += 1
            return super().values()

    account.recipients = CountingDict(account.recipients)
    shown = contacts_json(account, list(account.contacts.values()))
    assert [item["Lists"][0]["ListID"] for item in shown] == [1] * 20
    assert shown[3]["Email"] == "c3@example.com" and shown[3]["Lists"][0]["ContactID"] == shown[3]["ID"]
    assert CountingDict.reads == 0


def test_validation_of_a_payload_nested_too_deeply_is_a_400(stack: dict[str, Any], http: httpx.Client) -> None:
    deep = "[" * 5000 + "]" * 5000
    answer = http.post(f"{stack['segment_url']}/_emulator/validate/segment.identify",
                       content=f'{{"type": "identify", "userId": "u1", "traits": {{"deep": {deep}}}}}')
    assert answer.status_code == 400 and "error" in answer.json()


def test_the_export_is_named_after_the_user_in_a_safe_file_name(stack: dict[str, Any], http: httpx.Client) -> None:
    # The user is typed by whoever exports: a quote would end the filename early, and a character
    # outside Latin-1 cannot be in a header at all.
    answer = http.get(f"{stack['segment_url']}/_emulator/dashboard/trace/export", params={"user": 'Zoë "x"; y=1'})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="segjet-trace-Zo_x_y_1.html"'


def test_overview_steps_are_kept_whatever_traffic_follows(stack: dict[str, Any], http: httpx.Client) -> None:
    # The Overview looked for an identify and an email event among the newest 500 messages: 600
    # more after them, and steps that had happened went back to "to do".
    segment, auth = stack["segment_url"], (stack["write_key"], "")
    steps = f"{segment}/_emulator/dashboard/overview"
    assert http.get(steps).json() == {"identify_accepted": False, "email_event_accepted": False}
    # Discarded (no userId nor anonymousId): never sent on, so no step is done.
    http.post(f"{segment}/v1/identify", auth=auth, json={"traits": {"email": "ada@example.com"}}).raise_for_status()
    http.post(f"{segment}/v1/track", auth=auth, json={"event": "Email Opened"}).raise_for_status()
    http.post(f"{segment}/v1/track", auth=auth, json={"userId": "u1", "event": "Emailed"}).raise_for_status()
    assert http.get(steps).json() == {"identify_accepted": False, "email_event_accepted": False}
    http.post(f"{segment}/v1/identify", auth=auth, json={"userId": "u1", "traits": {"email": "ada@example.com"}}).raise_for_status()
    http.post(f"{segment}/v1/track", auth=auth, json={"userId": "u1", "event": "Email Opened"}).raise_for_status()
    batch = [{"type": "track", "userId": "u-busy", "event": f"Busy {n}"} for n in range(600)]
    http.post(f"{segment}/v1/batch", auth=auth, json={"batch": batch}).raise_for_status()
    done = {"identify_accepted": True, "email_event_accepted": True}
    assert http.get(steps).json() == done
    # A snapshot imported brings its messages' steps; a reset forgets them.
    snapshot = http.get(f"{segment}/_emulator/snapshot").json()
    http.post(f"{segment}/_emulator/reset").raise_for_status()
    assert http.get(steps).json() == {"identify_accepted": False, "email_event_accepted": False}
    http.put(f"{segment}/_emulator/snapshot", json=snapshot).raise_for_status()
    assert http.get(steps).json() == done
    # The default workspace's only, as every dashboard feed.
    assert http.get(steps, params={"writeKey": "other-job"}).status_code == 400
    assert http.get(steps, params={"writeKey": stack["write_key"]}).json() == done
