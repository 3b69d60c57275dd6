"""The session records: a live session and a messaging session, as immutable data.

These are what the store keeps and what a `session` frame shows. They change only
through `rooms.lifecycle.apply` (live) and `rooms.messaging.apply` (messaging),
which return a new record; nothing here knows any rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from rooms.room import Party, Side
from rooms.settings import Modality
from server.ids import RoomId, SessionId, UserId

LiveState = Literal[
    "booked",
    "confirmed",
    "reminded",
    "waiting",
    "started",
    "ended",
    "cancelled",
    "late-cancelled",
    "lapsed",
    "no-show",
]
LIVE_STATES: tuple[LiveState, ...] = get_args(LiveState)
LIVE_FINAL_STATES: frozenset[LiveState] = frozenset(
    {"ended", "cancelled", "late-cancelled", "lapsed", "no-show"}
)

MessagingState = Literal["booked", "started", "ended", "cancelled"]
MESSAGING_STATES: tuple[MessagingState, ...] = get_args(MessagingState)
MESSAGING_FINAL_STATES: frozenset[MessagingState] = frozenset({"ended", "cancelled"})


def check_aware(when: datetime, name: str = "time") -> None:
    """Every time the rules see is aware; naive times are a bug of the caller."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


@dataclass(frozen=True)
class LiveSession:
    """A booked live session (R6-R15): where it is in its lifecycle, with who and when.

    `confirm_by` is fixed at booking (R8): 24 hours before the start, or the start itself
    for a booking made less than 24 hours ahead. `joined` is who is in the waiting room
    or the session now; `absent` is who missed it (set only in state "no-show").
    `by` and `at` say who made the last change, and when.
    """

    id: SessionId
    room: RoomId
    client: UserId
    provider: UserId
    modality: Modality
    start: datetime
    length: timedelta
    booked_at: datetime
    confirm_by: datetime
    state: LiveState = "booked"
    by: Party = "client"
    at: datetime | None = None
    confirmed_at: datetime | None = None
    reminders_done: frozenset[datetime] = frozenset()
    joined: frozenset[Side] = frozenset()
    absent: frozenset[Side] = frozenset()
    reschedules: int = 0

    @property
    def end(self) -> datetime:
        return self.start + self.length

    @property
    def final(self) -> bool:
        return self.state in LIVE_FINAL_STATES


@dataclass(frozen=True)
class MessagingSession:
    """A messaging session of an `eap` / `bh` room (R5): booked, then started by the client."""

    id: SessionId
    room: RoomId
    client: UserId
    provider: UserId
    length: timedelta
    booked_at: datetime
    state: MessagingState = "booked"
    by: Party = "client"
    at: datetime | None = None
    started_at: datetime | None = None

    @property
    def ends_at(self) -> datetime | None:
        """When a started session ends (R5); None before it starts."""
        return None if self.started_at is None else self.started_at + self.length

    @property
    def final(self) -> bool:
        return self.state in MESSAGING_FINAL_STATES

    def in_progress(self, now: datetime) -> bool:
        """R2/R5: messages may flow: started and not yet past its length."""
        ends = self.ends_at
        return self.state == "started" and ends is not None and now < ends
