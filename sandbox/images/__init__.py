"""corral's images, made without a registry, each cached by a content hash of its recipe.

- ``recipe``: image names, labels, the recipe hashes, ``ImageResult``
- ``local``: images in the local engine: looked up, built under the machine-wide lock
- ``ca``: the host's CA bundle, for whatever downloads (debootstrap, apt, set-up)
- ``offline_base``: ``corral/base:bookworm`` by debootstrap from the host's Debian mirror
- ``pulled_base``: the same base built ``FROM`` a local or pulled image instead
- ``sandbox_image``: ``corral/sandbox:latest`` on the base, network none; ``image_status``
- ``env_image``: a repository's set-up commands run on the sandbox image and committed

The Dockerfiles are in ``images/`` at the top of the source tree. Agent images
(one agent CLI on the sandbox image) are ``runner.agents.image``. What the rest
of corral uses is re-exported here.
"""

from sandbox.errors import SetupFailed
from sandbox.images.ca import find_ca_bundle
from sandbox.images.env_image import EnvImage, ensure_env_image, env_hash
from sandbox.images.local import (
    build_image,
    image_digest,
    images_lock,
    labelled_image,
    local_image,
)
from sandbox.images.offline_base import bootstrap_base, host_mirror
from sandbox.images.pulled_base import bootstrap_from
from sandbox.images.recipe import (
    BASE_IMAGE,
    BASE_PACKAGES,
    LABEL_BASE_FROM,
    LABEL_BASE_FROM_ID,
    LABEL_CONTENT_HASH,
    SANDBOX_IMAGE,
    SUITE,
    ImageResult,
    base_hash,
    base_is_current,
    images_dir,
    pulled_base_hash,
    sandbox_hash,
)
from sandbox.images.sandbox_image import (
    ImageStatus,
    build_sandbox,
    ensure_sandbox_image,
    image_status,
)

__all__ = [
    "BASE_IMAGE",
    "BASE_PACKAGES",
    "LABEL_BASE_FROM",
    "LABEL_BASE_FROM_ID",
    "LABEL_CONTENT_HASH",
    "SANDBOX_IMAGE",
    "SUITE",
    "EnvImage",
    "ImageResult",
    "ImageStatus",
    "SetupFailed",
    "base_hash",
    "base_is_current",
    "bootstrap_base",
    "bootstrap_from",
    "build_image",
    "build_sandbox",
    "ensure_env_image",
    "ensure_sandbox_image",
    "env_hash",
    "find_ca_bundle",
    "host_mirror",
    "image_digest",
    "image_status",
    "images_dir",
    "images_lock",
    "labelled_image",
    "local_image",
    "pulled_base_hash",
    "sandbox_hash",
]
