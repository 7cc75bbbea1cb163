"""Set-up as on a developer's machine: a checkout with its git metadata, and what it leaves behind.

A setuptools-scm project with its own pytest plugin, installed with the plain ``pip install -e .``:
its version comes from the tag at base (``.git`` is there, read-only), the generated
``_version.py`` is in every attempt and gate tree, and the candidate's patch holds only the fix.
Set-up's output streams to the display as it comes; a set-up that fails is the policy's to fix.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from tests.support.gitfixtures import commit, git
from tests.support.runenv import Env

pytestmark = pytest.mark.docker

PYPROJECT = textwrap.dedent(
    """\
    [build-system]
    requires = ["setuptools>=64", "setuptools-scm>=8"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "scmcalc"
    dynamic = ["version"]

    [project.entry-points.pytest11]
    scmcalc = "scmcalc.plugin"

    [tool.setuptools.packages.find]
    where = ["src"]

    [tool.setuptools_scm]
    version_file = "src/scmcalc/_version.py"
    """
)
CALC = "def add(a, b):\n    return a - b\n"
TESTS = textwrap.dedent(
    """\
    from scmcalc import __version__, add


    def test_add():
        assert add(1, 2) == 3


    def test_version_comes_from_the_tag():
        assert __version__ == "1.2.3"


    def test_the_projects_own_plugin_is_loaded(scmcalc_version):
        assert scmcalc_version == "1.2.3"
    """
)
FILES = {
    "pyproject.toml": PYPROJECT,
    "src/scmcalc/__init__.py": "from ._version import version as __version__\nfrom .calc import add\n",
    "src/scmcalc/calc.py": CALC,
    "src/scmcalc/plugin.py": (
        "import pytest\n\n\n@pytest.fixture\ndef scmcalc_version():\n"
        "    from scmcalc import __version__\n\n    return __version__\n"
    ),
    "tests/test_calc.py": TESTS,
    ".gitignore": "__pycache__/\n*.egg-info/\nsrc/scmcalc/_version.py\n",
}
GATE = "python -m pytest -q -p no:cacheprovider tests/test_calc.py"
POLICY = (
    '[budgets]\nattempts = 1\n\n[setup]\ncommands = ["pip install -e ."]\n\n'
    f'[[gates]]\nname = "tests"\ncommand = {json.dumps(GATE)}\n'
)


def _scm_project(env: Env) -> None:
    for old in ("src/calc.py", "src/__init__.py", "tests/test_calc.py", "setup.cfg"):
        git(env.repo, "rm", "-q", old)
    commit(env.repo, FILES, "a setuptools-scm project")
    git(env.repo, "tag", "-a", "v1.2.3", "-m", "1.2.3")
    env.settle()


def test_a_setuptools_scm_project_works_with_the_plain_policy(env: Env) -> None:
    _scm_project(env)
    shown: list[tuple[str, dict[str, Any]]] = []
    fixed = CALC.replace("a - b", "a + b")
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "grep -q 1.2.3 src/scmcalc/_version.py && test -d src/scmcalc.egg-info" }},
          {{ run = {json.dumps(GATE + " -k 'version or plugin'")} }},
          {{ write = "src/scmcalc/calc.py", content = {json.dumps(fixed)} }},
          {{ finish = "add() adds" }},
        ]
        """,
        policy=POLICY,
        on_event=lambda kind, data: shown.append((kind, dict(data))),
    )
    assert result.status == "ready_for_review", result
    store = RunStore(env.home)
    ran = [e.data for e in store.events(result.run_id) if e.type == "command"]
    assert [r["exit_code"] for r in ran] == [0, 0], ran  # set-up's files, in the attempt's tree
    base = [e.data for e in store.events(result.run_id)
            if e.type == "gate_end" and e.data["label"] == "baseline"]  # fmt: skip
    assert [g["passed"] for g in base] == [False]  # it ran: test_add fails at base
    patch = Path(result.patch_path or "").read_text()
    assert "scmcalc/calc.py" in patch
    assert "_version" not in patch and "egg-info" not in patch, patch
    assert result.attempts[0].changed_files == ["src/scmcalc/calc.py"]
    # set-up's output was shown while it ran, and its log says what it carried
    lines = [d["line"] for k, d in shown if k == "setup_output"]
    assert "$ pip install -e ." in lines and any("Successfully installed" in x for x in lines)
    log = store.artifact_path(result.run_id, "setup.log").read_text()
    assert "carried into attempts and gates" in log, log[-2000:]
    # the container they are read through is the reading run's, for gc, and is gone at once
    import docker

    from sandbox.images.setup_files import read_setup_files

    real = docker.from_env()
    image = json.loads(store.get(result.run_id).spec_json)["env_image"]
    made: list[dict[str, str]] = []

    class Containers:  # what the reading asks the engine to create, then the real thing
        def create(self, *args: Any, **kw: Any) -> Any:
            made.append(kw["labels"])
            return real.containers.create(*args, **kw)

    class Client:
        images, containers = real.images, Containers()

    files = read_setup_files(Client(), image, run_id="reader", home=env.home)
    assert "src/scmcalc/_version.py" in files
    assert made == [{"corral.managed": "1", "corral.run": "reader",
                     "corral.home": str(env.home), "corral.kind": "read"}]  # fmt: skip
    assert not real.containers.list(all=True, filters={"label": "corral.run=reader"})


