"""Fixtures of the agent tests: the demo project, and agent images built once a session."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.demo import build_demo


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The demo project in ``tmp_path`` (its policy file is written by each run)."""
    return build_demo(tmp_path)


@pytest.fixture(scope="session")
def agent_image(docker_client: object) -> Callable[[str], str]:
    """An agent image by preset name, built once per session (PyPI/npm; cached by content hash)."""
    from runner.agents import load_preset
    from runner.agents.image import build_agent_image
    from sandbox.images import find_ca_bundle

    def get(name: str) -> str:
        preset = load_preset(name)
        first = build_agent_image(docker_client, preset, ca_bundle=find_ca_bundle(os.environ))
        again = build_agent_image(docker_client, preset, ca_bundle=find_ca_bundle(os.environ))
        assert not again.built and again.image_id == first.image_id  # second call: no work
        return first.image_id

    return functools.cache(get)
