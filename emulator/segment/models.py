"""State and rules of the fake Segment tracking API: sources, ingestion, message store, profiles.

No HTTP here: `routes.py` hands over the raw body and two headers, this module decides what the
real API would answer and what it would keep. Rules come from reference/segment.md §1, §2, §6;
where the real behaviour is undocumented the rule is marked GUESS (also in README "Fidelity").

Nothing a client sent is lost silently: a call Segment would drop with a 200 is stored with
`status: "discarded"` and a `discard_reason`, so tests and the debugger can see why.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import json
import logging
import re
import sys
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import contracts

from ..common import fast_validation
from ..common.auth import basic_credentials
from ..common.clock import Clock, iso, parse_iso
from ..common.feeds import newest
from ..common.http import GZIP_ENCODINGS, gunzip_bounded
from ..common.json_body import decode_json, read_with_json
from ..config import BundleConfig

log = logging.getLogger("segjet.segment")

# Limits from the HTTP API docs ("Max request size", "Errors"), reference §1.5.
MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
# Reading stops here: even gzip cannot make a body this big fit the batch limit once inflated.
MAX_RAW_BODY_BYTES = 2 * MAX_BATCH_BYTES
# "99% of your data won't have duplicates within an approximately 24 hour look-back window".
DEDUPE_WINDOW = timedelta(hours=24)
DEDUPE_SWEEP_INTERVAL = timedelta(hours=1)
# The debugger feed keeps the newest messages only; profiles and listeners see every message.
MESSAGE_LOG_CAPACITY = BundleConfig.events_capacity  # the default of `segjet up --events-capacity`

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_CALL_TYPE_NAMES = {name: name for name in CALL_TYPES}
_REPEATED_STRING_FIELDS = ("event", "userId", "anonymousId")
_CONTRACT_OF_TYPE = {name: f"segment.{name}" for name in CALL_TYPES}
# /v1/<endpoint> → call type; None marks the batch endpoints (analytics.js posts batches to /v1/b,
# legacy analytics-android to /v1/import).
ENDPOINTS: dict[str, str | None] = {
    **{call_type: call_type for call_type in CALL_TYPES},
    **{call_type[0]: call_type for call_type in CALL_TYPES},
    "batch": None,
    "b": None,
    "import": None,
}
# The endpoints analytics.js and the mobile libraries post to: client-side calls, whose
# `context.ip` Segment's servers fill in (spec/common.md, context `ip`).
CLIENT_SIDE_ENDPOINTS = frozenset({*(call_type[0] for call_type in CALL_TYPES), "b"})

ACCEPTED = "accepted"
DISCARDED = "discarded"

# Discard reasons. Those marked "docs" are Delivery Overview "Failed on ingest" codes (reference §1.6).
UNKNOWN_WRITE_KEY = "unknown_write_key"  # GUESS: Segment says `unknown_source`; ours names the cause
NO_USER_ANON_ID = "no_user_anon_id"  # docs
ID_NOT_STRING = "id_not_string"  # docs
ID_REQUIRED = "id_required"  # docs; GUESS that it covers alias previousId/userId and group groupId
EVENT_NOT_DEFINED = "event_not_defined"  # docs
EVENT_NOT_STRING = "event_not_string"  # docs
PROPERTIES_NOT_OBJECT = "properties_not_object"  # docs
TRAITS_NOT_OBJECT = "traits_not_object"  # docs
NAME_NOT_STRING = "name_not_string"  # docs
CATEGORY_NOT_STRING = "category_not_string"  # docs
BAD_REQUEST = "bad_request"  # docs; used for a batch item that is not an object, or context not an object
INVALID_TYPE = "invalid_type"  # GUESS: a batch item whose `type` is not one of CALL_TYPES
BATCH_TOO_MANY_EVENTS = "batch_too_many_events"  # GUESS: every item of a batch of more than 2,500
SCHEMA_VIOLATION = "schema_violation"  # docs ("Filtered at source"), only with --strict
DUPLICATE_MESSAGE_ID = "duplicate_message_id"  # GUESS: Segment drops duplicates silently


class TrackingApiError(Exception):
    """A request the real API answers with a 4xx and `{"code", "message"}`.

    The body shape is a GUESS (undocumented); it is what analytics-python parses (reference §8.3).
    The codes are ours, chosen to say what went wrong.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# ---------------------------------------------------------------------------------------------
