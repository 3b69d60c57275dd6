"""The OpenAPI description (`server/openapi.py`): every HTTP route of the app, exactly,
valid OpenAPI 3.1, and the shapes the node really answers with."""

from __future__ import annotations

import importlib.util
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sessions.site import Site
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from support.nodes import RunningNode, settings_for

from server.app import create_app
from server.openapi import OPENAPI_PATH, OPERATIONS, UndocumentedRoute, openapi

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
HAS_VALIDATOR = importlib.util.find_spec("openapi_spec_validator") is not None


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """The app `create_app` builds (a Starlette app, or a wrapper with its `routes`)."""
    return create_app(settings_for(tmp_path / "data"))


def served(app: Any) -> set[tuple[str, str]]:
    """The app's HTTP (method, path) pairs, computed here independently of server.openapi."""
    pairs = set()
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            continue
        assert isinstance(route, Route), route
        if route.path == OPENAPI_PATH:
            continue
        pairs |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    return pairs


def described(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item
            if m in METHODS and path != OPENAPI_PATH}


def test_openapi_lists_exactly_the_apps_http_routes(app: Any) -> None:
    doc = openapi(app.routes)
    assert described(doc) == served(app)
    assert "/ws" not in doc["paths"]
    assert len(served(app)) >= 17  # the calls of PROTOCOL.md and the session API


def test_openapi_complains_about_undocumented_and_stale_routes(app: Any) -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    with pytest.raises(UndocumentedRoute, match=re.escape("no entry for DELETE /v1/rooms/{room}")):
        openapi([*app.routes, Route("/v1/rooms/{room}", endpoint, methods=["DELETE"])])
    without = [r for r in app.routes if getattr(r, "path", "") != "/v1/stats"]
    with pytest.raises(UndocumentedRoute, match="no route for GET /v1/stats"):
        openapi(without)


def walk_refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [r for v in value.values() for r in walk_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in walk_refs(v)]
    return []


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part]
    return node


def test_openapi_is_structurally_sound(app: Any) -> None:
    doc = openapi(app.routes)
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert doc["security"] == [{"bearer": []}]
    for ref in walk_refs(doc):
        resolve(doc, ref)  # every $ref points somewhere
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message"} and "rule" in error["properties"]
    ids = []
    for path, item in doc["paths"].items():
        names = [p[1:-1] for p in path.split("/") if p.startswith("{")]
        for method, op in item.items():
            ids.append(op["operationId"])
            params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert params == names, (method, path)
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            public = op.get("security") == []
            assert public or "401" in codes, (method, path)
            for code in codes - {"200", "201"}:
                target = resolve(doc, op["responses"][code]["$ref"])
                assert target["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}
            if "requestBody" in op:
                assert "application/json" in op["requestBody"]["content"]
    assert len(ids) == len(set(ids))
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    book = doc["paths"]["/v1/rooms/{room}/sessions"]["post"]
    assert "422" in book["responses"] and "requestBody" in book


@pytest.mark.skipif(not HAS_VALIDATOR, reason="openapi-spec-validator is not installed")
def test_openapi_passes_the_openapi_spec_validator(app: Any) -> None:
    from openapi_spec_validator import validate

    validate(openapi(app.routes))  # raises on any violation of the OpenAPI 3.1 schema


@pytest.mark.skipif(not HAS_VALIDATOR, reason="jsonschema comes with openapi-spec-validator")
async def test_openapi_schemas_match_what_the_node_answers(site: Site, app: Any) -> None:
    from jsonschema import Draft202012Validator

    doc = openapi(app.routes)

    def check(name: str, value: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
        assert errors == [], (name, value)

    http = site.http
    check("Health", (await http.get("/healthz")).json())
    room = await site.room("c1", "p1", "eap")
    r = await http.get(f"/v1/rooms/{room}", headers=site.auth("c1"))
    check("Room", r.json())
    r = await http.post(f"/v1/rooms/{room}/credits", headers=site.node.admin, json={"count": 2})
    check("Credits", r.json())
    live = await site.booked(room, "c1", timedelta(days=3))
    check("Session", live)
    check("LiveSession", live)
    r = await http.post(f"/v1/rooms/{room}/sessions", headers=site.auth("c1"),
                        json={"kind": "messaging"})
    check("MessagingSession", r.json())
    r = await site.act(r.json()["session"], "start", "c1")
    check("SessionStep", r.json())
    r = await site.act(live["session"], "cancel", "c1")
    check("SessionStep", r.json())
    check("Cost", r.json()["cost"])
    check("Credits", await site.credits(room))
    check("RoomSessions", (await http.get(f"/v1/rooms/{room}/sessions",
                                          headers=site.auth("p1", "provider"))).json())
    hours = {"tz": "Europe/Berlin", "days": {"mon": ["09:00", "17:00"]}}
    check("Hours", hours)
    check("Schedule", (await http.put("/v1/providers/p1/hours",
                                      headers=site.auth("p1", "provider"), json=hours)).json())
    check("Slots", (await http.get("/v1/providers/p1/slots", headers=site.auth("c1"), params={
        "from": "2026-03-09T00:00:00+00:00", "to": "2026-03-10T00:00:00+00:00"})).json())
    check("AwaitingReply", (await http.get("/v1/providers/p1/awaiting-reply",
                                           headers=site.auth("p1", "provider"))).json())
    check("Shared", (await http.post(f"/v1/rooms/{room}/availability", headers=site.auth("c1"),
                                     json={"intervals": [{
                                         "start": "2026-03-09T10:00:00+00:00",
                                         "end": "2026-03-09T11:00:00+00:00"}]})).json())
    check("Error", (await site.book(room, "c9", "2026-03-09T10:00:00+00:00")).json())
    check("Error", (await http.post(f"/v1/rooms/{room}/sessions",
                                    headers=site.auth("c1"), content=b"{")).json())
    check("Stats", (await http.get("/v1/stats", headers=site.node.admin)).json())


def serves_openapi(app: Any) -> bool:
    return any(getattr(r, "path", None) == OPENAPI_PATH for r in app.routes)


async def test_get_openapi_json_serves_the_description(tmp_path: Path, node: RunningNode,
                                                       request: pytest.FixtureRequest) -> None:
    app = create_app(settings_for(tmp_path / "other"))
    assert serves_openapi(app)
    async with httpx.AsyncClient(base_url=node.url) as http:
        r = await http.get(OPENAPI_PATH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert described(doc) == served(app)
    assert doc["paths"][OPENAPI_PATH]["get"]["security"] == []
    assert doc == openapi(app.routes)


def test_every_table_entry_is_a_route_of_the_app(app: Any) -> None:
    expected = served(app) | ({("GET", OPENAPI_PATH)} if serves_openapi(app) else set())
    assert set(OPERATIONS) - {("GET", OPENAPI_PATH)} == served(app)
    assert described(openapi(app.routes)) | (
        {("GET", OPENAPI_PATH)} if serves_openapi(app) else set()) == expected
