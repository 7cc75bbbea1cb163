"""Images without a registry: an offline-bootstrapped Debian base, and the sandbox image on it.

(Where a registry is reachable the base can be built from a pulled image instead:
``sandbox.pulled_base``; ``base_is_current`` accepts a base made either way.)

``bootstrap_base`` makes ``corral/base:bookworm`` with ``debootstrap`` from the
host's own Debian mirror (so it works wherever the host's apt works) and
imports the root filesystem with the docker SDK
(``APIClient.import_image_from_file``, which takes ``changes`` for the label).
The tarball is written to a file first, not streamed: a ``tar`` that fails
half-way must not become a truncated image. ``build_sandbox`` builds
``images/sandbox/`` ``FROM`` that base with ``client.images.build`` and network
none: every package is already in the base, so no build step downloads
anything. Both images carry a content hash of their recipe in the label
``corral.content-hash``; when the tagged image has the current hash, nothing
is done. ``debootstrap``, ``tar`` and ``umount`` run as subprocesses (standard
library only): there is no Python binding for debootstrap worth a dependency.

Behind a TLS-intercepting proxy: ``find_ca_bundle`` picks the host's bundle;
debootstrap's ``wget`` gets it through a private ``WGETRC`` (only needed for an
https mirror) that lives outside the root filesystem. The environment set-up
containers get it mounted (``sandbox.envimage``). No image contains it.

Run records name images by their image id (``sha256:...``), the digest of the
image's configuration, which covers its layers: with no registry there is no
repo digest (``RepoDigests`` is empty), so the id is the content digest.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import BuildError, DockerException, ImageNotFound

from sandbox.errors import ImageError

log = logging.getLogger(__name__)

BASE_IMAGE = "corral/base:bookworm"
SANDBOX_IMAGE = "corral/sandbox:latest"
LABEL_CONTENT_HASH = "corral.content-hash"
#: On a base made ``--from`` an image (``sandbox.pulled_base``): the ref given, and its image id.
LABEL_BASE_FROM = "corral.base-from"
LABEL_BASE_FROM_ID = "corral.base-from-id"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Where the temporary root filesystem goes: it needs device nodes and exec (a tmpfs /tmp may not).
DEFAULT_WORKDIR = Path("/var/tmp")
#: Everything the sandbox needs, installed by debootstrap (so image builds need no network).
BASE_PACKAGES: tuple[str, ...] = (
    "bash", "coreutils", "findutils", "grep", "sed", "diffutils", "procps", "passwd",
    "git", "ca-certificates", "tini",
    "python3", "python3-venv", "python3-pip", "python3-pytest", "mypy",
)  # fmt: skip
#: Bump when the bootstrap procedure changes in a way the package list does not show.
RECIPE_VERSION = 1
#: An upper bound on one debootstrap run (it normally takes about a minute).
DEBOOTSTRAP_TIMEOUT_S = 3600.0
_WORK_PREFIX = "corral-bootstrap-"
_BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
)


@dataclass(frozen=True, slots=True)
class ImageResult:
    """An image corral made or found: ``built`` False means it existed (no work done)."""

    name: str
    image_id: str
    content_hash: str
    built: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class ImageStatus:
    """For ``corral doctor``: is the image there, and made from the current recipe?"""

    name: str
    present: bool
    image_id: str | None
    up_to_date: bool
    detail: str


def images_dir() -> Path:
    """The ``images/`` directory of the source tree (corral is installed from a checkout).

    Raises ``ImageError`` when it is not there (corral installed without its sources).
    """
    here = Path(__file__).resolve().parent.parent / "images"
    if not (here / "sandbox" / "Dockerfile").is_file():
        raise ImageError(
            f"{here}/sandbox/Dockerfile is missing: install corral from its source tree"
            " (pip install -e .)"
        )
    return here


def find_ca_bundle(env: Mapping[str, str]) -> Path | None:
    """The host's CA bundle: ``SSL_CERT_FILE``, ``PIP_CERT``, ``REQUESTS_CA_BUNDLE``, else Debian's.

    The first variable naming an existing file wins; ``None`` when there is none at all.
    """
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        value = env.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return DEBIAN_BUNDLE if DEBIAN_BUNDLE.is_file() else None


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


def base_hash(suite: str = SUITE, packages: Sequence[str] = BASE_PACKAGES) -> str:
    """The base recipe's hash: suite, package set and recipe version (not the mirror)."""
    recipe = {"suite": suite, "packages": sorted(set(packages)), "recipe": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


def sandbox_hash(base_id: str, context: Path) -> str:
    """The sandbox recipe's hash: every file of the build context (names and bytes) + the base id."""
    return _context_hash(base_id, context)


def pulled_base_hash(
    source_id: str, packages: Sequence[str] = BASE_PACKAGES, context: Path | None = None
) -> str:
    """The hash of a base made ``--from`` an image: its image id, the package set, the recipe
    version and the files of ``images/base`` (the Dockerfile).

    Raises ``ImageError`` when ``images/`` is missing.
    """
    recipe = {"from": source_id, "packages": sorted(set(packages)), "recipe": RECIPE_VERSION}
    return _context_hash(json.dumps(recipe, sort_keys=True), context or images_dir() / "base")


def _context_hash(seed: str, context: Path) -> str:
    """``seed`` and every file of ``context`` (names and bytes), hashed."""
    h = hashlib.sha256(seed.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def base_is_current(
    labels: Mapping[str, str] | None, suite: str = SUITE, packages: Sequence[str] = BASE_PACKAGES
) -> bool:
    """Do a base image's labels say it was made from the current recipe, either way?

    Offline (``bootstrap_base``): the hash of suite and packages. ``--from`` an image
    (``sandbox.pulled_base``): the hash of the image id it names and the packages;
    whether that ref now points elsewhere is not asked (``--from`` again does).
    Raises ``ImageError`` when the labels name a source but ``images/`` is missing.
    """
    labels = labels or {}
    found = labels.get(LABEL_CONTENT_HASH)
    if found is None:
        return False
    if found == base_hash(suite, packages):
        return True
    source_id = labels.get(LABEL_BASE_FROM_ID)
    if not source_id or suite != SUITE:
        return False
    return found == pulled_base_hash(source_id, packages)


def current_base(
    client: docker.DockerClient, suite: str = SUITE, packages: Sequence[str] = BASE_PACKAGES
) -> Any | None:
    """``BASE_IMAGE`` if it was made from the current recipe (``base_is_current``), else None.

    Raises ``ImageError`` when the engine cannot be asked.
    """
    image = local_image(client, BASE_IMAGE)
    return image if image is not None and base_is_current(image.labels, suite, packages) else None


def local_image(client: docker.DockerClient, ref: str) -> Any | None:
    """The image ``ref`` in the local engine, or None. Raises ``ImageError`` when it cannot be asked."""
    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None
    except DockerException as exc:
        raise ImageError(f"cannot inspect {ref}: {exc}; check the engine (corral doctor)") from exc


def labelled_image(client: docker.DockerClient, ref: str, content_hash: str) -> Any | None:
    """The image ``ref`` if it carries ``content_hash`` (label ``corral.content-hash``), else None.

    Raises ``ImageError`` when the engine cannot be asked.
    """
    image = local_image(client, ref)
    if image is None:
        return None
    return image if (image.labels or {}).get(LABEL_CONTENT_HASH) == content_hash else None


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
    image (``sandbox.pulled_base``) counts too (``base_is_current``), so
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
    with _lock(parent / "corral-images.lock") as lock_fd:
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
        except DockerException as exc:
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
                log.debug("debootstrap: %s", line)  # one per package: too many for INFO
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


@contextmanager
def _lock(path: Path) -> Iterator[int]:
    """An exclusive ``flock`` on ``path`` (released when the process dies, too)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            # without O_CREAT first: with fs.protected_regular, O_CREAT on another user's file
            # in a sticky directory (/var/tmp) fails even when the file exists
            fd = os.open(path, flags)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ImageError(
            f"cannot open the image lock {path}: {exc}; remove it or fix its mode"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def build_sandbox(
    client: docker.DockerClient,
    *,
    ca_bundle: Path | None = None,
    force: bool = False,
    mirror: str | None = None,
) -> ImageResult:
    """Build ``corral/sandbox:latest`` from ``images/sandbox`` on the base (bootstrapped if missing).

    ``ca_bundle`` and ``mirror`` are only used to bootstrap a missing base: the
    build itself runs with network none and copies no CA bundle. Idempotent by
    content hash (the files of ``images/sandbox`` and the base image id);
    ``force`` rebuilds the sandbox image only, not the base. Concurrent callers
    on one machine are serialised, so one build serves them all.

    Raises ``ImageError`` (everything ``bootstrap_base`` raises; a failed
    build, with the end of its log).
    """
    base = bootstrap_base(client, mirror=mirror, ca_bundle=ca_bundle)
    started = time.monotonic()
    context = images_dir() / "sandbox"
    digest = sandbox_hash(base.image_id, context)
    found = None if force else labelled_image(client, SANDBOX_IMAGE, digest)
    if found is not None:
        return ImageResult(SANDBOX_IMAGE, found.id, digest, False, time.monotonic() - started)
    with images_lock():
        found = None if force else labelled_image(client, SANDBOX_IMAGE, digest)
        if found is not None:  # another process built it while we waited
            return ImageResult(SANDBOX_IMAGE, found.id, digest, False, time.monotonic() - started)
        image = build_image(client, context, SANDBOX_IMAGE, {"BASE": base.image_id}, digest)
    seconds = time.monotonic() - started
    log.info("built %s %s in %.1fs", SANDBOX_IMAGE, image.id, seconds)
    return ImageResult(SANDBOX_IMAGE, image.id, digest, True, seconds)


def images_lock() -> AbstractContextManager[int]:
    """The machine-wide lock every image bootstrap and build holds (one build serves all waiters)."""
    return _lock(DEFAULT_WORKDIR / "corral-images.lock")


def build_image(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    buildargs: Mapping[str, str],
    digest: str,
    *,
    network: str = "none",
    timeout: int | None = None,
) -> Any:
    """``docker build`` of ``context`` as ``tag`` labelled with ``digest``; call it under ``images_lock``.

    ``network`` is ``none`` unless a build step must download (agent images).
    Raises ``ImageError`` with the end of the build log when the build fails.
    """
    log.info("building %s (%s)", tag, ", ".join(f"{k}={v}" for k, v in buildargs.items()))
    try:
        image, _ = client.images.build(
            path=str(context), tag=tag, buildargs=dict(buildargs),
            labels={LABEL_CONTENT_HASH: digest}, rm=True, forcerm=True, pull=False,
            network_mode=network, timeout=timeout,
        )  # fmt: skip
    except BuildError as exc:
        raise ImageError(f"building {tag} failed: {_log_tail(exc.build_log)}") from exc
    except DockerException as exc:
        raise ImageError(f"building {tag} failed: {exc}; check the engine (corral doctor)") from exc
    return image


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BUILD_NOISE = ("--->", "Removing intermediate container", "Step ")


def _log_tail(build_log: Any, limit: int = 600) -> str:
    """The end of a build log on one line: colour codes and the builder's own chatter dropped."""
    lines = []
    for chunk in build_log:
        text = _ANSI.sub("", str(chunk.get("stream", chunk.get("error", ""))))
        lines += [x.strip() for x in text.splitlines() if x.strip()]
    return " | ".join(x for x in lines if not x.startswith(_BUILD_NOISE))[-limit:]


def ensure_sandbox_image(client: docker.DockerClient) -> str:
    """The sandbox image's id, bootstrapping and building whatever is missing or stale.

    Uses the host's CA bundle (``find_ca_bundle(os.environ)``) for a bootstrap.
    Raises ``ImageError`` as ``build_sandbox`` does.
    """
    return build_sandbox(client, ca_bundle=find_ca_bundle(os.environ)).image_id


def image_digest(client: docker.DockerClient, ref: str) -> str:
    """The ``sha256:`` image id of ``ref``: what run records store (there is no repo digest).

    Raises ``ImageError`` when there is no such image.
    """
    try:
        return str(client.images.get(ref).id)
    except ImageNotFound as exc:
        raise ImageError(f"no image {ref}: run `corral image build`") from exc
    except DockerException as exc:
        raise ImageError(f"cannot inspect {ref}: {exc}; check the engine (corral doctor)") from exc


def image_status(client: docker.DockerClient) -> list[ImageStatus]:
    """Base and sandbox image: present, and made from the current recipe?

    Raises ``ImageError`` when the engine cannot be asked or ``images/`` is missing.
    """
    try:
        base = _get(client, BASE_IMAGE)
        sandbox = _get(client, SANDBOX_IMAGE)
    except DockerException as exc:
        raise ImageError(f"cannot list images: {exc}; check the engine (corral doctor)") from exc
    out = []
    if base is None:
        out.append(ImageStatus(BASE_IMAGE, False, None, False, "missing: `corral image bootstrap`"))
    else:
        ok = base_is_current(base.labels)
        source = (base.labels or {}).get(LABEL_BASE_FROM)
        made = f" (from {source})" if source else ""
        detail = f"current{made}" if ok else f"recipe changed{made}: `corral image bootstrap`"
        out.append(ImageStatus(BASE_IMAGE, True, base.id, ok, detail))
    if sandbox is None:
        out.append(ImageStatus(SANDBOX_IMAGE, False, None, False, "missing: `corral image build`"))
    else:
        want = sandbox_hash(base.id, images_dir() / "sandbox") if base is not None else None
        ok = want is not None and (sandbox.labels or {}).get(LABEL_CONTENT_HASH) == want
        detail = "current" if ok else "out of date: `corral image build`"
        out.append(ImageStatus(SANDBOX_IMAGE, True, sandbox.id, ok, detail))
    return out


def _get(client: docker.DockerClient, ref: str) -> Any | None:
    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None
