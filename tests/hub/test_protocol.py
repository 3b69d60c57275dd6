"""Protocol v1 against a real node, in both encodings: every frame of PROTOCOL.md."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from support.client import MS, Client
from support.nodes import RunningNode

from server.ids import RoomId

ENCODINGS = ["msgpack", "json"]


@pytest.fixture(params=ENCODINGS)
def encoding(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def pair(node: RunningNode, encoding: str, **room: str) -> tuple[str, Client, Client]:
    room_id = await node.room("client-1", "provider-1", **room)
    client = await Client.connect(node.url, node.token("client-1"), encoding)
    provider = await Client.connect(node.url, node.token("provider-1", "provider"), encoding)
    return room_id, client, provider


async def test_welcome_lists_rooms_with_heads(node: RunningNode, encoding: str) -> None:
    room, client, _provider = await pair(node, encoding)
    await client.send_text(room, "one", "c1")
    again = await Client.connect(node.url, node.token("client-1"), encoding)
    w = again.welcome
    assert w["user"] == "client-1" and w["role"] == "client" and w["node"]
    assert w["heartbeat_s"] > 0
    assert [(r["room"], r["head"]) for r in w["rooms"]] == [(room, 1)]
    assert w["rooms"][0]["provider"] == "provider-1"


async def test_send_ack_and_live_msg(node: RunningNode, encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    ack = await client.send_text(room, "how are you", "a-1")
    assert ack["t"] == "ack" and ack["room"] == room and ack["seq"] == 1
    assert ack["cmid"] == "a-1" and ack["dup"] is False
    assert datetime.fromisoformat(ack["ts"]).utcoffset() is not None
    msg = await provider.next_type("msg")
    assert msg == {"t": "msg", "room": room, "seq": 1, "from": "client-1", "kind": "text",
                   "body": "how are you", "ts": ack["ts"], "cmid": "a-1"}


async def test_exactly_once_cmid_retry_answers_same_seq(node: RunningNode, encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    first = await client.send_text(room, "once", 42)
    again = await client.send_text(room, "once", 42)
    assert again["dup"] is True and again["seq"] == first["seq"] and again["ts"] == first["ts"]
    other = await provider.send_text(room, "mine", 42)  # same cmid, other sender: new message
    assert other["seq"] == 2 and other["dup"] is False
    assert (await provider.next_type("msg"))["seq"] == 1  # once, and no echo of its own
    with pytest.raises(TimeoutError):
        await provider.next_type("msg", timeout=200 * MS)


async def test_own_message_goes_to_other_devices_not_back_to_the_sender(
        node: RunningNode, encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    phone = await Client.connect(node.url, node.token("client-1"), encoding)
    for who in (client, phone, provider):
        await who.sub(room)
    ack = await client.send_text(room, "from the laptop", "l1")
    assert (await phone.next_type("msg"))["seq"] == ack["seq"]
    assert (await provider.next_type("msg"))["seq"] == ack["seq"]
    with pytest.raises(TimeoutError):
        await client.next_type("msg", timeout=200 * MS)
    await provider.send_text(room, "reply", "r1")  # the sender's stream stays gapless
    assert (await client.next_type("msg"))["seq"] == ack["seq"] + 1


async def test_sub_since_replays_backlog_in_order_then_subbed(node: RunningNode,
                                                              encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    for i in range(450):  # more than two replay pages
        await client.send_text(room, f"m{i}", i)
    backlog, subbed = await provider.sub(room, since=7)
    assert [m["seq"] for m in backlog] == list(range(8, 451))
    assert subbed["head"] == 450 and subbed["room"] == room
    nothing, subbed2 = await client.sub(room)  # no since: no backlog
    assert nothing == [] and subbed2["head"] == 450
    await client.send_text(room, "live", "live")
    assert (await provider.next_type("msg"))["seq"] == 451


async def test_resume_sees_nothing_missing_or_repeated(node: RunningNode, encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    await client.send_text(room, "1", "1")
    last = (await provider.next_type("msg"))["seq"]
    await provider.close()
    for i in range(2, 6):
        await client.send_text(room, str(i), str(i))
    back = await Client.connect(node.url, node.token("provider-1", "provider"), encoding)
    sends = asyncio.gather(*(client.send_text(room, str(i), str(i)) for i in range(6, 9)))
    backlog, _subbed = await back.sub(room, since=last)
    await sends
    seen = [m["seq"] for m in backlog]
    while len(seen) < 7:
        seen.append((await back.next_type("msg"))["seq"])
    assert seen == list(range(2, 9))


async def test_history_pages_newest_first(node: RunningNode, encoding: str) -> None:
    room, client, _ = await pair(node, encoding)
    for i in range(1, 26):
        await client.send_text(room, f"h{i}", i)
    page = await client.request({"t": "history", "room": room, "limit": 10})
    assert page["t"] == "history" and [m["seq"] for m in page["msgs"]] == list(range(16, 26))
    assert page["more"] is True and page["msgs"][0]["body"] == "h16"
    older = await client.request({"t": "history", "room": room, "before": 16, "limit": 10})
    assert [m["seq"] for m in older["msgs"]] == list(range(6, 16))
    oldest = await client.request({"t": "history", "room": room, "before": 6})
    assert [m["seq"] for m in oldest["msgs"]] == [1, 2, 3, 4, 5] and oldest["more"] is False


async def test_typing_is_relayed_to_the_other_member_only(node: RunningNode,
                                                          encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await client.sub(room)
    await provider.sub(room)
    await client.send({"t": "typing", "room": room, "on": True})
    typing = await provider.next_type("typing")
    assert typing == {"t": "typing", "room": room, "user": "client-1", "on": True}
    with pytest.raises(TimeoutError):
        await client.next_type("typing", timeout=200 * MS)
    assert (await node_head(node, room)) == 0  # never stored


async def node_head(node: RunningNode, room: str) -> int:
    assert node.node is not None
    return await node.node.store.head(RoomId(room))


async def test_read_receipts_are_stored_and_seen_after_reconnect(node: RunningNode,
                                                                 encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    for i in range(3):
        await client.send_text(room, "x", i)
    await client.sub(room)
    await provider.request({"t": "read", "room": room, "seq": 3})
    read = await client.next_type("read")
    assert read == {"t": "read", "room": room, "user": "provider-1", "seq": 3}
    await provider.request({"t": "read", "room": room, "seq": 1})  # never moves back
    await client.close()
    back = await Client.connect(node.url, node.token("client-1"), encoding)
    _, subbed = await back.sub(room)
    assert subbed["reads"] == {"provider-1": 3}
    bad = await provider.request({"t": "read", "room": room, "seq": 99})
    assert bad["t"] == "error" and bad["code"] == "bad_request"


async def test_a_read_without_id_is_relayed_once_stored_and_not_answered(
        node: RunningNode, encoding: str) -> None:
    """Receipts without `id` are written together (held a moment), then relayed to the
    other member and the reader's other devices; the reader's connection gets nothing."""
    room, client, provider = await pair(node, encoding)
    for i in range(3):
        await client.send_text(room, "x", i)
    await client.sub(room)
    await provider.sub(room)
    tablet = await Client.connect(node.url, node.token("provider-1", "provider"), encoding)
    await tablet.sub(room)
    await provider.send({"t": "read", "room": room, "seq": 2})
    want = {"t": "read", "room": room, "user": "provider-1", "seq": 2}
    assert await client.next_type("read") == want
    assert await tablet.next_type("read") == want
    with pytest.raises(TimeoutError):
        await provider.next_type("read", timeout=200 * MS)
    assert (await provider.request({"t": "ping"}))["t"] == "pong"  # still serving
    assert node.node is not None
    assert await node.node.store.reads(RoomId(room)) == {"provider-1": 2}
    bad = {"t": "read", "room": room, "seq": 99}  # refused before anything is held
    await provider.send(bad)
    assert (await provider.next_type("error"))["code"] == "bad_request"
    await tablet.close()


async def test_presence_online_while_any_device_connected(node: RunningNode,
                                                          encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    phone = await Client.connect(node.url, node.token("client-1"), encoding)
    await client.close()  # one device left: still online, no presence change
    with pytest.raises(TimeoutError):
        await provider.next_type("presence", timeout=200 * MS)
    await phone.close()
    offline = await provider.next_type("presence")
    assert offline == {"t": "presence", "room": room, "user": "client-1", "online": False}
    await Client.connect(node.url, node.token("client-1"), encoding)
    online = await provider.next_type("presence")
    assert online["online"] is True
    _, subbed = await provider.sub(room)
    assert subbed["online"] == {"client-1": True}


async def test_ping_pong(node: RunningNode, encoding: str) -> None:
    _, client, _ = await pair(node, encoding)
    pong = await client.request({"t": "ping", "n": 7})
    assert pong["t"] == "pong" and pong["n"] == 7


async def test_unsub_stops_live_messages(node: RunningNode, encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    reply = await provider.request({"t": "unsub", "room": room})
    assert reply["t"] == "unsubbed" and reply["room"] == room
    await client.send_text(room, "after", "after")
    with pytest.raises(TimeoutError):
        await provider.next_type("msg", timeout=200 * MS)


async def test_r1_only_members_read_or_write_a_room(node: RunningNode, encoding: str) -> None:
    room, _client, _ = await pair(node, encoding)
    stranger = await Client.connect(node.url, node.token("someone-else"), encoding)
    admin = await Client.connect(node.url, node.token("ops", "admin"), encoding)
    for who in (stranger, admin):
        for frame in ({"t": "sub", "room": room},
                      {"t": "send", "room": room, "cmid": "x", "kind": "text", "body": "hi"},
                      {"t": "history", "room": room}, {"t": "read", "room": room, "seq": 0},
                      {"t": "typing", "room": room, "on": True}):
            err = await who.request(frame)
            assert err["t"] == "error" and err["code"] == "forbidden", (frame, err)
    assert (await node_head(node, room)) == 0


async def test_r1_provider_change_keeps_history_and_revokes_old_provider(
        node: RunningNode, encoding: str) -> None:
    room, client, provider = await pair(node, encoding)
    await provider.sub(room)
    await client.send_text(room, "before", "b")
    async with httpx.AsyncClient(base_url=node.url) as http:
        r = await http.put(f"/v1/rooms/{room}/provider", headers=node.admin,
                           json={"provider": "provider-2"})
        assert r.status_code == 200 and r.json()["provider"] == "provider-2"
    gone = await provider.next_type("unsubbed")
    assert gone["room"] == room
    err = await provider.request({"t": "history", "room": room})
    assert err["code"] == "forbidden"
    new = await Client.connect(node.url, node.token("provider-2", "provider"), encoding)
    page = await new.request({"t": "history", "room": room})
    assert [m["body"] for m in page["msgs"]] == ["before"]


async def test_errors_name_the_problem_and_keep_the_connection(node: RunningNode,
                                                               encoding: str) -> None:
    room, client, _ = await pair(node, encoding)
    cases = [
        ({"t": "nope"}, "bad_request"),
        ({"t": "sub"}, "bad_request"),
        ({"t": "sub", "room": "missing"}, "not_found"),
        ({"t": "send", "room": room, "kind": "text", "body": "x"}, "bad_request"),
        ({"t": "send", "room": room, "cmid": "1", "kind": "gif", "body": "x"}, "bad_request"),
        ({"t": "send", "room": room, "cmid": "1", "kind": "text"}, "bad_request"),
        ({"t": "send", "room": room, "cmid": "1", "kind": "text", "body": "x" * 20001},
         "too_large"),
        ({"t": "send", "room": room, "cmid": "1", "kind": "voice", "media": "x" * 60},
         "not_found"),  # the id is the client's text: never echoed
        ({"t": "history", "room": room, "limit": 0}, "bad_request"),
        ({"t": "typing", "room": room, "on": "yes"}, "bad_request"),
        ({"t": "unsub", "room": room}, "not_found"),
        ({"t": "hello", "token": "again"}, "bad_request"),
    ]
    for frame, code in cases:
        err = await client.request(frame)
        assert err["t"] == "error" and err["code"] == code, (frame, err)
        assert err["message"] and "x" * 50 not in err["message"]
    err = await client.request({"t": "send", "room": room, "cmid": "1", "kind": "text",
                                "body": "ok"})
    assert err["t"] == "ack"
    await client.send({"t": "ping", "id": "x" * 65})
    bad_id = await client.next_type("error")
    assert bad_id["code"] == "bad_request" and "id" in bad_id["message"]


async def test_oversized_frame_is_refused_with_too_large(tmp_path: object) -> None:
    from pathlib import Path

    from support.nodes import node_in_process

    async with node_in_process(Path(str(tmp_path)) / "d", max_frame_bytes=10_000) as node:
        room = await node.room("c", "p")
        client = await Client.connect(node.url, node.token("c"))
        err = await client.request({"t": "send", "room": room, "cmid": 1, "kind": "text",
                                    "body": "y" * 12_000})
        assert err["code"] == "too_large"
        assert (await client.request({"t": "ping"}))["t"] == "pong"


class BytesOnlyBroker:
    """The in-process bus seen through the plain `Broker` calls only: every event is
    encoded and decoded on the way, as over Redis."""

    def __init__(self) -> None:
        from server.broker.memory import MemoryBroker

        self._inner = MemoryBroker()

    async def start(self, handler: Callable[[str, bytes], None]) -> None:
        await self._inner.start(handler)

    async def stop(self) -> None:
        await self._inner.stop()

    async def publish(self, channel: str, payload: bytes) -> None:
        await asyncio.sleep(0)  # a network broker's publish suspends
        await self._inner.publish(channel, payload)

    async def subscribe(self, channel: str) -> None:
        await self._inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._inner.unsubscribe(channel)


async def test_messages_and_receipts_through_a_broker_that_carries_bytes(
        tmp_path: Path) -> None:
    """With a broker that only carries bytes (not handed over in process), a message and
    a receipt without `id` (relayed from a callback, in a task) still reach the other
    member."""
    from support.nodes import node_in_process

    from server.broker.base import InProcessBroker

    broker = BytesOnlyBroker()
    assert not isinstance(broker, InProcessBroker)
    async with node_in_process(tmp_path / "d", broker=broker) as node:
        room, client, provider = await pair(node, "msgpack")
        await client.sub(room)
        await provider.sub(room)
        await client.send_text(room, "x", 1)
        assert (await provider.next_type("msg"))["seq"] == 1
        await provider.send({"t": "read", "room": room, "seq": 1})
        assert await client.next_type("read") == {"t": "read", "room": room,
                                                   "user": "provider-1", "seq": 1}
