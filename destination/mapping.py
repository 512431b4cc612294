"""A Segment identify call → what to write to Mailjet. Pure functions: no I/O, no clock.

The rules follow Mailjet's own Segment user guide where it says something (nested objects are
flattened with `_`, arrays cannot be stored) and DESIGN §4 "Destination" elsewhere. Every choice
the guide does not document is marked "Guess:" and listed in README "Fidelity".
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Mapping, cast

Datatype = Literal["bool", "int", "float", "datetime", "str"]
Scalar = bool | int | float | str

USER_ID_PROPERTY = "segment_user_id"

# Guess: Mailjet documents no integer range; its int properties are assumed to be 64-bit. A larger
# integer (an id, a phone number) below 2**64 is kept exactly by storing it as text; a still larger
# one has arrived as a double (destination/json_body.py reads JSON as orjson does), so is a float.
_INT64 = range(-(2**63), 2**63)

# Mailjet documents every property value as text read by its property's type, so text in JSON's
# number grammar fits an existing int or float property, as that number. Not looser: "007" (a
# postcode, say) would lose its zeros, and " 45" or "+45" is no number a Segment library writes.
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")

# Guess: Mailjet publishes no length limit for Name or text property values; 255 is the usual
# column size (the fake Mailjet uses it too). A longer value would make Mailjet reject the whole
# contact update, so that one value is skipped and reported instead.
MAX_TEXT_LENGTH = 255
# Guess: Mailjet publishes no length limit for property names either; the fake Mailjet's 255 is
# the same guess. A longer name would fail its /contactmetadata creation and so the whole update.
MAX_PROPERTY_NAME_LENGTH = 255

# ISO-8601 dates and date-times as Segment libraries send them ("2024-05-01T10:00:00.123Z"). Parsed
# from these groups rather than by datetime.fromisoformat, which also reads what is no date-time
# to a Segment library (week dates "2024-W18-3", basic "20240501T100000Z"). Fractions of up to 9 digits are read (.NET's "o" format
# writes 7, Go's RFC3339Nano up to 9) and cut to microseconds: Mailjet keeps whole seconds anyway.
# ASCII: \d alone would also match other scripts' digits.
_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:Z|([+-])(\d{2}):?([0-5]\d))?)?\Z",
    re.ASCII,
)

# Guess: Mailjet does not document which property names it accepts. Its template syntax
# ([[data:name]]) and third-party integrations use ASCII letters, digits and "_"; we also require a
# leading letter so a name never looks like a number.
_VALID_PROPERTY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_INVALID_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_]+")


class MappingError(ValueError):
    """The identify call cannot be applied (no email, traits not an object); answered 400."""


@dataclass(frozen=True)
class Property:
    """One Mailjet contact property to set, from one trait (dotted path) or from userId.

    Made only if Mailjet can take it (ValueError otherwise, saying why): one property Mailjet
    refuses fails the whole managecontact call, so such a trait is skipped and reported instead.
    """

    name: str
    raw: Scalar
    datatype: Datatype
    source: str
    value: Scalar = field(init=False)

    def __post_init__(self) -> None:
        if len(self.name) > MAX_PROPERTY_NAME_LENGTH:
            raise ValueError(f"property name longer than {MAX_PROPERTY_NAME_LENGTH} characters")
        value = render_value(self.raw, self.datatype)
        if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH:
            raise ValueError(f"text longer than {MAX_TEXT_LENGTH} characters")
        object.__setattr__(self, "value", value)


@dataclass(frozen=True)
class SkippedTrait:
    trait: str
    reason: str


@dataclass(frozen=True)
class RenamedTrait:
    trait: str
    property: str


@dataclass(frozen=True)
class ContactUpdate:
    """What one identify asks of Mailjet: upsert `email` in the list with `name` and `properties`."""

    email: str
    name: str | None
    properties: tuple[Property, ...]
    skipped: tuple[SkippedTrait, ...]
    renamed: tuple[RenamedTrait, ...]


def _object_or_empty(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingError(f"{where} must be an object, got {type(value).__name__}")
    return value


def find_email(message: Mapping[str, Any]) -> str | None:
    """The contact's address (see `email_field`), checked: MappingError when the field chosen holds
    no text or no address."""
    found = email_field(message)
    if found is None:
        return None
    where, candidate = found
    if not isinstance(candidate, str):
        raise MappingError(f"{where} must be a string, got {type(candidate).__name__}")
    email = candidate.strip()
    if not _looks_like_address(email):
        # A light check only: Mailjet itself decides what it accepts as an address.
        raise MappingError(f"{where} is not an email address: {candidate!r}")
    return email


def email_field(message: Mapping[str, Any]) -> tuple[str, Any] | None:
    """(where, value) of the field an identify's address is read from, as Segment's facade reads an
    identify's email (segmentio/facade lib/identify.js `email()`: `traits.email` in any casing, else
    the userId when it is an address), with `context.traits.email` (where Engage and some sources
    put it) tried between the two; None when none gives one. Not checked (`find_email` checks).

    The direct-destination guide asks partners to "be ready to accept any casing". A key that reads
    as `email` but holds null or blank text names no address, so the next one is tried (ours: the
    facade stops at the first key it finds, empty or not)."""
    traits = _object_or_empty(message.get("traits"), "traits")
    context = _object_or_empty(message.get("context"), "context")
    context_traits = _object_or_empty(context.get("traits"), "context.traits")
    for where, found in (("traits", traits), ("context.traits", context_traits)):
        for key in email_keys(found):
            candidate = found[key]
            if candidate is None or (isinstance(candidate, str) and not candidate.strip()):
                continue
            return f"{where}.{key}", candidate
    user_id = message.get("userId")
    if isinstance(user_id, str) and _looks_like_address(user_id.strip()):
        return "userId", user_id
    return None


def email_keys(traits: Mapping[str, Any]) -> list[str]:
    """The keys of `traits` the facade reads as `email`, in order."""
    return [key for key in traits if reads_as_email(key)]


def reads_as_email(key: str) -> bool:
    """Is `key` one the facade reads as `email` ("email", "Email", "e_mail"...)?"""
    return _facade_key(key) == "email"


def _looks_like_address(text: str) -> bool:
    local, at, domain = text.rpartition("@")
    return bool(at and local and domain) and " " not in text


@functools.lru_cache(maxsize=4096)  # trait names repeat: the dashboard's trace reads every event's
def _facade_key(key: str) -> str:
    """A trait key as Segment's facade matches it (segmentio/obj-case: only letters, digits and dots
    count, in any case), so that `first_name`, `FirstName` and `firstname` are one key."""
    return _NOT_KEY_CHARACTERS.sub("", key).lower()


_NOT_KEY_CHARACTERS = re.compile(r"[^a-zA-Z0-9.]+")


def _first_text(traits: Mapping[str, Any], name: str) -> tuple[str, str]:
    """(key, stripped text) of the first trait, in the traits' order, that the facade reads as
    `name` and holds text that is not blank; ("", "") when none does. (The facade stops at the first
    key it reads as `name`, blank or not: a blank `name` passed over for first and last name is ours.)"""
    wanted = _facade_key(name)
    for key, value in traits.items():
        if _facade_key(key) == wanted and isinstance(value, str) and value.strip():
            return key, value.strip()
    return "", ""


def contact_name(traits: Mapping[str, Any]) -> tuple[str, str] | None:
    """Mailjet's contact `Name` and the traits it is made of: `name`, else first and last name
    when both are given ("firstName+last_name"), each key matched as the facade matches it (any
    case, with or without `_`); None (Name left as it is) otherwise.

    Both, as Segment's own facade builds a name (segmentio/facade lib/identify.js: "if (firstName &&
    lastName)") and as the identify spec says ("If you only pass a first and last name"): an update
    carrying only one half would otherwise replace a full Name with it. That half is still kept as
    a property.
    """
    name_key, name = _first_text(traits, "name")
    if name:
        return name, name_key
    first_key, first = _first_text(traits, "firstName")
    last_key, last = _first_text(traits, "lastName")
    return (f"{first} {last}", f"{first_key}+{last_key}") if first and last else None


def parse_iso_datetime(text: str) -> datetime | None:
    """The instant an ISO-8601 date or date-time string names, at its own offset; None for any
    other string (including impossible dates such as "2024-13-45")."""
    match = _ISO_DATETIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, offset_hours, offset_minutes = match.groups()
    try:
        # Guess: a date-time without an offset is taken as UTC, as Segment timestamps are.
        zone = timezone.utc
        if sign:
            offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
            zone = timezone(-offset if sign == "-" else offset)  # ValueError from 24 h on
        fields = (year, month, day, hour or 0, minute or 0, second or 0, (fraction or "0")[:6].ljust(6, "0"))
        return datetime(*map(int, fields), tzinfo=zone)
    except ValueError:
        return None


def infer_datatype(value: Any) -> Datatype | None:
    """Mailjet `Datatype` for a trait value; None when no property can hold it (null, list, object)."""
    # bool first: in Python True is an int.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if value in _INT64 else "str"
    if isinstance(value, float):
        return "float" if math.isfinite(value) else None
    if isinstance(value, str):
        return "datetime" if parse_iso_datetime(value) is not None else "str"
    return None


def _rfc3339(instant: datetime) -> str:
    try:
        utc = instant.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("date-time outside the years 1 to 9999 once in UTC") from None
    # Mailjet's examples use whole seconds ("2018-01-01T00:00:00"); sub-second precision is dropped.
    # isoformat, not strftime: strftime does not pad years below 1000 to four digits.
    return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def render_value(raw: Scalar, datatype: Datatype) -> Scalar:
    """The value as sent in managecontact `Properties`: JSON bool/number for bool/int/float (as in
    Mailjet's own examples, `"Age": 30`), RFC3339 UTC text for datetime, text for str. ValueError
    for a date-time that cannot be written so."""
    if datatype == "datetime":
        if isinstance(raw, str):
            instant = parse_iso_datetime(raw)
            if instant is None:
                raise ValueError(f"not an ISO-8601 date-time: {raw!r}")
            return _rfc3339(instant)
        # Mailjet datetime properties also accept a Unix timestamp (reference/mailjet.md §4).
        try:
            return _rfc3339(datetime.fromtimestamp(raw, timezone.utc))
        except (OverflowError, OSError, ValueError):
            # Often a timestamp in milliseconds; guessing its unit could store a wrong date.
            raise ValueError(f"{raw!r} is not a Unix timestamp (seconds) within the years 1 to 9999") from None
    if datatype == "str":
        if isinstance(raw, bool):
            return "true" if raw else "false"
        return raw if isinstance(raw, str) else repr(raw)
    if datatype == "float":
        return float(raw)
    return raw


def sanitize_property_name(name: str) -> str:
    """A valid Mailjet property name for `name`: accents folded to ASCII, other invalid characters
    replaced by "_", and a "trait_" prefix when it would not start with a letter."""
    if _VALID_PROPERTY_NAME.match(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _INVALID_NAME_CHARACTERS.sub("_", ascii_name).strip("_")
    if not cleaned[:1].isalpha():
        cleaned = f"trait_{cleaned}" if cleaned else "trait"
    return cleaned


def flatten_traits(traits: Mapping[str, Any]) -> tuple[list[tuple[str, str, Any]], list[SkippedTrait]]:
    """Leaves of `traits` as (dotted trait path, "_"-joined name, value), and the traits skipped.

    Nested objects are flattened with "_" (`location.latitude` → `location_latitude`), as Mailjet's
    Segment guide describes; arrays are skipped because a Mailjet property holds one value.
    """
    leaves: list[tuple[str, str, Any]] = []
    skipped: list[SkippedTrait] = []
    # Depth-first in the traits' order with a stack of open objects rather than recursion, so that
    # traits nested however deep raise no RecursionError. `path` holds the keys leading to the
    # object being read: one fewer than `open_objects`.
    path: list[str] = []
    open_objects = [iter(traits.items())]
    while open_objects:
        entry = next(open_objects[-1], None)
        if entry is None:
            open_objects.pop()
            del path[-1:]
            continue
        key, value = entry
        path.append(str(key))
        if isinstance(value, Mapping) and value:
            open_objects.append(iter(value.items()))
            continue
        dotted = ".".join(path)
        if isinstance(value, Mapping):
            skipped.append(SkippedTrait(dotted, "empty object: nothing to store"))
        elif isinstance(value, (list, tuple)):
            skipped.append(SkippedTrait(dotted, "array: a Mailjet property holds a single value"))
        else:
            leaves.append((dotted, "_".join(path), value))
        path.pop()
    return leaves, skipped


def map_identify(message: Mapping[str, Any]) -> ContactUpdate:
    """The Mailjet contact update for an identify call; raises MappingError without an email."""
    traits = _object_or_empty(message.get("traits"), "traits")
    email = find_email(message)
    if email is None:
        raise MappingError("no email: the Mailjet destination needs traits.email (in any casing), context.traits.email,"
                           " or a userId that is an email address to identify a contact")

    left_out = set(email_keys(traits))
    leaves, skipped = flatten_traits({key: value for key, value in traits.items() if key not in left_out})
    properties: dict[str, Property] = {}
    renamed: list[RenamedTrait] = []

    def keep(name: str, value: Scalar, datatype: Datatype, source: str) -> bool:
        try:
            prop = Property(name, value, datatype, source)
        except ValueError as exc:
            skipped.append(SkippedTrait(source, str(exc)))
            return False
        # Guess: Mailjet property names are matched case-insensitively, like its JSON keys.
        taken_by = properties.get(name.lower())
        if taken_by is not None:
            skipped.append(SkippedTrait(source, f"same Mailjet property name {name!r} as {taken_by.source}"))
            return False
        properties[name.lower()] = prop
        return True

    user_id = message.get("userId")
    if isinstance(user_id, (str, int)) and not isinstance(user_id, bool) and str(user_id) != "":
        # Kept so that Mailjet's email events can be sent back to Segment with this userId.
        keep(USER_ID_PROPERTY, str(user_id), "str", "userId")

    # The email traits (every spelling) are left out above: the email is the contact's own key
    # (Contact.Email), and a property copy would add nothing and could drift from it. Name traits
    # do become properties (first_name, lastName, ...): Mailjet's Name is one field, and templates
    # personalise with properties ([[data:first_name]]).
    for trait, joined, value in leaves:
        datatype = infer_datatype(value)
        if datatype is None:
            reason = "null: Mailjet property left unchanged" if value is None else f"unsupported value {value!r}"
            skipped.append(SkippedTrait(trait, reason))
            continue
        name = sanitize_property_name(joined)
        if keep(name, value, datatype, trait) and name != joined:
            renamed.append(RenamedTrait(trait, name))

    name: str | None = None
    named = contact_name(traits)
    if named is not None:
        name, name_source = named
        if len(name) > MAX_TEXT_LENGTH:
            # Without Name, managecontact keeps the contact's current name.
            skipped.append(SkippedTrait(name_source, f"contact Name longer than {MAX_TEXT_LENGTH} characters"))
            name = None
    return ContactUpdate(email, name, tuple(properties.values()), tuple(skipped), tuple(renamed))


def conform_to_definition(prop: Property, defined: str) -> Property:
    """`prop` typed as the property already defined in Mailjet; ValueError saying why it cannot be.

    Mailjet rejects the whole managecontact call on one mistyped property ("Property type does not
    match definition"), so a value that fits the existing definition is converted, and one that
    does not is skipped (and reported) rather than losing the contact update.
    """
    if defined == prop.datatype:
        return prop
    # Any scalar has a text form; an integer is a valid float and may be a valid Unix timestamp.
    if defined == "str" or (prop.datatype == "int" and defined in ("float", "datetime")):
        return replace(prop, datatype=cast(Datatype, defined))
    value = _exactly_as(prop.raw, defined)
    if value is None:
        raise ValueError(f"a {prop.datatype} value does not fit")
    return replace(prop, raw=value, datatype=cast(Datatype, defined))


def _exactly_as(raw: Scalar, defined: str) -> Scalar | None:
    """`raw` as a value of the `defined` type it names exactly, written another way: an integral
    float as an int, an integer past int64 (inferred text) as a float, or text as an int, float or
    bool; None when it is none."""
    if isinstance(raw, float):
        return int(raw) if defined == "int" and raw.is_integer() and int(raw) in _INT64 else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw) if defined == "float" else None
    if not isinstance(raw, str):
        return None
    if defined == "int" and _JSON_INTEGER.match(raw) and int(raw) in _INT64:
        return int(raw)
    if defined == "float" and _JSON_NUMBER.match(raw):
        number = float(raw)  # inf beyond a double's range
        return number if math.isfinite(number) else None
    # Any case: .NET and Python write a bool as "True". Mailjet is sent a JSON bool either way.
    if defined == "bool" and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return None
