"""The official `openai` SDK, an independent client, talks to the emulator: streaming, plain, and 429s."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer

MODEL = EmulatorConfig().model


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        ttft_ms=5, tokens_per_s=2000, output_tokens=5, reasoning_tokens=2, require_api_key=True
    )
    with EmulatorServer(config) as emulator:
        yield emulator


def client_for(server: EmulatorServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="qs-test-not-a-real-key", max_retries=0)


def test_sdk_lists_models(server: EmulatorServer) -> None:
    with client_for(server) as client:
        assert [m.id for m in client.models.list()] == [MODEL]


def test_sdk_plain_completion_with_usage_and_reasoning(server: EmulatorServer) -> None:
    with client_for(server) as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=50
        )
    message = completion.choices[0].message
    assert message.content == "the sea was calm and"
    assert (message.model_extra or {}).get("reasoning_content") == "let me"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 7
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


def test_sdk_streaming_with_usage(server: EmulatorServer) -> None:
    with client_for(server) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    assert text == "the sea was calm and"
    assert reasoning == "let me"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 2 + 7


def test_sdk_raises_rate_limit_error_with_the_headers() -> None:
    config = EmulatorConfig(ttft_ms=1, output_tokens=1, rpm=1)
    with EmulatorServer(config) as server, client_for(server) as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "b"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert int(caught.value.response.headers["retry-after"]) >= 59


def test_sdk_sees_a_5xx_as_a_server_error() -> None:
    with (
        EmulatorServer(EmulatorConfig(ttft_ms=1, output_tokens=1, fault_5xx_rate=1.0)) as server,
        client_for(server) as client,
        pytest.raises(openai.InternalServerError),
    ):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
