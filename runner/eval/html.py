"""``corral eval report EVAL --html FILE``: the eval's report as one self-contained HTML page.

The page shows the report of ``runner.eval.report`` (the same dict ``--json`` prints, so the
two cannot disagree): the summary figures, three charts, the per-task table, the flaky and
broken tasks and the failure domains. The charts are inline SVG drawn here, in a few lines
each: a pass@k and pass^k curve (k = 1..trials), cost against success (a point per task: mean
cost of a trial, share of its trials resolved) and time per phase (a stacked bar per task: the
mean seconds of its trials in set-up, agent, gates and the runner's own work). A charting
library would bring JavaScript or a file to load, and the page must work offline under a CSP
that loads nothing; three charts of a few dozen marks do not need one.

The page reuses the run report's template (``runner.review.report_template.html``: inline CSS,
a Content-Security-Policy that forbids every load, tables that stack on a narrow page) with the
same escaping: run text goes through ``runner.review.report_html._t`` in HTML and through
``html.escape(plain(...))`` inside SVG, so markup in a task id, a model name or a failure
reason is shown as text. The only script marks ``body[data-js=ready]``.

Time per phase comes from each trial's event log (``trial_phases``): every instant of a run,
from its first event to its last, is counted once, in the first of these that covers it: an
agent window (``window_start`` to ``window_end``), a gate (``gate_start`` to ``gate_end``;
the baseline gates run alongside the first attempt), set-up (the first event to the first
``attempt_start``: worktree, environment image, set-up steps); what is left is the runner's
own work (sandboxes, harvest, judging).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime
from html import escape
from importlib import resources
from itertools import pairwise
from string import Template
from typing import Any

from runner.review.report_html import _stacked, _t
from runner.review.text import plain
from runner.store.chain import Event
from runner.store.runs import RunStore

PHASES = ("set-up", "agent", "gates", "runner")
_COLORS = {"set-up": "#8c959f", "agent": "#0969da", "gates": "#1a7f37", "runner": "#d4a72c"}
_SCRIPT = "document.body.dataset.js = 'ready';"
_STYLE = (
    "<style>svg.chart { display: block; width: 100%; max-width: 720px; height: auto;"
    " margin: .5em 0; } svg.chart text { font: 12px system-ui, sans-serif; fill: #1b1f24; }"
    " svg.chart .axis { stroke: #57606a; } svg.chart .grid { stroke: #eaeef2; }"
    " .legend span { display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 1em;"
    " vertical-align: middle; } .figures { display: flex; flex-wrap: wrap; gap: .6em; }"
    " .figure { border: 1px solid #d0d7de; border-radius: 4px; padding: .4em .8em; }"
    " .figure b { display: block; font-size: 1.3em; }</style>"
)


def eval_page(store: RunStore, rep: dict[str, Any]) -> str:
    """The page for the report ``rep``, with each trial's phases read from ``store``."""
    phases = {
        t["run_id"]: trial_phases(store.events(t["run_id"]))
        for t in rep["trials"]
        if t["run_id"] and t["role"] == "agent"
    }
    return render_eval_html(rep, phases)


def trial_phases(events: Sequence[Event]) -> dict[str, float]:
    """Seconds of a run in each of ``PHASES``, each instant counted once (see the module)."""
    if not events:
        return dict.fromkeys(PHASES, 0.0)
    times = [_ts(e) for e in events]
    first, last = times[0], max(times)
    spans: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES[:3]}
    start_setup = next((t for e, t in zip(events, times, strict=True)
                        if e.type == "attempt_start"), last)  # fmt: skip
    spans["set-up"].append((first, start_setup))
    open_: dict[tuple[str, str], float] = {}
    for e, t in zip(events, times, strict=True):
        if e.type == "window_start":
            open_[("agent", "")] = t
        elif e.type == "window_end" and ("agent", "") in open_:
            spans["agent"].append((open_.pop(("agent", "")), t))
        elif e.type == "gate_start":
            open_[("gates", f"{e.data.get('gate')}@{e.data.get('label')}")] = t
        elif e.type == "gate_end":
            key = ("gates", f"{e.data.get('gate')}@{e.data.get('label')}")
            if key in open_:
                spans["gates"].append((open_.pop(key), t))
    for (phase, _), t in open_.items():  # a run stopped mid-phase: up to its last event
        spans[phase].append((t, last))
    cuts = sorted({first, last, *(x for s in spans.values() for span in s for x in span)})
    out = dict.fromkeys(PHASES, 0.0)
    for a, b in pairwise(cuts):
        mid = (a + b) / 2
        phase = next((p for p in ("agent", "gates", "set-up")
                      if any(s <= mid <= e for s, e in spans[p])), "runner")  # fmt: skip
        out[phase] += b - a
    return {p: round(v, 3) for p, v in out.items()}


