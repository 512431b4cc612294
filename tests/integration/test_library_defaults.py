"""Defaults of the HTTP libraries segjet uses that would make it act unlike the real services:
cookie jars kept between outgoing calls, proxy settings read from the environment."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from destination.client import MailjetClient, create_http_client
from destination.keyring import MailjetAccount
from emulator.common.server import LoopThread, serve_in_background
from emulator.harness.client import SegjetClient
from emulator.mailjet.outbound import HttpTransport

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class CookieSetter:
    """An endpoint that answers every call with a cookie, as one behind a sticky load balancer does,
    and keeps the Cookie header of each call it got."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])

    async def _endpoint(self, request: Request) -> Response:
        self.cookies.append(request.headers.get("cookie"))
        # Shaped as a Mailjet REST answer, so the destination's client reads it as a success.
        response = JSONResponse({"Count": 0, "Data": [], "Total": 0})
        response.set_cookie("session", f"call-{len(self.cookies)}")
        return response


@pytest.fixture
def cookie_setter() -> Iterator[tuple[CookieSetter, LoopThread, str]]:
    """The endpoint, the loop it runs on, and its URL at a host name (aiohttp's jar keeps no cookie of
    an IP address: at 127.0.0.1 the defect does not show)."""
    setter = CookieSetter()
    loop_thread, runner, urls = serve_in_background({"setter": setter.app})
    try:
        yield setter, loop_thread, urls["setter"].replace("127.0.0.1", "localhost")
    finally:
        loop_thread.run(runner.stop())
        loop_thread.close()


def test_mailjet_webhooks_and_segment_forwards_send_no_cookie_back(cookie_setter):
    # One aiohttp session makes every account's webhook and Segment calls. With its default cookie
    # jar, a cookie one webhook endpoint set went back with every later call to that host: another
    # account's webhook, the Segment forwards. GUESS: Mailjet's senders keep no cookies.
    setter, loop_thread, url = cookie_setter
    transport = HttpTransport()

    async def calls() -> list[Any]:
        try:
            return [
                await transport.post_json(f"{url}/hook-of-account-a", {"event": "sent"}, {}, 5.0),
                await transport.post_json(f"{url}/hook-of-account-b", {"event": "open"}, {}, 5.0),
                await transport.post_json(f"{url}/v1/batch", {"batch": []}, {"Authorization": "Basic eDo="}, 5.0),
            ]
        finally:
            await transport.aclose()

    outcomes = loop_thread.run(calls())
    assert [outcome.status for outcome in outcomes] == [200, 200, 200]
    assert setter.cookies == [None, None, None]


def test_the_destination_sends_mailjet_no_cookie_back(cookie_setter):
    # The destination's one session serves every account of its key ring: with aiohttp's default jar
    # a cookie Mailjet set on one account's call went with every account's later calls.
    # mailjet-apiv3-python sends each call through requests without a session, keeping none.
    setter, loop_thread, url = cookie_setter

    async def calls() -> None:
        http = create_http_client()
        try:
            for api_key in ("key-a", "key-b"):
                client = MailjetClient(http, MailjetAccount(url, api_key, "secret"))
                await client.property_definitions()
        finally:
            await http.close()

    loop_thread.run(calls())
    assert setter.cookies == [None, None]


@pytest.fixture
def dead_proxy(monkeypatch: pytest.MonkeyPatch) -> str:
    """Proxy variables naming a port nothing listens on, as a CI runner behind a corporate proxy has
    them (without 127.0.0.1 in NO_PROXY)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{unused.getsockname()[1]}"
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return proxy


def test_the_harness_talks_to_the_stack_directly_whatever_the_proxy_variables(segjet, dead_proxy):
    # httpx and requests (under analytics-python) read HTTP(S)_PROXY/ALL_PROXY by default: every
    # call of the pytest fixture and of `segjet check` to the stack on 127.0.0.1 went to the proxy,
    # which cannot reach it. The harness only ever talks to segjet's own servers (its control API).
    client = SegjetClient(segjet.info)
    try:
        message_id = client.identify("proxy-user", {"email": "proxy-user@example.com"})
        assert client.events(message_id=message_id)[0]["status"] == "accepted"
        assert client.mailjet("GET", "/v3/REST/contact").status_code == 200
        client.wait_for_contact("proxy-user@example.com")
    finally:
        client.close()


def test_the_dashboards_trace_reads_both_servers_directly_whatever_the_proxy_variables(segjet, dead_proxy):
    # The trace page's server side reads both fakes' control APIs with httpx, which went through the
    # proxy variables too: behind a proxy, the trace of a user segjet had stored came back empty.
    client = SegjetClient(segjet.info)
    try:
        client.identify("traced-user", {"email": "traced-user@example.com"})
        client.wait_for_contact("traced-user@example.com")
        answer = client.http.get(f"{segjet.info['segment_url']}/_emulator/dashboard/trace", params={"user": "traced-user"})
    finally:
        client.close()
    assert answer.status_code == 200, answer.text
    trace = answer.json()
    assert trace["userId"] == "traced-user" and trace["contact"] is not None
