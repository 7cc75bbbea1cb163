"""``corral/packages:<hash>``: the image a run starts from plus a policy's Debian packages.

A Node project needs ``nodejs`` and ``npm``, a ``make test`` gate needs
``make``; corral's sandbox image has Python only. A policy names what it needs
(``[sandbox] packages``) and this builds it once from ``images/packages/``
on top of the image the run would use otherwise (the sandbox image, or an
agent CLI's), under the machine-wide image lock, labelled with a content hash
of the Dockerfile, the base image id and the sorted package list: a second run
with the same inputs does no work, a new base image builds again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from sandbox.errors import ImageError
from sandbox.images.local import build_image, images_lock, labelled_image
from sandbox.images.recipe import ImageResult, images_dir

PACKAGES_REPO = "corral/packages"
#: apt downloads: bounded, and the bound is in the error message.
BUILD_TIMEOUT_S = 1800


def packages_hash(base_id: str, packages: Sequence[str], dockerfile: bytes) -> str:
    """The recipe hash: the base image id, the sorted packages and the Dockerfile."""
    key = json.dumps([base_id, sorted(set(packages)), hashlib.sha256(dockerfile).hexdigest()])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def with_packages(client: Any, base_id: str, packages: Sequence[str]) -> ImageResult:
    """``base_id`` plus the Debian ``packages``, found or built (``base_id`` itself for none).

    Raises ``ImageError`` naming the packages and the end of the build's log when
    apt cannot install them here.
    """
    if not packages:
        return ImageResult(base_id, base_id, "", False, 0.0)
    started = time.monotonic()
    context = images_dir() / "packages"
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageError(f"{dockerfile} is missing: install corral from its source tree")
    digest = packages_hash(base_id, packages, dockerfile.read_bytes())
    tag = f"{PACKAGES_REPO}:{digest}"
    found = labelled_image(client, tag, digest)
    if found is not None:
        return ImageResult(tag, found.id, digest, False, time.monotonic() - started)
    names = " ".join(sorted(set(packages)))
    with images_lock():
        found = labelled_image(client, tag, digest)
        if found is not None:  # another process built it while we waited
            return ImageResult(tag, found.id, digest, False, time.monotonic() - started)
        args = {"BASE": base_id, "APT_PACKAGES": names}
        try:
            image = build_image(
                client, context, tag, args, digest, network="bridge", timeout=BUILD_TIMEOUT_S
            )
        except ImageError as exc:
            raise ImageError(
                f"cannot add the Debian packages {names} ([sandbox] packages) here: {exc}"
            ) from exc
    return ImageResult(tag, image.id, digest, True, time.monotonic() - started)
