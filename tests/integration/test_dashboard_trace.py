"""The dashboards' trace and feeds, against real servers: one user's journey across both fakes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import signal
from typing import Any

import httpx
from starlette.requests import Request

from emulator.common.clock import Clock
from emulator.config import BundleConfig, BundleUrls
from emulator.dashboard.common import Broadcaster
from emulator.dashboard.segment_routes import export_html
from emulator.dashboard.trace import LIMIT, build_trace
from emulator.segment.routes import create_app as create_segment_app

from .conftest import TWO_TENANTS, SegjetUp, StartApps, TwoTenantStack
from .polling import wait_for

WAIT_SECONDS = 15

A, B = TWO_TENANTS["a"], TWO_TENANTS["b"]


def call(stack: TwoTenantStack, endpoint: str, body: dict[str, Any], write_key: str = A["write_key"]) -> None:
    answer = stack.http.post(f"{stack.segment_url}/v1/{endpoint}", auth=(write_key, ""), json=body)
    assert answer.status_code == 200, answer.text


def advance(stack: TwoTenantStack, duration: str) -> None:
    assert stack.http.post(f"{stack.segment_url}/_emulator/clock", json={"advance": duration}).status_code == 200


def trace(stack: TwoTenantStack, user: str) -> dict[str, Any]:
    answer = stack.http.get(f"{stack.segment_url}/_emulator/dashboard/trace", params={"user": user})
    assert answer.status_code == 200, answer.text
    return answer.json()


def delivered(stack: TwoTenantStack, user_id: str, count: int) -> bool:
    records = stack.http.get(f"{stack.segment_url}/_emulator/deliveries", params={"userId": user_id}).json()["deliveries"]
    return sum(record["state"] == "delivered" for record in records) >= count


def test_a_track_whose_event_is_an_object_is_titled_in_json(tenant_b: TwoTenantStack) -> None:
    # The title showed the Python repr: Segment received track “{'x': 1}”.
    stack = tenant_b
    call(stack, "track", {"userId": "u-obj", "event": {"x": 1, "y": "é"}})
    titles = [step["title"] for step in trace(stack, "u-obj")["steps"] if step["kind"] == "segment"]
    assert titles == ['Segment received track “{"x": 1, "y": "é"}”'], titles


def test_a_calls_step_shows_it_as_sent_its_own_source_field_too(tenant_b: TwoTenantStack) -> None:
    # The events API shows a call's own top-level "source" under call_fields: the step dropped it.
    stack = tenant_b
    call(stack, "track", {"userId": "u-own", "event": "E", "source": "web"})
    [step] = [step for step in trace(stack, "u-own")["steps"] if step["kind"] == "segment"]
    assert step["payload"]["source"] == "web" and "status" not in step["payload"]


def test_a_step_that_breaks_its_contract_carries_jsonschemas_violations(tenant_b: TwoTenantStack) -> None:
    # The compiled check answers yes/no; a payload it fails must still be explained, rule by rule.
    stack = tenant_b
    call(stack, "track", {"userId": "u-broken", "event": ""})
    call(stack, "track", {"userId": "u-broken", "event": "Signed Up"})
    verdicts = [(step["contract"], step["violations"]) for step in trace(stack, "u-broken")["steps"] if step["kind"] == "segment"]
    assert verdicts == [
        ("segment.track", [{"path": "$.event", "rule": "minLength", "message": '"" has 0 characters, expected at least 1'}]),
        ("segment.track", []),
    ], verdicts


def test_a_skipped_delivery_sits_at_its_messages_time(tenant_b: TwoTenantStack) -> None:
    # A track is never sent to the Mailjet destination (skipped at once, no attempt): its record
    # showed "time unknown" and sorted after everything, e.g. after a later identify's delivery.
    stack = tenant_b
    call(stack, "track", {"userId": "u-skip", "event": "Signed Up"})
    advance(stack, "1m")
    call(stack, "identify", {"userId": "u-skip", "traits": {"email": "skip@example.com"}})
    wait_for(lambda: delivered(stack, "u-skip", 1), "the identify's delivery", WAIT_SECONDS)
    steps = trace(stack, "u-skip")["steps"]
    kinds = [(step["kind"], step.get("state")) for step in steps]
    skipped = next(step for step in steps if step.get("state") == "skipped")
    track = next(step for step in steps if step["title"] == "Segment received track “Signed Up”")
    assert skipped["at"] == track["at"] and skipped["at"] is not None
    assert kinds.index(("delivery", "skipped")) == kinds.index(("segment", None)) + 1, kinds
    assert steps.index(skipped) < steps.index(next(s for s in steps if s["title"] == "Segment received identify"))


def _csp_sources(html: str) -> dict[str, list[str]]:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert match, "no Content-Security-Policy meta"
    # The policy must come before any content it guards.
    assert match.start() < html.index("<style>") < html.index("<script")
    directives = [part.split() for part in match.group(1).split(";") if part.strip()]
    return {parts[0]: parts[1:] for parts in directives}


def test_the_exported_trace_carries_a_restrictive_content_security_policy() -> None:
    html = export_html({"user": "</script><script>alert(1)</script>", "steps": [], "contact": None})
    policy = _csp_sources(html)
    assert policy["default-src"] == ["'none'"]
    # Only the file's own inline style and scripts run: each is allowed by its hash, so an
    # injected <script> or <style> would not (no 'unsafe-inline').
    inline_scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    inline_styles = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert len(inline_scripts) == 2 and len(inline_styles) == 1

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert sorted(policy["script-src"]) == sorted(digest(text) for text in inline_scripts)
    assert policy["style-src"] == [digest(inline_styles[0])]
    assert policy.get("base-uri") == ["'none'"] and policy.get("form-action") == ["'none'"]


def test_the_trace_export_answers_the_policy_too(tenant_b: TwoTenantStack) -> None:
    stack = tenant_b
    call(stack, "identify", {"userId": "u-csp", "traits": {"email": "csp@example.com"}})
    answer = stack.http.get(f"{stack.segment_url}/_emulator/dashboard/trace/export", params={"user": "u-csp"})
    assert answer.status_code == 200
    assert _csp_sources(answer.text)["default-src"] == ["'none'"]


def mailjet_get(stack: TwoTenantStack, path: str, **params: Any) -> httpx.Response:
    return stack.http.get(f"{stack.mailjet_url}{path}", params=params)


def test_the_mailjet_feeds_show_the_named_account_not_the_default_one(tenant_b: TwoTenantStack) -> None:
    # `?apiKey=key-b` answered account A's contacts, lists and API key: the caller silently read
    # another account's data, where every other control read serves the account it names.
    stack = tenant_b
    auth_b = (B["api_key"], B["secret_key"])
    added = stack.http.post(f"{stack.mailjet_url}/v3/REST/contact", auth=auth_b, json={"Email": "only-b@example.com"})
    assert added.status_code == 201, added.text
    stack.http.post(f"{stack.mailjet_url}/v3/REST/contact", auth=(A["api_key"], A["secret_key"]),
                    json={"Email": "only-a@example.com"}).raise_for_status()
    emails = {c["Email"] for c in mailjet_get(stack, "/_emulator/dashboard/contacts", apiKey=B["api_key"]).json()["contacts"]}
    assert emails == {"only-b@example.com"}
    default = {c["Email"] for c in mailjet_get(stack, "/_emulator/dashboard/contacts").json()["contacts"]}
    assert default == {"only-a@example.com"}
    assert mailjet_get(stack, "/_emulator/dashboard/info", apiKey=B["api_key"]).json()["apiKey"] == B["api_key"]
    made = stack.http.post(f"{stack.mailjet_url}/v3/REST/contactslist", auth=auth_b, json={"Name": "Only B"})
    assert made.status_code == 201, made.text
    lists_b = {item["Name"] for item in mailjet_get(stack, "/_emulator/dashboard/lists", apiKey=B["api_key"]).json()["lists"]}
    assert "Only B" in lists_b
    assert "Only B" not in {item["Name"] for item in mailjet_get(stack, "/_emulator/dashboard/lists").json()["lists"]}
    header = stack.http.get(f"{stack.mailjet_url}/_emulator/dashboard/contacts", headers={"X-Segjet-Api-Key": B["api_key"]})
    assert {c["Email"] for c in header.json()["contacts"]} == {"only-b@example.com"}
    for path in ("/_emulator/dashboard/contacts", "/_emulator/dashboard/lists", "/_emulator/dashboard/info", "/_emulator/stream"):
        unknown = mailjet_get(stack, path, apiKey="no-such-key")
        assert unknown.status_code == 404, (path, unknown.status_code)
        assert "error" in unknown.json()


def test_an_anonymous_visitors_calls_join_the_user_they_identify_as(tenant_b: TwoTenantStack) -> None:
    # Segment merges an anonymousId into the userId an identify carries with it; the trace of that
    # userId left out everything the visitor did before (calls with the anonymousId alone).
    stack = tenant_b
    call(stack, "page", {"anonymousId": "anon-7", "name": "Pricing"})
    call(stack, "track", {"anonymousId": "anon-7", "event": "Viewed Pricing"})
    call(stack, "identify", {"anonymousId": "anon-7", "userId": "u-anon", "traits": {"email": "anon@example.com"}})
    call(stack, "track", {"anonymousId": "anon-other", "event": "Someone else"})
    # Another user on the same device, after a log-out: their own calls are not u-anon's.
    call(stack, "track", {"anonymousId": "anon-7", "userId": "u-second", "event": "Second user"})
    titles = [step["title"] for step in trace(stack, "u-anon")["steps"] if step["kind"] == "segment"]
    assert titles == ["Segment received page",
                      "Segment received track “Viewed Pricing”", "Segment received identify"], titles


def test_every_email_a_user_had_is_in_their_trace(tenant_b: TwoTenantStack) -> None:
    # A user who changed their email: the emails sent to the earlier address were left out.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-multi", "traits": {"email": "first@example.com"}})
    wait_for(lambda: delivered(stack, "u-multi", 1), "the first identify's delivery", WAIT_SECONDS)
    auth = (A["api_key"], A["secret_key"])
    for to in ("first@example.com", "other@example.com"):
        sent = stack.http.post(f"{stack.mailjet_url}/v3.1/send", auth=auth, json={"Messages": [
            {"From": {"Email": "shop@example.com"}, "To": [{"Email": to}], "Subject": f"Hi {to}", "TextPart": "x"}]})
        assert sent.status_code == 200, sent.text
    advance(stack, "1m")
    call(stack, "identify", {"userId": "u-multi", "traits": {"email": "second@example.com"}})
    wait_for(lambda: delivered(stack, "u-multi", 2), "the second identify's delivery", WAIT_SECONDS)
    found = trace(stack, "u-multi")
    assert found["email"] == "second@example.com"
    emails = [step["title"] for step in found["steps"] if step["kind"] == "email"]
    assert emails == ["Mailjet sent email “Hi first@example.com”"], emails
    sends = [step for step in found["steps"] if step["kind"] == "mailjet-call" and "/send" in step["title"]]
    assert len(sends) == 1


def test_an_alias_joins_the_previous_id_to_the_user(tenant_b: TwoTenantStack) -> None:
    stack = tenant_b
    call(stack, "track", {"userId": "old-id", "event": "Before alias"})
    call(stack, "alias", {"previousId": "old-id", "userId": "u-alias"})
    titles = [step["title"] for step in trace(stack, "u-alias")["steps"] if step["kind"] == "segment"]
    assert titles == ["Segment received track “Before alias”", "Segment received alias"], titles


def delivered_in(stack: TwoTenantStack, write_key: str, user_id: str, count: int) -> bool:
    records = stack.http.get(f"{stack.segment_url}/_emulator/deliveries",
                             params={"userId": user_id, "writeKey": write_key}).json()["deliveries"]
    return sum(record["state"] == "delivered" for record in records) >= count


def journal_ids(stack: TwoTenantStack, api_key: str) -> set[int]:
    answer = mailjet_get(stack, "/_emulator/requests", apiKey=api_key, limit=10_000)
    assert answer.status_code == 200, answer.text
    return {entry["id"] for entry in answer.json()["requests"]}


def test_the_trace_leaves_out_another_accounts_calls_naming_the_same_email(tenant_b: TwoTenantStack) -> None:
    # The trace shows the default workspace and the configured Mailjet account's messages, events
    # and contact, but read the Mailjet journal of every account: a parallel job's workspace (B)
    # sending the same test user put B's managecontact and contactmetadata calls in A's trace.
    stack = tenant_b
    for write_key in (A["write_key"], B["write_key"]):
        call(stack, "identify", {"userId": "u-both", "traits": {"email": "both@example.com"}}, write_key=write_key)
        wait_for(lambda key=write_key: delivered_in(stack, key, "u-both", 1), f"the delivery in {write_key}", WAIT_SECONDS)
    own, other = journal_ids(stack, A["api_key"]), journal_ids(stack, B["api_key"])
    assert other, "workspace B's delivery made no Mailjet call"
    calls = [step for step in trace(stack, "u-both")["steps"] if step["kind"] == "mailjet-call"]
    assert any("managecontact" in step["title"] for step in calls), calls
    assert {step["payload"]["id"] for step in calls} <= own


def test_a_trace_by_anonymous_id_shows_the_visitors_calls(tenant_b: TwoTenantStack) -> None:
    # The Debugger's "Trace this user" link names the anonymousId of a message that has no userId.
    stack = tenant_b
    call(stack, "page", {"anonymousId": "anon-only", "name": "Home"})
    call(stack, "track", {"anonymousId": "anon-else", "event": "Not Them"})
    titles = [step["title"] for step in trace(stack, "anon-only")["steps"]]
    assert titles == ["Segment received page", "Delivery to Mailjet destination"], titles


def test_a_trace_shows_the_users_deliveries_only(tenant_b: TwoTenantStack) -> None:
    stack = tenant_b
    for user_id in ("u-mine", "u-theirs"):
        call(stack, "identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.com"}})
        wait_for(lambda u=user_id: delivered(stack, u, 1), f"{user_id}'s delivery", WAIT_SECONDS)
    steps = trace(stack, "u-mine")["steps"]
    own = {step["payload"]["messageId"] for step in steps if step["kind"] == "segment"}
    deliveries = [step for step in steps if step["kind"] == "delivery"]
    assert deliveries and {step["payload"]["messageId"] for step in deliveries} == own
    # Each attempt the destination answered 2xx is checked against the destination's response contract.
    assert {step["contract"] for step in deliveries} == {"destination.response"}
    assert all(step["violations"] == [] for step in deliveries)
    # The attempt comes before the Mailjet calls the destination made during it (in the same second).
    first_call = next(i for i, step in enumerate(steps) if step["kind"] == "mailjet-call")
    assert steps.index(deliveries[0]) < first_call, [step["title"] for step in steps]


def test_a_mailjet_call_naming_the_user_in_its_path_or_by_user_id_is_theirs(tenant_b: TwoTenantStack) -> None:
    stack = tenant_b
    auth = (A["api_key"], A["secret_key"])
    call(stack, "identify", {"userId": "u-path", "traits": {"email": "path@example.com"}})
    wait_for(lambda: delivered(stack, "u-path", 1), "the identify's delivery", WAIT_SECONDS)
    assert stack.http.get(f"{stack.mailjet_url}/v3/REST/contact/PATH@example.com", auth=auth).status_code == 200
    assert stack.http.get(f"{stack.mailjet_url}/v3/REST/contact/nobody@example.com", auth=auth).status_code == 404
    # Names the user by the property the destination stores the userId in, not by email.
    contact_id = stack.http.get(f"{stack.mailjet_url}/v3/REST/contact/path@example.com", auth=auth).json()["Data"][0]["ID"]
    assert stack.http.put(f"{stack.mailjet_url}/v3/REST/contactdata/{contact_id}", auth=auth,
                          json={"Data": [{"Name": "segment_user_id", "Value": "u-path"}]}).status_code in (200, 304)
    calls = {step["title"]: step for step in trace(stack, "u-path")["steps"] if step["kind"] == "mailjet-call"}
    assert "Mailjet API GET /v3/REST/contact/PATH@example.com" in calls, list(calls)
    assert f"Mailjet API PUT /v3/REST/contactdata/{contact_id}" in calls, list(calls)
    assert "Mailjet API GET /v3/REST/contact/nobody@example.com" not in calls
    # A 4xx answer is checked against Mailjet's error contract.
    missing = trace(stack, "nobody@example.com")["steps"]
    assert [(step["title"], step["contract"], step["violations"]) for step in missing] == [
        ("Mailjet API GET /v3/REST/contact/nobody@example.com", "mailjet.error", [])]


def metadata(stack: TwoTenantStack, name: str) -> None:
    answer = stack.http.post(f"{stack.mailjet_url}/v3/REST/contactmetadata", auth=(A["api_key"], A["secret_key"]),
                             json={"Name": name, "Datatype": "str", "NameSpace": "static"})
    assert answer.status_code == 201, answer.text


def test_property_definitions_outside_the_users_window_are_not_in_their_trace(tenant_b: TwoTenantStack) -> None:
    # Only the /contactmetadata calls between the user's first delivery attempt and their last
    # Mailjet call can be theirs; one that also names them is one step, not two.
    stack = tenant_b
    metadata(stack, "before_prop")
    advance(stack, "1m")
    call(stack, "identify", {"userId": "u-window", "traits": {"email": "window@example.com"}})
    wait_for(lambda: delivered(stack, "u-window", 1), "the identify's delivery", WAIT_SECONDS)
    metadata(stack, "u-window")  # names the user (a string equal to the userId), inside the window
    advance(stack, "1m")
    metadata(stack, "after_prop")
    calls = [step["payload"] for step in trace(stack, "u-window")["steps"] if step["kind"] == "mailjet-call"]
    names = [entry["body"].get("Name") for entry in calls if isinstance(entry.get("body"), dict)]
    assert "before_prop" not in names and "after_prop" not in names, names
    assert names.count("u-window") == 1, names
    assert len({entry["id"] for entry in calls}) == len(calls)


def send_email(stack: TwoTenantStack, sender: str, to: str, subject: str) -> int:
    sent = stack.http.post(f"{stack.mailjet_url}/v3.1/send", auth=(A["api_key"], A["secret_key"]), json={"Messages": [
        {"From": {"Email": sender}, "To": [{"Email": to}], "Subject": subject, "TextPart": "x"}]})
    assert sent.status_code == 200, sent.text
    return sent.json()["Messages"][0]["To"][0]["MessageID"]


def test_emails_and_email_events_of_others_are_not_in_the_trace(tenant_b: TwoTenantStack) -> None:
    # An email the user sent (From) is not one sent to them, and another recipient's opens are not theirs.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-mail", "traits": {"email": "mail@example.com"}})
    wait_for(lambda: delivered(stack, "u-mail", 1), "the identify's delivery", WAIT_SECONDS)
    advance(stack, "1m")
    mine = send_email(stack, "shop@example.com", "mail@example.com", "To them")
    theirs = send_email(stack, "mail@example.com", "friend@example.com", "From them")
    for message_id in (mine, theirs):
        opened = stack.http.post(f"{stack.mailjet_url}/_emulator/messages/{message_id}/events", json={"event": "open"})
        assert opened.status_code == 201, opened.text
    # The App Connection forwards the open to Segment in the background: read the trace once it has.
    forwarded = "Segment received track “Email Opened”"
    wait_for(lambda: any(step["title"] == forwarded for step in trace(stack, "u-mail")["steps"]),
             "the open forwarded to Segment", WAIT_SECONDS)
    steps = trace(stack, "u-mail")["steps"]
    assert [step["title"] for step in steps if step["kind"] == "email"] == ["Mailjet sent email “To them”"]
    # The email (its time has whole seconds only) comes after the Send API call that sent it.
    titles = [step["title"] for step in steps]
    assert titles.index("Mailjet API POST /v3.1/send") < titles.index("Mailjet sent email “To them”"), titles
    events = [step for step in steps if step["kind"] == "email-event"]
    assert {step["payload"]["MessageID"] for step in events} == {mine}, events
    opened = next(step for step in events if step["payload"]["event"] == "open")
    # At the event's own time, after the identify's steps, and checked against its contract.
    assert opened["at"] is not None and opened["at"] > steps[0]["at"]
    # The track the App Connection sent back for it comes after it.
    back = next(step for step in steps if step["title"] == forwarded)
    assert back["kind"] == "segment-email-event" and steps.index(opened) < steps.index(back)
    assert opened["contract"] == "mailjet.event.open" and opened["violations"] == []


def test_the_traces_contact_is_the_users_own(tenant_b: TwoTenantStack) -> None:
    # ada@example.co has no contact; ada@example.com has: the trace showed the other's, as did the
    # Contacts feed asked for the one address.
    stack = tenant_b
    auth = (A["api_key"], A["secret_key"])
    for email in ("first-contact@example.com", "ada@example.com"):
        assert stack.http.post(f"{stack.mailjet_url}/v3/REST/contact", auth=auth, json={"Email": email}).status_code == 201
    assert trace(stack, "ada@example.com")["contact"]["Email"] == "ada@example.com"
    assert trace(stack, "ada@example.co")["contact"] is None
    assert mailjet_get(stack, "/_emulator/dashboard/contacts", email="ada@example.co").json()["contacts"] == []


def test_a_discarded_message_does_not_move_the_delivery_record_of_its_message_id(tenant_b: TwoTenantStack) -> None:
    # The first call with messageId m-reused is discarded (its event is not a string); the second,
    # accepted, is skipped by the destination (a track). The skipped record stands at the second's time.
    stack = tenant_b
    call(stack, "track", {"userId": "u-reuse", "event": {"not": "a string"}, "messageId": "m-reused"})
    advance(stack, "1m")
    call(stack, "track", {"userId": "u-reuse", "event": "Real One", "messageId": "m-reused"})
    steps = trace(stack, "u-reuse")["steps"]
    accepted = next(step for step in steps if step["title"] == "Segment received track “Real One”")
    skipped = next(step for step in steps if step["kind"] == "delivery")
    assert skipped["at"] == accepted["at"], steps


def test_an_engage_identify_is_shown_as_an_engage_sync(tenant_b: TwoTenantStack) -> None:
    stack = tenant_b
    call(stack, "identify", {"userId": "u-engage", "traits": {"big_spenders": True},
                             "context": {"personas": {"computation_key": "big_spenders", "computation_class": "audience"}}})
    steps = trace(stack, "u-engage")["steps"]
    assert [(step["kind"], step["title"]) for step in steps if step["service"] == "segment" and step["kind"] != "delivery"] == [
        ("engage", "Engage sync: identify (big_spenders)")]
    assert steps[0]["contract"] == "segment.engage_audience_identify"


def test_a_trace_by_email_is_of_the_user_who_has_it_now(tenant_b: TwoTenantStack) -> None:
    # An address that moved from one user to another (an account deleted, the email reused): the
    # trace by email names the user whose call carried it last.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-before", "traits": {"email": "moved@example.com"}})
    advance(stack, "1m")
    call(stack, "identify", {"userId": "u-now", "traits": {"email": "moved@example.com"}})
    assert trace(stack, "moved@example.com")["userId"] == "u-now"


def test_a_trace_by_email_shows_the_address_as_the_users_calls_spell_it(tenant_b: TwoTenantStack) -> None:
    # Searched for in another case, the trace found the user but its header showed the address as typed.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-case", "traits": {"email": "Case@example.com"}})
    found = trace(stack, "CASE@EXAMPLE.COM")
    assert (found["userId"], found["email"]) == ("u-case", "Case@example.com")
    assert any(step["kind"] == "segment" for step in found["steps"])


def test_a_trace_follows_the_address_the_destination_reads_in_any_casing(tenant_b: TwoTenantStack) -> None:
    # The destination reads `traits.Email` as the contact's address (any casing, as Segment asks of
    # partners): the trace looked only at `traits.email` and found no email, so no contact.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-cased-key", "traits": {"Email": "cased-key@example.com"}})
    wait_for(lambda: delivered(stack, "u-cased-key", 1), "the identify's delivery", WAIT_SECONDS)
    by_user = trace(stack, "u-cased-key")
    assert by_user["email"] == "cased-key@example.com"
    assert by_user["contact"]["Email"] == "cased-key@example.com"
    assert trace(stack, "cased-key@example.com")["userId"] == "u-cased-key"


def test_a_trace_that_read_only_the_newest_records_of_a_source_says_so(tenant_b: TwoTenantStack) -> None:
    # The trace reads the newest LIMIT records of each source: the user's identify, older than the
    # newest 10,000 events, was left out without a word, and looked like a call Segment never got.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-old", "traits": {"email": "old@example.com"}})
    small = trace(stack, "u-old")
    assert (small["truncated"], small["truncatedSources"], small["unreadSources"]) == (False, [], [])
    filler = [{"type": "track", "userId": "u-busy", "event": "Tick"} for _ in range(2500)]
    for _ in range(LIMIT // len(filler)):
        call(stack, "batch", {"batch": filler})
    cut = trace(stack, "u-old")
    assert [step for step in cut["steps"] if step["kind"] == "segment"] == []
    assert cut["truncated"] is True and "Segment events" in cut["truncatedSources"], cut
    assert cut["readLimit"] == LIMIT and cut["unreadSources"] == []


def test_a_trace_says_which_sources_it_could_not_read(tenant_b: TwoTenantStack) -> None:
    # A Mailjet that does not answer (stopped, restarting) left every Mailjet step out of the trace
    # without a word: the user read it as the destination never having called Mailjet.
    stack = tenant_b
    call(stack, "identify", {"userId": "u-gone", "traits": {"email": "gone@example.com"}})
    data = asyncio.run(build_trace(stack.segment_url, "http://127.0.0.1:9", "u-gone", timeout=5))
    assert [step["kind"] for step in data["steps"]][:1] == ["segment"]
    assert data["unreadSources"] == [
        "Mailjet API calls", "Mailjet emails", "Mailjet email events", "Mailjet contact"
    ], data["unreadSources"]
    assert data["truncated"] is True and data["truncatedSources"] == data["droppedSources"] == []


def test_a_trace_says_which_stores_dropped_their_oldest_records(serve: StartApps) -> None:
    # A store at its capacity (`--events-capacity`, `--journal-capacity`) drops its oldest records
    # and counts them (`dropped`): the trace then lacked the user's first calls without a word.
    config = BundleConfig(write_key="cap-key", events_capacity=3)
    nowhere = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")
    url = serve({"segment": create_segment_app(config, Clock(), nowhere)})["segment"]
    with httpx.Client(base_url=url, auth=("cap-key", "")) as http:
        for number in range(4):
            assert http.post("/v1/identify", json={"userId": "u-cap", "traits": {"n": number}}).status_code == 200
    data = asyncio.run(build_trace(url, "http://127.0.0.1:9", "u-cap", timeout=5))
    assert len([step for step in data["steps"] if step["kind"] == "segment"]) == 3
    assert data["droppedSources"] == ["Segment events"] and data["truncated"] is True, data


def test_a_head_on_a_live_feed_answers_its_headers_and_frees_the_connection(tenant_b: TwoTenantStack) -> None:
    # Starlette answers HEAD on every GET route: the feed then streamed a body that is never sent, so
    # the next request on the same connection got nothing, and the feed ran on for nobody.
    for url, path in ((tenant_b.segment_url, "/_emulator/events/stream"), (tenant_b.mailjet_url, "/_emulator/stream")):
        with httpx.Client(base_url=url, timeout=5) as client:
            head = client.head(path)
            assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream"), path
            assert head.content == b""
            assert client.get("/_emulator/health").status_code == 200, path


def test_each_message_is_encoded_once_whatever_the_number_of_open_feeds() -> None:
    # Every open Segment feed encoded every message again: 45 open, ingesting took twice as long.
    class Counted:
        encodings = 0

        def __str__(self) -> str:
            Counted.encodings += 1
            return "counted"

    get = Request({"type": "http", "method": "GET", "path": "/_emulator/events/stream", "headers": []})

    async def scenario() -> list[str]:
        feed = Broadcaster()
        bodies = [feed.stream(get).body_iterator for _ in range(3)]
        for body in bodies:
            assert await body.__anext__() == ": connected\n\n"
        feed.publish({"item": Counted()})
        received = [await body.__anext__() for body in bodies]
        for body in bodies:
            await body.aclose()
        return received

    assert asyncio.run(scenario()) == ['data: {"item":"counted"}\n\n'] * 3
    assert Counted.encodings == 1


def test_segjet_up_stops_cleanly_with_the_dashboards_feeds_open(segjet_up: SegjetUp) -> None:
    # An open dashboard tab is the usual case: its feed never ends, so uvicorn's graceful shutdown
    # waited out its 2 s, then cancelled it with an ERROR and a CancelledError traceback.
    info, process = segjet_up()
    with httpx.Client(timeout=30) as client, \
            client.stream("GET", f"{info['segment_url']}/_emulator/events/stream") as segment_feed, \
            client.stream("GET", f"{info['mailjet_url']}/_emulator/stream") as mailjet_feed:
        lines = [feed.iter_lines() for feed in (segment_feed, mailjet_feed)]  # kept: a dropped one closes its feed
        assert [next(feed_lines) for feed_lines in lines] == [": connected"] * 2
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "ERROR" not in output and "Traceback" not in output, output
