"""One simulated user: its websocket, its hello and sub, its sending schedule and its receipts.

A :class:`ChatUser` is one member of a two-person room. It connects, says
``hello``, subscribes (with ``since`` when it resumes) and then, while the run
lasts, sends stamped text messages at its rate with think-time jitter, a
``typing`` before some of them and a ``read`` receipt for what it received. It
records the server's acks in its own :class:`~loadtest.tally.Flow` and its
partner's messages in the partner's flow, so every message is checked on both
ends. Rate-limited sends are retried with the same ``cmid``; unacknowledged
sends are repeated with the same ``cmid`` after a reconnect (the server answers
``dup``). Nothing here decides when to drop or stop: the worker does, through
:meth:`ChatUser.interrupt` and the :class:`Gate`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.fastws import (
    OPEN,
    ClientConnection,
    ConnectionClosed,
    Data,
    InvalidHandshake,
    InvalidStatus,
    connect,
)
from loadtest.tally import Flow, Meter, Receiver
from loadtest.wire import Codec, Frame, cmid_for, n_from_cmid, read_stamp, stamp_body

OPEN_TIMEOUT_S = 15.0
MAX_RECONNECTS = 50
RETRY_AFTER_S = 0.05
MAX_RETRIES = 256


@dataclass(frozen=True)
class Member:
    """A provisioned user: who it is, its token, its room and the node it talks to."""

    user: str
    token: str
    room: str
    url: str  # the websocket URL (…/ws)


@dataclass(frozen=True)
class ChatSettings:
    rate: float  # messages a second, per user
    jitter: float  # think time varies by ± this share of the interval
    typing_share: float  # share of messages preceded by `typing on`
    read_every_s: float  # at most one `read` receipt per this many seconds (0: none)
    padding: int  # extra body bytes
    heartbeat_s: float  # an app `ping` when nothing was sent for this long


class Timers:
    """Many wake-ups on one event-loop timer: a heap of ``(time.monotonic() due, fn)``.

    A wake-up costs a heap push and a call instead of an event-loop timer handle
    of its own. The loop's timers have a resolution of a millisecond; so do
    these: the one timer fires at most once a millisecond and runs, in time
    order, every wake-up due by then. A function run here must not raise.
    """

    __slots__ = ("_driving", "_heap", "_loop", "_seq", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._driving = False

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once ``time.monotonic()`` reaches ``when``."""
        heapq.heappush(self._heap, (when, next(self._seq), fn))
        if when < self._timer_at and not self._driving:
            self._arm(when, time.monotonic())

    def _arm(self, when: float, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(max(when - now, 0.001), self._drive)
        self._timer_at = when

    def _drive(self) -> None:
        self._timer, self._timer_at = None, math.inf
        heap = self._heap
        self._driving = True
        try:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2]()
        finally:
            self._driving = False
            if heap:
                self._arm(heap[0][0], time.monotonic())


class Gate:
    """The phases of a worker, shared by its users.

    ``go`` starts sending, ``stop`` ends it; ``opening`` bounds the opens in
    flight; ``all_opened`` is set once every user's first open ended (either way),
    ``all_resumed`` once every user dropped by a storm is back. ``timers`` runs
    the users' sending schedules.
    """

    def __init__(self, users: int, open_concurrency: int) -> None:
        self.go = asyncio.Event()
        self.go_at = 0.0
        self.stop = asyncio.Event()
        self.drained = asyncio.Event()  # set by a receipt or ack that leaves nothing outstanding
        self.opening = asyncio.Semaphore(open_concurrency)
        self.users = users
        self.first_opens = 0
        self.all_opened = asyncio.Event()
        self.resumes_expected = 0
        self.resumes = 0
        self.all_resumed = asyncio.Event()
        self.timers = Timers()
        if users == 0:
            self.all_opened.set()

    def mark_opened(self) -> None:
        self.first_opens += 1
        if self.first_opens >= self.users:
            self.all_opened.set()

    def expect_resumes(self, n: int) -> None:
        self.resumes_expected, self.resumes = n, 0
        self.all_resumed.clear()
        if n == 0:
            self.all_resumed.set()

    def mark_resumed(self) -> None:
        self.resumes += 1
        if self.resumes >= self.resumes_expected:
            self.all_resumed.set()


