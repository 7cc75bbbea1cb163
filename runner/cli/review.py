"""CLI commands for reading a run: review, report, logs.

Registered on ``runner.cli.app.app`` (imported at the bottom of ``runner.cli.app``).
Each gathers a ``runner.review.evidence.Review`` and renders it: rich text here, JSON
with ``--json``, one self-contained HTML file with ``report --html``. Every
piece of run text goes through ``rich.markup.escape`` and ``Text`` objects
(never markup), with control and bidi characters shown as ``<U+XXXX>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from runner.cli.app import app, handles_errors, out
from runner.errors import UsageError
from runner.review.text import number, plain, visible
from sandbox.paths import corral_home

if TYPE_CHECKING:  # the evidence (policies, pydantic, the store) only when a command reads a run
    from runner.review.evidence import Review
    from runner.store.runs import RunStore

_SCOPE_STYLE = {
    "writable": "green", "protected": "bold red", "read_only": "yellow",
    "artifact": "magenta", "progress": "cyan",
}  # fmt: skip
_LINE_STYLE = {"add": "on #12361f", "del": "on #3d1519", "hunk": "cyan", "meta": "bold"}
_ESCAPED = "bold white on red"
_SIGN_STYLE = {"+": "bold green", "-": "bold red"}
_LEXERS = {".py": "python", ".js": "javascript", ".ts": "typescript", ".sh": "bash",
           ".toml": "toml", ".md": "markdown", ".json": "json", ".yml": "yaml",
           ".yaml": "yaml", ".c": "c", ".go": "go", ".rs": "rust"}  # fmt: skip


def shown(text: str, style: str = "") -> Text:
    """Run text as a rich ``Text`` (never parsed as markup), hidden characters escaped and marked."""
    out_text = Text(style=style)
    for part, escaped in visible(text):
        out_text.append(part, style=_ESCAPED if escaped else "")
    return out_text


def _store_review(run_id: str) -> tuple[RunStore, Review]:
    from runner.review.evidence import gather
    from runner.store.runs import RunStore

    store = RunStore(corral_home())
    return store, gather(store, run_id)


@app.command()
@handles_errors
def review(
    run_id: str = typer.Argument(..., help="The run to review."),
    as_json: bool = typer.Option(False, "--json", help="Print the review as one JSON object."),
) -> None:
    """Show what the agent changed and why corral believes it: diff, gates, blocked actions, trajectory."""
    _, rv = _store_review(run_id)
    if as_json:
        print(json.dumps(rv.to_json()))  # ASCII: hidden characters arrive as \u escapes
        return
    for part in render(rv):
        out.print(part)


def render(rv: Review) -> list[RenderableType]:
    """The review as rich renderables, top to bottom (tamper findings first)."""
    return [
        *_findings(rv), _header(rv), *_diff(rv), _gates_table(rv), *_attempts(rv),
        *_trajectory(rv),
    ]  # fmt: skip


def _findings(rv: Review) -> list[RenderableType]:
    """The tamper findings, one line each; nothing when there are none."""
    from runner.review.evidence import FINDINGS_NOTE

    if not rv.findings:
        return []
    lines = Text()
    for i, f in enumerate(rv.findings):
        lines.append(("\n" if i else "") + f"attempt {f.attempt}: ", style="bold")
        lines.append_text(shown(f.finding))
    title = Text(f"Findings ({len(rv.findings)}): {FINDINGS_NOTE}", style="bold red")
    return [Panel(lines, title=title, title_align="left", border_style="red", expand=False)]


def _header(rv: Review) -> Panel:
    from runner.review.evidence import judging_rows

    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")  # a long path wraps, never cut
    colour = {"ready_for_review": "bold green", "unverified": "bold yellow"}
    status = Text(rv.status, style=colour.get(rv.status, "bold red"))
    if rv.failure_domain:
        status.append(f" ({rv.failure_domain})")
    rows: list[tuple[str, Text]] = [
        ("status", status),
        ("reason", shown(rv.reason)),
        ("bug", shown(rv.bug_title)),
        ("repo", shown(f"{rv.repo} @ {rv.base[:12]}")),
        ("agent", shown(rv.agent + (f"  model {rv.model}" if rv.model else ""))),
        ("policy", shown(" < ".join(rv.policy_sources) or "-")),
        ("verification", Text(rv.verification, style="" if _verified(rv) else "bold yellow")),
        *((name, shown(text)) for name, text in judging_rows(rv)),
        ("duration", Text(f"{rv.duration_s:.1f}s")),
        ("tokens / cost", Text(f"{rv.tokens} / ${rv.cost_usd:.4f}")),
    ]
    for name, b in rv.budgets.items():
        rows.append((f"budget {name}", Text(f"{number(b['used'])} of {number(b['limit'])}")))
    chain = "intact" if rv.chain_ok else f"BROKEN: {rv.chain_problem}"
    rows.append(("event log", Text(chain, style="" if rv.chain_ok else "bold red")))
    for k, v in rows:
        t.add_row(k, v)
    return Panel(t, title=Text(f"run {rv.run_id}"), expand=False)


def _verified(rv: Review) -> bool:
    return rv.verification.startswith("required gates")


def _diff(rv: Review) -> list[RenderableType]:
    if not rv.files:
        return [Text("no diff: no attempt changed anything", style="dim")]
    title = (
        "candidate diff"
        if rv.diff_source == "candidate.diff"
        else (f"diff of the last attempt ({rv.diff_source}; not a candidate)")
    )
    parts: list[RenderableType] = [Text(title, style="bold underline")]
    for f in rv.files:
        head = shown(f.path, "bold")
        head.append(f"  [{f.scope}]", style=_SCOPE_STYLE.get(f.scope, ""))
        head.append(f"  {f.status} +{f.added} -{f.removed}")
        if f.hidden:
            head.append(f"  {f.hidden} hidden character(s) shown escaped", style=_ESCAPED)
        parts.append(head)
        lexer = _LEXERS.get(Path(f.path).suffix, "text")
        for line in f.lines:
            if line.kind in ("add", "del", "context"):
                sign = {"add": "+", "del": "-", "context": " "}[line.kind]
                parts.append(_code_line(sign, line.text, lexer, _LINE_STYLE.get(line.kind, "")))
            else:
                parts.append(shown(line.text, _LINE_STYLE[line.kind]))
    return parts


def _code_line(sign: str, text: str, lexer: str, style: str) -> Text:
    """One diff line on its line background, the sign coloured (for 16-colour terminals too);
    highlighted by ``rich.syntax`` when it holds no hidden character, else escaped as text."""
    from rich.syntax import Syntax  # pygments: only for a diff

    line = Text(style=style)  # the base style: spans appended later draw over it
    line.append(sign, style=_SIGN_STYLE.get(sign, ""))
    if any(escaped for _, escaped in visible(text)) or lexer == "text":
        line.append_text(shown(text))
        return line
    hl = Syntax(text, lexer, theme="ansi_dark").highlight(text)
    hl.rstrip()
    line.append_text(hl)
    return line


class Fitted:
    """A table when every cell fits the width it is drawn at, else the same rows stacked.

    The review goes to a terminal as wide as it is, and to a pipe or a log at 80 columns, where a
    table of ten columns cuts every cell to a few letters. Stacked, each row is a heading line
    (``lead``) and then a ``column: value`` line per other non-empty cell (a list below its name,
    one item a line), wrapped at the width. Which one is decided at draw time, from the width
    rich gives it (``_fits``).
    """

    def __init__(self, title: str, columns: tuple[str, ...], rows: Sequence[tuple[Text, ...]],
                 lead: Callable[[tuple[Text, ...]], Text]) -> None:  # fmt: skip
        self.title, self.columns, self.rows, self.lead = title, columns, rows, lead

    def table(self) -> Table:
        t = Table(*self.columns, title=self.title)
        for row in self.rows:
            t.add_row(*row)
        return t

    def stacked(self) -> Group:
        parts: list[RenderableType] = [Text(self.title, style="bold underline")]
        for row in self.rows:
            parts.append(self.lead(row))
            for name, cell in zip(self.columns, row, strict=True):
                if not cell.plain or name in LEAD_COLUMNS:
                    continue
                if "\n" in cell.plain:  # a list (test ids, evidence): one item a line, below
                    parts.append(Text(f"    {name}:", style="dim"))
                    parts.append(Padding(cell, (0, 0, 0, 6), expand=False))
                else:  # wrapped lines keep the indent
                    line = Text.assemble((f"{name}: ", "dim"), cell)
                    parts.append(Padding(line, (0, 0, 0, 4), expand=False))
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table() if self._fits(console, options) else self.stacked()

    def _fits(self, console: Console, options: ConsoleOptions) -> bool:
        """Whether each column gets its longest word (header included), with padding and rules."""
        need = 1
        for i, name in enumerate(self.columns):
            cells = [Text(name), *(row[i] for row in self.rows)]
            need += 3 + max(Measurement.get(console, options, c).minimum for c in cells)
        return need <= options.max_width


#: Columns that a stacked row shows in its heading line, not as lines of their own.
LEAD_COLUMNS = frozenset({"run on", "gate", "base", "result", "exit", "attempt", "status",
                          "domain", "steps", "kind", "what"})  # fmt: skip


def _gates_table(rv: Review) -> RenderableType:
    if not rv.gates:
        return Text("gates: none ran", style="dim")
    columns = ("run on", "gate", "base", "result", "exit", "fixed", "still failing",
               "newly failing", "missing", "reason")  # fmt: skip
    rows = [
        (
            shown(g.label), shown(g.name), _verdict(g.baseline_passed), _verdict(g.passed),
            Text("-" if g.exit_code is None else str(g.exit_code)), _tests(g.fixed),
            _tests(g.still_failing), _tests(g.newly_failing), _tests(g.missing), shown(g.reason),
        )
        for g in rv.gates
    ]  # fmt: skip

    def lead(row: tuple[Text, ...]) -> Text:  # "tests on attempt-1: FAIL (base pass, exit 1)"
        label, name, base, result, code = row[:5]
        head = Text.assemble("  ", (name.plain, "bold"), " on ", label, ": ", result)
        base_text = Text.assemble("base ", base, ", ") if base.plain != "-" else Text()
        return head.append_text(Text.assemble(" (", base_text, "exit ", code, ")"))

    return Fitted("gates", columns, rows, lead)


def _verdict(passed: bool | None) -> Text:
    if passed is None:
        return Text("-")
    return Text("pass", style="green") if passed else Text("FAIL", style="bold red")


def _tests(ids: list[str]) -> Text:
    if not ids:
        return Text("")
    return shown("\n".join(ids[:10]) + (f"\n(+{len(ids) - 10} more)" if len(ids) > 10 else ""))


def _attempts(rv: Review) -> list[RenderableType]:
    rows = [
        (Text(str(a.attempt)), shown(a.status), shown(a.failure_domain or ""), shown(a.reason),
         shown("\n".join(a.evidence)), Text(str(a.steps)), shown(", ".join(a.changed_files)))
        for a in rv.attempts
    ]  # fmt: skip

    def attempt(row: tuple[Text, ...]) -> Text:  # "attempt 1: failed (model), 3 steps"
        n, status, domain, steps = row[0], row[1], row[2], row[5]
        why = Text.assemble(" (", domain, ")") if domain.plain else Text()
        return Text.assemble("  attempt ", n, ": ", (status.plain, "bold"), why, ", ", steps,
                             " steps")  # fmt: skip

    columns = ("attempt", "status", "domain", "reason", "evidence", "steps", "changed")
    parts: list[RenderableType] = [Fitted("attempts", columns, rows, attempt)]
    if rv.blocked:
        blocked = [
            (Text(str(x.attempt)), Text(x.kind), shown(x.what), shown(x.reason)) for x in rv.blocked
        ]

        def what(row: tuple[Text, ...]) -> Text:  # "attempt 1: write denied tests/test_calc.py"
            return Text.assemble("  attempt ", row[0], ": ", (row[1].plain, "bold"), " ", row[2])

        parts.append(Fitted("blocked and reverted", ("attempt", "kind", "what", "why"), blocked,
                            what))  # fmt: skip
    else:
        parts.append(Text("blocked and reverted: nothing", style="dim"))
    return parts


def _trajectory(rv: Review) -> list[RenderableType]:
    tr = rv.trajectory
    tools = ", ".join(f"{k} x{v}" for k, v in tr.tools.items()) or "none"
    lines = [Text(f"trajectory: {tr.steps} steps; tools: {tools}", style="bold")]
    for r in tr.repeated:
        line = Text(f"  repeated in attempt {r['attempt']}: {r['tool']} ", style="yellow")
        line.append_text(shown(str(r["action"])))
        line.append(f" x{r['times']}")
        lines.append(line)
    for fc in tr.failed_commands:
        line = Text(f"  attempt {fc.attempt}: command failed (exit {fc.exit_code}): ")
        line.append_text(shown(fc.command))
        mark = "acted on it: " if fc.acted else "did not act on it: "
        line.append(" -> " + mark, style="green" if fc.acted else "yellow")
        line.append_text(shown(fc.followed_by))
        lines.append(line)
    return [Group(*lines)]


@app.command()
@handles_errors
def report(
    run_id: str = typer.Argument(..., help="The run to report."),
    html: Path = typer.Option(..., "--html", help="Write one self-contained HTML file here."),
) -> None:
    """Write the review as one self-contained HTML file (no network needed to view it)."""
    from runner.review.report_html import render_html

    _, rv = _store_review(run_id)
    check_target("--html", html, "report.html")
    html.write_text(render_html(rv), encoding="utf-8")
    out.print(Text(f"wrote {html}"))


def check_target(option: str, path: Path, example: str) -> None:
    """Raises ``UsageError`` (one line naming the fix) when ``path`` cannot be written as a file:
    it is a directory, or its folder does not exist."""
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory: name a file, e.g. {path}/{example}")
    if not path.parent.is_dir():
        raise UsageError(
            f"{option} {path}: the folder {path.parent} does not exist; create it first"
        )


@app.command()
@handles_errors
def logs(
    run_id: str = typer.Argument(..., help="The run whose log to show."),
    attempt: int | None = typer.Option(None, "--attempt", help="Only this attempt's events."),
    gate: str | None = typer.Option(None, "--gate", help="The gate's log: baseline and candidate."),
) -> None:
    """The run's event log as readable lines, or one gate's logs."""
    _store, rv = _store_review(run_id)
    if gate is not None:
        rows = [g for g in rv.gates if g.name == gate]
        if not rows:
            names = sorted({g.name for g in rv.gates}) or ["(no gate ran)"]
            raise UsageError(f"run {run_id} has no log of gate {gate!r}: one of {', '.join(names)}")
        if attempt is not None:
            rows = [g for g in rows if g.label in ("baseline", f"attempt-{attempt}")]
        for g in rows:
            verdict = "passed" if g.passed else "FAILED"
            out.print(Text(f"== gate {g.name} on {g.label}: {verdict} ({plain(g.reason)})", "bold"))
            out.print(shown(g.log), soft_wrap=True)
        return
    entries = rv.trajectory.timeline
    if attempt is not None:
        if attempt not in {a.attempt for a in rv.attempts} | {
            e.attempt for e in entries if e.attempt
        }:
            raise UsageError(f"run {run_id} has no attempt {attempt}: it ran {rv.attempts_done}")
        entries = [e for e in entries if e.attempt == attempt]
    if not entries:
        out.print(Text("no events recorded", style="dim"))
    for e in entries:
        where = f"a{e.attempt}" + (f"w{e.window}" if e.window else "") if e.attempt else "run"
        line = Text(f"{e.seq:>4} {e.ts[11:23]} {where:<6} {e.type:<17} ", style="dim")
        line.append_text(shown(e.summary))
        out.print(line, soft_wrap=True)
