"""How the harness explains what went wrong: HTTP errors, timeouts, filters and the check's report."""

import contextlib
import http.server
import threading
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator
from xml.etree import ElementTree

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig
from emulator.harness.client import SegjetClient, SegjetTimeout
from emulator.harness.report import HopPrinter, summary_table, write_json, write_junit
from emulator.harness.run import run_scenario
from emulator.harness.scenario import AUDIENCE_NAME, HopFailed, HopResult, Scenario


def scenario_with(segjet: Any, **changes: Any) -> list[HopResult]:
    """One user's run of the check's scenario, by a client whose settings differ from the stack's by `changes`."""
    client = SegjetClient(dict(segjet.info, **changes))
    try:
        return Scenario(client, user_count=1, timeout=5).run()
    finally:
        client.close()


def _define_twice(segjet: SegjetClient) -> None:
    segjet.define_audience("Twice", {"event": "A"})
    segjet.define_audience("Twice", {"event": "A"})


CALLS: dict[str, tuple[Callable[[SegjetClient], Any], str]] = {
    "bad window": (lambda s: s.define_audience("X", {"event": "A", "within": "30 days"}), "rule.within: bad window"),
    "bad duration": (lambda s: s.advance_clock("1 month"), "invalid duration '1 month'"),
    "key taken": (_define_twice, "409 Conflict: key 'twice' is already used"),
    "bad address": (lambda s: s.send_email("not-an-address", "s", "<p>x</p>"),
                    'To[0].Email: "not-an-address" is an invalid email address'),
    "unknown list": (lambda s: s.mailjet_settings({"listId": 99}), "listId 99 is not a contact list"),
    "unknown message": (lambda s: s.emit_email_event(12345, "open"), "no message with MessageID 12345"),
    "bad status": (lambda s: s.events(status="acepted"), "status must be accepted or discarded"),
}


@pytest.mark.parametrize("name", CALLS)
def test_helpers_raise_the_servers_explanation(segjet, name):
    call, explanation = CALLS[name]
    with pytest.raises(httpx.HTTPStatusError) as raised:
        call(segjet)
    message = str(raised.value)
    assert explanation in message
    assert raised.value.request.method in message and raised.value.request.url.path in message


def test_wait_for_contact_says_what_it_last_saw(segjet):
    with pytest.raises(SegjetTimeout, match="last seen: no such contact"):
        segjet.wait_for_contact("nobody@example.com", timeout=0.2)
    segjet.identify("u-free", {"email": "free@example.com", "plan": "free"})
    segjet.wait_for_contact("free@example.com", {"plan": "free"})
    with pytest.raises(SegjetTimeout, match="last seen: properties .*'plan': 'free'"):
        segjet.wait_for_contact("free@example.com", {"plan": "pro"}, timeout=0.2)


def test_a_contact_wait_for_a_contact_never_made_says_what_became_of_its_identify(segjet):
    # The delivery's record holds why there is no contact: the timeout says it, not just "no such contact".
    with pytest.raises(SegjetTimeout, match="no such contact; no identify with this email in the fake Segment"):
        segjet.wait_for_contact("nobody@example.com", timeout=0.2)
    message_id = segjet.identify("u-bad", {"email": "bad@@example.com"})
    segjet.wait_until(lambda: segjet.deliveries(message_id=message_id, state="failed") or None, 10, "the failed delivery")
    with pytest.raises(SegjetTimeout) as raised:
        segjet.wait_for_contact("BAD@@example.com", timeout=0.2)
    assert f"no such contact; identify {message_id} of user 'u-bad': delivery failed: " in str(raised.value)
    assert "MJ08 Property Email is invalid" in str(raised.value)


@pytest.mark.parametrize(("user_id", "traits"), [("u-cased", {"Email": "cased@example.com"}), ("cased@example.com", {})])
def test_a_contact_wait_finds_the_identify_whose_address_the_destination_read(segjet, user_id, traits):
    # The destination reads `traits.Email` (any casing) and an address userId; the wait looked at
    # `traits.email` only and said "no identify with this email" of the identify that made the contact.
    message_id = segjet.identify(user_id, {**traits, "plan": "pro"})
    segjet.wait_for_contact("cased@example.com", {"plan": "pro"})
    with pytest.raises(SegjetTimeout) as raised:
        segjet.wait_for_contact("cased@example.com", {"plan": "basic"}, timeout=0.2)
    assert f"identify {message_id} of user '{user_id}': delivery delivered" in str(raised.value)


