"""The OpenAPI 3.1 description of the node's HTTP API, written by hand, one entry per route.

Theory of operation: `OPERATIONS` holds what each HTTP route of the app accepts and
answers, keyed by the route's method and path exactly as `server.app` declares them.
`openapi(routes)` walks the app's routes and builds the document from the entries of
the routes that exist; a route with no entry raises `UndocumentedRoute`, so a new call
cannot ship undescribed (and an entry whose route is gone is reported the same way, so
the table never describes what the node does not serve). Paths keep Starlette's
`{param}` syntax (convertors stripped), which is OpenAPI's. `HEAD`, which Starlette adds
to every `GET`, and websocket routes (`/ws`, PROTOCOL.md) are not described.

Errors are always `{"error": {"code", "message", "rule?"}}` (server.errors), with the
status of their code; `rule` names the session rule (R1..R17) that refused a request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rooms.ledger import POOLS
from rooms.sessions import LIVE_STATES, MESSAGING_STATES
from rooms.settings import MODALITIES
from server.config import MAX_TOKEN_TTL_S
from server.http_sessions import WEEKDAYS
from server.ids import PLANS, SERVICES

Schema = dict[str, Any]
OPENAPI_PATH = "/openapi.json"
CONVERTOR = re.compile(r"\{(\w+):\w+\}")  # Starlette's {name:int} is OpenAPI's {name}


class UndocumentedRoute(LookupError):
    """The app and `OPERATIONS` disagree: a route without an entry, or an entry without a
    route. Our own mistake, caught by the tests, never a client's."""


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: Iterable[str] = (), **props: Schema) -> Schema:
    return {"type": "object", "required": list(required), "properties": props}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time",
                "description": "ISO 8601 with an offset"}
