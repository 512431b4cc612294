"""HTTP of the fake Mailjet: parse the request, call the model, render Mailjet's response shapes.

The public API is matched by hand rather than by Starlette path templates because Mailjet
paths are case-insensitive (`/ManageContact` works) and an id may be a percent-encoded email
(`/contact/a%2Bb%40x.com`), which must be decoded segment by segment from the raw path.

With `config.data_dir`, the state is kept in `DIR/mailjet.sqlite3` (storage.py): loaded at start,
and what each request changed is written before its response starts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import unquote, unquote_plus

from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from ..common.auth import basic_credentials
from ..common.clock import Clock
from ..common.control import ControlError, control_error_response, control_routes
from ..common.fault_routes import basic_username, fault_routes, mailjet_fault_response, service_middleware
from ..common.faults import FaultRules
from ..common.http import CONNECTION_CLOSE, BeforeAnswer, BodyTooLarge, read_capped
from ..common.journal import CONTROL_PREFIX, Journal
from ..common.openapi import openapi_route
from ..config import BundleConfig, BundleUrls
from ..dashboard import mailjet_dashboard_routes
from .account_routes import account_routes, named_api_key, scoped_reset, tenant_of
from .event_routes import email_event_routes
from .events import EmailEvents
from .models import (
    MAX_BODY_BYTES, SERVICE, Account, Contact, EventCallback, MailjetError, PropertyDefinition, Query, body_too_large,
    paginate, read_rest_body,
)
from .openapi import openapi_document
from .send import SendError, method_not_allowed, payload_too_big, read_send_body, send
from .service import MailjetService
from .storage import MailjetStore

log = logging.getLogger(__name__)
T = TypeVar("T")

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
AUTH_FAILURE = (
    "API key authentication/authorization failure. You may be unauthorized to access the API or your API key "
    "may be expired. Visit API keys management section to check your keys."
)
# Filters whose values are email addresses: an old client sends their `+` unencoded, and a `+`
# is never a space in an address, so these keep it literally (reference §0).
_EMAIL_FILTERS = {"email", "contactemail", "contactalt"}

Handler = Callable[[Account, Request, list[str]], Response]


class AnyPathConvertor(PathConvertor):
    """Like `path`, and also across newlines: an id may hold a percent-encoded `%0A`, which the
    `path` convertor's `.*` does not match, leaving Starlette to answer a plain-text 404."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPathConvertor())


# ---------------------------------------------------------------- rendering


def envelope(data: list[dict[str, Any]], status: int = 200, total: int | None = None) -> JSONResponse:
    """Every REST v3 answer: `{"Count": len(Data), "Data": [...], "Total": len(Data)}`. Documented
    (filtering guide, "The Count Filter"): without countOnly, Count and Total "only show you the
    number of elements extracted and not the global number". `total`: the one `paginate` reports."""
    count = len(data) if total is None else total
    return JSONResponse({"Count": count, "Data": data, "Total": count}, status)


# The field names of each listing's rows (the keys its render gives), which Sort may name. Known
# before any row is rendered, so `Sort=Unknown` is refused whether or not anything matched.
CONTACT_FIELDS = (
    "CreatedAt", "DeliveredCount", "Email", "ExclusionFromCampaignsUpdatedAt", "ID", "IsExcludedFromCampaigns",
    "IsOptInPending", "IsSpamComplaining", "LastActivityAt", "LastUpdateAt", "Name", "UnsubscribedAt", "UnsubscribedBy",
)
CONTACT_LISTS_FIELDS = ("IsActive", "IsUnsub", "ListID", "SubscribedAt")  # getcontactslists
LIST_FIELDS = ("Address", "CreatedAt", "ID", "IsDeleted", "Name", "SubscriberCount")
RECIPIENT_FIELDS = (
    "ContactID", "ID", "IsActive", "IsUnsubscribed", "ListID", "ListName", "SubscribedAt", "UnsubscribedAt",
)
PROPERTY_FIELDS = ("Datatype", "ID", "Name", "NameSpace")
CONTACT_DATA_FIELDS = ("ContactID", "Data", "ID")
CALLBACK_FIELDS = ("APIKeyID", "EventType", "ID", "IsBackup", "Status", "Url", "Version")


