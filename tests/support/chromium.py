"""Headless Chromium driven over the DevTools protocol on a pipe (tests only; no port is opened).

``Browser`` starts Debian's ``chromium`` with ``--remote-debugging-pipe`` (commands on its fd 3,
replies on its fd 4, each a JSON message ended by NUL), attaches to its page and offers what a
test needs to see what a person sees: ``open`` (wait for the load), ``value`` (a JavaScript
expression's result, evaluated by DevTools, which the page's CSP does not govern), ``click``
(real mouse events at an element's centre) and ``screenshot``. Every wait is bounded by
``timeout``; a browser that does not answer in time fails the test with what it said.

Artifacts go to ``artifacts_dir()``: ``$CORRAL_TEST_ARTIFACTS``, else ``test-artifacts/`` at the
repository root (git-ignored), so a screenshot outlives pytest's temporary directories.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--no-first-run", "--no-pings", "--dns-prefetch-disable",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    "--hide-scrollbars", "--force-device-scale-factor=1",
)  # fmt: skip


def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at afterwards (created if missing)."""
    path = Path(os.environ.get("CORRAL_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def executable() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("needs Debian's chromium: `bash scripts/setup.sh` installs it", pytrace=False)
    return exe


class Browser:
    """One headless Chromium with one page; a context manager (the process is ended on exit)."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 900,
                 timeout: float = 60.0) -> None:  # fmt: skip
        self.timeout = timeout
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        self._proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{resp_w}', "bash", executable(), *FLAGS,
             f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(cmd_r, resp_w), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._id = 0
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None
        pages = [t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page"]
        attached = self.send("Target.attachToTarget", targetId=pages[0]["targetId"], flatten=True)
        self._session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        os.close(self._cmd_w)
        os.close(self._resp_r)
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its ``result`` (fails the test on an error reply)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self._session is not None:
            msg["sessionId"] = self._session
        try:
            os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            self._gone()
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                assert "error" not in reply, (method, reply["error"])
                result: dict[str, Any] = reply.get("result", {})
                return result
            self._events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._resp_r], [], [], max(left, 0))
            chunk = os.read(self._resp_r, 1 << 20) if ready else b""
            if not chunk:
                self._gone()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\0")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def _gone(self) -> None:
        self._proc.terminate()
        _, err = self._proc.communicate(timeout=10)
        pytest.fail(f"chromium did not answer (exit {self._proc.returncode}): {err[-3000:]!r}")

    def open(self, url: str) -> None:
        """Navigate and wait for the page's load event."""
        self._events.clear()
        self.send("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._events.append(self._read())

    def value(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """Scroll ``selector`` into view and press and release the mouse at its centre."""
        box = self.value(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)  # fmt: skip

    def screenshot(self, path: Path) -> Path:
        """The whole page (beyond the viewport) as a PNG at ``path``."""
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path
