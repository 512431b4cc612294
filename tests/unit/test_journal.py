import asyncio
import contextlib
import json
import socket
import threading
import tracemalloc
from datetime import timedelta
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.common.clock import Clock, iso
from emulator.common.http import ANSWER_KEEP_BYTES, recorded_body
from emulator.common.journal import Journal, JournalMiddleware
from emulator.common.server import MAX_HEAD_BYTES, Runner, ServerHandle, ServerStartError, serve_in_background
from emulator.mailjet.models import MAX_BODY_BYTES

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


def test_a_batch_sized_body_is_held_compressed_and_shown_whole() -> None:
    batch = json.dumps({"writeKey": "k", "batch": [{"type": "track", "userId": f"u{n}", "event": "E"} for n in range(300)]})
    journal = Journal(Clock(), capacity=10)
    entry = journal.record(SCOPE, batch.encode())
    entry.status = 200
    entry.keep_response(batch.encode())
    assert len(entry.request_packed) < len(batch) / 5 and len(entry.response_packed) < len(batch) / 5
    assert entry.request_body == entry.response_body == batch.encode()
    shown = entry.to_json()
    assert shown["body"] == {**json.loads(batch), "writeKey": "<redacted>"} and shown["response"]["batch"][299]["userId"] == "u299"


def test_a_small_body_is_shown_decoded_with_the_write_key_hidden() -> None:
    journal = Journal(Clock(), capacity=10)
    entry = journal.record(SCOPE, b'{"writeKey": "k", "userId": "u"}')
    entry.status = 200
    entry.keep_response(b'{"success": true}')
    shown = entry.to_json()
    assert shown["body"] == {"writeKey": "<redacted>", "userId": "u"} and shown["response"] == {"success": True}


def test_the_control_token_in_a_query_string_is_hidden() -> None:
    journal = Journal(Clock(), capacity=10)
    scope = {**SCOPE, "method": "GET", "path": "/", "query_string": b"limit=5&token=s3cret&tokens=x&token"}
    assert journal.record(scope, b"").to_json()["query"] == "limit=5&token=<redacted>&tokens=x&token=<redacted>"
    plain = {**SCOPE, "method": "GET", "path": "/", "query_string": b"user=u-1&limit=5"}
    assert journal.record(plain, b"").to_json()["query"] == "user=u-1&limit=5"


def test_a_long_header_is_kept_cut() -> None:
    # uvicorn takes headers of megabytes; 10,000 kept whole held gigabytes until a reset.
    journal = Journal(Clock(), capacity=10)
    entry = journal.record({**SCOPE, "headers": [(b"x-pad", b"p" * 5_000_000), (b"accept", b"*/*")]}, b"")
    headers = entry.to_json()["headers"]
    assert len(headers["x-pad"]) < 10_000 and headers["x-pad"].endswith("...") and headers["accept"] == "*/*"


