"""The compiled contract check (emulator/common/fast_validation.py) must answer exactly as
jsonschema does (`contracts.is_valid`), for every contract: here on messages generated from the
schemas themselves and on the contract tests' valid examples, mutated with values where the two
engines could read JSON differently."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import contracts
from emulator.common import fast_validation

FORMATS = Draft202012Validator.FORMAT_CHECKER


def _harvest_strings() -> list[str]:
    """Every string a schema names as a const, an enum value or a property: what valid messages hold."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "const" and isinstance(value, str):
                    found.add(value)
                elif key == "enum" and isinstance(value, list):
                    found.update(item for item in value if isinstance(item, str))
                elif key in ("properties", "patternProperties") and isinstance(value, dict):
                    found.update(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for name in contracts.schema_names():
        walk(contracts.schema(name))
    return sorted(found)


# Strings where Python's `re` and jsonschema-rs's regex read a pattern differently (a final newline
# before `$`, digits beyond ASCII for `\d`), formats at their edges, and the prefixes the contracts ask for.
ODD_STRINGS = [
    "", "x", "a@example.com", "no-at-sign", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00.123+01:00",
    "2024-02-29T23:59:59z", "2023-02-29T00:00:00Z", "2025-01-01T00:00:00Z\n", "2025-01-01", "2025-02-30",
    "2025-01-01T12:00:00", "2024-02-29T00:00", "2025-02-30T10:00:00", "2025-01-01T12:00:00\n",
    "2025-01-01\n", "\u0662\u0660\u0662\u0665-01-01", "123", "123\n", "\u0661\u0662\u0663", "12\u0663",
    "spa_1", "aud_1", "tra_1", "personas_1", "send-0001", "mj-0001\n", "mj-\u0660\u0660\u0660\u0661",
    "400", "400\n", "4\u0660\u0660", "https://x", "ftp://x", "https://api.mailjet.com/v3/REST/message/123",
    "https://api.mailjet.com/v3/REST/message/123\n", "/message/\u0661", "a\nb", "\U0001f600", "\ufffd",
]
STRINGS = sorted(set(ODD_STRINGS) | set(_harvest_strings()))
# Numbers at the edges of a double and of 64 bits, integral floats, booleans (never numbers).
ODD_SCALARS: list[Any] = [
    None, True, False, 0, 1, -1, 0.0, -0.0, 1.0, 1.5, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, float(2**64),
    -(2**63), 1e20, 1e308, -1e308, 5e-324, 399, 400, 599, 600, 50, 51,
]
ODD_VALUES: list[Any] = [*ODD_SCALARS, *ODD_STRINGS, [], {}, [None], {"": None}]


def _resolve(document: str, ref: str) -> tuple[str, Any]:
    target, _, pointer = ref.partition("#")
    if target:
        document = target.removesuffix(".json")
    node: Any = contracts.schema(document)
    for part in filter(None, pointer.split("/")):
        node = node[int(part) if isinstance(node, list) else part.replace("~1", "/").replace("~0", "~")]
    return document, node


def _fits(schema: dict[str, Any], text: str) -> bool:
    """Whether `text` meets the string rules of `schema` itself (as jsonschema reads them)."""
    if "pattern" in schema and not re.search(schema["pattern"], text):
        return False
    if "format" in schema and not FORMATS.conforms(text, schema["format"]):
        return False
    return schema.get("minLength", 0) <= len(text) <= schema.get("maxLength", len(text))


def _key_variants(pattern: str) -> list[str]:
    """Property names a patternProperties key (`^[Aa][Bb]$`) matches, and one with a final newline."""
    letters = [group[0] for group in pattern.strip("^$").strip("[]").split("][")] if "[" in pattern else []
    word = "".join(letters) or "x"
    return [word, word.lower(), word.upper(), word + "\n"]


def _generate(draw: Any, document: str, schema: Any, depth: int = 0) -> Any:
    """A value meant to meet `schema`, sometimes not: each choice is drawn, so hypothesis explores both."""
    if not isinstance(schema, dict) or depth > 12 or draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(ODD_VALUES))
    if "$ref" in schema:
        document, target = _resolve(document, schema["$ref"])
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in schema and draw(st.booleans()):
            branch = draw(st.sampled_from(schema[combinator]))
            if isinstance(branch, dict) and "$ref" in branch:
                document, branch = _resolve(document, branch["$ref"])
            schema = {**{k: v for k, v in schema.items() if k != combinator}, **branch}
    if "if" in schema and isinstance(schema.get("then"), dict) and draw(st.booleans()):
        schema = {**{k: v for k, v in schema.items() if k not in ("if", "then")}, **schema["then"]}
    if "const" in schema and draw(st.integers(0, 4)):
        return copy.deepcopy(schema["const"])
    if "enum" in schema and draw(st.integers(0, 4)):
        return copy.deepcopy(draw(st.sampled_from(schema["enum"])))
    types = schema.get("type")
    kinds = types if isinstance(types, list) else [types] if types else ["object", "string", "array", "number"]
    if "properties" in schema or "required" in schema or "patternProperties" in schema:
        kinds = ["object"] if not types else kinds
    kind = draw(st.sampled_from(kinds))
    if kind == "object":
        value: dict[str, Any] = {}
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        for key, subschema in properties.items():
            if draw(st.integers(0, 9)) < (9 if key in required else 5):
                value[key] = _generate(draw, document, subschema, depth + 1)
        for key in required - set(value):
            if draw(st.integers(0, 9)):
                value[key] = draw(st.sampled_from(ODD_VALUES))
        for pattern, subschema in schema.get("patternProperties", {}).items():
            if draw(st.integers(0, 2)):
                value[draw(st.sampled_from(_key_variants(pattern)))] = _generate(draw, document, subschema, depth + 1)
        if draw(st.integers(0, 5)) == 0:
            value[draw(st.sampled_from(STRINGS))] = draw(st.sampled_from(ODD_VALUES))
        return value
    if kind == "array":
        count = draw(st.integers(0, min(schema.get("maxItems", 3) + 1, 3)))
        items = schema.get("items", {})
        return [_generate(draw, document, items, depth + 1) for _ in range(count)]
    if kind == "string":
        fitting = [text for text in STRINGS if _fits(schema, text)]
        return draw(st.sampled_from(fitting if fitting and draw(st.integers(0, 4)) else STRINGS))
    if kind in ("number", "integer"):
        return draw(st.sampled_from([value for value in ODD_SCALARS if not isinstance(value, str)]))
    if kind == "boolean":
        return draw(st.booleans())
    return draw(st.sampled_from(ODD_VALUES))