def test_a_failing_set_up_is_the_policys_to_fix(env: Env) -> None:
    policy = (
        '[setup]\ncommands = ["echo preparing; echo no such thing >&2; exit 3"]\n\n'
        f'[[gates]]\nname = "tests"\ncommand = {json.dumps(GATE)}\n'
    )
    result = env.run("[[attempt]]\n[[attempt.window]]\nactions = []\n", policy=policy)
    assert (result.status, result.failure_domain, result.exit_code) == (
        "failed",
        "configuration",
        2,
    ), result
    log = RunStore(env.home).artifact_path(result.run_id, "setup.log")
    assert str(log) in result.reason and "no such thing" in result.reason, result.reason
    assert "exit 3" in result.reason and "fix [setup]" in result.reason


def test_a_resumed_run_builds_again_the_images_that_are_gone(env: Env) -> None:
    """An environment image removed while the run waited, and a recorded image the engine no
    longer has, are built again by ``resume`` (never pulled); the record says so."""
    import docker

    from runner.loop.resume import answer_pending
    from runner.ops.service import resume_run

    policy = (
        '[commands]\nask = ["echo ask-first"]\n\n[setup]\ncommands = ["echo built > marker"]\n\n'
        '[[gates]]\nname = "tests"\ncommand = "python3 -m pytest -q -p no:cacheprovider"\n'
    )
    script = """
        [[attempt]]
        [[attempt.window]]
        actions = [
          { run = "echo ask-first && test -f marker" },
          { write = "src/calc.py", content = "def add(a, b):\\n    return a + b\\n\\n\\ndef mul(a, b):\\n    return a * b\\n" },
          { finish = "fixed" },
        ]
        """
    waiting = env.run(script, policy=policy)
    assert waiting.status == "waiting", waiting
    store = RunStore(env.home)
    spec = json.loads(store.get(waiting.run_id).spec_json)
    docker.from_env().images.remove(spec["env_image"], force=True)
    gone = "sha256:" + "0" * 64  # as if the sandbox image had been pruned
    store.update(waiting.run_id, spec_json=json.dumps({**spec, "image": gone}))
    assert answer_pending(store, waiting.run_id, "approve", "reviewer") is not None
    done = resume_run(env.home, waiting.run_id)
    assert done.status == "ready_for_review", done
    events = store.events(waiting.run_id)
    (rebuilt,) = [e.data for e in events if e.type == "image_rebuilt"]
    assert rebuilt["was"] == gone and rebuilt["now"] != gone
    assert [e.data["built"] for e in events if e.type == "environment"] == [True, True]
    ran = [e.data for e in events if e.type == "command"]
    assert ran and ran[-1]["exit_code"] == 0  # set-up's marker is there after the rebuild
