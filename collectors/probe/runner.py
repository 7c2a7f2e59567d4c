"""Running a load plan against one endpoint: schedules, honouring Retry-After, early stop, measurements.

Warm-up first (`warmup_requests`, one by default from the CLI): sent one after another before anything is
timed, so the first timed request does not pay for the first connection, and timed to learn how long one
request lasts. Stored as kind `warmup` (they cost tokens), never in the figures.

Closed loop (sequential, fixed concurrency, sweep): each of C workers sends its next request the moment its
previous one let go of its connection, so that moment is the request's intended send time `t0`. Workers
start spread over `ramp_s` (by default the warm-up's duration: the load reaches C in flight after one
request's time, the same stagger it keeps afterwards); `ramp_s=0` starts them all at once, a burst, whose
TTFT then includes the client's own start-up (at 256 streams, tens of ms on this client). Open loop
(constant rate, Poisson): request i is due at its scheduled arrival; if the client is late (event loop
busy, `max_in_flight` reached) the delay counts against TTFT instead of vanishing.

On a 429 every worker pauses for `retry-after-ms` / `Retry-After` (exponential 1, 2, 4 s… without one);
an open schedule shifts by the pause rather than charging it to the requests. A *strike* is a 429 for a
request sent after the latest pause ended; `max_429_strikes` strikes with no success in between stop the
run, as does a Retry-After longer than `max_retry_wait_s`: the probe does not burn quota it has been told is
gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import random
import statistics
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from collectors.probe.client import Exchange, build_request, exchange, now
from collectors.probe.endpoints import Endpoint
from collectors.probe.lag import LagMonitor
from collectors.probe.prompts import CANARIES, Canary, build_prompt, canary_messages, check_answer
from collectors.probe.tokens import count_tokens, message_tokens
from collectors.probe.transport import ShardedTransport
from models.catalog import Offer
from models.errors import InputError
from models.money import Money
from models.pricing import TokenCounts, rates_at
from models.probe import LagStats, LoadPlan, Phase, ProbeRun, RequestKind, RequestResult

INTERRUPTED = "interrupted: nothing more was sent, and the requests in flight were finished"


class Backoff:
    """Shared by every worker of a run: when sending may resume, and whether to give up."""

    def __init__(self, max_wait_s: float, max_strikes: int) -> None:
        self.max_wait_s = max_wait_s
        self.max_strikes = max_strikes
        self.pause_until = 0.0
        self.strikes = 0
        self.pauses = 0

    async def ready(
        self,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stopped: Callable[[], bool] = lambda: False,
    ) -> float:
        """Wait out any pause, unless the run is `stopped` (`sleep` may wake early for that); the moment
        the pause ended (0 if there was none to wait for)."""
        waited = False
        while (wait := self.pause_until - now()) > 0 and not stopped():
            waited = True
            await sleep(wait)
        return self.pause_until if waited else 0.0

    def record(self, sent: Exchange, at: float) -> str | None:
        """Take one reply into account; a reason to stop the run, or None."""
        if sent.error_class == "quota_429":
            if sent.t_sent >= self.pause_until:
                self.strikes += 1
            if self.strikes >= self.max_strikes:
                return (
                    f"stopped after {self.strikes} rounds of 429 in a row although Retry-After was honoured; "
                    "the quota looks exhausted"
                )
            wait = sent.retry_after_s
            if wait is None:
                wait = min(2.0 ** (self.strikes - 1), self.max_wait_s)
            if wait > self.max_wait_s:
                return (
                    f"Retry-After asked for {wait:g} s, more than the {self.max_wait_s:g} s the probe waits"
                )
            if at + wait > self.pause_until:
                self.pause_until = at + wait
                self.pauses += 1
        elif sent.error_class is None:
            self.strikes = 0
        return None


@dataclass(frozen=True, slots=True)
class Work:
    """What one request asks; its `seq` is given when it is sent (a request built ahead may never be)."""

    phase: Phase
    kind: RequestKind
    messages: list[dict[str, str]]
    max_tokens: int
    input_tokens_target: int | None = None
    canary: Canary | None = None


def read_usage(usage: Mapping[str, Any] | None) -> tuple[int, int, int, int | None] | None:
    """(input, cached input, output, reasoning or None) from OpenAI or DeepSeek usage fields."""
    if not isinstance(usage, Mapping):
        return None

    def whole(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    prompt, completion = whole(usage.get("prompt_tokens")), whole(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = whole(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if cached is None:
        cached = whole(usage.get("prompt_cache_hit_tokens"))
    out_details = usage.get("completion_tokens_details")
    reasoning = whole(out_details.get("reasoning_tokens")) if isinstance(out_details, Mapping) else None
    return (
        prompt,
        min(cached or 0, prompt),
        completion,
        None if reasoning is None else min(reasoning, completion),
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


class _Session:
    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        plan: LoadPlan,
        api_key: str | None,
        offer: Offer | None,
        run_id: str,
        lag_interval_s: float,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.plan = plan
        self.secret = api_key
        self.headers = endpoint.request_headers(api_key)
        self.timeout = endpoint.timeout()
        self.offer = offer
        self.run_id = run_id
        self.lag = LagMonitor(lag_interval_s)
        # make_client's transport gates each of its pools; any other client gets one gate for the run
        self.gate = None if isinstance(client._transport, ShardedTransport) else asyncio.Lock()
        self.backoff = Backoff(plan.max_retry_wait_s, plan.max_429_strikes)
        # what each request gave, turned into results once the run is over: between one request's end and
        # the next one's send (its intended send time) a closed-loop worker does nothing it can put off
        self.sent: list[tuple[int, Work, float, Exchange, float]] = []
        self.stop_reason = ""
        self.stop = stop
        self.not_sent = 0
        self.next_seq = 0  # requests sent
        self.prompts = 0  # load and warm-up prompts built, each with its own nonce
        self.ramp_s = plan.ramp_s or 0.0
        self.started_at = datetime.now(UTC).replace(tzinfo=None)
        self.mono_start = now()
        self.deadline = self.mono_start + plan.max_duration_s if plan.max_duration_s else math.inf

    # ------------------------------------------------------------------------------------------- control

    def stopping(self) -> bool:
        if not self.stop_reason and now() >= self.deadline:
            self.stop_reason = f"the {self.plan.max_duration_s:g} s time budget ran out"
        if not self.stop_reason and self.stop is not None and self.stop.is_set():
            self.stop_reason = INTERRUPTED
        return bool(self.stop_reason)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep, woken early when the run is told to stop."""
        if self.stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def resumed(self) -> float:
        """The backoff's ready(), cut short when the run is told to stop."""
        return await self.backoff.ready(self.sleep, self.stopping)

    def load_work(self, phase: Phase) -> Work:
        n = self.prompts
        self.prompts += 1
        size = self.plan.input_tokens[n % len(self.plan.input_tokens)]
        nonce = f"{self.run_id[:8]}n{n}"
        return Work(phase, "load", build_prompt(size, nonce, self.plan.seed), self.plan.max_tokens, size)

    def outgoing(self, phase: Phase) -> tuple[Work, httpx.Request]:
        """A load request and the HTTP request carrying it, built before its send time (see `send`)."""
        work = self.load_work(phase)
        return work, self.request(work)

    def request(self, work: Work) -> httpx.Request:
        body = {
            "model": self.endpoint.model,
            "messages": work.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            self.endpoint.max_tokens_field: work.max_tokens,
        }
        return build_request(self.client, self.endpoint.url, self.headers, body, self.timeout)

    async def run(self) -> ProbeRun:
        # what the process holds before the run is kept out of every collection during it (gc.freeze): a full
        # pass over the CLI's imports and catalog would otherwise land in some request's TTFT
        gc.collect()
        gc.freeze()
        self.lag.start()
        try:
            await self.warm_up()
            for phase in self.plan.phases():
                if self.stopping():
                    self.not_sent += self.plan.requests
                elif phase.concurrency is not None:
                    await self.closed_loop(phase, phase.concurrency)
                else:
                    await self.open_loop(phase)
            if self.plan.canary:
                await self.canaries()
        finally:
            gc.unfreeze()
            await self.lag.stop()
        results = [self.measure(*sent) for sent in self.sent]
        return ProbeRun(
            run_id=self.run_id,
            endpoint=self.endpoint.name,
            base_url=self.endpoint.public_url,
            model=self.endpoint.model,
            offer_id=self.endpoint.offer if self.offer is None else self.offer.id,
            plan=self.plan,
            started_at=self.started_at,
            finished_at=self.wall(now()),
            results=tuple(sorted(results, key=lambda r: r.seq)),
            stopped_early=bool(self.stop_reason),
            stop_reason=self.stop_reason,
            not_sent=self.not_sent,
            loop_lag=LagStats.of(self.lag.lags_ms),
            ramp_s=self.ramp_s,
        )

    async def warm_up(self) -> None:
        """Send the warm-up requests one after another; size the ramp from their duration if asked to."""
        phase = Phase("warmup", concurrency=1)
        ready_at = now()
        durations_ms: list[float] = []
        for _ in range(self.plan.warmup_requests):
            resumed = await self.resumed()
            if self.stopping():
                break
            size = self.plan.input_tokens[0]
            messages = build_prompt(size, f"{self.run_id[:8]}w{self.prompts}", self.plan.seed)
            self.prompts += 1
            work = Work(phase, "warmup", messages, self.plan.max_tokens, size)
            t0 = max(ready_at, resumed)
            ready_at = await self.send(work, t0)
            *_, sent, end = self.sent[-1]
            if sent.error_class is None:
                durations_ms.append((end - t0) * 1000)
        if self.plan.ramp_s is None:
            # the median warm-up: a request's duration, so C workers reach the stagger they keep afterwards;
            # without any reply to time, a burst (and the run says so)
            self.ramp_s = statistics.median(durations_ms) / 1000 if durations_ms else 0.0

    async def closed_loop(self, phase: Phase, concurrency: int) -> None:
        remaining = self.plan.requests
        # each worker's first request is built before the phase's clock starts (building 256 once it runs
        # would make the first workers late for their ramp slots); the next while the one before streams
        firsts = [self.outgoing(phase) for _ in range(min(concurrency, remaining))]
        start = now()

        async def worker(index: int) -> None:
            nonlocal remaining
            ready_at = start + index * self.ramp_s / concurrency
            upcoming = firsts[index : index + 1]  # the worker's next request, built before its send time

            def ahead() -> None:
                if not upcoming and remaining > 0:
                    upcoming.append(self.outgoing(phase))

            if (delay := ready_at - now()) > 0:
                await self.sleep(delay)
            while remaining > 0 and not self.stopping():
                remaining -= 1  # claimed before any wait: the other workers see it gone
                resumed = await self.resumed()
                if self.stopping():
                    remaining += 1  # not sent after all
                    break
                work, request = upcoming.pop() if upcoming else self.outgoing(phase)
                ready_at = await self.send(work, max(ready_at, resumed), request, ahead)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        self.not_sent += remaining

    async def open_loop(self, phase: Phase) -> None:
        rate = phase.rate_per_s
        assert rate is not None
        rng = random.Random(self.plan.seed)
        slots = asyncio.Semaphore(self.plan.max_in_flight)
        tasks: list[asyncio.Task[float]] = []
        start, shift, offset = now(), 0.0, 0.0

        async def bounded(work: Work, request: httpx.Request, t0: float) -> float:
            async with slots:
                if self.stopping():  # scheduled, but its turn came after the run was told to stop
                    self.not_sent += 1
                    return now()
                return await self.send(work, t0, request)

        for i in range(self.plan.requests):
            if i:
                offset += rng.expovariate(rate) if phase.poisson else 1 / rate
            due = start + shift + offset
            work, request = self.outgoing(phase)  # built before it is due
            if (delay := due - now()) > 0:
                await self.sleep(delay)
            if not self.stopping():
                resumed = await self.resumed()
            if self.stopping():
                self.not_sent += self.plan.requests - i
                break
            if resumed > due:  # a pause we chose is not the endpoint's latency: move the schedule
                shift += resumed - due
                due = resumed
            tasks.append(asyncio.create_task(bounded(work, request, due)))
        await asyncio.gather(*tasks)

    async def canaries(self) -> None:
        phase = Phase("canary", concurrency=1)
        ready_at = now()
        for canary in CANARIES:
            if not self.stopping():
                resumed = await self.resumed()
            if self.stopping():
                self.not_sent += 1
                continue
            work = Work(phase, "canary", canary_messages(canary), self.plan.canary_max_tokens, canary=canary)
            ready_at = await self.send(work, max(ready_at, resumed))

    # ------------------------------------------------------------------------------------------- one request

    async def send(
        self,
        work: Work,
        t0: float,
        request: httpx.Request | None = None,
        ahead: Callable[[], None] | None = None,
    ) -> float:
        """Send one request meant to leave at `t0` and keep what it gave. Returns when the request let go of
        its connection: a closed-loop worker's next request is meant to leave then.

        Everything between `t0` and the bytes leaving counts in TTFT, so the hot path holds nothing else:
        `request` comes built (httpx takes 45 µs to build one on an idle machine, ~0.2 ms on a busy one),
        `ahead` builds the worker's next one once this one's first token is in, and results are made from
        `self.sent` after the run."""
        sent = await exchange(
            self.client,
            request or self.request(work),
            self.endpoint.total_timeout_s,
            self.secret,
            self.gate,
            ahead,
        )
        freed = now()
        end = sent.last_byte or freed
        reason = self.backoff.record(sent, freed)
        if reason and not self.stop_reason:
            self.stop_reason = reason
        self.sent.append((self.next_seq, work, t0, sent, end))
        self.next_seq += 1
        return freed

    def wall(self, t: float) -> datetime:
        return self.started_at + timedelta(seconds=t - self.mono_start)

    def measure(self, seq: int, work: Work, t0: float, sent: Exchange, end: float) -> RequestResult:
        intended_at = self.wall(t0)
        tokens = self.tokens(work, sent)
        output = tokens.output if tokens is not None else None
        span = (
            sent.last_token - sent.first_any
            if sent.first_any is not None and sent.last_token is not None
            else None
        )
        per_s = itl = None
        if output is not None and output >= 2 and span:
            per_s = output / span
            itl = span / (output - 1) * 1000
        lag = self.lag.worst_between(t0, end)
        verdict = None
        if work.canary is not None and sent.error_class is None:
            verdict = check_answer(work.canary, sent.content)
        return RequestResult(
            seq=seq,
            phase=work.phase.name,
            kind=work.kind,
            intended_at=intended_at,
            concurrency=work.phase.concurrency,
            input_tokens_target=work.input_tokens_target,
            send_delay_ms=max(0.0, (sent.t_sent - t0) * 1000),
            http_status=sent.status,
            error_class=sent.error_class,
            error=sent.error,
            ttft_ms=_ms(None if sent.first_any is None else sent.first_any - t0),
            ttfo_ms=_ms(None if sent.first_content is None else sent.first_content - t0),
            itl_ms=itl,
            output_tokens_per_s=per_s,
            e2e_ms=_ms(end - t0) if sent.status is not None else None,
            input_tokens=tokens.input if tokens else None,
            cached_input_tokens=tokens.cached_input if tokens else None,
            output_tokens=output,
            reasoning_tokens=tokens.reasoning if tokens else None,
            tokens_estimated=self._estimated(sent),
            finish_reason=sent.finish_reason,
            chunks=sent.chunks,
            retry_after_s=sent.retry_after_s,
            ratelimit=sent.ratelimit,
            loop_lag_ms=lag,
            client_saturated=lag > self.plan.saturation_lag_ms,
            cost=self.cost(tokens, intended_at) if tokens else None,
            canary_id=work.canary.id if work.canary else None,
            canary_verdict=verdict,
        )

    @staticmethod
    def _estimated(sent: Exchange) -> bool:
        usage = read_usage(sent.usage)
        if usage is None:
            return sent.status == 200
        return usage[3] is None and bool(sent.reasoning_parts)

    def tokens(self, work: Work, sent: Exchange) -> TokenCounts | None:
        """Tokens from `usage`; counted by `collectors.probe.tokens` where usage lacks them (flagged)."""
        usage = read_usage(sent.usage)
        reasoning_counted = count_tokens(sent.reasoning)
        if usage is not None:
            prompt, cached, output, reasoning = usage
            if reasoning is None:
                reasoning = min(reasoning_counted, output)
            return TokenCounts(input=prompt, output=output, cached_input=cached, reasoning=reasoning)
        if sent.status != 200:
            return None  # refused requests are not billed
        return TokenCounts(
            input=len(message_tokens(work.messages)),
            output=count_tokens(sent.content) + reasoning_counted,
            reasoning=reasoning_counted,
        )

    def cost(self, tokens: TokenCounts, at: datetime) -> Money | None:
        if self.offer is None:
            return None
        try:
            return rates_at(self.offer.version_at(at), at, tokens.input).cost(tokens)
        except InputError:  # no version in force then, or no published token price
            return None


