"""The disk probe: its arithmetic without a disk, short probes on tmp_path, its command line
and its row in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench import BenchSettings
from loadtest.benchdoc import BEGIN, END, Step, render, write_doc
from loadtest.disk import (
    DiskReport,
    delayed_share_pct,
    main,
    probe,
    probe_pinned,
    stalled_share_pct,
    summarize,
)
from loadtest.report import GeneratorHealth, Latency, Report

SMALL_FILE = 1024 * 1024  # the tests preallocate 1 MB, not the store-sized 64 MB

# 995 quick fsyncs and five slow ones (10, 30, 50, 125 and 700 ms) in 10 s of wall time
DURATIONS = [0.0002] * 995 + [0.010, 0.030, 0.050, 0.125, 0.700]
WALL_S = 10.0


def test_delayed_share_is_the_time_past_the_threshold_over_the_wall_time() -> None:
    # > 25 ms: (5 + 25 + 100 + 675) ms of 10 s; > 100 ms: (25 + 600) ms of 10 s
    assert delayed_share_pct(DURATIONS, WALL_S, 25) == pytest.approx(8.05, abs=1e-9)
    assert delayed_share_pct(DURATIONS, WALL_S, 100) == pytest.approx(6.25, abs=1e-9)
    assert delayed_share_pct([0.0002, 0.024], 1.0, 25) == 0.0


def test_stalled_share_counts_only_fsyncs_over_ten_ms() -> None:
    # the 10 ms fsync is not over 10 ms: (30 + 50 + 125 + 700) ms of 10 s
    assert stalled_share_pct(DURATIONS, WALL_S) == pytest.approx(9.05, abs=1e-9)


def test_summary_of_hand_made_durations() -> None:
    report = summarize(DURATIONS, WALL_S, folder="/x", rate=100.0, block=4096)
    assert report == DiskReport(
        folder="/x", seconds=10.0, rate=100.0, block=4096, fsyncs=1000,
        p50_ms=0.2, p99_ms=0.2, p999_ms=125.0, max_ms=700.0,
        stalled_share_pct=9.05, delayed_share_pct={25: 8.05, 100: 6.25},
    )
    assert report.brief() == (
        "p50 0.2 / p99 0.2 / max 700 ms; stalled 9.1 % of the time; "
        "8.1 % of messages would wait > 25 ms, 6.2 % > 100 ms from the disk alone"
    )


def test_no_fsync_is_no_report() -> None:
    with pytest.raises(ValueError, match="at least one fsync"):
        summarize([], 1.0)


def test_half_a_second_on_tmp_path_gives_a_sane_report_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    rate, seconds = 50.0, 0.5
    report = probe(tmp_path, seconds=seconds, rate=rate, block=4096, size=SMALL_FILE)

    slots = int(rate * seconds)
    # slots that fell inside stalls are skipped, never made up in a burst
    swallowed = rate * report.seconds * report.stalled_share_pct / 100
    assert slots - swallowed - 3 <= report.fsyncs <= slots, report.summary()
    assert 0 < report.p50_ms <= report.p99_ms <= report.p999_ms <= report.max_ms
    assert report.seconds >= seconds
    assert 0 <= report.stalled_share_pct <= 100
    assert set(report.delayed_share_pct) == {25, 100}
    assert 0 <= report.delayed_share_pct[100] <= report.delayed_share_pct[25] <= 100
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_removed_when_the_disk_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output"):
        probe(tmp_path, seconds=0.1, rate=100.0, size=SMALL_FILE)
    assert list(tmp_path.iterdir()) == []


def test_pinned_probe_runs_on_the_given_cpu(tmp_path: Path) -> None:
    report = probe_pinned((0,), tmp_path, seconds=0.2, rate=50.0, size=SMALL_FILE)
    assert 1 <= report.fsyncs <= 10
    assert list(tmp_path.iterdir()) == []


def test_cli_json_prints_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.disk", "--folder", str(tmp_path), "--seconds", "0.3",
         "--rate", "50", "--block", "4096", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    assert {"fsyncs", "p50_ms", "p99_ms", "p999_ms", "max_ms", "stalled_share_pct",
            "delayed_share_pct"} <= set(value)
    assert set(value["delayed_share_pct"]) == {"25", "100"}
    assert 1 <= value["fsyncs"] <= 15
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--seconds", "-1"], "seconds must be positive"),
    (["--rate", "0"], "rate must be positive"),
    (["--block", "0"], "block must be between"),
    (["--folder", "/nonexistent/confide-disk"], "is not an existing folder"),
])
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--seconds", "0.1", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def _chat_report() -> Report:
    lat = Latency(p50=4.4, p95=20.0, p99=30.5, max=145.0, mean=6.0, count=100)
    none = Latency(p50=0.0, p95=0.0, p99=0.0, max=0.0, mean=0.0, count=0)
    health = GeneratorHealth(procs=1, cpu_pct_max=50.0, cpu_pct_mean=38.0,
                             loop_lag_p99_ms=1.0, loop_lag_max_ms=2.0,
                             schedule_late_share=0.0, limited=False, notes=())
    return Report(
        scenario="chat", target="confide", urls=("http://127.0.0.1:1",), started_at="",
        duration_s=30.0, users=5000, rooms=2500, rate=1.0, procs=1, encoding="msgpack",
        supported=True, note="", connections=5000, sent=150_000, acked=150_000,
        delivered=150_000, lost=0, duplicated=0, out_of_order=0, unacked=0,
        backlog_delivered=0, latency_ms=lat, ack_latency_ms=lat, setup_ms=none,
        sent_per_s=5000.0, delivered_per_s=5003.0, setups_per_s=0.0, server_cpu_pct=81.0,
        server_cpu_pct_max=94.0, server_rss_mb=112.0, server_rss_start_mb=60.0,
        server_rss_per_connection_kb=None, errors=0, error_counts={}, generator=health,
    )


def _steps() -> list[Step]:
    disk = summarize(DURATIONS, WALL_S, folder="/tmp", rate=450.0, block=16384)
    chat = _chat_report()
    return [
        Step("disk: fdatasync while writing like the store", "none", disk.brief(), None, [],
             disk),
        Step("chat: 5,000 connections at 1 msg/s, p99", "≤ 25 ms, nothing lost",
             "30.5 ms, lost 0, exact", False, [chat]),
    ]


MACHINE: dict[str, object] = {"nproc": 2, "cpu_model": "test", "memory_gb": 1.0,
                              "kernel": "6", "python": "3.11"}


def test_the_disk_step_is_a_figure_row_with_no_target_and_no_run_row() -> None:
    text = render(_steps(), MACHINE, BenchSettings(), "2026-01-01T00:00:00+00:00", 20_000)
    lines = text.splitlines()

    assert ("| disk: fdatasync while writing like the store | none | p50 0.2 / p99 0.2 / max "
            "700 ms; stalled 9.1 % of the time; 8.1 % of messages would wait > 25 ms, 6.2 % "
            "> 100 ms from the disk alone | – |") in lines
    assert "| chat: 5,000 connections at 1 msg/s, p99 | ≤ 25 ms, nothing lost | " \
           "30.5 ms, lost 0, exact | **no** |" in lines
    runs = [line for line in lines if line.startswith("| chat | confide |")]
    assert len(runs) == 1 and "4.4 / 30.5 / 145" in runs[0]
    probes = [line for line in lines if line.startswith("- disk: fdatasync")]
    assert probes == [
        "- disk: fdatasync while writing like the store: 1,000 fdatasyncs of 16,384 B at "
        "450/s in 10.0 s in `/tmp`; p50 0.20 / p99 0.20 / p99.9 125.0 / max 700 ms; "
        "stalled (fsyncs over 10 ms) 9.05 % of the time; messages delayed by the disk alone "
        "> 25 ms 8.05 %, > 100 ms 6.25 %"
    ]
    assert lines[0] == BEGIN and lines[-1] == END


def test_writing_the_doc_keeps_the_prose_outside_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose before\n\n{BEGIN}\nold\n{END}\n\nprose after\n")
    write_doc(doc, _steps(), MACHINE, BenchSettings(), "2026-01-01T00:00:00+00:00", 20_000)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nprose before\n\n" + BEGIN)
    assert text.endswith(END + "\n\nprose after\n")
    assert "old" not in text
    assert "8.1 % of messages would wait > 25 ms" in text
