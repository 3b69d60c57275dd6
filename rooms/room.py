"""The room and who acts in it: the data every rule reads, and the R1 membership check.

A room pairs one client with its current provider (R1). Every rule function takes
the acting person as an `Actor`: a `UserId`, or `SYSTEM` for the clock (a deadline
job firing, R17). Rules turn an actor into a `Party` of the room, or refuse.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from server.errors import RuleError
from server.ids import Plan, RoomId, Service, UserId

Side = Literal["client", "provider"]
Party = Literal["client", "provider", "system"]
SIDES: tuple[Side, ...] = ("client", "provider")


class _System(enum.Enum):
    SYSTEM = "system"


SYSTEM: Final = _System.SYSTEM
"""The actor for steps the clock takes (deadline jobs): never a person."""

Actor = UserId | Literal[_System.SYSTEM]


@dataclass(frozen=True)
class Room:
    """A private room: one client, one current provider, a plan and a service (R1)."""

    id: RoomId
    client: UserId
    provider: UserId
    plan: Plan
    service: Service
    messaging_included: bool = False  # R2: only read for `org` plans

    def side_of(self, user: UserId) -> Side | None:
        """The user's side in this room, or None for anyone else (staff included)."""
        if user == self.client:
            return "client"
        if user == self.provider:
            return "provider"
        return None


def member_side(room: Room, user: UserId) -> Side:
    """R1: only the room's client and current provider read or write it."""
    side = room.side_of(user)
    if side is None:
        raise RuleError("R1", f"user {user} is not a member of room {room.id}")
    return side


def party_of(room: Room, actor: Actor) -> Party:
    """The party an actor plays in a room: a member side, or "system"; R1 for anyone else."""
    if actor is SYSTEM:
        return "system"
    return member_side(room, actor)
