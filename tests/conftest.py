"""Shared fixtures. Docker-marked tests use the real engine and never skip silently:
when the engine or image is missing they fail with the command that fixes it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.gatetree import sweep_ram


@pytest.fixture(scope="session", autouse=True)
def _ram_gate_trees_of_test_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Gate trees live in RAM, outside ``tmp_path``: the session removes those of its homes
    (a run killed on purpose leaves its tree for ``corral gc``, as a crash would)."""
    yield
    base = tmp_path_factory.getbasetemp().resolve()
    sweep_ram(gone=lambda home: home.is_relative_to(base))


@pytest.fixture
def corral_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``$CORRAL_HOME`` for one test."""
    home = tmp_path / "corral-home"
    home.mkdir()
    monkeypatch.setenv("CORRAL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    from sandbox.engine import connect
    from sandbox.errors import EngineUnavailable

    try:
        client = connect()
    except EngineUnavailable as exc:
        pytest.fail(f"docker-marked test needs an engine: {exc}", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: object) -> str:
    """The sandbox image id; built (offline bootstrap included) if missing."""
    override = os.environ.get("CORRAL_TEST_IMAGE")  # developers iterating on an image of their own
    if override:
        return override
    from sandbox.images import ensure_sandbox_image

    return ensure_sandbox_image(docker_client)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Run docker tests last so fast unit failures show first.
    if os.environ.get("CORRAL_TEST_ORDER", "docker-last") == "docker-last":
        items.sort(key=lambda item: item.get_closest_marker("docker") is not None)
