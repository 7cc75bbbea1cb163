"""One readable line per event: what ``corral logs``, the HTML timeline and the run display print.

``summarize(event)`` looks the event's type up in ``LINES``, one small formatter per type the
runner records, and never shows the event's JSON, a dict or a list repr, or Python's ``None``
(a missing value reads ``?``): the JSON stays for ``--json`` and the event log itself. A type
missing from ``LINES`` (a newer corral's log, a test's own event) still reads as words,
``type: key value; ...``; tests/runner/review/test_event_lines.py collects every type the code
records and fails for one without a formatter here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runner.store.chain import Event

D = Mapping[str, Any]


def summarize(e: Event) -> str:
    """One readable line for an event (``corral logs``, the HTML timeline, the run display)."""
    fmt = LINES.get(e.type)
    return fmt(e.data) if fmt is not None else _generic(e.type, e.data)


def v(x: object, default: str = "?") -> str:
    """A value as text: ``?`` for None, a list as ``a, b``, a mapping as ``k v, ...``."""
    if x is None:
        return default
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, Mapping):
        return ", ".join(f"{k} {v(y)}" for k, y in x.items()) or "none"
    if isinstance(x, (list, tuple, set, frozenset)):
        return ", ".join(v(y) for y in x) or "none"
    return str(x)


def _short(x: object, n: int = 12) -> str:
    return v(x)[:n]


def _mapping(x: object) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _words(x: object) -> str:
    return v(x).replace("_", " ")


def _generic(kind: str, d: D) -> str:
    fields = "; ".join(f"{k.replace('_', ' ')} {v(x)}" for k, x in d.items() if k != "args")
    return f"{_words(kind)}: {fields}" if fields else _words(kind)


def _what(d: D) -> str:
    return v(d.get("path") or d.get("paths"))


# --------------------------------------------------------------------------- agent actions


def _command(d: D) -> str:
    extra = " (timed out)" if d.get("timed_out") else ""
    return f"$ {v(d.get('command'))}  -> exit {v(d.get('exit_code'))}{extra}, {v(d.get('duration_s'))}s"


def _denied(verb: str) -> Callable[[D], str]:
    return lambda d: f"{verb}: {_what(d)} ({v(d.get('reason'))})"


def _tool_failed(d: D) -> str:
    where = f" {d['path']}" if d.get("path") else ""
    return f"{v(d.get('tool'))}{where} failed: {v(d.get('error'))}"


def _human(verb: str) -> Callable[[D], str]:
    def line(d: D) -> str:
        what = (
            f"`{d['command']}`"
            if d.get("command")
            else f"the scope change of attempt {v(d.get('attempt'))} ({v(d.get('scope'))})"
        )
        said = f": {d['comment']}" if d.get("comment") else ""
        return f"{v(d.get('by'), 'a human')} {verb} {what}{said}"

    return line


# --------------------------------------------------------------------------- attempts, gates


def _attempt_start(d: D) -> str:
    at = d.get("resumed_at")
    if not isinstance(at, Mapping):
        return f"attempt {v(d.get('attempt'))} started"
    return (
        f"attempt {v(d.get('attempt'))} resumed at window {v(at.get('window'))}, "
        f"step {v(at.get('steps'))}"
    )


def _attempt_end(d: D) -> str:
    domain = f" ({d['failure_domain']})" if d.get("failure_domain") else ""
    return f"attempt {v(d.get('attempt'))} {v(d.get('status'))}{domain}: {v(d.get('reason'))}"


def _gate_end(d: D) -> str:
    verdict = "passed" if d.get("passed") else "FAILED"
    return f"gate {v(d.get('gate'))} [{v(d.get('label'))}] {verdict}: {v(d.get('reason'))}"


def _gate_cannot_run(d: D) -> str:
    kind = "required" if d.get("required") else "advisory"
    return (
        f"gate {v(d.get('gate'))} ({kind}) cannot run at base: {v(d.get('why'))}"
        f" ({v(d.get('log'))})"
    )


def _sandbox(d: D) -> str:
    spec = _mapping(d.get("spec"))
    limits = _mapping(spec.get("limits"))
    if d.get("role") == "gate":
        who = f"gate {v(d.get('gate'))} [{v(d.get('label'))}]"
    elif d.get("attempt") is not None:
        who = f"attempt {d.get('attempt')}"
    else:
        who = v(d.get("role"), "a step")
    return (
        f"sandbox for {who}: container {_short(d.get('container'))}, image"
        f" {_short(d.get('image_id'), 19)}, network {v(spec.get('network'))}, runtime"
        f" {v(spec.get('runtime'))}, user {v(spec.get('user'))}, memory"
        f" {v(limits.get('memory_mb'))} MB, {v(limits.get('cpus'))} CPUs,"
        f" {v(limits.get('pids'))} processes"
    )


def _model_call(d: D) -> str:
    calls = v(d.get("tool_calls"), "") if d.get("tool_calls") else "no tool call"
    return (
        f"model: {v(d.get('prompt_tokens'))} + {v(d.get('completion_tokens'))} tokens, "
        f"${float(d.get('cost_usd') or 0):.6f}, {v(d.get('finish_reason'))} -> {calls}"
    )


def _snapshot(d: D) -> str:
    state = d.get("code_state")
    code = "harvest" if state == "harvest" else _short(state)
    return f"progress file snapshot (sha256 {_short(d.get('sha256'))}; code state {code})"


# --------------------------------------------------------------------------- agent CLIs, gateway


def _agent_exit(d: D) -> str:
    how = "".join(
        f" ({word})"
        for key, word in (("killed", "killed"), ("timed_out", "timed out"))
        if d.get(key)
    )
    return (
        f"agent {v(d.get('agent'))} exited {v(d.get('exit_code'))}{how}"
        f" after {v(d.get('duration_s'))}s"
    )


def _gateway_request(d: D) -> str:
    streamed = ", streamed" if d.get("streamed") else ""
    return (
        f"model gateway: {v(d.get('method'))} {v(d.get('host'), '')}{v(d.get('path'))} ->"
        f" {v(d.get('status'))}, {v(d.get('tokens'), '0')} tokens,"
        f" ${float(d.get('cost_usd') or 0):.6f}, {v(d.get('duration_s'))}s{streamed}"
    )


# --------------------------------------------------------------------------- the run


def _run_resume(d: D) -> str:
    answers = [
        f"{word}: {v(d.get(word))}" for word in ("approved", "rejected", "scope") if d.get(word)
    ]
    return "run resumed" + (f" ({'; '.join(answers)})" if answers else "")


def _review(verb: str) -> Callable[[D], str]:
    def line(d: D) -> str:
        said = f": {d['comment']}" if d.get("comment") else ""
        return (
            f"candidate {verb} by {v(d.get('by'))} (sha256 {_short(d.get('candidate_sha256'))},"
            f" was {_words(d.get('previous'))}){said}"
        )

    return line


#: The formatter of every event type the runner records (``runview.describe`` words the live-only
#: notices).
LINES: dict[str, Callable[[D], str]] = {
    # the run
    "run_start": lambda d: f"run started: {v(d.get('title'))} (agent {v(d.get('agent'))})",
    "run_end": lambda d: f"run {v(d.get('status'))}: {v(d.get('reason'))}",
    "run_resume": _run_resume,
    "run_interrupted": lambda d: (
        f"run interrupted during {v(d.get('where'))}: `corral resume` goes on from there"
    ),
    "runtime_error": lambda d: (
        f"runtime error during {v(d.get('where'))}: {v(d.get('error'))}: {v(d.get('message'))}"
    ),
    "policy_warning": lambda d: f"warning: {v(d.get('message'))}",
    "hidden_tests": lambda d: (
        f"hidden tests kept from the agent: {v(d.get('paths'))} (from {v(d.get('file'))})"
    ),
    "workspace": lambda d: f"worktree {v(d.get('path'))} at base {_short(d.get('base'))}",
    "orphan_removed": lambda d: (
        f"removed a container a crashed process left: {_short(d.get('container'))}"
    ),
    "log_repaired": lambda d: (
        f"event log repaired: a torn last line ({v(d.get('bytes'))} bytes at offset"
        f" {v(d.get('offset'))}) moved to {v(d.get('moved_to'))}"
    ),
    "sandbox_spec": _sandbox,
    "image_rebuilt": lambda d: (
        f"image {_short(d.get('was'), 19)} was gone: rebuilt as {_short(d.get('now'), 19)}"
    ),
    # set-up
    "setup_start": lambda d: f"set-up: {'; '.join(map(v, d.get('commands') or [])) or '?'}",
    "environment": lambda d: (
        f"environment {_short(d.get('image'), 19)} "
        + (f"(built in {v(d.get('seconds'))}s)" if d.get("built") else "(cached)")
    ),
    "setup_failed": lambda d: (
        f"set-up FAILED (exit {v(d.get('exit_code'))})"
        + (f": {d['command']}" if d.get("command") else "")
        + (f" ({d['log']})" if d.get("log") else "")
    ),
    # attempts and windows
    "attempt_start": _attempt_start,
    "attempt_end": _attempt_end,
    "window_start": lambda d: f"attempt {v(d.get('attempt'))} window {v(d.get('window'))}",
    "window_end": lambda d: (
        f"attempt {v(d.get('attempt'))} window {v(d.get('window'))} ended: {_words(d.get('end'))}"
    ),
    "repeated_strategy": lambda d: (
        f"attempt {v(d.get('attempt'))} repeats a strategy already tried"
        f" ({v(d.get('times'))} times: {v(d.get('strategy'))})"
    ),
    "scope_answer": lambda d: (
        f"scope change of attempt {v(d.get('attempt'))} {v(d.get('answer'))} by a human"
        f" (commit {_short(d.get('commit'))})"
    ),
    # agent actions
    "command": _command,
    "command_denied": lambda d: f"denied: $ {v(d.get('command'))}  ({v(d.get('reason'))})",
    "command_ask": lambda d: f"needs a human: $ {v(d.get('command'))}  ({v(d.get('reason'))})",
    "read": lambda d: f"{v(d.get('tool'), 'read')} {v(d.get('path'))} ({v(d.get('bytes'))} bytes)",
    "write": lambda d: (
        f"{v(d.get('tool'), 'write')} {v(d.get('path'))} ({v(d.get('bytes'))} bytes)"
    ),
    "patch": lambda d: f"patch {_what(d)} -> exit {v(d.get('exit_code'))}",
    "progress": lambda d: f"progress file rewritten ({v(d.get('bytes'))} bytes)",
    "finish": lambda d: f"finish: {v(d.get('summary'))}",
    "read_denied": _denied("read denied"),
    "write_denied": _denied("write denied"),
    "patch_denied": _denied("patch denied"),
    "tool_failed": _tool_failed,
    "tool_error": lambda d: f"tool call {v(d.get('tool'))} refused: {v(d.get('error'))}",
    "scope_reverted": lambda d: f"reverted out-of-scope changes: {v(d.get('paths'))}",
    "progress_snapshot": _snapshot,
    "progress_refused": lambda d: f"progress file not read: {v(d.get('reason'))}",
    "model_call": _model_call,
    # agent CLIs and the model gateway
    "agent_invocation": lambda d: (
        f"agent {v(d.get('agent'))} started (attempt {v(d.get('attempt'))} window"
        f" {v(d.get('window'))}, timeout {v(d.get('timeout_s'))}s)"
    ),
    "agent_exit": _agent_exit,
    "agent_killed": lambda d: (
        f"agent {v(d.get('agent'))} stopped ({v(d.get('processes'))} processes):"
        f" {_words(d.get('reason'))} ({_words(d.get('resource'))})"
    ),
    "command_hook": lambda d: (
        f"agent's command {v(d.get('decision'))}: $ {v(d.get('command'))}  ({v(d.get('reason'))})"
    ),
    "gateway_request": _gateway_request,
    "gateway_refused": lambda d: (
        f"model gateway refused {v(d.get('method'))} {v(d.get('host'), '')}{v(d.get('path'))}"
        f" ({v(d.get('status'))}): {v(d.get('reason'))}"
    ),
    "gateway_budget_exhausted": lambda d: (
        f"model gateway: {_words(d.get('resource'))} budget spent ({v(d.get('used'))} of"
        f" {v(d.get('limit'))})"
    ),
    # gates
    "gate_start": lambda d: f"gate {v(d.get('gate'))} [{v(d.get('label'))}] started",
    "gate_end": _gate_end,
    "gate_cannot_run": _gate_cannot_run,
    "flaky_tests": lambda d: (
        f"gate {v(d.get('gate'))}: flaky at base over {v(d.get('runs'))} runs, not judged:"
        f" {v(d.get('tests'))}"
    ),
    # humans
    "human_approved": _human("approved"),
    "human_rejected": _human("rejected"),
    "review_approved": _review("approved"),
    "review_rejected": _review("rejected"),
    "merged": lambda d: (
        f"merged as {_short(d.get('commit'))} on {v(d.get('branch'))} by {v(d.get('by'))}:"
        f" {v(d.get('files'))}"
    ),
}
