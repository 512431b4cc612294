import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from emulator.common.clock import Clock, iso, parse_duration, parse_iso


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("10m", timedelta(minutes=10)), ("2h", timedelta(hours=2)),
     ("31d", timedelta(days=31)), ("1w", timedelta(weeks=1)), ("250ms", timedelta(milliseconds=250)),
     ("1.5h", timedelta(minutes=90))],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


# Digits are ASCII, as in the OpenAPI pattern (`\d` in JSON Schema) and in Go's time parsing.
@pytest.mark.parametrize("text", ["", "31", "d", "-1d", "3 days", "1y", None, 5, "\u0661\u0660s", "\uff13d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2012-12-02T00:30:08.276Z", datetime(2012, 12, 2, 0, 30, 8, 276000, tzinfo=timezone.utc)),
     ("2025-01-01T12:00:00.123456+00:00", datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
     ("2025-01-01T14:00:00+02:00", datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)),
     ("2015-2-02T00:30:08.276Z", datetime(2015, 2, 2, 0, 30, 8, 276000, tzinfo=timezone.utc)),
     ("2015-2-02T00:30:08", datetime(2015, 2, 2, 0, 30, 8, tzinfo=timezone.utc)),  # unpadded and naive: UTC
     ("2025-01-01T12:00:00", datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc))],
)
def test_parse_iso(text, expected):
    assert parse_iso(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-45T00:00:00Z", "2024-02-29Z23:59:59", None,
                                  "\u0662\u0660\u0661\u0668-01-01T00:00:00Z", "\uff12\uff10\uff12\uff10-1-1",
                                  "2020-1-1T1:2:3.\u0665Z"])
def test_parse_iso_rejects(text):
    with pytest.raises(ValueError):
        parse_iso(text)


def test_iso_renders_milliseconds_and_z():
    assert iso(datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)) == "2025-01-01T12:00:00.123Z"
    assert iso(datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))) == "2025-01-01T12:00:00.000Z"
    assert iso(datetime(500, 1, 1, tzinfo=timezone.utc)) == "0500-01-01T00:00:00.000Z"  # four-digit year


def test_advance_and_set():
    clock = Clock()
    before = clock.now()
    after = clock.advance(timedelta(days=31))
    assert after - before >= timedelta(days=31)
    assert clock.now() - before < timedelta(days=31, seconds=5)
    target = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert abs(clock.set(target) - target) < timedelta(seconds=1)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))


def test_timers_fire_in_order_when_the_clock_passes_them():
    clock = Clock()
    fired = []

    async def late():
        fired.append("late")
        clock.call_at(clock.now() + timedelta(0), lambda: fired.append("chained"))

    clock.call_at(clock.now() + timedelta(hours=2), late)
    clock.call_at(clock.now() + timedelta(hours=1), lambda: fired.append("early"))
    clock.call_at(clock.now() + timedelta(days=2), lambda: fired.append("never"))

    assert asyncio.run(clock.run_due()) == 0
    clock.advance(timedelta(hours=3))
    assert asyncio.run(clock.run_due()) == 3
    assert fired == ["early", "late", "chained"]
    assert clock.pending() == 1


def test_timers_due_at_the_same_moment_fire_in_the_order_they_were_set():
    # A campaign's messages, and the retries of one moment, keep their order.
    clock = Clock()
    fired = []
    due = clock.now() + timedelta(minutes=1)
    for n in range(8):
        clock.call_at(due, lambda n=n: fired.append(n))
    clock.advance(timedelta(minutes=1))
    assert asyncio.run(clock.run_due()) == 8
    assert fired == list(range(8))


def test_reset_drops_only_the_owners_timers_and_the_offset():
    clock = Clock()
    fired = []
    clock.call_at(clock.now() + timedelta(hours=1), lambda: fired.append("segment"), owner="segment")
    clock.call_at(clock.now() + timedelta(hours=1), lambda: fired.append("mailjet"), owner="mailjet")
    clock.advance(timedelta(days=1))
    clock.reset("segment")
    assert clock.now() - datetime.now(timezone.utc) < timedelta(seconds=1)
    clock.advance(timedelta(hours=2))
    asyncio.run(clock.run_due())
    assert fired == ["mailjet"]


