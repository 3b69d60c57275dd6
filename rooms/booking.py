"""Booking: a new live session or messaging session, checked against every rule first (R7).

Theory of operation
-------------------
R7: the client picks a modality and a free time of their provider and reserves it
with a session credit. `book_live` checks, in order, and refuses with the rule:

1. R1 the actor is the room's client (staff are not members; the provider and
   the clock do not book: R7);
2. R3/R6 the modality is allowed by service and plan;
3. R7 the start is in the future, inside the provider's open time (any time if
   they published none) and on no held time (`rooms.slots.check_slot`);
4. R7/R12 a credit is available: plan credits first, then kept ones. With none
   left, a plan that sells credits (`self_pay`) buys one in the same step when the
   request says `buy_credit`; otherwise the booking is refused, naming R7.

The store still guards against two nodes booking the same time (a constraint).
`book_messaging` (R5): eap/bh therapy rooms only; one open messaging session at a
time; it holds no live credit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rooms.capabilities import check_modality, messaging_policy
from rooms.deadlines import confirm_deadline, live_jobs
from rooms.effects import Notice, Step
from rooms.ledger import Charge, CreditLedger, LedgerEntry, purchase
from rooms.room import Actor, Room, party_of
from rooms.sessions import LiveSession, MessagingSession, check_aware
from rooms.settings import DEFAULT_SETTINGS, Modality, Settings
from rooms.slots import Interval, ProviderSchedule, check_slot
from server.errors import RuleError
from server.ids import SessionId


@dataclass(frozen=True)
class LiveBooking:
    """What the client asks for (R6, R7)."""

    modality: Modality
    start: datetime
    buy_credit: bool = False


def book_live(
    room: Room,
    request: LiveBooking,
    now: datetime,
    actor: Actor,
    *,
    session_id: SessionId,
    ledger: CreditLedger,
    schedule: ProviderSchedule,
    busy: Iterable[Interval],
    settings: Settings = DEFAULT_SETTINGS,
) -> Step[LiveSession]:
    """R7: a new booked live session, its reserved credit (and purchase), or a RuleError.

    `busy` is the provider's time held by their other live sessions
    (`rooms.slots.busy_time`); `ledger` is this room's.
    """
    check_aware(now, "now")
    if party_of(room, actor) != "client":
        raise RuleError("R7", f"room {room.id}: only the client books a session")
    check_modality(room, request.modality, settings)
    length = settings.live_session_length
    check_slot(schedule, busy, request.start, length, now)

    terms = settings.terms(room.plan)
    entries: list[LedgerEntry] = []
    charges: list[Charge] = []
    if ledger.available() == 0:
        if not terms.sells_credits:
            raise RuleError("R7", f"room {room.id} has no credit to book with")
        if not request.buy_credit:
            raise RuleError("R7", f"room {room.id} has no credit: buy one while booking")
        bought, paid = purchase(room.id, room.client, terms.session_price_cents, now, session_id)
        entries.append(bought)
        charges.append(paid)
    entries.append(ledger.post(*entries).reserve(session_id, now))
    ledger.post(*entries)

    session = LiveSession(
        id=session_id,
        room=room.id,
        client=room.client,
        provider=room.provider,
        modality=request.modality,
        start=request.start,
        length=length,
        booked_at=now,
        confirm_by=confirm_deadline(now, request.start, settings),
        by="client",
        at=now,
    )
    return Step(
        session=session,
        entries=tuple(entries),
        charges=tuple(charges),
        notices=(Notice("booked", room.id, session_id, now, "client"),),
        schedule=tuple(sorted(live_jobs(session, settings))),
    )


def book_messaging(
    room: Room,
    now: datetime,
    actor: Actor,
    *,
    session_id: SessionId,
    open_sessions: Iterable[MessagingSession],
    settings: Settings = DEFAULT_SETTINGS,
) -> Step[MessagingSession]:
    """R5: a new booked messaging session, or a RuleError (R1, R2, R3, R5)."""
    check_aware(now, "now")
    if party_of(room, actor) != "client":
        raise RuleError("R5", f"room {room.id}: only the client books a messaging session")
    if room.service == "psychiatry":
        raise RuleError("R3", f"room {room.id} is psychiatry: live video sessions only")
    if messaging_policy(room) != "in_session":
        raise RuleError("R2", f"room {room.id}: the plan has no messaging sessions")
    if any(s.room == room.id and not s.final for s in open_sessions):
        raise RuleError("R5", f"room {room.id} already has a messaging session open")
    session = MessagingSession(
        id=session_id,
        room=room.id,
        client=room.client,
        provider=room.provider,
        length=settings.terms(room.plan).messaging_session_length,
        booked_at=now,
        by="client",
        at=now,
    )
    return Step(session=session, notices=(Notice("booked", room.id, session_id, now, "client"),))
