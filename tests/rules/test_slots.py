"""R7: free slots of a provider, and the check of a chosen start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rules.story import NOW

from rooms.hours import WorkingHours
from rooms.slots import Interval, ProviderSchedule, check_slot, free_slots
from server.errors import RuleError

BERLIN = ZoneInfo("Europe/Berlin")
LENGTH = timedelta(minutes=50)
HOURS = ProviderSchedule(WorkingHours.weekdays("Europe/Berlin"))
# Tuesday 5 May 2026 in Berlin (CEST, UTC+2).
TUESDAY = Interval(datetime(2026, 5, 5, tzinfo=BERLIN), datetime(2026, 5, 6, tzinfo=BERLIN))


def local_starts(slots: list[Interval]) -> list[str]:
    return [s.start.astimezone(BERLIN).strftime("%a %H:%M") for s in slots]


def test_r7_free_slots_follow_working_hours() -> None:
    slots = free_slots(HOURS, [], TUESDAY, LENGTH, NOW)
    starts = local_starts(slots)
    assert starts[0] == "Tue 09:00" and starts[-1] == "Tue 16:00"
    assert len(starts) == 15
    assert all(s.end.astimezone(BERLIN).hour < 17 for s in slots)


def test_r7_booked_time_is_not_free() -> None:
    booked = Interval(
        datetime(2026, 5, 5, 10, tzinfo=BERLIN), datetime(2026, 5, 5, 10, 50, tzinfo=BERLIN)
    )
    starts = local_starts(free_slots(HOURS, [booked], TUESDAY, LENGTH, NOW))
    assert "Tue 09:00" in starts and "Tue 11:00" in starts
    assert not {"Tue 09:30", "Tue 10:00", "Tue 10:30"} & set(starts)


def test_r7_extra_availability_adds_slots_on_a_day_off() -> None:
    saturday = datetime(2026, 5, 9, 10, tzinfo=BERLIN)
    schedule = ProviderSchedule(HOURS.hours, (Interval(saturday, saturday + timedelta(hours=2)),))
    weekend = Interval(saturday - timedelta(hours=10), saturday + timedelta(hours=14))
    assert local_starts(free_slots(schedule, [], weekend, LENGTH, NOW)) == [
        "Sat 10:00",
        "Sat 10:30",
        "Sat 11:00",
    ]
    assert free_slots(HOURS, [], weekend, LENGTH, NOW) == []


def test_r7_provider_with_nothing_published_can_be_booked_any_time() -> None:
    night = Interval(datetime(2026, 5, 9, 2, 10, tzinfo=UTC), datetime(2026, 5, 9, 4, tzinfo=UTC))
    slots = free_slots(ProviderSchedule(), [], night, LENGTH, NOW)
    assert [s.start.strftime("%H:%M") for s in slots] == ["02:30", "03:00"]
    assert check_slot(ProviderSchedule(), [], night.start, LENGTH, NOW).start == night.start


def test_r7_no_slot_in_the_past() -> None:
    today = Interval(NOW - timedelta(hours=12), NOW + timedelta(hours=12))
    slots = free_slots(ProviderSchedule(), [], today, LENGTH, NOW)
    assert slots and all(s.start > NOW for s in slots)


@pytest.mark.parametrize(
    ("start", "why"),
    [
        (datetime(2026, 5, 5, 16, 30, tzinfo=BERLIN), "not available"),  # runs past 17:00
        (datetime(2026, 5, 9, 10, tzinfo=BERLIN), "not available"),  # Saturday
        (datetime(2026, 5, 5, 10, 30, tzinfo=BERLIN), "already has a session"),
        (NOW - timedelta(minutes=1), "future"),
    ],
)
def test_r7_check_slot_refuses_unavailable_times(start: datetime, why: str) -> None:
    booked = Interval(
        datetime(2026, 5, 5, 10, tzinfo=BERLIN), datetime(2026, 5, 5, 10, 50, tzinfo=BERLIN)
    )
    with pytest.raises(RuleError) as err:
        check_slot(HOURS, [booked], start, LENGTH, NOW)
    assert err.value.rule == "R7"
    assert why in err.value.message


def test_r7_every_free_slot_passes_the_check() -> None:
    booked = [
        Interval(
            datetime(2026, 5, 5, 13, 15, tzinfo=BERLIN), datetime(2026, 5, 5, 14, 5, tzinfo=BERLIN)
        )
    ]
    for slot in free_slots(HOURS, booked, TUESDAY, LENGTH, NOW):
        assert check_slot(HOURS, booked, slot.start, LENGTH, NOW) == slot
