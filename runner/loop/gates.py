"""Running a gate: the runner's own check of a candidate, in a fresh sandbox, judged by policy.

A gate runs in a new container on an exported tree mounted read-only (network
none, the same limits as attempts), with test and tool configuration taken
from the base revision (``Workspace.compose``). The verdict against the
baseline is ``policies.gates.judge`` (pure); this module runs the processes it
rests on:

- pytest gates write junit XML (``policies.junit``) into a private directory the
  runner creates per run, under a random file name, with a random suite name;
  a report that does not carry that name is rejected.
- when ``judge`` passes a pytest gate that did not exit 0 (every failure
  already failed at base, and something was fixed), the verdict would rest on
  the report; it is confirmed instead by running the gate again in a fresh
  container with those tests left out (``--deselect``; ``--ignore`` for a
  module that does not collect), and that run must exit 0 (and its own report
  show nothing wrong).

``source_findings`` reads the files a candidate added or changed from the run's
git dir (host side, nothing run) for ``policies.tamper``'s scan; the judge adds
what it finds to each gate's result (``policies.gates.with_findings``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from policies.gates import GateResult, is_pytest, judge
from policies.junit import (
    Comparison,
    TestOutcomes,
    compare,
    deselect_args,
    parse_junit_bytes,
    read_report,
)
from policies.policy import GatePolicy
from policies.tamper import is_python, scan
from policies.targets import without
from sandbox.git import HostGit
from sandbox.interfaces import SandboxBackend
from sandbox.spec import SANDBOX_GID, SANDBOX_UID, Mount, SandboxSpec
from sandbox.workspace import Workspace

log = logging.getLogger(__name__)

OUT_DIR = "/corral/out"
LOG_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class _Run:
    """One process the runner started for a gate, in its own container."""

    exit_code: int
    timed_out: bool
    duration_s: float
    text: str
    report: bytes | None
    outcomes: TestOutcomes | None


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
            flaky = frozenset(baseline.flaky) if baseline is not None else frozenset()
            passed, why, rerun = _confirm(
                backend, spec, gate, tree, out_dir, base, comparison, flaky
            )
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
    flaky: frozenset[str] = frozenset(),
) -> tuple[bool, str, _Run | None]:
    """Run the gate again without the tests still failing from base (and the tests flaky at
    base, never blamed); pass only on exit 0."""
    drop = sorted(set(comparison.still_failing) | flaky)
    args, why = deselect_args(drop, base.ran, tree)
    if why is not None:
        return False, f"not confirmed: {why}", None
    rerun = _run(backend, spec, gate, tree, out_dir, args)
    also = " or flaky" if flaky else ""
    left_out = f"the rerun without the {len(drop)} test(s) failing at base too{also}"
    if rerun.timed_out:
        return False, f"not confirmed: {left_out} timed out after {gate.timeout}s", rerun
    if rerun.exit_code != 0:
        return False, f"not confirmed: {left_out} exited {rerun.exit_code}", rerun
    if rerun.outcomes is None:
        return False, f"not confirmed: {left_out} wrote no junit report", rerun
    rest = without(TestOutcomes(base.passed, base.failed - set(drop), base.skipped), flaky)
    c = compare(rest, rerun.outcomes)
    if rerun.outcomes.failed or c.missing:
        bad = sorted(rerun.outcomes.failed | set(c.missing))
        return False, f"not confirmed: {left_out} reports {', '.join(bad[:5])}", rerun
    return True, f"confirmed: {left_out} exited 0", rerun


def source_findings(ws: Workspace, rev: str) -> tuple[str, ...]:
    """The tamper findings (``policies.tamper``) in what ``rev`` adds or changes, as text;
    a changed file's base version is scanned too (what it had is not the candidate's).

    Raises ``GitError`` when host git cannot read the blobs.
    """
    new, old = ws.tree_listing(rev), ws.tree_listing(ws.base)
    paths = [c.path for c in ws.changes(rev) if new.get(c.path, ("160000",))[0] != "160000"]
    python = [p for p in paths if is_python(p)]
    changed = [p for p in python if p in old]
    blobs = HostGit(ws.git_dir).cat_blobs(
        [new[p][1] for p in python] + [old[p][1] for p in changed]
    )
    after = dict(zip(python, blobs[: len(python)], strict=True))
    before = dict(zip(changed, blobs[len(python) :], strict=True))
    found = scan({p: after.get(p) or b"" for p in paths}, {p: b or b"" for p, b in before.items()})
    return tuple(str(f) for f in found)


def clean_dir(path: Path) -> None:
    """Remove an exported gate tree or output directory (owned by the runner)."""
    shutil.rmtree(path, ignore_errors=True)
