"""The node's view of its rooms: who follows which room here, presence, and broker fan-out.

Theory of operation: a connection that `sub`s a room *follows* it on this node; the node
subscribes to the room's broker channel while at least one local connection follows it.
Everything that happens in a room (a stored message, typing, a read mark, presence, a
change of provider) is published on the room's channel, by whichever node it happened
on, and comes back to every following node through `_handle`, which hands an
`Outgoing` (encoded at most once per encoding) to each local follower without awaiting
anything. A connection's own bounded queue decides what happens if it cannot keep up.
Events travel as msgpack bytes between nodes; the in-process broker of the embedded
default takes them as they are (`MemoryBroker.hand_over`), so one node encodes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from server.broker import Broker
from server.broker.base import Event, InProcessBroker
from server.codec import Frame, Outgoing
from server.config import Settings
from server.errors import NotFound
from server.ids import RoomId, UserId
from server.store import RoomRecord, Store

if TYPE_CHECKING:
    from server.connection import Connection

log = logging.getLogger("confide.hub")

# Kinds of broker events on a room channel.
EV_MSG = "msg"  # a stored message; carries its seq
EV_RELAY = "relay"  # typing, read, presence: ephemeral, to followers but the skipped
EV_ROOM = "room"  # the room record changed (a new provider)
EV_DIRECT = "direct"  # a frame for one connection of one user (live sessions)


def channel(room: RoomId) -> str:
    return "room:" + room


def user_channel(user: UserId) -> str:
    return "user:" + user


class Hub:
    """Local followers of rooms, presence counts and the broker between nodes."""

    def __init__(self, settings: Settings, store: Store, broker: Broker) -> None:
        self.settings = settings
        self.node = settings.node_id()
        self.store = store
        self.broker = broker
        self._followers: dict[RoomId, set[Connection]] = {}
        self._rooms: dict[RoomId, RoomRecord] = {}
        self._devices: dict[UserId, set[Connection]] = {}
        self.connections: set[Connection] = set()
        self.started = time.monotonic()
        self.delivered = 0  # statistics: frames handed to connections by fan-out
        # The embedded default's broker takes events without encoding them (see `_send`).
        self._local = broker if isinstance(broker, InProcessBroker) else None
        self._publishing: set[asyncio.Task[None]] = set()  # `relay_soon`'s, over a broker

    async def start(self) -> None:
        await self.broker.start(self._on_event)
        if self._local is not None:
            self._local.hand_over(self._handle)

    async def stop(self) -> None:
        await self.broker.stop()

    # -- rooms ----------------------------------------------------------------------------

    async def room(self, room: RoomId) -> RoomRecord:
        """The room's record, from the cache; `NotFound` if there is no such room."""
        record = self._rooms.get(room)
        if record is None:
            record = await self.store.get_room(room)
            if record is None:
                raise NotFound(f"no room {room}")
            self._rooms[room] = record
        return record

    def cached_room(self, room: RoomId) -> RoomRecord | None:
        """The room's record if the cache has it (`room` reads the store if not)."""
        return self._rooms.get(room)

    def remember(self, records: Iterable[RoomRecord]) -> None:
        for record in records:
            self._rooms[record.room] = record

    async def room_changed(self, record: RoomRecord) -> None:
        """Tell every node that `record` replaced the room's previous record."""
        self._rooms[record.room] = record
        await self._publish(record.room, EV_ROOM, {"room": record.room})

    # -- following ------------------------------------------------------------------------

    async def follow(self, room: RoomId, conn: Connection) -> None:
        """From now on `conn` gets the room's events (once this returns)."""
        followers = self._followers.get(room)
        if followers is None:
            followers = self._followers[room] = set()
            followers.add(conn)
            await self.broker.subscribe(channel(room))
        else:
            followers.add(conn)

    async def unfollow(self, room: RoomId, conn: Connection) -> None:
        followers = self._followers.get(room)
        if followers is None:
            return
        followers.discard(conn)
        if not followers:
            del self._followers[room]
            await self.broker.unsubscribe(channel(room))

    # -- presence -------------------------------------------------------------------------

    def is_online(self, user: UserId) -> bool:
        return bool(self._devices.get(user))

    def device_count(self, user: UserId) -> int:
        return len(self._devices.get(user, ()))

    async def connected(self, conn: Connection, rooms: Iterable[RoomRecord]) -> None:
        self.connections.add(conn)
        devices = self._devices.setdefault(conn.user, set())
        devices.add(conn)
        if len(devices) == 1:
            await self.broker.subscribe(user_channel(conn.user))
            await self._presence(conn.user, rooms, online=True)

    async def disconnected(self, conn: Connection, rooms: Iterable[RoomRecord]) -> None:
        self.connections.discard(conn)
        devices = self._devices.get(conn.user)
        if devices is None:
            return
        devices.discard(conn)
        if not devices:
            del self._devices[conn.user]
            await self.broker.unsubscribe(user_channel(conn.user))
            await self._presence(conn.user, rooms, online=False)

    async def _presence(self, user: UserId, rooms: Iterable[RoomRecord], online: bool) -> None:
        for record in rooms:
            if record.is_member(user):
                await self.relay(record.room, {"t": "presence", "room": record.room,
                                               "user": user, "online": online})

    # -- publishing -----------------------------------------------------------------------

    async def publish_message(self, room: RoomId, frame: Frame,
                              sender_conn: str | None = None) -> None:
        """Fan out a stored message (a `msg` frame with its `seq`) to every node.

        The connection that sent it (`sender_conn`) is not sent its own message back: its
        `ack` carried the `seq`; the sender's other devices get it like everyone else.
        """
        await self._publish(room, EV_MSG, frame, None, sender_conn)

    async def relay(self, room: RoomId, frame: Frame, skip_user: UserId | None = None,
                    skip_conn: str | None = None) -> None:
        """Fan out an ephemeral frame; `skip_user`'s connections and `skip_conn` miss it."""
        await self._publish(room, EV_RELAY, frame, skip_user, skip_conn)

    def relay_soon(self, room: RoomId, frame: Frame, skip_conn: str | None = None) -> None:
        """`relay`, from a callback: at once within one node, else through the broker in a
        task of its own."""
        publishing = self._hand(channel(room), (EV_RELAY, room, frame, None, skip_conn))
        if publishing is not None:
            task = asyncio.get_running_loop().create_task(publishing)
            self._publishing.add(task)
            task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        self._publishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a relay could not be published: %s", type(task.exception()).__name__)

    async def direct(self, user: UserId, conn_id: str, frame: Frame) -> None:
        """Send `frame` to one connection of `user`, on whichever node it is."""
        await self._send(user_channel(user), (EV_DIRECT, user, frame, None, conn_id))

    async def _publish(self, room: RoomId, kind: str, frame: Frame,
                       skip_user: UserId | None = None, skip_conn: str | None = None) -> None:
        await self._send(channel(room), (kind, room, frame, skip_user, skip_conn))

    async def _send(self, chan: str, event: Event) -> None:
        publishing = self._hand(chan, event)
        if publishing is not None:
            await publishing

    def _hand(self, chan: str, event: Event) -> Coroutine[Any, Any, None] | None:
        """Give `event` to the broker: within one node it is handled (frames framed) before
        this returns (None); otherwise the publish to await."""
        if self._local is not None:
            self._local.publish_event(chan, event, _encode)
            return None
        return self.broker.publish(chan, _encode(event))

    def _on_event(self, chan: str, payload: bytes) -> None:
        try:
            event = msgpack.unpackb(payload, raw=False)
            if not isinstance(event, list) or len(event) != 5:
                raise ValueError("not an event")
        except (ValueError, TypeError, msgpack.UnpackException):
            log.error("dropped an undecodable broker event on %s", chan)
            return
        self._handle(chan, tuple(event))

    def _handle(self, chan: str, event: Event) -> None:
        kind, room, frame, skip_user, skip_conn = event
        if kind == EV_DIRECT:  # addressed to a user (in the room slot) and one connection
            user: UserId = room
            for conn in tuple(self._devices.get(user, ())):
                if conn.id == skip_conn:
                    conn.send(frame)
            return
        if kind == EV_ROOM:
            self._rooms.pop(room, None)
            for conn in list(self._followers.get(room, ())):
                conn.room_changed(room)
            return
        followers = self._followers.get(room)
        if not followers:
            return
        out = Outgoing(frame)
        if kind == EV_MSG:
            seq: int = frame["seq"]
            for conn in tuple(followers):
                if conn.id == skip_conn:
                    conn.own_message(room, seq)
                else:
                    conn.deliver_message(room, seq, out)
        else:
            for conn in tuple(followers):
                if conn.user != skip_user and conn.id != skip_conn:
                    conn.deliver(out)
        self.delivered += len(followers)

    def statistics(self) -> HubStatistics:
        return HubStatistics(self.node, len(self.connections), len(self._devices),
                             len(self._followers), self.delivered,
                             round(time.monotonic() - self.started, 1))


def _encode(event: Event) -> bytes:
    return msgpack.packb(event, use_bin_type=True)


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """A snapshot of one node's hub: counts only, never content."""

    node: str
    connections: int
    users_online: int
    rooms_followed: int
    delivered: int
    uptime_s: float
