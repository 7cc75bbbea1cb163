"""`corral report --html` opened in headless Chromium: what the page shows, and what it never runs.

One run through the real pipeline (real Docker, the scripted agent): its first
attempt is denied a protected write and a download, its second fixes the bug
and also writes a ``<script>`` (and an ``<img onerror>``) into the source file;
the bug title carries a ``<script>`` and a bidi override. Chromium (Debian's
``chromium``, installed by scripts/setup.sh) loads only the local file: no
background networking, every host name mapped to nothing. The page's DOM after
its scripts ran is checked; then, driven over the DevTools protocol (``tests.support.chromium``), what a
person sees in both diff views (rendered text, which table is shown, what is drawn on top, the
colours), with screenshots kept in ``test-artifacts/`` (``$CORRAL_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from runner.ops.service import start_run
from tests.support.chromium import FLAGS, executable
from tests.support.cli import corral
from tests.support.demo import FIXED_MUL, WITH_MUL, build_demo, policy, run_request

INJECTED = (
    "# </td></pre><script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.title='pwned-img'\">\n"
)
TITLE = "<script>document.title='pwned-title'</script> add()\u202e subtracts"
POLICY = policy('[scope]\nwritable = ["src/**"]', attempts=2, timeout=300)
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
      {{ write = "src/calc.py", content = {json.dumps(INJECTED + FIXED_MUL)} }},
      {{ finish = "fixed add" }},
    ]
    """


def chromium(profile: Path, *args: str) -> str:
    proc = subprocess.run(
        [executable(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Path:
    bug = f"# {TITLE}\n\nadd(1, 2) returns -1.\n"
    tmp = build_demo(tmp_path_factory.mktemp("report"), files=WITH_MUL, bug=bug, policy=POLICY)
    home = tmp / "home"
    (tmp / "script.toml").write_text(textwrap.dedent(SCRIPT))
    req = run_request(tmp, script=tmp / "script.toml", image=sandbox_image, run_id="html")
    assert start_run(home, req).status == "ready_for_review"
    out = tmp / "report.html"
    proc = corral("report", "html", "--html", str(out), home=home)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.docker
def test_the_file_loads_nothing_from_outside(report: Path) -> None:
    page = report.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b|<img\b|<iframe\b|@import|url\(", page, re.I)
    assert page.count("<script>") == 1  # the page's own toggle; the agent's is text
    hrefs = re.findall(r"\b(?:href|src)\s*=\s*\"([^\"]*)\"", page, re.I)
    assert hrefs == []


@pytest.mark.docker
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
    gates = dom[dom.index('<table id="gates"') :]
    gates = gates[: gates.index("</table>")].replace("<wbr>", "")
    assert "attempt-2" in gates and "tests.test_calc::test_add" in gates
    assert '<span class="pass">pass</span>' in gates and '<span class="fail">FAIL</span>' in gates
    assert dom.count("<details>") == 2 and "2 passed" in dom
    # What was blocked in the first attempt, why it failed, and the timeline.
    blocked = dom[dom.index('<table id="blocked"') :]
    assert "conftest.py" in blocked and "curl http://127.0.0.1:9/fix.py" in blocked
    assert "the attempt only tried to change files it may not write: conftest.py" in dom
    assert dom.count("<li class=") > 20 and 'class="k-command_denied"' in dom
    assert "acted on it" in dom  # the failing pytest run was followed by a fix


#: What a person sees of the diff: which view's table is shown, the diff's rendered text, and
#: whether the added line and the title's hidden-character badge are drawn on top (nothing covers
#: them) with their colours.
SEEN = """(() => {
  const seen = (e) => { const r = e.getBoundingClientRect();
    return e.checkVisibility() && r.width > 0 && r.height > 0; };
  const onTop = (e) => { e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();
    const hit = document.elementFromPoint(r.x + Math.min(r.width / 2, 30), r.y + r.height / 2);
    return hit === e || e.contains(hit); };
  const file = document.querySelector('#diff .file');
  const view = document.body.classList.contains('split') ? 'split' : 'unified';
  const added = [...file.querySelectorAll(view === 'split' ? 'td.add' : 'tr.add td.t')]
    .find((td) => td.innerText.includes('return a + b'));
  const badge = document.querySelector('h1 .esc');
  return {
    unified: seen(file.querySelector('table.unified')), split: seen(file.querySelector('table.split')),
    text: document.getElementById('diff').innerText, title: document.title,
    h1: document.querySelector('h1').innerText,
    added: seen(added) && onTop(added), addedBg: getComputedStyle(added).backgroundColor,
    badge: seen(badge) && onTop(badge), badgeBg: getComputedStyle(badge).backgroundColor,
  };
})()"""


@pytest.mark.docker
def test_a_person_sees_the_diff_unified_then_side_by_side_and_screenshots_are_kept(
    report: Path, tmp_path: Path
) -> None:
    from tests.support.chromium import Browser, artifacts_dir

    shots = artifacts_dir()
    with Browser(tmp_path / "profile", width=1280, height=900) as page:
        page.open(report.as_uri())
        assert page.value("document.body.dataset.js") == "ready"
        unified = page.value(SEEN)
        page.screenshot(shots / "report-unified.png")
        page.click('button[data-view="split"]')  # the reader's click, through the page's script
        split = page.value(SEEN)
        page.screenshot(shots / "report-split.png")
    # Unified: one table shown, each line once with its sign, the added line drawn in green.
    assert unified["unified"] and not unified["split"]
    assert "+    return a + b" in unified["text"] and "-    return a - b" in unified["text"]
    assert unified["text"].count("return a + b") == 1
    assert unified["added"] and unified["addedBg"] == "rgb(230, 255, 236)"
    # The agent's markup is on screen as text; the bidi override is a red badge, not a reversal.
    assert "<script>document.title='pwned'</script>" in unified["text"]
    assert "pwned" not in unified["title"].replace("pwned-title", "")
    assert "<U+202E> subtracts" in unified["h1"] and "\u202e" not in unified["h1"]
    assert unified["badge"] and unified["badgeBg"] == "rgb(179, 38, 30)"
    # Side by side: the other table, the added line in its own column without a sign.
    assert split["split"] and not split["unified"]
    assert "+    return a + b" not in split["text"] and split["text"].count("return a + b") == 1
    assert split["added"] and split["addedBg"] == "rgb(230, 255, 236)"
    for name in ("report-unified.png", "report-split.png"):
        png = (shots / name).read_bytes()
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and width == 1280 and height > 900  # whole page
    print(f"screenshots of the HTML report: {shots}/report-unified.png, report-split.png")


@pytest.mark.docker
def test_the_address_hash_opens_side_by_side(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", report.as_uri() + "#split")
    assert re.search(r'<body[^>]*class="split"', dom)


def test_the_page_title_is_plain_escaped_text(tmp_path: Path) -> None:
    from runner.review.evidence import gather
    from runner.review.report_html import render_html
    from tests.support.storefixtures import stored_run

    store = stored_run(tmp_path, "t1", bug_title="<b>add()</b> \u202esubtracts\x9b & more")
    page = render_html(gather(store, "t1"))
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title is not None
    assert title.group(1) == (
        "corral review t1: &lt;b&gt;add()&lt;/b&gt; &lt;U+202E&gt;subtracts&lt;U+009B&gt; &amp; more"
    )
