"""Send API v3.1 (`POST /v3.1/send`): validation with Mailjet's error codes, and the stored messages.

One `Message` per recipient, as Mailjet gives each To/Cc/Bcc address its own MessageID and
MessageUUID; the email events of a later stage attach to that MessageID. Error codes, statuses and
the properties each applies to follow the DevGuide's "Send API errors" table (reference/mailjet.md
§6, `api-documentation:guides/_send-api.md`); the send-0003, mj-0002, mj-0013 texts, the mj-0003
wording and "Max Allowed item limit is 50" are documented, the other texts are guesses.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..common.json_body import decode_json
from .models import EMAIL_PATTERN, MAX_STRING_LENGTH, Account, ci_get, mj_time
from .template import RenderedTooLong, render

TYPE_MISMATCH = "mj-0004"
# Documented for Messages, Attachments, InlinedAttachments, Headers and Variables (mj-0008).
MAX_ITEMS = 50
MAX_RECIPIENTS = 50
# Documented maximum lengths (mj-0006): Subject 255, URLTags 256 (reference §6).
MAX_LENGTHS = {"Subject": 255, "URLTags": 256}
# GUESS: Mailjet publishes no limit on what the template language prints. The parts it prints for
# one recipient (Subject, TextPart, HTMLPart with an expression or statement in them; the others are
# kept as sent, one object for every recipient) may hold 15 MB of characters, what a message may
# hold in attachments (reference §6), and for all the recipients of all the messages of one send,
# 256 MB (2,500 emails of 100 KB). Without them a 100 KB send printing one variable 500 times held
# 50 MB for each recipient.
MAX_PRINTED_PER_RECIPIENT = 15 * 1024 * 1024
MAX_PRINTED_PER_SEND = 256 * 1024 * 1024
TRACKING_VALUES = ("account_default", "disabled", "enabled")
# An http(s) link of an HTML part, as its attribute's text between either kind of quote (the other
# kind may be in it): what click tracking sees, and what URLTags are added to.
_HTML_LINK = re.compile(r"""href\s*+=\s*+(?:"(?P<double>https?://[^"]++)"|'(?P<single>https?://[^']++)')""", re.IGNORECASE)
# A character reference an attribute's text decodes: one ended by ";" (a browser also reads some
# without, but not before "=" or a letter or digit: "?a=1&region=eu" keeps its "&region").
_CHARACTER_REFERENCE = re.compile(r"&(?:#[0-9]++|#[xX][0-9a-fA-F]++|[A-Za-z][A-Za-z0-9]*+);")
# GUESS: the fake account's own tracking settings are Mailjet's defaults for a new account, opens and
# clicks tracked, so "account_default" (or no value) means tracked; only "disabled" turns it off.
TRACKED_BY_DEFAULT = True
# The four X-Mailjet-Prio levels (0-1 low queue, 2 the default, 3 before the high queue), from
# Mailjet's "Email Priority Management" article; Priority is the same setting (mj-0005).
PRIORITY_VALUES = (0, 1, 2, 3)
ATTACHMENT_FIELDS = ("ContentType", "Filename", "Base64Content")
# How Globals combine with a message's own property (DevGuide "Set global payload properties"):
# these objects are merged key by key, the message's keys winning; these arrays are appended after
# the global items; any other property of the message replaces the global one. The DevGuide's list
# writes "InlineAttachments"; the property is InlinedAttachments (§6).
MERGED_OBJECTS = frozenset({"from", "sender", "replyto", "templateerrorreporting", "headers", "variables"})
APPENDED_ARRAYS = frozenset({"cc", "bcc", "attachments", "inlinedattachments"})
# Address objects other than From and the recipients; checked as From is.
OTHER_ADDRESSES = ("Sender", "ReplyTo", "TemplateErrorReporting")
RECIPIENT_KINDS = ("To", "Cc", "Bcc")
ATTACHMENT_LISTS = ("Attachments", "InlinedAttachments")
BOOLEAN_PROPERTIES = ("DeduplicateCampaign", "TemplateLanguage", "TemplateErrorDeliver")
# The DevGuide's list of forbidden headers (send-0011), exactly; Reply-To is not in it.
FORBIDDEN_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "Sender", "Subject", "To", "Cc", "Bcc", "Return-Path", "Delivered-To", "DKIM-Signature",
        "DomainKey-Status", "Received-SPF", "Authentication-Results", "Received", "X-Mailjet-Prio",
        "X-Mailjet-Debug", "User-Agent", "X-Mailer", "X-MJ-CustomID", "X-MJ-EventPayload", "X-MJ-Vars",
        "X-MJ-TemplateErrorDeliver", "X-MJ-TemplateErrorReporting", "X-MJ-TemplateLanguage",
        "X-Mailjet-TrackOpen", "X-Mailjet-TrackClick", "X-MJ-TemplateID", "X-MJ-WorkflowID", "X-Feedback-Id",
        "X-Mailjet-Segmentation", "List-Id", "X-MJ-MID", "X-MJ-ErrorMessage", "Date", "X-CSA-Complaints",
        "Message-Id", "X-Mailjet-Campaign", "X-MJ-StatisticsContactsListID",
    )
)
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
    # DeduplicateCampaign: blocked instead of sent when its campaign already mailed the contact. Only
    # read when the send is planned (the plan is stored), so rows from before it load as False.
    deduplicate_campaign: bool = False
    # TrackOpens / TrackClicks as they apply to this message: without the open pixel or the rewritten
    # links Mailjet records no open / click. Rows from before these were kept load as tracked, as
    # every message could then be opened and clicked.
    track_opens: bool = TRACKED_BY_DEFAULT
    track_clicks: bool = TRACKED_BY_DEFAULT
    # What the template language found wrong (TemplateLanguage true), "" when nothing: the message is
    # then blocked, unless TemplateErrorDeliver asked for it to go as printed.
    template_error: str = ""
    template_error_deliver: bool = False

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
            "DeduplicateCampaign": self.deduplicate_campaign,
            "track_opens": self.track_opens,
            "track_clicks": self.track_clicks,
            "template_error": self.template_error,
            "TemplateErrorDeliver": self.template_error_deliver,
        }


