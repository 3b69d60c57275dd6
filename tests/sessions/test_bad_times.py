"""Times and hours that a request may not name get a 400 that says which field is wrong
and why, and change nothing: no 500 for a time at the calendar's edge."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sessions.site import Site, at, error_of

DAYS3 = timedelta(days=3)
H = timedelta(hours=1)


def bad(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    message = error_of(r)["message"]
    assert error_of(r)["code"] == "bad_request"
    for word in words:
        assert word in message, message


async def test_booking_times_at_the_calendars_edge_are_refused(site: Site) -> None:
    room = await site.room("c1", "p1")
    for when in ("9999-12-31T23:55:00+00:00", "9999-12-31T20:00:00-05:00",
                 "0001-01-01T00:00:00+00:00"):
        bad(await site.book(room, "c1", when), "`start`", "year")
    bad(await site.book(room, "c1", "2030-01-01T10:00:00"), "`start`", "offset")
    session = await site.booked(room, "c1", DAYS3)
    bad(await site.act(session["session"], "reschedule", "c1", start="9999-12-31T23:55:00Z"),
        "`start`", "year")
    assert (await site.session(session["session"], "c1"))["start"] == at(DAYS3)  # unchanged


async def test_slot_queries_name_from_and_to(site: Site) -> None:
    await site.room("c1", "p1")
    me = site.auth("p1", "provider")

    async def ask(**params: str) -> httpx.Response:
        return await site.http.get("/v1/providers/p1/slots", headers=me, params=params)

    bad(await ask(to=at(DAYS3)), "`from` is required")
    bad(await ask(**{"from": at(DAYS3)}), "`to` is required")
    bad(await ask(**{"from": at(DAYS3 + H), "to": at(DAYS3)}), "`to` must be after `from`")
    bad(await ask(**{"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T23:59:59Z"}),
        "`from`", "year")
    # a '+' left unescaped in the URL reads as a space: the error says so
    r = await site.http.get("/v1/providers/p1/slots?from=2030-01-01T10:00:00+00:00"
                            "&to=2030-01-01T12:00:00%2B00:00", headers=me)
    bad(r, "`from`", "%2B")
    assert (await ask(**{"from": at(DAYS3), "to": at(DAYS3 + H)})).status_code == 200


async def test_working_hours_with_an_offset_are_refused_and_the_old_ones_stay(site: Site
                                                                              ) -> None:
    room = await site.room("c1", "p1")
    me = site.auth("p1", "provider")
    r = await site.http.put("/v1/providers/p1/hours", headers=me,
                            json={"tz": "UTC", "days": {"thu": ["09:00", "12:00"]}})
    assert r.status_code == 200, r.text
    for span in (["09:00+02:00", "17:00"], ["09:00+02:00", "17:00+02:00"]):
        r = await site.http.put("/v1/providers/p1/hours", headers=me,
                                json={"tz": "UTC", "days": {"thu": span}})
        bad(r, "`thu`", "without an offset")
    # the hours set first still decide: 09:00-12:00 UTC, not 09:00-17:00
    refused = await site.book(room, "c1", DAYS3 + 5 * H)
    assert refused.status_code == 422, refused.text
    assert (await site.book(room, "c1", DAYS3 + 2 * H)).status_code == 201


async def test_availability_far_outside_the_calendar_is_refused(site: Site) -> None:
    room = await site.room("c1", "p1")
    r = await site.http.post(f"/v1/rooms/{room}/availability", headers=site.auth("c1"),
                             json={"intervals": [{"start": "9999-12-31T00:00:00Z",
                                                  "end": "9999-12-31T23:00:00Z"}]})
    bad(r, "`start`", "year")
    assert await site.history(room, "c1") == []  # nothing was posted in the room


async def test_availability_is_for_times_to_come_and_of_a_sane_length(site: Site) -> None:
    room = await site.room("c1", "p1")
    me = site.auth("p1", "provider")
    cases = [((-2 * H, -H), "`end` is in the past"),
             ((DAYS3, DAYS3 + timedelta(days=63)),
              "an interval of availability spans at most 62 days"),
             ((timedelta(days=400), timedelta(days=401)),
              "availability starts at most 366 days ahead")]
    for (start, end), says in cases:
        interval = {"start": at(start), "end": at(end)}
        bad(await site.http.post("/v1/providers/p1/availability", headers=me, json=interval),
            says)
        fine = {"start": at(DAYS3), "end": at(DAYS3 + H)}
        bad(await site.http.post(f"/v1/rooms/{room}/availability", headers=site.auth("c1"),
                                 json={"intervals": [fine, interval]}), "interval 2: " + says)
    assert await site.history(room, "c1") == []  # nothing was posted in the room
    ok = {"start": at(-H), "end": at(H)}  # under way: still to come in part
    r = await site.http.post("/v1/providers/p1/availability", headers=me, json=ok)
    assert r.status_code == 201, r.text