NULL_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
USER: Schema = {"type": "string", "description": "a user id"}
RULE: Schema = {"type": "string", "pattern": "^R[0-9]+$", "description": "a session rule"}
HHMM: Schema = {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(["error"], error=obj(
        ["code", "message"],
        code={"enum": ["bad_request", "unauthorized", "forbidden", "not_found", "rule",
                       "conflict", "too_large", "rate_limited", "internal"]},
        message=STR, rule=RULE)),
    "Health": obj(["ok", "node"], ok=BOOL, node=STR),
    "TokenRequest": obj(["user", "role"], user=USER,
                        role={"enum": ["client", "provider", "admin"]},
                        ttl={"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_TTL_S,
                             "description": "seconds"}),
    "Token": obj(["token"], token={"type": "string", "description": "a JWT"}),
    "RoomCreate": obj(["client", "provider", "plan"], client=USER, provider=USER,
                      plan={"enum": list(PLANS)},
                      service={"enum": list(SERVICES), "default": "therapy"},
                      messaging={"type": "boolean", "default": True,
                                 "description": "org plans: messaging included (R2); "
                                                "`false` is refused for other plans"},
                      room={"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}),
    "Room": obj(["room", "client", "provider", "plan", "service", "messaging"],
                room=STR, client=USER, provider=USER, plan={"enum": list(PLANS)},
                service={"enum": list(SERVICES)}, messaging=BOOL),
    "ProviderChange": obj(["provider"], provider=USER),
    "Stats": {"type": "object", "additionalProperties": True,
              "description": "this node's counters (connections, users online, ...)"},
    "BookLive": obj(["kind", "modality", "start"], kind={"const": "live"},
                    modality={"enum": list(MODALITIES)},
                    start={**TIME, "description": "on a five-minute mark, in the future"},
                    buy_credit={"type": "boolean", "default": False,
                                "description": "self_pay: buy a credit if none is left (R7)"}),
    "BookMessaging": obj(["kind"], kind={"const": "messaging"}),
    "Booking": {"oneOf": [ref("BookLive"), ref("BookMessaging")]},
    "LiveSession": obj(
        ["session", "kind", "room", "state", "modality", "start", "end", "client",
         "provider", "confirm_by"],
        session=STR, kind={"const": "live"}, room=STR, state={"enum": list(LIVE_STATES)},
        modality={"enum": list(MODALITIES)}, start=TIME, end=TIME, client=USER,
        provider=USER, by={"enum": ["client", "provider", "system"]}, at=NULL_TIME,
        confirm_by=TIME, confirmed_at=NULL_TIME,
        joined=array({"enum": ["client", "provider"]}),
        absent=array({"enum": ["client", "provider"]}), reschedules=INT,
        attendance=obj(["starts", "intervals"], starts=array(TIME),
                       intervals=array(obj(["user", "joined_at"], user=USER, joined_at=TIME,
                                           left_at=NULL_TIME)),
                       ended_at=NULL_TIME, end_reason={"type": ["string", "null"]})),
    "MessagingSession": obj(
        ["session", "kind", "room", "state", "client", "provider", "length_s"],
        session=STR, kind={"const": "messaging"}, room=STR,
        state={"enum": list(MESSAGING_STATES)}, client=USER, provider=USER,
        by={"enum": ["client", "provider", "system"]}, at=NULL_TIME, length_s=INT,
        started_at=NULL_TIME, ends_at=NULL_TIME),
    "Session": {"oneOf": [ref("LiveSession"), ref("MessagingSession")],
                "discriminator": {"propertyName": "kind"}},
    "Cost": obj(["credit_forfeited", "credit_returned", "charged_cents", "charges"],
                credit_forfeited=INT, credit_returned=INT, charged_cents=INT,
                charges=array(ref("Charge"))),
    "SessionStep": {"allOf": [ref("Session"), obj(cost=ref("Cost"))],
                    "description": "the session after the step; `cost` after cancel and "
                                   "reschedule"},
    "Reschedule": obj(["start"], start=TIME,
                      buy_credit={"type": "boolean", "default": False}),
    "RoomSessions": obj(["room", "sessions"], room=STR, sessions=array(ref("Session"))),
    "LedgerEntry": obj(
        ["kind", "room", "pool", "credits", "at", "rule"],
        kind={"enum": ["grant", "purchase", "reserve", "release", "consume", "forfeit",
                       "lapse"]},
        room=STR, pool={"enum": list(POOLS)}, credits=INT, at=TIME, rule=STR,
        session={"type": ["string", "null"]}, period={"type": ["string", "null"]}),
    "Charge": obj(
        ["key", "kind", "room", "client", "amount_cents", "at", "rule"],
        key=STR, kind={"enum": ["late_cancel", "late_reschedule", "no_show", "purchase"]},
        room=STR, client=USER, amount_cents=INT, at=TIME, rule=STR,
        session={"type": ["string", "null"]}),
    "Credits": obj(
        ["room", "available", "plan", "kept", "held", "entries", "charges",
         "charged_cents"],
        room=STR, available=INT, plan=INT, kept=INT, held=INT,
        entries=array(ref("LedgerEntry")), charges=array(ref("Charge")), charged_cents=INT),
    "Grant": obj(["count"], count={"type": "integer", "minimum": 1, "maximum": 1000}),
    "Interval": obj(["start", "end"], start=TIME, end=TIME),
    "SharedAvailability": obj(["intervals"],
                              intervals=array(ref("Interval"), minItems=1, maxItems=50)),
    "Shared": obj(["room", "seq"], room=STR, seq=INT),
    "Hours": obj(["tz", "days"], tz={"type": "string", "description": "an IANA zone"},
                 days={"type": "object", "minProperties": 1, "additionalProperties": False,
                       "properties": {d: array(HHMM, minItems=2, maxItems=2)
                                      for d in WEEKDAYS}}),
    "Schedule": obj(["hours", "availability"],
                    hours={"oneOf": [ref("Hours"), {"type": "null"}]},
                    availability=array(ref("Interval"))),
    "Slots": obj(["provider", "slots"], provider=USER, slots=array(ref("Interval"))),
    "AwaitingReply": obj(["provider", "rooms"], provider=USER, rooms=array(obj(
        ["room", "client", "waiting_since", "reply_due", "overdue"], room=STR,
        client=USER, waiting_since=TIME, reply_due=TIME, overdue=BOOL))),
}

ERROR_STATUS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "a malformed body, field or query"),
    401: ("Unauthorized", "no, bad or expired bearer token"),
    403: ("Forbidden", "not allowed for this user (may name R1)"),
    404: ("NotFound", "no such room or session"),
    409: ("Conflict", "the state changed under the request, e.g. the time was just taken"),
    413: ("TooLarge", "a body over 64 KiB"),
    422: ("RuleError", "against a session rule; `rule` names it"),
}