def test_the_middleware_keeps_no_more_of_a_body_than_it_can_show() -> None:
    # The app drains an oversized body through the journal's receive: all of it was kept, then
    # joined (a 1 GB upload took 2 GB).
    journal = Journal(Clock(), capacity=10)
    chunk = b"x" * 1_000_000
    received = iter([{"type": "http.request", "body": chunk, "more_body": True}] * 5
                    + [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict:
        return next(received)

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: dict) -> None:
        pass

    tracemalloc.start()
    try:
        asyncio.run(JournalMiddleware(app, journal)({**SCOPE, "type": "http"}, receive, send))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    [entry] = journal.entries()
    assert entry.to_json()["body"] == {"truncated": True, "bytes": 5_000_000}


def test_recorded_answers_to_our_outgoing_calls_are_capped_too() -> None:
    # A webhook endpoint answering 20 MB, every 30 s for a day, kept every copy.
    assert recorded_body(b'{"ok": true}', 2000) == {"ok": True}
    too_long = b'"' + b"x" * ANSWER_KEEP_BYTES + b'"'
    assert recorded_body(too_long, 2000) == {"truncated": True, "bytes": f"more than {ANSWER_KEEP_BYTES}"}


def test_the_journal_keeps_the_newest_and_counts_what_it_dropped() -> None:
    journal = Journal(Clock(), capacity=2)
    for _ in range(3):
        journal.record(SCOPE, b"{}")
    assert [entry.id for entry in journal.entries()] == [2, 3] and journal.dropped == 1


def test_a_gzipped_body_is_shown_inflated_with_the_write_key_hidden() -> None:
    # analytics-python (gzip=True) and other clients gzip their batches: the journal showed the
    # compressed bytes as mangled text, neither the bytes that crossed nor the JSON they carry.
    import gzip

    journal = Journal(Clock(), capacity=10)
    for encoding in (b"gzip", b"x-gzip"):
        scope = {**SCOPE, "headers": [(b"content-encoding", encoding)]}
        entry = journal.record(scope, gzip.compress(b'{"writeKey": "k", "batch": []}'))
        assert entry.to_json()["body"] == {"writeKey": "<redacted>", "batch": []}
    # Inflated beyond what the journal shows: only its size, as for a large plain body.
    bomb = gzip.compress(BIG)
    entry = journal.record({**SCOPE, "headers": [(b"content-encoding", b"gzip")]}, bomb)
    assert entry.to_json()["body"] == {"truncated": True, "bytes": len(bomb)}
    # Not gzip after all: shown as it came.
    entry = journal.record({**SCOPE, "headers": [(b"content-encoding", b"gzip")]}, b"plain")
    assert entry.to_json()["body"] == "plain"


def test_runner_wait_lets_every_server_finish_before_raising_the_first_failure() -> None:
    # asyncio.gather raised the first failure at once: the other servers were still serving (or
    # shutting down) when a failed start or `segjet up` went on to close the loop under them.
    stopped: list[str] = []

    async def failing() -> None:
        raise RuntimeError("boom")

    async def slow_to_stop() -> None:
        await asyncio.sleep(0.2)
        stopped.append("slow")

    async def scenario() -> None:
        runner = Runner()
        for name, serve in (("failing", failing), ("slow", slow_to_stop)):
            handle = ServerHandle(name, None, SimpleNamespace(should_exit=False))  # type: ignore[arg-type]
            handle.task = asyncio.create_task(serve())
            runner.handles.append(handle)
        try:
            await runner.stop()
        except RuntimeError as exc:
            assert str(exc) == "boom"
        else:
            raise AssertionError("the failure was lost")
        assert stopped == ["slow"]

    asyncio.run(scenario())


def test_serve_in_background_lets_go_of_everything_when_a_server_fails_to_start() -> None:
    # uvicorn's sys.exit on a failed lifespan startup ended the loop: the healthy server stayed
    # open on a dead loop thread, and the start waited out its 30 s timeout.
    @contextlib.asynccontextmanager
    async def broken(app: Starlette):  # type: ignore[no-untyped-def]
        raise RuntimeError("startup failed")
        yield

    def loop_threads() -> int:
        return sum(1 for thread in threading.enumerate() if thread.name == "segjet-loop" and thread.is_alive())

    before = loop_threads()
    with pytest.raises(ServerStartError, match="failed to start"):
        serve_in_background({"healthy": Starlette(), "broken": Starlette(lifespan=broken)})
    assert loop_threads() == before


def test_a_request_head_past_the_limit_is_answered_400_and_the_connection_closed() -> None:
    # httptools sets no limit on a header: a 100 MB one was read whole, the shared loop busy for
    # seconds. The next request on a kept-alive connection gets a fresh count.
    async def ok(request: Request) -> Response:
        return Response(b"ok")

    loop_thread, runner, urls = serve_in_background({"app": Starlette(routes=[Route("/", ok)])})
    try:
        host, port = urls["app"].removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            below = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n\r\n"
            for _ in range(3):  # three heads of half the limit on one connection: each is within it
                sock.sendall(below)
                assert _http_answer(sock).startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
            with contextlib.suppress(OSError):  # the server closes as soon as the limit is passed
                for _ in range(MAX_HEAD_BYTES // 65536 + 2):
                    sock.sendall(b"a" * 65536)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"Request head too large.")
    finally:
        loop_thread.run(runner.stop())
        loop_thread.close()


def _http_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read off a kept-alive connection."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 2:
        answer += sock.recv(65536)
    return answer


def test_an_exchange_the_app_failed_on_is_journaled_as_the_500_it_was_answered() -> None:
    # Starlette answers an unhandled exception (the fake Segment's `_internal_error`) outside every
    # middleware: the exchange that most needs looking at was missing from the journal.
    journal = Journal(Clock(), capacity=10)

    async def receive() -> dict:
        return {"type": "http.request", "body": b'{"userId": "u"}', "more_body": False}

    async def send(message: dict) -> None:
        pass

    async def broken(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await receive()
        raise RuntimeError("bug")

    async def client_left(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        raise ClientDisconnect()

    with pytest.raises(RuntimeError):
        asyncio.run(JournalMiddleware(broken, journal)({**SCOPE, "type": "http"}, receive, send))
    [entry] = journal.entries()
    assert (entry.status, entry.to_json()["body"]) == (500, {"userId": "u"})
    # A client that left is answered nothing (QuietDisconnect), so there is no exchange to show.
    with pytest.raises(ClientDisconnect):
        asyncio.run(JournalMiddleware(client_left, journal)({**SCOPE, "type": "http"}, receive, send))
    assert len(journal.entries()) == 1


def test_a_write_key_inside_batch_items_is_hidden_too() -> None:
    # analytics.js (analytics-next's batched dispatcher) sends each event with its writeKey inside
    # the batch; the journal showed them all while hiding the top-level one.
    journal = Journal(Clock(), capacity=10)
    body = b'{"batch": [{"type": "track", "writeKey": "secret"}, {"type": "page"}, "odd"], "writeKey": "secret"}'
    entry = journal.record(SCOPE, body)
    shown = entry.to_json()["body"]
    assert shown == {"batch": [{"type": "track", "writeKey": "<redacted>"}, {"type": "page"}, "odd"],
                     "writeKey": "<redacted>"}
    assert "secret" not in str(shown)


def test_a_read_naming_a_tenant_sees_only_the_exchanges_its_credential_made() -> None:
    # Parallel CI jobs share one server and its journal: a job reading it with its own write key
    # must not see the other jobs' calls, whether the key came in Basic auth or in the body.
    import base64
    import gzip

    from emulator.segment.routes import tracking_write_key

    journal = Journal(Clock(), capacity=10)
    journal.credential = tracking_write_key
    basic = [(b"authorization", b"Basic " + base64.b64encode(b"mine:"))]
    gzipped = [(b"content-encoding", b"gzip")]
    journal.record({**SCOPE, "headers": basic}, b'{"batch": []}')
    journal.record(SCOPE, b'{"writeKey": "theirs", "batch": []}')
    journal.record(SCOPE, b'{"writeKey": "mine", "batch": []}')
    journal.record({**SCOPE, "headers": gzipped}, gzip.compress(b'{"writeKey": "mine"}'))
    journal.record(SCOPE, b"not json")
    # Bodies the tracking API refuses (400) carry no write key it would see, so none is read here:
    # UTF-16 JSON, gzip cut short, a single call over its 32 KB.
    journal.record(SCOPE, '{"writeKey": "mine"}'.encode("utf-16"))
    journal.record({**SCOPE, "headers": gzipped}, gzip.compress(b'{"writeKey": "mine"}')[:-4])
    journal.record({**SCOPE, "path": "/v1/track"}, b'{"writeKey": "mine", "pad": "' + b"x" * 40_000 + b'"}')
    mine = journal.entries(tenant=lambda key: key == "mine")
    assert [entry.id for entry in mine] == [1, 3, 4]
    assert [entry.id for entry in journal.entries(tenant=lambda key: key is None)] == [5, 6, 7, 8]
    assert len(journal.entries()) == 8  # naming no tenant: everything, as before
    assert [entry.id for entry in journal.entries(tenant=lambda key: key == "mine", limit=1)] == [4]


def test_get_requests_is_filtered_by_the_tenant_the_call_names_and_404s_an_unknown_one() -> None:
    from starlette.responses import JSONResponse
    import httpx

    from emulator.common.control import ControlError, control_routes
    from emulator.common.fault_routes import basic_username, mailjet_fault_response, service_middleware
    from emulator.common.faults import FaultRules

    clock = Clock()
    journal = Journal(clock, capacity=10)
    known = {"a", "b"}

    def journal_tenant(request: Request):
        key = request.query_params.get("apiKey")
        if key is None:
            return None
        if key not in known:
            raise ControlError(f"no Mailjet account with API key {key!r}", 404)
        return lambda credential: credential == key

    async def api(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[*control_routes("mailjet", clock, journal, lambda: None, journal_tenant=journal_tenant),
                Route("/v3/REST/contact", api, methods=["GET"])],
        middleware=service_middleware(
            FaultRules.for_mailjet(), journal, mailjet_fault_response, basic_username, None, MAX_BODY_BYTES
        ),
    )
    loop_thread, runner, urls = serve_in_background({"mailjet": app})
    try:
        client = httpx.Client(base_url=urls["mailjet"])
        client.get("/v3/REST/contact", auth=("a", "s"))
        client.get("/v3/REST/contact", auth=("b", "s"))
        client.get("/v3/REST/contact", auth=("a", "s"))
        shown = client.get("/_emulator/requests", params={"apiKey": "a"}).json()["requests"]
        assert [entry["id"] for entry in shown] == [1, 3]
        assert len(client.get("/_emulator/requests").json()["requests"]) == 3
        unknown = client.get("/_emulator/requests", params={"apiKey": "nobody"})
        assert unknown.status_code == 404 and "error" in unknown.json()
    finally:
        client.close()
        loop_thread.run(runner.stop())
        loop_thread.close()


# ---------------------------------------------------------------- the control API of every server


@pytest.fixture(scope="module")
def control():  # type: ignore[no-untyped-def]
    """A server with the shared control routes and middleware, and a public `/v3/REST/contact`."""
    from starlette.responses import JSONResponse
    import httpx

    from emulator.common.control import control_routes
    from emulator.common.fault_routes import basic_username, mailjet_fault_response, service_middleware
    from emulator.common.faults import FaultRules

    clock = Clock()
    journal = Journal(clock, capacity=200)
    calls: list[str] = []

    async def quiesce() -> None:
        calls.append("quiesce")

    async def api(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[*control_routes("mailjet", clock, journal, lambda: calls.append("reset"), quiesce=quiesce),
                Route("/v3/REST/contact", api, methods=["GET", "POST"])],
        middleware=service_middleware(
            FaultRules.for_mailjet(), journal, mailjet_fault_response, basic_username, None, MAX_BODY_BYTES
        ),
    )
    loop_thread, runner, urls = serve_in_background({"mailjet": app})
    client = httpx.Client(base_url=urls["mailjet"])
    try:
        yield SimpleNamespace(http=client, clock=clock, journal=journal, calls=calls)
    finally:
        client.close()
        loop_thread.run(runner.stop())
        loop_thread.close()


def test_health_names_the_service(control: SimpleNamespace) -> None:
    health = control.http.get("/_emulator/health").json()
    assert (health["status"], health["service"]) == ("ok", "mailjet") and health["now"].endswith("Z")


def test_the_clock_shows_its_next_timer_and_a_move_answers_what_it_fired(control: SimpleNamespace) -> None:
    control.http.post("/_emulator/reset").raise_for_status()
    fired: list[int] = []
    timer = control.clock.call_at(control.clock.now() + timedelta(hours=1), lambda: fired.append(1), owner="mailjet")
    control.clock.call_at(control.clock.now() + timedelta(minutes=5), lambda: None, owner="mailjet").cancelled = True
    state = control.http.get("/_emulator/clock").json()
    assert state["pending_timers"] == 1 and state["next_due"] == iso(timer.due)
    moved = control.http.post("/_emulator/clock", json={"advance": "2h"}).json()
    assert (moved["fired"], moved["pending_timers"], moved["next_due"], fired) == (1, 0, None, [1])
    # Zero moves nothing but still fires what is due (nothing here): not an error.
    assert control.http.post("/_emulator/clock", json={"advance": "0s"}).json()["fired"] == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"advance": "1m", "set": "2030-01-01T00:00:00Z"}, ["advance"], "advance", {"advance": 5}, {"set": None}],
    ids=["neither", "both", "list", "string", "number", "null"],
)
def test_a_clock_move_that_is_not_exactly_one_valid_field_is_a_400(control: SimpleNamespace, body: object) -> None:
    answer = control.http.post("/_emulator/clock", json=body)
    assert answer.status_code == 400 and answer.json()["error"]


