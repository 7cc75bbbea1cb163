"""What a run needs of the machine before its first attempt: a backend, an image, an environment.

``backend_soon`` connects to the engine on a thread while the caller reads the
repository and the policy; ``check_backend`` refuses, before anything starts,
what the backend cannot do; ``sandbox_image`` finds or builds the image attempts
and gates start from; ``prepare_environment`` builds the environment image of
the policy's ``[setup]`` commands on a checkout of the base with its git
metadata (journaled: a crash or an engine error leaves the step unfinished and
``resume`` redoes it), showing set-up's output as it comes (``setup_command``
and ``setup_output`` notices; live only, the whole output is ``setup.log``).
A set-up command that fails is the policy's to fix: the run ends ``failed``
as ``configuration`` (exit 2) with the log's path and its last lines.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from docker.errors import ImageNotFound

from policies.policy import Policy, SetupPolicy
from runner.agents.external import CliAgent
from runner.agents.image import build_agent_image
from runner.loop.agent import Agent
from runner.loop.capabilities import OnEngine
from runner.loop.resume import record_interruption, record_runtime_error
from runner.store.runs import RunStore
from sandbox.docker_backend import DockerBackend
from sandbox.engine import ENGINE_ERRORS, connect_soon, probe
from sandbox.errors import EngineUnavailable, ImageError, SandboxError, SetupFailed, UserError
from sandbox.git import HostGit, find_git_dirs
from sandbox.gitdir import listing, scratch_path, setup_checkout
from sandbox.images import ensure_env_image, ensure_sandbox_image, find_ca_bundle
from sandbox.images.packages import with_packages
from sandbox.interfaces import SandboxBackend
from sandbox.lease import RunLease
from sandbox.spec import SANDBOX_GID, SANDBOX_UID


def backend_soon(backend: SandboxBackend | None) -> Callable[[], SandboxBackend]:
    """``backend``; without one, Docker on the local engine, connected on a thread from now on."""
    if backend is not None:
        return lambda: backend
    engine = connect_soon()
    return lambda: DockerBackend(engine())


def check_backend(
    backend: SandboxBackend, agent: Agent, runtime: str | None, policy: Policy
) -> None:
    """What the run needs of its backend, checked before anything starts.

    On an engine: ``check_gateway_runtime``. Without one: ``UserError`` for a
    policy with ``[setup]`` commands or ``[sandbox] packages`` (images are built on an engine).
    """
    if isinstance(backend, OnEngine):
        check_gateway_runtime(agent, runtime, policy)
    elif policy.setup.commands or policy.sandbox.packages:
        what = "[setup] commands" if policy.setup.commands else "[sandbox] packages"
        raise UserError(
            f"the policy's {what} build an image on the container engine, and the sandbox"
            f" backend {backend.name!r} has none: run on Docker, or drop {what}"
        )


def sandbox_image(backend: SandboxBackend, agent: Agent, policy: Policy, given: str | None) -> str:
    """The image set-up, attempts and gates start from: ``given`` or corral's (an agent CLI's) on
    the engine, found or built, plus the policy's ``[sandbox] packages`` (``with_packages``); a
    backend without an engine builds none, and its name is recorded instead."""
    if not isinstance(backend, OnEngine):
        return given or backend.name
    if given:
        image = given
    elif isinstance(agent, CliAgent):
        ca = find_ca_bundle(os.environ)
        image = build_agent_image(backend.client, agent.preset, ca_bundle=ca).image_id
    else:
        image = ensure_sandbox_image(backend.client)
    return with_packages(backend.client, image, policy.sandbox.packages).image_id


def images_for_resume(
    store: RunStore,
    run_id: str,
    backend: SandboxBackend,
    agent: Agent,
    policy: Policy,
) -> tuple[str, bool]:
    """The image a resumed run starts from, and whether its environment image is gone.

    The recorded image while the engine has it; one that is gone (``docker rmi``, a pruned
    engine) is corral's own, built again as ``sandbox_image`` builds it (an ``image_rebuilt``
    event says so, the record names the new one). An environment image that is gone is built
    again by set-up (``prepare_environment``), as the caller does when this says so.
    """
    spec = json.loads(store.get(run_id).spec_json)
    if not isinstance(backend, OnEngine):
        return spec["image"], False
    image = spec["image"]
    if not _has_image(backend.client, image):
        image = sandbox_image(backend, agent, policy, None)
        store.append(run_id, "image_rebuilt", {"was": spec["image"], "now": image})
        spec["image"] = image
        store.update(run_id, spec_json=json.dumps(spec))
    env = spec.get("env_image")
    return image, bool(env) and env != image and not _has_image(backend.client, env)


def _has_image(client: Any, ref: str) -> bool:
    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot inspect image {ref[:19]}: {exc}") from exc
    return True


def check_gateway_runtime(agent: Agent, runtime: str | None, policy: Policy) -> None:
    """An agent CLI under gVisor reaches the gateway only if runsc may connect to host sockets.

    Raises ``EngineUnavailable`` naming the fix (``corral doctor --fix``) before anything starts.
    """
    if isinstance(agent, CliAgent) and (runtime or policy.sandbox.runtime) == "runsc":
        from runner.gateway.core import runtime_problem  # the gateway: agent CLIs only

        problem = runtime_problem("runsc", probe())
        if problem is not None:
            raise EngineUnavailable(problem)


def prepare_environment(
    home: Path,
    store: RunStore,
    run_id: str,
    backend: SandboxBackend,
    image: str,
    repo: Path,
    base: str,
    policy: Policy,
    on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> str | None:
    """The environment image id, or None when set-up failed (the run is then recorded as failed).

    Without ``[setup]`` commands: ``image`` itself. Else the image is built on
    ``backend``'s engine (``check_backend`` refused a backend without one);
    ``on_event`` sees the set-up events and its output line by line. A set-up
    command that fails is the run's end (``configuration``, not resumable; the
    reason names ``setup.log``'s path and quotes its last lines); an engine or
    image error (``SandboxError``) leaves the set-up step unfinished, is recorded
    with its evidence (``record_runtime_error``) and ``resume`` redoes it.
    """
    setup = policy.setup
    if not setup.commands or not isinstance(backend, OnEngine):
        return image
    show = on_event or (lambda kind, data: None)

    def event(kind: str, data: dict[str, Any]) -> None:
        store.append(run_id, kind, data)
        show(kind, data)

    with RunLease(home, run_id):  # `corral gc` leaves set-up's container alone meanwhile
        try:
            return _set_up(home, store, run_id, backend, image, repo, base, setup, event, show)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: recorded, `resume` redoes set-up
            raise record_interruption(store, run_id) from exc


def _set_up(
    home: Path,
    store: RunStore,
    run_id: str,
    backend: OnEngine,
    image: str,
    repo: Path,
    base: str,
    setup: SetupPolicy,
    event: Callable[[str, dict[str, Any]], None],
    show: Callable[[str, Mapping[str, Any]], None],
) -> str | None:
    """``prepare_environment``'s work, under the run's lease."""
    seq = store.journal_start(run_id, "setup", "env", {"commands": list(setup.commands)})
    event("setup_start", {"commands": list(setup.commands)})
    scratch = scratch_path(home, run_id, "setup")  # ours: we hold the run's lease
    shutil.rmtree(scratch, ignore_errors=True)  # what a set-up killed midway left
    scratch.mkdir(parents=True)
    try:
        _, common = find_git_dirs(repo)
        setup_checkout(common, base, scratch)
        if os.geteuid() == 0:
            for p in [scratch, *scratch.rglob("*")]:
                os.lchown(p, SANDBOX_UID, SANDBOX_GID)
        env = ensure_env_image(
            backend.client, image, scratch, setup.commands, repo=str(repo), base_commit=base,
            ca_bundle=find_ca_bundle(os.environ), base_listing=listing(HostGit(common), base)[0],
            objects=common / "objects", network=setup.network, timeout=setup.timeout,
            run_id=run_id, home=home, on_output=lambda line: show("setup_output", {"line": line}),
        )  # fmt: skip
    except SetupFailed as exc:
        log_path = store.write_artifact(run_id, "setup.log", exc.log)
        store.journal_failed(run_id, seq, {"command": exc.command, "exit_code": exc.exit_code})
        last = [line for line in exc.log.splitlines() if line.strip()][-5:]
        reason = (
            f"set-up command failed (exit {exc.exit_code}): {exc.command}; fix [setup] in the"
            f" policy. Log: {log_path}; it ends: " + " | ".join(line.strip() for line in last)
        )
        event("setup_failed", {"command": exc.command, "exit_code": exc.exit_code,
                               "log": str(log_path), "last_lines": last})  # fmt: skip
        store.update(run_id, status="failed", failure_domain="configuration", reason=reason)
        store.append(run_id, "run_end", {"status": "failed", "reason": reason})
        return None
    except SandboxError as exc:  # the engine or the image build failed, not the set-up commands
        reason = record_runtime_error(store, run_id, exc, "setup env")
        store.update(run_id, status="failed", failure_domain="runtime", reason=reason)
        store.append(run_id, "run_end", {"status": "failed", "reason": reason})
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cached = f"(set-up did not run: environment image {env.image_id[:19]} was built before)"
    store.write_artifact(run_id, "setup.log", env.log if env.built else cached)
    spec = json.loads(store.get(run_id).spec_json)
    spec["env_image"] = env.image_id
    store.update(run_id, spec_json=json.dumps(spec))
    store.journal_done(run_id, seq, {"image": env.image_id, "built": env.built})
    event("environment", {"image": env.image_id, "built": env.built,
                          "seconds": round(env.seconds, 1)})  # fmt: skip
    return env.image_id
