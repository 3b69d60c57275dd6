"""The identifiers of the domain, as distinct types: a room id is never passed as a user id."""

from __future__ import annotations

from typing import Literal, NewType

UserId = NewType("UserId", str)
RoomId = NewType("RoomId", str)
SessionId = NewType("SessionId", str)
MediaId = NewType("MediaId", str)
NodeId = NewType("NodeId", str)

Role = Literal["client", "provider", "admin"]
Plan = Literal["eap", "bh", "org", "self_pay"]
Service = Literal["therapy", "psychiatry"]
MessageKind = Literal["text", "voice", "video", "system"]

ROLES: tuple[Role, ...] = ("client", "provider", "admin")
PLANS: tuple[Plan, ...] = ("eap", "bh", "org", "self_pay")
SERVICES: tuple[Service, ...] = ("therapy", "psychiatry")
