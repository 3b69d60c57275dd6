"""The live-session lifecycle (R8-R11, R13-R15) as one transition table, and `apply`.

Theory of operation
-------------------
A live session is booked by the client (`rooms.booking.book_live`, R7), then moves
only through `apply(session, event, now, actor, room=, ledger=)`, which looks the
step up in `LIVE_TRANSITIONS` (the table below is the whole lifecycle; the
diagram in docs/sessions.md is drawn from it) and returns a `Step`: the new
record plus ledger entries, charges, notices and jobs. An illegal step raises a
`RuleError` naming the rule and changes nothing.

- R8: the provider confirms before `confirm_by`; an unconfirmed booking lapses
  then (credit back, both told); an unconfirmed session cannot be joined.
- R9: reminders go to confirmed sessions before the start.
- R10: joining opens `join_opens` before the start; the session starts when both
  sides are in and the start has come. Its credit is consumed when it starts.
- R11: the provider cancelling, or not showing, gives the credit back, no charge.
- R13: the client or the provider cancels or reschedules; the clock never does,
  nor anyone else (R1). A reschedule by the provider counts as its confirmation;
  one by the client needs a new confirmation.
- R14: a client cancel or reschedule inside `late_window` before the (old) start
  forfeits the credit and charges the full session cost; a late reschedule then
  reserves a fresh credit (bought in the same step if `buy_credit`, self-pay).
  Outside the window: cancel gives the credit back, reschedule keeps it.
- R15: at `no_show_grace` after the start, whoever has not joined is absent
  (`rooms.deadlines.no_show_outcome`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, assert_never

from rooms import deadlines
from rooms.effects import Job, Notice, NoticeKind, Step, job_changes
from rooms.ledger import Charge, ChargeKind, CreditLedger, LedgerEntry, charge, purchase
from rooms.room import SIDES, Actor, Party, Room, Side, party_of
from rooms.sessions import LIVE_FINAL_STATES, LIVE_STATES, LiveSession, LiveState, check_aware
from rooms.settings import DEFAULT_SETTINGS, Settings
from rooms.transitions import Transition, render_mermaid, select
from server.errors import RuleError

# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirm:
    """The provider accepts the booking (R8)."""


@dataclass(frozen=True)
class Remind:
    """A reminder deadline came (R9); `due` is the job's due time."""

    due: datetime


@dataclass(frozen=True)
class Join:
    """The actor joined (R10)."""


@dataclass(frozen=True)
class Leave:
    """The actor left (R10)."""


@dataclass(frozen=True)
class Begin:
    """The start time came with both sides waiting (R10)."""


@dataclass(frozen=True)
class Cancel:
    """The client or provider cancels (R11, R13, R14)."""


@dataclass(frozen=True)
class Reschedule:
    """The client or provider moves the session to `start` (R13, R14).

    The hub checks the new time first with `rooms.slots.check_slot` (R7).
    `buy_credit`: for a late client reschedule with no credit left, buy one (self_pay).
    """

    start: datetime
    buy_credit: bool = False


@dataclass(frozen=True)
class Lapse:
    """The confirmation deadline passed (R8)."""


@dataclass(frozen=True)
class NoShowCheck:
    """The grace period after the start ended (R15).

    `joined`: the sides the join records show present by the start plus the grace
    (e.g. from `signaling`'s attendance); None uses the session's own `joined`.
    """

    joined: frozenset[Side] | None = None


@dataclass(frozen=True)
class End:
    """The session is over: a participant ended it, or its overrun deadline came."""


LiveEvent = (
    Confirm | Remind | Join | Leave | Begin | Cancel | Reschedule | Lapse | NoShowCheck | End
)
LiveEventName = Literal[
    "confirm", "remind", "join", "leave", "begin", "cancel", "reschedule", "lapse", "no_show", "end"
]
Guard = Literal[
    "before_confirm_deadline",
    "confirm_deadline_passed",
    "before_start",
    "join_open",
    "both_in_after_start",
    "both_in",
    "outside_late_window",
    "inside_late_window",
    "grace_passed",
    "overrun_passed",
]


def event_name(event: LiveEvent) -> LiveEventName:
    match event:
        case Confirm():
            return "confirm"
        case Remind():
            return "remind"
        case Join():
            return "join"
        case Leave():
            return "leave"
        case Begin():
            return "begin"
        case Cancel():
            return "cancel"
        case Reschedule():
            return "reschedule"
        case Lapse():
            return "lapse"
        case NoShowCheck():
            return "no_show"
        case End():
            return "end"
        case _:
            assert_never(event)


def event_for_job(job: Job) -> LiveEvent:
    """R17: the event a fired live-session deadline job applies (with actor SYSTEM)."""
    match job.kind:
        case "lapse":
            return Lapse()
        case "remind":
            return Remind(job.due)
        case "begin":
            return Begin()
        case "no_show":
            return NoShowCheck()
        case "end":
            return End()
        case "end_messaging" | "period_end":
            raise ValueError(f"job {job.kind} is not a live-session job")
        case _:
            assert_never(job.kind)


