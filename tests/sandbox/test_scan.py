"""The lstat scan: every kind of finding, the bounds, and what is admitted."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from sandbox.blobs import RACY_NS, HashCache, blob_sha
from sandbox.scan import (
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    ScanLimits,
    _link_stays_inside,
    bad_name_reason,
    scan,
)
from tests.support.gitfixtures import build_tree, git, make_repo


def _kinds(root: Path, **kwargs: object) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in scan(root, **kwargs).findings:  # type: ignore[arg-type]
        out.setdefault(f.path, set()).add(f.kind)
    return out


def test_blob_ids_match_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "hello\n", "b.bin": bytes(range(256))})
    snap = scan(repo, pointer=None)
    for name in ("a.txt", "b.bin"):
        assert snap.entries[name].sha == git(repo, "rev-parse", f"HEAD:{name}")
    assert blob_sha(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_modes_and_symlinks_are_admitted_as_git_would_record_them(tmp_path: Path) -> None:
    build_tree(tmp_path, {"x.py": "x", "run.sh": "#!/bin/sh\n", "d/y.py": "y"})
    (tmp_path / "run.sh").chmod(0o755)
    os.symlink("d/y.py", tmp_path / "link")
    snap = scan(tmp_path, allow_symlinks=True)
    assert snap.entries["x.py"].mode == MODE_FILE
    assert snap.entries["run.sh"].mode == MODE_EXEC
    assert snap.entries["link"].mode == MODE_LINK
    assert snap.entries["link"].sha == blob_sha(b"d/y.py")
    assert snap.findings == () and snap.complete


def test_special_files_are_findings_and_never_admitted(tmp_path: Path) -> None:
    build_tree(tmp_path, {"ok.py": "ok", "suid": "x", "sgid": "x", "orig": "x"})
    os.mkfifo(tmp_path / "pipe")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    s.close()
    (tmp_path / "suid").chmod(0o4755)
    (tmp_path / "sgid").chmod(0o2755)
    os.link(tmp_path / "orig", tmp_path / "hard")
    os.symlink("/etc/passwd", tmp_path / "abs")
    os.symlink("../../outside", tmp_path / "rel")
    os.symlink("ok.py", tmp_path / "inside")
    snap = scan(tmp_path)
    kinds = {f.path: f.kind for f in snap.findings if f.path != "orig"}
    assert kinds == {
        "pipe": "fifo",
        "sock": "socket",
        "suid": "setuid",
        "sgid": "setgid",
        "hard": "hardlink",
        "abs": "symlink_escape",
        "rel": "symlink_escape",
        "inside": "symlink",
    }
    assert set(snap.entries) == {"ok.py", "inside"}


def test_links_already_in_base_are_not_flagged(tmp_path: Path) -> None:
    build_tree(tmp_path, {"a": "x"})
    os.link(tmp_path / "a", tmp_path / "b")
    os.symlink("a", tmp_path / "l")
    base = {"a": (MODE_FILE, blob_sha(b"x")), "b": (MODE_FILE, blob_sha(b"x"))}
    base["l"] = (MODE_LINK, blob_sha(b"a"))
    snap = scan(tmp_path, base=base)
    assert {f.kind for f in snap.findings} == {"hardlink"}  # reported, but admitted
    assert set(snap.entries) == {"a", "b", "l"}


def test_nested_repositories_are_skipped_whole(tmp_path: Path) -> None:
    make_repo(tmp_path / "sub", {"inner.py": "x"})
    bare = tmp_path / "vendored.git"
    bare.mkdir()
    build_tree(bare, {"HEAD": "ref: refs/heads/main\n", "objects/.keep": "", "refs/.keep": ""})
    (tmp_path / ".git").mkdir()  # a root .git where a pointer file should be
    kinds = _kinds(tmp_path, pointer=b"gitdir: /x\n")
    assert kinds == {
        ".git": {"git_pointer_changed"},
        "sub": {"nested_git"},
        "vendored.git": {"nested_git"},
    }
    assert not scan(tmp_path, pointer=b"gitdir: /x\n").complete


def test_pointer_file_must_hold_exactly_what_corral_wrote(tmp_path: Path) -> None:
    (tmp_path / ".git").write_bytes(b"gitdir: /x\n")
    assert _kinds(tmp_path, pointer=b"gitdir: /x\n") == {}
    (tmp_path / ".git").write_bytes(b"gitdir: /evil\n")
    assert _kinds(tmp_path, pointer=b"gitdir: /x\n") == {".git": {"git_pointer_changed"}}
    (tmp_path / ".git").unlink()
    os.symlink("/etc/hostname", tmp_path / ".git")
    assert _kinds(tmp_path, pointer=b"gitdir: /x\n") == {".git": {"git_pointer_changed"}}


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("-rf", True),
        ("--output=x", True),
        ("a\nb", True),
        ("tab\there", True),
        ("bidi\u202eexe.py", True),
        ("zero\u200bwidth", True),
        ("caf\u00e9.py", False),
        ("a-b_c.d", False),
        ("\udcff", True),
    ],
)
def test_bad_names(name: str, bad: bool) -> None:
    assert (bad_name_reason(name) is not None) is bad


@pytest.mark.parametrize(
    ("rel", "target", "inside"),
    [
        ("a", "b", True),
        ("d/a", "../b", True),
        ("d/a", "../../b", False),
        ("a", "/etc/passwd", False),
        ("a", "", False),
        ("d/e/a", "./../../x/../y", True),
        ("a", "x/../../y", False),
    ],
)
def test_symlink_containment(rel: str, target: str, inside: bool) -> None:
    assert _link_stays_inside(rel, target) is inside


def test_bounds_stop_the_walk_and_say_so(tmp_path: Path) -> None:
    build_tree(tmp_path, {f"f{i}": "x" for i in range(20)})
    snap = scan(tmp_path, limits=ScanLimits(max_entries=5))
    assert [f.kind for f in snap.findings] == ["too_many_entries"] and not snap.complete
    deep = tmp_path / "deep"
    path = deep
    for i in range(10):
        path = path / f"d{i}"
    path.mkdir(parents=True)
    snap = scan(deep, limits=ScanLimits(max_depth=4))
    assert [f.kind for f in snap.findings] == ["too_deep"] and not snap.complete


def test_oversize_files_are_not_read(tmp_path: Path) -> None:
    with open(tmp_path / "big", "wb") as f:
        f.truncate(64 * 1024 * 1024 * 1024)  # 64 GiB sparse: reading it would take minutes
    snap = scan(tmp_path, limits=ScanLimits(max_file_bytes=1024))
    assert [f.kind for f in snap.findings] == ["oversize"]
    assert snap.entries == {}


def test_ignored_paths_are_reported_not_admitted(tmp_path: Path) -> None:
    build_tree(tmp_path, {"keep.py": "x", "build/out.o": "o", "a.pyc": "c"})
    snap = scan(tmp_path, ignored=frozenset({"build/", "a.pyc"}))
    assert {(f.kind, f.path) for f in snap.findings} == {
        ("ignored_file", "build"),
        ("ignored_file", "a.pyc"),
    }
    assert set(snap.entries) == {"keep.py"}


def _settled(*paths: Path) -> None:
    """Wait until the files' last change is older than the racy window of ``HashCache``."""
    newest = max(p.lstat().st_ctime_ns for p in paths)
    while time.time_ns() <= newest + RACY_NS:
        time.sleep(0.02)


