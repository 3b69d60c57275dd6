"""The join gate of one live session (R10): who is present, when it starts, when it ends.

Theory of operation
-------------------
A `JoinGate` is a sans-I/O state machine, one per live session, owned by the hub
of the node that runs the session. It reads no clock: every input carries
``now``. Every input either returns the events it caused (a list, one event per
recipient, see `signaling.events`) or raises a `ClientError` and changes nothing.

Each side (client, provider) has a presence, and moves by `PRESENCE_TRANSITIONS`::

    absent --join--> present --leave--> left --join--> present
                     present --drop---> away --join--> present      (a rejoin)
                                        away --leave-> left
                                        away --grace-> left         (`expire`)

Any other move is a `Conflict` (joining twice, leaving without having joined).

- **R10, who.** Only the session's client and provider may join (`Forbidden`).
- **R8.** Only a confirmed session can start: the caller says whether it is
  (``confirmed=``); an unconfirmed one is a `RuleError` naming R8.
- **R10, when.** Joining opens `GateSettings.opens_before` (10 minutes) before the
  scheduled start and closes at the scheduled end (`RuleError` R10).
- **R10, start.** Whoever joins first gets `Waiting`. When both are present and
  the scheduled start has come, the gate sends `Start` to each side: the client
  is polite, the provider is not. Both present early: both get `Waiting`, and the
  `Start` pair comes from `expire` at the scheduled start (as ``rooms`` moves the
  session to *started* only then); `GateSettings.early_start` starts at once
  instead. The first start has ``resume=False``; every later one (a side dropped
  or left and came back) has ``resume=True``. One `Start` pair per period in
  which both are present.
- **R10, signals.** `check_signal` allows offers, answers and ICE only while both
  are present after a start; before the start it is a `RuleError` R10, after a
  drop, a leave or the end a `Conflict`.
- **Drops.** A dropped websocket (`drop`) makes a side *away* until the rejoin
  grace (`GateSettings.rejoin_grace`, 60 s) runs out; the other side gets
  `PeerAway`, then `Left` if the grace runs out. A later join still works (until the
  end) and resumes the session.
- **End.** The session ends (`Ended`, to both) when the provider leaves after the
  start, when after the start neither side is present nor away, when its scheduled
  end passes, or when the room's rules close it (`close`: cancelled, rescheduled,
  no-show). A provider or client leaving *before* the start only leaves the waiting room.
- **Time.** Deadlines (rejoin graces, a start both are waiting for, the
  scheduled end) fire in `expire`, which
  the hub calls at `next_deadline`. Any input also sees the deadlines due at its
  ``now``: a join at 12:01:30 after a drop at 12:00:00 is not a rejoin within a
  60 s grace, whether or not `expire` ran at 12:01:00. The events those deadlines
  cause come first in the input's result. When an input fails, nothing changes,
  and the due deadlines are still there for `expire`. A ``now`` earlier than one
  already seen is taken as that one (clocks may step back).

- **R15 and history.** `attendance` is an immutable record: every presence
  interval, the starts, the end and its reason. The no-show rule (R15) and the
  session history read it; the gate decides no no-show itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from server.errors import Conflict, Forbidden, RuleError
from server.ids import SessionId, UserId

from .attendance import Attendance, Interval
from .events import END_REASONS, Ended, EndReason, Event, Left, PeerAway, Start, Waiting

Side = Literal["client", "provider"]
Presence = Literal["absent", "present", "away", "left"]
Phase = Literal["pending", "live", "paused", "ended"]
Move = Literal["join", "leave", "drop", "grace"]
CloseReason = Literal["cancelled", "rescheduled", "no_show"]

PRESENCE_TRANSITIONS: Mapping[tuple[Presence, Move], Presence] = {
    ("absent", "join"): "present",
    ("left", "join"): "present",
    ("away", "join"): "present",
    ("present", "leave"): "left",
    ("away", "leave"): "left",
    ("present", "drop"): "away",
    ("away", "grace"): "left",
}
"""How one side's presence moves. A (presence, move) pair not in the table is a `Conflict`."""

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GateSettings:
    """The join gate's settings: when joining opens, how long a dropped side may take to rejoin."""

    opens_before: timedelta = timedelta(minutes=10)
    rejoin_grace: timedelta = timedelta(seconds=60)
    early_start: bool = False
    """Start as soon as both are present, even before the scheduled start."""

    def __post_init__(self) -> None:
        if self.opens_before < timedelta(0) or self.rejoin_grace <= timedelta(0):
            raise ValueError("opens_before must be >= 0 and rejoin_grace > 0")


