"""``--agent corral``: a tool-calling loop on any OpenAI-compatible model.

The model acts only through the tools below, which map one to one onto
``runner.loop.tools.Tools``: every call is validated, executed in the sandbox,
scope-checked, budgeted and recorded by the runner. Tool names and argument
names are a contract (scripted models and recorded trajectories use them);
their JSON schemas are generated from the pydantic models here.

A window starts from a message built from package templates (``prompts/``):
the bug, the policy, the progress file, the diff stat and the last feedback;
never from an earlier transcript. It ends when a request's prompt reaches the
policy's fraction of the context, when the model's context overflows, or after
the window's step budget; before it ends the model is asked to update its
progress file. Errors of a tool call go back to the model as messages; an
unknown tool or malformed arguments count as tool-interface errors, bounded
per window.
"""

from __future__ import annotations

import json
from importlib import resources
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.policy import ModelPolicy
from runner.llm.client import ContextTooLong, ModelClient, ModelReply, ToolCallRequest
from runner.loop.agent import WindowContext, WindowOutcome
from runner.loop.tools import Tools, clip


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BashArgs(_Args):
    """Run a shell command in the repository (bash, no network). Output is trimmed head and tail."""

    command: str = Field(description="The command line.")


class ReadFileArgs(_Args):
    """Read a file, or lines start_line..end_line of it (1-based, inclusive)."""

    path: str = Field(description="Path relative to the repository root.")
    start_line: int | None = Field(default=None, ge=1, description="First line to show.")
    end_line: int | None = Field(default=None, ge=1, description="Last line to show.")


class WriteFileArgs(_Args):
    """Create or replace a whole file."""

    path: str = Field(description="Path relative to the repository root.")
    content: str = Field(description="The complete new content.")


class EditFileArgs(_Args):
    """Replace exactly one occurrence of old_text with new_text in a file."""

    path: str = Field(description="Path relative to the repository root.")
    old_text: str = Field(description="Text to replace; must occur exactly once.")
    new_text: str = Field(description="Replacement text.")


class UpdateProgressArgs(_Args):
    """Replace your progress file: what you found, changed, tried, and will do next."""

    content: str = Field(description="The whole progress file (markdown).")


class FinishArgs(_Args):
    """End the attempt; the runner then checks your change with its gates."""

    summary: str = Field(description="What was wrong and what you changed.")


TOOL_ARGS: dict[str, type[_Args]] = {
    "bash": BashArgs,
    "read_file": ReadFileArgs,
    "write_file": WriteFileArgs,
    "edit_file": EditFileArgs,
    "update_progress": UpdateProgressArgs,
    "finish": FinishArgs,
}


def tool_schemas() -> list[dict[str, Any]]:
    """The tools as chat-completions ``tools`` (JSON schemas from the pydantic models)."""
    out = []
    for name, model in TOOL_ARGS.items():
        schema = model.model_json_schema()
        schema.pop("title", None)
        description = schema.pop("description", "")
        out.append(
            {
                "type": "function",
                "function": {"name": name, "description": description, "parameters": schema},
            }
        )
    return out


def prompt(name: str) -> str:
    return resources.files("runner.agents").joinpath(f"prompts/{name}.md").read_text()


def first_message(ctx: WindowContext, progress_file: str) -> str:
    """The message a window starts from (template ``prompts/window.md``)."""
    return Template(prompt("window")).safe_substitute(
        title=ctx.task.title,
        body=ctx.task.body.strip(),
        policy=ctx.policy_summary,
        attempt=ctx.attempt,
        window=ctx.window,
        max_windows=ctx.max_windows,
        progress_file=progress_file,
        progress=ctx.progress.strip() or "(empty: this is the first window)",
        diff_stat=ctx.diff_stat,
        feedback=ctx.feedback.strip() or "(none)",
    )


