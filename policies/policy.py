"""The policy model: what an agent may change and run, what must pass, and the bounds.

Pydantic at the edge (``extra="forbid"`` everywhere, so a misspelt key is an
error, not a silently ignored rule), one docstring per field. Loading, merging
and error formatting are in ``policies.load``; the checks in ``policies.scope``
and ``policies.commands`` take these models as they are.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.targets import check_test_id

#: Paths no policy can make writable: repository metadata, CI, editor/agent config,
#: test and tool configuration, and Python start-up hooks. Gitignore-style globs.
BUILTIN_PROTECTED: tuple[str, ...] = (
    ".git",
    ".git/**",
    ".gitmodules",
    ".gitattributes",
    "**/.gitattributes",
    ".github/**",
    ".gitlab-ci.yml",
    ".gitlab/**",
    ".circleci/**",
    ".travis.yml",
    "azure-pipelines.yml",
    "Jenkinsfile",
    ".buildkite/**",
    ".ci/**",
    ".pre-commit-config.yaml",
    ".vscode/**",
    ".idea/**",
    ".devcontainer/**",
    ".claude/**",
    ".codex/**",
    ".cursor/**",
    ".aider*",
    "AGENTS.md",
    "CLAUDE.md",
    "GEMINI.md",
    ".mcp.json",
    ".gemini/**",
    ".continue/**",
    ".windsurf/**",
    ".windsurfrules",
    ".cursorrules",
    ".clinerules",
    ".roo/**",
    ".junie/**",
    ".amazonq/**",
    ".husky/**",
    ".githooks/**",
    "lefthook.yml",
    ".lefthook.yml",
    ".corral.toml",
    "**/conftest.py",
    "pytest.ini",
    "tox.ini",
    "noxfile.py",
    "setup.cfg",
    "mypy.ini",
    ".mypy.ini",
    ".pylintrc",
    "pylintrc",
    ".flake8",
    ".coveragerc",
    "ruff.toml",
    ".ruff.toml",
    "pyproject.toml",
    "**/sitecustomize.py",
    "**/usercustomize.py",
    "**/*.pth",
)

#: Paths protected unless a policy lists them in ``scope.unprotect``: the project's own build,
#: install, container, package-manager and environment files, which run code (or say where code
#: comes from) on a developer's or CI's machine, outside every gate: ``make``, ``pip install``,
#: ``npm install``, ``docker build``, ``cd`` with direnv, ``pdb``, IPython. The agent fixes
#: source, not these; a policy whose bug lives in one relaxes it by name. docs/policy.md says
#: why each is here. Matched, like every protected path, in any case.
DEFAULT_PROTECTED: tuple[str, ...] = (
    "**/Makefile",
    "**/GNUmakefile",
    "**/*.mk",
    "**/justfile",
    "**/.justfile",
    "**/setup.py",
    "**/package.json",
    "**/package-lock.json",
    "**/npm-shrinkwrap.json",
    "**/yarn.lock",
    "**/pnpm-lock.yaml",
    "**/.npmrc",
    "**/.yarnrc",
    "**/.yarnrc.yml",
    "**/.pypirc",
    "**/pip.conf",
    "**/uv.toml",
    "**/poetry.toml",
    "**/.cargo/**",
    "**/Dockerfile",
    "**/Dockerfile.*",
    "**/*.dockerfile",
    "**/docker-compose*.yml",
    "**/docker-compose*.yaml",
    "**/compose.yml",
    "**/compose.yaml",
    "**/.envrc",
    "**/.env",
    "**/.env.*",
    "**/.pdbrc",
    "**/.pdbrc.py",
    "**/.pythonrc.py",
    "**/.ipython/**",
    "**/profile_*/startup/**",
    "**/ipython_config.py",
    "**/ipython_kernel_config.py",
    "**/jupyter_*_config.py",
    "**/jupyter_*_config.json",
)

#: Where tests live, by the usual conventions; protected unless ``scope.allow_tests``.
DEFAULT_TEST_GLOBS: tuple[str, ...] = (
    "tests/**",
    "test/**",
    "testing/**",
    "**/tests/**",
    "**/test_*.py",
    "**/*_test.py",
)

#: Build and cache output an agent's commands leave behind; never part of a patch.
DEFAULT_ARTIFACTS: tuple[str, ...] = (
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".tox/",
    ".nox/",
    ".coverage",
    ".coverage.*",
    "htmlcov/",
    "*.egg-info/",
    "build/",
    "dist/",
    ".venv/",
    "node_modules/",
)


class _Model(BaseModel):
    # The field docstrings are for readers: ``use_attribute_docstrings`` would read this file's
    # source and parse it at every import (a third of the import) for a JSON schema no one asks.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScopePolicy(_Model):
    """Which files the agent may change (gitignore-style globs, relative to the repository root)."""

    writable: tuple[str, ...] = ("**",)
    """Paths the agent may create, modify or delete; everything else is read-only for it."""

    protected: tuple[str, ...] = ()
    """Never writable, added to the built-in list (``.git``, CI, tool config, ``conftest.py``, ...)."""

    unprotect: tuple[str, ...] = ()
    """Entries of the default-protected list (``DEFAULT_PROTECTED``: ``**/Makefile``,
    ``**/setup.py``, ``**/package.json``, ...) this policy lets the agent write, spelt as there."""

    @field_validator("unprotect")
    @classmethod
    def _known_defaults(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in DEFAULT_PROTECTED]
        if unknown:
            raise ValueError(
                f"not on the default-protected list: {', '.join(unknown)} (name entries as"
                ' docs/policy.md "Protected by default" spells them, e.g. "**/Makefile")'
            )
        return value

    ignored_artifacts: tuple[str, ...] = DEFAULT_ARTIFACTS
    """Build/cache output: cleaned from the tree and never part of a patch (reported, not a violation)."""

    allow_tests: bool = False
    """Whether the agent may add or change tests (the paths in ``tests``)."""

    tests: tuple[str, ...] = DEFAULT_TEST_GLOBS
    """Where tests live; protected unless ``allow_tests``."""

    allow_symlinks: bool = False
    """Whether a symlink inside the tree may be part of a patch (links out of the tree never may)."""

    allow_mode_changes: bool = False
    """Whether a patch may change a file's executable bit."""

    on_violation: Literal["fail", "escalate"] = "fail"
    """What an out-of-scope change in the final patch does: fail the attempt, or wait for a human."""


