"""The exception tree of the sandbox package, and the two roots every corral exception shares.

``CorralError`` is the root of every exception corral raises on purpose (the
``sandbox``, ``policies`` and ``runner`` trees all hang from it); ``UserError``
is bad input the user can fix, whose message names the fix: the CLI maps it,
and nothing else, to exit code 2. They live here because ``sandbox`` is the
package the other two depend on. Within the sandbox tree: one base, builtin
parents, so callers can catch either the corral type or the builtin one
(``except TimeoutError`` works for ``SandboxTimeout``). A command that runs and
fails is a result (``ExecResult``), never an exception.

::

    CorralError
    ├── UserError                              bad input -> exit 2 (also a parent of the
    │                                          ones marked UserError below)
    └── SandboxError
        ├── EngineUnavailable(UserError, ConnectionError)   fix: corral doctor --fix
        ├── ImageError(UserError, RuntimeError)             fix: corral doctor --fix
        │   └── SetupFailed                    a policy set-up command failed
        ├── SpecError(UserError, ValueError)   a sandbox spec asks for something unsafe
        ├── InvalidRunId(UserError, ValueError)
        ├── GitError(UserError, RuntimeError)  git failed on the user's repository (a bad
        │                                      ref, no repository, a branch that moved)
        ├── SandboxStartError, SandboxClosed, SandboxNotRemoved, WorkspaceError,
        │   LeaseHeld (RuntimeError); SandboxTimeout (TimeoutError); StorageError (OSError)
        ├── NotFollowed (OSError)              a link or non-regular file where the runner
        │                                      reads an agent-touched tree: not followed
        ├── SandboxFileNotFound, SandboxIsADirectory, SandboxPermissionError (OSError kinds)
        └── ShellEnded                         the persistent shell died during a command
"""

from __future__ import annotations


class CorralError(Exception):
    """Root of every exception corral raises on purpose."""


class UserError(CorralError):
    """Bad input the user can fix (a malformed policy, a missing repo, an unknown run ...).

    The message names the fix. The CLI prints it as one ``error:`` line and exits 2.
    """


class SandboxError(CorralError):
    """Base of every error raised by the sandbox package."""


class EngineUnavailable(SandboxError, UserError, ConnectionError):
    """The container engine cannot be reached (not installed, not running); the message names
    the fix (``corral doctor --fix``)."""


class ImageError(SandboxError, UserError, RuntimeError):
    """An image could not be bootstrapped, built or found; the message names the fix
    (``corral doctor --fix``, or the option to change)."""


class SandboxStartError(SandboxError, RuntimeError):
    """A container could not be created or started."""


class SandboxClosed(SandboxError, RuntimeError):
    """An operation was attempted on a sandbox after ``close()``."""


class SandboxNotRemoved(SandboxError, RuntimeError):
    """A sandbox still exists after ``close()`` (or was never closed): nothing may read its tree."""


class SandboxTimeout(SandboxError, TimeoutError):
    """A host-side deadline passed on an operation that is not a command (file I/O, start)."""


class SpecError(SandboxError, UserError, ValueError):
    """A sandbox spec asks for something unsafe or impossible (e.g. mounting the docker socket)."""


class InvalidRunId(SandboxError, UserError, ValueError):
    """A run id that is not safe as a file name, a git ref part and a label."""


class GitError(SandboxError, UserError, RuntimeError):
    """A host git command failed; ``stderr`` holds git's own words.

    A ``UserError``: what fails is git on the user's repository (a bad ref, no
    repository, a branch that moved), and git's words say what to fix.
    """

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"git {' '.join(argv)} failed ({returncode}): {stderr.strip()[:500]}")


class WorkspaceError(SandboxError, RuntimeError):
    """A workspace could not be created, checkpointed or rolled back."""


class LeaseHeld(SandboxError, RuntimeError):
    """Another live process owns this run's lease."""


class SandboxFileNotFound(SandboxError, FileNotFoundError):
    """A path asked for inside the sandbox does not exist."""


class SandboxIsADirectory(SandboxError, IsADirectoryError):
    """A file operation named a directory."""


class SandboxPermissionError(SandboxError, PermissionError):
    """The sandbox user may not do this (read-only mount, read-only rootfs, mode bits)."""


class StorageError(SandboxError, OSError):
    """The worktree filesystem could not be set up (not root, mount failed)."""


class NotFollowed(SandboxError, OSError):
    """A path in an agent-touched tree the runner would have to follow, or read as something it
    is not (``sandbox.nofollow.read_regular``): ``path`` (tree-relative) is not a real directory
    on the way, or not a regular file at the end. The message says which and what it is
    instead; nothing at or below it was opened."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class HomeUnusable(SandboxError, UserError, OSError):
    """``$CORRAL_HOME`` is not a directory corral can write, or has no room for a run."""


class ShellEnded(SandboxError):
    """The persistent shell ended during a command (the command killed it, or the sandbox died).

    Carries the output read so far; the backend restarts the shell and makes it a result.
    """

    def __init__(self, stdout: str, stderr: str, duration_s: float) -> None:
        self.stdout, self.stderr, self.duration_s = stdout, stderr, duration_s
        super().__init__("persistent shell ended unexpectedly (sandbox killed?)")


class SetupFailed(ImageError):
    """A set-up command failed: ``command``, ``exit_code`` and ``log`` say which and why."""

    def __init__(self, command: str, exit_code: int, log_text: str) -> None:
        self.command, self.exit_code, self.log = command, exit_code, log_text
        super().__init__(f"setup command failed (exit {exit_code}): {command}")