@dataclass(frozen=True)
class Operation:
    """One HTTP call: who may make it, what it takes and what it answers."""

    summary: str
    ok: int
    answer: str | None  # a schema name, None for no described body
    body: str | None = None  # the JSON request body's schema name
    body_required: bool = True
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, Schema, bool, str], ...] = ()  # name, schema, required, about
    params: dict[str, Schema] = field(default_factory=dict)  # path param schemas by name
    public: bool = False  # no bearer token needed
    tag: str = "sessions"
    description: str = ""
    content: str = "application/json"  # the answer's media type


MEMBER = (401, 403, 404)
ADMIN = (401, 403)
PROVIDER_SELF = (400, 401, 403, 413)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation(
        "Health: 200 while the node serves", 200, "Health", public=True, tag="node"),
    ("GET", OPENAPI_PATH): Operation(
        "This description", 200, None, public=True, tag="node"),
    ("GET", "/live/{session}"): Operation(
        "The join page of a live session (reminder links point here)", 200, None,
        public=True, tag="live", content="text/html",
        description="The page asks for the member's token; joining happens on /ws."),
    ("GET", "/live/assets/{name}"): Operation(
        "A static file of the join page", 200, None, errors=(404,), public=True, tag="live",
        content="application/octet-stream"),
    ("GET", "/v1/stats"): Operation(
        "Node statistics (admin)", 200, "Stats", errors=ADMIN, tag="node"),
    ("POST", "/v1/tokens"): Operation(
        "Issue a token signed with the node's key (admin)", 201, "Token", "TokenRequest",
        errors=(400, *ADMIN, 413), tag="rooms"),
    ("POST", "/v1/rooms"): Operation(
        "Create a room pairing a client with a provider (admin; R1)", 201, "Room",
        "RoomCreate", errors=(400, *ADMIN, 409, 413), tag="rooms"),
    ("GET", "/v1/rooms/{room}"): Operation(
        "A room (its members or an admin; R1)", 200, "Room", errors=MEMBER, tag="rooms"),
    ("PUT", "/v1/rooms/{room}/provider"): Operation(
        "Change the room's provider (admin)", 200, "Room", "ProviderChange",
        errors=(400, *ADMIN, 404, 413), tag="rooms"),
    ("POST", "/v1/rooms/{room}/sessions"): Operation(
        "Book a live session (R6, R7) or a messaging session (R5); the client only",
        201, "Session", "Booking", errors=(400, *MEMBER, 409, 413, 422),
        description="A live booking reserves a credit; with none left a self_pay room "
                    "buys one if `buy_credit` (R7, R12). Refusals name their rule: R1 not "
                    "a member, R3 psychiatry, R6 modality, R7 time or credit, R2/R5 "
                    "messaging sessions. Two bookings never hold the same provider time: "
                    "the loser gets 409 or 422 R7."),
    ("GET", "/v1/rooms/{room}/sessions"): Operation(
        "The room's sessions (members; R1)", 200, "RoomSessions", errors=MEMBER),
    ("POST", "/v1/rooms/{room}/credits"): Operation(
        "Grant credits that never lapse (admin; R12)", 201, "Credits", "Grant",
        errors=(400, *ADMIN, 404, 413)),
    ("GET", "/v1/rooms/{room}/credits"): Operation(
        "The room's credit balance, ledger and charges (members or an admin)", 200,
        "Credits", errors=MEMBER),
    ("POST", "/v1/rooms/{room}/availability"): Operation(
        "The client shares times that suit them, as a system message in the room (R7)",
        201, "Shared", "SharedAvailability", errors=(400, *MEMBER, 413),
        description="Each interval must end in the future, span at most 62 days and "
                    "start at most 366 days ahead."),
    ("GET", "/v1/sessions/{session}"): Operation(
        "A session (its client and provider; R1)", 200, "Session", errors=MEMBER),
    ("POST", "/v1/sessions/{session}/{action}"): Operation(
        "Confirm (provider; R8), start (client, messaging; R5), reschedule or cancel "
        "(client or provider; R11, R13, R14)", 200, "SessionStep", "Reschedule",
        body_required=False, errors=(400, *MEMBER, 409, 413, 422),
        params={"action": {"enum": ["confirm", "start", "reschedule", "cancel"]}},
        description="Only `reschedule` takes a body. `cancel` and `reschedule` answer what "
                    "they cost (`cost`): a client inside the late window forfeits the "
                    "credit and is charged the full session cost (R14); a provider's "
                    "cancel returns it (R11). Staff get 422 R13."),
    ("PUT", "/v1/providers/{provider}/hours"): Operation(
        "Publish the provider's weekly working hours (the provider; R4, R7)", 200,
        "Schedule", "Hours", errors=PROVIDER_SELF, tag="providers"),
    ("POST", "/v1/providers/{provider}/availability"): Operation(
        "Add extra open time (the provider; R7)", 201, "Schedule", "Interval",
        errors=PROVIDER_SELF, tag="providers",
        description="The interval must end in the future, span at most 62 days and start "
                    "at most 366 days ahead."),
    ("GET", "/v1/providers/{provider}/slots"): Operation(
        "Free session starts of a provider (the provider or their clients; R7)", 200,
        "Slots", errors=(400, 401, 403), tag="providers",
        query=(("from", TIME, True, "start of the span"),
               ("to", TIME, True, "end of the span, at most 62 days after `from`"))),
    ("GET", "/v1/providers/{provider}/awaiting-reply"): Operation(
        "The provider's rooms with an unanswered client message, reply-due first (R4)",
        200, "AwaitingReply", errors=(401, 403), tag="providers"),
}


