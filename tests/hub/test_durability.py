"""Durable acks: `kill -9` while clients send loses nothing acknowledged; SIGTERM is graceful."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from support.client import Client
from support.nodes import spawn, stop
from websockets.exceptions import ConnectionClosed

RAISED = ("--rate-limit-per-s", "100000", "--rate-limit-burst", "100000")


async def _send_until_cut(client: Client, room: str, prefix: str, acked: dict[str, int],
                          enough: asyncio.Event, count: int) -> None:
    """Send as fast as acks come back until the node goes away; record every ack.

    `enough` is set once `count` acks (of all senders sharing `acked`) have come back.
    """
    i = 0
    try:
        while True:
            cmid = f"{prefix}-{i}"
            reply = await client.send_text(room, f"{prefix} message {i}", cmid)
            assert reply["t"] == "ack", reply
            acked[cmid] = reply["seq"]
            if len(acked) >= count:
                enough.set()
            i += 1
    except (ConnectionClosed, TimeoutError, OSError):
        return


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_kill_9_while_two_clients_send_loses_no_acknowledged_message(
        tmp_path: Path, encoding: str) -> None:
    data = tmp_path / "data"
    node = spawn(data, *RAISED)
    try:
        room = await node.room("client", "provider")
        client = await Client.connect(node.url, node.token("client"), encoding)
        provider = await Client.connect(node.url, node.token("provider", "provider"), encoding)
        await provider.sub(room)
        acked: dict[str, int] = {}
        enough = asyncio.Event()
        senders = [asyncio.create_task(_send_until_cut(client, room, "c", acked, enough, 300)),
                   asyncio.create_task(_send_until_cut(provider, room, "p", acked, enough, 300))]
        await asyncio.wait_for(enough.wait(), 30)
        seen_live = [f["seq"] for f in provider.inbox if f.get("t") == "msg"]
        stop(node, signal.SIGKILL)
        await asyncio.gather(*senders)
    finally:
        if node.process and node.process.poll() is None:
            stop(node, signal.SIGKILL)

    node = spawn(data, *RAISED)  # restart on the same data
    try:
        back = await Client.connect(node.url, node.token("provider", "provider"), encoding)
        head = next(r["head"] for r in back.welcome["rooms"] if r["room"] == room)
        backlog, subbed = await back.sub(room, since=0)
        stored = {m["cmid"]: m["seq"] for m in backlog}
        assert [m["seq"] for m in backlog] == list(range(1, head + 1))  # contiguous from 1
        assert subbed["head"] == head
        for cmid, seq in acked.items():  # every ack is there, exactly once, at its seq
            assert stored.get(cmid) == seq
        assert len(stored) == len(backlog)
        # A client resuming from what it saw live gets exactly the rest.
        last = max(seen_live) if seen_live else 0
        resumed = await Client.connect(node.url, node.token("client"), encoding)
        rest, _ = await resumed.sub(room, since=last)
        assert [m["seq"] for m in rest] == list(range(last + 1, head + 1))
        # Retrying an acknowledged message after the crash is a duplicate, not a new one.
        some = next(iter(acked))
        again = await resumed.send_text(room, "retry", some) if some.startswith("c") else \
            await back.send_text(room, "retry", some)
        assert again["dup"] is True and again["seq"] == acked[some]
    finally:
        stop(node)


async def test_sigterm_closes_clients_with_1012_and_finishes_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = spawn(data, *RAISED)
    room = await node.room("client", "provider")
    client = await Client.connect(node.url, node.token("client"))
    acked: dict[str, int] = {}
    enough = asyncio.Event()
    sender = asyncio.create_task(_send_until_cut(client, room, "c", acked, enough, 50))
    await asyncio.wait_for(enough.wait(), 30)
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    code, _ = await client.closed()
    await sender
    assert code == 1012
    # uvicorn re-raises SIGTERM once its graceful shutdown is done.
    assert await asyncio.to_thread(node.process.wait, 15) in (0, -signal.SIGTERM)
    stop(node)
    node = spawn(data, *RAISED)
    try:
        back = await Client.connect(node.url, node.token("client"))
        backlog, _ = await back.sub(room, since=0)
        stored = {m["cmid"]: m["seq"] for m in backlog}
        assert all(stored.get(c) == s for c, s in acked.items())
    finally:
        stop(node)