# -- the table -------------------------------------------------------------------------

T = Transition[LiveState, LiveEventName, Guard]
MEMBERS: frozenset[Party] = frozenset({"client", "provider"})
CLIENT: frozenset[Party] = frozenset({"client"})
PROVIDER: frozenset[Party] = frozenset({"provider"})
CLOCK: frozenset[Party] = frozenset({"system"})
_ACTIVE: tuple[LiveState, ...] = ("booked", "confirmed", "reminded", "waiting")

LIVE_TRANSITIONS: tuple[T, ...] = (
    T("booked", "confirm", "confirmed", PROVIDER, "R8", "before_confirm_deadline"),
    T("booked", "lapse", "lapsed", CLOCK, "R8", "confirm_deadline_passed"),
    T("confirmed", "remind", "reminded", CLOCK, "R9", "before_start"),
    T("reminded", "remind", "reminded", CLOCK, "R9", "before_start"),
    T("confirmed", "join", "waiting", MEMBERS, "R10", "join_open"),
    T("reminded", "join", "waiting", MEMBERS, "R10", "join_open"),
    T("waiting", "join", "started", MEMBERS, "R10", "both_in_after_start"),
    T("waiting", "join", "waiting", MEMBERS, "R10"),
    T("waiting", "leave", "waiting", MEMBERS, "R10"),
    T("waiting", "begin", "started", CLOCK, "R10", "both_in_after_start"),
    T("waiting", "end", "ended", MEMBERS, "R10", "both_in"),
    T("started", "join", "started", MEMBERS, "R10"),
    T("started", "leave", "started", MEMBERS, "R10"),
    T("started", "end", "ended", MEMBERS, "R10"),
    T("started", "end", "ended", CLOCK, "R10", "overrun_passed"),
    *(
        row
        for state in _ACTIVE
        for row in (
            T(state, "cancel", "cancelled", PROVIDER, "R11"),
            T(state, "cancel", "cancelled", CLIENT, "R14", "outside_late_window"),
            T(state, "cancel", "late-cancelled", CLIENT, "R14", "inside_late_window"),
            T(state, "reschedule", "confirmed", PROVIDER, "R13"),
            T(state, "reschedule", "booked", CLIENT, "R14", "outside_late_window"),
            T(state, "reschedule", "booked", CLIENT, "R14", "inside_late_window"),
        )
    ),
    *(
        T(state, "no_show", "no-show", CLOCK, "R15", "grace_passed")
        for state in ("confirmed", "reminded", "waiting")
    ),
)
"""The whole live-session lifecycle. Rows are tried in order; see `rooms.transitions`."""

# What a refused event names when the state has no row for it at all.
REFUSAL_RULES: dict[LiveEventName, str] = {
    "confirm": "R8",
    "remind": "R9",
    "join": "R10",
    "leave": "R10",
    "begin": "R8",
    "cancel": "R13",
    "reschedule": "R13",
    "lapse": "R8",
    "no_show": "R15",
    "end": "R10",
}
# ...unless the state has a more telling reason: an unconfirmed session cannot start (R8).
STATE_REFUSAL_RULES: dict[tuple[LiveState, LiveEventName], str] = {
    ("booked", "join"): "R8",
    ("booked", "begin"): "R8",
}


def live_diagram() -> str:
    """The live-session lifecycle as a Mermaid stateDiagram, drawn from the table."""
    return render_mermaid(
        LIVE_TRANSITIONS, LIVE_STATES, ("booked", "book by client (R7)"), LIVE_FINAL_STATES
    )


# -- apply -----------------------------------------------------------------------------


def apply(
    session: LiveSession,
    event: LiveEvent,
    now: datetime,
    actor: Actor,
    *,
    room: Room,
    ledger: CreditLedger,
    settings: Settings = DEFAULT_SETTINGS,
) -> Step[LiveSession]:
    """One step of a live session, or a RuleError (and nothing changed).

    `room` is the session's room (its current members, R1/R13) and `ledger` its
    credit ledger; the returned entries are legal to post on it, in order.
    """
    check_aware(now, "now")
    if room.id != session.room or ledger.room != session.room:
        raise ValueError(f"session {session.id} belongs to room {session.room}")
    party = party_of(room, actor)
    name = event_name(event)
    if isinstance(event, Reschedule):
        check_aware(event.start, "start")
        if event.start <= now:
            raise RuleError("R7", "a session must start in the future")

    def holds(guard: Guard) -> bool:
        return _guard_holds(guard, session, event, party, now, settings)

    row = select(
        LIVE_TRANSITIONS,
        session.state,
        name,
        party,
        holds,
        subject=f"session {session.id}",
        refusal_rule=STATE_REFUSAL_RULES.get((session.state, name), REFUSAL_RULES[name]),
        who_rule="R13" if name in ("cancel", "reschedule") else None,
    )
    return _effects(session, row, event, party, now, room, ledger, settings)


