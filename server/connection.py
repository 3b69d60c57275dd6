"""One client's websocket: the hello handshake, its requests, and what it is sent.

Theory of operation: after `hello`, a connection runs a reader (the endpoint's own
coroutine), a writer, a token-expiry watch and any backlog streams in one TaskGroup.
Everything the connection is sent goes through one bounded queue drained by the writer;
fan-out only appends to it and never awaits. A queue that overflows closes the
connection with 4408 and the client resumes with `since` — nothing is ever skipped.

Gapless delivery: each subscription remembers `last`, the highest `seq` it has passed to
the client. A live message with `seq == last + 1` is queued; an older one is a repeat
and dropped; a newer one means something is missing (a backlog not yet streamed, or a
broker event lost or reordered) and starts a catch-up that reads from the store from
`last` onwards, page by page as the queue drains, until it has reached every `seq` seen
live. While catching up, live messages are only noted, never queued, so order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server import codec
from server.auth import Identity
from server.codec import Encoding, Frame, Outgoing
from server.errors import (
    CLOSE_PROTOCOL,
    CLOSE_RATE_LIMIT,
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
    from server.socket import Socket

log = logging.getLogger("confide.conn")


class _Done(Exception):
    """Ends a connection's TaskGroup: the peer left or we closed."""


@dataclass(slots=True)
class Subscription:
    room: RoomId
    last: int  # highest seq passed to the client
    catching_up: bool = True
    seen: int = 0  # highest seq seen live while catching up


_serial = itertools.count(1)


class Connection:
    """A client's connection after `hello`: its subscriptions and its outgoing queue."""

    __slots__ = ("_clock", "_close", "_limit", "_out", "_space", "_tasks", "_wake",
                 "_writer_task", "bucket", "encoding", "id", "identity", "live_sessions",
                 "requests", "role", "rooms", "subs", "user", "ws")

    def __init__(self, ws: Socket, encoding: Encoding, identity: Identity,
                 requests: Requests) -> None:
        self.ws = ws
        self.encoding = encoding
        self.identity = identity
        self.user: UserId = identity.user
        self.role = identity.role
        self.requests = requests
        self.id = f"{requests.hub.node}/{next(_serial)}"
        settings = requests.settings
        self.subs: dict[RoomId, Subscription] = {}
        self.rooms: dict[RoomId, RoomRecord] = {}  # the rooms this user belonged to at hello
        self.live_sessions: set[str] = set()  # live sessions joined from this connection
        self._out: deque[bytes | str] = deque()
        self._limit = settings.outgoing_queue
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._close: tuple[int, str, bool] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._writer_task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.bucket = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst,
                                  loop.time())
        self._clock = loop.time

    # -- outgoing -------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        self.push(codec.encode(frame, self.encoding))

    def push(self, data: bytes | str) -> None:
        """Queue encoded data for the writer; overflowing closes the connection (4408)."""
        if self._close is not None:
            return
        if len(self._out) >= self._limit:
            self._out.clear()
            self.close(CLOSE_TOO_SLOW, "too slow to read: resume with since", drain=False)
            return
        self._out.append(data)
        if len(self._out) >= self._limit // 2:
            self._space.clear()
        self._wake.set()

    def deliver(self, out: Outgoing) -> None:
        self.push(out.encoded(self.encoding))

    def reply_error(self, exc: ConfideError, re: object = None) -> None:
        frame: Frame = {"t": "error", **error_body(exc)}
        if re is not None:
            frame["re"] = re
        self.send(frame)

    async def wait_space(self) -> None:
        """Wait until the outgoing queue is at most half full (backlog streaming)."""
        await self._space.wait()

    def close(self, code: int, reason: str, drain: bool = True) -> None:
        """Close after sending what is queued (`drain`) or at once.

        Closing at once cancels a writer stuck on a client that does not read, then sends
        the close frame with a deadline; the connection ends either way.
        """
        if self._close is not None:
            return
        self._close = (code, reason, drain)
        self._wake.set()
        self._space.set()
        if not drain and self._writer_task is not None:
            self._writer_task.cancel()
            self.spawn(self._close_now(code, reason), force=True)

    async def _close_now(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.requests.settings.heartbeat_s):
                await self.ws.close(code, reason)
        raise _Done

    @property
    def closing(self) -> bool:
        return self._close is not None

    async def _writer(self) -> None:
        send = self.ws.send
        key = "bytes" if self.encoding == "msgpack" else "text"
        low = self._limit // 2
        out = self._out
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._close is not None and not self._close[2]:
                break
            while out:
                data = out.popleft()
                await send({"type": "websocket.send", key: data})
                if len(out) < low:
                    self._space.set()
                if self._close is not None and not self._close[2]:
                    break
            if self._close is not None:
                break
        code, reason, _ = self._close
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)
        raise _Done

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
        page = max(1, min(self.requests.settings.replay_page, self._limit // 4))
        while self.subs.get(sub.room) is sub and not self.closing:
            await self.wait_space()
            msgs = await store.messages_after(sub.room, sub.last, page)
            if self.subs.get(sub.room) is not sub:
                return
            for message in msgs:
                if message.seq == sub.last + 1:
                    sub.last = message.seq
                    self.push(codec.encode(message_frame(message), self.encoding))
            if len(msgs) < page and sub.seen <= sub.last:
                sub.catching_up = False
                break

    def spawn(self, coro: Any, *, force: bool = False) -> None:
        """Run `coro` as part of this connection (owned by its TaskGroup)."""
        if self._tasks is None or (self.closing and not force):
            coro.close()
            return
        self._tasks.create_task(coro)

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
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._writer_task = tasks.create_task(self._writer())
                # The token's expiry is a timer, not a task: cheaper for idle connections.
                expiry = asyncio.get_running_loop().call_later(
                    max(0.0, self.identity.expires_at - time.time()), self.close,
                    CLOSE_UNAUTHENTICATED, "token expired", False)
                try:
                    await self._reader()
                finally:
                    expiry.cancel()
        except* _Done:
            pass
        finally:
            self._tasks = None

    async def _reader(self) -> None:
        receive = self.ws.receive
        max_bytes = self.requests.settings.max_frame_bytes
        strikes = self.requests.settings.rate_limit_strikes
        while not self.closing:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                raise _Done
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None:
                continue
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
                await self.requests.dispatch(self, frame, rid)
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
