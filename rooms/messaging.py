"""The messaging-session lifecycle of `eap` / `bh` rooms (R5) as a transition table.

Theory of operation
-------------------
R5: the client books a messaging session and starts it when ready. While it runs
both sides see that a messaging session is in progress, and messages may flow
(R2, `rooms.capabilities.check_send`). Once started it cannot be cancelled, and
it can never be switched to a live session (a separate live session can still be
booked with a live credit). It ends by itself after its plan's
`messaging_session_length` (default 30 minutes): a deadline job (R17).
Before it starts, the client or the provider may cancel it (R13). Messaging
sessions use no live-session credits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, assert_never

from rooms.deadlines import messaging_jobs
from rooms.effects import Job, Notice, NoticeKind, Step, job_changes
from rooms.room import Actor, Party, Room, party_of
from rooms.sessions import (
    MESSAGING_FINAL_STATES,
    MESSAGING_STATES,
    MessagingSession,
    MessagingState,
    check_aware,
)
from rooms.transitions import Transition, render_mermaid, select


@dataclass(frozen=True)
class StartMessaging:
    """The client starts the booked messaging session (R5)."""


@dataclass(frozen=True)
class CancelMessaging:
    """The client or provider cancels it before it starts (R5, R13)."""


@dataclass(frozen=True)
class EndMessaging:
    """Its length has passed (R5): fired by the `end_messaging` job."""


@dataclass(frozen=True)
class SwitchToLive:
    """An attempt to turn it into a live session: always refused (R5)."""


MessagingEvent = StartMessaging | CancelMessaging | EndMessaging | SwitchToLive
MessagingEventName = Literal["start", "cancel", "end", "switch_to_live"]
MessagingGuard = Literal["length_passed"]

M = Transition[MessagingState, MessagingEventName, MessagingGuard]
_CLIENT: frozenset[Party] = frozenset({"client"})
_MEMBERS: frozenset[Party] = frozenset({"client", "provider"})
_CLOCK: frozenset[Party] = frozenset({"system"})

MESSAGING_TRANSITIONS: tuple[M, ...] = (
    M("booked", "start", "started", _CLIENT, "R5"),
    M("booked", "cancel", "cancelled", _MEMBERS, "R13"),
    M("started", "end", "ended", _CLOCK, "R5", "length_passed"),
)
"""The whole messaging-session lifecycle; no row leaves `started` but the clock's."""


def event_name(event: MessagingEvent) -> MessagingEventName:
    match event:
        case StartMessaging():
            return "start"
        case CancelMessaging():
            return "cancel"
        case EndMessaging():
            return "end"
        case SwitchToLive():
            return "switch_to_live"
        case _:
            assert_never(event)


def event_for_job(job: Job) -> MessagingEvent:
    """R17: the event a fired `end_messaging` job applies (with actor SYSTEM)."""
    if job.kind != "end_messaging":
        raise ValueError(f"job {job.kind} is not a messaging-session job")
    return EndMessaging()


def messaging_diagram() -> str:
    """The messaging-session lifecycle as a Mermaid stateDiagram, drawn from the table."""
    return render_mermaid(
        MESSAGING_TRANSITIONS,
        MESSAGING_STATES,
        ("booked", "book by client (R5)"),
        MESSAGING_FINAL_STATES,
    )


def apply(
    session: MessagingSession,
    event: MessagingEvent,
    now: datetime,
    actor: Actor,
    *,
    room: Room,
) -> Step[MessagingSession]:
    """One step of a messaging session, or a RuleError (R5) and nothing changed."""
    check_aware(now, "now")
    if room.id != session.room:
        raise ValueError(f"session {session.id} belongs to room {session.room}")
    party = party_of(room, actor)

    def holds(guard: MessagingGuard) -> bool:
        match guard:
            case "length_passed":
                ends = session.ends_at
                return ends is not None and now >= ends
            case _:
                assert_never(guard)

    row = select(
        MESSAGING_TRANSITIONS,
        session.state,
        event_name(event),
        party,
        holds,
        subject=f"messaging session {session.id}",
        refusal_rule="R5",
    )
    new = replace(session, state=row.target, by=party, at=now)
    notice: NoticeKind
    match event:
        case StartMessaging():
            new = replace(new, started_at=now)
            notice = "messaging_started"
        case CancelMessaging():
            notice = "cancelled"
        case EndMessaging():
            notice = "messaging_ended"
        case SwitchToLive():
            raise AssertionError("the table has no row for switch_to_live")
        case _:
            assert_never(event)
    schedule, cancel = job_changes(messaging_jobs(session), messaging_jobs(new))
    return Step(
        session=new,
        notices=(Notice(notice, room.id, session.id, now, party),),
        schedule=schedule,
        cancel=cancel,
    )
