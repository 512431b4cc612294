"""An async client for the Mailjet REST v3 calls the destination makes, for one account.

All accounts share one `aiohttp.ClientSession` (one connection pool per app); a `MailjetClient`
adds the account's credentials, Mailjet's error shape, and a cache of contact property definitions
so that a steady stream of identifies costs one managecontact call each.

aiohttp rather than httpx: measured on one event loop (benchmarks/, issue 10), an httpx request
cost ~800 µs of CPU and an aiohttp one ~50 µs; the destination's share of the round trip is mostly
this call.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp

from .json_body import read_json
from .keyring import MailjetAccount

MANAGECONTACT_ACTION = "addnoforce"
# Mailjet's page size maximum (reference/mailjet.md §1).
METADATA_PAGE_SIZE = 1000
# Property creations one identify runs at once: its new traits, created together, must neither take
# the connection pool every account shares nor meet Mailjet's per-key rate limit with a burst (429).
MAX_PARALLEL_CREATIONS = 32
# What managecontact says of a property in ErrorInfo.Properties when it is not defined or its value
# is not of the defined type (reference/mailjet.md §1, §3), lower-cased.
_DEFINITION_PROBLEMS = ("property not defined", "property type does not match definition")


def create_http_client() -> aiohttp.ClientSession:
    """The pooled HTTP client an app shares across accounts and requests; make it in the serving loop."""
    # Segment times a destination out after about 5 s (webhooks doc), so a slow Mailjet call must
    # fail before that and be answered 503 for Segment to retry it.
    # Idle connections are closed after 4 s, before a server with a 5 s keep-alive (uvicorn's, as the
    # fake Mailjet's) closes them: a POST never goes out on a connection being closed.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=4.0),
        timeout=aiohttp.ClientTimeout(total=4.0, connect=2.0),
        headers={"User-Agent": "segjet-destination/0.1", "Accept": "application/json"},
        # No cookie jar: the session serves every account of the key ring, and aiohttp's default jar
        # sent a cookie Mailjet set on one account's call with every account's later calls (the
        # official clients keep none: mailjet-apiv3-python calls through requests without a session).
        cookie_jar=aiohttp.DummyCookieJar(),
    )


# The 4xx statuses Segment's delivery retries (reference/segment.md §5.1: 429, and the Actions
# framework's 408 and 423): a Mailjet answering one of them is slow or busy, the message is not at fault.
TEMPORARY_4XX = frozenset({408, 423, 429})


class MailjetError(Exception):
    """Mailjet answered an error (`status` is its HTTP status) or could not be reached (`status` None)."""

    def __init__(self, status: int | None, message: str, info: Any = None, path: str | None = None) -> None:
        super().__init__(status, message, info)
        self.status = status
        self.message = message
        self.info = info
        # The path called (`/v3/REST/...`): which resource a 404 is about.
        self.path = path

    @property
    def temporary(self) -> bool:
        """Worth retrying later: unreachable, timed out (Mailjet's 408 too), rate-limited, locked, a
        server error, or an answer with no error status that is still no REST envelope (`_request`).
        That last one is a fault of the server side (an outage page served 200, by Mailjet or a
        proxy before it), not of the message, and the contact may not be updated: answered 400,
        Segment would drop the message."""
        return self.status is None or self.status in TEMPORARY_4XX or self.status >= 500 or self.status < 400

    @property
    def about_property_definitions(self) -> bool:
        """Mailjet refused a property as not defined or not of its defined type: the 400
        `{"ErrorInfo": {"Properties": [{"plan": "Property not defined"}]}, ...}`. Other 400s that
        also say "Object properties invalid" (an invalid Email: ErrorInfo "MJ08 Property Email is
        invalid: ...") are not."""
        problems = _field(self.info, "Properties") if self.status == 400 and isinstance(self.info, Mapping) else None
        if not isinstance(problems, list):
            return False
        return any(
            isinstance(problem, Mapping) and any(isinstance(text, str) and text.lower() in _DEFINITION_PROBLEMS for text in problem.values())
            for problem in problems
        )

    def __str__(self) -> str:
        status = "unreachable" if self.status is None else str(self.status)
        detail = f" ({self.info if isinstance(self.info, str) else json.dumps(self.info)})" if self.info else ""
        return f"Mailjet {status}: {self.message}{detail}"


@dataclass(frozen=True)
class PropertyDefinition:
    name: str
    datatype: str


def _field(body: Mapping[str, Any], name: str) -> Any:
    """`body[name]`, matching the key case-insensitively: Mailjet's casing varies ("Datatype"/"DataType")."""
    if name in body:
        return body[name]
    lowered = name.lower()
    return next((value for key, value in body.items() if key.lower() == lowered), None)


def _error_from(status: int, reason: str | None, raw: bytes, path: str) -> MailjetError:
    message = reason or f"HTTP {status}"
    info: Any = None
    try:
        body = read_json(raw)
    except ValueError:
        # Some errors have no JSON body: 429 answers an HTML page, an old 401 an empty body.
        body = None
    if isinstance(body, Mapping):
        error_message = _field(body, "ErrorMessage")
        if error_message:
            message = error_message if isinstance(error_message, str) else json.dumps(error_message)
        info = _field(body, "ErrorInfo") or None
    return MailjetError(status, message, info, path)


class MailjetClient:
    def __init__(self, http: aiohttp.ClientSession, account: MailjetAccount) -> None:
        self.http = http
        self.account = account
        token = base64.b64encode(f"{account.api_key}:{account.secret_key}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        # Property definitions by lower-cased name. Guess: Mailjet matches property names
        # case-insensitively, as it does JSON keys, so "Plan" and "plan" are one property.
        self._definitions: dict[str, PropertyDefinition] | None = None
        self._definitions_lock = asyncio.Lock()
        # Bumped by `forget_property_definitions`: definitions read before a forget are not cached after it.
        self._definitions_epoch = 0

    async def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> dict[str, Any]:
        url = f"{self.account.base_url}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers if body is None else self._json_headers
        try:
            # Redirects are not followed: a client following a 301/302 re-sends a POST as a GET (the
            # contactmetadata list taken for a created property, a managecontact never made) and
            # drops Authorization on another origin (a redirect read as a wrong key pair, a 401).
            async with self.http.request(method, url, params=params, data=data, headers=headers, allow_redirects=False) as response:
                status, reason, raw = response.status, response.reason, await response.read()
                location = response.headers.get("Location")
        except asyncio.TimeoutError as exc:
            raise MailjetError(None, f"timed out calling {method} {path}") from exc
        except aiohttp.ClientError as exc:
            raise MailjetError(None, f"cannot reach {self.account.base_url}: {exc.__class__.__name__} {exc}".strip()) from exc
        if status >= 400:
            raise _error_from(status, reason, raw, path)
        if 300 <= status < 400 and location:
            # No REST envelope, so temporary (MailjetError.temporary); the text says what to fix.
            raise MailjetError(status, f"{method} {path} was redirected to {location}: the account's base URL should be the one Mailjet serves its API at", path=path)
        try:
            answer = read_json(raw)
        except ValueError as exc:
            raise MailjetError(status, f"{method} {path} answered a body that is not JSON") from exc
        if not isinstance(answer, dict) or not isinstance(_field(answer, "Data"), list):
            raise MailjetError(status, f"{method} {path} answered no Data array")
        return answer

    async def _fetch_definitions(self) -> dict[str, PropertyDefinition]:
        definitions: dict[str, PropertyDefinition] = {}
        offset = 0
        while True:
            page = await self._request("GET", "/v3/REST/contactmetadata", params={"Limit": METADATA_PAGE_SIZE, "Offset": offset})
            data = _field(page, "Data")
            for item in data:
                name, datatype = _field(item, "Name"), _field(item, "Datatype")
                if isinstance(name, str) and isinstance(datatype, str):
                    definitions[name.lower()] = PropertyDefinition(name, datatype)
            offset += len(data)
            if len(data) < METADATA_PAGE_SIZE:
                return definitions

    async def property_definitions(self) -> dict[str, PropertyDefinition]:
        """The account's contact properties by lower-cased name; fetched once, then cached."""
        if self._definitions is None:
            async with self._definitions_lock:
                if self._definitions is None:
                    epoch = self._definitions_epoch
                    fetched = await self._fetch_definitions()
                    if epoch == self._definitions_epoch:
                        self._definitions = fetched
                    return fetched
        return self._definitions

    def forget_property_definitions(self) -> None:
        """Drop the cache (someone may have deleted or retyped a property in Mailjet's UI)."""
        self._definitions = None
        self._definitions_epoch += 1

    async def _create_property(self, name: str, datatype: str) -> PropertyDefinition:
        answer = await self._request("POST", "/v3/REST/contactmetadata", body={"Name": name, "Datatype": datatype, "NameSpace": "static"})
        created = _field(answer, "Data")[0] if _field(answer, "Data") else {}
        return PropertyDefinition(_field(created, "Name") or name, _field(created, "Datatype") or datatype)

    async def define_properties(
        self, wanted: Mapping[str, str]
    ) -> tuple[dict[str, PropertyDefinition], list[PropertyDefinition], dict[str, MailjetError]]:
        """Create the properties of `wanted` (name → datatype) that the account lacks.

        Answers all definitions, the ones created, and the names Mailjet refused to define (a 400:
        that property cannot be, the others can; its rules for names are undocumented) with its
        error. Any other failure (the account refused, an outage) is raised. Creation is serialised
        per account so that concurrent identifies carrying the same new trait create it once.
        """
        definitions = await self.property_definitions()
        if all(name.lower() in definitions for name in wanted):
            return definitions, [], {}
        async with self._definitions_lock:
            epoch = self._definitions_epoch
            definitions = self._definitions if self._definitions is not None else await self._fetch_definitions()
            definitions, created, failures = await self._create_missing(wanted, definitions)
            if failures:
                # Another writer may have created the same name meanwhile (MJ18): re-read before
                # failing. What this call created is defined whether or not the re-read shows it yet.
                definitions = await self._fetch_definitions()
                definitions.update((definition.name.lower(), definition) for definition in created)
                # A name the cache took for defined may be one Mailjet has lost since: it is created
                # now. A name that failed is not tried again (its error is the answer).
                untried = {name: datatype for name, datatype in wanted.items() if name not in failures}
                definitions, created_now, failed_now = await self._create_missing(untried, definitions)
                created += created_now
                # The error of a name still missing: the 400 of a name that lost a creation race
                # (MJ18) would turn another name's outage (503, retried) into a final 400.
                failures = {name: error for name, error in failures.items() if name.lower() not in definitions} | failed_now
            # Dropped meanwhile (a property deleted in Mailjet): this copy may hold it still.
            if epoch == self._definitions_epoch:
                self._definitions = definitions
            refused = {name: error for name, error in failures.items() if isinstance(error, MailjetError) and error.status == 400}
            for name, error in failures.items():
                if name not in refused:
                    raise error
            return definitions, created, refused

    async def _create_missing(
        self, wanted: Mapping[str, str], definitions: dict[str, PropertyDefinition]
    ) -> tuple[dict[str, PropertyDefinition], list[PropertyDefinition], dict[str, BaseException]]:
        """Create the names of `wanted` missing from `definitions`: the definitions with those
        created, the ones created, and each failed name's error."""
        missing = {name: datatype for name, datatype in wanted.items() if name.lower() not in definitions}
        turns = asyncio.Semaphore(MAX_PARALLEL_CREATIONS)
        epoch = self._definitions_epoch

        async def create(name: str, datatype: str) -> PropertyDefinition:
            async with turns:
                definition = await self._create_property(name, datatype)
            # Cached at once: the identify's time may run out before the others are made, and its
            # retry must not make this one again (MJ18, a call spent) but go on with the rest.
            if self._definitions is not None and epoch == self._definitions_epoch:
                self._definitions[definition.name.lower()] = definition
            return definition

        results = await asyncio.gather(*(create(n, t) for n, t in missing.items()), return_exceptions=True)
        created = [result for result in results if isinstance(result, PropertyDefinition)]
        definitions = {**definitions, **{definition.name.lower(): definition for definition in created}}
        return definitions, created, {name: result for name, result in zip(missing, results) if isinstance(result, BaseException)}

    async def upsert_contact(self, list_id: int, email: str, name: str | None, properties: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update the contact and add it to the list without touching its subscription
        status (`addnoforce`, DESIGN §4). Answers Mailjet's Data[0] (ContactID, Email, ...)."""
        body: dict[str, Any] = {"Email": email, "Action": MANAGECONTACT_ACTION}
        # Without Name, managecontact leaves the contact's current name as it is.
        if name is not None:
            body["Name"] = name
        if properties:
            body["Properties"] = dict(properties)
        answer = await self._request("POST", f"/v3/REST/contactslist/{list_id}/managecontact", body=body)
        data = _field(answer, "Data")
        return data[0] if data and isinstance(data[0], dict) else {}
