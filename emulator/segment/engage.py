"""Engage: audiences and computed traits over the fake Segment's profiles, synced as identify calls.

State and rules only (no HTTP). The engine reads profiles through `ProfileSource`, learns about
changes through `observe(message)` (the Segment backend's listener), and hands every message it
produces to `emit` (the backend's ingest path, under the Engage source).

Incremental by design: a sync costs in proportion to what changed, not to the audience size.
- Each definition keeps what the destination was last told (audience members, trait values).
- `observe` marks a profile dirty only in the definitions that read that event name or trait name
  (or in all of them the first time a profile is seen, since "did not perform" can hold for it).
- Time passing is handled by an expiry heap per definition: for each evaluated profile, the instant
  after which its result could change with no new data (an in-window event lapsing). A sync pops
  only the entries that lapsed.
The first sync of a definition evaluates every profile (Segment's historical backfill).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import re
import secrets
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence, TypeVar

from destination.mapping import USER_ID_PROPERTY, reads_as_email

from ..common.clock import LATEST, Clock, iso, parse_duration, parse_iso
from ..common.json_body import MAX_DEPTH, fits_depth

from .models import ENGAGE_WRITE_KEY_PREFIX, SegmentBackend, Source, StoredMessage

if TYPE_CHECKING:
    from ..config import BundleConfig

COMPARISON_OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "exists")
COMPUTED_KINDS = ("count", "sum", "avg", "most_frequent", "first", "last")
INTEGRATIONS = {"All": False, "Mailjet": True}
REALTIME = "realtime"
MANUAL = "manual"
# Timers fire when due <= now, and an event at exactly `now - within` is still inside the window,
# so a lapse is acted on one clock tick (datetime resolution) after it.
_TICK = timedelta(microseconds=1)
_KEY = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_WINDOW = re.compile(r"^([1-9]\d*)([dh])$", re.ASCII)  # `\d` would also take "٠" (as int() does)
# A scheduled sync that raised (a bug) is tried again after this long in realtime mode (an interval
# schedule tries at its next mark). GUESS: Segment documents retrying a failed sync up to five times
# (faqs.md), not when; a delay keeps a sync failing at once from firing round after round.
SYNC_RETRY = timedelta(minutes=1)
# GUESS: Segment sets no documented maximum (its "Events Lookback History" limit of 1 or 3 years was
# removed from the product limits in 2025). Ten years covers any real window and keeps the window
# arithmetic well inside datetime's range.
MAX_WINDOW_DAYS = 3650
# How many members (or profiles with a value) a definition's description names, for the dashboard.
SAMPLE_SIZE = 50

log = logging.getLogger("segjet.engage")


class DefinitionError(ValueError):
    """A definition that cannot be accepted; the message says what to fix (HTTP 400)."""

    status = 400


class DuplicateKeyError(DefinitionError):
    """The key is already used by an audience or a computed trait (HTTP 409)."""

    status = 409


class DefinitionInUse(ValueError):
    """A definition other definitions read (by its key, as a trait) cannot be deleted (HTTP 409)."""

    status = 409


class UnknownDefinition(KeyError):
    """No audience or computed trait (as the route asked) has the key (HTTP 404)."""

    status = 404

    def __str__(self) -> str:
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# Keys


def snake_case_key(name: str) -> str:
    """The audience/trait key Engage derives from a name.

    Segment only documents "snake_cased" with examples (reference/segment.md §4.2), the canonical
    one being "Order Completed Last 30 Days" → `order_completed_last_30days`. The rule here:
    1. accents are dropped (é → e) and other non-ASCII characters removed (Engage builders take
       Latin characters only);
    2. camelCase is split: `orderCompleted` → `order Completed`, `HTMLEmail` → `HTML Email`;
    3. whitespace between a digit and a following letter is removed, so a number attaches to the
       unit after it: `30 Days` → `30Days` (punctuation between them is kept as `_`);
    4. lower-cased; every run of characters other than a-z and 0-9 becomes one `_`; `_` trimmed.
    A name that is already snake_case comes back unchanged (`total_revenue_180_days`).
    """
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    split = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", ascii_text)
    attached = re.sub(r"(?<=[0-9])\s+(?=[A-Za-z])", "", split)
    key = re.sub(r"[^a-z0-9]+", "_", attached.lower()).strip("_")
    if not key:
        raise DefinitionError(f"cannot derive a key from the name {name!r} (Latin letters or digits needed); give a key")
    return key


# ---------------------------------------------------------------------------------------------
# Profiles as the engine sees them


class ProfileEvent(Protocol):
    """One tracked event of a profile: when it happened (event `timestamp`) and its properties."""

    @property
    def timestamp(self) -> datetime: ...

    @property
    def properties(self) -> Mapping[str, Any]: ...


class ProfileSource(Protocol):
    """Read access to the profiles the engine computes over (the fake Segment's profile store)."""

    def user_ids(self) -> Iterable[str]: ...

    def traits(self, user_id: str) -> Mapping[str, Any]: ...

    def emails(self, user_id: str) -> Sequence[str]:
        """The profile's emails (external ids), oldest first."""
        ...

    def events(self, user_id: str, event: str, since: datetime | None) -> Sequence[ProfileEvent]:
        """Track calls named `event` with a timestamp at or after `since` (all when None), oldest first."""
        ...

    def linked_user_id(self, profile_id: str) -> str | None:
        """The userId of the profile an anonymousId (or a userId) belongs to, or None (unknown, or
        anonymous only). For a userId an alias merged into another user's profile: the survivor's."""
        ...

    def merged_user_ids(self, user_id: str) -> Iterable[str]:
        """The userIds, other than its own, whose profiles aliases merged into `user_id`'s."""
        ...


class SegmentProfiles:
    """`ProfileSource` over the fake Segment's profile store (profiles with a userId only)."""

    def __init__(self, backend: SegmentBackend) -> None:
        self.backend = backend  # its ProfileStore is replaced on reset, so it is read through here

    def user_ids(self) -> list[str]:
        return self.backend.profiles.user_ids()

    def traits(self, user_id: str) -> Mapping[str, Any]:
        return self.backend.profiles.traits(user_id)

    def emails(self, user_id: str) -> Sequence[str]:
        return self.backend.profiles.emails(user_id)

    def events(self, user_id: str, event: str, since: datetime | None) -> Sequence[ProfileEvent]:
        profile = self.backend.profiles.get(user_id)
        if profile is None:
            return []
        return profile.tracked(event, since)

    def linked_user_id(self, profile_id: str) -> str | None:
        profile = self.backend.profiles.get(profile_id)
        return profile.user_id if profile is not None else None

    def merged_user_ids(self, user_id: str) -> Iterable[str]:
        # The store's own record (a later merge moves it on), not a scan of every userId Engage
        # told, which would make each alias cost O(told).
        return self.backend.profiles.merged_user_ids(user_id)


@dataclass
class _Subject:
    """One profile at one instant, with the window arithmetic the rules share."""

    profiles: ProfileSource
    user_id: str
    now: datetime

    def in_window(self, event: str, within: timedelta | None) -> Sequence[ProfileEvent]:
        # Windows on the event timestamp (faqs.md), to the instant rather than rounded to the hour:
        # an event exactly `within` old is inside; events stamped in the future count as inside too.
        return self.profiles.events(self.user_id, event, _window_start(self.now, within))


def _window_start(now: datetime, within: timedelta | None) -> datetime | None:
    """The oldest timestamp inside the window; None (all time) also when that is before datetime's range."""
    if within is None:
        return None
    try:
        return now - within
    except OverflowError:
        return None


def _lapse(timestamp: datetime, within: timedelta) -> datetime | None:
    """When an event stamped `timestamp` leaves the window, or None for never: the clock stops at
    LATEST, and a timestamp (kept as sent, up to year 9999) can put the sum past datetime's range."""
    try:
        lapse = timestamp + within
    except OverflowError:
        return None
    return lapse if lapse < LATEST else None


def _lookup(values: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """A field by name, or by dotted path into nested objects (`address.city`)."""
    if path in values:
        return True, values[path]
    current: Any = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _email_of(traits: Mapping[str, Any]) -> str | None:
    """The email of an identify Engage sent (its `traits.email`), or None."""
    email = traits.get("email")
    return email if isinstance(email, str) and email else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Conditions and rules (parsed from JSON, then evaluated)


@dataclass(frozen=True)
class Comparison:
    """`{"property"|"trait": name, <operator>: value}` against one mapping of values."""

    field: str
    operator: str
    value: Any

    def holds(self, values: Mapping[str, Any]) -> bool:
        present, actual = _lookup(values, self.field)
        if self.operator == "exists":
            return (present and actual is not None) == self.value
        if self.operator == "equals":
            return present and _same(actual, self.value)
        if self.operator == "not_equals":
            # A missing field "does not equal" the value (guess; Segment does not document it).
            return not (present and _same(actual, self.value))
        # Ordering compares numbers with numbers and strings with strings (ISO dates order as text).
        comparable = (_is_number(actual) and _is_number(self.value)) or (
            isinstance(actual, str) and isinstance(self.value, str)
        )
        if not present or not comparable:
            return False
        if self.operator == "gt":
            return actual > self.value
        if self.operator == "gte":
            return actual >= self.value
        if self.operator == "lt":
            return actual < self.value
        return actual <= self.value


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality: true is not 1, and 1 equals 1.0, inside arrays and objects too (Python's ==
    says [1] == [True]). Without recursion: a value nests as deep as a body may (MAX_DEPTH)."""
    pending = [(actual, expected)]
    while pending:
        left, right = pending.pop()
        if isinstance(left, bool) or isinstance(right, bool):
            if not (isinstance(left, bool) and isinstance(right, bool) and left == right):
                return False
        elif isinstance(left, Mapping) and isinstance(right, Mapping):
            if left.keys() != right.keys():
                return False
            pending.extend((left[name], right[name]) for name in left)
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            if len(left) != len(right):
                return False
            pending.extend(zip(left, right))
        elif left != right:
            return False
    return True


class Rule:
    """A node of an audience rule. `evaluate` answers membership now and when that could change."""

    def evaluate(self, subject: _Subject) -> tuple[bool, datetime | None]:
        """(holds, lapse): with no new data the answer stays the same up to and including `lapse`."""
        raise NotImplementedError

    def event_names(self) -> set[str]:
        return set()

    def trait_names(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class PropertyCondition:
    """A `where` tree over event properties: comparisons combined with all/any/not."""

    comparison: Comparison | None = None
    combinator: str | None = None
    children: tuple["PropertyCondition", ...] = ()

    def holds(self, properties: Mapping[str, Any]) -> bool:
        if self.comparison is not None:
            return self.comparison.holds(properties)
        if self.combinator == "all":
            return all(child.holds(properties) for child in self.children)
        if self.combinator == "any":
            return any(child.holds(properties) for child in self.children)
        return not self.children[0].holds(properties)


@dataclass(frozen=True)
class EventRule(Rule):
    event: str
    within: timedelta | None
    at_least: int | None
    at_most: int | None
    where: PropertyCondition | None

    def evaluate(self, subject: _Subject) -> tuple[bool, datetime | None]:
        matching = [
            item for item in subject.in_window(self.event, self.within)
            if self.where is None or self.where.holds(item.properties)
        ]
        count = len(matching)
        if self.at_most is not None:
            holds = count <= self.at_most
            # Not a member yet: becomes one once enough of the oldest events lapse.
            lapsing = count - self.at_most if not holds else 0
        else:
            assert self.at_least is not None
            holds = count >= self.at_least
            # A member until the count falls below at_least.
            lapsing = count - self.at_least + 1 if holds else 0
        if self.within is None or lapsing == 0:
            return holds, None
        # `matching` is oldest first: the lapsing-th oldest event decides when the answer flips.
        return holds, _lapse(matching[lapsing - 1].timestamp, self.within)

    def event_names(self) -> set[str]:
        return {self.event}


@dataclass(frozen=True)
class TraitRule(Rule):
    comparison: Comparison

    def evaluate(self, subject: _Subject) -> tuple[bool, datetime | None]:
        return self.comparison.holds(subject.profiles.traits(subject.user_id)), None

    def trait_names(self) -> set[str]:
        # `_lookup` reads a trait named with the whole path first ("a.b"), else walks into "a".
        return {self.comparison.field, self.comparison.field.split(".")[0]}


@dataclass(frozen=True)
class CombinedRule(Rule):
    combinator: str  # all | any | not
    children: tuple[Rule, ...]

    def evaluate(self, subject: _Subject) -> tuple[bool, datetime | None]:
        # Every child is evaluated so the lapse covers any child that could flip the result.
        results = [child.evaluate(subject) for child in self.children]
        lapses = [lapse for _, lapse in results if lapse is not None]
        lapse = min(lapses) if lapses else None
        if self.combinator == "all":
            return all(holds for holds, _ in results), lapse
        if self.combinator == "any":
            return any(holds for holds, _ in results), lapse
        return not results[0][0], lapse

    def event_names(self) -> set[str]:
        return set().union(*(child.event_names() for child in self.children))

    def trait_names(self) -> set[str]:
        return set().union(*(child.trait_names() for child in self.children))


def _describe(value: Any) -> str:
    return f"{value!r}" if not isinstance(value, Mapping) else "an object"


def _expect_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{where} must be a JSON object, got {_describe(value)}")
    return value


def _parse_window(value: Any, where: str) -> timedelta | None:
    if value is None:
        return None
    match = _WINDOW.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise DefinitionError(
            f"{where}: bad window {value!r}; expected a whole number of days or hours, e.g. '30d' or '12h'"
        )
    digits, unit = match.group(1), match.group(2)
    # Measured before int(): it refuses strings over 4,300 digits with a plain ValueError.
    if len(digits) > 6 or int(digits) > (MAX_WINDOW_DAYS if unit == "d" else MAX_WINDOW_DAYS * 24):
        raise DefinitionError(
            f"{where}: window {value!r} is too long; at most {MAX_WINDOW_DAYS}d ({MAX_WINDOW_DAYS * 24}h), "
            "or no window for all time"
        )
    amount = int(digits)
    return timedelta(days=amount) if unit == "d" else timedelta(hours=amount)


def _parse_comparison(node: Mapping[str, Any], subject_field: str, where: str) -> Comparison:
    name = node[subject_field]
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"{where}.{subject_field} must be a non-empty string")
    others = [key for key in node if key != subject_field]
    unknown = [key for key in others if key not in COMPARISON_OPERATORS]
    if unknown:
        raise DefinitionError(
            f"{where}: unknown operator {unknown[0]!r}; expected one of {', '.join(COMPARISON_OPERATORS)}"
        )
    if len(others) != 1:
        raise DefinitionError(
            f"{where}: give exactly one operator ({', '.join(COMPARISON_OPERATORS)}) with {subject_field!r}"
        )
    operator = others[0]
    value = node[operator]
    if operator == "exists" and not isinstance(value, bool):
        raise DefinitionError(f"{where}.exists must be true or false")
    if operator in ("gt", "gte", "lt", "lte") and not (_is_number(value) or isinstance(value, str)):
        raise DefinitionError(f"{where}.{operator} must be a number or a string")
    _check_json_value(value, f"{where}.{operator}")
    return Comparison(name, operator, value)


def _check_json_value(value: Any, where: str) -> None:
    """Refuse what JSON cannot hold: a definition read with Python's json (the --config file takes
    `NaN` and `Infinity`) or given in Python (BundleConfig) can carry it, and every answer showing
    the definition would then fail."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise DefinitionError(f"{where}: {_json_name(item)} is not a JSON value")
        if isinstance(item, Mapping):
            if not all(isinstance(name, str) for name in item):
                raise DefinitionError(f"{where}: object keys must be strings")
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif item is not None and not isinstance(item, (str, int, float)):  # bool is an int
            raise DefinitionError(f"{where}: {type(item).__name__} is not a JSON value")


def _json_name(number: float) -> str:
    """How Python's json spells a non-finite float (what the config file said)."""
    return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"


def _parse_combinator(node: Mapping[str, Any], where: str, parse_child: Callable[[Any, str], Any]) -> tuple[str, tuple]:
    if len(node) != 1:
        raise DefinitionError(f"{where}: 'all', 'any' and 'not' take no sibling fields")
    combinator, value = next(iter(node.items()))
    if combinator == "not":
        return combinator, (parse_child(value, f"{where}.not"),)
    if not isinstance(value, list) or not value:
        raise DefinitionError(f"{where}.{combinator} must be a non-empty list of rules")
    return combinator, tuple(parse_child(item, f"{where}.{combinator}[{index}]") for index, item in enumerate(value))


def parse_where(value: Any, where: str = "where") -> PropertyCondition:
    node = _expect_object(value, where)
    if "property" in node:
        return PropertyCondition(comparison=_parse_comparison(node, "property", where))
    if node.keys() & {"all", "any", "not"}:
        combinator, children = _parse_combinator(node, where, parse_where)
        return PropertyCondition(combinator=combinator, children=children)
    raise DefinitionError(f"{where}: expected {{'property': P, <operator>: V}} or all/any/not, got keys {sorted(node)}")


_EVENT_RULE_FIELDS = {"event", "within", "at_least", "at_most", "where"}


def parse_rule(value: Any, where: str = "rule") -> Rule:
    """Parse and validate an audience rule; DefinitionError says what is wrong and where."""
    node = _expect_object(value, where)
    if "event" in node:
        unknown = sorted(set(node) - _EVENT_RULE_FIELDS)
        if unknown:
            raise DefinitionError(f"{where}: unknown field {unknown[0]!r} in an event rule; allowed: {', '.join(sorted(_EVENT_RULE_FIELDS))}")
        if not isinstance(node["event"], str) or not node["event"]:
            raise DefinitionError(f"{where}.event must be a non-empty string")
        if "at_least" in node and "at_most" in node:
            raise DefinitionError(f"{where}: give at_least or at_most, not both")
        at_least = at_most = None
        if "at_most" in node:
            at_most = node["at_most"]
            if not isinstance(at_most, int) or isinstance(at_most, bool) or at_most < 0:
                raise DefinitionError(f"{where}.at_most must be an integer >= 0 (0 means did not perform)")
        else:
            at_least = node.get("at_least", 1)
            if not isinstance(at_least, int) or isinstance(at_least, bool) or at_least < 1:
                raise DefinitionError(f"{where}.at_least must be an integer >= 1")
        within = _parse_window(node.get("within"), f"{where}.within")
        condition = parse_where(node["where"], f"{where}.where") if "where" in node else None
        return EventRule(node["event"], within, at_least, at_most, condition)
    if "trait" in node:
        return TraitRule(_parse_comparison(node, "trait", where))
    if node.keys() & {"all", "any", "not"}:
        combinator, children = _parse_combinator(node, where, parse_rule)
        return CombinedRule(combinator, children)
    raise DefinitionError(
        f"{where}: expected an event rule ('event'), a trait condition ('trait') or all/any/not, got keys {sorted(node)}"
    )


# ---------------------------------------------------------------------------------------------
# Definitions


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _new_ksuid() -> str:
    """27 base62 characters, the shape of the KSUIDs in Segment ids (aud_…, tra_…, personas_…)."""
    number = int.from_bytes(secrets.token_bytes(20), "big")  # a KSUID is 20 bytes
    digits = []
    for _ in range(27):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


@dataclass
class Audience:
    id: str
    name: str
    key: str
    rule: Rule
    rule_json: Mapping[str, Any]
    created_at: datetime

    computation_class = "audience"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.computation_class, "name": self.name, "key": self.key,
                "rule": self.rule_json, "created_at": iso(self.created_at)}

    def event_names(self) -> set[str]:
        return self.rule.event_names()

    def trait_names(self) -> set[str]:
        return self.rule.trait_names()


