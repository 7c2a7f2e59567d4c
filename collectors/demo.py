"""A realistic month of LLM traffic for the demo, written as the log files real systems produce.

Six teams, each a workload from the seed articles, on offers of the shipped catalog:

- `support`: a chat bot on DeepSeek flash; multi-turn conversations whose growing history is served from
  DeepSeek's cache in 64-token units;
- `search`: web search answers on DeepSeek v4-pro; a large per-question context after the system prompt, so
  only the system prompt is cached;
- `research`: R1 agents on Volcano Engine Ark, three reasoning calls per question;
- `docs-qa`: contract questions on OpenAI o1 with a long document prompt, cached from 1,024 tokens in
  128-token steps;
- `legal`: a small review team on Claude Sonnet 4.5 with a cached prompt (cache writes, then reads, reported
  Anthropic's way); the shipped catalog has no dated price for it before 2026-11-23, so its older traffic
  shows as unpriced — never as free;
- `batch-eval`: nightly evaluation batches on DeepSeek flash, in the off-peak hours.

Demand follows a diurnal shape (China business hours are 01:00–10:00 UTC) and a weekly one (weekends at
45 %). Files: `deepseek.jsonl`, `openai.jsonl` and `ark.jsonl.gz` (OpenAI-compatible responses in
quotascope's envelope), `anthropic.jsonl` (Messages responses), and a few malformed lines that ingestion must
reject, not lose.
Message content is generated as placeholders and is never what ingestion stores.
"""

from __future__ import annotations

import gzip
import json
import random
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.catalog import CacheRules

# share of a day's demand in each UTC hour (sums to 1 after normalising)
DIURNAL = (2, 2, 6, 9, 10, 10, 9, 9, 8, 7, 5, 4, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1)
WEEKEND = 0.45
DEEPSEEK_CACHE = CacheRules(enabled=True, min_tokens=64, step_tokens=64)
OPENAI_CACHE = CacheRules(enabled=True, min_tokens=1024, step_tokens=128)
ANTHROPIC_MIN_CACHE = 1024


@dataclass(frozen=True, slots=True)
class Workload:
    team: str
    project: str
    provider: str
    model: str  # as the provider reports it
    file: str
    conversations_per_day: int
    system: int
    context: tuple[int, int]  # per-question context range (0, 0: none)
    user: tuple[int, int]
    answer: tuple[int, int]
    reasoning: tuple[int, int]
    turns: tuple[int, int]  # questions per conversation
    calls: int = 1
    hours: tuple[int, ...] | None = None  # restrict to these UTC hours (batch)
    users: int = 200
    tokens_per_s: tuple[float, float] = (30.0, 60.0)


WORKLOADS = (
    Workload(
        "support",
        "helpdesk",
        "deepseek",
        "deepseek-flash",
        "deepseek.jsonl",
        900,
        1200,
        (0, 0),
        (30, 120),
        (150, 450),
        (0, 0),
        (1, 8),
        users=1500,
        tokens_per_s=(45.0, 80.0),
    ),
    Workload(
        "search",
        "web-answers",
        "deepseek",
        "deepseek-v4-pro",
        "deepseek.jsonl",
        1200,
        600,
        (3000, 9000),
        (15, 60),
        (300, 700),
        (400, 1600),
        (1, 2),
        users=3000,
    ),
    Workload(
        "research",
        "agents",
        "volcengine",
        "DeepSeek-R1-250120",
        "ark.jsonl.gz",
        120,
        1500,
        (1000, 4000),
        (50, 200),
        (300, 800),
        (1200, 3000),
        (1, 3),
        calls=3,
        users=40,
        tokens_per_s=(30.0, 40.0),
    ),
    Workload(
        "docs-qa",
        "contracts",
        "openai",
        "o1-2024-12-17",
        "openai.jsonl",
        200,
        3500,
        (0, 0),
        (40, 150),
        (200, 600),
        (400, 2000),
        (2, 6),
        users=120,
        tokens_per_s=(50.0, 90.0),
    ),
    Workload(
        "legal",
        "review",
        "anthropic",
        "claude-sonnet-4-5",
        "anthropic.jsonl",
        40,
        2500,
        (0, 0),
        (40, 150),
        (200, 600),
        (0, 0),
        (2, 5),
        users=15,
        tokens_per_s=(50.0, 90.0),
    ),
    Workload(
        "batch-eval",
        "nightly-evals",
        "deepseek",
        "deepseek-flash",
        "deepseek.jsonl",
        600,
        400,
        (500, 1500),
        (50, 200),
        (50, 300),
        (0, 0),
        (1, 1),
        hours=tuple(range(12, 20)),
        users=1,
        tokens_per_s=(60.0, 90.0),
    ),
)


