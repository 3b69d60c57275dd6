"""Close codes and limits: 4400, 4401, 4408, 4429, refused subprotocols, heartbeats."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from pathlib import Path

import msgpack
import pytest
from support.client import MS, Client
from support.nodes import RunningNode, node_in_process
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def test_client_offering_no_confide_subprotocol_is_refused(node: RunningNode) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(node.url.replace("http", "ws") + "/ws", subprotocols=["chat"])  # type: ignore[list-item]
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        await connect(node.url.replace("http", "ws") + "/ws")


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_undecodable_frames_close_4400(node: RunningNode, encoding: str) -> None:
    garbage: list[bytes | str] = (
        [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"x": 1}), "text on binary"]
        if encoding == "msgpack" else ["{not json", "[1,2]", '{"no":"t"}', b"binary on text"]
    )
    for data in garbage:
        client = await Client.connect(node.url, node.token("u1"), encoding)
        await client.send_raw(data)
        code, _ = await client.closed()
        assert code == 4400, data


async def test_bad_token_closes_4401(node: RunningNode) -> None:
    for token in ("not-a-jwt", node.token("u1", ttl=-10), 12):
        client = await Client.connect(node.url, hello=False)
        await client.send({"t": "hello", "token": token})
        code, reason = await client.closed()
        assert code == 4401 and reason


async def test_first_frame_must_be_hello(node: RunningNode) -> None:
    client = await Client.connect(node.url, hello=False)
    await client.send({"t": "ping"})
    assert (await client.closed())[0] == 4401


async def test_no_hello_in_time_closes_4401(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", hello_timeout_s=0.3) as node:
        client = await Client.connect(node.url, hello=False)
        code, reason = await client.closed(timeout=3000 * MS)
        assert code == 4401 and "hello" in reason


async def test_token_expiring_mid_connection_closes_4401(node: RunningNode) -> None:
    client = await Client.connect(node.url, node.token("u1", ttl=1))
    assert (await client.request({"t": "ping"}))["t"] == "pong"
    code, reason = await client.closed(timeout=4000 * MS)
    assert code == 4401 and "expired" in reason


async def test_a_token_seen_before_is_still_refused_once_expired(node: RunningNode) -> None:
    """Checked tokens are remembered (reconnects skip the signature check), never past exp."""
    token = node.token("u1", ttl=1)
    first = await Client.connect(node.url, token)
    again = await Client.connect(node.url, token)  # the remembered token: welcome again
    assert again.welcome["user"] == first.welcome["user"] == "u1"
    await asyncio.sleep(1.2)
    late = await Client.connect(node.url, hello=False)
    await late.send({"t": "hello", "token": token})
    code, reason = await late.closed()
    assert code == 4401 and "expired" in reason
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    bad = await Client.connect(node.url, hello=False)
    await bad.send({"t": "hello", "token": tampered})
    assert (await bad.closed())[0] == 4401


async def test_rate_limit_answers_rate_limited_then_closes_4429(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", rate_limit_burst=10, rate_limit_per_s=1,
                               rate_limit_strikes=5) as node:
        client = await Client.connect(node.url, node.token("u1"))
        for i in range(10):  # the burst, with hello already spent
            await client.send({"t": "ping", "id": i})
        errors = 0
        for i in range(10, 20):
            await client.send({"t": "ping", "id": i})
        code, _ = await client.closed()
        for frame in client.inbox:
            if frame["t"] == "error":
                assert frame["code"] == "rate_limited"
                errors += 1
        assert errors >= 1 and code == 4429


async def test_retry_after_rate_limited_with_same_cmid_is_stored_once(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", rate_limit_burst=3, rate_limit_per_s=5) as node:
        room = await node.room("c", "p")
        client = await Client.connect(node.url, node.token("c"))
        acks: dict[int, dict[str, object]] = {}
        for cmid in range(8):
            while True:
                reply = await client.send_text(room, "x", cmid)
                if reply["t"] == "ack":
                    acks[cmid] = reply
                    break
                assert reply["code"] == "rate_limited"
                await asyncio.sleep(0.25)
        assert [acks[c]["seq"] for c in range(8)] == list(range(1, 9))


async def test_too_many_connections_for_one_user_closes_4429(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", max_connections_per_user=2) as node:
        await Client.connect(node.url, node.token("u1"))
        await Client.connect(node.url, node.token("u1"))
        third = await Client.connect(node.url, hello=False)
        await third.send({"t": "hello", "token": node.token("u1")})
        assert (await third.closed())[0] == 4429


async def test_subscription_limit(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", max_subscriptions=2) as node:
        rooms = [await node.room("c", f"p{i}") for i in range(3)]
        client = await Client.connect(node.url, node.token("c"))
        await client.sub(rooms[0])
        await client.sub(rooms[1])
        err = await client.request({"t": "sub", "room": rooms[2]})
        assert err["code"] == "too_large" and "2" in err["message"]


async def test_slow_reader_is_closed_4408_and_resumes_without_loss(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", outgoing_queue=64, rate_limit_per_s=100000,
                               rate_limit_burst=100000) as node:
        room = await node.room("c", "p")
        sender = await Client.connect(node.url, node.token("c"))
        # A provider that never reads: a raw socket that completes the handshake only.
        reader = await _raw_websocket(node.url, node.token("p", "provider"),
                                      {"t": "sub", "room": room})
        body = "z" * 16000
        for i in range(1500):  # far more than the queue and the socket buffers hold
            await sender.send_text(room, body, i)
        assert await asyncio.to_thread(_close_code, reader) == 4408
        reader.close()
        back = await Client.connect(node.url, node.token("p", "provider"))
        backlog, subbed = await back.sub(room, since=0)
        assert [m["seq"] for m in backlog] == list(range(1, subbed["head"] + 1))


async def test_heartbeat_finds_a_dead_connection_within_two_intervals(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "d", heartbeat_s=0.4) as node:
        room = await node.room("c", "p")
        provider = await Client.connect(node.url, node.token("p", "provider"))
        await provider.sub(room)
        dead = await _raw_websocket(node.url, node.token("c"), None)  # never answers pings
        online = await provider.next_type("presence", online=True)
        assert online["user"] == "c"
        loop = asyncio.get_running_loop()
        started = loop.time()
        offline = await provider.next_type("presence", online=False, timeout=3000 * MS)
        assert offline["user"] == "c"
        assert loop.time() - started <= 2 * 0.4 + 0.3
        dead.close()


async def _raw_websocket(url: str, token: str, then: dict[str, object] | None) -> socket.socket:
    """A websocket client that says hello (and one more frame), then never reads again."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: confide.v1.msgpack\r\n"
                  "\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await asyncio.to_thread(sock.recv, 1)
    assert b" 101 " in response
    for frame in ({"t": "hello", "token": token}, then):
        if frame is not None:
            sock.sendall(_masked_frame(msgpack.packb(frame)))
    await asyncio.sleep(0.2)
    sock.setblocking(False)
    return sock


def _masked_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = bytes([0x82, 0x80 | len(payload)]) if len(payload) < 126 else (
        bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2, "big"))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _close_code(sock: socket.socket) -> int | None:
    """Read what the server sent until it closes; the code of its close frame, if any."""
    sock.setblocking(True)
    sock.settimeout(10)
    buf = b""
    try:
        while chunk := sock.recv(1 << 20):
            buf += chunk
    except OSError:
        pass
    # Scan frames for a close frame (opcode 8); server frames are unmasked.
    i = 0
    while i + 2 <= len(buf):
        opcode, length = buf[i] & 0x0F, buf[i + 1] & 0x7F
        head = 2
        if length == 126:
            if i + 4 > len(buf):
                break
            length, head = int.from_bytes(buf[i + 2:i + 4], "big"), 4
        elif length == 127:
            if i + 10 > len(buf):
                break
            length, head = int.from_bytes(buf[i + 2:i + 10], "big"), 10
        if i + head + length > len(buf):
            break
        if opcode == 8:
            return int.from_bytes(buf[i + head:i + head + 2], "big")
        i += head + length
    return None
