import json

import pytest

from emulator.common.json_body import MAX_DEPTH, decode_json, decode_snapshot, fits_depth, nesting_depth


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_reads_json() -> None:
    assert decode_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_what_orjson_refuses_is_read_as_json_reads_it() -> None:
    assert decode_json('{"a": 1}'.encode("utf-16")) == {"a": 1}  # json detects UTF-16 in bytes
    with pytest.raises(ValueError, match="Expecting property name"):
        decode_json(b"{not json")  # json's own explanation


def test_a_repeated_key_keeps_its_last_value_whichever_decoder_reads_the_body() -> None:
    # orjson keeps the last; a lone surrogate sends the body to json, which must agree.
    assert decode_json(b'{"a": 1, "a": 2}')["a"] == 2
    assert decode_json(b'{"a": 1, "a": 2, "s": "\\ud800"}')["a"] == 2


def test_a_lone_surrogate_is_read_as_the_replacement_character_as_go_reads_it() -> None:
    value = decode_json(b'{"a\\ud800": ["x\\udc00y", {"k": "\\ud83d\\ude00", "n": 1}], "b": "\\ud800"}')
    assert value == {"a\ufffd": ["x\ufffdy", {"k": "\U0001f600", "n": 1}], "b": "\ufffd"}  # a pair stays one character
    assert decode_json(b'"\\udfff"') == "\ufffd"
    assert decode_json('{"a": "x\\ud800"}'.encode("utf-16")) == {"a": "x\ufffd"}  # escapes a byte search misses
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # what every answer showing it does


@pytest.mark.parametrize("body", [b"[NaN]", b'{"a": -Infinity}', b"[1e999]"])
def test_numbers_json_does_not_have_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="not valid JSON|out of range"):
        decode_json(body)


def test_fallback_decides() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode_json(b'\xff{"a": 1}', lambda raw: json.loads(raw.decode("utf-8")))


def test_up_to_max_depth_is_read_and_deeper_is_refused_wherever_it_is_read() -> None:
    value, depth = decode_json(nested(MAX_DEPTH)), 0
    while isinstance(value, list):  # walked, not compared: == would recurse as deep
        value, depth = (value[0] if value else None), depth + 1
    assert depth == MAX_DEPTH
    for too_deep in (nested(MAX_DEPTH + 1), nested(100_000), b'["\\ud800",' + nested(MAX_DEPTH) + b"]"):
        reached: list[bytes] = []
        with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
            decode_json(too_deep, reached.append)
        assert reached == []  # json never recursed into it


@pytest.mark.parametrize(
    "refused_first",
    [b"\xef\xbb\xbf", b'["\\ud800",', b"[1e999,", b"[" * 10],  # orjson stops here, before the depth
    ids=["bom", "lone surrogate", "infinite number", "unclosed"],
)
def test_a_deep_body_orjson_refuses_for_another_reason_never_reaches_json(refused_first: bytes) -> None:
    reached: list[bytes] = []
    with pytest.raises(ValueError, match="nested more than"):
        decode_json(refused_first + nested(MAX_DEPTH + 1), reached.append)
    assert reached == []


def test_a_shallow_body_orjson_refuses_goes_to_json() -> None:
    body = b'["\\ud800",' + nested(MAX_DEPTH - 1) + b"]"
    assert decode_json(body, lambda raw: "read by json") == "read by json"


def test_nesting_depth_skips_strings() -> None:
    assert nesting_depth(b'{"a": "[[[\\"[[", "b": [[1], {}]}') == 3
    assert nesting_depth(b'"[[[') == 0  # an unterminated string runs to the end
    assert nesting_depth(b"") == 0


def test_recursion_in_the_fallback_is_a_value_error() -> None:
    # Stands for json reaching the recursion limit when the caller's stack is deep already.
    def too_deep(raw: bytes) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json(b'["\\ud800", [[[]]]]', too_deep)


def test_integers_beyond_64_bits_become_floats() -> None:
    within, beyond = decode_json(b"[18446744073709551615, 18446744073709551616]")
    assert (type(within), within) == (int, 2**64 - 1)
    assert (type(beyond), beyond) == (float, float(2**64))


