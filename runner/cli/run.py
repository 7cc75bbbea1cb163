"""CLI commands for runs and policies: run, resume, verify, status, list, approve, reject, policy.

Registered on ``runner.cli.app.app`` (imported at the bottom of ``runner.cli.app``).
Exit codes: 0 ready_for_review, 1 failed, unverified or exhausted, 2 usage or
config error (also a run that failed as ``configuration``: a required gate
cannot run at base), 3 waiting for a human. ``corral run --json`` prints exactly one JSON
object on stdout when the run ends; progress goes to stderr (``runner.review.display``:
a live panel on a terminal, plain lines otherwise, JSON lines with ``--json``).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from runner.cli.app import app, err, handles_errors, out
from runner.errors import RunInterrupted, UsageError
from runner.review.text import markup as m
from sandbox.paths import corral_home

policy_app = typer.Typer(help="Check and show policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


JSON_HELP = "One JSON object on stdout at the end; the events as JSON lines on stderr."
QUIET_HELP = "Show only the final outcome (no live display or progress lines)."


def _parse_set(values: list[str]) -> dict[str, Any]:
    """``--set budgets.attempts=2`` pairs; values parsed as TOML scalars (2, true, "x", [..])."""
    import tomllib

    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: use KEY=VALUE, e.g. --set budgets.attempts=2")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = raw
    return overrides


@app.command()
@handles_errors
def run(
    repo: Path = typer.Option(Path("."), "--repo", help="The git repository to fix."),
    bug: Path = typer.Option(..., "--bug", help="The bug report (markdown or text)."),
    policy: str | None = typer.Option(None, "--policy", help="Preset name or policy file."),
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="corral (the default with --model, or --base-url without --script), scripted:FILE, or an agent CLI: cli:NAME "
        "(aider, mini-swe-agent, claude-code, codex) or cli:custom with --agent-cmd.",
    ),
    script: Path | None = typer.Option(None, "--script", help="Script for --agent scripted."),
    agent_cmd: str | None = typer.Option(
        None, "--agent-cmd", help="Command line for --agent cli:custom (run in /workspace)."
    ),
    model: str | None = typer.Option(None, "--model", help="Model name for --agent corral."),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="OpenAI-compatible endpoint (vLLM, Ollama, LiteLLM, OpenRouter ...).",
    ),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="File holding the API key (default: $CORRAL_API_KEY or $OPENAI_API_KEY).",
    ),
    base: str = typer.Option("HEAD", "--base", help="Base ref to fix from."),
    runtime: str | None = typer.Option(None, "--runtime", help="runc or runsc (gVisor)."),
    attempts: int | None = typer.Option(None, "--attempts", help="Override budgets.attempts."),
    set_: list[str] = typer.Option([], "--set", help="Override a policy key: KEY=VALUE."),
    must_pass: list[str] = typer.Option(
        [],
        "--must-pass",
        help="A target test (pytest node id) the candidate must pass; repeatable.",
    ),
    hidden_tests: Path | None = typer.Option(
        None,
        "--hidden-tests",
        help="A test patch applied to the gates' tree only, never the agent's.",
    ),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Return the existing run for this key instead of a new one."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Choose the run id."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Run an agent against a bug report under a policy; print the outcome."""
    from runner.ops.service import RunRequest, start_run
    from runner.review.display import run_display

    overrides = _parse_set(set_)
    if attempts is not None:
        overrides["budgets.attempts"] = attempts
    req = RunRequest(
        repo=repo,
        bug=bug,
        policy=policy,
        overrides=overrides,
        agent=agent or ("corral" if model or (base_url and not script) else "scripted"),
        script=script,
        base_ref=base,
        runtime=runtime,
        idempotency_key=idempotency_key,
        run_id=run_id,
        model=model,
        base_url=base_url,
        api_key_file=api_key_file,
        agent_cmd=agent_cmd,
        must_pass=tuple(must_pass),
        hidden_tests=hidden_tests,
    )
    with _interruptible(), run_display(err, as_json=as_json, quiet=quiet) as on_event:
        result = start_run(corral_home(), req, on_event=on_event)
    _finish(result, as_json)