class OpenFailed(Exception):
    """The connection, hello or sub did not complete."""


class ChatUser:
    """One member of a room, sending to and receiving from its partner."""

    def __init__(
        self,
        member: Member,
        flow: Flow,
        partner_flow: Flow,
        settings: ChatSettings,
        meter: Meter,
        codec: Codec,
        rng: random.Random,
        gate: Gate,
    ) -> None:
        self.gate = gate
        self.member = member
        self.flow = flow
        self.partner_flow = partner_flow
        self.receiver = Receiver()
        self.settings = settings
        self.meter = meter
        self.codec = codec
        self.rng = rng
        self.pending: dict[int, int] = {}  # n → first send time (monotonic ns), not yet acked
        self.retry: deque[tuple[float, int]] = deque()
        self.unread_seq = 0
        self.read_seq = 0
        self.ws: ClientConnection | None = None
        self._interrupt = asyncio.Event()
        self._interrupt_reason = ""
        self._end_reason = ""
        self.resumed_at_ns = 0  # when the last open completed
        self.heartbeat_s = settings.heartbeat_s

    # -- control, from the worker -------------------------------------------------

    def interrupt(self, reason: str) -> None:
        """Ask the current session to end: ``done`` (close), ``drop`` (abort and resume)."""
        self._interrupt_reason = reason
        self._interrupt.set()

    # -- opening ------------------------------------------------------------------

    async def open(self, since: int | None) -> ClientConnection:
        """Connect, hello and sub (with backlog when ``since`` is given), retrying a few times."""
        for attempt in range(5):
            try:
                async with self.gate.opening:
                    return await self._open_once(since)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, OpenFailed) as exc:
                self.meter.errors.add(open_error_name(exc))
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0) * (0.5 + self.rng.random()))
        raise OpenFailed(self.member.user)

    async def _open_once(self, since: int | None) -> ClientConnection:
        t0 = time.monotonic_ns()
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            ws = await connect(
                self.member.url,
                subprotocols=[self.codec.subprotocol],
                close_timeout=2,
                max_queue=1024,
                open_timeout=OPEN_TIMEOUT_S,
            )
            try:
                ws.send(self.codec.encode({"t": "hello", "token": self.member.token}))
                welcome = self.codec.decode(await ws.recv())
                if welcome.get("t") != "welcome":
                    raise OpenFailed(f"hello answered {welcome.get('t')}/{welcome.get('code')}")
                beat = welcome.get("heartbeat_s")
                if isinstance(beat, int | float) and beat > 0:
                    self.heartbeat_s = min(self.settings.heartbeat_s, beat * 0.8)
                sub: Frame = {"t": "sub", "room": self.member.room, "id": "sub"}
                if since is not None:
                    sub["since"] = since
                ws.send(self.codec.encode(sub))
                while True:
                    frame = self.codec.decode(await ws.recv())
                    kind = frame.get("t")
                    if kind == "subbed":
                        break
                    if kind == "error":
                        raise OpenFailed(f"sub answered {frame.get('code')}")
                    self.on_frame(frame, backlog=True)
            except BaseException:
                ws.abort()
                raise
        self.meter.record_setup(time.monotonic_ns() - t0)
        self.resumed_at_ns = time.monotonic_ns()
        return ws

    # -- the life of the user -----------------------------------------------------

    async def life(self, offline_at_s: float | None, offline_for_s: float) -> None:
        """Connect, wait for go, then send and receive until interrupted with ``done``."""
        gate = self.gate
        try:
            ws = await self.open(None)
        except OpenFailed:
            self.meter.errors.add("user_failed")
            return
        finally:
            gate.mark_opened()
        self.meter.connections += 1
        offline_after: float | None = offline_at_s
        for _ in range(MAX_RECONNECTS):
            reason = await self._session(ws, offline_after)
            offline_after = None
            self.meter.connections -= 1
            if reason == "done":
                return
            if reason == "offline":
                await asyncio.sleep(offline_for_s)
            elif reason == "closed":
                self.meter.errors.add("closed_by_server")
            try:
                ws = await self.open(self.receiver.last_seq)
            except OpenFailed:
                self.meter.errors.add("user_failed")
                return
            finally:
                if reason == "drop":
                    gate.mark_resumed()
            self.meter.connections += 1
        self.meter.errors.add("too_many_reconnects")

    async def _session(self, ws: ClientConnection, offline_after: float | None) -> str:
        """Send and receive on one connection until it ends; why it ended."""
        self.ws = ws
        self._interrupt.clear()
        self._end_reason = ""
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(self._send_loop(ws, self.gate))
            watcher = tg.create_task(self._watch(ws, offline_after))
            code = await self._read_loop(ws)
            sender.cancel()
            watcher.cancel()
        self.ws = None
        if not self._end_reason and code is not None:
            self.meter.errors.add(f"close_{code}")
        return self._end_reason or "closed"

    async def _watch(self, ws: ClientConnection, offline_after: float | None) -> None:
        """End the session when interrupted, or ``offline_after`` seconds after go."""
        await self.gate.go.wait()
        delay = None
        if offline_after is not None:
            delay = max(0.0, self.gate.go_at + offline_after - time.monotonic())
        try:
            async with asyncio.timeout(delay):
                await self._interrupt.wait()
            self._end_reason = self._interrupt_reason
        except TimeoutError:
            self._end_reason = "offline"
        if self._end_reason == "drop":
            ws.abort()  # the network goes away: no closing handshake
        else:
            await ws.close()

    # -- receiving ----------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> int | None:
        """Every frame to :meth:`on_frame` (a call per message, no task switch) until closed."""
        try:
            await ws.handle_messages(self._on_data)
        except ConnectionClosed as exc:
            return exc.code
        return None

    def _on_data(self, data: Data) -> None:
        self.on_frame(self.codec.decode(data), backlog=False)

    def on_frame(self, frame: Frame, backlog: bool) -> None:
        meter = self.meter
        meter.frames_in += 1
        kind = frame.get("t")
        if kind == "msg":
            self._on_msg(frame, backlog)
            if self.gate.stop.is_set():
                self._check_drained()
        elif kind == "ack":
            n = n_from_cmid(frame.get("cmid"))
            if n is None or not self.flow.on_ack(n):
                meter.errors.add("foreign_ack")
                return
            sent_ns = self.pending.pop(n, None)
            if sent_ns is not None:
                meter.ack.record_ns(time.monotonic_ns() - sent_ns)
            if self.gate.stop.is_set():
                self._check_drained()
        elif kind == "error":
            code = str(frame.get("code"))
            meter.errors.add(code)
            re = frame.get("re")
            if code == "rate_limited" and isinstance(re, int) and re in self.pending:
                if len(self.retry) < MAX_RETRIES:
                    self.retry.append((time.monotonic() + RETRY_AFTER_S, re))

    def _check_drained(self) -> None:
        if self.gate.stop.is_set() and self.meter.totals.outstanding() <= 0:
            self.gate.drained.set()

    def _on_msg(self, frame: Frame, backlog: bool) -> None:
        if frame.get("from") == self.member.user:
            return  # our own message, in a backlog
        seq = frame.get("seq")
        n = n_from_cmid(frame.get("cmid"))
        stamp = read_stamp(frame.get("body"))
        if not isinstance(seq, int) or n is None or stamp is None or stamp[0] != n:
            self.meter.errors.add("foreign_msg")
            return
        first = self.partner_flow.on_receive(n, self.receiver.check(seq, n))
        self.unread_seq = max(self.unread_seq, seq)
        if not first:
            return
        if backlog:
            self.meter.backlog_delivered += 1
        else:
            self.meter.latency.record_ns(time.monotonic_ns() - stamp[1])

    # -- sending ------------------------------------------------------------------

    async def _send_loop(self, ws: ClientConnection, gate: Gate) -> None:
        """Send on the schedule from go until stop (or until the connection closes)."""
        await gate.go.wait()
        sender = _Sender(self, ws)
        try:
            await sender.done
        finally:
            sender.cancel()

    def _msg_frame(self, n: int, send_ns: int) -> bytes | str:
        body = stamp_body(n, self.settings.padding, send_ns)
        frame = {
            "t": "send",
            "room": self.member.room,
            "cmid": cmid_for(n),
            "kind": "text",
            "body": body,
            "id": n,
        }
        return self.codec.encode(frame)