def listing(
    items: Sequence[T], query: Query, render: Callable[[T], dict[str, Any]], fields: Sequence[str]
) -> JSONResponse:
    """The page of `items` that `query` asks for, in the envelope (see `paginate`). Every listing
    with an `ID` field renders its object's `id` there."""
    rows, total = paginate(items, query, render, fields, attrgetter("id") if "ID" in fields else None)
    return envelope(rows, total=total)


def created(item: dict[str, Any]) -> JSONResponse:
    return envelope([item], status=201)


def updated(item: dict[str, Any], changed: bool) -> Response:
    # Documented: "304 Not Modified: The PUT request didn't affect any record".
    return envelope([item]) if changed else Response(status_code=304)


def no_content() -> Response:
    return Response(status_code=204)


def error_response(error: MailjetError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.to_json(), error.status, headers)


def unexpected_error() -> JSONResponse:
    # The shape of a real 500 (php#123), so clients parse it like any other Mailjet error.
    body = {
        "ErrorIdentifier": str(uuid.uuid4()),
        "ErrorInfo": "",
        "ErrorMessage": "An Unexpected Error occurred during API request",
        "StatusCode": 500,
    }
    return JSONResponse(body, 500)


# ---------------------------------------------------------------- parsing


def path_segments(request: Request) -> list[str]:
    """Percent-decoded segments of the raw path, so an encoded `/` or `+` stays inside its segment."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    segments = [unquote(part) for part in raw.decode("latin-1").split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()
    return segments


def parse_query(request: Request) -> Query:
    params = []
    for pair in request.scope.get("query_string", b"").decode("latin-1").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name = unquote_plus(name)
        params.append((name, unquote(value) if name.lower() in _EMAIL_FILTERS else unquote_plus(value)))
    return Query.parse(params)


def read_body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST/PUT, whose bytes `api` read before the account was picked."""
    return read_rest_body(request.state.raw_body)


# ---------------------------------------------------------------- REST v3 handlers


def list_contacts(account: Account, request: Request, ids: list[str]) -> Response:
    query = parse_query(request)
    return listing(account.list_contacts(query), query, Contact.to_json, CONTACT_FIELDS)


def create_contact(account: Account, request: Request, ids: list[str]) -> Response:
    return created(account.create_contact(read_body(request)).to_json())


def get_contact(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.get_contact(ids[0]).to_json()])


def update_contact(account: Account, request: Request, ids: list[str]) -> Response:
    contact, changed = account.update_contact(ids[0], read_body(request))
    return updated(contact.to_json(), changed)


def manage_contacts_lists(account: Account, request: Request, ids: list[str]) -> Response:
    items = account.manage_contacts_lists(ids[0], read_body(request))
    return created({"ContactsLists": items})


def refuse_contact_delete(account: Account, request: Request, ids: list[str]) -> Response:
    # Observed (php#98; also dotnet#24, python#39, nodejs#129): v3 REST does not delete contacts, it
    # answers this 401, which mailjet_rest raises as MailjetAuthError. Mailjet deletes contacts
    # through the GDPR endpoint DELETE /v4/contacts/{id}, which segjet does not emulate. GUESS: the
    # same answer for an id no contact has.
    raise MailjetError(401, "Operation not allowed")


def get_contacts_lists(account: Account, request: Request, ids: list[str]) -> Response:
    return listing(account.get_contacts_lists(ids[0]), parse_query(request), dict, CONTACT_LISTS_FIELDS)


def start_contacts_job(account: Account, request: Request, ids: list[str]) -> Response:
    return created({"JobID": account.start_contacts_job(read_body(request)).id})


def get_contacts_job(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.get_job(ids[0]).to_json()])