@st.composite
def messages(draw: Any) -> tuple[str, Any]:
    name = draw(st.sampled_from(contracts.names()))
    return name, _generate(draw, name, contracts.schema(name))


def _seeds() -> list[tuple[str, Any]]:
    """The valid examples of the contract tests: every contract has some."""
    from tests.unit import test_contracts_mailjet, test_contracts_segment

    seeds = [(name, payload) for name, payloads in test_contracts_mailjet.VALID.items() for payload in payloads]
    seeds += [(name, payload) for name, _, payload in test_contracts_segment.VALID]
    return [(name, payload) for name, payload in seeds if name in contracts.names()]


SEEDS = _seeds()


def _slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value nested in `value` (itself included)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _slots(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _slots(item, (*path, index))
    return found


@st.composite
def mutated_examples(draw: Any) -> tuple[str, Any]:
    """A valid example with a few values replaced, keys added or removed: mostly near the edge."""
    name, seed = draw(st.sampled_from(SEEDS))
    message = copy.deepcopy(seed)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_slots(message)))
        if not path:
            continue
        parent = message
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.integers(0, 3))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[draw(st.sampled_from(STRINGS))] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
        else:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    return name, message


def _agree(name: str, message: Any) -> None:
    expected = contracts.is_valid(name, message)
    assert fast_validation.is_valid(name, message) == expected, (name, message)
    assert fast_validation.all_valid(name, [message, message]) == expected, (name, message)


CASES = messages() | mutated_examples()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(CASES)
def test_the_compiled_check_agrees_with_jsonschema_on_every_contract(case: tuple[str, Any]) -> None:
    _agree(*case)


def test_the_generated_messages_reach_both_answers() -> None:
    # The property above means little if what it generates is always valid, or never.
    answers: dict[bool, int] = {True: 0, False: 0}

    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(CASES)
    def count(case: tuple[str, Any]) -> None:
        answers[contracts.is_valid(*case)] += 1

    count()
    assert answers[True] > 40 and answers[False] > 40, answers


# Found by the property above: jsonschema reads a pattern with Python's `re`, where `$` also
# matches before a final newline and `\d` takes any Unicode decimal digit; jsonschema-rs reads it
# as ECMA-262 does (neither). The compiled check accepted less than jsonschema.
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mailjet.error", {"ErrorInfo": "", "ErrorMessage": "x", "StatusCode": "400\n"}),
        ("mailjet.event.sent", {"event": "sent", "time": 1, "MessageID": 1, "email": "a@example.com",
                                "mj_campaign_id": 1, "mj_contact_id": 1, "customcampaign": "", "mj_message_id": "12\n",
                                "Message_GUID": "g",
                                "smtp_reply": "ok", "CustomID": "", "Payload": ""}),
        ("mailjet.event.sent", {"event": "sent", "time": 1, "MessageID": 1, "email": "a@example.com",
                                "mj_campaign_id": 1, "mj_contact_id": 1, "customcampaign": "",
                                "mj_message_id": "\u0661\u0662", "Message_GUID": "g", "smtp_reply": "ok", "CustomID": "", "Payload": ""}),
        ("mailjet.managecontact.request", {"Email\n": "a@example.com", "Action": "addforce"}),
        ("mailjet.managecontact.request", {"Email": "a@example.com", "Action\n": "addforce"}),
        ("mailjet.send.request", {"Messages\n": [{"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}],
                                                 "TextPart": "hi"}]}),
    ],
)
def test_patterns_are_read_as_pythons_re_reads_them(name: str, message: dict[str, Any]) -> None:
    _agree(name, message)


# A message built in Python (Engage's, through SegmentBackend.ingest) may hold values JSON cannot,
# which jsonschema-rs refuses with ValueError ("Unsupported type: 'set'"): jsonschema answers instead.
@pytest.mark.parametrize("value", [{"a", "b"}, b"bytes", {1: "int key"}])
@pytest.mark.parametrize("field", ["userId", "context"])
def test_values_json_cannot_hold_get_jsonschemas_answer_not_an_error(field: str, value: Any) -> None:
    message = {"type": "track", "userId": "u", "event": "E", field: value}
    _agree("segment.track", message)  # raised ValueError without the fallback
