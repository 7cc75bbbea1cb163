"""The one way corral runs git on the host against anything an agent touched.

An agent controls every byte of its worktree, so host git must treat the tree
as data and never as configuration. ``HostGit`` makes that the only option:

- an explicit, corral-owned ``GIT_DIR`` and ``GIT_WORK_TREE``; the process runs
  from ``/`` with ``GIT_CEILING_DIRECTORIES=/``, so nothing is discovered from a
  ``.git`` file or directory the agent planted;
- an environment built from nothing (the caller's is never inherited), no
  system or global config, no replace objects, no pager, editor, askpass, ssh
  or credential helper, no protocol allowed for transport;
- ``-c`` overrides for everything a repository could use to run code:
  ``core.fsmonitor``, ``core.hooksPath``, diff/merge drivers, and attribute
  files; ``safe.bareRepository=explicit``; ``safe.directory`` names exactly the
  worktree, never ``*``;
- callers pass ``-z`` where git prints paths and ``--`` before every path.

In-tree ``.gitattributes`` are neutralised by the private git dir's
``info/attributes`` (written by ``sandbox.gitdir``), which outranks them.

Only the standard library is used: git is driven with ``subprocess`` because
gitpython reads the caller's environment and config and offers no way to run
with none of it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from sandbox.errors import GitError

log = logging.getLogger(__name__)

#: Seconds any one host git command may take before it is killed.
DEFAULT_GIT_TIMEOUT_S = 300.0

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

#: Config every host git call carries; command-line config outranks the repository's.
HARDENING: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("safe.bareRepository", "explicit"),
    ("core.untrackedCache", "false"),
    ("core.splitIndex", "false"),
    ("core.sparseCheckout", "false"),
    ("core.symlinks", "true"),
    ("core.autocrlf", "false"),
    ("core.safecrlf", "false"),
    ("core.quotePath", "false"),
    ("core.pager", "cat"),
    ("core.editor", "/bin/false"),
    ("core.askPass", "/bin/false"),
    ("core.sshCommand", "/bin/false"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("core.hideDotFiles", "false"),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("advice.detachedHead", "false"),
    ("init.templateDir", ""),
)

#: Identity of commits corral makes (checkpoints); never the user's.
IDENTITY = {
    "GIT_AUTHOR_NAME": "corral",
    "GIT_AUTHOR_EMAIL": "corral@localhost",
    "GIT_COMMITTER_NAME": "corral",
    "GIT_COMMITTER_EMAIL": "corral@localhost",
}


def git_binary() -> str:
    """The absolute path of host git, looked up on a fixed PATH (not the caller's)."""
    found = shutil.which("git", path=_SAFE_PATH)
    if found is None:
        raise GitError(["--version"], 127, "git is not installed: apt-get install git")
    return found


class HostGit:
    """Run git against a trusted git dir and (optionally) a work tree; nothing else is read.

    ``git_dir`` must be corral's own (or the user's repository, for reading the
    base revision); ``work_tree`` may be agent-controlled. Every method raises
    ``GitError`` (with git's stderr) when git exits non-zero or runs past the
    timeout; nothing else is raised for git's own failures.
    """

    def __init__(
        self,
        git_dir: Path,
        work_tree: Path | None = None,
        *,
        timeout: float = DEFAULT_GIT_TIMEOUT_S,
    ) -> None:
        self.git_dir = Path(git_dir)
        self.work_tree = Path(work_tree) if work_tree is not None else None
        self.timeout = timeout
        self._git = git_binary()

    def env(
        self, index_file: Path | None = None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The complete environment of a host git call (nothing is inherited)."""
        env = base_env()
        env["GIT_DIR"] = str(self.git_dir)
        env["GIT_CEILING_DIRECTORIES"] = "/"
        if self.work_tree is not None:
            env["GIT_WORK_TREE"] = str(self.work_tree)
        if index_file is not None:
            env["GIT_INDEX_FILE"] = str(index_file)
        if extra:
            env.update(extra)
        return env

    def argv(self, args: Sequence[str]) -> list[str]:
        """The full argv: git, the hardening ``-c`` pairs, then ``args``."""
        trusted = [self.git_dir] + ([self.work_tree] if self.work_tree is not None else [])
        return hardened_argv(self._git, trusted) + list(args)

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        stdin: IO[bytes] | None = None,
        index_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> bytes:
        """Run ``git <args>`` from ``/`` and return its stdout (bytes, unparsed)."""
        argv = self.argv(args)
        try:
            proc = subprocess.run(
                argv,
                input=input,
                stdin=stdin if input is None else None,
                capture_output=True,
                cwd="/",
                env=self.env(index_file, env),
                timeout=self.timeout,
                check=False,
                close_fds=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitError(list(args), -9, f"timed out after {self.timeout:.0f}s") from exc
        if proc.returncode not in ok_codes:
            raise GitError(list(args), proc.returncode, proc.stderr.decode(errors="replace"))
        return proc.stdout

    def text(self, *args: str, **kwargs: object) -> str:
        """``run`` decoded (``errors="replace"``) and stripped: for shas, refs and versions."""
        return self.run(*args, **kwargs).decode(errors="replace").strip()  # type: ignore[arg-type]

    def cat_blobs(self, objects: Sequence[str]) -> list[bytes | None]:
        """The content of each of ``objects`` (``rev:path`` or an object id), in order, through one
        ``cat-file --batch``; None for one that is missing or not a blob (a tree, a gitlink).

        Raises ``GitError`` when git fails.
        """
        if not objects:
            return []
        out = self.run("cat-file", "--batch", input="".join(f"{o}\n" for o in objects).encode())
        found: list[bytes | None] = []
        # each answer: "<id> <type> <size>\n<bytes>\n", or "<query> missing\n" (or "ambiguous")
        for _ in objects:
            header, _, out = out.partition(b"\n")
            fields = header.split()
            if len(fields) == 3 and fields[2].isdigit():
                size = int(fields[2])
                found.append(out[:size] if fields[1] == b"blob" else None)
                out = out[size + 1 :]
            else:
                found.append(None)
        return found

    def rev_parse(self, rev: str) -> str:
        """The full object name of ``rev`` peeled to a commit; ``GitError`` if there is none."""
        return self.text(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        )


def split_z(data: bytes) -> list[bytes]:
    """Split NUL-terminated git output (``-z``) into records, dropping the final empty one."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def git_version() -> tuple[int, int, int]:
    """Host git's version as a tuple, e.g. ``(2, 39, 5)``."""
    out = subprocess.run(
        [git_binary(), "--version"], capture_output=True, check=True, env={"PATH": _SAFE_PATH}
    ).stdout.decode()
    numbers = out.split()[2].split(".")
    major, minor, patch = (
        int("".join(ch for ch in n if ch.isdigit()) or 0) for n in ([*numbers, "0", "0"])[:3]
    )
    return major, minor, patch


def base_env() -> dict[str, str]:
    """The environment every host git call starts from: fixed, nothing inherited."""
    return {
        "PATH": _SAFE_PATH,
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        "GIT_EDITOR": "/bin/false",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "/bin/false",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "none",
        **IDENTITY,
    }


def hardened_argv(git: str, trusted: Sequence[Path]) -> list[str]:
    """``git`` plus the hardening ``-c`` pairs and ``safe.directory`` for exactly ``trusted``."""
    argv = [git]
    for key, value in HARDENING:
        argv += ["-c", f"{key}={value}"]
    for path in trusted:
        argv += ["-c", f"safe.directory={path}"]
    return argv


def find_git_dirs(repo: Path, timeout: float = 60.0) -> tuple[Path, Path]:
    """The (git dir, common git dir) of the user's repository at ``repo``.

    The one discovery corral does, on the user's own checkout (never on an
    agent-touched tree), with the same hardening as every host call. Raises
    ``GitError`` when ``repo`` is not a git repository.
    """
    repo = Path(repo).resolve()
    argv = [
        *hardened_argv(git_binary(), [repo]),
        "rev-parse",
        "--path-format=absolute",
        "--absolute-git-dir",
        "--git-common-dir",
    ]
    env = base_env()
    env["GIT_CEILING_DIRECTORIES"] = str(repo.parent)
    try:
        proc = subprocess.run(
            argv, cwd=repo, env=env, capture_output=True, timeout=timeout, check=False
        )
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise GitError(["rev-parse"], -1, f"{repo}: {exc}") from exc
    if proc.returncode != 0:
        raise GitError(["rev-parse"], proc.returncode, f"{repo} is not a git repository")
    git_dir_s, common_s = proc.stdout.decode().splitlines()[:2]
    git_dir = Path(git_dir_s)
    return git_dir, Path(common_s)
