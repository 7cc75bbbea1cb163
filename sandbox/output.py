"""Capped output capture, shared by every backend.

Each of stdout and stderr keeps at most ``limit`` bytes (the documented cap is
``sandbox.interfaces.DEFAULT_OUTPUT_LIMIT`` unless the caller passes another);
the rest is counted and dropped, and ``ExecResult.truncated`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CappedBuffer:
    """One output stream, capped at ``limit`` bytes."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = max(self.limit - len(self.data), 0)
        self.data += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")
