"""R17: every deadline fires once, on time, whichever runner or node is up."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sessions.site import NODE_SETTINGS, T0, Site, at
from support.nodes import FakeClock, RunningNode, node_in_process

from server.jobs import DeadlineRunner
from server.sessions import ms

DAYS3 = timedelta(days=3)


async def system_events(node: RunningNode, room: str) -> list[dict[str, Any]]:
    assert node.node is not None
    msgs = await node.node.store.messages_before(room, None, 200)  # type: ignore[arg-type]
    return [json.loads(m.meta) for m in sorted(msgs, key=lambda m: m.seq) if m.meta]


async def test_r17_racing_runners_apply_each_due_job_once(site: Site) -> None:
    node = site.node.node
    assert node is not None
    rooms = [await site.room(f"c{i}", "p1") for i in range(10)]
    sids = []
    for i, room in enumerate(rooms):
        sid = (await site.booked(room, f"c{i}", DAYS3 + i * timedelta(hours=1)))["session"]
        sids.append(sid)
        if i % 2:  # odd rooms confirm: a reminder is due instead of a lapse
            r = await site.act(sid, "confirm", "p1", "provider")
            assert r.status_code == 200
    site.clock.advance(timedelta(days=2, hours=10))  # every lapse and first reminder is due
    runners = [node.deadlines, *(DeadlineRunner(node.store, node.sessions) for _ in range(3))]
    fired = await asyncio.gather(*(r.run_due() for r in runners))
    assert sum(fired) <= 10  # the node's own loop may have taken some; none twice
    assert await node.store.due_jobs(ms(site.clock.now), 100) == []
    for i, (room, sid) in enumerate(zip(rooms, sids, strict=True)):
        events = Counter(e["event"] for e in await system_events(site.node, room))
        if i % 2:
            assert events == {"booked": 1, "confirmed": 1, "reminder": 1}, (i, events)
            assert (await site.session(sid, f"c{i}"))["state"] == "reminded"
        else:
            assert events == {"booked": 1, "lapsed": 1}, (i, events)
            credits = await site.credits(room)
            releases = [e for e in credits["entries"] if e["kind"] == "release"]
            assert len(releases) == 1 and credits["available"] == 4 and credits["held"] == 0
    assert await site.tick(timedelta(0)) == 0  # nothing left to fire again


async def test_r17_a_restarted_node_fires_overdue_jobs_at_once_and_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with node_in_process(data, clock=FakeClock(T0), **NODE_SETTINGS) as first, \
            httpx.AsyncClient(base_url=first.url) as http:
        room = await first.room("c1", "p1")
        r = await http.post(f"/v1/rooms/{room}/sessions",
                            headers={"authorization": "Bearer " + first.token("c1")},
                            json={"kind": "live", "modality": "video", "start": at(DAYS3)})
        assert r.status_code == 201, r.text
        sid = r.json()["session"]
    # the node is gone; it comes back after both the lapse (T0 + 2 days) and the end of
    # the billing period (1 April) have passed
    later = FakeClock(datetime(2026, 4, 2, 8, 0, tzinfo=UTC))
    async with node_in_process(data, clock=later, **NODE_SETTINGS) as second:
        assert second.node is not None
        await second.node.deadlines.run_due()  # returns once the start-up pass has applied
        events = Counter(e["event"] for e in await system_events(second, room))
        assert events == {"booked": 1, "lapsed": 1}
        ledger = await second.node.sessions.credits(room)  # type: ignore[arg-type]
        kinds = Counter(e["kind"] for e in ledger["entries"])
        assert kinds == {"grant": 2, "reserve": 1, "release": 1, "lapse": 1}
        assert [e["period"] for e in ledger["entries"] if e["kind"] == "lapse"] == ["2026-03"]
        assert (ledger["plan"], ledger["held"]) == (4, 0)
        view = await second.node.sessions.view_session(sid)
        assert view["state"] == "lapsed"
        # nothing fires twice: not now, not a day later
        assert await second.tick(timedelta(0)) == 0
        assert await second.tick(timedelta(days=1)) == 0
        assert Counter(e["event"] for e in await system_events(second, room)) == events
