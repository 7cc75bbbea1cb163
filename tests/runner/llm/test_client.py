"""The model client against the scripted server: retries, classified failures, the circuit."""

from __future__ import annotations

import pytest

from runner.agents.builtin import tool_schemas
from runner.llm.client import ContextTooLong, ModelClient, ModelConfig, ModelError, ModelUnavailable
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply
from tests.support.agentruns import KEY


def _client(server: ScriptedModelServer, **kw: object) -> ModelClient:
    config = ModelConfig(model="gpt-4o-mini", base_url=server.base_url, api_key=KEY,
                         max_backoff_s=0.2, timeout_s=5, **kw)  # type: ignore[arg-type]  # fmt: skip
    return ModelClient(config)


def _ask(client: ModelClient) -> object:
    return client.complete([{"role": "user", "content": "hi"}], tool_schemas())


def test_transient_failures_are_retried_honouring_retry_after() -> None:
    replies = [ScriptedReply(fault="429", retry_after=0.1), ScriptedReply(fault="500"),
               ScriptedReply(fault="malformed"), ScriptedReply(content="ok", prompt_tokens=1000)]  # fmt: skip
    with ScriptedModelServer(replies) as server:
        reply = _ask(_client(server))
    assert reply.content == "ok" and server.served == 4  # type: ignore[attr-defined]
    assert reply.cost_usd == pytest.approx((1000 * 0.15 + 20 * 0.60) / 1e6)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fault", "error", "domain"),
    [("401", ModelError, "runtime"), ("too_long", ContextTooLong, "context")],
)
def test_permanent_failures_are_classified_not_retried(
    fault: str, error: type, domain: str
) -> None:
    replies = [ScriptedReply(fault=fault)] * 3  # type: ignore[arg-type]
    with ScriptedModelServer(replies) as server, pytest.raises(error) as info:
        _ask(_client(server))
    assert server.served == 1 and info.value.domain == domain
    assert info.value.stops_run  # the runner ends the run: every later call would fail alike
    assert KEY not in str(info.value)


def test_circuit_opens_after_consecutive_failures_and_stays_open() -> None:
    with ScriptedModelServer([ScriptedReply(fault="500")] * 8) as server:
        client = _client(server, max_retries=1, circuit_after=2)
        with pytest.raises(ModelUnavailable) as opened:
            _ask(client)  # a call whose retries failed is tried again until the circuit opens
        assert server.served == 4 and not opened.value.stops_run  # 2 calls x (1 + 1 retry)
        assert opened.value.domain == "runtime" and "unavailable" in str(opened.value)
        with pytest.raises(ModelUnavailable):
            _ask(client)  # open: no request is sent
        assert server.served == 4


def test_an_outage_shorter_than_the_circuit_is_no_error_of_the_agent() -> None:
    outage = [ScriptedReply(fault="500"), ScriptedReply(fault="malformed")]
    with ScriptedModelServer([*outage, ScriptedReply(content="back")]) as server:
        client = _client(server, max_retries=0)  # the default circuit_after: 3
        reply = _ask(client)
    assert reply.content == "back" and server.served == 3  # type: ignore[attr-defined]
    assert client.failures == 0
