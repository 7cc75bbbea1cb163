"""Timing probes for the benchmarks: wrap library calls to see where a run's time goes.

The probes only measure: each wrapped call runs the original, unchanged. They are
installed as class or module attributes for the length of a ``with patched(...)`` block
and the originals are put back on the way out, exceptions included.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class Clock:
    """Seconds per part. Only the outermost timed call counts, so parts never overlap."""

    def __init__(self) -> None:
        self.parts: defaultdict[str, float] = defaultdict(float)
        self._active = 0

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        self._active += 1
        t = time.perf_counter()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self.parts[name] += time.perf_counter() - t

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, timed as part ``name``."""

        def timed(*a: Any, **k: Any) -> Any:
            with self.part(name):
                return fn(*a, **k)

        return timed

    def snapshot(self) -> dict[str, float]:
        return dict(self.parts)


@contextmanager
def patched(patches: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set ``(owner, name, value)`` attributes for the block; restore the originals after.

    ``name`` must be defined on ``owner`` itself (a class's own method, a module global):
    ``KeyError`` otherwise, before anything is changed.
    """
    saved = [(owner, name, vars(owner)[name]) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
