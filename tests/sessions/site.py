"""Helpers of the session endpoint tests: a real node on a free port with an injected clock.

`site` gives a node whose rules run on a `FakeClock` (`T0`, a Monday in March 2026,
mid billing period), one `httpx.AsyncClient` on it and small helpers that speak the
session HTTP API as a given user. Deadlines are moved on with `site.tick(delta)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from support.client import Client
from support.nodes import FakeClock, RunningNode

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
NODE_SETTINGS: dict[str, Any] = {
    "rate_limit_per_s": 100_000,
    "rate_limit_burst": 100_000,
    # The node's own runner only fires jobs when a test wakes it; `tick` fires the rest.
    "deadline_poll_s": 3600.0,
}


def at(delta: timedelta) -> str:
    """An ISO time `delta` after T0."""
    return (T0 + delta).isoformat()


@dataclass
class Site:
    """A node, an HTTP client on it and its clock."""

    node: RunningNode
    http: httpx.AsyncClient
    clock: FakeClock

    def auth(self, user: str, role: str = "client") -> dict[str, str]:
        return {"authorization": "Bearer " + self.node.token(user, role)}

    async def room(self, client: str, provider: str, plan: str = "self_pay",
                   service: str = "therapy", **extra: Any) -> str:
        return await self.node.room(client, provider, plan, service, **extra)

    async def book(self, room: str, user: str, start: timedelta | str, modality: str = "video",
                   role: str = "client", **extra: Any) -> httpx.Response:
        when = at(start) if isinstance(start, timedelta) else start
        return await self.http.post(f"/v1/rooms/{room}/sessions", headers=self.auth(user, role),
                                    json={"kind": "live", "modality": modality, "start": when,
                                          **extra})

    async def booked(self, room: str, user: str, start: timedelta, **extra: Any
                     ) -> dict[str, Any]:
        r = await self.book(room, user, start, **extra)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def act(self, session: str, action: str, user: str, role: str = "client",
                  **body: Any) -> httpx.Response:
        return await self.http.post(f"/v1/sessions/{session}/{action}",
                                    headers=self.auth(user, role), json=body or None)

    async def session(self, session: str, user: str, role: str = "client") -> dict[str, Any]:
        r = await self.http.get(f"/v1/sessions/{session}", headers=self.auth(user, role))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def credits(self, room: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/rooms/{room}/credits", headers=self.node.admin)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def tick(self, delta: timedelta) -> int:
        return await self.node.tick(delta)

    async def tick_to(self, when: timedelta) -> int:
        """Move the clock to T0 + `when` and fire what fell due."""
        return await self.tick(T0 + when - self.clock.now)

    async def history(self, room: str, user: str, role: str = "client") -> list[dict[str, Any]]:
        """The room's stored messages, oldest first, read over the websocket."""
        async with connected(self.node, user, role) as ws:
            reply = await ws.request({"t": "history", "room": room, "limit": 200})
        assert reply["t"] == "history", reply
        return sorted(reply["msgs"], key=lambda m: m["seq"])

    async def events(self, room: str, user: str, role: str = "client") -> list[dict[str, Any]]:
        """The `event` of each system message of the room, in order."""
        return [m["event"] for m in await self.history(room, user, role)
                if m["kind"] == "system"]


@contextlib.asynccontextmanager
async def connected(node: RunningNode, user: str, role: str = "client",
                    encoding: str = "json") -> AsyncIterator[Client]:
    ws = await Client.connect(node.url, node.token(user, role), encoding)
    try:
        yield ws
    finally:
        await ws.close()


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def refused(r: httpx.Response, rule: str, status: int = 422) -> None:
    """The response is an error of code `rule` naming `rule`."""
    assert r.status_code == status, r.text
    assert error_of(r) == {"code": "rule", "rule": rule, "message": error_of(r)["message"]}


def refused_r1(r: httpx.Response) -> None:
    """R1: not a member. Either a rule error naming R1 (422) or `forbidden` (403, maybe
    naming R1 too): the project may answer membership with either."""
    error = error_of(r)
    if r.status_code == 422:
        assert error["code"] == "rule" and error["rule"] == "R1", r.text
    else:
        assert r.status_code == 403 and error["code"] == "forbidden", r.text
        assert error.get("rule", "R1") == "R1", r.text
