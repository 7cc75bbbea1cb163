"""corral's pytest plugin: the ``scripted_model_server`` fixture.

Registered as the ``pytest11`` entry point ``corral`` (``pyproject.toml``), so
pytest loads it in any environment where corral is installed: a test asks for
the fixture by name, nothing to import. The fixture starts a
``ScriptedModelServer`` per call and stops them all after the test::

    from runner.llm.scripted_server import ScriptedReply

    def test_agent(scripted_model_server):
        server = scripted_model_server([ScriptedReply(content="done")])
        ...  # point the client at server.base_url

pytest comes with the ``test`` extra (``pip install 'corral[test]'``); corral
itself never imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, StartServer


@pytest.fixture
def scripted_model_server() -> Iterator[StartServer]:
    """Start a ``ScriptedModelServer`` per call (``start(replies)``); all are stopped after the test."""
    servers: list[ScriptedModelServer] = []

    def start(replies: Sequence[ScriptedReply]) -> ScriptedModelServer:
        server = ScriptedModelServer(list(replies))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
