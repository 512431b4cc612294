from emulator.common.clock import Clock
from emulator.common.journal import Journal

SCOPE = {"method": "POST", "path": "/v1/batch", "query_string": b"", "headers": []}


def test_a_body_over_64_kb_is_kept_as_its_size_only() -> None:
    journal = Journal(Clock(), capacity=10)
    big = b'{"batch": [' + b'"x",' * 20_000 + b'"x"]}'
    entry = journal.record(SCOPE, big)
    assert entry.request_body == b""  # not held in memory: it is never shown
    assert entry.to_json()["body"] == {"truncated": True, "bytes": len(big)}
    small = journal.record(SCOPE, b'{"writeKey": "k", "userId": "u"}')
    assert small.to_json()["body"] == {"writeKey": "<redacted>", "userId": "u"}