def test_wait_for_event_says_what_the_user_has(segjet):
    with pytest.raises(SegjetTimeout, match="last seen: no events"):
        segjet.wait_for_event("Order Completed", "u-none", timeout=0.2)
    wrong_key = SegjetClient(dict(segjet.info, write_key="not-the-key"))
    try:
        wrong_key.track("u-lost", "Order Completed")
    finally:
        wrong_key.close()
    with pytest.raises(SegjetTimeout, match=r"last seen: Order Completed discarded \(unknown_write_key\)"):
        segjet.wait_for_event("Order Completed", "u-lost", timeout=0.2)


def test_events_and_deliveries_filter_by_python_names(segjet):
    first = segjet.identify("u1", {"email": "one@example.com"})
    segjet.identify("u2", {"email": "two@example.com"})
    segjet.wait_for_contact("two@example.com")
    segjet.wait_until(lambda: len(segjet.deliveries(state="delivered")) == 2 or None, 10, "both deliveries")
    assert [m["userId"] for m in segjet.events(user_id="u2")] == ["u2"]
    assert [m["messageId"] for m in segjet.events(message_id=first)] == [first]
    assert [d["messageId"] for d in segjet.deliveries(message_id=first)] == [first]
    assert len(segjet.deliveries(user_id="u2")) == 1
    with pytest.raises(TypeError):
        segjet.events(userId="u2")
    with pytest.raises(TypeError):
        segjet.deliveries(messageId=first)


def test_identify_hop_fails_on_a_write_key_no_source_has(segjet):
    results = scenario_with(segjet, write_key="not-the-key")
    assert [(r.ok, r.skipped) for r in results[:3]] == [(True, False), (False, False), (False, True)]
    assert "404 Not Found: no source has write key 'not-the-key'" in results[1].detail
    assert results[1].detail.endswith("is --write-key the one `segjet up` was given?")


def test_a_check_with_another_workspaces_write_key_reads_that_workspace(segjet):
    # Parallel CI jobs sharing one server each create a source (a workspace of its own) and send with
    # its key: the check's control calls must read that workspace, not the default one (they did, and
    # the identify hop said the calls "never reached the fake Segment").
    source = {"name": "ci-job", "write_key": "ci-job-key"}
    created = segjet.http.post(f"{segjet.segment_url}/_emulator/sources", json=source)
    default_workspace = segjet.segment("GET", "/_emulator/sources")["workspace"]
    assert created.status_code == 201 and created.json()["workspace"] != default_workspace
    job = SegjetClient(dict(segjet.info, write_key="ci-job-key"))
    try:
        results = Scenario(job, user_count=1, timeout=5).run()
        assert all(result.ok for result in results), [r.detail for r in results if not r.ok]
        assert job.events(type="identify") and job.deliveries()
    finally:
        job.close()
    assert segjet.events() == [] and segjet.deliveries() == []  # the default workspace saw none of it


def test_the_mailjet_helpers_act_on_the_account_of_their_api_key(segjet):
    account = {"api_key": "key-b", "secret_key": "s-b"}
    created = segjet.http.post(f"{segjet.mailjet_url}/_emulator/accounts", json=account)
    created.raise_for_status()
    other = SegjetClient(dict(segjet.info, mailjet_api_key="key-b", mailjet_secret_key="s-b"))
    try:
        assert other.mailjet_settings({"writeKey": "b-write-key"})["writeKey"] == "b-write-key"
        message_id = other.send_email("b@example.com", "Hi", "<p>x</p>")  # sent from account B
        assert other.emit_email_event(message_id, "open")["event"] == "open"
        assert [record["event"] for record in other.mailjet_email_events(message_id)] == ["sent", "open"]
        assert [(r["method"], r["path"]) for r in other.mailjet_requests()] == [("POST", "/v3.1/send")]
        assert segjet.mailjet_requests() == []  # the configured account made no call
    finally:
        other.close()
    configured = segjet.http.get(f"{segjet.mailjet_url}/_emulator/app-connections/segment").json()
    assert configured["writeKey"] != "b-write-key"  # the configured account's page was left alone


