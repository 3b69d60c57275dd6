"""`python -m loadtest.instructions`: a real node under valgrind's callgrind, a real load,
and instructions per delivered message as the difference of a short and a long run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.instructions import main, measure, thread_totals


def test_a_message_costs_the_node_instructions_counted_per_thread() -> None:
    report = measure(users=6, rate=2.0, seconds=(2.0, 4.0))
    assert report.short.exact and report.long.exact
    assert report.long.delivered > report.short.delivered > 0
    # A message (decoded, checked, stored, framed for the other member, acknowledged)
    # takes the interpreter tens of thousands of instructions at the least, and at this
    # load nowhere near a hundred million.
    assert 10_000 < report.per_message["loop"] < 100_000_000
    assert report.per_message["all"] == pytest.approx(
        report.per_message["loop"] + report.per_message["others"])
    assert 1 in report.long.threads and len(report.long.threads) >= 3  # loop, writer, ...
    assert "loop (thread 1)" in report.summary()
    # counts compare only under one interpreter, so the report names the one it ran on
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    assert report.python == f"{platform.python_version()} ({interpreter})"
    assert f"Python {report.python}" in report.summary()


def test_counts_are_read_per_thread_and_summed_over_dumps(tmp_path: Path) -> None:
    (tmp_path / "cg-01").write_text("events: Ir\nsummary: 0\ntotals: 100\n")
    (tmp_path / "cg.1-01").write_text("events: Ir\ntotals: 50\n")
    (tmp_path / "cg-03").write_text("totals: 7\n")
    (tmp_path / "cg-xx").write_text("totals: 9\n")  # not a thread's file
    (tmp_path / "node.log").write_text("totals: 1000\n")
    assert thread_totals(tmp_path, "cg") == {1: 150, 3: 7}


@pytest.mark.parametrize("args, says", [
    (["--users", "3"], "even number"),
    (["--seconds", "5", "2"], "the first the shorter"),
    (["--rate", "0"], "rate must be positive"),
])
def test_bad_settings_are_refused_before_anything_runs(
        args: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_without_valgrind_it_says_what_to_install(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # an empty folder: no valgrind on the PATH
    done = subprocess.run([sys.executable, "-m", "loadtest.instructions", "--seconds", "1", "2"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "`valgrind` was not found: install valgrind" in done.stderr
