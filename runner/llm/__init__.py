"""Talking to a model: the client of the built-in agent, and a scripted server to test it.

client           ``ModelClient``: chat completions with tool calls on any OpenAI-compatible
                 endpoint, retries with backoff, a circuit breaker, prices and redaction
scripted_server  ``ScriptedModelServer``: a real HTTP server on loopback that answers with
                 scripted replies (tests and the bundled example; not re-exported)
pytest_plugin    the ``scripted_model_server`` fixture, loaded by pytest (``pytest11``)
"""

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
