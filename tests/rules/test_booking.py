"""R7 (with R3, R6, R12): booking a live session reserves a credit, or buys one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rules.story import ADMIN, CLIENT, MIN, NOW, PROVIDER, H, Scenario, make_room

from rooms.booking import LiveBooking, book_live, book_messaging
from rooms.hours import WorkingHours
from rooms.ledger import CreditLedger
from rooms.slots import Interval, ProviderSchedule
from server.errors import RuleError
from server.ids import SessionId


def test_r7_booking_reserves_a_credit_and_waits_for_confirmation(scenario: Scenario) -> None:
    session = scenario.book(NOW + 72 * H, modality="audio")
    assert session.state == "booked"
    assert session.modality == "audio"
    assert scenario.ledger.available() == 0
    assert scenario.ledger.held_by(session.id) == "kept"
    assert [n.kind for n in scenario.notices] == ["booked"]
    assert scenario.charges == []


def test_r7_no_credit_refused_on_a_plan_that_sells_none() -> None:
    s = Scenario(room=make_room("eap"))
    with pytest.raises(RuleError) as err:
        s.book(NOW + 72 * H)
    assert err.value.rule == "R7"
    assert s.session is None and s.ledger.entries == ()


def test_r7_self_pay_without_credit_must_ask_to_buy() -> None:
    s = Scenario()
    with pytest.raises(RuleError) as err:
        s.book(NOW + 72 * H)
    assert err.value.rule == "R7" and "buy" in err.value.message
    assert s.charges == []


def test_r7_self_pay_buys_a_credit_in_the_same_step() -> None:
    s = Scenario()
    session = s.book(NOW + 72 * H, buy=True)
    assert [(c.kind, c.amount_cents) for c in s.charges] == [("purchase", 12_000)]
    assert s.charges[0].session == session.id and s.charges[0].client == CLIENT
    assert s.ledger.available() == 0 and s.ledger.held() == 1


def test_r7_buying_is_skipped_when_a_credit_is_left(scenario: Scenario) -> None:
    scenario.book(NOW + 72 * H, buy=True)
    assert scenario.charges == []


def test_r7_booking_in_the_past_is_refused(scenario: Scenario) -> None:
    with pytest.raises(RuleError) as err:
        scenario.book(NOW - MIN)
    assert err.value.rule == "R7"
    assert scenario.ledger.available() == 1


def test_r7_booking_outside_working_hours_is_refused(scenario: Scenario) -> None:
    hours = ProviderSchedule(WorkingHours.weekdays("UTC"))
    with pytest.raises(RuleError) as err:
        scenario.book(NOW + 72 * H + 8 * H, schedule=hours)  # Thursday 20:00 UTC
    assert err.value.rule == "R7"
    assert scenario.book(NOW + 72 * H, schedule=hours).state == "booked"  # Thursday noon


def test_r7_two_bookings_cannot_hold_the_same_provider_time(scenario: Scenario) -> None:
    scenario.give(1)
    first = scenario.book(NOW + 72 * H)
    with pytest.raises(RuleError) as err:
        book_live(
            scenario.room,
            LiveBooking("video", first.start + 20 * MIN),
            NOW,
            CLIENT,
            session_id=SessionId("s-x"),
            ledger=scenario.ledger,
            schedule=ProviderSchedule(),
            busy=[Interval(first.start, first.end)],
        )
    assert err.value.rule == "R7"


@pytest.mark.parametrize(("who", "rule"), [(PROVIDER, "R7"), (ADMIN, "R1")])
def test_r13_only_the_client_books(who: str, rule: str) -> None:
    room = make_room()
    with pytest.raises(RuleError) as err:
        book_live(
            room,
            LiveBooking("video", NOW + 72 * H),
            NOW,
            who,  # type: ignore[arg-type]
            session_id=SessionId("s-1"),
            ledger=CreditLedger(room.id),
            schedule=ProviderSchedule(),
            busy=(),
        )
    assert err.value.rule == rule


def test_r3_psychiatry_books_video_but_not_chat() -> None:
    s = Scenario(room=make_room("self_pay", "psychiatry"))
    s.give(2)
    with pytest.raises(RuleError) as err:
        s.book(NOW + 72 * H, modality="chat")
    assert err.value.rule == "R3"
    assert s.book(NOW + 72 * H, modality="video").state == "booked"


def test_r5_messaging_session_booking_only_on_eap_and_bh() -> None:
    step = book_messaging(
        make_room("bh"), NOW, CLIENT, session_id=SessionId("m-1"), open_sessions=()
    )
    assert step.session.state == "booked"
    assert step.session.length == timedelta(minutes=30)
    for room, rule in ((make_room("self_pay"), "R2"), (make_room("eap", "psychiatry"), "R3")):
        with pytest.raises(RuleError) as err:
            book_messaging(room, NOW, CLIENT, session_id=SessionId("m-1"), open_sessions=())
        assert err.value.rule == rule


def test_r5_one_open_messaging_session_at_a_time() -> None:
    room = make_room("eap")
    first = book_messaging(room, NOW, CLIENT, session_id=SessionId("m-1"), open_sessions=()).session
    with pytest.raises(RuleError) as err:
        book_messaging(room, NOW, CLIENT, session_id=SessionId("m-2"), open_sessions=[first])
    assert err.value.rule == "R5"
    with pytest.raises(RuleError) as err:
        book_messaging(room, NOW, PROVIDER, session_id=SessionId("m-2"), open_sessions=())
    assert err.value.rule == "R5"


def test_r7_availability_is_for_times_to_come_and_of_a_sane_length() -> None:
    from rooms.slots import availability_problem

    day = timedelta(days=1)
    assert availability_problem(Interval(NOW - H, NOW + H), NOW) is None  # under way
    assert availability_problem(Interval(NOW + 300 * day, NOW + 362 * day), NOW) is None
    over = availability_problem(Interval(NOW - 2 * H, NOW), NOW)
    assert over is not None and "in the past" in over
    long = availability_problem(Interval(NOW, NOW + 63 * day), NOW)
    assert long is not None and "at most 62 days" in long
    far = availability_problem(Interval(NOW + 367 * day, NOW + 368 * day), NOW)
    assert far is not None and "366 days ahead" in far


def test_r2_only_org_rooms_say_whether_they_include_messaging() -> None:
    from rooms.capabilities import chooses_messaging

    assert chooses_messaging("org")
    assert not any(chooses_messaging(plan) for plan in ("self_pay", "eap", "bh"))