# Request decoding: bytes → JSON object, and the write key.


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> tuple[dict[str, Any], int]:
    """The body as a JSON object and its size in bytes once inflated, or TrackingApiError(400).

    GUESS: the size limits apply to the inflated JSON, as the official clients measure them.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in GZIP_ENCODINGS:
        raw = _gunzip(raw, limit)
    elif encoding not in ("", "identity"):
        raise TrackingApiError("unsupported_content_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip")
    if len(raw) > limit:
        raise TrackingApiError("payload_too_large", f"request body is {len(raw)} bytes; the limit is {limit} bytes")
    payload = _loads(raw)
    if not isinstance(payload, dict):
        raise TrackingApiError("invalid_payload", "request body must be a JSON object")
    return payload, len(raw)


def _loads(raw: bytes) -> Any:
    try:
        return decode_json(raw, _strict_json)
    except UnicodeDecodeError as exc:
        raise TrackingApiError("invalid_json", f"request body is not valid UTF-8: {exc}") from exc
    except ValueError as exc:
        raise TrackingApiError("invalid_json", f"request body is not valid JSON: {exc}") from exc


def _strict_json(raw: bytes) -> Any:
    # UTF-8 only: json alone would also take UTF-16 and UTF-32.
    return read_with_json(raw.decode("utf-8"))


def _gunzip(raw: bytes, limit: int) -> bytes:
    try:
        inflated = gunzip_bounded(raw, limit)
    except zlib.error as exc:
        raise TrackingApiError("invalid_gzip", f"Content-Encoding is gzip but the body is not gzip data: {exc}") from exc
    if len(inflated.data) > limit:
        raise TrackingApiError("payload_too_large", f"inflated request body exceeds the limit of {limit} bytes")
    if not inflated.whole:
        raise TrackingApiError("invalid_gzip", "Content-Encoding is gzip but the gzip data is truncated")
    if inflated.trailing:
        # Bytes after the first gzip member were ignored, and with them the calls a second member
        # held. GUESS: Segment's Go reader takes every member (two JSON documents: invalid JSON) and
        # refuses other trailing bytes as a bad header; either way a 400.
        raise TrackingApiError("invalid_gzip", "Content-Encoding is gzip but bytes follow the gzip data; send one gzip member")
    return inflated.data


@dataclass(frozen=True)
class TrackingRequest:
    """One POST /v1/<endpoint>, decoded: which call, its body, and the write key it carries."""

    call_type: str | None  # None for the batch endpoints
    body: dict[str, Any]
    size: int  # bytes of JSON once inflated
    write_key: str
    client_ip: str | None = None  # the address the request came from, when known
    client_side: bool = False  # posted to an analytics.js endpoint (CLIENT_SIDE_ENDPOINTS)


def parse_tracking_request(
    endpoint: str, raw: bytes, content_encoding: str | None = None, authorization: str | None = None,
    client_ip: str | None = None,
) -> TrackingRequest:
    """Decode a tracking call (`endpoint` a key of ENDPOINTS), or raise TrackingApiError (a 4xx).

    Decoding comes before routing: the write key inside says which workspace the call belongs to.
    """
    call_type = ENDPOINTS[endpoint]
    body, size = decode_body(raw, content_encoding, MAX_CALL_BYTES if call_type else MAX_BATCH_BYTES)
    return TrackingRequest(
        call_type, body, size, write_key_from(authorization, body), client_ip, endpoint in CLIENT_SIDE_ENDPOINTS
    )


def write_key_from(authorization: str | None, body: dict[str, Any]) -> str:
    """Basic auth username (with or without the colon), else the body's `writeKey` (reference §1.3)."""
    credentials = basic_credentials(authorization)
    key = (credentials[0] if credentials else None) or body.get("writeKey")
    if not isinstance(key, str) or not key:
        raise TrackingApiError(
            "missing_write_key",
            "no write key: send it as the Basic auth username or as writeKey in the body",
        )
    return key


# ---------------------------------------------------------------------------------------------
# Sources and stored messages.

# The source `segjet up`'s write key belongs to.
DEFAULT_SOURCE_NAME = "segjet"


# The write key of an Engage space's source is this prefix and the space's id.
ENGAGE_WRITE_KEY_PREFIX = "engage:"


@dataclass(frozen=True)
class Source:
    name: str | None
    write_key: str
    id: str | None  # None: a write key no source owns

    @classmethod
    def named(cls, name: str, write_key: str) -> Source:
        # Derived from the write key, so ids stay the same across restarts and resets.
        return cls(name, write_key, "src_" + hashlib.sha256(write_key.encode()).hexdigest()[:20])

    @property
    def known(self) -> bool:
        return self.id is not None

    @property
    def is_engage(self) -> bool:
        """Engage's own source, which no client can post as: a write key cannot hold `:`."""
        return self.write_key.startswith(ENGAGE_WRITE_KEY_PREFIX)

    @classmethod
    def of_config(cls, config: BundleConfig) -> list[Source]:
        """The default workspace's sources: the bundle's write key, then `--config`'s extra ones."""
        return [cls.named(DEFAULT_SOURCE_NAME, config.write_key)] + [
            cls.named(entry["name"], entry["write_key"]) for entry in config.sources
        ]

    def ref(self) -> dict[str, Any]:
        """What a stored message says about its source; an unknown key is shown so it can be fixed."""
        if self.known:
            return {"id": self.id, "name": self.name}
        return {"id": None, "name": None, "writeKey": self.write_key}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "writeKey": self.write_key}


# The keys StoredMessage.to_json adds to a message, `call_fields` holding the message's own of these names.
VIEW_KEYS = ("source", "status", "discard_reason", "violations", "call_fields")