@dataclass(frozen=True, slots=True)
class DemoFiles:
    paths: tuple[Path, ...]
    records: int  # well-formed records written
    malformed: int  # lines that must land in rejects


def _hour(rng: random.Random, hours: tuple[int, ...] | None) -> int:
    if hours is not None:
        return rng.choice(hours)
    return rng.choices(range(24), weights=DIURNAL)[0]


def _between(rng: random.Random, span: tuple[int, int]) -> int:
    low, high = span
    return low if low == high else int(rng.triangular(low, high, low + (high - low) / 3))


def _requests(
    work: Workload, day: datetime, rng: random.Random, serial: Iterator[int]
) -> Iterator[dict[str, Any]]:
    factor = WEEKEND if day.weekday() >= 5 else 1.0
    conversations = int(work.conversations_per_day * factor * rng.uniform(0.85, 1.15))
    for _ in range(conversations):
        start = day + timedelta(hours=_hour(rng, work.hours), seconds=rng.uniform(0, 3600))
        user = f"{work.team}-user-{rng.randrange(work.users):05d}"
        history: list[tuple[int, int]] = []  # (user, answer) of earlier questions
        at = start
        for _turn in range(_between(rng, work.turns)):
            user_tokens, context = _between(rng, work.user), _between(rng, work.context)
            for call in range(work.calls):
                answer, reasoning = _between(rng, work.answer), _between(rng, work.reasoning)
                kept = sum(u + a for u, a in history)
                prompt = work.system + kept + context + user_tokens + call * 300  # agents add tool results
                if call > 0:  # the same question's previous call: everything but the new tool result
                    stable = prompt - 300
                elif history:  # the previous question: system, its history, and its turn if no context
                    last_user, last_answer = history[-1]
                    stable = work.system + kept - last_answer - (last_user if context else 0)
                else:
                    stable = work.system
                speed = rng.uniform(*work.tokens_per_s)
                ttft = rng.lognormvariate(6.2, 0.35) + prompt / 40  # ~500 ms plus prefill
                yield {
                    "work": work,
                    "at": at,
                    "user": user,
                    "id": next(serial),
                    "prompt": prompt,
                    "stable": stable,
                    "cacheable_now": work.system + kept,
                    "answer": answer,
                    "reasoning": reasoning,
                    "ttft_ms": round(ttft, 1),
                    "latency_ms": round(ttft + (answer + reasoning) / speed * 1000, 1),
                    "first_in_conversation": not history and call == 0,
                }
                at += timedelta(seconds=(answer + reasoning) / speed + rng.uniform(1, 4))
            history.append((user_tokens, _between(rng, work.answer)))
            at += timedelta(seconds=rng.uniform(20, 180))


def _openai_record(r: dict[str, Any]) -> dict[str, Any]:
    work: Workload = r["work"]
    if work.provider == "deepseek":
        hit = DEEPSEEK_CACHE.cacheable(r["stable"])
    elif work.provider == "openai":
        hit = OPENAI_CACHE.cacheable(r["stable"])
    else:  # Ark caches whole prefixes when the context repeats; agents repeat their system prompt
        hit = 0 if r["first_in_conversation"] else r["stable"]
    prompt, completion = r["prompt"], r["answer"] + r["reasoning"]
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": hit},
        "completion_tokens_details": {"reasoning_tokens": r["reasoning"]},
    }
    if work.provider == "deepseek":
        usage["prompt_cache_hit_tokens"] = hit
        usage["prompt_cache_miss_tokens"] = prompt - hit
    response = {
        "id": f"chatcmpl-demo-{r['id']:08d}",
        "object": "chat.completion",
        "created": int((r["at"] - datetime(1970, 1, 1)).total_seconds()),
        "model": work.model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "(demo answer: never stored)"},
            }
        ],
        "usage": usage,
    }
    return _envelope(r, response)


