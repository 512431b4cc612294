"""State and rules of the fake Mailjet REST API v3: accounts, contacts, lists, subscriptions,
contact properties, webhooks, bulk jobs and the App Connections → Segment settings.

Plain Python, no HTTP. Every rule that the real API enforces and that a client can observe is
here, with Mailjet's error texts where they are known (reference/mailjet.md); where we had to
guess a text or a behaviour, the comment says "Guess".

Accounts are keyed by API key and share nothing: each has its own contacts, lists, properties,
webhooks, jobs, messages and App Connections settings (`POST /_emulator/accounts` adds one).

Persistence (`--data-dir`) is not done here: every mutation marks the rows it changed in the
backend's `Changes`, and `storage.py` writes the marked rows once per request or timer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit

from destination.http_rules import basic_username_problem, unreachable_url

from ..common.clock import Clock, Timer, parse_iso
from ..common.json_body import decode_json
from ..config import BundleConfig

if TYPE_CHECKING:
    from .send import Message

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICE = "mailjet"
ACTIONS = ("addforce", "addnoforce", "remove", "unsub")
DATATYPES = ("str", "int", "float", "bool", "datetime")
NAMESPACES = ("static", "historic")
# The numbers are what the GET filter `EventType` takes (node `EventTypeValue`).
EVENT_TYPES = {"click": 1, "bounce": 2, "spam": 3, "blocked": 4, "unsub": 5, "open": 6, "sent": 7}
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
# Guess: Mailjet publishes no length limits for Name/Email/property values; 255 is the usual
# column size and matches the documented Send API Subject limit.
MAX_STRING_LENGTH = 255
JOB_DURATION = timedelta(seconds=1)
# The most a request body may hold, REST or Send: Send v3.1 takes up to 15 MB of attachments
# (reference §6), about 20 MB once base64-encoded.
MAX_BODY_BYTES = 25 * 1024 * 1024
# Deliberately simple, like most APIs: one @, no spaces, a dot in the domain. Always used with
# fullmatch: `$` would also match before a trailing newline.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Ids are int64 (MessageIDs such as 576460772022727317), so at most 19 digits; ASCII only, as
# `\d`, str.isdigit() and int() also take "²", "١٢" or "１２" (and int() "1_0", and refuses
# more than 4,300 digits with ValueError).
_ID = re.compile(r"[0-9]{1,19}")
# JSON's number grammar: float() also takes "1_000", "nan", " infinity" and non-ASCII digits.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INT64 = range(-(2**63), 2**63)
_TRUE = ("true", "1")
_FALSE = ("false", "0")


def mj_time(moment: datetime | None) -> str:
    """Mailjet renders timestamps as RFC 3339 with a Z and no fraction; unset ones are "".

    isoformat, not strftime("%Y"): glibc does not pad years below 1000 to the four digits RFC 3339
    requires.
    """
    if moment is None:
        return ""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").removesuffix("+00:00") + "Z"


def read_id(text: str) -> int | None:
    """The id (or other count, such as a Limit) in client text: ASCII digits, surrounding spaces
    allowed; None for anything else, so a caller answers "not found" or its own 400."""
    stripped = text.strip()
    return int(stripped) if _ID.fullmatch(stripped) else None


def authentication_key_problem(key: Any) -> str | None:
    """Why `key` cannot be an App Connections authentication key, or None: Segment sends it as the
    Basic auth user name, so it is a non-empty string that user name can carry."""
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    return basic_username_problem(key)


def write_key_problem(key: Any) -> str | None:
    """Why `key` cannot be the App Connection's Segment write key, or None (null or "" clear it):
    forwards sign with it as Basic auth's user name, as the fake Segment's sources require."""
    if key is not None and not isinstance(key, str):
        return "must be a string or null"
    return basic_username_problem(key) if key else None


def segment_url_problem(url: Any) -> str | None:
    """Why `url` cannot be the App Connection's Segment URL, or None: forwards post to `{url}/v1/batch`
    and sign with the write key, so a path prefix is fine but not a query, fragment or user:password."""
    if not isinstance(url, str) or not re.match(r"^https?://\S+$", url, re.IGNORECASE) or unreachable_url(url):
        return "must be an http(s) URL"
    parts = urlsplit(url)
    if parts.username is not None:
        return "must carry no user:password: forwards authenticate with the write key"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must carry no query nor fragment: forwards post to its /v1/batch"
    return None


class MailjetError(Exception):
    """An answer in the REST v3 error shape `{"ErrorInfo", "ErrorMessage", "StatusCode"}`."""

    def __init__(self, status: int, message: Any, info: Any = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.info = info

    def to_json(self) -> dict[str, Any]:
        return {"ErrorInfo": self.info, "ErrorMessage": self.message, "StatusCode": self.status}


def not_found() -> MailjetError:
    return MailjetError(404, "Object not found")


def invalid_property(name: str, detail: str) -> MailjetError:
    # Observed form: ErrorInfo "MJ08 Property Name is invalid: MJ04 Value must have at least length 1".
    return MailjetError(400, "Object properties invalid", f"MJ08 Property {name} is invalid: {detail}")


def required(name: str) -> MailjetError:
    return invalid_property(name, "MJ03 A non-empty value is required")


def not_an_array(name: str, value: Any) -> MailjetError:
    # GUESS at the words, in the form of the other type errors (parse_bool): an object sent where
    # its array was expected is there, so "a non-empty value is required" would mislead.
    return invalid_property(name, f"value {_as_json(value)} is not an array")


def account_rng(seed: int | None, api_key_id: int, sent: int) -> random.Random:
    """The random source of an account's MessageUUIDs: seeded when the bundle has a seed, distinct
    per account, and moved on past the `sent` messages of a restored account."""
    if seed is None:
        return random.Random()
    if api_key_id == 1 and sent == 0:
        return random.Random(seed)  # the default account, as before accounts could be added
    return random.Random(f"{seed}:{api_key_id}:{sent}")


# ---------------------------------------------------------------- input helpers


def body_too_large(size: int, limit: int) -> MailjetError:
    # Guess: Mailjet publishes no REST request size limit or its answer; 413 in the REST error
    # shape (Send v3.1 documents its own: `payload_too_big`).
    return MailjetError(413, f"Request entity too large: {size} bytes; the limit is {limit}")


def read_rest_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a REST v3 POST/PUT; an empty body counts as `{}` so missing fields are reported."""
    if not raw.strip():
        return {}
    try:
        payload = decode_json(raw)
    except ValueError as exc:
        # Guess: the real text for unparsable JSON is not documented; it starts like the
        # documented "Invalid json input: ..." of unknown fields.
        raise MailjetError(400, f"Invalid json input: {exc}") from exc
    if not isinstance(payload, dict):
        raise MailjetError(400, f"Invalid json input: expected a JSON object, got {type(payload).__name__}")
    return payload


def read_fields(
    body: dict[str, Any], type_name: str, writable: Iterable[str], read_only: Iterable[str] = (),
    shown: Mapping[str, Any] | None = None, path: str = "",
) -> dict[str, Any]:
    """Map JSON keys case-insensitively onto canonical names, rejecting unknown and read-only ones.

    The real API matches keys case-insensitively (observed) and rejects unknown ones with
    `Invalid json input: object ""->"TContact" has no property "x"` (php#244; `path` is the
    object's place, "" for the body). The type names other than TContact and TKeyValue are a
    guess in the same pattern.

    `shown`, for a PUT, is the object as a GET shows it: a read-only field sent back with the value
    shown is ignored, as Mailjet took a GET-change-PUT round trip (mailjet-gem#258: a listrecipient's
    own Id, ContactId and ListId sent back, answered 200; GUESS: another value is refused).
    UnsubscribedAt is refused whatever its value, as observed even when "" (java#46, gem#258).
    """
    canonical = {name.lower(): name for name in writable}
    locked = {name.lower(): name for name in read_only}
    fields: dict[str, Any] = {}
    for key, value in body.items():
        lowered = key.lower()
        if lowered in canonical:
            fields[canonical[lowered]] = value
        elif lowered in locked:
            name = locked[lowered]
            if shown is not None and name != "UnsubscribedAt" and name in shown and _same_json(shown[name], value):
                continue
            # Observed as "Internal error: MJ19 Setting a value for property "UnsubscribedAt" is not
            # allowed" with status 401 (java#46, gem#258); we answer 400 so clients do not mistake it
            # for bad credentials.
            raise MailjetError(400, f'Internal error: MJ19 Setting a value for property "{name}" is not allowed')
        else:
            raise MailjetError(400, f'Invalid json input: object "{path}"->"{type_name}" has no property "{key}"')
    return fields


def _same_json(shown: Any, sent: Any) -> bool:
    """The same JSON value: `true` is not `1`, as Python's == would have it."""
    return type(shown) is type(sent) and shown == sent


def ci_get(body: dict[str, Any], name: str, default: Any = None) -> Any:
    """A JSON key looked up case-insensitively, for payloads whose extra keys are tolerated."""
    lowered = name.lower()
    for key, value in body.items():
        if key.lower() == lowered:
            return value
    return default


