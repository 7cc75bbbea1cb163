"""Environment images: the sandbox image plus a repository's set-up, built once and cached.

The policy's set-up commands (``pip install -e .`` ...) are the one step that
may reach the package registries. They run in a throwaway container on a
checkout of the base revision whose ``.git`` (HEAD at base, the repository's
tags, objects borrowed read-only: ``sandbox.gitdir.setup_checkout``) is mounted
read-only, so setuptools-scm and hatch-vcs find their version, with the host's CA bundle mounted and
named by every variable tools read (``SSL_CERT_FILE``, ``PIP_CERT``,
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, ``GIT_SSL_CAINFO``,
``NODE_EXTRA_CA_CERTS``), so it works behind a TLS-intercepting proxy. Installs
go into a virtual environment at ``/opt/env`` (first on ``PATH`` in set-up, which
runs in a plain ``bash -c``, and in every sandbox: ``sandbox.container``), because
``$HOME`` is a fresh tmpfs in every sandbox. What set-up leaves in the tree
(egg-info, a generated ``_version.py``) is read off it and stored in the image
(``sandbox.images.setup_files``): attempts and gates get it, patches never. The
container is committed as ``corral/env:<hash>``; the hash covers the base image
id, the repository, the base commit and the commands, so a second run with the
same inputs does no work. Attempts and gates then run on it with network none.
Each command's output is passed on line by line as it comes (``on_output``).

The docker SDK is used directly (not ``DockerSandbox``): set-up needs a
network and a writable root filesystem, which sandboxes never get.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import APIError, ImageNotFound
from docker.types import Mount

from sandbox.container import LABEL_HOME, LABEL_MANAGED, LABEL_RUN, SANDBOX_PATH, VENV
from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import ImageError, SetupFailed
from sandbox.gitdir import SETUP_OBJECTS
from sandbox.images.setup_files import LABEL_SETUP_FILES, capture, store_in
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
#: (2: a plain ``bash -c``, no login shell whose profile put the venv off ``PATH``;
#: 3: a checkout with ``.git``, and the files set-up leaves carried in the image).
RECIPE = 3


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
    base_listing: Mapping[str, tuple[str, str]],
    objects: Path | None = None,
    network: bool = True,
    timeout: float = 1800.0,
    run_id: str = "setup",
    home: Path | None = None,
    on_output: Callable[[str], None] | None = None,
) -> EnvImage:
    """The environment image for ``commands`` on ``tree``; the sandbox image itself when there are none.

    ``tree`` is a checkout of the base revision, whose listing is
    ``base_listing``, with a ``.git`` directory of its own whose alternates
    name ``SETUP_OBJECTS``, where ``objects`` is mounted (it is changed by the
    set-up and should be thrown away after). ``on_output`` gets each line of
    output as it comes. Raises ``SetupFailed`` with the log when a command
    fails or the time runs out, ``ImageError`` for engine trouble and for a
    set-up that leaves more in the tree than corral carries.
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
    if (tree / ".git").is_dir() and objects is not None:
        mounts.append(Mount("/workspace/.git", str(tree / ".git"), type="bind", read_only=True))
        mounts.append(Mount(SETUP_OBJECTS, str(objects), type="bind", read_only=True))
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
    except ENGINE_ERRORS as exc:
        raise ImageError(f"cannot start the set-up container: {exc}") from exc
    out = _Output(on_output)
    user = f"{SANDBOX_UID}:{SANDBOX_GID}"
    try:
        dirs = f"{VENV} {SANDBOX_HOME} /opt/corral"
        _exec(
            client,
            container,
            "0:0",
            f"mkdir -p {dirs} && chown {user} {VENV} {SANDBOX_HOME}",
            out,
            60,
        )
        _exec(client, container, user, f"python3 -m venv --system-site-packages {VENV}", out, 300)
        deadline = started + timeout
        for command in commands:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SetupFailed(command, 124, out.text() + "\n[set-up ran out of time]")
            _exec(client, container, user, command, out, left, ca_env)
        left_behind = capture(tree, base_listing)
        for note in left_behind.notes:
            out.line(f"[corral] {note}")
        if left_behind.files:
            store_in(container, left_behind.files)
        changes = [
            f"ENV PATH={SANDBOX_PATH}",
            f"ENV VIRTUAL_ENV={VENV}",
            f"USER {SANDBOX_UID}:{SANDBOX_GID}",
            "WORKDIR /workspace",
            'CMD ["sleep", "infinity"]',
        ]
        image = container.commit(
            repository=ENV_REPO, tag=digest, changes=changes,
            conf={"Labels": {LABEL_ENV_HASH: digest, LABEL_MANAGED: "1",
                             LABEL_SETUP_FILES: str(len(left_behind.files))}},
        )  # fmt: skip
    except APIError as exc:
        raise ImageError(f"set-up container failed: {exc}") from exc
    finally:
        try:
            container.remove(force=True, v=True)
        except ENGINE_ERRORS:
            log.warning("set-up container %s not removed", container.short_id)
    return EnvImage(image.id, True, out.text(), time.monotonic() - started)


class _Output:
    """Set-up's output: kept (the log, its last 100 kB per command) and passed on line by line."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self.parts: list[str] = []
        self.on_line = on_line
        self.pending = b""

    def line(self, text: str) -> None:
        self.parts.append(text)
        if self.on_line is not None:
            self.on_line(text)

    def feed(self, chunk: bytes) -> str:
        """Pass on the complete lines of ``chunk``; return its text."""
        data = self.pending + chunk
        *lines, self.pending = data.split(b"\n")
        if self.on_line is not None:
            for raw in lines:
                self.on_line(raw.decode(errors="replace").rstrip("\r"))
        return chunk.decode(errors="replace")

    def flush(self) -> None:
        if self.pending and self.on_line is not None:
            self.on_line(self.pending.decode(errors="replace"))
        self.pending = b""

    def text(self) -> str:
        return "\n".join(self.parts)


def _exec(
    client: Any,
    container: Any,
    user: str,
    command: str,
    out: _Output,
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``command`` in the set-up container with ``timeout`` enforced inside, its output
    streamed to ``out``; raise ``SetupFailed`` on failure."""
    # not a login shell: Debian's /etc/profile sets PATH anew, without the venv
    wrapped = ["timeout", "-k", "5", str(max(1, int(timeout))), "bash", "-c", command]
    out.line(f"$ {command}")
    api = client.api
    exec_id = api.exec_create(
        container.id, wrapped, user=user, workdir="/workspace", environment=env or None
    )["Id"]
    kept: list[str] = []
    size = 0
    for chunk in api.exec_start(exec_id, stream=True, demux=False):
        text = out.feed(chunk)
        kept.append(text)
        size += len(text)
        while size > 200_000 and len(kept) > 1:  # the log keeps the end of a long output
            size -= len(kept.pop(0))
    out.flush()
    out.parts.append("".join(kept)[-100_000:])
    rc = api.exec_inspect(exec_id).get("ExitCode")
    if rc != 0:
        raise SetupFailed(command, rc if isinstance(rc, int) else -1, out.text())
