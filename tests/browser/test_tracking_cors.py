"""analytics.js's calls from a page of another origin, in Chromium: the fake Segment's tracking API
answers them readably (CORS), and the control API stays unreadable to that page.

The page is served by a tiny static server on another port, and its script does what analytics-next's
dispatchers do (reference/segment.md §1.1): `fetch` POSTs of `text/plain` JSON to `/v1/t` and, batching,
to `/v1/b`, with `keepalive`; here also `Authorization: Basic` and `X-Retry-Count`, which make Chromium
send a preflight first. `navigator.sendBeacon` needs none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.browser.conftest import skip_module_without_browser

skip_module_without_browser()

from playwright.sync_api import Browser  # noqa: E402

PAGE = b"<!doctype html><html><head><title>shop</title></head><body>a shop using analytics.js</body></html>"

# What analytics-next's fetch and batched dispatchers send, with the headers that need a preflight.
SEND_CALLS = """
async ({segment, writeKey}) => {
  const headers = {'Content-Type': 'text/plain', 'Authorization': 'Basic ' + btoa(writeKey + ':')};
  const read = async (answer) => ({status: answer.status, body: await answer.json()});
  const track = await fetch(segment + '/v1/t', {
    method: 'POST', headers, keepalive: true,
    body: JSON.stringify({type: 'track', userId: 'page-u1', event: 'Added To Cart', messageId: 'page-t-1'}),
  });
  const batch = await fetch(segment + '/v1/b', {
    method: 'POST', headers: {...headers, 'X-Retry-Count': '1'}, keepalive: true,
    body: JSON.stringify({writeKey, sentAt: new Date().toISOString(), batch: [
      {type: 'identify', userId: 'page-u1', traits: {email: 'u1@example.com'}, messageId: 'page-b-1'},
      {type: 'page', anonymousId: 'page-anon', name: 'Cart', messageId: 'page-b-2'},
    ]}),
  });
  // analytics-next's `credentials: 'include'` setting: `*` would fail it, an echoed origin does not.
  const credentialed = await fetch(segment + '/v1/i', {
    method: 'POST', headers, credentials: 'include',
    body: JSON.stringify({userId: 'page-u2', messageId: 'page-i-1'}),
  });
  const beacon = navigator.sendBeacon(segment + '/v1/p',
    JSON.stringify({writeKey, anonymousId: 'page-anon', name: 'Thanks', messageId: 'page-p-1'}));
  const invalid = await fetch(segment + '/v1/t', {method: 'POST', headers, body: '{not json'});
  return {track: await read(track), batch: await read(batch), credentialed: await read(credentialed),
          beacon, invalid: await read(invalid)};
}
"""

READ_RATE_LIMIT = """
async ({segment, writeKey}) => {
  const answer = await fetch(segment + '/v1/b', {
    method: 'POST', headers: {'Content-Type': 'text/plain', 'Authorization': 'Basic ' + btoa(writeKey + ':')},
    body: JSON.stringify({writeKey, batch: [{type: 'track', userId: 'page-u1', event: 'E'}]}),
  });
  return {status: answer.status, reset: answer.headers.get('x-ratelimit-reset'),
          retryAfter: answer.headers.get('retry-after')};
}
"""

# The page tries to read the control API: CORS must keep it out.
READ_CONTROL_API = """
async ({segment}) => {
  const outcomes = {};
  for (const [name, path, init] of [
    ['events', '/_emulator/events', {}],
    ['requests', '/_emulator/requests', {}],
    ['reset', '/_emulator/reset', {method: 'POST', headers: {'X-Segjet-Token': 'guess'}}],
  ]) {
    try {
      const answer = await fetch(segment + path, init);
      outcomes[name] = 'read ' + answer.status;
    } catch (error) {
      outcomes[name] = error.name;
    }
  }
  return outcomes;
}
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test output is pytest's
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """A static page on its own port: another origin than the fake Segment."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def segment(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["segment_url"], timeout=30) as http:
        assert http.post("/_emulator/reset").status_code == 200
        yield http


def _run(browser: Browser, page_origin: str, script: str, stack: dict[str, Any]) -> Any:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(page_origin + "/shop")
        return page.evaluate(script, {"segment": stack["segment_url"], "writeKey": stack["write_key"]})
    finally:
        context.close()


def _stored_ids(segment: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = segment.get("/_emulator/events")
    assert answer.status_code == 200, answer.text
    return {event["messageId"]: event for event in answer.json()["events"]}


def test_a_page_of_another_origin_sends_calls_and_reads_the_answers(
    browser: Browser, page_origin: str, stack: dict[str, Any], segment: httpx.Client
) -> None:
    outcome = _run(browser, page_origin, SEND_CALLS, stack)
    for name in ("track", "batch", "credentialed"):
        assert outcome[name] == {"status": 200, "body": {"success": True}}, (name, outcome)
    assert outcome["beacon"] is True
    assert outcome["invalid"]["status"] == 400
    assert set(outcome["invalid"]["body"]) == {"code", "message"}
    # The beacon is not awaited by the page: wait for it to land.
    deadline = time.monotonic() + 10
    while "page-p-1" not in _stored_ids(segment) and time.monotonic() < deadline:
        time.sleep(0.05)
    stored = _stored_ids(segment)
    assert set(stored) == {"page-t-1", "page-b-1", "page-b-2", "page-i-1", "page-p-1"}, stored
    assert all(event["status"] == "accepted" and event["source"]["id"] for event in stored.values()), stored
    assert stored["page-t-1"]["event"] == "Added To Cart"


def test_a_page_reads_a_rate_limit_but_not_the_control_api(
    browser: Browser, page_origin: str, stack: dict[str, Any], segment: httpx.Client
) -> None:
    rule = {"path": "/v1/b", "status": 429, "retry_after": 9, "times": 1}
    assert segment.post("/_emulator/faults", json=rule).status_code == 201
    limited = _run(browser, page_origin, READ_RATE_LIMIT, stack)
    assert limited == {"status": 429, "reset": "9", "retryAfter": "9"}, limited

    outcomes = _run(browser, page_origin, READ_CONTROL_API, stack)
    assert outcomes == {"events": "TypeError", "requests": "TypeError", "reset": "TypeError"}, outcomes
    # The preflight of the POST with a token header was refused, so the reset never ran.
    assert segment.get("/_emulator/faults").json()["faults"], "the reset went through"