def _guard_holds(
    guard: Guard,
    session: LiveSession,
    event: LiveEvent,
    party: Party,
    now: datetime,
    settings: Settings,
) -> bool:
    match guard:
        case "before_confirm_deadline":
            return now < session.confirm_by
        case "confirm_deadline_passed":
            return now >= session.confirm_by
        case "before_start":
            return now < session.start
        case "join_open":
            return now >= session.start - settings.join_opens
        case "both_in_after_start":
            joined = session.joined | {_side(party)} if isinstance(event, Join) else session.joined
            return joined == set(SIDES) and now >= session.start
        case "both_in":
            return session.joined == set(SIDES)
        case "outside_late_window":
            return now < session.start - settings.late_window
        case "inside_late_window":
            return now >= session.start - settings.late_window
        case "grace_passed":
            return now >= session.start + settings.no_show_grace
        case "overrun_passed":
            return now >= session.end + settings.live_overrun
        case _:
            assert_never(guard)


def _effects(
    session: LiveSession,
    row: T,
    event: LiveEvent,
    party: Party,
    now: datetime,
    room: Room,
    ledger: CreditLedger,
    settings: Settings,
) -> Step[LiveSession]:
    new = replace(session, state=row.target, by=party, at=now)
    entries: list[LedgerEntry] = []
    charges: list[Charge] = []
    notices: list[NoticeKind] = []
    absent: frozenset[Side] = frozenset()
    price = settings.terms(room.plan).session_price_cents

    def bill(kind: ChargeKind, rule: str) -> None:
        charges.append(charge(kind, room.id, session.client, price, now, rule, session.id))

    match event:
        case Confirm():
            new = replace(new, confirmed_at=now)
            notices.append("confirmed")
        case Remind(due=due):
            new = replace(new, reminders_done=session.reminders_done | {due})
            notices.append("reminder")
        case Join():
            new = replace(new, joined=session.joined | {_side(party)})
            if session.state == "waiting" and row.target == "started":
                entries.append(ledger.settle(session.id, "consume", now, "R10"))
        case Leave():
            new = replace(new, joined=session.joined - {_side(party)})
        case Begin():
            entries.append(ledger.settle(session.id, "consume", now, "R10"))
        case Cancel():
            if row.target == "late-cancelled":
                entries.append(ledger.settle(session.id, "forfeit", now, "R14"))
                bill("late_cancel", "R14")
                notices.append("late_cancelled")
            else:
                entries.append(ledger.settle(session.id, "release", now, row.rule))
                notices.append("cancelled")
        case Reschedule(start=start, buy_credit=buy):
            if row.when == "inside_late_window":
                entries.append(ledger.settle(session.id, "forfeit", now, "R14"))
                bill("late_reschedule", "R14")
                after = ledger.post(*entries)
                if after.available() == 0 and buy and settings.terms(room.plan).sells_credits:
                    bought, paid = purchase(room.id, session.client, price, now, session.id)
                    entries.append(bought)
                    charges.append(paid)
                    after = after.post(bought)
                entries.append(after.reserve(session.id, now))
            by_provider = row.target == "confirmed"
            new = replace(
                new,
                start=start,
                confirm_by=deadlines.confirm_deadline(now, start, settings),
                confirmed_at=now if by_provider else None,
                reminders_done=frozenset(),
                joined=frozenset(),
                reschedules=session.reschedules + 1,
            )
            notices.append("rescheduled")
        case Lapse():
            entries.append(ledger.settle(session.id, "release", now, "R8"))
            notices.append("lapsed")
        case NoShowCheck(joined=joined):
            outcome = deadlines.no_show_outcome(session.joined if joined is None else joined)
            if outcome is None:
                raise RuleError("R15", f"session {session.id}: both sides joined")
            entries.append(ledger.settle(session.id, outcome.credit, now, outcome.rule))
            if outcome.charge:
                bill("no_show", "R14")
            new = replace(new, absent=outcome.absent)
            absent = outcome.absent
            notices.append("no_show")
        case End():
            if session.state == "waiting":  # held early, both in, over before its start
                entries.append(ledger.settle(session.id, "consume", now, "R10"))
        case _:
            assert_never(event)

    ledger.post(*entries)  # every entry legal, in order, or RuleError now
    schedule, cancel = job_changes(
        deadlines.live_jobs(session, settings), deadlines.live_jobs(new, settings)
    )
    return Step(
        session=new,
        entries=tuple(entries),
        charges=tuple(charges),
        notices=tuple(
            Notice(
                kind, room.id, session.id, now, party, frozenset(s for s in SIDES if s in absent)
            )
            for kind in notices
        ),
        schedule=schedule,
        cancel=cancel,
    )


def _side(party: Party) -> Side:
    if party == "system":
        raise AssertionError("the table lets only members join or leave")
    return party
