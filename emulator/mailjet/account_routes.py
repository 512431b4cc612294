"""Control API of the fake Mailjet's accounts (thin: parse, call `MailjetService` or storage, render JSON).

Calls about one account name it by API key, `?apiKey=K` or the header `X-Segjet-Api-Key: K`; without
either they are about the server's configured account.

- `POST /_emulator/accounts` `{"api_key", "secret_key"}` → 201 the new account; `GET` lists them
- `POST /_emulator/reset?apiKey=K` resets that account alone (see `scoped_reset`)
- `GET|PUT /_emulator/app-connections/segment` → the account's App Connections → Segment settings
- `GET /_emulator/messages?limit=` → `{"messages": [...]}`, newest last
- `GET /_emulator/snapshot` → every account as JSON; `PUT` replaces everything by such a document
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..common.control import ControlError, control_error_response, named_tenant, query_limit, read_json_object
from ..common.feeds import newest
from ..common.json_body import decode_snapshot
from ..common.snapshot import snapshot_response
from .service import AccountError, MailjetService, Tenant
from .storage import MailjetStore, StateError, export_snapshot, import_snapshot

API_KEY_HEADER = "X-Segjet-Api-Key"


def named_api_key(request: Request) -> str | None:
    """The API key the call names, None when it names none."""
    return named_tenant(request, "apiKey", API_KEY_HEADER)


def tenant_of(service: MailjetService, request: Request) -> Tenant:
    """The account a control call is about; ControlError 404 for an unknown API key."""
    api_key = named_api_key(request)
    if api_key is None:
        return service.default
    tenant = service.tenant(api_key)
    if tenant is None:
        raise ControlError(f"no Mailjet account with API key {api_key!r}; create one with POST /_emulator/accounts", 404)
    return tenant


def scoped_reset(service: MailjetService, request: Request) -> dict[str, Any] | None:
    """`POST /_emulator/reset?apiKey=K`: that account back to fresh, the others, journal and clock untouched."""
    if named_api_key(request) is None:
        return None
    tenant = service.reset_account(tenant_of(service, request).account.api_key)
    return {"apiKey": tenant.account.api_key}


def account_json(tenant: Tenant) -> dict[str, Any]:
    account = tenant.account
    connection = account.app_connection
    return {"apiKey": account.api_key, "apiKeyId": account.api_key_id, "listId": connection.list_id,
            "authenticationKey": connection.authentication_key}


def account_routes(service: MailjetService, store: MailjetStore | None) -> list[Route]:
    async def accounts_get(request: Request) -> Response:
        return JSONResponse({"accounts": [account_json(tenant) for tenant in service.tenants.values()]})

    async def accounts_post(request: Request) -> Response:
        try:
            body = await read_json_object(request)
            unknown = sorted(set(body) - {"api_key", "secret_key"})
            if unknown:
                raise ControlError(f"unknown field(s): {', '.join(unknown)}; known: api_key, secret_key")
            try:
                tenant = service.create_account(body.get("api_key"), body.get("secret_key"))
            except AccountError as exc:
                raise ControlError(str(exc), exc.status) from exc
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(account_json(tenant), status_code=201)

    async def app_connection_get(request: Request) -> Response:
        try:
            tenant = tenant_of(service, request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(tenant.account.app_connection.to_json())

    async def app_connection_put(request: Request) -> Response:
        try:
            changes = await read_json_object(request)  # first: the account may be reset while it arrives
            tenant = tenant_of(service, request)
            try:
                connection = service.update_app_connection(tenant, changes)
            except AccountError as exc:
                raise ControlError(str(exc), exc.status) from exc
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse(connection.to_json())

    async def messages(request: Request) -> Response:
        try:
            tenant = tenant_of(service, request)
            limit = query_limit(request)
        except ControlError as exc:
            return control_error_response(exc)
        return JSONResponse({"messages": [m.to_json() for m in newest(reversed(tenant.account.messages), limit)]})

    async def snapshot_get(request: Request) -> Response:
        return snapshot_response(export_snapshot(service))

    async def snapshot_put(request: Request) -> Response:
        try:
            import_snapshot(service, await read_json_object(request, decode_snapshot), store)
            # As a reset: answered once the replaced accounts' calls in flight have their answers.
            await service.quiesce()
        except ControlError as exc:
            return control_error_response(exc)
        except StateError as exc:
            return control_error_response(ControlError(f"snapshot not imported: {exc}"))
        return JSONResponse({"status": "ok", "service": "mailjet", "accounts": len(service.tenants)})

    return [
        Route("/_emulator/accounts", accounts_get, methods=["GET"]),
        Route("/_emulator/accounts", accounts_post, methods=["POST"]),
        Route("/_emulator/app-connections/segment", app_connection_get, methods=["GET"]),
        Route("/_emulator/app-connections/segment", app_connection_put, methods=["PUT"]),
        Route("/_emulator/messages", messages, methods=["GET"]),
        Route("/_emulator/snapshot", snapshot_get, methods=["GET"]),
        Route("/_emulator/snapshot", snapshot_put, methods=["PUT"]),
    ]
