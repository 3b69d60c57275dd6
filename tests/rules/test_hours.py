"""R4: reply-due times from the provider's working hours and time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from rooms.hours import DayHours, WorkingHours, is_overdue, reply_due, room_reply_due

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = WorkingHours.weekdays("Europe/Berlin")  # Monday-Friday 9:00-17:00


def berlin(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=BERLIN)


def test_r4_friday_evening_message_is_due_monday_evening() -> None:
    due = reply_due(berlin(2026, 5, 8, 19, 30), HOURS)  # Friday
    assert due == berlin(2026, 5, 11, 17)  # Monday, closing time
    assert due.tzinfo == UTC


def test_r4_message_in_hours_is_due_same_time_next_working_day() -> None:
    assert reply_due(berlin(2026, 5, 5, 10, 30), HOURS) == berlin(2026, 5, 6, 10, 30)


def test_r4_message_friday_afternoon_is_due_monday_same_time() -> None:
    assert reply_due(berlin(2026, 5, 8, 14), HOURS) == berlin(2026, 5, 11, 14)


def test_r4_weekend_message_counts_from_monday_opening() -> None:
    assert reply_due(berlin(2026, 5, 9, 11), HOURS) == berlin(2026, 5, 11, 17)  # Saturday
    assert reply_due(berlin(2026, 5, 10, 23), HOURS) == berlin(2026, 5, 11, 17)  # Sunday


def test_r4_early_morning_message_is_due_at_that_days_closing() -> None:
    assert reply_due(berlin(2026, 5, 5, 7), HOURS) == berlin(2026, 5, 5, 17)
    assert reply_due(berlin(2026, 5, 5, 9), HOURS) == berlin(2026, 5, 5, 17)  # at the opening


def test_r4_message_at_or_after_closing() -> None:
    assert reply_due(berlin(2026, 5, 5, 17), HOURS) == berlin(2026, 5, 6, 17)
    assert reply_due(berlin(2026, 5, 5, 17, 1), HOURS) == berlin(2026, 5, 6, 17)


def test_r4_spring_forward_keeps_local_time() -> None:
    # Europe switches to summer time on Sunday 29 March 2026.
    sent = berlin(2026, 3, 27, 10)  # Friday, CET: 09:00 UTC
    due = reply_due(sent, HOURS)
    assert due == berlin(2026, 3, 30, 10)  # Monday, CEST
    assert due == datetime(2026, 3, 30, 8, tzinfo=UTC)


def test_r4_fall_back_keeps_local_time() -> None:
    # Europe returns to standard time on Sunday 25 October 2026.
    due = reply_due(berlin(2026, 10, 23, 16), HOURS)
    assert due == datetime(2026, 10, 26, 15, tzinfo=UTC)  # 16:00 CET


def test_r4_us_provider_in_new_york() -> None:
    ny = WorkingHours.weekdays("America/New_York", time(8), time(16))
    # Friday 6 March 2026 20:00 EST; New York springs forward on Sunday 8 March.
    sent = datetime(2026, 3, 7, 1, tzinfo=UTC)
    assert reply_due(sent, ny) == datetime(2026, 3, 9, 20, tzinfo=UTC)  # Monday 16:00 EDT


def test_r4_due_time_is_clamped_into_the_next_days_hours() -> None:
    uneven = WorkingHours(
        "UTC",
        (
            DayHours(0, time(9), time(17)),
            DayHours(1, time(12), time(20)),
            DayHours(3, time(9), time(17)),
            DayHours(4, time(9), time(13)),
        ),
    )
    utc = UTC
    assert reply_due(datetime(2026, 5, 4, 10, tzinfo=utc), uneven) == datetime(
        2026, 5, 5, 12, tzinfo=utc
    )  # Monday 10:00 -> Tuesday opens at 12:00
    assert reply_due(datetime(2026, 5, 5, 19, tzinfo=utc), uneven) == datetime(
        2026, 5, 7, 17, tzinfo=utc
    )  # Tuesday 19:00 -> Thursday (Wednesday off), clamped to closing
    assert reply_due(datetime(2026, 5, 7, 15, tzinfo=utc), uneven) == datetime(
        2026, 5, 8, 13, tzinfo=utc
    )  # Thursday 15:00 -> Friday closes at 13:00


def test_r4_overdue_rooms() -> None:
    first_unanswered = berlin(2026, 5, 8, 19)
    due = room_reply_due(first_unanswered, HOURS)
    assert due is not None
    assert not is_overdue(due, berlin(2026, 5, 11, 16, 59))
    assert is_overdue(due, berlin(2026, 5, 11, 17))
    assert room_reply_due(None, HOURS) is None
    assert not is_overdue(None, berlin(2026, 5, 11, 17))


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)


@given(instants)
def test_r4_due_is_inside_working_hours_and_within_a_working_day(sent: datetime) -> None:
    due = reply_due(sent, HOURS)
    local = due.astimezone(BERLIN)
    assert due > sent
    assert local.weekday() < 5
    assert time(9) <= local.time() <= time(17)
    assert due - sent <= timedelta(days=3, hours=23)  # Friday 17:00:01 -> Monday 17:00 at most


@given(instants, instants)
def test_r4_a_later_message_is_never_due_earlier(a: datetime, b: datetime) -> None:
    first, second = sorted((a, b))
    assert reply_due(first, HOURS) <= reply_due(second, HOURS)
