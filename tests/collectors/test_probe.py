"""The probe against the emulator as a real server: measurements match the emulator's configured truth.

The emulator runs in a thread of this process, so the two share a GIL: tolerances allow a few ms of that
(benchmarks/probe_accuracy.py measures accuracy with the emulator in its own process).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from decimal import Decimal

import pytest

from collectors.emulator import EmulatorConfig, EmulatorServer
from collectors.probe import Endpoint, make_client, run_probe
from collectors.probe.prompts import CANARIES
from models.catalog import Offer
from models.catalog_parse import parse_catalog
from models.probe import LoadPlan, ProbeRun, summarize

MODEL = EmulatorConfig().model


def probe(base_url: str, plan: LoadPlan, offer: Offer | None = None, **endpoint: float) -> ProbeRun:
    async def go() -> ProbeRun:
        target = Endpoint("emu", base_url, MODEL, **endpoint)  # type: ignore[arg-type]
        async with make_client(target, plan) as client:
            return await run_probe(client, target, plan, offer=offer)

    return asyncio.run(go())


def test_timings_and_tokens_match_the_configured_truth() -> None:
    config = EmulatorConfig(ttft_ms=100, tokens_per_s=100, reasoning_tokens=5, output_tokens=20)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan(requests=6, max_tokens=100))
    results = run.results[1:]  # the first pays for the connection
    assert all(r.ok and r.http_status == 200 and r.finish_reason == "stop" for r in run.results)
    ttft = statistics.median(r.ttft_ms or 0 for r in results)
    assert 100 <= ttft <= 100 + 25
    # the answer starts 5 reasoning tokens, 10 ms apart, after the first token
    assert statistics.median((r.ttfo_ms or 0) - (r.ttft_ms or 0) for r in results) == pytest.approx(50, abs=8)
    assert statistics.median(r.itl_ms or 0 for r in results) == pytest.approx(10, abs=1.5)
    truth = 25 / (24 * 0.010)  # output tokens / (last token − first token)
    assert statistics.median(r.output_tokens_per_s or 0 for r in results) == pytest.approx(truth, rel=0.05)
    for r in run.results:
        assert (r.input_tokens, r.output_tokens, r.reasoning_tokens, r.cached_input_tokens) == (100, 25, 5, 0)
        assert r.e2e_ms is not None and r.e2e_ms >= 100 + 240 - 1  # never early: the last token's due time
        assert not r.tokens_estimated and r.canary_verdict is None


def test_summary_has_the_documented_fields() -> None:
    config = EmulatorConfig(ttft_ms=20, tokens_per_s=1000, output_tokens=5, tpm=1_000_000, rpm=1000)
    with EmulatorServer(config) as server:
        summary = summarize(probe(server.base_url, LoadPlan(requests=3, max_tokens=10)))
    for key in ("requests", "ok", "errors", "ttft_ms", "ttfo_ms", "output_tokens_per_s", "e2e_ms"):
        assert key in summary
    assert (summary["requests"], summary["ok"], summary["errors"]) == (3, 3, {})
    assert set(summary["ttft_ms"]) == {"p50", "p95", "p99", "mean"}
    assert summary["rate_limit"]["limits"] == {"requests": 1000, "tokens": 1_000_000}
    assert (
        997 <= summary["rate_limit"]["lowest_remaining"]["requests"] < 1000
    )  # the bucket refills as it goes
    assert summary["canary_pass_rate"] is None and summary["cost"] is None


def test_sweep_runs_each_concurrency_in_turn() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=50, tokens_per_s=1000, output_tokens=3)) as server:
        run = probe(server.base_url, LoadPlan.from_options((1, 4), requests=8, max_tokens=10))
        peak = server.emulator.stats.max_in_flight
    assert [r.phase for r in run.results] == ["warmup"] + ["c=1"] * 8 + ["c=4"] * 8
    assert peak == 4
    assert [p["phase"] for p in summarize(run)["phases"]] == ["c=1", "c=4"]


def test_by_default_one_warm_up_sizes_the_ramp_and_a_ramp_of_zero_is_a_burst() -> None:
    """The user's defaults: one untimed request first, then workers started over its duration; the warm-up is
    kept (kind `warmup`) but in no figure. `ramp_s=0` starts every worker at once and the run says so."""
    config = EmulatorConfig(ttft_ms=100, tokens_per_s=50, output_tokens=6)  # a request lasts ~0.2 s
    with EmulatorServer(config) as server:
        ramped = probe(server.base_url, LoadPlan.from_options((4,), requests=8, max_tokens=10))
        burst = probe(server.base_url, LoadPlan.from_options((4,), requests=8, max_tokens=10, ramp_s=0))
    (warmup,) = [r for r in ramped.results if r.kind == "warmup"]
    assert warmup.e2e_ms is not None and ramped.ramp_s == pytest.approx(warmup.e2e_ms / 1000)
    assert 0.19 <= ramped.ramp_s < 0.5
    starts = sorted(r.intended_at for r in ramped.results if r.kind == "load")[:4]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(gap >= ramped.ramp_s / 4 - 0.002 for gap in gaps)  # worker i starts at i × ramp / 4
    summary = summarize(ramped)
    assert summary["requests"] == 8 and summary["warmup_requests"] == 1 and not summary["burst"]
    assert burst.burst and summarize(burst)["burst"] and burst.ramp_s == 0
    first = sorted(r.intended_at for r in burst.results if r.kind == "load")[:4]
    assert (first[-1] - first[0]).total_seconds() < 0.05


def test_open_loop_schedules_from_the_plan_not_from_replies() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=5, tokens_per_s=1000, output_tokens=2)) as server:
        even = probe(server.base_url, LoadPlan.from_options(rate_per_s=20, requests=6, max_tokens=5))
        first = probe(server.base_url, LoadPlan.from_options(rate_per_s=20, poisson=True, requests=6, seed=3))
        again = probe(server.base_url, LoadPlan.from_options(rate_per_s=20, poisson=True, requests=6, seed=3))

    def offsets(run: ProbeRun) -> list[float]:
        load = [r for r in run.results if r.kind == "load"]
        return [(r.intended_at - load[0].intended_at).total_seconds() for r in load]

    assert offsets(even) == pytest.approx([0, 0.05, 0.10, 0.15, 0.20, 0.25], abs=3e-6)  # datetimes hold µs
    assert offsets(first) == pytest.approx(offsets(again), abs=3e-6)  # seeded gaps
    assert offsets(first) != pytest.approx(offsets(even), abs=1e-3)


def test_client_side_queueing_shows_in_ttft() -> None:
    """Arrivals every 50 ms, one request at a time, each taking 100 ms: the queue grows and TTFT with it."""
    with EmulatorServer(EmulatorConfig(ttft_ms=100, tokens_per_s=1000, output_tokens=1)) as server:
        plan = LoadPlan(profile="rate", rate_per_s=20, requests=6, max_tokens=5, max_in_flight=1)
        run = probe(server.base_url, plan)
    ttft = [r.ttft_ms or 0 for r in run.results]
    assert ttft[-1] > ttft[0] + 200  # the last waited ~5 × 50 ms in the client
    assert run.results[-1].send_delay_ms > 200


def test_missing_usage_is_counted_and_flagged() -> None:
    config = EmulatorConfig(ttft_ms=5, tokens_per_s=1000, output_tokens=12, reasoning_tokens=4, usage=False)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan(requests=2, max_tokens=100, input_tokens=(1000,)))
    for r in run.results:
        assert r.tokens_estimated
        assert (r.input_tokens, r.output_tokens, r.reasoning_tokens) == (1000, 16, 4)
    assert summarize(run)["tokens_estimated"] == 2


@pytest.mark.parametrize(("distilled", "rate"), [(False, 1.0), (True, 0.0)])
def test_canary_tells_the_full_model_from_a_distilled_one(distilled: bool, rate: float) -> None:
    config = EmulatorConfig(ttft_ms=5, tokens_per_s=1000, reasoning_tokens=3, distilled=distilled)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan(requests=1, max_tokens=5, canary=True))
    canaries = [r for r in run.results if r.kind == "canary"]
    assert [r.canary_id for r in canaries] == [c.id for c in CANARIES]
    assert summarize(run)["canary_pass_rate"] == rate
    assert all(r.phase == "canary" and r.reasoning_tokens == 3 for r in canaries)
    assert all(r.canary_verdict == ("fail" if distilled else "pass") for r in canaries)


CATALOG = {
    "offer": [
        {
            "id": "test/emulated",
            "provider": "test",
            "model": MODEL,
            "versions": [
                {
                    "effective_from": "2024-01-01",
                    "source": "test",
                    "as_of": "2024-01-01",
                    "currency": "CNY",
                    "prices": {"input": "4", "output": "16", "cached_input": "1"},
                }
            ],
        }
    ]
}


def test_the_probe_prices_its_own_tokens_under_the_offer() -> None:
    offer = parse_catalog(CATALOG, "test").get("test/emulated")
    config = EmulatorConfig(ttft_ms=5, tokens_per_s=1000, output_tokens=10, reasoning_tokens=2)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, LoadPlan(requests=3, max_tokens=50), offer=offer)
    per_request = (100 * Decimal(4) + 12 * Decimal(16)) / Decimal(1_000_000)
    assert all(r.cost is not None and r.cost.amount == per_request for r in run.results)
    assert summarize(run)["cost"] == {"amount": str(3 * per_request), "currency": "CNY"}
    assert run.offer_id == "test/emulated"


def test_prompts_of_each_length_reach_the_server_and_never_hit_its_cache() -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=1, tokens_per_s=1000, output_tokens=1)) as server:
        run = probe(server.base_url, LoadPlan(requests=6, max_tokens=5, input_tokens=(100, 1000, 10_000)))
    assert [r.input_tokens for r in run.results] == [100, 1000, 10_000] * 2
    assert all(r.cached_input_tokens == 0 for r in run.results)
    assert set(summarize(run)["by_input_tokens"]) == {"100", "1000", "10000"}


@pytest.mark.parametrize("profile", ["concurrency", "rate"])
def test_a_stop_ends_the_run_sending_nothing_more(profile: str) -> None:
    """What the CLI's first Ctrl-C does: requests already waiting for a slot are not sent either."""
    config = EmulatorConfig(ttft_ms=200, tokens_per_s=1000, output_tokens=2)
    if profile == "rate":  # 50 a second scheduled, one in flight at a time: a queue builds behind it
        plan = LoadPlan(profile="rate", rate_per_s=50, requests=40, max_tokens=5, max_in_flight=1)
    else:
        plan = LoadPlan(concurrency=(2,), requests=40, max_tokens=5)

    async def go(base_url: str) -> ProbeRun:
        target = Endpoint("emu", base_url, MODEL)
        stop = asyncio.Event()
        async with make_client(target, plan) as client:
            asyncio.get_running_loop().call_later(0.3, stop.set)
            return await run_probe(client, target, plan, stop=stop)

    with EmulatorServer(config) as server:
        run = asyncio.run(go(server.base_url))
        received = server.emulator.stats.requests
    assert run.stop_reason.startswith("interrupted")
    assert len(run.results) == received <= 4  # what was in flight at 0.3 s (~0.2 s a request), and no more
    assert len(run.results) + run.not_sent == 40
    # requests built ahead but never sent take no number: the sent ones are numbered in a row
    assert [r.seq for r in run.results] == list(range(len(run.results)))


def test_each_worker_builds_its_next_request_ahead_yet_every_request_is_numbered_and_distinct() -> None:
    """Closed loop: a worker's next request is built while the one before it streams (its send time then holds
    only the send); the last ones built are never sent, and no number or prompt is lost or repeated."""
    config = EmulatorConfig(ttft_ms=20, tokens_per_s=1000, output_tokens=3)
    plan = LoadPlan.from_options((3,), requests=7, max_tokens=5)
    with EmulatorServer(config) as server:
        run = probe(server.base_url, plan)
        received = server.emulator.stats.requests
    assert received == len(run.results) == 8  # the warm-up and 7
    assert [r.seq for r in run.results] == list(range(8))
    assert [r.kind for r in run.results].count("load") == 7 and all(r.ok for r in run.results)
    assert all(r.cached_input_tokens == 0 for r in run.results)  # every prompt its own nonce
