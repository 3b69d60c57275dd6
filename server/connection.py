"""One client's websocket: the hello handshake, its requests, and what it is sent.

Theory of operation: after `hello`, a connection is one task reading its requests from
the wire (`server.wire`) and handling them in order; backlog streams and re-checks run
as extra tasks of the connection, cancelled when it ends. Everything the connection is
sent is framed and written to the wire at once: fan-out never awaits. A client that
stops reading fills the wire's bounded list of pending frames, and is closed with 4408;
it resumes with `since`, and nothing is ever skipped.

Gapless delivery: each subscription remembers `last`, the highest `seq` it has passed to
the client. A live message with `seq == last + 1` is sent; an older one is a repeat
and dropped; a newer one means something is missing (a backlog not yet streamed, or a
broker event lost or reordered) and starts a catch-up that reads from the store from
`last` onwards, page by page as the wire drains, until it has reached every `seq` seen
live. While catching up, live messages are only noted, never sent, so order holds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server import codec
from server.auth import Identity
from server.codec import Encoding, Frame, Outgoing
from server.errors import (
    CLOSE_PROTOCOL,
    CLOSE_RATE_LIMIT,
    CLOSE_SHUTDOWN,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHENTICATED,
    ClientError,
    ConfideError,
    InternalError,
    ProtocolViolation,
    RateLimited,
    TooLarge,
    error_body,
)
from server.ids import RoomId, UserId
from server.ratelimit import TokenBucket
from server.sessions import message_frame
from server.store import RoomRecord

if TYPE_CHECKING:
    from server.requests import Requests
    from server.wire import Wire

log = logging.getLogger("confide.conn")


@dataclass(slots=True)
class Subscription:
    room: RoomId
    last: int  # highest seq passed to the client
    catching_up: bool = True
    seen: int = 0  # highest seq seen live while catching up


_serial = itertools.count(1)


class Connection:
    """A client's connection after `hello`: its subscriptions and what it is sent."""

    __slots__ = ("_clock", "_close", "_tasks", "bucket", "encoding", "id", "identity",
                 "live_sessions", "requests", "role", "rooms", "subs", "user", "wire")

    def __init__(self, wire: Wire, identity: Identity, requests: Requests) -> None:
        self.wire = wire
        self.encoding: Encoding = wire.encoding
        self.identity = identity
        self.user: UserId = identity.user
        self.role = identity.role
        self.requests = requests
        self.id = f"{requests.hub.node}/{next(_serial)}"
        settings = requests.settings
        self.subs: dict[RoomId, Subscription] = {}
        self.rooms: dict[RoomId, RoomRecord] = {}  # the rooms this user belonged to at hello
        self.live_sessions: set[str] = set()  # live sessions joined from this connection
        self._close: tuple[int, str] | None = None
        self._tasks: set[asyncio.Task[None]] | None = None  # made when first needed
        loop = asyncio.get_running_loop()
        self.bucket = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst,
                                  loop.time())
        self._clock = loop.time

    # -- outgoing -------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        self.push(codec.framed(frame, self.encoding))

    def push(self, data: bytes) -> None:
        """Write one framed message; a client too far behind is closed (4408)."""
        if self._close is None and not self.wire.write(data):
            self.close(CLOSE_TOO_SLOW, "too slow to read: resume with since", drain=False)

    def deliver(self, out: Outgoing) -> None:
        self.push(out.framed(self.encoding))

    def reply_error(self, exc: ConfideError, re: object = None) -> None:
        frame: Frame = {"t": "error", **error_body(exc)}
        if re is not None:
            frame["re"] = re
        self.send(frame)

    async def wait_space(self) -> None:
        """Wait until the wire's pending frames are at most half their limit."""
        await self.wire.wait_space()

    def close(self, code: int, reason: str, drain: bool = True) -> None:
        """Close after sending what is pending (`drain`) or at once.

        A client that does not read loses the connection after the wire's close timeout
        either way; the connection's task ends as soon as closing starts.
        """
        if self._close is not None:
            return
        self._close = (code, reason)
        self.wire.close(code, reason, drain)

    @property
    def closing(self) -> bool:
        return self._close is not None or not self.wire.open

    # -- delivery of room messages ----------------------------------------------------------

    def deliver_message(self, room: RoomId, seq: int, out: Outgoing) -> None:
        sub = self.subs.get(room)
        if sub is None:
            return
        if sub.catching_up:
            if seq > sub.seen:
                sub.seen = seq
            return
        if seq <= sub.last:
            return
        if seq == sub.last + 1:
            sub.last = seq
            self.deliver(out)
            return
        sub.catching_up = True
        sub.seen = seq
        self.spawn(self.catch_up(sub))

    def own_message(self, room: RoomId, seq: int) -> None:
        """This connection stored `seq` itself: it knows it from the ack; keep order."""
        sub = self.subs.get(room)
        if sub is None:
            return
        if sub.catching_up:
            sub.seen = max(sub.seen, seq)
        elif seq == sub.last + 1:
            sub.last = seq
        elif seq > sub.last:  # something before it is missing: fetch it (and this one)
            sub.catching_up = True
            sub.seen = seq
            self.spawn(self.catch_up(sub))

    async def catch_up(self, sub: Subscription) -> None:
        """Stream stored messages after `sub.last` until every seq seen live is passed on."""
        store = self.requests.store
        # A page fits in the room left above the half-full mark, with a margin for live frames.
        page = max(1, min(self.requests.settings.replay_page, self.wire.pending_limit // 4))
        while self.subs.get(sub.room) is sub and not self.closing:
            await self.wait_space()
            msgs = await store.messages_after(sub.room, sub.last, page)
            if self.subs.get(sub.room) is not sub:
                return
            for message in msgs:
                if message.seq == sub.last + 1:
                    sub.last = message.seq
                    self.push(codec.framed(message_frame(message), self.encoding))
            if len(msgs) < page and sub.seen <= sub.last:
                sub.catching_up = False
                break

    def spawn(self, coro: Any) -> None:
        """Run `coro` as part of this connection: cancelled when the connection ends."""
        if self.closing:
            coro.close()
            return
        if self._tasks is None:
            self._tasks = set()
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a connection task failed", exc_info=task.exception())
            self.close(1011, "internal error", drain=False)

    def room_changed(self, room: RoomId) -> None:
        self.spawn(self._recheck(room))

    async def _recheck(self, room: RoomId) -> None:
        record = await self.requests.hub.room(room)
        self.rooms[room] = record
        if not record.is_member(self.user) and room in self.subs:
            await self.requests.drop_subscription(self, room)
            self.send({"t": "unsubbed", "room": room, "reason": "no longer a member"})

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client leaves or we close it."""
        # The token's expiry is a timer, not a task: cheaper for idle connections.
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, self.identity.expires_at - time.time()), self.close,
            CLOSE_UNAUTHENTICATED, "token expired", False)
        try:
            await self._reader()
        finally:
            expiry.cancel()
            tasks = self._tasks
            self._tasks = None
            if tasks:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _reader(self) -> None:
        wire = self.wire
        max_bytes = self.requests.settings.max_frame_bytes
        strikes = self.requests.settings.rate_limit_strikes
        while not self.closing:
            data = await wire.receive()
            if data is None:
                if wire.shutting_down:  # the request in hand is done: now say goodbye
                    self.close(CLOSE_SHUTDOWN, "server shutting down: reconnect with since")
                return
            if not self.bucket.take(self._clock()):
                self.reply_error(RateLimited("rate limit: slow down and retry with the same cmid"),
                                 _peek_id(data, self.encoding))
                if self.bucket.strikes >= strikes:
                    self.close(CLOSE_RATE_LIMIT, "rate limit exceeded")
                    return
                continue
            if len(data) > max_bytes:
                self.reply_error(TooLarge(f"frame over {max_bytes} bytes"),
                                 _peek_id(data, self.encoding, limit=len(data)))
                continue
            try:
                frame = codec.decode(data, self.encoding)
            except ProtocolViolation as exc:
                self.close(CLOSE_PROTOCOL, exc.message)
                return
            except ClientError as exc:
                self.reply_error(exc)
                continue
            rid: object = None
            try:
                rid = codec.request_id(frame)
                await self.requests.handler(frame["t"])(self, frame, rid)
            except ClientError as exc:
                self.reply_error(exc, rid)
            except Exception:
                log.exception("request %s failed", frame.get("t") if isinstance(
                    frame.get("t"), str) and len(frame["t"]) < 32 else "?")
                self.reply_error(InternalError("internal error"), rid)


def _peek_id(data: bytes | str, encoding: Encoding, limit: int = 4096) -> object:
    """The request id of a frame refused before decoding, if it can be read cheaply."""
    if len(data) > limit:
        return None
    try:
        frame = codec.decode(data, encoding)
        return codec.request_id(frame)
    except ConfideError:
        return None
