"""The virtual clock: real time plus an offset, and timers that fire as it passes them.

Everything time-based in the emulator (retries, jobs, syncs, simulated events, dedupe
windows) reads this clock, so a test can move 31 days ahead instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

TimerCallback = Callable[[], "Awaitable[Any] | Any"]

logger = logging.getLogger(__name__)

# A run of due timers goes in rounds (see Clock.run_due) and stops after this many, so a timer that
# keeps scheduling itself due now cannot hold the run, and `POST clock`, forever. Real chains are a
# few links long (an email event, then its Segment forward; an audience, then an audience of its
# members), far below this.
MAX_ROUNDS = 100

# re.ASCII: `\d` would otherwise take any Unicode digit ("١٠s"), which the OpenAPI pattern refuses.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "10m", "2h", "31d" (also "ms" and "w") into a timedelta."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit (ms, s, m, h, d, w), e.g. '31d'")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp leniently (Z suffix, missing zero padding); naive means UTC."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"invalid timestamp {text!r}")
    # "Z" replaced, not left to fromisoformat: it would also take it as the date/time separator.
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Every stored time ends so (this runs for each on a restart): the search, which tries each
    # position, would match that "+00:00" alone (a sign cannot sit inside an offset).
    offset = None if value.endswith("+00:00") else _OFFSET.search(value)
    # Two ASCII digits each (re.ASCII), so comparing the strings compares the numbers.
    if offset and (offset[1] > "59" or (offset[2] or "") > "59"):
        # fromisoformat takes "+00:99" as +01:39 (and timezone() would too): a wrong instant, not an error.
        raise ValueError(f"invalid timestamp {text!r}: offset minutes and seconds must be below 60")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_unpadded(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    if parsed.tzinfo is timezone.utc:
        return parsed
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # in range as written, not once in UTC ("9999-12-31T23:00:00-05:00")
        raise ValueError(f"timestamp {text!r} is out of range once in UTC") from None


# A UTC offset ending the text: "+05:30", "-0530", "+05:30:15.5" (fromisoformat also takes seconds).
# Its minutes and seconds (the groups) are checked by parse_iso. A date alone ends with no offset:
# "-01" has two digits, and basic dates ("20250101") have no sign.
_OFFSET = re.compile(r"[+-]\d{2}:?(\d{2})(?::?(\d{2})(?:\.\d+)?)?$", re.ASCII)

# ASCII digits only, as fromisoformat and Go's time parsing read them: "٢٠١٨-01-01" is no timestamp.
_UNPADDED = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d+))?)?)?([+-]\d{2}:?\d{2})?$",
    re.ASCII,
)


def _parse_unpadded(value: str) -> datetime:
    # Segment's own docs show timestamps such as "2015-2-02T00:30:08.276Z"; accept them.
    match = _UNPADDED.match(value)
    if not match:
        raise ValueError(f"invalid timestamp {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if offset:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro, tzinfo=tz
    )


def iso(moment: datetime) -> str:
    """Render a datetime as Segment does (and the control API, for both fakes): UTC with
    milliseconds and a Z. The fake Mailjet's own API renders with `mj_time`, without the fraction.

    isoformat pads years below 1000 to four digits, as RFC 3339 requires (strftime did not).
    """
    utc = moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" → "Z"


@dataclass(order=True)
class Timer:
    due: datetime
    seq: int
    callback: TimerCallback = field(compare=False)
    owner: str = field(default="", compare=False)
    cancelled: bool = field(default=False, compare=False)


# The virtual clock stays well inside datetime's range (years 1..9999), so that every timer and
# window computed from it (retries hours ahead, 90-day windows behind) can be represented.
EARLIEST = datetime(1000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def _check_range(moment: datetime) -> None:
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"the clock must stay between {iso(EARLIEST)} and {iso(LATEST)}")


class Clock:
    """Real time shifted by an offset that only moves forward or is set explicitly."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._firing = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        # Called after the offset changes (advance, set, reset): the bundle keeps it with --data-dir.
        self.on_move: Callable[[], None] | None = None
        # Also called after the offset changes: rules that must look again when the clock moves
        # (an Engage schedule whose next sync was armed before the clock was set back).
        self._watchers: list[Callable[[], None]] = []

    @property
    def offset(self) -> timedelta:
        """Virtual time minus real time."""
        return self._offset

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta():
            raise ValueError("the clock only moves forward; use set to go back")
        try:
            _check_range(self.now() + delta)
        except OverflowError:
            raise ValueError(f"the clock cannot move past {iso(LATEST)}") from None
        self._offset += delta
        self._moved()
        return self.now()

    def set(self, moment: datetime) -> datetime:
        _check_range(moment)
        self._offset = moment - datetime.now(timezone.utc)
        self._moved()
        return self.now()

    def reset(self, owner: str) -> None:
        """Back to real time, and drop the timers of one service (the others in a bundle keep theirs)."""
        for timer in self._timers:
            if timer.owner == owner:
                timer.cancelled = True
        self._offset = timedelta()
        self._moved()  # after the cancelling: what watchers arm for the new time is kept

    def call_at(self, due: datetime, callback: TimerCallback, owner: str = "") -> Timer:
        """Run `callback` (sync or async) once the virtual time reaches `due`."""
        timer = Timer(due, next(self._seq), callback, owner)
        heapq.heappush(self._timers, timer)
        self._poke()
        return timer

    def watch_moves(self, callback: Callable[[], None]) -> None:
        """Call `callback()` after every move of the clock (advance, set, reset), before timers fire."""
        self._watchers.append(callback)

    def unwatch_moves(self, callback: Callable[[], None]) -> None:
        if callback in self._watchers:
            self._watchers.remove(callback)

    @staticmethod
    def cancel(timer: Timer) -> None:
        timer.cancelled = True

    def pending(self) -> int:
        return sum(1 for timer in self._timers if not timer.cancelled)

    def next_due(self) -> datetime | None:
        live = [timer.due for timer in self._timers if not timer.cancelled]
        return min(live) if live else None

    async def run_due(self) -> int:
        """Fire every timer that is due, including ones scheduled by timers that fired; return the count.

        Callers wait for timers already firing elsewhere, so that after `POST clock` answers,
        everything the move made due has happened. Timers fire in due order, in rounds: a round
        fires the timers that existed and were due when it started, and ends at the first one
        scheduled since (the next round takes it up) or no longer due (the clock was set back
        while a timer awaited); the event loop serves others in between.
        What is still due after MAX_ROUNDS (a timer re-scheduling itself forever) is left to the
        next run, with a warning. A timer that raises is logged, and the other timers still fire.
        """
        fired = 0
        async with self._firing:
            for _ in range(MAX_ROUNDS):
                horizon = self.now()
                if not self._due(horizon):
                    return fired
                newer = next(self._seq)  # timers scheduled from now on have a higher seq
                while self._due(horizon) and self._timers[0].seq < newer:
                    timer = heapq.heappop(self._timers)
                    if not timer.cancelled:
                        fired += 1
                        await self._fire(timer)
                        # The clock may have been set back while the timer awaited: what is no
                        # longer due waits for its time, as promised (its callback would skip it,
                        # and the spent timer would never fire again).
                        horizon = min(horizon, self.now())
                await asyncio.sleep(0)
            now = self.now()
            owners = sorted({timer.owner or "?" for timer in self._timers if timer.due <= now and not timer.cancelled})
            if owners:
                logger.warning(
                    "timers of %s still due after %d rounds (a timer re-scheduling itself?); left to the next run",
                    ", ".join(owners), MAX_ROUNDS,
                )
        return fired

    def _due(self, horizon: datetime) -> bool:
        return bool(self._timers) and self._timers[0].due <= horizon

    @staticmethod
    async def _fire(timer: Timer) -> None:
        try:
            result = timer.callback()
            if inspect.isawaitable(result):
                await result
        except Exception:  # one service's broken timer must not stop the others' (the clock is shared)
            logger.exception("a timer of %s failed", timer.owner or "?")

    async def run_forever(self, poll_seconds: float = 0.05) -> None:
        """Fire timers as real time reaches them; started once per event loop by the server runner."""
        self._wake = asyncio.Event()
        while True:
            await self.run_due()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except asyncio.TimeoutError:
                pass

    def _moved(self) -> None:
        if self.on_move is not None:
            self.on_move()
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:  # one service's broken watcher must not fail the move (the clock is shared)
                logger.exception("a clock watcher failed")
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
