"""Git blob ids of files in a tree: computed, and reused while a file's inode stamp stands.

``blob_sha`` is git's SHA-1 blob id of some bytes, ``hash_file`` of a file read
without following links (``sandbox.nofollow``); ``HashCache`` keeps the ids of
earlier scans of one tree for the scans where reusing them is sound.
Standard library only (``hashlib``).
"""

from __future__ import annotations

import hashlib
import os

from sandbox.nofollow import read_chunks


def blob_sha(data: bytes) -> str:
    """The git (SHA-1) blob id of ``data``."""
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def hash_file(dfd: int, name: str, expect: os.stat_result) -> str:
    """Blob id of regular file ``name`` in directory ``dfd``; raises OSError if it is not the file ``expect`` describes."""
    h = hashlib.sha1(b"blob %d\0" % expect.st_size, usedforsecurity=False)
    for chunk in read_chunks(dfd, name, expect):
        h.update(chunk)
    return h.hexdigest()


#: A file changed this recently before a scan started may change again within the same
#: timestamp tick (the kernel stamps inodes from a clock that advances once per tick, up to
#: 10 ms), unseen by its stamp: ``HashCache`` does not keep its blob id.
RACY_NS = 50_000_000

_Stamp = tuple[int, int, int, int, int, int]


class HashCache:
    """Blob ids from earlier scans of one tree, reused while a file's inode stamp is unchanged.

    The stamp is (device, inode, mode, size, mtime, ctime). Every write,
    truncate, chmod, rename or link through the file system moves ctime to the
    current time, and no system call sets it back, so an unchanged stamp means
    unchanged content; a file whose ctime was within ``RACY_NS`` of the scan
    that hashed it is not kept (it could change again unseen within the same
    tick). A write through a shared ``mmap`` of a page that is already dirty does
    not move ctime: only scans that are defence in depth (the per-step scope
    check) or of trees that nothing can map writable (the gate tree, read-only in
    every container) use a cache; the harvest and the rollback check hash every
    file. Bounded: past ``max_entries`` the cache starts again empty.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._ids: dict[str, tuple[_Stamp, str]] = {}

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        """The blob id kept for ``rel`` if its stamp is still ``st``'s, else None."""
        kept = self._ids.get(rel)
        return kept[1] if kept is not None and kept[0] == _stamp(st) else None

    def keep(self, rel: str, st: os.stat_result, sha: str, scan_started_ns: int) -> None:
        """Remember ``sha`` for ``rel`` as ``st`` describes it, unless it changed too recently."""
        if st.st_ctime_ns >= scan_started_ns - RACY_NS:
            self._ids.pop(rel, None)
            return
        if len(self._ids) >= self.max_entries:
            self._ids.clear()
        self._ids[rel] = (_stamp(st), sha)


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
