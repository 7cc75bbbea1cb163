"""The agent a run names (``--agent``): built from its name, the policy and the model options.

It imports every kind of agent (the built-in one pulls in the model client), so
it lives apart from ``runner.agents``'s light package interface.
"""

from __future__ import annotations

import os
from pathlib import Path

from policies.policy import Policy
from runner.agents.builtin import CorralAgent
from runner.agents.external import CliAgent
from runner.agents.presets import load_preset
from runner.agents.scripted import ScriptedAgent
from runner.errors import UsageError
from runner.llm.client import PRICES, ModelClient, ModelConfig, read_api_key
from runner.loop.agent import Agent


def make_agent(
    agent: str,
    script: Path | None,
    policy: Policy | None = None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key_file: Path | None = None,
    agent_cmd: str | None = None,
) -> Agent:
    """The agent named on the command line: ``scripted:FILE`` (or ``scripted`` + ``--script``),
    ``corral``, ``cli:NAME`` (an agent CLI preset) or ``cli:custom`` with ``agent_cmd``."""
    name, _, inline = agent.partition(":")
    if name == "cli":
        preset = load_preset(inline, agent_cmd)
        key = read_api_key(os.environ, api_key_file)
        if key is None and base_url is None and preset.name != "custom":
            raise UsageError(
                f"--agent cli:{preset.name} calls {preset.default_base_url}, which needs an API key:"
                " set CORRAL_API_KEY or give --api-key-file (or --base-url for a local endpoint)"
            )
        return CliAgent(preset, policy or Policy(), model=model, base_url=base_url, api_key=key)
    if agent_cmd:
        raise UsageError("--agent-cmd goes with --agent cli:custom only")
    if name == "scripted" and inline:
        script = Path(inline)
    if name == "scripted":
        if script is None:
            raise UsageError(
                "--agent scripted needs a script: --agent scripted:FILE (a TOML script of actions)"
            )
        return ScriptedAgent.from_file(script)
    if name == "corral":
        if not model:
            raise UsageError(
                "--agent corral needs --model NAME (and --base-url URL for a non-OpenAI endpoint)"
            )
        key = read_api_key(os.environ, api_key_file)
        if key is None and base_url is None:
            raise UsageError(
                f"--model {model} calls OpenAI's API, which needs an API key: give --api-key-file"
                " or set $CORRAL_API_KEY (or --base-url for an endpoint that needs none)"
            )
        p = policy or Policy()
        config = ModelConfig(
            model=model,
            base_url=base_url,
            api_key=key,
            timeout_s=p.model.timeout_s,
            max_retries=p.model.max_retries,
            circuit_after=p.model.circuit_after,
            prices={**PRICES, **p.model.prices},
        )
        return CorralAgent(ModelClient(config), p.model, p.progress.file)
    raise UsageError(
        f"unknown agent {agent!r}: use --agent corral, --agent scripted:FILE or --agent cli:NAME"
    )
