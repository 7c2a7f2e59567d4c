"""Probe protocol logic with `httpx.MockTransport`: SSE reading, what counts as a token, error classes,
Retry-After, usage fields, canary checks, prompts, endpoints files and the load plan."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from collectors.probe import Endpoint, EndpointError, load_endpoints, run_probe
from collectors.probe.client import (
    Exchange,
    build_request,
    classify_status,
    exchange,
    parse_retry_after,
    redact,
)
from collectors.probe.prompts import CANARIES, build_prompt, check_answer, extract_answer
from collectors.probe.runner import Backoff, proxy_for, read_usage
from collectors.probe.tokens import count_tokens, message_tokens
from models.errors import InputError
from models.probe import LoadPlan, percentiles

URL = "http://probe.test/v1"


def sse(*events: dict[str, Any] | str, done: bool = True, newline: str = "\n") -> bytes:
    parts = [f"data: {e if isinstance(e, str) else json.dumps(e)}{newline}{newline}" for e in events]
    if done:
        parts.append(f"data: [DONE]{newline}{newline}")
    return "".join(parts).encode()


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def run_exchange(handler: Callable[[httpx.Request], httpx.Response]) -> Exchange:
    async def go() -> Exchange:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            request = build_request(client, f"{URL}/chat/completions", {}, {"x": 1}, httpx.Timeout(5))
            return await exchange(client, request, 5, "sekrit")

    return asyncio.run(go())


def streamed(body: bytes, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream", **headers}, content=body
    )


def test_role_chunk_is_not_a_token_reasoning_is() -> None:
    body = sse(
        delta(role="assistant", content=""),
        delta(reasoning_content="thinking"),
        delta(content="answer"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    )
    result = run_exchange(streamed(body))
    assert result.error_class is None and result.done
    assert result.first_any is not None and result.first_content is not None
    assert result.reasoning == "thinking" and result.content == "answer"
    assert result.finish_reason == "stop"
    assert result.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    assert result.chunks == 5


def test_reasoning_alias_and_tool_calls_count_as_tokens() -> None:
    result = run_exchange(streamed(sse(delta(reasoning="r"))))
    assert result.first_any is not None and result.first_content is None and result.reasoning == "r"
    tools = run_exchange(streamed(sse(delta(tool_calls=[{"index": 0, "function": {"name": "f"}}]))))
    assert tools.first_any is not None and tools.content == ""


def test_sse_crlf_comments_multiline_data_and_a_last_event_without_blank_line() -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices": [{"delta": \r\ndata: {"content": "a"}}]}\r\n\r\n'
        b"event: message\r\nid: 7\r\n"
        b'data: {"choices": [{"delta": {"content": "b"}}]}\r\n\r\n'
        b"data: [DONE]"
    )
    result = run_exchange(streamed(body))
    assert result.error_class is None
    assert result.content == "ab"
    assert result.done


@pytest.mark.parametrize(
    ("body", "error_class", "words"),
    [
        (sse(delta(content="a"), done=False), "protocol", "without data: [DONE]"),
        (sse(delta(content="a"), "{not json"), "protocol", "not JSON"),
        (sse("[1, 2]"), "protocol", "not a JSON object"),
        (
            sse(delta(content="a"), {"error": {"message": "overloaded", "type": "server_error"}}),
            "overload_5xx",
            "",
        ),
        (sse({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}), "quota_429", ""),
    ],
)
def test_broken_streams_are_classified(body: bytes, error_class: str, words: str) -> None:
    result = run_exchange(streamed(body))
    assert result.error_class == error_class
    assert words in result.error


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, "quota_429"),
        (500, "overload_5xx"),
        (503, "overload_5xx"),
        (529, "overload_5xx"),
        (401, "client_4xx"),
    ],
)
def test_http_errors_are_classified_with_the_provider_sentence(status: int, error_class: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers={
                "retry-after": "2",
                "x-ratelimit-limit-tokens": "10000",
                "X-RateLimit-Remaining-Tokens": "0",
            },
            json={"error": {"message": "Incorrect API key provided: sekrit. Try again."}},
        )

    result = run_exchange(handler)
    assert result.status == status and result.error_class == error_class
    assert "sekrit" not in result.error and "[redacted]" in result.error
    assert result.retry_after_s == 2.0
    assert result.ratelimit == {"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "0"}


def test_a_server_that_ignores_stream_true_is_read_whole() -> None:
    document = {
        "choices": [{"message": {"content": "hi", "reasoning_content": "r"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    result = run_exchange(lambda request: httpx.Response(200, json=document))
    assert result.error_class is None
    assert result.content == "hi" and result.first_any == result.first_content == result.last_byte


def test_network_failures_are_classified() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    assert run_exchange(refuse).error_class == "connection"
    timeout = run_exchange(slow)
    assert timeout.error_class == "timeout" and "next byte" in timeout.error


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "Mon, 23 Nov 2026 12:00:10 GMT"}, 10.0),
        ({"retry-after": "Mon, 23 Nov 2026 11:59:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)) == seconds


def test_status_classes_and_redaction() -> None:
    assert classify_status(200) is None
    assert classify_status(302) == "protocol"
    assert redact("key sekrit in\n  a message", "sekrit") == "key [redacted] in a message"
    assert len(redact("x" * 500, None)) == 200


def test_usage_in_openai_and_deepseek_shapes() -> None:
    openai_usage = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    deepseek_usage = {"prompt_tokens": 100, "completion_tokens": 50, "prompt_cache_hit_tokens": 64}
    assert read_usage(openai_usage) == (100, 64, 50, 30)
    assert read_usage(deepseek_usage) == (100, 64, 50, None)
    assert read_usage({"prompt_tokens": 10}) is None
    assert read_usage({"prompt_tokens": 10, "completion_tokens": 5, "prompt_cache_hit_tokens": 99}) == (
        10,
        10,
        5,
        None,
    )


def test_backoff_strikes_count_rounds_not_requests() -> None:
    backoff = Backoff(max_wait_s=60, max_strikes=3)
    refused = Exchange(t_sent=1.0, error_class="quota_429", retry_after_s=2.0)
    assert backoff.record(refused, at=1.1) is None
    assert (backoff.strikes, backoff.pause_until) == (1, pytest.approx(3.1))
    in_flight = Exchange(t_sent=1.05, error_class="quota_429", retry_after_s=2.0)
    assert backoff.record(in_flight, at=1.2) is None
    assert backoff.strikes == 1  # sent before the pause: the same round
    assert backoff.record(Exchange(t_sent=3.2, error_class="quota_429", retry_after_s=1.0), at=3.3) is None
    assert backoff.strikes == 2
    assert backoff.record(Exchange(t_sent=4.4), at=4.5) is None
    assert backoff.strikes == 0  # a success ends the streak
    no_header = Exchange(t_sent=5.0, error_class="quota_429")
    assert backoff.record(no_header, at=5.0) is None
    assert backoff.pause_until == pytest.approx(6.0)  # 1 s, then 2 s, 4 s… without Retry-After
    assert "120 s" in (
        backoff.record(Exchange(t_sent=7, error_class="quota_429", retry_after_s=120), at=7) or ""
    )


def test_prompts_have_the_asked_length_and_a_fresh_first_token() -> None:
    for size in (32, 100, 1000, 10_000):
        messages = build_prompt(size, "abc123")
        assert len(message_tokens(messages)) == size
    a, b = build_prompt(100, "n1"), build_prompt(100, "n2")
    assert message_tokens(a)[2] != message_tokens(b)[2]  # role marker, "Probe", then the nonce
    assert message_tokens(a)[3:] == message_tokens(b)[3:]
    with pytest.raises(InputError):
        build_prompt(10, "x")
    assert count_tokens("Hello, world!") == 4


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("K", "K"),
        (" **k**. ", "k"),
        ("<think>it is potassium, so K</think>\n\nK", "K"),
        ("The answer is K.", "K"),
        ("Final answer: \\boxed{K}", "K"),
        ("<think>still thinking about", None),
        ("Potassium", None),
        ("", None),
    ],
)
def test_canary_answers_are_read_strictly(reply: str, answer: str | None) -> None:
    assert extract_answer(reply) == answer


def test_canary_verdicts() -> None:
    potassium = next(c for c in CANARIES if c.id == "potassium")
    assert check_answer(potassium, "k") == "pass"
    assert check_answer(potassium, "N") == "fail"
    assert check_answer(potassium, "I think potassium") == "unclear"
    assert all(len(c.answer) == 1 for c in CANARIES)


def test_endpoints_file(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.toml"
    path.write_text(
        """
