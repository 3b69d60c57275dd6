"""What a room may do, by plan and service: sending, live modalities, who acts on sessions.

Theory of operation
-------------------
A room's plan and service decide what its members may do; every refusal is a
`RuleError` naming the rule, never a silent drop.

- R1: only the room's client and its current provider read or write it
  (`check_read`). Staff are not members, so they cannot act on a member's behalf.
- R2: asynchronous messages by plan: `self_pay` any time; `org` any time if the
  plan includes messaging, never otherwise; `eap` / `bh` only while a messaging
  session is in progress (`check_send`). Only `org` rooms carry the flag
  (`chooses_messaging`).
- R3: `psychiatry` rooms have no asynchronous messages and live video only.
- R6: the live modalities a room may book are its plan's, narrowed by R3
  (`allowed_modalities`, `check_modality`).
- R13: a session is cancelled or rescheduled by the room's client or provider
  only (`check_session_actor`); the clock never does it, nor does anyone else.

The hub calls these before storing anything; they return nothing on success.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from rooms.room import Actor, Room, Side, member_side
from rooms.sessions import MessagingSession
from rooms.settings import DEFAULT_SETTINGS, Modality, Settings
from server.errors import RuleError
from server.ids import UserId

MessagingPolicy = Literal["any_time", "in_session", "never"]


def check_read(room: Room, user: UserId) -> Side:
    """R1: the user's side in the room, or RuleError R1."""
    return member_side(room, user)


def chooses_messaging(plan: str) -> bool:
    """R2: whether a room of `plan` says itself if it includes messaging (`org` plans);
    the other plans' messaging is the plan's."""
    return plan == "org"


def messaging_policy(room: Room) -> MessagingPolicy:
    """R2/R3: when the room's members may send asynchronous messages."""
    if room.service == "psychiatry":
        return "never"
    match room.plan:
        case "self_pay":
            return "any_time"
        case "org":
            return "any_time" if room.messaging_included else "never"
        case "eap" | "bh":
            return "in_session"


def check_send(
    room: Room,
    sender: UserId,
    now: datetime,
    messaging: MessagingSession | None = None,
) -> None:
    """R1-R3: may `sender` send an asynchronous message to the room at `now`?

    `messaging` is the room's current messaging session, if any (the hub's latest
    one); it counts only while in progress at `now` (R5).
    """
    member_side(room, sender)
    if room.service == "psychiatry":
        raise RuleError("R3", f"room {room.id} is psychiatry: live video sessions only")
    match messaging_policy(room):
        case "any_time":
            return
        case "never":
            raise RuleError("R2", f"room {room.id}: the plan does not include messaging")
        case "in_session":
            if messaging is None or messaging.room != room.id or not messaging.in_progress(now):
                raise RuleError(
                    "R2", f"room {room.id}: messages need a messaging session in progress"
                )


def allowed_modalities(room: Room, settings: Settings = DEFAULT_SETTINGS) -> frozenset[Modality]:
    """R3/R6: the live-session modalities this room may use."""
    plan_allows = settings.terms(room.plan).live_modalities
    if room.service == "psychiatry":
        return plan_allows & {"video"}
    return plan_allows


def check_modality(room: Room, modality: Modality, settings: Settings = DEFAULT_SETTINGS) -> None:
    """R3/R6: refuse a modality the room's service or plan does not allow."""
    if modality in allowed_modalities(room, settings):
        return
    if room.service == "psychiatry":
        raise RuleError("R3", f"room {room.id} is psychiatry: video sessions only")
    raise RuleError("R6", f"room {room.id}: the plan does not include {modality} sessions")


def check_session_actor(room: Room, actor: Actor) -> Side:
    """R1/R13: only the room's client or provider moves or cancels a session.

    Staff (admin, support) are not members: R1 names the refusal. The clock
    (`SYSTEM`) never cancels or moves a session on a member's behalf: R13.
    """
    if not isinstance(actor, str):
        raise RuleError("R13", f"room {room.id}: only the client or provider may do this")
    return member_side(room, actor)
