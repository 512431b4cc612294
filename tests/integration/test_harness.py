"""The harness as users run it: `segjet demo`, `segjet up` + `segjet check`, and the pytest plugin."""

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from emulator.harness.client import HARNESS_USER_AGENT, SegjetClient, SegjetTimeout
from emulator.harness.run import run_scenario
from emulator.harness.scenario import Scenario

from .polling import wait_for

SEGJET = [sys.executable, "-m", "emulator"]
HOPS = 8


def check(info: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SEGJET, "check", "--segment-url", info["segment_url"], "--mailjet-url", info["mailjet_url"],
         "--write-key", info["write_key"], "--mailjet-api-key", info["mailjet_api_key"],
         "--mailjet-secret-key", info["mailjet_secret_key"],
         "--junit", str(tmp_path / "junit.xml"), "--json", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=120,
    )


def test_demo_runs_the_whole_round_trip():
    result = subprocess.run([*SEGJET, "demo"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{HOPS} passed, 0 failed, 0 skipped" in result.stdout
    assert "FAIL" not in result.stdout
    assert result.stdout.count("PASS ") == HOPS
    # Three users, each with Email Delivered, Opened and Link Clicked in Segment.
    assert "9 email events arrived in Segment" in result.stdout


def test_up_serves_and_check_passes_against_it(segjet_up, tmp_path):
    info, process = segjet_up()
    assert set(info) == {"segment_url", "mailjet_url", "destination_url", "dashboard_url", "write_key",
                         "mailjet_api_key", "mailjet_secret_key", "auth_key", "list_id", "control_token"}
    assert info["dashboard_url"] == info["segment_url"] + "/" and info["list_id"] == 1
    assert info["control_token"] is None and info["write_key"] == "segjet-write-key"
    for url in (info["segment_url"], info["mailjet_url"], info["destination_url"]):
        health = httpx.get(f"{url}/_emulator/health" if url != info["destination_url"] else f"{url}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"

    result = check(info, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == str(HOPS) and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == HOPS
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True and len(report["hops"]) == HOPS
    assert all(report["traces"].values())

    # A second check starts clean (check resets both fakes) and passes again.
    assert check(info, tmp_path).returncode == 0

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "segjet stopped" in output


def test_up_with_demo_loads_the_round_trip_before_it_is_ready_and_keeps_serving(segjet_up):
    info, process = segjet_up("--demo")
    # The ready file comes after the demo data: the users' contacts and email events are there.
    mailjet = httpx.Client(base_url=info["mailjet_url"], auth=(info["mailjet_api_key"], info["mailjet_secret_key"]))
    listed = mailjet.get("/v3/REST/contactslist/1").json()["Data"][0]
    assert listed["SubscriberCount"] == 3
    email_events = httpx.get(f"{info['segment_url']}/_emulator/events", params={"event": "Email Opened"}).json()
    assert len(email_events["events"]) == 3
    # Still serving after the demo: a new identify goes the whole way.
    sent = httpx.post(f"{info['segment_url']}/v1/identify", auth=(info["write_key"], ""),
                      json={"userId": "after-demo", "traits": {"email": "after.demo@example.com"}})
    assert sent.status_code == 200
    wait_for(lambda: mailjet.get("/v3/REST/contact/after.demo@example.com").status_code == 200,
             "the identify sent after the demo to become a contact")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert f"{HOPS} passed, 0 failed, 0 skipped" in output
    assert output.index("8 passed") < output.index("segjet is up")


def test_check_catches_a_stack_whose_destination_is_off(segjet_up, tmp_path):
    info, _ = segjet_up("--no-enable")
    result = check(info, tmp_path)
    assert result.returncode == 1
    assert "FAIL Segment → destination → Mailjet contacts" in result.stdout
    assert "never delivered to the Mailjet destination" in result.stdout
    assert "2 passed, 1 failed, 5 skipped" in result.stdout  # the hops after the broken one never ran
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    failures = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failures] == ["Segment → destination → Mailjet contacts"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(HOPS), "1", str(HOPS - 3))
    assert len(suite.findall("testcase/skipped")) == HOPS - 3
    assert json.loads((tmp_path / "report.json").read_text())["ok"] is False


def test_check_reports_a_server_that_is_not_there(tmp_path):
    result = subprocess.run(
        [*SEGJET, "check", "--segment-url", "http://127.0.0.1:9", "--mailjet-url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reset the stack" in result.stderr and "Connection refused" in result.stderr
    no_reset = subprocess.run(
        [*SEGJET, "check", "--no-reset", "--segment-url", "http://127.0.0.1:9", "--mailjet-url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )
    assert no_reset.returncode == 1
    assert "FAIL App Connections" in no_reset.stdout and "HTTP error" in no_reset.stdout


class _AnyJsonHandler(BaseHTTPRequestHandler):
    """Another web app's JSON API: 200 and the same JSON document to every request."""

    body = b"{}"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("body", [b"{}", b"[]"])
def test_check_fails_the_hop_when_a_server_answers_json_of_another_shape(segjet, body, capsys):
    # Another app's JSON API on the Segment URL given: the identify hop crashed the check with a
    # KeyError traceback (`[]` crashed the first hop with an AttributeError) instead of failing it.
    handler = type("Handler", (_AnyJsonHandler,), {"body": body})
    other = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        info = {**segjet.info, "segment_url": f"http://127.0.0.1:{other.server_address[1]}"}
        code = run_scenario(info, 0, 1, reset=False)
    finally:
        other.shutdown()
        other.server_close()
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL " in out and "answered something that is not what a segjet server answers" in out
    assert f"0 passed, 1 failed, {HOPS - 1} skipped" in out or f"1 passed, 1 failed, {HOPS - 2} skipped" in out


# Characters an email may hold that end ('#', '?') or split ('/') a URL path, and '%' which escapes.
AWKWARD_EMAIL = "ada#love?lace/x%y@example.com"


def test_contact_waits_quote_the_email_in_the_path(segjet):
    segjet.identify("u-awkward", {"email": AWKWARD_EMAIL, "plan": "pro"})
    assert segjet.wait_for_contact(AWKWARD_EMAIL, {"plan": "pro"})["segment_user_id"] == "u-awkward"


def test_the_helpers_own_mailjet_calls_are_told_apart_in_the_journal(segjet):
    # wait_for_contact polls contactdata through the REST API: a test asserting on its app's calls
    # must be able to leave those out.
    segjet.identify("u-ua", {"email": "ua@example.com"})
    segjet.wait_for_contact("ua@example.com")
    agents = {(entry["path"], entry["headers"]["user-agent"]) for entry in segjet.mailjet_requests()}
    assert ("/v3/REST/contactdata/ua@example.com", HARNESS_USER_AGENT) in agents
    assert {agent for _, agent in agents} == {HARNESS_USER_AGENT, "segjet-destination/0.1"}


def test_a_contact_wait_takes_none_as_no_such_property(segjet):
    segjet.identify("u-none", {"email": "none@example.com", "plan": None, "tier": "gold"})
    properties = segjet.wait_for_contact("none@example.com", {"plan": None, "tier": "gold"})
    assert "plan" not in properties
    with pytest.raises(SegjetTimeout, match="tier"):
        segjet.wait_for_contact("none@example.com", {"tier": None}, timeout=0.2)


def test_scenario_finds_a_contact_in_the_list_whose_email_needs_quoting(segjet):
    scenario = Scenario(segjet, user_count=1, timeout=5)
    [user] = scenario.users
    user.email = user.traits["email"] = AWKWARD_EMAIL
    scenario.identify()
    scenario.contacts_in_list()  # raises HopFailed when the contact is not found in the list


def test_a_client_given_urls_with_a_trailing_slash_drives_the_stack(segjet):
    # The dashboard URL ends with "/", and a copied base URL often does: every call went to
    # "//_emulator/...", which the fake Mailjet answered with a misleading 401 on its reset.
    slashed = SegjetClient({**segjet.info, "segment_url": segjet.segment_url + "/",
                            "mailjet_url": segjet.mailjet_url + "/"})
    try:
        assert (slashed.segment_url, slashed.mailjet_url) == (segjet.segment_url, segjet.mailjet_url)
        slashed.reset()
        slashed.identify("u-slash", {"email": "slash@example.com", "plan": "pro"})
        assert slashed.wait_for_event(user_id="u-slash")["type"] == "identify"
        assert slashed.wait_for_contact("slash@example.com", {"plan": "pro"})["segment_user_id"] == "u-slash"
    finally:
        slashed.close()


MANAGECONTACT = "/v3/REST/contactslist/*/managecontact"


def fired(segjet, rule_id: str) -> bool:
    rules = segjet.http.get(f"{segjet.mailjet_url}/_emulator/faults").json()["faults"]
    return any(rule["id"] == rule_id and rule["fired"] for rule in rules)


def late_answers(segjet, delay_ms: int) -> dict:
    """A fault rule holding Mailjet's real managecontact answer for `delay_ms` (the call is applied)."""
    return segjet.http.post(
        f"{segjet.mailjet_url}/_emulator/faults",
        json={"method": "POST", "path": MANAGECONTACT, "status": None, "delay_ms": delay_ms},
    ).json()


def test_reset_lets_nothing_from_before_it_land_after_it(segjet):
    """A delivery in flight at the reset (the destination's managecontact answered 1 s late by
    Mailjet): Segment's reset answers only once the destination has had that answer, so the write
    is done before Mailjet is reset, and never lands in the fresh Mailjet."""
    rule = late_answers(segjet, 1000)
    segjet.identify("u-late", {"email": "late@example.com", "plan": "pro"})
    segjet.wait_until(lambda: fired(segjet, rule["id"]) or None, 10, "the destination's managecontact held by Mailjet")
    segjet.http.post(f"{segjet.segment_url}/_emulator/reset").raise_for_status()
    assert segjet.contact_properties("late@example.com") is not None  # applied before Segment's reset answered
    segjet.reset()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert segjet.contact_properties("late@example.com") is None
        assert segjet.mailjet_requests(path="/managecontact") == []
        time.sleep(0.05)


def test_a_reset_amid_deliveries_leaves_nothing_in_the_fresh_mailjet(segjet):
    """The reset's second Mailjet reset: deliveries Segment's reset waited for wrote to the Mailjet
    reset just before it (the 200 contacts here are delivered one by one while the reset runs)."""
    for round_ in range(3):
        batch = [{"type": "identify", "userId": f"u-{round_}-{i}", "traits": {"email": f"u{round_}.{i}@example.com"}}
                 for i in range(200)]
        sent = segjet.http.post(f"{segjet.segment_url}/v1/batch", auth=(segjet.write_key, ""), json={"batch": batch})
        assert sent.status_code == 200
        segjet.wait_until(lambda: segjet.mailjet_requests(path="/managecontact", limit=1) or None, 10,
                          "the first delivery's managecontact")
        segjet.reset()
        time.sleep(0.5)  # a write still on its way would have landed by now
        assert segjet.mailjet_requests() == [] and segjet.deliveries() == []


def test_a_request_mailjet_holds_across_its_reset_is_dropped_not_applied(segjet):
    # Held 4 s: closed at the reset, and nothing of it lands when its delay ends.
    rule = late_answers(segjet, 4000)
    outcome: list[object] = []
    body = {"Email": "held@example.com", "Action": "addnoforce"}
    sender = threading.Thread(target=lambda: outcome.append(_post_or_error(segjet, body)))
    sender.start()
    segjet.wait_until(lambda: fired(segjet, rule["id"]) or None, 10, "the managecontact held by Mailjet")
    delay_ends = time.monotonic() + 4
    segjet.http.post(f"{segjet.mailjet_url}/_emulator/reset").raise_for_status()
    sender.join(timeout=15)
    assert isinstance(outcome[0], httpx.RemoteProtocolError)  # closed unanswered
    time.sleep(max(0.0, delay_ends - time.monotonic()) + 0.5)  # past the delay: a request still held would be applied by now
    assert segjet.mailjet_requests() == []  # not journaled either
    assert segjet.contact_properties("held@example.com") is None


def _post_or_error(segjet, body: dict) -> object:
    try:
        return segjet.mailjet("POST", "/v3/REST/contactslist/1/managecontact", json=body)
    except httpx.HTTPError as exc:
        return exc


PLUGIN_TEST = '''
def test_identify_reaches_mailjet(segjet):
    segjet.identify("u-42", {"email": "ada@example.com", "plan": "pro", "address": {"city": "London"}})
    properties = segjet.wait_for_contact("ada@example.com", {"plan": "pro", "address_city": "London"})
    assert properties["segment_user_id"] == "u-42"
    segjet.assert_contract("segment.identify", segjet.wait_for_event(user_id="u-42"))


def test_each_test_starts_clean(segjet):
    assert segjet.events() == []
    assert segjet.contact_properties("ada@example.com") is None


def test_audience_and_email_events(segjet):
    segjet.identify("u-7", {"email": "grace@example.com"})
    segjet.wait_for_contact("grace@example.com")
    segjet.track("u-7", "Order Completed", {"revenue": 10})
    segjet.wait_for_event("Order Completed", "u-7")
    key = segjet.define_audience("Order Completed Last 30 Days", {"event": "Order Completed", "within": "30d"})
    segjet.sync_engage()
    segjet.wait_for_contact("grace@example.com", {key: True})
    segjet.advance_clock("31d")
    segjet.sync_engage()
    segjet.wait_for_contact("grace@example.com", {key: False})

    segjet.mailjet_settings({"writeKey": segjet.write_key, "sendEvents": True})
    message_id = segjet.send_email("grace@example.com", "Hi", '<a href="https://example.com">x</a>')
    segjet.emit_email_event(message_id, "open")
    opened = segjet.wait_for_event("Email Opened", "u-7")
    segjet.assert_contract("segment.email_opened", opened)
'''


ONE_STACK_TEST = '''
seen = []


def test_first(segjet):
    seen.append(segjet.segment_url)
    segjet.identify("u-1", {"email": "one@example.com"})
    segjet.wait_for_contact("one@example.com")


def test_second_has_the_same_stack_reset(segjet):
    assert [segjet.segment_url] == seen
    assert segjet.contact_properties("one@example.com") is None
'''


# A parallel job's test switches its client to a workspace of its own; the next test's client had
# that write key still, the workspace gone with the reset: its control calls answered 404.
SWITCHED_WORKSPACE_TEST = '''
def test_first_switches_to_a_workspace_of_its_own(segjet):
    segjet.segment("POST", "/_emulator/sources", json={"name": "job", "write_key": "job-key"})
    segjet.write_key = "job-key"
    segjet.identify("w1", {"email": "w1@example.com"})


def test_second_gets_the_stacks_write_key(segjet):
    assert segjet.write_key == "segjet-write-key"
    segjet.identify("w2", {"email": "w2@example.com"})
    assert segjet.wait_for_event(user_id="w2")["type"] == "identify"
'''


def test_plugin_in_a_user_project(pytester):
    pytester.makepyfile(test_user_project=PLUGIN_TEST, test_one_stack=ONE_STACK_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_a_client_attribute_one_test_changes_is_not_the_next_tests(pytester):
    pytester.makepyfile(test_switched_workspace=SWITCHED_WORKSPACE_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("named", ["option", "conftest"])
def test_a_project_that_also_names_the_plugin_gets_it_once(pytester, named):
    # `-p emulator.pytest_plugin` or `pytest_plugins = [...]`, as users enable plugins, stopped the run:
    # "Plugin already registered under a different name" (the entry point was called `segjet`).
    pytester.makepyfile(test_one_stack=ONE_STACK_TEST)
    options = ["-p", "no:cacheprovider"]
    if named == "option":
        options += ["-p", "emulator.pytest_plugin"]
    else:
        pytester.makeconftest('pytest_plugins = ["emulator.pytest_plugin"]')
    result = pytester.runpytest_subprocess(*options)
    result.assert_outcomes(passed=2)


def test_plugin_under_xdist(pytester):
    # One stack per worker, each on its own free ports.
    pytester.makepyfile(test_user_project=PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=3)


def readme_plugin_example() -> str:
    """The README's pytest plugin example, as a user pastes it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    after = readme.split("Paste this into a test file:", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_plugin_example_passes_as_pasted(pytester):
    example = readme_plugin_example()
    pytester.makepyfile(test_from_readme=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=example.count("\ndef test_") + example.startswith("def test_"))


@pytest.mark.parametrize(
    ("where", "problem"), [("missing/ready.json", "No such file or directory"), (".", "not a regular file")]
)
def test_up_says_which_ready_file_it_cannot_write_and_stops(tmp_path, where, problem):
    # It failed naming only "<file>.tmp" (or the bare path), and after the servers had started left
    # the bundle up until the process died.
    ready = tmp_path / where
    result = subprocess.run(
        [*SEGJET, "up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0",
         "--data-dir", str(tmp_path / "data"), "--ready-file", str(ready)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"segjet: cannot start: --ready-file {ready}: {problem}" in result.stderr
    assert "Traceback" not in result.stderr and "segjet is up" not in result.stdout


def test_up_whose_demo_fails_keeps_serving_and_exits_1_when_stopped(segjet_up, tmp_path):
    # The audience the round trip needs, with another rule: its audience hop fails.
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"audiences": [
        {"name": "Order Completed Last 30 Days", "rule": {"event": "Order Completed", "within": "7d"}}
    ]}), encoding="utf-8")
    info, process = segjet_up("--demo", "--config", str(config))
    assert httpx.get(f"{info['segment_url']}/_emulator/health").status_code == 200
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 1, output
    assert "4 passed, 1 failed, 3 skipped" in output
    assert "the demo round trip failed (see above); the servers keep running, and the exit status will be 1" in output
    assert "segjet stopped" in output


def test_up_whose_stdout_reader_left_stops_as_a_pipe_closed_not_a_failed_start(tmp_path):
    # `segjet up | head -1`, then Ctrl-C: "segjet stopped" met the closed pipe, reported as
    # "segjet: cannot start: [Errno 32] Broken pipe" with status 1.
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        while process.stdout.readline().strip() != "Ctrl-C stops.":
            assert process.poll() is None, process.stderr.read()
        process.stdout.close()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 141, err
    assert "cannot start" not in err