@app.command()
@handles_errors
def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Continue an interrupted or waiting run from its last completed step."""
    from runner.ops.service import resume_run
    from runner.review.display import run_display

    with _interruptible(), run_display(err, as_json=as_json, quiet=quiet) as on_event:
        result = resume_run(corral_home(), run_id, on_event=on_event)
    _finish(result, as_json)


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop a run the same recorded way (``RunInterrupted``); once the display
    is closed, one line says where it stopped and how to go on. Exit 130, as for SIGINT."""

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except RunInterrupted as exc:
        err.print(
            f"[yellow]interrupted:[/yellow] run {m(exc.run_id)} stopped during {m(exc.where)};"
            f" nothing recorded is lost. Go on with `corral resume {m(exc.run_id)}`"
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        domain = f" ({m(result.failure_domain)})" if result.failure_domain else ""
        out.print(
            f"run {m(result.run_id)}: [bold]{m(result.status)}[/bold]{domain} {m(result.reason)}"
        )
        for a in result.attempts:
            gates = ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in a.gates.items())
            out.print(
                f"  attempt {a.attempt}: {m(a.status)} {m(a.failure_domain or '')} "
                f"{m(a.reason)} {m(gates)}"
            )
        if result.patch_path:
            out.print(f"  candidate patch: {m(result.patch_path)}")
    raise typer.Exit(result.exit_code)


@app.command()
@handles_errors
def verify(run_id: str = typer.Argument(..., help="The run whose event log to check.")) -> None:
    """Check the run's event log hash chain (exit 1 if any event was changed, removed or added)."""
    from runner.store.runs import RunStore

    store = RunStore(corral_home())
    store.get(run_id)
    res = store.verify(run_id)
    if res.ok:
        out.print(f"ok: {res.events} events, chain intact")
        if res.note:  # after a power loss: what could not be checked against the store
            out.print(f"  note: {m(res.note)}")
        return
    err.print(f"[red]broken:[/red] event {res.first_bad_seq}: {m(res.problem)}")
    raise typer.Exit(1)


