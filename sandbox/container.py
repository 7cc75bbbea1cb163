"""The container a sandbox runs in, as data: hardened ``containers.create`` arguments and labels.

``container_config(spec)`` turns a ``SandboxSpec`` into the keyword arguments
of the docker SDK's ``containers.create`` (pure; recorded with the run):
``--init`` (tini as PID 1, so a stop is instant and zombies are reaped), the
non-root sandbox user, every capability dropped, ``no-new-privileges``, a
read-only root filesystem with small ``nosuid,nodev`` tmpfs for ``/tmp`` and
``$HOME``, network ``none``, pids / memory (= swap) / cpu limits, ``ulimit``
fsize/nofile/core, a capped engine log, labels naming the run and its owner,
no host environment and never the docker socket.
"""

from __future__ import annotations

import os
from typing import Any

from docker.types import LogConfig, Mount, Ulimit

from sandbox.spec import SANDBOX_HOME, SandboxSpec

#: Label keys corral puts on everything it creates in the engine.
LABEL_MANAGED = "corral.managed"
LABEL_RUN = "corral.run"
LABEL_OWNER_PID = "corral.owner-pid"
LABEL_KIND = "corral.kind"
LABEL_HOME = "corral.home"

#: Where an environment image's set-up installs (``sandbox.images.env_image``): a virtual
#: environment, first on every sandbox's ``PATH`` so that ``python``, ``pip`` and the project's
#: console scripts are its own in attempts and gates (a missing directory on ``PATH`` is harmless).
VENV = "/opt/env"
SANDBOX_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_config(spec: SandboxSpec) -> dict[str, Any]:
    """The ``containers.create`` keyword arguments for ``spec`` (pure; recorded with the run)."""
    lim = spec.limits
    mounts = []
    if spec.workspace:
        mounts.append(
            Mount(spec.workdir, spec.workspace, type="bind", read_only=spec.workspace_read_only)
        )
    mounts += [Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts]
    env = {"PATH": SANDBOX_PATH, "HOME": SANDBOX_HOME, "LANG": "C.UTF-8", **spec.env}
    fsize = lim.fsize_mb * 1024 * 1024
    tmpfs_opts = "rw,nosuid,nodev,noexec"
    return {
        "image": spec.image,
        "command": ["sleep", "infinity"],
        "init": True,
        "user": spec.user,
        "working_dir": spec.workdir,
        "environment": env,
        "network_mode": spec.network,
        "runtime": spec.runtime,
        "read_only": spec.read_only_rootfs,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "tmpfs": {
            "/tmp": f"{tmpfs_opts},size={lim.tmp_mb}m,mode=1777",
            SANDBOX_HOME: f"rw,nosuid,nodev,size={lim.home_mb}m,uid={spec.uid},gid={spec.gid},mode=700",
        },
        "mounts": mounts,
        "mem_limit": f"{lim.memory_mb}m",
        "memswap_limit": f"{lim.memory_mb}m",
        "nano_cpus": int(lim.cpus * 1e9),
        "pids_limit": lim.pids,
        "ulimits": [
            Ulimit(name="fsize", soft=fsize, hard=fsize),
            Ulimit(name="nofile", soft=lim.nofile, hard=lim.nofile),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "log_config": LogConfig(
            type="json-file", config={"max-size": f"{lim.log_max_kb}k", "max-file": "1"}
        ),
        "labels": {
            **spec.labels,
            LABEL_MANAGED: "1",
            LABEL_RUN: spec.run_id,
            LABEL_OWNER_PID: str(os.getpid()),
            LABEL_KIND: "sandbox",
            **({LABEL_HOME: spec.owner_home} if spec.owner_home else {}),
        },
        "hostname": "sandbox",
        "detach": True,
        "stdin_open": False,
        "tty": False,
    }