def _ts(e: Event) -> float:
    return datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp()


def render_eval_html(rep: dict[str, Any], phases: dict[str, dict[str, float]]) -> str:
    """The whole page for the report ``rep``; ``phases``: ``trial_phases`` per run id."""
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    body = "\n".join([
        _STYLE, _summary(rep), _pass_curve(rep), _cost_success(rep), _phase_bars(rep, phases),
        _tasks(rep), _lists(rep),
    ])  # fmt: skip
    template = Template(
        resources.files("runner.review").joinpath("report_template.html").read_text()
    )
    return template.substitute(
        title=escape(plain(f"corral eval report {rep['eval_id']}")),
        body=body,
        script=_SCRIPT,
        script_hash=f"sha256-{digest}",
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _summary(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    wall, steps = s["wall_seconds"], s["steps"]
    figures = [
        ("pass@1", _rate(s["pass_at_1"])),
        ("resolved", f"{s['resolved']} / {s['trials_ended']} trials"),
        ("tasks resolved", f"{s['tasks_resolved']} / {s['tasks_counted']}"),
        ("cost", f"${s['cost_usd']:.4f}"),
        ("tokens", f"{s['tokens']:,}"),
        ("wall s / trial", "-" if wall["mean"] is None else f"{wall['mean']:.1f} (p90 {wall['p90']:.1f})"),
        ("steps / trial", "-" if steps["mean"] is None else f"{steps['mean']:.1f}"),
    ]  # fmt: skip
    cards = "".join(f'<div class="figure">{k}<b>{v}</b></div>' for k, v in figures)
    model = f" &middot; model {_t(rep['model'])}" if rep.get("model") else ""
    return (
        f"<h1>eval {_t(rep['eval_id'])}</h1>"
        f'<p class="muted">agent {_t(rep["agent"])}{model} &middot; policy'
        f" {_t(rep.get('policy') or '-')} &middot; {s['tasks']} tasks ({s['tasks_counted']}"
        f" counted), {s['trials_per_task']} trial(s) each; {s['trials_ended']} of"
        f" {s['trials']} trials ended, {s['trials_unfinished']} unfinished</p>"
        f'<div class="figures" id="summary">{cards}</div>'
    )


# ------------------------------------------------------------------ charts

W, H, L, R, T, B = 640, 260, 56, 16, 14, 40
"""Chart size and margins (left, right, top, bottom) in SVG units; the SVG scales to its box."""


def _axes(x_label: str, y_label: str, y_ticks: Sequence[tuple[float, str]]) -> str:
    parts = [f'<line class="axis" x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}"/>',
             f'<line class="axis" x1="{L}" y1="{T}" x2="{L}" y2="{H - B}"/>']  # fmt: skip
    for frac, label in y_ticks:
        y = _y(frac)
        parts.append(f'<line class="grid" x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}"/>'
                     f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')  # fmt: skip
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">{x_label}</text>')
    parts.append(f'<text x="14" y="{(T + H - B) / 2}" text-anchor="middle"'
                 f' transform="rotate(-90 14 {(T + H - B) / 2})">{y_label}</text>')  # fmt: skip
    return "".join(parts)


def _x(frac: float) -> float:
    return L + frac * (W - L - R)


def _y(frac: float) -> float:
    return H - B - frac * (H - T - B)


def _svg(chart_id: str, label: str, inner: str, height: int = H) -> str:
    return (f'<svg class="chart" id="{chart_id}" viewBox="0 0 {W} {height}" role="img"'
            f' aria-label="{escape(label)}">{inner}</svg>')  # fmt: skip


_RATE_TICKS = [(f / 4, f"{f / 4:.2f}") for f in range(5)]


def _pass_curve(rep: dict[str, Any]) -> str:
    s, k_max = rep["summary"], rep["summary"]["trials_per_task"]
    head = "<h2>pass@k and pass^k</h2>"
    if not s["pass_at_k"]:
        return head + '<p class="muted" id="pass-at-k">No task has an ended trial yet.</p>'
    parts = [_axes("k (trials)", "share of tasks", _RATE_TICKS)]
    for k in range(1, k_max + 1):
        parts.append(
            f'<text x="{_xk(k, k_max):.1f}" y="{H - B + 16}" text-anchor="middle">{k}</text>'
        )
    for key, color, name in (
        ("pass_at_k", "#0969da", "pass@k"),
        ("pass_hat_k", "#b3261e", "pass^k"),
    ):
        pts = [(int(k), v["value"], v["tasks"]) for k, v in s[key].items()]
        line = " ".join(f"{_xk(k, k_max):.1f},{_y(v):.1f}" for k, v, _ in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{line}"/>')
        parts += [
            f'<circle class="point {key}" data-k="{k}" data-value="{v}" cx="{_xk(k, k_max):.1f}"'
            f' cy="{_y(v):.1f}" r="4" fill="{color}"><title>{name} k={k}: {v:.3f}'
            f" ({n} tasks)</title></circle>"
            for k, v, n in pts
        ]
    legend = ('<p class="legend"><span style="background:#0969da"></span>pass@k (at least one of'
              ' k trials resolves)<span style="background:#b3261e"></span>pass^k (all k'
              " resolve)</p>")  # fmt: skip
    return head + _svg("pass-at-k", "pass@k and pass^k against k", "".join(parts)) + legend


def _xk(k: int, k_max: int) -> float:
    return _x(0.5 if k_max == 1 else (k - 1) / (k_max - 1))


def _cost_success(rep: dict[str, Any]) -> str:
    head = "<h2>Cost and success per task</h2>"
    rows = [r for r in rep["tasks"] if r["n"] and not r["broken"]]
    if not rows:
        return head + '<p class="muted" id="cost-success">No task has an ended trial yet.</p>'
    costs = [r["cost_usd"] / max(sum(1 for x in r["runs"] if x), 1) for r in rows]
    top = max(costs) or 1.0
    parts = [_axes("mean cost of a trial (USD)", "trials resolved", _RATE_TICKS)]
    for i in range(5):
        parts.append(f'<text x="{_x(i / 4):.1f}" y="{H - B + 16}" text-anchor="middle">'
                     f"{top * i / 4:.4g}</text>")  # fmt: skip
    for r, cost in zip(rows, costs, strict=True):
        name = escape(plain(r["task"]))
        color = "#bf8700" if r["flaky"] else "#0969da"
        parts.append(
            f'<circle class="point" data-task="{name}" data-rate="{r["pass_at_1"]}"'
            f' cx="{_x(cost / top):.1f}" cy="{_y(r["pass_at_1"]):.1f}" r="5" fill="{color}"'
            f' fill-opacity=".75"><title>{name}: {r["resolved"]}/{r["n"]} resolved,'
            f" ${cost:.4f} a trial</title></circle>"
        )
    legend = ('<p class="legend"><span style="background:#0969da"></span>a task'
              '<span style="background:#bf8700"></span>a flaky task</p>')  # fmt: skip
    return head + _svg("cost-success", "cost against success, a point per task",
                       "".join(parts)) + legend  # fmt: skip


def _phase_bars(rep: dict[str, Any], phases: dict[str, dict[str, float]]) -> str:
    head = "<h2>Time per phase</h2>"
    bars = []
    for r in rep["tasks"]:
        runs = [phases[run] for run in r["runs"] if run in phases]
        if runs:
            bars.append((r["task"], {p: sum(x[p] for x in runs) / len(runs) for p in PHASES}))
    if not bars:
        return head + '<p class="muted" id="phases">No trial has started yet.</p>'
    top = max(sum(b.values()) for _, b in bars) or 1.0
    row, left = 22, 150
    height = T + row * len(bars) + B
    parts = [f'<line class="axis" x1="{left}" y1="{T}" x2="{left}" y2="{height - B}"/>']
    for i in range(5):
        x = left + i / 4 * (W - left - R)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{height - B}"/>'
                     f'<text x="{x:.1f}" y="{height - B + 16}" text-anchor="middle">'
                     f"{top * i / 4:.3g}</text>")  # fmt: skip
    parts.append(f'<text x="{(left + W - R) / 2}" y="{height - 6}" text-anchor="middle">'
                 "mean seconds of a trial</text>")  # fmt: skip
    for n, (task, secs) in enumerate(bars):
        y = T + n * row + 3
        name = escape(plain(task))
        short = name if len(task) <= 20 else escape(plain(task[:19])) + "&hellip;"
        segs, x = [], float(left)
        for p in PHASES:
            w = secs[p] / top * (W - left - R)
            segs.append(f'<rect class="seg" data-phase="{p}" x="{x:.1f}" y="{y}" width="{w:.1f}"'
                        f' height="{row - 6}" fill="{_COLORS[p]}"><title>{name}: {p}'
                        f" {secs[p]:.2f}s</title></rect>")  # fmt: skip
            x += w
        parts.append(f'<g class="bar" data-task="{name}"><text x="{left - 6}" y="{y + row - 10}"'
                     f' text-anchor="end">{short}<title>{name}</title></text>{"".join(segs)}</g>')  # fmt: skip
    legend = '<p class="legend">' + "".join(
        f'<span style="background:{_COLORS[p]}"></span>{p}' for p in PHASES
    ) + " (each second counted once: agent windows, then gates, then set-up)</p>"  # fmt: skip
    return head + _svg("phases", "seconds per phase, a bar per task", "".join(parts),
                       height) + legend  # fmt: skip


# ------------------------------------------------------------------ tables


def _tasks(rep: dict[str, Any]) -> str:
    head = ("task", "resolved", "pass@1", "outcomes", "gold", "cost", "wall s", "note")
    rows = [
        (
            f"<code>{_t(r['task'])}</code>", f"{r['resolved']}/{r['n']}", _rate(r["pass_at_1"]),
            _t(", ".join(r["outcomes"]) or "-"), _t(r["gold"] or "-"), f"${r['cost_usd']:.4f}",
            f"{r['wall_seconds']:.1f}",
            "broken" if r["broken"] else ("flaky" if r["flaky"] else ""),
        )
        for r in rep["tasks"]
    ]  # fmt: skip
    return "<h2>Tasks</h2>" + _stacked("tasks", head, rows)


def _lists(rep: dict[str, Any]) -> str:
    flaky = "".join(f"<li><code>{_t(t)}</code></li>" for t in rep["flaky_tasks"])
    broken = "".join(f"<li><code>{_t(t)}</code></li>" for t in rep["broken_tasks"])
    domains = "".join(f"<tr><td>{_t(k)}</td><td>{v}</td></tr>" for k, v in rep["failure_domains"].items())  # fmt: skip
    return (
        "<h2>Flaky tasks (outcomes differ across trials)</h2>"
        + (f'<ul id="flaky">{flaky}</ul>' if flaky else '<p class="muted" id="flaky">None.</p>')
        + "<h2>Broken tasks (gold fails; not counted)</h2>"
        + (f'<ul id="broken">{broken}</ul>' if broken else '<p class="muted" id="broken">None.</p>')
        + "<h2>Failure domains (trials not resolved)</h2>"
        + (f'<table id="domains"><tr><th>domain</th><th>trials</th></tr>{domains}</table>'
           if domains else '<p class="muted" id="domains">None.</p>')
    )  # fmt: skip
