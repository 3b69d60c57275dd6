"""Which deadline jobs a session has and when they are due, and what a missed start means.

Theory of operation
-------------------
R17 (every deadline fires once, on time, whatever node dies) is the store's and
job runner's to keep. This module only says, purely, which deadlines exist for a
session in its current state; `rooms.lifecycle.apply` diffs them before and after
each step so the runner knows what to schedule and what to cancel.

- R8 confirmation lapse: 24 hours before the start (`Settings.confirm_lead`); a
  booking made less than that ahead must be confirmed before the start.
- R9 reminders: at each of `Settings.reminder_offsets` before the start (default a
  day and a quarter of an hour) that still lies ahead when the session is confirmed.
- R10 begin: at the start, when both sides joined early and are waiting.
- R15 no-show check: `Settings.no_show_grace` after the start (default 10 minutes).
- end: a started live session ends by itself `length + live_overrun` after its start.
- R5 end of a messaging session: its length after it started.
- R12 end of a billing period: see `rooms.periods.period_end_job`.

No-show outcome (R15, R11, R14): whoever had not joined by the check is absent.
If the provider is absent (alone or with the client) it is the provider's miss:
the credit goes back to the client, no charge (R11). If only the client is absent
it is the client's: the credit is forfeit and the full session cost charged (R14).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from rooms.effects import Job
from rooms.room import SIDES, Side
from rooms.sessions import LiveSession, MessagingSession
from rooms.settings import DEFAULT_SETTINGS, Settings


def confirm_deadline(booked_at: datetime, start: datetime, settings: Settings) -> datetime:
    """R8: `confirm_lead` before the start, or the start itself for a short-notice booking."""
    deadline = start - settings.confirm_lead
    return deadline if booked_at <= deadline else start


def reminder_times(session: LiveSession, settings: Settings = DEFAULT_SETTINGS) -> list[datetime]:
    """R9: the reminders still to send for a confirmed session, in time order."""
    since = session.confirmed_at
    if since is None:
        return []
    times = {session.start - offset for offset in settings.reminder_offsets}
    return sorted(t for t in times if since < t < session.start and t not in session.reminders_done)


def live_jobs(session: LiveSession, settings: Settings = DEFAULT_SETTINGS) -> frozenset[Job]:
    """R8, R9, R10, R15: the deadline jobs a live session has in its current state."""
    sid = session.id
    no_show = Job(session.start + settings.no_show_grace, "no_show", sid)
    match session.state:
        case "booked":
            return frozenset({Job(session.confirm_by, "lapse", sid)})
        case "confirmed" | "reminded":
            reminders = {Job(t, "remind", sid) for t in reminder_times(session, settings)}
            return frozenset({*reminders, no_show})
        case "waiting":
            begin = {Job(session.start, "begin", sid)} if session.joined == set(SIDES) else set()
            return frozenset({*begin, no_show})
        case "started":
            return frozenset({Job(session.end + settings.live_overrun, "end", sid)})
        case "ended" | "cancelled" | "late-cancelled" | "lapsed" | "no-show":
            return frozenset()


def messaging_jobs(session: MessagingSession) -> frozenset[Job]:
    """R5: a started messaging session ends after its length."""
    ends = session.ends_at
    if session.state == "started" and ends is not None:
        return frozenset({Job(ends, "end_messaging", session.id)})
    return frozenset()


@dataclass(frozen=True)
class JoinRecord:
    """Someone joined a live session at a time (kept by the live-session code)."""

    side: Side
    at: datetime


def sides_joined_by(records: Iterable[JoinRecord], deadline: datetime) -> frozenset[Side]:
    """The sides that had joined by `deadline` (R15: the start plus the grace period)."""
    return frozenset(r.side for r in records if r.at <= deadline)


@dataclass(frozen=True)
class NoShowOutcome:
    """R15: who missed the session, what happens to the credit, whether the client pays."""

    absent: frozenset[Side]
    credit: Literal["release", "forfeit"]
    charge: bool
    rule: Literal["R11", "R14"]


def no_show_outcome(joined: frozenset[Side]) -> NoShowOutcome | None:
    """R15: the outcome for the sides that joined by the check; None when both did."""
    absent = frozenset(SIDES) - joined
    if not absent:
        return None
    if "provider" in absent:
        return NoShowOutcome(absent, "release", False, "R11")
    return NoShowOutcome(absent, "forfeit", True, "R14")
