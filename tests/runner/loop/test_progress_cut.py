"""A progress file over ``progress.max_bytes`` is cut there, and the text the agent reads next
says so (docs/policy.md promises the agent is told)."""

from __future__ import annotations

from pathlib import Path

from runner.loop.progress import CUT_NOTE, Progress
from runner.store.runs import RunStore
from sandbox.workspace import Workspace
from tests.support.demo import demo_files
from tests.support.gitfixtures import make_repo


def test_a_long_progress_file_is_cut_and_the_agent_is_told(
    tmp_path: Path, corral_home: Path
) -> None:
    ws = Workspace.create(make_repo(tmp_path / "repo", demo_files()), "HEAD", "r1", corral_home)
    progress = Progress(RunStore(corral_home), "r1", ".corral/progress.md", 100, lambda k, d: None)
    (ws.path / ".corral").mkdir()
    (ws.path / ".corral/progress.md").write_text("é" * 30 + "x" * 200)  # 2-byte chars first
    text = progress.read(ws)
    assert text.endswith(CUT_NOTE.format(limit=100))
    kept = text.removesuffix(CUT_NOTE.format(limit=100))
    assert len(kept.encode()) <= 100 and kept.startswith("é" * 30) and "\ufffd" not in kept
    (ws.path / ".corral/progress.md").write_text("short notes\n")
    assert progress.read(ws) == "short notes\n"  # under the limit: as it is
