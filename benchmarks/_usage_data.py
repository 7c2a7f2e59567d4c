"""Realistic OpenAI-format chat completion responses for the benchmarks, written fast (no json.dumps)."""

from __future__ import annotations

import random
from pathlib import Path

_WORDS = [
    *[
        "the",
        "model",
        "answers",
        "with",
        "a",
        "short",
        "explanation",
        "of",
        "the",
        "quota",
        "limits",
        "and",
        "the",
        "cost",
        "of",
        "cached",
    ],
    *[
        "prompt",
        "tokens",
        "during",
        "peak",
        "hours",
        "while",
        "the",
        "reasoning",
        "part",
        "stays",
        "hidden",
        "from",
        "the",
        "user",
    ],
    *["who", "asked", "about", "capacity", "planning"],
]
MODELS = (
    "gpt-4o-2024-08-06",
    "o1-2024-12-17",
    "gpt-4o-mini-2024-07-18",
    "deepseek-reasoner",
    "deepseek-chat",
)


def write_openai_jsonl(path: Path, records: int, *, seed: int = 7, start_epoch: int = 1_760_000_000) -> int:
    """Write `records` chat completion responses (about 900 bytes each, content included); returns bytes."""
    rnd = random.Random(seed)
    contents = [" ".join(rnd.choice(_WORDS) for _ in range(72)) for _ in range(64)]
    written = 0
    with path.open("w", encoding="utf-8") as out:
        lines = []
        for i in range(records):
            prompt = rnd.randint(50, 12_000)
            completion = rnd.randint(10, 3_000)
            cached = (rnd.randint(0, prompt) // 128) * 128
            reasoning = rnd.randint(0, completion)
            model = MODELS[i % len(MODELS)]
            if model.startswith("deepseek"):
                usage = (
                    f'"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},'
                    f'"total_tokens":{prompt + completion},'
                    f'"prompt_tokens_details":{{"cached_tokens":{cached}}},'
                    f'"prompt_cache_hit_tokens":{cached},"prompt_cache_miss_tokens":{prompt - cached},'
                    f'"completion_tokens_details":{{"reasoning_tokens":{reasoning}}}}}'
                )
            else:
                usage = (
                    f'"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},'
                    f'"total_tokens":{prompt + completion},'
                    f'"prompt_tokens_details":{{"cached_tokens":{cached},"audio_tokens":0}},'
                    f'"completion_tokens_details":{{"reasoning_tokens":{reasoning},"audio_tokens":0,'
                    f'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}'
                )
            lines.append(
                f'{{"id":"chatcmpl-{i:010d}{rnd.getrandbits(40):010x}","object":"chat.completion",'
                f'"created":{start_epoch + i * 2},"model":"{model}","choices":[{{"index":0,"message":'
                f'{{"role":"assistant","content":"{contents[i % 64]}","refusal":null,"annotations":[]}},'
                f'"logprobs":null,"finish_reason":"stop"}}],{usage},"service_tier":"default",'
                f'"system_fingerprint":"fp_{i % 97:04x}"}}\n'
            )
            if len(lines) >= 10_000:
                chunk = "".join(lines)
                out.write(chunk)
                written += len(chunk)
                lines = []
        chunk = "".join(lines)
        out.write(chunk)
        written += len(chunk)
    return written
