"""Fault rules as plain Python: parsing, matching, seeded draws, `times`, credentials; and how far
the middleware reads a body before it picks one."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from emulator.common.clock import Clock
from emulator.common.fault_routes import FaultMiddleware, segment_fault_response
from emulator.common.faults import FaultRuleError, FaultRules
from emulator.common.journal import Journal
from emulator.segment.routes import tracking_write_key


def mailjet() -> FaultRules:
    return FaultRules.for_mailjet()


def segment() -> FaultRules:
    return FaultRules.for_segment()


def fires(rules: FaultRules, method: str, path: str, credential: str | None = None) -> str | None:
    rule = FaultRules.choose(rules.candidates(method, path), credential)
    return rule.id if rule else None


def test_a_rule_gets_an_id_and_defaults() -> None:
    rule = mailjet().add({"path": "/v3/REST/contact"})
    assert rule.to_json() | {"id": None} == {
        "id": None, "method": "*", "path": "/v3/REST/contact", "action": "respond", "status": 503, "rate": 1.0,
        "times": None, "delay_ms": 0, "seed": 0, "api_key": None, "matched": 0, "fired": 0, "spent": False,
    }


def test_only_segment_rules_take_retry_after_which_only_its_429_announces() -> None:
    # Mailjet's 429 carries no Retry-After: a Mailjet rule's retry_after was kept and never used.
    with pytest.raises(FaultRuleError, match=r"unknown field\(s\) retry_after"):
        mailjet().add({"path": "/x", "status": 429, "retry_after": 5})
    rules = segment()
    assert rules.add({"path": "/x"}).to_json()["retry_after"] == 1
    assert rules.add({"path": "/x", "retry_after": 5}).retry_after == 5


def test_glob_star_spans_characters_and_slashes_and_mailjet_paths_ignore_case() -> None:
    rules = mailjet()
    rule = rules.add({"method": "post", "path": "/v3/REST/contactslist/*/managecontact"})
    assert fires(rules, "POST", "/V3/rest/ContactsList/12/ManageContact") == rule.id
    assert fires(rules, "GET", "/v3/REST/contactslist/12/managecontact") is None
    assert fires(rules, "POST", "/v3/REST/contactslist/12/managecontact/extra") is None
    assert fires(rules, "POST", "/v3/REST/contactslist/a/b/managecontact") == rule.id


def test_segment_paths_are_case_sensitive() -> None:
    rules = segment()
    rules.add({"path": "/v1/*"})
    assert fires(rules, "POST", "/v1/batch") is not None
    assert fires(rules, "POST", "/V1/batch") is None


def test_glob_characters_other_than_star_are_literal() -> None:
    rules = mailjet()
    rules.add({"path": "/v3/REST/contact?x.[1]"})
    assert fires(rules, "GET", "/v3/REST/contact?x.[1]") is not None
    assert fires(rules, "GET", "/v3/REST/contactAx.1") is None


def test_times_spends_a_rule() -> None:
    rules = mailjet()
    rule = rules.add({"path": "/x", "times": 2})
    assert [fires(rules, "GET", "/x") for _ in range(4)] == [rule.id, rule.id, None, None]
    assert rule.to_json()["spent"] is True and rule.fired == 2


def test_seeded_rate_repeats_run_after_run_and_follows_the_seed() -> None:
    def pattern() -> list[bool]:
        rules = mailjet()
        rules.add({"path": "/x", "rate": 0.4, "seed": 3})
        return [fires(rules, "GET", "/x") is not None for _ in range(200)]

    first = pattern()
    assert first == pattern()
    rng = random.Random(3)
    assert first == [rng.random() < 0.4 for _ in range(200)]
    assert 40 < sum(first) < 120


def test_rules_are_tried_in_order_and_a_miss_falls_through() -> None:
    rules = mailjet()
    never = rules.add({"path": "/x", "rate": 0})
    always = rules.add({"path": "/x", "status": 429})
    assert fires(rules, "GET", "/x") == always.id
    assert never.matched == 1 and never.fired == 0


def test_credential_limits_a_rule_to_one_key() -> None:
    rules = mailjet()
    rule = rules.add({"path": "/x", "api_key": "k1"})
    assert FaultRules.needs_credential(rules.candidates("GET", "/x"))
    assert fires(rules, "GET", "/x", "k2") is None
    assert fires(rules, "GET", "/x", None) is None
    assert fires(rules, "GET", "/x", "k1") is not None
    assert (rule.matched, rule.fired) == (1, 1)  # other keys' requests are not this rule's


def test_other_keys_requests_do_not_move_a_rules_seeded_draws() -> None:
    # Parallel jobs share the server: job k1's faults must fall the same whatever k2 sends meanwhile.
    def pattern(interleave: bool) -> list[bool]:
        rules = mailjet()
        rules.add({"path": "/x", "rate": 0.5, "seed": 5, "api_key": "k1"})
        drawn = []
        for _ in range(50):
            if interleave:
                fires(rules, "GET", "/x", "k2")
            drawn.append(fires(rules, "GET", "/x", "k1") is not None)
        return drawn

    assert pattern(interleave=True) == pattern(interleave=False)


def test_remove_and_clear() -> None:
    rules = mailjet()
    first, second = rules.add({"path": "/a"}), rules.add({"path": "/b"})
    assert rules.remove(first.id) and not rules.remove(first.id)
    assert [rule.id for rule in rules.rules()] == [second.id]
    rules.clear()
    assert not rules


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ([], "JSON object"),
        ({}, "path must be"),
        ({"path": "v3"}, "path must be"),
        ({"path": "/x", "action": "explode"}, "action must be"),
        ({"path": "/x", "status": 200}, "status must be"),
        ({"path": "/x", "status": True}, "status must be"),
        ({"path": "/x", "action": "drop", "status": 503}, "no meaning"),
        ({"path": "/x", "rate": 1.5}, "rate must be"),
        ({"path": "/x", "times": 0}, "times must be"),
        ({"path": "/x", "delay_ms": -1}, "delay_ms must be"),
        ({"path": "/x", "delay_ms": 600_000}, "delay_ms must be"),
        ({"path": "/x", "seed": "a"}, "seed must be"),
        ({"path": "/x", "write_key": "k"}, "unknown field"),
        ({"path": "/x", "api_key": 3}, "api_key must be"),
        # Would never match a request: a rule that silently cannot fire.
        ({"path": "/x", "method": "GET,POST"}, "method must be"),
        ({"path": "/x", "method": "POST "}, "method must be"),
        ({"path": "/x", "method": "GET|POST"}, "method must be"),
        # Control paths are never faulted (fault_routes.py): such a rule was kept and never fired.
        ({"path": "/_emulator/reset"}, "control API"),
        ({"path": "/_emulator/*", "action": "drop"}, "control API"),
        ({"path": "/_Emulator/events"}, "control API"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(spec: object, complaint: str) -> None:
    with pytest.raises(FaultRuleError, match=complaint):
        mailjet().add(spec)


def test_add_all_is_all_or_nothing() -> None:
    rules = mailjet()
    with pytest.raises(FaultRuleError, match="rule 1"):
        rules.add_all([{"path": "/a"}, {"path": "/b", "rate": 2}])
    assert not rules
    with pytest.raises(FaultRuleError, match="expected a list of rules"):
        rules.add_all({"path": "/a"})  # one rule, not a list of them: a BundleConfig built in Python
    assert not rules
    assert len(rules.add_all([{"path": "/a"}, {"path": "/b"}])) == 2


def test_a_null_status_passes_through_late() -> None:
    rule = mailjet().add({"path": "/x", "status": None, "delay_ms": 100})
    assert rule.status is None and rule.action == "respond"


def test_a_glob_that_may_reach_beyond_the_control_api_is_kept() -> None:
    rules = segment()
    assert rules.add({"path": "/*"}) and rules.add({"path": "/_emulat*"}) and rules.add({"path": "/*/_emulator/x"})
    assert rules.add({"path": "/_Emulator/events"})  # the fake Segment's paths are case-sensitive: not a control path


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"path": "/x", "status": 600}, "status must be"),
        ({"path": "/x", "status": 399}, "status must be"),
        ({"path": "/x", "rate": True}, "rate must be"),
        ({"path": "/x", "rate": "0.5"}, "rate must be"),
        ({"path": "/x", "retry_after": -1}, "retry_after must be"),
        ({"path": "/x", "delay_ms": 60_001}, "delay_ms must be"),
        ({"path": "/x", "times": 1.5}, "times must be"),
    ],
)
def test_values_just_outside_a_fields_range_are_refused(spec: object, complaint: str) -> None:
    with pytest.raises(FaultRuleError, match=complaint):
        segment().add(spec)


def test_values_at_the_edge_of_each_fields_range_are_kept() -> None:
    rules = segment()
    rule = rules.add({"path": "/x", "status": 599, "delay_ms": 60_000, "retry_after": 0, "seed": None, "rate": 0})
    assert (rule.status, rule.delay_ms, rule.retry_after, rule.seed, rule.rate) == (599, 60_000, 0, 0, 0.0)
    assert rules.add({"path": "/x", "status": 400, "times": 1}).status == 400


def test_a_rule_reads_ahead_no_further_than_the_service_takes() -> None:
    # The body was read ahead up to 32 MB whatever the service: a rule on /v1/* that never fires
    # held four 30 MB tracking bodies (110 MB) that the fake Segment refuses past 1 MB unread.
    chunk, limit = b"x" * 65_536, 1024 * 1024
    pulled: list[int] = []
    read_by_app: list[int] = []

    async def client() -> dict[str, object]:
        pulled.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(pulled) < 500}  # ~32 MB in all

    async def app(scope: object, receive: object, send: object) -> None:
        read_by_app.append(sum(pulled))

    rules = segment()
    rules.add({"path": "/v1/*", "rate": 0})
    middleware = FaultMiddleware(app, rules, Journal(Clock()), segment_fault_response, tracking_write_key, body_limit=limit)
    scope = {"type": "http", "method": "POST", "path": "/v1/batch", "headers": [], "query_string": b""}
    asyncio.run(middleware(scope, client, lambda message: asyncio.sleep(0)))
    assert limit < read_by_app[0] <= limit + len(chunk)


@pytest.mark.parametrize("chunk_size", [100, 10_000], ids=["small-chunks", "one-chunk"])
def test_a_write_key_rule_meets_a_body_over_the_cap_the_same_however_it_is_cut(chunk_size: int) -> None:
    # Read ahead to the cap, a body just over it was looked in whole when it came in one chunk and
    # cut short when it came in many: the same request fired the rule, or did not.
    limit = 1000

    def outcome(size: int) -> str:
        body = json.dumps({"writeKey": "k", "batch": [], "pad": ""}).encode()
        body = body[:-2] + b"x" * (size - len(body)) + b'"}'
        chunks = [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)]
        answered: list[str] = []

        async def client() -> dict[str, object]:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

        async def app(scope: object, receive: object, send: object) -> None:
            answered.append("passed on")

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                answered.append(f"fault {message['status']}")

        rules = segment()
        rules.add({"path": "/v1/*", "write_key": "k", "status": 500})
        middleware = FaultMiddleware(app, rules, Journal(Clock()), segment_fault_response, tracking_write_key, body_limit=limit)
        scope = {"type": "http", "method": "POST", "path": "/v1/batch", "headers": [], "query_string": b"", "client": None}
        asyncio.run(middleware(scope, client, send))  # type: ignore[arg-type]
        return answered[0]

    assert outcome(limit) == "fault 500"
    assert outcome(limit + 1) == "passed on"


@pytest.mark.parametrize(
    ("glob", "path", "met"),
    [
        ("/v3/REST/*/*/managecontact", "/v3/REST/contactslist/1/managecontact", True),
        ("/v3/REST/*/*/managecontact", "/v3/REST/contactslist/managecontact", False),  # two pieces between
        ("/a*a*a", "/aa", False),  # the pieces may not overlap
        ("/ab*ba", "/aba", False),  # not even the first and the last
        ("/a*a*a", "/aaa", True),
        ("/x*", "/x", True),
        ("/*", "/", True),
        ("/x/*/y*", "/x//y", True),
    ],
)
def test_a_glob_matches_piece_by_piece(glob: str, path: str, met: bool) -> None:
    assert (fires(mailjet_with(glob), "POST", path) is not None) is met


def test_a_glob_with_many_stars_meets_a_long_path_in_one_pass() -> None:
    # As a regex of ".*"s, a 64 KB path under two stars held the three servers' loop for 10 s.
    rules = mailjet_with("/v3/REST/*/*/managecontact")
    long_path = "/v3/REST/" + "a/" * 32_000 + "x"
    assert fires(rules, "POST", long_path) is None
    assert fires(rules, "POST", long_path + "/managecontact") is not None


def mailjet_with(glob: str) -> FaultRules:
    rules = mailjet()
    rules.add({"path": glob})
    return rules
