"""Send API v3.1 (`POST /v3.1/send`): validation with Mailjet's error codes, and the stored messages.

One `Message` per recipient, as Mailjet gives each To/Cc/Bcc address its own MessageID and
MessageUUID; the email events of a later stage attach to that MessageID. Error codes and the
send-0003 and mj-0013 texts are documented (reference/mailjet.md §6); the other texts are guesses.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .models import EMAIL_PATTERN, Account, ci_get, mj_time

MAX_MESSAGES = 50
MAX_RECIPIENTS = 50
MAX_SUBJECT_LENGTH = 255
TRACKING_VALUES = ("account_default", "disabled", "enabled")
# Real MessageIDs are large int64 values (e.g. 576460772022727317), unique across accounts; ours
# count up from 2**59, each account in its own range of 2**32.
FIRST_MESSAGE_ID = 2**59
ACCOUNT_MESSAGE_ID_RANGE = 2**32


@dataclass
class Message:
    """One email to one recipient. `status` and `events` are filled by the email-events lifecycle."""

    message_id: int
    message_uuid: str
    message_href: str
    sender: dict[str, str]  # {"Email", "Name"}
    recipient: dict[str, str]  # {"Email", "Name"}
    recipient_type: str  # "To" | "Cc" | "Bcc"
    contact_id: int
    subject: str
    text_part: str | None
    html_part: str | None
    custom_id: str
    event_payload: str
    custom_campaign: str
    sandbox: bool
    created_at: datetime
    status: str = "queued"
    events: list[dict[str, Any]] = field(default_factory=list)
    # Set for campaign sends and for CustomCampaign groups; 0 / "" for a plain transactional email.
    campaign_id: int = 0
    campaign_name: str = ""
    list_id: int = 0  # the contact list a campaign went to

    def to_json(self) -> dict[str, Any]:
        return {
            "MessageID": self.message_id,
            "MessageUUID": self.message_uuid,
            "MessageHref": self.message_href,
            "from": self.sender,
            "to": self.recipient,
            "recipient_type": self.recipient_type,
            "contact_id": self.contact_id,
            "subject": self.subject,
            "text_part": self.text_part,
            "html_part": self.html_part,
            "CustomID": self.custom_id,
            "EventPayload": self.event_payload,
            "CustomCampaign": self.custom_campaign,
            "sandbox": self.sandbox,
            "created_at": mj_time(self.created_at),
            "status": self.status,
            "events": self.events,
            "campaign_id": self.campaign_id,
            "campaign_name": self.campaign_name,
            "list_id": self.list_id,
        }


class SendError(Exception):
    """A request-level (global) Send API error: the whole request is refused.

    `code` is None where Mailjet documents none: the body then has no ErrorCode, as the observed
    401 body of 2018 had none (reference §1).
    """

    def __init__(self, code: str | None, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self, identifier: str) -> dict[str, Any]:
        code = {} if self.code is None else {"ErrorCode": self.code}
        return {"ErrorIdentifier": identifier, **code, "ErrorMessage": self.message, "StatusCode": self.status}


def malformed_json() -> SendError:
    return SendError("mj-0002", "Malformed JSON, please review the syntax and properties types.")  # documented


def method_not_allowed() -> SendError:
    # Guess: the v3.1 answer to a method other than POST is unknown; REST v3's observed text
    # (java#48) in the v3.1 shape, without an ErrorCode (none is documented for it).
    return SendError(None, "Method not allowed", 405)


def _error(account: Account, code: str, message: str, related: list[str], status: int = 400) -> dict[str, Any]:
    return {
        "ErrorIdentifier": _uuid(account),
        "ErrorCode": code,
        "StatusCode": status,
        "ErrorMessage": message,
        "ErrorRelatedTo": related,
    }


def _uuid(account: Account) -> str:
    return str(uuid.UUID(int=account.rng.getrandbits(128), version=4))


def send(account: Account, body: Any) -> tuple[int, dict[str, Any]]:
    """Validate and store a v3.1 send; answer (HTTP status, body).

    Valid messages are sent even when others in the batch fail (documented). Guess for the
    status: 200 when any message succeeded, else the first error's StatusCode.
    """
    if not isinstance(body, dict):
        raise malformed_json()
    messages = ci_get(body, "Messages")
    sandbox = ci_get(body, "SandboxMode", False)
    if not isinstance(sandbox, bool):
        raise SendError("mj-0004", 'Type mismatch: "SandboxMode" must be a boolean.')
    if messages is None:
        raise SendError("mj-0003", 'Missing mandatory property "Messages".')
    if not isinstance(messages, list):
        raise SendError("mj-0004", 'Type mismatch: "Messages" must be an array.')
    if not messages:
        raise SendError("mj-0007", 'Empty array: "Messages" must contain at least one message.')
    if len(messages) > MAX_MESSAGES:
        raise SendError("mj-0008", f'Too many items in "Messages": Max Allowed item limit is {MAX_MESSAGES}.')
    globals_ = ci_get(body, "Globals") or {}
    if not isinstance(globals_, dict):
        raise SendError("mj-0004", 'Type mismatch: "Globals" must be an object.')

    results = []
    for index, raw in enumerate(messages):
        message = {**globals_, **raw} if isinstance(raw, dict) else raw
        errors = _validate_message(account, message, index)
        if errors:
            results.append({"Status": "error", "Errors": errors})
        else:
            results.append(_accept(account, message, sandbox))
    if any(result["Status"] == "success" for result in results):
        status = 200
    else:
        status = results[0]["Errors"][0]["StatusCode"]
    return status, {"Messages": results}


def _validate_message(account: Account, message: Any, index: int) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return [_error(account, "mj-0004", f"Type mismatch: Messages[{index}] must be an object.", [f"Messages[{index}]"])]
    errors: list[dict[str, Any]] = []
    template_id = ci_get(message, "TemplateID")
    if template_id is not None:
        # We emulate no templates, so every TemplateID is "not accessible" (send-0010).
        errors.append(_error(account, "send-0010", f'Template ID "{template_id}" doesn\'t exist for your account.', ["TemplateID"]))
    sender = ci_get(message, "From")
    if sender is None and template_id is None:  # documented: a template may define the sender
        errors.append(_error(account, "mj-0003", 'Missing mandatory property "From".', ["From"]))
    elif sender is not None:
        errors += _check_address(account, sender, "From")
    total, mistyped = 0, False
    for kind in ("To", "Cc", "Bcc"):
        recipients = ci_get(message, kind)
        if recipients is None:
            continue
        if not isinstance(recipients, list):
            errors.append(_error(account, "mj-0004", f'Type mismatch: "{kind}" must be an array.', [kind]))
            mistyped = True
            continue
        total += len(recipients)
        for position, recipient in enumerate(recipients):
            errors += _check_address(account, recipient, f"{kind}[{position}]")
    if total == 0 and not mistyped:
        errors.append(_error(account, "mj-0003", 'Missing mandatory property "To".', ["To"]))
    if total > MAX_RECIPIENTS:
        errors.append(
            _error(account, "send-0015", f"Too many recipients: To, Cc and Bcc may hold {MAX_RECIPIENTS} addresses in all.", ["To", "Cc", "Bcc"])
        )
    for name in ("Subject", "TextPart", "HTMLPart", "CustomID", "CustomCampaign"):
        value = ci_get(message, name)
        if value is not None and not isinstance(value, str):
            errors.append(_error(account, "mj-0004", f'Type mismatch: "{name}" must be a string.', [name]))
    subject = ci_get(message, "Subject")
    if isinstance(subject, str) and len(subject) > MAX_SUBJECT_LENGTH:
        errors.append(_error(account, "mj-0006", f'"Subject" is too long: at most {MAX_SUBJECT_LENGTH} characters.', ["Subject"]))
    payload = ci_get(message, "EventPayload")
    if payload is not None and not isinstance(payload, (str, dict)):
        errors.append(_error(account, "mj-0004", 'Type mismatch: "EventPayload" must be a string.', ["EventPayload"]))
    if not ci_get(message, "TextPart") and not ci_get(message, "HTMLPart") and template_id is None:
        errors.append(
            _error(account, "send-0003", 'At least "HTMLPart", "TextPart" or "TemplateID" must be provided.', ["HTMLPart", "TextPart"])
        )  # documented text
    for name in ("TrackOpens", "TrackClicks"):
        value = ci_get(message, name)
        if value is not None and value not in TRACKING_VALUES:
            errors.append(_error(account, "mj-0005", f'Value not allowed for "{name}": use {", ".join(TRACKING_VALUES)}.', [name]))
    if ci_get(message, "DeduplicateCampaign") and not ci_get(message, "CustomCampaign"):
        errors.append(_error(account, "send-0012", '"DeduplicateCampaign" needs "CustomCampaign".', ["DeduplicateCampaign"]))
    return errors


def _check_address(account: Account, value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return [_error(account, "mj-0004", f'Type mismatch: "{where}" must be an object with "Email".', [where])]
    email = ci_get(value, "Email")
    name = ci_get(value, "Name")
    errors = []
    if email is None:
        errors.append(_error(account, "mj-0003", f'Missing mandatory property "{where}.Email".', [f"{where}.Email"]))
    elif not isinstance(email, str):
        errors.append(_error(account, "mj-0004", f'Type mismatch: "{where}.Email" must be a string.', [f"{where}.Email"]))
    elif email == "":
        errors.append(_error(account, "mj-0012", f'"{where}.Email" must not be an empty string.', [f"{where}.Email"]))
    elif not EMAIL_PATTERN.fullmatch(email):
        # Observed text (a public test fixture).
        errors.append(_error(account, "mj-0013", f'"{email}" is an invalid email address.', [f"{where}.Email"]))
    if name is not None and not isinstance(name, str):
        errors.append(_error(account, "mj-0004", f'Type mismatch: "{where}.Name" must be a string.', [f"{where}.Name"]))
    return errors


def _accept(account: Account, message: dict[str, Any], sandbox: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"Status": "success", "CustomID": ci_get(message, "CustomID") or ""}
    sender = _address(ci_get(message, "From") or {})
    payload = ci_get(message, "EventPayload")
    for kind in ("To", "Cc", "Bcc"):
        result[kind] = []
        for raw in ci_get(message, kind) or []:
            recipient = _address(raw)
            stored = new_message(
                account,
                sender=sender,
                recipient=recipient,
                recipient_type=kind,
                subject=ci_get(message, "Subject") or "",
                text_part=ci_get(message, "TextPart"),
                html_part=ci_get(message, "HTMLPart"),
                custom_id=ci_get(message, "CustomID") or "",
                event_payload=payload if isinstance(payload, str) else ("" if payload is None else _json_text(payload)),
                custom_campaign=ci_get(message, "CustomCampaign") or "",
                sandbox=sandbox,
            )
            store_message(account, stored)
            result[kind].append(
                {
                    "Email": recipient["Email"],
                    "MessageUUID": stored.message_uuid,
                    "MessageID": stored.message_id,
                    "MessageHref": stored.message_href,
                }
            )
    return result


def new_message(
    account: Account,
    *,
    sender: dict[str, str],
    recipient: dict[str, str],
    recipient_type: str,
    subject: str,
    text_part: str | None,
    html_part: str | None,
    custom_id: str = "",
    event_payload: str = "",
    custom_campaign: str = "",
    sandbox: bool = False,
) -> Message:
    """A message to one recipient, with its MessageID and MessageUUID (Send v3.1 and campaign sends)."""
    if sandbox:
        # Documented: sandbox answers the normal shape with an empty UUID and ID 0, delivers nothing.
        message_id, message_uuid, contact_id = 0, "", 0
    else:
        message_id = FIRST_MESSAGE_ID + (account.api_key_id - 1) * ACCOUNT_MESSAGE_ID_RANGE + account.new_id("message")
        message_uuid = _uuid(account)
        # Documented: sending auto-creates unknown recipients as contacts.
        contact_id = account.ensure_contact(recipient["Email"], recipient["Name"] or None).id
    return Message(
        message_id=message_id,
        message_uuid=message_uuid,
        message_href=f"{account.base_url}/v3/REST/message/{message_id}",
        sender=sender,
        recipient=recipient,
        recipient_type=recipient_type,
        contact_id=contact_id,
        subject=subject,
        text_part=text_part,
        html_part=html_part,
        custom_id=custom_id,
        event_payload=event_payload,
        custom_campaign=custom_campaign,
        sandbox=sandbox,
        created_at=account.clock.now(),
        status="sandbox" if sandbox else "queued",
    )


def store_message(account: Account, message: Message) -> None:
    """Keep the message and, unless it is a sandbox one, tell the email-events lifecycle it was sent."""
    account.messages.append(message)
    account.touch("message", len(account.messages) - 1)  # messages are stored by position: sandbox ones share ID 0
    if not message.sandbox:
        for hook in account.on_message_sent:
            hook(message)


def _address(value: dict[str, Any]) -> dict[str, str]:
    return {"Email": ci_get(value, "Email"), "Name": ci_get(value, "Name") or ""}


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