def list_lists(account: Account, request: Request, ids: list[str]) -> Response:
    query = parse_query(request)
    return listing(account.list_lists(query), query, account.list_json, LIST_FIELDS)


def create_list(account: Account, request: Request, ids: list[str]) -> Response:
    return created(account.list_json(account.create_list(read_body(request))))


def get_list(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.list_json(account.get_list(ids[0]))])


def update_list(account: Account, request: Request, ids: list[str]) -> Response:
    contacts_list, changed = account.update_list(ids[0], read_body(request))
    return updated(account.list_json(contacts_list), changed)


def delete_list(account: Account, request: Request, ids: list[str]) -> Response:
    account.delete_list(ids[0])
    return no_content()


def manage_contact(account: Account, request: Request, ids: list[str]) -> Response:
    # Guess: 201 like every other POST (the real status is unconfirmed, reference §8.3).
    return created(account.manage_contact(ids[0], read_body(request)))


def start_list_job(account: Account, request: Request, ids: list[str]) -> Response:
    return created({"JobID": account.start_list_job(ids[0], read_body(request)).id})


def get_list_job(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.get_job(ids[1], list_ref=ids[0]).to_json()])


def list_recipients(account: Account, request: Request, ids: list[str]) -> Response:
    query = parse_query(request)
    return listing(account.list_recipients(query), query, account.recipient_json, RECIPIENT_FIELDS)


def create_recipient(account: Account, request: Request, ids: list[str]) -> Response:
    return created(account.recipient_json(account.create_recipient(read_body(request))))


def get_recipient(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.recipient_json(account.get_recipient(ids[0]))])


def update_recipient(account: Account, request: Request, ids: list[str]) -> Response:
    recipient, changed = account.update_recipient(ids[0], read_body(request))
    return updated(account.recipient_json(recipient), changed)


def delete_recipient(account: Account, request: Request, ids: list[str]) -> Response:
    account.delete_recipient(ids[0])
    return no_content()


def list_properties(account: Account, request: Request, ids: list[str]) -> Response:
    query = parse_query(request)
    return listing(account.list_properties(query), query, PropertyDefinition.to_json, PROPERTY_FIELDS)


def create_property(account: Account, request: Request, ids: list[str]) -> Response:
    return created(account.create_property(read_body(request)).to_json())


def get_property(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.get_property(ids[0]).to_json()])


def update_property(account: Account, request: Request, ids: list[str]) -> Response:
    definition, changed = account.update_property(ids[0], read_body(request))
    return updated(definition.to_json(), changed)


def delete_property(account: Account, request: Request, ids: list[str]) -> Response:
    account.delete_property(ids[0])
    return no_content()


def list_contact_data(account: Account, request: Request, ids: list[str]) -> Response:
    query = parse_query(request)
    return listing(account.list_contact_data(query), query, account.contact_data_json, CONTACT_DATA_FIELDS)


def create_contact_data(account: Account, request: Request, ids: list[str]) -> Response:
    contact, _ = account.set_contact_data(None, read_body(request))
    return created(account.contact_data_json(contact))


def get_contact_data(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.contact_data_json(account.get_contact(ids[0]))])


def update_contact_data(account: Account, request: Request, ids: list[str]) -> Response:
    contact, changed = account.set_contact_data(ids[0], read_body(request))
    return updated(account.contact_data_json(contact), changed)


def delete_contact_data(account: Account, request: Request, ids: list[str]) -> Response:
    account.clear_contact_data(ids[0])
    return no_content()


def list_callbacks(account: Account, request: Request, ids: list[str]) -> Response:
    query = parse_query(request)
    return listing(account.list_callbacks(query), query, EventCallback.to_json, CALLBACK_FIELDS)


def create_callback(account: Account, request: Request, ids: list[str]) -> Response:
    return created(account.create_callback(read_body(request)).to_json())


def get_callback(account: Account, request: Request, ids: list[str]) -> Response:
    return envelope([account.get_callback(ids[0]).to_json()])


