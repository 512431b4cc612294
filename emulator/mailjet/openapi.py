"""OpenAPI 3.1 description of the fake Mailjet, served at `GET /_emulator/openapi.json`.

REST v3 (`/v3/REST/...`) and Send v3.1 (`/v3.1/send`) behind Basic auth (API key + secret), with
the REST envelope and error bodies from the `mailjet.*` contracts, and the control API under
/_emulator/. Paths are described in Mailjet's documented case; the fake also takes any other case.
Not described: the dashboard pages and the Server-Sent Events feed (`/_emulator/stream`, a stream
without end).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..common.faults import FaultRules
from ..common.openapi import (
    CONTROL_TOKEN_SCHEME,
    DURATION,
    LIMIT,
    contract_components,
    contract_ref,
    control_operation,
    control_paths,
    fault_paths,
    in_tenant,
    json_content,
    json_response,
    snapshot_path,
)
from ..dashboard.mailjet_routes import CONTACTS_MAX_LIMIT
from .events import DEFAULT_CAMPAIGN_SENDER, MAX_SUBJECT_LENGTH
from .models import EVENT_TYPES, SERVICE
from .storage import SNAPSHOT_VERSION

CONTRACTS = [
    "mailjet.contact",
    "mailjet.contactslist",
    "mailjet.listrecipient",
    "mailjet.contactmetadata",
    "mailjet.contactdata",
    "mailjet.eventcallbackurl",
    "mailjet.managecontact.request",
    "mailjet.managecontact.response",
    "mailjet.managemanycontacts.request",
    "mailjet.contact.managemanycontacts.request",
    "mailjet.managemanycontacts.job",
    "mailjet.send.request",
    "mailjet.send.response",
    "mailjet.send.error",
    "mailjet.error",
]


def _common(definition: str) -> dict[str, str]:
    return {"$ref": contract_ref("mailjet.common")["$ref"] + f"/$defs/{definition}"}


TEXT = {"type": "string"}
ID = {"type": "string", "description": "An ID, or for contacts their email, percent-encoded"}
BOOL = _common("bool_or_text")
ERROR = contract_ref("mailjet.error")
# Listing parameters every REST v3 GET takes (documented: Limit default 10, max 1000; Offset; Sort;
# countOnly), strings on the wire.
# A Sort key in its documented forms (models._parse_sort takes more): a field, then ASC or DESC in any case after
# a space or a `+` (`Sort=email+DESC` in the filtering guide; a `+` that a client percent-encodes
# arrives as `+`; the mailjet_rest README sends "Email desc"); several keys separated by commas.
# ECMA-262 patterns have no case flag, hence the classes.
_SORT_KEY = r"[A-Za-z]+([ +]([Aa][Ss][Cc]|[Dd][Ee][Ss][Cc]))?"
PAGING = {
    "Limit": {"type": "integer", "minimum": 0, "maximum": 1000},
    "Offset": {"type": "integer", "minimum": 0},
    "Sort": {"type": "string", "pattern": f"^{_SORT_KEY}(,{_SORT_KEY})*$"},
    "countOnly": {"enum": ["0", "1", "true", "false"]},
}


def _envelope(item: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [_common("envelope"), {"properties": {"Data": {"type": "array", "items": item}}}]}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): json_response("Mailjet error", ERROR) for status in statuses}


def _operation(
    summary: str,
    ok: int,
    item: dict[str, Any] | None,
    *,
    body: dict[str, Any] | None = None,
    filters: dict[str, dict[str, Any]] | None = None,
    ids: tuple[str, ...] = (),
    envelope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One REST v3 operation: `ok` with the envelope of `item`, or the whole `envelope` given (neither: no
    body, for 204), errors 400/401/404/405."""
    if envelope is None and item is not None:
        envelope = _envelope(item)
    responses: dict[str, Any] = {str(ok): {"description": "Done"} if envelope is None else json_response("OK", envelope)}
    if ok == 200 and body is not None:  # a PUT that changes nothing
        responses["304"] = {"description": "Not Modified: the PUT changed nothing"}
    # 413: a body over the fake's 25 MB cap (models.py body_too_large).
    responses.update(_errors(400, 401, 404, 405, *((413,) if body is not None else ())))
    operation: dict[str, Any] = {"tags": ["REST v3"], "summary": summary, "responses": responses}
    parameters = [{"name": name, "in": "path", "required": True, "schema": ID} for name in ids]
    if filters is not None:
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in {**filters, **PAGING}.items()
        ]
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": json_content(body)}
    return operation