@dataclass(slots=True)
class StoredMessage:
    """One message as Segment kept it. `message` is what destinations receive; the rest is ours."""

    message: dict[str, Any]
    source: Source
    _: KW_ONLY
    discard_reason: str | None = None  # None: accepted
    # A tuple: most messages have none, and one shared () costs the garbage collector nothing.
    violations: tuple[dict[str, str], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.discard_reason is None

    @property
    def status(self) -> str:
        # Derived, not kept, as are the parsed times: four fields fit a 64-byte object, five take 80
        # (pymalloc's 16-byte steps): 16 MB a million messages.
        return ACCEPTED if self.discard_reason is None else DISCARDED

    @property
    def type(self) -> Any:
        return self.message.get("type")

    @property
    def user_id(self) -> Any:
        return self.message.get("userId")

    @property
    def event(self) -> Any:
        return self.message.get("event")

    @property
    def message_id(self) -> str:
        return self.message["messageId"]

    def to_json(self) -> dict[str, Any]:
        """The message with what segjet knows of it; the message's own fields of those names, which
        Segment keeps (custom top-level fields are the sender's), are under `call_fields`."""
        shown = {
            **self.message,
            "source": self.source.ref(),
            "status": self.status,
            "discard_reason": self.discard_reason,
            "violations": list(self.violations),
        }
        hidden = {key: self.message[key] for key in VIEW_KEYS if key in self.message}
        if hidden:
            shown["call_fields"] = hidden
        return shown


def stored_times(message: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """A stored message's `receivedAt` and corrected `timestamp`, parsed (a stub for a non-object
    batch item has `receivedAt` only, which then stands for both)."""
    received_at = parse_iso(message["receivedAt"])
    return received_at, parse_iso(message["timestamp"]) if "timestamp" in message else received_at


# ---------------------------------------------------------------------------------------------
# Profiles: merged traits and event history, for Engage.


# Shared by every event without properties (an identify has traits instead), read-only.
_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class EventKind:
    """What a profile event is; one object for all the events of one kind (see `_event_kind`)."""

    type: str
    event: str | None  # the track event name; None for other calls
    name: str | None  # the page/screen name; None for other calls


@lru_cache(maxsize=4096)
def _shared_event_kind(call_type: str, event: str | None, name: str | None) -> EventKind:
    return EventKind(call_type, event, name)


def _event_kind(call_type: str, event: str | None, name: str | None) -> EventKind:
    # Shared: a profile's events repeat a few kinds, and two fields fewer per event make it a
    # 64-byte object instead of an 80-byte one (pymalloc's 16-byte steps).
    try:
        return _shared_event_kind(call_type, event, name)
    except TypeError:  # unhashable: only a hand-edited snapshot brings such a message back
        return EventKind(call_type, event, name)


@dataclass(slots=True)
class ProfileEvent:
    kind: EventKind
    properties: Mapping[str, Any]
    timestamp: datetime
    message_id: str

    @property
    def type(self) -> str:
        return self.kind.type

    @property
    def event(self) -> str | None:
        return self.kind.event

    @property
    def name(self) -> str | None:
        return self.kind.name

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "event": self.event,
            "name": self.name,
            "properties": dict(self.properties),
            "timestamp": iso(self.timestamp),
            "messageId": self.message_id,
        }


def _timestamp_of(event: ProfileEvent) -> datetime:
    return event.timestamp


# Segment's default limit of values per identifier type other than user_id (Unify, identity
# resolution settings, "Limit"). GUESS: a sixth email is not added; its priority rules demote the
# lower-ranked identifier on the call that would exceed a limit, and email ranks below user_id.
EMAIL_LIMIT = 5


def emails_carried(message: Mapping[str, Any]) -> list[str]:
    """The emails an identify or track call makes external ids of its profile: `traits.email`,
    `context.traits.email` and a track's `properties.email` (Unify, Identity Resolution ExternalIDs:
    "traits.email, context.traits.email or properties.email")."""
    context = message.get("context")
    found = []
    holders = [message.get("traits"), context.get("traits") if context.__class__ is dict else None]
    if message.get("type") == "track":
        holders.append(message.get("properties"))
    for holder in holders:
        if holder.__class__ is dict:
            email = holder.get("email")
            if email.__class__ is str and email:
                found.append(email)
    return found


class Profile:
    """One person: a userId (when known), the anonymousIds linked to it, its emails (external ids,
    oldest first), traits and history.

    `events` holds every identify/track/page/screen/group call in timestamp order, so "performed
    E at least N times within 30 days" is one bisection and a scan of the window. (An index per
    event name made that scan shorter but cost ~25 bytes a stored event.)
    """

    __slots__ = ("user_id", "anonymous_ids", "emails", "traits", "events")

    def __init__(self, user_id: str | None = None) -> None:
        self.user_id = user_id
        self.anonymous_ids: dict[str, None] = {}  # an ordered set
        self.emails: tuple[str, ...] = ()  # a tuple: most profiles have one email or none
        self.traits: dict[str, Any] = {}
        self.events: list[ProfileEvent] = []

    def add_email(self, email: str) -> None:
        if email not in self.emails and len(self.emails) < EMAIL_LIMIT:
            self.emails += (email,)

    def add_event(self, event: ProfileEvent) -> None:
        # Events mostly arrive in time order, so this is an append; a late one is placed by bisection.
        events = self.events
        if not events or events[-1].timestamp <= event.timestamp:
            events.append(event)
        else:
            bisect.insort_right(events, event, key=_timestamp_of)

    def tracked(self, event: str, since: datetime | None = None) -> list[ProfileEvent]:
        """Track calls named `event` whose timestamp is at or after `since` (all when None), oldest first."""
        events = self.events
        start = 0 if since is None else bisect.bisect_left(events, since, key=_timestamp_of)
        return [item for item in itertools.islice(events, start, None) if item.event == event]

    def absorb(self, other: Profile) -> None:
        """Take over `other` (identity merge): its ids, the traits this profile lacks, its history."""
        self.anonymous_ids.update(other.anonymous_ids)
        # Past EMAIL_LIMIT too: each address was told what Engage told its profile, and only an
        # address kept on the profile is sent the exits.
        self.emails += tuple(email for email in other.emails if email not in self.emails)
        self.traits = {**other.traits, **self.traits}
        self.events = list(heapq.merge(self.events, other.events, key=_timestamp_of))

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "anonymousIds": list(self.anonymous_ids),
            "emails": list(self.emails),
            "traits": self.traits,
            "events": [event.to_json() for event in self.events],
        }