def parse_bool(value: Any, name: str) -> bool:
    """Booleans arrive as JSON booleans or as the strings the docs use ("true")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise invalid_property(name, f"value {_as_json(value)} is not a boolean")


def parse_int(value: Any, name: str) -> int:
    """An integer field of a body (ContactID, ListID, Version): a JSON integer, or a string that
    `read_id` takes (every such field is an id or a small count, so a string has no sign)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = read_id(value) if isinstance(value, str) else None
    if number is None:
        raise invalid_property(name, f"value {_as_json(value)} is not an integer")
    return number


def check_string(value: Any, name: str, *, allow_empty: bool = True) -> str:
    if value is None:
        raise required(name)
    if not isinstance(value, str):
        raise invalid_property(name, f"value {_as_json(value)} is not a string")
    if not allow_empty and not value:
        # Observed (php#38): a list created without a Name answered this text (callers pass a
        # missing Name as ""); a null value is "MJ03 A non-empty value is required" above.
        raise invalid_property(name, "MJ04 Value must have at least length 1")
    if len(value) > MAX_STRING_LENGTH:
        # Guess: the text mirrors the observed MJ04 "at least" message.
        raise invalid_property(name, f"MJ04 Value must have at most length {MAX_STRING_LENGTH}")
    return value


def check_email(value: Any, name: str = "Email") -> str:
    email = check_string(value, name, allow_empty=False).strip()
    if not EMAIL_PATTERN.fullmatch(email):
        # Guess: the REST v3 text for a malformed address is not documented.
        raise invalid_property(name, f'"{email}" is not a valid email address')
    return email


def check_action(value: Any) -> str:
    if value is None or value == "":
        raise required("Action")
    if not isinstance(value, str) or value.lower() not in ACTIONS:
        # Guess: text not documented; it lists the allowed values.
        raise invalid_property("Action", f"value {_as_json(value)} is not one of {', '.join(ACTIONS)}")
    return value.lower()


# ---------------------------------------------------------------- property values


def coerce_property(datatype: str, value: Any) -> str | None:
    """The stored (string) form of a contact property value, or ValueError on a type mismatch.

    `None` unassigns the value (documented for managemanycontacts). Values come back from
    /contactdata as strings (documented `Value: string`); bools as "true"/"false" is a guess.
    """
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ValueError("not a scalar")
    if datatype == "str":
        if isinstance(value, bool):
            return "true" if value else "false"
        text = value if isinstance(value, str) else _number_text(value)
        if len(text) > MAX_STRING_LENGTH:
            raise ValueError("too long")
        return text
    if datatype == "int":
        if isinstance(value, bool):
            raise ValueError("bool is not int")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            number = int(value)
        else:
            raise ValueError("not an int")
        if number not in _INT64:
            # GUESS: an int property is 64 bits (the destination sends larger integers as `str`);
            # unbounded, 1e300 was stored as a 301-digit "int".
            raise ValueError("out of int64 range")
        return str(number)
    if datatype == "float":
        if isinstance(value, bool):
            raise ValueError("bool is not float")
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError as exc:  # an int beyond 1e308
                raise ValueError("out of a double's range") from exc
        elif isinstance(value, str) and _JSON_NUMBER.fullmatch(value.strip()):
            number = float(value)
        else:
            raise ValueError("not a float")
        if not math.isfinite(number):
            raise ValueError("not a finite float")
        return _number_text(number)
    if datatype == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise ValueError("not a bool")
    if datatype == "datetime":
        # Documented: a Unix timestamp or RFC 3339 ("2018-01-01T00:00:00").
        if isinstance(value, bool):
            raise ValueError("bool is not a datetime")
        if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip())):
            try:
                return mj_time(datetime.fromtimestamp(float(value), tz=timezone.utc))
            except (OverflowError, OSError, ValueError) as exc:
                raise ValueError("timestamp out of range") from exc
        if isinstance(value, str) and re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
            return mj_time(parse_iso(value.strip()))  # ValueError also when out of range once in UTC
        raise ValueError("not a datetime")
    raise ValueError(f"unknown datatype {datatype}")


def _number_text(number: int | float) -> str:
    return repr(number) if isinstance(number, float) else str(number)


# ---------------------------------------------------------------- query (filters, paging, sort)


