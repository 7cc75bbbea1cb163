"""A corpus of real Python projects with a real bug each, built from their PyPI sdists.

Each project is a directory of ``tests/corpus/``:

    corpus.toml   the pinned sdist (project, version, file name, sha256), its packaging
                  style, the test file that reproduces the bug and the test ids it fixes,
                  what the sdist holds that a git checkout does not, and the set-up a user
                  would write first
    fix.diff      the released upstream fix, only its source hunks (version N-1 -> N)
    bug.md        the bug report, as a user filed it upstream

``build_repo(project, root)`` lays out version N's sdist as a git checkout (no ``PKG-INFO``,
no ``*.egg-info``, no generated files), reverse-applies ``fix.diff`` (N's own regression
test stays) and commits that as the base: a repository whose test file fails until the
fix is made. The sdist comes through pip (``pip download --require-hashes``: the pin is
checked by the ordinary client) into a cache (``$CORRAL_TEST_CACHE``, else
``~/.cache/corral-tests``), so a second session needs no network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.support.gitfixtures import git

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
#: What an sdist carries that a checkout of the project's repository does not.
SDIST_ONLY = ("PKG-INFO",)


class CorpusError(RuntimeError):
    """The corpus cannot be built: a download failed, a pin does not match, a fix does not apply."""


@dataclass(frozen=True, slots=True)
class Project:
    """One project of the corpus (``tests/corpus/<name>/``)."""

    name: str
    project: str
    version: str
    sdist: str
    sha256: str
    style: str
    """How it is packaged: setuptools, setup.py only, hatchling, flit, poetry-core, hatch-vcs."""
    test: str
    """The test file that reproduces the bug (the gate runs it)."""
    targets: tuple[str, ...]
    """The test ids in ``test`` that fail at base and pass with the fix."""
    setup: str
    """The set-up command a user would write first (``pip install -e .[test]`` or so)."""
    generated: tuple[str, ...]
    """Files of the sdist that a checkout has not (written by the build: ``_version.py``)."""
    upstream: str
    """Where the fix comes from: the release and its issue."""

    @property
    def dir(self) -> Path:
        return CORPUS / self.name

    @property
    def fix(self) -> str:
        return (self.dir / "fix.diff").read_text()

    @property
    def bug(self) -> Path:
        return self.dir / "bug.md"

    @property
    def fixed_files(self) -> tuple[str, ...]:
        """The paths the fix changes."""
        return tuple(
            line.removeprefix("+++ b/").strip()
            for line in self.fix.splitlines()
            if line.startswith("+++ b/")
        )


def load(name: str) -> Project:
    """The corpus project ``name``; raises ``CorpusError`` when its definition is incomplete."""
    path = CORPUS / name / "corpus.toml"
    try:
        data = tomllib.loads(path.read_text())
        return Project(
            name=name,
            project=data["project"],
            version=data["version"],
            sdist=data["sdist"],
            sha256=data["sha256"],
            style=data["style"],
            test=data["test"],
            targets=tuple(data["targets"]),
            setup=data["setup"],
            generated=tuple(data.get("generated", ())),
            upstream=data["upstream"],
        )
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise CorpusError(f"{path}: {exc!r}") from exc


def names() -> list[str]:
    """Every project of the corpus, by directory name."""
    return sorted(p.parent.name for p in CORPUS.glob("*/corpus.toml"))


def cache_dir() -> Path:
    """Where sdists are kept between sessions."""
    root = os.environ.get("CORRAL_TEST_CACHE") or Path.home() / ".cache" / "corral-tests"
    return Path(root) / "sdists"


def sdist(project: Project) -> Path:
    """The project's sdist, from the cache or through pip; its sha256 is checked either way."""
    cache = cache_dir()
    path = cache / project.sdist
    if path.is_file() and _sha256(path) == project.sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    pin = cache / f"{project.name}.requirements.txt"
    pin.write_text(f"{project.project}=={project.version} --hash=sha256:{project.sha256}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "--require-hashes", "--disable-pip-version-check", "-q", "-d", str(cache),
         "-r", str(pin)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or not path.is_file():
        raise CorpusError(
            f"pip download {project.project}=={project.version}: {proc.stderr[-2000:]}"
        )
    if _sha256(path) != project.sha256:
        raise CorpusError(f"{path}: sha256 is not the pinned {project.sha256}")
    return path


def build_repo(project: Project, root: Path) -> Path:
    """A git repository at ``root``: version N as checked out, with the fix reversed, one commit.

    Raises ``CorpusError`` when the sdist cannot be had or the fix does not reverse-apply.
    """
    archive = sdist(project)
    root.mkdir(parents=True)
    top = f"{project.sdist.removesuffix('.tar.gz')}/"
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            rel = member.name.removeprefix(top)
            if not member.name.startswith(top) or not _in_checkout(project, rel):
                continue
            if member.isdir():
                continue
            if not member.isfile():
                raise CorpusError(f"{project.sdist}: {member.name} is not a regular file")
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(0o755 if member.mode & 0o111 else 0o644)
    git(root, "init", "-q", "-b", "main")
    diff = project.dir / "fix.diff"
    proc = subprocess.run(
        ["git", "apply", "-R", "--whitespace=nowarn", str(diff)],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise CorpusError(f"{diff} does not reverse-apply to {project.sdist}: {proc.stderr}")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"{project.project} {project.version} without its fix")
    return root


def fixed_contents(project: Project) -> dict[str, str]:
    """The files the fix changes, as released in version N (what the fix writes)."""
    archive = sdist(project)
    top = f"{project.sdist.removesuffix('.tar.gz')}/"
    out: dict[str, str] = {}
    with tarfile.open(archive) as tar:
        for rel in project.fixed_files:
            member = tar.extractfile(top + rel)
            if member is None:
                raise CorpusError(f"{project.sdist} has no {rel}")
            with member:
                out[rel] = member.read().decode()
    return out


def _in_checkout(project: Project, rel: str) -> bool:
    """Whether ``rel`` of the sdist is in a checkout of the project (not written by a build)."""
    parts = rel.split("/")
    return bool(rel) and not (
        rel in SDIST_ONLY or rel in project.generated or any(p.endswith(".egg-info") for p in parts)
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
