"""No verification, no green, through the real CLI: `corral run`'s exit codes and `policy check`.

A run with no required gate ends ``unverified`` (exit 1); one whose required
gate cannot run at base is a configuration error (exit 2, naming the gate);
`corral policy check` warns about a policy with no required gate. The loop's
own cases are ``tests/runner/loop/test_verification.py`` (``FakeBackend``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import corral
from tests.support.demo import build_demo, fix_script, run_args

NO_GATES = "[budgets]\nattempts = 2\n"
BROKEN = NO_GATES + '\n[[gates]]\nname = "lint"\ncommand = "no-such-checker --all"\n'


@pytest.mark.docker
def test_run_exit_codes_unverified_1_and_a_gate_that_cannot_run_2(
    tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = build_demo(tmp_path, policy=NO_GATES)
    (project / "script.toml").write_text(fix_script())
    args = run_args(project, "--agent", f"scripted:{project / 'script.toml'}", "--json")

    unverified = corral(*args, home=corral_home)
    assert unverified.returncode == 1, unverified.stderr
    result = json.loads(unverified.stdout)
    assert result["status"] == "unverified" and result["failure_domain"] is None
    assert Path(result["patch_path"]).is_file()  # the candidate, for a human to look at
    status = corral("status", result["run_id"], "--json", home=corral_home)
    assert json.loads(status.stdout)["status"] == "unverified"
    approve = corral("approve", result["run_id"], home=corral_home)
    assert approve.returncode == 2 and "is unverified" in approve.stderr

    (project / "policy.toml").write_text(BROKEN)
    broken = corral(*args, home=corral_home)
    assert broken.returncode == 2, broken.stderr
    result = json.loads(broken.stdout)
    assert (result["status"], result["failure_domain"]) == ("failed", "configuration")
    assert "gate lint cannot run at base: exit 127" in result["reason"]
    assert "baseline/gate-lint.log" in result["reason"]
    listed = corral("list", home=corral_home)
    assert "unverified" in listed.stdout and "configuration" in listed.stdout


def test_policy_check_warns_about_a_policy_with_no_required_gate(
    tmp_path: Path, corral_home: Path
) -> None:
    advisory = '[[gates]]\nname = "t"\ncommand = "true"\nrequired = false\n'
    files = {  # name: (policy, whether `policy check` warns)
        "none.toml": (NO_GATES, True),
        "advisory.toml": (advisory, True),
        "opted-out.toml": ("gates = []\n" + NO_GATES, False),
        "gated.toml": (BROKEN, False),
    }
    for name, (text, warns) in files.items():
        (tmp_path / name).write_text(text)
        proc = corral("policy", "check", str(tmp_path / name), home=corral_home)
        assert proc.returncode == 0 and "ok:" in proc.stdout, (name, proc.stderr)
        warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert len(warning) == (1 if warns else 0), (name, proc.stderr)
        if warns:
            assert "no required gate" in warning[0] and "gates = []" in warning[0]
            assert "add a required [[gates]] table" in warning[0]  # not eaten as markup