class ProfileStore:
    """Identity resolution, simplified: one profile per userId; anonymousIds link to it.

    GUESS (Unify's real rules are configurable): a call with both ids merges the anonymous
    profile into the user's; an anonymousId already tied to another user moves to the new one;
    alias merges the previousId's profile (a userId or an anonymousId) into the userId's.
    """

    def __init__(self) -> None:
        self._by_user: dict[str, Profile] = {}
        self._by_anonymous: dict[str, Profile] = {}
        # The userIds, other than its own, that point at a profile which took over others: a
        # later merge must move them too. Only merges fill it, so most profiles have no entry.
        self._absorbed_user_ids: dict[Profile, list[str]] = {}

    def get(self, user_or_anonymous_id: str) -> Profile | None:
        return self._by_user.get(user_or_anonymous_id) or self._by_anonymous.get(user_or_anonymous_id)

    def __iter__(self) -> Iterator[Profile]:
        """Every distinct profile once (userIds of merged-away profiles point at their survivor)."""
        seen: set[int] = set()
        for profile in (*self._by_user.values(), *self._by_anonymous.values()):
            if id(profile) not in seen:
                seen.add(id(profile))
                yield profile

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # Read by Engage through engage.SegmentProfiles.

    def user_ids(self) -> list[str]:
        return [profile.user_id for profile in self if profile.user_id is not None]

    def traits(self, user_id: str) -> dict[str, Any]:
        profile = self._by_user.get(user_id)
        return profile.traits if profile is not None else {}

    def emails(self, user_id: str) -> tuple[str, ...]:
        profile = self._by_user.get(user_id)
        return profile.emails if profile is not None else ()

    def merged_user_ids(self, user_id: str) -> list[str]:
        """The userIds, other than its own, whose profiles merges moved into `user_id`'s."""
        profile = self._by_user.get(user_id)
        return self._absorbed_user_ids.get(profile, []) if profile is not None else []

    def record(self, stored: StoredMessage, timestamp: datetime) -> None:
        """Add an accepted message to its profile; `timestamp` is its corrected timestamp, parsed."""
        message = stored.message
        call_type = message["type"]
        if call_type == "alias":
            self._alias(str(message["previousId"]), message["userId"])
            return
        profile = self._resolve(message.get("userId") or None, message.get("anonymousId") or None)
        if call_type == "identify" and message.get("traits"):
            traits = message["traits"]
            if stored.source.is_engage:
                # Engage's own identify writes the key it computes; its email says which of the
                # profile's addresses this copy is for (one per email), not a new value of the trait.
                traits = {name: value for name, value in traits.items() if name != "email"}
            profile.traits.update(traits)
        if call_type == "identify" or call_type == "track":
            for email in emails_carried(message):
                profile.add_email(email)
        # Ingest checks `properties` on track/page/screen only: an identify's may be a list.
        properties = message.get("properties")
        if properties.__class__ is not dict or not properties:
            properties = _NO_PROPERTIES
        profile.add_event(
            ProfileEvent(
                _event_kind(
                    call_type,
                    message.get("event") if call_type == "track" else None,
                    message.get("name") if call_type in ("page", "screen") else None,
                ),
                properties,
                timestamp,
                message["messageId"],
            )
        )

    def _resolve(self, user_id: str | None, anonymous_id: str | None) -> Profile:
        user_profile = self._by_user.get(user_id) if user_id else None
        anonymous_profile = self._by_anonymous.get(anonymous_id) if anonymous_id else None
        if user_profile is None:
            if anonymous_profile is not None and (user_id is None or anonymous_profile.user_id is None):
                user_profile = anonymous_profile
            else:
                user_profile = Profile(user_id)
            if user_id:
                user_profile.user_id = user_id
                self._by_user[user_id] = user_profile
        elif anonymous_profile is not None and anonymous_profile is not user_profile and anonymous_profile.user_id is None:
            self._merge(anonymous_profile, into=user_profile)
        if anonymous_id:
            if anonymous_profile is not None and anonymous_profile is not user_profile:
                # Moved from another user's profile: that one no longer lists it, or a later
                # merge of it (alias) would take the id back.
                anonymous_profile.anonymous_ids.pop(anonymous_id, None)
            user_profile.anonymous_ids[anonymous_id] = None
            self._by_anonymous[anonymous_id] = user_profile
        return user_profile

    def _alias(self, previous_id: str, user_id: str) -> None:
        target = self._resolve(user_id, None)
        previous = self.get(previous_id)
        if previous is None:
            # GUESS: an unseen previousId is taken as an anonymousId (the common case).
            target.anonymous_ids[previous_id] = None
            self._by_anonymous[previous_id] = target
        elif previous is not target:
            self._merge(previous, into=target)

    def _merge(self, merged: Profile, into: Profile) -> None:
        into.absorb(merged)
        for anonymous_id in merged.anonymous_ids:
            self._by_anonymous[anonymous_id] = into
        user_ids = self._absorbed_user_ids.pop(merged, [])
        if merged.user_id is not None:
            user_ids.append(merged.user_id)
        for user_id in user_ids:
            self._by_user[user_id] = into
        if user_ids:
            self._absorbed_user_ids.setdefault(into, []).extend(user_ids)


# ---------------------------------------------------------------------------------------------
# The backend.

Listener = Callable[[StoredMessage], None]


