"""Token buckets and a concurrency cap, as providers enforce TPM / RPM / concurrency limits.

A bucket holds at most `limit × burst_s / 60` units and refills continuously at `limit / 60` per second
(Anthropic documents exactly this; OpenAI says limits may be enforced over sub-minute windows). A request is
admitted only if every bucket can pay for it and a concurrency slot is free; a refused request pays nothing.
Pure: time is passed in, so the maths is tested without sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class TokenBucket:
    def __init__(self, limit_per_minute: int, now: float, burst_s: float = 60.0) -> None:
        self.limit = limit_per_minute
        self.rate_per_s = limit_per_minute / 60.0
        self.capacity = limit_per_minute * burst_s / 60.0
        self.level = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
            self.updated = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be paid: 0 now, `inf` if it exceeds the capacity."""
        self._refill(now)
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate_per_s)

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, math.floor(self.level))

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return (self.capacity - self.level) / self.rate_per_s


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    retry_after_s: float = 0.0
    reason: str = ""  # "requests", "tokens", "concurrency" or "too_large"


class Limiter:
    def __init__(
        self,
        now: float,
        tpm: int | None = None,
        rpm: int | None = None,
        max_concurrency: int | None = None,
        burst_s: float = 60.0,
    ) -> None:
        self.tokens = TokenBucket(tpm, now, burst_s) if tpm else None
        self.requests = TokenBucket(rpm, now, burst_s) if rpm else None
        self.max_concurrency = max_concurrency
        self.in_flight = 0

    def admit(self, tokens: int, now: float) -> Admission:
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            return Admission(False, 1.0, "concurrency")
        waits: list[tuple[float, str]] = []
        if self.requests is not None:
            waits.append((self.requests.wait_s(1, now), "requests"))
        if self.tokens is not None:
            wait = self.tokens.wait_s(tokens, now)
            waits.append((wait, "too_large" if math.isinf(wait) else "tokens"))
        longest = max(waits, default=(0.0, ""))
        if longest[0] > 0:
            return Admission(False, longest[0], longest[1])
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        self.in_flight += 1
        return Admission(True)

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for every configured limit (concurrency is our own name)."""
        out: dict[str, str] = {}
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            out[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
            out[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining(now))
            out[f"x-ratelimit-reset-{name}"] = duration_text(bucket.reset_s(now))
        if self.max_concurrency is not None:
            out["x-ratelimit-limit-concurrency"] = str(self.max_concurrency)
            out["x-ratelimit-remaining-concurrency"] = str(max(0, self.max_concurrency - self.in_flight))
        return out


def duration_text(seconds: float) -> str:
    """A reset time as OpenAI writes it: `120ms`, `1.5s`, `6m0s`."""
    millis = math.ceil(seconds * 1000 - 1e-6)
    if millis < 1000:
        return f"{millis}ms"
    minutes, rest = divmod(millis / 1000, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text
