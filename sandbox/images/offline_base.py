"""The offline base: ``corral/base:bookworm`` by debootstrap from the host's own Debian mirror.

(Where a registry is reachable the base can be built from a pulled image instead:
``pulled_base``; ``recipe.base_is_current`` accepts a base made either way.)

``bootstrap_base`` makes the base with ``debootstrap`` from the host's mirror
(so it works wherever the host's apt works) and imports the root filesystem
with the docker SDK (``APIClient.import_image_from_file``, which takes
``changes`` for the label). The tarball is written to a file first, not
streamed: a ``tar`` that fails half-way must not become a truncated image.
``debootstrap``, ``tar`` and ``umount`` run as subprocesses (standard library
only): there is no Python binding for debootstrap worth a dependency. Behind a
TLS-intercepting proxy debootstrap's ``wget`` gets the CA bundle (``ca``)
through a private ``WGETRC`` that lives outside the root filesystem.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker

from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import ImageError
from sandbox.images.local import DEFAULT_WORKDIR, local_image, lock_file
from sandbox.images.recipe import (
    BASE_IMAGE,
    BASE_PACKAGES,
    LABEL_CONTENT_HASH,
    SUITE,
    ImageResult,
    base_hash,
    base_is_current,
)

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: An upper bound on one debootstrap run (it normally takes about a minute).
DEBOOTSTRAP_TIMEOUT_S = 3600.0
#: At most one per-package debootstrap line this often at INFO: progress, not a flood.
PROGRESS_EVERY_S = 5.0
_WORK_PREFIX = "corral-bootstrap-"
_BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
)


def host_mirror(sources: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian mirror the host's apt uses for ``suite`` (else deb.debian.org).

    Reads deb822 ``sources.list.d/*.sources`` first, then one-line ``sources.list``
    and ``sources.list.d/*.list``.
    """
    for f in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields = {
                k.strip(): v.strip()
                for k, _, v in (line.partition(":") for line in stanza.splitlines())
                if not k.lstrip().startswith("#")
            }
            if (
                "deb" in fields.get("Types", "deb").split()
                and suite in fields.get("Suites", "").split()
                and fields.get("URIs")
                and fields.get("Enabled", "yes") != "no"
            ):
                return fields["URIs"].split()[0]
    one_line = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]
    for f in one_line:
        if f.is_file():
            for line in f.read_text(errors="replace").splitlines():
                m = re.match(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{re.escape(suite)}\s", line)
                if m:
                    return m.group(1)
    return DEFAULT_MIRROR


def current_base(
    client: docker.DockerClient, suite: str = SUITE, packages: Sequence[str] = BASE_PACKAGES
) -> Any | None:
    """``BASE_IMAGE`` if it was made from the current recipe (``base_is_current``), else None.

    Raises ``ImageError`` when the engine cannot be asked.
    """
    image = local_image(client, BASE_IMAGE)
    return image if image is not None and base_is_current(image.labels, suite, packages) else None


def bootstrap_base(
    client: docker.DockerClient,
    *,
    suite: str = SUITE,
    mirror: str | None = None,
    packages: Sequence[str] = BASE_PACKAGES,
    ca_bundle: Path | None = None,
    force: bool = False,
    workdir: Path | None = None,
) -> ImageResult:
    """Make ``corral/base:bookworm`` with debootstrap + docker import (no registry needed).

    ``mirror`` defaults to the host's apt mirror; ``ca_bundle`` is handed to
    debootstrap's wget (for an https mirror); ``workdir`` holds the temporary
    root filesystem (default ``/var/tmp``), which is removed on every exit path
    (after a kill -9, by the next bootstrap).
    Idempotent: an image tagged ``BASE_IMAGE`` made from the current recipe is
    returned as is (``built=False``), unless ``force``; a base made ``--from`` an
    image (``pulled_base``) counts too (``base_is_current``), so
    ``build_sandbox`` and ``corral doctor --fix`` build on it; ``force`` replaces
    it with the offline base. Concurrent callers on one machine are serialised by
    a lock file in ``workdir``.

    Raises ``ImageError`` with the fix: not root, debootstrap missing, the
    mirror failing, the engine refusing the import.
    """
    started = time.monotonic()
    digest = base_hash(suite, packages)
    found = None if force else current_base(client, suite, packages)
    if found is not None:
        return _found(found, started)
    if os.geteuid() != 0:
        raise ImageError(
            "bootstrapping the base image needs root: run `corral image bootstrap` as root"
        )
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: apt-get install debootstrap")
    parent = workdir or DEFAULT_WORKDIR
    with lock_file(parent / "corral-images.lock") as lock_fd:
        found = None if force else current_base(client, suite, packages)
        if found is not None:  # another process made it while we waited
            return _found(found, started)
        stale_trees = list(
            parent.glob(f"{_WORK_PREFIX}*")
        )  # a killed bootstrap's; we hold the lock
        for stale in stale_trees:
            log.info("removing %s, left by an interrupted bootstrap", stale)
            _remove_tree(stale)
        mirror = mirror or host_mirror(suite=suite)
        work = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=parent))
        try:
            rootfs = work / "rootfs"
            _debootstrap(suite, mirror, packages, rootfs, _wget_env(work, ca_bundle), lock_fd)
            _tidy(rootfs)
            tarball = work / "rootfs.tar"
            log.info("packing %s", rootfs)
            tar = subprocess.run(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                capture_output=True, text=True, errors="replace", check=False,
            )  # fmt: skip
            if tar.returncode != 0:
                raise ImageError(f"tar of the root filesystem failed: {tar.stderr.strip()[-300:]}")
            log.info("importing %s", BASE_IMAGE)
            repo, tag = BASE_IMAGE.split(":")
            client.api.import_image_from_file(
                str(tarball),
                repository=repo,
                tag=tag,
                changes=[*_BASE_CHANGES, f"LABEL {LABEL_CONTENT_HASH}={digest}"],
            )
            image = client.images.get(BASE_IMAGE)
        except ENGINE_ERRORS as exc:
            raise ImageError(
                f"importing {BASE_IMAGE} failed: {exc}; check the engine (corral doctor)"
            ) from exc
        except OSError as exc:
            raise ImageError(f"bootstrapping {BASE_IMAGE} failed: {exc}") from exc
        finally:
            _remove_tree(work)
    seconds = time.monotonic() - started
    log.info("made %s %s in %.1fs", BASE_IMAGE, image.id, seconds)
    return ImageResult(BASE_IMAGE, image.id, digest, True, seconds)