class CommandPolicy(_Model):
    """Which shell commands the agent may run; every simple command in a line is checked."""

    deny: tuple[str, ...] = ()
    """Command prefixes (``git push``) or argument patterns (``rm -rf /*``) that are never run."""

    allow: tuple[str, ...] = ()
    """If non-empty, only commands matching one of these run; empty means all not denied."""

    ask: tuple[str, ...] = ()
    """Commands that need a human's yes: the run waits (exit 3) until ``corral approve``/``reject``."""

    max_length: int = Field(default=16_384, ge=1)
    """Longest command line accepted (longer lines are denied, not truncated)."""

    timeout: int = Field(default=300, ge=1)
    """Seconds one agent command may run before its process group is killed."""


class SetupPolicy(_Model):
    """How the environment image is prepared before any agent starts."""

    commands: tuple[str, ...] = ()
    """Shell commands run once, with registry access, in a throwaway container; the result is cached."""

    timeout: int = Field(default=1800, ge=1)
    """Seconds all setup commands together may take."""

    network: bool = True
    """Whether setup may reach the package registries (the host CA bundle is passed in)."""


class GatePolicy(_Model):
    """A check the runner (never the agent) runs on the candidate tree in a fresh sandbox."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Short name shown in reports (``tests``, ``typecheck``)."""

    command: str = Field(min_length=1)
    """Shell command; exit 0 passes."""

    required: bool = True
    """A failing required gate fails the attempt; an advisory one is only reported."""

    timeout: int = Field(default=600, ge=1)
    """Seconds before the gate is killed and counted as failed."""

    kind: Literal["auto", "pytest", "generic"] = "auto"
    """``pytest`` adds junit XML for per-test outcomes; ``auto`` detects pytest in the command."""

    must_pass: tuple[str, ...] = ()
    """Target tests (pytest node ids): this gate's own junit report must show each of them run
    and passed, or the gate fails. A required pytest gate only."""

    baseline_runs: int = Field(default=1, ge=1, le=10)
    """Runs of the gate at base; a test whose outcome differs across them is flaky: reported,
    never blamed, never counted as fixed. A pytest gate only when above 1."""

    on_finding: Literal["fail", "flag"] = "fail"
    """What a tamper finding in the candidate's source (``policies.tamper``: a test-runner hook
    or plugin, a patch of the runner, an exit at import) does: ``fail`` fails this gate, and
    the attempt as ``governance``; ``flag`` leaves the verdict as it is. Either way the review
    shows it first. A gate whose exit 0 its own report contradicts fails either way."""

    @property
    def is_pytest(self) -> bool:
        """Whether the gate writes per-test outcomes (junit XML): ``kind``, or pytest in the command."""
        return self.kind == "pytest" or (self.kind == "auto" and "pytest" in self.command)

    @field_validator("must_pass")
    @classmethod
    def _test_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_test_id(t) for t in ids)

    @model_validator(mode="after")
    def _per_test(self) -> GatePolicy:
        if (self.must_pass or self.baseline_runs > 1) and not self.is_pytest:
            key = "must_pass" if self.must_pass else "baseline_runs"
            raise ValueError(
                f'{key} needs per-test outcomes: a pytest gate (kind = "pytest", or pytest'
                " in the command)"
            )
        if self.must_pass and not self.required:
            raise ValueError("must_pass needs a required gate (required = true)")
        return self