def update_callback(account: Account, request: Request, ids: list[str]) -> Response:
    callback, changed = account.update_callback(ids[0], read_body(request))
    return updated(callback.to_json(), changed)


def delete_callback(account: Account, request: Request, ids: list[str]) -> Response:
    account.delete_callback(ids[0])
    return no_content()


@dataclass(frozen=True)
class RestRoute:
    """A REST v3 path shape under /v3/REST/: literal segments (lower case) and `{}` for an id."""

    shape: tuple[str, ...]
    handlers: dict[str, Handler]

    def handler_for(self, method: str) -> Handler | None:
        # HEAD is GET without content (RFC 9110 §9.3.2; uvicorn leaves the content out), served
        # wherever GET is. GUESS: Mailjet's answer to HEAD is not documented.
        return self.handlers.get("GET" if method == "HEAD" else method)

    @property
    def methods(self) -> list[str]:
        """The methods it takes, as a 405's Allow header lists them."""
        return [name for method in self.handlers for name in ((method, "HEAD") if method == "GET" else (method,))]

    def match(self, lowered: list[str], original: list[str]) -> list[str] | None:
        if len(lowered) != len(self.shape):
            return None
        ids = []
        for part, low, raw in zip(self.shape, lowered, original):
            if part == "{}":
                ids.append(raw)
            elif part != low:
                return None
        return ids

    @property
    def literal_count(self) -> int:
        return sum(part != "{}" for part in self.shape)


REST_ROUTES = [
    RestRoute(("contact",), {"GET": list_contacts, "POST": create_contact}),
    RestRoute(("contact", "managemanycontacts"), {"POST": start_contacts_job}),
    RestRoute(("contact", "managemanycontacts", "{}"), {"GET": get_contacts_job}),
    RestRoute(("contact", "{}"), {"GET": get_contact, "PUT": update_contact, "DELETE": refuse_contact_delete}),
    RestRoute(("contact", "{}", "managecontactslists"), {"POST": manage_contacts_lists}),
    RestRoute(("contact", "{}", "getcontactslists"), {"GET": get_contacts_lists}),
    RestRoute(("contactslist",), {"GET": list_lists, "POST": create_list}),
    RestRoute(("contactslist", "{}"), {"GET": get_list, "PUT": update_list, "DELETE": delete_list}),
    RestRoute(("contactslist", "{}", "managecontact"), {"POST": manage_contact}),
    RestRoute(("contactslist", "{}", "managemanycontacts"), {"POST": start_list_job}),
    RestRoute(("contactslist", "{}", "managemanycontacts", "{}"), {"GET": get_list_job}),
    RestRoute(("listrecipient",), {"GET": list_recipients, "POST": create_recipient}),
    RestRoute(("listrecipient", "{}"), {"GET": get_recipient, "PUT": update_recipient, "DELETE": delete_recipient}),
    RestRoute(("contactmetadata",), {"GET": list_properties, "POST": create_property}),
    RestRoute(("contactmetadata", "{}"), {"GET": get_property, "PUT": update_property, "DELETE": delete_property}),
    RestRoute(("contactdata",), {"GET": list_contact_data, "POST": create_contact_data}),
    RestRoute(("contactdata", "{}"), {"GET": get_contact_data, "PUT": update_contact_data, "DELETE": delete_contact_data}),
    RestRoute(("eventcallbackurl",), {"GET": list_callbacks, "POST": create_callback}),
    RestRoute(("eventcallbackurl", "{}"), {"GET": get_callback, "PUT": update_callback, "DELETE": delete_callback}),
]
KNOWN_RESOURCES = {route.shape[0] for route in REST_ROUTES}
# Mailjet's REST v3 resources that segjet does not serve: the names of mailjet-apiv3-java's generated
# resource classes (src/main/java/com/mailjet/client/resource/). A call to one is told that, not
# that the resource is unknown, which reads as a typo.
NOT_EMULATED_RESOURCES = frozenset({
    "aggregategraphstatistics", "apikey", "apikeyaccess", "apikeytotals", "apitoken", "axtesting", "batchjob",
    "bouncestatistics", "campaign", "campaignaggregate", "campaigndraft", "campaigngraphstatistics",
    "campaignoverview", "campaignstatistics", "clickstatistics", "contactfilter", "contacthistorydata",
    "contactslistsignup", "contactstatistics", "csvimport", "dns", "domainstatistics", "geostatistics",
    "graphstatistics", "listrecipientstatistics", "liststatistics", "message", "messagehistory",
    "messageinformation", "messagesentstatistics", "messagestate", "messagestatistics", "metadata", "metasender",
    "myprofile", "newsletter", "newslettertemplate", "newslettertemplatecategory", "openinformation",
    "openstatistics", "parseroute", "preferences", "preset", "sender", "senderstatistics", "statcounters",
    "statistics", "template", "toplinkclicked", "trigger", "user", "useragentstatistics", "widget",
    "widgetcustomvalue",
})
# The same client's actions on a resource segjet serves that segjet does not (ContactslistImportList).
NOT_EMULATED_ACTIONS = frozenset({("contactslist", "importlist")})
_SEE_FIDELITY = '(README "Fidelity" lists what is)'


