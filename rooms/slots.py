"""A provider's bookable time: free slots and the check that a chosen start fits (R7).

Theory of operation
-------------------
R7: the client books a free time of their provider. A provider's open time is the
union of their weekly working hours and any extra availability they published;
a provider who has published neither can be booked at any time. Free slots are
the starts, on a grid of `step` from the start of each open interval, at which a
session of `length` fits entirely inside open time, overlaps no busy interval
(the provider's other live sessions), and lies in the future.

Availability, the provider's extra open time and the client's shared times alike, is
for times to come: an interval must not be over, span at most 62 days and start at most
366 days ahead (`availability_problem`).

This is the slot logic only. That two bookings never hold the same provider time
when they race on different nodes is the store's constraint, not a check here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rooms.hours import WorkingHours
from rooms.sessions import LiveSession, check_aware
from server.errors import RuleError

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Availability (a provider's extra open time, a client's shared times, R7) is for times to
# come: each interval at most this long, starting at most this far ahead.
MAX_AVAILABILITY_SPAN = timedelta(days=62)
MAX_AVAILABILITY_AHEAD = timedelta(days=366)


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span of time [start, end), aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        check_aware(self.start, "start")
        check_aware(self.end, "end")
        if self.end <= self.start:
            raise ValueError("an interval ends after it starts")

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end


@dataclass(frozen=True)
class ProviderSchedule:
    """What a provider published: weekly hours and extra availability (R7)."""

    hours: WorkingHours | None = None
    extra: tuple[Interval, ...] = ()

    @property
    def published(self) -> bool:
        return self.hours is not None or bool(self.extra)

    def open_time(self, span: Interval) -> list[Interval]:
        """Open intervals within `span`, merged; all of `span` when nothing is published."""
        if not self.published:
            return [span]
        pieces: list[Interval] = []
        if self.hours is not None:
            pieces += [Interval(lo, hi) for lo, hi in self.hours.openings(span.start, span.end)]
        for extra in self.extra:
            lo, hi = max(extra.start, span.start), min(extra.end, span.end)
            if lo < hi:
                pieces.append(Interval(lo, hi))
        return _merge(pieces)



def availability_problem(interval: Interval, now: datetime) -> str | None:
    """R7: why `interval` is not availability anyone could mean at `now` (over, too long
    or too far ahead), or None."""
    if interval.end <= now:
        return "`end` is in the past: availability is for times to come"
    if interval.end - interval.start > MAX_AVAILABILITY_SPAN:
        return f"an interval of availability spans at most {MAX_AVAILABILITY_SPAN.days} days"
    if interval.start - now > MAX_AVAILABILITY_AHEAD:
        return f"availability starts at most {MAX_AVAILABILITY_AHEAD.days} days ahead"
    return None

def _merge(pieces: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for piece in sorted(pieces):
        if merged and piece.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interval(last.start, max(last.end, piece.end))
        else:
            merged.append(piece)
    return merged


def busy_time(sessions: Iterable[LiveSession]) -> list[Interval]:
    """The provider time held by live sessions that are not over (R7)."""
    return [Interval(s.start, s.end) for s in sessions if not s.final]


def free_slots(
    schedule: ProviderSchedule,
    busy: Iterable[Interval],
    span: Interval,
    length: timedelta,
    now: datetime,
    step: timedelta = timedelta(minutes=30),
) -> list[Interval]:
    """R7: the free slots of `length` in `span`, in time order."""
    check_aware(now, "now")
    held = list(busy)
    slots: list[Interval] = []
    for window in schedule.open_time(span):
        start = window.start
        if not schedule.published:  # "any time": keep starts on a clock-aligned grid
            start = _EPOCH + -((_EPOCH - start) // step) * step
        while start + length <= window.end:
            slot = Interval(start, start + length)
            if start > now and not any(slot.overlaps(b) for b in held):
                slots.append(slot)
            start += step
    return slots


def check_slot(
    schedule: ProviderSchedule,
    busy: Iterable[Interval],
    start: datetime,
    length: timedelta,
    now: datetime,
) -> Interval:
    """R7: refuse a start in the past, outside the provider's open time, or on held time."""
    check_aware(start, "start")
    check_aware(now, "now")
    if start <= now:
        raise RuleError("R7", "a session must start in the future")
    slot = Interval(start, start + length)
    if not any(w.contains(slot) for w in schedule.open_time(slot)):
        raise RuleError("R7", "the provider is not available at that time")
    if any(slot.overlaps(b) for b in busy):
        raise RuleError("R7", "the provider already has a session at that time")
    return slot
