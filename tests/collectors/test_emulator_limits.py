"""The emulator's pure parts: token buckets, the limiter, reset-time text, the prefix cache."""

from __future__ import annotations

import math

import pytest

from collectors.emulator.cache import PrefixCache
from collectors.emulator.config import EmulatorConfig
from collectors.emulator.limiter import Limiter, TokenBucket, duration_text
from models.errors import InputError


def test_bucket_starts_full_and_refills_continuously() -> None:
    bucket = TokenBucket(600, now=0.0)  # 10 per second, holds 600
    assert bucket.remaining(0.0) == 600
    bucket.take(600, 0.0)
    assert bucket.remaining(0.0) == 0
    assert bucket.remaining(1.5) == 15
    assert bucket.wait_s(20, 1.5) == pytest.approx(0.5)
    assert bucket.reset_s(1.5) == pytest.approx(58.5)
    assert bucket.remaining(1000.0) == 600  # never above capacity


def test_burst_shrinks_the_bucket_not_the_rate() -> None:
    bucket = TokenBucket(6000, now=0.0, burst_s=1.0)  # 100 per second, holds 100
    assert bucket.capacity == 100
    assert bucket.wait_s(101, 0.0) == math.inf
    bucket.take(100, 0.0)
    assert bucket.wait_s(50, 0.0) == pytest.approx(0.5)


def test_limiter_admits_until_a_bucket_is_empty_and_charges_nothing_for_a_refusal() -> None:
    limiter = Limiter(0.0, tpm=600, rpm=2)
    assert limiter.admit(100, 0.0).admitted
    assert limiter.admit(100, 0.0).admitted
    refused = limiter.admit(100, 0.0)
    assert not refused.admitted and refused.reason == "requests"
    assert refused.retry_after_s == pytest.approx(30.0)  # 2 per minute: one every 30 s
    assert limiter.tokens is not None and limiter.tokens.remaining(0.0) == 400
    assert limiter.admit(10_000, 60.0).reason == "too_large"


def test_the_longest_wait_names_the_binding_limit() -> None:
    limiter = Limiter(0.0, tpm=60, rpm=600)  # 1 token/s, 10 requests/s
    assert limiter.admit(60, 0.0).admitted
    refused = limiter.admit(30, 0.0)
    assert (refused.reason, refused.retry_after_s) == ("tokens", pytest.approx(30.0))


def test_concurrency_cap_counts_open_requests_until_released() -> None:
    limiter = Limiter(0.0, max_concurrency=2)
    assert limiter.admit(1, 0.0).admitted and limiter.admit(1, 0.0).admitted
    refused = limiter.admit(1, 0.0)
    assert (refused.admitted, refused.reason) == (False, "concurrency")
    limiter.release()
    assert limiter.admit(1, 0.0).admitted
    headers = limiter.headers(0.0)
    assert headers["x-ratelimit-limit-concurrency"] == "2"
    assert headers["x-ratelimit-remaining-concurrency"] == "0"


def test_headers_follow_openai_names_and_duration_format() -> None:
    limiter = Limiter(0.0, tpm=60_000, rpm=60)
    limiter.admit(1_000, 0.0)
    headers = limiter.headers(0.0)
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "60000",
        "x-ratelimit-remaining-tokens": "59000",
        "x-ratelimit-reset-tokens": "1s",
    }
    assert Limiter(0.0).headers(0.0) == {}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0201, "21ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (360.0, "6m0s"),
        (61.25, "1m1.25s"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_prefix_cache_hits_whole_blocks_from_token_zero() -> None:
    cache = PrefixCache(unit=4)
    first = [f"t{i}" for i in range(10)]
    assert cache.hit_and_store(first) == 0
    assert cache.hit_and_store(first) == 8  # 2 whole blocks of 4; the last 2 tokens are never cached
    longer = [*first[:9], "other", *[f"x{i}" for i in range(10)]]
    assert cache.hit_and_store(longer) == 8  # shares 9 tokens = 2 whole blocks
    changed_first = ["new", *first[1:]]
    assert cache.hit_and_store(changed_first) == 0  # a prefix match starts at token 0
    assert cache.hit_and_store(first[:3]) == 0  # under one unit is never cached


def test_prefix_cache_evicts_least_recently_used_blocks() -> None:
    cache = PrefixCache(unit=2, capacity=4)
    a, b = ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]
    cache.hit_and_store(a)
    cache.hit_and_store(b)
    assert len(cache) == 4
    cache.hit_and_store(["c1", "c2"])  # evicts a's first block
    assert cache.hit_and_store(a) == 0
    assert cache.hit_and_store(b) == 0  # a's re-store evicted b's blocks


@pytest.mark.parametrize(
    "bad",
    [
        {"tokens_per_s": 0},
        {"jitter": 1.0},
        {"output_tokens": 0},
        {"tpm": 0},
        {"fault_5xx_rate": 0.6, "fault_drop_rate": 0.6},
        {"fault_stall_rate": -0.1},
        {"burst_s": 0},
    ],
)
def test_config_refuses_impossible_settings(bad: dict[str, float]) -> None:
    with pytest.raises(InputError):
        EmulatorConfig(**bad)  # type: ignore[arg-type]
