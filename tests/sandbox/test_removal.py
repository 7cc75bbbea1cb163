"""The harvest reads a tree only once its container is confirmed gone.

Removal failures are real engine answers: ``tests.support.dockerproxy`` relays the
engine's socket and refuses ``DELETE /containers/...`` while asked to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.docker_backend import REMOVE_ATTEMPTS, DockerBackend, DockerSandbox
from sandbox.errors import SandboxClosed, SandboxNotRemoved
from sandbox.git import HostGit
from sandbox.harvest import harvest
from sandbox.spec import Mount, SandboxSpec
from sandbox.workspace import Workspace
from tests.support.dockerproxy import EngineProxy
from tests.support.gitfixtures import make_repo

pytestmark = pytest.mark.docker


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[EngineProxy]:
    p = EngineProxy(tmp_path / "engine.sock")
    yield p
    p.close()


def _attempt(tmp: Path, home: Path, client: Any, image: str) -> tuple[Workspace, DockerSandbox]:
    """A worktree and a running sandbox on it, as an attempt has them."""
    ws = Workspace.create(make_repo(tmp / "repo", {"a.py": "x = 1\n"}), "HEAD", "removal", home)
    spec = SandboxSpec(
        image=image,
        workspace=str(ws.path),
        mounts=(Mount(source=str(ws.path / ".git"), target="/workspace/.git"),),
        run_id="removal",
        owner_home=str(home),
    )
    return ws, DockerBackend(client).start(spec)


def _checkpoints(ws: Workspace) -> str:
    return HostGit(ws.git_dir).text("for-each-ref", "refs/corral/checkpoints")


def test_close_retries_then_raises_and_harvest_refuses_until_gone(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str, proxy: EngineProxy
) -> None:
    ws, real = _attempt(tmp_path, corral_home, docker_client, sandbox_image)
    try:
        real.exec("echo changed > a.py")
        faulty = docker.DockerClient(base_url=proxy.url, version="auto")
        sb = DockerSandbox(faulty, faulty.containers.get(real.id), real.spec)
        with pytest.raises(SandboxNotRemoved, match="still exists after 3 removals"):
            sb.close()
        assert proxy.deletes_refused == REMOVE_ATTEMPTS
        assert docker_client.containers.get(real.id).status == "running"
        with pytest.raises(SandboxClosed):
            sb.exec("true")
        with pytest.raises(SandboxNotRemoved):
            harvest(ws, sandbox=sb, label="refused")
        assert _checkpoints(ws) == ""  # nothing was scanned or recorded
        proxy.refuse_delete = False
        sb.close()  # a later close tries again, and this time the engine removes it
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(real.id)
        h = harvest(ws, sandbox=sb, label="after")
        assert [c.path for c in h.changes] == ["a.py"]
        faulty.close()
    finally:
        real.close()
        ws.remove()


def test_harvest_refuses_a_container_that_still_runs(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    ws, sb = _attempt(tmp_path, corral_home, docker_client, sandbox_image)
    try:
        sb.exec("nohup sh -c 'sleep 1; echo late > a.py' >/dev/null 2>&1 &")
        with pytest.raises(SandboxNotRemoved, match="still exists"):
            harvest(ws, sandbox=sb)
        assert _checkpoints(ws) == ""
    finally:
        sb.close()
    sb.confirm_gone()  # idempotent once gone
    ws.remove()


def test_an_attempt_whose_container_survives_fails_as_runtime_unread(
    tmp_path: Path,
    corral_home: Path,
    docker_client: Any,
    sandbox_image: str,
    proxy: EngineProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runner.ops.service import RunRequest, start_run
    from runner.store.runs import RunStore

    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    (tmp_path / "bug.md").write_text("# x should be 2\n")
    (tmp_path / "policy.toml").write_text("[budgets]\nattempts = 2\n")
    (tmp_path / "script.toml").write_text(
        '[[attempt]]\n[[attempt.window]]\nactions = [\n  { write = "a.py", content = "x = 2\\n" },\n'
        '  { finish = "done" },\n]\n'
    )
    monkeypatch.setenv("DOCKER_HOST", proxy.url)  # the run's engine refuses every removal
    req = RunRequest(repo=repo, bug=tmp_path / "bug.md", policy=str(tmp_path / "policy.toml"),
                     script=tmp_path / "script.toml", image=sandbox_image)  # fmt: skip
    try:
        result = start_run(corral_home, req)
        # one attempt only: no rollback and no second attempt while the container may write
        (attempt,) = result.attempts
        assert (result.status, result.failure_domain) == ("failed", "runtime"), result
        assert attempt.failure_domain == "runtime", attempt
        assert attempt.reason.startswith("tree not harvested: container"), attempt
        assert attempt.commit is None and attempt.changed_files == []
        store = RunStore(corral_home)
        assert not store.artifact_path(result.run_id, "attempt-1/patch.diff").exists()
        assert proxy.deletes_refused >= REMOVE_ATTEMPTS
    finally:
        flt = {"label": [f"corral.home={corral_home}"]}
        for c in docker_client.containers.list(all=True, filters=flt):
            c.remove(force=True)
