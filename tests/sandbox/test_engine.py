"""The engine: probing, runsc registration in daemon.json, idempotent provisioning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox.engine import (
    connect_soon,
    probe,
    provision,
    provision_commands,
    read_daemon_json,
    register_runsc,
)
from sandbox.errors import EngineUnavailable


def test_register_runsc_keeps_other_keys_and_is_idempotent(tmp_path: Path) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"log-driver": "local", "runtimes": {"kata": {"path": "/k"}}}))
    assert register_runsc(cfg, "/usr/bin/runsc") is True
    data = json.loads(cfg.read_text())
    assert data["log-driver"] == "local" and data["runtimes"]["kata"] == {"path": "/k"}
    assert data["runtimes"]["runsc"] == {
        "path": "/usr/bin/runsc",
        "runtimeArgs": ["--network=none", "--host-uds=open"],
    }
    assert register_runsc(cfg, "/usr/bin/runsc") is False
    fresh = tmp_path / "new" / "daemon.json"
    assert register_runsc(fresh, "/usr/bin/runsc") and read_daemon_json(fresh)["runtimes"]


def test_broken_daemon_json_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text("{not json")
    with pytest.raises(EngineUnavailable, match="not valid JSON"):
        read_daemon_json(cfg)
    assert read_daemon_json(tmp_path / "absent.json") == {}


def test_provision_commands_are_the_whole_engine_setup() -> None:
    cmds = provision_commands()
    assert "docker.io runsc" in cmds[0] and "daemon.json" in cmds[1]
    assert "--network=none" in cmds[1] and "dockerd" in cmds[2] and "docker info" in cmds[3]


@pytest.mark.docker
def test_probe_sees_the_engine_and_gvisor_with_network_none(docker_client: object) -> None:
    st = probe()
    assert st.reachable and st.server_version and st.storage_driver == "overlay2"
    assert st.runsc_registered and st.runsc_network_none and st.runsc_host_uds


@pytest.mark.docker
def test_provision_on_a_provisioned_machine_does_nothing(docker_client: object) -> None:
    if os.geteuid() != 0:
        pytest.fail("provisioning tests need root")
    assert provision() == []


def test_probe_of_a_dead_socket_reports_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    st = probe()
    assert not st.reachable and "corral doctor --fix" in st.error


def test_connect_soon_hands_over_the_failure_to_whoever_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    client = connect_soon(timeout=5)
    for _ in range(2):  # every time, not only the first
        with pytest.raises(EngineUnavailable, match="corral doctor --fix"):
            client()


@pytest.mark.docker
def test_connect_soon_gives_a_working_client(docker_client: object) -> None:
    client = connect_soon()()
    assert client.ping()
    assert client.version()["ApiVersion"] == client.api.api_version  # negotiated
