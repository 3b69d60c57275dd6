"""The CPU probe: its arithmetic on hand-made slices, short probes (in this process and
pinned to a CPU), its command line, and its row in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench import BenchSettings
from loadtest.benchdoc import Step, render
from loadtest.cpu import SLICE_S, main, probe, probe_pinned, summarize


def test_summary_of_hand_made_slices() -> None:
    # twenty slices: eighteen at 400k rounds/s, one slowed to 250k, one at 410k
    rates = [400_000.0] * 18 + [250_000.0, 410_000.0]
    report = summarize(rates, 2.0)
    assert report.slices == 20
    assert report.p50_per_s == 400_000.0
    assert report.p10_per_s == 400_000.0  # the 2nd slowest of 20
    assert report.min_per_s == 250_000.0
    assert report.max_per_s == 410_000.0
    assert report.brief() == ("400,000 rounds/s (slowest tenth of 100-ms slices 400,000, "
                              "slowest 250,000)")
    slow_tenth = summarize([100.0, 200.0] + [1000.0] * 8, 1.0)
    assert slow_tenth.p10_per_s == 100.0 and slow_tenth.p50_per_s == 1000.0


def test_no_slice_is_no_report() -> None:
    with pytest.raises(ValueError, match="no slice"):
        summarize([], 0.0)


def test_a_short_probe_counts_slices_of_a_tenth_of_a_second() -> None:
    report = probe(0.55)
    assert 4 <= report.slices <= 5
    assert 0 < report.min_per_s <= report.p10_per_s <= report.p50_per_s <= report.max_per_s
    assert report.seconds == pytest.approx(0.55, abs=0.15)


def test_too_short_a_probe_is_refused() -> None:
    with pytest.raises(ValueError, match=f"at least {SLICE_S}"):
        probe(0.01)


def test_pinned_probe_runs_on_the_given_cpu() -> None:
    report = probe_pinned((0,), 0.3)
    assert 2 <= report.slices <= 3 and report.min_per_s > 0


def test_cli_json_prints_the_report() -> None:
    done = subprocess.run([sys.executable, "-m", "loadtest.cpu", "--seconds", "0.3",
                           "--cpus", "0", "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    assert {"slices", "p50_per_s", "p10_per_s", "min_per_s", "max_per_s"} <= set(value)
    assert value["p50_per_s"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--seconds", "0"], "seconds must be at least"),
    (["--cpus", "first"], "a CPU list looks like 0 or 0-1,3, not 'first'"),
    (["--cpus", "0,99"], "CPU 99 is not on this machine"),
])
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--seconds", "0.2", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_cpu_step_is_a_figure_row_with_no_target() -> None:
    report = summarize([400_000.0] * 9 + [300_000.0], 1.0)
    step = Step("cpu: the server's core, before anything else",
                "none: the speed behind every figure", report.brief(), None, [], cpu=report)
    machine: dict[str, object] = {"nproc": 2, "cpu_model": "test", "memory_gb": 1.0,
                                  "kernel": "6", "python": "3.11"}
    text = render([step], machine, BenchSettings(), "2026-01-01T00:00:00+00:00", 20_000)
    assert ("| cpu: the server's core, before anything else | none: the speed behind every "
            "figure | 400,000 rounds/s (slowest tenth of 100-ms slices 300,000, slowest "
            "300,000) | – |") in text.splitlines()


@pytest.mark.parametrize(("argv", "message"), [
    (["chat", "--spawn", "--gen-cpus", "0,99"], "--gen-cpus: CPU 99 is not on this machine"),
    (["chat", "--spawn", "--server-cpus", "zero"], "--server-cpus: a CPU list looks like"),
])
def test_the_load_tester_refuses_a_cpu_list_it_cannot_pin_to(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtest.cli import main as loadtest_main

    with pytest.raises(SystemExit) as exit_:
        loadtest_main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_benchmark_refuses_a_cpu_list_before_it_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    from loadtest.bench import main as bench_main

    with pytest.raises(SystemExit) as exit_:
        bench_main(["--quick", "--server-cpus", "99"])
    assert exit_.value.code == 2
    assert "--server-cpus: CPU 99 is not on this machine" in capsys.readouterr().err


def test_the_record_names_the_interpreter_a_distribution_build_from_a_pyenv_one() -> None:
    from loadtest.procstat import machine as this_machine

    found = this_machine()
    assert found["python_path"] == os.path.realpath(sys._base_executable)
    assert Path(str(found["python_path"])).is_file()
    machine: dict[str, object] = {"nproc": 2, "cpu_model": "test", "memory_gb": 1.0,
                                  "kernel": "6", "python": "3.11.7",
                                  "python_path": "/root/.pyenv/versions/3.11.7/bin/python3.11"}
    text = render([], machine, BenchSettings(), "2026-01-01T00:00:00+00:00", 20_000)
    assert ("- Machine: 2 CPUs (test), 1.0 GB memory, Linux 6, Python 3.11.7 "
            "(`/root/.pyenv/versions/3.11.7/bin/python3.11`).") in text.splitlines()
