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
    assert violation == Violation("$.traits.age", "type", '"26" is not of type number or null')
    assert str(violation) == '$.traits.age: "26" is not of type number or null (type)'
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
    assert violation.message.startswith("[0, 1, 2, ") and violation.message.endswith("… is not of type object")
    assert len(violation.message) < 100
    unknown_keys = {f"key{index}": index for index in range(100)}
    [violation] = validate("mailjet.managecontact.request", {"Email": "a@b.co", "Action": "addforce", **unknown_keys})
    assert len(violation.message) == contracts.MAX_MESSAGE
    assert violation.message.endswith("…")


def _reported_combinators(node: Any, where: str = "") -> Iterator[tuple[str, dict]]:
    """Every anyOf / oneOf / not whose failure jsonschema reports as a violation: not those under
    `if` (an `if` only chooses a branch) nor inside another `not` (its failure is a success)."""
    if isinstance(node, dict):
        if any(key in node for key in ("anyOf", "oneOf", "not")):
            yield where or "/", node
        for key, value in node.items():
            if key not in ("if", "not"):
                yield from _reported_combinators(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _reported_combinators(item, f"{where}/{index}")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_reported_combinator_says_what_was_expected(path: Path) -> None:
    """A failed anyOf/oneOf/not is reported with its schema's description (see contracts._message);
    without one the message is jsonschema's "<the whole value> is not valid under any of the given
    schemas", which says neither what was wrong nor what was expected."""
    document = json.loads(path.read_text(encoding="utf-8"))
    bare = [where for where, node in _reported_combinators(document) if "description" not in node]
    assert bare == []


@pytest.mark.parametrize(
    ("name", "payload", "path", "expected"),
    [
        # A reserved Date trait (identify.md: birthday, createdAt "Date"): the message says Date, not the value.
        ("segment.identify", {"userId": "u", "traits": {"birthday": "10/12/1815"}}, "$.traits.birthday", "date"),
        ("segment.identify", {"userId": "u", "traits": {"createdAt": {"secret": "x"}}}, "$.traits.createdAt", "date"),
        ("mailjet.send.response", {"Messages": [{"Status": "success", "To": [{"Email": "a@b.co", "MessageID": "1"}], "Cc": [], "Bcc": []}]},
         "$.Messages[0]", "MessageID"),
        ("mailjet.error", {"ErrorInfo": "", "ErrorMessage": "x", "StatusCode": 200}, "$.StatusCode", "400"),
    ],
)
def test_a_failed_combinator_names_what_was_expected(name: str, payload: Any, path: str, expected: str) -> None:
    [violation] = [v for v in validate(name, payload) if v.path == path]
    assert expected in violation.message
    assert "is not valid under any of the given schemas" not in violation.message
    assert "secret" not in violation.message


def test_a_const_violation_says_what_was_found() -> None:
    payload = {"userId": "u", "event": "Email Open", "properties": {}, "context": {"traits": {"email": "a@b.co"}}}
    [violation] = [v for v in validate("segment.email_opened", payload) if v.path == "$.event"]
    assert violation.rule == "const"
    assert violation.message == '"Email Opened" was expected, got "Email Open"'


@pytest.mark.parametrize(
    ("name", "payload", "path", "rule", "size", "limit"),
    [
        # Segment drops a batch of more than 2,500 events (reference/segment.md §1.5).
        ("segment.batch", {"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2501}, "$.batch", "maxItems", "2501 items", "at most 2500"),
        ("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}], "TextPart": "t", "Subject": "s" * 400}]},
         "$.Messages[0].Subject", "maxLength", "400 characters", "at most 255"),
        ("mailjet.managemanycontacts.request", {"Action": "addnoforce", "Contacts": []}, "$.Contacts", "minItems", "0 items", "at least 1"),
        ("segment.track", {"userId": "u", "event": ""}, "$.event", "minLength", "0 characters", "at least 1"),
        ("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}], "TextPart": "t",
                                                "Headers": {f"X-H{i}": "v" for i in range(51)}}]},
         "$.Messages[0].Headers", "maxProperties", "51 properties", "at most 50"),
    ],
)
def test_a_size_violation_says_the_size_found_and_the_limit(
    name: str, payload: Any, path: str, rule: str, size: str, limit: str
) -> None:
    """jsonschema says "<the whole value> is too long": the limit is not named, and past MAX_MESSAGE
    characters of the value even "is too long" is cut off."""
    [violation] = [v for v in validate(name, payload) if v.path == path]
    assert violation.rule == rule
    assert size in violation.message and limit in violation.message, violation.message
    assert len(violation.message) < 120


