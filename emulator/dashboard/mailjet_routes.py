"""Dashboard routes of the fake Mailjet: pages, a change feed, and dashboard-only reads of the model.

The pages never hold the API secret: lists and contacts come from `/_emulator/dashboard/...`,
which read the model directly (and, being control routes, stay out of the request journal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..common.control import ControlError, control_error_response, query_whole
from ..config import BundleUrls
from ..mailjet.account_routes import named_api_key
from .common import page_routes, polling_stream, static_mount

if TYPE_CHECKING:
    from ..mailjet.models import Account, Contact, MailjetBackend

PAGES = ["/", "/app-connections", "/contacts", "/messages"]
# The Contacts feed answers one page, as Mailjet's REST API does (`Limit`/`Offset`, reference
# mailjet.md §1): the whole account in one answer took ~235 ms of the event loop every server of
# the bundle shares at 26,000 contacts, again at every change. Mailjet's own `Limit` cap (1000).
CONTACTS_DEFAULT_LIMIT = 100
CONTACTS_MAX_LIMIT = 1000


def mailjet_dashboard_routes(backend: MailjetBackend, urls: BundleUrls) -> list[BaseRoute]:
    """Routes to add to the fake Mailjet's app. The account is looked up per request (reset replaces it).

    Each feed is about the account the call names (`?apiKey=K` or `X-Segjet-Api-Key: K`), else the
    configured one, as every other control read: it answered the configured account's data to a
    caller naming another, who silently read the wrong account.
    """

    def account(request: Request) -> Account:
        api_key = named_api_key(request)
        if api_key is None:
            return backend.default_account
        found = backend.accounts.get(api_key)
        if found is None:
            raise ControlError(f"no Mailjet account with API key {api_key!r}; create one with POST /_emulator/accounts", 404)
        return found

    async def stream(request: Request) -> Response:
        # The Mailjet model has no general change hook (only `on_message_sent`), so the server
        # polls the account's change count and tells the page when to refetch. Looked up at each
        # poll: a reset replaces the account (or, for a non-configured one, removes it).
        try:
            api_key = account(request).api_key
        except ControlError as exc:
            return control_error_response(exc)

        def probe() -> tuple[Account, int] | None:
            current = backend.accounts.get(api_key)
            return fingerprint(current) if current is not None else None

        return polling_stream(request, probe)

    async def lists(request: Request) -> Response:
        try:
            current = account(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({"lists": [current.list_json(item) for item in current.lists.values()]})

    async def contacts(request: Request) -> Response:
        try:
            current = account(request)
            query = ContactsQuery.read(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(query.answer(current))

    async def info(request: Request) -> Response:
        try:
            current = account(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({"service": "mailjet", "mailjet_url": urls.mailjet_url, "segment_url": urls.segment_url,
                             "apiKey": current.api_key})

    return [
        *page_routes("mailjet.html", PAGES),
        static_mount(),
        Route("/_emulator/stream", stream, methods=["GET"]),
        Route("/_emulator/dashboard/lists", lists, methods=["GET"]),
        Route("/_emulator/dashboard/contacts", contacts, methods=["GET"]),
        Route("/_emulator/dashboard/info", info, methods=["GET"]),
    ]


class ContactsQuery:
    """One page of the Contacts feed: `?email=` (exact, any case), `?list=` (a list's members,
    unsubscribed ones included), `?limit=` (default 100, at most 1000) and `?offset=`: lower-case
    names, as every control route's (Mailjet's REST `Limit`/`Offset` are its own API's).

    Newest first: GUESS, the Mailjet app's contacts page lists the latest added contacts first (a
    contact a test just made is on the first page); the REST API's own default is ID order.
    Answers `{"contacts", "total", "offset", "limit"}`: `total` counts every match, not the page.
    """

    def __init__(self, email: str, list_id: int | None, limit: int, offset: int) -> None:
        self.email = email
        self.list_id = list_id
        self.limit = limit
        self.offset = offset

    @classmethod
    def read(cls, request: Request) -> ContactsQuery:
        raw_list = request.query_params.get("list")
        list_id = None
        if raw_list is not None and raw_list.strip():
            try:
                list_id = int(raw_list)
            except ValueError as exc:
                raise ControlError(f"list must be a contact list ID, got {raw_list!r}") from exc
        return cls(
            (request.query_params.get("email") or "").strip().lower(),
            list_id,
            query_whole(request, "limit", CONTACTS_DEFAULT_LIMIT, CONTACTS_MAX_LIMIT),
            query_whole(request, "offset", 0),
        )

    def matches(self, account: Account) -> list[Contact]:
        """Every contact the query names, newest (highest ID) first."""
        if self.email:
            # Exact, by the account's own address index; `find_contact` also takes an ID, which a
            # search for an address must not find.
            found = account.find_contact(self.email)
            contacts = [found] if found is not None and found.email.lower() == self.email else []
        else:
            contacts = [account.contacts[key] for key in sorted(account.contacts, reverse=True)]
        if self.list_id is not None:
            members = {recipient.contact_id for recipient in account.list_members(self.list_id)}
            contacts = [contact for contact in contacts if contact.id in members]
        return contacts

    def answer(self, account: Account) -> dict[str, Any]:
        found = self.matches(account)
        page = found[self.offset:self.offset + self.limit]
        return {"contacts": contacts_json(account, page), "total": len(found), "offset": self.offset, "limit": self.limit}


def contacts_json(account: Account, contacts: list[Contact]) -> list[dict[str, Any]]:
    """Each contact as the REST API shows it, with its property values and its subscriptions."""
    return [
        {
            **contact.to_json(),
            "Properties": dict(contact.properties),
            "Lists": [account.recipient_json(recipient) for recipient in account.subscriptions_of(contact.id)],
        }
        for contact in contacts
    ]


def fingerprint(account: Account) -> tuple[Account, int]:
    """Changes whenever something the pages show changes, at any size of the account: every such
    change (contacts, lists, messages, email events, webhook and Segment deliveries, webhooks'
    Status, App Connections) is a stored row marked by `Account.touch`, which counts it in
    `Account.version`. The account itself, not its id(): a reset replaces it."""
    return account, account.version