def test_requests_filters_by_method_and_path_ignoring_case_and_limits(control: SimpleNamespace) -> None:
    http = control.http
    http.post("/_emulator/reset").raise_for_status()
    http.get("/v3/REST/contact", params={"Limit": "1"})
    http.post("/v3/REST/contact", json={"Email": "a@example.com"})
    http.get("/v3/REST/contact")

    def ids(**params: object) -> list[int]:
        answer = http.get("/_emulator/requests", params=params)
        assert answer.status_code == 200, answer.text
        return [entry["id"] for entry in answer.json()["requests"]]

    first, second, third = ids()
    assert ids(method="post") == [second] and ids(method="GET") == [first, third]
    assert ids(path="REST/CONTACT") == [first, second, third] and ids(path="/segment") == []
    assert ids(limit=2) == [second, third] and ids(limit=0) == []
    shown = http.get("/_emulator/requests", params={"limit": 1}).json()
    assert (shown["dropped"], shown["capacity"]) == (0, 200)
    assert http.get("/_emulator/requests").json()["requests"][0]["query"] == "Limit=1"
    for bad in ("-1", "10001", "ten"):
        answer = http.get("/_emulator/requests", params={"limit": bad})
        assert answer.status_code == 400 and "limit" in answer.json()["error"], bad


