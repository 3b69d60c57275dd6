"""Live sessions on the hub: `live.join`, `live.signal`, `live.leave`, and dropped sockets.

Theory of operation: each live session that someone joined has a `JoinGate` (R10) on
this node. A join is first a step of the session's lifecycle (`rooms`: confirmed only,
inside the join window, R8/R10; the join is recorded for the no-show rule R15), then an
input to the gate, whose events become frames for the two participants. Frames reach a
participant through the broker on the user's channel, addressed to the one connection
that joined, so the two may sit on different connections and nodes. `live.signal` passes
only while the gate says the session is live, and only after its `data` has been checked
(kind, size, and SDP against the modality: R3, R6); it is relayed unchanged. The gate's
own deadlines (rejoin grace, end) run on a timer; when the gate ends the session, its
end is a lifecycle step too, so start, end and who was present are stored.

A gate lives on the node where its session was first joined; several nodes would need
the gate state in the store (noted in docs/live.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rooms import lifecycle
from server import codec
from server.codec import Frame
from server.config import Settings
from server.connection import Connection
from server.errors import Conflict, Forbidden, NotFound, RuleError
from server.hub import Hub
from server.ids import SessionId, UserId
from server.sessions import Sessions
from signaling.events import Ended, Event, Start, frame_of
from signaling.gate import GateSettings, JoinGate
from signaling.payload import check_signal_data
from signaling.turn import IceSettings, ice_servers

log = logging.getLogger("confide.live")


@dataclass
class _Live:
    """A session's gate on this node and who is in it from where."""

    gate: JoinGate
    modality: Any
    service: Any
    conns: dict[UserId, str] = field(default_factory=dict)  # user -> connection id
    timer: asyncio.TimerHandle | None = None


