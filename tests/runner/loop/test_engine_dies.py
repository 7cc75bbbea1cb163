"""The container engine going away mid-run: the run ends ``failed`` (``runtime``), resumable, with a
reason naming the engine, never a traceback; once the engine answers again ``corral resume``
removes what the dead run left and finishes it. The engine "dies" as its client sees it: corral
talks to it through a unix-socket relay that the test cuts (every connection closed at once)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.forwarder import relay
from tests.support.cli import corral, corral_argv, corral_env
from tests.support.demo import build_demo, fix_script, run_args

pytestmark = pytest.mark.docker

ENGINE = "/var/run/docker.sock"


class EngineRelay:
    """``path`` relays to the engine's socket until ``cut``: then every connection is closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(ENGINE)
            with self.lock:
                self.open += [client, engine]
            threading.Thread(target=relay, args=(client, engine, 600.0), daemon=True).start()

    def cut(self) -> None:
        self.listener.close()
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self.path.unlink(missing_ok=True)


def test_an_engine_that_dies_mid_run_fails_it_resumably(
    tmp_path: Path, corral_home: Path, sandbox_image: str, docker_client: Any
) -> None:
    project = build_demo(tmp_path / "project")
    script = project / "script.toml"
    script.write_text(fix_script(first="sleep 5"))
    sock = tmp_path / "engine.sock"
    env = {"DOCKER_HOST": f"unix://{sock}"}
    cut = EngineRelay(sock)
    args = run_args(project, "--agent", f"scripted:{script}", "--json", "--run-id", "noengine")
    proc = subprocess.Popen(
        corral_argv(*args), env=corral_env(corral_home, env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # JSON lines: wait until the agent's command runs
        if '"type": "command_start"' in line:
            break
    time.sleep(1.0)
    cut.cut()
    out, rest = proc.communicate(timeout=300)
    assert proc.returncode == 1, rest[-3000:]
    assert "Traceback" not in rest, rest[-6000:]
    result = json.loads(out)
    assert (result["status"], result["failure_domain"]) == ("failed", "runtime"), result
    assert "`corral resume noengine`" in result["reason"], result["reason"]
    EngineRelay(sock)  # the engine answers again
    resumed = corral("resume", "noengine", "--json", home=corral_home, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["status"] == "ready_for_review"
    assert corral("verify", "noengine", home=corral_home).returncode == 0
    mine = ["corral.run=noengine", f"corral.home={corral_home}"]
    assert docker_client.containers.list(all=True, filters={"label": mine}) == []
