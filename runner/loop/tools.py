"""The tools an agent acts through; each call is validated, executed, scope-checked, budgeted, recorded.

The order for every action is fixed: count the step against the budget ->
validate (command rules, file scope) -> execute in the sandbox -> record the
event -> check the tree's changes against the scope and revert at once what is
out of scope (with a message to the agent). A denied action is recorded and
never executed. Budgets and a pending human decision end the attempt through
the small ``StopAttempt`` tree, which agents let pass.

Every call records one event that names its tool (``tool``: ``bash``,
``read_file``, ``edit_file`` ...) and carries its arguments (``args``, long text
clipped to ``EVENT_ARG_CHARS``). The kind says what happened: ``command``,
``read``, ``write`` (also for ``edit_file``), ``patch``, ``progress``,
``finish``; ``*_denied`` when the policy refused it; ``tool_failed`` when it was
allowed and failed (no such file, no match for ``old_text``, a diff git cannot
read). A failure's message to the agent always says what to do instead.
"""

from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.budget import Budget
from policies.budget import BudgetExceeded as BudgetExceeded
from policies.commands import CommandValidator
from policies.errors import StopAttempt as StopAttempt
from policies.scope import Scope
from runner.errors import NeedsHuman as NeedsHuman
from runner.errors import Paused as Paused
from sandbox.interfaces import Sandbox
from sandbox.watch import TreeWatch
from sandbox.workspace import Workspace, compare

Emit = Callable[[str, Mapping[str, Any]], None]

#: What the agent sees of one command's output: head and tail, with the cut marked.
AGENT_OUTPUT_CHARS = 12_000


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the agent gets back. ``ok`` False with ``denied`` means it never ran."""

    ok: bool
    output: str
    denied: bool = False
    exit_code: int | None = None


def trim(text: str, limit: int = AGENT_OUTPUT_CHARS) -> str:
    """Head and tail of ``text`` with the cut marked (the middle is what matters least)."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[-limit // 2 :]
    return (
        f"{head}\n[... {len(text) - limit} characters cut; narrow the output (grep -n, head, tail,"
        f" sed -n 'A,Bp') to see them ...]\n{tail}"
    )


#: What to do about a path that is not there (the sandbox's git sees no repository: no ``git ls-files``).
_LOOK_AROUND = "List what is there with bash: ls, or find . -name 'PATTERN'"

#: Largest file ``read_file``/``edit_file`` copy out of the sandbox (the model sees ~12,000 characters).
READ_FILE_MAX_BYTES = 4 * 1024 * 1024

#: Characters of each text argument kept in a tool call's event (the rest is cut, and counted).
EVENT_ARG_CHARS = 400

