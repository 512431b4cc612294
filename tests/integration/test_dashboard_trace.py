"""The dashboards' trace and feeds, against real servers: one user's journey across both fakes."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import httpx

from emulator.dashboard.segment_routes import export_html

from .conftest import TWO_TENANTS, TwoTenantStack
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
    assert mailjet_get(stack, "/_emulator/dashboard/lists", apiKey=B["api_key"]).status_code == 200
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