[[endpoint]]
name = "ark"
base_url = "https://ark.example/api/v3"
model = "deepseek-r1"
api_key_env = "ARK_API_KEY"
offer = "volcengine/deepseek-r1"
headers = { "X-Team" = "search" }
read_timeout_s = 30

[[endpoint]]
name = "local"
base_url = "http://127.0.0.1:8400/v1"
model = "quotascope-emulator"
"""
    )
    endpoints = load_endpoints(path)
    ark = endpoints["ark"]
    assert (ark.read_timeout_s, ark.connect_timeout_s, ark.offer) == (30.0, 10.0, "volcengine/deepseek-r1")
    assert ark.request_headers("k1")["authorization"] == "Bearer k1"
    assert ark.request_headers("k1")["X-Team"] == "search"
    assert (
        endpoints["local"].api_key_env is None
        and endpoints["local"].request_headers(None).get("authorization") is None
    )
    with pytest.raises(InputError, match="ARK_API_KEY"):
        ark.api_key({})
    assert ark.api_key({"ARK_API_KEY": " k1 "}) == "k1"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[[endpoint]]\nname = 'a'\nmodel = 'm'\n", "field 'base_url'"),
        ("[[endpoint]]\nname = 'a'\nbase_url = 'ftp://x'\nmodel = 'm'\n", "http(s) URL"),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://x'\nmodel = 'm'\nread_timeout_s = 0\n",
            "read_timeout_s",
        ),
        ("[[endpoint]]\nname = 'a'\nbase_url = 'http://x'\nmodel = 'm'\nkey = 'sk'\n", "unknown field"),
        ("[[endpoint]]\nname = 'a'\nbase_url = 'http://x'\nmodel = 'm'\n" * 2, "twice"),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://x'\nmodel = 'm'\n"
            "headers = { Authorization = 'x' }\n",
            "api_key_env",
        ),
        ("endpoint = 3\n", "array of tables"),
        ("[[endpoint]\n", "not valid TOML"),
    ],
)
def test_endpoints_file_mistakes_name_file_endpoint_and_field(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "endpoints.toml"
    path.write_text(text)
    with pytest.raises(EndpointError) as caught:
        load_endpoints(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_missing_endpoints_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="no such file"):
        load_endpoints(tmp_path / "nope.toml")


def test_public_url_drops_credentials_and_query() -> None:
    endpoint = Endpoint("x", "https://user:pw@api.example:8443/v1?key=sekrit#frag", "m")
    assert endpoint.public_url == "https://api.example:8443/v1"
    assert endpoint.url == "https://user:pw@api.example:8443/v1/chat/completions?key=sekrit"


def test_load_plan_profiles() -> None:
    assert LoadPlan.from_options((1,)).profile == "sequential"
    assert LoadPlan.from_options((8,)).phases()[0].concurrency == 8
    sweep = LoadPlan.from_options((1, 8, 32))
    assert [p.name for p in sweep.phases()] == ["c=1", "c=8", "c=32"]
    poisson = LoadPlan.from_options((1,), 5.0, True).phases()[0]
    assert (poisson.rate_per_s, poisson.poisson, poisson.name) == (5.0, True, "poisson=5/s")
    with pytest.raises(InputError, match="--poisson needs --rate"):
        LoadPlan.from_options((1,), None, True)
    with pytest.raises(InputError):
        LoadPlan(requests=0)
    with pytest.raises(InputError):
        LoadPlan(profile="rate")


def test_percentiles_interpolate_like_numpy() -> None:
    assert percentiles([1, 2, 3, 4], (50, 95)) == {"p50": 2.5, "p95": pytest.approx(3.85)}
    assert percentiles([], (50,)) == {"p50": None}


def test_a_probe_through_a_mock_transport_times_from_the_intended_send() -> None:
    """A transport that takes 50 ms before answering: the probe's TTFT includes it."""

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert set(body) == {"model", "messages", "stream", "stream_options", "max_tokens"}
        await asyncio.sleep(0.05)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=sse(
                delta(content="a"),
                delta(content="b"),
                {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 2}},
            ),
        )

    async def go() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            run = await run_probe(client, Endpoint("mock", URL, "m"), LoadPlan(requests=3))
        return list(run.results)

    results = asyncio.run(go())
    assert [r.seq for r in results] == [0, 1, 2]
    assert all(r.ok and r.ttft_ms is not None and r.ttft_ms >= 50 for r in results)
    assert all(r.input_tokens == 100 and r.output_tokens == 2 and not r.tokens_estimated for r in results)
    gaps = [b.intended_at - a.intended_at for a, b in itertools.pairwise(results)]
    assert all(gap >= timedelta(milliseconds=50) for gap in gaps)  # sequential: each after the last


