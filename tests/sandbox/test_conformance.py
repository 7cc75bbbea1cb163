"""Runs the conformance suite against every backend (``sandbox/conformance.py``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.conformance import CHECKS
from sandbox.docker_backend import DockerBackend
from sandbox.fake import FAKE_KNOWN_GAPS, FakeBackend
from sandbox.interfaces import Sandbox
from sandbox.spec import SANDBOX_GID, SANDBOX_UID, SandboxSpec

#: Checks the old Debian gVisor build (runsc 2022) fails; each is expected to fail.
RUNSC_KNOWN_FAILURES: frozenset[str] = frozenset()

BACKENDS = ["fake", "runc", "runsc"]


def _known(backend: str) -> frozenset[str]:
    if backend == "fake":
        gaps = set(FAKE_KNOWN_GAPS)
        if os.geteuid() != 0:
            gaps -= {"non_root", "permission"}
        return frozenset(gaps)
    return RUNSC_KNOWN_FAILURES if backend == "runsc" else frozenset()


def _params() -> list[Any]:
    params = []
    for backend in BACKENDS:
        marks = [] if backend == "fake" else [pytest.mark.docker]
        for name in CHECKS:
            m = list(marks)
            if name in _known(backend):
                m.append(pytest.mark.xfail(strict=True, reason=f"documented gap of {backend}"))
            params.append(pytest.param(backend, name, marks=m, id=f"{backend}-{name}"))
    return params


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    if os.geteuid() == 0:
        os.chown(ws, SANDBOX_UID, SANDBOX_GID)
    return ws


def _runsc_registered(client: Any) -> bool:
    return "runsc" in (client.info().get("Runtimes") or {})


@pytest.fixture
def make_sandbox(
    request: pytest.FixtureRequest, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("CORRAL_CANARY_SECRET", "host-secret-value")
    started: list[Sandbox] = []

    def make(backend: str) -> Sandbox:
        if backend == "fake":
            sb: Sandbox = FakeBackend().start(
                SandboxSpec(image="none", workspace=str(workspace), run_id="conformance")
            )
        else:
            client = request.getfixturevalue("docker_client")
            image = request.getfixturevalue("sandbox_image")
            if backend == "runsc" and not _runsc_registered(client):  # never a skip
                fix = "corral doctor --fix" if shutil.which("runsc") else "apt-get install runsc"
                pytest.fail(f"gVisor (runsc) is not registered with the engine: run `{fix}`")
            sb = DockerBackend(client).start(
                SandboxSpec(
                    image=image, workspace=str(workspace), runtime=backend, run_id="conformance"
                )
            )
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.close()


@pytest.mark.parametrize(("backend", "check_name"), _params())
def test_conformance(make_sandbox: Any, workspace: Path, backend: str, check_name: str) -> None:
    sb = make_sandbox(backend)
    CHECKS[check_name](sb, workspace)
