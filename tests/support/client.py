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
    """One websocket connection speaking protocol v1 in either encoding."""

    def __init__(self, ws: ClientConnection, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.inbox: list[Frame] = []
        self._ids = itertools.count(1)
        self.welcome: Frame = {}

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

    def encode(self, frame: Frame) -> bytes | str:
        if self.encoding == "msgpack":
            return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]
        return json.dumps(frame)

    async def send(self, frame: Frame) -> None:
        await self.ws.send(self.encode(frame))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> Frame:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(data, bytes):
            assert self.encoding == "msgpack", "binary frame on a JSON connection"
            frame: Frame = msgpack.unpackb(data, raw=False)
        else:
            assert self.encoding == "json", "text frame on a msgpack connection"
            frame = json.loads(data)
        return frame

    async def next(self, match: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        """The first frame (already received or coming) for which `match` holds."""
        for i, frame in enumerate(self.inbox):
            if match(frame):
                return self.inbox.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.0, deadline - loop.time()))
            if match(frame):
                return frame
            self.inbox.append(frame)

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
        try:
            while True:
                frame = await self.recv(timeout)
                self.inbox.append(frame)
        except ConnectionClosed:
            pass
        rcvd = self.ws.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        await self.ws.close()
