"""The probe under 429s and injected faults: it backs off as told, stops when the quota is gone, classifies
every failure and never crashes the run."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from collectors.probe import Endpoint, make_client, run_probe
from models.probe import LoadPlan, ProbeRun, RequestResult, summarize

MODEL = EmulatorConfig().model


def probe(base_url: str, plan: LoadPlan, read_timeout_s: float = 10.0) -> ProbeRun:
    async def go() -> ProbeRun:
        target = Endpoint("emu", base_url, MODEL, read_timeout_s=read_timeout_s)
        async with make_client(target, plan) as client:
            return await run_probe(client, target, plan)

    return asyncio.run(go())


def sent_at(r: RequestResult) -> float:
    return (r.intended_at + timedelta(milliseconds=r.send_delay_ms)).timestamp()


def answered_at(r: RequestResult) -> float:
    return (r.intended_at + timedelta(milliseconds=r.e2e_ms or 0)).timestamp()


def test_tight_tpm_gives_429s_and_the_probe_waits_as_told_before_sending_again() -> None:
    # a 100-token bucket refilling at 200 tokens/s; each request costs 32 + 18 = 50 tokens
    config = EmulatorConfig(ttft_ms=5, tokens_per_s=2000, output_tokens=4, tpm=12_000, burst_s=0.5)
    with EmulatorServer(config) as server:
        run = probe(
            server.base_url, LoadPlan.from_options((4,), requests=12, input_tokens=(32,), max_tokens=18)
        )
    refused = [r for r in run.results if r.error_class == "quota_429"]
    assert refused, "a 100-token bucket cannot take 4 requests of 50 at once"
    assert all(r.http_status == 429 and r.retry_after_s is not None for r in refused)
    assert all(r.ratelimit["x-ratelimit-limit-tokens"] == "12000" for r in run.results)
    for r in refused:  # nothing left the client while it was told to wait
        start, end = answered_at(r), answered_at(r) + (r.retry_after_s or 0)
        # but a request already on its way as the 429 arrived may still leave: the pause takes effect when
        # the refused request has let go of its connection, a few ms on a loaded machine (plus the client's
        # event-loop lag: the reply is timed when its bytes arrived, the pause starts when the loop gets to
        # them). A probe that ignored Retry-After would send all through the ~250 ms window.
        late = 0.025 + r.loop_lag_ms / 1000
        assert not [s for s in run.results if start + late < sent_at(s) < end - 0.002]
    assert not run.stopped_early  # successes keep coming between the pauses
    assert summarize(run)["ok"] == 12 - len(refused)
    assert summarize(run)["rate_limit"]["responses_429"] == len(refused)


def test_sustained_429s_stop_the_run_after_three_rounds() -> None:
    config = EmulatorConfig(ttft_ms=1, output_tokens=1, fault_429_rate=1.0, fault_429_retry_ms=200)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan.from_options((2,), requests=40, max_tokens=5))
        seen = server.emulator.stats.requests
    assert run.stopped_early and "3 rounds of 429" in run.stop_reason
    load = [r for r in run.results if r.kind == "load"]
    assert run.not_sent > 0 and len(load) + run.not_sent == 40
    # the warm-up's 429 is the first strike; two waits honoured, at most one round of two in flight each time
    assert seen == len(run.results) == len(load) + 1 <= 6
    assert (run.finished_at - run.started_at).total_seconds() >= 0.4


def test_a_retry_after_beyond_the_wait_budget_stops_at_once() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=1, output_tokens=1, rpm=1)) as server:
        run = probe(server.base_url, LoadPlan(requests=10, max_tokens=5, max_retry_wait_s=5))
    assert [r.error_class for r in run.results] == [None, "quota_429"]
    assert run.stopped_early and "Retry-After asked for" in run.stop_reason
    assert run.not_sent == 8


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [("5xx", "overload_5xx"), ("drop", "connection"), ("malformed", "protocol"), ("stall", "timeout")],
)
def test_each_fault_is_classified(fault: str, error_class: str) -> None:
    config = EmulatorConfig(
        ttft_ms=5, tokens_per_s=1000, output_tokens=10, fault_stall_s=3, **{f"fault_{fault}_rate": 1.0}
    )
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan(requests=3, max_tokens=20), read_timeout_s=0.3)
    assert [r.error_class for r in run.results] == [error_class] * 3
    assert all(r.error for r in run.results)
    assert summarize(run)["errors"] == {error_class: 3}


def test_mixed_faults_never_crash_the_run_and_match_what_the_emulator_injected() -> None:
    config = EmulatorConfig(
        ttft_ms=5,
        tokens_per_s=2000,
        output_tokens=8,
        fault_5xx_rate=0.15,
        fault_drop_rate=0.15,
        fault_malformed_rate=0.15,
        fault_stall_rate=0.1,
        fault_stall_s=2,
        seed=11,
    )
    with EmulatorServer(config) as server:
        run = probe(
            server.base_url,
            LoadPlan.from_options((4,), requests=40, max_tokens=20, warmup_requests=0),  # every fault counted
            read_timeout_s=0.3,
        )
        injected = dict(server.emulator.stats.faults)
    errors = summarize(run)["errors"]
    assert len(run.results) == 40
    assert errors.get("overload_5xx", 0) == injected.get("5xx", 0)
    assert errors.get("connection", 0) == injected.get("drop", 0)
    assert errors.get("protocol", 0) == injected.get("malformed", 0)
    assert errors.get("timeout", 0) == injected.get("stall", 0)
    assert summarize(run)["ok"] == 40 - sum(injected.values()) > 0


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = probe(f"http://127.0.0.1:{port}/v1", LoadPlan(requests=2))
    assert [r.error_class for r in run.results] == ["connection", "connection"]
    assert all(r.http_status is None and r.ttft_ms is None for r in run.results)


def test_a_concurrency_cap_shows_as_429_with_its_header() -> None:
    config = EmulatorConfig(ttft_ms=100, tokens_per_s=1000, output_tokens=2, max_concurrency=2)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan.from_options((4,), requests=4, max_tokens=5, max_429_strikes=9))
    assert summarize(run)["errors"].get("quota_429", 0) >= 1
    assert summarize(run)["rate_limit"]["limits"]["concurrency"] == 2


def test_the_sharded_transport_spreads_requests_and_frees_every_slot() -> None:
    from collectors.probe.transport import ShardedTransport

    plan = LoadPlan.from_options((40,), requests=80, max_tokens=5)
    target_config = EmulatorConfig(ttft_ms=300, tokens_per_s=1000, output_tokens=2)

    async def go(base_url: str) -> tuple[ProbeRun, list[int], int]:
        target = Endpoint("emu", base_url, MODEL)
        async with make_client(target, plan) as client:
            transport = client._transport
            assert isinstance(transport, ShardedTransport)
            run = await run_probe(client, target, plan)
            return run, list(transport.open), len(transport.pools)

    with EmulatorServer(target_config) as server:
        run, still_open, pools = asyncio.run(go(server.base_url))
        peak = server.emulator.stats.max_in_flight
    assert pools == 3  # 40 connections in pools of at most 16
    assert still_open == [0, 0, 0]
    assert summarize(run)["ok"] == 80 and peak == 40
