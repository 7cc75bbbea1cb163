"""The ``node`` and ``make`` presets end to end, as a user would run them: ``--policy node`` on an
npm project with a real dependency from the npm registry, ``--policy make`` on a project whose
tests run with ``make test``. The image gets the Debian packages the preset names
(``[sandbox] packages``), set-up's ``node_modules`` is in the gate's tree and never in the patch.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runner.ops.init import propose
from runner.store.runs import RunStore
from tests.support.demo import FIXED_MUL
from tests.support.gitfixtures import commit, git
from tests.support.runenv import Env

pytestmark = pytest.mark.docker

PACKAGE = {
    "name": "dbl",
    "version": "1.0.0",
    "private": True,
    "scripts": {"test": "node --test"},
    "dependencies": {"is-number": "7.0.0"},
}
LOCK = {
    "name": "dbl",
    "version": "1.0.0",
    "lockfileVersion": 3,
    "requires": True,
    "packages": {
        "": {"name": "dbl", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}},
        "node_modules/is-number": {
            "version": "7.0.0",
            "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
            "license": "MIT",
            "engines": {"node": ">=0.12.0"},
        },
    },
}
LIB = textwrap.dedent(
    """\
    const isNumber = require("is-number");

    function double(x) {
      if (!isNumber(x)) throw new TypeError("not a number: " + x);
      return x * 3;
    }

    module.exports = { double };
    """
)
TEST = textwrap.dedent(
    """\
    const test = require("node:test");
    const assert = require("node:assert");
    const { double } = require("../lib/index.js");

    test("double doubles", () => assert.strictEqual(double(2), 4));
    test("double refuses words", () => assert.throws(() => double("x"), TypeError));
    """
)


def _fix_script(path: str, content: str) -> str:
    return f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = {json.dumps(path)}, content = {json.dumps(content)} }},
          {{ finish = "fixed" }},
        ]
        """


def _only_project(env: Env, files: dict[str, str]) -> None:
    for old in ("src/calc.py", "src/__init__.py", "tests/test_calc.py", "setup.cfg"):
        git(env.repo, "rm", "-q", old)
    commit(env.repo, files, "the project")
    env.settle()


NODE_PROJECT = {
    "package.json": json.dumps(PACKAGE, indent=2) + "\n",
    "package-lock.json": json.dumps(LOCK, indent=2) + "\n",
    "lib/index.js": LIB,
    "test/index.test.js": TEST,
    ".gitignore": "node_modules/\n",
}


@pytest.mark.parametrize("how", ["preset", "corral init"])
def test_the_node_preset_runs_an_npm_project(env: Env, how: str) -> None:
    _only_project(env, NODE_PROJECT)
    policy = 'preset = "node"\n'
    if how == "corral init":  # what it proposes, committed as it is, with no --policy
        commit(env.repo, {".corral.toml": propose(env.repo).toml()}, "corral's policy")
        env.settle()
        policy = ""
    (env.root / "bug.md").write_text("# double() triples\n\ndouble(2) is 6.\n")
    fixed = LIB.replace("x * 3", "x * 2")
    result = env.run(_fix_script("lib/index.js", fixed), policy=policy)
    assert result.status == "ready_for_review", result
    store = RunStore(env.home)
    gates = [(e.data["label"], e.data["passed"]) for e in store.events(result.run_id)
             if e.type == "gate_end"]  # fmt: skip
    assert gates == [("baseline", False), ("attempt-1", True)], gates
    patch = Path(result.patch_path or "").read_text()
    assert "lib/index.js" in patch and "node_modules" not in patch, patch
    log = store.artifact_path(result.run_id, "setup.log").read_text()
    assert "npm ci" in log and "carried into attempts and gates" in log, log[-2000:]


def test_the_make_preset_runs_make_test(env: Env) -> None:
    makefile = "test:\n\tpython3 -m pytest -q -p no:cacheprovider tests\n"
    commit(env.repo, {"Makefile": makefile}, "make test")
    env.settle()
    result = env.run(_fix_script("src/calc.py", FIXED_MUL), policy='preset = "make"\n')
    assert result.status == "ready_for_review", result
    gates = [(e.data["label"], e.data["passed"]) for e in RunStore(env.home).events(result.run_id)
             if e.type == "gate_end"]  # fmt: skip
    assert gates == [("baseline", False), ("attempt-1", True)], gates
