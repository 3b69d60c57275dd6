"""Booking live sessions over HTTP: modalities (R6), slots, credits and no double booking
(R7), confirmation and lapse (R8), reminders (R9)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sessions.site import NODE_SETTINGS, T0, Site, at, connected, error_of, refused
from support.client import Client
from support.nodes import FakeClock, node_in_process

from server.store.base import Tx

DAYS3 = timedelta(days=3)
H = timedelta(hours=1)


async def grant(site: Site, room: str, count: int) -> dict[str, Any]:
    r = await site.http.post(f"/v1/rooms/{room}/credits", headers=site.node.admin,
                             json={"count": count})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def slots(site: Site, provider: str, user: str, start: timedelta, end: timedelta,
                role: str = "client") -> list[str]:
    r = await site.http.get(f"/v1/providers/{provider}/slots", headers=site.auth(user, role),
                            params={"from": at(start), "to": at(end)})
    assert r.status_code == 200, r.text
    return [s["start"] for s in r.json()["slots"]]


# -- R6 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", ["self_pay", "org", "eap", "bh"])
async def test_r6_therapy_rooms_book_video_audio_and_chat(site: Site, plan: str) -> None:
    room = await site.room("c1", "p1", plan)
    await grant(site, room, 3)
    for i, modality in enumerate(("video", "audio", "chat")):
        r = await site.book(room, "c1", DAYS3 + i * 2 * H, modality)
        assert r.status_code == 201, r.text
        assert r.json()["modality"] == modality and r.json()["kind"] == "live"
    r = await site.book(room, "c1", DAYS3 + 8 * H, "hologram")
    assert r.status_code == 400 and error_of(r)["code"] == "bad_request"


# -- R7 ------------------------------------------------------------------------------------


async def test_r7_free_slots_leave_out_booked_time_and_follow_hours(site: Site) -> None:
    room = await site.room("c1", "p1")
    # no hours published: bookable any time, on the 30-minute grid
    free = await slots(site, "p1", "c1", DAYS3, DAYS3 + 3 * H)
    assert free[:3] == [at(DAYS3), at(DAYS3 + H / 2), at(DAYS3 + H)]
    await site.booked(room, "c1", DAYS3 + H)  # 10:00-10:50 on Thursday
    free = await slots(site, "p1", "p1", DAYS3, DAYS3 + 3 * H, "provider")
    # nothing that overlaps 10:00-10:50 (a 50-minute slot from 09:30 or 10:30 would)
    assert at(DAYS3 + H) not in free and at(DAYS3 + H / 2) not in free
    assert at(DAYS3 + 3 * H / 2) not in free and at(DAYS3 + 2 * H) in free
    # a stranger does not see them
    r = await site.http.get("/v1/providers/p1/slots", headers=site.auth("c9"),
                            params={"from": at(DAYS3), "to": at(DAYS3 + H)})
    assert r.status_code in (403, 422), r.text
    # with hours, only inside them (Thursday 09:00-12:00 UTC, plus an extra evening)
    r = await site.http.put("/v1/providers/p1/hours", headers=site.auth("p1", "provider"),
                            json={"tz": "UTC", "days": {"thu": ["09:00", "12:00"]}})
    assert r.status_code == 200, r.text
    r = await site.http.post("/v1/providers/p1/availability",
                             headers=site.auth("p1", "provider"),
                             json={"start": at(DAYS3 + 10 * H), "end": at(DAYS3 + 11 * H)})
    assert r.status_code == 201 and len(r.json()["availability"]) == 1, r.text
    free = await slots(site, "p1", "c1", DAYS3 - 2 * H, DAYS3 + 14 * H)
    assert free == [at(DAYS3), at(DAYS3 + 2 * H), at(DAYS3 + 10 * H)]
    refused(await site.book(room, "c1", DAYS3 + 5 * H), "R7")  # outside hours
    assert (await site.book(room, "c1", DAYS3 + 10 * H)).status_code == 201


async def test_r7_booking_refuses_taken_and_past_times(site: Site) -> None:
    room = await site.room("c1", "p1")
    await site.booked(room, "c1", DAYS3)
    refused(await site.book(room, "c1", DAYS3 + H / 2), "R7")  # overlaps
    refused(await site.book(room, "c1", -H), "R7")  # in the past
    refused(await site.book(room, "p1", DAYS3 + 4 * H, role="provider"), "R7")  # not the client


@pytest.mark.parametrize("plan", ["org", "eap", "bh"])
async def test_r7_no_credit_refuses_booking_in_sponsored_plans(site: Site, plan: str) -> None:
    room = await site.room("c1", "p1", plan)
    refused(await site.book(room, "c1", DAYS3), "R7")
    refused(await site.book(room, "c1", DAYS3, buy_credit=True), "R7")  # nothing to buy
    assert (await site.credits(room))["charged_cents"] == 0
    await grant(site, room, 1)
    assert (await site.book(room, "c1", DAYS3)).status_code == 201
    credits = await site.credits(room)
    assert credits["available"] == 0 and credits["held"] == 1


async def test_r7_self_pay_without_credit_buys_one_while_booking(site: Site) -> None:
    room = await site.room("c1", "p1", "self_pay")
    for i in range(4):  # the four plan credits of the month (R12)
        await site.booked(room, "c1", DAYS3 + i * 2 * H)
    refused(await site.book(room, "c1", DAYS3 + 10 * H), "R7")  # money needs consent
    r = await site.book(room, "c1", DAYS3 + 10 * H, buy_credit=True)
    assert r.status_code == 201, r.text
    credits = await site.credits(room)
    assert credits["available"] == 0 and credits["held"] == 5
    assert [(c["kind"], c["amount_cents"]) for c in credits["charges"]] == [("purchase", 12000)]
    assert credits["charged_cents"] == 12000


async def test_r7_client_shares_availability_in_the_room(site: Site) -> None:
    room = await site.room("c1", "p1")
    intervals = [{"start": at(DAYS3), "end": at(DAYS3 + 2 * H)},
                 {"start": at(DAYS3 * 2), "end": at(DAYS3 * 2 + H)}]
    async with connected(site.node, "p1", "provider") as provider:
        await provider.sub(room)
        r = await site.http.post(f"/v1/rooms/{room}/availability", headers=site.auth("c1"),
                                 json={"intervals": intervals})
        assert r.status_code == 201, r.text
        msg = await provider.next_type("msg", room=room)
    assert msg["kind"] == "system" and msg["seq"] == r.json()["seq"]
    assert msg["event"]["event"] == "availability"
    assert msg["event"]["intervals"] == intervals
    r = await site.http.post(f"/v1/rooms/{room}/availability",
                             headers=site.auth("p1", "provider"), json={"intervals": intervals})
    assert r.status_code in (403, 422), r.text


async def test_r7_no_double_booking_when_thirty_clients_race_for_one_slot(site: Site) -> None:
    rooms = [await site.room(f"c{i}", "p1") for i in range(30)]
    start = at(DAYS3)

    async def book(i: int) -> tuple[int, dict[str, Any]]:
        r = await site.http.post(f"/v1/rooms/{rooms[i]}/sessions", headers=site.auth(f"c{i}"),
                                 json={"kind": "live", "modality": "video", "start": start})
        return r.status_code, r.json()

    answers = await asyncio.gather(*(book(i) for i in range(30)))
    won = [body for status, body in answers if status == 201]
    assert len(won) == 1, answers
    for status, body in answers:
        if status != 201:
            assert (status, body["error"]["code"]) in ((409, "conflict"), (422, "rule")), body
            assert body["error"].get("rule", "R7") == "R7", body

    def held(tx: Tx) -> list[str]:
        return [d.id for d in tx.docs("live", owner="p1", active=True)]

    assert site.node.node is not None
    assert await site.node.node.store.view(held) == [won[0]["session"]]
    held_credits = [(await site.credits(room))["held"] for room in rooms]
    assert sorted(held_credits) == [0] * 29 + [1]  # the losers kept their credits


# -- R8 ------------------------------------------------------------------------------------


async def test_r8_unconfirmed_booking_lapses_and_both_are_told(site: Site) -> None:
    room = await site.room("c1", "p1")
    client = await Client.connect(site.node.url, site.node.token("c1"), "json")
    provider = await Client.connect(site.node.url, site.node.token("p1", "provider"), "msgpack")
    try:
        await client.sub(room)
        await provider.sub(room)
        booked = await site.booked(room, "c1", DAYS3)
        sid = booked["session"]
        assert booked["confirm_by"] == at(DAYS3 - 24 * H)
        assert (await site.credits(room))["held"] == 1
        await site.tick_to(DAYS3 - 24 * H - timedelta(minutes=1))
        assert (await site.session(sid, "c1"))["state"] == "booked"
        await site.tick(timedelta(minutes=1))
        assert (await site.session(sid, "c1"))["state"] == "lapsed"
        for ws in (client, provider):
            msg = await ws.next(lambda f: f.get("t") == "msg" and f.get("kind") == "system"
                                and f["event"]["event"] == "lapsed")
            assert msg["event"]["session"] == sid
            frame = await ws.next(lambda f: f.get("t") == "session"
                                  and f["session"]["state"] == "lapsed")
            assert frame["session"]["session"] == sid
    finally:
        await client.close()
        await provider.close()
    credits = await site.credits(room)
    assert credits["available"] == 4 and credits["held"] == 0 and credits["charged_cents"] == 0
    refused(await site.act(sid, "confirm", "p1", "provider"), "R8")  # too late


async def test_r8_confirmation_before_the_deadline_stops_the_lapse(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = (await site.booked(room, "c1", DAYS3))["session"]
    refused(await site.act(sid, "confirm", "c1"), "R8")  # only the provider confirms
    r = await site.act(sid, "confirm", "p1", "provider")
    assert r.status_code == 200 and r.json()["state"] == "confirmed", r.text
    assert r.json()["confirmed_at"] == T0.isoformat()
    await site.tick_to(DAYS3 - H)
    assert (await site.session(sid, "c1"))["state"] in ("confirmed", "reminded")
    assert "lapsed" not in [e["event"] for e in await site.events(room, "c1")]


async def test_r8_late_booking_must_be_confirmed_before_it_starts(site: Site) -> None:
    room = await site.room("c1", "p1")
    late = await site.booked(room, "c1", 5 * H)
    assert late["confirm_by"] == late["start"]  # less than 24 h ahead: by the start
    other = await site.booked(room, "c1", 8 * H)
    await site.tick(4 * H)
    r = await site.act(other["session"], "confirm", "p1", "provider")
    assert r.status_code == 200 and r.json()["state"] == "confirmed"
    await site.tick(H)  # the start of the first: still unconfirmed
    assert (await site.session(late["session"], "c1"))["state"] == "lapsed"
    assert (await site.session(other["session"], "c1"))["state"] in ("confirmed", "reminded")
    assert (await site.credits(room))["held"] == 1


async def test_r8_an_unconfirmed_session_cannot_be_joined(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = (await site.booked(room, "c1", 5 * H))["session"]
    await site.tick(5 * H - timedelta(minutes=5))  # the join window is open
    async with connected(site.node, "c1") as client:
        reply = await client.request({"t": "live.join", "session": sid})
    assert reply["t"] == "error" and reply["code"] == "rule" and reply["rule"] == "R8", reply
    assert (await site.session(sid, "c1"))["state"] == "booked"


# -- R9 ------------------------------------------------------------------------------------


async def test_r9_reminders_a_day_and_a_quarter_hour_before_with_a_join_link(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = (await site.booked(room, "c1", DAYS3))["session"]
    assert (await site.act(sid, "confirm", "p1", "provider")).status_code == 200
    async with connected(site.node, "c1") as client:
        await client.sub(room)
        await site.tick_to(DAYS3 - 24 * H)
        first = await client.next(lambda f: f.get("t") == "msg" and f.get("kind") == "system")
        assert first["event"]["event"] == "reminder" and first["event"]["session"] == sid
        assert first["event"]["join"].endswith(sid) and first["event"]["join"].startswith("http")
        assert first["ts"].startswith(at(DAYS3 - 24 * H)[:16])
        assert (await site.session(sid, "c1"))["state"] == "reminded"
        await site.tick_to(DAYS3 - timedelta(minutes=16))
        await site.tick_to(DAYS3 - timedelta(minutes=15))
        second = await client.next(lambda f: f.get("t") == "msg" and f.get("kind") == "system")
        assert second["event"]["event"] == "reminder" and second["event"]["join"].endswith(sid)
    events = [e["event"] for e in await site.events(room, "p1", "provider")]
    assert events == ["booked", "confirmed", "reminder", "reminder"]


async def test_r9_a_reminder_already_past_at_confirmation_is_not_sent(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = (await site.booked(room, "c1", 5 * H))["session"]
    assert (await site.act(sid, "confirm", "p1", "provider")).status_code == 200
    await site.tick(5 * H - timedelta(minutes=1))
    reminders = [e for e in await site.events(room, "c1") if e["event"] == "reminder"]
    assert len(reminders) == 1 and reminders[0]["session"] == sid  # only the 15-minute one


async def test_r7_no_double_booking_across_two_nodes_on_one_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with node_in_process(data, clock=FakeClock(T0), **NODE_SETTINGS) as a, \
            node_in_process(data, clock=FakeClock(T0), **NODE_SETTINGS) as b:
        rooms = [await a.room(f"c{i}", "p1") for i in range(20)]

        async def book(i: int) -> int:
            node = (a, b)[i % 2]
            async with httpx.AsyncClient(base_url=node.url) as http:
                r = await http.post(f"/v1/rooms/{rooms[i]}/sessions",
                                    headers={"authorization": "Bearer " + node.token(f"c{i}")},
                                    json={"kind": "live", "modality": "video",
                                          "start": at(DAYS3)})
                assert r.status_code in (201, 409, 422), r.text
                return r.status_code

        statuses = await asyncio.gather(*(book(i) for i in range(20)))
        assert statuses.count(201) == 1, statuses
        assert b.node is not None
        held = await b.node.store.view(
            lambda tx: [d.id for d in tx.docs("live", owner="p1", active=True)])
        assert len(held) == 1
