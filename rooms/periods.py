"""Billing periods of self-pay rooms: the monthly grant of plan credits and their lapse (R12).

Theory of operation
-------------------
R12: a `self_pay` plan grants a set number of live-session credits each billing
period; unused plan credits lapse at the end of the period and do not carry over.
A billing period is a calendar month in UTC (id "2026-05"). At a period's end one
deadline job (`period_end`, R17) calls `close_period`, which lapses the plan
credits still available and grants the next period's. Credits a booked session
holds are not unused: they stay with it, and if that session is cancelled in
time they come back to the plan pool and lapse at the end of the then-current
period. Bought and admin-granted credits (pool "kept") never lapse.

`close_period` is idempotent: called again for a period already closed, it
returns no entries, so a job that fires twice cannot grant twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rooms.effects import Job
from rooms.ledger import CreditLedger, LedgerEntry, grant
from rooms.room import Room
from rooms.sessions import check_aware
from rooms.settings import DEFAULT_SETTINGS, Settings
from server.errors import RuleError


@dataclass(frozen=True)
class BillingPeriod:
    """One calendar month, UTC, [start, end)."""

    id: str
    start: datetime
    end: datetime

    def next(self) -> BillingPeriod:
        return period_containing(self.end)


def period_containing(at: datetime) -> BillingPeriod:
    """R12: the billing period (calendar month, UTC) that contains `at`."""
    check_aware(at, "at")
    at = at.astimezone(UTC)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return BillingPeriod(
        f"{at.year:04d}-{at.month:02d}", start, datetime(year, month, 1, tzinfo=UTC)
    )


def period_end_job(room: Room, period: BillingPeriod) -> Job:
    """R12/R17: the deadline that closes `period` for a room."""
    return Job(period.end, "period_end", room.id)


def _granted(ledger: CreditLedger, period: BillingPeriod) -> bool:
    return any(
        e.kind == "grant" and e.pool == "plan" and e.period == period.id for e in ledger.entries
    )


def open_period(
    room: Room,
    ledger: CreditLedger,
    period: BillingPeriod,
    at: datetime,
    settings: Settings = DEFAULT_SETTINGS,
) -> tuple[LedgerEntry, ...]:
    """R12: the plan's grant for `period` (none if the plan grants nothing or it was given)."""
    count = settings.terms(room.plan).credits_per_period
    if count <= 0 or _granted(ledger, period):
        return ()
    return (grant(room.id, count, at, pool="plan", period=period.id),)


def close_period(
    room: Room,
    ledger: CreditLedger,
    period: BillingPeriod,
    at: datetime,
    settings: Settings = DEFAULT_SETTINGS,
) -> tuple[LedgerEntry, ...]:
    """R12: at the end of `period`, lapse unused plan credits and grant the next period's."""
    check_aware(at, "at")
    if at < period.end:
        raise RuleError("R12", f"room {room.id}: billing period {period.id} is not over")
    following = period.next()
    if any(e.kind == "lapse" and e.period == period.id for e in ledger.entries) or _granted(
        ledger, following
    ):
        return ()
    entries: list[LedgerEntry] = []
    unused = ledger.available("plan")
    if unused > 0:
        entries.append(LedgerEntry("lapse", room.id, "plan", unused, at, "R12", period=period.id))
    entries += open_period(room, ledger, following, at, settings)
    ledger.post(*entries)  # proves the entries legal
    return tuple(entries)