def test_proxies_from_the_environment_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxy_for("https://api.example/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert proxy_for("https://api.example/v1/chat/completions") == "http://proxy.corp:3128"
    assert proxy_for("http://api.example/v1/chat/completions") is None
    assert proxy_for("https://127.0.0.1:8400/v1/chat/completions") is None


def test_the_example_endpoints_file_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "data" / "endpoints.example.toml"
    assert sorted(load_endpoints(example)) == ["ark-r1", "deepseek-v4-pro", "emulator"]


def test_a_key_echoed_in_a_ratelimit_header_or_a_stream_error_is_never_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={
                "content-type": "text/event-stream",
                "x-ratelimit-limit-tokens": "10000",
                "x-ratelimit-key": "sekrit",  # the probe's own key, echoed
                "x-ratelimit-account": "sk-proj-0123456789abcdefghij",  # some other key
            },
            content=b'data: {"error": {"message": "bad key sekrit or Bearer abcdefghijklmnop"}}\n\n',
        )

    result = run_exchange(handler)
    kept = json.dumps(result.ratelimit) + result.error
    assert "sekrit" not in kept and "sk-proj-0123456789" not in kept and "abcdefghijklmnop" not in kept
    assert result.ratelimit["x-ratelimit-limit-tokens"] == "10000"


def test_a_stream_chunk_nested_too_deeply_is_a_protocol_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    result = run_exchange(streamed(b"data: " + deep + b"\n\n"))
    assert result.error_class == "protocol" and "not JSON" in result.error