class TargetsPolicy(_Model):
    """The tests that reproduce the bug, and tests the gates run that the agent never sees."""

    must_pass: tuple[str, ...] = ()
    """Target tests (pytest node ids): each must run and pass in the junit report of a required
    pytest gate. ``corral run --must-pass`` and the bug report's front matter add to these."""

    hidden_tests: str | None = None
    """A test patch (``git diff`` of the base) applied to the gates' input only, never to the
    agent's tree; a relative path is taken from where corral runs. ``--hidden-tests`` sets it."""

    @field_validator("must_pass")
    @classmethod
    def _test_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_test_id(t) for t in ids)


class BudgetPolicy(_Model):
    """Every loop's bound. Zero means none of that resource may be spent."""

    attempts: int = Field(default=3, ge=1, le=100)
    """Attempts (each from a clean tree) before the run fails."""

    windows: int = Field(default=3, ge=1, le=100)
    """Context windows per attempt."""

    steps: int = Field(default=50, ge=1)
    """Agent actions per attempt."""

    wall_seconds: int = Field(default=1800, ge=1)
    """Wall-clock seconds for the whole run (setup and gates included)."""

    output_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Command output the agent may receive in one attempt."""

    tokens: int = Field(default=2_000_000, ge=0)
    """Model tokens for the whole run (counted by agents that report them)."""

    cost_usd: float = Field(default=5.0, ge=0)
    """Model cost for the whole run, in US dollars."""

    repeated_command: int = Field(default=5, ge=2)
    """The same command this many times in a row ends the attempt (a loop guard)."""

    idle_steps: int = Field(default=25, ge=1)
    """This many agent actions in a row without a change to any file end the attempt."""

    repeated_strategy: int = Field(default=2, ge=1)
    """Failed attempts with the same normalized diff or commands before the run stops."""

    feedback_chars: int = Field(default=6000, ge=200)
    """Characters of gate output passed to the next attempt as feedback."""


class ProgressPolicy(_Model):
    """The agent's progress file: durable memory across windows and attempts."""

    file: str = ".corral/progress.md"
    """Path in the tree; snapshotted after every window, never part of the patch."""

    max_bytes: int = Field(default=64 * 1024, ge=1)
    """Largest progress file kept (the rest is cut, and the agent is told)."""


#: A Debian package name (Debian policy 5.6.1): nothing a shell or apt would read as more.
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,62}")


class SandboxPolicy(_Model):
    """Container settings for attempts and gates (network is always none)."""

    runtime: Literal["runc", "runsc"] = "runc"
    """OCI runtime: ``runsc`` (gVisor) adds a user-space kernel between agent and host."""

    memory_mb: int = Field(default=4096, ge=64)
    """Memory limit (swap is the same: no swap)."""

    cpus: float = Field(default=2.0, gt=0)
    """CPU limit."""

    pids: int = Field(default=512, ge=16)
    """Process limit."""

    packages: tuple[str, ...] = Field(default=(), max_length=50)
    """Debian packages added to the image set-up, attempts and gates start from (``nodejs``,
    ``npm``, ``make`` ...): built once per base image and list, then cached."""

    @field_validator("packages")
    @classmethod
    def _debian_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _DEBIAN_PACKAGE.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a Debian package name (lower-case letters, digits, + - .)"
                )
        return names