def test_a_list_id_mailjet_refuses_fails_the_contacts_hop_not_the_checker(segjet):
    # listrecipient answers 400 for a ContactsList filter beyond int64: read unchecked, a KeyError.
    results = scenario_with(segjet, list_id=10**23)
    assert [(r.ok, r.skipped) for r in results[1:4]] == [(True, False), (False, False), (False, True)]
    refused = 'answered 400 Bad Request: Invalid value "100000000000000000000000" for filter "ContactsList"'
    assert refused in results[2].detail


def test_a_report_that_cannot_be_written_is_said_not_a_traceback(segjet, tmp_path, capsys):
    code = run_scenario(segjet.info, 0, 1, junit=tmp_path / "missing" / "junit.xml", json_file=tmp_path)
    assert code == 2
    err = capsys.readouterr().err
    assert f"segjet check: cannot write --junit {tmp_path / 'missing' / 'junit.xml'}: No such file or directory" in err
    assert f"segjet check: cannot write --json {tmp_path}: Is a directory" in err


def test_scenario_reuses_an_audience_that_already_exists(segjet):
    # The README's --config example, as `segjet up --config` defines it before the check runs.
    readme_rule = {"event": "Order Completed", "within": "30d", "at_least": 1,
                   "where": {"property": "revenue", "gt": 10}}
    segjet.define_audience(AUDIENCE_NAME, readme_rule)
    results = Scenario(segjet, user_count=1, timeout=5).run()
    assert all(result.ok for result in results), [r.detail for r in results if not r.ok]


def test_scenario_explains_an_audience_with_another_rule_and_skips_the_rest(segjet):
    segjet.define_audience(AUDIENCE_NAME, {"event": "Order Completed", "within": "7d"})
    results = Scenario(segjet, user_count=1, timeout=5).run()
    assert [(r.ok, r.skipped) for r in results] == [(True, False)] * 4 + [(False, False)] + [(False, True)] * 3
    assert "already has audience 'order_completed_last_30days' with rule" in results[4].detail


def test_reports_count_hops_that_never_ran_as_skipped(tmp_path: Path):
    results = [HopResult("hop a", True, "fine", 2, 1.25), HopResult("hop b", False, "broke", 0, 2.5),
               HopResult("hop c", False, "not run", skipped=True), HopResult("hop d", False, "not run", skipped=True)]
    assert summary_table(results).splitlines() == [
        "hop    result  payloads checked  seconds",
        "hop a  pass                   2     1.25",
        "hop b  FAIL                   0     2.50",  # upper case: the one line to find in a long table
        "hop c  skip                   0     0.00",
        "hop d  skip                   0     0.00",
        "1 passed, 1 failed, 2 skipped",
    ]
    write_junit(tmp_path / "junit.xml", results)
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")
    assert suite.get("time") == "3.750" and [case.get("time") for case in suite] == ["1.250", "2.500", "0.000", "0.000"]
    assert suite[1].find("failure").get("message") == "broke" and suite[2].find("skipped").get("message") == "not run"
    assert [case.find("skipped") is not None for case in suite.findall("testcase")] == [False, False, True, True]
    # README: the JSON report holds every hop, those that never ran included.
    write_json(tmp_path / "report.json", results, {})
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["ok"] is False
    assert [(hop["name"], hop["ok"], hop["skipped"]) for hop in report["hops"]] == [
        ("hop a", True, False), ("hop b", False, False), ("hop c", False, True), ("hop d", False, True)]


def test_a_run_without_reset_looks_only_at_what_it_caused(segjet):
    # `segjet check --no-reset` after another run: the earlier users' audience syncs are stored
    # under Engage too, and must not count as this run's (they made the sync hop fail).
    first = Scenario(segjet, seed=0, user_count=3, timeout=5).run()
    assert all(result.ok for result in first), [r.detail for r in first if not r.ok]
    second = Scenario(segjet, seed=1, user_count=1, timeout=5).run()
    assert all(result.ok for result in second), [r.detail for r in second if not r.ok]


