"""A provider's working hours in their time zone, and the reply-due time of a message (R4).

Theory of operation
-------------------
R4: a provider answers a client message within one working day, inside their
working hours. `WorkingHours` is a weekly schedule (one opening per weekday) in an
IANA time zone; all arithmetic happens in local wall-clock time and is converted
to UTC at the end, so it stays right across daylight-saving changes.

The reply-due time of a message sent at `t`:

- sent inside working hours (after the opening, up to the closing): the same local
  time on the next working day, clamped into that day's hours;
- sent outside them (evening, night, weekend, or exactly at the opening): counted
  from the next opening, one working day later is the closing of that same day.
  A message on Friday evening is therefore due on Monday evening.

The two cases agree: the closing of one working day and the opening of the next
are the same moment of working time, and the earlier wall-clock moment is taken.
Public holidays are not modelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rooms.sessions import check_aware


@dataclass(frozen=True)
class DayHours:
    """The opening of one weekday (0 = Monday), local wall-clock times."""

    weekday: int
    opens: time
    closes: time


@dataclass(frozen=True)
class WorkingHours:
    """A weekly schedule in a time zone (R4, R7). At most one opening per weekday."""

    tz: str
    days: tuple[DayHours, ...]

    def __post_init__(self) -> None:
        ZoneInfo(self.tz)  # raises for an unknown zone
        seen = [d.weekday for d in self.days]
        if not seen:
            raise ValueError("working hours need at least one day")
        if len(set(seen)) != len(seen) or not all(0 <= w <= 6 for w in seen):
            raise ValueError("one opening per weekday, weekdays 0..6")
        if any(d.opens >= d.closes for d in self.days):
            raise ValueError("an opening must close after it opens, on the same day")

    @classmethod
    def weekdays(
        cls,
        tz: str,
        opens: time = time(9),
        closes: time = time(17),
        days: tuple[int, ...] = (0, 1, 2, 3, 4),
    ) -> WorkingHours:
        """The common case: the same hours on the given weekdays (default Monday-Friday)."""
        return cls(tz, tuple(DayHours(w, opens, closes) for w in days))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def on(self, day: date) -> DayHours | None:
        """The opening of a local date, or None on a day off."""
        for d in self.days:
            if d.weekday == day.weekday():
                return d
        return None

    def next_working_day(self, after: date) -> tuple[date, DayHours]:
        """The first working day strictly after the local date `after`."""
        day = after
        for _ in range(7):
            day += timedelta(days=1)
            hours = self.on(day)
            if hours is not None:
                return day, hours
        raise AssertionError("unreachable: __post_init__ demands a working day")

    def local(self, day: date, at: time) -> datetime:
        """A local wall-clock moment as an aware UTC datetime."""
        return datetime.combine(day, at, tzinfo=self.zone).astimezone(UTC)

    def openings(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working-hours intervals (UTC) that overlap [start, end), clipped to it."""
        check_aware(start, "start")
        check_aware(end, "end")
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date() + timedelta(days=1)
        while day <= last:
            hours = self.on(day)
            if hours is not None:
                lo = max(self.local(day, hours.opens), start)
                hi = min(self.local(day, hours.closes), end)
                if lo < hi:
                    yield lo, hi
            day += timedelta(days=1)


DEFAULT_HOURS = WorkingHours.weekdays("UTC")
"""Used for R4 while a provider has published no working hours: Monday-Friday 9-17 UTC."""


def reply_due(sent_at: datetime, hours: WorkingHours) -> datetime:
    """R4: when the provider's reply to a client message sent at `sent_at` is due (UTC)."""
    check_aware(sent_at, "sent_at")
    local = sent_at.astimezone(hours.zone)
    today = local.date()
    opening = hours.on(today)
    now_time = local.time().replace(tzinfo=None)
    if opening is not None and opening.opens < now_time <= opening.closes:
        day, nxt = hours.next_working_day(today)
        at = min(max(now_time, nxt.opens), nxt.closes)
        return hours.local(day, at)
    if opening is not None and now_time <= opening.opens:
        return hours.local(today, opening.closes)
    day, nxt = hours.next_working_day(today)
    return hours.local(day, nxt.closes)


def room_reply_due(unanswered_since: datetime | None, hours: WorkingHours) -> datetime | None:
    """R4: a room's reply-due time, from its oldest client message not yet answered.

    `unanswered_since` is the time of the first client message after the provider's
    last message (None when the provider has the last word). Reply-due grows with
    the send time, so the oldest unanswered message decides.
    """
    return None if unanswered_since is None else reply_due(unanswered_since, hours)


def is_overdue(due: datetime | None, now: datetime) -> bool:
    """R4: a room is overdue once its reply-due time has passed unanswered."""
    return due is not None and now >= due