class DedupeWindow:
    """The messageIds a workspace had accepted in the last 24 h of virtual time.

    One dict of id -> time accepted; a lookup disregards an entry older than 24 h, and one accepted
    24 h or more after now (the clock was set back since). Expired entries
    are swept out in one pass at most once an hour of virtual time (and whenever the clock is set
    back), so the dict holds about 25 hours of ids and no second structure in arrival order is kept
    (a deque of ids cost ~8 bytes a message).
    """

    def __init__(self) -> None:
        self._accepted_at: dict[str, datetime] = {}  # an id's latest acceptance
        # An id's other acceptances still in the window: only after the clock was set back can an id
        # be accepted again before its latest acceptance is 24 h old, so this stays small.
        self._earlier: dict[str, list[datetime]] = {}
        self._next_sweep: datetime | None = None
        # The messages of a batch share their arrival time: the cutoff is computed once for them.
        self._now: datetime | None = None
        self._cutoff: datetime | None = None
        self._horizon: datetime | None = None

    def admit(self, message_id: str, now: datetime) -> bool:
        """Remember `message_id` as accepted `now` and answer True; False if it is in the window."""
        if now is not self._now:
            self.forget_expired(now)
        accepted_at = self._accepted_at.get(message_id)
        # GUESS (Segment's clock never goes back): an id accepted at a later virtual time, before the
        # clock was set back, is a duplicate only if the two calls are less than 24 h apart, as they
        # are going forward; otherwise a set-back of a month (or a reset back to wall-clock time)
        # refused the id for that month on top of the 24 h.
        if accepted_at is not None:
            cutoff, horizon = self._cutoff, self._horizon
            earlier = self._earlier.get(message_id, ())
            if cutoff < accepted_at < horizon or any(cutoff < at < horizon for at in earlier):
                return False
            if accepted_at > now:
                self._earlier.setdefault(message_id, []).append(now)
                return True
        self._accepted_at[message_id] = now
        return True

    def __len__(self) -> int:
        """The ids held, expired ones not yet swept out included."""
        return len(self._accepted_at)

    def forget_expired(self, now: datetime) -> None:
        """Take `now` as the time; sweep out the expired ids if an hour has passed since the last
        sweep, or the clock was set back before it."""
        self._now, self._cutoff, self._horizon = now, now - DEDUPE_WINDOW, now + DEDUPE_WINDOW
        next_sweep = self._next_sweep
        if next_sweep is None or not next_sweep - DEDUPE_SWEEP_INTERVAL <= now < next_sweep:
            # In place: a million ids take ~25 ms to look over, and rebuilding the dict ~200 ms.
            accepted_at, cutoff = self._accepted_at, self._cutoff
            for key in [key for key, at in accepted_at.items() if at <= cutoff]:
                del accepted_at[key]
            for key, times in list(self._earlier.items()):
                times[:] = [at for at in times if at > cutoff]
                if not times:
                    del self._earlier[key]
            self._next_sweep = now + DEDUPE_SWEEP_INTERVAL


@dataclass(frozen=True, slots=True)
class _Arrival:
    """What the calls of one request share: their source, when they arrived, the batch's fields."""

    source: Source
    received_at: datetime
    received_iso: str  # rendered once for the whole batch
    sent_at: Any
    skew: timedelta | None  # receivedAt - sentAt, None when sentAt is absent or unreadable
    shared: dict[str, dict[str, Any]] | None = None  # batch-level context and integrations
    forced_reason: str | None = None  # every item is discarded for this reason
    client_ip: str | None = None  # the request's address: `context.ip` where Segment adds it
    client_side: bool = False  # an analytics.js endpoint's calls, which get `context.ip`


# A batch item between enrichment and storage: the message, its corrected timestamp (parsed), and
# why it is discarded before contracts and dedupe are looked at (None: not yet).
_Prepared = tuple[StoredMessage, datetime, str | None]