async def run_probe(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    plan: LoadPlan,
    *,
    api_key: str | None = None,
    offer: Offer | None = None,
    run_id: str | None = None,
    lag_interval_s: float = 0.01,
    stop: asyncio.Event | None = None,
) -> ProbeRun:
    """Probe `endpoint` with `plan` through `client`; never raises for what the endpoint or network does.

    The key is `api_key` if given, else read from `endpoint.api_key_env` (an unset variable is an InputError
    naming it). `offer` prices the probe's own tokens. Setting `stop` ends the run early: nothing more is
    sent, the requests in flight finish, and the run comes back with what it measured (`stop_reason` says
    so). Store the run with `storage.probes.write_probe_run`.
    """
    key = api_key if api_key is not None else endpoint.api_key()
    session = _Session(client, endpoint, plan, key, offer, run_id or uuid.uuid4().hex, lag_interval_s, stop)
    return await session.run()


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), as httpx
    would use by itself: a client given its own transport does not read them."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    return proxy


def make_client(endpoint: Endpoint, plan: LoadPlan) -> httpx.AsyncClient:
    """A client sized for the plan: one pooled connection per request that can be open at once, spread over
    small pools (see `collectors.probe.transport`)."""
    transport = ShardedTransport(plan.peak_concurrency, proxy=proxy_for(endpoint.url))
    return httpx.AsyncClient(timeout=endpoint.timeout(), transport=transport)
