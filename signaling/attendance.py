"""The attendance record of one live session: who was present when, the starts, the end.

`signaling.gate.JoinGate.attendance` returns one; it is immutable, so the hub may
persist it, hand it to the room's rules or publish it as it is. It holds ids and
times only.

The no-show rule (R15: a participant who has not joined within a grace period
after the start) reads it through `Attendance.joined_by`; R11 and R14 then decide
who pays. The gate itself never decides a no-show. "Joined" means the join gate
accepted a ``live.join`` from that user (`Attendance.first_joined`), whether or
not the other side was there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from server.ids import SessionId, UserId

from .events import EndReason

IntervalEnd = Literal["left", "dropped", "ended"]
"""How a presence interval closed: ``live.leave``, a dropped connection, or the session's end."""


@dataclass(frozen=True, slots=True)
class Interval:
    """`user` was present from `joined_at` to `left_at` (None: still present)."""

    user: UserId
    joined_at: datetime
    left_at: datetime | None
    how: IntervalEnd | None


@dataclass(frozen=True, slots=True)
class Attendance:
    """Presence intervals, starts and end of one live session, in time order.

    ``starts`` holds the time of every `Start` pair: the first is when the session
    began (both present), later ones are resumes. ``ended_at`` and ``end_reason``
    are None while the session is not over.
    """

    session: SessionId
    client: UserId
    provider: UserId
    scheduled_start: datetime
    scheduled_end: datetime
    opens_at: datetime
    starts: tuple[datetime, ...]
    intervals: tuple[Interval, ...]
    ended_at: datetime | None
    end_reason: EndReason | None

    @property
    def started_at(self) -> datetime | None:
        """When both sides were first present together; None if they never were."""
        return self.starts[0] if self.starts else None

    def intervals_of(self, user: UserId) -> tuple[Interval, ...]:
        return tuple(i for i in self.intervals if i.user == user)

    def first_joined(self, user: UserId) -> datetime | None:
        """When `user` first joined; None if they never did."""
        mine = self.intervals_of(user)
        return mine[0].joined_at if mine else None

    def joined_by(self, user: UserId, deadline: datetime) -> bool:
        """Had `user` joined at least once by `deadline`? (R15 with deadline = start + grace.)"""
        first = self.first_joined(user)
        return first is not None and first <= deadline

    def present_at(self, when: datetime) -> frozenset[UserId]:
        """Who was present at the instant `when` (an interval holds its start, not its end)."""
        return frozenset(
            i.user
            for i in self.intervals
            if i.joined_at <= when and (i.left_at is None or when < i.left_at)
        )

    def time_present(self, user: UserId, until: datetime) -> timedelta:
        """How long `user` was present, counting open intervals up to `until`."""
        total = timedelta(0)
        for i in self.intervals_of(user):
            stop = i.left_at if i.left_at is not None else max(until, i.joined_at)
            total += stop - i.joined_at
        return total
