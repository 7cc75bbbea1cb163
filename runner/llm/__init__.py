"""Talking to a model: the client of the built-in agent, and a scripted server to test it.

client           ``ModelClient``: chat completions with tool calls on any OpenAI-compatible
                 endpoint, retries with backoff, a circuit breaker, prices and redaction
scripted_server  ``ScriptedModelServer``: a real HTTP server on loopback that answers with
                 scripted replies (tests and the bundled example; not re-exported)
pytest_plugin    the ``scripted_model_server`` fixture, loaded by pytest (``pytest11``)

The client's names are re-exported lazily: importing the package (as pytest does
for the plugin, in every session of an environment where corral is installed)
must not import ``openai``, which takes about a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.llm.client import (
        PRICES,
        ContextTooLong,
        ModelClient,
        ModelConfig,
        ModelError,
        ModelReply,
        ModelUnavailable,
        read_api_key,
    )

__all__ = [
    "PRICES",
    "ContextTooLong",
    "ModelClient",
    "ModelConfig",
    "ModelError",
    "ModelReply",
    "ModelUnavailable",
    "read_api_key",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from runner.llm import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
