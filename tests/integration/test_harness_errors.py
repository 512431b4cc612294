"""How the harness explains what went wrong: HTTP errors, timeouts, filters and the check's report."""

from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree

import httpx
import pytest

from emulator.harness.client import SegjetClient, SegjetTimeout
from emulator.harness.report import summary_table, write_junit
from emulator.harness.scenario import AUDIENCE_NAME, HopFailed, HopResult, Scenario


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


def test_identify_hop_fails_on_a_discarded_identify(segjet):
    wrong_key = SegjetClient(dict(segjet.info, write_key="not-the-key"))
    try:
        with pytest.raises(HopFailed, match="discarded, not accepted: unknown_write_key: is --write-key"):
            Scenario(wrong_key, user_count=1, timeout=5).identify()
    finally:
        wrong_key.close()


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
    results = [HopResult("a", True, "fine"), HopResult("b", False, "broke"),
               HopResult("c", False, "not run", skipped=True), HopResult("d", False, "not run", skipped=True)]
    assert summary_table(results).splitlines()[-1] == "1 passed, 1 failed, 2 skipped"
    write_junit(tmp_path / "junit.xml", results)
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")
    assert [case.find("skipped") is not None for case in suite.findall("testcase")] == [False, False, True, True]


def test_a_run_without_reset_looks_only_at_what_it_caused(segjet):
    # `segjet check --no-reset` after another run: the earlier users' audience syncs are stored
    # under Engage too, and must not count as this run's (they made the sync hop fail).
    first = Scenario(segjet, seed=0, user_count=3, timeout=5).run()
    assert all(result.ok for result in first), [r.detail for r in first if not r.ok]
    second = Scenario(segjet, seed=1, user_count=1, timeout=5).run()
    assert all(result.ok for result in second), [r.detail for r in second if not r.ok]


def test_the_journal_check_reads_only_the_hops_own_calls(segjet):
    # A managecontactslists call (its path holds "/managecontact") made by hand before the check.
    segjet.mailjet("POST", "/v3/REST/contact", json={"Email": "by-hand@example.com"}).raise_for_status()
    segjet.mailjet(
        "POST", "/v3/REST/contact/by-hand@example.com/managecontactslists",
        json={"ContactsLists": [{"ListID": 1, "Action": "addnoforce"}]},
    ).raise_for_status()
    results = Scenario(segjet, user_count=1, timeout=5).run()
    assert all(result.ok for result in results), [r.detail for r in results if not r.ok]


def test_the_email_events_hop_waits_for_this_messages_events(segjet):
    assert all(result.ok for result in Scenario(segjet, seed=0, user_count=1, timeout=5).run())
    again = Scenario(segjet, seed=0, user_count=1, timeout=5)  # the same user, without a reset
    for name, hop in again.hops()[:-1]:
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
    gone = SegjetClient(dict(segjet.info, segment_url="http://127.0.0.1:9"))
    try:
        results = Scenario(gone, user_count=1, timeout=5).run()
    finally:
        gone.close()
    assert [(r.ok, r.skipped) for r in results[:2]] == [(True, False), (False, False)]
    assert "Connection refused" in results[1].detail
