"""The `Store` interface and the records it deals in.

Guarantees every implementation gives (the contract suite checks each):

- **Durable.** An awaited write has been committed durably: it survives `kill -9` of
  the process (and, with synchronous commits, loss of power).
- **Gapless order.** `append` gives a room's messages `seq` 1, 2, 3, ... with no gap and
  no reuse, across every node that shares the store. Appends to one room made one after
  another by one caller are stored in that order.
- **Exactly once.** An append with a `cmid` the same sender already used in the room
  stores nothing and returns the first message's `seq` and `ts` with `dup=True`.
- **Atomic.** A failed call changes nothing.
- **Read marks only move forward.** `set_read` keeps the highest `seq` it was given.

Reads may run concurrently with writes and see every write that was awaited before.
Message bodies are opaque to the store and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.ids import MediaId, MessageKind, Plan, RoomId, Service, UserId


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room: RoomId
    client: UserId
    provider: UserId
    plan: Plan
    service: Service
    messaging: bool  # `org` plans: whether the plan includes messaging (R2)
    created_ms: int

    def members(self) -> tuple[UserId, UserId]:
        return (self.client, self.provider)

    def is_member(self, user: str) -> bool:
        return user == self.client or user == self.provider

    def other(self, user: str) -> UserId:
        return self.provider if user == self.client else self.client


@dataclass(frozen=True, slots=True)
class StoredMessage:
    room: RoomId
    seq: int
    sender: UserId
    kind: MessageKind
    body: str | None
    media: MediaId | None
    ts_ms: int
    cmid: str | int | None


@dataclass(frozen=True, slots=True)
class Appended:
    """What `append` did: the message as stored, and whether it was already there."""

    message: StoredMessage
    dup: bool


class Store(Protocol):
    """Durable state of a Confide deployment. See the module docstring for guarantees."""

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Finish every write already submitted, then release the store."""

    async def create_room(self, room: RoomRecord) -> None:
        """Store a new room; `Conflict` if its id exists."""

    async def get_room(self, room: RoomId) -> RoomRecord | None: ...

    async def rooms_of(self, user: UserId) -> list[RoomRecord]:
        """Rooms where `user` is the client or the current provider."""

    async def set_provider(self, room: RoomId, provider: UserId, now_ms: int) -> RoomRecord:
        """Give the room a new provider (history stays); `NotFound` if no such room."""

    async def append(self, room: RoomId, sender: UserId, cmid: str | int | None,
                     kind: MessageKind, body: str | None, media: MediaId | None,
                     now_ms: int) -> Appended:
        """Store a message as the room's next `seq` (see the guarantees)."""

    async def messages_after(self, room: RoomId, after: int, limit: int) -> list[StoredMessage]:
        """Up to `limit` messages with `seq > after`, oldest first."""

    async def messages_before(self, room: RoomId, before: int | None,
                              limit: int) -> list[StoredMessage]:
        """Up to `limit` messages with `seq < before` (all if None), newest page, oldest first."""

    async def head(self, room: RoomId) -> int:
        """The room's highest `seq` (0 when empty)."""

    async def heads(self, rooms: list[RoomId]) -> dict[RoomId, int]:
        """`head` of each room, in one call."""

    async def set_read(self, room: RoomId, user: UserId, seq: int) -> int:
        """Raise `user`'s read mark to `seq`; the stored mark after the call."""

    async def reads(self, room: RoomId) -> dict[UserId, int]: ...
