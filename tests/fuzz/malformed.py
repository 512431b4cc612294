"""Hypothesis strategies for input an OpenAPI description cannot express, shared by the fuzz modules."""

from __future__ import annotations

import base64
import gzip
import json

from hypothesis import strategies as st

FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth if depth % 2 else '{"a":' * depth + "1" + "}" * depth


# JSON-ish texts that stress a parser: numbers beyond float or int limits, NaN and Infinity (which
# Python accepts and JSON does not), nesting deeper than the recursion limit, broken documents.
json_texts = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000, "0." + "1" * 5000, "[]", "null", '""']),
    st.integers(min_value=1, max_value=100_000).map(_nested),
    st.sampled_from(['{"userId": "u", "traits": {"n": %s}}', '{"a": [%s]}', '{"Email": %s}']).flatmap(
        lambda template: st.sampled_from(["NaN", "Infinity", "1e400", "-1e400", "9" * 5000, "1" * 200]).map(
            lambda number: template % number
        )
    ),
    # Lone UTF-16 surrogate escapes (a string cut inside an emoji): read, and shown back everywhere.
    st.sampled_from(['"\\ud800"', '{"userId": "u\\ud800", "event": "E\\udfff", "traits": {"n\\ud83d": "\\ud83d\\ude00x\\ud83d"}}',
                     '{"Email": "a\\udc00@example.com", "Name": "\\ud800"}']),
    # Nesting around the deepest accepted (254 levels), inside a call that is otherwise valid.
    st.integers(min_value=240, max_value=270).map(lambda depth: '{"userId": "u", "event": "E", "traits": {"d": %s}}' % _nested(depth)),
    st.text(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
                 max_leaves=20).map(lambda value: json.dumps(value, allow_nan=True)),
)

invalid_utf8 = st.binary(min_size=1, max_size=200).map(lambda data: b'{"userId": "' + data + b'\xff\xfe"}')

# Bodies as bytes: random, invalid UTF-8, and the JSON texts above.
raw_bodies = st.one_of(st.binary(max_size=500), invalid_utf8, json_texts.map(lambda text: text.encode("utf-8", "surrogatepass")))


def _truncated_gzip(data: bytes, cut: int) -> bytes:
    packed = gzip.compress(data)
    return packed[: max(1, len(packed) - cut)]


# What a client may send with `Content-Encoding: gzip`: garbage, truncated gzip, gzip of garbage.
gzip_bodies = st.one_of(
    st.binary(max_size=200),
    st.tuples(raw_bodies, st.integers(min_value=1, max_value=30)).map(lambda pair: _truncated_gzip(*pair)),
    raw_bodies.map(gzip.compress),
)

# Path segments and query strings as a client may send them raw: printable ASCII, with `%` escapes
# that may or may not be valid, and non-ASCII characters httpx percent-encodes as UTF-8.
url_texts = st.lists(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?")
    | st.sampled_from(["%", "%2", "%zz", "%00", "%0A", "%2F", "%25", "%C3%28", "%FF", "%E2%82", "é", "²", "٣", " ", "+"]),
    max_size=12,
).map("".join)

# Header values httpx can send (latin-1, no line breaks).
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=120).map(lambda text: text.strip().encode("latin-1"))
authorizations = st.one_of(
    header_values,
    st.builds(lambda scheme, rest: (scheme + b" " + rest).strip(), st.sampled_from([b"Basic", b"basic", b"Bearer", b"BASIC", b""]), header_values),
    st.binary(max_size=60).map(lambda raw: (b"Basic " + base64.b64encode(raw)).strip()),
)
