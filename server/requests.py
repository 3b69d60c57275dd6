"""What each client frame does: the handlers of protocol v1, between decoding and the store.

Every handler checks its fields (`BadRequest` naming the field), checks that the user
may act on the room (R1: only its client and current provider), asks the session rules
where they have a say, then persists, publishes and answers. Handlers never touch the
socket: they queue frames on the connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from server import codec
from server.codec import Frame
from server.config import Settings
from server.connection import Connection, Subscription
from server.errors import BadRequest, Forbidden, NotFound, TooLarge
from server.hub import Hub
from server.ids import MessageKind, RoomId, UserId
from server.sessions import Sessions, message_frame, ms
from server.store import RoomRecord, Store

if TYPE_CHECKING:
    from server.live import LiveSessions

SEND_KINDS: tuple[MessageKind, ...] = ("text", "voice", "video")
Handler = Callable[[Connection, Frame, object], Awaitable[None]]  # (conn, frame, its `id`)
MAX_ROOM_ID = 64


class Requests:
    """The request handlers of one node, shared by all its connections."""

    def __init__(self, settings: Settings, store: Store, hub: Hub, sessions: Sessions) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.sessions = sessions
        self._handlers: dict[str, Handler] = {
            "sub": self.sub,
            "unsub": self.unsub,
            "send": self.send,
            "history": self.history,
            "typing": self.typing,
            "read": self.read,
            "ping": self.ping,
            "live.join": self._live("join"),
            "live.signal": self._live("signal"),
            "live.leave": self._live("leave"),
        }
        self.live: LiveSessions | None = None  # set by the node once built

    def _live(self, name: str) -> Handler:
        async def handle(conn: Connection, frame: Frame, rid: object) -> None:
            assert self.live is not None
            await getattr(self.live, name)(conn, frame, rid)

        return handle

    def handler(self, kind: str) -> Handler:
        """The handler of frames of type `kind` (the reader awaits it, no layer between)."""
        handler = self._handlers.get(kind)
        if handler is None:
            if kind == "hello":
                raise BadRequest("already said hello")
            raise BadRequest(f"unknown frame type {kind[:32]!r}")
        return handler

    # -- shared -----------------------------------------------------------------------------

    async def member_room(self, conn: Connection, frame: Frame) -> RoomRecord:
        """The frame's room, if the connection's user may act in it (R1)."""
        room_id = codec.text_field(frame, "room", max_chars=MAX_ROOM_ID)
        assert room_id is not None
        room = RoomId(room_id)
        record = self.hub.cached_room(room)
        if record is None:
            try:
                record = await self.hub.room(room)
            except NotFound:
                raise NotFound(f"no room {room_id}") from None
        if not record.is_member(conn.user):
            raise Forbidden("only the room's client and provider may use it", rule="R1")
        return record

    def room_extras(self, record: RoomRecord, user: str,
                    reads: dict[UserId, int]) -> Frame:
        other = record.other(user)
        return {"reads": reads, "online": {other: self.hub.is_online(other)}}

    async def drop_subscription(self, conn: Connection, room: RoomId) -> None:
        if conn.subs.pop(room, None) is not None:
            await self.hub.unfollow(room, conn)

    async def drop_all(self, conn: Connection) -> None:
        for room in list(conn.subs):
            await self.drop_subscription(conn, room)

    # -- handlers ---------------------------------------------------------------------------

    async def sub(self, conn: Connection, frame: Frame, rid: object) -> None:
        record = await self.member_room(conn, frame)
        since = codec.int_field(frame, "since", required=False)
        room = record.room
        if room not in conn.subs and len(conn.subs) >= self.settings.max_subscriptions:
            raise TooLarge(f"at most {self.settings.max_subscriptions} subscriptions")
        await self.drop_subscription(conn, room)
        sub = Subscription(room, last=0)
        conn.subs[room] = sub
        await self.hub.follow(room, conn)
        # Read after following: any message stored later is seen live (noted in `sub.seen`).
        head, reads = await self.store.head_and_reads(room)
        if since is not None and since > head:  # a `since` from the future hides messages
            await self.drop_subscription(conn, room)
            raise BadRequest(f"`since` {since} is past the room's head {head}")
        reply: Frame = {"t": "subbed", "room": room, **self.room_extras(record, conn.user, reads)}
        if since is None:  # no backlog: from the head on
            sub.last = head
            await self._finish_sub(conn, sub, rid, reply, backlog=False)
        else:
            sub.last = since
            conn.spawn(self._finish_sub(conn, sub, rid, reply, backlog=True))

    async def _finish_sub(self, conn: Connection, sub: Subscription, rid: object,
                          reply: Frame, backlog: bool) -> None:
        """Stream the backlog, then `subbed`: no live message of the room goes before it."""
        if backlog or sub.seen > sub.last:
            await conn.catch_up(sub)  # live messages meanwhile are only noted
        else:
            sub.catching_up = False
        if conn.subs.get(sub.room) is not sub:
            return
        reply["head"] = sub.last
        if rid is not None:
            reply["re"] = rid
        conn.send(reply)

    async def unsub(self, conn: Connection, frame: Frame, rid: object) -> None:
        room_id = codec.text_field(frame, "room", max_chars=MAX_ROOM_ID)
        assert room_id is not None
        room = RoomId(room_id)
        if room not in conn.subs:
            raise NotFound(f"not subscribed to {room}")
        await self.drop_subscription(conn, room)
        conn.send(_reply({"t": "unsubbed", "room": room}, rid))

    async def send(self, conn: Connection, frame: Frame, rid: object) -> None:
        record = await self.member_room(conn, frame)
        cmid = codec.cmid_field(frame)
        kind = frame.get("kind")
        if kind not in SEND_KINDS:
            raise BadRequest("`kind` must be text, voice or video")
        now = self.sessions.clock()
        await self.sessions.check_send(record, conn.user, now)  # before anything else
        body: str | None = None
        media = None
        if kind == "text":
            body = codec.text_field(frame, "body", max_chars=self.settings.max_text_chars)
            if "media" in frame:
                raise BadRequest("a text message has `body`, not `media`")
        else:
            codec.text_field(frame, "media", max_chars=64)
            raise NotFound("no such media in this room")  # the id is the client's text
        appended = await self.store.append(record.room, conn.user, cmid, kind, body, media,
                                           ms(now))
        message = appended.message
        frame = message_frame(message)
        if not appended.dup:
            await self.hub.publish_message(record.room, frame, conn.id)
        conn.send(_reply({"t": "ack", "room": record.room, "seq": message.seq,
                          "cmid": message.cmid, "ts": frame["ts"], "dup": appended.dup}, rid))

    async def history(self, conn: Connection, frame: Frame, rid: object) -> None:
        record = await self.member_room(conn, frame)
        before = codec.int_field(frame, "before", minimum=1, required=False)
        limit = codec.int_field(frame, "limit", minimum=1, maximum=self.settings.history_max,
                                required=False) or 50
        msgs = await self.store.messages_before(record.room, before, limit)
        frames = [message_frame(m) for m in msgs]
        for f in frames:
            del f["t"]
        conn.send(_reply({"t": "history", "room": record.room, "msgs": frames,
                          "more": bool(msgs) and msgs[0].seq > 1}, rid))

    async def typing(self, conn: Connection, frame: Frame, rid: object) -> None:
        record = await self.member_room(conn, frame)
        on = codec.bool_field(frame, "on")
        await self.hub.relay(record.room, {"t": "typing", "room": record.room,
                                           "user": conn.user, "on": on}, skip_user=conn.user)

    async def read(self, conn: Connection, frame: Frame, rid: object) -> None:
        record = await self.member_room(conn, frame)
        seq = codec.int_field(frame, "seq", minimum=0)
        assert seq is not None
        sub = conn.subs.get(record.room)
        if sub is None or seq > sub.last:  # what was delivered here needs no look-up
            head = await self.store.head(record.room)
            if seq > head:
                raise BadRequest(f"`seq` {seq} is past the room's head {head}")
        room, user = record.room, conn.user

        def relayed(stored: int) -> Frame:
            return {"t": "read", "room": room, "user": user, "seq": stored}

        if rid is None:  # nobody waits for an answer: stored with others, then relayed
            def stored_then_relayed(stored: int | None) -> None:
                if stored is not None:  # (if not, the store logged why)
                    self.hub.relay_soon(room, relayed(stored), skip_conn=conn.id)

            self.store.read_later(room, user, seq, stored_then_relayed)
            return
        out = relayed(await self.store.set_read(room, user, seq))
        await self.hub.relay(room, out, skip_conn=conn.id)
        # the reader's own devices got the relay; this one asked
        conn.send(_reply({**out}, rid))  # `out` went to the hub as it was

    async def ping(self, conn: Connection, frame: Frame, rid: object) -> None:
        n = frame.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int | str)
                              or len(str(n)) > 64):
            raise BadRequest("`n` must be an integer or a short string")
        conn.send(_reply({"t": "pong", "n": n}, rid))


def _reply(frame: Frame, rid: object) -> Frame:
    if rid is not None:
        frame["re"] = rid
    return frame