def test_a_hash_cache_reuses_ids_of_files_whose_stamp_stands(tmp_path: Path) -> None:
    build_tree(tmp_path, {"a.py": "a = 1\n", "d/b.py": "b = 2\n"})
    _settled(tmp_path / "a.py", tmp_path / "d" / "b.py")
    hashes = HashCache()
    first = scan(tmp_path, pointer=None, hashes=hashes)
    kept = hashes.lookup("a.py", (tmp_path / "a.py").lstat())
    assert kept == blob_sha(b"a = 1\n") == first.entries["a.py"].sha
    assert scan(tmp_path, pointer=None, hashes=hashes).entries == first.entries


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.write_text("a = 9\n"),  # same size, new content
        lambda f: os.utime(f, ns=(f.lstat().st_atime_ns, f.lstat().st_mtime_ns)),  # mtime put back
        lambda f: (f.unlink(), f.write_text("a = 7\n")),  # a new inode under the same name
        lambda f: f.chmod(0o755),
    ],
    ids=["rewrite", "utime-back", "replace", "chmod"],
)
def test_any_change_through_the_file_system_is_hashed_again(tmp_path: Path, change: object) -> None:
    f = tmp_path / "a.py"
    f.write_text("a = 1\n")
    _settled(f)
    hashes = HashCache()
    scan(tmp_path, pointer=None, hashes=hashes)
    old = os.stat_result(f.lstat())
    change(f)  # type: ignore[operator]
    assert hashes.lookup("a.py", f.lstat()) is None, "a moved ctime retires the kept id"
    got = scan(tmp_path, pointer=None, hashes=hashes).entries["a.py"]
    assert got.sha == blob_sha(f.read_bytes())
    assert f.lstat().st_ctime_ns != old.st_ctime_ns


def test_a_file_changed_just_before_the_scan_is_not_kept(tmp_path: Path) -> None:
    f = tmp_path / "a.py"
    f.write_text("a = 1\n")  # within the racy window of the scan below
    hashes = HashCache()
    scan(tmp_path, pointer=None, hashes=hashes)
    assert hashes.lookup("a.py", f.lstat()) is None


def test_the_hash_cache_is_bounded(tmp_path: Path) -> None:
    build_tree(tmp_path, {f"f{i}.py": str(i) for i in range(5)})
    _settled(*(tmp_path / f"f{i}.py" for i in range(5)))
    hashes = HashCache(max_entries=3)
    scan(tmp_path, pointer=None, hashes=hashes)
    assert len(hashes._ids) <= 3


def test_a_scan_without_a_cache_sees_writes_through_a_shared_mapping(tmp_path: Path) -> None:
    """Why the harvest never passes a ``HashCache``: a write into a page of a shared mapping
    that is already dirty leaves ctime where it was, so only reading the bytes sees it."""
    import mmap

    f = tmp_path / "a.py"
    f.write_bytes(b"a = 1\n")
    with open(f, "r+b") as fh, mmap.mmap(fh.fileno(), 0) as mapped:
        mapped[:5] = b"a = 2"  # the page's first write: ctime moves
        _settled(f)
        hashes = HashCache()
        scan(tmp_path, pointer=None, hashes=hashes)
        mapped[:5] = b"a = 3"  # the page is dirty already: ctime may stay put
        assert scan(tmp_path, pointer=None).entries["a.py"].sha == blob_sha(b"a = 3\n")
