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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from server.ids import MediaId, MessageKind, Plan, RoomId, Service, UserId

T = TypeVar("T")


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
    meta: str | None = None  # system messages: the event as JSON (kind, session, ...)


@dataclass(frozen=True, slots=True)
class Appended:
    """What `append` did: the message as stored, and whether it was already there."""

    message: StoredMessage
    dup: bool


@dataclass(frozen=True, slots=True)
class Doc:
    """A rule record kept as a JSON document (a session, a provider's schedule)."""

    kind: str  # "live", "messaging", "schedule"
    id: str
    room: str | None
    owner: str | None  # the provider, for sessions and schedules
    state: str
    final: bool
    body: str


@dataclass(frozen=True, slots=True)
class JobRow:
    key: str
    due_ms: int
    kind: str
    subject: str


@dataclass(frozen=True, slots=True)
class ChargeRow:
    key: str
    room: str
    body: str
    attempts: int
    next_try_ms: int


class Tx(Protocol):
    """One transaction of session-rule state, used from inside `Store.transact`.

    Methods are synchronous: the function given to `transact` runs where the store runs
    its transactions (a thread of its own) and must do no I/O of its own. Everything a
    function does commits together or not at all.
    """

    def room(self, room: RoomId) -> RoomRecord | None: ...

    def get_doc(self, kind: str, id: str) -> Doc | None: ...

    def put_doc(self, doc: Doc) -> None: ...

    def docs(self, kind: str, *, room: str | None = None, owner: str | None = None,
             active: bool = False) -> list[Doc]:
        """Documents of a kind by room or owner; `active`: not final."""

    def ledger(self, room: RoomId) -> list[str]:
        """The room's ledger entries (JSON), in the order posted."""

    def post(self, room: RoomId, entries: list[str]) -> None: ...

    def add_charge(self, key: str, room: RoomId, body: str, now_ms: int) -> bool:
        """Record a charge for billing; False (and nothing written) if `key` exists."""

    def charges(self, room: RoomId) -> list[str]:
        """The room's charges (JSON), oldest first."""

    def claim_time(self, owner: str, holder: str, start_ms: int, end_ms: int) -> None:
        """Hold [start, end) of `owner`'s time for `holder`; `Conflict` if any of it is held.

        Enforced by the store itself (a unique constraint), so two transactions on two
        nodes cannot both hold the same time.
        """

    def release_time(self, holder: str) -> None: ...

    def schedule(self, job: JobRow) -> None:
        """Keep a deadline; scheduling a key that exists changes nothing."""

    def cancel(self, key: str) -> None: ...

    def take_job(self, key: str) -> bool:
        """Remove a due job; False if it is gone (another node fired it)."""

    def append(self, room: RoomId, sender: UserId, kind: MessageKind, body: str | None,
               now_ms: int, meta: str | None = None) -> StoredMessage:
        """Store a message (a system message, typically) as the room's next `seq`."""

    def unanswered_since(self, room: RoomId, client: UserId, provider: UserId) -> int | None:
        """R4: time (ms) of the client's first message after the provider's last one."""

    def setting(self, key: str) -> str | None: ...

    def put_setting(self, key: str, value: str) -> None: ...


class SessionStore(Protocol):
    """The transactional part of a `Store` that the session rules use."""

    async def transact(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in one write transaction, committed durably before this returns.
        `fn` may run more than once (it must only read and write through the `Tx`)."""

    async def view(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` against a consistent read-only snapshot. `fn` may run more than once,
        so it must only read through the `Tx`."""

    async def due_jobs(self, now_ms: int, limit: int) -> list[JobRow]: ...

    async def next_due_ms(self) -> int | None: ...

    async def pending_charges(self, now_ms: int, limit: int) -> list[ChargeRow]: ...

    async def next_charge_ms(self) -> int | None:
        """When the next undelivered charge is due to be (re)tried."""

    async def charge_attempted(self, key: str, delivered: bool, next_try_ms: int,
                               now_ms: int) -> None: ...


class Store(SessionStore, Protocol):
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

    def read_later(self, room: RoomId, user: UserId, seq: int,
                   then: Callable[[int | None], None]) -> None:
        """`set_read` for a caller that does not wait: the store may hold the mark a
        moment to write it with others; `then(stored)` is called on the event loop once
        it is stored, or with `None` if it could not be."""

    async def reads(self, room: RoomId) -> dict[UserId, int]: ...

    async def head_and_reads(self, room: RoomId) -> tuple[int, dict[UserId, int]]:
        """`head` and `reads` of a room, read together (one round trip)."""

    async def rooms_with_heads(self, user: UserId) -> list[tuple[RoomRecord, int]]:
        """`rooms_of` with each room's `head`, read together (one round trip)."""
