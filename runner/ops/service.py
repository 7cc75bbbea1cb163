"""Starting and resuming runs: from CLI arguments to a ``Runner``, and from the store back to one.

Everything a run needs is recorded when it starts (task, merged policy and its
sources, agent, image digest), so ``resume`` rebuilds the same run from the
store alone. The repository's own policy is read from the base revision, not
from the (possibly dirty) checkout. ``resume`` redoes the environment set-up
when its journal step is not done, seeds an agent CLI's gateway with the
tokens and cost the run already spent, and runs again a run that failed on an
infrastructure error (``runner.loop.resume.resumable``).

Where the sandboxes run is the caller's choice: ``backend`` (any
``SandboxBackend``; the CLI leaves it to the default, Docker on the local
engine). Only a backend on an engine (``runner.loop.capabilities.OnEngine``)
builds images: corral's sandbox image (or an agent CLI's), the environment
image of the policy's ``[setup]``, and a resumed run's leftover containers are
removed there. A backend without one (``sandbox.fake.FakeBackend``) runs the
request's image name as given (its own name when there is none) and refuses a
policy with ``[setup]`` commands before the run is created.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.load import REPO_FILE, LoadedPolicy, PolicyError, load_policy
from policies.policy import Policy
from runner.agents import load_preset
from runner.agents.builtin import CorralAgent
from runner.agents.external import CliAgent
from runner.agents.image import build_agent_image
from runner.agents.scripted import ScriptedAgent
from runner.errors import UsageError
from runner.gateway.core import runtime_problem
from runner.llm.client import PRICES, ModelClient, ModelConfig, read_api_key
from runner.loop.agent import Agent, Task
from runner.loop.capabilities import OnEngine
from runner.loop.config import RunConfig
from runner.loop.outcome import AttemptReport, RunResult
from runner.loop.resume import decisions, record_runtime_error, resumable
from runner.loop.runner import Runner
from runner.store.runs import NewRun, RunStore
from sandbox.docker_backend import DockerBackend
from sandbox.engine import connect, connect_soon, probe
from sandbox.errors import EngineUnavailable, SandboxError, SetupFailed, UserError
from sandbox.git import HostGit, find_git_dirs
from sandbox.images import ensure_env_image, ensure_sandbox_image, find_ca_bundle
from sandbox.interfaces import SandboxBackend
from sandbox.paths import worktrees_dir
from sandbox.spec import SANDBOX_GID, SANDBOX_UID

OnEvent = Callable[[str, Mapping[str, Any]], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What ``corral run`` was asked to do."""

    repo: Path
    bug: Path
    policy: str | None = None
    overrides: Mapping[str, Any] | None = None
    agent: str = "scripted"
    script: Path | None = None
    base_ref: str = "HEAD"
    runtime: str | None = None
    idempotency_key: str | None = None
    run_id: str | None = None
    image: str | None = None
    """Sandbox image to use instead of corral's own (tests, custom images)."""
    model: str | None = None
    base_url: str | None = None
    api_key_file: Path | None = None
    agent_cmd: str | None = None
    """The command of ``--agent cli:custom``."""


#: The largest bug report corral takes (bytes): it goes into every window's prompt, and agent CLIs
#: that take the prompt as one argument get at most 120 KiB (``runner.agents.external.PROMPT_ARG_MAX``).
MAX_BUG_BYTES = 64 * 1024


def read_task(repo: Path, bug: Path, base: str) -> Task:
    """The bug report: title from its first heading (or first line), body verbatim.

    Raises ``UsageError`` when it cannot be read, is not UTF-8 or is over ``MAX_BUG_BYTES``.
    """
    try:
        text = bug.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read bug report {bug} ({exc.strerror}); check --bug") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"bug report {bug} is not UTF-8 text ({exc.reason}): save it as UTF-8"
        ) from exc
    if (size := len(text.encode())) > MAX_BUG_BYTES:
        raise UsageError(
            f"bug report {bug} is {size // 1024} KiB, over corral's {MAX_BUG_BYTES // 1024} KiB:"
            " shorten it (put long logs in a file in the repository and name it)"
        )
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = first.lstrip("#").strip() or bug.stem
    return Task(title=title[:200], body=text, repo=str(repo), base=base)


