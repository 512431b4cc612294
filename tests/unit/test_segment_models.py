"""Rules of the fake Segment tracking API, straight on the model with a virtual clock."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import contracts
from emulator.common.clock import Clock, parse_iso
from emulator.common.json_body import MAX_DEPTH
from emulator.config import BundleConfig
from emulator.common import fast_validation
from emulator.segment.models import (
    DedupeWindow,
    ENGAGE_WRITE_KEY_PREFIX,
    MAX_BATCH_BYTES,
    MAX_CALL_BYTES,
    SegmentBackend,
    Source,
    StoredMessage,
    TrackingApiError,
    parse_tracking_request,
)

KEY = "unit-write-key"
OTHER_KEY = "mobile-write-key"


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.set(datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc))
    return clock


def backend_of(config: BundleConfig, clock: Clock) -> SegmentBackend:
    return SegmentBackend.with_sources(config, clock, Source.of_config(config))


def make_backend(clock: Clock, strict: bool = False) -> SegmentBackend:
    config = BundleConfig(write_key=KEY, strict=strict, sources=[{"name": "mobile", "write_key": OTHER_KEY}])
    return backend_of(config, clock)


def receive(
    backend: SegmentBackend, endpoint: str, raw: bytes, content_encoding: str | None = None,
    authorization: str | None = None, client_ip: str | None = None,
) -> list[StoredMessage]:
    """One POST /v1/<endpoint>, as the route takes it: parsed, then accepted."""
    return backend.accept(parse_tracking_request(endpoint, raw, content_encoding, authorization, client_ip))


@pytest.fixture
def backend(clock: Clock) -> SegmentBackend:
    return make_backend(clock)


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def send(backend: SegmentBackend, endpoint: str, payload: dict[str, Any], **headers: str) -> list[StoredMessage]:
    payload = {"writeKey": KEY, **payload}
    return receive(backend, endpoint, body(payload), headers.get("encoding"), headers.get("auth"))


def one(backend: SegmentBackend, endpoint: str, payload: dict[str, Any]) -> StoredMessage:
    [stored] = send(backend, endpoint, payload)
    return stored


def batch(backend: SegmentBackend, items: list[Any], **extra: Any) -> list[StoredMessage]:
    return send(backend, "batch", {"batch": items, **extra})


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


def rejected(backend: SegmentBackend, endpoint: str, raw: bytes, encoding: str | None = None, auth: str | None = None) -> str:
    with pytest.raises(TrackingApiError) as caught:
        receive(backend, endpoint, raw, encoding, auth)
    assert caught.value.status == 400
    return caught.value.code


# -- accepted calls and enrichment ---------------------------------------------------------------


@pytest.mark.parametrize("endpoint,call_type", [("identify", "identify"), ("t", "track"), ("p", "page"),
                                                ("screen", "screen"), ("g", "group"), ("i", "identify")])
def test_single_calls_take_their_type_from_the_path(backend: SegmentBackend, endpoint: str, call_type: str) -> None:
    stored = one(backend, endpoint, {"userId": "u1", "event": "Signed Up", "groupId": "g1"})
    assert stored.accepted and stored.type == call_type
    assert stored.source.name == "segjet" and stored.source.id.startswith("src_")
    assert "writeKey" not in stored.message



def test_the_path_wins_over_a_type_in_the_body_of_a_single_call(backend: SegmentBackend) -> None:
    # An identify's traits sent to /v1/track would otherwise be filed (and delivered) as an identify.
    stored = one(backend, "track", {"type": "identify", "userId": "u1", "event": "E", "traits": {"email": "a@example.com"}})
    assert stored.accepted and stored.type == "track"
    assert backend.profiles.get("u1").traits == {}



def test_an_empty_message_id_is_replaced_like_a_missing_one(backend: SegmentBackend) -> None:
    # Kept as "", every such call after the first would be dropped as its duplicate.
    first, second = (one(backend, "track", {"userId": "u1", "event": "E", "messageId": ""}) for _ in range(2))
    assert first.accepted and second.accepted
    assert first.message_id.startswith("api-") and first.message_id != second.message_id

@pytest.mark.parametrize("message_id,stored_id", [(42, "42"), (True, "true"), (["a", 1], '["a", 1]'), ({"k": None}, '{"k": null}')])
def test_a_message_id_that_is_no_string_is_kept_as_its_json_text(backend: SegmentBackend, message_id: Any, stored_id: str) -> None:
    stored = one(backend, "track", {"userId": "u1", "event": "E", "messageId": message_id})
    assert stored.accepted and stored.message["messageId"] == stored_id

def test_enrichment_sets_received_at_message_id_and_corrected_timestamp(backend: SegmentBackend, clock: Clock) -> None:
    stored = one(backend, "track", {
        "userId": "u1", "event": "Order Completed",
        "timestamp": "2025-03-01T10:00:00.000Z", "sentAt": "2025-03-01T10:00:05.000Z",
    })
    received = parse_iso(stored.message["receivedAt"])
    assert abs(received - clock.now()) < timedelta(seconds=5)
    assert stored.message["originalTimestamp"] == "2025-03-01T10:00:00.000Z"
    assert parse_iso(stored.message["timestamp"]) == received - timedelta(seconds=5)
    assert backend.profiles.get("u1").events[0].timestamp == received - timedelta(seconds=5)
    assert stored.message["messageId"].startswith("api-")


def test_timestamp_without_sent_at_is_kept_and_absent_timestamp_is_received_at(backend: SegmentBackend) -> None:
    kept = one(backend, "track", {"userId": "u1", "event": "E", "timestamp": "2020-01-01T00:00:00Z"})
    assert kept.message["timestamp"] == "2020-01-01T00:00:00.000Z"
    stamped = one(backend, "track", {"userId": "u1", "event": "E"})
    assert stamped.message["timestamp"] == stamped.message["receivedAt"]
    assert "originalTimestamp" not in stamped.message


def test_timestamp_with_an_unreadable_sent_at_is_kept(backend: SegmentBackend) -> None:
    # No skew can be worked out from a sentAt that is no time: the client's timestamp stands as given.
    kept = one(backend, "track", {"userId": "u1", "event": "E", "timestamp": "2020-01-01T00:00:00Z", "sentAt": "soon"})
    assert kept.accepted and kept.message["timestamp"] == "2020-01-01T00:00:00.000Z"


def test_unreadable_timestamp_falls_back_to_received_at(backend: SegmentBackend) -> None:
    stored = one(backend, "track", {"userId": "u1", "event": "E", "timestamp": "yesterday"})
    assert stored.accepted and stored.message["timestamp"] == stored.message["receivedAt"]
    assert stored.message["originalTimestamp"] == "yesterday"
    assert [v["field"] for v in stored.violations] == ["originalTimestamp"]


def test_batch_merges_context_integrations_and_sent_at_into_items(backend: SegmentBackend) -> None:
    stored = batch(backend, [
        {"type": "track", "userId": "u1", "event": "E", "timestamp": "2025-03-01T11:00:00Z", "context": {"ip": "1.2.3.4"}},
        {"type": "identify", "userId": "u1", "integrations": {"Mailjet": False}},
    ], context={"ip": "9.9.9.9", "locale": "fr-FR"}, integrations={"All": True}, sentAt="2025-03-01T11:00:10Z")
    first, second = (s.message for s in stored)
    assert first["context"] == {"ip": "1.2.3.4", "locale": "fr-FR"}
    assert second["context"] == {"ip": "9.9.9.9", "locale": "fr-FR"}
    assert second["integrations"] == {"All": True, "Mailjet": False}
    assert first["sentAt"] == "2025-03-01T11:00:10Z"
    assert parse_iso(first["timestamp"]) == parse_iso(first["receivedAt"]) - timedelta(seconds=10)


def test_an_item_context_that_is_no_object_is_not_merged_with_the_batchs_and_is_discarded(backend: SegmentBackend) -> None:
    stored = batch(backend, [{"type": "track", "userId": "u1", "event": "E", "context": "web"},
                             {"type": "track", "userId": "u1", "event": "E"}], context={"locale": "fr-FR"})
    assert [(s.message["context"], s.discard_reason) for s in stored] == [("web", "bad_request"), ({"locale": "fr-FR"}, None)]


def test_import_and_short_batch_paths_are_batches(backend: SegmentBackend) -> None:
    for endpoint in ("import", "b"):
        [stored] = send(backend, endpoint, {"batch": [{"type": "track", "userId": "u", "event": "E"}]})
        assert stored.accepted


def test_empty_batch_is_accepted_and_stores_nothing(backend: SegmentBackend) -> None:
    assert batch(backend, []) == []
    assert backend.events() == []


# -- write keys and sources ------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [f"{KEY}:", KEY])
def test_write_key_from_basic_auth_with_or_without_colon(backend: SegmentBackend, credentials: str) -> None:
    [stored] = receive(backend, "track", body({"userId": "u", "event": "E"}), None, basic(credentials))
    assert stored.accepted and stored.source.write_key == KEY



def test_basic_auth_is_read_before_the_body_write_key(backend: SegmentBackend) -> None:
    [stored] = receive(backend, "track", body({"userId": "u", "event": "E", "writeKey": "nope"}), None, basic(f"{OTHER_KEY}:"))
    assert stored.accepted and stored.source.name == "mobile"

def test_second_source_is_routed_by_its_key(backend: SegmentBackend) -> None:
    [stored] = receive(backend, "track", body({"userId": "u", "event": "E", "writeKey": OTHER_KEY}))
    assert stored.source.name == "mobile"
    assert [s.message_id for s in backend.events(source="mobile")] == [stored.message_id]
    assert backend.events(source=stored.source.id)[0] is stored


@pytest.mark.parametrize("auth,payload", [(None, {}), (None, {"writeKey": ""}), (basic(":"), {}),
                                          (None, {"writeKey": 42}), ("Basic !!!", {}), ("Bearer x", {})])
def test_missing_write_key_is_400(backend: SegmentBackend, auth: str | None, payload: dict[str, Any]) -> None:
    raw = body({"userId": "u", "event": "E", **payload})
    assert rejected(backend, "track", raw, auth=auth) == "missing_write_key"


def test_unknown_write_key_is_stored_discarded_and_not_profiled(backend: SegmentBackend) -> None:
    seen: list[StoredMessage] = []
    backend.add_listener(seen.append)
    [stored] = receive(backend, "identify", body({"writeKey": "nope", "userId": "u", "traits": {"a": 1}}))
    assert (stored.status, stored.discard_reason) == ("discarded", "unknown_write_key")
    assert stored.to_json()["source"] == {"id": None, "name": None, "writeKey": "nope"}
    assert seen == [] and backend.profiles.get("u") is None



def test_an_unknown_write_key_is_the_reason_given_before_any_problem_of_the_message(backend: SegmentBackend) -> None:
    # The source is looked up first: fixing the message alone would not get it through.
    [stored] = receive(backend, "track", body({"writeKey": "nope", "event": "E"}))
    assert stored.discard_reason == "unknown_write_key"

def test_ingest_stores_an_internal_message_under_its_source(backend: SegmentBackend) -> None:
    seen: list[StoredMessage] = []
    backend.add_listener(seen.append)
    engage = Source.named("Engage", "engage:spa_1")
    stored = backend.ingest({"type": "identify", "userId": "u", "traits": {"vip": True}, "messageId": "personas_1"}, engage)
    assert stored.accepted and stored.source is engage and seen == [stored]
    assert stored.message["receivedAt"] and backend.profiles.traits("u") == {"vip": True}
    assert backend.ingest({"type": "identify", "traits": {}}, engage).discard_reason == "no_user_anon_id"

# -- 400s ------------------------------------------------------------------------------------------


def test_bad_bodies_are_400(backend: SegmentBackend) -> None:
    assert rejected(backend, "track", b"{not json") == "invalid_json"
    assert rejected(backend, "track", b'{"userId": NaN}') == "invalid_json"
    assert rejected(backend, "track", b"\xff\xfe{}") == "invalid_json"
    assert rejected(backend, "track", b"[" * 5000 + b"]" * 5000) == "invalid_json"
    assert rejected(backend, "track", b"[1, 2]") == "invalid_payload"
    assert rejected(backend, "track", b'"text"') == "invalid_payload"
    assert rejected(backend, "batch", body({"writeKey": KEY, "batch": {"type": "track"}})) == "invalid_payload"
    assert rejected(backend, "batch", body({"writeKey": KEY})) == "invalid_payload"
    assert rejected(backend, "batch", body({"writeKey": KEY, "batch": [], "context": "x"})) == "invalid_payload"


def test_what_orjson_refuses_the_tracking_api_reads_as_json_would(backend: SegmentBackend) -> None:
    # A lone surrogate: orjson refuses it, json reads it, as U+FFFD (as Go does) so it can be shown.
    surrogate = f'{{"writeKey": "{KEY}", "userId": "u", "event": "E\\ud800"}}'.encode()
    assert receive(backend, "track", surrogate)[0].message["event"] == "E\ufffd"
    # A byte order mark: orjson refuses it, and so does json once the body is decoded as UTF-8.
    with_bom = b"\xef\xbb\xbf" + body({"writeKey": KEY, "userId": "u", "event": "BOM"})
    assert rejected(backend, "track", with_bom) == "invalid_json"
    huge = f'{{"writeKey": "{KEY}", "userId": "u", "event": "E", "properties": {{"n": {2**64}, "m": {2**64 - 1}}}}}'
    properties = receive(backend, "track", huge.encode())[0].message["properties"]
    assert (type(properties["n"]), type(properties["m"])) == (float, int) and properties == {"n": 2**64, "m": 2**64 - 1}


def test_gzip_bodies(backend: SegmentBackend) -> None:
    raw = gzip.compress(body({"writeKey": KEY, "userId": "u", "event": "E"}))
    [stored] = receive(backend, "track", raw, "gzip")
    assert stored.accepted
    # RFC 9110 §8.4.1.3: a recipient SHOULD take x-gzip as gzip.
    [stored] = receive(backend, "track", gzip.compress(body({"writeKey": KEY, "userId": "u", "event": "X"})), "x-gzip")
    assert stored.accepted and stored.message["event"] == "X"
    assert rejected(backend, "track", body({"writeKey": KEY}), "gzip") == "invalid_gzip"
    assert rejected(backend, "track", raw[:-10], "gzip") == "invalid_gzip"
    assert rejected(backend, "track", raw, "br") == "unsupported_content_encoding"
    plain = body({"writeKey": KEY, "userId": "u", "event": "E"})
    assert rejected(backend, "track", plain, "deflate") == "unsupported_content_encoding"
    assert receive(backend, "track", plain, "identity")[0].accepted
    # What followed the first member was ignored: a second member's call, or garbage, answered 200.
    second = gzip.compress(body({"writeKey": KEY, "userId": "u2", "event": "Lost"}))
    assert rejected(backend, "track", raw + second, "gzip") == "invalid_gzip"
    assert rejected(backend, "track", raw + b"garbage", "gzip") == "invalid_gzip"


def test_size_limits(backend: SegmentBackend) -> None:
    big_call = body({"writeKey": KEY, "userId": "u", "event": "E", "properties": {"pad": "x" * MAX_CALL_BYTES}})
    assert rejected(backend, "track", big_call) == "payload_too_large"
    assert rejected(backend, "track", gzip.compress(big_call), "gzip") == "payload_too_large"
    items = [{"type": "track", "userId": "u", "event": "E", "properties": {"pad": "x" * 20_000}}] * 26
    assert len(body(items)) > MAX_BATCH_BYTES
    assert rejected(backend, "batch", body({"writeKey": KEY, "batch": items})) == "payload_too_large"



def _padded(payload: dict[str, Any], size: int) -> dict[str, Any]:
    """`payload` with a `pad` property making its compact JSON exactly `size` bytes."""
    padded = {**payload, "properties": {"pad": ""}}
    filler = size - len(json.dumps(padded, separators=(",", ":")).encode())
    return {**payload, "properties": {"pad": "x" * filler}}


def test_a_call_of_exactly_32kb_is_accepted_and_one_byte_more_is_400(backend: SegmentBackend) -> None:
    # analytics-python refuses a message only when it is over MAX_MSG_SIZE (32 << 10).
    exact = _padded({"writeKey": KEY, "userId": "u", "event": "E"}, MAX_CALL_BYTES)
    raw = json.dumps(exact, separators=(",", ":")).encode()
    assert len(raw) == MAX_CALL_BYTES
    assert receive(backend, "track", raw)[0].accepted
    assert rejected(backend, "track", raw + b" ") == "payload_too_large"


def test_a_batch_item_of_exactly_32kb_is_kept_and_one_byte_more_makes_the_batch_400(backend: SegmentBackend) -> None:
    # Docs ("Max request size"): "a limit of 32KB per event in the batch ... Segment's API responds
    # with 400 Bad Request if these limits are exceeded"; analytics-python sends one of exactly 32 << 10.
    exact = _padded({"type": "track", "userId": "u", "event": "Exact"}, MAX_CALL_BYTES)
    over = _padded({"type": "track", "userId": "u", "event": "Over"}, MAX_CALL_BYTES + 1)
    small = {"type": "track", "userId": "u", "event": "Small"}
    raw = json.dumps({"writeKey": KEY, "batch": [small, over, exact]}).encode()
    with pytest.raises(TrackingApiError) as caught:
        receive(backend, "batch", raw)
    assert (caught.value.status, caught.value.code) == (400, "payload_too_large")
    assert caught.value.message == f"batch item 1 is {MAX_CALL_BYTES + 1} bytes; the limit per event is {MAX_CALL_BYTES} bytes"
    assert backend.events(limit=10) == []  # nothing of the refused batch is kept
    assert [(s.event, s.discard_reason) for s in batch(backend, [small, exact])] == [("Small", None), ("Exact", None)]


def test_more_than_2500_events_drops_the_whole_batch(backend: SegmentBackend) -> None:
    stored = batch(backend, [{"type": "track", "userId": "u", "event": "E"}] * 2501)
    assert len(stored) == 2501
    assert {(s.status, s.discard_reason) for s in stored} == {("discarded", "batch_too_many_events")}
    assert backend.profiles.get("u") is None
    assert all(s.accepted for s in batch(backend, [{"type": "track", "userId": "u", "event": "E"}] * 2500))


# -- ingest discards -----------------------------------------------------------------------------


@pytest.mark.parametrize("item,reason", [
    ({"type": "track", "event": "E"}, "no_user_anon_id"),
    ({"type": "track", "event": "E", "userId": "", "anonymousId": None}, "no_user_anon_id"),
    ({"type": "identify", "userId": 42}, "id_not_string"),
    ({"type": "track", "event": "E", "userId": "", "anonymousId": "a"}, "id_not_string"),  # docs: "an empty string"
    ({"type": "identify", "userId": "u", "anonymousId": ""}, "id_not_string"),
    ({"type": "track", "userId": "u"}, "event_not_defined"),
    ({"type": "track", "userId": "u", "event": ""}, "event_not_defined"),
    ({"type": "track", "userId": "u", "event": 7}, "event_not_string"),
    ({"type": "track", "userId": "u", "event": "E", "properties": "x"}, "properties_not_object"),
    ({"type": "identify", "userId": "u", "traits": "x"}, "traits_not_object"),
    ({"type": "group", "userId": "u", "traits": ["x"], "groupId": "g"}, "traits_not_object"),
    ({"type": "group", "userId": "u"}, "id_required"),
    ({"type": "group", "userId": "u", "groupId": ""}, "id_required"),
    ({"type": "page", "userId": "u", "properties": ["x"]}, "properties_not_object"),
    ({"type": "screen", "userId": "u", "name": "Home", "properties": "x"}, "properties_not_object"),
    ({"type": "page", "userId": "u", "name": ""}, "name_not_string"),
    ({"type": "screen", "userId": "u", "category": 3}, "category_not_string"),
    ({"type": "alias", "userId": "u"}, "id_required"),
    ({"type": "alias", "previousId": "a"}, "id_required"),
    ({"type": "alias", "previousId": "a", "userId": 42}, "id_not_string"),
    ({"type": "track", "userId": "u", "event": "E", "context": "x"}, "bad_request"),
    ({"type": "unknown", "userId": "u"}, "invalid_type"),
    ({"userId": "u"}, "invalid_type"),
    ("not an object", "bad_request"),
])
def test_ingest_discards_answer_200_and_are_recorded(backend: SegmentBackend, item: Any, reason: str) -> None:
    [stored] = batch(backend, [item])
    assert (stored.status, stored.discard_reason) == ("discarded", reason)
    assert backend.events(status="discarded")[-1] is stored
    assert backend.profiles.get("u") is None


def test_nulls_sent_by_analytics_python_are_fine(backend: SegmentBackend) -> None:
    stored = one(backend, "page", {"userId": "u", "anonymousId": None, "name": None, "category": None, "properties": {}})
    assert stored.accepted and stored.violations == ()


# -- contracts -----------------------------------------------------------------------------------


def test_violations_are_recorded_in_protocols_shape(backend: SegmentBackend) -> None:
    stored = one(backend, "track", {"userId": "u", "event": "Order Completed", "properties": {"revenue": "12"}})
    expected = {"type": "Invalid Type", "field": "properties.revenue",
                "description": "Invalid type. Expected: number, null, given: string"}
    assert stored.accepted and stored.violations == (expected,)
    assert stored.message["context"]["protocols"]["violations"] == [expected]
    assert stored.message["context"]["protocols"]["sourceId"] == stored.source.id


def test_a_violation_under_a_key_with_a_dot_or_bracket_names_the_key_and_the_type_given(backend: SegmentBackend) -> None:
    # "Customer.io" is a Segment destination name: its key was split at the dot, so the value given
    # was looked up at integrations.Customer and reported as null.
    stored = one(backend, "track", {"userId": "u", "event": "E", "integrations": {"Customer.io": "yes", "a[0]": 1}})
    assert [(v["field"], v["description"]) for v in stored.violations] == [
        ("integrations.Customer.io", "Invalid type. Expected: boolean, object, given: string"),
        ("integrations.a[0]", "Invalid type. Expected: boolean, object, given: integer"),
    ]
    stored = one(backend, "track", {"userId": "u", "event": "E", "channel": None})
    assert stored.violations == ({"type": "Invalid Type", "field": "channel",
                                  "description": "Invalid type. Expected: string, given: null"},)


@pytest.mark.parametrize("strict", [False, True])
def test_in_a_batch_only_the_violating_messages_carry_violations(clock: Clock, strict: bool) -> None:
    # A batch's messages of one type are checked together first; the violating one must still be found.
    backend = make_backend(clock, strict=strict)
    good = {"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": 12}}
    bad = {"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": "12"}}
    stored = batch(backend, [dict(good), bad, dict(good), {"type": "identify", "userId": "u", "traits": {"plan": "pro"}}])
    assert [len(message.violations) for message in stored] == [0, 1, 0, 0]
    assert [message.accepted for message in stored] == [True, not strict, True, True]
    assert "protocols" not in stored[0].message.get("context", {})
    assert stored[1].message["context"]["protocols"]["violations"][0]["field"] == "properties.revenue"


def test_required_violation_names_the_missing_field(backend: SegmentBackend) -> None:
    [stored] = batch(backend, [{"type": "alias", "userId": "u", "previousId": True}])
    assert stored.accepted
    assert stored.violations[0]["field"] == "previousId"


def test_missing_field_is_named_once() -> None:
    # The loader reports a missing required field at its own path ($.previousId), not at its parent.
    from emulator.segment.models import _protocols_violation

    violation = contracts.Violation(
        "$.context.library.name", "required", "'name' is a required property", ("context", "library", "name"))
    assert _protocols_violation(violation, {}) == {
        "type": "Required", "field": "context.library.name", "description": "context.library.name is required"}


def test_strict_rejects_a_violating_call_and_discards_violating_batch_items(clock: Clock) -> None:
    strict = make_backend(clock, strict=True)
    raw = body({"writeKey": KEY, "userId": "u", "event": "E", "properties": {"revenue": "12"}})
    assert rejected(strict, "track", raw) == "schema_violation"
    assert strict.events()[-1].discard_reason == "schema_violation"
    stored = batch(strict, [{"type": "track", "userId": "u", "event": "E", "properties": {"revenue": "1"}},
                            {"type": "track", "userId": "u", "event": "E", "properties": {"revenue": 1}}])
    assert [s.discard_reason for s in stored] == ["schema_violation", None]


def test_strict_keeps_engages_own_identify_whose_trait_a_reserved_one_is_named_after(clock: Clock) -> None:
    # An audience keyed "website" (a reserved identify trait, a string) sends website: true. Discarded
    # by --strict, it reached no destination, and Engage counted it sent and never sent it again.
    strict = make_backend(clock, strict=True)
    engage = Source.named("Engage", ENGAGE_WRITE_KEY_PREFIX + "spa_1")
    stored = strict.ingest({"type": "identify", "userId": "u", "traits": {"website": True, "email": "u@example.com"}}, engage)
    assert stored.accepted and [v["field"] for v in stored.violations] == ["traits.website"]
    assert rejected(strict, "identify", body({"writeKey": KEY, "userId": "u", "traits": {"website": True}})) == "schema_violation"


def test_validation_off_records_no_violations_and_strict_keeps_the_message(clock: Clock) -> None:
    config = BundleConfig(write_key=KEY, strict=True, validate=False)
    unchecked = backend_of(config, clock)
    [stored] = batch(unchecked, [{"type": "track", "userId": "u", "event": "E", "properties": {"revenue": "1"}}])
    assert stored.accepted and stored.violations == ()
    assert "protocols" not in stored.message.get("context", {})


def test_deep_nesting_never_raises(backend: SegmentBackend) -> None:
    nested: Any = "leaf"
    for _ in range(MAX_DEPTH - 2):  # the message and its properties are the first two levels
        nested = {"n": nested}
    stored = one(backend, "track", {"userId": "u", "event": "E", "properties": {"deep": nested}})
    assert stored.accepted
    too_deep = body({"writeKey": KEY, "userId": "u", "event": "E", "properties": {"deep": {"n": nested}}})
    assert rejected(backend, "track", too_deep) == "invalid_json"


# -- dedupe ----------------------------------------------------------------------------------------


def test_ingest_of_a_message_too_deep_for_jsonschema_records_it_instead_of_raising(backend: SegmentBackend) -> None:
    # ingest takes messages built in Python (Engage's), which no body depth limit bounds.
    nested: Any = 1
    for _ in range(5000):
        nested = {"n": nested}
    stored = backend.ingest({"type": "track", "userId": "u", "event": "E", "context": {"library": {"name": nested}}},
                            backend.sources[0])
    assert stored.accepted
    assert stored.violations == (
        {"type": "Invalid Value", "field": "", "description": "the message is nested too deeply to validate"},)


def test_duplicate_message_id_within_24h_is_dropped_and_accepted_after(backend: SegmentBackend, clock: Clock) -> None:
    call = {"userId": "u", "event": "E", "messageId": "m-1"}
    assert one(backend, "track", call).accepted
    clock.advance(timedelta(hours=23))
    duplicate = one(backend, "track", call)
    assert (duplicate.status, duplicate.discard_reason) == ("discarded", "duplicate_message_id")
    clock.advance(timedelta(hours=2))  # 25 h after the first
    assert one(backend, "track", call).accepted
    # Docs: dedupe is "not scoped to a specific source": another source's id is a duplicate too.
    from_other_source = one(backend, "track", {**call, "writeKey": OTHER_KEY})
    assert (from_other_source.status, from_other_source.discard_reason) == ("discarded", "duplicate_message_id")


def test_the_dedupe_window_holds_24_hours_of_ids_and_sweeps_out_older_ones() -> None:
    window = DedupeWindow()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert window.admit("a", start) and window.admit("b", start + timedelta(minutes=30))
    assert not window.admit("a", start + timedelta(hours=23, minutes=59))
    # Exactly 24 h old is out of the window, as the sweep has it: the answer must not depend on
    # whether a sweep ran in between.
    edge = DedupeWindow()
    assert edge.admit("e", start + timedelta(minutes=30))
    assert edge.admit("s", start + timedelta(hours=23, minutes=50))  # swept here; the next sweep is an hour on
    assert edge.admit("e", start + timedelta(hours=24, minutes=30))  # not swept out, and still expired
    assert window.admit("a", start + timedelta(hours=24, seconds=1))  # expired: accepted again, from now
    assert len(window) == 2
    assert window.admit("b", start + timedelta(hours=24, minutes=45))  # expired, though not yet swept out
    assert not window.admit("a", start + timedelta(hours=48))  # within 24 h of its second acceptance
    window.forget_expired(start + timedelta(hours=72))
    assert len(window) == 0


def test_the_dedupe_window_sweeps_expired_ids_out_hourly_and_clears_set_back_records() -> None:
    # Memory, not answers: an id past 24 h is no duplicate either way, but unswept ids pile up.
    window = DedupeWindow()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert window.admit("a", start) and window.admit("b", start + timedelta(hours=1))
    window.forget_expired(start + timedelta(hours=24, minutes=30))
    assert len(window) == 1  # "a" is swept out
    window.forget_expired(start + timedelta(hours=25, minutes=40))
    assert len(window) == 0  # and "b" an hour later: sweeps are hourly, not daily
    assert window.admit("c", start + timedelta(hours=30))
    assert window.admit("c", start - timedelta(days=2))  # set back two days: "c" is ahead by more than 24 h
    window.forget_expired(start + timedelta(days=5))
    assert (len(window), window._earlier) == (0, {})


def test_the_dedupe_window_sweeps_again_when_the_clock_is_set_back() -> None:
    window = DedupeWindow()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert window.admit("late", start + timedelta(days=31))
    assert window.admit("a", start)  # set back a month: swept, "late" is 31 days ahead and kept
    assert len(window) == 2
    window.forget_expired(start + timedelta(days=2))  # the next sweep is due an hour after the set-back one
    assert len(window) == 1  # "a" is gone; "late" is still ahead of the clock


def test_an_id_accepted_later_than_a_clock_set_back_to_is_a_duplicate_only_within_24_hours() -> None:
    window = DedupeWindow()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert window.admit("late", start + timedelta(days=31)) and window.admit("near", start + timedelta(hours=23))
    # The clock set back: "near" was accepted 23 h after now, "late" 31 days after (and exactly 24 h is out).
    assert not window.admit("near", start)
    assert window.admit("late", start)
    assert not window.admit("late", start + timedelta(hours=1))  # within 24 h of its acceptance at `start`
    edge = DedupeWindow()
    assert edge.admit("e", start + timedelta(hours=24))
    assert edge.admit("e", start)


def test_an_id_accepted_on_both_sides_of_a_set_back_is_a_duplicate_near_either_acceptance() -> None:
    window = DedupeWindow()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert window.admit("a", start + timedelta(days=9))
    assert window.admit("a", start + timedelta(days=4))  # set back five days: accepted again
    assert not window.admit("a", start + timedelta(days=4, hours=6))  # 6 h after the second acceptance
    assert not window.admit("a", start + timedelta(days=9, hours=12))  # 12 h after the first one
    assert window.admit("a", start + timedelta(days=11))  # more than 24 h after both
    window.forget_expired(start + timedelta(days=13))
    assert len(window) == 0


def test_the_events_filters_answer_as_a_scan_of_the_feed_would(backend: SegmentBackend) -> None:
    # Accepted calls of a user are first looked for in the profile's history; the answer must be
    # the feed's, whatever merged, was an alias or was discarded.
    batch(backend, [
        {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}},
        {"type": "track", "userId": "u1", "event": "Order Completed"},
        {"type": "track", "anonymousId": "anon", "event": "Viewed"},
        {"type": "identify", "userId": "u2", "anonymousId": "anon"},
        {"type": "alias", "previousId": "u2", "userId": "u3"},
        {"type": "page", "userId": "u3", "name": "Home"},
        {"type": "track", "userId": "u4"},  # discarded: no event
        {"type": "track", "userId": "", "anonymousId": "x", "event": "Empty id"},
    ])
    one(backend, "track", {"userId": "u5", "event": "Order Completed", "writeKey": "unknown-key"})  # discarded
    feed = list(backend.messages)
    for user_id in ("u1", "u2", "u3", "u4", "u5", "anon", "", "nobody"):
        for type_ in (None, "identify", "track", "page", "alias"):
            for event in (None, "Order Completed", "Viewed", "Empty id"):
                for status in (None, "accepted", "discarded"):
                    expected = [
                        stored for stored in feed
                        if stored.message.get("userId") == user_id and (type_ is None or stored.type == type_)
                        and (event is None or stored.event == event) and (status is None or stored.status == status)
                    ]
                    assert backend.events(type=type_, user_id=user_id, event=event, status=status) == expected, (
                        user_id, type_, event, status)


def test_discarded_messages_do_not_reserve_their_message_id(backend: SegmentBackend) -> None:
    assert not one(backend, "track", {"userId": "u", "messageId": "m-2"}).accepted  # no event name
    assert one(backend, "track", {"userId": "u", "event": "E", "messageId": "m-2"}).accepted


# -- listeners, queries, reset ---------------------------------------------------------------------


def test_listeners_see_accepted_messages_only_and_one_failure_does_not_stop_others(backend: SegmentBackend) -> None:
    seen: list[str] = []

    def broken(stored: StoredMessage) -> None:
        raise RuntimeError("listener bug")

    backend.add_listener(broken)
    backend.add_listener(lambda stored: seen.append(stored.message_id))
    stored = batch(backend, [{"type": "track", "userId": "u", "event": "E"}, {"type": "track", "event": "E"}])
    assert seen == [stored[0].message_id]


def test_event_filters_and_limit(backend: SegmentBackend) -> None:
    batch(backend, [{"type": "track", "userId": f"u{i % 2}", "event": f"E{i % 3}"} for i in range(10)])
    one(backend, "identify", {"userId": "u0"})
    assert len(backend.events(limit=4)) == 4
    assert backend.events(limit=1)[0].type == "identify"
    assert [s.event for s in backend.events(type="track", user_id="u0", event="E0")] == ["E0", "E0"]
    assert backend.events(limit=0) == []
    wanted = backend.events(type="track")[3]
    assert backend.events(message_id=wanted.message_id) == [wanted]
    newest_last = backend.events(type="track")
    assert [s.message_id for s in newest_last] == [s.message_id for s in list(backend.messages)[:10]]


def test_reset_forgets_messages_profiles_and_message_ids_but_keeps_listeners(backend: SegmentBackend) -> None:
    seen: list[StoredMessage] = []
    backend.add_listener(seen.append)
    one(backend, "track", {"userId": "u", "event": "E", "messageId": "m"})
    backend.reset()
    assert backend.events() == [] and backend.profiles.get("u") is None
    assert one(backend, "track", {"userId": "u", "event": "E", "messageId": "m"}).accepted
    assert len(seen) == 2


def test_context_ip_is_the_request_address_on_client_side_calls_and_direct_ones(backend: SegmentBackend) -> None:
    # spec/common.md: the ip is "filled in by our servers when it receives a message for client side
    # events only"; http-api: context.direct true collects the request's ip.
    def stored(endpoint: str, payload: dict[str, Any]) -> list[StoredMessage]:
        return receive(backend, endpoint, body({"writeKey": KEY, **payload}), client_ip="203.0.113.9")

    [page] = stored("p", {"anonymousId": "a", "context": {"library": {"name": "analytics.js"}}})
    assert page.message["context"] == {"library": {"name": "analytics.js"}, "ip": "203.0.113.9"}
    [bare] = stored("t", {"anonymousId": "a", "event": "E"})
    assert bare.message["context"] == {"ip": "203.0.113.9"}
    [given] = stored("i", {"anonymousId": "a", "context": {"ip": "198.51.100.1"}})
    assert given.message["context"] == {"ip": "198.51.100.1"}
    [server] = stored("track", {"userId": "u", "event": "E", "context": {"library": {"name": "analytics-python"}}})
    assert "ip" not in server.message["context"]
    [direct] = stored("track", {"userId": "u", "event": "E", "context": {"direct": True}})
    assert direct.message["context"] == {"direct": True, "ip": "203.0.113.9"}
    shared, own, kept, also_shared = stored("b", {"context": {"locale": "fr"}, "batch": [
        {"type": "track", "userId": "u", "event": "E"},
        {"type": "track", "userId": "u", "event": "E", "context": {"page": {"path": "/"}}},
        {"type": "track", "userId": "u", "event": "E", "context": {"ip": "198.51.100.2"}},
        {"type": "track", "userId": "u", "event": "E"},
    ]})
    assert shared.message["context"] == {"locale": "fr", "ip": "203.0.113.9"}
    assert also_shared.message["context"] is shared.message["context"]  # one object for the batch's items
    assert own.message["context"] == {"locale": "fr", "ip": "203.0.113.9", "page": {"path": "/"}}
    assert kept.message["context"] == {"locale": "fr", "ip": "198.51.100.2"}
    [no_address] = receive(backend, "t", body({"writeKey": KEY, "userId": "u", "event": "E"}))
    assert "context" not in no_address.message


# -- profiles ------------------------------------------------------------------------------------


def test_identify_traits_merge_per_user(backend: SegmentBackend) -> None:
    one(backend, "identify", {"userId": "u", "traits": {"email": "a@example.com", "plan": "free"}})
    one(backend, "identify", {"userId": "u", "traits": {"plan": "pro", "age": 30}})
    profile = backend.profiles.get("u")
    assert profile.traits == {"email": "a@example.com", "plan": "pro", "age": 30}
    assert [e["type"] for e in profile.to_json()["events"]] == ["identify", "identify"]


def test_anonymous_history_joins_the_user_when_both_ids_arrive(backend: SegmentBackend) -> None:
    one(backend, "identify", {"anonymousId": "a1", "traits": {"email": "a@example.com"}})
    one(backend, "track", {"anonymousId": "a1", "event": "Viewed"})
    one(backend, "identify", {"userId": "u", "traits": {"name": "Ann"}})
    one(backend, "track", {"userId": "u", "anonymousId": "a1", "event": "Bought"})
    profile = backend.profiles.get("u")
    assert backend.profiles.get("a1") is profile
    assert profile.to_json()["anonymousIds"] == ["a1"]
    assert profile.traits == {"email": "a@example.com", "name": "Ann"}
    assert [e.event for e in profile.events if e.type == "track"] == ["Viewed", "Bought"]
    assert len(backend.profiles) == 1


def test_a_merge_keeps_the_surviving_profiles_traits_over_the_absorbed_ones(backend: SegmentBackend) -> None:
    one(backend, "identify", {"anonymousId": "a1", "traits": {"plan": "free", "email": "a@example.com"}})
    one(backend, "identify", {"userId": "u", "traits": {"plan": "pro"}})
    one(backend, "track", {"userId": "u", "anonymousId": "a1", "event": "E"})
    assert backend.profiles.get("u").traits == {"plan": "pro", "email": "a@example.com"}


def test_a_profiles_emails_are_those_its_identify_and_track_calls_carried_up_to_five(backend: SegmentBackend) -> None:
    # Unify's default external ids: email from "traits.email, context.traits.email or
    # properties.email" in track or identify calls; 5 values of an identifier type at most (a guess:
    # later ones are not added).
    one(backend, "identify", {"userId": "u", "traits": {"email": "a@example.com"}})
    one(backend, "track", {"userId": "u", "event": "E", "context": {"traits": {"email": "b@example.com"}}})
    one(backend, "identify", {"userId": "u", "traits": {"email": "a@example.com", "plan": "pro"}})
    one(backend, "page", {"userId": "u", "context": {"traits": {"email": "page@example.com"}}, "properties": {"email": "p@example.com"}})
    one(backend, "identify", {"userId": "u", "traits": {"email": None}, "context": {"traits": {"email": 7}}})
    one(backend, "track", {"userId": "u", "event": "E", "properties": {"email": "c@example.com"}})
    profile = backend.profiles.get("u")
    assert profile.emails == ("a@example.com", "b@example.com", "c@example.com")
    assert profile.traits["email"] is None  # the trait changes; the external id stays
    for number in range(5):
        one(backend, "identify", {"userId": "u", "traits": {"email": f"more{number}@example.com"}})
    assert profile.to_json()["emails"] == ["a@example.com", "b@example.com", "c@example.com",
                                           "more0@example.com", "more1@example.com"]


def test_a_merged_profile_has_both_profiles_emails(backend: SegmentBackend) -> None:
    one(backend, "identify", {"anonymousId": "a1", "traits": {"email": "anon@example.com"}})
    one(backend, "identify", {"userId": "u", "traits": {"email": "u@example.com"}})
    one(backend, "track", {"userId": "u", "anonymousId": "a1", "event": "E"})
    assert backend.profiles.get("u").emails == ("u@example.com", "anon@example.com")


def test_an_engage_identify_writes_its_key_not_the_email_it_is_addressed_to(backend: SegmentBackend) -> None:
    # Engage sends one identify per email of a profile: each address in turn became the profile's
    # email trait, and an email trait set to null came back (re-entering an audience of "has an email").
    one(backend, "identify", {"userId": "u", "traits": {"email": "a@example.com"}})
    one(backend, "identify", {"userId": "u", "traits": {"email": None}})
    engage = Source.named("Engage", ENGAGE_WRITE_KEY_PREFIX + "spa_test")
    backend.ingest({"type": "identify", "userId": "u", "traits": {"vip": True, "email": "a@example.com"},
                    "context": {"personas": {"computation_key": "vip"}}}, engage)
    assert backend.profiles.get("u").traits == {"email": None, "vip": True}
    # Told apart by its source: a client's identify that carries context.personas keeps its email.
    one(backend, "identify", {"userId": "w", "traits": {"email": "w@example.com"}, "context": {"personas": {}}})
    assert backend.profiles.get("w").traits == {"email": "w@example.com"}


def test_a_window_holds_an_event_stamped_exactly_at_its_start(backend: SegmentBackend) -> None:
    one(backend, "track", {"userId": "u", "event": "E", "timestamp": "2025-02-01T12:00:00.000Z"})
    start = datetime(2025, 2, 1, 12, tzinfo=timezone.utc)
    profile = backend.profiles.get("u")
    assert [event.event for event in profile.tracked("E", start)] == ["E"]
    assert profile.tracked("E", start + timedelta(milliseconds=1)) == []


def test_the_events_feed_keeps_the_newest_and_counts_what_it_dropped(clock: Clock) -> None:
    backend = backend_of(BundleConfig(write_key=KEY, events_capacity=3), clock)
    for index in range(5):
        one(backend, "track", {"userId": "u", "event": f"E{index}"})
    assert [stored.event for stored in backend.events(limit=10)] == ["E2", "E3", "E4"] and backend.dropped == 2
    assert len(backend.profiles.get("u").events) == 5  # profiles see every message



def test_a_restored_feed_keeps_the_newest_and_counts_what_it_dropped(clock: Clock) -> None:
    config = BundleConfig(write_key=KEY, events_capacity=2)
    first = backend_of(config, clock)
    stored = [one(first, "track", {"userId": "u", "event": f"E{index}"}) for index in range(3)]
    restored = backend_of(config, clock)
    restored.restore(stored)  # the database keeps every message, more than the feed holds
    assert [s.event for s in restored.events()] == ["E1", "E2"] and restored.dropped == 1
    assert len(restored.profiles.get("u").events) == 3

def test_alias_links_previous_id(backend: SegmentBackend) -> None:
    one(backend, "track", {"anonymousId": "old", "event": "Viewed"})
    one(backend, "alias", {"previousId": "old", "userId": "u"})
    one(backend, "alias", {"previousId": "never-seen", "userId": "u"})
    profile = backend.profiles.get("u")
    assert backend.profiles.get("old") is profile and backend.profiles.get("never-seen") is profile
    assert [e.event for e in profile.tracked("Viewed", datetime(2000, 1, 1, tzinfo=timezone.utc))] == ["Viewed"]


def test_a_profile_merged_twice_takes_every_user_id_it_absorbed_along(backend: SegmentBackend) -> None:
    one(backend, "track", {"userId": "u1", "event": "E"})
    for user_id in ("u2", "u3"):
        one(backend, "identify", {"userId": user_id})
    one(backend, "alias", {"previousId": "u1", "userId": "u2"})
    one(backend, "alias", {"previousId": "u2", "userId": "u3"})
    one(backend, "track", {"userId": "u1", "event": "E"})
    profile = backend.profiles.get("u3")
    assert backend.profiles.get("u1") is profile and backend.profiles.get("u2") is profile
    assert len(profile.tracked("E")) == 2 and len(backend.profiles) == 1


def test_a_restored_message_with_unhashable_names_still_joins_its_profile(backend: SegmentBackend) -> None:
    # Ingest discards such messages; only a hand-edited snapshot brings them back as accepted.
    message = {"type": "track", "userId": "u", "event": {"odd": 1}, "messageId": "m-1",
               "receivedAt": "2025-03-01T00:00:00.000Z", "timestamp": "2025-03-01T00:00:00.000Z"}
    backend.restore([StoredMessage(message, backend.sources[0])])
    [event] = backend.profiles.get("u").events
    assert event.event == {"odd": 1} and event.type == "track"


def test_an_identify_with_non_object_properties_keeps_its_profile_readable(backend: SegmentBackend) -> None:
    # Ingest checks `properties` on track/page/screen only; an identify's list or string made
    # GET /_emulator/profiles answer 500 (dict() of it in ProfileEvent.to_json).
    for user_id, properties in (("u1", [1, 2]), ("u2", "ab"), ("u3", {"a": 1})):
        assert one(backend, "identify", {"userId": user_id, "properties": properties}).accepted
    assert [event["properties"] for event in backend.profiles.get("u1").to_json()["events"]] == [{}]
    assert [event["properties"] for event in backend.profiles.get("u2").to_json()["events"]] == [{}]
    assert [event["properties"] for event in backend.profiles.get("u3").to_json()["events"]] == [{"a": 1}]


def test_an_anonymous_id_that_moved_to_another_user_stays_with_it_through_later_merges(backend: SegmentBackend) -> None:
    one(backend, "identify", {"userId": "u1", "anonymousId": "a1"})
    one(backend, "identify", {"userId": "u2", "anonymousId": "a1"})  # a1 moves to u2
    assert backend.profiles.get("a1") is backend.profiles.get("u2")
    assert backend.profiles.get("u1").to_json()["anonymousIds"] == []
    one(backend, "alias", {"previousId": "u1", "userId": "u3"})  # u1 merges into u3: a1 is not u1's
    one(backend, "track", {"anonymousId": "a1", "event": "E"})
    assert backend.profiles.get("a1") is backend.profiles.get("u2")
    assert [event.event for event in backend.profiles.get("u2").events] == [None, "E"]
    assert backend.profiles.get("u3").to_json()["anonymousIds"] == []



def test_an_anonymous_id_of_one_known_user_moves_to_another_without_merging_them(backend: SegmentBackend) -> None:
    one(backend, "identify", {"userId": "u1", "anonymousId": "a1", "traits": {"email": "one@example.com"}})
    one(backend, "identify", {"userId": "u2", "traits": {"email": "two@example.com"}})
    one(backend, "track", {"userId": "u2", "anonymousId": "a1", "event": "Shared Device"})
    first, second = backend.profiles.get("u1"), backend.profiles.get("u2")
    assert first is not second and backend.profiles.get("a1") is second
    assert first.traits == {"email": "one@example.com"} and second.traits == {"email": "two@example.com"}

def test_tracked_events_are_time_ordered_for_window_counts(backend: SegmentBackend, clock: Clock) -> None:
    now = clock.now().replace(microsecond=0)
    for days_ago in (40, 2, 20, 31, 1):
        stamp = (now - timedelta(days=days_ago)).isoformat()
        one(backend, "track", {"userId": "u", "event": "Order Completed", "timestamp": stamp})
    one(backend, "track", {"userId": "u", "event": "Other"})
    profile = backend.profiles.get("u")
    since = now - timedelta(days=30)
    assert [e.timestamp for e in profile.tracked("Order Completed", since)] == sorted(
        now - timedelta(days=d) for d in (20, 2, 1)
    )
    assert len(profile.tracked("Order Completed")) == 5
    assert profile.tracked("Never", since) == [] and profile.tracked("Other", since)[0].event == "Other"
    timestamps = [e.timestamp for e in profile.events]
    assert timestamps == sorted(timestamps)


def test_profile_store_offers_the_read_api_engage_computes_over(backend: SegmentBackend) -> None:
    one(backend, "identify", {"userId": "u", "traits": {"email": "a@example.com"}})
    one(backend, "track", {"userId": "u", "event": "Order Completed", "properties": {"revenue": 5}})
    one(backend, "track", {"anonymousId": "visitor", "event": "Order Completed"})
    store = backend.profiles
    assert store.user_ids() == ["u"]
    assert store.traits("u") == {"email": "a@example.com"} and store.traits("nobody") == {}
    [event] = store.get("u").tracked("Order Completed")
    assert event.properties == {"revenue": 5} and event.timestamp.tzinfo is not None
    assert store.get("u").tracked("Never") == [] and store.get("nobody") is None


# -- the compiled contract check agrees with jsonschema -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["", "2025-01-01T00:00:00Z", "2025-1-1", "2025-01-01",
                                               "a@example.com", "personas_1", "spa_1", "mailjet", "track"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
MUTABLE_PATHS = [
    ("type",), ("userId",), ("anonymousId",), ("event",), ("name",), ("category",), ("groupId",), ("previousId",),
    ("messageId",), ("timestamp",), ("sentAt",), ("properties",), ("properties", "revenue"), ("properties", "email_id"),
    ("traits",), ("traits", "email"), ("traits", "age"), ("traits", "birthday"), ("traits", "address"),
    ("context",), ("context", "library"), ("context", "screen"), ("context", "personas"),
    ("context", "personas", "space_id"), ("context", "traits", "email"), ("context", "integration", "name"),
    ("context", "protocols", "violations"), ("integrations",), ("integrations", "All"), ("batch",),
]
BASE_MESSAGES = [
    {"type": "track", "userId": "u", "event": "Email Opened", "messageId": "m", "timestamp": "2025-01-01T00:00:00Z",
     "properties": {"email_id": "1", "email_subject": "s", "campaign_id": "c", "campaign_name": "n"},
     "context": {"traits": {"email": "a@example.com"}, "integration": {"name": "mailjet"}}},
    {"type": "identify", "userId": "u", "messageId": "personas_1", "integrations": {"All": False, "Mailjet": True},
     "traits": {"vip": True, "email": "a@example.com"},
     "context": {"personas": {"computation_class": "audience", "computation_id": "aud_1", "computation_key": "vip",
                              "namespace": "spa_1", "space_id": "spa_1"}}},
    {"type": "page", "anonymousId": "a", "name": "Home", "properties": {"url": "https://x"}},
    {"type": "screen", "userId": "u", "name": "Home", "sentAt": "2025-01-01T00:00:00.123+00:00"},
    {"type": "alias", "previousId": "a", "userId": "u"},
    {"type": "group", "userId": "u", "groupId": "g", "traits": {"name": "Initech"}},
    {"batch": [{"type": "screen", "userId": "u", "name": "Home"}], "writeKey": "k"},
]


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(BASE_MESSAGES), mutations=st.lists(st.tuples(st.sampled_from(MUTABLE_PATHS), json_values), max_size=3))
def test_compiled_contract_check_agrees_with_jsonschema(base: dict[str, Any], mutations: list[Any]) -> None:
    message = copy.deepcopy(base)
    for path, value in mutations:
        target = message
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = value
    for name in contracts.names():
        if name.startswith("segment."):
            expected = contracts.is_valid(name, message)
            assert fast_validation.is_valid(name, message) == expected, name
            assert fast_validation.all_valid(name, [base, message]) == (expected and contracts.is_valid(name, base)), name


DATE_TIME_EDGES = [
    f"{year}-{month}-{day}T12:00:00Z"
    for year in ("0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "2100", "9999")
    for month in ("00", "01", "02", "04", "09", "11", "12", "13")
    for day in ("00", "01", "28", "29", "30", "31", "32")
] + [
    f"2024-02-29{separator}{hour}:{minute}:{second}{fraction}{zone}{tail}"
    for separator in ("T", "t", " ")
    for hour, minute, second in (("00", "00", "00"), ("23", "59", "59"), ("24", "00", "00"), ("12", "60", "00"), ("12", "00", "60"), ("1", "2", "3"))
    for fraction in ("", ".", ".5", ".123456789")
    for zone in ("Z", "z", "+23:59", "-00:00", "+24:00", "+0100", "+01", "")
    for tail in ("", "\n", "\n\n", " ")
]


def test_compiled_date_time_check_agrees_with_jsonschema_on_edges() -> None:
    # The compiled check reads date-time as a pattern (fast_validation.DATE_TIME_PATTERN).
    for text in DATE_TIME_EDGES:
        message = {"type": "track", "userId": "u", "event": "E", "timestamp": text}
        assert fast_validation.is_valid("segment.track", message) == contracts.is_valid("segment.track", message), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-:.+TtZz \n", max_size=30))
def test_compiled_date_time_check_agrees_with_jsonschema(text: str) -> None:
    message = {"type": "track", "userId": "u", "event": "E", "timestamp": text}
    assert fast_validation.is_valid("segment.track", message) == contracts.is_valid("segment.track", message), text
