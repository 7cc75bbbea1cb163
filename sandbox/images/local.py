"""Images in the local engine: looked up, checked against a recipe hash, built under one lock.

Every bootstrap and build on a machine holds one ``flock`` (``images_lock``),
so concurrent callers wait and the first one's image serves them all.
``build_image`` is ``client.images.build`` with network none unless a step
must download, the label ``corral.content-hash``, each ``Step N/M`` logged as
it starts (the build's progress), and the end of the build log in the error.

Run records name images by their image id (``sha256:...``, ``image_digest``),
the digest of the image's configuration, which covers its layers: with no
registry there is no repo digest (``RepoDigests`` is empty), so the id is the
content digest.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import docker
from docker.errors import BuildError, ImageNotFound

from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import ImageError
from sandbox.images.recipe import LABEL_CONTENT_HASH

log = logging.getLogger(__name__)

#: Where the temporary root filesystem goes: it needs device nodes and exec (a tmpfs /tmp may not).
DEFAULT_WORKDIR = Path("/var/tmp")


def local_image(client: docker.DockerClient, ref: str) -> Any | None:
    """The image ``ref`` in the local engine, or None. Raises ``ImageError`` when it cannot be asked."""
    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot inspect {ref}: {exc}; check the engine (corral doctor)") from exc


def labelled_image(client: docker.DockerClient, ref: str, content_hash: str) -> Any | None:
    """The image ``ref`` if it carries ``content_hash`` (label ``corral.content-hash``), else None.

    Raises ``ImageError`` when the engine cannot be asked.
    """
    image = local_image(client, ref)
    if image is None:
        return None
    return image if (image.labels or {}).get(LABEL_CONTENT_HASH) == content_hash else None


def image_digest(client: docker.DockerClient, ref: str) -> str:
    """The ``sha256:`` image id of ``ref``: what run records store (there is no repo digest).

    Raises ``ImageError`` when there is no such image.
    """
    try:
        return str(client.images.get(ref).id)
    except ImageNotFound as exc:
        raise ImageError(f"no image {ref}: run `corral image build`") from exc
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot inspect {ref}: {exc}; check the engine (corral doctor)") from exc


@contextmanager
def lock_file(path: Path) -> Iterator[int]:
    """An exclusive ``flock`` on ``path`` (released when the process dies, too).

    Raises ``ImageError`` when the file cannot be opened.
    """
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


def images_lock() -> AbstractContextManager[int]:
    """The machine-wide lock every image bootstrap and build holds (one build serves all waiters)."""
    return lock_file(DEFAULT_WORKDIR / "corral-images.lock")


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
        stream = client.api.build(
            path=str(context), tag=tag, buildargs=dict(buildargs),
            labels={LABEL_CONTENT_HASH: digest}, rm=True, forcerm=True, pull=False,
            network_mode=network, timeout=timeout, decode=True,
        )  # fmt: skip
        image = client.images.get(_built_id(tag, stream))
    except BuildError as exc:
        raise ImageError(f"building {tag} failed: {_log_tail(exc.build_log)}") from exc
    except ENGINE_ERRORS as exc:
        raise ImageError(f"building {tag} failed: {exc}; check the engine (corral doctor)") from exc
    return image


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BUILD_NOISE = ("--->", "Removing intermediate container", "Step ")
_BUILT = re.compile(r"(^Successfully built |sha256:)([0-9a-f]+)$")


def _built_id(tag: str, stream: Iterator[dict[str, Any]]) -> str:
    """The image id a build's JSON stream ends with, logging each ``Step N/M`` as it starts (a
    build can take minutes: the steps are its progress). What ``client.images.build`` does
    with the stream, which it reads to the end before returning. Raises ``BuildError``."""
    chunks: list[dict[str, Any]] = []
    image_id = None
    for chunk in stream:
        chunks.append(chunk)
        if "error" in chunk:
            raise BuildError(chunk["error"], chunks)
        text = str(chunk.get("stream", ""))
        if text.startswith("Step "):
            log.info("%s: %s", tag, _ANSI.sub("", text).strip()[:120])
        found = _BUILT.search(text.strip())
        if found:
            image_id = found.group(2)
    if image_id is None:
        raise BuildError(chunks[-1] if chunks else "Unknown", chunks)
    return image_id


def _log_tail(build_log: Any, limit: int = 600) -> str:
    """The end of a build log on one line: colour codes and the builder's own chatter dropped."""
    lines = []
    for chunk in build_log:
        text = _ANSI.sub("", str(chunk.get("stream", chunk.get("error", ""))))
        lines += [x.strip() for x in text.splitlines() if x.strip()]
    return " | ".join(x for x in lines if not x.startswith(_BUILD_NOISE))[-limit:]
