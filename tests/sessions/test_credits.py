"""What cancelling, rescheduling and missing a session costs (R11, R14, R15), and the
self-pay billing period (R12), read back from GET /v1/rooms/{room}/credits."""

from __future__ import annotations

import gc
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from sessions.site import T0, Site, at, connected
from support.client import Client

DAYS3 = timedelta(days=3)
H = timedelta(hours=1)
M = timedelta(minutes=1)


async def confirmed(site: Site, room: str, start: timedelta) -> str:
    sid: str = (await site.booked(room, "c1", start))["session"]
    r = await site.act(sid, "confirm", "p1", "provider")
    assert r.status_code == 200, r.text
    return sid


def kinds(credits: dict[str, Any]) -> list[tuple[str, int]]:
    return [(c["kind"], c["amount_cents"]) for c in credits["charges"]]


# -- R11 -----------------------------------------------------------------------------------


async def test_r11_provider_cancel_keeps_the_clients_credit_at_no_charge(site: Site) -> None:
    room = await site.room("c1", "p1", "org")
    r = await site.http.post(f"/v1/rooms/{room}/credits", headers=site.node.admin,
                             json={"count": 1})
    assert r.status_code == 201
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 - 2 * H)  # inside the late window: no matter for the provider
    r = await site.act(sid, "cancel", "p1", "provider")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert r.json()["cost"]["credit_returned"] == 1 and r.json()["cost"]["charged_cents"] == 0
    credits = await site.credits(room)
    assert credits["available"] == 1 and credits["held"] == 0 and credits["charges"] == []
    # ... and the client rebooks with it
    assert (await site.book(room, "c1", DAYS3 * 2)).status_code == 201
    assert (await site.credits(room))["held"] == 1


# -- R14 -----------------------------------------------------------------------------------


async def test_r14_client_cancel_outside_the_late_window_gives_the_credit_back(
        site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 - 24 * H - M)
    r = await site.act(sid, "cancel", "c1")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert r.json()["cost"] == {"credit_forfeited": 0, "credit_returned": 1,
                                "charged_cents": 0, "charges": []}
    credits = await site.credits(room)
    assert credits["available"] == 4 and credits["held"] == 0 and credits["charged_cents"] == 0


async def test_r14_late_client_cancel_forfeits_the_credit_and_charges_full_cost(
        site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 - 24 * H)  # the window opens: late from here on
    r = await site.act(sid, "cancel", "c1")
    assert r.status_code == 200 and r.json()["state"] == "late-cancelled", r.text
    cost = r.json()["cost"]
    assert cost["credit_forfeited"] == 1 and cost["charged_cents"] == 12000
    credits = await site.credits(room)
    assert credits["available"] == 3 and credits["held"] == 0
    assert kinds(credits) == [("late_cancel", 12000)] and credits["charged_cents"] == 12000
    assert credits["charges"][0]["session"] == sid and credits["charges"][0]["rule"] == "R14"
    assert [e["event"] for e in await site.events(room, "p1", "provider")][-1] \
        == "late_cancelled"


