"""``corral report --html``: the review as one self-contained HTML file.

The page is ``report_template.html`` (package data: inline CSS) filled with
``string.Template``; the only script is ``_SCRIPT`` below (the unified /
side-by-side toggle), allowed by its SHA-256 in a strict Content-Security-Policy
that also forbids every network load. Everything that comes from the run
(diff, bug title, commands, logs) passes through ``html.escape`` in ``_t``, and
control or bidi characters are shown as ``<U+XXXX>`` badges, so a ``<script>``
an agent wrote into a file is shown as text and never runs, even without the CSP.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from importlib import resources
from string import Template

from runner.review.diffview import DiffLine, FileDiff
from runner.review.evidence import FINDINGS_NOTE, GateRow, Review, judging_rows
from runner.review.text import number, plain, visible

_SCRIPT = (
    "document.querySelectorAll('button[data-view]').forEach(function (b) {"
    " b.addEventListener('click', function () {"
    " document.body.classList.toggle('split', b.dataset.view === 'split'); }); });"
    " if (location.hash === '#split') { document.body.classList.add('split'); }"
    " document.body.dataset.js = 'ready';"
)
"""The page's only script: the diff view toggle (``#split`` in the address opens side by side);
it marks ``body[data-js=ready]`` so a test can see that this script, and only it, ran."""


def _t(text: object) -> str:
    """Run text as HTML: escaped, hidden characters as visible badges."""
    return "".join(
        f'<span class="esc">{escape(part)}</span>' if hidden else escape(part)
        for part, hidden in visible(str(text))
    )


def render_html(rv: Review) -> str:
    """The whole page for ``rv``."""
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    parts = [_findings(rv), _header(rv), _diff(rv), _gates(rv), _attempts(rv), _trajectory(rv)]
    body = "\n".join([*parts, _timeline(rv)])
    template = Template(
        resources.files("runner.review").joinpath("report_template.html").read_text()
    )
    return template.substitute(
        title=escape(plain(f"corral review {rv.run_id}: {rv.bug_title}")),  # text only: no badge
        body=body,
        script=_SCRIPT,
        script_hash=f"sha256-{digest}",
    )


def _row(*cells: str, head: bool = False) -> str:
    tag = "th" if head else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _stacked(table_id: str, head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """A table of run facts that fits its page: every cell may break anywhere (a long test id
    too), and on a narrow page (``@media`` in the template) each row stacks into ``label value``
    lines, each cell labelled by its column (``data-label``)."""
    body = "".join(
        "<tr>" + "".join(f'<td data-label="{h}">{c}</td>' for h, c in zip(head, r, strict=True))
        + "</tr>"
        for r in rows
    )  # fmt: skip
    return (
        f'<table id="{table_id}" class="stacked"><tr class="head">'
        + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{body}</table>"
    )  # fmt: skip


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return '<span class="muted">-</span>'
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _findings(rv: Review) -> str:
    """The tamper findings, before anything else; "" when there are none."""
    if not rv.findings:
        return ""
    items = "".join(
        f"<li>attempt {f.attempt}: <code>{_t(f.finding)}</code></li>" for f in rv.findings
    )
    return (
        f'<section id="findings"><h2 class="fail">Findings ({len(rv.findings)})</h2>'
        f"<p>{_t(FINDINGS_NOTE)}</p><ul>{items}</ul></section>"
    )


def _header(rv: Review) -> str:
    when = datetime.fromtimestamp(rv.created, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    domain = f" ({_t(rv.failure_domain)})" if rv.failure_domain else ""
    rows = [
        ("status", f'<span class="status-{_t(rv.status)}">{_t(rv.status)}</span>{domain}'),
        ("reason", _t(rv.reason)),
        ("repo", f"<code>{_t(rv.repo)}</code> @ <code>{_t(rv.base[:12])}</code>"),
        ("agent", _t(rv.agent) + (f" &middot; model {_t(rv.model)}" if rv.model else "")),
        ("policy", _t(" < ".join(rv.policy_sources) or "-")),
        ("verification", _t(rv.verification)),
        *((_t(name), _t(text)) for name, text in judging_rows(rv)),
        ("started", when),
        ("duration", f"{rv.duration_s:.1f}s"),
        ("tokens / cost", f"{rv.tokens} / ${rv.cost_usd:.4f}"),
        ("event log", "hash chain intact" if rv.chain_ok else
         f'<span class="fail">BROKEN: {_t(rv.chain_problem)}</span>'),
    ]  # fmt: skip
    budgets = "".join(
        _row(_t(k), number(b["used"]), number(b["limit"])) for k, b in rv.budgets.items()
    )
    return (
        f"<h1>{_t(rv.bug_title)}</h1><p class=\"muted\">run <code>{_t(rv.run_id)}</code></p>"
        '<table class="grid" id="header">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table><h2>Budgets</h2><table id=\"budgets\">"
        + _row("budget", "used", "limit", head=True) + budgets + "</table>"
    )  # fmt: skip


def _diff(rv: Review) -> str:
    if not rv.files:
        return '<h2>Diff</h2><p class="muted" id="diff">No attempt changed anything.</p>'
    title = (
        "Candidate diff"
        if rv.diff_source == "candidate.diff"
        else (f"Diff of the last attempt ({_t(rv.diff_source)}; not a candidate)")
    )
    parts = [
        f'<h2>{title}</h2><div class="toggle">view: <button data-view="unified">unified</button> '
        '<button data-view="split">side by side</button></div><div id="diff">'
    ]
    for f in rv.files:
        hidden = (
            f' <span class="esc">{f.hidden} hidden character(s) shown escaped</span>'
            if f.hidden
            else ""
        )
        parts.append(
            f'<div class="file" data-path="{escape(plain(f.path))}"><div class="file-head">'
            f'<code>{_t(f.path)}</code><span class="scope scope-{escape(f.scope)}">'
            f"{escape(f.scope)}</span> {escape(f.status)} +{f.added} -{f.removed}{hidden}</div>"
            f'<table class="diff code unified">{_UNIFIED_COLS}{_unified(f)}</table>'
            f'<table class="diff code split">{_SPLIT_COLS}{_split(f)}</table></div>'
        )
    return "".join(parts) + "</div>"


#: Column widths (a fixed-layout table takes them from here, not from its first row).
_UNIFIED_COLS = '<colgroup><col class="n"><col class="n"><col></colgroup>'
_SPLIT_COLS = '<colgroup><col class="n"><col><col class="n"><col></colgroup>'


def _num(n: int | None) -> str:
    return "" if n is None else str(n)


def _unified(f: FileDiff) -> str:
    rows = []
    for line in f.lines:
        if line.kind in ("hunk", "meta"):
            rows.append(f'<tr class="{line.kind}"><td class="n"></td><td class="n"></td>'
                        f'<td class="t">{_t(line.text)}</td></tr>')  # fmt: skip
            continue
        sign = {"add": "+", "del": "-", "context": " "}[line.kind]
        rows.append(
            f'<tr class="{line.kind}"><td class="n">{_num(line.old)}</td>'
            f'<td class="n">{_num(line.new)}</td><td class="t">{sign}{_t(line.text)}</td></tr>'
        )
    return "".join(rows)


def _split(f: FileDiff) -> str:
    """Side by side: a run of deletions is paired with the additions that follow it."""
    rows: list[str] = []
    dels: list[DiffLine] = []
    adds: list[DiffLine] = []

    def flush() -> None:
        for i in range(max(len(dels), len(adds))):
            d = dels[i] if i < len(dels) else None
            a = adds[i] if i < len(adds) else None
            rows.append(
                "<tr>"
                + (f'<td class="n">{_num(d.old)}</td><td class="del">{_t(d.text)}</td>' if d
                   else '<td class="n"></td><td></td>')
                + (f'<td class="n">{_num(a.new)}</td><td class="add">{_t(a.text)}</td>' if a
                   else '<td class="n"></td><td></td>')
                + "</tr>"
            )  # fmt: skip
        dels.clear()
        adds.clear()

    for line in f.lines:
        if line.kind == "del":
            if adds:
                flush()
            dels.append(line)
        elif line.kind == "add":
            adds.append(line)
        else:
            flush()
            if line.kind == "context":
                rows.append(
                    f'<tr><td class="n">{_num(line.old)}</td><td>{_t(line.text)}</td>'
                    f'<td class="n">{_num(line.new)}</td><td>{_t(line.text)}</td></tr>'
                )
            else:
                rows.append(f'<tr class="{line.kind}"><td colspan="4">{_t(line.text)}</td></tr>')
    flush()
    return "".join(rows)


def _tests(ids: list[str]) -> str:
    """Test ids one a line, each breakable after a ``/`` or ``::`` (``<wbr>``) in a narrow cell."""
    return "<br>".join("<wbr>".join(_t(p) for p in re.split(r"(?<=/)|(?<=::)", i)) for i in ids)


def _gates(rv: Review) -> str:
    if not rv.gates:
        return '<h2>Gates</h2><p class="muted" id="gates">No gate ran.</p>'
    head = ("run on", "gate", "base", "result", "exit", "fixed", "still failing",
            "newly failing", "missing", "reason")  # fmt: skip
    rows = [
        (
            _t(g.label),
            _t(g.name),
            _verdict(g.baseline_passed),
            _verdict(g.passed),
            _t(g.exit_code),
            _tests(g.fixed),
            _tests(g.still_failing),
            _tests(g.newly_failing),
            _tests(g.missing),
            _t(g.reason),
        )
        for g in rv.gates
    ]
    logs = "".join(_gate_log(g) for g in rv.gates)
    return f"<h2>Gates</h2>{_stacked('gates', head, rows)}<h3>Gate logs</h3>{logs}"


def _gate_log(g: GateRow) -> str:
    verdict = "passed" if g.passed else "FAILED"
    return (
        f"<details><summary>{_t(g.name)} on {_t(g.label)}: {verdict}</summary>"
        f"<pre>{_t(g.log) or '(empty)'}</pre></details>"
    )


def _attempts(rv: Review) -> str:
    rows = [
        (
            str(a.attempt),
            _t(a.status),
            _t(a.failure_domain or ""),
            _t(a.reason),
            "<br>".join(_t(x) for x in a.evidence),
            str(a.steps),
            _t(", ".join(a.changed_files)),
        )
        for a in rv.attempts
    ]
    head = ("attempt", "status", "domain", "reason", "evidence", "steps", "changed")
    blocked = [
        (str(b.attempt), _t(b.kind), f"<code>{_t(b.what)}</code>", _t(b.reason)) for b in rv.blocked
    ]
    blocked_html = (
        _stacked("blocked", ("attempt", "kind", "what", "why"), blocked)
        if rv.blocked
        else '<p class="muted" id="blocked">Nothing was blocked.</p>'
    )
    return (
        f"<h2>Attempts</h2>{_stacked('attempts', head, rows)}"
        f"<h2>Blocked and reverted</h2>{blocked_html}"
    )


def _trajectory(rv: Review) -> str:
    tr = rv.trajectory
    tools = ", ".join(f"{_t(k)} &times;{v}" for k, v in tr.tools.items()) or "none"
    items = [f"<p>{tr.steps} steps; tools: {tools}</p>"]
    if tr.repeated:
        items.append(
            "<p>Repeated actions:</p><ul>"
            + "".join(
                f"<li>attempt {r['attempt']}: {_t(r['tool'])} <code>{_t(r['action'])}</code>"
                f" &times;{r['times']}</li>"
                for r in tr.repeated
            )
            + "</ul>"
        )
    if tr.failed_commands:
        items.append(
            '<p>Commands that failed:</p><ul id="failed-commands">'
            + "".join(
                f"<li>attempt {fc.attempt}: <code>{_t(fc.command)}</code> exit {fc.exit_code}"
                f" &rarr; {'acted on it' if fc.acted else 'did not act on it'}: "
                f"{_t(fc.followed_by)}</li>"
                for fc in tr.failed_commands
            )
            + "</ul>"
        )
    return '<h2>Trajectory</h2><div id="trajectory">' + "".join(items) + "</div>"


def _timeline(rv: Review) -> str:
    items = "".join(
        f'<li class="k-{escape(e.type)}"><span class="ts">{escape(e.ts[11:23])}</span>'
        f"<code>{escape(e.type)}</code> {_t(e.summary)}</li>"
        for e in rv.trajectory.timeline
    )
    return f'<h2>Timeline</h2><ol class="timeline" id="timeline">{items}</ol>'
