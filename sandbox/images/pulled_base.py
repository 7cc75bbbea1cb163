"""The pulled base: ``corral/base:bookworm`` built ``FROM`` a registry image instead of debootstrap.

``bootstrap_from(client, "debian:bookworm-slim")`` uses the image if the local
engine has it, else pulls it through the docker SDK (the engine's pull: where a
registry is reachable), and builds ``images/base/Dockerfile`` on it: the install
stage runs ``apt-get install`` of ``BASE_PACKAGES`` with network bridge and the
host's CA bundle in its build context (as agent images get it); the final stage
copies that root filesystem without the bundle into one layer, with the offline
base's ``PATH``, ``LANG`` and ``CMD``. So ``build_sandbox`` (network none)
works on it unchanged, and ``bootstrap_base`` / ``corral doctor`` count it as
current (``recipe.base_is_current``).

The label ``corral.content-hash`` covers the source's image id, the package
set, the recipe version and the Dockerfile: a second call does no work, a ref
that now names another image rebuilds. ``corral.base-from`` and
``corral.base-from-id`` name the source.

A pull is bounded (``PULL_TIMEOUT_S``): the SDK's pull has no timeout of its
own, so it runs on a worker thread that the caller stops waiting for.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound
from docker.utils import parse_repository_tag

from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import ImageError
from sandbox.images.local import DEFAULT_WORKDIR, build_image, images_lock, labelled_image
from sandbox.images.recipe import (
    BASE_IMAGE,
    BASE_PACKAGES,
    SUITE,
    ImageResult,
    images_dir,
    pulled_base_hash,
)

log = logging.getLogger(__name__)

#: An upper bound on one pull (a bookworm-slim pull normally takes seconds).
PULL_TIMEOUT_S = 1800.0
#: An upper bound on the apt build (downloads the packages: about 150 MB).
BUILD_TIMEOUT_S = 3600
_OFFLINE_FIX = "`corral image bootstrap` without --from builds the base offline"


def bootstrap_from(
    client: docker.DockerClient,
    ref: str,
    *,
    tag: str = BASE_IMAGE,
    packages: tuple[str, ...] = BASE_PACKAGES,
    ca_bundle: Path | None = None,
    force: bool = False,
    pull_timeout: float | None = None,
    workdir: Path | None = None,
) -> ImageResult:
    """Make the base image ``tag`` from the image ``ref`` (local, else pulled) plus ``packages``.

    ``ca_bundle`` goes into the install stage's build context (apt over https
    behind a TLS-intercepting proxy); it is in no layer of the result.
    ``workdir`` holds the temporary build context (default ``/var/tmp``),
    removed on every exit path; the build holds the machine-wide image lock.
    ``pull_timeout`` bounds a pull (default ``PULL_TIMEOUT_S``).
    Idempotent: ``tag`` labelled with the current hash is returned as is
    (``built=False``), unless ``force``.

    Raises ``ImageError`` with the fix: ``ref`` malformed, not local and not
    pullable (no registry reachable, no such image, over ``pull_timeout``: the
    message names the offline bootstrap; nothing is left behind); the build
    failing (``ref`` not Debian bookworm with apt, the mirror unreachable: the
    end of the build log); the engine refusing.
    """
    started = time.monotonic()
    source = _local_or_pulled(client, ref, PULL_TIMEOUT_S if pull_timeout is None else pull_timeout)
    digest = pulled_base_hash(source.id, packages)
    found = None if force else labelled_image(client, tag, digest)
    if found is not None:
        return ImageResult(tag, found.id, digest, False, time.monotonic() - started)
    parent = workdir or DEFAULT_WORKDIR
    with images_lock():
        found = None if force else labelled_image(client, tag, digest)
        if found is not None:  # another process built it while we waited
            return ImageResult(tag, found.id, digest, False, time.monotonic() - started)
        with tempfile.TemporaryDirectory(prefix="corral-base-build-", dir=parent) as tmp:
            context = Path(tmp) / "context"
            shutil.copytree(images_dir() / "base", context)
            if ca_bundle is not None:
                shutil.copyfile(ca_bundle, context / "ca.pem")
            else:
                (context / "ca.pem").write_bytes(b"")
            args = {
                "FROM_IMAGE": source.id,
                "SUITE": SUITE,
                "PACKAGES": " ".join(packages),
                "SOURCE_REF": ref,
                "SOURCE_ID": source.id,
            }
            try:
                image = build_image(
                    client, context, tag, args, digest, network="bridge", timeout=BUILD_TIMEOUT_S
                )
            except ImageError as exc:
                raise ImageError(
                    f"cannot build {tag} from {ref}: {exc}; or {_OFFLINE_FIX}"
                ) from exc
    seconds = time.monotonic() - started
    log.info("built %s %s from %s in %.1fs", tag, image.id, ref, seconds)
    return ImageResult(tag, image.id, digest, True, seconds)


def _local_or_pulled(client: docker.DockerClient, ref: str, timeout: float) -> Any:
    """The image ``ref`` from the local engine, pulled first when it is not there.

    Raises ``ImageError`` (one line, naming the offline bootstrap) when the pull fails.
    """
    repository, tag = parse_repository_tag(ref)
    if not repository or any(c.isspace() for c in ref):
        raise ImageError(f"--from {ref!r} is not an image reference (e.g. debian:bookworm-slim)")
    try:
        return client.images.get(ref)
    except ImageNotFound:
        pass
    except APIError as exc:
        if exc.is_client_error():  # 400 invalid reference format
            raise ImageError(
                f"--from {ref!r} is not an image reference (e.g. debian:bookworm-slim):"
                f" {_one_line(exc.explanation)}"
            ) from exc
        raise ImageError(f"cannot inspect {ref}: {_one_line(exc)}; check the engine") from exc
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot inspect {ref}: {_one_line(exc)}; check the engine") from exc
    log.info("pulling %s (not in the local engine)", ref)
    _pull(client, repository, tag or "latest", timeout)
    try:
        return client.images.get(ref)
    except ENGINE_ERRORS as exc:
        raise ImageError(f"pulled {ref} but cannot find it: {_one_line(exc)}") from exc


def _pull(client: docker.DockerClient, repository: str, tag: str, timeout: float) -> None:
    """``docker pull repository:tag`` on a worker thread, waited for at most ``timeout`` seconds.

    The SDK's pull has no timeout (it passes ``timeout=None``); after a timeout
    the thread is left to end with the engine's answer. Errors in the stream
    (the engine reports a failed pull there, not as an HTTP status) count too.
    """
    ref = f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"
    failure: list[str] = []

    def work() -> None:
        try:
            for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if isinstance(event, dict) and event.get("error"):
                    failure.append(str(event["error"]))
                    return
        except APIError as exc:  # the engine's reason, without the request URL
            failure.append(str(exc.explanation or exc))
        except ENGINE_ERRORS as exc:
            failure.append(str(exc))

    worker = threading.Thread(target=work, name=f"corral-pull-{ref}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ImageError(f"pulling {ref} took over {timeout:.0f}s and was given up; {_OFFLINE_FIX}")
    if failure:
        raise ImageError(
            f"cannot pull {ref} (not in the local engine): {_one_line(failure[0])[:300]}; "
            f"{_OFFLINE_FIX}"
        )


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