def test_requests_answers_the_newest_100_by_default_and_counts_what_was_dropped(control: SimpleNamespace) -> None:
    control.http.post("/_emulator/reset").raise_for_status()
    for _ in range(control.journal.capacity + 5):
        control.journal.record(SCOPE, b"{}")
    shown = control.http.get("/_emulator/requests").json()
    newest = control.journal.entries(limit=100)[-1].id
    assert [entry["id"] for entry in shown["requests"]] == list(range(newest - 99, newest + 1))
    assert shown["dropped"] == 5


def test_reset_clears_the_journal_its_drop_count_and_the_clock_then_waits_for_quiesce(control: SimpleNamespace) -> None:
    control.journal.record(SCOPE, b"{}")
    control.journal.dropped = 3
    control.http.post("/_emulator/clock", json={"advance": "31d"}).raise_for_status()
    generation = control.journal.generation
    del control.calls[:]
    answer = control.http.post("/_emulator/reset")
    assert answer.json() == {"status": "ok", "service": "mailjet"}
    assert control.calls == ["reset", "quiesce"]
    shown = control.http.get("/_emulator/requests").json()
    assert (shown["requests"], shown["dropped"], control.journal.generation) == ([], 0, generation + 1)
    assert abs(control.clock.offset) < timedelta(seconds=1)


