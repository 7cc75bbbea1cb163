"""Gates: the runner's own checks of a candidate, each in a fresh sandbox, judged against a baseline.

A gate runs in a new container on an exported tree mounted read-only (network
none, the same limits as attempts), with test and tool configuration taken
from the base revision (``Workspace.compose``).

Only the exit code of a process the runner started counts as a pass. A gate
passes on exit 0, or when its failures are not the candidate's fault, which
is decided against the baseline (the same gates at the base commit):

- pytest gates write junit XML (``policies.junit``) into a private directory the
  runner creates per run, under a random file name, with a random suite name;
  a report that does not carry that name is rejected. The report is still
  written by a process running the candidate's code, so it only ever counts
  *against* the candidate: any test that ran (passed or failed) at base and
  now fails, is skipped, is xfailed or is gone fails the gate, exit 0 or not.
  When the exit code is not 0 and every failure in the report already failed
  at base (and something was fixed), the verdict would rest on the report; it
  is confirmed instead by running the gate again in a fresh container with
  those tests left out (``--deselect``; ``--ignore`` for a module that does not
  collect), and that run must exit 0 (and its own report show nothing wrong).
- other gates pass on exit 0, or when base failed too and the candidate's
  output has no line (numbers ignored) that base's did not.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from policies.junit import MAX_JUNIT_BYTES as MAX_JUNIT_BYTES
from policies.junit import Comparison as Comparison
from policies.junit import TestOutcomes as TestOutcomes
from policies.junit import compare as compare
from policies.junit import deselect_args, parse_junit_bytes, read_report
from policies.junit import parse_junit as parse_junit
from policies.policy import GatePolicy
from sandbox.interfaces import SandboxBackend
from sandbox.spec import SANDBOX_GID, SANDBOX_UID, Mount, SandboxSpec

log = logging.getLogger(__name__)

OUT_DIR = "/corral/out"
LOG_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's run: exit code and log, per-test outcomes if known, and the verdict."""

    name: str
    required: bool
    passed: bool
    exit_code: int
    timed_out: bool
    duration_s: float
    log: str
    reason: str
    outcomes: TestOutcomes | None = None
    comparison: Comparison | None = None
    new_lines: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class _Run:
    """One process the runner started for a gate, in its own container."""

    exit_code: int
    timed_out: bool
    duration_s: float
    text: str
    report: bytes | None
    outcomes: TestOutcomes | None


def is_pytest(gate: GatePolicy) -> bool:
    return gate.kind == "pytest" or (gate.kind == "auto" and "pytest" in gate.command)


