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

The request and its inputs are ``runner.ops.request``, the agent
``runner.agents.factory``, the backend, image and environment
``runner.ops.environment``; this module puts them together and drives the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from policies.load import LoadedPolicy, PolicyError, load_policy
from policies.policy import Policy
from runner.agents.external import CliAgent
from runner.agents.factory import make_agent
from runner.errors import DuplicateRun, UsageError
from runner.loop import hidden
from runner.loop.agent import Agent
from runner.loop.config import RunConfig
from runner.loop.outcome import RunResult, result_of
from runner.loop.resume import decisions, resumable
from runner.loop.runner import Runner
from runner.ops.environment import (
    backend_soon,
    check_backend,
    images_for_resume,
    prepare_environment,
    sandbox_image,
)
from runner.ops.request import (
    RunRequest,
    base_commit,
    check_writable,
    open_repo,
    read_bug,
    read_task,
    repo_policy_files,
    runtime_of,
)
from runner.store.runs import NewRun, RunStore
from sandbox.docker_backend import DockerBackend
from sandbox.engine import connect
from sandbox.git import HostGit
from sandbox.interfaces import SandboxBackend
from sandbox.lease import is_live
from sandbox.paths import MIN_FREE_BYTES, check_home

OnEvent = Callable[[str, Mapping[str, Any]], None]
log = logging.getLogger(__name__)

__all__ = ["OnEvent", "RunRequest", "result_of", "resume_run", "start_run"]


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
    check_home(home, room=MIN_FREE_BYTES)  # a home that is no place for a run: one line, exit 2
    runtime = runtime_of(req.runtime)  # every input is checked before the run is recorded
    repo, common = open_repo(req.repo)
    sandboxes = backend_soon(backend)  # the engine answers while the rest is read
    base = base_commit(req.repo, common, req.base_ref)
    task, bug_targets = read_bug(repo, req.bug, base)
    loaded = load_policy(
        req.policy, repo_files=repo_policy_files(repo, base, common),
        overrides=_with_targets(req, bug_targets),
    )  # fmt: skip
    scope_warnings = check_writable(loaded, common, base, f"{req.repo} at {req.base_ref}")
    for line in scope_warnings:  # up front; recorded once the run is
        if on_event is not None:
            on_event("policy_warning", {"message": line})
    hidden_file = loaded.policy.targets.hidden_tests
    hidden_tests = None  # checked to apply at base before anything is recorded
    if hidden_file is not None:
        hidden_tests = hidden.read_hidden(Path(hidden_file).resolve(), HostGit(common), base)
    agent = make_agent(
        req.agent, req.script, loaded.policy,
        model=req.model, base_url=req.base_url, api_key_file=req.api_key_file,
        agent_cmd=req.agent_cmd,
    )  # fmt: skip
    store = RunStore(home)
    name, _, inline = req.agent.partition(":")
    script = req.script or (Path(inline) if inline else None)
    agent_ref = name if script is None else f"{name}:{script.resolve()}"
    if name == "cli":
        agent_ref = req.agent
    request = _fingerprint(repo, base, req.bug, agent_ref, req.model, loaded.merged)
    if req.idempotency_key:
        existing = store.find_by_key(req.idempotency_key)
        if existing is not None:
            return _again(home, store, existing, req.idempotency_key, request, on_event, backend)
    backend = sandboxes()
    check_backend(backend, agent, req.runtime, loaded.policy)
    image = sandbox_image(backend, agent, loaded.policy, req.image)
    try:
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
                        "request": request,
                    }
                ),
                idempotency_key=req.idempotency_key,
                run_id=req.run_id,
            )
        )
    except DuplicateRun as exc:  # another process took the key in the meantime
        if exc.key is None:
            raise
        return _again(home, store, exc.run_id, exc.key, request, on_event, backend)
    store.append(run_id, "run_start", {"repo": str(repo), "base": base, "title": task.title,
                                       "policy_sources": list(loaded.sources), "agent": agent_ref})  # fmt: skip
    for line in scope_warnings:
        store.append(run_id, "policy_warning", {"message": line})
    if hidden_tests is not None:  # in the run store only: never in a tree or a mount
        hidden.save(store, run_id, *hidden_tests)
        store.append(run_id, "hidden_tests", {"file": hidden_tests[1].file,
                                              "paths": list(hidden_tests[1].paths)})  # fmt: skip
    env_image = prepare_environment(
        home, store, run_id, backend, image, repo, base, loaded.policy, on_event
    )
    if env_image is None:
        return result_of(store, run_id)
    config = RunConfig(task=task, loaded=loaded, image=env_image, runtime=runtime)
    return _drive(home, store, backend, agent, config, run_id, on_event)


