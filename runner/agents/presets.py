"""Agent CLI presets: how to install, configure and invoke a third-party coding agent in the sandbox.

A preset is a TOML file of this package (``aider.toml``, ``mini-swe-agent.toml``
...), read into ``Preset`` (pydantic at the edge, ``extra="forbid"``). It
names what the agent image installs (Debian, pip and npm packages, on top of
the sandbox image: ``runner.agents.image``), the command line of one
invocation (one context window) and the environment variables through which
the CLI finds the model: the base-URL variables get the gateway's in-container
URL, the key variables get ``DUMMY_KEY`` (the real key stays on the host).

Placeholders in ``argv`` and ``env`` (any other brace is left alone; ``files`` are verbatim):
``{model}``, ``{base_url}``, ``{prompt}`` (the prompt text), ``{prompt_file}``,
``{agent_dir}`` (where ``files`` are mounted), ``{validate_url}``.
"""

from __future__ import annotations

import shlex
import tomllib
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import PresetError as PresetError

#: Where the runner's read-only files for the agent are mounted (prompt, presets' ``files``).
AGENT_DIR = "/run/corral/agent"
PROMPT_FILE = f"{AGENT_DIR}/prompt.md"
CUSTOM = "custom"


class Preset(BaseModel):
    """One agent CLI: its installation, its invocation and the variables it honours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """The preset's name (``cli:NAME``)."""
    description: str = ""
    """One line for ``corral image build --agent`` and the docs."""
    argv: tuple[str, ...] = Field(min_length=1)
    """The command of one invocation (one context window), run in ``/workspace``."""
    apt: tuple[str, ...] = ()
    """Debian packages the agent image adds (``nodejs``, ``npm`` for the node-based CLIs)."""
    pip: tuple[str, ...] = ()
    """PyPI requirements, installed into their own virtual environment at ``/opt/agent``."""
    npm: tuple[str, ...] = ()
    """npm packages, installed globally under ``/opt/agent-npm``."""
    bins: tuple[str, ...] = ()
    """Executables of the installed packages to put on ``PATH`` (linked into /usr/local/bin)."""
    base_url_vars: tuple[str, ...] = ()
    """Variables set to the gateway's base URL inside the container."""
    base_url_suffix: Literal["/v1", ""] = "/v1"
    """``/v1`` for OpenAI-style clients; empty for clients that add ``/v1`` themselves (Anthropic)."""
    key_vars: tuple[str, ...] = ()
    """Variables set to the dummy key (the gateway injects the real one on the host)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Further environment for the invocation (quiet modes, no telemetry, offline price maps)."""
    files: dict[str, str] = Field(default_factory=dict)
    """Files written verbatim to ``AGENT_DIR`` (read-only in the sandbox): settings, hook wiring."""
    command_validation: Literal["hook", "none"] = "none"
    """``hook``: the CLI asks corral's command validator before each shell command (PreToolUse)."""
    default_model: str = ""
    """Model used when ``--model`` is not given."""
    default_base_url: str = "https://api.openai.com/v1"
    """Upstream model endpoint (the gateway's) when ``--base-url`` is not given."""

    @property
    def installs(self) -> bool:
        """Whether the preset needs an agent image of its own (else: the sandbox image)."""
        return bool(self.apt or self.pip or self.npm)


def preset_names() -> list[str]:
    """The presets shipped with corral (without ``custom``)."""
    files = resources.files(__package__)
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str, agent_cmd: str | None = None) -> Preset:
    """The preset ``name``; ``custom`` is built from ``agent_cmd``.

    Raises ``PresetError`` for an unknown name, a preset that does not load,
    ``custom`` without ``agent_cmd``, or ``agent_cmd`` with another preset.
    """
    known = preset_names()
    if name == CUSTOM:
        if not agent_cmd or not agent_cmd.strip():
            raise PresetError("--agent cli:custom needs --agent-cmd 'COMMAND' (run in /workspace)")
        try:
            argv = tuple(shlex.split(agent_cmd))
        except ValueError as exc:
            raise PresetError(f"--agent-cmd does not parse as a command line: {exc}") from exc
        return Preset(
            name=CUSTOM, description="your own command", argv=argv,
            base_url_vars=("OPENAI_BASE_URL", "OPENAI_API_BASE"), key_vars=("OPENAI_API_KEY",),
        )  # fmt: skip
    if agent_cmd:
        raise PresetError("--agent-cmd goes with --agent cli:custom only")
    if name not in known:
        raise PresetError(
            f"unknown agent CLI preset {name!r}: use one of cli:{', cli:'.join([*known, CUSTOM])}"
        )
    text = (resources.files(__package__) / f"{name}.toml").read_text()
    try:
        return Preset.model_validate({"name": name, **tomllib.loads(text)})
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise PresetError(f"preset {name} does not load: {exc}") from exc