def test_the_journal_check_reads_only_the_hops_own_calls(segjet):
    # Calls by hand that break the managecontact contract: one to managecontact before the check
    # (`--no-reset` on a stack used by hand), and one to managecontactslists (its path holds
    # "/managecontact") while the contacts hop's calls are journaled.
    by_hand = segjet.mailjet("POST", "/v3/REST/contactslist/1/managecontact", json={"Email": "x@example.com"})
    assert by_hand.status_code == 400
    assert segjet.mailjet_requests(path="/managecontact")[0]["body"] == {"Email": "x@example.com"}
    assert segjet.mailjet_requests(limit=0) == []  # 0 was dropped as falsy: every entry came back
    segjet.mailjet("POST", "/v3/REST/contact", json={"Email": "by-hand@example.com"}).raise_for_status()
    scenario = Scenario(segjet, user_count=1, timeout=5)
    for _, hop in scenario.hops()[:2]:
        hop()
    segjet.mailjet(
        "POST", "/v3/REST/contact/by-hand@example.com/managecontactslists",
        json={"ContactsLists": [{"ListID": 1, "Action": "addnoforce"}]},
    ).raise_for_status()
    for _, hop in scenario.hops()[2:]:
        hop()  # raises HopFailed if a call by hand was checked as the hop's


def test_the_email_events_hop_waits_for_this_messages_events(segjet):
    assert all(result.ok for result in Scenario(segjet, seed=0, user_count=1, timeout=5).run())
    again = Scenario(segjet, seed=0, user_count=1, timeout=5)  # the same user, without a reset
    for _, hop in again.hops()[:-1]:
        hop()
    segjet.mailjet_settings({"sendEvents": False})  # this run's opens and clicks never reach Segment
    again.timeout = 0.5
    # (Email Delivered may have gone out already, if `sent` fell due before the switch.)
    with pytest.raises(HopFailed, match="Email .+ of user-0-0 never reached the fake Segment"):
        again.email_events()


def test_a_segment_that_refuses_or_is_gone_fails_the_identify_hop_not_the_checker(segjet):
    # analytics-python sends the calls: its errors are requests' and its own APIError, not httpx's.
    segjet.http.post(f"{segjet.segment_url}/_emulator/faults",
                     json={"method": "POST", "path": "/v1/batch", "status": 400}).raise_for_status()
    results = Scenario(segjet, user_count=1, timeout=5).run()
    assert [(r.ok, r.skipped) for r in results] == [(True, False), (False, False)] + [(False, True)] * 6
    assert "identify → fake Segment: HTTP error: [Segment] error: Bad Request (400)" in results[1].detail
    results = scenario_with(segjet, segment_url="http://127.0.0.1:9")
    assert [(r.ok, r.skipped) for r in results[:2]] == [(True, False), (False, False)]
    assert "Connection refused" in results[1].detail


def test_hop_lines_go_where_the_summary_goes():
    # The printer's default stream was bound when the module was imported: with stdout redirected
    # (contextlib, a test's capture), the hop lines went elsewhere than the summary table.
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        HopPrinter()(HopResult("a hop", True, "fine"))
    assert shown.getvalue() == "PASS a hop (0.00s): fine\n"


class _NotSegjet(http.server.BaseHTTPRequestHandler):
    """Some other web app on the port the check was given: 200 and a page for every request."""

    status, content_type, body = 200, "text/html", b"<!doctype html><title>my app</title>"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


class _EmptyJson(_NotSegjet):
    """An API that answers `{}` to everything."""

    content_type, body = "application/json", b"{}"


class _HostileError(_NotSegjet):
    """A server whose error text holds a colour escape, a carriage return and lines."""

    status, content_type = 500, "application/json"
    body = json.dumps({"error": "boom \x1b[31mRED\x1b[0m \r overwritten\nsecond line"}).encode()


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def not_segjet_url() -> Iterator[str]:
    yield from _serve(_NotSegjet)


