"""Smoke runs of every scenario, against the baseline relay and a real Confide node.

Small N, a few seconds each; they assert the report's counts (every message
delivered exactly once and in order), never speed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loadtest.cli import main
from loadtest.report import Report
from loadtest.runner import RunConfig, run
from loadtest.target import Node

Exact = Callable[[Report], None]


@pytest.fixture(params=["relay", "confide"])
def node(request: pytest.FixtureRequest) -> Node:
    value: Node = request.getfixturevalue(request.param)
    return value


def config(node: Node, scenario: Any, **kw: Any) -> RunConfig:
    kw.setdefault("urls", (node.url,))
    return RunConfig(scenario=scenario, admin_token=node.admin_token,
                     no_auth=node.kind == "relay", server_pid=node.pid, progress=False,
                     drain_s=10.0, **kw)


def test_chat_with_offline_users_delivers_everything_once(
    node: Node, scale: float, assert_exact: Exact
) -> None:
    report = run(config(node, "chat", users=20, rate=5, duration_s=2.5 * scale, procs=2,
                        offline_share=0.3, offline_for_s=0.5 * scale, typing_share=0.5))
    assert_exact(report)
    assert report.connections == 20
    assert report.latency_ms.count > 0 and report.latency_ms.p99 > 0
    assert report.server_cpu_pct is not None and report.server_rss_mb is not None


def test_chat_over_json_subprotocol(node: Node, scale: float, assert_exact: Exact) -> None:
    assert_exact(run(config(node, "chat", users=6, rate=5, duration_s=1.5 * scale,
                            encoding="json")))


def test_reconnect_storm_resumes_every_connection_and_loses_nothing(
    node: Node, scale: float, assert_exact: Exact
) -> None:
    report = run(config(node, "reconnect-storm", users=40, rate=5, duration_s=3 * scale))
    assert_exact(report)
    assert report.extra["storm_dropped"] == 40
    assert report.extra["storm_resumed"] == 40
    assert report.extra["storm_s"] is not None


def test_multinode_puts_the_two_members_on_different_urls(
    node: Node, scale: float, assert_exact: Exact
) -> None:
    other = node.url.replace("127.0.0.1", "localhost")  # the same node under a second name
    report = run(config(node, "multinode", urls=(node.url, other), users=10, rate=5,
                        duration_s=1.5 * scale))
    assert_exact(report)
    assert report.urls == (node.url, other)


def test_idle_holds_its_connections_and_measures_server_memory(node: Node, scale: float) -> None:
    report = run(config(node, "idle", users=60, duration_s=1.5 * scale))
    assert report.connections == 60
    assert report.errors == 0, report.error_counts
    assert report.server_rss_per_connection_kb is not None


def test_churn_completes_its_setups(node: Node, scale: float) -> None:
    report = run(config(node, "churn", users=20, rate=40, duration_s=2 * scale))
    assert report.errors == 0, report.error_counts
    assert report.setup_ms.count >= 60
    assert report.setup_ms.p50 > 0


def test_live_signals_exactly_on_confide_and_says_not_supported_on_the_relay(
        node: Node, scale: float, assert_exact: Exact) -> None:
    report = run(config(node, "live", users=4, rate=5, duration_s=1.5 * scale))
    if node.kind == "confide":  # book, confirm, join, start, relay signals: all of it
        assert_exact(report)
        assert report.sent > 0
    else:
        assert not report.supported and report.note
        assert report.sent == 0


def test_command_line_writes_json_and_html_reports(
    relay: Node, tmp_path: Path, scale: float
) -> None:
    json_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    code = main(["chat", "--url", relay.url, "--no-auth", "--users", "8", "--rate", "5",
                 "--duration", str(1.5 * scale), "--report", str(json_path),
                 "--html", str(html_path), "--quiet"])
    assert code == 0
    data = json.loads(json_path.read_text())
    for key in ("connections", "sent", "delivered", "lost", "duplicated", "out_of_order",
                "delivered_per_s", "server_cpu_pct", "server_rss_mb", "errors"):
        assert key in data
    assert set(data["latency_ms"]) >= {"p50", "p95", "p99", "max"}
    assert data["sent"] == data["delivered"] > 0
    html = html_path.read_text()
    assert html.count("<svg") >= 4 and "<script" not in html and "http" not in html.split(
        "<body>")[1].replace(relay.url, "").replace("http://www.w3.org/2000/svg", "")


def test_command_line_refuses_a_non_loopback_target() -> None:
    assert main(["chat", "--url", "http://10.1.2.3:8000", "--admin-token", "x", "--quiet"]) == 2
