"""A small Confide protocol client for tests, on the `websockets` library."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# One timing unit, scaled for slow machines (CONFIDE_TEST_TIMEOUT_SCALE).
MS = 0.001 * float(os.environ.get("CONFIDE_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT = 5000 * MS

Frame = dict[str, Any]


class Client:
    """One websocket connection speaking protocol v1 in either encoding.

    A reader task collects every frame in `inbox`; `next` takes the first that matches,
    so several coroutines may wait for replies at once.
    """

    def __init__(self, ws: ClientConnection, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.inbox: list[Frame] = []
        self._ids = itertools.count(1)
        self.welcome: Frame = {}
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.received = 0

    @classmethod
    async def connect(cls, base_url: str, token: str | None = None, encoding: str = "msgpack",
                      hello: bool = True) -> Client:
        ws = await connect(base_url.replace("http", "ws", 1) + "/ws",
                           subprotocols=[f"confide.v1.{encoding}"],  # type: ignore[list-item]
                           max_size=None, open_timeout=TIMEOUT)
        client = cls(ws, encoding)
        if hello:
            assert token is not None
            client.welcome = await client.request({"t": "hello", "token": token})
            assert client.welcome["t"] == "welcome", client.welcome
        return client

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    assert self.encoding == "msgpack", "binary frame on a JSON connection"
                    frame: Frame = msgpack.unpackb(data, raw=False)
                else:
                    assert self.encoding == "json", "text frame on a msgpack connection"
                    frame = json.loads(data)
                self.inbox.append(frame)
                self.received += 1
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self._arrived.set()

    def encode(self, frame: Frame) -> bytes | str:
        if self.encoding == "msgpack":
            return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]
        return json.dumps(frame)

    async def send(self, frame: Frame) -> None:
        await self.ws.send(self.encode(frame))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def next(self, match: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        """The first frame (already received or coming) for which `match` holds."""
        async with asyncio.timeout(timeout):
            while True:
                for i, frame in enumerate(self.inbox):
                    if match(frame):
                        return self.inbox.pop(i)
                if self._reader.done():
                    await self.ws.recv()  # raises the connection's ConnectionClosed
                self._arrived.clear()
                await self._arrived.wait()

    async def next_type(self, t: str, timeout: float = TIMEOUT, **fields: Any) -> Frame:
        return await self.next(lambda f: f.get("t") == t and all(
            f.get(k) == v for k, v in fields.items()), timeout)

    async def request(self, frame: Frame, timeout: float = TIMEOUT) -> Frame:
        """Send `frame` with a fresh `id` and return the reply carrying it in `re`."""
        rid = next(self._ids)
        await self.send({**frame, "id": rid})
        return await self.next(lambda f: f.get("re") == rid, timeout)

    async def sub(self, room: str, since: int | None = None) -> tuple[list[Frame], Frame]:
        """Subscribe; the backlog's `msg` frames and the `subbed` reply."""
        frame: Frame = {"t": "sub", "room": room}
        if since is not None:
            frame["since"] = since
        rid = next(self._ids)
        await self.send({**frame, "id": rid})
        backlog: list[Frame] = []
        while True:
            got = await self.next(lambda f: f.get("re") == rid or (
                f.get("t") == "msg" and f.get("room") == room))
            if got.get("re") == rid:
                assert got["t"] == "subbed", got
                return backlog, got
            backlog.append(got)

    async def send_text(self, room: str, body: str, cmid: str | int) -> Frame:
        return await self.request({"t": "send", "room": room, "cmid": cmid, "kind": "text",
                                   "body": body})

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Wait for the server to close; the close code and reason."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