def test_cancelled_timer_does_not_fire():
    clock = Clock()
    fired = []
    timer = clock.call_at(clock.now() + timedelta(seconds=1), lambda: fired.append(1))
    Clock.cancel(timer)
    clock.advance(timedelta(seconds=2))
    asyncio.run(clock.run_due())
    assert fired == [] and clock.pending() == 0


def test_the_clock_stays_inside_datetime_range():
    # Found by tests/fuzz: a huge advance overflowed (500), and a clock near year 9999 broke every timer.
    clock = Clock()
    with pytest.raises(ValueError):
        parse_duration("99999999999999999999w")
    with pytest.raises(ValueError):
        clock.advance(timedelta(weeks=400_000))
    with pytest.raises(ValueError):
        clock.set(datetime(9999, 12, 31, tzinfo=timezone.utc))
    with pytest.raises(ValueError):
        clock.set(datetime(1, 1, 1, tzinfo=timezone.utc))
    assert clock.now().year < 3000


def test_a_failing_timer_is_logged_and_the_others_still_fire(caplog):
    # One server's broken timer used to escape run_due and end the shared clock task of `segjet up`.
    clock = Clock()
    fired = []

    def broken():
        raise RuntimeError("boom")

    clock.call_at(clock.now() + timedelta(minutes=1), lambda: fired.append("before"), owner="segment")
    clock.call_at(clock.now() + timedelta(minutes=2), broken, owner="mailjet")
    clock.call_at(clock.now() + timedelta(minutes=3), lambda: fired.append("after"), owner="segment")
    clock.advance(timedelta(hours=1))
    with caplog.at_level("ERROR", logger="emulator.common.clock"):
        assert asyncio.run(clock.run_due()) == 3
    assert fired == ["before", "after"]
    (entry,) = caplog.records
    assert "mailjet" in entry.getMessage() and entry.exc_info[0] is RuntimeError


def test_the_clock_task_keeps_firing_after_a_timer_fails():
    clock = Clock()
    fired = asyncio.Event()

    def broken():
        raise RuntimeError("boom")

    async def scenario():
        task = asyncio.create_task(clock.run_forever(poll_seconds=0.01))
        clock.call_at(clock.now() + timedelta(0), broken, owner="mailjet")
        await asyncio.sleep(0.05)
        clock.call_at(clock.now() + timedelta(0), fired.set, owner="segment")
        try:
            await asyncio.wait_for(fired.wait(), timeout=5)
            assert not task.done()
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_a_timer_rescheduling_itself_due_now_cannot_hold_the_run():
    # Before, run_due looped until the chain ended (here, never returning before 10,000 firings:
    # forever for a chain that never ends), without letting the event loop serve anything.
    clock = Clock()
    calls = []
    other = []

    def again():
        calls.append(1)
        if len(calls) < 10_000:
            clock.call_at(clock.now() + timedelta(0), again, owner="segment")

    clock.call_at(clock.now() + timedelta(0), again, owner="segment")
    clock.call_at(clock.now() + timedelta(0), lambda: other.append(1), owner="mailjet")
    assert asyncio.run(clock.run_due()) < 10_000
    assert other == [1]  # due with the first round, fired despite the endless chain
    assert 0 < len(calls) < 10_000 and clock.pending() == 1


def test_a_finite_chain_of_timers_completes_within_one_run():
    # The guarantee behind POST clock: what the move made due, and what that scheduled, has happened.
    clock = Clock()
    order = []

    def link(depth: int):
        def fire():
            order.append(depth)
            if depth < 20:
                clock.call_at(clock.now() + timedelta(0), link(depth + 1))
        return fire

    clock.call_at(clock.now() + timedelta(hours=1), link(0))
    clock.call_at(clock.now() + timedelta(hours=2), lambda: order.append("later"))
    clock.advance(timedelta(hours=3))
    assert asyncio.run(clock.run_due()) == 22
    assert order == [0, "later", *range(1, 21)]
    assert clock.pending() == 0


def test_a_timestamp_out_of_range_once_in_utc_is_a_value_error() -> None:
    # It raised OverflowError, which callers catching ValueError let through as a 500.
    with pytest.raises(ValueError, match="out of range once in UTC"):
        parse_iso("9999-12-31T23:00:00-05:00")
    with pytest.raises(ValueError, match="out of range once in UTC"):
        parse_iso("0001-01-01T00:00:00+01:00")