@dataclass
class ComputedTrait:
    id: str
    name: str
    key: str
    computed: str
    event: str
    property: str | None
    within: timedelta | None
    within_text: str | None
    created_at: datetime

    computation_class = "trait"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.computation_class, "name": self.name, "key": self.key,
                "computed": self.computed, "event": self.event,
                "property": self.property, "within": self.within_text, "created_at": iso(self.created_at)}

    def event_names(self) -> set[str]:
        return {self.event}

    def trait_names(self) -> set[str]:
        return set()

    def evaluate(self, subject: _Subject) -> tuple[bool, Any, datetime | None]:
        """(present, value, lapse): present is False when no in-window event carries a value (for
        most_frequent: fewer than two do), or when a sum or average is beyond a double's range
        (GUESS: JSON has no infinity, so no value).

        Absent values read 0 for count and sum, null otherwise (sent only after a value was sent).
        """
        events = subject.in_window(self.event, self.within)
        if self.computed == "count":
            samples = [(item.timestamp, None) for item in events]
        else:
            samples = []
            for item in events:
                present, value = _lookup(item.properties, self.property or "")
                if not present or value is None:
                    continue
                if self.computed in ("sum", "avg") and not _is_number(value):
                    continue  # non-numeric values are ignored by sum and avg (guess)
                if self.computed == "most_frequent" and not isinstance(value, (str, int, float, bool)):
                    continue
                samples.append((item.timestamp, value))
        # Any in-window sample lapsing can change count/sum/avg/first; `last` and most_frequent
        # may not change, but re-evaluating them then is cheap and the sync compares values.
        lapse = _lapse(samples[0][0], self.within) if samples and self.within else None  # oldest first
        if not samples:
            return False, (0 if self.computed in ("count", "sum") else None), lapse
        if self.computed == "most_frequent" and len(samples) < 2:
            # Docs (computed-traits.md): "the most frequent computed trait requires the event
            # property to have been tracked at least twice". GUESS: twice within the window.
            return False, None, lapse
        value = _aggregate(self.computed, samples)
        return value is not None, value, lapse


