"""Dashboard routes of the fake Mailjet: pages, a change feed, and dashboard-only reads of the model.

The pages never hold the API secret: lists and contacts come from `/_emulator/dashboard/...`,
which read the model directly (and, being control routes, stay out of the request journal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..common.control import ControlError, control_error_response
from ..config import BundleUrls
from ..mailjet.account_routes import named_api_key
from .common import page_routes, polling_stream, static_mount

if TYPE_CHECKING:
    from ..mailjet.models import Account, Contact, MailjetBackend

PAGES = ["/", "/app-connections", "/contacts", "/messages"]


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

        return polling_stream(probe)

    async def lists(request: Request) -> Response:
        try:
            current = account(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({"lists": [current.list_json(item) for item in current.lists.values()]})

    async def contacts(request: Request) -> Response:
        try:
            current = account(request)
        except ControlError as exc:
            return control_error_response(exc)
        wanted = (request.query_params.get("email") or "").strip().lower()
        found = [c for c in current.contacts.values() if not wanted or c.email.lower() == wanted]
        return JSONResponse({"contacts": contacts_json(current, found)})

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


def contacts_json(account: Account, contacts: list[Contact]) -> list[dict[str, Any]]:
    """Each contact as the REST API shows it, with its property values and its subscriptions.

    The subscriptions are grouped in one pass: looked up per contact, they cost contacts x
    subscriptions on the event loop every server of the bundle shares (minutes at 100,000).
    """
    wanted = {contact.id for contact in contacts}
    subscriptions: dict[int, list[dict[str, Any]]] = {}
    for recipient in account.recipients.values():
        if recipient.contact_id in wanted:
            subscriptions.setdefault(recipient.contact_id, []).append(account.recipient_json(recipient))
    return [
        {**contact.to_json(), "Properties": dict(contact.properties), "Lists": subscriptions.get(contact.id, [])}
        for contact in contacts
    ]


def fingerprint(account: Account) -> tuple[Account, int]:
    """Changes whenever something the pages show changes, at any size of the account: every such
    change (contacts, lists, messages, email events, webhook and Segment deliveries, webhooks'
    Status, App Connections) is a stored row marked by `Account.touch`, which counts it in
    `Account.version`. The account itself, not its id(): a reset replaces it."""
    return account, account.version