def test_a_key_refused_by_property_names_is_called_a_key() -> None:
    """The Event API contracts list the keys a payload may carry (propertyNames): jsonschema reports
    an extra key at the object's path as "'blocked' is not one of [...]", a value for all it says."""
    payload = {"event": "spam", "time": 1, "MessageID": 1, "Message_GUID": "g", "email": "a@b.co", "mj_campaign_id": 0,
               "mj_contact_id": 0, "customcampaign": "", "CustomID": "", "Payload": "", "source": "JMRPP", "blocked": True}
    [violation] = validate("mailjet.event.spam", payload)
    assert (violation.path, violation.rule) == ("$", "enum")
    assert violation.message.startswith('key "blocked" is not one of ["event", ')


@pytest.mark.parametrize(
    ("name", "payload", "path", "message"),
    [
        ("segment.track", {"userId": "u", "event": "e", "properties": {"revenue": True}}, "$.properties.revenue",
         "true is not of type number or null"),
        ("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co", "Name": None}], "TextPart": "t"}]},
         "$.Messages[0].To[0].Name", "null is not of type string"),
        ("segment.identify", [{"userId": "u"}], "$", '[{"userId": "u"}] is not of type object'),
        ("segment.track", {"userId": "u"}, "$.event", '"event" is required'),
        ("segment.track", {"userId": "u", "event": "e", "timestamp": "yesterday"}, "$.timestamp", '"yesterday" is not a valid date-time'),
        ("mailjet.managecontact.request", {"Email": "a@b.co", "Action": "nope"}, "$.Action",
         '"nope" is not one of ["addforce", "addnoforce", "remove", "unsub"]'),
        ("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}], "TextPart": "t",
                                                "TemplateErrorDeliver": True}]},
         "$.Messages[0]", '"TemplateErrorDeliver" needs "TemplateLanguage"'),
    ],
)
def test_messages_write_values_as_json(name: str, payload: Any, path: str, message: str) -> None:
    """A user who sent null or true reads null or true, not Python's None or True."""
    assert message in [v.message for v in validate(name, payload) if v.path == path]


def test_an_unknown_key_is_named_with_the_keys_allowed() -> None:
    """Not jsonschema's "'Foo' does not match any of the regexes: '^[Aa][Cc][Tt]...$', ..."."""
    [violation] = validate("mailjet.managecontact.request", {"Email": "a@b.co", "Action": "addforce", "Foo": 1, "bar": 2})
    assert (violation.path, violation.rule) == ("$", "additionalProperties")
    assert violation.message == 'unknown keys "Foo", "bar"; allowed (in any case): email, name, action, properties'
    [violation] = validate("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}],
                                                                  "TextPart": "t", "Bogus": 1}]})
    assert violation.message.startswith('unknown key "Bogus"; allowed: From, Sender, ReplyTo, To, ')


def test_a_pattern_violation_says_what_the_pattern_means_where_the_schema_says() -> None:
    [violation] = validate("mailjet.managecontact.request", {"Email": "a@b", "Action": "addforce"})
    assert violation.message.startswith('"a@b" does not match ^')
    assert "(an email address, with spaces around it allowed: REST v3 trims them" in violation.message
