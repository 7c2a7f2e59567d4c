"""The emulator as a real uvicorn server, read with plain httpx: wire format, timing, cache, limits."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from collectors.probe.prompts import CANARIES, build_prompt

MODEL = EmulatorConfig().model


def chat(base_url: str, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], **body}
    return httpx.post(f"{base_url}/chat/completions", json=payload, timeout=10)


def stream_events(base_url: str, **body: Any) -> list[tuple[float, str]]:
    """(seconds since the request was sent, data) for every SSE event, on a warmed-up connection."""
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": True, **body}
    events = []
    with httpx.Client(timeout=10) as client:
        client.get(f"{base_url}/models")  # connect and warm up before timing
        start = time.perf_counter()
        with client.stream("POST", f"{base_url}/chat/completions", json=payload) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append((time.perf_counter() - start, line[6:]))
    return events


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(ttft_ms=80, tokens_per_s=100, output_tokens=6, reasoning_tokens=3)
    with EmulatorServer(config) as server:
        yield server


def test_models_lists_the_one_model(emulator: EmulatorServer) -> None:
    response = httpx.get(f"{emulator.base_url}/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [MODEL]


def test_stream_sends_role_then_reasoning_then_answer_then_usage_and_done(emulator: EmulatorServer) -> None:
    events = stream_events(emulator.base_url, stream_options={"include_usage": True})
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:] if c["choices"]]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    answer = "".join(d.get("content") or "" for d in deltas)
    assert reasoning == "let me think"
    assert answer == "the sea was calm and grey"
    first_answer = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(not d.get("content") for d in deltas[:first_answer])  # reasoning strictly first
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 9
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 3}
    assert usage["prompt_tokens"] == 2  # role marker + "hello"
    assert usage["total_tokens"] == 11


def test_tokens_arrive_on_the_configured_schedule(emulator: EmulatorServer) -> None:
    runs = [token_events(stream_events(emulator.base_url)) for _ in range(3)]
    assert all(len(tokens) == 9 for tokens in runs)
    # a loaded machine makes a token late, never early: the least late of three runs shows the schedule
    best = [min(t for t, _ in same) for same in zip(*runs, strict=True)]
    for i, t in enumerate(best):  # TTFT 80 ms, then 10 ms apart (1 ms for a timer's rounding)
        assert t >= 0.080 + i * 0.010 - 0.001
    assert best[0] < 0.080 + 0.040
    assert best[-1] < 0.160 + 0.015  # a rate a sixth slow, or the TTFT paid twice, is later than this


def test_without_include_usage_no_usage_chunk(emulator: EmulatorServer) -> None:
    events = stream_events(emulator.base_url)
    assert not any("usage" in json.loads(data) for _, data in events if data != "[DONE]")


def test_max_tokens_cuts_reasoning_first_and_reports_length(emulator: EmulatorServer) -> None:
    response = chat(emulator.base_url, max_tokens=4)
    body = response.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["reasoning_content"] == "let me think"
    assert choice["message"]["content"] == "the"
    assert body["usage"]["completion_tokens"] == 4


def test_prefix_cache_reports_hits_in_64_token_blocks_in_both_vendors_fields() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=1)) as server:
        shared = build_prompt(300, "same")  # 300 tokens: 4 whole blocks of 64 = 256
        first = chat(server.base_url, messages=shared).json()["usage"]
        second = chat(server.base_url, messages=shared).json()["usage"]
        other = chat(server.base_url, messages=build_prompt(300, "other")).json()["usage"]
    assert first["prompt_tokens"] == 300
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == 256
    assert second["prompt_cache_hit_tokens"] == 256
    assert second["prompt_cache_miss_tokens"] == 44
    assert other["prompt_cache_hit_tokens"] == 0  # a different first token breaks the prefix


def test_rpm_limit_answers_429_with_retry_after_and_headers_on_every_response() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=1, rpm=2)) as server:
        first, second, third = (chat(server.base_url) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert 29 <= int(third.headers["retry-after"]) <= 30  # 2 per minute: a slot every 30 s
    assert 29_000 < int(third.headers["retry-after-ms"]) <= 30_000
    assert third.json()["error"]["code"] == "rate_limit_exceeded"


def test_tpm_charges_prompt_plus_max_tokens_on_arrival() -> None:
    config = EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=1, tpm=600, burst_s=10)
    with EmulatorServer(config) as server:  # a 100-token bucket refilling at 10 tokens/s
        ok = chat(server.base_url, max_tokens=60)  # 2 + 60 charged
        refused = chat(server.base_url, max_tokens=60)
        too_large = chat(server.base_url, max_tokens=500)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-remaining-tokens"] == "38"
    assert refused.status_code == 429
    assert 2.0 < int(refused.headers["retry-after-ms"]) / 1000 <= 2.4  # 24 tokens short at 10/s
    assert refused.headers["retry-after"] == "3"
    assert too_large.status_code == 429
    assert "too large" in too_large.json()["error"]["message"]


def test_concurrency_cap_refuses_the_request_over_it() -> None:
    config = EmulatorConfig(ttft_ms=300, tokens_per_s=1000, output_tokens=1, max_concurrency=1)
    with (
        EmulatorServer(config) as server,
        httpx.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True},
        ) as held,
    ):
        assert held.status_code == 200
        over = chat(server.base_url)
        assert over.status_code == 429
        assert over.headers["x-ratelimit-remaining-concurrency"] == "0"
        held.read()
    with EmulatorServer(config) as server:
        assert chat(server.base_url).status_code == 200  # the slot is freed after the last byte


def test_strict_about_parameters_model_and_key() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=1, output_tokens=1, require_api_key=True)) as server:
        url = f"{server.base_url}/chat/completions"
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        auth = {"authorization": "Bearer anything"}
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"authorization": "Basic abc"}).status_code == 401
        assert httpx.post(url, json=body, headers=auth).status_code == 200
        vendor = httpx.post(url, json={**body, "ignore_eos": True}, headers=auth)
        assert vendor.status_code == 400
        assert "ignore_eos" in vendor.json()["error"]["message"]
        unknown = httpx.post(url, json={**body, "model": "gpt-9"}, headers=auth)
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
        assert httpx.post(url, content=b"{not json", headers=auth).status_code == 400
        assert httpx.post(url, json={**body, "max_tokens": 0}, headers=auth).status_code == 400
        assert httpx.get(f"{server.base_url}/models").status_code == 401


def test_canaries_answered_right_and_wrong_when_distilled() -> None:
    for distilled in (False, True):
        with EmulatorServer(EmulatorConfig(ttft_ms=1, tokens_per_s=1000, distilled=distilled)) as server:
            for canary in CANARIES:
                messages = [{"role": "user", "content": canary.question}]
                answer = chat(server.base_url, messages=messages).json()["choices"][0]["message"]["content"]
                assert len(answer) == 1
                assert (answer == canary.answer) is not distilled


def test_5xx_fault_is_a_503_after_the_charge() -> None:
    config = EmulatorConfig(ttft_ms=1, output_tokens=1, fault_5xx_rate=1.0, rpm=10)
    with EmulatorServer(config) as server:
        response = chat(server.base_url)
        assert response.status_code == 503
        assert response.headers["x-ratelimit-remaining-requests"] == "9"
        assert server.emulator.stats.faults == {"5xx": 1}


def test_drop_fault_cuts_the_connection_mid_stream() -> None:
    config = EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=20, fault_drop_rate=1.0)
    with EmulatorServer(config) as server, pytest.raises(httpx.RemoteProtocolError):
        stream_events(server.base_url)


def test_malformed_fault_breaks_one_chunk_and_the_stream_goes_on() -> None:
    config = EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=20, fault_malformed_rate=1.0)
    with EmulatorServer(config) as server:
        events = stream_events(server.base_url)
    broken = []
    for _, data in events[:-1]:
        try:
            json.loads(data)
        except ValueError:
            broken.append(data)
    assert len(broken) == 1
    assert events[-1][1] == "[DONE]"


def test_stall_fault_stops_the_stream_and_a_client_timeout_ends_it() -> None:
    config = EmulatorConfig(
        ttft_ms=1, tokens_per_s=1000, output_tokens=5, fault_stall_rate=1.0, fault_stall_s=5
    )
    with EmulatorServer(config) as server:
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            payload = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True}
            with httpx.stream(
                "POST",
                f"{server.base_url}/chat/completions",
                json=payload,
                timeout=httpx.Timeout(5, read=0.3),
            ) as response:
                for _ in response.iter_bytes():
                    pass
        assert time.perf_counter() - started < 2
    # leaving the block stops the server promptly although a stalled stream was open: it was cancelled


def test_429_fault_says_the_quota_went_elsewhere() -> None:
    config = EmulatorConfig(ttft_ms=1, output_tokens=1, fault_429_rate=1.0, fault_429_retry_ms=250)
    with EmulatorServer(config) as server:
        response = chat(server.base_url)
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "250"
    assert response.headers["retry-after"] == "1"


def test_no_usage_mode_sends_none_even_when_asked() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=3, usage=False)) as server:
        events = stream_events(server.base_url, stream_options={"include_usage": True})
        whole = chat(server.base_url).json()
    assert not any("usage" in json.loads(data) for _, data in events if data != "[DONE]")
    assert "usage" not in whole


def test_seeded_faults_are_reproducible() -> None:
    def outcomes(seed: int) -> list[int]:
        config = EmulatorConfig(ttft_ms=1, output_tokens=1, fault_5xx_rate=0.5, seed=seed)
        with EmulatorServer(config) as server:
            return [chat(server.base_url).status_code for _ in range(12)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert set(first) == {200, 503}


def token_events(events: list[tuple[float, str]]) -> list[tuple[float, str]]:
    out = []
    for t, data in events:
        if data == "[DONE]":
            continue
        choices = json.loads(data)["choices"]
        delta = choices[0]["delta"] if choices else {}
        text = delta.get("content") or delta.get("reasoning_content")
        if text:
            out.append((t, text))
    return out


def test_chunking_groups_tokens_but_keeps_first_and_last_on_time() -> None:
    config = EmulatorConfig(ttft_ms=50, tokens_per_s=100, output_tokens=21, chunk_ms=50)
    with EmulatorServer(config) as server:
        runs = [token_events(stream_events(server.base_url)) for _ in range(3)]
    for tokens in runs:
        assert len(tokens) < 21 / 3  # ~5 tokens per chunk
        text = "".join(text for _, text in tokens)
        assert (
            len(text.split()) == 21
            and text.startswith("the sea was calm")
            and text.endswith("home the sea was calm")
        )
        assert tokens[0][0] >= 0.050 and tokens[-1][0] >= 0.250  # never early: 21 tokens, 10 ms apart
    # lateness is the machine's: the least late of three runs shows the schedule
    assert min(tokens[0][0] for tokens in runs) < 0.050 + 0.040
    assert min(tokens[-1][0] for tokens in runs) < 0.250 + 0.020  # a tenth slow is later than this


def test_prefill_speed_makes_uncached_prompts_slower_to_start() -> None:
    config = EmulatorConfig(ttft_ms=20, tokens_per_s=1000, output_tokens=1, prefill_tokens_per_s=10_000)
    with EmulatorServer(config) as server:
        colds, warms = [], []
        for k in range(3):  # a new prompt each time for a cold start, then the same one again
            prompt = build_prompt(1000, f"long{k}")
            colds.append(token_events(stream_events(server.base_url, messages=prompt))[0][0])
            warms.append(token_events(stream_events(server.base_url, messages=prompt))[0][0])
    assert min(colds) >= 0.020 + 0.100  # 1000 uncached tokens at 10,000/s
    assert min(warms) >= 0.020 + 0.004  # 960 served from cache, 40 to prefill
    assert min(colds) - min(warms) == pytest.approx(0.096, abs=0.030)  # the least late of each


def test_jitter_spreads_ttft_around_the_setting() -> None:
    config = EmulatorConfig(ttft_ms=100, tokens_per_s=1000, output_tokens=1, jitter=0.5, seed=5)
    with EmulatorServer(config) as server:
        firsts = [token_events(stream_events(server.base_url))[0][0] for _ in range(8)]
    assert all(t >= 0.050 for t in firsts)  # never early: 100 ms less half of it at most
    # at most half of it later: a loaded machine may add lateness to one, not to most
    assert statistics.median(firsts) <= 0.150 + 0.025 and max(firsts) < 0.150 + 0.100
    assert max(firsts) - min(firsts) > 0.020
