"""The model client: any OpenAI-compatible endpoint through the official ``openai`` SDK.

Retries are ``tenacity``'s (capped exponential backoff with jitter), not the
SDK's (``max_retries=0``), so that one policy decides: transient failures
(timeouts, connection resets, 429, 5xx, a reply that is not valid JSON) are
retried, honouring ``Retry-After``; permanent ones (401/403, 400 with a schema
error, context too long) are not, and are classified. A call whose retries
are spent counts as one failure of the circuit breaker and is tried again
(never handed to the agent as its failure) until ``circuit_after`` failures
in a row open the circuit: ``ModelUnavailable`` then pauses the run
(``waiting``) with its state saved, and ``corral resume`` continues later. So
``complete`` sends at most ``circuit_after * (max_retries + 1)`` requests.
Every other ``ModelError`` is permanent (``stops_run``): retrying the same
request elsewhere in the run would only fail the same way.

Usage and cost are counted per call from the API's ``usage``; prices come from
``PRICES`` (US dollars per million tokens), overridable per run. The API key
is read from the environment or a key file and given only to the SDK: never to
the sandbox, the event log or an error message.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ContextTooLong as ContextTooLong
from runner.errors import KeyFileError
from runner.errors import ModelError as ModelError
from runner.errors import ModelUnavailable as ModelUnavailable

if TYPE_CHECKING:  # imported when a client is made: the SDK alone takes ~0.5 s to import
    import openai
    from tenacity import RetryCallState

log = logging.getLogger(__name__)

#: US dollars per million (input, output) tokens; a prefix of the model name selects a row.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-sonnet": (3.00, 15.00),
    "claude-haiku": (0.80, 4.00),
}
KEY_ENV = ("CORRAL_API_KEY", "OPENAI_API_KEY")


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for (``arguments`` is the raw JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ModelReply:
    """One completion: text, tool calls, and what it cost."""

    content: str
    tool_calls: tuple[ToolCallRequest, ...]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    finish_reason: str


@dataclass
class ModelConfig:
    """Where and how to call the model (from the CLI and the policy's ``[model]`` table)."""

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    max_retries: int = 4
    max_backoff_s: float = 30.0
    circuit_after: int = 3
    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(PRICES))


def read_api_key(env: Mapping[str, str], key_file: Path | None = None) -> str | None:
    """The API key: ``key_file`` if given, else ``CORRAL_API_KEY`` or ``OPENAI_API_KEY``.

    Raises ``KeyFileError`` (a ``UserError`` naming the fix) when ``key_file`` cannot be read
    or holds nothing but white space.
    """
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise KeyFileError(
                f"cannot read the API key file {key_file} ({exc.strerror}): give --api-key-file"
                " a readable file, or set CORRAL_API_KEY instead"
            ) from exc
        except UnicodeDecodeError as exc:
            raise KeyFileError(
                f"the API key file {key_file} is not text ({exc.reason}): give --api-key-file"
                " the file that holds the key, or set CORRAL_API_KEY instead"
            ) from exc
        if not key:
            raise KeyFileError(
                f"the API key file {key_file} is empty: write the key into the file"
                " --api-key-file names, or set CORRAL_API_KEY instead"
            )
        return key
    for name in KEY_ENV:
        if env.get(name):
            return env[name]
    return None


def price(
    prices: Mapping[str, tuple[float, float]], model: str, prompt: int, completion: int
) -> float:
    """Cost of one call; 0 for a model with no price row (a local model)."""
    row = next(
        (
            p
            for name, p in sorted(prices.items(), key=lambda kv: -len(kv[0]))
            if model.startswith(name)
        ),
        None,
    )
    if row is None:
        return 0.0
    return (prompt * row[0] + completion * row[1]) / 1_000_000


_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_-]{6,}|Bearer\s+\S+)")


def redact(text: str, key: str | None) -> str:
    """``text`` without the key (or anything shaped like one)."""
    if key:
        text = text.replace(key, "[key]")
    return _SECRETISH.sub("[key]", text)