def repo_policy_files(repo: Path, base: str, common: Path | None = None) -> dict[str, bytes | None]:
    """``.corral.toml`` and ``pyproject.toml`` as committed at ``base`` (None where absent).

    ``common``: the repository's common git dir, when the caller found it already.
    One ``git cat-file --batch`` reads both. Raises ``GitError`` when git fails.
    """
    if common is None:
        _, common = find_git_dirs(repo)
    names = (REPO_FILE, "pyproject.toml")
    query = "".join(f"{base}:{name}\n" for name in names).encode()
    out = HostGit(common).run("cat-file", "--batch", input=query)
    files: dict[str, bytes | None] = {}
    for name in names:  # "<id> blob <size>\n<bytes>\n", or "<query> missing\n" (or "ambiguous")
        header, _, out = out.partition(b"\n")
        fields = header.split()
        if len(fields) == 3 and fields[1] == b"blob" and fields[2].isdigit():
            size = int(fields[2])
            files[name], out = out[:size], out[size + 1 :]
        elif len(fields) == 3 and fields[2].isdigit():  # a tree or another object: no file
            files[name], out = None, out[int(fields[2]) + 1 :]
        else:
            files[name] = None
    return files


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
        p = policy or Policy()
        config = ModelConfig(
            model=model,
            base_url=base_url,
            api_key=read_api_key(os.environ, api_key_file),
            timeout_s=p.model.timeout_s,
            max_retries=p.model.max_retries,
            circuit_after=p.model.circuit_after,
            prices={**PRICES, **p.model.prices},
        )
        return CorralAgent(ModelClient(config), p.model, p.progress.file)
    raise UsageError(
        f"unknown agent {agent!r}: use --agent corral, --agent scripted:FILE or --agent cli:NAME"
    )


def start_run(
    home: Path,
    req: RunRequest,
    on_event: OnEvent | None = None,
    *,
    backend: SandboxBackend | None = None,
) -> RunResult:
    """Create (or find, by idempotency key) a run and drive it to an outcome.

    ``backend``: where its sandboxes run (default: Docker, on the local engine).
    """
    repo = req.repo.resolve()
    if not repo.is_dir():
        raise UsageError(f"--repo {req.repo} is not a directory")
    sandboxes = _backend_soon(backend)  # the engine answers while the rest is read
    _, common = find_git_dirs(repo)
    base = HostGit(common).rev_parse(req.base_ref)
    task = read_task(repo, req.bug, base)
    loaded = load_policy(
        req.policy, repo_files=repo_policy_files(repo, base, common), overrides=req.overrides
    )
    agent = make_agent(
        req.agent, req.script, loaded.policy,
        model=req.model, base_url=req.base_url, api_key_file=req.api_key_file,
        agent_cmd=req.agent_cmd,
    )  # fmt: skip
    store = RunStore(home)
    if req.idempotency_key:
        existing = store.find_by_key(req.idempotency_key)
        if existing is not None:
            return result_of(store, existing)
    backend = sandboxes()
    _check_backend(backend, agent, req.runtime, loaded.policy)
    image = req.image or _sandbox_image(backend, agent)
    name, _, inline = req.agent.partition(":")
    script = req.script or (Path(inline) if inline else None)
    agent_ref = name if script is None else f"{name}:{script.resolve()}"
    if name == "cli":
        agent_ref = req.agent
    run_id = store.create(
        NewRun(
            repo=str(repo),
            base=base,
            bug_title=task.title,
            bug_path=str(req.bug.resolve()),
            agent=agent_ref,
            model=req.model,
            policy_json=json.dumps({"sources": loaded.sources, "policy": loaded.merged}),
            spec_json=json.dumps(
                {
                    "image": image,
                    "runtime": req.runtime,
                    "base_url": req.base_url,
                    "api_key_file": str(req.api_key_file) if req.api_key_file else None,
                    "agent_cmd": req.agent_cmd,
                }
            ),
            idempotency_key=req.idempotency_key,
            run_id=req.run_id,
        )
    )
    store.append(run_id, "run_start", {"repo": str(repo), "base": base, "title": task.title,
                                       "policy_sources": list(loaded.sources), "agent": agent_ref})  # fmt: skip
    env_image = _environment(home, store, run_id, backend, image, repo, base, loaded.policy)
    if env_image is None:
        return result_of(store, run_id)
    config = RunConfig(task=task, loaded=loaded, image=env_image, runtime=_runtime(req.runtime))
    return _drive(home, store, backend, agent, config, run_id, on_event)


