import json

import pytest

from emulator.common.json_body import MAX_DEPTH, decode_json


def test_reads_json() -> None:
    assert decode_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_what_orjson_refuses_is_read_as_json_reads_it() -> None:
    assert decode_json(b'{"a": "\\ud800"}') == {"a": "\ud800"}  # a lone surrogate
    assert decode_json('{"a": 1}'.encode("utf-16")) == {"a": 1}  # json detects UTF-16 in bytes
    with pytest.raises(ValueError, match="Expecting property name"):
        decode_json(b"{not json")  # json's own explanation


def test_fallback_decides() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode_json(b'\xff{"a": 1}', lambda raw: json.loads(raw.decode("utf-8")))


def test_depth_is_refused_before_json_recurses() -> None:
    assert decode_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    reached: list[bytes] = []
    with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
        decode_json(b"[" * 100_000 + b"]" * 100_000, reached.append)
    assert reached == []  # json never saw it


def test_recursion_in_the_fallback_is_a_value_error() -> None:
    # As json raises on a body orjson stopped reading before its depth (a lone surrogate first),
    # without recursing to the limit here.
    def too_deep(raw: bytes) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json(b'["\\ud800", [[[]]]]', too_deep)


def test_integers_beyond_64_bits_become_floats() -> None:
    assert decode_json(b"[18446744073709551615, 18446744073709551616]") == [2**64 - 1, float(2**64)]