@dataclass
class Query:
    """GET parameters of a REST v3 listing; `filters` has lower-cased names, first occurrence wins."""

    filters: dict[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    count_only: bool = False

    @classmethod
    def parse(cls, params: list[tuple[str, str]]) -> "Query":
        query = cls()
        for name, value in params:
            lowered = name.lower()
            if lowered in query.filters:
                continue  # documented: only the first occurrence of a filter counts
            query.filters[lowered] = value
        limit = _int_filter(query.filters.pop("limit"), "Limit") if "limit" in query.filters else DEFAULT_LIMIT
        # Documented: "Limit=0 delivers the maximum amount of results - 1000". Guess: larger
        # values are capped at the maximum rather than refused.
        query.limit = MAX_LIMIT if limit == 0 else min(limit, MAX_LIMIT)
        if "offset" in query.filters:
            offset = _int_filter(query.filters.pop("offset"), "Offset")
            # With Limit=0 the Offset is not applied: mailjet-apiv3-nodejs#68 got the first 1000
            # rows again at Offset 1001, and Mailjet's answer was to give a Limit instead.
            query.offset = offset if limit != 0 else 0
        if "sort" in query.filters:
            query.sort = _parse_sort(query.filters.pop("sort"))
        if "countonly" in query.filters:
            query.count_only = query.filters.pop("countonly").strip().lower() in _TRUE
        return query

    def get(self, name: str) -> str | None:
        return self.filters.get(name.lower())

    def get_int(self, name: str) -> int | None:
        raw = self.get(name)
        return None if raw is None else _int_filter(raw, name)

    def get_bool(self, name: str) -> bool | None:
        raw = self.get(name)
        if raw is None:
            return None
        lowered = raw.strip().lower()
        if lowered not in _TRUE + _FALSE:
            raise _bad_filter(name, raw)
        return lowered in _TRUE


def _bad_filter(name: str, raw: str) -> MailjetError:
    # Guess: the text for a malformed filter value is not documented.
    return MailjetError(400, f'Invalid value "{raw}" for filter "{name}"')


def _int_filter(raw: str, name: str) -> int:
    """A filter or paging value that is a number (an id, a Limit): 400 unless `read_id` takes it."""
    number = read_id(raw)
    if number is None:
        raise _bad_filter(name, raw)
    return number


def _parse_sort(raw: str) -> list[tuple[str, bool]]:
    """`Sort=ID+DESC`, `Sort=Email`, several separated by commas; `+` may arrive as a space."""
    keys = []
    for part in raw.split(","):
        words = part.replace("+", " ").split()
        if not words:
            continue
        descending = len(words) > 1 and words[-1].upper() == "DESC"
        keys.append((words[0], descending))
    return keys


def sort_keys(query: Query, fields: Iterable[str]) -> list[tuple[str, bool]]:
    """The Sort of `query` as (field, descending), each name matched case-insensitively to one of
    `fields`, the field names of the listing's rows; 400 for any other name. Checked against the
    names, not a row, so the answer does not depend on whether anything matched."""
    by_lower = {name.lower(): name for name in fields}
    keys = []
    for name, descending in query.sort:
        key = by_lower.get(name.lower())
        if key is None:
            # Guess: the real API says some properties cannot be sorted on; the text is ours.
            raise MailjetError(400, f'Sort on property "{name}" is not supported')
        keys.append((key, descending))
    return keys


def paginate(
    items: Sequence[T],
    query: Query,
    render: Callable[[T], dict[str, Any]],
    fields: Iterable[str],
    id_of: Callable[[T], int] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The rendered rows of the page `query` asks for, and the Total to report with them.

    Sorted by `fields`, the names of the rendered rows' fields, which a Sort must name (`sort_keys`).
    Only the page is rendered unless a Sort needs every row: a listing may hold 100,000 contacts,
    and rendering them all took ~1 s. `id_of(item)`, when given, is the value of its row's `ID`, so
    a Sort on ID (the usual one) needs no row rendered either; ids are unique, so the first key decides.
    """
    keys = sort_keys(query, fields)
    if query.count_only:
        # Documented: countOnly answers the number of records and no Data.
        return [], len(items)
    window = slice(query.offset, query.offset + query.limit)
    if keys and keys[0][0] == "ID" and id_of is not None:
        items, keys = sorted(items, key=id_of, reverse=keys[0][1]), []
    if not keys:
        rows = [render(item) for item in items[window]]
        return rows, len(rows)
    rows = [render(item) for item in items]
    for key, descending in reversed(keys):
        rows = sorted(rows, key=lambda row: _sort_key(row.get(key)), reverse=descending)
    rows = rows[window]
    return rows, len(rows)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (0, str(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value).lower())


# ---------------------------------------------------------------- objects


def _email_key(email: str) -> str:
    """An address as the contacts' index keys it (Mailjet matches addresses case-insensitively).

    The address itself when it is lower case already, as most are: `lower()` always makes a new
    string, a second copy of the address (~60 bytes a contact).
    """
    key = email.lower()
    return email if key == email else key


@dataclass(slots=True)
class Contact:
    id: int
    email: str
    created_at: datetime
    name: str = ""
    is_excluded_from_campaigns: bool = False
    exclusion_updated_at: datetime | None = None
    last_update_at: datetime | None = None
    last_activity_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    delivered_count: int = 0
    is_opt_in_pending: bool = False
    is_spam_complaining: bool = False
    # Property values, by the defined property name, already in their string form.
    properties: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "CreatedAt": mj_time(self.created_at),
            "DeliveredCount": self.delivered_count,
            "Email": self.email,
            "ExclusionFromCampaignsUpdatedAt": mj_time(self.exclusion_updated_at),
            "ID": self.id,
            "IsExcludedFromCampaigns": self.is_excluded_from_campaigns,
            "IsOptInPending": self.is_opt_in_pending,
            "IsSpamComplaining": self.is_spam_complaining,
            "LastActivityAt": mj_time(self.last_activity_at),
            "LastUpdateAt": mj_time(self.last_update_at),
            "Name": self.name,
            "UnsubscribedAt": mj_time(self.unsubscribed_at),
            "UnsubscribedBy": "",
        }


@dataclass
class ContactsList:
    id: int
    name: str
    address: str
    created_at: datetime
    is_deleted: bool = False


@dataclass(slots=True)
class ListRecipient:
    id: int
    contact_id: int
    list_id: int
    subscribed_at: datetime
    is_active: bool = True
    is_unsubscribed: bool = False
    unsubscribed_at: datetime | None = None


@dataclass
class PropertyDefinition:
    id: int
    name: str
    datatype: str
    namespace: str = "static"

    def to_json(self) -> dict[str, Any]:
        return {"Datatype": self.datatype, "ID": self.id, "Name": self.name, "NameSpace": self.namespace}


@dataclass
class EventCallback:
    id: int
    api_key_id: int
    event_type: str
    url: str
    version: int = 1
    is_backup: bool = False
    status: str = "alive"

    def to_json(self) -> dict[str, Any]:
        return {
            "APIKeyID": self.api_key_id,
            "EventType": self.event_type,
            "ID": self.id,
            "IsBackup": self.is_backup,
            "Status": self.status,
            "Url": self.url,
            "Version": self.version,
        }


def job_error_file(base_url: str, job_id: int) -> str:
    """Where a managemanycontacts job that ended in Error serves its ErrorFile."""
    return f"{base_url}/v3/DATA/batchjob/{job_id}/JSONError/application:json/LAST"


@dataclass
class Job:
    """A managemanycontacts job: `In Progress` until its timer runs it, then Completed or Error."""

    id: int
    contacts_lists: list[dict[str, Any]]  # [{"ListID": int, "Action": str}]
    contacts: list[Any]
    started_at: datetime
    list_id: int | None = None  # set for /contactslist/{id}/managemanycontacts jobs
    status: str = "In Progress"
    count: int = 0
    ended_at: datetime | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_file: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ContactsLists": self.contacts_lists,
            "Count": self.count,
            "Error": self.errors[0]["Error"] if self.errors else "",
            "ErrorFile": self.error_file,
            "JobEnd": mj_time(self.ended_at),
            "JobStart": mj_time(self.started_at),
            "Status": self.status,
        }


@dataclass
class AppConnection:
    """App Connections → Segment: the page where the Segment side of the integration is set up."""

    authentication_key: str
    list_id: int
    segment_url: str
    send_events: bool = False
    write_key: str | None = None
    # True once a user gave a segmentUrl other than the bundle's own Segment: only such a URL is kept
    # across restarts. Otherwise the connection follows the bundle's Segment, whose port may change
    # at each start (--segment-port 0); see `Tenant.follow_bundle_segment`.
    segment_url_explicit: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "authenticationKey": self.authentication_key,
            "listId": self.list_id,
            "sendEvents": self.send_events,
            "writeKey": self.write_key,
            "segmentUrl": self.segment_url,
        }


# ---------------------------------------------------------------- changes and timers


class Changes:
    """Which stored rows changed since the last save: `(api_key, kind, key)`, plus accounts to wipe.

    Off (marks nothing) unless a store is attached; `save` is the store's writer, called after each
    request (by the persistence middleware) and after each timer (by `AccountTimers`).
    """

    def __init__(self) -> None:
        self.enabled = False
        self.rows: set[tuple[str, str, int]] = set()
        self.wiped: set[str] = set()
        self.save: Callable[[], None] = lambda: None

    def mark(self, api_key: str, kind: str, key: int) -> None:
        if self.enabled:
            self.rows.add((api_key, kind, key))

    def wipe(self, api_key: str) -> None:
        """Every stored row of the account goes (before the rows marked after this are written)."""
        if self.enabled:
            self.wiped.add(api_key)
            self.rows = {row for row in self.rows if row[0] != api_key}


class AccountTimers:
    """The clock timers of one account: cancelled together when the account is reset, and each
    followed by a save of what it changed (a timer runs outside any request)."""

    def __init__(self, clock: Clock, changes: Changes) -> None:
        self._clock = clock
        self._changes = changes
        self._live: dict[int, Timer] = {}  # by id(): timers compare by due time, they do not hash

    def call_at(self, due: datetime, callback: Callable[[], None]) -> Timer:
        # Every timer of an account is a plain function: what it starts over the network runs as a
        # task of its own (outbound.py), so that the shared clock is not held.
        def run() -> None:
            self._live.pop(id(timer), None)
            callback()
            self._changes.save()

        timer = self._clock.call_at(due, run, owner=SERVICE)
        self._live[id(timer)] = timer
        return timer

    def cancel(self, timer: Timer) -> None:
        Clock.cancel(timer)
        self._live.pop(id(timer), None)

    def cancel_all(self) -> None:
        for timer in self._live.values():
            Clock.cancel(timer)
        self._live.clear()


# ---------------------------------------------------------------- the account


class Account:
    """One Mailjet account (one API key pair) and everything it owns."""

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        api_key_id: int,
        clock: Clock,
        base_url: str,
        default_list_id: int,
        auth_key: str,
        segment_url: str,
        seed: int | None = None,
        changes: Changes | None = None,
    ) -> None:
        self.api_key = api_key
        self.secret_key = secret_key
        self.api_key_id = api_key_id
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.bundle_segment_url = segment_url  # the bundle's Segment in this run: App Connections' default
        self.seed = seed
        # Seeded when the bundle has a seed, so MessageUUIDs repeat from run to run.
        self.rng = account_rng(seed, api_key_id, 0)
        self.changes = changes or Changes()
        # Every change `touch` marks, counted whether or not it is stored: the dashboard's change feed.
        self.version = 0
        self.timers = AccountTimers(clock, self.changes)
        self.contacts: dict[int, Contact] = {}
        self.lists: dict[int, ContactsList] = {}
        self.recipients: dict[int, ListRecipient] = {}
        self.properties: dict[int, PropertyDefinition] = {}
        self.callbacks: dict[int, EventCallback] = {}
        self.jobs: dict[int, Job] = {}
        self.messages: list[Message] = []
        # Indexes: 100,000 contacts must not mean a scan per lookup.
        self._contacts_by_email: dict[str, Contact] = {}
        # list ID -> contact ID -> subscription: a list's members and a contact's lists without a scan.
        self._recipients_by_list: dict[int, dict[int, ListRecipient]] = {}
        # Hooks other parts of the fake (e.g. the email-events lifecycle) subscribe to.
        self.on_message_sent: list[Callable[[Message], None]] = []
        # The next ID of each kind of object (lists count on from the account's first list).
        self.next_ids = {name: 1 for name in ("contact", "recipient", "property", "callback", "job", "message")}
        self.next_ids["list"] = default_list_id + 1
        # A fresh account has one contact list, as a new Mailjet account does after sign-up.
        self.lists[default_list_id] = ContactsList(default_list_id, "segjet", self._address(default_list_id), clock.now())
        self.touch("list", default_list_id)
        self.app_connection = AppConnection(auth_key, default_list_id, segment_url)
        self.touch("account", 0)

    def new_id(self, kind: str) -> int:
        number = self.next_ids[kind]
        self.next_ids[kind] = number + 1
        return number

    def touch(self, kind: str, key: int) -> None:
        """Mark a stored row as changed (created, modified or deleted) for the next save, and count the change."""
        self.version += 1
        self.changes.mark(self.api_key, kind, key)

    def restore(
        self,
        *,
        contacts: list[Contact],
        lists: list[ContactsList],
        recipients: list[ListRecipient],
        properties: list[PropertyDefinition],
        callbacks: list[EventCallback],
        jobs: list[Job],
        messages: list[Message],
        next_ids: dict[str, int],
        app_connection: AppConnection,
    ) -> None:
        """Replace the whole state (storage and snapshots); no timer is armed until `resume_timers`."""
        self.contacts = {c.id: c for c in contacts}
        self.lists = {l.id: l for l in lists}
        self.recipients = {r.id: r for r in recipients}
        self.properties = {p.id: p for p in properties}
        self.callbacks = {c.id: c for c in callbacks}
        self.jobs = {j.id: j for j in jobs}
        self.messages = messages
        self.next_ids = dict(next_ids)
        self.app_connection = app_connection
        self._contacts_by_email = {_email_key(c.email): c for c in contacts}
        self._recipients_by_list = {}
        for recipient in recipients:
            self._recipients_by_list.setdefault(recipient.list_id, {})[recipient.contact_id] = recipient
        # Not the old stream: a restored seeded account must not hand out its MessageUUIDs again.
        self.rng = account_rng(self.seed, self.api_key_id, self.next_ids["message"])

    def resume_timers(self) -> None:
        """Arm the timers a restored state needs: jobs still In Progress run when due."""
        for job in self.jobs.values():
            if job.status == "In Progress":
                self.timers.call_at(job.started_at + JOB_DURATION, lambda job_id=job.id: self.run_job(job_id))

    # -- credentials

    def check_secret(self, secret: str) -> bool:
        return hmac.compare_digest(secret.encode(), self.secret_key.encode())

    # -- contacts

    def find_contact(self, ref: str | int) -> Contact | None:
        """A contact by ID or by email (case-insensitive), as `/contact/{ID or email}` accepts."""
        contact_id = ref if isinstance(ref, int) else read_id(ref)
        if contact_id is not None:
            return self.contacts.get(contact_id)
        return self._contacts_by_email.get(ref.strip().lower())

    def get_contact(self, ref: str | int) -> Contact:
        contact = self.find_contact(ref)
        if contact is None:
            raise not_found()
        return contact

    def create_contact(self, body: dict[str, Any]) -> Contact:
        fields = read_fields(body, "TContact", ("Email", "Name", "IsExcludedFromCampaigns"), _CONTACT_READ_ONLY)
        email = check_email(fields.get("Email"))
        name = check_string(fields.get("Name", ""), "Name")
        excluded = parse_bool(fields["IsExcludedFromCampaigns"], "IsExcludedFromCampaigns") if "IsExcludedFromCampaigns" in fields else False
        if self.find_contact(email) is not None:
            raise MailjetError(400, f'MJ18 A Contact resource with value "{email}" for Email already exists.')
        contact = self._new_contact(email, name, self.clock.now())
        if excluded:
            contact.is_excluded_from_campaigns = True
            contact.exclusion_updated_at = contact.created_at
        return contact

    def update_contact(self, ref: str, body: dict[str, Any]) -> tuple[Contact, bool]:
        contact = self.get_contact(ref)
        fields = read_fields(body, "TContact", ("Name", "IsExcludedFromCampaigns"), ("Email",) + _CONTACT_READ_ONLY, contact.to_json())
        # Every field checked before any is applied: a PUT answered 400 changes nothing.
        name = check_string(fields["Name"], "Name") if "Name" in fields else None
        excluded = parse_bool(fields["IsExcludedFromCampaigns"], "IsExcludedFromCampaigns") if "IsExcludedFromCampaigns" in fields else None
        changed = False
        if name is not None:
            changed |= name != contact.name
            contact.name = name
        if excluded is not None:
            if excluded != contact.is_excluded_from_campaigns:
                contact.is_excluded_from_campaigns = excluded
                contact.exclusion_updated_at = self.clock.now()
                changed = True
        if changed:
            contact.last_update_at = self.clock.now()
            self.touch("contact", contact.id)
        return contact, changed

    def list_contacts(self, query: Query) -> list[Contact]:
        contacts = list(self.contacts.values())
        list_id = query.get_int("ContactsList")
        if list_id is not None:
            members = self._recipients_by_list.get(list_id, {})
            contacts = [c for c in contacts if c.id in members]
        # No Email filter: Mailjet's /contact has none, and an unknown filter is ignored (observed:
        # ?Email= answered the first contacts, reference §1); /contact/{email} finds one by address.
        excluded = query.get_bool("IsExcludedFromCampaigns")
        if excluded is not None:
            contacts = [c for c in contacts if c.is_excluded_from_campaigns == excluded]
        return self._common_contact_filters(contacts, query)

    def _common_contact_filters(self, contacts: list[Contact], query: Query) -> list[Contact]:
        """The filters /contact and /contactdata share.

        `IsUnsubscribed` (the java client's Contact and Contactdata filters) reads the contact's own
        UnsubscribedAt, which a list's unsub never sets: observed, `ContactsList=1&IsUnsubscribed=true`
        answered no contact though the list had unsubscribed members (mailjet-apiv3-php#54, #209).
        `Campaign` (node types): the contacts a message of that campaign went to. GUESS: any of its
        messages counts, whatever became of it; campaign ID 0 (a plain transactional email's
        mj_campaign_id) is no campaign."""
        unsubscribed = query.get_bool("IsUnsubscribed")
        if unsubscribed is not None:
            contacts = [c for c in contacts if (c.unsubscribed_at is not None) == unsubscribed]
        campaign_id = query.get_int("Campaign")
        if campaign_id is None:
            return contacts
        recipients = {m.contact_id for m in self.messages if campaign_id and m.campaign_id == campaign_id}
        return [c for c in contacts if c.id in recipients]

    def ensure_contact(self, email: str, name: str | None = None, now: datetime | None = None) -> Contact:
        """The contact for `email`, created if new (managecontact and Send create contacts).

        `now` is when the change happens, the clock's time unless given (as by a job: `run_job`).
        """
        contact = self.find_contact(email)
        if contact is None:
            contact = self._new_contact(email, name or "", now or self.clock.now())
        return contact

    def _new_contact(self, email: str, name: str, created_at: datetime) -> Contact:
        contact = Contact(self.new_id("contact"), email, created_at, name=name)
        self.contacts[contact.id] = contact
        self._contacts_by_email[_email_key(email)] = contact
        self.touch("contact", contact.id)
        return contact

    # -- contact lists

    def get_list(self, ref: str) -> ContactsList:
        list_id = read_id(ref)
        contacts_list = None if list_id is None else self.lists.get(list_id)
        if contacts_list is None:
            raise not_found()
        return contacts_list

    def find_list_by_alt(self, alt: str) -> ContactsList | None:
        """A list by name or address: the `ListALT` alternate key of /listrecipient."""
        return next((l for l in self.lists.values() if alt in (l.name, l.address)), None)

    def create_list(self, body: dict[str, Any]) -> ContactsList:
        fields = read_fields(body, "TContactsList", ("Name", "IsDeleted"), _LIST_READ_ONLY)
        name = check_string(fields.get("Name", ""), "Name", allow_empty=False)
        self._check_list_name_free(name, None)
        # Checked before the ID is taken: a refused POST must not use one up (the stored counter
        # is written only with a changed row).
        deleted = parse_bool(fields["IsDeleted"], "IsDeleted") if "IsDeleted" in fields else False
        list_id = self.new_id("list")
        contacts_list = ContactsList(list_id, name, self._address(list_id), self.clock.now(), deleted)
        self.lists[list_id] = contacts_list
        self.touch("list", list_id)
        return contacts_list

    def update_list(self, ref: str, body: dict[str, Any]) -> tuple[ContactsList, bool]:
        contacts_list = self.get_list(ref)
        if ci_get(body, "Address") is not None and ci_get(body, "Address") != contacts_list.address:
            # Observed text (php-simple#107, there with status 401; we answer 400).
            raise MailjetError(400, "Internal error: List address is automatically generated and can't be changed")
        body = {k: v for k, v in body.items() if k.lower() != "address"}
        fields = read_fields(body, "TContactsList", ("Name", "IsDeleted"), _LIST_READ_ONLY, self.list_json(contacts_list))
        # Every field checked before any is applied: a PUT answered 400 changes nothing.
        name = check_string(fields["Name"], "Name", allow_empty=False) if "Name" in fields else None
        if name is not None:
            self._check_list_name_free(name, contacts_list.id)
        deleted = parse_bool(fields["IsDeleted"], "IsDeleted") if "IsDeleted" in fields else None
        changed = False
        if name is not None:
            changed |= name != contacts_list.name
            contacts_list.name = name
        if deleted is not None:
            changed |= deleted != contacts_list.is_deleted
            contacts_list.is_deleted = deleted
        self.touch("list", contacts_list.id)
        return contacts_list, changed

    def delete_list(self, ref: str) -> None:
        # Guess: the list and its subscriptions go away at once (the real API may keep the list
        # with IsDeleted=true for a while).
        contacts_list = self.get_list(ref)
        del self.lists[contacts_list.id]
        self.touch("list", contacts_list.id)
        for recipient in list(self.list_members(contacts_list.id)):
            self._remove_recipient(recipient)
        if self.app_connection.list_id == contacts_list.id:
            self.app_connection.list_id = 0

    def list_lists(self, query: Query) -> list[ContactsList]:
        lists = list(self.lists.values())
        name = query.get("Name")
        if name is not None:
            lists = [l for l in lists if l.name == name]
        address = query.get("Address")
        if address is not None:
            lists = [l for l in lists if l.address == address]
        deleted = query.get_bool("IsDeleted")
        if deleted is not None:
            lists = [l for l in lists if l.is_deleted == deleted]
        exclude = query.get_int("ExcludeID")
        if exclude is not None:
            lists = [l for l in lists if l.id != exclude]
        return lists

    def list_json(self, contacts_list: ContactsList) -> dict[str, Any]:
        # Guess: SubscriberCount counts subscriptions that are not unsubscribed.
        subscribers = sum(1 for r in self.list_members(contacts_list.id) if not r.is_unsubscribed)
        return {
            "Address": contacts_list.address,
            "CreatedAt": mj_time(contacts_list.created_at),
            "ID": contacts_list.id,
            "IsDeleted": contacts_list.is_deleted,
            "Name": contacts_list.name,
            "SubscriberCount": subscribers,
        }

    def _check_list_name_free(self, name: str, own_id: int | None) -> None:
        if any(l.name == name and l.id != own_id for l in self.lists.values()):
            # Guess: the MJ18 text of duplicate contacts, applied to lists ("Name will be a unique identifier").
            raise MailjetError(400, f'MJ18 A ContactsList resource with value "{name}" for Name already exists.')

    def _address(self, list_id: int) -> str:
        return hashlib.sha1(f"{self.api_key}:{list_id}".encode()).hexdigest()[:9]

    # -- subscriptions (list recipients)

    def find_recipient(self, contact_id: int, list_id: int) -> ListRecipient | None:
        members = self._recipients_by_list.get(list_id)
        return None if members is None else members.get(contact_id)

    def list_members(self, list_id: int) -> Iterable[ListRecipient]:
        """The subscriptions to list `list_id`, unsubscribed ones included."""
        return self._recipients_by_list.get(list_id, {}).values()

    def subscriptions_of(self, contact_id: int) -> list[ListRecipient]:
        """The contact's subscriptions, unsubscribed ones included, oldest first."""
        found = [members[contact_id] for members in self._recipients_by_list.values() if contact_id in members]
        return sorted(found, key=lambda recipient: recipient.id)

    def _add_recipient(self, recipient: ListRecipient) -> None:
        self.recipients[recipient.id] = recipient
        self._recipients_by_list.setdefault(recipient.list_id, {})[recipient.contact_id] = recipient
        self.touch("recipient", recipient.id)

    def _remove_recipient(self, recipient: ListRecipient) -> None:
        del self.recipients[recipient.id]
        members = self._recipients_by_list[recipient.list_id]
        del members[recipient.contact_id]
        if not members:
            del self._recipients_by_list[recipient.list_id]
        self.touch("recipient", recipient.id)

    def apply_action(self, contact: Contact, list_id: int, action: str, now: datetime | None = None) -> ListRecipient | None:
        """addforce | addnoforce | remove | unsub, as documented for managecontact (`now` as in `ensure_contact`)."""
        recipient = self.find_recipient(contact.id, list_id)
        now = now or self.clock.now()
        if action == "remove":
            if recipient is not None:
                self._remove_recipient(recipient)
            return None
        if recipient is None:
            recipient = ListRecipient(self.new_id("recipient"), contact.id, list_id, now)
            self._add_recipient(recipient)
        self.touch("recipient", recipient.id)
        recipient.is_active = True
        if action == "addforce" and recipient.is_unsubscribed:
            recipient.is_unsubscribed = False
            recipient.unsubscribed_at = None
        elif action == "unsub" and not recipient.is_unsubscribed:
            recipient.is_unsubscribed = True
            recipient.unsubscribed_at = now
        return recipient

    def get_recipient(self, ref: str) -> ListRecipient:
        recipient_id = read_id(ref)
        recipient = None if recipient_id is None else self.recipients.get(recipient_id)
        if recipient is None:
            raise not_found()
        return recipient

    def create_recipient(self, body: dict[str, Any]) -> ListRecipient:
        fields = read_fields(
            body,
            "TListRecipient",
            ("ContactID", "ContactALT", "ListID", "ListALT", "IsUnsubscribed", "IsActive"),
            ("ID", "ListName", "SubscribedAt", "UnsubscribedAt"),
        )
        contact = self._resolve_ref(fields, "ContactID", "ContactALT", "Contact", self.find_contact)
        contacts_list = self._resolve_ref(
            fields, "ListID", "ListALT", "List", lambda v: self.lists.get(v) if isinstance(v, int) else self.find_list_by_alt(v)
        )
        if self.find_recipient(contact.id, contacts_list.id) is not None:
            raise MailjetError(400, "A duplicate ListRecipient already exists.")  # observed, php-simple#46
        # Checked before the ID is taken: a refused POST must not use one up.
        active = parse_bool(fields["IsActive"], "IsActive") if "IsActive" in fields else True
        unsubscribed = parse_bool(fields["IsUnsubscribed"], "IsUnsubscribed") if "IsUnsubscribed" in fields else False
        recipient = ListRecipient(self.new_id("recipient"), contact.id, contacts_list.id, self.clock.now(), is_active=active)
        if unsubscribed:
            recipient.is_unsubscribed = True
            recipient.unsubscribed_at = recipient.subscribed_at
        self._add_recipient(recipient)
        return recipient

    def _resolve_ref(self, fields: dict[str, Any], id_key: str, alt_key: str, label: str, lookup: Callable[[Any], Any]) -> Any:
        if fields.get(id_key) not in (None, "", 0, "0"):
            ref = parse_int(fields[id_key], id_key)
            found = lookup(ref)
            if found is None:
                # Guess: same text as the observed alternate-key failure, with the ID.
                raise MailjetError(400, f'Property "{label}", value "{ref}" could not be resolved to an ID')
            return found
        if fields.get(alt_key) not in (None, ""):
            alt = check_string(fields[alt_key], alt_key)
            found = lookup(alt)
            if found is None:
                # Observed (nodejs#185).
                raise MailjetError(400, f'Property "{label}", alternate key value "{alt}" could not be resolved to an ID')
            return found
        raise required(label)  # observed: "MJ08 Property Contact is invalid: MJ03 A non-empty value is required"

    def update_recipient(self, ref: str, body: dict[str, Any]) -> tuple[ListRecipient, bool]:
        recipient = self.get_recipient(ref)
        fields = read_fields(
            body,
            "TListRecipient",
            ("IsUnsubscribed", "IsActive"),
            ("ID", "ContactID", "ContactALT", "ListID", "ListALT", "ListName", "SubscribedAt", "UnsubscribedAt"),
            self.recipient_json(recipient),
        )
        # Every field checked before any is applied: a PUT answered 400 changes nothing.
        active = parse_bool(fields["IsActive"], "IsActive") if "IsActive" in fields else None
        unsubscribed = parse_bool(fields["IsUnsubscribed"], "IsUnsubscribed") if "IsUnsubscribed" in fields else None
        changed = False
        if active is not None:
            changed |= active != recipient.is_active
            recipient.is_active = active
        if unsubscribed is not None:
            if unsubscribed != recipient.is_unsubscribed:
                recipient.is_unsubscribed = unsubscribed
                recipient.unsubscribed_at = self.clock.now() if unsubscribed else None
                changed = True
        self.touch("recipient", recipient.id)
        return recipient, changed

    def delete_recipient(self, ref: str) -> None:
        self._remove_recipient(self.get_recipient(ref))

    def list_recipients(self, query: Query) -> list[ListRecipient]:
        contact_id = query.get_int("Contact")
        list_id = query.get_int("ContactsList")
        email = query.get("ContactEmail")
        by_email = self.find_contact(email.strip()) if email is not None and "@" in email else None
        # Started from the narrowest index a filter allows, a contact's few subscriptions before a
        # list's members (every contact, maybe); the filters below still all apply. Each index is
        # in ID order, as the whole listing is.
        if email is not None:
            recipients = [] if by_email is None else self.subscriptions_of(by_email.id)
        elif contact_id is not None:
            recipients = self.subscriptions_of(contact_id)
        elif list_id is not None:
            recipients = list(self.list_members(list_id))
        else:
            recipients = list(self.recipients.values())
        if contact_id is not None:
            recipients = [r for r in recipients if r.contact_id == contact_id]
        if list_id is not None:
            recipients = [r for r in recipients if r.list_id == list_id]
        list_name = query.get("ListName")
        if list_name is not None:
            recipients = [r for r in recipients if r.list_id in self.lists and self.lists[r.list_id].name == list_name]
        unsub = query.get_bool("Unsub")
        if unsub is not None:
            recipients = [r for r in recipients if r.is_unsubscribed == unsub]
        excluded = query.get_bool("IsExcludedFromCampaigns")
        if excluded is not None:
            recipients = [r for r in recipients if self.contacts[r.contact_id].is_excluded_from_campaigns == excluded]
        return recipients

    def recipient_json(self, recipient: ListRecipient) -> dict[str, Any]:
        contacts_list = self.lists.get(recipient.list_id)
        return {
            "ContactID": recipient.contact_id,
            "ID": recipient.id,
            "IsActive": recipient.is_active,
            "IsUnsubscribed": recipient.is_unsubscribed,
            "ListID": recipient.list_id,
            "ListName": contacts_list.name if contacts_list else "",
            "SubscribedAt": mj_time(recipient.subscribed_at),
            "UnsubscribedAt": mj_time(recipient.unsubscribed_at),
        }

    # -- managecontact, managecontactslists, getcontactslists

    def manage_contact(self, list_ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /contactslist/{id}/managecontact: upsert a contact, its properties and its subscription."""
        contacts_list = self.get_list(list_ref)
        fields = read_fields(body, "TContactslistManageContact", ("Email", "Name", "Action", "Properties"))
        action = check_action(fields.get("Action"))
        email = check_email(fields.get("Email"))
        name = check_string(fields["Name"], "Name") if fields.get("Name") is not None else None
        properties = self.check_properties(fields.get("Properties"))
        contact = self.find_contact(email)
        if contact is None and action == "remove":
            # Guess: removing an unknown address from a list is a no-op that creates nothing.
            return {"ContactID": 0, "Email": email, "Action": action, "Name": name or "", "Properties": {}}
        contact = self.ensure_contact(email, name)
        self.apply_contact_changes(contact, name, None, properties)
        self.apply_action(contact, contacts_list.id, action)
        return {
            "ContactID": contact.id,
            "Email": contact.email,
            "Action": action,
            "Name": contact.name,
            # Documented (the API reference's text in mailjet-apiv3-go and laravel-mailjet): "the same
            # format but with all properties available for that contact", not only those sent
            # (php#68 saw one set from the dashboard). GUESS: the values as contactdata shows them, text.
            "Properties": dict(contact.properties),
        }

    def manage_contacts_lists(self, contact_ref: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        contact = self.get_contact(contact_ref)
        fields = read_fields(body, "TContactManageContactsLists", ("ContactsLists",))
        items = self._check_contacts_lists(fields.get("ContactsLists"), required_list=True)
        for item in items:
            self.apply_action(contact, item["ListID"], item["Action"])
        return items

    def _check_contacts_lists(self, raw: Any, *, required_list: bool) -> list[dict[str, Any]]:
        """`[{"ListID", "Action"}]`, validated as a whole; errors in the documented per-item form."""
        if raw is None and not required_list:
            return []
        if raw is not None and not isinstance(raw, list):
            raise not_an_array("ContactsLists", raw)
        if required_list and not raw:
            raise required("ContactsLists")
        items, problems = [], []
        for entry in raw:
            entry = entry if isinstance(entry, dict) else {}
            list_id, action = ci_get(entry, "ListID"), ci_get(entry, "Action")
            error = None
            try:
                list_id = parse_int(list_id, "ListID")
                if list_id not in self.lists:
                    error = "listID missing or not valid"
            except MailjetError:
                error = "listID missing or not valid"
            if error is None and (not isinstance(action, str) or action.lower() not in ACTIONS):
                error = "action missing or not valid"
            if error:
                problems.append({"ListID": _echo(ci_get(entry, "ListID")), "Action": _echo(ci_get(entry, "Action")), "Error": error})
            else:
                items.append({"ListID": list_id, "Action": action.lower()})
        if problems:
            raise MailjetError(400, {"ContactsLists": problems})
        return items

    def get_contacts_lists(self, contact_ref: str) -> list[dict[str, Any]]:
        contact = self.get_contact(contact_ref)
        return [
            {
                "IsActive": r.is_active,
                "IsUnsub": r.is_unsubscribed,
                "ListID": r.list_id,
                "SubscribedAt": mj_time(r.subscribed_at),
            }
            for r in self.subscriptions_of(contact.id)
        ]

    # -- contact properties (definitions and values)

    def find_property(self, name: str) -> PropertyDefinition | None:
        # Guess: property names are matched case-insensitively, like JSON keys.
        wanted = name.lower()
        return next((p for p in self.properties.values() if p.name.lower() == wanted), None)

    def property_value(self, contact: Contact, name: str) -> str | None:
        """`contact`'s value of property `name`, named in any case, or None.

        Values are kept under the defined spelling ("Segment_User_ID") whatever spelling wrote
        them, so a reader must resolve the name as writers do (find_property), not index by it."""
        definition = self.find_property(name)
        return contact.properties.get(definition.name) if definition is not None else None

    def get_property(self, ref: str) -> PropertyDefinition:
        """By ID, or by name (`/contactmetadata/{ID or name}`; by name is a guess)."""
        property_id = read_id(ref)
        found = self.find_property(ref) if property_id is None else self.properties.get(property_id)
        if found is None:
            raise not_found()
        return found

    def create_property(self, body: dict[str, Any]) -> PropertyDefinition:
        fields = read_fields(body, "TContactMetaData", ("Name", "Datatype", "NameSpace"), ("ID",))
        name = check_string(fields.get("Name", ""), "Name", allow_empty=False)
        datatype = self._check_datatype(fields.get("Datatype"))
        namespace = self._check_namespace(fields.get("NameSpace", "static"))
        if self.find_property(name) is not None:
            # Guess: the MJ18 pattern of duplicate contacts.
            raise MailjetError(400, f'MJ18 A ContactMetaData resource with value "{name}" for Name already exists.')
        definition = PropertyDefinition(self.new_id("property"), name, datatype, namespace)
        self.properties[definition.id] = definition
        self.touch("property", definition.id)
        return definition

    def update_property(self, ref: str, body: dict[str, Any]) -> tuple[PropertyDefinition, bool]:
        definition = self.get_property(ref)
        fields = read_fields(body, "TContactMetaData", ("Name", "Datatype", "NameSpace"), ("ID",), definition.to_json())
        # Every field checked before any is applied: a PUT answered 400 renames no value.
        name = check_string(fields["Name"], "Name", allow_empty=False) if "Name" in fields else None
        if name is not None:
            other = self.find_property(name)
            if other is not None and other.id != definition.id:
                raise MailjetError(400, f'MJ18 A ContactMetaData resource with value "{name}" for Name already exists.')
        datatype = self._check_datatype(fields["Datatype"]) if "Datatype" in fields else None
        namespace = self._check_namespace(fields["NameSpace"]) if "NameSpace" in fields else None
        changed = False
        if name is not None:
            if name != definition.name:
                for contact in self.contacts.values():
                    if definition.name in contact.properties:
                        contact.properties[name] = contact.properties.pop(definition.name)
                        self.touch("contact", contact.id)
                definition.name = name
                changed = True
        if datatype is not None:
            changed |= datatype != definition.datatype
            definition.datatype = datatype
        if namespace is not None:
            changed |= namespace != definition.namespace
            definition.namespace = namespace
        self.touch("property", definition.id)
        return definition, changed

    def delete_property(self, ref: str) -> None:
        definition = self.get_property(ref)
        del self.properties[definition.id]
        self.touch("property", definition.id)
        for contact in self.contacts.values():
            if contact.properties.pop(definition.name, None) is not None:
                self.touch("contact", contact.id)

    def list_properties(self, query: Query) -> list[PropertyDefinition]:
        definitions = list(self.properties.values())
        datatype = query.get("DataType")
        if datatype is not None:
            definitions = [p for p in definitions if p.datatype == datatype.lower()]
        namespace = query.get("Namespace")
        if namespace is not None:
            definitions = [p for p in definitions if p.namespace == namespace.lower()]
        name = query.get("Name")
        if name is not None:
            definitions = [p for p in definitions if p.name.lower() == name.lower()]
        return definitions

    @staticmethod
    def _check_datatype(value: Any) -> str:
        if value in (None, ""):
            raise required("Datatype")
        if not isinstance(value, str) or value.lower() not in DATATYPES:
            raise invalid_property("Datatype", f"value {_as_json(value)} is not one of {', '.join(DATATYPES)}")
        return value.lower()

    @staticmethod
    def _check_namespace(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in NAMESPACES:
            raise invalid_property("NameSpace", f"value {_as_json(value)} is not one of {', '.join(NAMESPACES)}")
        return value.lower()

    def check_properties(self, raw: Any) -> dict[str, str | None]:
        """Validate `Properties` of managecontact: every name defined, every value of its type.

        Error form documented in _newsletter.md: ErrorInfo {"Properties": [{name: problem}]}.
        """
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            # Observed: a JSON-encoded string is silently ignored by the real API (php#68); we
            # refuse it so the mistake shows.
            raise MailjetError(400, "Object properties invalid", {"Properties": "must be a JSON object"})
        values, problems = self.coerce_properties(raw)
        if problems:
            raise MailjetError(400, "Object properties invalid", {"Properties": problems})
        return values

    def coerce_properties(self, raw: dict[str, Any]) -> tuple[dict[str, str | None], list[dict[str, str]]]:
        """Stored values by defined name, and the per-property problems (documented texts)."""
        values: dict[str, str | None] = {}
        problems: list[dict[str, str]] = []
        for name, value in raw.items():
            definition = self.find_property(name)
            if definition is None:
                problems.append({name: "Property not defined"})
                continue
            try:
                values[definition.name] = coerce_property(definition.datatype, value)
            except ValueError:
                problems.append({name: "Property type does not match definition"})
        return values, problems

    def apply_contact_changes(
        self, contact: Contact, name: str | None, excluded: bool | None, properties: dict[str, str | None], now: datetime | None = None
    ) -> bool:
        """Set what is given and differs; `now` as in `ensure_contact`."""
        now = now or self.clock.now()
        changed = False
        if name is not None and name != contact.name:
            contact.name = name
            changed = True
        if excluded is not None and excluded != contact.is_excluded_from_campaigns:
            contact.is_excluded_from_campaigns = excluded
            contact.exclusion_updated_at = now
            changed = True
        for key, value in properties.items():
            if value is None:
                changed |= contact.properties.pop(key, None) is not None
            elif contact.properties.get(key) != value:
                contact.properties[key] = value
                changed = True
        if changed:
            contact.last_update_at = now
            self.touch("contact", contact.id)
        return changed

    def contact_data_json(self, contact: Contact) -> dict[str, Any]:
        order = {p.name: p.id for p in self.properties.values()}
        data = [
            {"Name": name, "Value": value}
            for name, value in sorted(contact.properties.items(), key=lambda item: order.get(item[0], 0))
        ]
        # Documented: the ID of a contactdata object always equals the ContactID.
        return {"ContactID": contact.id, "Data": data, "ID": contact.id}

    def list_contact_data(self, query: Query) -> list[Contact]:
        contacts = list(self.contacts.values())
        email = query.get("ContactEmail")
        if email is not None:
            contact = self._contacts_by_email.get(email.strip().lower())
            contacts = [] if contact is None else [contact]
        list_id = query.get_int("ContactsList")
        if list_id is not None:
            members = self._recipients_by_list.get(list_id, {})
            contacts = [c for c in contacts if c.id in members]
        return self._common_contact_filters(contacts, query)

    def set_contact_data(self, contact_ref: str | None, body: dict[str, Any]) -> tuple[Contact, bool]:
        """PUT /contactdata/{id} (merge, like PATCH) and POST /contactdata (contact in the body)."""
        if contact_ref is None:
            fields = self._contact_data_fields(body, ("ContactID", "ContactALT", "Data"), ("ID",))
            contact = self._resolve_ref(fields, "ContactID", "ContactALT", "Contact", self.find_contact)
        else:
            contact = self.get_contact(contact_ref)
            fields = self._contact_data_fields(body, ("Data",), ("ID", "ContactID"), self.contact_data_json(contact))
        entries = fields.get("Data")
        if entries is None:
            raise required("Data")
        if not isinstance(entries, list):
            raise not_an_array("Data", entries)
        raw: dict[str, Any] = {}
        for entry in entries:
            name = ci_get(entry, "Name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise MailjetError(400, f"Invalid key name: {_quoted(name)}")
            if self.find_property(name) is None:
                # Observed: `Invalid key name: "createdate"` (nodejs#293, php-simple#57).
                raise MailjetError(400, f'Invalid key name: "{name}"')
            # An entry is the reference's Name and Value, refused otherwise as any object with
            # another key is: a misspelt or missing Value unassigned the property, which only an
            # explicit null does.
            item = read_fields(entry, "TKeyValue", ("Name", "Value"), path=".Data..item")  # observed: php-simple#83
            if "Value" not in item:
                raise required("Value")
            raw[name] = item["Value"]
        values, problems = self.coerce_properties(raw)
        if problems:
            # Guess: the managecontact problem texts, keyed by "Data" here.
            raise MailjetError(400, "Object properties invalid", {"Data": problems})
        return contact, self.apply_contact_changes(contact, None, None, values)

    @staticmethod
    def _contact_data_fields(
        body: dict[str, Any], writable: tuple[str, ...], read_only: tuple[str, ...], shown: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        known = {name.lower() for name in writable + read_only}
        unknown = next((key for key in body if key.lower() not in known), None)
        if unknown is not None:
            # Per a Mailjet maintainer (mailjet-apiv3-nodejs PR #304), raw property pairs given
            # instead of Data ({"first_name": "John"}) are refused as "Invalid key name", not with
            # the "has no property" text of other objects.
            raise MailjetError(400, f'Invalid key name: "{unknown}"')
        return read_fields(body, "TContactData", writable, read_only, shown)

    def clear_contact_data(self, contact_ref: str) -> None:
        contact = self.get_contact(contact_ref)
        contact.properties.clear()
        contact.last_update_at = self.clock.now()
        self.touch("contact", contact.id)

    # -- webhooks (/eventcallbackurl)

    def get_callback(self, ref: str) -> EventCallback:
        """By ID, or by the documented composite key `EventType|IsBackup` (e.g. `open|false`)."""
        found = None
        callback_id = read_id(ref)
        if callback_id is not None:
            found = self.callbacks.get(callback_id)
        elif "|" in ref:
            event_type, _, backup = ref.partition("|")
            is_backup = backup.strip().lower() in _TRUE
            found = next(
                (c for c in self.callbacks.values() if c.event_type == event_type.strip().lower() and c.is_backup == is_backup),
                None,
            )
        if found is None:
            raise not_found()
        return found

    def create_callback(self, body: dict[str, Any]) -> EventCallback:
        fields = read_fields(body, "TEventCallbackUrl", ("EventType", "Url", "Version", "IsBackup", "Status"), ("ID", "APIKeyID"))
        # Every check before the ID is taken: a refused POST that used up an ID would leave the
        # stored counter (written only with a changed row) behind the one in memory.
        callback = EventCallback(0, self.api_key_id, self._check_event_type(fields.get("EventType")), self._check_url(fields.get("Url")))
        if "Version" in fields:
            callback.version = self._check_version(fields["Version"])
        if "IsBackup" in fields:
            callback.is_backup = parse_bool(fields["IsBackup"], "IsBackup")
        if "Status" in fields:
            callback.status = self._check_status(fields["Status"])
        self._check_callback_free(callback.event_type, callback.is_backup, None)
        callback.id = self.new_id("callback")
        self.callbacks[callback.id] = callback
        self.touch("callback", callback.id)
        return callback

    def update_callback(self, ref: str, body: dict[str, Any]) -> tuple[EventCallback, bool]:
        callback = self.get_callback(ref)
        before = callback.to_json()
        fields = read_fields(body, "TEventCallbackUrl", ("EventType", "Url", "Version", "IsBackup", "Status"), ("ID", "APIKeyID"), before)
        event_type = self._check_event_type(fields["EventType"]) if "EventType" in fields else callback.event_type
        is_backup = parse_bool(fields["IsBackup"], "IsBackup") if "IsBackup" in fields else callback.is_backup
        self._check_callback_free(event_type, is_backup, callback.id)
        # Every field checked before any is applied: a PUT answered 400 changes nothing.
        url = self._check_url(fields["Url"]) if "Url" in fields else None
        version = self._check_version(fields["Version"]) if "Version" in fields else None
        status = self._check_status(fields["Status"]) if "Status" in fields else None
        callback.event_type, callback.is_backup = event_type, is_backup
        if url is not None and url != callback.url:
            # Documented: a suspended URL is reactivated by updating it with a new URL.
            callback.url, callback.status = url, "alive"
        if version is not None:
            callback.version = version
        if status is not None:
            callback.status = status
        self.touch("callback", callback.id)
        return callback, callback.to_json() != before

    def delete_callback(self, ref: str) -> None:
        callback_id = self.get_callback(ref).id
        del self.callbacks[callback_id]
        self.touch("callback", callback_id)

    def list_callbacks(self, query: Query) -> list[EventCallback]:
        callbacks = list(self.callbacks.values())
        event_type = query.get("EventType")
        if event_type is not None:
            wanted = event_type.strip().lower()
            by_number = {str(number): name for name, number in EVENT_TYPES.items()}
            wanted = by_number.get(wanted, wanted)
            callbacks = [c for c in callbacks if c.event_type == wanted]
        backup = query.get_bool("Backup")
        if backup is not None:
            callbacks = [c for c in callbacks if c.is_backup == backup]
        status = query.get("Status")
        if status is not None:
            callbacks = [c for c in callbacks if c.status == status.strip().lower()]
        version = query.get_int("Version")
        if version is not None:
            callbacks = [c for c in callbacks if c.version == version]
        return callbacks

    def callbacks_for(self, event_type: str) -> list[EventCallback]:
        """The webhooks an event of this type goes to: the primary, or the backup if it is dead."""
        live = [c for c in self.callbacks.values() if c.event_type == event_type]
        primary = [c for c in live if not c.is_backup and c.status == "alive"]
        return primary or [c for c in live if c.is_backup and c.status == "alive"]

    def _check_callback_free(self, event_type: str, is_backup: bool, own_id: int | None) -> None:
        if any(c.event_type == event_type and c.is_backup == is_backup and c.id != own_id for c in self.callbacks.values()):
            # Guess: the real text for a duplicate webhook is unknown (reference §8.8).
            raise MailjetError(
                400, f'MJ18 A EventCallbackUrl resource with value "{event_type}|{str(is_backup).lower()}" for EventType|IsBackup already exists.'
            )

    @staticmethod
    def _check_event_type(value: Any) -> str:
        if value in (None, ""):
            raise required("EventType")
        if not isinstance(value, str) or value.lower() not in EVENT_TYPES:
            raise invalid_property("EventType", f"value {_as_json(value)} is not one of {', '.join(EVENT_TYPES)}")
        return value.lower()

    @staticmethod
    def _check_url(value: Any) -> str:
        if value in (None, ""):
            raise required("Url")
        url = value if isinstance(value, str) else ""
        if not re.match(r"^https?://[^\s/]+\S*$", url, re.IGNORECASE) or unreachable_url(url):
            # GUESS: the text; Mailjet refuses a Url it cannot call, in words it does not publish.
            raise invalid_property("Url", f'"{url}" is not an http(s) URL')
        return url

    @staticmethod
    def _check_version(value: Any) -> int:
        version = parse_int(value, "Version")
        if version not in (1, 2):
            raise invalid_property("Version", "value must be 1 or 2")
        return version

    @staticmethod
    def _check_status(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in ("alive", "dead"):
            raise invalid_property("Status", "value must be alive or dead")
        return value.lower()

    # -- managemanycontacts jobs

    def start_list_job(self, list_ref: str, body: dict[str, Any]) -> Job:
        """POST /contactslist/{id}/managemanycontacts: checks the envelope now, the contacts later."""
        contacts_list = self.get_list(list_ref)
        fields = read_fields(body, "TContactslistManageManyContacts", ("Action", "Contacts"))
        action = check_action(fields.get("Action"))
        contacts = self._check_job_contacts(fields.get("Contacts"))
        return self._start_job([{"ListID": contacts_list.id, "Action": action}], contacts, contacts_list.id)

    def start_contacts_job(self, body: dict[str, Any]) -> Job:
        """POST /contact/managemanycontacts: several lists (optional) for many contacts."""
        fields = read_fields(body, "TContactManageManyContacts", ("ContactsLists", "Contacts"))
        lists = self._check_contacts_lists(fields.get("ContactsLists"), required_list=False)
        contacts = self._check_job_contacts(fields.get("Contacts"))
        return self._start_job(lists, contacts, None)

    def get_job(self, job_ref: str, list_ref: str | None = None) -> Job:
        list_id = None if list_ref is None else self.get_list(list_ref).id
        job_id = read_id(job_ref)
        job = None if job_id is None else self.jobs.get(job_id)
        if job is None or (list_id is not None and job.list_id != list_id):
            raise not_found()
        return job

    def job_errors(self, job_ref: str) -> list[dict[str, Any]]:
        return self.get_job(job_ref).errors

    @staticmethod
    def _check_job_contacts(raw: Any) -> list[Any]:
        if raw is not None and not isinstance(raw, list):
            raise not_an_array("Contacts", raw)
        if not raw:
            raise required("Contacts")
        return raw

    def _start_job(self, contacts_lists: list[dict[str, Any]], contacts: list[Any], list_id: int | None) -> Job:
        now = self.clock.now()
        job = Job(self.new_id("job"), contacts_lists, contacts, now, list_id)
        self.jobs[job.id] = job
        self.touch("job", job.id)
        self.timers.call_at(now + JOB_DURATION, lambda: self.run_job(job.id))
        return job

    def run_job(self, job_id: int) -> None:
        """Apply a job's contacts; bad ones are skipped and reported only in the job (documented)."""
        job = self.jobs.get(job_id)
        if job is None or job.status != "In Progress":
            return
        # The job ends when it is due, though a clock jump may run its timer later: its JobEnd and
        # what it creates or changes carry that time, not the end of the jump.
        ended_at = job.started_at + JOB_DURATION
        for index, raw in enumerate(job.contacts):
            # A bug met by one contact must not leave the job In Progress forever (its timer fires
            # once): that contact is reported as failed, and the others are still applied.
            try:
                problem = self._apply_job_contact(raw, job.contacts_lists, ended_at)
            except Exception:
                log.exception("managemanycontacts job %s: contact %s", job.id, index)
                problem = "contact could not be processed"  # Guess: our text
            if problem is None:
                job.count += 1
            else:
                email = ci_get(raw, "Email", "") if isinstance(raw, dict) else ""
                job.errors.append({"Index": index, "Email": email, "Error": problem})
        job.ended_at = ended_at
        self.touch("job", job.id)
        # Guess: a job with any failed contact ends in Error (valid contacts are still applied).
        job.status = "Error" if job.errors else "Completed"
        if job.errors:
            job.error_file = job_error_file(self.base_url, job.id)

    def _apply_job_contact(self, raw: Any, contacts_lists: list[dict[str, Any]], now: datetime) -> str | None:
        if not isinstance(raw, dict):
            return "contact must be a JSON object"
        try:
            # The rules of managecontact (type, length, format), so a job stores no address that
            # the synchronous calls refuse.
            email = check_email(ci_get(raw, "Email"))
        except MailjetError:
            return "email missing or not valid"
        name = ci_get(raw, "Name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_STRING_LENGTH):
            return "name not valid"
        excluded_raw = ci_get(raw, "IsExcludedFromCampaigns")
        try:
            excluded = parse_bool(excluded_raw, "IsExcludedFromCampaigns") if excluded_raw is not None else None
        except MailjetError:
            return "IsExcludedFromCampaigns not valid"
        properties = ci_get(raw, "Properties")
        if properties is None:
            properties = {}  # null is what the Go client sends for no properties
        elif isinstance(properties, list):
            # Observed (php#245): [{"Name", "Value"}] pairs of a defined property failed so.
            return "property not defined"
        elif not isinstance(properties, dict):
            # As managecontact refuses them: "", 0 or false are no "no properties" either.
            return "properties must be a JSON object"
        values, problems = self.coerce_properties(properties)
        if problems:
            # Observed: "property not defined" (php#245); the type-mismatch text is a guess.
            name_problem = next(iter(problems[0].items()))
            return "property not defined" if name_problem[1] == "Property not defined" else "property type does not match definition"
        if any(item["ListID"] not in self.lists for item in contacts_lists):
            # A list deleted after the job was accepted: as for a deleted property, the contact
            # fails and nothing of it is applied. The documented managecontactslists text for a bad
            # list; Guess: a job reports it the same way.
            return "listID missing or not valid"
        if self.find_contact(email) is None and contacts_lists and all(item["Action"] == "remove" for item in contacts_lists):
            # As managecontact (`manage_contact`): removing an unknown address creates nothing.
            return None
        contact = self.ensure_contact(email, name, now)
        self.apply_contact_changes(contact, name, excluded, values, now)
        for item in contacts_lists:
            self.apply_action(contact, item["ListID"], item["Action"], now)
        return None

    # -- App Connections → Segment

    def update_app_connection(self, changes: dict[str, Any]) -> AppConnection:
        """Merge the fields given; ValueError with a readable message on a bad field."""
        connection = self.app_connection
        known = {"authenticationKey", "listId", "sendEvents", "writeKey", "segmentUrl"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        updated = AppConnection(**vars(connection))
        if "authenticationKey" in changes:
            if (problem := authentication_key_problem(changes["authenticationKey"])) is not None:
                raise ValueError(f"authenticationKey {problem}")
            updated.authentication_key = changes["authenticationKey"]
        if "listId" in changes:
            try:
                list_id = parse_int(changes["listId"], "listId")
            except MailjetError:
                raise ValueError("listId must be an integer (or a string of digits)") from None
            if list_id not in self.lists:
                raise ValueError(f"listId {list_id} is not a contact list of this account")
            updated.list_id = list_id
        if "sendEvents" in changes:
            if not isinstance(changes["sendEvents"], bool):
                raise ValueError("sendEvents must be a boolean")
            updated.send_events = changes["sendEvents"]
        if "writeKey" in changes:
            if (problem := write_key_problem(changes["writeKey"])) is not None:
                raise ValueError(f"writeKey {problem}")
            updated.write_key = changes["writeKey"] or None
        if "segmentUrl" in changes:
            if (problem := segment_url_problem(changes["segmentUrl"])) is not None:
                raise ValueError(f"segmentUrl {problem}")
            updated.segment_url = changes["segmentUrl"].rstrip("/")
            # The bundle's own URL (the dashboard sends back the one it shows) keeps following the bundle.
            updated.segment_url_explicit = updated.segment_url != self.bundle_segment_url
        self.app_connection = updated
        self.touch("account", 0)
        return updated


_CONTACT_READ_ONLY = (
    "ID",
    "CreatedAt",
    "DeliveredCount",
    "ExclusionFromCampaignsUpdatedAt",
    "IsOptInPending",
    "IsSpamComplaining",
    "LastActivityAt",
    "LastUpdateAt",
    "UnsubscribedAt",
    "UnsubscribedBy",
)
_LIST_READ_ONLY = ("ID", "Address", "CreatedAt", "SubscriberCount")


def _echo(value: Any) -> str:
    """A client's value shown as text in an error: as JSON writes it (not Python's "None" or
    "True"), and "" when it is missing or null."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _as_json(value: Any) -> str:
    """A client's value in an error text as the JSON it sent (`true`, `null`, `"x"`), not as Python
    shows it (`True`, `None`, `'x'`). The body was decoded from JSON, so it always encodes again."""
    return json.dumps(value, ensure_ascii=False)


def _quoted(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else '""'


class MailjetBackend:
    """The REST side of every account of the fake, keyed by API key (`MailjetService` keeps it in
    step with each account's email events); `reset()` brings back one fresh configured account."""

    def __init__(self, config: BundleConfig, clock: Clock, base_url: str, segment_url: str) -> None:
        self.config = config
        self.clock = clock
        self.base_url = base_url
        self.segment_url = segment_url
        self.changes = Changes()
        self.accounts: dict[str, Account] = {}
        self.reset()

    def reset(self) -> None:
        for api_key in self.accounts:
            self.changes.wipe(api_key)
        config = self.config
        # A configured account restored from a data dir keeps its secret whatever the config says
        # (the bundle announces that one), and so does the fresh one a reset makes.
        kept = self.accounts.get(config.mailjet_api_key)
        secret_key = kept.secret_key if kept is not None else config.mailjet_secret_key
        account = self.new_account(config.mailjet_api_key, secret_key, 1, config.auth_key)
        self.accounts = {account.api_key: account}

    def new_account(self, api_key: str, secret_key: str, api_key_id: int, auth_key: str) -> Account:
        """A fresh account (not yet registered): one contact list, App Connections not set up."""
        return Account(
            api_key=api_key,
            secret_key=secret_key,
            api_key_id=api_key_id,
            clock=self.clock,
            base_url=self.base_url,
            default_list_id=self.config.list_id,
            auth_key=auth_key,
            segment_url=self.segment_url,
            seed=self.config.seed,
            changes=self.changes,
        )

    @property
    def default_account(self) -> Account:
        return self.accounts[self.config.mailjet_api_key]

    def authenticate(self, api_key: str, secret: str) -> Account | None:
        account = self.accounts.get(api_key)
        return account if account is not None and account.check_secret(secret) else None
