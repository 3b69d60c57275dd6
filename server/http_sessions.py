"""The HTTP API of the session rules: booking, confirming, moving and cancelling sessions,
credits, provider hours and free slots, shared availability and the reply-due list.

Handlers check who is asking (R1: members only; R13: only the client or the provider
moves a session; admins grant credits but never book on a member's behalf), parse the
body, and hand over to `server.sessions.Sessions`, which applies the rules of `rooms/`.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rooms.hours import DayHours, WorkingHours
from rooms.slots import Interval, availability_problem
from server.auth import Identity
from server.errors import BadRequest, Forbidden, RuleError
from server.http import Api, json_body
from server.ids import RoomId, UserId
from server.sessions import Sessions, parse_start, parse_time
from server.store import RoomRecord

MAX_SLOT_SPAN = timedelta(days=62)


class SessionApi:
    """Handlers of the session calls; `api` gives identity and room lookups."""

    def __init__(self, api: Api, sessions: Sessions) -> None:
        self.api = api
        self.sessions = sessions

    async def _member_room(self, request: Request, who: Identity) -> RoomRecord:
        record = await self.api.hub.room(RoomId(request.path_params["room"]))
        if not record.is_member(who.user):
            raise Forbidden("only the room's client and provider may do this", rule="R1")
        return record

    async def book(self, request: Request) -> Response:
        who = self.api.identity(request)
        record = await self._member_room(request, who)
        body = await json_body(request)
        out = await self.sessions.book(record.room, who.user, body)
        return JSONResponse(out.session, status_code=201)

    async def session_action(self, request: Request) -> Response:
        who = self.api.identity(request)
        if who.role == "admin":
            raise RuleError("R13", "staff cannot book, move or cancel a member's session")
        action = request.path_params["action"]
        if action not in ("confirm", "cancel", "reschedule", "start"):
            raise BadRequest(f"unknown session action {action[:32]!r}")
        body = await json_body(request) if action == "reschedule" else {}
        out = await self.sessions.session_step(request.path_params["session"], action,
                                               who.user, body)
        answer = dict(out.session or {})
        if action in ("cancel", "reschedule"):
            answer["cost"] = out.cost()
        return JSONResponse(answer)

    async def get_session(self, request: Request) -> Response:
        who = self.api.identity(request)
        found = await self.sessions.view_session(request.path_params["session"])
        if who.user not in (found["client"], found["provider"]):
            raise Forbidden("only the session's client and provider may see it", rule="R1")
        return JSONResponse(found)

    async def room_sessions(self, request: Request) -> Response:
        who = self.api.identity(request)
        record = await self._member_room(request, who)
        return JSONResponse({"room": record.room,
                             "sessions": await self.sessions.room_sessions(record.room)})

    async def credits(self, request: Request) -> Response:
        who = self.api.identity(request)
        room = RoomId(request.path_params["room"])
        if who.role != "admin":
            await self._member_room(request, who)
        else:
            await self.api.hub.room(room)
        return JSONResponse(await self.sessions.credits(room))

    async def grant(self, request: Request) -> Response:
        self.api.admin(request)
        room = RoomId(request.path_params["room"])
        await self.api.hub.room(room)
        body = await json_body(request)
        count = body.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise BadRequest("`count` must be an integer from 1 to 1000")
        await self.sessions.grant_credits(room, count)
        return JSONResponse(await self.sessions.credits(room), status_code=201)

    async def set_hours(self, request: Request) -> Response:
        provider = self._provider_self(request)
        body = await json_body(request)
        hours = parse_hours(body)
        schedule = await self.sessions.set_hours(provider, hours, None)
        return JSONResponse(schedule_json(schedule))

    async def add_availability(self, request: Request) -> Response:
        provider = self._provider_self(request)
        body = await json_body(request)
        interval = self._ahead(parse_interval(body))
        schedule = await self.sessions.set_hours(provider, None, interval)
        return JSONResponse(schedule_json(schedule), status_code=201)

    def _ahead(self, interval: Interval, which: str = "") -> Interval:
        """`interval`, if it is availability (`availability_problem`); `which`: its place
        in a list, for the error."""
        problem = availability_problem(interval, self.sessions.clock())
        if problem is not None:
            raise BadRequest(which + problem)
        return interval

    async def slots(self, request: Request) -> Response:
        who = self.api.identity(request)
        provider = UserId(request.path_params["provider"])
        if who.user != provider:
            rooms = await self.api.store.rooms_of(who.user)
            if not any(r.provider == provider for r in rooms):
                raise Forbidden("only the provider's own clients see their free times",
                                rule="R1")
        span = parse_interval(dict(request.query_params), ("from", "to"), in_url=True)
        if span.end - span.start > MAX_SLOT_SPAN:
            raise BadRequest("ask for at most 62 days of slots at a time")
        found = await self.sessions.free_slots(provider, span)
        return JSONResponse({"provider": provider, "slots": [
            {"start": s.start.isoformat(), "end": s.end.isoformat()} for s in found]})

    async def share_availability(self, request: Request) -> Response:
        who = self.api.identity(request)
        record = await self._member_room(request, who)
        body = await json_body(request)
        raw = body.get("intervals")
        if not isinstance(raw, list) or not 1 <= len(raw) <= 50:
            raise BadRequest("`intervals` must be a list of 1..50 {start, end}")
        intervals = [self._ahead(parse_interval(i), f"interval {n}: ")
                     for n, i in enumerate(raw, 1)]
        out = await self.sessions.share_availability(record, who.user, intervals)
        return JSONResponse({"room": record.room, "seq": out.messages[0].seq}, status_code=201)

    async def awaiting_reply(self, request: Request) -> Response:
        provider = self._provider_self(request)
        rooms = [r for r in await self.api.store.rooms_of(provider) if r.provider == provider]
        return JSONResponse({"provider": provider,
                             "rooms": await self.sessions.reply_due(provider, rooms)})

    def _provider_self(self, request: Request) -> UserId:
        who = self.api.identity(request)
        provider = UserId(request.path_params["provider"])
        if who.user != provider or who.role != "provider":
            raise Forbidden("providers manage only their own schedule")
        return provider


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hours(body: dict[str, Any]) -> WorkingHours:
    """`{"tz": "Europe/Berlin", "days": {"mon": ["09:00", "17:00"], ...}}`."""
    tz, days = body.get("tz"), body.get("days")
    if not isinstance(tz, str) or not isinstance(days, dict) or not days:
        raise BadRequest('hours are {"tz": "Area/City", "days": {"mon": ["09:00", "17:00"]}}')
    parsed = []
    for name, span in days.items():
        if name not in WEEKDAYS:
            raise BadRequest(f"unknown weekday {str(name)[:8]!r}: use {', '.join(WEEKDAYS)}")
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(x, str)
                                                                    for x in span)):
            raise BadRequest(f"`{name}` must be [opens, closes], e.g. [\"09:00\", \"17:00\"]")
        try:
            opens, closes = time.fromisoformat(span[0]), time.fromisoformat(span[1])
        except ValueError:
            raise BadRequest(f"`{name}` times must be HH:MM") from None
        if opens.tzinfo is not None or closes.tzinfo is not None:
            raise BadRequest(f"`{name}` times must be HH:MM without an offset: they are "
                             "local times of `tz`")
        parsed.append(DayHours(WEEKDAYS.index(name), opens, closes))
    try:
        return WorkingHours(tz, tuple(sorted(parsed, key=lambda d: d.weekday)))
    except (ValueError, KeyError) as exc:
        raise BadRequest(f"working hours refused: {str(exc)[:80]}") from None


def parse_interval(body: object, names: tuple[str, str] = ("start", "end"),
                   in_url: bool = False) -> Interval:
    """`{start, end}` as an interval; `names`: what the request calls the two ends."""
    if not isinstance(body, dict):
        raise BadRequest("an interval is {start, end}")
    first = parse_time(body.get(names[0]), names[0], in_url)
    last = parse_time(body.get(names[1]), names[1], in_url)
    if last <= first:
        raise BadRequest(f"`{names[1]}` must be after `{names[0]}`")
    return Interval(first, last)


def schedule_json(schedule: Any) -> dict[str, Any]:
    hours = schedule.hours
    return {
        "hours": None if hours is None else {
            "tz": hours.tz,
            "days": {WEEKDAYS[d.weekday]: [d.opens.isoformat("minutes"),
                                           d.closes.isoformat("minutes")] for d in hours.days}},
        "availability": [{"start": i.start.isoformat(), "end": i.end.isoformat()}
                         for i in schedule.extra],
    }


__all__ = ["SessionApi", "parse_hours", "parse_interval", "parse_start"]