def resume_run(
    home: Path,
    run_id: str,
    on_event: OnEvent | None = None,
    *,
    backend: SandboxBackend | None = None,
) -> RunResult:
    """Continue a run from its last completed step (see ``runner.loop.runner``).

    ``backend``: where its sandboxes run (default: Docker, on the local engine).
    """
    store = RunStore(home)
    rec = store.get(run_id)
    ended = ("ready_for_review", "failed", "budget_exhausted", "approved", "rejected", "merged")
    if rec.status in ended and not (rec.status == "failed" and resumable(store, run_id)):
        return result_of(store, run_id)
    stored = json.loads(rec.policy_json)
    try:
        policy = Policy.model_validate(stored["policy"])
    except ValueError as exc:
        raise PolicyError([f"recorded policy of {run_id} no longer loads: {exc}"]) from exc
    loaded = LoadedPolicy(policy, tuple(stored["sources"]), stored["policy"])
    name, _, script = rec.agent.partition(":")
    spec = json.loads(rec.spec_json)
    key_file = spec.get("api_key_file")
    if name == "cli":  # cli:NAME names a preset, not a script file
        name, script = rec.agent, ""
    agent = make_agent(
        name, Path(script) if script else None, policy, model=rec.model,
        base_url=spec.get("base_url"), api_key_file=Path(key_file) if key_file else None,
        agent_cmd=spec.get("agent_cmd"),
    )  # fmt: skip
    task = read_task(Path(rec.repo), Path(rec.bug_path), rec.base)
    answers = decisions(rec.waiting_json)
    backend = backend if backend is not None else DockerBackend(connect())
    _check_backend(backend, agent, spec.get("runtime"), policy)
    store.append(run_id, "run_resume", {"approved": sorted(answers.approved),
                                        "rejected": sorted(answers.rejected),
                                        "scope": {str(k): v for k, v in answers.scope.items()}})  # fmt: skip
    env_image = spec.get("env_image") or spec["image"]
    setup_done = any(s.kind == "setup" and s.state == "done" for s in store.journal(run_id))
    if policy.setup.commands and not setup_done:  # a crash or an engine error during set-up
        built = _environment(
            home, store, run_id, backend, spec["image"], Path(rec.repo), rec.base, policy
        )
        if built is None:
            return result_of(store, run_id)
        env_image = built
    config = RunConfig(
        task=task, loaded=loaded, image=env_image, runtime=_runtime(spec.get("runtime")),
        approved=answers.approved, rejected=answers.rejected, scope_answers=answers.scope,
    )  # fmt: skip
    return _drive(home, store, backend, agent, config, run_id, on_event)


def _backend_soon(backend: SandboxBackend | None) -> Callable[[], SandboxBackend]:
    """``backend``; without one, Docker on the local engine, connected on a thread from now on."""
    if backend is not None:
        return lambda: backend
    engine = connect_soon()
    return lambda: DockerBackend(engine())


def _check_backend(
    backend: SandboxBackend, agent: Agent, runtime: str | None, policy: Policy
) -> None:
    """What the run needs of its backend, checked before anything starts.

    On an engine: ``check_gateway_runtime``. Without one: ``UserError`` for a
    policy with ``[setup]`` commands (an environment image is built on an engine).
    """
    if isinstance(backend, OnEngine):
        check_gateway_runtime(agent, runtime, policy)
    elif policy.setup.commands:
        raise UserError(
            "the policy's [setup] commands build an environment image on the container engine,"
            f" and the sandbox backend {backend.name!r} has none: run on Docker, or drop [setup]"
        )


def _sandbox_image(backend: SandboxBackend, agent: Agent) -> str:
    """The image attempts and gates start from: corral's (an agent CLI's) on the engine, found or
    built; a backend without an engine builds none, and its name is recorded instead."""
    if not isinstance(backend, OnEngine):
        return backend.name
    if isinstance(agent, CliAgent):
        ca = find_ca_bundle(os.environ)
        return build_agent_image(backend.client, agent.preset, ca_bundle=ca).image_id
    return ensure_sandbox_image(backend.client)


def check_gateway_runtime(agent: Agent, runtime: str | None, policy: Policy) -> None:
    """An agent CLI under gVisor reaches the gateway only if runsc may connect to host sockets.

    Raises ``EngineUnavailable`` naming the fix (``corral doctor --fix``) before anything starts.
    """
    if isinstance(agent, CliAgent) and (runtime or policy.sandbox.runtime) == "runsc":
        problem = runtime_problem("runsc", probe())
        if problem is not None:
            raise EngineUnavailable(problem)


def _drive(
    home: Path,
    store: RunStore,
    backend: SandboxBackend,
    agent: Agent,
    config: RunConfig,
    run_id: str,
    on_event: OnEvent | None,
) -> RunResult:
    """Run ``agent`` on ``backend``; an agent CLI is bound to the run (gateway, files) for
    exactly this long."""
    runner = Runner(home, store, backend, agent, config, run_id, on_event=on_event)
    if not isinstance(agent, CliAgent):
        return runner.execute()
    rec = store.get(run_id)  # the gateway counts on from what the run already spent
    with _event_writer(home, store, run_id) as emit:
        agent.bind(
            home, run_id, emit, lambda rel, data: store.write_artifact(run_id, rel, data),
            used_tokens=rec.tokens, used_cost=rec.cost_usd,
        )  # fmt: skip
        try:
            return runner.execute()
        finally:
            agent.close()