class LiveSessions:
    """The live-session frames of one node."""

    def __init__(self, settings: Settings, hub: Hub, sessions: Sessions) -> None:
        self.settings = settings
        self.hub = hub
        self.sessions = sessions
        self.gates: dict[SessionId, _Live] = {}
        self.ice = IceSettings(
            stun_urls=_urls(settings.stun_urls), turn_urls=_urls(settings.turn_urls),
            secret=settings.turn_secret or None, ttl=timedelta(seconds=settings.turn_ttl_s))
        self.gate_settings = GateSettings(
            opens_before=timedelta(minutes=settings.join_opens_min),
            rejoin_grace=timedelta(seconds=settings.rejoin_grace_s), early_start=True)
        self._tasks: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        for live in self.gates.values():
            if live.timer:
                live.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- frames -----------------------------------------------------------------------------

    async def join(self, conn: Connection, frame: Frame, rid: object) -> None:
        session = _session_id(frame)
        view = await self.sessions.view_session(session)
        if view["kind"] != "live":
            raise NotFound(f"no live session {session}")
        if conn.user not in (view["client"], view["provider"]):
            raise Forbidden("only the session's client and provider may join it", rule="R1")
        # The lifecycle decides first (confirmed only, R8; inside the join window, R10) and
        # records the join (R15); only then does the session get a gate on this node.
        await self.sessions.live_step(session, lifecycle.Join(), conn.user)
        live = self.gates.get(session)
        if live is None:
            live = self.gates[session] = _Live(self._gate(view), view["modality"],
                                               await self._service(view))
        previous = live.conns.get(conn.user)
        now = self.sessions.clock()
        if previous is not None and previous != conn.id:
            # The same person from a new connection (a reconnect): a drop, then a rejoin.
            with contextlib.suppress(Conflict):
                await self._send(live, live.gate.drop(conn.user, now))
        events = live.gate.join(conn.user, now, confirmed=True)
        live.conns[conn.user] = conn.id
        conn.live_sessions.add(session)
        await self._send(live, events)
        if rid is not None:
            conn.send({"t": "live.joined", "re": rid, "session": session})

    async def signal(self, conn: Connection, frame: Frame, rid: object) -> None:
        session = _session_id(frame)
        live = self.gates.get(session)
        if live is None or live.conns.get(conn.user) != conn.id:
            raise RuleError("R10", "join the session first; signaling starts when both are in")
        peer = live.gate.check_signal(conn.user, self.sessions.clock())
        data = frame.get("data")
        check_signal_data(data, modality=live.modality, service=live.service,
                          max_bytes=self.settings.max_signal_bytes)
        target = live.conns.get(peer)
        if target is None:
            raise Conflict("the other side is not connected")
        await self.hub.direct(peer, target, {"t": "live.signal", "session": session,
                                             "from": conn.user, "data": data})

    async def leave(self, conn: Connection, frame: Frame, rid: object) -> None:
        session = _session_id(frame)
        live = self.gates.get(session)
        if live is None or live.conns.get(conn.user) != conn.id:
            raise Conflict("not in this live session")
        events = live.gate.leave(conn.user, self.sessions.clock())
        live.conns.pop(conn.user, None)
        conn.live_sessions.discard(session)
        await self._send(live, events)
        with contextlib.suppress(RuleError, Conflict):
            await self.sessions.live_step(session, lifecycle.Leave(), conn.user)
        if rid is not None:
            conn.send({"t": "live.left", "re": rid, "session": session, "user": conn.user})

    async def session_changed(self, view: dict[str, Any]) -> None:
        """The room's rules moved a session: a cancelled, lapsed, missed or moved session
        ends its open gate (`live.ended` with the reason) so nobody waits in it."""
        live = self.gates.get(SessionId(view["session"]))
        if live is None or view.get("kind") != "live":
            return
        reason: Any = None
        if view["state"] in ("cancelled", "late-cancelled", "lapsed"):
            reason = "cancelled"
        elif view["state"] == "no-show":
            reason = "no_show"
        elif datetime.fromisoformat(view["start"]) != live.gate.start:
            reason = "rescheduled"
        if reason is not None:
            with contextlib.suppress(Conflict):
                await self._send(live, live.gate.close(self.sessions.clock(), reason))

    async def dropped(self, conn: Connection) -> None:
        """A connection that had joined sessions closed: each side is away for the grace."""
        for session in list(conn.live_sessions):
            live = self.gates.get(SessionId(session))
            if live is None or live.conns.get(conn.user) != conn.id:
                continue
            with contextlib.suppress(Conflict, RuleError):
                await self._send(live, live.gate.drop(conn.user, self.sessions.clock()))

    # -- inside -----------------------------------------------------------------------------

    def _gate(self, view: dict[str, Any]) -> JoinGate:
        return JoinGate(session=SessionId(view["session"]), client=UserId(view["client"]),
                        provider=UserId(view["provider"]),
                        start=datetime.fromisoformat(view["start"]),
                        end=datetime.fromisoformat(view["end"]), settings=self.gate_settings)

    async def _service(self, view: dict[str, Any]) -> Any:
        return (await self.hub.room(view["room"])).service

    async def _send(self, live: _Live, events: list[Event]) -> None:
        now = self.sessions.clock()
        for event in events:
            target = live.conns.get(event.to)
            if isinstance(event, Start):
                frame = frame_of(event, ice_servers=ice_servers(event.to, now, self.ice))
            else:
                frame = frame_of(event)
            if target is not None:
                await self.hub.direct(event.to, target, frame)
        if any(isinstance(event, Ended) for event in events):
            await self._finish(live)
        else:
            self._arm(live)

    def _arm(self, live: _Live) -> None:
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        deadline = live.gate.next_deadline()
        if deadline is None or live.gate.session not in self.gates:
            return
        delay = max(0.0, (deadline - self.sessions.clock()).total_seconds())
        loop = asyncio.get_running_loop()
        live.timer = loop.call_later(delay, lambda: self._spawn(self._expire(live)))

    async def _expire(self, live: _Live) -> None:
        await self._send(live, live.gate.expire(self.sessions.clock()))

    async def expire_due(self) -> None:
        """Run every gate's deadlines that are due now (the clock may have jumped)."""
        for live in list(self.gates.values()):
            await self._expire(live)

    async def _finish(self, live: _Live) -> None:
        session = live.gate.session
        if self.gates.pop(session, None) is None:
            return
        if live.timer is not None:
            live.timer.cancel()
        await self._record_end(session, live)

    async def _record_end(self, session: SessionId, live: _Live) -> None:
        attendance = live.gate.attendance()
        log.info("live session %s ended: %s", session, attendance.end_reason)
        await self.sessions.record_attendance(session, attendance)
        if attendance.started_at is not None:
            try:
                await self.sessions.live_step(session, lifecycle.End(), live.gate.provider)
            except (RuleError, NotFound, Conflict) as exc:
                log.info("live session %s: end not recorded (%s)", session, exc.message)
            except Exception:
                log.exception("live session %s: recording its end failed", session)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _session_id(frame: Frame) -> SessionId:
    value = codec.text_field(frame, "session", max_chars=64)
    assert value is not None
    return SessionId(value)


def _urls(text: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in text.split(",") if u.strip())
