"""The benchmark's ramp (`climb`): which rates it offers, and which figure it keeps.

A step here is a rule on the offered rate (a server that holds up to some ceiling), so
the order of the runs and the figure can be checked exactly; the runs themselves are
the load tester's, covered by the scenario tests.
"""

from __future__ import annotations

from collections.abc import Callable

from loadtest.bench import climb

TOTALS = [1000, 2000, 4000, 8000, 12000, 14000, 16000, 18000, 20000]


def server_holding(ceiling: int, delivered_share: float = 1.0,
                   ) -> tuple[Callable[[int], tuple[float | None, str]], list[int]]:
    """A step that holds at rates up to `ceiling`, and the list of the rates offered."""
    offered: list[int] = []

    def attempt(total: int) -> tuple[float | None, str]:
        offered.append(total)
        held = total <= ceiling
        return (total * delivered_share if held else None), f"run-{total}"

    return attempt, offered


def test_after_the_first_miss_two_runs_halve_the_gap_to_the_last_held_step() -> None:
    attempt, offered = server_holding(15_300)
    best, reports = climb(TOTALS, attempt, rounds=2)
    # up to 16,000 (missed), then 15,000 (held), then 15,500 (missed): never 18,000
    assert offered == [1000, 2000, 4000, 8000, 12000, 14000, 16000, 15000, 15500]
    assert best == 15_000
    assert reports == [f"run-{t}" for t in offered]


def test_a_refined_miss_keeps_the_coarse_figure() -> None:
    attempt, offered = server_holding(14_200)
    best, _ = climb(TOTALS, attempt, rounds=2)
    assert offered[-3:] == [16000, 15000, 14500]
    assert best == 14_000


def test_the_figure_is_the_delivered_rate_not_the_offered_one() -> None:
    attempt, _ = server_holding(15_300, delivered_share=0.97)
    best, _ = climb(TOTALS, attempt, rounds=2)
    assert best == int(15_000 * 0.97)


def test_no_refinement_without_a_miss_or_without_a_held_step_or_when_asked_for_none() -> None:
    attempt, offered = server_holding(100_000)  # never misses: nothing to refine
    assert climb(TOTALS, attempt, rounds=2)[0] == 20_000
    assert offered == TOTALS

    attempt, offered = server_holding(500)  # the first step misses: no lower bound
    assert climb(TOTALS, attempt, rounds=2) == (0, ["run-1000"])
    assert offered == [1000]

    attempt, offered = server_holding(15_300)
    assert climb(TOTALS, attempt, rounds=0)[0] == 14_000
    assert offered[-1] == 16000


def test_refinement_stops_when_the_gap_is_one_step() -> None:
    attempt, offered = server_holding(1_100)
    best, _ = climb([1000, 1250, 2000], attempt, rounds=5)
    # 1,250 missed right after 1,000 held: no rate of 250 steps between them
    assert offered == [1000, 1250]
    assert best == 1000
