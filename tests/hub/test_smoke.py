from __future__ import annotations

import pytest
from support.client import Client
from support.nodes import RunningNode


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_two_members_exchange_a_message(node: RunningNode, encoding: str) -> None:
    room = await node.room("c1", "p1")
    alice = await Client.connect(node.url, node.token("c1"), encoding)
    bob = await Client.connect(node.url, node.token("p1", "provider"), encoding)
    assert alice.welcome["rooms"][0]["room"] == room
    await alice.sub(room)
    await bob.sub(room)
    ack = await alice.send_text(room, "hello", "m1")
    assert ack["t"] == "ack" and ack["seq"] == 1 and ack["dup"] is False
    msg = await bob.next_type("msg", room=room)
    assert msg["body"] == "hello" and msg["seq"] == 1 and msg["from"] == "c1"
    await alice.close()
    await bob.close()