async def test_r14_reschedule_outside_keeps_the_credit_inside_charges(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    entries_before = len((await site.credits(room))["entries"])
    r = await site.act(sid, "reschedule", "c1", start=at(DAYS3 + H))
    assert r.status_code == 200 and r.json()["state"] == "booked", r.text
    assert r.json()["cost"]["charged_cents"] == 0
    assert len((await site.credits(room))["entries"]) == entries_before  # same credit
    assert (await site.act(sid, "confirm", "p1", "provider")).status_code == 200
    await site.tick_to(DAYS3 - 3 * H)
    r = await site.act(sid, "reschedule", "c1", start=at(DAYS3 * 2))
    assert r.status_code == 200 and r.json()["state"] == "booked", r.text
    assert r.json()["cost"]["credit_forfeited"] == 1 and r.json()["cost"]["charged_cents"] == 12000
    credits = await site.credits(room)
    assert kinds(credits) == [("late_reschedule", 12000)]
    assert credits["held"] == 1 and credits["available"] == 2  # a fresh credit holds it


async def test_r14_booking_inside_the_window_is_late_at_once(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = (await site.booked(room, "c1", 6 * H))["session"]
    r = await site.act(sid, "cancel", "c1")
    assert r.json()["state"] == "late-cancelled" and r.json()["cost"]["charged_cents"] == 12000


# -- R15 -----------------------------------------------------------------------------------


async def test_r15_nobody_joins_is_the_providers_miss_credit_kept(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 + timedelta(minutes=9))
    assert (await site.session(sid, "c1"))["state"] in ("confirmed", "reminded")
    async with connected(site.node, "p1", "provider") as provider:
        await provider.sub(room)
        await site.tick_to(DAYS3 + timedelta(minutes=10))
        msg = await provider.next(lambda f: f.get("t") == "msg" and f.get("kind") == "system"
                                  and f["event"]["event"] == "no_show")
    assert sorted(msg["event"]["absent"]) == ["client", "provider"]
    session = await site.session(sid, "c1")
    assert session["state"] == "no-show" and sorted(session["absent"]) == ["client", "provider"]
    credits = await site.credits(room)
    assert credits["available"] == 4 and credits["held"] == 0 and credits["charges"] == []


async def join(site: Site, user: str, role: str, sid: str) -> Client:
    ws = await Client.connect(site.node.url, site.node.token(user, role), "json")
    reply = await ws.request({"t": "live.join", "session": sid})
    assert reply["t"] == "live.joined" and reply["session"] == sid, reply
    return ws


async def test_r15_client_absent_with_provider_present_forfeits_and_charges(
        site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 - timedelta(minutes=5))
    provider = await join(site, "p1", "provider", sid)
    try:
        await site.tick_to(DAYS3 + timedelta(minutes=10))
    finally:
        await provider.close()
    session = await site.session(sid, "c1")
    assert session["state"] == "no-show" and session["absent"] == ["client"]
    credits = await site.credits(room)
    assert credits["held"] == 0 and kinds(credits) == [("no_show", 12000)]


async def test_r15_provider_absent_with_client_present_keeps_the_credit(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 - timedelta(minutes=5))
    client = await join(site, "c1", "client", sid)
    try:
        await site.tick_to(DAYS3 + timedelta(minutes=10))
    finally:
        await client.close()
    session = await site.session(sid, "c1")
    assert session["state"] == "no-show" and session["absent"] == ["provider"]
    credits = await site.credits(room)
    assert credits["available"] == 4 and credits["charges"] == []


async def test_r15_joins_leave_no_unawaited_gate_timers(site: Site) -> None:
    room = await site.room("c1", "p1")
    sid = await confirmed(site, room, DAYS3)
    await site.tick_to(DAYS3 - timedelta(minutes=5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = await join(site, "c1", "client", sid)
        provider = await join(site, "p1", "provider", sid)
        await client.close()
        await provider.close()
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


# -- R12 -----------------------------------------------------------------------------------


async def test_r12_self_pay_month_plan_credits_lapse_bought_and_granted_kept(
        site: Site) -> None:
    room = await site.room("c1", "p1", "self_pay")
    credits = await site.credits(room)
    assert (credits["plan"], credits["kept"]) == (4, 0)
    april = timedelta(days=45)  # sessions in mid April: their confirmation is after the month
    sids = [(await site.booked(room, "c1", april + i * 2 * H))["session"] for i in range(4)]
    bought = await site.booked(room, "c1", april + 10 * H, buy_credit=True)
    assert (await site.act(bought["session"], "cancel", "c1")).status_code == 200
    assert (await site.act(sids[0], "cancel", "c1")).status_code == 200
    r = await site.http.post(f"/v1/rooms/{room}/credits", headers=site.node.admin,
                             json={"count": 2})
    assert r.status_code == 201
    credits = await site.credits(room)
    assert (credits["plan"], credits["kept"], credits["held"]) == (1, 3, 3)
    end_of_march = datetime(2026, 4, 1, tzinfo=UTC) - T0
    await site.tick_to(end_of_march - M)
    assert (await site.credits(room))["plan"] == 1
    await site.tick_to(end_of_march)
    credits = await site.credits(room)
    assert (credits["plan"], credits["kept"], credits["held"]) == (4, 3, 3)
    lapses = [e for e in credits["entries"] if e["kind"] == "lapse"]
    assert [(e["credits"], e["period"]) for e in lapses] == [(1, "2026-03")]
    grants = [e["period"] for e in credits["entries"] if e["kind"] == "grant"
              and e["pool"] == "plan"]
    assert grants == ["2026-03", "2026-04"]
    assert kinds(credits) == [("purchase", 12000)]  # lapsing costs nothing
    # the next month end again: the April credits lapse, May's are granted, kept stay
    await site.tick_to(datetime(2026, 5, 1, tzinfo=UTC) - T0 - 20 * 24 * H)
    await site.tick_to(datetime(2026, 5, 1, tzinfo=UTC) - T0)
    credits = await site.credits(room)
    assert credits["kept"] == 3 and credits["plan"] == 4
    assert [e["period"] for e in credits["entries"] if e["kind"] == "lapse"] \
        == ["2026-03", "2026-04"]