#: ``git apply`` outside any repository: inside the sandbox the tree's ``.git`` pointer leads
#: nowhere (exit 128 "not a git repository"); with ``GIT_DIR`` set to a path that does not exist,
#: git applies to the working directory like ``patch`` does, and reads no repository config.
_NO_REPO = {"GIT_DIR": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
_RENAMED_FROM = re.compile(r"^rename from (.+?)\s*$", re.MULTILINE)


def clip(text: str, limit: int = EVENT_ARG_CHARS) -> str:
    """``text`` cut to ``limit`` characters for an event, the cut counted."""
    return text if len(text) <= limit else f"{text[:limit]}[... {len(text) - limit} more]"


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """Why a file was not read; ``missing``: not there, a directory, or no permission."""

    reason: str
    missing: bool = False


@dataclass(frozen=True, slots=True)
class _Call:
    """One tool call: every event it records names the tool and carries its arguments (clipped)."""

    tools: Tools
    tool: str
    args: Mapping[str, Any]

    def record(self, kind: str, **data: Any) -> None:
        args = {k: clip(v) if isinstance(v, str) else v for k, v in self.args.items()}
        self.tools.emit(kind, {**data, "tool": self.tool, "args": args})


@dataclass
class Tools:
    """The action surface of one attempt (one sandbox, one workspace)."""

    sandbox: Sandbox
    workspace: Workspace
    scope: Scope
    validator: CommandValidator
    budget: Budget
    emit: Emit
    command_timeout: float
    approved: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()
    commands: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)
    """Each path the agent tried to change but may not write, and how it was kept out: ``write
    refused``, ``patch refused whole`` (its patch touched it), ``reverted`` (an action changed it;
    restored at once). ``refusals`` says it in words for the attempt's reason."""
    finished: str | None = None
    watch: TreeWatch | None = None
    """Skips the full scan after an action that raised no inotify event (``sandbox.watch``)."""
    notify: Emit | None = None
    """Live-only notices (``command_start``) for the display; not recorded in the event log."""
    ignored: frozenset[str] | None = None
    """The tree's ignored untracked paths when known (a tree just rolled back holds none);
    None: listed at the first scope check. Listed again whenever the watch saw a path come,
    go or be renamed."""
    _state: int | None = None

    # -------------------------------------------------------------- actions

    def run(self, command: str, timeout: float | None = None) -> ToolResult:
        """Run a shell command in the sandbox (``bash -c``), after the policy allows it."""
        call = _Call(self, "bash", {"command": command})
        self.budget.step()
        verdict = self.validator.check(command)
        if verdict.decision == "ask" and command in self.rejected:
            self.denied.append(command)
            call.record("command_denied", command=command, reason="a human rejected it")
            return ToolResult(
                False,
                "Command not run: a human reviewer rejected it; do this another way.",
                denied=True,
            )
        if verdict.decision == "ask" and command not in self.approved:
            call.record("command_ask", command=command, reason=verdict.reason)
            raise NeedsHuman(command, verdict.reason)
        if verdict.decision == "deny":
            self.denied.append(command)
            call.record("command_denied", command=command, reason=verdict.reason)
            self.budget.progress(False)
            return ToolResult(
                False,
                f"Command not run: {verdict.reason}. The policy never runs it; do this another way.",
                denied=True,
            )
        self.commands.append(command)
        self.budget.command(command)
        limit = min(self.command_timeout, timeout or self.command_timeout)
        if self.notify is not None:
            self.notify("command_start", {"command": command, "timeout": limit})
        result = self.sandbox.exec(command, timeout=limit)
        self.budget.output(len(result.stdout) + len(result.stderr))
        call.record(
            "command",
            command=command,
            exit_code=result.exit_code,
            duration_s=round(result.duration_s, 3),
            timed_out=result.timed_out,
            truncated=result.truncated,
            stdout_bytes=len(result.stdout),
            stderr_bytes=len(result.stderr),
        )
        text = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
        if result.timed_out:
            text += (
                f"\n[timed out after {limit:g}s; the command's processes were killed. Run something"
                " that finishes sooner: a narrower selection of tests, a smaller input.]"
            )
        text += self._enforce_scope()
        return ToolResult(result.ok, trim(text), exit_code=result.exit_code)

    def read(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> ToolResult:
        """Read a file of the tree, optionally lines ``start_line..end_line`` (1-based, inclusive)."""
        args = {"path": path, "start_line": start_line, "end_line": end_line}
        call = _Call(self, "read_file", {k: v for k, v in args.items() if v is not None})
        self.budget.step()
        rel = _relative(path)
        if rel is None:
            self.denied.append(f"read {path}")
            call.record("read_denied", path=path, reason="outside the repository")
            self.budget.progress(False)
            return ToolResult(
                False,
                f"Not read: {path} is outside the repository; use a path relative to its root.",
                denied=True,
            )
        data = self._load(rel)
        if isinstance(data, _Unreadable):
            call.record("tool_failed", path=rel, error=data.reason)
            self.budget.progress(False)
            return ToolResult(
                False, f"Not read: {data.reason}." + (f" {_LOOK_AROUND}" if data.missing else "")
            )
        text = data.decode(errors="replace")
        if start_line is not None or end_line is not None:
            lines = text.splitlines(keepends=True)
            first = max(1, start_line or 1)
            last = min(len(lines), end_line or len(lines))
            text = "".join(f"{i}: {lines[i - 1]}" for i in range(first, last + 1))
            if not text and not lines:
                text = "(no lines: the file is empty)"
            elif not text:
                asked = f"{first}..{end_line or ''}"
                text = f"(no lines {asked}: the file has {len(lines)}; ask within 1..{len(lines)})"
        call.record("read", path=rel, bytes=len(data))
        self.budget.progress(False)
        return ToolResult(True, trim(text))

    def edit(self, path: str, old_text: str, new_text: str) -> ToolResult:
        """Replace the one exact occurrence of ``old_text`` in a file (0 or several: an error)."""
        call = _Call(self, "edit_file", {"path": path, "old_text": old_text, "new_text": new_text})
        rel = _relative(path)
        if rel is None or not self.scope.may_write(rel):
            return self._write(call, path, "")  # the same denial, recorded the same way
        data = self._load(rel)
        why, text = "", None
        if isinstance(data, _Unreadable):
            why = data.reason + (". Use write_file to create a file" if data.missing else "")
        elif (text := _utf8(data)) is None:
            why = f"{rel} is not UTF-8 text; use write_file to replace it whole"
        elif not old_text:
            why = "old_text is empty; use write_file to create or replace a whole file"
        elif (count := text.count(old_text)) == 0:
            why = "old_text was not found; read the file and copy the exact text (whitespace included)"
        elif count > 1:
            why = f"old_text matches {count} places; include more surrounding lines so it matches once"
        if why or text is None:
            self.budget.step()
            self.budget.progress(False)
            call.record("tool_failed", path=rel, error=why)
            return ToolResult(False, f"Not edited: {why}.")
        return self._write(call, path, text.replace(old_text, new_text, 1))

    def write(self, path: str, content: str) -> ToolResult:
        """Create or replace a file, if the scope lets the agent write it."""
        return self._write(
            _Call(self, "write_file", {"path": path, "content": content}), path, content
        )

    def apply_patch(self, diff: str) -> ToolResult:
        """Apply a unified diff in the sandbox, if every path it touches is writable.

        ``git apply`` runs with ``GIT_DIR`` pointing nowhere (the tree's ``.git``
        pointer leads nowhere inside the sandbox), so it works like ``patch`` with
        git's parser and strictness. The paths checked are git's own reading of the
        diff (``--numstat``, plus rename sources), checked before anything is
        applied; the scope check after the action reverts whatever else changed.
        """
        call = _Call(self, "apply_patch", {"diff": diff})
        self.budget.step()
        listed = self.sandbox.exec(_git_apply(diff, "--numstat -z"), timeout=60, env=_NO_REPO)
        if not listed.ok:
            error = listed.stderr.strip()[:500] or f"git apply exited {listed.exit_code}"
            call.record("tool_failed", error=error)
            self.budget.progress(False)
            return ToolResult(
                False,
                f"Patch not applied: git cannot read it: {error}. Send a unified diff"
                " (--- a/PATH, +++ b/PATH, @@ hunks) of files in the repository.",
                exit_code=listed.exit_code,
            )
        paths = _numstat_paths(listed.stdout) | set(_RENAMED_FROM.findall(diff))
        bad = sorted(p for p in paths if (r := _relative(p)) is None or not self.scope.may_write(r))
        if bad or not paths:
            # refused whole: a part of a change applied without the rest is not what was sent
            reason = "no file paths found in it"
            if bad:
                why = "; ".join(f"{p} ({self._why_not(_relative(p))})" for p in bad)
                reason = f"it touches files you may not write: {why}; none of it was applied"
            self.denied.append("patch touching " + ", ".join(bad) if bad else "patch")
            self._refuse(bad, "patch refused whole")
            call.record("patch_denied", paths=sorted(paths), refused=bad, reason=reason)
            self.budget.progress(False)
            again = " Send the change to the other files as a patch of its own." if bad else ""
            return ToolResult(
                False, f"Patch not applied: {reason}.{again} {self._hint()}", denied=True
            )
        result = self.sandbox.exec(_git_apply(diff, "--verbose"), timeout=60, env=_NO_REPO)
        call.record("patch", paths=sorted(paths), exit_code=result.exit_code)
        return ToolResult(
            result.ok,
            trim(result.stdout + result.stderr) + self._enforce_scope(),
            exit_code=result.exit_code,
        )

    def progress(self, content: str) -> ToolResult:
        """Replace the progress file (durable memory for the next window and attempt)."""
        call = _Call(self, "update_progress", {"content": content})
        self.budget.step()
        self.sandbox.write_file(self.scope.progress_file, content)
        call.record("progress", bytes=len(content.encode()))
        self.budget.progress(False)
        return ToolResult(True, f"progress saved to {self.scope.progress_file}")

    def finish(self, summary: str) -> ToolResult:
        """End the attempt; the runner then harvests and runs the gates."""
        self.finished = summary
        _Call(self, "finish", {"summary": summary}).record("finish", summary=summary)
        return ToolResult(True, "finished; the runner will verify the change")

    # -------------------------------------------------------------- helpers of the actions

    def _write(self, call: _Call, path: str, content: str) -> ToolResult:
        self.budget.step()
        rel = _relative(path)
        if rel is None or not self.scope.may_write(rel):
            why = self._why_not(rel)
            self.denied.append(f"write {path}")
            self._refuse([rel or path], "write refused")
            call.record("write_denied", path=path, reason=why)
            self.budget.progress(False)
            return ToolResult(False, f"Not written: {path} is {why}.", denied=True)
        try:
            self.sandbox.write_file(rel, content)
        except (IsADirectoryError, PermissionError) as exc:
            call.record("tool_failed", path=rel, error=str(exc))
            self.budget.progress(False)
            return ToolResult(False, f"Not written: {exc}. {self._hint()}")
        call.record("write", path=rel, bytes=len(content.encode()))
        return ToolResult(True, f"wrote {rel}" + self._enforce_scope())

    def _load(self, rel: str) -> bytes | _Unreadable:
        """The bytes of ``rel``, or why not: checked first (``stat``), so that a FIFO or a
        device never hangs the read and a file past ``READ_FILE_MAX_BYTES`` is never
        copied out (the Docker backend raises a plain ``SandboxError`` past 64 MiB).

        Raises ``SandboxError`` only when the sandbox itself fails, or when the file
        changed between the check and the read (grew past the backend's limit).
        """
        info = self.sandbox.exec(["stat", "-L", "-c", "%F|%s", "--", rel], timeout=10)
        kind, _, size = info.stdout.strip().rpartition("|")
        if info.ok and kind not in ("regular file", "regular empty file", "directory"):
            return _Unreadable(f"{rel} is a {kind or 'special file'}, not a regular file")
        if info.ok and size.isdigit() and int(size) > READ_FILE_MAX_BYTES:
            return _Unreadable(
                f"{rel} is {int(size)} bytes, more than the {READ_FILE_MAX_BYTES} a read returns;"
                " look at parts of it with bash: head -c N, grep -n, sed -n 'A,Bp'"
            )
        try:
            return self.sandbox.read_file(rel)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            return _Unreadable(str(exc), missing=True)

    # -------------------------------------------------------------- scope enforcement

    def _why_not(self, rel: str | None) -> str:
        """Why the agent may not write ``rel`` (a tree-relative path; None: one that leaves the tree)."""
        if rel is None:
            return "outside the repository"
        cls = self.scope.classify(rel)
        return {"protected": "protected by policy", "artifact": "a build artifact"}.get(
            cls, "not in the policy's writable scope"
        )

    def _enforce_scope(self) -> str:
        """Revert every change outside the scope now; return the message for the agent.

        Also feeds the idle-steps guard: the tree's state is compared with the
        state after the previous action. An action after which the tree watch saw
        no event changed nothing, so there is nothing to compare or revert.
        """
        if self.watch is not None and not self.watch.changed():
            self.budget.progress(False)
            return ""
        renamed = self.watch is None or self.watch.names_changed()  # asked every time: it resets
        if self.ignored is None or renamed:
            self.ignored = self.workspace.ignored()
        # defence in depth: the harvest hashes everything and lists ignored paths afresh
        snap = self.workspace.snapshot(reuse=True, ignored=self.ignored)
        state = hash(tuple(sorted((p, e.sha, e.mode) for p, e in snap.entries.items())))
        base = self.workspace.tree_listing(self.workspace.start)
        now = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
        now.update({p: v for p, v in base.items() if v[0] == "160000"})
        bad = [c.path for c in compare(base, now) if not self.scope.may_write(c.path)]
        bad = [p for p in bad if self.scope.classify(p) != "artifact"]
        if self._state is None:  # the attempt started from base
            self._state = hash(
                tuple(sorted((p, sha, m) for p, (m, sha) in base.items() if m != "160000"))
            )
        changed, self._state = state != self._state, state
        message = ""
        if bad:
            self.workspace.restore_paths(bad)
            self.violations.extend(bad)
            self._refuse(bad, "reverted")
            self.emit("scope_reverted", {"paths": bad})
            listed = ", ".join(bad)
            message = (
                f"\n[corral] Reverted changes outside your writable scope: {listed}. {self._hint()}"
            )
        self.budget.progress(changed)
        return message

    def refusals(self) -> list[str]:
        """Each path in ``refused``, in order, with why the agent may not write it and how it
        was kept out: ``tox.ini (protected by policy; patch refused whole)``."""
        return [
            f"{p} ({self._why_not(_relative(p))}; {', '.join(hows)})"
            for p, hows in sorted(self.refused.items())
        ]

    def _refuse(self, paths: list[str], how: str) -> None:
        """Note that ``paths`` were kept out of the tree, and ``how`` (see ``refused``)."""
        for p in paths:
            hows = self.refused.setdefault(p, [])
            if how not in hows:
                hows.append(how)

    def _hint(self) -> str:
        return "Change only files the policy lets you write; " + self.scope.summary()


def _relative(path: str) -> str | None:
    """``path`` as a clean tree-relative path, or None if it leaves the tree."""
    p = path.strip()
    if p.startswith("/workspace/"):
        p = p[len("/workspace/") :]
    if not p or p.startswith("/"):
        return None
    norm = posixpath.normpath(p)
    if norm == "." or norm.startswith("../") or norm == "..":
        return None
    return norm


def _git_apply(diff: str, options: str) -> str:
    """``git apply OPTIONS`` reading ``diff`` from stdin (base64 on the way: any bytes, no temp file)."""
    encoded = base64.encodebytes(diff.encode()).decode()
    return (
        f"base64 -d <<'__CORRAL_EOF__' | git apply --recount {options}\n{encoded}__CORRAL_EOF__\n"
    )


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _numstat_paths(out: str) -> set[str]:
    """Paths in ``git apply --numstat -z`` output: ``added TAB deleted TAB path NUL`` records,
    or, for a rename, an empty path followed by ``old NUL new NUL``."""
    fields, paths = out.split("\0"), set()
    i = 0
    while i < len(fields):
        record = fields[i]
        if record.count("\t") >= 2:
            path = record.split("\t", 2)[2]
            if path:
                paths.add(path)
            else:
                paths.update(p for p in fields[i + 1 : i + 3] if p)
                i += 2
        i += 1
    return paths
