"""The HTTP API: health, tokens and rooms (the fixed calls of PROTOCOL.md), JSON in and out.

Errors leave as `{"error": {"code", "message", "rule?"}}` with the matching status, from
the one exception tree. Bodies are read with a size limit and checked field by field.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rooms.capabilities import chooses_messaging
from server.auth import Identity, TokenAuthority, check_user_id
from server.codec import MAX_JSON_DEPTH, too_deep
from server.config import MAX_TOKEN_TTL_S
from server.errors import (
    BadRequest,
    ConfideError,
    Forbidden,
    InternalError,
    NotFound,
    TooLarge,
    Unauthorized,
    error_body,
)
from server.hub import Hub
from server.ids import PLANS, SERVICES, RoomId, UserId
from server.sessions import Sessions, ms
from server.store import RoomRecord, Store

log = logging.getLogger("confide.http")
MAX_BODY = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def error_response(exc: ConfideError) -> JSONResponse:
    return JSONResponse({"error": error_body(exc)}, status_code=exc.status)


def guarded(handler: Handler) -> Handler:
    """Turn Confide errors into their JSON shape; anything else is a logged 500."""

    async def run(request: Request) -> Response:
        for name, value in request.path_params.items():  # never echo a long or odd id
            if isinstance(value, str) and (len(value) > MAX_PATH_ID or not value.isprintable()):
                return error_response(NotFound(f"no such {name}: no id is longer than "
                                               f"{MAX_PATH_ID} characters or unprintable"))
        try:
            return await handler(request)
        except ConfideError as exc:
            return error_response(exc)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(InternalError("internal error"))

    return run


ROOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PATH_ID = 128  # the longest id a path names (a user id)


async def json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"body over {MAX_BODY} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise TooLarge(f"body over {MAX_BODY} bytes")
    if not raw:
        return {}
    try:
        if too_deep(raw.decode(json.detect_encoding(raw), "replace")):
            raise BadRequest(f"body nested deeper than {MAX_JSON_DEPTH} levels")
        body = json.loads(raw)  # UTF-8, -16 or -32, as JSON allows
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


class Api:
    """Handlers of the HTTP calls that the hub owns."""

    def __init__(self, authority: TokenAuthority, store: Store, hub: Hub,
                 sessions: Sessions) -> None:
        self.authority = authority
        self.store = store
        self.hub = hub
        self.sessions = sessions

    def identity(self, request: Request) -> Identity:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send `Authorization: Bearer <token>`")
        return self.authority.verify(token.strip())

    def admin(self, request: Request) -> Identity:
        who = self.identity(request)
        if who.role != "admin":
            raise Forbidden("admins only")
        return who

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "node": self.hub.node})

    async def tokens(self, request: Request) -> Response:
        self.admin(request)
        body = await json_body(request)
        user = check_user_id(body.get("user"))
        role = body.get("role")
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)
                                or not 1 <= ttl <= MAX_TOKEN_TTL_S):
            raise BadRequest(f"`ttl` must be an integer number of seconds, "
                             f"1..{MAX_TOKEN_TTL_S}")
        token = self.authority.issue(user, str(role) if isinstance(role, str) else "", ttl)
        return JSONResponse({"token": token}, status_code=201)

    async def create_room(self, request: Request) -> Response:
        self.admin(request)
        body = await json_body(request)
        client = check_user_id(body.get("client"), "client")
        provider = check_user_id(body.get("provider"), "provider")
        if client == provider:
            raise BadRequest("`client` and `provider` must be different users")
        plan, service = body.get("plan"), body.get("service", "therapy")
        if plan not in PLANS:
            raise BadRequest(f"`plan` must be one of {', '.join(PLANS)}")
        if service not in SERVICES:
            raise BadRequest(f"`service` must be one of {', '.join(SERVICES)}")
        messaging = body.get("messaging", True)
        if not isinstance(messaging, bool):
            raise BadRequest("`messaging` must be true or false")
        if not messaging and not chooses_messaging(plan):
            raise BadRequest("`messaging: false` is for `org` plans only: the other plans "
                             "decide messaging themselves (R2)")
        room_id = body.get("room")
        if room_id is None:
            room_id = "r_" + secrets.token_urlsafe(12)
        elif not isinstance(room_id, str) or not ROOM_ID.fullmatch(room_id):
            raise BadRequest("`room` must be 1..64 ASCII letters, digits, '-' or '_'")
        record = RoomRecord(RoomId(room_id), client, provider, plan, service, messaging,
                            ms(self.sessions.clock()))
        await self.store.create_room(record)
        await self.sessions.room_created(record)
        return JSONResponse(room_json(record), status_code=201)

    async def get_room(self, request: Request) -> Response:
        who = self.identity(request)
        record = await self.hub.room(RoomId(request.path_params["room"]))
        if who.role != "admin" and not record.is_member(who.user):
            raise Forbidden("only the room's client and provider may see it", rule="R1")
        return JSONResponse(room_json(record))

    async def change_provider(self, request: Request) -> Response:
        self.admin(request)
        body = await json_body(request)
        provider = check_user_id(body.get("provider"), "provider")
        room = RoomId(request.path_params["room"])
        current = await self.hub.room(room)
        if provider == current.client:
            raise BadRequest("the provider must not be the room's client")
        record = await self.store.set_provider(room, UserId(provider), ms(self.sessions.clock()))
        await self.hub.room_changed(record)
        return JSONResponse(room_json(record))

    async def stats(self, request: Request) -> Response:
        self.admin(request)
        return JSONResponse(dataclasses.asdict(self.hub.statistics()))


def room_json(record: RoomRecord) -> dict[str, Any]:
    return {"room": record.room, "client": record.client, "provider": record.provider,
            "plan": record.plan, "service": record.service, "messaging": record.messaging}
