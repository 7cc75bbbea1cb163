"""The scripted model server, driven by the official openai SDK over real loopback HTTP."""

from __future__ import annotations

import json

import openai
import pytest

from runner.llm.client import ModelClient, ModelConfig
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, StartServer, ToolCall


def _client(server: ScriptedModelServer, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", **kw)  # type: ignore[arg-type]


def test_tool_calls_content_and_usage_round_trip() -> None:
    replies = [
        ScriptedReply(tool_calls=[ToolCall("bash", {"command": "ls -la"})], prompt_tokens=7),
        ScriptedReply(content="all done", completion_tokens=3),
    ]
    with ScriptedModelServer(replies) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        client = _client(server)
        first = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "fix"}]
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "bash"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"command": "ls -la"}  # type: ignore[union-attr]
        assert first.usage is not None and first.usage.prompt_tokens == 7
        second = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        assert second.choices[0].message.content == "all done"
        assert second.choices[0].finish_reason == "stop"
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-key"
    assert (
        server.requests[1].body is not None
        and server.requests[1].body["messages"][0]["content"] == "x"
    )


def test_streaming_reassembles_content_and_tool_calls() -> None:
    reply = ScriptedReply(
        content="thinking about it", tool_calls=[ToolCall("read_file", {"path": "src/a.py"})]
    )
    with ScriptedModelServer([reply]) as server:
        stream = _client(server).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "go"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        content, args, names, usage = "", "", [], None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                content += choice.delta.content or ""
                for tc in choice.delta.tool_calls or []:
                    if tc.function and tc.function.name:
                        names.append(tc.function.name)
                    args += (tc.function.arguments or "") if tc.function else ""
    assert content == "thinking about it" and names == ["read_file"]
    assert (
        json.loads(args) == {"path": "src/a.py"} and usage is not None and usage.total_tokens == 120
    )


def test_faults_rate_limit_then_success_with_the_sdk_retrying(
    scripted_model_server: StartServer,
) -> None:
    server = scripted_model_server(
        [ScriptedReply(fault="429", retry_after=0.1), ScriptedReply(fault="500"),
         ScriptedReply(content="ok")]
    )  # fmt: skip
    reply = _client(server, max_retries=3).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert reply.choices[0].message.content == "ok" and server.served == 3


def test_a_connection_reset_is_a_connection_error_without_any_response(
    scripted_model_server: StartServer,
) -> None:
    server = scripted_model_server([ScriptedReply(fault="reset")])
    with pytest.raises(openai.APIConnectionError) as info:
        _client(server, max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert "Connection reset by peer" in str(info.value.__cause__)  # an RST, not a clean close
    assert not isinstance(info.value, openai.APITimeoutError) and server.served == 1


def test_the_model_client_retries_connection_resets(scripted_model_server: StartServer) -> None:
    server = scripted_model_server(
        [ScriptedReply(fault="reset"), ScriptedReply(fault="reset"), ScriptedReply(content="ok")]
    )
    config = ModelConfig(model="m", base_url=server.base_url, api_key="k", max_retries=2,
                         max_backoff_s=0.1, timeout_s=5)  # fmt: skip
    client = ModelClient(config)
    reply = client.complete([{"role": "user", "content": "x"}], [])
    assert reply.content == "ok" and server.served == 3 and client.failures == 0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("401", openai.AuthenticationError),
        ("too_long", openai.BadRequestError),
        (
            "malformed",
            ValueError,
        ),  # the SDK lets the JSON error through: the client must classify it
    ],
)
def test_permanent_faults_surface_as_sdk_errors(fault: str, error: type[Exception]) -> None:
    replies = [ScriptedReply(fault=fault)]  # type: ignore[arg-type]
    with ScriptedModelServer(replies) as server, pytest.raises(error):
        _client(server, max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )


def test_a_hang_is_a_client_timeout_and_an_empty_script_is_a_loud_500() -> None:
    hang = [ScriptedReply(fault="hang", hang_seconds=3)]
    with ScriptedModelServer(hang) as server, pytest.raises(openai.APITimeoutError):
        _client(server, max_retries=0, timeout=0.5).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    empty = ScriptedModelServer([])
    with empty as server, pytest.raises(openai.InternalServerError, match="no more replies"):
        _client(server, max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
