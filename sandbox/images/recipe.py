"""What corral's images are made from: their names, labels and recipe hashes.

Every image corral makes carries a content hash of its recipe in the label
``corral.content-hash``; a tagged image whose label holds the current hash is
current, and nothing is done. The offline base (``offline_base``) hashes its
suite, package set and recipe version (not the mirror); a base made ``--from``
an image (``pulled_base``) hashes that image's id, the package set, the recipe
version and the files of ``images/base``; the sandbox image (``sandbox_image``)
hashes the files of ``images/sandbox`` and the base image id. Standard library
only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ImageError

BASE_IMAGE = "corral/base:bookworm"
SANDBOX_IMAGE = "corral/sandbox:latest"
LABEL_CONTENT_HASH = "corral.content-hash"
#: On a base made ``--from`` an image (``pulled_base``): the ref given, and its image id.
LABEL_BASE_FROM = "corral.base-from"
LABEL_BASE_FROM_ID = "corral.base-from-id"
SUITE = "bookworm"
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
    """An image corral made or found: ``built`` False means it existed (no work done)."""

    name: str
    image_id: str
    content_hash: str
    built: bool
    seconds: float


def images_dir() -> Path:
    """The ``images/`` directory of the source tree (corral is installed from a checkout).

    Raises ``ImageError`` when it is not there (corral installed without its sources).
    """
    here = Path(__file__).resolve().parents[2] / "images"
    if not (here / "sandbox" / "Dockerfile").is_file():
        raise ImageError(
            f"{here}/sandbox/Dockerfile is missing: install corral from its source tree"
            " (pip install -e .)"
        )
    return here


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

    Offline (``offline_base``): the hash of suite and packages. ``--from`` an image
    (``pulled_base``): the hash of the image id it names and the packages;
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