class SegmentBackend:
    """Sources, the message store, dedupe, profiles and listeners of one fake Segment workspace."""

    def __init__(
        self, clock: Clock, sources: Iterable[Source], strict: bool = False, validate: bool = True,
        events_capacity: int = MESSAGE_LOG_CAPACITY,
    ) -> None:
        self.clock = clock
        self.strict = strict
        self.validate = validate
        self.events_capacity = events_capacity
        self.sources = list(sources)
        self._sources_by_key = {source.write_key: source for source in self.sources}
        self._listeners: list[Listener] = []
        # Called with every stored message, accepted or discarded, before the listeners: the
        # persistence of `segjet up --data-dir` writes it (storage.py). None keeps memory only.
        self.recorder: Listener | None = None
        # Counts the times the state was replaced (a reset, a snapshot import, a restore all come
        # here): a request a fault held across one belongs to the forgotten state (fault_routes),
        # and a dashboard showing the messages must read them again.
        self.generation = 0
        self.reset()

    @classmethod
    def with_sources(cls, config: BundleConfig, clock: Clock, sources: list[Source]) -> SegmentBackend:
        return cls(
            clock, sources, strict=config.strict, validate=config.validate, events_capacity=config.events_capacity
        )

    def reset(self) -> None:
        """Forget messages, profiles and seen messageIds; sources and listeners stay."""
        self.generation += 1
        self.messages: deque[StoredMessage] = deque(maxlen=self.events_capacity)
        # Messages pushed out of the capped feed since the last reset (profiles and delivery saw them).
        self.dropped = 0
        self.profiles = ProfileStore()
        # Docs: dedupe is "not scoped to a specific source or a workspace" (reference §5.3). It is
        # scoped to the workspace here: workspaces are how parallel test jobs stay apart.
        self._dedupe_window = DedupeWindow()

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(stored)` synchronously with every accepted message, after it is stored."""
        self._listeners.append(callback)

    def add_source(self, source: Source) -> None:
        """Give this workspace another source; its write key must not be in use (the caller checks)."""
        self.sources.append(source)
        self._sources_by_key[source.write_key] = source

    def replace_sources(self, sources: Iterable[Source]) -> None:
        self.sources = list(sources)
        self._sources_by_key = {source.write_key: source for source in self.sources}

    def restore(self, stored_messages: Iterable[StoredMessage]) -> None:
        """Rebuild the message log, profiles and dedupe window from stored messages, oldest first.

        Listeners are not called: what they did with these messages (deliveries, Engage state)
        is restored on its own, so nothing is delivered twice.
        """
        for stored in stored_messages:
            if len(self.messages) == self.events_capacity:
                self.dropped += 1
            self.messages.append(stored)
            if stored.accepted:
                received_at, timestamp = stored_times(stored.message)
                self.profiles.record(stored, timestamp)
                # Always admitted: these messages were accepted, so none repeats an id within 24 h.
                self._dedupe_window.admit(stored.message_id, received_at)
        self._dedupe_window.forget_expired(self.clock.now())

    # -- ingestion -----------------------------------------------------------------------------

    def accept(self, request: TrackingRequest) -> list[StoredMessage]:
        """Store a decoded tracking call under its write key's source; raise TrackingApiError for a 4xx."""
        call_type, body = request.call_type, request.body
        arrival = self._arrival(
            self._source_for(request.write_key), body.get("sentAt"), request.client_ip, request.client_side
        )
        if call_type is None:
            return self._receive_batch(body, request.size, arrival)
        item = {key: value for key, value in body.items() if key != "writeKey"}
        item["type"] = call_type  # the path decides the type of a single call
        stored = self._process(item, arrival)
        if stored.discard_reason == SCHEMA_VIOLATION:
            raise TrackingApiError("schema_violation", "; ".join(v["description"] for v in stored.violations))
        return [stored]

    def ingest(self, message: dict[str, Any], source: Source) -> StoredMessage:
        """Store a message made inside the workspace (e.g. by Engage) under `source`.

        Same rules as a batch item of the tracking API (enrichment, discards, contracts, dedupe,
        profiles, listeners), but --strict, which filters clients' calls; never raises.
        """
        # A copy: enrichment fills in the message it is given, and this one is the caller's.
        return self._process(dict(message), self._arrival(source, message.get("sentAt")))

    def _source_for(self, write_key: str) -> Source:
        return self._sources_by_key.get(write_key) or Source(None, write_key, None)

    def _arrival(
        self, source: Source, sent_at: Any, client_ip: str | None = None, client_side: bool = False
    ) -> _Arrival:
        received_at = _to_millisecond(self.clock.now())
        return _Arrival(source, received_at, iso(received_at), sent_at, _skew(received_at, sent_at),
                        client_ip=client_ip, client_side=client_side)

    def _receive_batch(self, body: dict[str, Any], size: int, arrival: _Arrival) -> list[StoredMessage]:
        items = body.get("batch")
        if not isinstance(items, list):
            raise TrackingApiError("invalid_payload", '"batch" must be a list of messages')
        shared: dict[str, dict[str, Any]] = {}
        for key in ("context", "integrations"):
            value = body.get(key)
            if value is not None and not isinstance(value, dict):
                raise TrackingApiError("invalid_payload", f'batch-level "{key}" must be an object')
            if value:
                shared[key] = value
        if arrival.client_side and arrival.client_ip is not None and "ip" not in shared.get("context", {}):
            # Once for the batch: the items without a context of their own then share this one.
            shared["context"] = {**shared.get("context", {}), "ip": arrival.client_ip}
        # A body within 32 KB holds no item over 32 KB as sent, so only bigger batches pay for measuring.
        if size > MAX_CALL_BYTES:
            _check_item_sizes(items)
        # Docs: "Segment returns a 200 response but rejects the event" when a batch exceeds
        # 2,500 events. GUESS: the whole batch is rejected; each item is recorded as discarded.
        too_many = len(items) > MAX_BATCH_EVENTS
        # An empty batch stores nothing (Segment counts it as `empty_batch`); the journal shows it.
        arrival = replace(arrival, shared=shared, forced_reason=BATCH_TOO_MANY_EVENTS if too_many else None)
        prepared = [self._prepare(item, arrival) for item in items]
        valid_types = self._types_all_valid(prepared)
        return [
            self._finish(
                stored, timestamp, reason, arrival, known_valid=reason is None and stored.message["type"] in valid_types
            )
            for stored, timestamp, reason in prepared
        ]

    def _process(self, item: Any, arrival: _Arrival) -> StoredMessage:
        """Store one call, as a batch of one."""
        stored, timestamp, reason = self._prepare(item, arrival)
        return self._finish(stored, timestamp, reason, arrival, known_valid=False)

    def _prepare(self, item: Any, arrival: _Arrival) -> _Prepared:
        """The item enriched, its corrected timestamp, and why it is discarded before contracts and
        dedupe are looked at (or None)."""
        source = arrival.source
        if not isinstance(item, dict):
            stub = {"type": None, "messageId": _new_message_id(), "receivedAt": arrival.received_iso, "item": item}
            return StoredMessage(stub, source), arrival.received_at, BAD_REQUEST
        message, timestamp = _enrich(item, arrival)
        reason = arrival.forced_reason or (None if source.known else UNKNOWN_WRITE_KEY) or ingest_problem(message)
        return StoredMessage(message, source), timestamp, reason

    def _types_all_valid(self, prepared: list[_Prepared]) -> set[str]:
        """The call types whose messages still in the running all meet their contract, checked with
        one call per type; the messages of other types are checked one by one for the details."""
        if not self.validate:
            return set()
        by_type: dict[str, list[dict[str, Any]]] = {}
        for stored, _, reason in prepared:
            if reason is None:
                by_type.setdefault(stored.message["type"], []).append(stored.message)
        # jsonschema-rs reads any depth; what the API decoded holds only JSON values, so no fallback to
        # jsonschema (fast_validation) is taken here, and nothing can be nested too deeply for it.
        return {kind for kind, messages in by_type.items() if fast_validation.all_valid(_CONTRACT_OF_TYPE[kind], messages)}

    def _finish(
        self, stored: StoredMessage, timestamp: datetime, reason: str | None, arrival: _Arrival, known_valid: bool
    ) -> StoredMessage:
        """Contracts (unless the message is `known_valid`), dedupe, then the message is stored."""
        message = stored.message
        if reason is None and self.validate and not known_valid:
            stored.violations = _violations(message)
            if stored.violations:
                message["context"] = _with_protocols(message.get("context"), stored.violations, stored.source)
                # --strict filters what clients send; Engage's own identify names its traits after
                # definition keys, "website" or "age" too, with true/false or computed values.
                if self.strict and not stored.source.is_engage:
                    reason = SCHEMA_VIOLATION
        if reason is None and not self._dedupe_window.admit(message["messageId"], arrival.received_at):
            reason = DUPLICATE_MESSAGE_ID
        stored.discard_reason = reason
        return self._store(stored, timestamp)

    def _store(self, stored: StoredMessage, timestamp: datetime) -> StoredMessage:
        if len(self.messages) == self.events_capacity:
            self.dropped += 1
        self.messages.append(stored)
        if self.recorder is not None:
            self.recorder(stored)
        if stored.accepted:
            self.profiles.record(stored, timestamp)
            for listener in self._listeners:
                try:
                    listener(stored)
                except Exception:  # one broken consumer must not stop ingestion or the others
                    log.exception("segment listener %r failed on message %s", listener, stored.message_id)
        return stored

    # -- queries -------------------------------------------------------------------------------

    def events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        source: str | None = None,
        status: str | None = None,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredMessage]:
        """The newest `limit` stored messages matching every filter given, newest last.

        `source` matches a source id or name.
        """
        if status == ACCEPTED and user_id and (event is not None or type not in (None, "alias")):
            # Every accepted call but an alias is in its user's profile history (a merged profile's
            # holds more), so a user whose history has no such call has no such message, and the
            # feed of 200,000 is not scanned: a wait for a user's call polls this until it arrives.
            profile = self.profiles.get(user_id)
            if profile is None or not any(
                (type is None or past.type == type) and (event is None or past.event == event) for past in profile.events
            ):
                return []

        def keep(stored: StoredMessage) -> bool:
            return (
                (type is None or stored.type == type)
                and (user_id is None or stored.user_id == user_id)
                and (event is None or stored.event == event)
                and (source is None or source in (stored.source.id, stored.source.name))
                and (status is None or stored.status == status)
                and (message_id is None or stored.message.get("messageId") == message_id)
            )

        return newest(reversed(self.messages), limit, keep)


# ---------------------------------------------------------------------------------------------
# Per-message rules.


def _new_message_id() -> str:
    # GUESS at the format: ids Segment assigns at ingest look like "api-<random>".
    return f"api-{uuid.uuid4()}"


def _enrich(item: dict[str, Any], arrival: _Arrival) -> tuple[dict[str, Any], datetime]:
    """The message as Segment stores it (`item` itself, filled in), and its corrected timestamp.

    Adds receivedAt, messageId when absent, originalTimestamp (the timestamp as given) and the
    skew-corrected timestamp; merges batch-level context/integrations (item keys win). `item` must
    be the caller's to give (freshly decoded, or a copy): its nested objects are never mutated.
    """
    message = item
    message.pop("writeKey", None)
    # One string object per call type, event name and user, not one per message (~170 bytes a
    # message): a user's messages repeat the same few strings.
    call_type = message.get("type")
    if call_type.__class__ is str:
        message["type"] = _CALL_TYPE_NAMES.get(call_type, call_type)
    for name in _REPEATED_STRING_FIELDS:
        value = message.get(name)
        if value.__class__ is str:
            message[name] = sys.intern(value)
    if arrival.shared:
        for key, batch_value in arrival.shared.items():
            own = message.get(key)
            if own is None:
                message[key] = batch_value  # shared by the batch's items, as nested objects are: never mutated
            elif isinstance(own, dict):
                message[key] = {**batch_value, **own}
    if arrival.client_ip is not None:
        _add_ip(message, arrival)
    if "sentAt" not in message and arrival.sent_at is not None:
        message["sentAt"] = arrival.sent_at  # batch-level sentAt applies to each item
    message_id = message.get("messageId")
    if message_id is None or message_id == "":
        message["messageId"] = _new_message_id()
    elif not isinstance(message_id, str):
        message["messageId"] = json.dumps(message_id)
    original = message.get("timestamp")
    timestamp, message["timestamp"] = _shared_time(
        _to_millisecond(_corrected_timestamp(original, message.get("sentAt"), arrival))
    )
    if original is not None:
        message["originalTimestamp"] = original
    message["receivedAt"] = arrival.received_iso
    return message, timestamp


def _add_ip(message: dict[str, Any], arrival: _Arrival) -> None:
    """`context.ip`, the request's address, where Segment's servers add it: on client-side calls
    (spec/common.md) and on any call whose `context.direct` is true (http-api, "Collecting IP
    Address"). An ip the call gives is kept; a context that is no object is left to be discarded."""
    context = message.get("context")
    if context is None:
        if arrival.client_side:
            message["context"] = {"ip": arrival.client_ip}
    elif context.__class__ is dict and "ip" not in context and (arrival.client_side or context.get("direct") is True):
        message["context"] = {**context, "ip": arrival.client_ip}


@lru_cache(maxsize=4096)
def _shared_time(moment: datetime) -> tuple[datetime, str]:
    """`moment` and its ISO text, the same two objects for every message of that millisecond.

    A busy source sends many events a millisecond; sharing saves each a string in its message and
    a datetime in its profile history (~120 bytes in benchmarks/stored_memory.py), and rendering
    the string again.
    """
    return moment, iso(moment)


# Subtracting one of these is 0.06 µs; datetime.replace or building the timedelta, ~0.5 µs (they
# parse keyword arguments), a twentieth of an event's ingestion.
_MICROSECONDS = tuple(timedelta(microseconds=n) for n in range(1000))


def _to_millisecond(moment: datetime) -> datetime:
    # As rendered: the parsed times kept beside a message then agree with its ISO strings.
    return moment - _MICROSECONDS[moment.microsecond % 1000]


def _corrected_timestamp(original: Any, sent_at: Any, arrival: _Arrival) -> datetime:
    """`receivedAt - (sentAt - originalTimestamp)` (spec/common.md).

    GUESS where the docs are silent: no sentAt → the timestamp as given; no or unreadable
    timestamp → receivedAt; unreadable sentAt → the timestamp as given.
    """
    if original is None:
        return arrival.received_at
    try:
        original_at = parse_iso(original)
    except ValueError:
        return arrival.received_at
    # Items of a batch carry the batch's sentAt: its skew is worked out once.
    skew = arrival.skew if sent_at is arrival.sent_at else _skew(arrival.received_at, sent_at)
    if skew is None:
        return original_at
    try:
        return original_at + skew
    except OverflowError:
        return original_at


def _skew(received_at: datetime, sent_at: Any) -> timedelta | None:
    if sent_at is None:
        return None
    try:
        return received_at - parse_iso(sent_at)
    except (ValueError, OverflowError):
        return None


def _missing(value: Any) -> bool:
    return value is None or value == ""


def _not_an_id(value: Any) -> bool:
    """Present (not null) but no id: docs, id_not_string: "The userID or anonymousId was an empty
    string or not a string" (when the other id is there; both missing is no_user_anon_id)."""
    return value is not None and (value == "" or not isinstance(value, str))


def ingest_problem(message: dict[str, Any]) -> str | None:
    """The reason Segment's ingest would drop this message with a 200, or None (reference §1.6, §1.8)."""
    call_type = message.get("type")
    if call_type not in CALL_TYPES:
        return INVALID_TYPE
    for key in ("context", "integrations"):
        if message.get(key) is not None and not isinstance(message[key], dict):
            return BAD_REQUEST
    user_id = message.get("userId")
    if call_type == "alias":
        if _missing(message.get("previousId")) or _missing(user_id):
            return ID_REQUIRED
        if not isinstance(user_id, str):
            return ID_NOT_STRING
        return None
    anonymous_id = message.get("anonymousId")
    if _missing(user_id) and _missing(anonymous_id):
        return NO_USER_ANON_ID
    if _not_an_id(user_id) or _not_an_id(anonymous_id):
        return ID_NOT_STRING
    if call_type == "track":
        event = message.get("event")
        if _missing(event):
            return EVENT_NOT_DEFINED
        if not isinstance(event, str):
            return EVENT_NOT_STRING
    elif call_type == "group" and _missing(message.get("groupId")):
        return ID_REQUIRED
    elif call_type in ("page", "screen"):
        name = message.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            return NAME_NOT_STRING
        if message.get("category") is not None and not isinstance(message["category"], str):
            return CATEGORY_NOT_STRING
    if call_type in ("track", "page", "screen"):
        if message.get("properties") is not None and not isinstance(message["properties"], dict):
            return PROPERTIES_NOT_OBJECT
    elif call_type in ("identify", "group"):
        if message.get("traits") is not None and not isinstance(message["traits"], dict):
            return TRAITS_NOT_OBJECT
    return None


def _check_item_sizes(items: list[Any]) -> None:
    """TrackingApiError(400) naming the first item over 32 KB. Docs ("Max request size"): "a limit of
    `32KB` per event in the batch ... Segment's API responds with `400 Bad Request` if these limits
    are exceeded". Measured before enrichment adds to it, as compact UTF-8 JSON re-encoded from the
    parsed item, which is the bytes sent unless it spells numbers short (`1e15` re-encodes as
    `1000000000000000.0`): the parser keeps no item's own bytes. GUESS: Segment's measure is not
    published either."""
    for index, item in enumerate(items):
        size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_CALL_BYTES:
            raise TrackingApiError(
                "payload_too_large", f"batch item {index} is {size} bytes; the limit per event is {MAX_CALL_BYTES} bytes"
            )


# -- Protocols-style violations ----------------------------------------------------------------

_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"), (dict, "object"))
_EXPECTED_TYPE = re.compile(r"is not of type (.+)$")


def _violations(message: dict[str, Any]) -> tuple[dict[str, str], ...]:
    """The message's breaches of contract `segment.<type>`, in Protocols' shape (reference §6)."""
    name = _CONTRACT_OF_TYPE[message["type"]]
    try:
        if fast_validation.is_valid(name, message):
            return ()
        return tuple(_protocols_violation(violation, message) for violation in contracts.validate(name, message))
    except RecursionError:
        return ({"type": "Invalid Value", "field": "", "description": "the message is nested too deeply to validate"},)


def _protocols_violation(violation: contracts.Violation, message: dict[str, Any]) -> dict[str, str]:
    """Map a JSON Schema error to `{"type", "field", "description"}`.

    Protocols' types seen in the docs are "Required" and "Invalid Type"; GUESS: every other
    schema keyword (enum, pattern, format, ...) is reported as "Invalid Value".
    """
    # From the parts, not the text path: a key may hold "." (the destination "Customer.io").
    parts = violation.parts
    field_path = ".".join(str(part) for part in parts)
    if violation.rule == "required":
        return {"type": "Required", "field": field_path, "description": f"{field_path} is required"}
    if violation.rule == "type":
        expected = _EXPECTED_TYPE.search(violation.message)
        wanted = expected.group(1).replace(" or ", ", ") if expected else "?"
        given = _json_type(_value_at(message, parts))
        return {
            "type": "Invalid Type",
            "field": field_path,
            "description": f"Invalid type. Expected: {wanted}, given: {given}",
        }
    return {"type": "Invalid Value", "field": field_path, "description": f"{field_path}: {violation.message}"}


def _value_at(message: Any, parts: tuple[str | int, ...]) -> Any:
    # A type violation's parts lead to the value jsonschema found wrong: each step exists.
    value = message
    for part in parts:
        value = value[part]
    return value


def _json_type(value: Any) -> str:
    for python_type, json_name in _JSON_TYPES:
        if isinstance(value, python_type):
            return json_name
    return "null"


def _with_protocols(
    context: dict[str, Any] | None, violations: tuple[dict[str, str], ...], source: Source
) -> dict[str, Any]:
    context = context or {}
    protocols = context.get("protocols")
    protocols = protocols if isinstance(protocols, dict) else {}
    return {**context, "protocols": {**protocols, "sourceId": source.id, "violations": list(violations)}}
