"""Cron math, without a runner: parsing, timezones, the DST rules, missed ticks, jitter."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner.cron import CATCH_UP_LIMIT, SKIP_GRACE, CronExpression, Schedule

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(zone: str, *fields: int, fold: int = 0) -> float:
    """A wall time in ``zone`` as epoch seconds."""
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[misc]


def walk(cron: CronExpression, start: float, count: int) -> list[str]:
    """The next ``count`` ticks after ``start`` as local ISO times with their offsets."""
    out, t = [], start
    for _ in range(count):
        t = cron.next_after(t)
        out.append(cron.local(t).isoformat())
    return out


def schedule(expression: str, *, zone: str = "UTC", missed: str = "latest", jitter: float = 0.0) -> Schedule:
    return Schedule(
        name="s",
        job="job",
        cron=CronExpression(expression, zone),
        missed=missed,  # type: ignore[arg-type]
        jitter=jitter,
    )


# parsing --------------------------------------------------------------------------
def test_every_minute_ticks_on_each_whole_minute() -> None:
    cron = CronExpression("* * * * *")
    start = at("UTC", 2025, 1, 1, 12, 0, 30)
    assert walk(cron, start, 3) == [
        "2025-01-01T12:01:00+00:00",
        "2025-01-01T12:02:00+00:00",
        "2025-01-01T12:03:00+00:00",
    ]
    # Strictly after: a tick is never its own successor.
    assert cron.next_after(at("UTC", 2025, 1, 1, 12, 1)) == at("UTC", 2025, 1, 1, 12, 2)
    assert cron.next_after(at("UTC", 2025, 1, 1, 12, 1) - 0.25) == at("UTC", 2025, 1, 1, 12, 1)


def test_a_sixth_field_is_seconds() -> None:
    cron = CronExpression("*/10 * * * * */30")
    assert cron.has_seconds
    assert walk(cron, at("UTC", 2025, 1, 1, 0, 0), 4) == [
        "2025-01-01T00:00:30+00:00",
        "2025-01-01T00:10:00+00:00",
        "2025-01-01T00:10:30+00:00",
        "2025-01-01T00:20:00+00:00",
    ]
    every_second = CronExpression("* * * * * *")
    assert list(every_second.ticks(100.0, 103.0)) == [101.0, 102.0, 103.0]


def test_aliases_and_weekday_names() -> None:
    assert walk(CronExpression("@hourly"), at("UTC", 2025, 1, 1, 0, 30), 1) == ["2025-01-01T01:00:00+00:00"]
    assert walk(CronExpression("@daily"), at("UTC", 2025, 1, 1, 0, 30), 1) == ["2025-01-02T00:00:00+00:00"]
    # 2025-01-03 is a Friday: the next weekday 09:00 in Berlin is Monday the 6th.
    weekdays = CronExpression("0 9 * * MON-FRI", BERLIN)
    assert walk(weekdays, at(BERLIN, 2025, 1, 3, 10), 1) == ["2025-01-06T09:00:00+01:00"]


def test_timezones_are_honoured() -> None:
    start = at("UTC", 2025, 6, 1, 0, 0)
    assert walk(CronExpression("0 9 * * *", BERLIN), start, 1) == ["2025-06-01T09:00:00+02:00"]
    assert walk(CronExpression("0 9 * * *", NEW_YORK), start, 1) == ["2025-06-01T09:00:00-04:00"]
    assert CronExpression("0 9 * * *", ZoneInfo(BERLIN)).timezone == BERLIN


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * *", "has 4 fields; give 5"),
        ("* * * * * * *", "has 7 fields"),
        ("", "has 0 fields"),
        ("61 * * * *", "out of range"),
        ("*/0 * * * *", "step '0'"),
        ("bogus bogus * * *", ""),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "unknown alias"),
        ("R * * * *", "random or hashed"),
        ("H(0-29) * * * *", "random or hashed"),
    ],
)
def test_invalid_expressions_name_the_expression_and_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match="cron expression") as caught:
        CronExpression(expression)
    assert repr(expression) in str(caught.value)
    assert reason in str(caught.value)


def test_non_strings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        CronExpression(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd", "Europe/"])
def test_unknown_timezones_are_refused(zone: str) -> None:
    with pytest.raises(ValueError, match=r"'\* \* \* \* \*'") as caught:
        CronExpression("* * * * *", zone)
    assert "timezone" in str(caught.value)


# DST: spring forward ------------------------------------------------------------------
def test_berlin_spring_forward_runs_a_missing_daily_tick_once_at_the_end_of_the_gap() -> None:
    # 2025-03-30: 02:00 CET -> 03:00 CEST; 02:30 does not exist that day.
    cron = CronExpression("30 2 * * *", BERLIN)
    assert walk(cron, at(BERLIN, 2025, 3, 28, 12), 4) == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]


def test_berlin_spring_forward_collapses_the_ticks_of_the_gap_into_one() -> None:
    cron = CronExpression("*/30 * * * *", BERLIN)
    assert walk(cron, at(BERLIN, 2025, 3, 30, 1, 0), 4) == [
        "2025-03-30T01:30:00+01:00",
        "2025-03-30T03:00:00+02:00",  # 02:00, 02:30 and 03:00 are this one instant
        "2025-03-30T03:30:00+02:00",
        "2025-03-30T04:00:00+02:00",
    ]
    real = [cron.next_after(at(BERLIN, 2025, 3, 30, 1, 0))]
    real += [cron.next_after(real[-1])]
    assert real[1] - real[0] == 30 * 60  # still every 30 minutes of real time


def test_new_york_spring_forward() -> None:
    # 2025-03-09: 02:00 EST -> 03:00 EDT.
    cron = CronExpression("0 2 * * *", NEW_YORK)
    assert walk(cron, at(NEW_YORK, 2025, 3, 8, 12), 3) == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-10T02:00:00-04:00",
        "2025-03-11T02:00:00-04:00",
    ]
    hourly = CronExpression("0 * * * *", NEW_YORK)
    assert walk(hourly, at(NEW_YORK, 2025, 3, 9, 0, 30), 3) == [
        "2025-03-09T01:00:00-05:00",
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T04:00:00-04:00",
    ]


# DST: fall back -----------------------------------------------------------------------
def test_berlin_fall_back_runs_a_repeated_daily_tick_once() -> None:
    # 2025-10-26: 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    cron = CronExpression("30 2 * * *", BERLIN)
    assert walk(cron, at(BERLIN, 2025, 10, 25, 12), 3) == [
        "2025-10-26T02:30:00+02:00",
        "2025-10-27T02:30:00+01:00",
        "2025-10-28T02:30:00+01:00",
    ]
    # Asked from inside the second pass, the repeated tick is not offered again.
    inside_second_pass = at(BERLIN, 2025, 10, 26, 2, 10, fold=1)
    assert walk(cron, inside_second_pass, 1) == ["2025-10-27T02:30:00+01:00"]


def test_berlin_fall_back_keeps_an_every_hour_schedule_on_its_interval() -> None:
    cron = CronExpression("*/15 * * * *", BERLIN)
    start = at(BERLIN, 2025, 10, 26, 1, 50)
    ticks = list(cron.ticks(start, start + 3 * 3600))
    assert [cron.local(t).strftime("%H:%M%z") for t in ticks[:10]] == [
        "02:00+0200",
        "02:15+0200",
        "02:30+0200",
        "02:45+0200",
        "02:00+0100",
        "02:15+0100",
        "02:30+0100",
        "02:45+0100",
        "03:00+0100",
        "03:15+0100",
    ]
    assert {b - a for a, b in itertools.pairwise(ticks)} == {900.0}
    # From inside either pass, the next tick is 15 real minutes on.
    for fold in (0, 1):
        t = at(BERLIN, 2025, 10, 26, 2, 45, fold=fold)
        assert cron.next_after(t) == t + 900


def test_an_hour_restricted_schedule_runs_the_repeated_hour_once() -> None:
    cron = CronExpression("*/20 1 * * *", NEW_YORK)  # 2025-11-02: 01:00-01:59 twice
    assert walk(cron, at(NEW_YORK, 2025, 11, 2, 0), 4) == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:20:00-04:00",
        "2025-11-02T01:40:00-04:00",
        "2025-11-03T01:00:00-05:00",
    ]


def test_new_york_fall_back() -> None:
    daily = CronExpression("30 1 * * *", NEW_YORK)
    assert walk(daily, at(NEW_YORK, 2025, 11, 1, 12), 2) == [
        "2025-11-02T01:30:00-04:00",
        "2025-11-03T01:30:00-05:00",
    ]
    hourly = CronExpression("0 * * * *", NEW_YORK)
    assert walk(hourly, at(NEW_YORK, 2025, 11, 2, 0, 30), 3) == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]


ZONES = ["UTC", BERLIN, NEW_YORK, "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"]


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    year=st.integers(2020, 2030),
)
def test_a_daily_schedule_runs_exactly_once_on_every_local_date(
    zone: str, hour: int, minute: int, year: int
) -> None:
    cron = CronExpression(f"{minute} {hour} * * *", zone)
    start = at(zone, year, 1, 1) - 1
    ticks = list(cron.ticks(start, at(zone, year, 12, 31, 23, 59, 59)))
    dates = [cron.local(t).date() for t in ticks]
    first = date(year, 1, 1)
    assert dates == [first + timedelta(days=n) for n in range((date(year, 12, 31) - first).days + 1)]


@settings(max_examples=40, deadline=None)
@given(zone=st.sampled_from(ZONES), year=st.integers(2020, 2030), step=st.sampled_from([5, 15, 30]))
def test_an_every_hour_schedule_keeps_real_time_intervals_across_dst(zone: str, year: int, step: int) -> None:
    cron = CronExpression(f"*/{step} * * * *", zone)
    for change in offset_changes(zone, year) or [at(zone, year, 6, 1)]:
        ticks = list(cron.ticks(change - 86_400, change + 86_400))
        assert {b - a for a, b in itertools.pairwise(ticks)} == {step * 60.0}


def offset_changes(zone: str, year: int) -> list[float]:
    """Roughly when ``zone`` changes its UTC offset in ``year`` (to the hour)."""
    tz, hour = ZoneInfo(zone), at(zone, year, 1, 1)
    changes = []
    for n in range(366 * 24):
        t = hour + n * 3600
        if datetime.fromtimestamp(t, tz).utcoffset() != datetime.fromtimestamp(t + 3600, tz).utcoffset():
            changes.append(t)
    return changes


def test_latest_finds_recent_ticks_after_a_long_downtime_quickly() -> None:
    cron = CronExpression("* * * * * *")
    now = at("UTC", 2025, 6, 1, 12)
    a_year_ago = now - 365 * 86_400
    assert cron.latest(a_year_ago, now, 3) == [now - 2, now - 1, now]
    yearly = CronExpression("0 0 1 1 *")
    assert yearly.latest(0.0, now, 2) == [at("UTC", 2024, 1, 1), at("UTC", 2025, 1, 1)]
    assert yearly.latest(now - 86_400, now, 1) == []


# missed ticks ------------------------------------------------------------------------
def test_nothing_due_says_when_to_look_again() -> None:
    plan = schedule("*/5 * * * *").plan(at("UTC", 2025, 1, 1, 12, 0), at("UTC", 2025, 1, 1, 12, 3))
    assert plan.fire == ()
    assert plan.through is None
    assert plan.next_at == at("UTC", 2025, 1, 1, 12, 5)


def test_an_on_time_tick_fires_under_every_policy() -> None:
    after, now = at("UTC", 2025, 1, 1, 12, 0), at("UTC", 2025, 1, 1, 12, 5, 0)
    for missed in ("latest", "skip", "all"):
        plan = schedule("*/5 * * * *", missed=missed).plan(after, now)
        assert plan.fire == (now,)
        assert plan.skipped is None
        assert plan.next_at == at("UTC", 2025, 1, 1, 12, 10)


def test_latest_runs_the_most_recent_missed_tick_once() -> None:
    after, now = at("UTC", 2025, 1, 1, 12, 0), at("UTC", 2025, 1, 1, 17, 2)
    plan = schedule("*/5 * * * *").plan(after, now)
    assert plan.fire == (at("UTC", 2025, 1, 1, 17, 0),)
    assert plan.skipped == (at("UTC", 2025, 1, 1, 12, 5), at("UTC", 2025, 1, 1, 16, 55))
    assert plan.next_at == at("UTC", 2025, 1, 1, 17, 5)


def test_skip_runs_nothing_missed_but_a_tick_within_the_grace() -> None:
    after = at("UTC", 2025, 1, 1, 12, 0)
    late = schedule("*/5 * * * *", missed="skip").plan(after, at("UTC", 2025, 1, 1, 17, 2))
    assert late.fire == ()
    assert late.through == at("UTC", 2025, 1, 1, 17, 0)
    assert late.skipped == (at("UTC", 2025, 1, 1, 12, 5), at("UTC", 2025, 1, 1, 17, 0))
    just = schedule("*/5 * * * *", missed="skip").plan(after, at("UTC", 2025, 1, 1, 17, 0) + SKIP_GRACE)
    assert just.fire == (at("UTC", 2025, 1, 1, 17, 0),)


def test_all_runs_every_missed_tick_in_order_up_to_the_bound() -> None:
    after = at("UTC", 2025, 1, 1, 12, 0)
    few = schedule("*/5 * * * *", missed="all").plan(after, at("UTC", 2025, 1, 1, 12, 17))
    assert few.fire == tuple(at("UTC", 2025, 1, 1, 12, m) for m in (5, 10, 15))
    assert few.skipped is None
    many = schedule("* * * * *", missed="all").plan(after, after + 1000 * 60)
    assert len(many.fire) == CATCH_UP_LIMIT
    assert many.fire[-1] == after + 1000 * 60
    assert many.fire[0] == after + (1000 - CATCH_UP_LIMIT + 1) * 60
    assert many.skipped == (after + 60, after + (1000 - CATCH_UP_LIMIT) * 60)


def test_a_wall_clock_step_back_fires_nothing_until_the_last_tick_is_passed() -> None:
    last = at("UTC", 2025, 1, 1, 12, 5)
    plan = schedule("*/5 * * * *").plan(last, last - 3600)
    assert plan.fire == ()
    assert plan.next_at == at("UTC", 2025, 1, 1, 12, 10)


# jitter and validation -------------------------------------------------------------
def test_jitter_is_deterministic_bounded_and_spreads_schedules() -> None:
    one = Schedule(name="one", job="j", cron=CronExpression("* * * * *"), jitter=30.0)
    again = Schedule(name="one", job="j", cron=CronExpression("* * * * *"), jitter=30.0)
    ticks = [at("UTC", 2025, 1, 1, 12, m) for m in range(60)]
    offsets = [one.jitter_for(t) for t in ticks]
    assert offsets == [again.jitter_for(t) for t in ticks]
    assert all(0.0 <= o < 30.0 for o in offsets)
    assert len(set(offsets)) == len(offsets)
    others = [
        Schedule(name=f"s{n}", job="j", cron=one.cron, jitter=30.0).jitter_for(ticks[0]) for n in range(50)
    ]
    assert max(others) - min(others) > 15.0
    assert schedule("* * * * *").jitter_for(ticks[0]) == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"missed": "sometimes"}, "missed='sometimes' must be 'latest', 'skip' or 'all'"),
        ({"jitter": -1.0}, "jitter=-1.0 must be a number of seconds >= 0"),
        ({"jitter": float("inf")}, "jitter=inf"),
        ({"name": ""}, "name='' must be a non-empty string"),
    ],
)
def test_schedule_options_are_checked(options: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "s", "job": "j", "cron": CronExpression("* * * * *"), **options}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Schedule(**fields)  # type: ignore[arg-type]


def test_info_reports_the_next_and_last_tick_in_the_schedule_zone() -> None:
    sched = Schedule(name="report", job="report", cron=CronExpression("0 9 * * *", BERLIN))
    now = at(BERLIN, 2025, 6, 1, 10)
    info = sched.info(None, now)
    assert (info.name, info.job, info.expression, info.timezone) == ("report", "report", "0 9 * * *", BERLIN)
    assert info.next_run == datetime(2025, 6, 2, 9, tzinfo=ZoneInfo(BERLIN))
    assert info.last_run is None
    info = sched.info(at(BERLIN, 2025, 6, 1, 9), now)
    assert info.last_run == datetime(2025, 6, 1, 9, tzinfo=ZoneInfo(BERLIN))
    assert info.next_run.astimezone(UTC) == datetime(2025, 6, 2, 7, tzinfo=UTC)
