"""Fault injection rules: which requests fail, how, and how often. Plain Python, no HTTP.

A rule (DESIGN §3, `POST /_emulator/faults`):

    {"method": "POST", "path": "/v3/REST/contactslist/*/managecontact", "status": 503, "rate": 0.4,
     "times": null, "delay_ms": 0, "action": "respond", "seed": 3, "api_key": "..."}

- `method`: an HTTP method, or absent / `"*"` for any.
- `path`: a glob on the request path; `*` matches any run of characters, `/` included. The fake
  Mailjet matches it case-insensitively (its paths are), the fake Segment exactly. A glob that can
  only match the control API (`/_emulator/...`, never faulted) is refused.
- `action`: `respond` (answer `status`, default 503, in the real service's error shape; with
  `"status": null`, let the real handler answer, only `delay_ms` late), `drop` (close the connection without an answer) or
  `timeout` (hold the request, unanswered, until the client gives up).
- `rate` (0..1, default 1) is drawn from the rule's own RNG, seeded by `seed` (default 0), so the
  same sequence of requests meets the same faults run after run. `times` caps how often the rule
  fires (null: no cap); a spent rule stays listed, matching nothing.
- `delay_ms`: real milliseconds waited before the fault acts (latency, not virtual time).
- The credential field (`api_key` on Mailjet, `write_key` on Segment) limits the rule to requests
  made with that key.
- `retry_after` (Segment only, default 1): the seconds its 429 announces (documented headers). The
  fake Mailjet's fault answers send no such header (what Mailjet's 429 says is not published), so
  a Mailjet rule refuses the field rather than keep a value it would never use.

Rules are tried in the order they were added; the first whose draw fires wins.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any

from .journal import CONTROL_PREFIX

RESPOND = "respond"
DROP = "drop"
TIMEOUT = "timeout"
ACTIONS = (RESPOND, DROP, TIMEOUT)

_BASE_FIELDS = {"method", "path", "status", "rate", "times", "delay_ms", "action", "seed"}
_METHOD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
# How long a request may be delayed or held: beyond this a test is stuck, not exercising a client.
MAX_DELAY_MS = 60_000


class FaultRuleError(ValueError):
    """A rule that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class Glob:
    """`*` matches any run of characters (`/` included); everything else is literal.

    Matched piece by piece, each the leftmost after the one before (exact when `*` is the only
    wildcard), in one pass over the path: as a regex of `.*`s it backtracked, and under a rule with
    two of them a 64 KB path held the three servers' one event loop for 10 s.
    """

    pieces: tuple[str, ...]
    case_insensitive: bool

    @classmethod
    def of(cls, glob: str, case_insensitive: bool) -> Glob:
        return cls(tuple((glob.lower() if case_insensitive else glob).split("*")), case_insensitive)

    def matches(self, path: str) -> bool:
        if self.case_insensitive:
            path = path.lower()
        if len(self.pieces) == 1:
            return path == self.pieces[0]
        first, *middle, last = self.pieces
        end = len(path) - len(last)
        if end < len(first) or not path.startswith(first) or not path.endswith(last):
            return False
        at = len(first)
        for piece in middle:
            found = path.find(piece, at, end)
            if found < 0:
                return False
            at = found + len(piece)
        return True


@dataclass
class FaultRule:
    id: str
    path: str
    method: str | None
    action: str
    status: int | None
    rate: float
    times: int | None
    delay_ms: int
    seed: int
    credential: str | None
    credential_field: str
    # Seconds announced in Segment's 429 headers (Retry-After, X-RateLimit-Reset); None on Mailjet.
    retry_after: int | None
    case_insensitive: bool
    matched: int = 0
    fired: int = 0
    _glob: Glob = field(init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._glob = Glob.of(self.path, self.case_insensitive)
        self._rng = random.Random(self.seed)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method.upper()) and self._glob.matches(path)

    def draw(self, credential: str | None) -> bool:
        """One matching request meets this rule: does the fault fire? Counts it either way."""
        if self.spent or (self.credential is not None and credential != self.credential):
            return False
        self.matched += 1
        if self._rng.random() >= self.rate:
            return False
        self.fired += 1
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method or "*",
            "path": self.path,
            "action": self.action,
            "status": self.status,
            "rate": self.rate,
            "times": self.times,
            "delay_ms": self.delay_ms,
            "seed": self.seed,
            self.credential_field: self.credential,
            **({} if self.retry_after is None else {"retry_after": self.retry_after}),
            "matched": self.matched,
            "fired": self.fired,
            "spent": self.spent,
        }


