"""The worktree filesystem: mounted ``nosuid,nodev`` with a size limit.

An agent can leave a setuid binary or a device node in its tree; on a
``nosuid,nodev`` mount neither means anything to the host, and a size limit
keeps a runaway writer from filling the host disk. ``ensure_worktree_fs`` sets
up ``$CORRAL_HOME/worktrees`` as a sparse ext4 image mounted through a loop
device (``home/worktrees.img``), or a tmpfs where loop devices are missing.
``check_worktree_fs`` reads the mount flags with ``os.statvfs`` and the mount
point and type from ``/proc/self/mountinfo`` (no library does this better).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import StorageError
from sandbox.paths import worktrees_dir

log = logging.getLogger(__name__)

#: Default size of the worktree filesystem (sparse: it takes only what is written).
DEFAULT_SIZE_MB = 8 * 1024


@dataclass(frozen=True, slots=True)
class FsStatus:
    """What holds a path: its mount, type, flags and space."""

    path: str
    mountpoint: str
    fstype: str
    nosuid: bool
    nodev: bool
    size_bytes: int
    free_bytes: int

    @property
    def ok(self) -> bool:
        """Whether worktrees here are safe: ``nosuid`` and ``nodev`` on a mount of its own."""
        return self.nosuid and self.nodev

    @property
    def detail(self) -> str:
        flags = ",".join(f for f, on in (("nosuid", self.nosuid), ("nodev", self.nodev)) if on)
        return (
            f"{self.fstype} at {self.mountpoint} ({flags or 'suid,dev allowed'}), "
            f"{self.free_bytes / 2**30:.1f} of {self.size_bytes / 2**30:.1f} GiB free"
        )


def _mount_of(path: Path) -> tuple[str, str]:
    """``(mount point, fs type)`` of the mount holding ``path`` (longest matching mount point)."""
    best, fstype = "/", "unknown"
    resolved = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ")
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, fstype = point, fields[sep + 1]
    return best, fstype


def check_worktree_fs(path: Path) -> FsStatus:
    """The filesystem that holds ``path`` (the nearest existing ancestor when it does not exist)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    vfs = os.statvfs(probe)
    point, fstype = _mount_of(probe)
    return FsStatus(
        path=str(path),
        mountpoint=point,
        fstype=fstype,
        nosuid=bool(vfs.f_flag & os.ST_NOSUID),
        nodev=bool(vfs.f_flag & os.ST_NODEV),
        size_bytes=vfs.f_blocks * vfs.f_frsize,
        free_bytes=vfs.f_bavail * vfs.f_frsize,
    )


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise StorageError(f"{' '.join(argv)} failed: {proc.stderr.strip()[:300]}")


def _is_mountpoint(path: Path) -> bool:
    return path.exists() and _mount_of(path)[0] == str(path.resolve())


def mount_commands(home: Path, size_mb: int = DEFAULT_SIZE_MB) -> list[str]:
    """The shell commands a root user runs to do what ``ensure_worktree_fs`` does (loop image)."""
    target = shlex.quote(str(worktrees_dir(home)))
    image = shlex.quote(str(home / "worktrees.img"))
    return [
        f"mkdir -p {target}",
        f"test -e {image} || (truncate -s {size_mb}M {image}"
        f" && mkfs.ext4 -q -F -m 0 -E root_owner=0:0 {image})",
        f"mount -o loop,nosuid,nodev,noatime {image} {target}",
        f"chmod 711 {target}",
    ]


def ensure_worktree_fs(home: Path, size_mb: int = DEFAULT_SIZE_MB) -> list[str]:
    """Mount ``home/worktrees`` ``nosuid,nodev`` with a size limit; return the steps taken.

    Idempotent: a safe mount already there gives ``[]``. Existing worktrees are
    never hidden: a non-empty unmounted directory is refused. Needs root;
    raises ``StorageError`` otherwise or when mounting fails.
    """
    target = worktrees_dir(home)
    if _is_mountpoint(target) and check_worktree_fs(target).ok:
        return []
    if os.geteuid() != 0:
        raise StorageError(f"mounting {target} needs root: run `corral doctor --fix` as root")
    target.mkdir(parents=True, exist_ok=True)
    if _is_mountpoint(target):
        _run(["mount", "-o", "remount,nosuid,nodev", str(target)])
        return [f"remounted {target} nosuid,nodev"]
    if any(target.iterdir()):
        raise StorageError(
            f"{target} holds worktrees but is not a mount: `corral gc` first, then `corral doctor --fix`"
        )
    image = home / "worktrees.img"
    steps: list[str] = []
    if not image.exists():  # a failure here is the disk's: reported, never papered over
        free = shutil.disk_usage(home).free // 2**20
        if free < size_mb:
            raise StorageError(
                f"{home} has {free} MiB free, less than the {size_mb} MiB worktree filesystem"
                " needs: free space there, or point CORRAL_HOME at another disk"
            )
        try:
            with open(image, "wb") as f:
                f.truncate(size_mb * 1024 * 1024)
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", str(image)])
        except (OSError, StorageError) as exc:
            image.unlink(missing_ok=True)
            raise StorageError(f"cannot make the worktree filesystem image {image}: {exc}") from exc
        steps.append(f"created a {size_mb} MiB sparse ext4 image {image}")
    try:  # only a missing loop device falls back to RAM, and says so
        _run(["mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(target)])
        steps.append(f"mounted {image} at {target} (loop, nosuid, nodev)")
    except StorageError as exc:
        log.warning("loop mount failed (%s); using tmpfs", exc)
        _run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"nosuid,nodev,size={size_mb}m,mode=0711",
                "tmpfs",
                str(target),
            ]
        )
        steps.append(f"mounted a {size_mb} MiB tmpfs at {target} (no loop device; lost on reboot)")
    os.chmod(target, 0o711)
    return steps


def unmount_worktree_fs(home: Path) -> bool:
    """Unmount ``home/worktrees`` if it is a mount (the image file stays). Returns whether it was."""
    target = worktrees_dir(home)
    if not _is_mountpoint(target):
        return False
    _run(["umount", str(target)])
    return True


@contextmanager
def mount_scratch_fs(path: Path, size_mb: int, *, noexec: bool = False) -> Iterator[Path]:
    """A ``nosuid,nodev`` (and ``noexec`` if asked) tmpfs at ``path`` for the block's duration
    (tests, throwaway homes)."""
    if os.geteuid() != 0:
        raise StorageError(f"mounting {path} needs root")
    path.mkdir(parents=True, exist_ok=True)
    flags = "nosuid,nodev,noexec" if noexec else "nosuid,nodev"
    _run(["mount", "-t", "tmpfs", "-o", f"{flags},size={size_mb}m,mode=0711", "tmpfs", str(path)])
    try:
        yield path
    finally:
        _run(["umount", "-l", str(path)])
