"""What one step of the rules asks the edge to do: ledger entries, charges, notices, jobs.

A rule function never writes, publishes or schedules anything itself. It returns a
`Step`: the session's new record plus the effects the hub persists in one
transaction (entries, charges, jobs to schedule and cancel) and then publishes
(a `session` frame to both members, a system message per `Notice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar

from rooms.ledger import Charge, LedgerEntry
from rooms.room import Party, Side
from server.ids import RoomId, SessionId

NoticeKind = Literal[
    "booked",
    "confirmed",
    "reminder",
    "rescheduled",
    "cancelled",
    "late_cancelled",
    "lapsed",
    "no_show",
    "messaging_started",
    "messaging_ended",
]

JobKind = Literal["lapse", "remind", "begin", "no_show", "end", "end_messaging", "period_end"]


@dataclass(frozen=True)
class Notice:
    """An event a person should see in the room as a system message (ids only, no content).

    A "reminder" notice carries a join link, which the hub adds; "no_show" names who
    was `absent`; "cancelled" and "rescheduled" name `by` whom.
    """

    kind: NoticeKind
    room: RoomId
    session: SessionId
    at: datetime
    by: Party
    absent: frozenset[Side] = frozenset()


@dataclass(frozen=True, order=True)
class Job:
    """A deadline (R17): fire `kind` for `subject` (a session id, or a room id) at `due`."""

    due: datetime
    kind: JobKind
    subject: str

    @property
    def key(self) -> str:
        """Unique per deadline: the store's idempotency key, so a job fires once."""
        return f"{self.kind}:{self.subject}:{self.due.isoformat()}"


S = TypeVar("S")


@dataclass(frozen=True)
class Step(Generic[S]):
    """The outcome of one legal step: the new record and the effects to persist."""

    session: S
    entries: tuple[LedgerEntry, ...] = ()
    charges: tuple[Charge, ...] = ()
    notices: tuple[Notice, ...] = ()
    schedule: tuple[Job, ...] = ()
    cancel: tuple[Job, ...] = ()


def job_changes(
    before: frozenset[Job], after: frozenset[Job]
) -> tuple[tuple[Job, ...], tuple[Job, ...]]:
    """(jobs to schedule, jobs to cancel) to go from one set of deadlines to the other."""
    return tuple(sorted(after - before)), tuple(sorted(before - after))
