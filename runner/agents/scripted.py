"""``ScriptedAgent``: replays actions from a TOML script, for tests, demos and policy dry-runs.

Attempt k uses the k-th ``[[attempt]]`` table (or the last one when the script
has fewer); each ``[[attempt.window]]`` is one context window::

    [[attempt]]
    [[attempt.window]]
    actions = [
      { run = "python -m pytest -q" },
      { write = "src/calc.py", content = "..." },
      { patch = "fix.diff" },            # a path relative to the script, or inline diff text
      { read = "src/calc.py" },
      { progress = "tried X; next try Y" },
      { finish = "fixed the off-by-one in add()" },
    ]

Every action goes through ``Tools`` like a model's would. A window whose
actions run out without ``finish`` ends as ``window_exhausted``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from policies.load import PolicyError, format_errors
from runner.loop.agent import WindowContext, WindowOutcome

_KINDS = ("run", "write", "patch", "read", "progress", "finish")


class ScriptAction(BaseModel):
    """One action: exactly one of the verbs, plus ``content`` for ``write``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str | None = None
    write: str | None = None
    content: str | None = None
    patch: str | None = None
    read: str | None = None
    progress: str | None = None
    finish: str | None = None

    @model_validator(mode="after")
    def _one_verb(self) -> ScriptAction:
        verbs = [k for k in _KINDS if getattr(self, k) is not None]
        if len(verbs) != 1:
            raise ValueError(f"each action needs exactly one of {', '.join(_KINDS)} (got {verbs})")
        if (self.write is None) != (self.content is None):
            raise ValueError("`write` needs `content` (and `content` belongs to `write`)")
        return self


class ScriptWindow(BaseModel):
    """One context window's actions."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    actions: tuple[ScriptAction, ...]


class ScriptAttempt(BaseModel):
    """One attempt's windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window: tuple[ScriptWindow, ...]


class Script(BaseModel):
    """A whole script."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    attempt: tuple[ScriptAttempt, ...]


def load_script(path: Path) -> Script:
    """Parse a script file; ``PolicyError`` (``loc: msg`` lines) when it is malformed."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read ({exc.strerror}); check the path"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([f"{path}: not valid TOML: {exc}"]) from exc
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(format_errors(exc, [str(path)])) from exc


class ScriptedAgent:
    """Replays a ``Script``; the same script replays the same way on every run."""

    name = "scripted"

    def __init__(self, script: Script, base_dir: Path) -> None:
        if not script.attempt:
            raise PolicyError(["attempt: the script needs at least one [[attempt]]"])
        self.script = script
        self.base_dir = base_dir

    @classmethod
    def from_file(cls, path: Path) -> ScriptedAgent:
        return cls(load_script(path), Path(path).resolve().parent)

    def run_window(self, ctx: WindowContext) -> WindowOutcome:
        attempt = self.script.attempt[min(ctx.attempt, len(self.script.attempt)) - 1]
        if ctx.window > len(attempt.window):
            return WindowOutcome("window_exhausted", detail="the script has no more windows")
        tools = ctx.tools
        for action in attempt.window[ctx.window - 1].actions:
            if action.run is not None:
                tools.run(action.run)
            elif action.write is not None:
                tools.write(action.write, action.content or "")
            elif action.patch is not None:
                tools.apply_patch(self._patch_text(action.patch))
            elif action.read is not None:
                tools.read(action.read)
            elif action.progress is not None:
                tools.progress(action.progress)
            elif action.finish is not None:
                tools.finish(action.finish)
                return WindowOutcome("finished", summary=action.finish)
        return WindowOutcome("window_exhausted", detail="the window's actions ran out")

    def _patch_text(self, value: str) -> str:
        if "\n" in value:
            return value
        path = (self.base_dir / value).resolve()
        try:
            return path.read_text()
        except OSError as exc:
            raise PolicyError([f"patch: cannot read {path} ({exc.strerror})"]) from exc
