from emulator.common.clock import Clock
from emulator.common.journal import Journal

SCOPE = {"method": "POST", "path": "/v1/batch", "query_string": b"", "headers": []}
BIG = b'{"batch": [' + b'"x",' * 20_000 + b'"x"]}'


def test_a_body_over_64_kb_is_kept_as_its_size_only() -> None:
    journal = Journal(Clock(), capacity=10)
    entry = journal.record(SCOPE, BIG)
    entry.status = 200
    entry.keep_response(BIG)
    assert entry.request_body == entry.response_body == b""  # not held in memory: never shown
    shown = entry.to_json()
    assert shown["body"] == shown["response"] == {"truncated": True, "bytes": len(BIG)}


def test_a_small_body_is_shown_decoded_with_the_write_key_hidden() -> None:
    journal = Journal(Clock(), capacity=10)
    entry = journal.record(SCOPE, b'{"writeKey": "k", "userId": "u"}')
    entry.status = 200
    entry.keep_response(b'{"success": true}')
    shown = entry.to_json()
    assert shown["body"] == {"writeKey": "<redacted>", "userId": "u"} and shown["response"] == {"success": True}
