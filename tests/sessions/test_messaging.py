"""Asynchronous messages by plan and service (R2, R3), reply-due (R4), messaging sessions (R5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sessions.site import Site, connected, refused
from support.client import Client

from rooms.hours import WorkingHours, reply_due

DAYS3 = timedelta(days=3)


def assert_rule_error(reply: dict[str, Any], rule: str) -> None:
    assert reply["t"] == "error", reply
    assert reply["code"] == "rule" and reply["rule"] == rule, reply


async def test_r2_eap_room_refuses_messages_without_a_messaging_session(site: Site) -> None:
    room = await site.room("c1", "p1", "eap")
    for user, role in (("c1", "client"), ("p1", "provider")):  # both sides (docs/sessions.md)
        async with connected(site.node, user, role) as ws:
            assert_rule_error(await ws.send_text(room, "hello", f"m-{user}"), "R2")
            assert (await ws.request({"t": "ping", "n": 1}))["t"] == "pong"  # still open
    assert await site.history(room, "c1") == []  # nothing stored


@pytest.mark.parametrize("plan", ["eap", "bh"])
async def test_r2_messaging_session_booking_does_not_open_messaging_by_itself(
        site: Site, plan: str) -> None:
    room = await site.room("c1", "p1", plan)
    r = await site.http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                             json={"kind": "messaging"})
    assert r.status_code == 201 and r.json()["state"] == "booked", r.text
    async with connected(site.node, "c1") as ws:
        assert_rule_error(await ws.send_text(room, "hello", "m1"), "R2")  # booked, not started


async def test_r2_org_room_sends_only_if_the_plan_includes_messaging(site: Site) -> None:
    without = await site.room("c1", "p1", "org", messaging=False)
    with_ = await site.room("c2", "p1", "org", messaging=True)
    async with connected(site.node, "c1") as ws:
        assert_rule_error(await ws.send_text(without, "hello", "m1"), "R2")
    async with connected(site.node, "p1", "provider") as ws:
        assert_rule_error(await ws.send_text(without, "hello", "m2"), "R2")
    async with connected(site.node, "c2") as ws:
        ack = await ws.send_text(with_, "hello", "m1")
        assert ack["t"] == "ack" and ack["seq"] == 1, ack
    assert await site.history(without, "c1") == []
    # org rooms have no messaging sessions to book (R2)
    r = await site.http.post(f"/v1/rooms/{without}/sessions", headers=site.auth("c1"),
                             json={"kind": "messaging"})
    refused(r, "R2")


async def test_r2_self_pay_sends_any_time(site: Site) -> None:
    room = await site.room("c1", "p1", "self_pay")
    await site.tick(timedelta(days=5, hours=14))  # a Saturday night
    async with connected(site.node, "c1") as ws:
        ack = await ws.send_text(room, "hello", "m1")
        assert ack["t"] == "ack" and ack["seq"] == 1, ack
    assert [m["body"] for m in await site.history(room, "p1", "provider")] == ["hello"]


@pytest.mark.parametrize("plan", ["self_pay", "org", "eap", "bh"])
async def test_r3_psychiatry_refuses_messages_audio_and_chat(site: Site, plan: str) -> None:
    room = await site.room("c1", "p1", plan, "psychiatry", messaging=True)
    await site.http.post(f"/v1/rooms/{room}/credits", headers=site.node.admin, json={"count": 2})
    async with connected(site.node, "c1") as ws:
        assert_rule_error(await ws.send_text(room, "hello", "m1"), "R3")
    async with connected(site.node, "p1", "provider") as ws:
        assert_rule_error(await ws.send_text(room, "hello", "m2"), "R3")
    refused(await site.book(room, "c1", DAYS3, "audio"), "R3")
    refused(await site.book(room, "c1", DAYS3, "chat"), "R3")
    refused(await site.http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                                 json={"kind": "messaging"}), "R3")
    r = await site.book(room, "c1", DAYS3, "video")
    assert r.status_code == 201 and r.json()["modality"] == "video", r.text
    assert [e["event"] for e in await site.events(room, "c1")] == ["booked"]


# -- R4 ------------------------------------------------------------------------------------

BERLIN = {"tz": "Europe/Berlin", "days": {d: ["09:00", "17:00"]
                                          for d in ("mon", "tue", "wed", "thu", "fri")}}


async def put_hours(site: Site, provider: str, hours: dict[str, Any]) -> None:
    r = await site.http.put(f"/v1/providers/{provider}/hours",
                            headers=site.auth(provider, "provider"), json=hours)
    assert r.status_code == 200, r.text
    assert r.json()["hours"] == hours


async def awaiting(site: Site, provider: str) -> list[dict[str, Any]]:
    r = await site.http.get(f"/v1/providers/{provider}/awaiting-reply",
                            headers=site.auth(provider, "provider"))
    assert r.status_code == 200, r.text
    return r.json()["rooms"]  # type: ignore[no-any-return]


async def test_r4_reply_due_follows_working_hours_and_a_reply_clears_it(site: Site) -> None:
    await put_hours(site, "p1", BERLIN)
    room = await site.room("c1", "p1")
    async with connected(site.node, "c1") as ws:
        assert (await ws.send_text(room, "first", "m1"))["t"] == "ack"
        assert (await ws.send_text(room, "second", "m2"))["t"] == "ack"
    [listed] = await awaiting(site, "p1")
    since = datetime.fromisoformat(listed["waiting_since"].replace("Z", "+00:00"))
    hours = WorkingHours.weekdays("Europe/Berlin")
    assert listed["room"] == room and listed["client"] == "c1"
    assert datetime.fromisoformat(listed["reply_due"]) == reply_due(since, hours)
    # the refusal of the others: only the provider themself lists it
    r = await site.http.get("/v1/providers/p1/awaiting-reply", headers=site.auth("c1"))
    assert r.status_code == 403
    async with connected(site.node, "p1", "provider") as ws:
        assert (await ws.send_text(room, "answer", "a1"))["t"] == "ack"
    assert await awaiting(site, "p1") == []


async def test_r4_friday_evening_message_is_due_monday_evening_then_overdue(site: Site) -> None:
    await put_hours(site, "p1", BERLIN)
    room = await site.room("c1", "p1")
    await site.tick_to(timedelta(days=4, hours=10))  # Friday 6 March, 19:00 Berlin
    async with connected(site.node, "c1") as ws:
        assert (await ws.send_text(room, "weekend thoughts", "m1"))["t"] == "ack"
    monday_evening = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # 17:00 Berlin
    [listed] = await awaiting(site, "p1")
    assert datetime.fromisoformat(listed["reply_due"]) == monday_evening
    assert listed["overdue"] is False
    await site.tick(monday_evening - site.clock.now + timedelta(minutes=1))
    [listed] = await awaiting(site, "p1")
    assert listed["overdue"] is True
    async with connected(site.node, "p1", "provider") as ws:
        assert (await ws.send_text(room, "answer", "a1"))["t"] == "ack"
    assert await awaiting(site, "p1") == []


async def test_r4_reply_due_across_the_dst_change(site: Site) -> None:
    """Berlin moves to summer time on Sunday 29 March 2026: 17:00 local is 15:00 UTC after."""
    await put_hours(site, "p1", BERLIN)
    room = await site.room("c1", "p1")
    await site.tick_to(timedelta(days=25, hours=10))  # Friday 27 March, 19:00 CET
    async with connected(site.node, "c1") as ws:
        assert (await ws.send_text(room, "hello", "m1"))["t"] == "ack"
    [listed] = await awaiting(site, "p1")
    assert datetime.fromisoformat(listed["reply_due"]) == datetime(2026, 3, 30, 15, 0,
                                                                   tzinfo=UTC)


# -- R5 ------------------------------------------------------------------------------------


async def test_r5_messaging_session_opens_messaging_for_its_length(site: Site) -> None:
    room = await site.room("c1", "p1", "eap")
    client = await Client.connect(site.node.url, site.node.token("c1"), "json")
    provider = await Client.connect(site.node.url, site.node.token("p1", "provider"), "msgpack")
    try:
        await client.sub(room)
        await provider.sub(room)
        r = await site.http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                                 json={"kind": "messaging"})
        assert r.status_code == 201, r.text
        booked = r.json()
        sid = booked["session"]
        assert booked["kind"] == "messaging" and booked["state"] == "booked"
        # a second one while this is open: R5
        refused(await site.http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                                     json={"kind": "messaging"}), "R5")
        # only the client starts it
        refused(await site.act(sid, "start", "p1", "provider"), "R5")
        r = await site.act(sid, "start", "c1")
        assert r.status_code == 200 and r.json()["state"] == "started", r.text
        assert r.json()["ends_at"] == (site.clock.now + timedelta(minutes=30)).isoformat()
        for ws in (client, provider):
            frame = await ws.next_type("session", room=room)
            while frame["session"]["state"] != "started":
                frame = await ws.next_type("session", room=room)
            assert frame["session"]["session"] == sid
            msg = await ws.next(lambda f: f.get("t") == "msg" and f.get("kind") == "system"
                                and f["event"]["event"] == "messaging_started")
            assert msg["event"]["session"] == sid and msg["from"] == "system"
        # both sides may send while it runs
        assert (await client.send_text(room, "hello", "m1"))["t"] == "ack"
        assert (await provider.send_text(room, "hi", "a1"))["t"] == "ack"
        # once started it cannot be cancelled, by either side, nor confirmed into a live one
        refused(await site.act(sid, "cancel", "c1"), "R5")
        refused(await site.act(sid, "cancel", "p1", "provider"), "R5")
        refused(await site.act(sid, "confirm", "c1"), "R5")
        # a separate live session can still be booked (with a live credit)
        await site.http.post(f"/v1/rooms/{room}/credits", headers=site.node.admin,
                             json={"count": 1})
        assert (await site.book(room, "c1", DAYS3)).status_code == 201
        # after its length it ends by itself; messaging is refused again
        await site.tick(timedelta(minutes=30))
        assert (await site.session(sid, "c1"))["state"] == "ended"
        msg = await provider.next(lambda f: f.get("t") == "msg" and f.get("kind") == "system"
                                  and f["event"]["event"] == "messaging_ended")
        assert msg["event"]["session"] == sid
        assert_rule_error(await client.send_text(room, "too late", "m2"), "R2")
        assert_rule_error(await provider.send_text(room, "too late", "a2"), "R2")
    finally:
        await client.close()
        await provider.close()
    bodies = [m.get("body") for m in await site.history(room, "c1") if m["kind"] == "text"]
    assert bodies == ["hello", "hi"]


async def test_r5_booked_messaging_session_can_be_cancelled_before_it_starts(site: Site) -> None:
    room = await site.room("c1", "p1", "bh")
    r = await site.http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                             json={"kind": "messaging"})
    sid = r.json()["session"]
    r = await site.act(sid, "cancel", "p1", "provider")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    refused(await site.act(sid, "start", "c1"), "R5")
    r = await site.http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                             json={"kind": "messaging"})
    assert r.status_code == 201  # a new one may be booked once the old is closed
