"""Agent images: ``corral/agent-NAME:<hash>``, the sandbox image plus one agent CLI.

Built from ``images/agents/Dockerfile`` with the preset's packages as build
arguments, on the building blocks of ``sandbox.images``: the sandbox image is
built (and the base bootstrapped offline) first when missing, the build holds
the machine-wide image lock, and the image is labelled with a content hash of
its recipe (the Dockerfile, the preset's packages and the sandbox image id), so
a second call with the same inputs does no work. The host's CA bundle enters
only the install stage of the build (see the Dockerfile).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from runner.agents import Preset
from sandbox.errors import ImageError
from sandbox.images import (
    ImageResult,
    build_image,
    build_sandbox,
    images_dir,
    images_lock,
    labelled_image,
)

AGENT_REPO = "corral/agent-"
#: An agent build downloads from PyPI/npm: bounded, and the bound is in the error message.
BUILD_TIMEOUT_S = 3600


def agent_context() -> Path:
    """``images/agents`` of the source tree. Raises ``ImageError`` when it is missing."""
    path = images_dir() / "agents"
    if not (path / "Dockerfile").is_file():
        raise ImageError(f"{path}/Dockerfile is missing: install corral from its source tree")
    return path


def agent_hash(preset: Preset, sandbox_id: str, context: Path) -> str:
    """The recipe hash: the build context's files, the packages to install, the sandbox image id."""
    h = hashlib.sha256(sandbox_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    recipe = {"apt": preset.apt, "pip": preset.pip, "npm": preset.npm, "bins": preset.bins}
    h.update(json.dumps(recipe, sort_keys=True).encode())
    return h.hexdigest()[:24]


def build_agent_image(
    client: Any, preset: Preset, *, ca_bundle: Path | None, force: bool = False
) -> ImageResult:
    """The agent image of ``preset`` (the sandbox image itself for a preset that installs nothing).

    Raises ``ImageError``: everything ``build_sandbox`` raises, a build that
    fails (with the end of its log: a package that cannot be installed here
    fails here, in one line), and a missing CA bundle when the preset installs.
    """
    sandbox = build_sandbox(client, ca_bundle=ca_bundle)
    if not preset.installs:
        return sandbox
    started = time.monotonic()
    context = agent_context()
    digest = agent_hash(preset, sandbox.image_id, context)
    tag = f"{AGENT_REPO}{preset.name}:{digest}"
    found = None if force else labelled_image(client, tag, digest)
    if found is not None:
        return ImageResult(tag, found.id, digest, False, time.monotonic() - started)
    if ca_bundle is None:
        raise ImageError(
            f"building the {preset.name} agent image needs a CA bundle for PyPI/npm: "
            "give --ca-bundle FILE or set SSL_CERT_FILE"
        )
    with images_lock():
        found = None if force else labelled_image(client, tag, digest)
        if found is not None:  # another process built it while we waited
            return ImageResult(tag, found.id, digest, False, time.monotonic() - started)
        with tempfile.TemporaryDirectory(prefix="corral-agent-build-") as tmp:
            build = Path(tmp) / "context"
            shutil.copytree(context, build)
            shutil.copyfile(ca_bundle, build / "ca.pem")
            args = {
                "BASE": sandbox.image_id,
                "APT_PACKAGES": " ".join(preset.apt),
                "PIP_PACKAGES": " ".join(preset.pip),
                "NPM_PACKAGES": " ".join(preset.npm),
                "BINS": " ".join(preset.bins),
            }
            try:
                image = build_image(
                    client, build, tag, args, digest, network="bridge", timeout=BUILD_TIMEOUT_S
                )
            except ImageError as exc:
                raise ImageError(f"cannot build the {preset.name} agent image here: {exc}") from exc
    return ImageResult(tag, image.id, digest, True, time.monotonic() - started)
