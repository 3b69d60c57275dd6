"""Fixtures for the smoke runs: a baseline relay and a real Confide node, on free ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from loadtest.report import Report
from loadtest.target import Node, TargetError, spawn_confide, spawn_relay

# one timing unit, scaled for slow machines (CONFIDE_TEST_SCALE=2 doubles every duration)
SCALE = float(os.environ.get("CONFIDE_TEST_SCALE", "1"))


@pytest.fixture(scope="module")
def relay() -> Iterator[Node]:
    with spawn_relay() as node:
        yield node


@pytest.fixture(scope="module")
def confide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    log = tmp_path_factory.mktemp("confide") / "server.log"
    try:
        with spawn_confide(rate_limit=100_000, extra_args=("--log-level", "warning"),
                           log=log) as node:
            yield node
    except TargetError as exc:
        pytest.fail(f"confide serve did not start: {exc}\n{log.read_text()[-2000:]}")


@pytest.fixture
def scale() -> float:
    return SCALE


def _assert_exact(report: Report) -> None:
    """What a user of the load tester checks: every message, exactly once, in order."""
    assert report.supported, report.note
    assert report.sent > 0, report.summary()
    assert report.sent == report.delivered, report.summary()
    assert report.lost == 0, report.summary()
    assert report.duplicated == 0, report.summary()
    assert report.out_of_order == 0, report.summary()
    assert report.unacked == 0, report.summary()


@pytest.fixture
def assert_exact() -> Callable[[Report], None]:
    return _assert_exact