def run_gate(
    backend: SandboxBackend,
    spec: SandboxSpec,
    gate: GatePolicy,
    tree: Path,
    out_dir: Path,
    baseline: GateResult | None = None,
    prepare: Callable[[], object] | None = None,
) -> GateResult:
    """Run ``gate`` on ``tree`` in a fresh sandbox made from ``spec``; judge it against ``baseline``.

    ``prepare()`` fills ``tree`` (a directory that exists already and that it
    must not replace) on a thread of its own while the container starts; the
    gate's command runs only once it has returned, and what it raises is
    raised here, the container closed. ``out_dir`` is a host directory the
    runner owns; it is never mounted. Each
    run gets a private directory inside it, removed once the container is gone;
    afterwards ``out_dir/<gate>.xml`` holds the accepted junit report of the
    first run, or nothing when there was none the runner accepts.
    Raises ``SandboxError`` only when the sandbox cannot run at all, and
    ``SandboxNotRemoved`` (a ``SandboxError``) when its container outlives
    ``close``: the runner then ends the run as ``runtime`` (resumable) rather
    than trust a verdict while a gate process may still run.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    accepted = out_dir / f"{gate.name}.xml"
    accepted.unlink(missing_ok=True)
    first = _run(backend, spec, gate, tree, out_dir, prepare=prepare)
    if first.outcomes is not None and first.report is not None:
        accepted.write_bytes(first.report)
    passed, reason, comparison, new_lines = judge(
        gate, first.exit_code, first.timed_out, first.text, first.outcomes, baseline
    )
    text, duration = first.text, first.duration_s
    if passed and is_pytest(gate) and first.exit_code != 0:
        # The verdict would rest on the report: an exit code has to confirm it.
        base = baseline.outcomes if baseline is not None else None
        rerun = None
        if base is None or comparison is None:  # judge() passes neither; fail closed all the same
            passed, why = False, "not confirmed: no baseline report"
        else:
            passed, why, rerun = _confirm(backend, spec, gate, tree, out_dir, base, comparison)
        reason = f"{reason}; {why}"
        if rerun is not None and comparison is not None:
            duration += rerun.duration_s
            n = len(comparison.still_failing)
            text = f"{text}\n[confirmation run, {n} test(s) failing at base left out]\n{rerun.text}"
    return GateResult(
        name=gate.name,
        required=gate.required,
        passed=passed,
        exit_code=first.exit_code,
        timed_out=first.timed_out,
        duration_s=duration,
        log=text[-LOG_CHARS:],
        reason=reason,
        outcomes=first.outcomes,
        comparison=comparison,
        new_lines=new_lines,
    )


def _run(
    backend: SandboxBackend,
    spec: SandboxSpec,
    gate: GatePolicy,
    tree: Path,
    out_dir: Path,
    extra: Sequence[str] = (),
    prepare: Callable[[], object] | None = None,
) -> _Run:
    """Start the gate's command in a new container; read its junit report after it is gone.

    ``prepare`` runs on a worker thread while the container starts (see ``run_gate``).
    """
    private = out_dir / f".run-{secrets.token_hex(8)}"
    private.mkdir(mode=0o700)
    report_name, suite = f"junit-{secrets.token_hex(8)}.xml", f"corral-{secrets.token_hex(16)}"
    try:
        if os.geteuid() == 0:
            os.chown(private, SANDBOX_UID, SANDBOX_GID)
        env = dict(spec.env)
        env["MYPY_CACHE_DIR"] = "/tmp/.mypy_cache"
        env["RUFF_CACHE_DIR"] = "/tmp/.ruff_cache"
        if is_pytest(gate):
            opts = ["-p", "no:cacheprovider", f"--junitxml={OUT_DIR}/{report_name}",
                    "-o", "junit_family=xunit2", "-o", f"junit_suite_name={suite}", *extra]  # fmt: skip
            env["PYTEST_ADDOPTS"] = shlex.join(opts)
        gate_spec = spec.model_copy(
            update={
                "workspace": str(tree),
                "workspace_read_only": True,
                "mounts": (Mount(source=str(private), target=OUT_DIR, read_only=False),),
                "env": env,
            }
        )
        with ThreadPoolExecutor(1, thread_name_prefix="corral-gate-tree") as pool:
            prepared = pool.submit(prepare) if prepare is not None else None
            sb = backend.start(gate_spec)  # leaving the block waits for `prepare`, also on errors
            try:
                if prepared is not None:
                    prepared.result()
                result = sb.exec_once(gate.command, timeout=gate.timeout)
            finally:
                sb.close()
        report = read_report(private / report_name) if is_pytest(gate) else None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    outcomes = None if report is None else parse_junit_bytes(report, suite, f"junit of {gate.name}")
    text = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
    return _Run(result.exit_code, result.timed_out, result.duration_s, text, report, outcomes)


def _confirm(
    backend: SandboxBackend,
    spec: SandboxSpec,
    gate: GatePolicy,
    tree: Path,
    out_dir: Path,
    base: TestOutcomes,
    comparison: Comparison,
) -> tuple[bool, str, _Run | None]:
    """Run the gate again without the tests still failing from base; pass only on exit 0."""
    drop = comparison.still_failing
    args, why = deselect_args(drop, base.ran, tree)
    if why is not None:
        return False, f"not confirmed: {why}", None
    rerun = _run(backend, spec, gate, tree, out_dir, args)
    left_out = f"the rerun without the {len(drop)} test(s) failing at base too"
    if rerun.timed_out:
        return False, f"not confirmed: {left_out} timed out after {gate.timeout}s", rerun
    if rerun.exit_code != 0:
        return False, f"not confirmed: {left_out} exited {rerun.exit_code}", rerun
    if rerun.outcomes is None:
        return False, f"not confirmed: {left_out} wrote no junit report", rerun
    rest = TestOutcomes(base.passed, base.failed - set(drop), base.skipped)
    c = compare(rest, rerun.outcomes)
    if rerun.outcomes.failed or c.missing:
        bad = sorted(rerun.outcomes.failed | set(c.missing))
        return False, f"not confirmed: {left_out} reports {', '.join(bad[:5])}", rerun
    return True, f"confirmed: {left_out} exited 0", rerun


def judge(
    gate: GatePolicy,
    exit_code: int,
    timed_out: bool,
    text: str,
    outcomes: TestOutcomes | None,
    baseline: GateResult | None,
) -> tuple[bool, str, Comparison | None, tuple[str, ...]]:
    """The verdict on one run: (passed, reason, per-test comparison, new output lines).

    For pytest, a pass with a non-zero ``exit_code`` still needs ``run_gate``'s
    confirmation run.
    """
    if timed_out:
        return False, f"timed out after {gate.timeout}s", None, ()
    comparison = None
    if outcomes is not None and baseline is not None and baseline.outcomes is not None:
        comparison = compare(baseline.outcomes, outcomes)
    if is_pytest(gate):
        if outcomes is None:
            ok = exit_code == 0 and baseline is None
            why = "exit 0" if ok else f"exit {exit_code}; no junit report the runner accepts"
            return ok, why, None, ()
        if comparison is not None and (comparison.newly_failing or comparison.missing):
            return False, _against(comparison, outcomes), comparison, ()
        if exit_code == 0:
            return True, f"{len(outcomes.passed)} passed", comparison, ()
        if comparison is not None and comparison.fixed and not _new_failures(outcomes, comparison):
            n = len(comparison.still_failing)
            return (
                True,
                f"fixed {len(comparison.fixed)}; {n} failing at base too (not blamed)",
                comparison,
                (),
            )
        return False, f"exit {exit_code}: {len(outcomes.failed)} failed", comparison, ()
    if exit_code == 0:
        return True, "exit 0", None, ()
    if baseline is not None and baseline.exit_code != 0:
        new = tuple(sorted(_lines(text) - _lines(baseline.log)))
        if not new:
            return True, f"exit {exit_code}, as at base; no new problems (not blamed)", None, ()
        return False, f"exit {exit_code}; {len(new)} new line(s) of output vs base", None, new
    return False, f"exit {exit_code}", None, ()


def _against(c: Comparison, outcomes: TestOutcomes) -> str:
    skipped, gone = _split_missing(c, outcomes)
    counts = [(len(c.newly_failing), "now fail"), (len(skipped), "are skipped or xfailed"),
              (len(gone), "are gone from the report")]  # fmt: skip
    return "tests that ran at base " + ", ".join(f"{n} {what}" for n, what in counts if n)


def _split_missing(c: Comparison, outcomes: TestOutcomes | None) -> tuple[list[str], list[str]]:
    skipped = outcomes.skipped if outcomes is not None else frozenset()
    return [t for t in c.missing if t in skipped], [t for t in c.missing if t not in skipped]


def _new_failures(outcomes: TestOutcomes, comparison: Comparison) -> bool:
    return bool(outcomes.failed - set(comparison.still_failing))


_NUMBERS = re.compile(r"\d+")


def _lines(text: str) -> set[str]:
    return {_NUMBERS.sub("N", line.strip()) for line in text.splitlines() if line.strip()}


#: Most test ids and new output lines listed per gate in the feedback.
LIST_ITEMS, LIST_LINES = 20, 40


def feedback(results: Sequence[GateResult], budget_chars: int) -> str:
    """Failed gates framed for the model: what failed, which tests, then the log's tail.

    Each failed gate's heading and test lists come first and are kept; the logs
    share what is left of ``budget_chars`` and keep their ends (where pytest
    prints its summary). The whole text never exceeds ``budget_chars``.
    """
    heads: list[str] = []
    logs: list[str] = []
    for r in results:
        if r.passed:
            continue
        kind = "required" if r.required else "advisory"
        head = [f"# Gate `{r.name}` failed ({kind}): {r.reason}. Fix the problems below."]
        if r.comparison is not None:
            skipped, gone = _split_missing(r.comparison, r.outcomes)
            for label, items in (
                ("Newly failing", r.comparison.newly_failing),
                ("Skipped or xfailed now, ran at base (do not skip tests)", skipped),
                ("Gone from the report, ran at base", gone),
                ("Still failing (failed at base too)", r.comparison.still_failing),
            ):
                if items:
                    more = f" (+{len(items) - LIST_ITEMS} more)" if len(items) > LIST_ITEMS else ""
                    head.append(f"{label}: {', '.join(items[:LIST_ITEMS])}{more}")
        if r.new_lines:
            head.append("New output lines vs base:\n" + "\n".join(r.new_lines[:LIST_LINES]))
        heads.append("\n".join(head))
        logs.append(r.log)
    if not heads:
        return ""
    room = max(0, budget_chars - sum(len(h) + 2 for h in heads)) // len(heads)
    parts = [h + "\n" + _tail(text, room) for h, text in zip(heads, logs, strict=True)]
    return "\n\n".join(parts)[:budget_chars]


def _tail(text: str, chars: int) -> str:
    cut = "[... gate output cut ...]\n"
    if len(text) <= chars:
        return text
    if chars <= len(cut):
        return ""
    return cut + text[len(text) - (chars - len(cut)) :]


def gate_map(results: Sequence[GateResult]) -> Mapping[str, bool]:
    """``name -> passed`` (the shape run summaries and ``--json`` use)."""
    return {r.name: r.passed for r in results}


def clean_dir(path: Path) -> None:
    """Remove an exported gate tree or output directory (owned by the runner)."""
    shutil.rmtree(path, ignore_errors=True)
