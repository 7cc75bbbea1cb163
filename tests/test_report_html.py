"""`corral report --html` opened in headless Chromium: what the page shows, and what it never runs.

One run through the real pipeline (real Docker, the scripted agent): its first
attempt is denied a protected write and a download, its second fixes the bug
and also writes a ``<script>`` (and an ``<img onerror>``) into the source file;
the bug title carries a ``<script>`` and a bidi override. Chromium (Debian's
``chromium``, installed by scripts/setup.sh) loads only the local file: no
background networking, every host name mapped to nothing. The page's DOM after
its scripts ran is checked, and a screenshot is kept as a test artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.service import RunRequest, start_run
from tests.gitfixtures import make_repo
from tests.test_review import CALC, FIXED, POLICY
from tests.test_run_loop import TESTS

pytestmark = pytest.mark.docker

INJECTED = (
    "# </td></pre><script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.title='pwned-img'\">\n"
)
TITLE = "<script>document.title='pwned-title'</script> add()\u202e subtracts"
SCRIPT = f"""
    [[attempt]]
    [[attempt.window]]
    actions = [
      {{ write = "conftest.py", content = "collect_ignore = ['tests']\\n" }},
      {{ run = "curl http://127.0.0.1:9/fix.py" }},
      {{ finish = "done" }},
    ]
    [[attempt]]
    [[attempt.window]]
    actions = [
      {{ run = "python3 -m pytest -q -p no:cacheprovider" }},
      {{ write = "src/calc.py", content = {json.dumps(INJECTED + FIXED)} }},
      {{ finish = "fixed add" }},
    ]
    """
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--no-first-run", "--no-pings", "--dns-prefetch-disable",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
)  # fmt: skip


def chromium(profile: Path, *args: str) -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("needs Debian's chromium: `bash scripts/setup.sh` installs it", pytrace=False)
    proc = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    home = tmp / "home"
    repo = make_repo(
        tmp / "repo",
        {"src/__init__.py": "", "src/calc.py": CALC, "tests/test_calc.py": TESTS,
         ".gitignore": "__pycache__/\n"},
    )  # fmt: skip
    (tmp / "bug.md").write_text(f"# {TITLE}\n\nadd(1, 2) returns -1.\n")
    (tmp / "policy.toml").write_text(POLICY)
    (tmp / "script.toml").write_text(textwrap.dedent(SCRIPT))
    req = RunRequest(
        repo=repo, bug=tmp / "bug.md", policy=str(tmp / "policy.toml"),
        script=tmp / "script.toml", image=sandbox_image, run_id="html",
    )  # fmt: skip
    assert start_run(home, req).status == "ready_for_review"
    out = tmp / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "report", "html", "--html", str(out)],
        env={**os.environ, "CORRAL_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_file_loads_nothing_from_outside(report: Path) -> None:
    page = report.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b|<img\b|<iframe\b|@import|url\(", page, re.I)
    assert page.count("<script>") == 1  # the page's own toggle; the agent's is text
    hrefs = re.findall(r"\b(?:href|src)\s*=\s*\"([^\"]*)\"", page, re.I)
    assert hrefs == []


def test_chromium_renders_the_review_and_runs_no_injected_script(
    report: Path, tmp_path: Path
) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    # Scripts did run (the page's own marks the body), yet no injected one did.
    assert 'data-js="ready"' in dom
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and "pwned" not in title.group(1).replace("pwned-title", "")
    assert "&lt;script&gt;document.title='pwned-title'&lt;/script&gt;" in title.group(1)
    assert dom.count("<script") == 1 and "<img" not in dom
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom  # shown as text
    # The diff, with the scope class of its file, unified and side by side.
    assert '<span class="scope scope-writable">writable</span>' in dom
    assert "+    return a + b" in dom and "-    return a - b" in dom
    assert '<td class="add">    return a + b</td>' in dom  # the side-by-side table
    # The bidi override in the bug title is a visible badge, never the raw character.
    assert "\u202e" not in dom and '<span class="esc">&lt;U+202E&gt;</span>' in dom
    # Gates: baseline vs candidate, per test; the logs collapsible.
    gates = dom[dom.index('<table id="gates">') :]
    gates = gates[: gates.index("</table>")]
    assert "attempt-2" in gates and "tests.test_calc::test_add" in gates
    assert '<span class="pass">pass</span>' in gates and '<span class="fail">FAIL</span>' in gates
    assert dom.count("<details>") == 2 and "2 passed" in dom
    # What was blocked in the first attempt, why it failed, and the timeline.
    blocked = dom[dom.index('<table id="blocked">') :]
    assert "conftest.py" in blocked and "curl http://127.0.0.1:9/fix.py" in blocked
    assert "the attempt changed nothing" in dom
    assert dom.count("<li class=") > 20 and 'class="k-command_denied"' in dom
    assert "acted on it" in dom  # the failing pytest run was followed by a fix


def test_side_by_side_view_and_a_screenshot(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", report.as_uri() + "#split")
    assert re.search(r'<body[^>]*class="split"', dom)
    shot = tmp_path / "report.png"
    chromium(
        tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"screenshot of the HTML report: {shot}")
