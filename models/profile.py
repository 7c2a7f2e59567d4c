"""The token profile of one question: what it sends, what it gets back, and what of it a cache can reuse.

From components (DESIGN.md, "The capacity model"): system prompt `S`, per-question context `C` (retrieval,
web search), user turn `U`, visible answer `A`, reasoning `R`, `k` remembered rounds, `calls` LLM calls per
question. Reasoning is not fed back into history, so per call

    input  I = S + k·(U + A) + C + U        (all prompt tokens)
    output O = A + R                        (all generated tokens, reasoning included)

The request is laid out as [system][history][context][user turn]. The prefix a cache can serve is what this
request shares with the conversation's previous one: with a *growing* history, the system prompt, the k-1
older rounds and, when there is no per-question context in between, the previous user turn; with a *sliding*
window the oldest round drops out, so only the system prompt is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from models.errors import InputError
from models.usage import UsageProfile

History = Literal["growing", "sliding"]
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TokenProfile:
    """Average tokens of one LLM call, and how many calls a question makes."""

    input: Decimal  # all prompt tokens of one call
    output: Decimal  # all generated tokens of one call, reasoning included
    reasoning: Decimal = ZERO  # the reasoning part of output
    calls: Decimal = Decimal(1)  # LLM calls per question (agents make several)
    max_tokens: int | None = None  # what the client asks for; reserved by some providers at request start
    stable_prefix: Decimal = ZERO  # prompt tokens shared with the previous request (cacheable)
    next_prefix: Decimal = ZERO  # the prefix the next request will reuse (what a cache write stores)
    source: str = "direct"  # "components", "direct" or "usage"

    def __post_init__(self) -> None:
        for name in ("input", "output", "reasoning", "stable_prefix", "next_prefix"):
            if getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', ' ')} tokens cannot be negative")
        if self.input + self.output == 0:
            raise InputError("a question needs some tokens: input and output are both zero")
        if self.reasoning > self.output:
            raise InputError("reasoning tokens are part of output and cannot exceed it")
        if self.calls <= 0:
            raise InputError("calls per question must be positive")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise InputError("max_tokens must be positive")
        if self.stable_prefix > self.input:
            raise InputError("the reusable prefix cannot be longer than the prompt")

    @property
    def answer(self) -> Decimal:
        return self.output - self.reasoning

    @property
    def tokens_per_question(self) -> Decimal:
        return (self.input + self.output) * self.calls

    @classmethod
    def direct(
        cls,
        input_tokens: Decimal | int,
        output_tokens: Decimal | int,
        *,
        reasoning_tokens: Decimal | int = 0,
        calls: Decimal | int = 1,
        max_tokens: int | None = None,
        stable_prefix: Decimal | int = 0,
        source: str = "direct",
    ) -> TokenProfile:
        return cls(
            input=Decimal(input_tokens),
            output=Decimal(output_tokens),
            reasoning=Decimal(reasoning_tokens),
            calls=Decimal(calls),
            max_tokens=max_tokens,
            stable_prefix=Decimal(stable_prefix),
            next_prefix=Decimal(stable_prefix),
            source=source,
        )

    @classmethod
    def from_components(
        cls,
        *,
        system: Decimal | int = 0,
        context: Decimal | int = 0,
        user: Decimal | int = 0,
        answer: Decimal | int = 0,
        reasoning: Decimal | int = 0,
        rounds: Decimal | int = 0,
        calls: Decimal | int = 1,
        max_tokens: int | None = None,
        history: History = "growing",
    ) -> TokenProfile:
        s, c, u, a, r, k = (Decimal(v) for v in (system, context, user, answer, reasoning, rounds))
        for name, value in (("system", s), ("context", c), ("user", u), ("answer", a), ("reasoning", r)):
            if value < 0:
                raise InputError(f"{name} tokens cannot be negative")
        if k < 0:
            raise InputError("remembered rounds cannot be negative")
        if history not in ("growing", "sliding"):
            raise InputError(f"history is 'growing' or 'sliding', not {history!r}")
        prompt = s + k * (u + a) + c + u
        if history == "sliding" or k == 0:
            stable = s
            following = s
        else:
            tail = u if c == 0 else ZERO  # the previous user turn, unless context sits between
            stable = s + (k - 1) * (u + a) + tail
            following = s + k * (u + a) + (u if c == 0 else ZERO)
        return cls(
            input=prompt,
            output=a + r,
            reasoning=r,
            calls=Decimal(calls),
            max_tokens=max_tokens,
            stable_prefix=stable,
            next_prefix=min(following, prompt),
            source="components",
        )


def rounded_usage_profile(usage: UsageProfile) -> TokenProfile:
    """Stored usage's average request as a profile of whole tokens (the dashboard's planner and overview);
    at least one output token, since every answered request generated something."""
    return TokenProfile.direct(
        round(usage.input_tokens.mean),
        max(1, round(usage.output_tokens.mean)),
        reasoning_tokens=round(usage.reasoning_tokens.mean),
        source="usage",
    )


# Presets the planner and the dashboard offer (the seed article's profiles).
PRESETS: dict[str, TokenProfile] = {
    # ≈ 2,000 in, 500-token answer, no chain of thought, 3 remembered rounds
    "chat": TokenProfile.from_components(system=100, user=100, answer=500, rounds=3, history="sliding"),
    # R1: ≈ 2,000 in, answer 500 + reasoning 1,500 → ≈ 4,000 tokens per question
    "r1-reasoning": TokenProfile.direct(2000, 2000, reasoning_tokens=1500),
    # web search / document chat: ≥ 10,000 tokens per question
    "web-search": TokenProfile.from_components(
        system=500, context=7000, user=100, answer=600, reasoning=1200, rounds=1, history="sliding"
    ),
}
