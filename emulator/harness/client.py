"""A client for a running segjet stack: drive it and wait on its state over HTTP.

Used by the pytest plugin, `segjet demo` and `segjet check`. Waits poll server state with a
short interval; nothing sleeps a fixed time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import httpx

import contracts
from destination.mapping import MappingError, email_field

T = TypeVar("T")
_POLL_SECONDS = 0.02
_BODY_LIMIT = 500
_PROBE_SECONDS = 5.0
# Every call this client makes carries it, so that its own REST calls (wait_for_contact polls
# contactdata) can be told from the app's in the fake Mailjet's journal.
HARNESS_USER_AGENT = "segjet-harness/0.1"
# How a control call names its tenant (README "Workspaces"; the fake Mailjet's accounts): the
# workspace of a write key, the account of an API key. Without them it acts on the default workspace
# and the configured account, whatever keys this client's own traffic carries. Query parameters, not
# the headers: httpx sends only ASCII header values, and a write key may hold other characters.
_WORKSPACE_PARAM = "writeKey"
_ACCOUNT_PARAM = "apiKey"
# requests' proxy keys: per scheme, and "all" (ALL_PROXY).
_NO_PROXIES: dict[str, str | None] = {"http": None, "https": None, "all": None}


def _addressed_to(message: dict[str, Any]) -> str | None:
    """The address the Mailjet destination writes an identify to (`destination.mapping.email_field`),
    without its checks: an address the destination refused is still the one the identify was for."""
    try:
        found = email_field(message)
    except MappingError:  # traits or context that is no object: the identify named no address
        return None
    return found[1].strip() if found is not None and isinstance(found[1], str) else None


class SegjetTimeout(AssertionError):
    """A wait ran out of time; the message says what was last seen, and `last_seen` holds that alone."""

    def __init__(self, message: str, last_seen: str = "") -> None:
        super().__init__(message)
        self.last_seen = last_seen


class SegjetHTTPError(httpx.HTTPStatusError):
    """A 4xx/5xx answer; the message carries the request and the server's own explanation."""


def checked(response: httpx.Response) -> httpx.Response:
    """`response` when it succeeded; otherwise SegjetHTTPError, since httpx's message drops the body
    that says what was wrong (a bad window, a taken key, Mailjet's ErrorMessage)."""
    if response.is_success:
        return response
    request = response.request
    raise SegjetHTTPError(
        f"{request.method} {request.url} answered {response.status_code} {response.reason_phrase}: "
        f"{_explanation(response)}",
        request=request,
        response=response,
    )


