"""The files set-up leaves in the tree, kept with the environment image they belong to.

``pip install -e .`` writes ``*.egg-info`` (with the entry points of a
project's own pytest plugin) next to the source, setuptools-scm writes a
``_version.py``, a build writes extension modules in place. Those are part of
the environment, not of anyone's change: ``capture`` reads them off set-up's
tree (every path base does not hold; ``__pycache__`` left out) with corral's
own ``lstat`` scan, nothing followed, symlinks only where they stay inside;
``pack`` stores them as one tar file, ``SETUP_FILES``, in the environment image
(labelled ``LABEL_SETUP_FILES`` with their count), and ``read_setup_files``
gives them back for a run's workspace (``sandbox.workspace``: attempts start
with them, gates see them as set-up left them, no patch holds them).

Files set-up changed that base holds are not carried (attempts start from
base's version): the set-up log says which. Standard library ``tarfile``
only; the archive is made and read here, never extracted to a filesystem.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import NotFound

from sandbox.container import LABEL_HOME, LABEL_MANAGED, LABEL_RUN
from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import ImageError
from sandbox.scan import MODE_EXEC, MODE_LINK, ScanLimits, read_entry, scan

#: Where the archive lives in an environment image, and the label with the number of files.
SETUP_FILES = "/opt/corral/setup-files.tar"
LABEL_SETUP_FILES = "corral.setup-files"
LABEL_KIND = "corral.kind"
#: What set-up may leave in the tree; beyond it set-up fails, naming the largest directories.
MAX_FILES = 50_000
MAX_BYTES = 1024 * 1024 * 1024

Files = dict[str, tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What ``capture`` found: the files to carry, and lines for the set-up log."""

    files: Files
    notes: tuple[str, ...]


def capture(tree: Path, base: Mapping[str, tuple[str, str]]) -> Leftovers:
    """The files in ``tree`` that ``base`` (``path -> (mode, sha)``) does not hold.

    Raises ``ImageError`` when they are more than ``MAX_FILES`` files or
    ``MAX_BYTES`` bytes (the message names the largest top directories).
    """
    snap = scan(
        tree,
        base=base,
        allow_symlinks=True,
        limits=ScanLimits(max_file_bytes=MAX_BYTES, max_entries=4 * MAX_FILES),
        exclude=_leave_out,
    )
    notes = [f"not carried: {f.path} ({f.detail})" for f in snap.findings if f.path != ".git"]
    changed = sorted(p for p, e in snap.entries.items() if p in base and base[p] != (e.mode, e.sha))
    if changed:
        notes.append(
            f"set-up changed files of base; attempts get base's: {', '.join(changed[:20])}"
        )
    dirs = _dirs_of(base)
    new = [
        e
        for p, e in sorted(snap.entries.items())
        if p not in base and p not in dirs and not _under_a_file(p, base)
    ]
    total = sum(e.size for e in new)
    if len(new) > MAX_FILES or total > MAX_BYTES or not snap.complete:
        sizes: dict[str, int] = {}
        for e in new:
            top = e.path.split("/")[0]
            sizes[top] = sizes.get(top, 0) + e.size
        largest = ", ".join(
            f"{d} ({n // 1_000_000} MB)" for d, n in sorted(sizes.items(), key=lambda x: -x[1])[:3]
        )
        raise ImageError(
            f"set-up left {len(new)} files ({total // 1_000_000} MB) in the tree, more than corral"
            f" carries ({MAX_FILES} files, {MAX_BYTES // 1_000_000} MB); the largest: {largest}."
            " Remove build outputs at the end of [setup] commands"
        )
    files = {e.path: (e.mode, read_entry(tree, e)) for e in new}
    if files:
        notes.append(f"carried into attempts and gates: {len(files)} files set-up left")
    return Leftovers(files, tuple(notes))


def pack(files: Mapping[str, tuple[str, bytes]]) -> bytes:
    """``files`` as a tar archive: regular files 0644 or 0755, symlinks as they are."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (mode, data) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            if mode == MODE_LINK:
                info.type, info.linkname = tarfile.SYMTYPE, data.decode("utf-8", "surrogateescape")
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755 if mode == MODE_EXEC else 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def unpack(archive: bytes) -> Files:
    """What ``pack`` made, read back (nothing written anywhere). ``ImageError`` if malformed."""
    files: Files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for info in tar:
                if info.issym():
                    files[info.name] = (MODE_LINK, info.linkname.encode("utf-8", "surrogateescape"))
                elif info.isfile():
                    reader = tar.extractfile(info)
                    data = reader.read() if reader is not None else b""
                    files[info.name] = (MODE_EXEC if info.mode & 0o100 else "100644", data)
                else:
                    raise ImageError(f"set-up files: unexpected entry {info.name!r}")
    except tarfile.TarError as exc:
        raise ImageError(f"set-up files unreadable: {exc}") from exc
    return files


def store_in(container: Any, files: Mapping[str, tuple[str, bytes]]) -> None:
    """Put ``files`` into the (running) set-up container as ``SETUP_FILES``."""
    inner = pack(files)
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w") as tar:
        info = tarfile.TarInfo(Path(SETUP_FILES).name)
        info.size, info.mode = len(inner), 0o444
        tar.addfile(info, io.BytesIO(inner))
    container.put_archive(str(Path(SETUP_FILES).parent), outer.getvalue())


def read_setup_files(client: Any, image_id: str, *, run_id: str, home: Path) -> Files:
    """The files set-up left, from the environment image ``image_id`` ({} for any other image).

    They are read through a container that is created, never started, and removed at once;
    it is labelled as run ``run_id``'s of ``home`` (not the labels the image inherited from the
    run that built it), so a process killed meanwhile leaves it to that run's ``corral gc``.
    Raises ``ImageError`` when the image says it has them and they cannot be read.
    """
    try:
        labels = client.images.get(image_id).labels or {}
    except NotFound:
        return {}
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot inspect image {image_id[:19]}: {exc}") from exc
    if not int(labels.get(LABEL_SETUP_FILES, "0") or 0):
        return {}
    try:
        owner = {LABEL_MANAGED: "1", LABEL_RUN: run_id, LABEL_HOME: str(home), LABEL_KIND: "read"}
        container = client.containers.create(
            image_id, ["true"], network_disabled=True, labels=owner
        )
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot read set-up files of {image_id[:19]}: {exc}") from exc
    try:
        stream, _ = container.get_archive(SETUP_FILES)
        outer = b"".join(stream)
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot read set-up files of {image_id[:19]}: {exc}") from exc
    finally:
        with contextlib.suppress(*ENGINE_ERRORS):
            container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(outer), mode="r:") as tar:
        member = tar.extractfile(Path(SETUP_FILES).name)
        if member is None:
            raise ImageError(f"set-up files of {image_id[:19]} missing")
        return unpack(member.read())


def _leave_out(path: str) -> str | None:
    """``__pycache__`` and stray bytecode stay behind (caches, rebuilt where they are needed)."""
    name = path.rstrip("/").rpartition("/")[2]
    return "" if name == "__pycache__" or name.endswith((".pyc", ".pyo")) else None


def _dirs_of(listing: Mapping[str, Any]) -> set[str]:
    return {p[:i] for p in listing for i, c in enumerate(p) if c == "/"}


def _under_a_file(path: str, listing: Mapping[str, Any]) -> bool:
    return any(path[:i] in listing for i, c in enumerate(path) if c == "/")