# Either kind of definition, where a method takes one kind and answers that kind.
_Definition = TypeVar("_Definition", Audience, ComputedTrait)


def _aggregate(kind: str, samples: list[tuple[datetime, Any]]) -> Any:
    """The value of `kind` over non-empty samples; None for a sum or average beyond a double's range."""
    if kind == "count":
        return len(samples)
    values = [value for _, value in samples]
    if kind in ("sum", "avg"):
        try:
            total = sum(values)
            result = total if kind == "sum" else total / len(values)
        except OverflowError:  # an integer beyond a double's range (JSON keeps them exact) met a float
            result = math.inf
        if not (isinstance(result, float) and math.isinf(result)):
            return result
        # The running total left a double's range: the exact one says whether the result is in it
        # (an average of 1e308 and 1e308, or a sum of 1e308, 1e308 and -1e308, is 1e308).
        exact = sum(map(Fraction, values))
        try:
            return float(exact if kind == "sum" else exact / len(values))
        except OverflowError:
            return None
    # Samples are oldest first (equal timestamps in arrival order).
    if kind == "first":
        return samples[0][1]
    if kind == "last":
        return samples[-1][1]
    # most_frequent: the highest count wins; "In the case of a tie, Segment returns the first
    # alphabetical value" (computed-traits.md). A value is reported as last spelled (4 or 4.0).
    counts = Counter(_json_value_key(value) for value in values)
    latest = {_json_value_key(value): value for value in values}
    winner = min(counts, key=lambda item: (-counts[item], _alphabetical(latest[item]), item[0]))
    return latest[winner]