@contextmanager
def _event_writer(home: Path, store: RunStore, run_id: str) -> Iterator[OnEvent]:
    """An ``emit`` for this thread (``store``, in order) and others (the gateway's: a writer thread).

    The store's SQLite connection belongs to the thread that opened it; the
    event log itself is safe to append to from anywhere (``flock``).
    """
    owner = threading.get_ident()
    events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()

    def drain() -> None:
        own = RunStore(home)
        try:
            while (item := events.get()) is not None:
                try:
                    own.append(run_id, *item)
                except (OSError, ValueError, TypeError) as exc:
                    log.warning("run %s: event %s not recorded: %s", run_id, item[0], exc)
        finally:
            own.close()

    def emit(kind: str, data: Mapping[str, Any]) -> None:
        if threading.get_ident() == owner:
            store.append(run_id, kind, dict(data))
        else:
            events.put((kind, dict(data)))

    writer = threading.Thread(target=drain, name=f"corral-events-{run_id}", daemon=True)
    writer.start()
    try:
        yield emit
    finally:
        events.put(None)
        writer.join(timeout=60)


def result_of(store: RunStore, run_id: str) -> RunResult:
    """A finished (or waiting) run's result, from the store."""
    rec = store.get(run_id)
    reports = [
        AttemptReport(**s.data["report"])
        for s in store.journal(run_id)
        if s.kind == "attempt" and s.data and "report" in s.data
    ]
    candidate = store.artifact_path(run_id, "candidate.diff")
    return RunResult(
        run_id=run_id,
        status=rec.status,
        failure_domain=rec.failure_domain,
        reason=rec.reason or "",
        patch_path=str(candidate) if candidate.is_file() else None,
        attempts=reports,
    )


def _runtime(value: str | None) -> Any:
    if value not in (None, "runc", "runsc"):
        raise UsageError(f"unknown runtime {value!r}: use runc or runsc")
    return value


def _environment(
    home: Path,
    store: RunStore,
    run_id: str,
    backend: SandboxBackend,
    image: str,
    repo: Path,
    base: str,
    policy: Policy,
) -> str | None:
    """The environment image id, or None when set-up failed (the run is then recorded as failed).

    Without ``[setup]`` commands: ``image`` itself. Else the image is built on
    ``backend``'s engine (``_check_backend`` refused a backend without one). A
    set-up command that fails is the run's end (``runtime``, not resumable); an
    engine or image error (``SandboxError``) leaves the set-up step unfinished, is
    recorded with its evidence (``record_runtime_error``) and ``resume`` redoes it.
    """
    setup = policy.setup
    if not setup.commands or not isinstance(backend, OnEngine):
        return image
    seq = store.journal_start(run_id, "setup", "env", {"commands": list(setup.commands)})
    scratch = Path(tempfile.mkdtemp(prefix=f"{run_id}.setup.", dir=_scratch_dir(home)))
    try:
        _, common = find_git_dirs(repo)
        index = scratch.parent / f"{scratch.name}.index"
        HostGit(common, scratch).run("read-tree", "--reset", "-u", base, index_file=index)
        if os.geteuid() == 0:
            for p in [scratch, *scratch.rglob("*")]:
                os.lchown(p, SANDBOX_UID, SANDBOX_GID)
        env = ensure_env_image(
            backend.client, image, scratch, setup.commands, repo=str(repo), base_commit=base,
            ca_bundle=find_ca_bundle(os.environ), network=setup.network, timeout=setup.timeout,
            run_id=run_id, home=home,
        )  # fmt: skip
    except SetupFailed as exc:
        store.write_artifact(run_id, "setup.log", exc.log)
        store.journal_failed(run_id, seq, {"command": exc.command, "exit_code": exc.exit_code})
        reason = f"setup command failed (exit {exc.exit_code}): {exc.command}; see setup.log"
        store.append(run_id, "setup_failed", {"command": exc.command, "exit_code": exc.exit_code})
        store.update(run_id, status="failed", failure_domain="runtime", reason=reason)
        return None
    except SandboxError as exc:  # the engine or the image build failed, not the set-up commands
        reason = record_runtime_error(store, run_id, exc, "setup env")
        store.update(run_id, status="failed", failure_domain="runtime", reason=reason)
        store.append(run_id, "run_end", {"status": "failed", "reason": reason})
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch.parent / f"{scratch.name}.index").unlink(missing_ok=True)
    store.write_artifact(run_id, "setup.log", env.log)
    spec = json.loads(store.get(run_id).spec_json)
    spec["env_image"] = env.image_id
    store.update(run_id, spec_json=json.dumps(spec))
    store.journal_done(run_id, seq, {"image": env.image_id, "built": env.built})
    store.append(run_id, "environment", {"image": env.image_id, "built": env.built,
                                         "seconds": round(env.seconds, 1)})  # fmt: skip
    return env.image_id


def _scratch_dir(home: Path) -> Path:
    d = worktrees_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    return d
