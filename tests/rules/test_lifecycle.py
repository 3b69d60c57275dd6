"""R8-R11, R13-R15: a live session's life, as the client and the provider see it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from rules.story import ADMIN, CLIENT, MIN, NOW, PROVIDER, H, Scenario

from rooms.lifecycle import (
    Begin,
    Cancel,
    Confirm,
    End,
    Join,
    Lapse,
    Leave,
    NoShowCheck,
    Remind,
    Reschedule,
)
from rooms.room import SYSTEM
from rooms.settings import DEFAULT_SETTINGS
from server.errors import RuleError

START = NOW + 72 * H  # Thursday noon; the late window opens Wednesday noon


def refused(s: Scenario, event: object, at: object, actor: object = SYSTEM) -> str:
    """Apply an illegal step: assert it changed nothing and return the rule it named."""
    before = (s.session, s.ledger, list(s.charges), set(s.jobs))
    with pytest.raises(RuleError) as err:
        s.do(event, at, actor)  # type: ignore[arg-type]
    assert (s.session, s.ledger, s.charges, s.jobs) == before
    return err.value.rule


# -- R8: confirmation ----------------------------------------------------------------


def test_r8_provider_confirms_and_reminders_are_scheduled(scenario: Scenario) -> None:
    scenario.book(START)
    assert [j.due for j in scenario.due("lapse")] == [START - 24 * H]
    session = scenario.do(Confirm(), NOW + H, PROVIDER)
    assert session.state == "confirmed"
    assert scenario.due("lapse") == []
    assert [j.due for j in scenario.due("remind")] == [START - 24 * H, START - 15 * MIN]
    assert [j.due for j in scenario.due("no_show")] == [START + 10 * MIN]
    assert [n.kind for n in scenario.notices] == ["booked", "confirmed"]


def test_r8_unconfirmed_booking_lapses_and_gives_the_credit_back(scenario: Scenario) -> None:
    scenario.book(START)
    session = scenario.do(Lapse(), START - 24 * H)
    assert session.state == "lapsed"
    assert scenario.ledger.available() == 1 and scenario.ledger.held() == 0
    assert scenario.notices[-1].kind == "lapsed"
    assert scenario.charges == [] and scenario.jobs == set()


def test_r8_confirming_after_the_deadline_is_refused(scenario: Scenario) -> None:
    scenario.book(START)
    assert refused(scenario, Confirm(), START - 24 * H, PROVIDER) == "R8"


def test_r8_lapse_job_too_early_is_refused(scenario: Scenario) -> None:
    scenario.book(START)
    assert refused(scenario, Lapse(), START - 25 * H) == "R8"


def test_r8_short_notice_booking_must_be_confirmed_before_start(scenario: Scenario) -> None:
    session = scenario.book(NOW + 5 * H)
    assert session.confirm_by == session.start
    assert [j.due for j in scenario.due("lapse")] == [session.start]
    scenario.do(Confirm(), NOW + 4 * H, PROVIDER)
    assert scenario.session is not None and scenario.session.state == "confirmed"


def test_r8_only_the_provider_confirms(scenario: Scenario) -> None:
    scenario.book(START)
    assert refused(scenario, Confirm(), NOW + H, CLIENT) == "R8"


def test_r8_unconfirmed_session_cannot_start(scenario: Scenario) -> None:
    scenario.book(NOW + 5 * H)
    assert refused(scenario, Join(), NOW + 5 * H - MIN, CLIENT) == "R8"
    assert refused(scenario, Begin(), NOW + 5 * H) == "R8"


# -- R9: reminders -------------------------------------------------------------------


def test_r9_room_gets_a_day_and_a_quarter_hour_reminder(scenario: Scenario) -> None:
    scenario.confirmed(START)
    for job in scenario.due("remind"):
        scenario.do(Remind(job.due), job.due)
    assert scenario.session is not None and scenario.session.state == "reminded"
    assert [n.kind for n in scenario.notices].count("reminder") == 2
    assert scenario.due("remind") == []


def test_r9_late_confirmation_skips_reminders_already_past(scenario: Scenario) -> None:
    scenario.confirmed(NOW + 5 * H)
    assert [j.due for j in scenario.due("remind")] == [NOW + 5 * H - 15 * MIN]


def test_r9_reminder_offsets_are_a_setting() -> None:
    s = Scenario(settings=replace(DEFAULT_SETTINGS, reminder_offsets=(2 * H,)))
    s.give(1)
    s.confirmed(START)
    assert [j.due for j in s.due("remind")] == [START - 2 * H]


def test_r9_no_reminder_after_the_start(scenario: Scenario) -> None:
    scenario.confirmed(START)
    assert refused(scenario, Remind(START - 15 * MIN), START + MIN) == "R9"


# -- R10: joining and starting (the states this issue owns) ------------------------


def test_r10_joining_opens_ten_minutes_before_start(scenario: Scenario) -> None:
    scenario.confirmed(START)
    assert refused(scenario, Join(), START - 11 * MIN, CLIENT) == "R10"
    assert scenario.do(Join(), START - 10 * MIN, CLIENT).state == "waiting"


def test_r10_both_in_early_start_at_the_start_and_use_the_credit(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - 5 * MIN, CLIENT)
    session = scenario.do(Join(), START - 4 * MIN, PROVIDER)
    assert session.state == "waiting" and [j.due for j in scenario.due("begin")] == [START]
    assert refused(scenario, Begin(), START - MIN) == "R10"
    session = scenario.do(Begin(), START)
    assert session.state == "started"
    assert scenario.ledger.held() == 0 and scenario.ledger.available() == 0
    assert scenario.ledger.entries[-1].kind == "consume"
    assert scenario.do(End(), START + 50 * MIN, PROVIDER).state == "ended"
    assert scenario.charges == [] and scenario.jobs == set()


def test_r10_a_session_held_early_and_ended_before_its_start_is_attended(
        scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - 8 * MIN, CLIENT)
    scenario.do(Join(), START - 7 * MIN, PROVIDER)  # media may flow: both are in
    session = scenario.do(End(), START - MIN, PROVIDER)
    assert session.state == "ended"
    assert scenario.ledger.entries[-1].kind == "consume"  # attended: the credit is used
    assert scenario.charges == [] and scenario.jobs == set()  # no begin, no no-show check


def test_r10_only_both_in_can_end_a_waiting_session(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - 8 * MIN, CLIENT)
    assert refused(scenario, End(), START - 7 * MIN, CLIENT) == "R10"


def test_r10_second_join_after_start_starts_at_once(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - MIN, PROVIDER)
    assert scenario.do(Join(), START + 3 * MIN, CLIENT).state == "started"
    ledger = scenario.ledger
    assert scenario.do(Join(), START + 9 * MIN, CLIENT).state == "started"  # a reconnect
    assert scenario.ledger == ledger  # consumed once


def test_r10_leaving_the_waiting_room_before_start(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - 5 * MIN, CLIENT)
    assert scenario.do(Leave(), START - 4 * MIN, CLIENT).joined == frozenset()


# -- R11: the provider can't make it -----------------------------------------------


def test_r11_provider_cancel_keeps_the_credit_without_charge(scenario: Scenario) -> None:
    scenario.confirmed(START)
    session = scenario.do(Cancel(), START - H, PROVIDER)  # inside the late window
    assert session.state == "cancelled" and session.by == "provider"
    assert scenario.charges == []
    assert scenario.ledger.available() == 1
    scenario.book(START + 48 * H, now=START)  # rebooks with the same credit
    assert scenario.ledger.available() == 0 and scenario.charges == []


def test_r11_provider_no_show_gives_the_credit_back(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - MIN, CLIENT)
    session = scenario.do(NoShowCheck(), START + 10 * MIN)
    assert session.state == "no-show" and session.absent == {"provider"}
    assert scenario.ledger.available() == 1 and scenario.charges == []
    assert scenario.notices[-1].absent == {"provider"}


# -- R13: who may move or cancel ---------------------------------------------------


def test_r13_provider_reschedule_counts_as_confirmation(scenario: Scenario) -> None:
    session = scenario.book(START)
    credit = scenario.ledger.held_by(session.id)
    moved = scenario.do(Reschedule(START + 24 * H), NOW + H, PROVIDER)
    assert moved.state == "confirmed" and moved.start == START + 24 * H
    assert scenario.ledger.held_by(session.id) == credit and scenario.charges == []
    assert scenario.notices[-1].kind == "rescheduled" and scenario.notices[-1].by == "provider"


def test_r13_client_reschedule_needs_a_new_confirmation(scenario: Scenario) -> None:
    scenario.confirmed(START)
    moved = scenario.do(Reschedule(START + 24 * H), NOW + H, CLIENT)
    assert moved.state == "booked" and moved.reschedules == 1
    assert [j.due for j in scenario.due("lapse")] == [START]
    assert scenario.due("remind") == []


def test_r13_nobody_else_cancels_or_moves(scenario: Scenario) -> None:
    scenario.confirmed(START)
    assert refused(scenario, Cancel(), NOW + H, SYSTEM) == "R13"
    assert refused(scenario, Reschedule(START + H), NOW + H, SYSTEM) == "R13"
    assert refused(scenario, Reschedule(START + H), NOW + H, ADMIN) == "R1"


def test_r13_finished_sessions_cannot_be_cancelled(scenario: Scenario) -> None:
    scenario.book(START)
    scenario.do(Lapse(), START - 24 * H)
    assert refused(scenario, Cancel(), START - 23 * H, CLIENT) == "R13"


def test_r13_reschedule_into_the_past_is_refused(scenario: Scenario) -> None:
    scenario.confirmed(START)
    assert refused(scenario, Reschedule(NOW), NOW + H, CLIENT) == "R7"


# -- R14: late cancel, late reschedule, client no-show -------------------------------


def test_r14_cancel_outside_window_gives_credit_back(scenario: Scenario) -> None:
    scenario.confirmed(START)
    session = scenario.do(Cancel(), START - 24 * H - MIN, CLIENT)
    assert session.state == "cancelled"
    assert scenario.ledger.available() == 1 and scenario.charges == []


def test_r14_late_cancel_forfeits_credit_and_charges_full_cost(scenario: Scenario) -> None:
    scenario.confirmed(START)
    session = scenario.do(Cancel(), START - 24 * H, CLIENT)
    assert session.state == "late-cancelled"
    assert scenario.ledger.available() == 0 and scenario.ledger.held() == 0
    assert [(c.kind, c.amount_cents, c.rule) for c in scenario.charges] == [
        ("late_cancel", 12_000, "R14")
    ]
    assert scenario.notices[-1].kind == "late_cancelled"


def test_r14_reschedule_outside_window_keeps_the_same_credit(scenario: Scenario) -> None:
    session = scenario.confirmed(START)
    before = scenario.ledger
    scenario.do(Reschedule(START + 7 * 24 * H), NOW + H, CLIENT)
    assert scenario.ledger == before  # no entry at all: the same credit moves along
    assert scenario.ledger.held_by(session.id) == "kept" and scenario.charges == []


def test_r14_late_reschedule_forfeits_and_needs_a_fresh_credit(scenario: Scenario) -> None:
    scenario.confirmed(START)
    assert refused(scenario, Reschedule(START + 48 * H), START - H, CLIENT) == "R7"
    scenario.give(1)
    session = scenario.do(Reschedule(START + 48 * H), START - H, CLIENT)
    assert session.state == "booked" and session.start == START + 48 * H
    assert [c.kind for c in scenario.charges] == ["late_reschedule"]
    assert scenario.ledger.held() == 1 and scenario.ledger.available() == 0
    assert [e.kind for e in scenario.ledger.entries[-2:]] == ["forfeit", "reserve"]


def test_r14_late_reschedule_may_buy_the_fresh_credit(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Reschedule(START + 48 * H, buy_credit=True), START - H, CLIENT)
    assert [(c.kind, c.amount_cents) for c in scenario.charges] == [
        ("late_reschedule", 12_000),
        ("purchase", 12_000),
    ]
    assert scenario.ledger.held() == 1


def test_r14_client_no_show_forfeits_and_charges(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START - 2 * MIN, PROVIDER)
    session = scenario.do(NoShowCheck(), START + 10 * MIN)
    assert session.state == "no-show" and session.absent == {"client"}
    assert [(c.kind, c.amount_cents) for c in scenario.charges] == [("no_show", 12_000)]
    assert scenario.ledger.available() == 0 and scenario.ledger.held() == 0


def test_r14_late_window_is_a_setting() -> None:
    s = Scenario(settings=replace(DEFAULT_SETTINGS, late_window=timedelta(hours=48)))
    s.give(1)
    s.confirmed(START)
    assert s.do(Cancel(), START - 47 * H, CLIENT).state == "late-cancelled"


def test_r14_provider_late_reschedule_costs_nothing(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Reschedule(START + 24 * H), START - H, PROVIDER)
    assert scenario.charges == [] and scenario.ledger.held() == 1


# -- R15: no-show --------------------------------------------------------------------


def test_r15_no_show_check_waits_for_the_grace_period(scenario: Scenario) -> None:
    scenario.confirmed(START)
    assert refused(scenario, NoShowCheck(), START + 9 * MIN) == "R15"


def test_r15_nobody_joined_is_a_no_show_of_both_and_the_provider_pays_nothing(
    scenario: Scenario,
) -> None:
    scenario.confirmed(START)
    session = scenario.do(NoShowCheck(), START + 10 * MIN)
    assert session.absent == {"client", "provider"}
    assert scenario.ledger.available() == 1 and scenario.charges == []


def test_r15_join_records_from_signaling_decide(scenario: Scenario) -> None:
    scenario.confirmed(START)
    session = scenario.do(NoShowCheck(joined=frozenset({"provider"})), START + 10 * MIN)
    assert session.absent == {"client"}
    assert [c.kind for c in scenario.charges] == ["no_show"]


def test_r15_grace_period_is_a_setting() -> None:
    s = Scenario(settings=replace(DEFAULT_SETTINGS, no_show_grace=timedelta(minutes=5)))
    s.give(1)
    s.confirmed(START)
    assert [j.due for j in s.due("no_show")] == [START + 5 * MIN]


def test_r15_no_no_show_once_started(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(Join(), START, CLIENT)
    scenario.do(Join(), START + MIN, PROVIDER)
    assert scenario.due("no_show") == []
    assert refused(scenario, NoShowCheck(), START + 10 * MIN) == "R15"