class SendError(Exception):
    """A request-level (global) Send API error: the whole request is refused.

    `code` is None where Mailjet documents none: the body then has no ErrorCode, as the observed
    401 body of 2018 had none (reference §1).
    """

    def __init__(self, code: str | None, message: str, status: int = 400, related: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.related = related

    def to_json(self, identifier: str) -> dict[str, Any]:
        code = {} if self.code is None else {"ErrorCode": self.code}
        related = {} if self.related is None else {"ErrorRelatedTo": self.related}
        return {"ErrorIdentifier": identifier, **code, "ErrorMessage": self.message, "StatusCode": self.status, **related}


def malformed_json() -> SendError:
    return SendError("mj-0002", "Malformed JSON, please review the syntax and properties types.")  # documented


def read_send_body(raw: bytes) -> Any:
    """The JSON of a v3.1 send, whatever its type (`send` checks it); mj-0002 when it is no JSON,
    an empty body included."""
    try:
        return decode_json(raw)
    except ValueError:
        raise malformed_json() from None


def payload_too_big(size: int, limit: int) -> SendError:
    # Documented code and status (DevGuide "Send API errors": mj-0011, 400, "payload too big");
    # GUESS: the text, and the limit, which Mailjet does not publish (15 MB of attachments fit).
    return SendError("mj-0011", f"Payload too big: {size} bytes; the limit is {limit} bytes.")


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

    A structure that cannot be read (`_check_structure`: an address that is no object, say) refuses
    the whole request, nothing sent; a scalar of the wrong type fails its message only (mj-0004),
    as every other check does, and valid messages are sent even when others in the batch fail
    (documented). The status is 200
    when every message succeeded, else the first failed message's first error's StatusCode, even if
    others were sent: what users saw of the real API (mailjet-apiv3-java#121, "an 400 status code is
    returned if one or more of the messages fails, as documented"; mailjet-gem#177; the thrown error
    of mailjet-apiv3-nodejs#271 "even though ... mails have been sent"). GUESS over the one source
    saying 2xx, a 2026 comment in mailjet-apiv3-nodejs's examples/node/src/batchSend.js.
    """
    if not isinstance(body, dict):
        raise malformed_json()
    messages = ci_get(body, "Messages")
    sandbox = ci_get(body, "SandboxMode", False)
    if not isinstance(sandbox, bool):
        raise SendError(TYPE_MISMATCH, 'Type mismatch: "SandboxMode" must be a boolean.', related=["SandboxMode"])
    if messages is None:
        raise SendError("mj-0003", _missing_text("Messages"), related=["Messages"])
    if not isinstance(messages, list):
        raise SendError(TYPE_MISMATCH, 'Type mismatch: "Messages" must be an array.', related=["Messages"])
    if not messages:
        raise SendError("mj-0007", _empty_array_text("Messages"), related=["Messages"])
    if len(messages) > MAX_ITEMS:
        raise SendError("mj-0008", _too_many_text("Messages"), related=["Messages"])
    globals_ = ci_get(body, "Globals")
    if globals_ is None:
        globals_ = {}
    elif not isinstance(globals_, dict):  # [], "", 0 and false included
        raise SendError(TYPE_MISMATCH, 'Type mismatch: "Globals" must be an object.', related=["Globals"])

    _check_structure(globals_, "Globals")
    for raw in messages:
        if not isinstance(raw, dict):
            raise _structure_mismatch("Messages", "object")
        _check_structure(raw, "Messages")

    results = []
    budget = _PrintBudget(MAX_PRINTED_PER_SEND)
    for raw in messages:
        message = _with_globals(globals_, raw)
        errors = _validate_message(account, message)
        results.append({"Status": "error", "Errors": errors} if errors else _accept(account, message, sandbox, budget))
    failed = [result for result in results if result["Status"] == "error"]
    status = failed[0]["Errors"][0]["StatusCode"] if failed else 200
    return status, {"Messages": results}


def _check_structure(properties: dict[str, Any], root: str) -> None:
    """Refuse the whole request (SendError mj-0004) for a property of a message or of Globals that
    cannot be read into its type: an address that is no object, a list that is no array or holds
    something else, Headers or Variables that are no object.

    Users saw such a request refused with a flat body naming the property from the request's root
    (`Messages.From`, 'Type mismatch. Expected type "emailIn".': mailjet-apiv3-php#237, 2021;
    `Messages.TemplateErrorReporting`: mailjet-apiv3-nodejs#155, 2022), and a wrongly typed scalar
    refused in its message alone (a string TemplateID, 'Expected type "integer".', related
    `TemplateID`: api-documentation#8). GUESS: the other structures behave as the addresses do,
    the type names of arrays and objects ("array", "object"), and no list index in the path.
    """
    for name in ("From", *OTHER_ADDRESSES):
        value = ci_get(properties, name)
        if value is not None and not isinstance(value, dict):
            raise _structure_mismatch(f"{root}.{name}", "emailIn")
    for name in RECIPIENT_KINDS:
        value = ci_get(properties, name)
        if value is not None:
            _check_list(value, f"{root}.{name}", "emailIn")
    for name in ATTACHMENT_LISTS:
        value = ci_get(properties, name)
        if value is not None:
            _check_list(value, f"{root}.{name}", "object")
    for name in ("Headers", "Variables"):
        value = ci_get(properties, name)
        if value is not None and not isinstance(value, dict):
            raise _structure_mismatch(f"{root}.{name}", "object")


def _check_list(value: Any, where: str, item_type: str) -> None:
    if not isinstance(value, list):
        raise _structure_mismatch(where, "array")
    if not all(isinstance(item, dict) for item in value):
        raise _structure_mismatch(where, item_type)


def _mismatch_text(expected: str) -> str:
    return f'Type mismatch. Expected type "{expected}".'  # observed wording


def _structure_mismatch(where: str, expected: str) -> SendError:
    return SendError(TYPE_MISMATCH, _mismatch_text(expected), related=[where])


def _scalar_mismatch(account: Account, where: str, expected: str) -> dict[str, Any]:
    return _error(account, TYPE_MISMATCH, _mismatch_text(expected), [where])


def _with_globals(globals_: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The message combined with Globals as the DevGuide documents: objects merged, arrays appended,
    other values replaced by the message's own (MERGED_OBJECTS, APPENDED_ARRAYS).

    Keys match case-insensitively, so a message's "Subject" replaces Globals' "subject" (`ci_get`
    would otherwise find the global first). "In Globals you can specify values for all message
    properties, except To": GUESS that a global To is ignored (each message then needs its own).
    """
    own = {key.lower(): key for key in message}
    merged = dict(message)
    for key, value in globals_.items():
        name = key.lower()
        if name == "to":
            continue
        if name not in own:
            merged[key] = value
            continue
        mine = message[own[name]]
        if name in MERGED_OBJECTS and isinstance(value, dict) and isinstance(mine, dict):
            # Variables keys are template names, matched as written (GUESS); header names and the
            # address keys (Email, Name) match case-insensitively.
            merged[own[name]] = {**value, **mine} if name == "variables" else _with_globals_object(value, mine)
        elif name in APPENDED_ARRAYS and isinstance(value, list) and isinstance(mine, list):
            merged[own[name]] = value + mine
    return merged


def _with_globals_object(global_value: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    own = {key.lower() for key in mine}
    return {**{key: item for key, item in global_value.items() if key.lower() not in own}, **mine}


def _missing_text(name: str) -> str:
    # Documented for a message without To (DevGuide sample, there under a garbled code: mj-0005);
    # GUESS that every mandatory property gets the same wording.
    return f"The {name} is mandatory but missing from the input"


def _empty_array_text(name: str) -> str:
    return f'Empty array: "{name}" must not be empty.'  # GUESS: no text documented


def _too_many_text(name: str) -> str:
    return f'Too many items in "{name}": Max Allowed item limit is {MAX_ITEMS}.'  # the limit's words are documented


def _validate_message(account: Account, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's errors; its structure is already checked (`_check_structure`)."""
    errors: list[dict[str, Any]] = []
    template_id = ci_get(message, "TemplateID")
    if template_id is not None and (not isinstance(template_id, int) or isinstance(template_id, bool)):
        errors.append(_scalar_mismatch(account, "TemplateID", "integer"))  # observed (api-documentation#8)
    elif template_id is not None:
        # We emulate no templates, so every TemplateID is "not accessible" (send-0010).
        errors.append(_error(account, "send-0010", f'Template ID "{template_id}" doesn\'t exist for your account.', ["TemplateID"]))
    sender = ci_get(message, "From")
    if sender is None and template_id is None:  # documented: a template may define the sender
        errors.append(_error(account, "mj-0003", _missing_text("From"), ["From"]))
    elif sender is not None:
        errors += _check_address(account, sender, "From")
    for name in OTHER_ADDRESSES:
        value = ci_get(message, name)
        if value is not None:
            errors += _check_address(account, value, name)
    errors += _check_recipients(account, message)
    for name in ("Subject", "TextPart", "HTMLPart", "CustomID", "CustomCampaign", "URLTags", "MonitoringCategory"):
        value = ci_get(message, name)
        if value is not None and not isinstance(value, str):
            errors.append(_scalar_mismatch(account, name, "string"))
    # "false" is a type mismatch, not a truthy DeduplicateCampaign (which would ask for a CustomCampaign).
    for name in BOOLEAN_PROPERTIES:
        value = ci_get(message, name)
        if value is not None and not isinstance(value, bool):
            errors.append(_scalar_mismatch(account, name, "boolean"))
    for name, limit in MAX_LENGTHS.items():
        value = ci_get(message, name)
        if isinstance(value, str) and len(value) > limit:
            errors.append(_error(account, "mj-0006", f'"{name}" is too long: at most {limit} characters.', [name]))
    payload = ci_get(message, "EventPayload")
    # GUESS: the docs type EventPayload as a string; an object is taken too (clients pass one) and
    # comes back in events as its compact JSON text.
    if payload is not None and not isinstance(payload, (str, dict)):
        errors.append(_scalar_mismatch(account, "EventPayload", "string"))
    if not ci_get(message, "TextPart") and not ci_get(message, "HTMLPart") and template_id is None:
        errors.append(
            _error(account, "send-0003", 'At least "HTMLPart", "TextPart" or "TemplateID" must be provided.', ["HTMLPart", "TextPart"])
        )  # documented text
    for name in ("TrackOpens", "TrackClicks"):
        value = ci_get(message, name)
        if value is not None and value not in TRACKING_VALUES:
            errors.append(_not_allowed(account, name, TRACKING_VALUES))
    priority = ci_get(message, "Priority")
    if priority is not None:
        if not isinstance(priority, int) or isinstance(priority, bool):
            errors.append(_scalar_mismatch(account, "Priority", "integer"))
        elif priority not in PRIORITY_VALUES:
            errors.append(_not_allowed(account, "Priority", PRIORITY_VALUES))
    if ci_get(message, "DeduplicateCampaign") is True and not ci_get(message, "CustomCampaign"):
        related = ["CustomCampaign", "DeduplicateCampaign"]  # documented
        errors.append(_error(account, "send-0012", '"DeduplicateCampaign" needs "CustomCampaign".', related))
    # Documented: only a missing TemplateLanguage counts; GUESS that `false` is accepted, as it is given.
    error_options = [ci_get(message, name) for name in ("TemplateErrorReporting", "TemplateErrorDeliver")]
    if any(option is not None for option in error_options) and ci_get(message, "TemplateLanguage") is None:
        text = '"TemplateErrorReporting" and "TemplateErrorDeliver" need "TemplateLanguage".'
        errors.append(_error(account, "send-0016", text, ["TemplateLanguage"]))
    # The error table spells the inline list "InlineAttachments"; the property is InlinedAttachments (§6).
    for name in ATTACHMENT_LISTS:
        errors += _check_attachments(account, ci_get(message, name), name)
    headers = ci_get(message, "Headers")
    errors += _check_object(account, headers, "Headers")
    if isinstance(headers, dict):
        for header in headers:
            # GUESS: names match case-insensitively, as in email; ASCII case only, as header names are ASCII.
            if header.isascii() and header.lower() in FORBIDDEN_HEADERS:
                text = f'The "{header}" header cannot be set in "Headers": use its message property.'
                errors.append(_error(account, "send-0011", text, [f'Headers["{header}"]']))  # documented form
    variables = ci_get(message, "Variables")
    errors += _check_object(account, variables, "Variables")
    if isinstance(variables, dict):
        # Observed: "mailjet denies null variables: Property value cannot be null." (mailjet-apiv3-php#210;
        # a Mailjet developer in php#80: "You can NOT do: 'Property' => null"). GUESS: the code, the
        # one of other type mismatches, and that the message alone is refused.
        errors += [
            _error(account, TYPE_MISMATCH, "Property value cannot be null.", [f"Variables.{name}"])
            for name, value in variables.items() if value is None
        ]
    return errors


def _check_recipients(account: Account, message: dict[str, Any]) -> list[dict[str, Any]]:
    """To is mandatory and cannot be empty (documented); Cc and Bcc are optional and may be empty.

    The 50-recipient limit counts addresses, not entries: "If a recipient is specified twice (in the
    to, cc, or bcc), it is counted only once" (DevGuide message properties, To and Cc/Bcc rows).
    """
    errors: list[dict[str, Any]] = []
    addresses: set[str] = set()
    others = 0  # entries without a string Email: each counts (they are refused on their own anyway)
    for kind in RECIPIENT_KINDS:
        recipients = ci_get(message, kind)
        if recipients is None:
            if kind == "To":  # documented: missing or null
                errors.append(_error(account, "mj-0003", _missing_text("To"), ["To"]))
            continue
        if kind == "To" and not recipients:
            errors.append(_error(account, "mj-0007", _empty_array_text("To"), ["To"]))
        for position, recipient in enumerate(recipients):
            errors += _check_address(account, recipient, f"{kind}[{position}]")
            email = ci_get(recipient, "Email")
            if isinstance(email, str):
                addresses.add(email.lower())  # GUESS: the same address in another case is the same recipient
            else:
                others += 1
    if len(addresses) + others > MAX_RECIPIENTS:
        errors.append(
            _error(account, "send-0015", f"Too many recipients: To, Cc and Bcc may hold {MAX_RECIPIENTS} addresses in all.", ["To", "Cc", "Bcc"])
        )
    return errors


def _check_attachments(account: Account, attachments: Any, name: str) -> list[dict[str, Any]]:
    if attachments is None:
        return []
    errors = []
    if len(attachments) > MAX_ITEMS:
        errors.append(_error(account, "mj-0008", _too_many_text(name), [name]))
    for position, attachment in enumerate(attachments):
        where = f"{name}[{position}]"
        # GUESS: all three fields are mandatory, as every documented attachment carries them.
        for field_name in ATTACHMENT_FIELDS:
            errors += _check_text(account, ci_get(attachment, field_name), f"{where}.{field_name}")
    return errors


def _check_object(account: Account, value: Any, name: str) -> list[dict[str, Any]]:
    """Headers and Variables: at most MAX_ITEMS entries."""
    if value is None:
        return []
    if len(value) > MAX_ITEMS:
        return [_error(account, "mj-0008", _too_many_text(name), [name])]
    return []


def _not_allowed(account: Account, name: str, allowed: tuple[Any, ...]) -> dict[str, Any]:
    return _error(account, "mj-0005", f'Value not allowed for "{name}": use {", ".join(map(str, allowed))}.', [name])


def _check_text(account: Account, value: Any, where: str) -> list[dict[str, Any]]:
    """A mandatory string that may not be empty (mj-0003, mj-0004, mj-0012)."""
    if value is None:
        return [_error(account, "mj-0003", _missing_text(where), [where])]
    if not isinstance(value, str):
        return [_scalar_mismatch(account, where, "string")]
    if value == "":
        return [_error(account, "mj-0012", f'"{where}" must not be an empty string.', [where])]
    return []


def _check_address(account: Account, value: dict[str, Any], where: str) -> list[dict[str, Any]]:
    email = ci_get(value, "Email")
    name = ci_get(value, "Name")
    errors = _check_text(account, email, f"{where}.Email")
    # An address longer than REST v3 keeps (MAX_STRING_LENGTH) is refused before the pattern runs:
    # the pattern backtracks quadratically on a long dotted string (a 1 MB address held the event
    # loop for minutes), and the contact the send creates could not be read back through REST.
    # GUESS: Mailjet publishes no length limit for an address (RFC 5321 allows 254) nor its code.
    if not errors and (len(email) > MAX_STRING_LENGTH or not EMAIL_PATTERN.fullmatch(email)):
        # Observed text (a public test fixture).
        errors.append(_error(account, "mj-0013", f'"{email}" is an invalid email address.', [f"{where}.Email"]))
    if name is not None and not isinstance(name, str):
        errors.append(_scalar_mismatch(account, f"{where}.Name", "string"))
    return errors


def _accept(account: Account, message: dict[str, Any], sandbox: bool, budget: _PrintBudget) -> dict[str, Any]:
    """The message sent to each of its recipients; or, when the template language would print more
    than the limits allow, an error and nothing sent."""
    recipients = [(kind, _address(raw)) for kind in RECIPIENT_KINDS for raw in ci_get(message, kind) or []]
    budget_before = budget.left
    try:
        contents = [_content(account, message, recipient["Email"], budget) for _, recipient in recipients]
    except _PrintedTooLong as too_long:
        budget.left = budget_before  # what it printed is not kept
        return {"Status": "error", "Errors": [_error(account, "mj-0006", too_long.text, [too_long.part])]}
    tags = ci_get(message, "URLTags")
    if tags:
        tagged: dict[int, str] = {}  # by part: without the template language, one for every recipient
        for content in contents:
            if content.html_part and id(content.html_part) not in tagged:
                tagged[id(content.html_part)] = with_url_tags(content.html_part, tags)
        contents = [replace(content, html_part=tagged[id(content.html_part)]) if content.html_part else content for content in contents]
    result: dict[str, Any] = {"Status": "success", "CustomID": ci_get(message, "CustomID") or ""}
    result.update({kind: [] for kind in RECIPIENT_KINDS})
    sender = _address(ci_get(message, "From") or {})
    payload = ci_get(message, "EventPayload")
    for (kind, recipient), content in zip(recipients, contents):
        stored = new_message(
            account,
            sender=sender,
            recipient=recipient,
            recipient_type=kind,
            subject=content.subject,
            text_part=content.text_part,
            html_part=content.html_part,
            custom_id=ci_get(message, "CustomID") or "",
            event_payload=payload if isinstance(payload, str) else ("" if payload is None else _json_text(payload)),
            custom_campaign=ci_get(message, "CustomCampaign") or "",
            # Validation let it through as true only with a CustomCampaign (send-0012).
            deduplicate_campaign=ci_get(message, "DeduplicateCampaign") is True,
            track_opens=_tracked(ci_get(message, "TrackOpens")),
            track_clicks=_tracked(ci_get(message, "TrackClicks")),
            template_error=content.template_error,
            template_error_deliver=ci_get(message, "TemplateErrorDeliver") is True,
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


@dataclass(frozen=True)
class _Content:
    subject: str
    text_part: str | None
    html_part: str | None
    template_error: str


class _PrintedTooLong(Exception):
    def __init__(self, part: str, text: str) -> None:
        super().__init__(text)
        self.part, self.text = part, text


class _PrintBudget:
    """What the template language may still print in one send (MAX_PRINTED_PER_SEND)."""

    def __init__(self, characters: int) -> None:
        self.left = characters


def _content(account: Account, message: dict[str, Any], email: str, budget: _PrintBudget) -> _Content:
    """Subject, TextPart and HTMLPart as the recipient `email` gets them: with TemplateLanguage true,
    the template language printed with the message's Variables and the recipient's contact
    properties, within MAX_PRINTED_PER_RECIPIENT and what `budget` has left (_PrintedTooLong)."""
    subject, text_part, html_part = ci_get(message, "Subject") or "", ci_get(message, "TextPart"), ci_get(message, "HTMLPart")
    if ci_get(message, "TemplateLanguage") is not True:
        return _Content(subject, text_part, html_part, "")
    variables = ci_get(message, "Variables") or {}
    contact = account.find_contact(email)

    def contact_data(name: str) -> str | None:
        return account.property_value(contact, name) if contact is not None else None

    errors: list[str] = []
    recipient_left = MAX_PRINTED_PER_RECIPIENT

    def printed(name: str, part: str | None) -> str | None:
        nonlocal recipient_left
        if part is None:
            return None
        limit = min(recipient_left, budget.left)
        try:
            rendered = render(part, variables, contact_data, limit)
        except RenderedTooLong:
            if limit == recipient_left:
                text = f'"{name}" is too long once printed: the template language may print at most {MAX_PRINTED_PER_RECIPIENT} characters for one recipient.'
            else:
                text = f'"{name}" is too long once printed: the template language may print at most {MAX_PRINTED_PER_SEND} characters in one send.'
            raise _PrintedTooLong(name, text) from None
        if rendered.text is not part:  # printed anew for this recipient
            recipient_left -= len(rendered.text)
            budget.left -= len(rendered.text)
        errors.extend(rendered.errors)
        return rendered.text

    return _Content(
        printed("Subject", subject) or "", printed("TextPart", text_part), printed("HTMLPart", html_part), "; ".join(errors)
    )


def with_url_tags(html_part: str, tags: str) -> str:
    """`html_part` with URLTags in the query of each of its http(s) links, as Mailjet adds them
    "in all of the URLs in your message, before adding the Mailjet click tracking" (DevGuide "Add
    URL tags": "the query part between the first "?" character and "#" character"). GUESS: after a
    query the link has, joined by "&"; written as HTML text ("&amp;"), the link's own text kept as
    it is."""

    def tagged(match: re.Match[str]) -> str:
        group = "double" if match["double"] is not None else "single"
        start, end = match.span(group)
        address_end = html_part.find("#", start, end)
        address_end = end if address_end < 0 else address_end
        joint = "&amp;" if "?" in html_part[start:address_end] else "?"
        return html_part[match.start():address_end] + joint + html.escape(tags) + html_part[address_end:match.end()]

    return _HTML_LINK.sub(tagged, html_part)


def link_urls(html_part: str) -> list[str]:
    """The http(s) links of an HTML part, in order, as a browser reads their attributes."""
    return [
        _CHARACTER_REFERENCE.sub(lambda reference: html.unescape(reference[0]), match["double"] or match["single"])
        for match in _HTML_LINK.finditer(html_part)
    ]


def message_href(base_url: str, message_id: int) -> str:
    return f"{base_url}/v3/REST/message/{message_id}"


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
    deduplicate_campaign: bool = False,
    track_opens: bool = TRACKED_BY_DEFAULT,
    track_clicks: bool = TRACKED_BY_DEFAULT,
    template_error: str = "",
    template_error_deliver: bool = False,
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
        message_href=message_href(account.base_url, message_id),
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
        deduplicate_campaign=deduplicate_campaign,
        track_opens=track_opens,
        track_clicks=track_clicks,
        template_error=template_error,
        template_error_deliver=template_error_deliver,
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


def _tracked(value: str | None) -> bool:
    """Whether a validated TrackOpens / TrackClicks value (Globals merged in) turns tracking on.

    Mailjet's per-message switch overrides the account's tracking setting ("This option overrides
    your tracking options set on your user account", X-Mailjet-TrackOpen / X-Mailjet-TrackClick in
    Mailjet's "Emails Headers (X-headers)" article, the SMTP form of these properties);
    "account_default" leaves the account's, tracked here (TRACKED_BY_DEFAULT).
    """
    if value is None or value == "account_default":
        return TRACKED_BY_DEFAULT
    return value == "enabled"


def _address(value: dict[str, Any]) -> dict[str, str]:
    return {"Email": ci_get(value, "Email"), "Name": ci_get(value, "Name") or ""}


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