@pytest.fixture
def empty_json_url() -> Iterator[str]:
    yield from _serve(_EmptyJson)


def test_a_url_that_is_not_segjet_fails_the_hop_not_the_checker(segjet, not_segjet_url, tmp_path, capsys):
    # Its answers were read as JSON unchecked: the check died with a JSONDecodeError traceback and
    # wrote no JUnit or JSON report.
    info = dict(segjet.info, mailjet_url=not_segjet_url)
    code = run_scenario(info, 0, 1, junit=tmp_path / "junit.xml", json_file=tmp_path / "report.json", reset=True)
    assert code == 1
    out = capsys.readouterr().out
    assert "FAIL App Connections" in out and "answered something that is not JSON" in out
    assert "1 failed, 7 skipped" in out
    assert ElementTree.parse(tmp_path / "junit.xml").getroot().get("failures") == "1"


def test_define_audience_keeps_the_key_given(segjet):
    assert segjet.define_audience("Big Spenders", {"event": "Order Completed"}, key="whales") == "whales"
    assert segjet.define_audience("Big Spenders Again", {"event": "Order Completed"}) == "big_spenders_again"
    keys = [audience["key"] for audience in segjet.segment("GET", "/_emulator/engage/audiences")["audiences"]]
    assert keys == ["whales", "big_spenders_again"]


class _DuplicateIds(SegjetClient):
    """Sends every identify with one messageId: Segment keeps the first and discards the others."""

    def identify(self, user_id: str, traits: dict[str, Any]) -> str:
        return self.analytics.identify(user_id, traits, message_id="the-same-id")[1]["messageId"]


def test_the_identify_hop_fails_on_a_call_stored_discarded(segjet):
    duplicates = _DuplicateIds(segjet.info)
    try:
        results = Scenario(duplicates, user_count=2, timeout=5).run()
    finally:
        duplicates.close()
    assert [(r.ok, r.skipped) for r in results[:3]] == [(True, False), (False, False), (False, True)]
    assert results[1].detail == (
        "identify of user-0-1 was stored discarded, not accepted: duplicate_message_id"
    )


@pytest.mark.parametrize(("status", "timeout", "said"), [
    (400, 5, " was failed: "),
    # Still retrying when the wait ran out: it said the message was never delivered and asked
    # whether the destination was enabled.
    (500, 2, " is retrying after 1 attempt(s): HTTP 503: Mailjet is temporarily unavailable"),
])
def test_the_contacts_hop_says_what_the_delivery_met(segjet, status, timeout, said):
    segjet.http.post(f"{segjet.mailjet_url}/_emulator/faults",
                     json={"method": "POST", "path": "/v3/REST/contactslist/*/managecontact", "status": status})
    results = Scenario(segjet, user_count=1, timeout=timeout).run()
    assert [(r.ok, r.skipped) for r in results[1:4]] == [(True, False), (False, False), (False, True)]
    assert said in results[2].detail and "is the destination enabled" not in results[2].detail


def test_the_contacts_hop_fails_on_a_contact_unsubscribed_from_the_list(segjet):
    [user] = Scenario(segjet, user_count=1).users
    unsubscribed = segjet.mailjet("POST", f"/v3/REST/contactslist/{segjet.list_id}/managecontact",
                                  json={"Email": user.email, "Action": "unsub"})
    assert unsubscribed.status_code == 201, unsubscribed.text
    results = Scenario(segjet, user_count=1, timeout=5).run()
    assert [(r.ok, r.skipped) for r in results[1:4]] == [(True, False), (False, False), (False, True)]
    assert results[2].detail == f"Mailjet contact {user.email} is not subscribed to list {segjet.list_id}"


def test_app_connections_that_did_not_keep_the_settings_fail_the_first_hop(segjet, empty_json_url):
    results = scenario_with(segjet, mailjet_url=empty_json_url)
    assert [(r.ok, r.skipped) for r in results[:2]] == [(False, False), (False, True)]
    assert results[0].detail == "App Connections did not keep the write key and switch: {}"


