"""R17 (the pure half): which deadline jobs a session has, and that each acts once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules.story import CLIENT, MIN, NOW, PROVIDER, H, Scenario

from rooms import lifecycle, messaging
from rooms.deadlines import JoinRecord, live_jobs, no_show_outcome, sides_joined_by
from rooms.effects import Job
from rooms.room import SYSTEM
from server.errors import RuleError

START = NOW + 72 * H


def fire(s: Scenario, job: Job, late: timedelta = timedelta(0)) -> None:
    """What the job runner does: map the job to its event and apply it as SYSTEM."""
    s.do(lifecycle.event_for_job(job), job.due + late, SYSTEM)


def test_r17_job_set_follows_the_session_through_its_life(scenario: Scenario) -> None:
    scenario.confirmed(START)
    kinds = sorted(j.kind for j in scenario.jobs)
    assert kinds == ["no_show", "remind", "remind"]
    for job in scenario.due("remind"):
        fire(scenario, job)
    scenario.do(lifecycle.Join(), START - 5 * MIN, CLIENT)
    scenario.do(lifecycle.Join(), START - 4 * MIN, PROVIDER)
    assert sorted(j.kind for j in scenario.jobs) == ["begin", "no_show"]
    fire(scenario, scenario.due("begin")[0])
    assert [j.kind for j in scenario.jobs] == ["end"]
    assert scenario.session is not None
    assert scenario.jobs == live_jobs(scenario.session)


def test_r17_a_job_fired_twice_acts_once(scenario: Scenario) -> None:
    scenario.book(START)
    (lapse,) = scenario.due("lapse")
    fire(scenario, lapse)
    ledger = scenario.ledger
    with pytest.raises(RuleError):
        fire(scenario, lapse)
    assert scenario.ledger == ledger and scenario.ledger.available() == 1


def test_r17_late_jobs_still_act_when_they_fire(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(lifecycle.Join(), START, PROVIDER)
    fire(scenario, scenario.due("no_show")[0], late=timedelta(hours=6))  # node was down
    assert scenario.session is not None and scenario.session.state == "no-show"
    assert [c.kind for c in scenario.charges] == ["no_show"]


def test_r17_cancel_removes_pending_jobs(scenario: Scenario) -> None:
    scenario.confirmed(START)
    scenario.do(lifecycle.Cancel(), NOW + H, CLIENT)
    assert scenario.jobs == set()


def test_r17_job_keys_are_stable_and_unique(scenario: Scenario) -> None:
    scenario.confirmed(START)
    keys = [j.key for j in scenario.jobs]
    assert len(set(keys)) == len(keys)
    assert {j.key for j in live_jobs(scenario.session)} == set(keys)  # type: ignore[arg-type]


def test_r17_messaging_end_job_maps_to_its_event() -> None:
    job = Job(NOW, "end_messaging", "m-1")
    assert isinstance(messaging.event_for_job(job), messaging.EndMessaging)
    with pytest.raises(ValueError):
        lifecycle.event_for_job(job)


def test_r15_join_records_decide_who_was_absent() -> None:
    records = [JoinRecord("provider", START - MIN), JoinRecord("client", START + 11 * MIN)]
    joined = sides_joined_by(records, START + 10 * MIN)
    assert joined == {"provider"}
    outcome = no_show_outcome(joined)
    assert outcome is not None
    assert (outcome.absent, outcome.credit, outcome.charge) == ({"client"}, "forfeit", True)
    assert no_show_outcome(frozenset({"client", "provider"})) is None


# -- property: any sequence of steps keeps session, ledger and jobs consistent -------

EVENTS = st.sampled_from(
    [
        (lifecycle.Confirm(), PROVIDER),
        (lifecycle.Lapse(), SYSTEM),
        (lifecycle.Join(), CLIENT),
        (lifecycle.Join(), PROVIDER),
        (lifecycle.Leave(), CLIENT),
        (lifecycle.Begin(), SYSTEM),
        (lifecycle.Cancel(), CLIENT),
        (lifecycle.Cancel(), PROVIDER),
        (lifecycle.Cancel(), SYSTEM),
        (lifecycle.Reschedule(START + 96 * H), CLIENT),
        (lifecycle.Reschedule(START + 96 * H, buy_credit=True), CLIENT),
        (lifecycle.Reschedule(START + 120 * H), PROVIDER),
        (lifecycle.NoShowCheck(), SYSTEM),
        (lifecycle.End(), PROVIDER),
        (lifecycle.End(), SYSTEM),
        ("remind", SYSTEM),
    ]
)
HOLDING = {"booked", "confirmed", "reminded", "waiting"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(EVENTS, st.integers(0, 20 * 60)), max_size=25))
def test_r17_random_steps_keep_everything_consistent(
    steps: list[tuple[tuple[object, object], int]],
) -> None:
    s = Scenario()
    s.give(1)
    s.book(START)
    now = NOW
    for (event, actor), minutes in steps:
        now += timedelta(minutes=minutes)
        session = s.session
        assert session is not None
        if event == "remind":
            due = session.start - 15 * MIN
            event = lifecycle.Remind(due)
        before = (s.session, s.ledger, list(s.charges), set(s.jobs))
        try:
            s.do(event, now, actor)  # type: ignore[arg-type]
        except RuleError:
            assert (s.session, s.ledger, s.charges, s.jobs) == before
        session = s.session
        assert session is not None
        assert s.ledger.available() >= 0
        assert s.ledger.held() == (1 if session.state in HOLDING else 0)
        assert s.jobs == live_jobs(session)
        assert all(c.amount_cents > 0 for c in s.charges)
