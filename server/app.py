"""The node as an ASGI application: routes, the websocket endpoint and the lifespan.

The lifespan owns the long-lived resources (store, broker, hub) and opens and closes
them in order; `/ws` turns a websocket into a `Connection` after its `hello`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from media import live_page
from rooms.settings import Settings as RuleSettings
from server import codec
from server.auth import TokenAuthority
from server.billing import ChargeDelivery
from server.broker import Broker, MemoryBroker
from server.config import Settings
from server.connection import Connection
from server.errors import (
    CLOSE_PROTOCOL,
    CLOSE_RATE_LIMIT,
    CLOSE_SHUTDOWN,
    CLOSE_UNAUTHENTICATED,
    ClientError,
    NotFound,
    ProtocolViolation,
    Unauthorized,
)
from server.http import Api, error_response, guarded
from server.http_sessions import SessionApi
from server.hub import Hub
from server.jobs import DeadlineRunner
from server.live import LiveSessions
from server.openapi import openapi, openapi_json
from server.requests import Requests
from server.sessions import Clock, Sessions, utc_now
from server.store import Store
from server.store.sqlite import DB_FILE, SQLiteStore
from server.wire import Wire, Wires, message_cap, wire_protocol

log = logging.getLogger("confide")


@dataclass
class Node:
    """Everything one running node owns."""

    settings: Settings
    authority: TokenAuthority
    store: Store
    broker: Broker
    hub: Hub
    sessions: Sessions
    deadlines: DeadlineRunner
    live: LiveSessions
    requests: Requests
    api: Api
    wires: Wires


def build_node(settings: Settings, *, store: Store | None = None,
               broker: Broker | None = None, clock: Clock = utc_now) -> Node:
    authority = TokenAuthority(settings)
    if store is None:
        store = SQLiteStore(settings.data / DB_FILE, synchronous=settings.sqlite_synchronous,
                            group_commit_max=settings.group_commit_max)
    broker = broker or MemoryBroker()
    hub = Hub(settings, store, broker)
    rules = RuleSettings(join_opens=timedelta(minutes=settings.join_opens_min))
    sessions = Sessions(store, hub, clock=clock, rules=rules, public_url=settings.base_url())
    deadlines = DeadlineRunner(store, sessions, poll_s=settings.deadline_poll_s)
    sessions.on_jobs = deadlines.wake
    requests = Requests(settings, store, hub, sessions)
    live = requests.live = LiveSessions(settings, hub, sessions)
    sessions.on_session = live.session_changed
    api = Api(authority, store, hub, sessions)
    return Node(settings, authority, store, broker, hub, sessions, deadlines, live, requests,
                api, Wires(settings.heartbeat_s))


def create_app(settings: Settings, node: Node | None = None) -> ConfideApp:
    node = node or build_node(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.store.open()
        await node.hub.start()
        background = [asyncio.create_task(node.deadlines.run(), name="deadlines"),
                      asyncio.create_task(node.wires.run(), name="heartbeat")]
        http: httpx.AsyncClient | None = None
        if settings.billing_webhook_url:
            http = httpx.AsyncClient()
            delivery = ChargeDelivery(node.store, http, settings.billing_webhook_url,
                                      settings.billing_webhook_secret)
            node.sessions.on_charges = delivery.wake
            background.append(asyncio.create_task(delivery.run(), name="charge-delivery"))
        gc.collect()
        gc.freeze()  # start-up objects are never collected: shorter GC pauses under load
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if http is not None:
                await http.aclose()
            await node.live.stop()
            await node.hub.stop()
            await node.store.close()

    api = node.api
    sessions = SessionApi(api, node.sessions)
    routes: list[Any] = [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/healthz", guarded(api.healthz), methods=["GET"]),
        Route("/v1/tokens", guarded(api.tokens), methods=["POST"]),
        Route("/v1/rooms", guarded(api.create_room), methods=["POST"]),
        Route("/v1/rooms/{room}", guarded(api.get_room), methods=["GET"]),
        Route("/v1/rooms/{room}/provider", guarded(api.change_provider), methods=["PUT"]),
        Route("/v1/stats", guarded(api.stats), methods=["GET"]),
        Route("/v1/rooms/{room}/sessions", guarded(sessions.book), methods=["POST"]),
        Route("/v1/rooms/{room}/sessions", guarded(sessions.room_sessions), methods=["GET"]),
        Route("/v1/rooms/{room}/credits", guarded(sessions.grant), methods=["POST"]),
        Route("/v1/rooms/{room}/credits", guarded(sessions.credits), methods=["GET"]),
        Route("/v1/rooms/{room}/availability", guarded(sessions.share_availability),
              methods=["POST"]),
        Route("/v1/sessions/{session}", guarded(sessions.get_session), methods=["GET"]),
        Route("/v1/sessions/{session}/{action}", guarded(sessions.session_action),
              methods=["POST"]),
        Route("/v1/providers/{provider}/hours", guarded(sessions.set_hours), methods=["PUT"]),
        Route("/v1/providers/{provider}/availability", guarded(sessions.add_availability),
              methods=["POST"]),
        Route("/v1/providers/{provider}/slots", guarded(sessions.slots), methods=["GET"]),
        Route("/v1/providers/{provider}/awaiting-reply", guarded(sessions.awaiting_reply),
              methods=["GET"]),
        *live_page.routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        404: http_error, 405: http_error})
    app.state.node = node
    openapi(app.routes)  # every route is described, or start-up fails here
    return ConfideApp(app, node)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the error shape of every other call."""
    status = getattr(exc, "status_code", 500)
    if status == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed on this path"))
    if request.url.path == "/ws":  # a plain request to the websocket's path
        response = error_response(UpgradeRequired(
            "/ws is a websocket: connect with `Upgrade: websocket` (version 13)"))
        response.headers["Upgrade"] = "websocket"
        return response
    return error_response(NotFound(f"no such path: {request.url.path[:100]}"))