@dataclass(frozen=True, slots=True)
class GateStatistics:
    """A snapshot of one gate, for metrics and debugging: ids and counts only."""

    session: SessionId
    phase: Phase
    client: Presence
    provider: Presence
    starts: int
    resumes: int
    drops: int
    next_deadline: datetime | None


@dataclass(frozen=True, slots=True)
class _Side:
    presence: Presence = "absent"
    away_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class _State:
    clock: datetime
    phase: Phase
    client: _Side
    provider: _Side
    starts: tuple[datetime, ...]
    intervals: tuple[Interval, ...]
    drops: int
    ended_at: datetime | None
    end_reason: EndReason | None


class JoinGate:
    """The join gate of one live session between `client` and `provider` (R10).

    `start` and `end` are the session's scheduled times (timezone-aware). The hub
    calls `join` on ``live.join``, `leave` on ``live.leave``, `drop` when a
    connection that joined closes, `check_signal` on ``live.signal``, `expire` at
    `next_deadline`, and `close` when the room's rules end the session.
    """

    def __init__(
        self,
        *,
        session: SessionId,
        client: UserId,
        provider: UserId,
        start: datetime,
        end: datetime,
        settings: GateSettings | None = None,
    ) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if not start < end:
            raise ValueError("a session ends after it starts")
        if client == provider:
            raise ValueError("the client and the provider are two people")
        self.session = session
        self.client = client
        self.provider = provider
        self.start = start
        self.end = end
        self.settings = settings or GateSettings()
        self.opens_at = start - self.settings.opens_before
        self._state = _State(
            clock=_NEVER,
            phase="pending",
            client=_Side(),
            provider=_Side(),
            starts=(),
            intervals=(),
            drops=0,
            ended_at=None,
            end_reason=None,
        )

    # -- inputs ---------------------------------------------------------------------------

    def join(self, user: UserId, now: datetime, *, confirmed: bool) -> list[Event]:
        """`user` sent ``live.join``. Returns `Waiting` for them, or a `Start` for each side."""
        side = self._side_of(user)
        if not confirmed:
            raise RuleError("R8", "an unconfirmed session cannot start")
        state, events = self._advanced(now)
        if state.phase == "ended" and state.end_reason != "time_up":
            raise Conflict(f"the live session has ended ({state.end_reason})")
        if state.clock < self.opens_at:
            raise RuleError("R10", f"joining opens at {self.opens_at.isoformat()}")
        if state.clock >= self.end or state.phase == "ended":
            raise RuleError("R10", "joining closed at the end of the session")
        state = self._move(state, side, "join")
        opened = Interval(user, state.clock, None, None)
        state = replace(state, intervals=(*state.intervals, opened))
        if not self._may_start(state):
            self._commit(state)
            return [*events, Waiting(self.session, user)]
        state, started = self._start(state)
        self._commit(state)
        return [*events, *started]

    def leave(self, user: UserId, now: datetime) -> list[Event]:
        """`user` sent ``live.leave``. After the start the provider's leave ends the session."""
        side = self._side_of(user)
        state, events = self._advanced(now)
        self._refuse_if_ended(state)
        was_present = self._presence(state, side) == "present"
        state = self._move(state, side, "leave")
        if was_present:
            state = self._close_interval(state, user, "left")
        if not state.starts:
            self._commit(state)
            return events
        if side == "provider":
            state, ended = self._end(state, "provider_left")
            self._commit(state)
            return [*events, *ended]
        state = replace(state, phase="paused")
        state, more = self._after_gone(state, side)
        self._commit(state)
        return [*events, *more]

    def drop(self, user: UserId, now: datetime) -> list[Event]:
        """The connection on which `user` joined closed without ``live.leave``."""
        side = self._side_of(user)
        state, events = self._advanced(now)
        self._refuse_if_ended(state)
        until = state.clock + self.settings.rejoin_grace
        state = self._move(state, side, "drop", away_until=until)
        state = self._close_interval(state, user, "dropped")
        state = replace(state, drops=state.drops + 1)
        if state.phase != "live":
            self._commit(state)
            return events
        state = replace(state, phase="paused")
        self._commit(state)
        return [*events, PeerAway(self.session, self._user(self._other(side)), user, until)]

    def expire(self, now: datetime) -> list[Event]:
        """Fire every deadline due at `now`: rejoin graces, a start both waited for, the end."""
        state, events = self._advanced(now)
        self._commit(state)
        return events

    def close(self, now: datetime, reason: CloseReason) -> list[Event]:
        """The room's rules end the session (cancelled, rescheduled, a no-show under R15)."""
        if reason not in END_REASONS:
            raise ValueError("unknown close reason")
        state, events = self._advanced(now)
        self._refuse_if_ended(state)
        state, ended = self._end(state, reason)
        self._commit(state)
        return [*events, *ended]

    def check_signal(self, sender: UserId, now: datetime) -> UserId:
        """May `sender` pass a ``live.signal`` now? Returns the recipient, the other side.

        Only while both are present after the start (R10); changes nothing. It
        goes by the `Start` pair the gate has returned (a start due but not yet
        returned by `expire` is not a start the peers know of), and refuses once
        `now` is past a deadline that ends the session.
        """
        side = self._side_of(sender)
        if self._advanced(now)[0].phase == "ended":
            raise Conflict("the live session has ended")
        state = self._state
        if state.phase == "pending":
            raise RuleError(
                "R10", "the live session has not started: no offer, answer or ICE before both join"
            )
        if state.phase == "ended":
            raise Conflict("the live session has ended")
        if state.phase != "live":
            raise Conflict("the other side is not connected; wait for live.start")
        return self._user(self._other(side))

    # -- queries --------------------------------------------------------------------------

    def next_deadline(self) -> datetime | None:
        """When `expire` has something to do next; None once ended.

        A rejoin grace, the scheduled start when both are waiting for it, or the end.
        """
        return self._next_deadline(self._state)

    def presence(self, user: UserId) -> Presence:
        """Where `user` stands in the session, as of the last input."""
        return self._presence(self._state, self._side_of(user))

    def statistics(self) -> GateStatistics:
        s = self._state
        return GateStatistics(
            session=self.session,
            phase=s.phase,
            client=s.client.presence,
            provider=s.provider.presence,
            starts=len(s.starts),
            resumes=max(len(s.starts) - 1, 0),
            drops=s.drops,
            next_deadline=self.next_deadline(),
        )

    def attendance(self) -> Attendance:
        """The immutable presence record of the session, for R15 and the session history."""
        s = self._state
        return Attendance(
            session=self.session,
            client=self.client,
            provider=self.provider,
            scheduled_start=self.start,
            scheduled_end=self.end,
            opens_at=self.opens_at,
            starts=s.starts,
            intervals=s.intervals,
            ended_at=s.ended_at,
            end_reason=s.end_reason,
        )

    # -- transitions ----------------------------------------------------------------------

    def _advanced(self, now: datetime) -> tuple[_State, list[Event]]:
        """The state at `now`, with the events of the deadlines due by then (not committed)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        state = self._state
        events: list[Event] = []
        now = max(now, state.clock)
        while (deadline := self._next_deadline(state)) is not None and deadline <= now:
            state = replace(state, clock=deadline)
            if deadline >= self.end:
                state, more = self._end(state, "time_up")
                events += more
                continue
            if self._may_start(state):
                state, more = self._start(state)
                events += more
                continue
            for side in _SIDES:
                if _side_state(state, side).away_until == deadline:
                    state = self._move(state, side, "grace")
                    if state.starts:
                        state, more = self._after_gone(state, side)
                        events += more
        return replace(state, clock=now), events

    def _may_start(self, state: _State) -> bool:
        """Both present, not yet live, and the scheduled start has come (or may be early)."""
        both = state.client.presence == state.provider.presence == "present"
        timely = self.settings.early_start or state.clock >= self.start
        return both and timely and state.phase in ("pending", "paused")

    def _start(self, state: _State) -> tuple[_State, list[Event]]:
        resume = bool(state.starts)
        state = replace(state, phase="live", starts=(*state.starts, state.clock))
        return state, [
            Start(self.session, self.client, polite=True, resume=resume),
            Start(self.session, self.provider, polite=False, resume=resume),
        ]

    def _next_deadline(self, state: _State) -> datetime | None:
        if state.phase == "ended":
            return None
        graces = [s.away_until for s in (state.client, state.provider) if s.away_until is not None]
        both = state.client.presence == state.provider.presence == "present"
        waiting = [self.start] if both and state.phase != "live" else []
        return min([*graces, *waiting, self.end])

    def _after_gone(self, state: _State, side: Side) -> tuple[_State, list[Event]]:
        """`side` is gone for good after the start: tell the other, or end if both are gone."""
        other = self._other(side)
        match self._presence(state, other):
            case "present":
                return state, [Left(self.session, self._user(other), self._user(side))]
            case "away":
                return state, []
            case _:
                return self._end(state, "both_left")

    def _end(self, state: _State, reason: EndReason) -> tuple[_State, list[Event]]:
        for user in (self.client, self.provider):
            state = self._close_interval(state, user, "ended")
        state = replace(
            state,
            phase="ended",
            client=_ended_side(state.client),
            provider=_ended_side(state.provider),
            ended_at=state.clock,
            end_reason=reason,
        )
        return state, [Ended(self.session, u, reason) for u in (self.client, self.provider)]

    def _move(
        self, state: _State, side: Side, move: Move, *, away_until: datetime | None = None
    ) -> _State:
        new = PRESENCE_TRANSITIONS.get((self._presence(state, side), move))
        if new is None:
            raise Conflict(_REFUSALS[move])
        if side == "client":
            return replace(state, client=_Side(new, away_until))
        return replace(state, provider=_Side(new, away_until))

    def _close_interval(
        self, state: _State, user: UserId, how: Literal["left", "dropped", "ended"]
    ) -> _State:
        intervals = list(state.intervals)
        for i in range(len(intervals) - 1, -1, -1):
            if intervals[i].user == user:
                if intervals[i].left_at is None:
                    intervals[i] = replace(intervals[i], left_at=state.clock, how=how)
                break
        return replace(state, intervals=tuple(intervals))

    # -- helpers --------------------------------------------------------------------------

    def _commit(self, state: _State) -> None:
        self._state = state

    def _refuse_if_ended(self, state: _State) -> None:
        if state.phase == "ended":
            raise Conflict("the live session has ended")

    def _side_of(self, user: UserId) -> Side:
        if user == self.client:
            return "client"
        if user == self.provider:
            return "provider"
        raise Forbidden("only the session's client and provider take part in it")

    def _user(self, side: Side) -> UserId:
        return self.client if side == "client" else self.provider

    @staticmethod
    def _other(side: Side) -> Side:
        return "provider" if side == "client" else "client"

    @staticmethod
    def _presence(state: _State, side: Side) -> Presence:
        return _side_state(state, side).presence


_REFUSALS: Mapping[Move, str] = {
    "join": "already joined this live session",
    "leave": "not in this live session",
    "drop": "not in this live session",
    "grace": "no rejoin grace is running",
}


_SIDES: tuple[Side, ...] = ("client", "provider")


def _side_state(state: _State, side: Side) -> _Side:
    return state.client if side == "client" else state.provider


def _ended_side(side: _Side) -> _Side:
    return _Side("left" if side.presence != "absent" else "absent", None)