class FaultRules:
    """The fault rules of one service. `credential_field` names the key a rule may match on;
    `has_retry_after`: a rule takes `retry_after` (the service's 429 announces when to retry)."""

    def __init__(self, credential_field: str, case_insensitive_paths: bool, has_retry_after: bool = False) -> None:
        self.credential_field = credential_field
        self.case_insensitive_paths = case_insensitive_paths
        self.has_retry_after = has_retry_after
        self._fields = _BASE_FIELDS | {credential_field} | ({"retry_after"} if has_retry_after else set())
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    # Each fake's rules, here so that `segjet up --faults` checks a file exactly as the fake will.
    @classmethod
    def for_segment(cls) -> FaultRules:
        return cls("write_key", case_insensitive_paths=False, has_retry_after=True)

    @classmethod
    def for_mailjet(cls) -> FaultRules:
        return cls("api_key", case_insensitive_paths=True)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def add(self, spec: Any) -> FaultRule:
        """Parse and keep one rule; FaultRuleError (nothing kept) when a field is wrong."""
        rule = self._parse(spec)
        self._rules.append(rule)
        return rule

    def add_all(self, specs: Any) -> list[FaultRule]:
        """Several rules at once, all or none (a `--faults` file)."""
        if not isinstance(specs, list):
            raise FaultRuleError("expected a list of rules")
        parsed = []
        for index, spec in enumerate(specs):
            try:
                parsed.append(self._parse(spec))
            except FaultRuleError as exc:
                raise FaultRuleError(f"rule {index}: {exc}") from exc
        self._rules.extend(parsed)
        return parsed

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = [rule for rule in self._rules if rule.id != rule_id]
        return len(self._rules) < before

    def clear(self) -> None:
        self._rules.clear()

    def candidates(self, method: str, path: str) -> list[FaultRule]:
        """Live rules whose method and path match; no draw yet (the credential may need reading)."""
        return [rule for rule in self._rules if not rule.spent and rule.matches(method, path)]

    @staticmethod
    def needs_credential(candidates: list[FaultRule]) -> bool:
        return any(rule.credential is not None for rule in candidates)

    @staticmethod
    def choose(candidates: list[FaultRule], credential: str | None) -> FaultRule | None:
        """The first candidate whose draw fires, or None: the request goes through untouched."""
        for rule in candidates:
            if rule.draw(credential):
                return rule
        return None

    def _parse(self, spec: Any) -> FaultRule:
        if not isinstance(spec, dict):
            raise FaultRuleError("a rule must be a JSON object")
        unknown = sorted(set(spec) - self._fields)
        if unknown:
            allowed = ", ".join(sorted(self._fields))
            raise FaultRuleError(f"unknown field(s) {', '.join(unknown)}; a rule has {allowed}")
        path = spec.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise FaultRuleError('path must be a string starting with "/" (a glob: * matches anything)')
        literal = path.split("*", 1)[0]
        if (literal.lower() if self.case_insensitive_paths else literal).startswith(CONTROL_PREFIX):
            # Control paths are never faulted (fault_routes.py): the rule would be kept and never fire.
            raise FaultRuleError(f"path {path!r} only matches the control API ({CONTROL_PREFIX}...), which is never faulted")
        method = spec.get("method", "*")
        # One method's name (letters, as uvicorn's parser knows them; "M-SEARCH"): "GET,POST" or
        # "POST " would be kept and never match a request.
        if not isinstance(method, str) or not (method == "*" or _METHOD.fullmatch(method)):
            raise FaultRuleError('method must be one HTTP method (e.g. "POST") or "*" for any')
        action = spec.get("action", RESPOND)
        if action not in ACTIONS:
            raise FaultRuleError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
        status = spec.get("status", 503 if action == RESPOND else None)
        if status is not None and (_not_int(status) or not 400 <= status <= 599):
            raise FaultRuleError("status must be an HTTP error status (400-599), or null to pass through late")
        if action != RESPOND and status is not None and "status" in spec:
            raise FaultRuleError(f"status has no meaning for action {action} (nothing is answered)")
        rate = spec.get("rate", 1)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise FaultRuleError("rate must be a number from 0 to 1")
        times = spec.get("times")
        if times is not None and (_not_int(times) or times < 1):
            raise FaultRuleError("times must be a positive integer, or null for no limit")
        delay_ms = spec.get("delay_ms", 0)
        if _not_int(delay_ms) or not 0 <= delay_ms <= MAX_DELAY_MS:
            raise FaultRuleError(f"delay_ms must be an integer from 0 to {MAX_DELAY_MS}")
        seed = spec.get("seed", 0)
        if seed is None:
            seed = 0
        if _not_int(seed):
            raise FaultRuleError("seed must be an integer")
        retry_after = None
        if self.has_retry_after:
            retry_after = spec.get("retry_after", 1)
            if _not_int(retry_after) or retry_after < 0:
                raise FaultRuleError("retry_after must be a non-negative integer (seconds)")
        credential = spec.get(self.credential_field)
        if credential is not None and not isinstance(credential, str):
            raise FaultRuleError(f"{self.credential_field} must be a string")
        return FaultRule(
            id=f"fault-{next(self._ids)}",
            path=path,
            method=None if method == "*" else method.upper(),
            action=action,
            status=status,
            rate=float(rate),
            times=times,
            delay_ms=delay_ms,
            seed=seed,
            credential=credential,
            credential_field=self.credential_field,
            retry_after=retry_after,
            case_insensitive=self.case_insensitive_paths,
        )


def _not_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)