def _rest_route(segments: list[str]) -> tuple[RestRoute, list[str]] | None:
    """The route of /v3/REST/<segments> and its ids; None when no route has that shape."""
    lowered = [segment.lower() for segment in segments]
    matches = [(route, ids) for route in REST_ROUTES if (ids := route.match(lowered, segments)) is not None]
    return max(matches, key=lambda match: match[0].literal_count) if matches else None


def resolve_rest(method: str, segments: list[str]) -> tuple[Handler, list[str]]:
    """The handler and ids for /v3/REST/<segments>; MailjetError 400/405 otherwise."""
    found = _rest_route(segments)
    if found is None:
        # Documented: 400 for an "unknown resource or action"; the texts are guesses.
        resource = segments[0] if segments else ""
        if resource.lower() in NOT_EMULATED_RESOURCES:
            raise MailjetError(400, f'Resource "{resource}" is not emulated by segjet {_SEE_FIDELITY}')
        if resource.lower() not in KNOWN_RESOURCES:
            raise MailjetError(400, f'Unknown resource: "{resource}"')
        if len(segments) == 3 and (resource.lower(), segments[2].lower()) in NOT_EMULATED_ACTIONS:
            raise MailjetError(400, f'Action "{segments[2]}" on resource "{resource}" is not emulated by segjet {_SEE_FIDELITY}')
        raise MailjetError(400, f'Unknown action on resource "{resource}": "{"/".join(segments[1:])}"')
    route, ids = found
    handler = route.handler_for(method)
    if handler is None:
        raise MailjetError(405, "Method not allowed")  # observed (java#48)
    return handler, ids


def allow_header(request: Request) -> dict[str, str]:
    """A 405's Allow header (RFC 9110 §15.5.6: the methods the target resource supports), for the
    paths the API serves; none for another path, whose methods Starlette's catch-all lists."""
    segments = path_segments(request)
    lowered = [segment.lower() for segment in segments]
    if lowered == ["v3.1", "send"]:
        return {"Allow": "POST"}
    if lowered[:2] == ["v3", "rest"] and (found := _rest_route(segments[2:])) is not None:
        return {"Allow": ", ".join(found[0].methods)}
    if _is_job_error_file(lowered):
        return {"Allow": "GET, HEAD"}
    return {}


def _is_job_error_file(lowered: list[str]) -> bool:
    """A managemanycontacts job's ErrorFile: /v3/DATA/batchjob/{JobID}/JSONError/application:json/LAST
    (any other path under batchjob/{JobID} is no file of ours: 404)."""
    return (len(lowered) == 7 and lowered[:3] == ["v3", "data", "batchjob"]
            and lowered[4:] == ["jsonerror", "application:json", "last"])


# ---------------------------------------------------------------- the app


