"""``--api-key-file`` that cannot be read: one line naming the fix and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import corral
from tests.support.demo import build_demo


@pytest.mark.parametrize(
    ("key_file", "why"), [("missing/key", "No such file or directory"), ("a-dir", "Is a directory")]
)
def test_an_unreadable_api_key_file_is_one_line_naming_the_fix(
    tmp_path: Path, corral_home: Path, key_file: str, why: str
) -> None:
    build_demo(tmp_path)
    (tmp_path / "a-dir").mkdir()
    proc = corral("run", "--repo", "repo", "--bug", "bug.md", "--model", "gpt-4o-mini",
                  "--api-key-file", key_file, cwd=tmp_path, home=corral_home)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: cannot read the API key file {key_file} ({why}): give --api-key-file a readable"
        " file, or set CORRAL_API_KEY instead"
    ]
