"""The contracts loader: names, unknown contracts, cross-file `$ref`s, schema validity, violations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator

import contracts
from contracts import SCHEMA_DIR, UnknownContract, Violation, is_valid, names, schema, validate

SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.json"))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


SHARED_DEFINITIONS = {"segment.common", "mailjet.common"}


def test_names_lists_the_contracts_not_the_shared_definitions() -> None:
    every_file = sorted(path.name.removesuffix(".json") for path in SCHEMA_FILES)
    assert contracts.schema_names() == every_file
    assert names() == [name for name in every_file if name not in SHARED_DEFINITIONS]
    assert {"segment.identify", "segment.batch", "mailjet.managecontact.request"} <= set(names())


@pytest.mark.parametrize("name", sorted(SHARED_DEFINITIONS))
def test_shared_definitions_are_refused_as_a_contract_but_still_reachable(name: str) -> None:
    for call in (validate, is_valid):
        with pytest.raises(UnknownContract) as caught:
            call(name, "garbage")
        assert str(caught.value).startswith(f"{name!r} holds definitions the contracts share, not a contract; known: ")
    assert schema(name)["$defs"]  # a `$ref` into it, and a registry built from schema_names(), still find it


def test_unknown_contract_is_a_readable_error() -> None:
    with pytest.raises(UnknownContract) as caught:
        validate("segment.purchase", {})
    message = str(caught.value)
    assert message.startswith("unknown contract 'segment.purchase'; known: ")
    assert "segment.track" in message
    assert isinstance(caught.value, KeyError)


@pytest.mark.parametrize("call", [schema, lambda name: is_valid(name, {}), lambda name: validate(name, {})])
def test_every_entry_point_raises_unknown_contract(call: Any) -> None:
    with pytest.raises(UnknownContract):
        call("nope")


def test_a_ref_across_files_resolves() -> None:
    """segment.track takes messageId from segment.common.json#/$defs/fields."""
    assert '"segment.common.json#/$defs/fields"' in (SCHEMA_DIR / "segment.track.json").read_text()
    [violation] = validate("segment.track", {"userId": "u", "event": "e", "messageId": "m" * 101})
    assert (violation.path, violation.rule) == ("$.messageId", "maxLength")


def test_date_time_format_is_checked() -> None:
    """Guards the rfc3339-validator dependency: without it jsonschema silently skips date-time."""
    assert not is_valid("segment.track", {"userId": "u", "event": "e", "timestamp": "2015-2-02T00:30:08.276Z"})
    assert is_valid("segment.track", {"userId": "u", "event": "e", "timestamp": "2015-02-02T00:30:08.276Z"})


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_schema_is_a_valid_2020_12_schema(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == path.name
    assert document.get("title") and document.get("description")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_ref_resolves(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    resolver = contracts._registry().resolver(base_uri=path.name)
    for ref in _refs(document):
        assert resolver.lookup(ref).contents is not None, ref


@pytest.mark.parametrize("name", names())
def test_every_contract_compiles_and_validates(name: str) -> None:
    """Compiling resolves every `$ref` reachable from the root; validating an object exercises them."""
    validate(name, {})


def test_valid_payload_has_no_violations() -> None:
    payload = {"userId": "u", "event": "Signed Up", "properties": {"plan": "pro"}}
    assert validate("segment.track", payload) == []
    assert is_valid("segment.track", payload)


def test_violation_fields_and_str() -> None:
    [violation] = validate("segment.identify", {"userId": "u", "traits": {"age": "26"}})
    assert violation == Violation("$.traits.age", "type", "'26' is not of type 'number', 'null'")
    assert str(violation) == "$.traits.age: '26' is not of type 'number', 'null' (type)"
    assert not is_valid("segment.identify", {"userId": "u", "traits": {"age": "26"}})


def test_a_violation_keeps_its_path_as_keys_and_indexes() -> None:
    # The text path cannot say where a key holding "." or "[" ends; `parts` can.
    [violation] = validate("segment.track", {"userId": "u", "event": "e", "integrations": {"Customer.io": 1}})
    assert (violation.path, violation.parts) == ("$.integrations.Customer.io", ("integrations", "Customer.io"))
    [violation] = validate("segment.batch", {"batch": [{"type": "track", "userId": "u"}]})
    assert violation.parts == ("batch", 0, "event")


def test_missing_required_property_is_reported_at_its_own_path() -> None:
    violations = validate("segment.alias", {})
    assert [(v.path, v.rule) for v in violations] == [("$.previousId", "required"), ("$.userId", "required")]


def test_violations_are_in_path_order_with_numeric_indexes() -> None:
    good, no_event = {"type": "track", "userId": "u", "event": "e"}, {"type": "track", "userId": "u"}
    batch = [no_event if index in (2, 10) else good for index in range(11)]
    assert [v.path for v in validate("segment.batch", {"batch": batch})] == ["$.batch[2].event", "$.batch[10].event"]


def test_a_rule_met_twice_through_shared_definitions_is_reported_once() -> None:
    """segment.engage_audience_identify requires type identify itself and through segment.identify."""
    personas = {
        "computation_class": "audience",
        "computation_id": "aud_1",
        "computation_key": "a",
        "namespace": "spa_1",
        "space_id": "spa_1",
    }
    payload = {"type": "track", "userId": "u", "traits": {"a": True}, "context": {"personas": personas}}
    violations = validate("segment.engage_audience_identify", payload)
    assert [(v.path, v.rule) for v in violations] == [("$.type", "const")]


def test_combinator_message_is_the_schema_description_not_the_payload() -> None:
    [violation] = validate("segment.track", {"event": "e", "properties": {"secret": "x" * 50}})
    assert violation.rule == "anyOf"
    assert "secret" not in violation.message
    assert violation.message.startswith("A userId or an anonymousId is required")


def test_long_messages_are_capped() -> None:
    [violation] = validate("segment.track", {"userId": "u", "event": "e", "properties": list(range(1000))})
    assert len(violation.message) == contracts.MAX_MESSAGE
    assert violation.message.endswith("…")
