"""The HTML report: one self-contained page of tables and inline SVG plots, drawn here in Python.

No JavaScript, no CDN, no fonts to fetch: the page opens in any browser with
nothing else installed. Plots: latency percentiles (p50, p95, p99) over time, a
latency histogram (log scale), connections over time, throughput (sent and
delivered per second) over time, and the server's CPU and memory over time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

from loadtest.report import Report

W, H = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 40
COLORS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd")

Series = tuple[str, Sequence[tuple[float, float]]]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _frame(title: str, xt: list[float], yt: list[float], sx: object, sy: object,
           x_label: str, y_label: str) -> list[str]:
    assert callable(sx) and callable(sy)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
           'fill="none" stroke="#999"/>']
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in xt:
        x = sx(t)
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">'
                   f'{escape(_fmt(t))}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{H / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {H / 2})">{escape(y_label)}</text>')
    return out


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str) -> str:
    """An SVG line chart of one or more series of (x, y) points."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return f"<p>{escape(title)}: no data</p>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y1 = max(max(p[1] for p in points), 1e-9) * 1.05
    xt, yt = nice_ticks(x0, x1), nice_ticks(0.0, y1)
    x0, x1 = min(x0, xt[0]), max(x1, xt[-1])
    y1 = max(y1, yt[-1])

    def sx(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return H - BOTTOM - y / (y1 or 1) * (H - TOP - BOTTOM)

    out = _frame(title, xt, yt, sx, sy, x_label, y_label)
    for k, (name, pts) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        lx = LEFT + 8 + 90 * k
        out.append(f'<rect x="{lx}" y="{TOP + 6}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{TOP + 11}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def histogram_chart(title: str, buckets: Sequence[tuple[float, int]]) -> str:
    """An SVG histogram of latency buckets on a log-scale x axis (ms)."""
    data = [(max(v, 0.001), c) for v, c in buckets if c > 0]
    if not data:
        return f"<p>{escape(title)}: no data</p>"
    lx0 = math.floor(math.log10(min(v for v, _ in data)))
    lx1 = math.ceil(math.log10(max(v for v, _ in data)) + 1e-9)
    lx1 = max(lx1, lx0 + 1)
    # regroup into 20 bins per decade so the bars are readable
    bins: dict[int, int] = {}
    for v, c in data:
        b = int((math.log10(v) - lx0) * 20)
        bins[b] = bins.get(b, 0) + c
    top = max(bins.values()) * 1.05
    yt = nice_ticks(0.0, top)
    top = max(top, yt[-1])

    def sx(lx: float) -> float:
        return LEFT + (lx - lx0) / (lx1 - lx0) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return H - BOTTOM - y / top * (H - TOP - BOTTOM)

    xt = [float(d) for d in range(lx0, lx1 + 1)]
    out = _frame(title, [], yt, sx, sy, "latency (ms, log scale)", "messages")
    for d in xt:
        out.append(f'<text x="{sx(d):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">'
                   f'{_fmt(10 ** d)}</text>')
    width = (W - LEFT - RIGHT) / ((lx1 - lx0) * 20)
    for b, c in sorted(bins.items()):
        x = sx(lx0 + b / 20)
        out.append(f'<rect x="{x:.1f}" y="{sy(c):.1f}" width="{max(width - 1, 1):.1f}" '
                   f'height="{H - BOTTOM - sy(c):.1f}" fill="{COLORS[0]}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _table(rows: Sequence[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def render(report: Report) -> str:
    r = report
    tl = r.timeline
    lat = r.latency_ms
    rows: list[tuple[str, object]] = [
        ("scenario", r.scenario), ("target", f"{r.target} {' '.join(r.urls)}"),
        ("started", r.started_at), ("duration (s)", r.duration_s), ("connections", r.connections),
        ("sent", r.sent), ("delivered", r.delivered), ("lost", r.lost),
        ("duplicated", r.duplicated), ("out of order", r.out_of_order), ("unacked", r.unacked),
        ("exactly once, in order", "yes" if r.exact else "NO"),
        ("delivered/s", r.delivered_per_s),
        ("latency ms p50 / p95 / p99 / max", f"{lat.p50} / {lat.p95} / {lat.p99} / {lat.max}"),
        ("server CPU % (mean / max)", f"{r.server_cpu_pct} / {r.server_cpu_pct_max}"),
        ("server RSS MB (max)", r.server_rss_mb), ("errors", r.errors),
        ("generator limited", "; ".join(r.generator.notes) or "no"),
    ]
    if not r.supported:
        rows.insert(1, ("not supported by server", r.note))
    rows += [(k, v) for k, v in r.extra.items()]
    rows += [(f"error: {k}", v) for k, v in sorted(r.error_counts.items())]
    charts = [
        line_chart("Latency percentiles over time", [
            ("p50", [(p.t, p.p50) for p in tl]), ("p95", [(p.t, p.p95) for p in tl]),
            ("p99", [(p.t, p.p99) for p in tl])], "time (s)", "ms"),
        histogram_chart("Latency histogram (send → other member)", r.latency_histogram),
        line_chart("Connections over time", [("connections", [(p.t, p.connections) for p in tl])],
                   "time (s)", "connections"),
        line_chart("Throughput over time", [
            ("sent/s", [(p.t, p.sent_per_s) for p in tl]),
            ("delivered/s", [(p.t, p.delivered_per_s) for p in tl]),
            ("setups/s", [(p.t, p.setups_per_s) for p in tl])], "time (s)", "per second"),
        line_chart("Server CPU (% of a core) and busiest generator process", [
            ("server", [(p.t, p.server_cpu_pct) for p in tl if p.server_cpu_pct is not None]),
            ("generator", [(p.t, p.generator_cpu_pct) for p in tl
                           if p.generator_cpu_pct is not None])], "time (s)", "%"),
        line_chart("Server memory (RSS)", [
            ("RSS MB", [(p.t, p.server_rss_mb) for p in tl if p.server_rss_mb is not None])],
            "time (s)", "MB"),
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left}th{background:#f4f4f4}.charts{display:flex;flex-wrap:wrap;gap:12px}")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>Confide load test: {escape(r.scenario)}</title><style>{style}</style></head>"
        f"<body><h1>Confide load test: {escape(r.scenario)}</h1>{_table(rows)}"
        f"<div class=\"charts\">{''.join(charts)}</div></body></html>\n"
    )


def write_html(report: Report, path: Path) -> None:
    path.write_text(render(report))
