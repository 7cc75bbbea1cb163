"""Images without a registry: an offline-bootstrapped Debian base, and the sandbox image on it.

``bootstrap_base`` makes ``corral/base:bookworm`` with ``debootstrap`` (from the
host's own Debian mirror, so it works wherever the host's apt works, CA bundle
included) and ``docker import``; ``build_sandbox`` builds ``images/sandbox/``
``FROM`` it with network none. Both are labelled with a content hash of their
recipe and do no work when an image with that hash exists.

Registries behind a TLS-intercepting proxy: ``find_ca_bundle`` picks the
host's bundle (``SSL_CERT_FILE``, ``PIP_CERT``, ``REQUESTS_CA_BUNDLE``, else
Debian's); debootstrap's downloads get it through the same variables, and the
environment set-up containers get it mounted (``sandbox.envimage``). The
sandbox image itself needs no network and contains no bundle.

Run records name images by their image id (``sha256:...``), which is the
digest of the image's configuration: with no registry there is no repo digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import BuildError, DockerException, ImageNotFound

from sandbox.errors import ImageError

log = logging.getLogger(__name__)

BASE_IMAGE = "corral/base:bookworm"
SANDBOX_IMAGE = "corral/sandbox:latest"
LABEL_CONTENT_HASH = "corral.content-hash"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Everything the sandbox needs, installed by debootstrap (so image builds need no network).
BASE_PACKAGES: tuple[str, ...] = (
    "bash", "coreutils", "findutils", "grep", "sed", "diffutils", "procps", "passwd",
    "git", "ca-certificates", "tini",
    "python3", "python3-venv", "python3-pip", "python3-pytest", "mypy",
)  # fmt: skip
#: Bump when the bootstrap procedure changes in a way the package list does not show.
RECIPE_VERSION = 1


@dataclass(frozen=True, slots=True)
class ImageResult:
    """An image corral made or found: ``built`` False means it existed (no work)."""

    name: str
    image_id: str
    content_hash: str
    built: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class ImageStatus:
    """For ``corral doctor``: is the image there and made from the current recipe?"""

    name: str
    present: bool
    image_id: str | None
    up_to_date: bool
    detail: str


def images_dir() -> Path:
    """The ``images/`` directory of the source tree (corral is installed from a checkout)."""
    here = Path(__file__).resolve().parent.parent / "images"
    if not (here / "sandbox" / "Dockerfile").is_file():
        raise ImageError(
            f"{here}/sandbox/Dockerfile is missing: install corral from its source tree"
        )
    return here


def find_ca_bundle(env: Mapping[str, str]) -> Path | None:
    """The host's CA bundle: ``SSL_CERT_FILE``, ``PIP_CERT``, ``REQUESTS_CA_BUNDLE``, else Debian's."""
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        value = env.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return DEBIAN_BUNDLE if DEBIAN_BUNDLE.is_file() else None


def host_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the host's apt uses for the main suite (default deb.debian.org)."""
    for f in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines())
                if not k.startswith("#")
            )
            suites = fields.get("Suites", "").split()
            if SUITE in suites and fields.get("URIs") and fields.get("Enabled", "yes") != "no":
                return fields["URIs"].split()[0]
    listing = sources / "sources.list"
    if listing.is_file():
        for line in listing.read_text(errors="replace").splitlines():
            m = re.match(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if m:
                return m.group(1)
    return DEFAULT_MIRROR


def base_hash() -> str:
    recipe = {"suite": SUITE, "packages": sorted(BASE_PACKAGES), "recipe": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


def sandbox_hash(base_id: str, context: Path) -> str:
    h = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _labelled(client: Any, ref: str, content_hash: str) -> Any | None:
    try:
        image = client.images.get(ref)
    except ImageNotFound:
        return None
    return image if image.labels.get(LABEL_CONTENT_HASH) == content_hash else None


def bootstrap_base(
    client: Any,
    *,
    mirror: str | None = None,
    ca_bundle: Path | None = None,
    force: bool = False,
) -> ImageResult:
    """Make ``corral/base:bookworm`` with debootstrap + docker import (no registry needed).

    Idempotent: an image with the current recipe's hash is returned as is.
    Raises ``ImageError`` naming the fix (not root, debootstrap missing, mirror
    unreachable).
    """
    digest = base_hash()
    found = None if force else _labelled(client, BASE_IMAGE, digest)
    if found is not None:
        return ImageResult(BASE_IMAGE, found.id, digest, False, 0.0)
    if os.geteuid() != 0:
        raise ImageError(
            "bootstrapping the base image needs root: run `corral image bootstrap` as root"
        )
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: apt-get install debootstrap")
    mirror = mirror or host_mirror()
    started = time.monotonic()
    env = dict(os.environ)
    if ca_bundle is not None:
        env.update(
            {k: str(ca_bundle) for k in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE")}
        )
    work = Path(tempfile.mkdtemp(prefix="corral-bootstrap-", dir="/var/tmp"))
    try:
        rootfs = work / "rootfs"
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                SUITE, str(rootfs), mirror]  # fmt: skip
        log.info("bootstrapping %s from %s (takes minutes)", BASE_IMAGE, mirror)
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=3600, check=False
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise ImageError(
                f"debootstrap from {mirror} failed: {' | '.join(tail)}; check the mirror (--mirror)"
            )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        tarball = work / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                       check=True, capture_output=True)  # fmt: skip
        repo, tag = BASE_IMAGE.split(":")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"LABEL {LABEL_CONTENT_HASH}={digest}",
            'CMD ["/bin/bash"]',
        ]
        client.api.import_image_from_file(str(tarball), repository=repo, tag=tag, changes=changes)
        image = client.images.get(BASE_IMAGE)
    except (DockerException, subprocess.SubprocessError, OSError) as exc:
        raise ImageError(f"bootstrapping {BASE_IMAGE} failed: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImageResult(BASE_IMAGE, image.id, digest, True, time.monotonic() - started)


def build_sandbox(client: Any, *, force: bool = False, mirror: str | None = None,
                  ca_bundle: Path | None = None) -> ImageResult:  # fmt: skip
    """Build ``corral/sandbox:latest`` from ``images/sandbox`` on the base (bootstrapped if needed).

    The build runs with network none. Idempotent by content hash (the
    Dockerfile directory and the base image id). Raises ``ImageError``.
    """
    base = bootstrap_base(client, mirror=mirror, ca_bundle=ca_bundle)
    context = images_dir() / "sandbox"
    digest = sandbox_hash(base.image_id, context)
    found = None if force else _labelled(client, SANDBOX_IMAGE, digest)
    if found is not None:
        return ImageResult(SANDBOX_IMAGE, found.id, digest, False, 0.0)
    started = time.monotonic()
    try:
        image, _ = client.images.build(
            path=str(context), tag=SANDBOX_IMAGE, buildargs={"BASE": base.image_id},
            labels={LABEL_CONTENT_HASH: digest}, rm=True, forcerm=True, pull=False,
            network_mode="none",
        )  # fmt: skip
    except BuildError as exc:
        lines = [
            str(chunk.get("stream", chunk.get("error", ""))).strip() for chunk in exc.build_log
        ]
        raise ImageError(
            f"building {SANDBOX_IMAGE} failed: {' | '.join(x for x in lines if x)[-400:]}"
        ) from exc
    except DockerException as exc:
        raise ImageError(f"building {SANDBOX_IMAGE} failed: {exc}") from exc
    return ImageResult(SANDBOX_IMAGE, image.id, digest, True, time.monotonic() - started)


def ensure_sandbox_image(client: Any) -> str:
    """The sandbox image's id, bootstrapping and building whatever is missing."""
    return build_sandbox(client, ca_bundle=find_ca_bundle(os.environ)).image_id


def image_digest(client: Any, ref: str) -> str:
    """The ``sha256:`` image id of ``ref`` (what run records store)."""
    try:
        return str(client.images.get(ref).id)
    except ImageNotFound as exc:
        raise ImageError(f"no image {ref}: run `corral image build`") from exc


def image_status(client: Any) -> list[ImageStatus]:
    """Base and sandbox image: present, and built from the current recipe?"""
    out = []
    base = None
    try:
        base = client.images.get(BASE_IMAGE)
        ok = base.labels.get(LABEL_CONTENT_HASH) == base_hash()
        out.append(
            ImageStatus(
                BASE_IMAGE,
                True,
                base.id,
                ok,
                "current" if ok else "recipe changed: `corral image bootstrap`",
            )
        )
    except ImageNotFound:
        out.append(ImageStatus(BASE_IMAGE, False, None, False, "missing: `corral image bootstrap`"))
    try:
        sb = client.images.get(SANDBOX_IMAGE)
        want = sandbox_hash(base.id, images_dir() / "sandbox") if base is not None else None
        ok = want is not None and sb.labels.get(LABEL_CONTENT_HASH) == want
        out.append(
            ImageStatus(
                SANDBOX_IMAGE,
                True,
                sb.id,
                ok,
                "current" if ok else "out of date: `corral image build`",
            )
        )
    except ImageNotFound:
        out.append(ImageStatus(SANDBOX_IMAGE, False, None, False, "missing: `corral image build`"))
    return out