def _fields(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def _rest_paths() -> dict[str, Any]:
    contact = contract_ref("mailjet.contact")
    contacts_list = contract_ref("mailjet.contactslist")
    recipient = contract_ref("mailjet.listrecipient")
    metadata = contract_ref("mailjet.contactmetadata")
    data = contract_ref("mailjet.contactdata")
    callback = contract_ref("mailjet.eventcallbackurl")
    job_id = {"type": "object", "required": ["JobID"], "properties": {"JobID": _common("id")}}
    contact_body = _fields(Email=_common("email"), Name=_common("name"), IsExcludedFromCampaigns=BOOL)
    # A PUT takes fewer fields than the POST (node's Put*Body types); the others answer MJ19.
    contact_put_body = _fields(Name=_common("name"), IsExcludedFromCampaigns=BOOL)
    list_body = _fields(Name=_common("name"), IsDeleted=BOOL)
    recipient_body = _fields(
        ContactID=_common("id_or_digits"), ContactALT=TEXT, ListID=_common("id_or_digits"), ListALT=TEXT,
        IsUnsubscribed=BOOL, IsActive=BOOL,
    )
    recipient_put_body = _fields(IsUnsubscribed=BOOL, IsActive=BOOL)
    metadata_body = _fields(Name=TEXT, Datatype=_common("datatype"), NameSpace={"enum": ["static", "historic"]})
    data_items = {"type": "array", "items": _fields(Name=TEXT, Value=_common("property_value"))}
    data_body = _fields(ContactID=_common("id_or_digits"), ContactALT=TEXT, Data=data_items)
    data_put_body = _fields(Data=data_items)
    callback_body = _fields(
        EventType={"enum": list(EVENT_TYPES)}, Url={"type": "string", "format": "uri"}, Version={"enum": [1, 2]},
        IsBackup=BOOL, Status={"enum": ["alive", "dead"]},
    )
    contacts_lists_body = _fields(
        ContactsLists={"type": "array", "items": _fields(ListID=_common("id_or_digits"), Action=_common("action"))}
    )
    rest = "/v3/REST"
    return {
        f"{rest}/contact": {
            "get": _operation("List contacts", 200, contact, filters={
                "ContactsList": {"type": "integer"}, "IsExcludedFromCampaigns": BOOL, "IsUnsubscribed": BOOL,
                "Campaign": {"type": "integer"}}),
            "post": _operation("Create a contact", 201, contact, body=contact_body),
        },
        f"{rest}/contact/{{contact_id}}": {
            "get": _operation("One contact", 200, contact, ids=("contact_id",)),
            "put": _operation("Update a contact", 200, contact, body=contact_put_body, ids=("contact_id",)),
            "delete": {
                "tags": ["REST v3"],
                "summary": "Refused: v3 does not delete contacts (401 Operation not allowed, as observed)",
                "parameters": [{"name": "contact_id", "in": "path", "required": True, "schema": ID}],
                "responses": _errors(401),
            },
        },
        f"{rest}/contact/managemanycontacts": {
            "post": _operation("Bulk contacts job", 201, job_id, body=contract_ref("mailjet.contact.managemanycontacts.request")),
        },
        f"{rest}/contact/managemanycontacts/{{job_id}}": {
            "get": _operation("A bulk job", 200, contract_ref("mailjet.managemanycontacts.job"), ids=("job_id",)),
        },
        f"{rest}/contact/{{contact_id}}/managecontactslists": {
            "post": _operation("Subscribe a contact to lists", 201, {"type": "object"}, body=contacts_lists_body,
                               ids=("contact_id",)),
        },
        f"{rest}/contact/{{contact_id}}/getcontactslists": {
            "get": _operation("Lists of a contact", 200, {"type": "object"}, filters={}, ids=("contact_id",)),
        },
        f"{rest}/contactslist": {
            "get": _operation("List contact lists", 200, contacts_list, filters={
                "Name": TEXT, "Address": TEXT, "IsDeleted": BOOL, "ExcludeID": {"type": "integer"}}),
            "post": _operation("Create a list", 201, contacts_list, body=list_body),
        },
        f"{rest}/contactslist/{{list_id}}": {
            "get": _operation("One list", 200, contacts_list, ids=("list_id",)),
            "put": _operation("Update a list", 200, contacts_list, body=list_body, ids=("list_id",)),
            "delete": _operation("Delete a list", 204, None, ids=("list_id",)),
        },
        f"{rest}/contactslist/{{list_id}}/managecontact": {
            "post": _operation("Add, update or unsubscribe one contact", 201, None,
                               body=contract_ref("mailjet.managecontact.request"), ids=("list_id",),
                               envelope=contract_ref("mailjet.managecontact.response")),
        },
        f"{rest}/contactslist/{{list_id}}/managemanycontacts": {
            "post": _operation("Bulk job on one list", 201, job_id, body=contract_ref("mailjet.managemanycontacts.request"),
                               ids=("list_id",)),
        },
        f"{rest}/contactslist/{{list_id}}/managemanycontacts/{{job_id}}": {
            "get": _operation("A bulk job on one list", 200, contract_ref("mailjet.managemanycontacts.job"),
                              ids=("list_id", "job_id")),
        },
        f"{rest}/listrecipient": {
            "get": _operation("List subscriptions", 200, recipient, filters={
                "Contact": {"type": "integer"}, "ContactEmail": TEXT, "ContactsList": {"type": "integer"},
                "ListName": TEXT, "Unsub": BOOL, "IsExcludedFromCampaigns": BOOL}),
            "post": _operation("Subscribe", 201, recipient, body=recipient_body),
        },
        f"{rest}/listrecipient/{{recipient_id}}": {
            "get": _operation("One subscription", 200, recipient, ids=("recipient_id",)),
            "put": _operation("Update a subscription", 200, recipient, body=recipient_put_body, ids=("recipient_id",)),
            "delete": _operation("Delete a subscription", 204, None, ids=("recipient_id",)),
        },
        f"{rest}/contactmetadata": {
            "get": _operation("List property definitions", 200, metadata, filters={
                "DataType": TEXT, "Namespace": TEXT, "Name": TEXT}),
            "post": _operation("Define a property", 201, metadata, body=metadata_body),
        },
        f"{rest}/contactmetadata/{{property_id}}": {
            "get": _operation("One property definition", 200, metadata, ids=("property_id",)),
            "put": _operation("Update a property definition", 200, metadata, body=metadata_body, ids=("property_id",)),
            "delete": _operation("Delete a property definition", 204, None, ids=("property_id",)),
        },
        f"{rest}/contactdata": {
            "get": _operation("List contacts' property values", 200, data, filters={
                "ContactEmail": TEXT, "ContactsList": {"type": "integer"}, "IsUnsubscribed": BOOL,
                "Campaign": {"type": "integer"}}),
            "post": _operation("Set a contact's property values", 201, data, body=data_body),
        },
        f"{rest}/contactdata/{{contact_id}}": {
            "get": _operation("One contact's property values", 200, data, ids=("contact_id",)),
            "put": _operation("Set property values", 200, data, body=data_put_body, ids=("contact_id",)),
            "delete": _operation("Clear property values", 204, None, ids=("contact_id",)),
        },
        f"{rest}/eventcallbackurl": {
            "get": _operation("List webhooks", 200, callback, filters={
                "EventType": TEXT, "Backup": BOOL, "Status": TEXT, "Version": {"type": "integer"}}),
            "post": _operation("Create a webhook", 201, callback, body=callback_body),
        },
        f"{rest}/eventcallbackurl/{{callback_id}}": {
            "get": _operation("One webhook", 200, callback, ids=("callback_id",)),
            "put": _operation("Update a webhook", 200, callback, body=callback_body, ids=("callback_id",)),
            "delete": _operation("Delete a webhook", 204, None, ids=("callback_id",)),
        },
        # The ErrorFile a bulk job names (reference §8: `/v3/DATA/batchjob/{JobID}/JSONError/application:json/LAST`):
        # a JSON array, not the REST envelope.
        "/v3/DATA/batchjob/{job_id}/JSONError/application:json/LAST": {
            "get": {
                "tags": ["REST v3"],
                "summary": "The contacts a bulk job could not apply",
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": ID}],
                "responses": {
                    "200": json_response("One entry per contact refused", {"type": "array", "items": _fields(
                        Index={"type": "integer"}, Email=TEXT, Error=TEXT)}),
                    **_errors(401, 404),
                },
            }
        },
    }


def _send_path() -> dict[str, Any]:
    request_error = json_response("The whole request was refused", contract_ref("mailjet.send.error"))
    per_message = json_response("A message failed (others may have been sent): the first failed one's status",
                                {"anyOf": [contract_ref("mailjet.send.response"), contract_ref("mailjet.send.error")]})
    return {
        "/v3.1/send": {
            "post": {
                "tags": ["Send v3.1"],
                "summary": "Send emails",
                "requestBody": {"required": True, "content": json_content(contract_ref("mailjet.send.request"))},
                "responses": {
                    "200": json_response("Every message was sent", contract_ref("mailjet.send.response")),
                    "400": per_message,
                    "401": request_error,
                    "403": per_message,
                },
            }
        }
    }


# A control call acts on the account it names (account_routes.py), else on the configured one.
ACCOUNT_PARAMETERS = [
    {"name": "apiKey", "in": "query", "required": False, "schema": TEXT,
     "description": "The API key of the account to act on (default: the configured account)"},
    {"name": "X-Segjet-Api-Key", "in": "header", "required": False, "schema": TEXT,
     "description": "The same, as a header; the query parameter wins"},
]


def _in_account(operation: dict[str, Any]) -> dict[str, Any]:
    return in_tenant(operation, ACCOUNT_PARAMETERS, "No account has the API key named (an empty one too)")


# What events.py `send_campaign` takes; it refuses any other field.
_ADDRESS = {"type": "string", "pattern": "@"}
CAMPAIGN_BODY = {
    **_fields(
        list_id={"type": "integer", "description": "A contact list of the account"},
        subject={"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT_LENGTH},
        html={"type": "string", "minLength": 1},
        text={"type": ["string", "null"], "description": "Kept as each message's `text_part` (GET messages); nothing else reads it"},
        name={"type": "string", "minLength": 1, "description": "The campaign's name (default: the subject)"},
        **{"from": {
            "anyOf": [
                _ADDRESS,
                {**_fields(Email=_ADDRESS, Name={"type": ["string", "null"]}), "required": ["Email"]},
                {"type": "null"},
            ],
            "description": f"The sender: an address or {{Email, Name}} (default: {DEFAULT_CAMPAIGN_SENDER['Email']})",
        }},
    ),
    "required": ["list_id", "subject", "html"],
    "additionalProperties": False,
}


def _mailjet_control_paths() -> dict[str, Any]:
    return {
        "/_emulator/accounts": {
            "get": control_operation("Accounts and their API keys"),
            "post": control_operation(
                "Add an account",
                ok=201,
                body={
                    "type": "object",
                    "required": ["api_key", "secret_key"],
                    "properties": {"api_key": TEXT, "secret_key": TEXT},
                    "additionalProperties": False,
                },
                errors=(400, 409),
            ),
        },
        "/_emulator/snapshot": snapshot_path("The whole fake Mailjet, every account,", SERVICE, SNAPSHOT_VERSION),
        "/_emulator/app-connections/segment": {
            "get": _in_account(control_operation("App Connections → Segment")),
            "put": _in_account(control_operation(
                "Merge settings",
                body=_fields(
                    authenticationKey=TEXT, listId={"type": "integer"}, sendEvents={"type": "boolean"},
                    writeKey={"type": ["string", "null"]}, segmentUrl={"type": "string", "format": "uri"},
                ),
                errors=(400, 409),
            )),
        },
        "/_emulator/messages": {"get": _in_account(control_operation("Messages sent", query={"limit": LIMIT}, errors=(400,)))},
        "/_emulator/messages/{message_id}/events": {
            "post": _in_account({
                **control_operation(
                    "Make a message's recipient act",
                    ok=201,
                    body={
                        **_fields(
                            event={"enum": ["open", "click", "bounce", "blocked", "spam", "unsub"]}, url=TEXT,
                            ip=TEXT, geo=TEXT, agent=TEXT, hard_bounce={"type": "boolean"}, blocked={"type": "boolean"},
                            error_related_to=TEXT, error=TEXT, comment=TEXT, source=TEXT, mj_list_id={"type": "integer"},
                        ),
                        "required": ["event"],
                    },
                    errors=(400, 404),
                ),
                "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": TEXT}],
            })
        },
        "/_emulator/email-events": {
            "get": _in_account(control_operation(
                "Email events", query={"MessageID": {"type": "integer"}, "event": TEXT, "limit": LIMIT}, errors=(400,)
            ))
        },
        "/_emulator/simulation": {
            "get": _in_account(control_operation("Recipient simulation")),
            "put": _in_account(control_operation(
                "Merge simulation settings",
                body=_fields(
                    **{rate: {"type": "number", "minimum": 0, "maximum": 1}
                       for rate in ("open_rate", "click_rate", "bounce_rate", "spam_rate", "unsub_rate")},
                    delay=DURATION, seed={"type": "integer"},
                ),
                errors=(400,),
            )),
        },
        "/_emulator/campaigns": {
            "post": _in_account(control_operation(
                "Send a campaign to a list",
                ok=201,
                body=CAMPAIGN_BODY,
                errors=(400,),
            ))
        },
        "/_emulator/dashboard/lists": {"get": _in_account(control_operation("Lists, for the dashboard"))},
        "/_emulator/dashboard/contacts": {"get": _in_account(control_operation(
            "Contacts, for the dashboard: one page, newest first, with the number of every match (total)",
            query={
                "email": {**TEXT, "description": "Only the contact with this address (whole, any case)"},
                "list": {"type": "integer", "description": "Only the members of this contact list"},
                "limit": {"type": "integer", "minimum": 0, "maximum": CONTACTS_MAX_LIMIT},
                "offset": {"type": "integer", "minimum": 0},
            },
            errors=(400,),
        ))},
        "/_emulator/dashboard/info": {"get": _in_account(control_operation("What the dashboard shows in its header"))},
    }


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "segjet fake Mailjet",
            "version": "1",
            "description": "Mailjet's REST API v3 and Send API v3.1 as segjet emulates them, and segjet's control API.",
        },
        "security": [{"apiKey": []}],
        "paths": {
            **_rest_paths(),
            **_send_path(),
            # Not behind the API key pair: each control operation says its own security (common/openapi.py).
            **control_paths(_in_account, "account", "the calls authenticated as the account named"),
            **_mailjet_control_paths(),
            **fault_paths(FaultRules.for_mailjet()),
        },
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "basic", "description": "API key as username, secret key as password"},
                "controlToken": CONTROL_TOKEN_SCHEME,
            },
            "schemas": contract_components(CONTRACTS),
        },
    }
