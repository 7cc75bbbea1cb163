"""What a command imports: the model SDK only for the built-in agent, the engine client only when
a container is used, the policy models and pygments only for a command that reads a policy or a
diff.

Each command runs in a fresh interpreter the way ``corral`` does (``runner.cli.main``), which then
writes down which of the heavy packages it holds in ``sys.modules``. Which modules, never how long:
the time is ``bench/bench_startup.py``'s to measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import corral_env
from tests.support.demo import CALC
from tests.support.fastloop import Project, finish, policy, script, write

#: What a command must not pay for unless it needs it.
HEAVY = ("openai", "tenacity", "docker", "requests", "pygments", "policies.policy")

#: ``argv[1]`` the command's arguments, ``argv[2]`` the modules to look for (both JSON),
#: ``argv[3]`` the file to write the findings to.
_PROBE = """
import json, sys
args, heavy, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
from runner.cli import main
sys.argv = ["corral", *args]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "heavy": sorted(m for m in heavy if m in sys.modules)}, f)
"""


def imported(home: Path, tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    """``corral ARGS``'s exit code and the ``HEAVY`` modules it imported."""
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY), str(out)],
        env=corral_env(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.is_file(), proc.stderr
    found = json.loads(out.read_text())
    return found["code"], found["heavy"]


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with one finished run (scripted agent, ``FakeBackend``): its path and run id."""
    project = Project(tmp_path_factory.mktemp("startup"), tmp_path_factory.mktemp("home"))
    fixed = CALC.replace("a - b", "a + b")
    result = project.start(script([[write("src/calc.py", fixed), finish()]]), policy())
    assert result.status == "ready_for_review", result.reason
    return project.home, result.run_id


#: Each reading command and the heavy modules it may import: ``--help`` and Typer's usage errors
#: render with rich's Markdown (pygments); ``review`` and ``logs`` read the run's policy, and
#: ``review`` highlights its diff.
READERS = [
    (("--help",), ["pygments"]),
    (("list",), []),
    (("status", "RUN"), []),
    (("logs", "RUN"), ["policies.policy"]),
    (("review", "RUN"), ["policies.policy", "pygments"]),
]


@pytest.mark.parametrize(("args", "allowed"), READERS)
def test_reading_commands_import_neither_the_model_sdk_nor_the_engine_client(
    one_run: tuple[Path, str], tmp_path: Path, args: tuple[str, ...], allowed: list[str]
) -> None:
    home, run_id = one_run
    code, heavy = imported(home, tmp_path, *(run_id if a == "RUN" else a for a in args))
    assert code == 0
    assert heavy == allowed


def test_a_bad_command_line_imports_nothing_heavy(
    one_run: tuple[Path, str], tmp_path: Path
) -> None:
    code, heavy = imported(one_run[0], tmp_path, "status", "no-such-run")
    assert code == 2
    assert heavy == []


_RUN = """
import json, sys
from pathlib import Path
from tests.support.demo import CALC
from tests.support.fastloop import Project, finish, policy, script, write
root = Path(sys.argv[1])
project = Project(root / "project", root / "home")
fixed = CALC.replace("a - b", "a + b")
result = project.start(script([[write("src/calc.py", fixed), finish()]]), policy())
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps({"status": result.status, "heavy": heavy}))
"""


def test_a_scripted_run_imports_neither_the_model_sdk_nor_the_gateway(tmp_path: Path) -> None:
    """The scripted agent needs no model client and no model gateway (agent CLIs only)."""
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(tmp_path), json.dumps(["openai", "tenacity", "runner.gateway", "httpx2"])],
        cwd=root, env=corral_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"status": "ready_for_review", "heavy": []}
