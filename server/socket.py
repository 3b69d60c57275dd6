"""The websocket as plain ASGI: what `/ws` needs of it, without Starlette's wrappers.

Every frame of every connection passes here, so the endpoint talks to the ASGI server
directly instead of through Starlette's `WebSocket` and middleware: the same messages,
fewer layers per frame.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Socket:
    """One websocket's ASGI channel: accept, receive, send, close."""

    __slots__ = ("_closed", "receive", "scope", "send")

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self._closed = False

    async def accept(self, subprotocol: str | None = None) -> None:
        connect = await self.receive()
        if connect["type"] != "websocket.connect":
            raise RuntimeError(f"expected websocket.connect, got {connect['type']}")
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol})

    async def refuse(self) -> None:
        """Refuse the handshake (HTTP 403) before accepting."""
        await self.receive()
        await self.send({"type": "websocket.close", "code": 1008})
        self._closed = True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        await self.send({"type": "websocket.close", "code": code, "reason": reason})
