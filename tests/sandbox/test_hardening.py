"""The engine applied the hardening: what it reports for a started sandbox, and what the kernel
says inside; a fork bomb meets the pids limit and the sandbox and host carry on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.docker_backend import DockerBackend, DockerSandbox
from sandbox.spec import Limits, SandboxSpec

pytestmark = pytest.mark.docker

LIMITS = Limits(memory_mb=256, cpus=0.5, pids=48, fsize_mb=64, nofile=512, log_max_kb=256)
#: gVisor's own threads count against the container's pids limit: 48 stops it starting.
RUNSC_LIMITS = LIMITS.model_copy(update={"pids": 256})


@pytest.fixture(params=["runc", "runsc"])
def sandbox(
    request: pytest.FixtureRequest, docker_client: Any, sandbox_image: str
) -> Iterator[DockerSandbox]:
    limits = RUNSC_LIMITS if request.param == "runsc" else LIMITS
    spec = SandboxSpec(image=sandbox_image, runtime=request.param, limits=limits, run_id="hard")
    sb = DockerBackend(docker_client).start(spec)
    yield sb
    sb.close()


def _status(sb: DockerSandbox) -> dict[str, str]:
    text = sb.exec("cat /proc/self/status").stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_engine_reports_the_hardened_host_config(
    sandbox: DockerSandbox, docker_client: Any
) -> None:
    attrs = docker_client.api.inspect_container(sandbox.id)
    hc = attrs["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd")
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["Privileged"] is False and hc["ReadonlyRootfs"] is True
    assert hc["PidsLimit"] == sandbox.spec.limits.pids
    assert hc["Memory"] == hc["MemorySwap"] == LIMITS.memory_mb * 2**20
    assert hc["NanoCpus"] == int(LIMITS.cpus * 1e9)
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in hc["Ulimits"]}
    fsize = LIMITS.fsize_mb * 2**20
    assert ulimits == {"fsize": (fsize, fsize), "nofile": (512, 512), "core": (0, 0)}
    assert hc["LogConfig"] == {"Type": "json-file",
                               "Config": {"max-size": "256k", "max-file": "1"}}  # fmt: skip
    assert hc["NetworkMode"] == "none" and hc["Init"] is True
    assert hc["Runtime"] == sandbox.spec.runtime
    assert set(hc["Tmpfs"]["/tmp"].split(",")) >= {"nosuid", "nodev", "noexec"}
    assert attrs["Config"]["User"] == "65532:65532"
    assert not any(m["Source"].endswith("docker.sock") for m in attrs["Mounts"])


def test_the_kernel_inside_agrees(sandbox: DockerSandbox) -> None:
    st = _status(sandbox)
    if sandbox.spec.runtime == "runc":
        assert st["NoNewPrivs"] == "1"
    else:  # gVisor's /proc/self/status has no such line: ask the (sentry's) kernel directly
        assert "NoNewPrivs" not in st
    prctl = "import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))"  # PR_GET_NO_NEW_PRIVS
    assert sandbox.exec(["python3", "-c", prctl]).stdout.strip() == "1"
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st.get(cap, "0"), 16) == 0, (cap, st[cap])  # gVisor has no CapAmb line
    assert "CapAmb" in st or sandbox.spec.runtime == "runsc"
    assert st["Uid"].split() == ["65532"] * 4 and st["Gid"].split() == ["65532"] * 4
    limits = sandbox.exec("ulimit -f; ulimit -n; ulimit -c").stdout.split()
    assert limits == [str(LIMITS.fsize_mb * 1024), "512", "0"]  # ulimit -f counts KiB blocks


BOMB = """
import errno, os, signal, time
n = 0
while n < 10_000:  # bounded: the pids limit stops it long before
    try:
        pid = os.fork()
    except OSError as exc:
        print(n, errno.errorcode[exc.errno], flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
os.killpg(os.getpgrp(), signal.SIGKILL)
"""


def test_a_fork_bomb_meets_the_pids_limit_and_the_sandbox_carries_on(
    docker_client: Any, sandbox_image: str
) -> None:
    spec = SandboxSpec(image=sandbox_image, limits=LIMITS, run_id="hard")
    with DockerBackend(docker_client).start(spec) as sb:
        r = sb.exec(["python3", "-c", BOMB], timeout=60)
        forked, err = r.stdout.split()
        assert err == "EAGAIN" and 0 < int(forked) < LIMITS.pids, r
        assert r.exit_code == 137 and not r.timed_out  # the bomb killed its own group
        assert sb.exec("echo alive").stdout == "alive\n"  # the persistent shell survived
        stats = docker_client.api.stats(sb.id, stream=False)
        assert stats["pids_stats"]["current"] < 8  # nothing of the bomb is left
        assert docker_client.containers.get(sb.id).status == "running"