class MethodNotAllowed(ClientError):
    code = "bad_request"
    status = 405


class UpgradeRequired(ClientError):
    code = "bad_request"
    status = 426


class ConfideApp:
    """The node's ASGI app: HTTP to Starlette; `/ws` never comes here (see `server.wire`)."""

    def __init__(self, http: Starlette, node: Node) -> None:
        self.http = http
        self.node = node

    @property
    def router(self) -> Any:
        return self.http.router

    @property
    def routes(self) -> list[Any]:
        return self.http.routes

    @property
    def state(self) -> Any:
        return self.http.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # only when served without `server_config`
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.http(scope, receive, send)


async def serve_websocket(node: Node, wire: Wire) -> None:
    """A websocket after its handshake: the `hello`, then the connection's life."""
    settings = node.settings
    try:
        async with asyncio.timeout(settings.hello_timeout_s):
            data = await wire.receive()
    except TimeoutError:
        wire.close(CLOSE_UNAUTHENTICATED, "no hello in time")
        return
    if data is None:
        if wire.shutting_down:
            wire.close(CLOSE_SHUTDOWN, "server shutting down: reconnect")
        return
    try:
        if len(data) > settings.max_frame_bytes:
            raise ProtocolViolation(f"hello frame over {settings.max_frame_bytes} bytes")
        frame = codec.decode(data, wire.encoding)
    except (ProtocolViolation, ClientError) as exc:
        wire.close(CLOSE_PROTOCOL, exc.message)
        return
    if frame["t"] != "hello":
        wire.close(CLOSE_UNAUTHENTICATED, "the first frame must be hello")
        return
    try:
        identity = node.authority.verify(frame.get("token"))
    except Unauthorized as exc:
        wire.close(CLOSE_UNAUTHENTICATED, exc.message[:120])
        return
    hub = node.hub
    if hub.device_count(identity.user) >= settings.max_connections_per_user:
        wire.close(CLOSE_RATE_LIMIT, "too many connections for this user")
        return
    found = await node.store.rooms_with_heads(identity.user)
    if not wire.open:
        return
    rooms = [record for record, _ in found]
    hub.remember(rooms)
    heads = {record.room: head for record, head in found}
    conn = Connection(wire, identity, node.requests)
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
        await node.live.dropped(conn)
        await node.requests.drop_all(conn)
        await hub.disconnected(conn, list(conn.rooms.values()))


def server_config(app: ConfideApp, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for a node: HTTP by uvicorn, `/ws` by `server.wire`."""
    node = app.node
    settings = node.settings

    ws = wire_protocol(node.wires, functools.partial(serve_websocket, node),
                       max_message=message_cap(settings.max_frame_bytes),
                       pending_limit=settings.outgoing_queue,
                       close_timeout_s=settings.heartbeat_s)
    defaults: dict[str, Any] = {
        "lifespan": "on", "access_log": False, "log_level": settings.log_level,
        "timeout_graceful_shutdown": int(settings.graceful_shutdown_s), "backlog": 4096,
    }
    return uvicorn.Config(app, ws=ws, **(defaults | options))
