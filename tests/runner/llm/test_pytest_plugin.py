"""corral's pytest plugin, as a user meets it: installed with corral, found by its entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

USER_TEST = textwrap.dedent(
    """
    import json
    import urllib.request

    from runner.llm.scripted_server import ScriptedReply


    def test_the_fixture_needs_no_import(scripted_model_server):
        server = scripted_model_server([ScriptedReply(content="hello")])
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(
            server.base_url + "/chat/completions", data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            reply = json.load(answer)
        assert reply["choices"][0]["message"]["content"] == "hello"
    """
)


def test_a_users_test_gets_the_scripted_server_fixture_from_the_entry_point(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_loading_the_plugin_does_not_import_the_model_client() -> None:
    probe = "import sys, runner.llm.pytest_plugin; print('openai' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # every pytest session would pay about a second
