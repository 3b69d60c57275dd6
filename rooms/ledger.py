"""The credit ledger of a room, and the charges money events are made of (R7, R11, R12, R14).

Theory of operation
-------------------
A live session is paid for with a *credit*. The ledger is an append-only list of
entries; every balance is derived from them, never stored. Credits live in two
pools:

- `plan`: granted each billing period by a `self_pay` plan (R12). Unused plan
  credits lapse when the period ends; they never carry over.
- `kept`: bought by the client (R7) or granted by an admin. They never lapse.

Entries move credits between *available* and *held by a session*:

=========  ==========================  ===================================
kind       available                   held by the entry's session
=========  ==========================  ===================================
grant      +n (plan or kept)
purchase   +1 (kept), with a Charge     (R7, R12)
reserve    -1 (plan first, then kept)   +1  booking (R7)
release    +1 (back to its pool)        -1  cancel in time, lapse, R11
consume                                 -1  the session took place
forfeit                                 -1  late cancel, client no-show (R14)
lapse      -n (plan)                        end of the billing period (R12)
=========  ==========================  ===================================

`CreditLedger.post` checks each entry against the balance so far and refuses,
with a RuleError, anything that would make a balance negative or touch a credit
a session does not hold; an illegal post returns nothing and changes nothing.
Money is integer cents; charges are data the store writes and the billing
webhook sends, each with a stable `key` so none is sent twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, assert_never

from server.errors import RuleError
from server.ids import RoomId, SessionId, UserId

Pool = Literal["plan", "kept"]
POOLS: tuple[Pool, ...] = ("plan", "kept")
EntryKind = Literal["grant", "purchase", "reserve", "release", "consume", "forfeit", "lapse"]
ChargeKind = Literal["late_cancel", "late_reschedule", "no_show", "purchase"]


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of credits. `rule` says why it happened (e.g. "R11")."""

    kind: EntryKind
    room: RoomId
    pool: Pool
    credits: int
    at: datetime
    rule: str
    session: SessionId | None = None
    period: str | None = None  # grant and lapse of plan credits: the billing period id

    def available_delta(self) -> int:
        """How this entry changes the available credits of its pool."""
        match self.kind:
            case "grant" | "purchase" | "release":
                return self.credits
            case "reserve" | "lapse":
                return -self.credits
            case "consume" | "forfeit":
                return 0
            case _:
                assert_never(self.kind)

    def held_delta(self) -> int:
        """How this entry changes the credits held by its session."""
        match self.kind:
            case "reserve":
                return self.credits
            case "release" | "consume" | "forfeit":
                return -self.credits
            case "grant" | "purchase" | "lapse":
                return 0
            case _:
                assert_never(self.kind)


@dataclass(frozen=True)
class Charge:
    """Money a client owes, in integer cents. `key` is unique per charge (R14, R7)."""

    key: str
    kind: ChargeKind
    room: RoomId
    client: UserId
    amount_cents: int
    at: datetime
    rule: str
    session: SessionId | None = None


def charge(
    kind: ChargeKind,
    room: RoomId,
    client: UserId,
    amount_cents: int,
    at: datetime,
    rule: str,
    session: SessionId | None = None,
) -> Charge:
    """A charge with its idempotency key: kind, session (or room) and time, to the microsecond."""
    subject = session if session is not None else room
    key = f"{kind}:{subject}:{at.isoformat()}"
    return Charge(key, kind, room, client, amount_cents, at, rule, session)


@dataclass(frozen=True)
class CreditLedger:
    """A room's ledger: its entries, and the balances they add up to."""

    room: RoomId
    entries: tuple[LedgerEntry, ...] = ()

    def available(self, pool: Pool | None = None) -> int:
        """Credits the client may book with now (in one pool, or both)."""
        return sum(e.available_delta() for e in self.entries if pool is None or e.pool == pool)

    def held(self) -> int:
        """Credits held by booked sessions."""
        return sum(e.held_delta() for e in self.entries)

    def held_by(self, session: SessionId) -> Pool | None:
        """The pool of the credit `session` holds, or None if it holds none."""
        count = 0
        pool: Pool | None = None
        for e in self.entries:
            if e.session == session and e.held_delta():
                count += e.held_delta()
                pool = e.pool
        return pool if count > 0 else None

    def post(self, *entries: LedgerEntry) -> CreditLedger:
        """The ledger with `entries` appended, if every one is legal; RuleError otherwise."""
        ledger = self
        for entry in entries:
            ledger._check(entry)
            ledger = replace(ledger, entries=(*ledger.entries, entry))
        return ledger

    def _check(self, entry: LedgerEntry) -> None:
        if entry.room != self.room:
            raise ValueError(f"entry for room {entry.room} posted to ledger of {self.room}")
        if entry.credits <= 0:
            raise ValueError("an entry moves a positive number of credits")
        if entry.available_delta() < 0 and self.available(entry.pool) < entry.credits:
            raise RuleError("R7", f"room {self.room} has no credit to book with")
        if entry.kind in ("grant", "purchase", "lapse"):
            return
        session = entry.session
        if session is None:
            raise ValueError(f"a {entry.kind} entry names its session")
        if entry.kind == "reserve" and self.held_by(session) is not None:
            raise RuleError("R7", f"session {session} already holds a credit")
        if entry.held_delta() < 0 and self.held_by(session) != entry.pool:
            raise RuleError("R7", f"session {session} holds no credit")

    # -- entries the rules produce ---------------------------------------------------

    def reserve(self, session: SessionId, at: datetime) -> LedgerEntry:
        """R7: hold one credit for a booking, plan credits first (they lapse, R12)."""
        for pool in POOLS:
            if self.available(pool) > 0:
                return LedgerEntry("reserve", self.room, pool, 1, at, "R7", session)
        raise RuleError("R7", f"room {self.room} has no credit to book with")

    def settle(
        self,
        session: SessionId,
        kind: Literal["release", "consume", "forfeit"],
        at: datetime,
        rule: str,
    ) -> LedgerEntry:
        """Let go of the credit `session` holds: back (release), used, or forfeited."""
        pool = self.held_by(session)
        if pool is None:
            raise RuleError("R7", f"session {session} holds no credit")
        return LedgerEntry(kind, self.room, pool, 1, at, rule, session)


def grant(
    room: RoomId,
    credits: int,
    at: datetime,
    pool: Pool = "kept",
    period: str | None = None,
    rule: str = "R12",
) -> LedgerEntry:
    """Credits given: a plan's per-period grant (pool "plan", R12) or an admin's (pool "kept")."""
    return LedgerEntry("grant", room, pool, credits, at, rule, period=period)


def purchase(
    room: RoomId,
    client: UserId,
    price_cents: int,
    at: datetime,
    session: SessionId | None = None,
) -> tuple[LedgerEntry, Charge]:
    """R7: one credit bought while booking, and the charge for it. Bought credits never lapse."""
    entry = LedgerEntry("purchase", room, "kept", 1, at, "R7", session)
    return entry, charge("purchase", room, client, price_cents, at, "R7", session)


def replay(room: RoomId, entries: Iterable[LedgerEntry]) -> CreditLedger:
    """Rebuild a ledger from stored entries, checking every one as it is posted."""
    return CreditLedger(room).post(*entries)