class ModelPolicy(_Model):
    """The built-in agent's model: context windows, retries, the circuit breaker, prices."""

    context_tokens: int = Field(default=128_000, ge=1024)
    """The model's context limit, in tokens."""

    window_fraction: float = Field(default=0.7, gt=0, le=1)
    """A window ends once a request's prompt reaches this fraction of ``context_tokens``."""

    steps_per_window: int = Field(default=40, ge=1)
    """Model calls per context window."""

    max_tool_errors: int = Field(default=5, ge=1)
    """Unknown tools or malformed arguments per window before the attempt fails (tool-interface)."""

    max_retries: int = Field(default=4, ge=0, le=20)
    """Retries of one call on a transient failure (timeouts, 429, 5xx)."""

    circuit_after: int = Field(default=3, ge=1)
    """Failed calls in a row (after their retries) before the run waits for ``corral resume``."""

    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds one model call may take."""

    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Extra or overriding prices: model-name prefix -> (USD per 1M input, per 1M output tokens)."""


class GatewayPolicy(_Model):
    """The model gateway of agent CLIs: the sandbox's only way out (never a network)."""

    allow_hosts: tuple[str, ...] = ()
    """Hosts tools in the sandbox may fetch from through the gateway (plain HTTP proxy requests
    and ``CONNECT``), e.g. ``pypi.org``: ports 80 and 443, or ``host:port``; ``*.example.org``
    for subdomains. Empty (the default): only the model endpoint. A name resolving to any address
    that is not public (loopback, private such as Docker's bridge, link-local, IPv4-mapped forms)
    is refused all the same, and the gateway connects to the address it checked; a literal IP is
    taken as meant."""

    @field_validator("allow_hosts")
    @classmethod
    def _host_entries(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for entry in hosts:
            if not re.fullmatch(
                r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?", entry
            ):
                raise ValueError(f"{entry!r} is not HOST, HOST:PORT or *.DOMAIN")
        return tuple(h.lower() for h in hosts)


class MergePolicy(_Model):
    """What may happen after a candidate is ready."""

    auto_merge: bool = False
    """Merge without a human approval when every required gate passed."""


class Policy(_Model):
    """A complete policy. Presets, files, the repo's config and CLI flags merge into one of these."""

    scope: ScopePolicy = ScopePolicy()
    """File scope."""

    commands: CommandPolicy = CommandPolicy()
    """Command validation."""

    setup: SetupPolicy = SetupPolicy()
    """Environment set-up."""

    gates: tuple[GatePolicy, ...] = ()
    """Checks on the candidate, in order. With no required gate a run ends ``unverified``;
    ``gates = []`` said on purpose (and no gate from another layer) opts out of verification."""

    budgets: BudgetPolicy = BudgetPolicy()
    """Bounds."""

    progress: ProgressPolicy = ProgressPolicy()
    """The progress file."""

    sandbox: SandboxPolicy = SandboxPolicy()
    """Container settings."""

    model: ModelPolicy = ModelPolicy()
    """The built-in agent's model settings."""

    merge: MergePolicy = MergePolicy()
    """After review."""

    gateway: GatewayPolicy = GatewayPolicy()
    """The model gateway (agent CLIs)."""

    targets: TargetsPolicy = TargetsPolicy()
    """Target tests and hidden tests."""

    @property
    def required_gates(self) -> tuple[str, ...]:
        """The names of the gates a candidate must pass (none: nothing verifies it)."""
        return tuple(g.name for g in self.gates if g.required)

    @property
    def gates_opted_out(self) -> bool:
        """Whether the policy said ``gates = []`` on purpose: no gate, and the key was given.

        Known from the merged table (``model_fields_set``), which a run records,
        so a resumed run or its review sees the same.
        """
        return "gates" in self.model_fields_set and not self.gates

    @field_validator("gates")
    @classmethod
    def _unique_gate_names(cls, gates: tuple[GatePolicy, ...]) -> tuple[GatePolicy, ...]:
        names = [g.name for g in gates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gate names must be unique: {', '.join(dupes)}")
        return gates

    @model_validator(mode="after")
    def _targets_need_a_report(self) -> Policy:
        if self.targets.must_pass and not any(g.required and g.is_pytest for g in self.gates):
            raise ValueError(
                "target tests (targets.must_pass, --must-pass, the bug report's must_pass) need"
                " a required pytest gate to run them: add one to [[gates]]"
            )
        return self