def test_the_identify_hop_fails_on_violations_segment_recorded(segjet):
    scenario = Scenario(segjet, user_count=1, timeout=5)
    [user] = scenario.users
    user.traits["age"] = "old"  # segment.identify: a number
    results = scenario.run()
    assert [(r.ok, r.skipped) for r in results[:3]] == [(True, False), (False, False), (False, True)]
    assert results[1].detail.startswith(f"identify of {user.user_id}: Segment recorded violations [")
    assert "age" in results[1].detail


def test_a_journal_check_that_finds_nothing_because_the_journal_dropped_it_says_so():
    # With the hop's calls pushed out of a capped journal, the check said only "shows no POST
    # /managecontact" of a stack that had delivered every contact (R49).
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=3, journal_capacity=1)
    with BackgroundBundle(config) as info:
        client = SegjetClient(info)
        try:
            results = Scenario(client, user_count=2, timeout=10).run()
        finally:
            client.close()
    contacts = next(result for result in results if result.name == "Segment → destination → Mailjet contacts")
    assert not contacts.ok
    assert "keeps the newest 1 requests and has dropped" in contacts.detail, contacts.detail


def test_wait_for_contact_answers_a_contact_without_properties_at_once(segjet):
    segjet.mailjet("POST", "/v3/REST/contact", json={"Email": "bare@example.com"}).raise_for_status()
    assert segjet.wait_for_contact("bare@example.com", timeout=2) == {}


@pytest.fixture(scope="module")
def guarded_info() -> Iterator[dict[str, Any]]:
    """A stack started with --control-token, as the info of a check that was not given the token."""
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=3, control_token="s3cret")
    with BackgroundBundle(config) as info:
        yield {**info, "control_token": None}


@pytest.mark.parametrize("reset", [True, False])
def test_a_check_without_the_servers_control_token_says_which_flag_gives_it(guarded_info, capsys, reset):
    # The server's 401 names headers, which a `segjet check` user never writes: the check itself
    # must say to pass --control-token (or $SEGJET_CONTROL_TOKEN).
    assert run_scenario(guarded_info, 0, 1, reset=reset) == 1
    captured = capsys.readouterr()
    shown = captured.err if reset else captured.out
    assert "401" in shown and "--control-token" in shown and "SEGJET_CONTROL_TOKEN" in shown


def test_a_control_call_answered_without_a_body_answers_none(segjet):
    # README: `segment(method, path)` answers the JSON. `DELETE /_emulator/faults/{id}` answers 204
    # with no body: the rule was removed, then the helper raised JSONDecodeError.
    rule = segjet.segment("POST", "/_emulator/faults", json={"path": "/v1/nothing", "status": 500})
    assert segjet.segment("DELETE", f"/_emulator/faults/{rule['id']}") is None
    assert segjet.segment("GET", "/_emulator/faults") == {"faults": []}


def test_identify_and_track_follow_a_write_key_changed_after_their_first_use(segjet):
    # The analytics-python client was built on first use and kept: after the switch, identify still
    # sent under the stack's key while the control calls read job-key's workspace (a SegjetTimeout).
    segjet.identify("u-before", {"email": "before@example.com"})
    segjet.http.post(f"{segjet.segment_url}/_emulator/sources",
                     json={"name": "job", "write_key": "job-key"}).raise_for_status()
    segjet.write_key = "job-key"
    segjet.identify("u-after", {"email": "after@example.com"})
    segjet.track("u-after", "Order Completed")
    assert [message["userId"] for message in segjet.events()] == ["u-after", "u-after"]
    segjet.write_key = segjet.info["write_key"]
    assert [message["userId"] for message in segjet.events()] == ["u-before"]


def test_reports_show_control_characters_of_a_servers_text_escaped(tmp_path: Path):
    # A 404 body with control characters: the JUnit file was not well-formed XML, and the hop line
    # wrote them raw to the terminal (ESC starts a colour).
    detail = "answered 404 Not Found: bad\x01\x02 thing \x1b[31m\r\ttab"
    shown = "answered 404 Not Found: bad\\x01\\x02 thing \\x1b[31m\\r\ttab"
    results = [HopResult("a hop", False, detail), HopResult("b hop", False, detail, skipped=True)]
    write_junit(tmp_path / "junit.xml", results)
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert suite[0].find("failure").get("message") == suite[0].find("failure").text == shown
    assert suite[1].find("skipped").get("message") == shown
    printed = io.StringIO()
    HopPrinter(printed)(results[0])
    assert printed.getvalue() == f"FAIL a hop (0.00s): {shown}\n"


