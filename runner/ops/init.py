"""``corral init``: a proposed ``.corral.toml`` for a repository, from its committed revision.

``propose`` reads the commit (never the checkout, which may be dirty) through corral's
hardened host git: one ``ls-tree`` for the paths and one ``cat-file --batch`` for the
few files the detectors of ``runner.ops.detect`` and ``runner.ops.detect_python``
look into. No repository code runs.
``Proposal.toml`` renders it as TOML with a comment above each choice naming what in
the repository led to it; it uses only the keys of ``policies.policy``, and
``load_policy`` accepts it. No TOML writer is installed, so the text is written here:
every string goes through ``json.dumps``, whose output is a valid TOML basic string.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from policies.load import REPO_FILE
from policies.policy import DEFAULT_TEST_GLOBS
from runner.errors import UsageError
from runner.ops.detect import (
    Choice,
    ProposedGate,
    Tree,
    detect_make,
    detect_node,
    files_to_read,
)
from runner.ops.detect_python import detect_python
from sandbox.errors import GitError
from sandbox.git import HostGit, find_git_dirs
from sandbox.gitdir import listing
from sandbox.scan import MODE_EXEC, MODE_FILE

NOTHING_FOUND = (
    "found no Python (pyproject.toml, setup.py, requirements*.txt), Node (package.json) or make"
    " (a Makefile with a test target) project: the proposal has no gates, and no run can be"
    " ready_for_review without a required gate that passes; add a [[gates]] entry"
)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed repository policy and the reasons for each choice."""

    commit: str
    kinds: tuple[str, ...]
    """What the repository was recognised as: ``python``, ``node``, ``make`` (empty: nothing)."""
    setup: tuple[Choice, ...]
    gates: tuple[ProposedGate, ...]
    writable: tuple[Choice, ...]
    """Empty: the default (every file but the protected ones and the tests)."""
    extra_tests: tuple[str, ...]
    """Test globs protected on top of the policy's default ones."""
    notes: tuple[str, ...]
    """What the user should know before committing it (also comments in the TOML)."""
    packages: tuple[Choice, ...] = ()
    """Debian packages corral adds to the image (``[sandbox] packages``)."""

    def toml(self) -> str:
        """The proposal as ``.corral.toml`` text, a comment above each choice."""
        head = [
            f"# Proposed by `corral init` from commit {self.commit[:12]}: review it, then commit it.",
            "# corral reads .corral.toml from a run's base commit, never from the checkout.",
            "# It builds on the default preset; `corral policy show --repo .` shows the result.",
            f"# Recognised: {', '.join(self.kinds) or 'nothing'}.",
            *(_comment(f"note: {n}") for n in self.notes),
        ]
        scope = ["", "[scope]"]
        if self.writable:
            scope += _array("writable", self.writable)
        else:
            scope.append("# writable: every file but the protected ones (the default)")
        if self.extra_tests:
            scope.append("# test files of this kind of project are protected like the defaults")
            scope.append(f"tests = {_list([*DEFAULT_TEST_GLOBS, *self.extra_tests])}")
        scope.append("# tests stay protected; allow_tests = true lets the agent change them")
        sandbox = ["", "[sandbox]", *_array("packages", self.packages)] if self.packages else []
        setup = ["", "[setup]", *_array("commands", self.setup)] if self.setup else []
        gates: list[str] = []
        for gate in self.gates:
            gates += [
                "",
                "[[gates]]",
                _comment(gate.why),
                f"name = {json.dumps(gate.name)}",
                f"command = {json.dumps(gate.command)}",
                f"required = {str(gate.required).lower()}",
            ]
        return "\n".join([*head, *scope, *sandbox, *setup, *gates]) + "\n"


def propose(repo: Path, base: str = "HEAD") -> Proposal:
    """A ``.corral.toml`` for ``repo`` as committed at ``base`` (its checkout is not read).

    Raises ``UsageError`` when ``repo`` is not a directory or ``base`` names no commit,
    ``GitError`` (a ``UserError``) when ``repo`` is not a git repository or git fails.
    """
    if not Path(repo).is_dir():
        raise UsageError(f"--repo {repo} is not a directory")
    _, common = find_git_dirs(Path(repo).resolve())
    git = HostGit(common)
    try:
        commit = git.rev_parse(base)
    except GitError as exc:
        raise UsageError(
            f"{repo} has no commit {base}: commit the project first"
            " (corral init reads the committed revision, not the checkout)"
        ) from exc
    files, _ = listing(git, commit)
    regular = {p: sha for p, (mode, sha) in files.items() if mode in (MODE_FILE, MODE_EXEC)}
    wanted = files_to_read(regular)
    blobs = git.cat_blobs([regular[p] for p in wanted])
    texts = {p: b.decode(errors="replace") for p, b in zip(wanted, blobs, strict=True) if b}
    proposal = combine(commit, Tree(frozenset(regular), texts))
    if REPO_FILE in files:
        note = f"the commit has a {REPO_FILE} already: compare before replacing it"
        return replace(proposal, notes=(*proposal.notes, note))
    return proposal


def combine(commit: str, tree: Tree) -> Proposal:
    """Every detector's findings on ``tree`` as one proposal; ``make test`` only without another gate."""
    found = [f for f in (detect_python(tree), detect_node(tree)) if f is not None]
    make = detect_make(tree)
    notes: list[str] = []
    if make is not None and any(f.gates for f in found):
        notes.append("the Makefile has a test target too; the gates run the tests directly")
    elif make is not None:
        found.append(make)
    gates: list[ProposedGate] = []
    for f in found:
        for gate in f.gates:
            taken = any(g.name == gate.name for g in gates)
            gates.append(replace(gate, name=f"{f.kind}-{gate.name}") if taken else gate)
    if not found:
        notes.append(NOTHING_FOUND)
    return Proposal(
        commit=commit,
        kinds=tuple(f.kind for f in found),
        setup=tuple(s for f in found for s in f.setup),
        gates=tuple(gates),
        writable=_unique(c for f in found for c in f.writable),
        extra_tests=tuple(dict.fromkeys(t for f in found for t in f.tests)),
        notes=(*(n for f in found for n in f.notes), *notes),
        packages=_unique(c for f in found for c in f.packages),
    )


def write_proposal(repo: Path, proposal: Proposal, *, force: bool = False) -> Path:
    """Write ``repo/.corral.toml`` (a link there is replaced, never followed).

    Raises ``UsageError`` when the file exists and ``force`` is not set.
    """
    path = Path(repo) / REPO_FILE
    if os.path.lexists(path) and not force:
        raise UsageError(
            f"{path} exists: compare it with `corral init --repo {shlex.quote(str(repo))}`"
            " and pass --force to overwrite it"
        )
    fd, tmp = tempfile.mkstemp(prefix=".corral.toml.", dir=repo)
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(proposal.toml())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _unique(choices: Iterable[Choice]) -> tuple[Choice, ...]:
    seen: dict[str, Choice] = {}
    for choice in choices:
        seen.setdefault(choice.value, choice)
    return tuple(seen.values())


def _array(key: str, choices: Iterable[Choice]) -> list[str]:
    """``key = [...]`` one value a line, each group of values under the comment of its reason."""
    lines, last = [f"{key} = ["], None
    for choice in choices:
        if choice.why != last:
            lines.append("  " + _comment(choice.why))
            last = choice.why
        lines.append(f"  {json.dumps(choice.value)},")
    return [*lines, "]"]


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _comment(text: str) -> str:
    """One TOML comment line: control characters (which a comment may not hold) become spaces."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return f"# {flat[:300]}"
