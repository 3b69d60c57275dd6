"""The node as an ASGI application: routes, the websocket endpoint and the lifespan.

The lifespan owns the long-lived resources (store, broker, hub) and opens and closes
them in order; `/ws` turns a websocket into a `Connection` after its `hello`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from server import codec
from server.auth import TokenAuthority
from server.broker import Broker, MemoryBroker
from server.codec import SUBPROTOCOLS
from server.config import Settings
from server.connection import Connection
from server.errors import (
    CLOSE_PROTOCOL,
    CLOSE_RATE_LIMIT,
    CLOSE_UNAUTHENTICATED,
    ClientError,
    ProtocolViolation,
    Unauthorized,
)
from server.http import Api, guarded
from server.hub import Hub
from server.requests import Requests
from server.store import Store
from server.store.sqlite import SQLiteStore

log = logging.getLogger("confide")


@dataclass
class Node:
    """Everything one running node owns."""

    settings: Settings
    authority: TokenAuthority
    store: Store
    broker: Broker
    hub: Hub
    requests: Requests
    api: Api


def build_node(settings: Settings, *, store: Store | None = None,
               broker: Broker | None = None) -> Node:
    authority = TokenAuthority(settings)
    if store is None:
        store = SQLiteStore(settings.data / "confide.db", synchronous=settings.sqlite_synchronous,
                            group_commit_max=settings.group_commit_max)
    broker = broker or MemoryBroker()
    hub = Hub(settings, store, broker)
    requests = Requests(settings, store, hub)
    return Node(settings, authority, store, broker, hub, requests, Api(authority, store, hub))


def create_app(settings: Settings, node: Node | None = None) -> Starlette:
    node = node or build_node(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.store.open()
        await node.hub.start()
        gc.collect()
        gc.freeze()  # start-up objects are never collected: shorter GC pauses under load
        try:
            yield
        finally:
            await node.hub.stop()
            await node.store.close()

    async def websocket(ws: WebSocket) -> None:
        await serve_websocket(node, ws)

    api = node.api
    routes: list[Any] = [
        Route("/healthz", guarded(api.healthz), methods=["GET"]),
        Route("/v1/tokens", guarded(api.tokens), methods=["POST"]),
        Route("/v1/rooms", guarded(api.create_room), methods=["POST"]),
        Route("/v1/rooms/{room}", guarded(api.get_room), methods=["GET"]),
        Route("/v1/rooms/{room}/provider", guarded(api.change_provider), methods=["PUT"]),
        Route("/v1/stats", guarded(api.stats), methods=["GET"]),
        WebSocketRoute("/ws", websocket),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.node = node
    return app


async def serve_websocket(node: Node, ws: WebSocket) -> None:
    settings = node.settings
    offered = ws.scope.get("subprotocols") or []
    chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
    if chosen is None:
        await ws.close(code=CLOSE_PROTOCOL)  # before accept: the handshake is refused (403)
        return
    await ws.accept(subprotocol=chosen)
    encoding = SUBPROTOCOLS[chosen]
    try:
        message = await asyncio.wait_for(ws.receive(), settings.hello_timeout_s)
    except TimeoutError:
        await ws.close(CLOSE_UNAUTHENTICATED, "no hello in time")
        return
    if message["type"] == "websocket.disconnect":
        return
    data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
    try:
        if data is None or len(data) > settings.max_frame_bytes:
            raise ProtocolViolation("bad hello frame")
        frame = codec.decode(data, encoding)
    except (ProtocolViolation, ClientError) as exc:
        await ws.close(CLOSE_PROTOCOL, exc.message)
        return
    if frame["t"] != "hello":
        await ws.close(CLOSE_UNAUTHENTICATED, "the first frame must be hello")
        return
    try:
        identity = node.authority.verify(frame.get("token"))
    except Unauthorized as exc:
        await ws.close(CLOSE_UNAUTHENTICATED, exc.message[:120])
        return
    hub = node.hub
    if hub.device_count(identity.user) >= settings.max_connections_per_user:
        await ws.close(CLOSE_RATE_LIMIT, "too many connections for this user")
        return
    rooms = await node.store.rooms_of(identity.user)
    hub.remember(rooms)
    heads = await node.store.heads([r.room for r in rooms])
    conn = Connection(ws, encoding, identity, node.requests)
    conn.rooms = {r.room: r for r in rooms}
    welcome: dict[str, Any] = {
        "t": "welcome", "user": identity.user, "role": identity.role, "node": hub.node,
        "heartbeat_s": settings.heartbeat_s,
        "rooms": [{"room": r.room, "head": heads.get(r.room, 0), "client": r.client,
                   "provider": r.provider, "plan": r.plan, "service": r.service,
                   "messaging": r.messaging} for r in rooms],
    }
    rid = frame.get("id")
    if isinstance(rid, str | int) and not isinstance(rid, bool) and len(str(rid)) <= 64:
        welcome["re"] = rid
    conn.send(welcome)
    await hub.connected(conn, rooms)
    try:
        await conn.run()
    finally:
        await node.requests.drop_all(conn)
        await hub.disconnected(conn, list(conn.rooms.values()))
