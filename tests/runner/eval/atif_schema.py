"""The ATIF v1.4 schema that corral's ``trajectory.json`` is checked against (tests only).

Written from the published spec: Harbor's RFC "Agent Trajectory Interchange Format (ATIF)
Specification", v1.4, https://github.com/laude-institute/harbor/blob/main/docs/rfcs/0001-trajectory-format.md
(section II, Schema: root, AgentSchema, FinalMetricsSchema, StepObject, ToolCallSchema,
MetricsSchema, ObservationSchema, ObservationResultSchema, SubagentTrajectoryRefSchema), as
pydantic models the way Harbor's reference implementation is (``src/harbor/models/trajectories/``),
with the RFC's rules as validators: ``step_id`` runs 1, 2, 3...; a timestamp is ISO 8601; the
agent-only fields (``model_name``, ``reasoning_effort``, ``reasoning_content``, ``tool_calls``,
``metrics``) appear on agent steps only; an observation's ``source_call_id`` names a tool call
of its step. Unknown fields are refused (``extra="forbid"``): custom data belongs in ``extra``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Agent(_Strict):
    name: str
    version: str
    model_name: str | None = None
    extra: dict[str, Any] | None = None


class ToolCall(_Strict):
    tool_call_id: str
    function_name: str
    arguments: dict[str, Any]


class SubagentTrajectoryRef(_Strict):
    session_id: str
    trajectory_path: str | None = None
    extra: dict[str, Any] | None = None


class ObservationResult(_Strict):
    source_call_id: str | None = None
    content: str | None = None
    subagent_trajectory_ref: list[SubagentTrajectoryRef] | None = None


class Observation(_Strict):
    results: list[ObservationResult]


class Metrics(_Strict):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    extra: dict[str, Any] | None = None


class Step(_Strict):
    step_id: int
    timestamp: str | None = None
    source: Literal["system", "user", "agent"]
    model_name: str | None = None
    reasoning_effort: str | float | None = None
    message: str
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    observation: Observation | None = None
    metrics: Metrics | None = None
    extra: dict[str, Any] | None = None

    @field_validator("timestamp")
    @classmethod
    def _iso8601(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value

    @model_validator(mode="after")
    def _agent_only(self) -> Step:
        if self.source != "agent":
            for name in ("model_name", "reasoning_effort", "reasoning_content", "tool_calls",
                         "metrics"):  # fmt: skip
                if getattr(self, name) is not None:
                    raise ValueError(f"step {self.step_id}: {name} is for agent steps only")
        calls = {c.tool_call_id for c in self.tool_calls or []}
        for r in self.observation.results if self.observation else []:
            if r.source_call_id is not None and r.source_call_id not in calls:
                raise ValueError(f"step {self.step_id}: no tool call {r.source_call_id}")
        return self


class FinalMetrics(_Strict):
    total_prompt_tokens: int | None = None
    total_completion_tokens: int | None = None
    total_cached_tokens: int | None = None
    total_cost_usd: float | None = None
    total_steps: int | None = None
    extra: dict[str, Any] | None = None


class Trajectory(_Strict):
    schema_version: Literal["ATIF-v1.0", "ATIF-v1.1", "ATIF-v1.2", "ATIF-v1.3", "ATIF-v1.4"]
    session_id: str
    agent: Agent
    steps: list[Step]
    notes: str | None = None
    final_metrics: FinalMetrics | None = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sequential(self) -> Trajectory:
        ids = [s.step_id for s in self.steps]
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"step_id must run 1, 2, 3...: {ids[:10]}")
        return self