def create_app(config: BundleConfig, clock: Clock, urls: BundleUrls) -> Starlette:
    service = MailjetService(config, clock, urls.mailjet_url, urls.segment_url)
    store = MailjetStore(config.data_dir) if config.data_dir else None
    if store is not None:
        store.load_into(service)
    journal = Journal(clock, config.journal_capacity)
    faults = FaultRules.for_mailjet()
    faults.add_all(config.faults.get("mailjet", []))

    def reset() -> None:
        service.reset()
        faults.clear()

    def events_of(request: Request) -> EmailEvents:
        return tenant_of(service, request).events

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await service.aclose()
        if store is not None:
            # What timers and workers changed since the last request's save (the fake Segment's
            # store flushes at its close too).
            store.save(service)
            store.close()

    async def api(request: Request) -> Response:
        """Everything that is not the control API: REST v3, Send v3.1, and Mailjet-shaped 4xx for the rest."""
        if request.url.path.startswith(CONTROL_PREFIX):
            allowed = _methods_of_control_path(request)
            if allowed:  # as Starlette answers it on the fake Segment, where no catch-all route takes it
                return JSONResponse({"error": "Method Not Allowed"}, 405, headers={"Allow": ", ".join(allowed)})
            return control_error_response(ControlError(f"no control endpoint {request.method} {request.url.path}", 404))
        segments = path_segments(request)
        lowered = [segment.lower() for segment in segments]
        is_send_v31 = lowered[:1] == ["v3.1"]
        try:
            # The body is read before the account is picked: a reset of the account while it arrives
            # replaces the account, and a write answered 2xx must land in the one that is.
            too_large = None
            try:
                request.state.raw_body = await read_capped(request, MAX_BODY_BYTES)
            except BodyTooLarge as exc:
                too_large = exc.size
            account = authenticate(request)
            if account is None:
                return auth_failure(is_send_v31)
            if too_large is not None:
                raise payload_too_big(too_large, MAX_BODY_BYTES) if is_send_v31 else body_too_large(too_large, MAX_BODY_BYTES)
            if is_send_v31:
                return send_v31(account, request, lowered)
            if lowered[:2] == ["v3", "rest"]:
                handler, ids = resolve_rest(request.method, segments[2:])
                return handler(account, request, ids)
            if lowered[:2] == ["v3", "send"]:
                # The pre-2017 Send API v3 (FromEmail, Recipients, ...) is not emulated.
                raise MailjetError(
                    400, "Send API v3 (POST /v3/send) is not emulated by segjet; use Send API v3.1 (POST /v3.1/send)"
                )
            if lowered[:3] == ["v3", "data", "contactslist"]:
                raise MailjetError(400, "The CSV import (/v3/DATA/contactslist/{id}/CSVData, /v3/REST/csvimport) is not"
                                        " emulated by segjet; use /v3/REST/contactslist/{id}/managemanycontacts")
            if _is_job_error_file(lowered):
                if request.method not in ("GET", "HEAD"):
                    raise MailjetError(405, "Method not allowed")
                return JSONResponse(account.job_errors(segments[3]))
            raise MailjetError(404, "Object not found")
        except MailjetError as error:
            return error_response(error, allow_header(request) if error.status == 405 else None)
        except SendError as error:
            headers = allow_header(request) if error.status == 405 else None
            return JSONResponse(error.to_json(str(uuid.uuid4())), error.status, headers)
        except ClientDisconnect:
            raise  # the client left mid-body: no error of ours (QuietDisconnect ends the request)
        except Exception:  # noqa: BLE001 - answered in Mailjet's shape; tests assert it never happens
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return unexpected_error()

    def authenticate(request: Request) -> Account | None:
        credentials = basic_credentials(request.headers.get("authorization"))
        if credentials is None or credentials[1] is None:
            return None
        return service.backend.authenticate(credentials[0], credentials[1])

    def auth_failure(is_send_v31: bool) -> JSONResponse:
        if is_send_v31:
            # Observed v3.1 body (php#109, go fixture), with the documented code for bad credentials.
            body = SendError("mj-0015", AUTH_FAILURE, 401).to_json(str(uuid.uuid4()))
        else:
            # Guess: the v3 REST body is unconfirmed; this is the reference's recommendation.
            body = MailjetError(401, AUTH_FAILURE).to_json()
        return JSONResponse(body, 401, headers={"WWW-Authenticate": 'Basic realm="Provide an apiKey and secretKey"'})

    def send_v31(account: Account, request: Request, lowered: list[str]) -> Response:
        if lowered != ["v3.1", "send"]:
            # v3.1 exists only for /send; other v3.1 paths gave 404 (php#133).
            raise MailjetError(404, "Object not found")
        if request.method != "POST":
            raise method_not_allowed()
        status, result = send(account, read_send_body(request.state.raw_body))
        return JSONResponse(result, status)

    def journal_tenant(request: Request) -> Callable[[str | None], bool] | None:
        # `GET requests?apiKey=K`: the exchanges authenticated (Basic username) as account K.
        if named_api_key(request) is None:
            return None
        api_key = tenant_of(service, request).account.api_key
        return lambda username: username == api_key

    routes = [
        *control_routes(
            SERVICE, clock, journal, reset, lambda request: scoped_reset(service, request), service.quiesce,
            journal_tenant,
        ),
        *fault_routes(faults),
        *account_routes(service, store),
        openapi_route(openapi_document),
        *email_event_routes(events_of),
        *mailjet_dashboard_routes(service.backend, urls),  # pages at /, /app-connections, ...; before the catch-all
        Route("/{path:anypath}", api, methods=ALL_METHODS),
    ]
    middleware = service_middleware(
        faults, journal, mailjet_fault_response, basic_username, config.control_token, MAX_BODY_BYTES,
        # A reset of one account replaces its Tenant: a request held across it is not applied to the new one.
        tenant_epoch=lambda api_key: service.tenant(api_key) if api_key is not None else None,
    )
    if store is not None:
        middleware.append(Middleware(BeforeAnswer, hook=service.changes.save))
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    # The models, for the dashboard and for tests.
    app.state.service = service
    return app


