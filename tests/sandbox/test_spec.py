"""The sandbox spec: hardened defaults and refusals, and the container config built from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.container import LABEL_HOME, LABEL_RUN, container_config
from sandbox.errors import SpecError
from sandbox.spec import Mount, SandboxSpec


def test_defaults_are_hardened() -> None:
    cfg = container_config(SandboxSpec(image="img", workspace="/tmp/ws", run_id="r1"))
    assert cfg["init"] is True
    assert cfg["user"] == "65532:65532"
    assert cfg["cap_drop"] == ["ALL"]
    assert cfg["security_opt"] == ["no-new-privileges"]
    assert cfg["read_only"] is True
    assert cfg["network_mode"] == "none"
    assert cfg["mem_limit"] == cfg["memswap_limit"]
    assert cfg["pids_limit"] > 0
    assert {u["Name"] for u in cfg["ulimits"]} == {"fsize", "nofile", "core"}
    assert all("nosuid" in o and "nodev" in o for o in cfg["tmpfs"].values())
    assert cfg["labels"][LABEL_RUN] == "r1"
    assert LABEL_HOME not in cfg["labels"]
    assert set(cfg["environment"]) == {"PATH", "HOME", "LANG"}  # never the host's environment
    (ws,) = cfg["mounts"]
    assert ws["Target"] == "/workspace" and ws["ReadOnly"] is False


def test_extra_mounts_default_read_only() -> None:
    spec = SandboxSpec(image="i", mounts=(Mount(source="/tmp/a", target="/workspace/.git"),))
    (m,) = container_config(spec)["mounts"]
    assert m["ReadOnly"] is True


@pytest.mark.parametrize(
    "source", ["/var/run/docker.sock", "/run/docker.sock", "/proc/1/root", "/sys/fs/cgroup"]
)
def test_refuses_dangerous_mounts(source: str) -> None:
    with pytest.raises((SpecError, ValidationError)):
        SandboxSpec(image="i", mounts=(Mount(source=source, target="/x"),))


@pytest.mark.parametrize("user", ["0", "0:0", "root"])
def test_refuses_root(user: str) -> None:
    with pytest.raises(ValidationError):
        SandboxSpec(image="i", user=user)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        SandboxSpec.model_validate({"image": "i", "privileged": True})
    with pytest.raises(ValidationError):
        SandboxSpec.model_validate({"image": "i", "network": "bridge"})


def test_spec_round_trips_for_the_run_record() -> None:
    spec = SandboxSpec(image="sha256:abc", workspace="/w", run_id="r", owner_home="/h")
    assert SandboxSpec.model_validate(spec.model_dump()) == spec


def test_spec_recorder_reports_each_start_and_closes_a_sandbox_it_could_not_record() -> None:
    from sandbox.errors import SandboxClosed
    from sandbox.fake import FakeBackend
    from sandbox.recording import SpecRecorder, spec_record

    seen: list[dict[str, object]] = []
    spec = SandboxSpec(image="img", run_id="r1")
    sb = SpecRecorder(FakeBackend(), lambda s, b: seen.append(spec_record(s, b))).start(spec)
    assert seen == [{"container": sb.id, "image_id": "img", "spec": spec.model_dump(mode="json")}]
    assert SandboxSpec.model_validate(seen[0]["spec"]) == spec
    sb.close()

    started: list[object] = []

    def fail(s: SandboxSpec, b: object) -> None:
        started.append(b)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        SpecRecorder(FakeBackend(), fail).start(spec)
    with pytest.raises(SandboxClosed):
        started[0].exec("true")  # type: ignore[attr-defined]