def _transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(
        exc, openai.APITimeoutError | openai.APIConnectionError | json.JSONDecodeError
    )


class ModelClient:
    """Chat completions with retries, classification, cost, and a circuit breaker."""

    def __init__(self, config: ModelConfig) -> None:
        import openai

        self.config = config
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "not-needed",
            timeout=config.timeout_s,
            max_retries=0,
        )
        self.failures = 0  # consecutive failed calls (after their retries)
        self.calls = 0

    def complete(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> ModelReply:
        """One completion, tried until it succeeds or the circuit opens (see the module docstring).

        Raises ``ModelUnavailable`` (the circuit is open: transient failures
        ``circuit_after`` times in a row), ``ContextTooLong`` (400, the context
        overflowed) and ``ModelError`` for the other permanent refusals
        (401/403: ``runtime``; another 4xx: ``tool-interface``).
        """
        import openai

        last = f"{self.failures} failed calls in a row"
        while self.failures < self.config.circuit_after:
            try:
                raw = self._with_retries(messages, tools)
            except openai.APIStatusError as exc:
                if not _transient(exc):
                    raise self._classify(exc) from None
                last = self._say(exc)
            except (openai.APITimeoutError, openai.APIConnectionError, json.JSONDecodeError) as exc:
                last = self._say(exc)
            else:
                self.failures = 0
                self.calls += 1
                return self._reply(raw)
            self.failures += 1
            log.warning("model call failed after retries (%d in a row): %s", self.failures, last)
        raise ModelUnavailable(f"model endpoint unavailable: {last}")

    def _with_retries(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> Any:
        import openai
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=self._wait,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._client.chat.completions.create(
                    model=self.config.model,
                    messages=list(messages),  # type: ignore[arg-type]
                    tools=list(tools) or openai.NOT_GIVEN,  # type: ignore[arg-type]
                )
        raise AssertionError("unreachable")

    def _wait(self, state: RetryCallState) -> float:
        import openai
        from tenacity import wait_exponential_jitter

        backoff = wait_exponential_jitter(multiplier=0.5, max=self.config.max_backoff_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, openai.APIStatusError):
            after = exc.response.headers.get("retry-after")
            try:
                return min(max(float(after), 0.0), self.config.max_backoff_s) if after else backoff
            except ValueError:
                return backoff
        return backoff

    def _classify(self, exc: openai.APIStatusError) -> ModelError:
        text = self._say(exc)
        code = getattr(exc, "code", None) or ""
        if exc.status_code == 400 and ("context_length" in str(code) or "context length" in text):
            return ContextTooLong(f"the conversation no longer fits the model's context: {text}")
        if exc.status_code in (401, 403):
            return ModelError(
                f"the endpoint refused the API key ({exc.status_code}); check CORRAL_API_KEY",
                "runtime",
            )
        return ModelError(
            f"the endpoint rejected the request ({exc.status_code}): {text}", "tool-interface"
        )

    def _say(self, exc: BaseException) -> str:
        return redact(f"{exc.__class__.__name__}: {exc}", self.config.api_key)[:300]

    def _reply(self, raw: Any) -> ModelReply:
        choice = raw.choices[0]
        msg = choice.message
        calls = tuple(
            ToolCallRequest(tc.id, tc.function.name, tc.function.arguments or "{}")
            for tc in (msg.tool_calls or [])
            if getattr(tc, "function", None) is not None
        )
        usage = raw.usage
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        return ModelReply(
            content=msg.content or "",
            tool_calls=calls,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=price(self.config.prices, self.config.model, prompt, completion),
            finish_reason=choice.finish_reason or "",
        )


def env_config(model: str, base_url: str | None, key_file: Path | None) -> ModelConfig:
    """A ``ModelConfig`` from CLI values and the process environment (the CLI's edge only)."""
    return ModelConfig(model=model, base_url=base_url, api_key=read_api_key(os.environ, key_file))