@pytest.mark.parametrize(("gone", "named"), [
    ("mailjet_url", "the fake Mailjet at http://127.0.0.1:9 (--mailjet-url)"),
    ("segment_url", "the fake Segment at http://127.0.0.1:9 (--segment-url)"),
])
def test_a_reset_that_cannot_reach_a_server_names_that_one(segjet, capsys, gone, named):
    # It named both URLs ("cannot reset the stack (URL, URL): [Errno 111] Connection refused"), not
    # the one that refused, nor what to do about it.
    assert run_scenario(dict(segjet.info, **{gone: "http://127.0.0.1:9"}), 0, 1, reset=True) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"segjet check: cannot reset the stack: {named}: ") and "Connection refused" in line
    assert line.endswith(": is `segjet up` running at that URL?")
    assert segjet.info["segment_url" if gone == "mailjet_url" else "mailjet_url"] not in line


@pytest.mark.parametrize("reset", [True, False])
def test_swapped_urls_are_told_as_swapped_before_anything_is_sent(segjet, capsys, reset):
    # Segment's URL given as --mailjet-url: the reset "worked" (both fakes have /_emulator/reset) and
    # the first hop failed with "PUT .../app-connections/segment answered 404 Not Found: Not Found".
    segjet.identify("u-kept", {"email": "kept@example.com"})
    swapped = dict(segjet.info, segment_url=segjet.mailjet_url, mailjet_url=segjet.segment_url)
    assert run_scenario(swapped, 0, 1, reset=reset) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"segjet check: --segment-url {segjet.mailjet_url} is the fake Mailjet, and --mailjet-url "
        f"{segjet.segment_url} the fake Segment: are the two swapped?",
    ]
    assert [message["userId"] for message in segjet.events()] == ["u-kept"]


def test_a_url_that_is_the_other_fake_is_named_alone(segjet, capsys):
    assert run_scenario(dict(segjet.info, segment_url=segjet.mailjet_url), 0, 1, reset=True) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"segjet check: --segment-url {segjet.mailjet_url} is the fake Mailjet, not the fake Segment",
    ]


def test_a_reset_refused_with_control_characters_is_told_on_one_escaped_line(segjet, capsys):
    # The reset's error printed the server's text raw: ESC coloured the terminal, CR rewrote the line.
    for url in _serve(_HostileError):
        assert run_scenario(dict(segjet.info, mailjet_url=url), 0, 1, reset=True) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "\x1b" not in line and "\r" not in line
    assert "boom \\x1b[31mRED" in line and line.endswith(": is `segjet up` running at that URL?")


def test_a_hop_that_cannot_connect_names_the_url_it_called(segjet):
    # `segjet check --no-reset` with Mailjet down: "HTTP error: [Errno 111] Connection refused", no URL.
    results = scenario_with(segjet, mailjet_url="http://127.0.0.1:9")
    assert [(r.ok, r.skipped) for r in results[:2]] == [(False, False), (False, True)]
    assert results[0].detail.startswith(
        "App Connections: write key pasted, email events on: HTTP error: "
        "PUT http://127.0.0.1:9/_emulator/app-connections/segment?"
    )
    assert "Connection refused" in results[0].detail


def test_a_list_id_of_no_list_says_the_list_does_not_exist(segjet):
    # `segjet check --list-id 99`: it said only that the contact was not subscribed to list 99.
    client = SegjetClient(dict(segjet.info, list_id=99))
    try:
        scenario = Scenario(client, user_count=1, timeout=5)
        results = scenario.run()
    finally:
        client.close()
    [user] = scenario.users
    assert [(r.ok, r.skipped) for r in results[1:4]] == [(True, False), (False, False), (False, True)]
    assert results[2].detail == (
        f"Mailjet contact {user.email} is not subscribed to list 99: the fake Mailjet account"
        f" {segjet.mailjet_api_key} has no list 99; check --list-id (GET /v3/REST/contactslist shows its lists)"
    )