def _alphabetical(value: Any) -> str:
    """The text a tie between most_frequent values is ordered by. GUESS: Segment does not say how it
    orders non-strings or case; strings by code point ("Sandals" before "hats"), other values by their
    JSON text (10 before 9, false before true)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)  # a JSON number's spelling, as Python's json writes it


def _json_value_key(value: Any) -> tuple[str, Any]:
    """A scalar as JSON tells values apart: 4 and 4.0 are one number, true is not 1 (Python's == says so)."""
    return ("boolean" if isinstance(value, bool) else "number" if _is_number(value) else "string", value)


def definition_from_json(data: Any) -> Audience | ComputedTrait:
    """A definition as `to_json` rendered it (with its `id` and `created_at`), for storage and snapshots."""
    data = _expect_object(data, "a stored definition")
    kind, definition_id, created_at = data.get("kind"), data.get("id"), data.get("created_at")
    prefix = {"audience": "aud_", "trait": "tra_"}.get(kind) if isinstance(kind, str) else None
    if prefix is None:
        raise DefinitionError(f"kind must be 'audience' or 'trait', got {kind!r}")
    if not isinstance(definition_id, str) or not definition_id.startswith(prefix) or len(definition_id) <= len(prefix):
        raise DefinitionError(f"id must be a string starting with {prefix!r}, got {definition_id!r}")
    try:
        created = parse_iso(created_at)
    except ValueError as exc:
        raise DefinitionError(f"created_at: {exc}") from exc
    keep_id = lambda: definition_id[len(prefix):]  # noqa: E731 - the parser adds the prefix back
    if kind == "audience":
        return parse_audience({name: data[name] for name in _AUDIENCE_FIELDS if name in data}, created, keep_id)
    body = {name: data[name] for name in _TRAIT_FIELDS if name in data and data[name] is not None}
    return parse_trait(body, created, keep_id)


def check_key(key: str) -> None:
    """Refuse a key that is taken (DefinitionError): when a definition is made, and when a snapshot
    brings one (a database an older segjet wrote still loads with it)."""
    if reads_as_email(key):
        # GUESS: Engage writes the profile's email in the same traits as the key, so this key's
        # value would be lost under the address (or replace it on the profile). Any spelling the
        # Mailjet destination reads as the email ("Email", "e_mail") is taken too: it would read the
        # value as the address.
        raise DefinitionError(f"the key {key!r} is taken by the profile's email, which Engage sends with each "
                              "value; give another key")
    if key == USER_ID_PROPERTY:
        # Not Segment's rule but the bundle's: its Mailjet destination writes the userId to this
        # contact property and skips a trait of the same name, so the value would be synced at
        # every change and never reach Mailjet.
        raise DefinitionError(f"the key {USER_ID_PROPERTY!r} is taken by the Mailjet destination, which stores "
                              "the userId in that contact property; give another key")


def check_dependencies(definitions: Iterable[Audience | ComputedTrait]) -> None:
    """Refuse definitions whose value would depend on itself (DefinitionError naming the chain).

    Engage writes each value as a trait named by its key, and audiences may read traits: one that
    reads its own key, directly or through other audiences, would change its own result at every
    sync (a negated one flips forever, and in realtime mode syncs without end). GUESS: Segment's
    builder offers no such reference; it is refused rather than given a meaning.
    """
    by_key = {definition.key: definition for definition in definitions}
    reads = {key: sorted(definition.trait_names() & by_key.keys()) for key, definition in by_key.items()}
    done: set[str] = set()
    # Depth-first without recursion: a chain of audiences can be longer than Python's stack.
    for key in by_key:
        if key in done:
            continue
        path, on_path, pending = [key], {key}, [iter(reads[key])]
        while pending:
            name = next(pending[-1], None)
            if name is None:
                pending.pop()
                on_path.discard(path[-1])
                done.add(path.pop())
            elif name in on_path:
                cycle = path[path.index(name):] + [name]
                raise DefinitionError(
                    f"{cycle[0]!r} would depend on its own value ({' → '.join(cycle)}): Engage writes each key as a "
                    "trait, so a rule reading it would change its own result at every sync"
                )
            elif name not in done:
                path.append(name)
                on_path.add(name)
                pending.append(iter(reads[name]))


_AUDIENCE_FIELDS = {"name", "key", "rule"}
_TRAIT_FIELDS = {"name", "key", "computed", "event", "property", "within"}


def _check_fields(body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise DefinitionError(f"unknown field {unknown[0]!r} in {what}; allowed: {', '.join(sorted(allowed))}")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(f"{what} needs a non-empty 'name'")


def _key_of(body: Mapping[str, Any]) -> str:
    if "key" not in body or body["key"] is None:
        return snake_case_key(body["name"])
    key = body["key"]
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise DefinitionError(f"key {key!r} must be lower-case snake_case: a-z, 0-9 and '_', not starting with '_'")
    return key


def _check_depth(body: Mapping[str, Any], what: str) -> None:
    """Refuse a definition nested deeper than an HTTP body may be: parsing and evaluating a rule
    recurses, and a --config file or a BundleConfig has no depth limit of its own (Python's stack
    ran out at ~700 levels)."""
    if not fits_depth(body):
        raise DefinitionError(f"{what} nests more than {MAX_DEPTH} levels deep")


def parse_audience(body: Any, created_at: datetime, new_id: Callable[[], str] = _new_ksuid) -> Audience:
    body = _expect_object(body, "an audience definition")
    _check_depth(body, "an audience definition")
    _check_fields(body, _AUDIENCE_FIELDS, "an audience definition")
    if "rule" not in body:
        raise DefinitionError("an audience definition needs a 'rule'")
    rule = parse_rule(body["rule"])
    return Audience("aud_" + new_id(), body["name"], _key_of(body), rule, body["rule"], created_at)


def parse_trait(body: Any, created_at: datetime, new_id: Callable[[], str] = _new_ksuid) -> ComputedTrait:
    body = _expect_object(body, "a computed trait definition")
    _check_depth(body, "a computed trait definition")
    _check_fields(body, _TRAIT_FIELDS, "a computed trait definition")
    computed = body.get("computed")
    if computed not in COMPUTED_KINDS:
        raise DefinitionError(f"computed must be one of {', '.join(COMPUTED_KINDS)}, got {computed!r}")
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise DefinitionError("a computed trait needs an 'event' (non-empty string)")
    prop = body.get("property")
    if computed == "count":
        if prop is not None:
            raise DefinitionError("a count takes no 'property'")
    elif not isinstance(prop, str) or not prop:
        raise DefinitionError(f"a {computed} computed trait needs a 'property' (non-empty string)")
    within_text = body.get("within")
    within = _parse_window(within_text, "within")
    return ComputedTrait("tra_" + new_id(), body["name"], _key_of(body), computed, event, prop, within,
                         within_text, created_at)


# ---------------------------------------------------------------------------------------------
# Incremental computation state


# What a definition told one userId, as storage keeps it: (True, None) an audience member,
# (False, value) a computed trait's value, None nothing (not a member, or merged away).
Told = Optional[tuple[bool, Any]]


@dataclass
class _Computation:
    """What one definition last told the destination, and which profiles to look at next sync."""

    definition: Audience | ComputedTrait
    synced: bool = False
    dirty: set[str] = field(default_factory=set)
    # Profiles whose evaluation failed (a bug): looked at again at the next sync, but not pending,
    # so a realtime schedule does not retry them without end.
    failed: set[str] = field(default_factory=set)
    # (lapse, user_id); an entry is live only while `lapses[user_id]` still equals it.
    expiry: list[tuple[datetime, str]] = field(default_factory=list)
    lapses: dict[str, datetime] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)  # audiences: synced membership
    values: dict[str, Any] = field(default_factory=dict)  # computed traits: last value sent
    # Surviving userIds that took over what was told under a merged-away one: their value is sent
    # at their next evaluation even if unchanged, as Engage re-syncs a profile's new identifier.
    resend: set[str] = field(default_factory=set)
    # userIds whose entry in `members`/`values` changed since storage last took them (an ordered
    # set: storage keeps values in the order they were first told).
    touched: dict[str, None] = field(default_factory=dict)

    def told(self, user_id: str) -> Told:
        if isinstance(self.definition, Audience):
            return (True, None) if user_id in self.members else None
        return (False, self.values[user_id]) if user_id in self.values else None

    def schedule_lapse(self, user_id: str, lapse: datetime | None) -> None:
        if lapse is None:
            self.lapses.pop(user_id, None)
            return
        self.lapses[user_id] = lapse
        heapq.heappush(self.expiry, (lapse, user_id))
        if len(self.expiry) > 2 * len(self.lapses) + 64:
            # Re-evaluations leave stale entries behind; rebuild so the heap stays O(profiles).
            self.expiry = [(when, user) for user, when in self.lapses.items()]
            heapq.heapify(self.expiry)

    def pop_lapsed(self, now: datetime) -> set[str]:
        lapsed = set()
        while self.expiry and self.expiry[0][0] < now:
            when, user_id = heapq.heappop(self.expiry)
            if self.lapses.get(user_id) == when:
                del self.lapses[user_id]
                lapsed.add(user_id)
        return lapsed

    def next_lapse(self) -> datetime | None:
        while self.expiry and self.lapses.get(self.expiry[0][1]) != self.expiry[0][0]:
            heapq.heappop(self.expiry)
        return self.expiry[0][0] if self.expiry else None

    def record(self, user_id: str, value: Any) -> None:
        """Note the value the destination is told for a profile (membership for an audience)."""
        self.touched[user_id] = None
        if isinstance(self.definition, Audience):
            (self.members.add if value else self.members.discard)(user_id)
        else:
            self.values[user_id] = value

    def take_over(self, merged: str, survivor: str) -> bool:
        """Move what was told under `merged` (a userId an alias merged into `survivor`'s profile) to
        `survivor`, where it was told nothing (or a computed trait's null); True when something was moved.

        GUESS (Segment documents one call per identifier, not merges): the merged-away userId is not
        synced again. What it was told becomes the survivor's, so a later change (an exit above all)
        is sent under the survivor and reaches the same contact.
        """
        self.dirty.discard(merged)
        self.failed.discard(merged)
        self.lapses.pop(merged, None)  # its heap entry goes stale and is skipped
        if merged in self.members or merged in self.values:
            self.touched.update({merged: None, survivor: None})
        if isinstance(self.definition, Audience):
            if merged not in self.members:
                return False
            self.members.discard(merged)
            if survivor in self.members:
                return False
            self.members.add(survivor)
            return True
        if merged not in self.values:
            return False
        value = self.values.pop(merged)
        if self.values.get(survivor) is not None:
            return False
        # The survivor told nothing, or null: the merged-away userId's emails still hold its value,
        # which the survivor's next value (null included) must reach.
        self.values[survivor] = value
        return True


@dataclass
class _Result:
    """One profile evaluated by a sync, before anything is recorded."""

    value: Any
    lapse: datetime | None
    identifies: list[dict[str, Any]]  # to send: one per email the destination was not told the value with


@dataclass
class ComputationState:
    """One definition and its last-synced state, as storage and snapshots keep it."""

    definition: Audience | ComputedTrait
    synced: bool
    members: list[str]  # audiences: the userIds last synced as members
    values: dict[str, Any]  # computed traits: the value last sent per userId


@dataclass
class SyncResult:
    sent: list[dict[str, Any]]
    evaluated: int

    def to_json(self) -> dict[str, Any]:
        return {"count": len(self.sent), "evaluated": self.evaluated, "sent": self.sent}


class EngageEngine:
    """Audiences and computed traits of one Engage space, synced incrementally as identify calls."""

    def __init__(
        self,
        profiles: ProfileSource,
        emit: Callable[[dict[str, Any]], Any],
        now: Callable[[], datetime],
        space_id: str,
        new_id: Callable[[], str] = _new_ksuid,
    ) -> None:
        self.profiles = profiles
        self.emit = emit
        self.now = now
        self.space_id = space_id
        self.new_id = new_id
        self._computations: dict[str, _Computation] = {}  # by key; audiences and traits share keys
        self._by_event: dict[str, list[_Computation]] = {}
        self._by_trait: dict[str, list[_Computation]] = {}
        self._seen: set[str] = set()  # userIds observed or backfilled
        self._linked: set[str] = set()  # anonymousIds observed together with a userId
        # Per userId Engage told something, the emails that have each value it told them (empty:
        # none yet). Engage sends one identify per email of a profile, and re-syncs what it told when
        # an email is added to it (Segment docs, using-engage-data.md, "Multiple identifiers of the
        # same type", "New external identifiers added to a profile"); the destination keys contacts by email.
        self._told_emails: dict[str, set[str]] = {}
        # The clock's time at the latest sync: a clock set back before it makes every profile due.
        self._synced_at: datetime | None = None

    # definitions -----------------------------------------------------------------------------

    def define_audience(self, body: Any) -> Audience:
        return self._add(parse_audience(body, self.now(), self.new_id))

    def define_trait(self, body: Any) -> ComputedTrait:
        return self._add(parse_trait(body, self.now(), self.new_id))

    def _add(self, definition: Any) -> Any:
        check_key(definition.key)
        existing = self._computations.get(definition.key)
        if existing is not None:
            kind = "an audience" if isinstance(existing.definition, Audience) else "a computed trait"
            raise DuplicateKeyError(f"key {definition.key!r} is already used by {kind}; keys are fixed once created")
        check_dependencies([*(c.definition for c in self._computations.values()), definition])
        self._computations[definition.key] = _Computation(definition)
        self._reindex()
        return definition

    def delete_audience(self, key: str) -> Audience:
        # No exit identifies are sent for a deleted audience (guess: Engage stops syncing it).
        return self._remove(key, Audience)

    def delete_trait(self, key: str) -> ComputedTrait:
        # No null is sent for a deleted computed trait either: the profiles keep the last value sent.
        return self._remove(key, ComputedTrait)

    def _remove(self, key: str, kind: type[_Definition]) -> _Definition:
        computation = self._computations.get(key)
        definition = None if computation is None else computation.definition
        if not isinstance(definition, kind):
            what = "audience" if kind is Audience else "computed trait"
            raise UnknownDefinition(f"no {what} with key {key!r}")
        # GUESS: Segment does not document deleting an audience or computed trait another definition
        # uses; its docs only say the key stays on the profiles as a trait (segment-docs PR #5489).
        # A reader would then read a value no sync ever changes again, so the deletion is refused.
        readers = [c.definition.key for c in self._computations.values() if key in c.definition.trait_names()]
        if readers:
            raise DefinitionInUse(
                f"{key!r} is read by {', '.join(map(repr, readers))}; delete "
                f"{'it' if len(readers) == 1 else 'them'} first (a definition is changed by deleting and adding it again)"
            )
        del self._computations[key]
        self._reindex()
        # The emails sent to a userId no remaining definition told anything are forgotten, as a
        # restart would (restore rebuilds them from the definitions kept): otherwise a new email
        # re-evaluated that user in every definition, but only until the next restart.
        told = {user_id for c in self._computations.values() for user_id in (*c.members, *c.values)}
        self._told_emails = {user_id: emails for user_id, emails in self._told_emails.items() if user_id in told}
        return definition

    def audiences(self) -> list[Audience]:
        return [c.definition for c in self._computations.values() if isinstance(c.definition, Audience)]

    def traits(self) -> list[ComputedTrait]:
        return [c.definition for c in self._computations.values() if isinstance(c.definition, ComputedTrait)]

    def describe(self, definition: Audience | ComputedTrait) -> dict[str, Any]:
        """The definition with its sync state: synced yet, how many profiles the destination knows,
        and the first SAMPLE_SIZE of them by userId (with their values, for a computed trait)."""
        computation = self._computations[definition.key]
        if isinstance(definition, Audience):
            members = computation.members
            return {**definition.to_json(), "synced": computation.synced, "members": len(members),
                    "member_sample": heapq.nsmallest(SAMPLE_SIZE, members)}
        # A computed trait's value told as null (its events lapsed) is no value.
        valued = [user_id for user_id, value in computation.values.items() if value is not None]
        sample = {user_id: computation.values[user_id] for user_id in heapq.nsmallest(SAMPLE_SIZE, valued)}
        return {**definition.to_json(), "synced": computation.synced, "profiles_with_value": len(valued), "value_sample": sample}

    def _reindex(self) -> None:
        self._by_event, self._by_trait = {}, {}
        for computation in self._computations.values():
            for name in computation.definition.event_names():
                self._by_event.setdefault(name, []).append(computation)
            for name in computation.definition.trait_names():
                self._by_trait.setdefault(name, []).append(computation)

    # changes ---------------------------------------------------------------------------------

    def observe(self, message: Mapping[str, Any]) -> bool:
        """Note an accepted user message (never an Engage one); True when some definition must re-evaluate."""
        user_id = message.get("userId")
        anonymous_id = message.get("anonymousId")
        if not isinstance(user_id, str) or not user_id:
            # A call with only an anonymousId already linked to a user lands on that user's profile.
            user_id = self.profiles.linked_user_id(anonymous_id) if isinstance(anonymous_id, str) else None
            if not user_id:
                return False  # anonymous-only profiles are not synced
        user_id = self._current_user_id(user_id)
        touched: Sequence[_Computation] = ()
        if message.get("type") == "alias":
            # A merge can bring any history and traits into the userId's profile.
            touched = list(self._computations.values())
            # Every userId now landing on it, not only the previousId: an anonymousId's profile
            # brings its user's. State still kept under one of them would otherwise stay there,
            # counted but never synced, until a restart's restore took it over without a word.
            merged = list(self.profiles.merged_user_ids(user_id))
            for computation in touched:
                for merged_id in merged:
                    if merged_id in computation.members or merged_id in computation.values:
                        # A userId Engage told something: the next sync hands that to the survivor.
                        computation.dirty.add(merged_id)
        elif user_id not in self._seen or (anonymous_id and anonymous_id not in self._linked):
            # A new profile can match "did not perform" rules; a new anonymousId may merge history.
            self._seen.add(user_id)
            if anonymous_id:
                self._linked.add(anonymous_id)
            touched = list(self._computations.values())
        elif message.get("type") == "track":
            touched = self._by_event.get(message.get("event"), ())
        elif message.get("type") == "identify" and isinstance(message.get("traits"), Mapping):
            touched = [computation for name in message["traits"] for computation in self._by_trait.get(name, ())]
        if self._emails_to_resend(user_id):
            touched = list(self._computations.values())  # every value told is sent to the new address
        for computation in touched:
            if computation.synced:
                computation.dirty.add(user_id)
        return bool(touched)

    def observe_own(self, message: Mapping[str, Any]) -> None:
        """Note an identify Engage itself sent. Not a user event, but the profile now carries its
        key as a trait, so rules reading that trait (an audience of audience members) re-evaluate."""
        user_id, traits = message.get("userId"), message.get("traits")
        if isinstance(user_id, str) and isinstance(traits, Mapping):
            for name in traits:
                for computation in self._by_trait.get(name, []):
                    if computation.synced:
                        computation.dirty.add(user_id)

    def _current_user_id(self, user_id: str) -> str:
        """The userId `user_id`'s profile goes by: the survivor's once an alias merged it away."""
        return self.profiles.linked_user_id(user_id) or user_id

    def _take_over(self, computation: _Computation, user_id: str) -> str:
        """The userId to evaluate for `user_id`: itself, or the survivor of a merge, which then takes
        over what `computation` (and the email record) kept under `user_id`."""
        current = self._current_user_id(user_id)
        if current != user_id:
            if computation.take_over(user_id, current):
                computation.resend.add(current)
            # What went to the merged-away userId's emails was its own values, not the survivor's: those
            # emails are new to the survivor, and every definition that told it something sends to them.
            self._told_emails.pop(user_id, None)
        return current

    def _emails_to_resend(self, user_id: str) -> list[str]:
        """The profile's emails Engage never sent to, when it has told this user something."""
        told = self._told_emails.get(user_id)
        return [] if told is None else [email for email in self.profiles.emails(user_id) if email not in told]

    def has_pending(self) -> bool:
        """Something to send at the next sync without time passing (dirty profiles, first syncs, a
        clock set back before the latest sync)."""
        return any(not c.synced or c.dirty for c in self._computations.values()) or self._went_back(self.now())

    def _went_back(self, now: datetime) -> bool:
        return self._synced_at is not None and now < self._synced_at

    def has_unsynced(self) -> bool:
        """Some definition was never synced (its first sync is a backfill)."""
        return any(not c.synced for c in self._computations.values())

    def next_lapse(self) -> datetime | None:
        lapses = [lapse for c in self._computations.values() if (lapse := c.next_lapse()) is not None]
        return min(lapses) if lapses else None

    # sync ------------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Evaluate what changed at the clock's time and emit one identify per change and email of the profile.

        A profile whose evaluation fails (a bug) is logged and looked at again at the next sync;
        the other profiles and definitions are synced as usual. A sync that raises still sends
        what it recorded until then.
        """
        now = self.now()
        if self._went_back(now):
            # GUESS (Segment's clock never goes back): answers and lapse times worked out at a later
            # time do not hold at an earlier one (an event that had lapsed is inside its window
            # again), so every profile is looked at again, as after a restart. Marked dirty up
            # front, so that definitions a failing sync does not reach still have them.
            user_ids = set(self.profiles.user_ids())
            for computation in self._computations.values():
                if computation.synced:
                    computation.dirty |= user_ids
        self._synced_at = now
        sent: list[dict[str, Any]] = []
        evaluated = 0
        # Their emails are noted once every definition is looked at, so that each resends to a new one.
        sent_to: set[str] = set()
        looked_at: set[str] = set()
        completed = False
        # What was recorded as told is sent even if a later definition raises (a bug): nothing
        # else would send it, since the next sync compares with what was recorded.
        try:
            for computation in list(self._computations.values()):
                if computation.synced:
                    candidates = {
                        self._take_over(computation, user_id)
                        for user_id in computation.dirty | computation.failed | computation.pop_lapsed(now)
                    }
                else:
                    candidates = set(self.profiles.user_ids())  # the first sync is a backfill over every profile
                    self._seen.update(candidates)
                    computation.expiry, computation.lapses = [], {}
                # Each candidate stays in `failed` until it is done: one whose evaluation fails, and
                # those a sync raising (a bug) never reached, are looked at again at the next sync.
                computation.dirty, computation.failed = set(), set(candidates)
                computation.synced = True
                evaluated += len(candidates)
                looked_at |= candidates
                for user_id in sorted(candidates):
                    try:
                        result = self._evaluate(computation, _Subject(self.profiles, user_id, now))
                    except Exception:
                        log.exception("Engage %r: evaluating %r failed; it is evaluated again at the next sync",
                                      computation.definition.key, user_id)
                        continue
                    computation.schedule_lapse(user_id, result.lapse)
                    computation.resend.discard(user_id)
                    if result.identifies:
                        computation.record(user_id, result.value)
                        sent += result.identifies
                        sent_to.add(user_id)
                    computation.failed.discard(user_id)
            completed = True
        finally:
            self._note_emails(sent_to, looked_at, completed)
            for message in sent:
                self.emit(message)
        return SyncResult(sent, evaluated)

    def _note_emails(self, sent_to: set[str], looked_at: set[str], completed: bool) -> None:
        """Note, per user, the emails that now have every value Engage told them.

        A user told something for the first time was sent it at each of their emails. After a whole
        sync, each email of a told user it evaluated without failure has every value (sent now, or
        earlier): a user left nothing to send to a new address is done with it too, not evaluated
        everywhere again at every sync; a user with an email not yet sent to is evaluated in every
        definition (`observe` marks them), so one evaluated anywhere was evaluated everywhere. A user
        told before keeps the emails noted for them when an evaluation of theirs failed, or the sync
        did not finish: the definitions it did not reach would take an email another one sent to as
        told, and never send theirs; sending again to an email (the same value) is what that costs.
        """
        for user_id in sent_to:
            self._told_emails.setdefault(user_id, set(self.profiles.emails(user_id)))
        if not completed:
            return
        failed = set().union(*(computation.failed for computation in self._computations.values()))
        for user_id in looked_at - failed:
            told = self._told_emails.get(user_id)
            if told is not None:
                told.update(self.profiles.emails(user_id))

    def _evaluate(self, computation: _Computation, subject: _Subject) -> _Result:
        """One profile's result now, compared with what the destination was last told; records nothing."""
        definition = computation.definition
        user_id = subject.user_id
        if isinstance(definition, Audience):
            value, lapse = definition.rule.evaluate(subject)
            told = user_id in computation.members
            changed = value != told
        else:
            present, value, lapse = definition.evaluate(subject)
            told = user_id in computation.values and computation.values[user_id] is not None
            # A profile never told a value is told only once it has one.
            changed = not _same(computation.values[user_id], value) if user_id in computation.values else present
        if not changed and told and user_id in computation.resend:
            changed = True  # unchanged, but the destination has not had it under this userId
        if changed:
            emails: Sequence[str | None] = self.profiles.emails(user_id) or (None,)
        else:
            # Unchanged, but the destination has not had it with these emails.
            emails = self._emails_to_resend(user_id) if told else ()
        identifies = [self._identify(definition, user_id, value, subject.now, email) for email in emails]
        return _Result(value, lapse, identifies)

    def _identify(
        self, definition: Audience | ComputedTrait, user_id: str, value: Any, now: datetime, email: str | None
    ) -> dict[str, Any]:
        traits: dict[str, Any] = {definition.key: value}
        if email is not None:
            traits["email"] = email
        return {
            "type": "identify",
            "userId": user_id,
            "traits": traits,
            "context": {
                "personas": {
                    "computation_class": definition.computation_class,
                    "computation_id": definition.id,
                    "computation_key": definition.key,
                    "namespace": self.space_id,
                    "space_id": self.space_id,
                }
            },
            "integrations": dict(INTEGRATIONS),
            "messageId": "personas_" + self.new_id(),
            "timestamp": iso(now),
        }

    # reading ---------------------------------------------------------------------------------

    def profile_view(self, user_id: str) -> dict[str, Any]:
        """Audience membership and computed trait values of one profile, computed now."""
        subject = _Subject(self.profiles, user_id, self.now())
        audiences: dict[str, bool] = {}
        computed: dict[str, Any] = {}
        for computation in self._computations.values():
            definition = computation.definition
            if isinstance(definition, Audience):
                audiences[definition.key] = definition.rule.evaluate(subject)[0]
            else:
                present, value, _ = definition.evaluate(subject)
                if present or user_id in computation.values:
                    computed[definition.key] = value
        return {"audiences": audiences, "computed_traits": computed}

    def export_state(self) -> list[ComputationState]:
        """Each definition with what the destination was last told, in definition order."""
        return [
            ComputationState(c.definition, c.synced, sorted(c.members), dict(c.values))
            for c in self._computations.values()
        ]

    def take_told(self) -> dict[str, dict[str, Told]]:
        """What changed in what the destination was told since the last call, by definition key
        then userId (storage writes only these); forgotten here once taken."""
        changes: dict[str, dict[str, Told]] = {}
        for key, computation in self._computations.items():
            if computation.touched:
                changes[key] = {user_id: computation.told(user_id) for user_id in computation.touched}
                computation.touched = {}
        return changes

    def restore(self, states: Iterable[ComputationState], told_emails: Mapping[str, set[str]] | None = None) -> None:
        """Replace every definition and its sync state (a restart, a snapshot import).

        Pending work and lapse times are not kept: every profile is marked to re-evaluate in
        the synced definitions, so the next sync compares them all with what was last sent and
        sends only the differences (and lapses are found again). `told_emails`: the emails Engage
        sent identifies with per userId, as the stored messages show them.
        """
        self._computations, self._seen, self._linked, self._synced_at = {}, set(), set(), None
        for state in states:
            self._computations[state.definition.key] = _Computation(
                state.definition, state.synced, members=set(state.members), values=dict(state.values)
            )
        self._reindex()
        user_ids = set(self.profiles.user_ids())
        for computation in self._computations.values():
            if computation.synced:
                # With the userIds merged away since this state was kept: the sync moves theirs on.
                told = (*computation.members, *computation.values)
                merged = {user_id for user_id in told if self._current_user_id(user_id) != user_id}
                computation.dirty = user_ids | merged
        # A userId whose identifies are not known is taken as told with the profile's emails.
        told_emails = told_emails or {}
        self._told_emails = {
            user_id: set(told_emails[user_id]) if user_id in told_emails else set(self.profiles.emails(user_id))
            for c in self._computations.values() for user_id in (*c.members, *c.values)
        }

    def reset(self, audiences: Iterable[Any] = (), traits: Iterable[Any] = ()) -> None:
        """Forget every definition and sync state, then define the given ones (from config) afresh."""
        self._computations, self._seen, self._linked, self._told_emails = {}, set(), set(), {}
        self._synced_at = None
        self._reindex()
        for kind, bodies, define in (("audiences", audiences, self.define_audience),
                                     ("traits", traits, self.define_trait)):
            for index, body in enumerate(bodies):
                try:
                    define(body)
                except DefinitionError as exc:
                    raise type(exc)(f"engage {kind}[{index}]: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# When syncs happen


def parse_sync_interval(text: str) -> timedelta | str:
    """"realtime" (sync on each change), "manual" (only POST engage/sync) or a duration ("2h")."""
    if text in (REALTIME, MANUAL):
        return text
    try:
        interval = parse_duration(text)
    except ValueError as exc:
        raise DefinitionError(f"engage sync interval: {exc}, or 'realtime' or 'manual'") from exc
    if interval <= timedelta():
        raise DefinitionError("engage sync interval must be positive")
    return interval


class EngageScheduler:
    """Runs the engine's syncs on the virtual clock.

    A duration syncs every interval of virtual time, counted from the creation of the earliest
    definition: it is stored with the definitions, so a restart keeps the next sync's due time (a
    clock jump fires one sync at the new time, not one per missed interval); "realtime" syncs as soon
    as something changed or a window lapsed; "manual" leaves it to `POST /_emulator/engage/sync`.
    Timers are re-armed lazily because a service reset drops them together with the clock offset,
    and after every move of the clock (one set back leaves a timer armed for a later time).
    A sync that raises (a bug) is logged and does not end the schedule; realtime waits SYNC_RETRY.
    """

    def __init__(
        self, engine: EngageEngine, clock: Clock, interval: str, owner: str, sync: Callable[[], Any] | None = None
    ) -> None:
        self.engine = engine
        self.sync = sync or engine.sync
        self.clock = clock
        self.interval = parse_sync_interval(interval)
        self.owner = owner
        self._timer: Any = None
        self._retry_at: datetime | None = None  # realtime: no sync before this, after one raised
        self._closed = False
        # A timer armed before the clock was set back would wait the set-back out (an interval's
        # next mark is earlier now; a realtime space must look at every profile again at once).
        clock.watch_moves(self.arm)

    def arm(self) -> None:
        """Make sure the next sync is scheduled; call after anything that can change what to send."""
        if self.interval == MANUAL or self._closed:
            return
        if self.interval == REALTIME:
            due = self.clock.now() if self.engine.has_pending() else None
            if due is None and (lapse := self.engine.next_lapse()) is not None:
                due = lapse + _TICK
            if self._retry_at is not None:
                # After a sync that raised, the next one is the retry, owed even when nothing else is
                # pending (what that sync had not finished waits in `failed`): not sooner, and not
                # later for a lapse; not after a retry time the clock was set back from either.
                due = min(self._retry_at, self.clock.now() + SYNC_RETRY)
            if due is None:
                return
            if self._live_timer() and self._timer.due <= due:
                return
            self.cancel()
        else:
            created = [definition.created_at for definition in (*self.engine.audiences(), *self.engine.traits())]
            if not created:
                return  # nothing to sync; defining something arms the schedule
            anchor = min(created)
            try:
                due = anchor + self.interval * ((self.clock.now() - anchor) // self.interval + 1)
            except OverflowError:
                return  # the next mark is past datetime's range, far beyond the clock's: never due
            # A timer due no later than the next mark stays (after a jump forward it fires the one
            # sync at the new time); one due later was armed before the clock was set back.
            if self._live_timer() and self._timer.due <= due:
                return
            self.cancel()
        self._timer = self.clock.call_at(due, self._fire, owner=self.owner)

    def _fire(self) -> None:
        self._timer = None
        try:
            self.sync()
            self._retry_at = None
        except Exception:
            # Logged with its reason, and the schedule goes on: only arm() sets the next timer, and
            # without it no sync would run until some message arrived (no lapse would be sent).
            log.exception("Engage sync of %s failed; it is tried again at the next scheduled sync", self.owner)
            if self.interval == REALTIME:
                self._retry_at = self.clock.now() + SYNC_RETRY
        self.arm()

    def _live_timer(self) -> bool:
        return self._timer is not None and not self._timer.cancelled

    def cancel(self) -> None:
        if self._timer is not None:
            Clock.cancel(self._timer)
            self._timer = None

    def close(self) -> None:
        """No more syncs, and no more looking at clock moves (the space is gone): a call still under
        way in it (a definition, a message) arms nothing."""
        self._closed = True
        self.cancel()
        self.clock.unwatch_moves(self.arm)


# ---------------------------------------------------------------------------------------------
# The space: engine + schedule, wired to the fake Segment backend


ENGAGE_SOURCE_NAME = "Engage"


class EngageChanges(Protocol):
    """Told when definitions or sync state change (storage.py writes them)."""

    def engage_changed(self) -> None:
        """A definition was added or deleted, or first synced."""

    def engage_told(self, computation: str, told: Mapping[str, Told]) -> None:
        """A sync changed what the definition keyed `computation` told these userIds."""

    def engage_removed(self, computation: str) -> None:
        """The definition keyed `computation` was deleted, with what it told."""


class EngageSpace:
    """The Engage space of one fake Segment workspace.

    Listens to the backend's accepted messages (ignoring its own, so syncs never feed back into
    the computation), reads the backend's profiles, and sends every identify through the
    backend's ingest path under the workspace's "Engage" source: they are stored, shown in the
    debugger and delivered to destinations like tracked calls.
    """

    def __init__(
        self, backend: SegmentBackend, config: BundleConfig, clock: Clock, owner: str, space_key: str | None = None
    ) -> None:
        self.backend = backend
        self.config = config
        self.changes: EngageChanges | None = None
        # Derived from the workspace's first write key, so the space id stays the same across
        # restarts and resets (the default workspace: the bundle's write key).
        digest = hashlib.sha256(f"engage-space:{space_key or config.write_key}".encode()).hexdigest()
        self.space_id = "spa_" + digest[:22]
        self.source = Source.named(ENGAGE_SOURCE_NAME, ENGAGE_WRITE_KEY_PREFIX + self.space_id)
        self.engine = EngageEngine(SegmentProfiles(backend), self._emit, clock.now, self.space_id)
        self.scheduler = EngageScheduler(self.engine, clock, config.engage_sync_interval, owner, sync=self._sync)
        self.engine.reset(config.engage_audiences, config.engage_traits)
        backend.add_listener(self._on_message)

    def _emit(self, message: dict[str, Any]) -> None:
        self.backend.ingest(message, self.source)

    def _on_message(self, stored: StoredMessage) -> None:
        if stored.source.id == self.source.id:
            self.engine.observe_own(stored.message)
            self.scheduler.arm()
        elif self.engine.observe(stored.message):
            self.scheduler.arm()  # only then can the next sync have something new to send

    def _sync(self) -> SyncResult:
        first_syncs = self.engine.has_unsynced()
        try:
            return self.engine.sync()
        finally:
            # Also after a sync that raised (a bug): what it recorded as told was sent. Taken even
            # without storage, or the changes would pile up for as long as the server runs.
            told = self.engine.take_told()
            if self.changes is not None:
                if first_syncs:
                    self._changed()  # `synced`, in the definitions' row
                for key, users in told.items():
                    self.changes.engage_told(key, users)

    def sync(self) -> SyncResult:
        result = self._sync()
        self.scheduler.arm()
        return result

    def define_audience(self, body: Any) -> Audience:
        audience = self.engine.define_audience(body)
        self._changed()
        self.scheduler.arm()
        return audience

    def define_trait(self, body: Any) -> ComputedTrait:
        trait = self.engine.define_trait(body)
        self._changed()
        self.scheduler.arm()
        return trait

    def delete_audience(self, key: str) -> Audience:
        audience = self.engine.delete_audience(key)
        self._deleted(key)
        return audience

    def delete_trait(self, key: str) -> ComputedTrait:
        trait = self.engine.delete_trait(key)
        self._deleted(key)
        return trait

    def _deleted(self, key: str) -> None:
        if self.changes is not None:
            self.changes.engage_removed(key)
        self._changed()
        # An interval schedule counts from the earliest remaining definition (as after a restart),
        # and with none left no sync is due: the timer armed for the old schedule is dropped.
        self.scheduler.cancel()
        self.scheduler.arm()

    def restore(self, states: Iterable[ComputationState]) -> None:
        """Definitions and last-synced state kept before a restart or from a snapshot; call after
        the backend's restore (the emails Engage last sent with are read from its messages)."""
        self.engine.restore(states, self._emails_told())
        self.scheduler.cancel()  # a snapshot's definitions bring their own schedule
        self.scheduler.arm()

    def reset(self) -> None:
        """Back to the definitions of the config, none synced yet."""
        self.engine.reset(self.config.engage_audiences, self.config.engage_traits)
        # A workspace's own reset keeps the clock and its timers: the old schedule's is dropped here.
        self.scheduler.cancel()
        self.scheduler.arm()

    def _emails_told(self) -> dict[str, set[str]]:
        """The emails this space sent identifies with per userId, from the stored messages (those
        still in the events feed: a userId with none there is taken as told with its emails)."""
        emails: dict[str, set[str]] = {}
        for stored in self.backend.messages:
            if stored.source.id == self.source.id and isinstance(stored.user_id, str):
                traits = stored.message.get("traits")
                told = emails.setdefault(stored.user_id, set())
                if isinstance(traits, Mapping) and (email := _email_of(traits)) is not None:
                    told.add(email)
        return emails

    def close(self) -> None:
        """Stop syncing on the clock (the workspace is gone)."""
        self.scheduler.close()

    def _changed(self) -> None:
        if self.changes is not None:
            self.changes.engage_changed()
