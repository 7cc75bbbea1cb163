"""The Docker engine: connecting to it (and, in ``provision``, setting it up).

Uses the official ``docker`` SDK, which negotiates the API version with the
engine (Debian's 20.10 speaks 1.41).
"""

from __future__ import annotations

import docker
from docker.errors import DockerException

from sandbox.errors import EngineUnavailable


def connect(timeout: float = 120.0) -> docker.DockerClient:
    """A client for the local engine (``DOCKER_HOST`` or the default socket).

    Raises ``EngineUnavailable`` with the fix (``corral doctor --fix``) when no
    engine answers.
    """
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except DockerException as exc:
        raise EngineUnavailable(
            f"no Docker engine answers ({exc.__class__.__name__}); run `corral doctor --fix`"
        ) from exc
    return client