def test_an_unanswered_exchange_shows_no_response() -> None:
    # A dropped or held request (a fault) was never answered: no response, not an empty string.
    entry = Journal(Clock(), capacity=10).record(SCOPE, b"{}", fault="fault-1")
    entry.status = None
    shown = entry.to_json()
    assert (shown["status"], shown["response"], shown["fault"]) == (None, None, "fault-1")


@pytest.mark.parametrize(("size", "too_large"), [(99, False), (100, False), (101, True)])
def test_read_capped_takes_a_body_of_exactly_the_limit(size: int, too_large: bool) -> None:

    from emulator.common.http import BodyTooLarge, read_capped

    messages = [{"type": "http.request", "body": b"x" * (size - 1), "more_body": True},
                {"type": "http.request", "body": b"x", "more_body": False}]

    async def receive() -> dict:
        return messages.pop(0)

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}, receive)
    if too_large:
        with pytest.raises(BodyTooLarge):
            asyncio.run(read_capped(request, 100))
    else:
        assert asyncio.run(read_capped(request, 100)) == b"x" * size


def test_an_answer_of_exactly_the_kept_size_is_kept() -> None:
    exact = b'"' + b"x" * (ANSWER_KEEP_BYTES - 2) + b'"'
    assert recorded_body(exact, 10) == "x" * (ANSWER_KEEP_BYTES - 2)