def test_a_contact_wait_says_which_traits_the_destination_skipped(segjet):
    # The contact existed with the old value: the timeout showed its properties, not the delivery's
    # own answer saying why the new value never came.
    segjet.identify("u-age", {"email": "age@example.com", "age": 36})
    segjet.wait_for_contact("age@example.com", {"age": 36})
    segjet.identify("u-age", {"email": "age@example.com", "age": "thirty-six"})
    segjet.wait_until(lambda: len(segjet.deliveries(user_id="u-age", state="delivered")) == 2 or None, 10, "both deliveries")
    with pytest.raises(SegjetTimeout) as raised:
        segjet.wait_for_contact("age@example.com", {"age": "thirty-six"}, timeout=0.2)
    assert "properties {" in str(raised.value) and "'age': '36'" in str(raised.value)
    assert "delivery delivered; the destination skipped age (Mailjet property 'age' is defined as int" in str(raised.value)


@contextlib.contextmanager
def client_of_another_account(segjet: SegjetClient, api_key: str) -> Iterator[SegjetClient]:
    """A client of a second Mailjet account, with the stack's write key, whose tile writes to the default account."""
    account = {"api_key": api_key, "secret_key": f"{api_key}-secret"}
    assert httpx.post(f"{segjet.mailjet_url}/_emulator/accounts", json=account).status_code == 201
    other = SegjetClient(dict(segjet.info, mailjet_api_key=account["api_key"], mailjet_secret_key=account["secret_key"]))
    try:
        yield other
    finally:
        other.close()


def test_a_contact_delivered_to_another_account_says_so(segjet):
    # The workspace's tile wrote to the default account; this client reads its own: "delivered" next
    # to "no such contact" gave no hint where the contact went.
    with client_of_another_account(segjet, "harness-other") as other:
        message_id = other.identify("u-elsewhere", {"email": "elsewhere@example.com"})
        other.wait_until(lambda: other.deliveries(message_id=message_id, state="delivered") or None, 10, "the delivery")
        with pytest.raises(SegjetTimeout) as raised:
            other.wait_for_contact("elsewhere@example.com", timeout=0.2)
    assert "delivery delivered" in str(raised.value)
    assert "this account has no such contact: the workspace's Mailjet tile writes to another account" in str(raised.value)


def test_the_contacts_hop_says_when_the_contacts_went_to_another_account(segjet):
    # `segjet check --mailjet-api-key` of an account the write key's tile does not write to: the hop
    # said only "expected {...}, found None".
    with client_of_another_account(segjet, "check-other") as other:
        results = Scenario(other, user_count=1, timeout=5).run()
    contacts = next(result for result in results if result.name == "Segment → destination → Mailjet contacts")
    assert not contacts.ok
    assert "the workspace's Mailjet tile writes to another account" in contacts.detail, contacts.detail


def test_a_contact_wait_blames_no_other_account_for_a_contact_gone_or_never_addressed(segjet):
    # "the workspace's Mailjet tile writes to another account" was said of a contact the account's
    # reset removed, and of an identify matched on its context.traits.email while the destination
    # wrote to its traits.email.
    segjet.identify("u-gone", {"email": "gone@example.com"})
    segjet.wait_for_contact("gone@example.com")
    assert httpx.post(f"{segjet.mailjet_url}/_emulator/reset", params={"apiKey": segjet.mailjet_api_key}).status_code == 200
    with pytest.raises(SegjetTimeout) as raised:
        segjet.wait_for_contact("gone@example.com", timeout=0.2)
    assert "this account has no such contact now" in str(raised.value) and "another account" not in str(raised.value)
    segjet.analytics.identify("u-two", {"email": "first@example.com"}, context={"traits": {"email": "second@example.com"}})
    segjet.wait_for_contact("first@example.com")
    with pytest.raises(SegjetTimeout, match="no identify with this email in the fake Segment"):
        segjet.wait_for_contact("second@example.com", timeout=0.2)
