"""A cheap "did anything in the tree change?" for the per-step scope check, from inotify.

After every agent action the runner checks the tree against the file scope
(``runner.loop.tools``). Most actions change nothing (reads, greps, test runs), and
a full ``lstat`` scan with hashing costs milliseconds per step on a modest
repository. ``TreeWatch`` keeps an inotify watch on every directory of the
worktree on the host; the kernel reports writes made from inside the container
(the worktree is a bind mount, so they are writes to the same inodes). An
action after which no event arrived changed nothing, and the full scan is
skipped; any event, a queue overflow or a watch that could not be placed means
"changed" and the full scan runs as before.

This is an optimisation of a defence-in-depth layer, never the boundary: a
write through a shared ``mmap`` does not raise an event, and the harvest at the
end of the attempt (after the container is killed) is always a full scan.

Directories are reached without following links (``nofollow.open_dir``): each
watch is added through ``/proc/self/fd`` of a directory fd opened with
``O_NOFOLLOW`` (so no ``IN_DONT_FOLLOW``: that magic link must be followed),
and a symlink the agent swaps in is never watched through.
Ignored directories (``__pycache__``, build output) are not watched; their
creation and removal still shows in their parent. The number of watches is
bounded; past the bound the watch degrades to "always changed".

``inotify_simple`` is a thin, maintained ctypes wrapper over the three
inotify system calls: it beats hand-writing the struct parsing.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from inotify_simple import INotify
from inotify_simple import flags as F

from sandbox.nofollow import open_dir

log = logging.getLogger(__name__)

#: What counts as a change (reads, opens and closes without writing do not).
MASK = (
    F.MODIFY
    | F.ATTRIB
    | F.CLOSE_WRITE
    | F.MOVED_FROM
    | F.MOVED_TO
    | F.CREATE
    | F.DELETE
    | F.DELETE_SELF
    | F.MOVE_SELF
    | F.ONLYDIR
    | F.EXCL_UNLINK
)

#: Events that add, remove or rename a path: the ignored set may differ (lost events too,
#: which ``_overflow`` notes).
_RENAMING = F.CREATE | F.DELETE | F.MOVED_FROM | F.MOVED_TO | F.DELETE_SELF | F.MOVE_SELF

#: Watches per tree before the watch gives up and reports every step as a change.
MAX_WATCHES = 20_000
#: Depth bound of the directory walk (deeper directories: degraded).
MAX_DEPTH = 64
#: Reads of the event queue per ``changed()`` call before it counts as an overflow.
MAX_READS = 64


class _Closed:
    """Stands in for a closed instance: ``fd`` -1, as ``INotify`` has once closed."""

    fd = -1


_CLOSED: Any = _Closed()


class TreeWatch:
    """inotify watches on every (non-ignored) directory of ``root``; see the module docstring."""

    def __init__(
        self, root: Path, ignored: frozenset[str] = frozenset(), *, settled: bool = False
    ) -> None:
        """Watch ``root``; ``ignored`` holds tree-relative directories (ending in ``/``) to leave out.

        ``settled``: the caller knows the tree's paths as they are now (it just
        checked the tree out), so ``names_changed`` starts from "no change".
        Raises ``OSError`` if inotify is unavailable (no instances left, for example).
        """
        self.root = root
        self.ignored = ignored
        self.degraded = False
        self._renamed = not settled
        self._paths: dict[int, str] = {}
        self._inotify = INotify()
        try:
            self._add_tree("", 0)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls, root: Path, ignored: frozenset[str] = frozenset(), *, settled: bool = False
    ) -> TreeWatch | None:
        """A watch, or None (logged) where inotify cannot be used: callers then scan every step."""
        try:
            return cls(root, ignored, settled=settled)
        except OSError as exc:
            log.info("no inotify watch on %s (%s); the scope check scans every step", root, exc)
            return None

    @property
    def watches(self) -> int:
        return len(self._paths)

    def changed(self) -> bool:
        """Whether anything in the tree may have changed since the last call (or since opening).

        New directories found in the events are watched before this returns, so
        what is written into them later raises events too; whatever was written
        into them before that is seen by the full scan the caller now runs.
        """
        if self._inotify.fd < 0:
            return True
        seen = False
        for _ in range(MAX_READS):
            events = self._inotify.read(timeout=0)
            if not events:
                break
            seen = True
            for event in events:
                self._note(event.wd, event.mask, event.name)
        else:
            self._overflow()
        return seen or self.degraded

    def names_changed(self) -> bool:
        """Whether a path may have been created, removed or renamed, or a ``.gitignore``
        changed, since the last call (or since opening); call after ``changed()``.

        False means the tree's untracked and ignored paths are as they were: the
        scope check keeps the ignored set it had (listing it is a git process).
        """
        renamed, self._renamed = self._renamed or self.degraded or self._inotify.fd < 0, False
        return renamed

    def close(self) -> None:
        """Stop watching; ``changed()`` says "changed" from now on.

        The kernel's teardown of an inotify instance waits for an RCU grace
        period (from a fraction of a millisecond to tens of milliseconds), time
        the runner would spend between an attempt's container and its harvest.
        The instance is closed on a short-lived daemon thread instead: nothing
        reads it any more, and a process that exits first has it closed by the
        kernel.
        """
        inotify, self._inotify = self._inotify, _CLOSED
        self._paths.clear()
        if inotify.fd >= 0:
            threading.Thread(target=inotify.close, name="corral-watch-close", daemon=True).start()

    def __enter__(self) -> TreeWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- internals

    def _note(self, wd: int, mask: int, name: str) -> None:
        if mask & _RENAMING or name == ".gitignore":
            self._renamed = True
        if mask & F.Q_OVERFLOW:
            self._overflow()
        elif mask & F.IGNORED:
            self._paths.pop(wd, None)
        elif mask & F.ISDIR and mask & (F.CREATE | F.MOVED_TO) and wd in self._paths:
            parent = self._paths[wd]
            self._add_tree(f"{parent}{name}/", parent.count("/") + 1)

    def _overflow(self) -> None:
        """Events were lost (new directories among them): watch the whole tree again."""
        self._renamed = True
        self._add_tree("", 0)

    def _add_tree(self, rel: str, depth: int) -> None:
        """Watch ``rel`` (``""`` or ending in ``/``) and every directory below it, bounded."""
        stack = [(rel, depth)]
        while stack and not self.degraded:
            rel, depth = stack.pop()
            if depth > MAX_DEPTH or len(self._paths) >= MAX_WATCHES:
                self._degrade(f"tree deeper than {MAX_DEPTH} or over {MAX_WATCHES} directories")
                return
            try:
                fd = open_dir(self.root, rel)
            except OSError:
                continue  # gone or swapped for a non-directory: the full scan judges it
            try:
                wd = self._inotify.add_watch(f"/proc/self/fd/{fd}", MASK)
                self._paths[wd] = rel
                with os.scandir(fd) as it:
                    subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            except OSError as exc:
                self._degrade(f"cannot watch {rel or '.'}: {exc}")
                return
            finally:
                os.close(fd)
            for name in subdirs:
                child = f"{rel}{name}/"
                if name != ".git" and child not in self.ignored:
                    stack.append((child, depth + 1))

    def _degrade(self, why: str) -> None:
        log.info("tree watch on %s degraded (%s); the scope check scans every step", self.root, why)
        self.degraded = True
