"""The command line: ``confide-loadtest SCENARIO`` (and ``python -m loadtest``).

Examples::

    confide-loadtest chat --spawn --users 1000 --rate 1 --duration 20 --report r.json
    confide-loadtest chat --url http://127.0.0.1:8000 --admin-token $T --users 200
    confide-loadtest reconnect-storm --spawn-relay --users 5000 --procs 2
    confide-loadtest multinode --url http://127.0.0.1:8001 --url http://127.0.0.1:8002 \\
        --admin-token $T --users 400

Scenarios:
  chat             N users in two-person rooms, each sending --rate msg/s with think-time
                   jitter, typing and read receipts; --offline-share of them go away for
                   --offline-for seconds and resume with since
  idle             N connections that only keep alive (memory per connection)
  churn            connect, hello, sub, close at --rate per second in all (setup cost)
  reconnect-storm  chat, and every connection drops at once half way and resumes with since
  live             pairs join live sessions and exchange signaling (if the server has them)
  multinode        chat with each room's two members on different --url nodes

Exit status: 0 when every message was delivered exactly once and in order, 1 when
not, 2 for a usage or target error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args

from loadtest.html import write_html
from loadtest.runner import RunConfig, cpu_flag_error, run
from loadtest.target import TargetError
from loadtest.worker import Scenario


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="confide-loadtest", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", choices=get_args(Scenario))
    where = p.add_argument_group("target (loopback only)")
    where.add_argument("--url", action="append", default=[],
                       help="a node's base URL, e.g. http://127.0.0.1:8000 (repeat for multinode)")
    where.add_argument("--admin-token", default=os.environ.get("CONFIDE_ADMIN_TOKEN"),
                       help="an admin token for provisioning rooms and tokens")
    where.add_argument("--spawn", action="store_true",
                       help="start `confide serve` on a free port in a temp dir, stop it after")
    where.add_argument("--spawn-relay", action="store_true", help="start the baseline relay")
    where.add_argument("--no-auth", action="store_true",
                       help="the --url is a baseline relay: no provisioning, token = user id")
    where.add_argument("--server-pid", type=int, help="the server's pid, to sample CPU and RSS")
    where.add_argument("--server-cpus", default="", help="taskset CPU list for a spawned node")
    where.add_argument("--server-arg", action="append", default=[],
                       help="an extra argument for `confide serve` (repeatable)")
    where.add_argument("--server-log", type=Path, help="append a spawned node's output here")
    where.add_argument("--rate-limit", type=int, default=1_000_000,
                       help="per-connection rate limit for a spawned node (0: its default)")
    load = p.add_argument_group("load")
    load.add_argument("--users", type=int, default=100, help="simulated users (connections)")
    load.add_argument("--rate", type=float, default=1.0,
                      help="messages/s per user; for churn, connections/s in all")
    load.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    load.add_argument("--procs", type=int, default=1, help="generator processes")
    load.add_argument("--gen-cpus", default="", help="pin generator processes to these CPUs")
    load.add_argument("--encoding", choices=["msgpack", "json"], default="msgpack")
    load.add_argument("--jitter", type=float, default=0.5, help="think-time jitter (share)")
    load.add_argument("--typing-share", type=float, default=0.2)
    load.add_argument("--read-every", type=float, default=1.0, help="seconds between reads")
    load.add_argument("--body-bytes", type=int, default=0, help="extra bytes per message")
    load.add_argument("--offline-share", type=float, default=0.0)
    load.add_argument("--offline-for", type=float, default=2.0)
    load.add_argument("--storm-at", type=float, default=0.0, help="seconds in (0: half way)")
    load.add_argument("--drain", type=float, default=10.0,
                      help="seconds to wait for outstanding acks and deliveries")
    load.add_argument("--open-concurrency", type=int, default=500)
    load.add_argument("--seed", type=int, default=1)
    out = p.add_argument_group("output")
    out.add_argument("--report", type=Path, help="write the JSON report here")
    out.add_argument("--html", type=Path, help="write the HTML report here")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def config_from(args: argparse.Namespace) -> RunConfig:
    spawn = "confide" if args.spawn else "relay" if args.spawn_relay else ""
    return RunConfig(
        scenario=args.scenario, urls=tuple(args.url), admin_token=args.admin_token,
        spawn=spawn, no_auth=args.no_auth, users=args.users, rate=args.rate,
        duration_s=args.duration, procs=args.procs, encoding=args.encoding,
        jitter=args.jitter, typing_share=args.typing_share, read_every_s=args.read_every,
        padding=args.body_bytes, offline_share=args.offline_share,
        offline_for_s=args.offline_for, storm_at_s=args.storm_at, drain_s=args.drain,
        open_concurrency=args.open_concurrency, server_pid=args.server_pid,
        server_cpus=args.server_cpus, gen_cpus=args.gen_cpus, rate_limit=args.rate_limit,
        server_args=tuple(args.server_arg), server_log=args.server_log,
        progress=not args.quiet, seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.spawn and args.spawn_relay:
        parser().error("--spawn and --spawn-relay exclude each other")
    bad_cpus = cpu_flag_error(server_cpus=args.server_cpus, gen_cpus=args.gen_cpus)
    if bad_cpus:
        parser().error(bad_cpus)
    try:
        report = run(config_from(args))
    except TargetError as exc:
        print(f"confide-loadtest: {exc}", file=sys.stderr)
        return 2
    if args.report:
        report.write_json(args.report)
    if args.html:
        write_html(report, args.html)
    print(report.summary())
    if not report.supported:
        return 0
    return 0 if report.exact else 1


if __name__ == "__main__":
    sys.exit(main())