@pytest.mark.parametrize("text", ["2015-02-02T00:30:08+00:99", "2015-02-02T00:30:08+0160", "2015-2-2T1:2:3-01:75",
                                  "2015-02-02T00:30:08+01:00:75", "20150202T003008-0099"])
def test_a_timestamp_with_an_offset_of_60_minutes_or_more_is_refused(text: str) -> None:
    # "+00:99" was read as +01:39 (by fromisoformat and by timezone() alike): a wrong instant, not an error.
    with pytest.raises(ValueError):
        parse_iso(text)
    assert parse_iso("2015-2-02T00:30:08+01:30") == datetime(2015, 2, 1, 23, 0, 8, tzinfo=timezone.utc)
    assert parse_iso("2015-02-02T00:30:08-0059") == datetime(2015, 2, 2, 1, 29, 8, tzinfo=timezone.utc)
    assert parse_iso("2015-02-02") == parse_iso("20150202") == datetime(2015, 2, 2, tzinfo=timezone.utc)


def test_pending_and_next_due_leave_out_cancelled_timers() -> None:
    # `GET clock` shows both: a cancelled retry is no timer a test should wait for.
    clock = Clock()
    soon = clock.call_at(clock.now() + timedelta(minutes=1), lambda: None)
    later = clock.call_at(clock.now() + timedelta(hours=1), lambda: None)
    Clock.cancel(soon)
    assert (clock.pending(), clock.next_due()) == (1, later.due)
    Clock.cancel(later)
    assert (clock.pending(), clock.next_due()) == (0, None)


def test_advancing_by_zero_fires_what_is_due_now() -> None:
    clock = Clock()
    fired = []
    clock.call_at(clock.now() + timedelta(0), lambda: fired.append(1))
    clock.advance(timedelta(0))
    assert asyncio.run(clock.run_due()) == 1 and fired == [1]


def test_watchers_see_every_move_and_a_failing_one_stops_nothing(caplog) -> None:
    clock = Clock()
    seen: list[timedelta] = []

    def broken() -> None:
        raise RuntimeError("watcher bug")

    clock.watch_moves(broken)
    clock.watch_moves(lambda: seen.append(clock.offset))
    clock.advance(timedelta(days=31))
    clock.set(datetime(2030, 1, 1, tzinfo=timezone.utc))
    clock.reset(owner="segment")
    assert len(seen) == 3 and seen[0] >= timedelta(days=31) and seen[2] == timedelta()
    assert "watcher bug" in caplog.text
    clock.unwatch_moves(broken)
    clock.unwatch_moves(broken)  # a second time is no error
    clock.advance(timedelta(seconds=1))
    assert len(seen) == 4


def test_a_timer_a_watcher_arms_during_a_reset_is_kept() -> None:
    # A reset cancelled the owner's timers after telling the watchers: what one armed for the new
    # time (a schedule following the clock) was dropped with the old timers.
    clock = Clock()
    clock.advance(timedelta(days=1))
    clock.call_at(clock.now() + timedelta(hours=1), lambda: None, owner="segment")
    clock.watch_moves(lambda: clock.call_at(clock.now() + timedelta(hours=2), lambda: None, owner="segment"))
    clock.reset(owner="segment")
    assert clock.pending() == 1


def test_a_timer_the_clock_was_set_back_from_during_a_run_waits_for_its_time() -> None:
    # A run's round fired every timer due at its start, even after the clock was set back while an
    # earlier timer awaited (a delivery retry's HTTP): a callback that checks its own due time then
    # did nothing, and its timer was spent, so it never fired again.
    async def scenario() -> None:
        clock = Clock()
        start = clock.now()
        fired: list[str] = []

        async def slow() -> None:
            fired.append("slow")
            clock.set(start)  # as `POST clock {"set": earlier}` does while this timer awaits
            await asyncio.sleep(0)

        clock.call_at(start + timedelta(hours=1), slow)
        clock.call_at(start + timedelta(hours=2), lambda: fired.append("later"))
        clock.advance(timedelta(hours=3))
        assert await clock.run_due() == 1
        assert fired == ["slow"] and clock.pending() == 1
        clock.advance(timedelta(hours=2))
        assert await clock.run_due() == 1
        assert fired == ["slow", "later"]

    asyncio.run(scenario())