def test_basic_credentials_read_as_the_docstring_says() -> None:
    import base64

    from emulator.common.auth import basic_credentials

    def basic(text: bytes) -> str:
        return "Basic " + base64.b64encode(text).decode()

    assert basic_credentials(basic(b"key:secret")) == ("key", "secret")
    assert basic_credentials(basic(b"key:a:b").replace("Basic", "bASIC")) == ("key", "a:b")
    assert basic_credentials(basic(b"key:")) == ("key", "")
    assert basic_credentials(basic(b"key")) == ("key", None)  # no colon: no password at all
    for refused in (None, "", "Bearer abc", "Basic a2V5!Og==", "Basic a2V5Og", basic(b"\xff:x")):
        assert basic_credentials(refused) is None, refused


def test_a_read_of_the_newest_few_works_out_only_the_credentials_it_needs() -> None:
    # entries() filtered the whole journal (10,000 by default, `--journal-capacity` more), parsing
    # every exchange's credential, to answer the newest `limit`: each `GET requests?writeKey=`
    # did work growing with the history kept instead of with the answer.
    journal = Journal(Clock(), capacity=5_000)
    seen: list[bytes | None] = []

    def credential(scope, body):  # type: ignore[no-untyped-def]
        seen.append(body)
        return body.decode() if body else None

    journal.credential = credential
    for n in range(5_000):
        journal.record({**SCOPE, "method": "GET" if n % 2 else "POST"}, b"a" if n % 3 else b"b")
    newest = journal.entries(limit=3, tenant=lambda key: key == "a")
    assert [entry.id for entry in newest] == [4997, 4998, 5000]  # 4999 is "b"'s
    assert len(seen) == 4
    assert [entry.id for entry in journal.entries(method="get", limit=2, tenant=lambda key: key == "b")] == [4990, 4996]
    assert [entry.id for entry in journal.entries(path_contains="BATCH", limit=2)] == [4999, 5000]
    assert journal.entries(limit=0) == [] and len(journal.entries(limit=10_000)) == 5_000
    assert [entry.id for entry in journal.entries(method="PUT")] == []


@pytest.mark.parametrize("body", [
    b'{"writeKey":"secret","userId":"u","event":"bad",}',  # trailing comma: invalid JSON
    b'{"batch": [{"writeKey" : "sec\\"ret", "n": NaN}], "writeKey":\n"secret"}',
    b'{"userId":"u", "writeKey": "secret',  # cut inside the key
])
def test_a_write_key_in_a_body_that_is_no_json_is_hidden_too(body: bytes) -> None:
    # Such a body is shown as the text it came as (the tracking API answered 400 invalid_json).
    shown = Journal(Clock(), capacity=10).record(SCOPE, body).to_json()["body"]
    assert isinstance(shown, str) and "secret" not in shown and "sec\\" not in shown
    assert shown.count('"writeKey":"<redacted>"') == body.count(b'"writeKey"')
    assert '"userId":"u"' in shown or '"n": NaN' in shown  # the rest kept as it came