#: What makes two requests with one idempotency key the same request, and how to name each.
_REQUEST_PARTS = {"repo": "repository", "base": "base commit", "bug": "bug report",
                  "agent": "agent", "model": "model", "policy": "policy"}  # fmt: skip


def _fingerprint(
    repo: Path, base: str, bug: Path, agent: str, model: str | None, policy: Mapping[str, Any]
) -> dict[str, Any]:
    """What an idempotency key stands for: the repository, base, bug report (its bytes), agent,
    model and merged policy of the request."""
    return {
        "repo": str(repo), "base": base, "agent": agent, "model": model,
        "bug": hashlib.sha256(bug.read_bytes()).hexdigest(),
        "policy": hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest(),
    }  # fmt: skip


def _again(
    home: Path,
    store: RunStore,
    run_id: str,
    key: str,
    request: Mapping[str, Any],
    on_event: OnEvent | None,
    backend: SandboxBackend | None,
) -> RunResult:
    """The run an idempotency key already names, for the same request: its result with its real
    exit code, once it has one. A run still going is waited for (bounded by its wall budget); an
    interrupted one is resumed. Another request with the key is ``UsageError`` naming what differs.
    """
    rec = store.get(run_id)
    recorded = json.loads(rec.spec_json).get("request") or {"repo": rec.repo, "base": rec.base}
    differs = [
        _REQUEST_PARTS[k] for k in _REQUEST_PARTS if k in recorded and recorded[k] != request[k]
    ]
    if differs:
        raise UsageError(
            f"--idempotency-key {key} names run {run_id}, made for another {', '.join(differs)}:"
            " give this request a key of its own"
        )
    wall = float(json.loads(rec.policy_json)["policy"].get("budgets", {}).get("wall_seconds", 1800))
    deadline = time.monotonic() + wall + 300  # its own wall budget, and time to record its end
    while is_live(home, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    if store.shown_status(store.get(run_id)) == "interrupted":
        return resume_run(home, run_id, on_event, backend=backend)
    return result_of(store, run_id)


def _with_targets(req: RunRequest, bug_targets: tuple[str, ...]) -> dict[str, Any]:
    """``req``'s policy overrides with its target tests (``--set targets.must_pass``, the bug
    report's front matter, ``--must-pass``: one list) and ``--hidden-tests``."""
    overrides = dict(req.overrides or {})
    given = overrides.get("targets.must_pass", [])
    targets = [*(given if isinstance(given, list) else [given]), *bug_targets, *req.must_pass]
    if targets:
        overrides["targets.must_pass"] = list(dict.fromkeys(targets))
    if req.hidden_tests is not None:
        overrides["targets.hidden_tests"] = str(req.hidden_tests.resolve())
    return overrides


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
    check_home(home, room=MIN_FREE_BYTES)
    store = RunStore(home)
    rec = store.get(run_id)
    ended = ("ready_for_review", "unverified", "failed", "budget_exhausted", "approved",
             "rejected", "merged")  # fmt: skip
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
    check_backend(backend, agent, spec.get("runtime"), policy)
    store.append(run_id, "run_resume", {"approved": sorted(answers.approved),
                                        "rejected": sorted(answers.rejected),
                                        "scope": {str(k): v for k, v in answers.scope.items()}})  # fmt: skip
    image, env_gone = images_for_resume(store, run_id, backend, agent, policy)
    env_image = spec.get("env_image") or image
    setup_done = any(s.kind == "setup" and s.state == "done" for s in store.journal(run_id))
    if policy.setup.commands and (env_gone or not setup_done):  # a crash, an engine error, rmi
        built = prepare_environment(
            home, store, run_id, backend, image, Path(rec.repo), rec.base, policy, on_event
        )
        if built is None:
            return result_of(store, run_id)
        env_image = built
    config = RunConfig(
        task=task, loaded=loaded, image=env_image, runtime=runtime_of(spec.get("runtime")),
        approved=answers.approved, rejected=answers.rejected, scope_answers=answers.scope,
    )  # fmt: skip
    return _drive(home, store, backend, agent, config, run_id, on_event)


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