@app.command()
@handles_errors
def status(
    run_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a run's status, failure domain, attempts and any pending human decision."""
    from runner.loop.outcome import result_of
    from runner.store.runs import RunStore

    store = RunStore(corral_home())
    rec = store.get(run_id)
    result = result_of(store, run_id)
    pending = json.loads(rec.waiting_json) if rec.waiting_json else {}
    shown = store.shown_status(rec)
    if as_json:
        print(json.dumps({**result.to_json(), "status": shown, "pending": pending}))
        return
    domain = f"{m(rec.failure_domain)}: " if rec.failure_domain else ""
    rid = m(run_id)
    out.print(f"{rid}  {m(shown)}  {domain}{m(rec.reason or '')}")
    if shown == "interrupted":
        out.print(f"  no process holds it (Ctrl-C, kill, a crash): `corral resume {rid}` goes on")
    out.print(f"  repo {m(rec.repo)} @ {m(rec.base[:12])}  bug: {m(rec.bug_title)}")
    for a in result.attempts:
        out.print(f"  attempt {a.attempt}: {m(a.status)} {m(a.failure_domain or '')} {m(a.reason)}")
    if rec.status != "waiting":
        return
    answer = (
        f"answer with `corral approve {rid}` or `corral reject {rid}`, then `corral resume {rid}`"
    )
    if pending.get("command"):
        out.print(
            f"  waiting for a human: `{m(pending['command'])}` ({m(pending.get('reason', ''))})"
        )
        out.print(f"  {answer}")
    elif pending.get("kind") == "scope":
        out.print(f"  waiting for a human: attempt {pending.get('attempt')} went out of scope")
        for violation in pending.get("violations", []):
            out.print(f"    {m(violation)}")
        if pending.get("answer"):
            out.print(f"  answered: {m(pending['answer'])}; go on with `corral resume {rid}`")
        else:
            out.print(f"  {answer} (`corral review {rid}` shows the patch)")
    elif pending.get("kind") == "paused":
        out.print(f"  paused: {m(pending.get('reason', ''))}; `corral resume {rid}` goes on")


@app.command(name="list")
@handles_errors
def list_runs(limit: int = typer.Option(20, "--limit")) -> None:
    """Recent runs, newest first: id, repo, bug title, status, failure domain, attempts, cost, age."""
    import time

    from rich.text import Text

    from runner.review.text import plain
    from runner.store.runs import RunStore

    # Fixed columns, one run per line whatever the terminal's width (grep- and pipe-friendly).
    row = "{:<22} {:<16} {:<40} {:<17} {:<14} {:>8} {:>8} {:>5}"
    head = row.format("id", "repo", "bug", "status", "domain", "attempts", "cost", "age")
    store = RunStore(corral_home())
    runs = store.list_runs(limit=limit)  # before the header: an unusable home is one line
    out.print(Text(head), soft_wrap=True)
    now = time.time()
    for rec in runs:
        line = row.format(
            rec.run_id, _cut(plain(Path(rec.repo).name), 16), _cut(plain(rec.bug_title), 40),
            store.shown_status(rec), rec.failure_domain or "-", rec.attempts_done, f"${rec.cost_usd:.4f}",
            _age(now - rec.created),
        )  # fmt: skip
        out.print(Text(line), soft_wrap=True)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def _decide(run_id: str, verdict: str, comment: str | None) -> None:
    from runner.cli.merge import reviewer
    from runner.loop.resume import answer_pending
    from runner.review.merge import review_decision
    from runner.store.runs import RunStore

    store = RunStore(corral_home())
    answered = answer_pending(store, run_id, "approve" if verdict == "approve" else "reject",
                              reviewer(), comment)  # fmt: skip
    if answered is not None:  # a waiting run's question: an `ask` command or a scope violation
        out.print(f"{m(answered)}; continue with `corral resume {m(run_id)}`")
        return
    decided = review_decision(store, run_id, verdict, reviewer(), comment)
    status = decided.status
    follow = f"next: `corral merge {run_id}`" if status == "approved" else "nothing will be merged"
    if decided.already:  # like a second `merge`: exit 0, nothing recorded
        out.print(f"{m(run_id)} is already {status}; nothing changed; {m(follow)}")
    else:
        out.print(f"{m(run_id)}: {status} by {m(reviewer())}; {m(follow)}")


@app.command()
@handles_errors
def approve(
    run_id: str = typer.Argument(...), comment: str | None = typer.Option(None, "--comment")
) -> None:
    """Approve a ready run's candidate for merge, or the command a waiting run asks for."""
    _decide(run_id, "approve", comment)


@app.command()
@handles_errors
def reject(
    run_id: str = typer.Argument(...), comment: str | None = typer.Option(None, "--comment")
) -> None:
    """Reject a ready run's candidate, or the command a waiting run asks for."""
    _decide(run_id, "reject", comment)


@policy_app.command("check")
@handles_errors
def policy_check(
    file: Path = typer.Argument(..., help="A policy TOML file."),
    repo: Path | None = typer.Option(
        None, "--repo", help="Check it with this repo's .corral.toml, against its HEAD's files."
    ),
) -> None:
    """Validate a policy file (exit 2 with `loc: msg` lines if it is malformed).

    Warns (exit 0) when it has no required gate and does not opt out with ``gates = []``:
    its runs would end ``unverified``; with ``--repo``, also for each ``scope.writable`` glob
    through which the agent could change no file of the repository's ``HEAD``.
    """
    from policies.load import load_policy
    from runner.ops.request import dead_writable

    at_head = _repo_at_head(repo) if repo is not None else None
    loaded = load_policy(file, repo_files=at_head[2] if at_head else None)
    out.print(f"ok: {m(file)} ({m(' < '.join(loaded.sources))})")
    policy = loaded.policy
    warnings = []
    if not policy.required_gates and not policy.gates_opted_out:
        warnings.append(
            "no required gate: a run ends `unverified` (exit 1) unless the repo's .corral.toml"
            " adds one; add a required [[gates]] table, or `gates = []` to opt out of verification"
        )
    if at_head is not None:
        warnings += dead_writable(loaded, at_head[0], at_head[1], f"{repo} at HEAD")[0]
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {m(warning)}", soft_wrap=True)


def _repo_at_head(repo: Path) -> tuple[Path, str, dict[str, bytes | None]]:
    """``--repo``'s common git dir, ``HEAD`` commit and policy files there; ``UsageError``
    naming the fix when it is no checkout with a commit."""
    from runner.ops.request import base_commit, open_repo, repo_policy_files

    path, common = open_repo(repo)
    base = base_commit(repo, common, "HEAD")
    return common, base, repo_policy_files(path, base, common)


@policy_app.command("show")
@handles_errors
def policy_show(
    policy: str | None = typer.Option(None, "--policy", help="Preset name or file."),
    repo: Path | None = typer.Option(None, "--repo", help="Include this repo's .corral.toml."),
) -> None:
    """Print the merged policy (preset < file < repo) as JSON."""
    from policies.load import load_policy

    files = _repo_at_head(repo)[2] if repo is not None else None
    loaded = load_policy(policy, repo_files=files)
    print(
        json.dumps(
            {"sources": loaded.sources, "policy": loaded.policy.model_dump(mode="json")}, indent=2
        )
    )


__all__ = ["policy_app"]
