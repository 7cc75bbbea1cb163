"""Gates: the runner's own checks of a candidate, each in a fresh sandbox, judged against a baseline.

A gate runs in a new container on an exported tree mounted read-only (network
none, the same limits as attempts), with test and tool configuration taken
from the base revision (``Workspace.compose``). Only the exit code of the
process the runner started counts; for pytest, junit XML written to a
runner-owned directory gives per-test outcomes.

The baseline (the same gates at the base commit) decides what is not the
agent's fault. A pytest gate passes when the run exits 0, or when every
failure already failed at base and at least one test was fixed; any test
that passed at base and now fails or is missing fails the gate. Another gate
passes on exit 0, or when base failed too and the candidate's output has no
line (numbers ignored) that base's did not. junit XML is parsed with the
standard library's ``xml.etree`` (expat refuses entity expansion bombs) from a
size-capped file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from policies.model import GatePolicy
from sandbox.interfaces import SandboxBackend
from sandbox.spec import SANDBOX_GID, SANDBOX_UID, Mount, SandboxSpec

log = logging.getLogger(__name__)

OUT_DIR = "/corral/out"
MAX_JUNIT_BYTES = 32 * 1024 * 1024
LOG_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class TestOutcomes:
    """Per-test results from junit XML (test ids ``file_or_class::name``)."""

    passed: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    skipped: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.skipped)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Candidate vs baseline, per test."""

    fixed: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    newly_failing: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


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


def is_pytest(gate: GatePolicy) -> bool:
    return gate.kind == "pytest" or (gate.kind == "auto" and "pytest" in gate.command)


def run_gate(
    backend: SandboxBackend,
    spec: SandboxSpec,
    gate: GatePolicy,
    tree: Path,
    out_dir: Path,
    baseline: GateResult | None = None,
) -> GateResult:
    """Run ``gate`` on ``tree`` in a fresh sandbox made from ``spec``; judge it against ``baseline``.

    ``out_dir`` is a host directory the runner owns (junit XML lands there).
    Raises ``SandboxError`` only when the sandbox cannot run at all.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    junit = out_dir / f"{gate.name}.xml"
    junit.unlink(missing_ok=True)
    if os.geteuid() == 0:
        os.chown(out_dir, SANDBOX_UID, SANDBOX_GID)
    env = dict(spec.env)
    env["MYPY_CACHE_DIR"] = "/tmp/.mypy_cache"
    env["RUFF_CACHE_DIR"] = "/tmp/.ruff_cache"
    if is_pytest(gate):
        env["PYTEST_ADDOPTS"] = (
            f"-p no:cacheprovider --junitxml={OUT_DIR}/{gate.name}.xml -o junit_family=xunit2"
        )
    gate_spec = spec.model_copy(
        update={
            "workspace": str(tree),
            "workspace_read_only": True,
            "mounts": (Mount(source=str(out_dir), target=OUT_DIR, read_only=False),),
            "env": env,
        }
    )
    sb = backend.start(gate_spec)
    try:
        result = sb.exec_once(gate.command, timeout=gate.timeout)
    finally:
        sb.close()
    text = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
    outcomes = parse_junit(junit) if is_pytest(gate) else None
    passed, reason, comparison, new_lines = judge(
        gate, result.exit_code, result.timed_out, text, outcomes, baseline
    )
    return GateResult(
        name=gate.name,
        required=gate.required,
        passed=passed,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        log=text[-LOG_CHARS:],
        reason=reason,
        outcomes=outcomes,
        comparison=comparison,
        new_lines=new_lines,
    )


def judge(
    gate: GatePolicy,
    exit_code: int,
    timed_out: bool,
    text: str,
    outcomes: TestOutcomes | None,
    baseline: GateResult | None,
) -> tuple[bool, str, Comparison | None, tuple[str, ...]]:
    """The verdict: (passed, reason, per-test comparison, new output lines)."""
    if timed_out:
        return False, f"timed out after {gate.timeout}s", None, ()
    comparison = None
    if outcomes is not None and baseline is not None and baseline.outcomes is not None:
        comparison = compare(baseline.outcomes, outcomes)
    if is_pytest(gate):
        if outcomes is None:
            ok = exit_code == 0 and baseline is None
            why = "exit 0" if ok else f"exit {exit_code}; no junit report was written"
            return ok, why, None, ()
        if comparison is not None and (comparison.newly_failing or comparison.missing):
            broken = list(comparison.newly_failing) + list(comparison.missing)
            return (
                False,
                f"{len(broken)} test(s) that passed at base now fail or are gone",
                comparison,
                (),
            )
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


def _new_failures(outcomes: TestOutcomes, comparison: Comparison) -> bool:
    return bool(outcomes.failed - set(comparison.still_failing))


def compare(base: TestOutcomes, cand: TestOutcomes) -> Comparison:
    """Per-test comparison of a candidate with the baseline."""
    return Comparison(
        fixed=tuple(sorted(base.failed & cand.passed)),
        still_failing=tuple(sorted(base.failed & cand.failed)),
        newly_failing=tuple(sorted(cand.failed - base.failed)),
        missing=tuple(sorted(base.passed - cand.passed - cand.failed - cand.skipped)),
    )


_NUMBERS = re.compile(r"\d+")


def _lines(text: str) -> set[str]:
    return {_NUMBERS.sub("N", line.strip()) for line in text.splitlines() if line.strip()}


def parse_junit(path: Path) -> TestOutcomes | None:
    """Outcomes from a junit XML file; None when it is missing, too big or unparsable."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_JUNIT_BYTES:
            return None
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        log.warning("junit report %s unreadable: %s", path, exc)
        return None
    passed, failed, skipped = set(), set(), set()
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(test_id)
        elif case.find("skipped") is not None:
            skipped.add(test_id)
        else:
            passed.add(test_id)
    return TestOutcomes(frozenset(passed), frozenset(failed - passed), frozenset(skipped))


def feedback(results: Sequence[GateResult], budget_chars: int) -> str:
    """Failed gates framed for the model: what failed, which tests, then the log's tail."""
    parts: list[str] = []
    for r in results:
        if r.passed:
            continue
        kind = "required" if r.required else "advisory"
        head = [f"# Gate `{r.name}` failed ({kind}): {r.reason}. Fix the problems below."]
        if r.comparison is not None:
            for label, items in (
                ("Newly failing", r.comparison.newly_failing),
                ("Missing (passed at base)", r.comparison.missing),
                ("Still failing", r.comparison.still_failing),
            ):
                if items:
                    head.append(f"{label}: {', '.join(items[:20])}")
        if r.new_lines:
            head.append("New output lines vs base:\n" + "\n".join(r.new_lines[:40]))
        parts.append("\n".join(head) + "\n" + r.log)
    text = "\n\n".join(parts)
    if len(text) <= budget_chars:
        return text
    return (
        text[: budget_chars // 3] + "\n[... gate output cut ...]\n" + text[-2 * budget_chars // 3 :]
    )


def gate_map(results: Sequence[GateResult]) -> Mapping[str, bool]:
    """``name -> passed`` (the shape run summaries and ``--json`` use)."""
    return {r.name: r.passed for r in results}


def clean_dir(path: Path) -> None:
    """Remove an exported gate tree or output directory (owned by the runner)."""
    shutil.rmtree(path, ignore_errors=True)
