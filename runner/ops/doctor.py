"""``corral doctor``: is this machine ready to run agents safely? ``--fix`` makes it so where it can.

Checks the Docker engine (reachable, version, storage driver, runtimes with
gVisor), the images, host git, free disk and the worktree filesystem. A check
is an ``error`` (corral cannot run safely) or a ``warning`` (it can, with less
protection or speed); ``doctor`` exits 0 only when no error remains. ``fix``
provisions as root and, without root, returns the commands to run instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sandbox.engine import EngineStatus, connect, probe, provision, provision_commands
from sandbox.errors import HomeUnusable, SandboxError
from sandbox.git import git_version
from sandbox.paths import MIN_FREE_BYTES, check_home, worktrees_dir
from sandbox.treefs import check_worktree_fs, ensure_worktree_fs, mount_commands

MIN_GIT = (2, 35, 0)
MIN_FREE_GIB = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    severity: Literal["error", "warning"] = "error"


def diagnose(home: Path) -> list[Check]:
    """Every check, in order; never raises."""
    checks = _engine_checks(probe())
    checks += _image_checks(checks[0].ok)
    checks.append(_git_check())
    checks += _disk_checks(home)
    return checks


def ready(checks: list[Check]) -> bool:
    return all(c.ok or c.severity == "warning" for c in checks)


def _engine_checks(st: EngineStatus) -> list[Check]:
    if not st.reachable:
        return [Check("docker engine", False, st.error or "no engine", "corral doctor --fix")]
    major = int((st.server_version.split(".") or ["0"])[0] or 0)
    return [
        Check("docker engine", True, f"{st.server_version} (API {st.api_version})"),
        Check(
            "engine version", major >= 20, st.server_version, "apt-get install docker.io", "warning"
        ),
        Check(
            "storage driver",
            st.storage_driver == "overlay2",
            st.storage_driver or "?",
            "use overlay2 (Debian's default)",
            "warning",
        ),
        Check(
            "gVisor (runsc)",
            st.runsc_registered,
            "registered" if st.runsc_registered else "not registered (runc only)",
            "apt-get install runsc && corral doctor --fix",
            "warning",
        ),
        Check(
            "runsc --network=none",
            not st.runsc_registered or st.runsc_network_none,
            "set" if st.runsc_network_none else ("n/a" if not st.runsc_registered else "missing"),
            "corral doctor --fix (Debian's runsc fails without it)",
        ),
    ]


def _image_checks(engine_ok: bool) -> list[Check]:
    if not engine_ok:
        return [Check("images", False, "engine unreachable", "corral doctor --fix")]
    from sandbox.images import image_status

    try:
        client = connect(timeout=10)
        statuses = image_status(client)
        client.close()
    except SandboxError as exc:
        return [Check("images", False, str(exc), "corral image build")]
    return [
        Check(f"image {s.name}", s.present and s.up_to_date, s.detail, "corral image build")
        for s in statuses
    ]


def _git_check() -> Check:
    try:
        v = git_version()
    except SandboxError as exc:
        return Check("host git", False, str(exc), "apt-get install git")
    text = ".".join(map(str, v))
    return Check("host git", v >= MIN_GIT, text, "apt-get install git (>= 2.35)")


def _disk_checks(home: Path) -> list[Check]:
    try:
        check_home(home, room=MIN_FREE_BYTES)
        usable = Check("corral home", True, f"{home} is writable")
    except HomeUnusable as exc:
        usable = Check("corral home", False, str(exc), "free space, or set CORRAL_HOME")
    target = worktrees_dir(home)
    st = check_worktree_fs(target)
    free_home = shutil.disk_usage(_existing(home)).free / 2**30
    fs_ok = st.ok and st.mountpoint == str(target)
    return [
        usable,
        Check(
            "free disk",
            free_home >= MIN_FREE_GIB,
            f"{free_home:.1f} GiB at {home}",
            "free some disk space",
            "warning",
        ),
        Check(
            "worktree filesystem",
            fs_ok,
            st.detail if fs_ok else f"{target} is on {st.detail}; needs its own nosuid,nodev mount",
            "corral doctor --fix",
            "warning",
        ),
    ]


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def fix_plan(home: Path) -> list[str]:
    """Every command ``fix`` would run, as shell lines for a root user: the engine (install,
    ``daemon.json`` with runsc, start or reload dockerd), the worktree mount, the image builds."""
    home_env = f"CORRAL_HOME={shlex.quote(str(home))}"
    return [
        *provision_commands(),
        *mount_commands(home),
        f"{home_env} corral image build",
        f"{home_env} corral doctor",
    ]


def fix(home: Path) -> list[str]:
    """Provision what is missing (engine, runsc, worktree filesystem, images); the steps taken.

    Without root nothing is changed; the returned lines are the commands to run.
    """
    if os.geteuid() != 0:
        return ["not root: run these as root, in order, then `corral doctor`:", *fix_plan(home)]
    from sandbox.images import bootstrap_base, build_sandbox, find_ca_bundle

    steps = provision()
    steps += ensure_worktree_fs(home)
    client = connect()
    bundle = find_ca_bundle(os.environ)
    try:
        results = [
            bootstrap_base(client, ca_bundle=bundle),
            build_sandbox(client, ca_bundle=bundle),
        ]
    finally:
        client.close()
    steps += [f"built {r.name} ({r.seconds:.0f}s)" for r in results if r.built]
    return steps