def http_routes(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route; `HEAD` and websocket routes left out."""
    found = set()
    for route in routes:
        if isinstance(route, Route):
            for method in route.methods or ("GET",):
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def openapi(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (an app's `app.routes`)."""
    served = http_routes(routes)
    missing = sorted(served - OPERATIONS.keys())
    stale = sorted(k for k in OPERATIONS.keys() - served if k[1] != OPENAPI_PATH)
    if missing or stale:
        raise UndocumentedRoute(
            "server/openapi.py OPERATIONS is out of date: "
            + "; ".join([*(f"no entry for {m} {p}" for m, p in missing),
                         *(f"no route for {m} {p}" for m, p in stale)]))
    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(served, key=lambda k: (k[1], k[0])):
        paths.setdefault(CONVERTOR.sub(r"{\1}", path), {})[method.lower()] = operation(
            method, path, OPERATIONS[method, path])
    responses = {
        name: {"description": about, "content": {
            "application/json": {"schema": ref("Error")}}}
        for name, about in ERROR_STATUS.values()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Confide",
            "version": "1",
            "summary": "Real-time server for online therapy: rooms, sessions, credits",
            "description": "The HTTP part of wire contract v1. The websocket at `/ws` "
                           "(subprotocols confide.v1.msgpack and confide.v1.json) is "
                           "described in docs/protocol.md. Times are ISO 8601 with an "
                           "offset; errors are `{\"error\": {\"code\", \"message\", "
                           "\"rule?\"}}`.",
        },
        "tags": [{"name": t} for t in ("node", "rooms", "sessions", "providers")],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
            "schemas": SCHEMAS,
            "responses": responses,
        },
    }


def operation(method: str, path: str, op: Operation) -> dict[str, Any]:
    """One operation object of the document."""
    out: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    if op.public:
        out["security"] = []
    parameters = [
        {"name": name, "in": "path", "required": True,
         "schema": op.params.get(name, {"type": "string"})}
        for name in path_params(path)
    ]
    parameters += [{"name": name, "in": "query", "required": required, "description": about,
                    "schema": schema} for name, schema, required, about in op.query]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {
            "application/json": {"schema": ref(op.body)}}}
    ok: dict[str, Any] = {"description": "OK" if op.ok == 200 else "Created"}
    if op.answer is not None:
        ok["content"] = {op.content: {"schema": ref(op.answer)}}
    elif op.content != "application/json":
        ok["content"] = {op.content: {"schema": {"type": "string"}}}
    else:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(op.ok): ok}
    for status in sorted(set(op.errors)):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_STATUS[status][0]}"}
    out["responses"] = responses
    return out


def path_params(path: str) -> list[str]:
    """`/v1/rooms/{room}` -> ["room"]; Starlette convertors (`{id:int}`) dropped."""
    names = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            names.append(part[1:-1].split(":", 1)[0])
    return names


def operation_id(method: str, path: str) -> str:
    words = [p.strip("{}").split(":", 1)[0].replace("-", "_").replace(".", "_")
             for p in path.split("/") if p and p != "v1"]
    return "_".join([method.lower(), *words]) or method.lower()


async def openapi_json(request: Request) -> Response:
    """`GET /openapi.json`: the description of the app serving the request."""
    return JSONResponse(openapi(request.app.routes))
