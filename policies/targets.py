"""Target tests, hidden tests and flaky tests: which per-test outcomes a verdict rests on.

Pure, like ``policies.gates``: outcomes in, verdicts out.

- **Targets** are the tests that reproduce the bug, named as pytest node ids
  (``tests/test_x.py::TestC::test_y[1-2]``). A candidate is ready only if each
  ran and passed in the runner's own junit report of a required gate
  (``verdicts``). A node id maps to junit's ``classname::name`` exactly as
  pytest's junitxml plugin builds it (``mangle_test_address``: the path's ``/``
  become ``.``, ``.py`` is dropped, the classes join the module, parameters
  stay with the name); ``node_id`` in ``policies.junit`` is the other way. A
  target without parameters also names each of its parametrized cases.
- **Hidden tests** are a test patch applied to the gates' input only, never to
  the agent's tree (``runner.loop.hidden``); ``HiddenTests.redact`` takes every
  mention of the files it touches out of what the agent is told.
- **Flaky tests** are tests whose outcome differs across repeated runs of a
  gate at base (``flaky``): reported, never blamed, never counted as fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from policies.junit import TestOutcomes

#: Longest target id accepted.
MAX_ID_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_test_id(value: str) -> str:
    """``value`` when it is a pytest node id of a test in a ``.py`` file; else ``ValueError``
    saying what is wrong (relative path, ``::`` then the test, no control characters)."""
    path, sep, rest = value.partition("::")
    problem = None
    if not sep or not rest or any(not part for part in rest.partition("[")[0].split("::")):
        problem = "needs PATH.py::TEST (a pytest node id, e.g. tests/test_x.py::test_y)"
    elif not path.endswith(".py") or path.startswith("/") or ".." in path.split("/"):
        problem = "the part before `::` must be a relative path to a .py file"
    elif _CONTROL.search(value) or value != value.strip() or len(value) > MAX_ID_CHARS:
        problem = "no surrounding spaces, control characters or more than 1000 characters"
    if problem is not None:
        raise ValueError(f"test id {value!r}: {problem}")
    return value


def junit_id(node_id: str) -> str:
    """The junit ``classname::name`` of a pytest node id (``policies.junit``'s test ids)."""
    address, bracket, params = node_id.partition("[")
    names = address.split("::")
    names[0] = _module(names[0])
    names[-1] += bracket + params
    return ".".join(names[:-1]) + "::" + names[-1]


def _module(path: str) -> str:
    """junit's classname of a test file: ``tests/test_x.py`` -> ``tests.test_x``."""
    return re.sub(r"\.py$", "", path.replace("/", "."))


def _cases(target: str, ids: Iterable[str]) -> set[str]:
    """The junit ids in ``ids`` that ``target`` names: itself, or its parametrized cases."""
    jid = junit_id(target)
    return {t for t in ids if t == jid or ("[" not in jid and t.startswith(jid + "["))}


def verdicts(targets: Iterable[str], outcomes: TestOutcomes | None) -> dict[str, str]:
    """Each target's verdict in one report: ``passed``, ``failed``, ``skipped`` or ``did not
    run`` (absent from the report, or no report the runner accepts)."""
    found: dict[str, str] = {}
    for target in targets:
        if outcomes is None:
            found[target] = "did not run"
            continue
        if _cases(target, outcomes.failed):
            found[target] = "failed"
        elif _cases(target, outcomes.passed):
            found[target] = "passed"
        elif _cases(target, outcomes.skipped):
            found[target] = "skipped"
        else:
            found[target] = "did not run"
    return found


def problems(found: Mapping[str, str]) -> list[str]:
    """The targets that did not pass, as reasons naming them (``tests/x.py::t did not run``)."""
    return [
        f"{t} {'was skipped' if v == 'skipped' else v}" for t, v in found.items() if v != "passed"
    ]


class Tally:
    """The targets of one revision's gates, gate by gate, in the order the gates run.

    ``checkers`` are the required pytest gates, in order. A gate's own targets
    (``[[gates]] must_pass``) are judged on its report alone. The run's targets
    (``targets.must_pass``) must pass in a checker's report and fail in none: a
    checker whose report has one failed or skipped is blamed for it, and one
    that ran in no checker is blamed on the last checker, where that is known.
    """

    def __init__(self, checkers: Sequence[str], run_targets: Sequence[str]) -> None:
        self.checkers, self.run_targets = list(checkers), tuple(run_targets)
        self.seen: set[str] = set()  # run targets some checker's report had

    def check(self, gate: str, own: Sequence[str], outcomes: TestOutcomes | None) -> dict[str, str]:
        """The verdicts this gate answers for: its own targets, and the run's it is blamed for
        or saw pass (``verdicts``' words); empty for a gate that is not a checker."""
        if gate not in self.checkers:
            return {}
        found = verdicts(own, outcomes)
        for target, verdict in verdicts(self.run_targets, outcomes).items():
            if verdict != "did not run":
                self.seen.add(target)
                found.setdefault(target, verdict)
            elif gate == self.checkers[-1] and target not in self.seen:
                found.setdefault(target, verdict)
        return found


def flaky(runs: Sequence[TestOutcomes]) -> frozenset[str]:
    """Tests whose outcome (passed, failed, skipped or absent) is not the same in every run."""
    if len(runs) < 2:
        return frozenset()

    def outcome(o: TestOutcomes, t: str) -> str:
        return "p" if t in o.passed else "f" if t in o.failed else "s" if t in o.skipped else "-"

    every = frozenset().union(*(o.passed | o.failed | o.skipped for o in runs))
    return frozenset(t for t in every if len({outcome(o, t) for o in runs}) > 1)


def without(outcomes: TestOutcomes, tests: frozenset[str]) -> TestOutcomes:
    """``outcomes`` with ``tests`` left out (flaky tests, before a comparison)."""
    if not tests:
        return outcomes
    return TestOutcomes(outcomes.passed - tests, outcomes.failed - tests, outcomes.skipped - tests)


#: What a mention of a hidden test becomes in anything the agent is told.
REDACTED = "[hidden test]"


@dataclass(frozen=True, slots=True)
class HiddenTests:
    """A test patch the gates run and the agent never sees: its file and the paths it touches."""

    file: str
    """Where the patch came from (``--hidden-tests``, ``targets.hidden_tests``), for the review."""
    paths: tuple[str, ...]
    """The repository paths the patch adds, changes or removes."""

    def redact(self, text: str) -> str:
        """``text`` with every mention of a hidden path, as a path (``tests/test_x.py``,
        ``tests/test_x.py::test_y``) or as junit's module (``tests.test_x::test_y``), replaced by
        ``REDACTED``, up to the next white space."""
        forms = set(self.paths) | {_module(p) for p in self.paths}
        if not forms:
            return text
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        return re.sub(rf"(?:{alternatives})[^\s,;]*", REDACTED, text)