class CorralAgent:
    """The built-in agent. One instance per run; ``run_window`` per context window."""

    name = "corral"

    def __init__(self, client: ModelClient, policy: ModelPolicy, progress_file: str) -> None:
        self.client = client
        self.policy = policy
        self.progress_file = progress_file
        self.tools_schema = tool_schemas()

    def run_window(self, ctx: WindowContext) -> WindowOutcome:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompt("system")},
            {"role": "user", "content": first_message(ctx, self.progress_file)},
        ]
        tool_errors = 0
        for _ in range(self.policy.steps_per_window):
            try:
                reply = self._call(ctx.tools, messages, self.tools_schema)
            except ContextTooLong:
                self._wrap_up(ctx.tools, messages[:2])
                return WindowOutcome("window_exhausted", detail="the model's context overflowed")
            messages.append(_assistant(reply))
            if not reply.tool_calls:
                tool_errors += 1
                if tool_errors > self.policy.max_tool_errors:
                    return _gave_up(tool_errors)
                messages.append({"role": "user", "content": prompt("nudge")})
                continue
            for call in reply.tool_calls:
                text, ok, finished = self._dispatch(ctx.tools, call)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
                tool_errors += 0 if ok else 1
                if finished is not None:
                    return WindowOutcome("finished", summary=finished)
            if tool_errors > self.policy.max_tool_errors:
                return _gave_up(tool_errors)
            if reply.prompt_tokens >= self.policy.window_fraction * self.policy.context_tokens:
                self._wrap_up(ctx.tools, messages)
                return WindowOutcome(
                    "window_exhausted", detail="context budget of the window reached"
                )
        self._wrap_up(ctx.tools, messages)
        return WindowOutcome("window_exhausted", detail="step budget of the window reached")

    def _call(
        self, tools: Tools, messages: list[dict[str, Any]], schema: list[dict[str, Any]]
    ) -> ModelReply:
        reply = self.client.complete(messages, schema)
        tools.emit("model_call", {
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "cost_usd": round(reply.cost_usd, 6), "finish_reason": reply.finish_reason,
            "tool_calls": [c.name for c in reply.tool_calls],
        })  # fmt: skip
        tools.budget.model(reply.prompt_tokens + reply.completion_tokens, reply.cost_usd)
        return reply

    def _wrap_up(self, tools: Tools, messages: list[dict[str, Any]]) -> None:
        """Ask for a progress update before the window ends (only ``update_progress`` is offered)."""
        only = [t for t in self.tools_schema if t["function"]["name"] == "update_progress"]
        ask = [*messages, {"role": "user", "content": prompt("wrap_up")}]
        try:
            reply = self._call(tools, ask, only)
        except ContextTooLong:
            return
        for call in reply.tool_calls:
            if call.name == "update_progress":
                self._dispatch(tools, call)

    def _dispatch(self, tools: Tools, call: ToolCallRequest) -> tuple[str, bool, str | None]:
        """Run one tool call: (text for the model, whether it was well-formed, finish summary)."""
        model = TOOL_ARGS.get(call.name)
        if model is None:
            tools.emit("tool_error", _error_event(call, "unknown tool"))
            return f"Unknown tool `{call.name}`. Use one of: {', '.join(TOOL_ARGS)}.", False, None
        try:
            raw = json.loads(call.arguments or "{}")
            args = model.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            tools.emit("tool_error", _error_event(call, "malformed arguments"))
            return (
                f"Malformed arguments for `{call.name}`: {_short(exc)}. Send a JSON object matching its schema.",
                False,
                None,
            )
        result = _invoke(tools, args)
        if isinstance(args, FinishArgs):
            return result.output, True, args.summary
        prefix = "" if result.ok else ("DENIED: " if result.denied else "FAILED: ")
        code = f"[exit {result.exit_code}]\n" if result.exit_code is not None else ""
        return f"{prefix}{code}{result.output}", True, None


def _invoke(tools: Tools, args: _Args) -> Any:
    if isinstance(args, BashArgs):
        return tools.run(args.command)
    if isinstance(args, ReadFileArgs):
        return tools.read(args.path, args.start_line, args.end_line)
    if isinstance(args, WriteFileArgs):
        return tools.write(args.path, args.content)
    if isinstance(args, EditFileArgs):
        return tools.edit(args.path, args.old_text, args.new_text)
    if isinstance(args, UpdateProgressArgs):
        return tools.progress(args.content)
    assert isinstance(args, FinishArgs)
    return tools.finish(args.summary)


def _error_event(call: ToolCallRequest, error: str) -> dict[str, Any]:
    """A tool call that never reached ``Tools``: its name and raw arguments (clipped)."""
    return {"tool": clip(call.name, 100), "error": error, "arguments": clip(call.arguments)}


def _assistant(reply: ModelReply) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.tool_calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return msg


def _gave_up(errors: int) -> WindowOutcome:
    return WindowOutcome(
        "agent_error",
        detail=f"{errors} tool-interface errors in one window",
        domain="tool-interface",
    )


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()[:5]
        )
    return str(exc)[:200]


__all__ = ["TOOL_ARGS", "CorralAgent", "first_message", "tool_schemas"]