class _Sender:
    """The sending schedule of one session, run as wake-ups of the worker's :class:`Timers`.

    The schedule is the one a loop of ``asyncio.sleep`` gives (millisecond
    timers either way) without a future, a task step and a timer handle per
    wake-up, and the frames due at one wake-up (a retry, ``typing``, the
    message, ``read``, ``ping``) go out in one write. ``done`` completes when
    sending ends: stop, or the connection closing (result None), or a bug (its
    exception); a wake-up after that does nothing.
    """

    __slots__ = ("done", "interval", "jitter", "last_out", "last_read", "next_t", "ping", "read_s",
                 "room", "timers", "typing", "typing_share", "user", "ws")

    def __init__(self, user: ChatUser, ws: ClientConnection) -> None:
        self.user = user
        self.ws = ws
        self.timers = user.gate.timers
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        s = user.settings
        self.typing_share = s.typing_share
        self.jitter = s.jitter
        self.read_s = s.read_every_s
        self.room = room = user.member.room
        self.typing = user.codec.encode({"t": "typing", "room": room, "on": True})
        self.ping = user.codec.encode({"t": "ping"})
        out: list[bytes | str] = []
        for n in sorted(user.pending):  # after a reconnect: the same cmid again
            out.append(user._msg_frame(n, user.pending[n]))
        if out and ws.is_open:
            ws.send_many(out)
            user.meter.frames_out += len(out)
        self.interval = 1.0 / s.rate if s.rate > 0 else 0.0
        now = time.monotonic()
        self.next_t = now + (user.rng.uniform(0, self.interval) if self.interval else 1e18)
        self.last_out = self.last_read = now
        self._run(False)

    def cancel(self) -> None:
        if not self.done.done():
            self.done.cancel()

    def _wake(self) -> None:
        self._run(True)

    def _run(self, after_sleep: bool) -> None:
        if self.done.done():
            return
        user = self.user
        stop = user.gate.stop
        try:
            if after_sleep and not stop.is_set() and not self._work(time.monotonic()):
                self.done.set_result(None)
                return
            while not stop.is_set():
                now = time.monotonic()
                wake = self.next_t
                beat = self.last_out + user.heartbeat_s
                if beat < wake:
                    wake = beat
                if user.retry and user.retry[0][0] < wake:
                    wake = user.retry[0][0]
                if wake > now:
                    self.timers.at(wake, self._wake)
                    return
                if not self._work(now):
                    break
        except Exception as exc:
            self.done.set_exception(exc)
            return
        self.done.set_result(None)

    def _work(self, now: float) -> bool:
        """Send what is due at ``now``; False once the connection is closing."""
        ws = self.ws
        if ws.state != OPEN:
            return False
        user = self.user
        meter = user.meter
        out: list[bytes | str] = []
        retry = user.retry
        while retry and retry[0][0] <= now:
            n = retry.popleft()[1]
            if n in user.pending:
                out.append(user._msg_frame(n, user.pending[n]))
        if now >= self.next_t:
            meter.scheduled += 1
            if now - self.next_t > 0.1:
                meter.schedule_late += 1
            rng = user.rng
            if self.typing_share and rng.random() < self.typing_share:
                out.append(self.typing)
            n = user.flow.next_n()
            send_ns = time.monotonic_ns()
            user.pending[n] = send_ns
            out.append(user._msg_frame(n, send_ns))
            jitter = self.jitter  # rng.uniform(1 - jitter, 1 + jitter), inlined: the same draw
            self.next_t += self.interval * ((1 - jitter) + 2 * jitter * rng.random())
            self.last_out = now
        if self.read_s and user.unread_seq > user.read_seq:
            if now - self.last_read >= self.read_s:
                user.read_seq = user.unread_seq
                out.append(user.codec.encode({"t": "read", "room": self.room,
                                              "seq": user.read_seq}))
                self.last_read = self.last_out = now
        if now - self.last_out >= user.heartbeat_s:
            out.append(self.ping)
            self.last_out = now
        if out:
            try:
                ws.send_many(out)
            except ConnectionClosed:
                return False
            meter.frames_out += len(out)
        return True


def open_error_name(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"connect_http_{exc.status_code}"
    if isinstance(exc, TimeoutError):
        return "connect_timeout"
    if isinstance(exc, OSError):
        return "connect_refused"
    if isinstance(exc, ConnectionClosed):
        return f"close_{exc.code}"
    return "open_failed"
