"""The events the join gate returns, one per recipient, and the wire frame each becomes.

Every event names its recipient in ``to``: the hub sends the frame to every
connection of that user that joined the session (or, for `Ended`, to every
connection of that user subscribed to the room). An event is never addressed to
anyone but the session's client or provider.

=============  ================  ==========================================================
event          frame             when
=============  ================  ==========================================================
`Waiting`      ``live.waiting``  the recipient joined and the other side is not there (R10)
`Start`        ``live.start``    both are present: one per side, exactly one ``polite``
`PeerAway`     ``live.away``     the other side's connection dropped; it may come back
                                 until ``until`` (the rejoin grace)
`Left`         ``live.left``     the other side left, or its rejoin grace ran out
`Ended`        ``live.ended``    the session is over, for ``reason``; one per side
=============  ================  ==========================================================

``live.away`` and the ``resume`` field of ``live.start`` are additions to the v1
wire contract (PROTOCOL.md allows new frames and fields); a client that does not
know ``live.away`` may ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, assert_never

from server.ids import SessionId, UserId

from .turn import IceServer

EndReason = Literal["provider_left", "both_left", "time_up", "cancelled", "rescheduled", "no_show"]
"""Why a live session ended.

- ``provider_left``: the provider sent ``live.leave`` after the start.
- ``both_left``: after the start, neither side is present nor inside its rejoin grace.
- ``time_up``: the session's scheduled end passed.
- ``cancelled`` / ``rescheduled`` / ``no_show``: the room's rules closed it (`JoinGate.close`).
"""

END_REASONS: tuple[EndReason, ...] = (
    "provider_left",
    "both_left",
    "time_up",
    "cancelled",
    "rescheduled",
    "no_show",
)


@dataclass(frozen=True, slots=True)
class Waiting:
    """The recipient has joined; the other side has not (or not yet again)."""

    session: SessionId
    to: UserId
    frame: Literal["live.waiting"] = "live.waiting"


@dataclass(frozen=True, slots=True)
class Start:
    """Both sides are present: start (or resume) media negotiation.

    ``polite`` is true for the client and false for the provider, always, so the
    roles are the same on every resume. ``resume`` is false for the first start of
    the session and true for every later one (after a drop and rejoin, or a leave
    and rejoin): the app restarts ICE on a peer connection it still has, with the
    fresh ``ice_servers`` of this frame.
    """

    session: SessionId
    to: UserId
    polite: bool
    resume: bool
    frame: Literal["live.start"] = "live.start"


@dataclass(frozen=True, slots=True)
class PeerAway:
    """``user``'s connection dropped while the session ran; it may rejoin until ``until``."""

    session: SessionId
    to: UserId
    user: UserId
    until: datetime
    frame: Literal["live.away"] = "live.away"


@dataclass(frozen=True, slots=True)
class Left:
    """``user`` left (``live.leave``) or did not come back within the rejoin grace."""

    session: SessionId
    to: UserId
    user: UserId
    frame: Literal["live.left"] = "live.left"


@dataclass(frozen=True, slots=True)
class Ended:
    """The live session is over; nobody can join it again."""

    session: SessionId
    to: UserId
    reason: EndReason
    frame: Literal["live.ended"] = "live.ended"


Event = Waiting | Start | PeerAway | Left | Ended


def frame_of(event: Event, *, ice_servers: list[IceServer] | None = None) -> dict[str, object]:
    """The wire frame of `event`, for its recipient ``event.to``.

    A `Start` frame needs ``ice_servers`` for that recipient (`signaling.turn.ice_servers`,
    minted at this moment so the TURN credentials are fresh); other frames ignore it.
    """
    match event:
        case Waiting(session=session):
            return {"t": event.frame, "session": session}
        case Start(session=session, polite=polite, resume=resume):
            if ice_servers is None:
                raise ValueError("a live.start frame needs the recipient's ice_servers")
            return {
                "t": event.frame,
                "session": session,
                "polite": polite,
                "resume": resume,
                "ice_servers": ice_servers,
            }
        case PeerAway(session=session, user=user, until=until):
            return {"t": event.frame, "session": session, "user": user, "until": until.isoformat()}
        case Left(session=session, user=user):
            return {"t": event.frame, "session": session, "user": user}
        case Ended(session=session, reason=reason):
            return {"t": event.frame, "session": session, "reason": reason}
        case _:
            assert_never(event)
