"""The sandbox image: ``images/sandbox`` built ``FROM`` the base, with network none.

``build_sandbox`` builds ``corral/sandbox:latest`` with ``client.images.build``
on the base (made offline first when it is missing or stale): every package is
already in the base, so no build step downloads anything and no CA bundle is
copied. ``image_status`` tells ``corral doctor`` whether base and sandbox image
are there and current.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import ImageNotFound

from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import ImageError
from sandbox.images.ca import find_ca_bundle
from sandbox.images.local import build_image, images_lock, labelled_image
from sandbox.images.offline_base import bootstrap_base
from sandbox.images.recipe import (
    BASE_IMAGE,
    LABEL_BASE_FROM,
    LABEL_CONTENT_HASH,
    SANDBOX_IMAGE,
    ImageResult,
    base_is_current,
    images_dir,
    sandbox_hash,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageStatus:
    """For ``corral doctor``: is the image there, and made from the current recipe?"""

    name: str
    present: bool
    image_id: str | None
    up_to_date: bool
    detail: str


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


def ensure_sandbox_image(client: docker.DockerClient) -> str:
    """The sandbox image's id, bootstrapping and building whatever is missing or stale.

    Uses the host's CA bundle (``find_ca_bundle(os.environ)``) for a bootstrap.
    Raises ``ImageError`` as ``build_sandbox`` does.
    """
    return build_sandbox(client, ca_bundle=find_ca_bundle(os.environ)).image_id


def image_status(client: docker.DockerClient) -> list[ImageStatus]:
    """Base and sandbox image: present, and made from the current recipe?

    Raises ``ImageError`` when the engine cannot be asked or ``images/`` is missing.
    """
    try:
        base = _get(client, BASE_IMAGE)
        sandbox = _get(client, SANDBOX_IMAGE)
    except ENGINE_ERRORS as exc:
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