def test_integers_read_the_same_when_json_reads_the_body() -> None:
    # A lone surrogate sends the body to json, which kept 2**64 and 10**400 whole: the same
    # number was an int or a float (or refused) depending on another field of the body.
    lone = b'"\\ud800"'
    low, within, beyond = decode_json(b"[-9223372036854775808, 18446744073709551615, 18446744073709551616, " + lone + b"]")[:3]
    assert [(type(n), n) for n in (low, within, beyond)] == [(int, -(2**63)), (int, 2**64 - 1), (float, float(2**64))]
    assert type(decode_json(b"[-9223372036854775809, " + lone + b"]")[0]) is float
    for body in (b"[1" + b"0" * 400 + b"]", b"[1" + b"0" * 400 + b", " + lone + b"]"):
        with pytest.raises(ValueError, match="out of range|infinity"):
            decode_json(body)


def test_a_snapshot_may_nest_what_it_holds_a_few_levels_deeper_and_its_loaders_check_each_value() -> None:
    holding = b'{"state": {"workspaces": [{"messages": [' + nested(MAX_DEPTH) + b"]}]}}"
    with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
        decode_json(holding)
    document = decode_snapshot(holding)
    held = document["state"]["workspaces"][0]["messages"][0]
    assert fits_depth(held) and not fits_depth([held])
    assert fits_depth([2**70])  # json reads it as an int orjson cannot encode: not a depth problem
    with pytest.raises(ValueError, match="more than"):
        decode_snapshot(nested(2000))  # orjson's own limit
    with pytest.raises(ValueError, match="more than"):
        decode_snapshot(b'["\\ud800",' + nested(MAX_DEPTH + 100) + b"]")  # json's, for what orjson refuses


def test_a_deep_utf16_body_is_refused_before_json_reads_it() -> None:
    # In UTF-16 an escaped quote (\") is `\`, NUL, `"`: the byte search took that `"` for the end
    # of the string, then the real end for the start of one running to the end, and counted one
    # level where there were hundreds; json then recursed into all of them.
    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        body = ('["\\"", ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "]").encode(encoding)
        reached: list[bytes] = []
        with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
            decode_json(body, reached.append)
        assert reached == [], encoding
    shallow = '["\\"", [[1]]]'.encode("utf-16")
    assert decode_json(shallow) == ['"', [[1]]]
    assert decode_json(shallow, lambda raw: raw) == shallow  # the fallback still gets the bytes as they came


def test_a_snapshot_document_is_checked_before_its_state_is_used() -> None:
    from emulator.common.snapshot import snapshot_state

    good = {"format": "segjet-snapshot", "service": "mailjet", "version": 1, "state": {}}
    assert snapshot_state(good, "mailjet", 1, ValueError) == {}
    for bad, complaint in [
        ([], "JSON object"),
        ({**good, "format": "other"}, "format"),
        ({**good, "service": "segment"}, "service"),
        ({**good, "version": True}, "version"),
        ({**good, "version": 2}, "version"),
        ({key: value for key, value in good.items() if key != "state"}, "missing state"),
    ]:
        with pytest.raises(ValueError, match=complaint):
            snapshot_state(bad, "mailjet", 1, ValueError)


@pytest.mark.parametrize("document", [
    {"format": "segjet-snapshot", "state": {"text": "Ada \u00e9 \U0001f600", "n": [1, 2.5, 1e16, -0.0, 2**63 - 1], "none": None}},
    {"format": "segjet-snapshot", "state": {"big": 2**70}},  # beyond 64 bits: orjson refuses, json writes it
])
def test_a_snapshot_is_rendered_as_json_renders_it(document: dict) -> None:
    from starlette.responses import JSONResponse

    from emulator.common.snapshot import snapshot_response

    response = snapshot_response(document)
    assert response.media_type == "application/json"
    assert json.loads(response.body) == json.loads(JSONResponse(document).body) == document
