"""A whole month of a self-pay room, through the HTTP API and websockets, with an injected clock.

Grant, book, confirm, remind, attend, late-cancel, no-show, provider cancels, rebook with
the same credit, a lapse, a purchase while booking, and the period rollover; then the
ledger and the charges, to the cent (R7-R15, R17).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.client import Client
from support.nodes import FakeClock, RunningNode, node_in_process

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
PRICE = 12_000


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


class Room:
    """The two members of one room, as their apps would act."""

    def __init__(self, node: RunningNode, room: str, clock: FakeClock) -> None:
        self.node, self.room, self.clock = node, room, clock
        self.client_h = {"authorization": "Bearer " + node.token("ana", "client", ttl=10**8)}
        self.provider_h = {"authorization": "Bearer " + node.token("dr-li", "provider",
                                                                   ttl=10**8)}
        self.http = httpx.AsyncClient(base_url=node.url)

    async def to(self, when: datetime) -> None:
        assert when >= self.clock.now
        await self.node.tick(when - self.clock.now)

    async def book(self, start: datetime, **extra: Any) -> dict[str, Any]:
        r = await self.http.post(f"/v1/rooms/{self.room}/sessions", headers=self.client_h,
                                 json={"kind": "live", "modality": "video",
                                       "start": start.isoformat(), **extra})
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def act(self, session: str, action: str, who: str = "client",
                  **body: Any) -> dict[str, Any]:
        headers = self.client_h if who == "client" else self.provider_h
        r = await self.http.post(f"/v1/sessions/{session}/{action}", headers=headers, json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def credits(self) -> dict[str, Any]:
        r = await self.http.get(f"/v1/rooms/{self.room}/credits", headers=self.client_h)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def state(self, session: str) -> str:
        r = await self.http.get(f"/v1/sessions/{session}", headers=self.client_h)
        return str(r.json()["state"])


@pytest.fixture
async def month(tmp_path: Path) -> AsyncIterator[tuple[Room, Client, Client]]:
    clock = FakeClock(START)
    async with node_in_process(tmp_path / "d", clock=clock, rate_limit_per_s=1000,
                               rate_limit_burst=1000) as node:
        room_id = await node.room("ana", "dr-li", plan="self_pay", service="therapy")
        room = Room(node, room_id, clock)
        ana = await Client.connect(node.url, node.token("ana", ttl=10**8), "json")
        li = await Client.connect(node.url, node.token("dr-li", "provider", ttl=10**8))
        await ana.sub(room_id)
        await li.sub(room_id)
        yield room, ana, li
        await room.http.aclose()


async def events(client: Client, room: str) -> list[str]:
    """The system events the room has stored so far, in order."""
    page = await client.request({"t": "history", "room": room, "limit": 200})
    return [m["event"]["event"] for m in page["msgs"] if m["kind"] == "system"]


async def test_r12_r14_r15_r11_self_pay_month_ledger_to_the_cent(
        month: tuple[Room, Client, Client]) -> None:
    room, ana, li = month
    assert (await room.credits())["plan"] == 4  # R12: the month's plan credits

    # 1. Book, confirm, two reminders, attend: the credit is consumed.
    s1 = (await room.book(at(5, 15)))["session"]
    await room.act(s1, "confirm", "provider")
    await room.to(at(4, 15))
    await room.to(at(5, 14, 45))
    shown = await events(li, room.room)
    assert shown == ["booked", "confirmed", "reminder", "reminder"]
    live = [f for f in li.inbox if f.get("kind") == "system"]  # also seen live
    assert len(live) == 4
    reminder = next(f for f in (await li.request({"t": "history", "room": room.room}))["msgs"]
                    if f.get("event", {}).get("event") == "reminder")
    assert reminder["event"]["join"].endswith(f"/live/{s1}")  # R9: a link to join
    await room.to(at(5, 14, 55))
    waiting = await ana.request({"t": "live.join", "session": s1})
    assert waiting["t"] in ("live.joined", "live.waiting")
    await li.request({"t": "live.join", "session": s1})
    start_a = await ana.next_type("live.start", session=s1)
    start_l = await li.next_type("live.start", session=s1)
    assert start_a["polite"] != start_l["polite"]
    await room.to(at(5, 15))  # the start: both in, the session begins
    assert await room.state(s1) == "started"
    await room.to(at(5, 15, 45))
    left = await li.request({"t": "live.leave", "session": s1})  # the provider ends it
    assert left["t"] == "live.left", left
    ended = await ana.next_type("live.ended", session=s1)
    assert ended["reason"] == "provider_left"
    await room.to(at(5, 15, 51))
    assert await room.state(s1) == "ended"
    record = (await room.http.get(f"/v1/sessions/{s1}", headers=room.client_h)).json()
    attendance = record["attendance"]  # start, end and who was present, for the history
    assert attendance["starts"] == [at(5, 14, 55).isoformat()]
    assert attendance["ended_at"] == at(5, 15, 45).isoformat()
    assert attendance["end_reason"] == "provider_left"
    assert {i["user"] for i in attendance["intervals"]} == {"ana", "dr-li"}

    # 2. A late cancellation by the client: credit forfeited, full cost charged (R14).
    s2 = (await room.book(at(10, 15)))["session"]
    await room.act(s2, "confirm", "provider")
    await room.to(at(10, 9))
    cancelled = await room.act(s2, "cancel")
    assert cancelled["state"] == "late-cancelled"
    assert cancelled["cost"]["credit_forfeited"] == 1
    assert cancelled["cost"]["charged_cents"] == PRICE

    # 3. A client no-show: the provider joins, the client never does (R15 -> R14).
    s3 = (await room.book(at(12, 15)))["session"]
    await room.act(s3, "confirm", "provider")
    await room.to(at(12, 14, 55))
    await li.request({"t": "live.join", "session": s3})
    await room.to(at(12, 15, 11))
    assert await room.state(s3) == "no-show"

    # 4. The provider cancels: the client keeps the credit, no charge (R11)...
    s4 = (await room.book(at(17, 15)))["session"]
    before = (await room.credits())["available"]
    cancelled = await room.act(s4, "cancel", "provider")
    assert cancelled["state"] == "cancelled" and cancelled["cost"]["charged_cents"] == 0
    assert (await room.credits())["available"] == before + 1
    # ...and rebooks with it.
    s5 = (await room.book(at(19, 15)))["session"]
    assert (await room.credits())["plan"] == 0

    # 5. Moved in time keeps its credit; never confirmed, it lapses and the credit is back (R8).
    moved = await room.act(s5, "reschedule", start=at(20, 15).isoformat())
    assert moved["state"] == "booked" and moved["cost"]["charged_cents"] == 0
    await room.to(at(19, 15, 1))
    assert await room.state(s5) == "lapsed"
    assert (await room.credits())["plan"] == 1

    # 6. One plan credit left; the next booking buys a credit while booking (R7).
    s6 = (await room.book(at(2, 15, month=4)))["session"]
    refused = await room.http.post(f"/v1/rooms/{room.room}/sessions", headers=room.client_h,
                                   json={"kind": "live", "modality": "video",
                                         "start": at(3, 15, month=4).isoformat()})
    assert refused.status_code == 422 and refused.json()["error"]["rule"] == "R7"
    s7 = (await room.book(at(3, 15, month=4), buy_credit=True))["session"]
    await room.act(s6, "confirm", "provider")
    await room.act(s7, "confirm", "provider")

    # 7. Period rollover: unused plan credits lapse, April's four arrive (R12).
    await room.to(at(1, 0, 1, month=4))
    credits = await room.credits()
    assert credits["plan"] == 4 and credits["held"] == 2

    # The ledger, to the cent: late cancel, no-show, one credit bought.
    kinds = sorted(c["kind"] for c in credits["charges"])
    assert kinds == ["late_cancel", "no_show", "purchase"]
    assert credits["charged_cents"] == 3 * PRICE
    entry_kinds = [e["kind"] for e in credits["entries"]]
    assert entry_kinds.count("consume") == 1 and entry_kinds.count("forfeit") == 2
    assert entry_kinds.count("grant") == 2 and entry_kinds.count("purchase") == 1
    shown = await events(ana, room.room)
    for event in ("late_cancelled", "no_show", "cancelled", "lapsed"):
        assert event in shown, (event, shown)
    assert {s6, s7} <= {s["session"] for s in (await room.http.get(
        f"/v1/rooms/{room.room}/sessions", headers=room.client_h)).json()["sessions"]
        if s["state"] == "confirmed"}