def _methods_of_control_path(request: Request) -> list[str]:
    """The methods of the control routes with the request's path and another method (Starlette's
    partial match), none for a path no control route has."""
    return sorted({
        method
        for route in request.app.router.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] is Match.PARTIAL
        for method in route.methods or ()
    })


# Starlette's own answers, which the catch-all route leaves for what it cannot take: a method in no
# route's list (TRACE) and a request target that is no path (`OPTIONS *`). GUESS: Mailjet's texts
# for these are not published; its REST shape with the texts of its other 404/405 answers.
_HTTP_ERROR_MESSAGES = {404: "Object not found", 405: "Method not allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 in the shape of the API that was called, not its plain text."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(CONTROL_PREFIX):
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)
    message = _HTTP_ERROR_MESSAGES.get(exc.status_code, exc.detail)
    headers = exc.headers
    if exc.status_code == 405:
        headers = allow_header(request) or headers
    if request.url.path.lower().startswith("/v3.1/"):  # as the fault layer picks the shape
        return JSONResponse(SendError(None, message, exc.status_code).to_json(str(uuid.uuid4())), exc.status_code, headers=headers)
    return JSONResponse(MailjetError(exc.status_code, message).to_json(), exc.status_code, headers=headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Only a bug (`api` answers its own) or a data dir that cannot be written gets here, still
    # answered in the shape of the API called, never Starlette's plain-text page, with CONNECTION_CLOSE.
    log.error("bug in the fake Mailjet answering %s %s", request.method, request.url.path, exc_info=exc)
    if request.url.path.startswith(CONTROL_PREFIX):
        return JSONResponse({"error": f"internal error: {exc!r}"}, 500, CONNECTION_CLOSE)
    answer = unexpected_error()
    answer.headers.update(CONNECTION_CLOSE)
    return answer
