"""What the run store keeps about the sandboxes a run used: the effective spec of each one."""

from __future__ import annotations

import pytest

from runner.store.runs import RunStore
from sandbox.spec import SandboxSpec
from tests.support.demo import FIXED_MUL, fix_script
from tests.support.runenv import Env

pytestmark = pytest.mark.docker


def test_every_sandbox_spec_is_recorded_and_read_back(env: Env) -> None:
    result = env.run(fix_script(FIXED_MUL, "add() now adds"))  # the ``env`` fixture's project
    assert result.status == "ready_for_review", result
    events = RunStore(env.home).events(result.run_id)
    specs = [e.data for e in events if e.type == "sandbox_spec"]
    roles = [(d["role"], d.get("label"), d.get("gate"), d.get("attempt")) for d in specs]
    # the baseline runs alongside attempt 1, so its container may come before or after attempt 1's
    assert sorted(roles, key=repr) == sorted(
        [("gate", "baseline", "tests", None), ("attempt", None, None, 1),
         ("gate", "attempt-1", "tests", None)], key=repr,
    )  # fmt: skip
    attempt_gate = ("gate", "attempt-1", "tests", None)
    assert roles.index(("attempt", None, None, 1)) < roles.index(attempt_gate)
    for d in specs:
        spec = SandboxSpec.model_validate(d["spec"])  # the record is a spec again, validated
        assert d["image_id"].startswith("sha256:")
        assert spec.runtime == "runc" and spec.network == "none" and spec.user == "65532:65532"
        assert spec.read_only_rootfs and spec.limits.pids >= 16 and spec.run_id == result.run_id
        assert len(d["container"]) == 64
    attempt = SandboxSpec.model_validate(next(d for d in specs if d["role"] == "attempt")["spec"])
    assert not attempt.workspace_read_only
    assert "/workspace/.git" in {m.target for m in attempt.mounts}  # the pointer, read-only
    assert all(m.read_only for m in attempt.mounts)
    gate = SandboxSpec.model_validate(specs[2]["spec"])
    assert gate.workspace_read_only and gate.workspace and gate.workspace.endswith(".gate")
    assert "PYTEST_ADDOPTS" in gate.env  # what run_gate changed is in the record too
    assert RunStore(env.home).verify(result.run_id).ok
