"""``corral eval``: many bug reports x several trials, and ``corral eval report EVAL``.

``corral eval --tasks FILE --agent A --trials K`` runs each task's trials on the local
pool (``runner.eval.pool``), each a normal run (``--ray auto|ADDRESS``: as Ray tasks on
a cluster, ``runner.eval.executors``); a live line on stderr says how far it is; the
same command again goes on where it stopped. ``corral eval report EVAL``
aggregates the trials from the run store (``runner.eval.report``); ``--json`` prints
that as one object, ``--html`` writes it as a page with charts (``runner.eval.html``),
``--trajectories`` each trial's run as ATIF (``runner.store.atif``), ``--predictions``
and ``--swebench-report`` SWE-bench's exports (``runner.eval.swebench``, which also
reads a SWE-bench instance file as ``--tasks``, its clones under ``--repos``). Exit
codes: 0 done (whatever the pass rate), 1 trials left unrun (the cost budget, a task
that could not start), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from runner.cli.app import app, err, handles_errors, out
from runner.review.text import markup as m
from sandbox.paths import corral_home

eval_app = typer.Typer(
    help="Run bug reports x trials and report pass@k (`corral eval --tasks FILE`).",
    invoke_without_command=True,
)
app.add_typer(eval_app, name="eval")


@eval_app.callback()
@handles_errors
def eval_(
    ctx: typer.Context,
    tasks: Path | None = typer.Option(
        None, "--tasks", help="The task list (.jsonl or .toml), or SWE-bench instances."
    ),
    repos: Path | None = typer.Option(
        None, "--repos", help="SWE-bench: the clones, as DIR/<owner>__<name> or DIR/<name>."
    ),
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="gold (each task's patch), empty (does nothing), or an agent of `corral run`: "
        "scripted:FILE, corral, cli:NAME.",
    ),
    script: str | None = typer.Option(
        None, "--script", help="Script for --agent scripted; {task} and {trial} are filled in."
    ),
    agent_cmd: str | None = typer.Option(None, "--agent-cmd", help="For --agent cli:custom."),
    model: str | None = typer.Option(None, "--model", help="Model name for --agent corral."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint."),
    api_key_file: Path | None = typer.Option(None, "--api-key-file", help="File holding the key."),
    policy: str | None = typer.Option(
        None, "--policy", help="Preset or policy file for tasks without a policy of their own."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a policy key: KEY=VALUE."),
    runtime: str | None = typer.Option(None, "--runtime", help="runc or runsc (gVisor)."),
    trials: int = typer.Option(1, "--trials", help="Trials per task (pass@k for k up to it)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Trials at once (default: from the cores and memory)."
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Run the trials as Ray tasks on a cluster: auto, or its ADDRESS (each node offers "
        "a `docker` resource; --workers defaults to the cluster's units).",
    ),
    max_cost: float | None = typer.Option(
        None, "--max-cost", help="USD for the whole eval: no trial starts once it is spent."
    ),
    eval_id: str | None = typer.Option(
        None, "--eval-id", help="Name the eval (default: derived from the inputs)."
    ),
    no_gold_check: bool = typer.Option(
        False, "--no-gold-check", help="Do not run each task's gold patch to find broken tasks."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live line."),
) -> None:
    """Run each task of --tasks --trials times with --agent; `corral eval report EVAL` sums up."""
    if ctx.invoked_subcommand is not None:
        return
    from runner.cli.run import _parse_set
    from runner.errors import EvalInterrupted, UsageError
    from runner.eval.pool import run_eval
    from runner.eval.record import EvalInputs
    from runner.eval.swebench import load_task_file

    if tasks is None:
        raise UsageError(
            "give --tasks FILE (a .jsonl or .toml task list), or `corral eval report EVAL`"
        )
    inline = agent.partition(":")[2] if agent and agent.startswith("scripted:") else ""
    script = script or inline or None
    name = agent.partition(":")[0] if agent and agent.startswith("scripted:") else agent
    name = name or ("corral" if model or (base_url and not script) else "scripted")
    if name == "scripted" and script is None:
        raise UsageError("--agent scripted needs --script FILE (or --agent scripted:FILE)")
    inputs = EvalInputs(
        tasks=load_task_file(tasks, repos, corral_home() / "swebench" / "patches"),
        tasks_file=str(tasks.resolve()), agent=name,
        script=str(Path(script).absolute()) if script else None, model=model,
        base_url=base_url, api_key_file=str(api_key_file.resolve()) if api_key_file else None,
        agent_cmd=agent_cmd, policy=_policy(policy), overrides=_parse_set(set_), runtime=runtime,
    )  # fmt: skip
    line = _LiveLine(quiet)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        done = run_eval(
            corral_home(), inputs, trials=trials, eval_id=eval_id, workers=workers,
            max_cost=max_cost, check_gold=not no_gold_check, on_progress=line.show, ray=ray,
        )  # fmt: skip
    except EvalInterrupted as exc:
        line.close()
        err.print(
            f"[yellow]interrupted:[/yellow] eval {m(exc.eval_id)}: {exc.ended} trial(s) ended and"
            " are kept; run the same command again to go on"
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    line.close()
    out.print(
        f"eval {m(done.eval_id)}: ran {done.ran} trial(s), {done.skipped} had ended before;"
        f" `corral eval report {m(done.eval_id)}`"
    )
    for task, error in done.errors.items():
        err.print(f"[red]error:[/red] task {m(task)}: {m(error)}")
    if done.stopped:
        err.print(f"[yellow]stopped:[/yellow] {m(done.stopped)}; trials are left unrun")
        raise typer.Exit(1)


def _policy(value: str | None) -> str | None:
    """A policy file as an absolute path (the trials run from anywhere); a preset name as is."""
    if value is not None and Path(value).is_file():
        return str(Path(value).resolve())
    return value


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _LiveLine:
    """The eval's progress on stderr: one line redrawn on a terminal, a line per change otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = ""

    def show(self, p: Any) -> None:
        if self.quiet:
            return
        rate = "-" if p.pass_rate is None else f"{p.pass_rate:.0%}"
        eta = "-" if p.eta_seconds is None else _duration(p.eta_seconds)
        text = (
            f"eval {p.eval_id}: {p.ended}/{p.total} done, {p.running} running, {p.failed} failed;"
            f" pass {rate}; ${p.cost_usd:.4f}; ETA {eta}"
        )
        if text == self.last:
            return
        self.last = text
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text)
        else:
            sys.stderr.write(f"[corral] {text}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.last and not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@eval_app.command("report")
@handles_errors
def report(
    eval_id: str = typer.Argument(..., help="The eval (its id, as `corral eval` prints)."),
    predictions: Path | None = typer.Option(
        None, "--predictions", help="Write SWE-bench predictions JSONL (first finished trials)."
    ),
    swebench_report: Path | None = typer.Option(
        None, "--swebench-report", help="Write a SWE-bench-shaped report (resolved_ids, ...)."
    ),
    as_json: bool = typer.Option(False, "--json", help="The report as one JSON object."),
    trajectories: Path | None = typer.Option(
        None, "--trajectories", help="Write each trial's DIR/TASK-ROLE-N/trajectory.json (ATIF)."
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Write the report as one self-contained HTML page, with charts."
    ),
) -> None:
    """pass@1, pass@k, pass^k, resolved, cost, tokens, time, steps, failure domains, per task."""
    from runner.eval.record import EvalDir, inputs_of, outcome, trial_key, trials_of
    from runner.eval.report import build_report
    from runner.store.runs import RunStore

    evaldir = EvalDir(corral_home(), eval_id)
    record = evaldir.load()
    inputs = inputs_of(record)
    plan = trials_of(inputs.tasks, record["trials"], record["check_gold"], inputs.agent)
    with RunStore(corral_home()) as store:
        outcomes = [outcome(store, t, trial_key(eval_id, t, inputs), steps=True) for t in plan]
        if predictions is not None or swebench_report is not None:
            from runner.eval.swebench import write_exports

            sb = write_exports(store, record, outcomes, predictions, swebench_report)
            err.print(
                f"SWE-bench: {sb['resolved_instances']}/{sb['total_instances']} resolved;"
                f" wrote {m(', '.join(str(p) for p in (predictions, swebench_report) if p))}"
            )
        if trajectories is not None:
            _write_trajectories(store, outcomes, trajectories)
        if html is not None:
            _write_html(store, build_report(record, outcomes), html)
    rep = build_report(record, outcomes)
    if as_json:
        print(json.dumps(rep))
        return
    _print_report(rep)


def _write_trajectories(store: Any, outcomes: list[Any], directory: Path) -> None:
    """Each started trial's run as ATIF, to stderr how many (stdout stays the report)."""
    from runner.errors import UsageError
    from runner.store.atif import write_trajectories

    runs = [(f"{o.task}-{o.role}-{o.trial}", o.run_id) for o in outcomes if o.run_id]
    try:
        written = write_trajectories(store, runs, directory)
    except OSError as exc:
        raise UsageError(
            f"--trajectories {directory}: {exc.strerror or exc}: give a writable folder"
        ) from None
    err.print(f"wrote {len(written)} trajectory.json file(s) (ATIF) under {m(str(directory))}")


def _write_html(store: Any, rep: dict[str, Any], path: Path) -> None:
    """The report as one HTML page at ``path`` (``runner.eval.html``)."""
    from runner.errors import UsageError
    from runner.eval.html import eval_page

    try:
        path.write_text(eval_page(store, rep), encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"--html {path}: {exc.strerror or exc}: give a file path you can write"
        ) from None
    err.print(f"wrote the HTML report to {m(str(path))}")


def _print_report(rep: dict[str, Any]) -> None:
    s = rep["summary"]
    out.print(
        f"eval {m(rep['eval_id'])}: agent {m(rep['agent'])}, policy {m(rep['policy'] or '-')}"
    )
    out.print(
        f"  tasks {s['tasks']} ({s['tasks_counted']} counted), {s['trials_per_task']} trial(s)"
        f" each; trials ended {s['trials_ended']}/{s['trials']}, resolved {s['resolved']};"
        f" tasks resolved at least once {s['tasks_resolved']}"
    )
    for name, key in (("pass@k", "pass_at_k"), ("pass^k", "pass_hat_k")):
        figures = ", ".join(
            f"k={k}: {v['value']:.3f} ({v['tasks']} tasks)" for k, v in s[key].items()
        )
        out.print(f"  {name}: {figures or '-'}")
    out.print(f"  cost ${s['cost_usd']:.4f}, tokens {s['tokens']}")
    for label, key in (
        ("wall s", "wall_seconds"),
        ("steps", "steps"),
        ("cost $", "cost_per_trial"),
    ):
        d = s[key]
        if d["n"]:
            out.print(
                f"  {label} per trial: mean {d['mean']:.4g}, median {d['median']:.4g},"
                f" p90 {d['p90']:.4g}, min {d['min']:.4g}, max {d['max']:.4g}"
            )
    if rep["failure_domains"]:
        domains = ", ".join(f"{k} {v}" for k, v in rep["failure_domains"].items())
        out.print(f"  not resolved: {m(domains)}")
    if rep["broken_tasks"]:
        out.print(f"  broken (gold fails; not counted): {m(', '.join(rep['broken_tasks']))}")
    if rep["flaky_tasks"]:
        out.print(f"  flaky (outcomes differ): {m(', '.join(rep['flaky_tasks']))}")
    for row in rep["tasks"]:
        rate = "-" if row["pass_at_1"] is None else f"{row['pass_at_1']:.2f}"
        mark = " broken" if row["broken"] else (" flaky" if row["flaky"] else "")
        out.print(
            f"  {m(row['task'])}: {row['resolved']}/{row['n']} resolved ({rate}){mark}"
            f"  {m(', '.join(row['outcomes']))}"
        )
