"""Per-test outcomes from pytest's junit XML, the comparison with a baseline, and pytest node ids.

Test ids are junit's ``classname::name`` (``tests.test_calc::test_add``); a
module that failed to collect is ``::tests.test_calc``. junit XML is parsed
with the standard library's ``xml.etree`` (expat refuses entity expansion
bombs) from size-capped bytes read without following links.

A report the gate container wrote is evidence the candidate could have forged
(the gate runs the candidate's code); it is only ever used to find problems or
to choose what a confirmation run leaves out, never as a pass by itself (see
``policies.gates``). ``parse_junit_bytes`` with a ``suite`` rejects a report whose
single test suite does not carry the name the runner chose for that run.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_JUNIT_BYTES = 32 * 1024 * 1024
#: The most characters of ``--deselect``/``--ignore`` arguments a confirmation run may carry
#: (they travel in ``PYTEST_ADDOPTS``; Linux caps one environment string at 128 KiB).
MAX_DESELECT_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class TestOutcomes:
    """Per-test results from junit XML; ``skipped`` holds skips and xfails alike."""

    passed: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    skipped: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.skipped)

    @property
    def ran(self) -> frozenset[str]:
        """Tests that ran to a verdict (passed or failed)."""
        return self.passed | self.failed


@dataclass(frozen=True, slots=True)
class Comparison:
    """Candidate vs baseline, per test.

    ``missing``: tests that ran (passed or failed) at base and did not run in the
    candidate: skipped, xfailed, or absent from the report. Like ``newly_failing``
    they count against the candidate.
    """

    fixed: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    newly_failing: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def is_module_entry(test_id: str) -> bool:
    """True for a module's own entry (a collection error), ``::tests.test_x``."""
    return test_id.startswith("::")


def compare(base: TestOutcomes, cand: TestOutcomes) -> Comparison:
    """Per-test comparison of a candidate with the baseline.

    A module that failed to collect at base and yields tests in the candidate
    counts as fixed, not missing.
    """
    cand_modules = {t.split("::", 1)[0] for t in cand.ran}
    collected = {
        t for t in base.failed - cand.failed if is_module_entry(t) and _yields(t[2:], cand_modules)
    }
    return Comparison(
        fixed=tuple(sorted((base.failed & cand.passed) | collected)),
        still_failing=tuple(sorted(base.failed & cand.failed)),
        newly_failing=tuple(sorted(cand.failed - base.failed)),
        missing=tuple(sorted(base.ran - cand.ran - collected)),
    )


def _yields(module: str, classnames: set[str]) -> bool:
    return any(c == module or c.startswith(module + ".") for c in classnames)


def parse_junit(path: Path, suite: str | None = None) -> TestOutcomes | None:
    """Outcomes from a junit XML file; None when it is missing, not a regular file, too big,
    unparsable or (with ``suite``) not the runner's report. Never raises."""
    data = read_report(path)
    return None if data is None else parse_junit_bytes(data, suite, str(path))


def read_report(path: Path) -> bytes | None:
    """A report's bytes (symlinks not followed, at most ``MAX_JUNIT_BYTES``); None when there is
    no regular file of that size there. Never raises."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP):
            log.warning("junit report %s unreadable: %s", path, exc)
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JUNIT_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_JUNIT_BYTES + 1)
        return data if len(data) <= MAX_JUNIT_BYTES else None
    except OSError as exc:
        log.warning("junit report %s unreadable: %s", path, exc)
        return None
    finally:
        os.close(fd)


def parse_junit_bytes(
    data: bytes, suite: str | None = None, where: str = "junit report"
) -> TestOutcomes | None:
    """Outcomes from junit XML bytes; None when unparsable or, with ``suite``, when the report
    is not one test suite of that name (pytest's ``-o junit_suite_name``). Never raises."""
    import xml.etree.ElementTree as ET  # here: reading a run's results needs no XML parser

    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        log.warning("%s unparsable: %s", where, exc)
        return None
    if suite is not None:
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        if len(suites) != 1 or suites[0].get("name") != suite:
            log.warning("%s rejected: not the report of the runner's run", where)
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
    return TestOutcomes(
        frozenset(passed - failed), frozenset(failed), frozenset(skipped - passed - failed)
    )


def node_id(test_id: str, tree: Path) -> str | None:
    """The pytest node id of a junit test id, from the test files in ``tree`` (pytest's rootdir).

    junit's classname is the node id's path with ``/`` as ``.`` and ``.py``
    dropped, then the classes; the longest dotted prefix that is a regular
    ``.py`` file under ``tree`` is the path. None when no prefix is (a report
    from another rootdir, a directory with a dot in its name, a non-Python
    test file). A module's own entry maps to its path.
    """
    classname, _, name = test_id.partition("::")
    if is_module_entry(test_id):
        parts, rest = name.split("."), []
    else:
        parts, rest = classname.split("."), [name]
    for k in range(len(parts), 0, -1):
        rel = "/".join(parts[:k]) + ".py"
        if _is_regular(tree / rel):
            return "::".join([rel, *parts[k:], *rest])
    return None


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def deselect_args(
    drop: Iterable[str], keep: Iterable[str], tree: Path
) -> tuple[list[str], str | None]:
    """pytest arguments that leave out exactly the tests ``drop`` and none of ``keep``.

    ``--deselect NODEID`` for a test, ``--ignore PATH`` for a module's own entry
    (a module that fails to collect). Returns ``(args, None)``, or ``([], why)``
    when it cannot be done exactly: a test id with no file in ``tree``, a node id
    that is a prefix of a kept test's (pytest deselects by prefix:
    ``test_add`` would take ``test_add_many`` along), or more than
    ``MAX_DESELECT_CHARS`` of arguments. Never raises.
    """
    args: list[str] = []
    dropped: list[str] = []
    drop = sorted(set(drop))
    for test_id in drop:
        nid = node_id(test_id, tree)
        if nid is None:
            return [], f"no test file in the tree for {test_id}"
        dropped.append(nid)
        args += ["--ignore", nid] if is_module_entry(test_id) else ["--deselect", nid]
    if sum(len(a) + 3 for a in args) > MAX_DESELECT_CHARS:
        return [], f"{len(drop)} tests to leave out are too many for one command line"
    kept = sorted(
        {n for t in set(keep) - set(drop) if (n := node_id(t, tree)) is not None} - set(dropped)
    )
    for nid in dropped:
        i = bisect.bisect_left(kept, nid)
        if i < len(kept) and kept[i].startswith(nid):
            return [], f"leaving out {nid} would also leave out {kept[i]}"
    return args, None