def _found(image: Any, started: float) -> ImageResult:
    """The current base found as it is (no work done)."""
    digest = str((image.labels or {}).get(LABEL_CONTENT_HASH, ""))
    return ImageResult(BASE_IMAGE, image.id, digest, False, time.monotonic() - started)


def _wget_env(work: Path, ca_bundle: Path | None) -> dict[str, str]:
    """debootstrap's environment: the caller's, plus a private wgetrc naming the CA bundle."""
    env = dict(os.environ)
    if ca_bundle is not None:
        wgetrc = work / "wgetrc"
        wgetrc.write_text(f"ca_certificate = {ca_bundle}\n")
        env["WGETRC"] = str(wgetrc)
    return env


def _debootstrap(
    suite: str,
    mirror: str,
    packages: Sequence[str],
    rootfs: Path,
    env: dict[str, str],
    lock_fd: int,
) -> None:
    """Run debootstrap, logging its progress; stop it on any exit (timeout, Ctrl-C).

    debootstrap inherits the lock: if this process is killed outright, the lock
    stays held until the orphaned debootstrap is gone too, so the next bootstrap
    never removes a tree that is still being written.
    """
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
            suite, str(rootfs), mirror]  # fmt: skip
    log.info("debootstrap %s from %s into %s (takes a minute or more)", suite, mirror, rootfs)
    tail: collections.deque[str] = collections.deque(maxlen=5)
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", env=env, pass_fds=(lock_fd,),
    )  # fmt: skip
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        proc.terminate()

    timer = threading.Timer(DEBOOTSTRAP_TIMEOUT_S, stop)
    timer.start()
    shown = time.monotonic()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line:
                continue
            tail.append(line)
            if line.startswith(("W:", "E:")):
                log.warning("debootstrap: %s", line)
            elif line.startswith(("I: Retrieving ", "I: Validating ", "I: Extracting ",
                                  "I: Unpacking ", "I: Configuring ")):  # fmt: skip
                # one per package: too many for INFO, so one of them every few seconds
                if time.monotonic() - shown >= PROGRESS_EVERY_S:
                    shown = time.monotonic()
                    log.info("debootstrap: %s", line)
                else:
                    log.debug("debootstrap: %s", line)
            else:
                log.info("debootstrap: %s", line)
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.terminate()  # lets debootstrap's exit traps unmount /proc and /sys
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if timed_out.is_set():
        raise ImageError(
            f"debootstrap {suite} from {mirror} took over {DEBOOTSTRAP_TIMEOUT_S:.0f}s and was"
            " stopped; check the mirror's speed (corral image bootstrap --mirror URL)"
        )
    if code != 0:
        raise ImageError(
            f"debootstrap {suite} from {mirror} failed ({code}): {' | '.join(tail)};"
            " check the mirror (corral image bootstrap --mirror URL) and the CA bundle"
        )


def _tidy(rootfs: Path) -> None:
    """Drop downloaded packages and index files: they are not needed at run time."""
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / junk).glob("*"):
            if p.is_file() and not p.is_symlink() and p.name != "lock":
                p.unlink()


def _remove_tree(work: Path) -> None:
    """Remove ``work``; first detach anything still mounted under it (a killed debootstrap
    leaves /proc and /sys mounted in the root filesystem). If a mount cannot be
    detached, the tree is left in place rather than deleted through it."""
    under = _mounts_under(work)
    for mountpoint in sorted(under, key=lambda p: len(p.parts), reverse=True):
        subprocess.run(["umount", "--lazy", str(mountpoint)], capture_output=True, check=False)
    left = _mounts_under(work)
    if left:
        log.error("left %s in place: still mounted there: %s", work, ", ".join(map(str, left)))
        return
    shutil.rmtree(work, ignore_errors=True)


def _mounts_under(root: Path) -> list[Path]:
    root = root.resolve()
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            mountpoint = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
            if mountpoint == root or root in mountpoint.parents:
                found.append(mountpoint)
    return found
