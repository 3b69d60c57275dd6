"""End to end: offers that do not fit the session are refused and relayed to no one (R6, R3).

The pure checks are in tests/signaling/test_sdp.py; here real aiortc offers go through a
real node. "Nothing relayed" is shown by order: after the refusal the same sender sends
a fitting offer, and it is the first `live.signal` the other side gets.
"""

from __future__ import annotations

from typing import Any

from live.peers import Peer
from live.site import Booking, Site
from support.client import Client


async def offer_sdp(start: dict[str, Any], ws: Client, session: str, modality: str) -> str:
    peer = Peer(ws, session, start, modality)
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        return peer.pc.localDescription.sdp
    finally:
        await peer.close()


async def started(site: Site, booking: Booking) -> tuple[Client, Client, dict[str, Any]]:
    client, provider, _, provider_start, _ = await site.joined(booking)
    return client, provider, provider_start


async def refused_then_fitting(site: Site, booking: Booking, bad: str, good: str,
                               rule: str) -> None:
    client, provider, start = await started(site, booking)
    try:
        sdp = await offer_sdp(start, provider, booking.session, bad)
        error = await provider.request({"t": "live.signal", "session": booking.session,
                                        "data": {"type": "offer", "sdp": sdp}})
        assert error["t"] == "error", error
        assert (error["code"], error.get("rule")) == ("rule", rule), error
        fitting = await offer_sdp(start, provider, booking.session, good)
        await provider.send({"t": "live.signal", "session": booking.session,
                             "data": {"type": "offer", "sdp": fitting}})
        relayed = await client.next_type("live.signal")
        assert relayed["data"] == {"type": "offer", "sdp": fitting}  # the refused one never came
        assert relayed["from"] == booking.provider
    finally:
        await client.close()
        await provider.close()


async def test_r6_audio_session_refuses_a_video_offer(site: Site) -> None:
    await refused_then_fitting(site, await site.booked("audio"), "video", "audio", "R6")


async def test_r6_chat_session_refuses_a_media_offer(site: Site) -> None:
    await refused_then_fitting(site, await site.booked("chat"), "audio", "chat", "R6")


async def test_r3_psychiatry_video_session_refuses_an_audio_only_offer(site: Site) -> None:
    booking = await site.booked("video", service="psychiatry")
    await refused_then_fitting(site, booking, "audio", "video", "R3")


async def test_r3_psychiatry_room_refuses_an_audio_booking(site: Site) -> None:
    room = await site.node.room("client_psy", "provider_psy", "self_pay", "psychiatry")
    r = await site.book(room, "client_psy", "audio")
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error.get("rule")) == ("rule", "R3"), error


