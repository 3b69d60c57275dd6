"""R1 membership and R13 who moves a session, over HTTP and the websocket."""

from __future__ import annotations

from datetime import timedelta

from sessions.site import Site, connected, error_of, refused, refused_r1

DAYS3 = timedelta(days=3)


async def test_r1_stranger_cannot_read_or_book_or_see_a_session(site: Site) -> None:
    room = await site.room("c1", "p1")
    session = (await site.booked(room, "c1", DAYS3))["session"]
    stranger = site.auth("c9")
    refused_r1(await site.http.get(f"/v1/rooms/{room}/sessions", headers=stranger))
    refused_r1(await site.http.get(f"/v1/rooms/{room}/credits", headers=stranger))
    refused_r1(await site.book(room, "c9", DAYS3 + timedelta(hours=2)))
    refused_r1(await site.http.get(f"/v1/sessions/{session}", headers=stranger))
    # a provider of another room sees nothing of this one either
    refused_r1(await site.http.get(f"/v1/rooms/{room}/sessions",
                                   headers=site.auth("p9", "provider")))
    # the members do
    for user, role in (("c1", "client"), ("p1", "provider")):
        r = await site.http.get(f"/v1/rooms/{room}/sessions", headers=site.auth(user, role))
        assert r.status_code == 200 and [s["session"] for s in r.json()["sessions"]] == [session]


async def test_r1_stranger_cannot_use_the_room_over_the_websocket(site: Site) -> None:
    room = await site.room("c1", "p1")
    async with connected(site.node, "c9") as ws:
        reply = await ws.send_text(room, "hi", "m1")
        assert reply["t"] == "error" and reply["code"] in ("forbidden", "rule"), reply
        if reply["code"] == "rule":
            assert reply["rule"] == "R1"
        sub = await ws.request({"t": "sub", "room": room})
        assert sub["t"] == "error" and sub["code"] in ("forbidden", "rule"), sub
    assert await site.history(room, "c1") == []


async def test_r1_r13_admin_cannot_book_confirm_move_or_cancel(site: Site) -> None:
    room = await site.room("c1", "p1")
    session = (await site.booked(room, "c1", DAYS3))["session"]
    r = await site.book(room, "admin", DAYS3 + timedelta(hours=2), role="admin")
    refused_r1(r)
    for action, body in (("confirm", {}), ("cancel", {}),
                         ("reschedule", {"start": (site.clock.now + DAYS3 * 2).isoformat()})):
        r = await site.act(session, action, "admin", "admin", **body)
        refused(r, "R13")
    assert (await site.session(session, "c1"))["state"] == "booked"
    assert (await site.credits(room))["held"] == 1


async def test_r13_client_and_provider_cancel_and_reschedule_nobody_else(site: Site) -> None:
    room = await site.room("c1", "p1")
    other = await site.room("c2", "p1")  # the same provider's other client
    first = (await site.booked(room, "c1", DAYS3))["session"]
    # strangers: another client of the same provider, another provider
    for user, role in (("c2", "client"), ("p9", "provider")):
        refused_r1(await site.act(first, "cancel", user, role))
        refused_r1(await site.act(first, "reschedule", user, role,
                                  start=(site.clock.now + DAYS3 * 2).isoformat()))
    assert (await site.session(first, "c1"))["state"] == "booked"
    # the client reschedules (outside the late window: the same credit, a new confirmation)
    r = await site.act(first, "reschedule", "c1", start=(site.clock.now + DAYS3 * 2).isoformat())
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["state"] == "booked" and moved["reschedules"] == 1
    assert moved["cost"]["charged_cents"] == 0 and moved["cost"]["credit_forfeited"] == 0
    # the provider reschedules: counts as the confirmation
    new_start = (site.clock.now + DAYS3 * 3).isoformat()
    r = await site.act(first, "reschedule", "p1", "provider", start=new_start)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "confirmed" and r.json()["start"] == new_start
    # the provider cancels it; the client cancels another one
    r = await site.act(first, "cancel", "p1", "provider")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    second = (await site.booked(other, "c2", DAYS3))["session"]
    r = await site.act(second, "cancel", "c2")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert error_of(await site.act(second, "cancel", "c2"))["code"] == "rule"  # already final