def _explanation(response: httpx.Response) -> str:
    """The error text of a segjet control answer, Mailjet's REST or Send API, else the raw body, cut."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if "error" in body:
            return str(body["error"])
        if body.get("ErrorMessage") or body.get("ErrorInfo"):
            return " ".join(str(body[name]) for name in ("ErrorMessage", "ErrorInfo") if body.get(name))
        send_errors = [
            f"{', '.join(error.get('ErrorRelatedTo') or [])}: {error.get('ErrorMessage')}"
            for message in body.get("Messages") or []
            if isinstance(message, dict)
            for error in message.get("Errors") or []
            if isinstance(error, dict)
        ]
        if send_errors:
            return "; ".join(send_errors)
    text = response.text
    return text if len(text) <= _BODY_LIMIT else text[:_BODY_LIMIT] + "…"


class SegjetClient:
    """The running stack and helpers to drive it; attributes mirror `segjet up --ready-file`."""

    def __init__(self, info: dict[str, Any], http: httpx.Client | None = None) -> None:
        """`http`: connections to share with the client that made them (`for_next_test`), not closed here."""
        self.info = info
        # Paths are appended to these ("/_emulator/..."): a base URL given with its trailing slash (as
        # `dashboard_url` is written) would make every call "//_emulator/...", which no server routes.
        self.segment_url: str = info["segment_url"].rstrip("/")
        self.mailjet_url: str = info["mailjet_url"].rstrip("/")
        self.write_key: str = info["write_key"]
        self.mailjet_api_key: str = info["mailjet_api_key"]
        self.mailjet_secret_key: str = info["mailjet_secret_key"]
        # None: not given (`segjet check` without --list-id); the scenario reads the list the Mailjet
        # tile of the write key's workspace writes to.
        self.list_id: int | None = None if info.get("list_id") is None else int(info["list_id"])
        # Known when the stack was started here; `segjet check` against running servers may not know them.
        self.destination_url: str | None = info.get("destination_url")
        self.dashboard_url: str | None = info.get("dashboard_url")
        self.auth_key: str | None = info.get("auth_key")
        self.control_token: str | None = info.get("control_token")
        # The control token travels in its own header, so it never collides with Mailjet's Basic auth.
        headers = {"User-Agent": HARNESS_USER_AGENT}
        if self.control_token:
            headers["X-Segjet-Token"] = self.control_token
        # trust_env=False: httpx sends through HTTP(S)_PROXY/ALL_PROXY by default, and a CI runner's
        # proxy cannot reach the stack's loopback ports; this client only ever talks to segjet.
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=30, headers=headers, trust_env=False)
        self._analytics: Any = None

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        # The analytics client posts synchronously: no consumer thread to shut down.
        if self._owns_http:
            self.http.close()

    def for_next_test(self) -> SegjetClient:
        """A client as this one was made (its `info`), over this one's connections: what a test
        changes on it (`write_key`, say) stays with that test. A new httpx client cost ~40 ms, eight
        times a reset."""
        return SegjetClient(dict(self.info), http=self.http)

    def service_at(self, url: str) -> str | None:
        """What `/_emulator/health` at `url` says it is ("segment", "mailjet"); None when nothing there
        says (no server, another app, a body without `service`)."""
        try:
            # A server slow to say what it is is left to the calls that follow (their own timeouts).
            body = self.http.get(f"{url}/_emulator/health", timeout=_PROBE_SECONDS).json()
        except (httpx.HTTPError, ValueError):
            return None
        service = body.get("service") if isinstance(body, dict) else None
        return service if isinstance(service, str) else None

    def reset(self) -> None:
        """Both fakes back to fresh, with no delivery from before this call landing after it.

        Each reset answers once the calls its server had in flight are answered (each within its
        timeout), and a request a fault held is dropped. Mailjet, then Segment, then Mailjet again:
        the first answers after its email-event forwards reached the old Segment; Segment's answers
        after the destination's last Mailjet call, which may have reached the fresh Mailjet; the
        second Mailjet reset clears that. Neither the destination's writes nor the second reset
        start any call to Segment.
        """
        for url in (self.mailjet_url, self.segment_url, self.mailjet_url):
            checked(self.http.post(f"{url}/_emulator/reset"))

    def segment(self, method: str, path: str, **kwargs: Any) -> Any:
        """A fake Segment control call, in the workspace of this client's write key: where its identify
        and track calls are stored (a key no source has is a 404 saying so). Answers the JSON, or None
        for an answer without a body (`DELETE /_emulator/faults/{id}` answers 204)."""
        params = {_WORKSPACE_PARAM: self.write_key, **(kwargs.pop("params", None) or {})}
        response = checked(self.http.request(method, f"{self.segment_url}{path}", params=params, **kwargs))
        return response.json() if response.content else None

    def mailjet(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A Mailjet REST call with the account's key pair; answers the raw response."""
        return self.http.request(
            method, f"{self.mailjet_url}{path}", auth=(self.mailjet_api_key, self.mailjet_secret_key), **kwargs
        )

    def wait_until(
        self, probe: Callable[[], T | None], timeout: float, what: str, last_seen: Callable[[], str] | None = None
    ) -> T:
        """Poll `probe` until it answers something other than None; on timeout the message ends with
        `last_seen()`, asked once then, so the failure shows the state that did not match."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                seen = last_seen() if last_seen else ""
                raise SegjetTimeout(f"timed out after {timeout}s waiting for {what}" + (f"; last seen: {seen}" if seen else ""), seen)
            time.sleep(_POLL_SECONDS)

    # -- Segment side ---------------------------------------------------------------------
    @property
    def analytics(self) -> Any:
        """An analytics-python client pointed at the fake Segment, posting synchronously; rebuilt when
        `write_key` or `segment_url` changed since it was built, so calls go where the control calls look."""
        built_for = None if self._analytics is None else (self._analytics.write_key, self._analytics.host)
        if built_for != (self.write_key, self.segment_url):
            from segment.analytics import Client

            # The client replaced needs no shutdown: posting synchronously, it has no consumer thread.
            # requests, under analytics-python, reads the proxy variables too; a proxy set to None for
            # a scheme overrides the environment's (requests drops None settings after merging them).
            # A copy: requests adds the environment's other entries to the dict it is given.
            self._analytics = Client(
                self.write_key, host=self.segment_url, sync_mode=True, max_retries=0, proxies=dict(_NO_PROXIES)
            )
        return self._analytics

    def identify(self, user_id: str, traits: dict[str, Any]) -> str:
        """Send an identify call; answers its messageId, to look it up in `events` or `deliveries`."""
        return self.analytics.identify(user_id, traits)[1]["messageId"]

    def track(self, user_id: str, event: str, properties: dict[str, Any] | None = None) -> str:
        """Send a track call; answers its messageId."""
        return self.analytics.track(user_id, event, properties or {})[1]["messageId"]

    def events(
        self,
        *,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        source: str | None = None,
        status: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored messages, newest last. Named parameters, because the server ignores a query name it
        does not know: a misspelt filter would silently answer every message."""
        params = {"type": type, "userId": user_id, "event": event, "source": source, "status": status,
                  "messageId": message_id, "limit": limit}
        return self.segment("GET", "/_emulator/events", params=_present(params))["events"]

    def wait_for_event(self, event: str | None = None, user_id: str | None = None, timeout: float = 10) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.events(event=event, user_id=user_id, status="accepted", limit=1)
            return found[-1] if found else None

        def last_seen() -> str:
            recent = self.events(user_id=user_id, limit=5)
            return ", ".join(_describe_event(message) for message in recent) or "no events"

        return self.wait_until(probe, timeout, f"event {event!r} of user {user_id!r} in the fake Segment", last_seen)

    def deliveries(
        self,
        *,
        message_id: str | None = None,
        state: str | None = None,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Delivery records to the Mailjet destination, newest last (named parameters as in `events`)."""
        params = {"messageId": message_id, "state": state, "userId": user_id, "limit": limit}
        return self.segment("GET", "/_emulator/deliveries", params=_present(params))["deliveries"]

    def advance_clock(self, duration: str) -> dict[str, Any]:
        return self.segment("POST", "/_emulator/clock", json={"advance": duration})

    def define_audience(self, name: str, rule: dict[str, Any], key: str | None = None) -> str:
        body: dict[str, Any] = {"name": name, "rule": rule}
        if key is not None:
            body["key"] = key
        return self.segment("POST", "/_emulator/engage/audiences", json=body)["key"]

    def sync_engage(self) -> dict[str, Any]:
        return self.segment("POST", "/_emulator/engage/sync")

    # -- Mailjet side ---------------------------------------------------------------------
    def contact_properties(self, email: str) -> dict[str, str] | None:
        response = self.mailjet("GET", f"/v3/REST/contactdata/{path_segment(email)}")
        if response.status_code == 404:
            return None
        data = checked(response).json()["Data"]
        return {item["Name"]: item["Value"] for item in data[0]["Data"]} if data else None

    def wait_for_contact(
        self, email: str, properties: dict[str, Any] | None = None, timeout: float = 10
    ) -> dict[str, str]:
        """The contact's properties once it exists (and carries `properties`, compared as strings; a
        None there: the contact has no such property, as the destination sends no null trait)."""
        expected = {name: None if value is None else _as_mailjet_string(value) for name, value in (properties or {}).items()}
        # What the last probe read, for the timeout message (no extra request).
        seen: list[dict[str, str] | None] = [None]

        def probe() -> dict[str, str] | None:
            seen[0] = current = self.contact_properties(email)
            if current is None or any(current.get(name) != value for name, value in expected.items()):
                return None
            return current

        def last_seen() -> str:
            found = "no such contact" if seen[0] is None else f"properties {seen[0]}"
            return f"{found}; {self._fate_of_identify(email, made=seen[0] is not None)}"

        return self.wait_until(probe, timeout, f"Mailjet contact {email} with {expected or 'any properties'}", last_seen)

    def _fate_of_identify(self, email: str, made: bool) -> str:
        """What the fake Segment did with the newest identify of this workspace carrying `email`
        (among the last 1,000), for a timeout: the delivery's record holds why no contact came, or
        which traits the destination skipped; `made`: this account has the contact."""
        wanted = email.strip().lower()
        for message in reversed(self.events(type="identify", limit=1000)):
            if (_addressed_to(message) or "").lower() != wanted:
                continue
            said = f"identify {message['messageId']} of user {message.get('userId')!r}"
            if message.get("status") != "accepted":
                return f"{said}: {message.get('status')} ({message.get('discard_reason')})"
            records = self.deliveries(message_id=message["messageId"])
            if not records:
                return f"{said}: no delivery record (is the Mailjet destination enabled?)"
            record = records[-1]
            said += f": delivery {record['state']}" + (f": {record['reason']}" if record.get("reason") else "")
            if record["state"] != "delivered":
                return said
            answer = record["attempts"][-1].get("response") if record.get("attempts") else None
            skipped = answer.get("skipped") if isinstance(answer, dict) else None
            if isinstance(skipped, list) and skipped:
                said += "; the destination skipped " + ", ".join(
                    f"{item.get('trait')} ({item.get('reason')})" for item in skipped if isinstance(item, dict)
                )
            if not made:
                said += f"; this account has no such contact{self._why_no_contact()}"
            return said
        return "no identify with this email in the fake Segment"

    def _why_no_contact(self) -> str:
        """For a delivered identify whose contact this account lacks: whether the workspace's Mailjet
        tile writes to another account (its key is not this account's App Connections key)."""
        tile_key = (self.segment("GET", "/_emulator/destinations/mailjet").get("settings") or {}).get("apiKey")
        page = checked(self.http.get(f"{self.mailjet_url}/_emulator/app-connections/segment", params=self._account())).json()
        if tile_key != page.get("authenticationKey"):
            return (": the workspace's Mailjet tile writes to another account (GET /_emulator/destinations/mailjet"
                    " shows its authentication key)")
        return " now (deleted, or the account reset, since?)"

    def mailjet_requests(
        self, method: str | None = None, path: str | None = None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """The calls this client's Mailjet account made (the fake Mailjet's request journal), newest
        last, filtered by method and a path fragment."""
        return self.mailjet_journal(method, path, limit)["requests"]

    def mailjet_journal(
        self, method: str | None = None, path: str | None = None, limit: int = 10_000
    ) -> dict[str, Any]:
        """The journal's whole answer, as `mailjet_requests` asks it: `requests`, and the journal's
        `capacity` and the oldest entries it has `dropped` (a call older than those is not there)."""
        params = {"method": method, "path": path, "limit": limit}
        response = self.http.get(
            f"{self.mailjet_url}/_emulator/requests", params={**_present(params), **self._account()}
        )
        return checked(response).json()

    def mailjet_email_events(self, message_id: int) -> list[dict[str, Any]]:
        response = self.http.get(
            f"{self.mailjet_url}/_emulator/email-events", params={"MessageID": message_id, **self._account()}
        )
        return checked(response).json()["email_events"]

    def mailjet_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the App Connections → Segment settings of this client's Mailjet account;
        answer the result."""
        url = f"{self.mailjet_url}/_emulator/app-connections/segment"
        return checked(self.http.put(url, json=changes, params=self._account())).json()

    def send_email(self, to: str, subject: str, html: str) -> int:
        response = self.mailjet(
            "POST",
            "/v3.1/send",
            json={
                "Messages": [
                    {
                        "From": {"Email": "demo@segjet.test", "Name": "segjet"},
                        "To": [{"Email": to}],
                        "Subject": subject,
                        "HTMLPart": html,
                    }
                ]
            },
        )
        return checked(response).json()["Messages"][0]["To"][0]["MessageID"]

    def emit_email_event(self, message_id: int, event: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post(
            f"{self.mailjet_url}/_emulator/messages/{message_id}/events", json={"event": event, **fields},
            params=self._account(),
        )
        return checked(response).json()

    def _account(self) -> dict[str, str]:
        """Names this client's Mailjet account on an account-level control call (the messages it sent,
        its App Connections page); a key no account has is a 404 saying so."""
        return {_ACCOUNT_PARAM: self.mailjet_api_key}

    # -- contracts ------------------------------------------------------------------------
    @staticmethod
    def assert_contract(name: str, payload: Any) -> None:
        violations = contracts.validate(name, payload)
        assert not violations, f"payload breaks contract {name}:\n" + "\n".join(f"  {v}" for v in violations)


def path_segment(value: str) -> str:
    """`value` as one URL path segment: an email may hold '#', '?', '/' or '%', which would end or split the path."""
    return quote(value, safe="")


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}


def _describe_event(message: dict[str, Any]) -> str:
    what = message.get("event") or message.get("type")
    if message.get("status") == "accepted":
        return f"{what} accepted"
    return f"{what} discarded ({message.get('discard_reason')})"


def _as_mailjet_string(value: Any) -> str:
    # Mailjet answers contactdata values as strings; booleans as "true"/"false".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
