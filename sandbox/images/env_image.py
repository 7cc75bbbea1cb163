"""Environment images: the sandbox image plus a repository's set-up, built once and cached.

The policy's set-up commands (``pip install -e .`` ...) are the one step that
may reach the package registries. They run in a throwaway container on a
plain export of the base revision, with the host's CA bundle mounted and
named by every variable tools read (``SSL_CERT_FILE``, ``PIP_CERT``,
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, ``GIT_SSL_CAINFO``,
``NODE_EXTRA_CA_CERTS``), so it works behind a TLS-intercepting proxy. Installs
go into a virtual environment at ``/opt/env`` (first on ``PATH`` in set-up, which
runs in a plain ``bash -c``, and in every sandbox: ``sandbox.container``), because
``$HOME`` is a fresh tmpfs in every sandbox. The container is committed as
``corral/env:<hash>``; the hash covers the base image id, the repository, the
base commit and the commands, so a second run with the same inputs does no
work. Attempts and gates then run on it with network none.

The docker SDK is used directly (not ``DockerSandbox``): set-up needs a
network and a writable root filesystem, which sandboxes never get.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound
from docker.types import Mount

from sandbox.container import LABEL_HOME, LABEL_MANAGED, LABEL_RUN, SANDBOX_PATH, VENV
from sandbox.errors import ImageError, SetupFailed
from sandbox.spec import SANDBOX_GID, SANDBOX_HOME, SANDBOX_UID

log = logging.getLogger(__name__)

ENV_REPO = "corral/env"
LABEL_ENV_HASH = "corral.env-hash"
CA_TARGET = "/run/corral-ca/ca.pem"
CA_VARIABLES = (
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
)


@dataclass(frozen=True, slots=True)
class EnvImage:
    """An environment image: its id, whether it was built now, and the set-up log."""

    image_id: str
    built: bool
    log: str
    seconds: float


#: How set-up runs; part of the cache key, so an image made the old way is built again
#: (2: a plain ``bash -c``, no login shell whose profile put the venv off ``PATH``).
RECIPE = 2


def env_hash(base_image_id: str, repo: str, base_commit: str, commands: Sequence[str]) -> str:
    """The cache key of an environment image."""
    key = json.dumps([base_image_id, repo, base_commit, list(commands), VENV, RECIPE])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def ensure_env_image(
    client: Any,
    base_image_id: str,
    tree: Path,
    commands: Sequence[str],
    *,
    repo: str,
    base_commit: str,
    ca_bundle: Path | None,
    network: bool = True,
    timeout: float = 1800.0,
    run_id: str = "setup",
    home: Path | None = None,
) -> EnvImage:
    """The environment image for ``commands`` on ``tree``; the sandbox image itself when there are none.

    ``tree`` is a plain export of the base revision (it is changed by the
    set-up and should be thrown away after). Raises ``SetupFailed`` with the
    log when a command fails or the time runs out, ``ImageError`` for engine
    trouble.
    """
    if not commands:
        return EnvImage(base_image_id, False, "", 0.0)
    digest = env_hash(base_image_id, repo, base_commit, commands)
    tag = f"{ENV_REPO}:{digest}"
    try:
        found = client.images.get(tag)
        if found.labels.get(LABEL_ENV_HASH) == digest:
            return EnvImage(found.id, False, "", 0.0)
    except ImageNotFound:
        pass
    started = time.monotonic()
    env = {"HOME": SANDBOX_HOME, "PATH": SANDBOX_PATH, "VIRTUAL_ENV": VENV, "PIP_NO_INPUT": "1"}
    # HostConfig mounts, not `volumes=`: the SDK would also declare those paths as image
    # volumes, and `commit` would carry the declarations into every later container.
    mounts = [Mount("/workspace", str(tree), type="bind", read_only=False)]
    ca_env: dict[str, str] = {}  # per exec, so the committed image does not name a missing file
    if ca_bundle is not None:
        mounts.append(Mount(CA_TARGET, str(ca_bundle.resolve()), type="bind", read_only=True))
        ca_env = {name: CA_TARGET for name in CA_VARIABLES}
    labels = {LABEL_MANAGED: "1", LABEL_RUN: run_id, "corral.kind": "setup"}
    if home is not None:
        labels[LABEL_HOME] = str(home)
    try:
        container = client.containers.run(
            base_image_id,
            ["sleep", "infinity"],
            detach=True,
            init=True,
            user="0:0",
            environment=env,
            mounts=mounts,
            working_dir="/workspace",
            network_mode="bridge" if network else "none",
            cap_drop=["ALL"],
            cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"],
            security_opt=["no-new-privileges"],
            labels=labels,
            mem_limit="4g",
        )
    except DockerException as exc:
        raise ImageError(f"cannot start the set-up container: {exc}") from exc
    logs: list[str] = []
    try:
        _exec(
            container,
            "0:0",
            f"mkdir -p {VENV} {SANDBOX_HOME} && chown {SANDBOX_UID}:{SANDBOX_GID} {VENV} {SANDBOX_HOME}",
            logs,
            60,
        )
        _exec(
            container,
            f"{SANDBOX_UID}:{SANDBOX_GID}",
            f"python3 -m venv --system-site-packages {VENV}",
            logs,
            300,
        )
        deadline = started + timeout
        for command in commands:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SetupFailed(command, 124, "\n".join(logs) + "\n[set-up ran out of time]")
            _exec(container, f"{SANDBOX_UID}:{SANDBOX_GID}", command, logs, left, ca_env)
        changes = [
            f"ENV PATH={SANDBOX_PATH}",
            f"ENV VIRTUAL_ENV={VENV}",
            f"USER {SANDBOX_UID}:{SANDBOX_GID}",
            "WORKDIR /workspace",
            'CMD ["sleep", "infinity"]',
        ]
        image = container.commit(
            repository=ENV_REPO, tag=digest, changes=changes,
            conf={"Labels": {LABEL_ENV_HASH: digest, LABEL_MANAGED: "1"}},
        )  # fmt: skip
    except APIError as exc:
        raise ImageError(f"set-up container failed: {exc}") from exc
    finally:
        try:
            container.remove(force=True, v=True)
        except DockerException:
            log.warning("set-up container %s not removed", container.short_id)
    return EnvImage(image.id, True, "\n".join(logs), time.monotonic() - started)


def _exec(
    container: Any,
    user: str,
    command: str,
    logs: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``command`` in the set-up container with ``timeout`` enforced inside; raise on failure."""
    # not a login shell: Debian's /etc/profile sets PATH anew, without the venv
    wrapped = ["timeout", "-k", "5", str(max(1, int(timeout))), "bash", "-c", command]
    logs.append(f"$ {command}")
    rc, output = container.exec_run(
        wrapped, user=user, workdir="/workspace", environment=env or None, demux=False
    )
    text = (output or b"").decode(errors="replace")
    logs.append(text[-100_000:])
    if rc != 0:
        raise SetupFailed(command, rc, "\n".join(logs))