def _anthropic_record(r: dict[str, Any]) -> dict[str, Any]:
    work: Workload = r["work"]
    # a cache breakpoint after the history: what this request can read is what the previous one wrote
    prefix = r["cacheable_now"]
    if prefix < ANTHROPIC_MIN_CACHE:
        read = write = 0
    else:
        read = 0 if r["first_in_conversation"] else min(r["stable"], prefix)
        write = prefix - read
    response = {
        "id": f"msg_demo{r['id']:08d}",
        "type": "message",
        "role": "assistant",
        "model": work.model,
        "content": [{"type": "text", "text": "(demo answer: never stored)"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": r["prompt"] - read - write,  # Anthropic: excludes cache reads and writes
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
            "output_tokens": r["answer"],
        },
    }
    return _envelope(r, response)


def _envelope(r: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    work: Workload = r["work"]
    return {
        "timestamp": r["at"].isoformat(timespec="milliseconds") + "Z",
        "provider": work.provider,
        "team": work.team,
        "project": work.project,
        "user": r["user"],
        "key_id": f"key-{work.team}-{r['id'] % 3 + 1}",
        "ttft_ms": r["ttft_ms"],
        "latency_ms": r["latency_ms"],
        "status": 200,
        "response": response,
    }


MALFORMED = (
    b'{"timestamp": "2026-11-02T03:04:05Z", "provider": "deepseek", "response": {"id": "chatcmpl-trunc", '
    b'"usa',
    b'{"timestamp": "2026-11-03T03:04:05Z", "provider": "deepseek", "response": {"id": "chatcmpl-neg", '
    b'"object": "chat.completion", "model": "deepseek-flash", "usage": {"prompt_tokens": -40, '
    b'"completion_tokens": 10, "total_tokens": -30}}}',
    b'{"timestamp": "2026-11-04T03:04:05Z", "provider": "deepseek", "response": {"id": "chatcmpl-nousage", '
    b'"object": "chat.completion", "model": "deepseek-flash"}}',
    b'{"timestamp": "2026-11-05T03:04:05Z", "provider": "deepseek", "response": {"id": "chatcmpl-latin1", '
    b'"object": "chat.completion", "model": "deepseek-flash", "usage": {"prompt_tokens": 12, '
    b'"completion_tokens": 3, "total_tokens": 15}, "note": "caf\xe9"}}',
)


def generate(
    folder: Path, start: datetime, days: int = 30, seed: int = 7, until: datetime | None = None
) -> DemoFiles:
    """Write the demo month's log files into `folder` (replacing earlier ones); same seed, same files.

    Requests after `until` (the present, for a month that ends today) are not written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    serial = iter(range(1, 10**9))
    lines: dict[str, list[bytes]] = {}
    records = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        for work in WORKLOADS:
            for request in _requests(work, day, rng, serial):
                if until is not None and request["at"] > until:
                    continue
                record = (
                    _anthropic_record(request) if work.provider == "anthropic" else _openai_record(request)
                )
                lines.setdefault(work.file, []).append(json.dumps(record, separators=(",", ":")).encode())
                records += 1
    lines["deepseek.jsonl"].extend(MALFORMED)
    paths = []
    for name, content in sorted(lines.items()):
        path = folder / name
        data = b"\n".join(content) + b"\n"
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(data, mtime=0))
        else:
            path.write_bytes(data)
        paths.append(path)
    return DemoFiles(tuple(paths), records, len(MALFORMED))


CONTRACT_DISCOUNT = Decimal("0.8")


def demo_catalog(shipped: Path, contract_from: datetime) -> dict[str, Any]:
    """The demo company's own catalog file, on top of the shipped one, as a user would write it.

    - DeepSeek flash and v4-pro: the shipped catalog knows their peak hours from 2026-08-16 but prices only
      from 2026-11-01; the demo company assumes the November list applied since August (an assumption it
      states in `source`, as anyone adding their own figures should).
    - Volcano Engine Ark DeepSeek-R1: the company negotiated 20 % off list from `contract_from` (fictional):
      a price change in the middle of the month, which must not rewrite the cost of earlier traffic.
    """
    with (shipped / "deepseek.toml").open("rb") as handle:
        deepseek = tomllib.load(handle)
    with (shipped / "volcengine.toml").open("rb") as handle:
        ark = tomllib.load(handle)
    offers = []
    for offer in deepseek["offer"]:
        if offer["id"] not in ("deepseek/deepseek-flash", "deepseek/deepseek-v4-pro"):
            continue
        earlier, listed = offer["versions"][0], offer["versions"][-1]
        earlier["prices"] = dict(listed["prices"])
        earlier["source"] = (
            "demo assumption: the 2026-11 list prices also applied since 2026-08-16 (the shipped catalog "
            "leaves this stretch unpriced for want of a source)"
        )
        offers.append(offer)
    for offer in ark["offer"]:
        if offer["id"] != "volcengine/deepseek-r1":
            continue
        listed = offer["versions"][-1]
        contract = {key: value for key, value in listed.items() if key not in ("prices", "effective_to")}
        contract["effective_from"] = contract_from.date()
        contract["as_of"] = contract_from.date()
        contract["source"] = (
            "demo: the demo company's enterprise contract with Volcano Engine (fictional), 20 % off list"
        )
        contract["notes"] = "A negotiated price: what a user's own catalog file is for."
        contract["prices"] = {
            key: Decimal(str(value)) * CONTRACT_DISCOUNT
            for key, value in listed["prices"].items()
            if key != "cache_storage_per_hour"
        }
        offer["versions"].append(contract)
        offers.append(offer)
    return {"offer": offers}
