"""A live session's gate follows the room's rules: a cancelled or moved session ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support.client import Client
from support.nodes import FakeClock, RunningNode, node_in_process

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
async def booked(tmp_path: Path) -> AsyncIterator[tuple[RunningNode, str, Client, Client]]:
    clock = FakeClock(START - timedelta(days=2))
    async with node_in_process(tmp_path / "d", clock=clock) as node:
        room = await node.room("ana", "dr-li")
        client_h = {"authorization": "Bearer " + node.token("ana", ttl=10**7)}
        provider_h = {"authorization": "Bearer " + node.token("dr-li", "provider", ttl=10**7)}
        async with httpx.AsyncClient(base_url=node.url) as http:
            r = await http.post(f"/v1/rooms/{room}/sessions", headers=client_h,
                                json={"kind": "live", "modality": "video",
                                      "start": START.isoformat()})
            session = r.json()["session"]
            assert (await http.post(f"/v1/sessions/{session}/confirm",
                                    headers=provider_h)).status_code == 200
        await node.tick(START - timedelta(minutes=5) - clock.now)
        ana = await Client.connect(node.url, node.token("ana", ttl=10**7))
        li = await Client.connect(node.url, node.token("dr-li", "provider", ttl=10**7))
        await ana.request({"t": "live.join", "session": session})
        await li.request({"t": "live.join", "session": session})
        await ana.next_type("live.start", session=session)
        await li.next_type("live.start", session=session)
        yield node, session, ana, li


@pytest.mark.parametrize(("action", "reason"), [("cancel", "cancelled"),
                                                 ("reschedule", "rescheduled")])
async def test_r13_a_cancelled_or_moved_session_ends_its_live_gate(
        booked: tuple[RunningNode, str, Client, Client], action: str, reason: str) -> None:
    node, session, ana, li = booked
    body = {"start": (START + timedelta(days=3)).isoformat()} if action == "reschedule" else {}
    async with httpx.AsyncClient(base_url=node.url) as http:
        r = await http.post(f"/v1/sessions/{session}/{action}", json=body, headers={
            "authorization": "Bearer " + node.token("dr-li", "provider")})
        assert r.status_code == 200, r.text
    for who in (ana, li):
        ended = await who.next_type("live.ended", session=session)
        assert ended["reason"] == reason
    refused = await ana.request({"t": "live.signal", "session": session,
                                 "data": {"type": "candidate", "candidate": None}})
    assert refused["t"] == "error"


async def test_r1_a_stranger_cannot_join_and_is_told_which_rule(
        booked: tuple[RunningNode, str, Client, Client]) -> None:
    node, session, _, _ = booked
    stranger = await Client.connect(node.url, node.token("mallory"))
    refused = await stranger.request({"t": "live.join", "session": session})
    assert refused["code"] == "forbidden" and refused["rule"] == "R1"


async def test_r15_a_session_held_early_and_ended_before_its_start_is_not_a_no_show(
        booked: tuple[RunningNode, str, Client, Client]) -> None:
    node, session, ana, li = booked  # both joined five minutes early: media flows
    left = await li.request({"t": "live.leave", "session": session})
    assert left["t"] == "live.left"
    assert (await ana.next_type("live.ended", session=session))["reason"] == "provider_left"
    await node.tick(timedelta(minutes=20))  # past the start and the no-show grace
    async with httpx.AsyncClient(base_url=node.url) as http:
        record = (await http.get(f"/v1/sessions/{session}", headers={
            "authorization": "Bearer " + node.token("ana")})).json()
        credits = (await http.get(f"/v1/rooms/{record['room']}/credits", headers={
            "authorization": "Bearer " + node.token("ana")})).json()
    assert record["state"] == "ended" and record["absent"] == []
    assert [e["kind"] for e in credits["entries"]][-1] == "consume"
    assert credits["charges"] == []
