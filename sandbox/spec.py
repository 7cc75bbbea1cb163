"""The sandbox spec: every isolation setting, with hardened defaults.

Pydantic at the edge (``extra="forbid"``), so a spec read from a policy or a
run record is validated; the spec actually used is recorded with the run
(``SandboxSpec.model_dump()``). Nothing here reads the environment.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.errors import SpecError

#: The sandbox user: a fixed uid/gid that is no real account on the host.
SANDBOX_UID = 65532
SANDBOX_GID = 65532
SANDBOX_HOME = "/home/sandbox"
WORKDIR = "/workspace"

#: Host paths that must never be mounted into a sandbox.
FORBIDDEN_SOURCES = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/proc", "/sys")


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return posixpath.normpath(path)


class Mount(BaseModel):
    """A bind mount from the host into the sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    """Absolute host path (file or directory)."""
    target: str
    """Absolute path inside the sandbox."""
    read_only: bool = True
    """Mount read-only. Writable mounts are the exception: the worktree, nothing else by default."""

    @field_validator("source", "target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not posixpath.isabs(value):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return posixpath.normpath(value)


class Limits(BaseModel):
    """Resource limits of one sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int = Field(2048, ge=64)
    """Memory limit; swap is set equal to it, so the sandbox cannot swap."""
    cpus: float = Field(1.0, gt=0)
    """CPU quota in cores."""
    pids: int = Field(256, ge=16)
    """Maximum number of processes and threads (fork-bomb bound)."""
    fsize_mb: int = Field(1024, ge=1)
    """Largest file one process may write (``ulimit -f``); bounds sparse and runaway files."""
    nofile: int = Field(4096, ge=64)
    """Open file descriptors per process."""
    tmp_mb: int = Field(512, ge=16)
    """Size of the ``nosuid,nodev`` tmpfs at ``/tmp``."""
    home_mb: int = Field(128, ge=16)
    """Size of the ``nosuid,nodev`` tmpfs at the sandbox user's ``$HOME``."""
    log_max_kb: int = Field(1024, ge=64)
    """Cap of the engine's log file for the container (PID 1 output)."""


class SandboxSpec(BaseModel):
    """Everything needed to start one sandbox. Defaults are the hardened ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    """Image name or ``sha256:`` id. Run records store the resolved digest."""
    runtime: Literal["runc", "runsc"] = "runc"
    """OCI runtime: ``runc`` or gVisor's ``runsc`` (must be registered with the engine)."""
    workspace: str | None = None
    """Host directory mounted read-write at ``workdir`` (the git worktree), or none."""
    workspace_read_only: bool = False
    """Mount ``workspace`` read-only (gates verify a candidate they must not change)."""
    workdir: str = WORKDIR
    """Working directory inside the sandbox, where ``workspace`` is mounted."""
    mounts: tuple[Mount, ...] = ()
    """Extra bind mounts, read-only unless said otherwise (protected paths, the ``.git`` pointer)."""
    user: str = f"{SANDBOX_UID}:{SANDBOX_GID}"
    """``uid:gid`` the commands run as. Root (0) is refused."""
    env: dict[str, str] = Field(default_factory=dict)
    """The sandbox's whole environment besides PATH/HOME/LANG: the host's is never passed."""
    network: Literal["none"] = "none"
    """Only ``none``: the model gateway arrives as a mounted unix socket, never a network."""
    read_only_rootfs: bool = True
    """Mount the image's root filesystem read-only."""
    limits: Limits = Limits()
    """Resource limits."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels; corral adds ``corral.*`` labels naming the run and owner."""
    run_id: str = "adhoc"
    """The run that owns this sandbox (label ``corral.run``; ``corral gc`` finds orphans by it)."""
    owner_home: str | None = None
    """The ``$CORRAL_HOME`` whose run owns this sandbox (label ``corral.home``); ``corral gc``
    of that home removes the sandbox once the run's lease is gone. None: nobody's to collect."""

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        uid = value.split(":", 1)[0]
        if uid in ("0", "root"):
            raise ValueError("the sandbox never runs as root; use a non-root uid such as 65532")
        return value

    @model_validator(mode="after")
    def _safe_mounts(self) -> SandboxSpec:
        sources = list(m.source for m in self.mounts)
        if self.workspace:
            sources.append(self.workspace)
        for src in sources:
            for path in (posixpath.normpath(src), _resolved(src)):
                for bad in FORBIDDEN_SOURCES:
                    if path == bad or path.startswith(bad + "/"):
                        raise SpecError(
                            f"refusing to mount {src} into a sandbox (it exposes {bad})"
                        )
        return self

    @property
    def uid(self) -> int:
        return int(self.user.split(":", 1)[0])

    @property
    def gid(self) -> int:
        parts = self.user.split(":", 1)
        return int(parts[1]) if len(parts) == 2 else self.uid
