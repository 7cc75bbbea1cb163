"""The agents the loop drives (``runner.loop.agent.Agent``).

    builtin    ``CorralAgent``: corral's own tool-calling loop on an OpenAI-compatible model
    external   ``CliAgent``: an agent CLI (aider, Claude Code, Codex, ...) run in the sandbox
    presets    the agent CLI presets (``*.toml`` of this package) read into ``Preset``
    image      the agent image of a preset, built on the sandbox image
    scripted   ``ScriptedAgent``: a TOML script of actions, for tests and the bundled example
    factory    ``make_agent``: the agent ``--agent`` names, built
    corral_hook.py  the PreToolUse hook an agent CLI runs in the sandbox (shipped as a file)

Only the presets are re-exported here: the built-in and CLI agents pull in the
model client and the gateway, which a command that never runs an agent should
not pay for.
"""

from runner.agents.presets import (
    AGENT_DIR,
    CUSTOM,
    PROMPT_FILE,
    Preset,
    PresetError,
    load_preset,
    preset_names,
)

__all__ = [
    "AGENT_DIR",
    "CUSTOM",
    "PROMPT_FILE",
    "Preset",
    "PresetError",
    "load_preset",
    "preset_names",
]
