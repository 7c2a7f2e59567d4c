"""Prompts with controlled input lengths, and canary questions with known one-character answers.

Every load prompt starts with a per-request nonce, so no two share a first token and a provider's
prefix cache (DeepSeek's matches from token 0) cannot serve them: the probe measures cold prefill. Lengths
are counted with `collectors.probe.tokens` (one token per word or punctuation mark, one per message for its
role), the rule the emulator uses, and close to what BPE tokenizers give for the common words used as filler.

The canaries follow the seed article's idea: a question needing world knowledge, a little reasoning and
strict instruction following, answered with one character. A full model answers them; a distilled one served
under the full model's name tends to fail some. They are a tripwire, not a benchmark: one wrong answer is a
reason to look.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from collectors.probe.tokens import count_tokens
from models.errors import InputError
from models.probe import CanaryVerdict

Message = dict[str, str]

# Common English words that BPE vocabularies hold as single tokens (with their leading space).
FILLER_TEXT = (
    "river stone maple window garden silver morning paper orange bridge forest little yellow market "
    "summer winter autumn spring candle pocket mirror basket button ladder island valley castle "
    "planet rocket harbor lemon pepper carpet pillow jacket wallet bottle kettle hammer pencil "
    "ribbon saddle tunnel village meadow orchard cottage garden circle square number letter family "
    "friend teacher doctor farmer sailor driver painter singer writer reader runner happy quiet "
    "gentle simple bright heavy narrow golden wooden frozen hidden open green blue red white black "
    "brown gray dark light warm cold soft hard long short tall small large"
)
FILLER_WORDS = tuple(FILLER_TEXT.split())

INSTRUCTION = "Task: ignore the words above and write a long plain story about the sea."
HEADER = "Probe {nonce}. Words:"
MIN_INPUT_TOKENS = 32


@lru_cache(maxsize=32)
def _filler(words: int, seed: int) -> str:
    rng = random.Random(seed * 1_000_003 + words)
    return " ".join(rng.choice(FILLER_WORDS) for _ in range(words))


def build_prompt(input_tokens: int, nonce: str, seed: int = 0) -> list[Message]:
    """One user message of exactly `input_tokens` tokens (role marker included) under our counting rule."""
    if input_tokens < MIN_INPUT_TOKENS:
        raise InputError(f"a probe prompt needs at least {MIN_INPUT_TOKENS} input tokens")
    if not re.fullmatch(r"[A-Za-z0-9]+", nonce):
        raise InputError("a prompt nonce is letters and digits only")
    header = HEADER.format(nonce=nonce)
    fixed = 1 + count_tokens(header) + count_tokens(INSTRUCTION)
    content = f"{header} {_filler(input_tokens - fixed, seed)} {INSTRUCTION}"
    return [{"role": "user", "content": content}]


@dataclass(frozen=True, slots=True)
class Canary:
    id: str
    question: str
    answer: str  # one character; letters compare case-insensitively


CANARIES: tuple[Canary, ...] = (
    Canary(
        "strawberry-r",
        "How many times does the letter r occur in the word strawberry? "
        "Reply with a single digit and nothing else.",
        "3",
    ),
    Canary(
        "potassium",
        "Element number 19 has a one-letter chemical symbol. Reply with that letter and nothing else.",
        "K",
    ),
    Canary(
        "hexagon-spider",
        "Take the number of sides of a hexagon, add the number of legs of a spider, then subtract the "
        "number of planets in the solar system. Reply with the single digit result and nothing else.",
        "6",
    ),
    Canary(
        "months",
        "Which letter comes next in the sequence J, F, M, A, M, J, J, A, S, O, N? "
        "Reply with the letter and nothing else.",
        "D",
    ),
    Canary(
        "sheep",
        "A farmer has 17 sheep and all but 9 run away. How many sheep does the farmer still have? "
        "Reply with a single digit and nothing else.",
        "9",
    ),
    Canary(
        "weekday",
        "Today is Wednesday. What day of the week is it 100 days from today? "
        "Reply with the first letter of that day's English name and nothing else.",
        "F",
    ),
)
BY_QUESTION = {canary.question: canary for canary in CANARIES}


def canary_messages(canary: Canary) -> list[Message]:
    return [{"role": "user", "content": canary.question}]


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_EDGES = " \t\r\n*_`'\"“”‘’.,:;!()[]{}"
_STATED = re.compile(
    r"(?:answer|result)\s*(?:is|:|=)?\s*[*_`'\"“‘(\[]*([A-Za-z0-9])(?![A-Za-z0-9])", re.IGNORECASE
)
_BOXED = re.compile(r"\\boxed\{\s*([A-Za-z0-9])\s*\}")


def extract_answer(text: str) -> str | None:
    """The one-character answer in a reply, or None when the reply does not give one clearly.

    Reasoning some hosts inline as `<think>…</think>` is dropped; markdown and quotes around the character are
    ignored; "The answer is K." and `\\boxed{K}` are read; anything else is unclear.
    """
    visible = _THINK.sub("", text)
    if "<think>" in visible.lower():  # thinking never closed: the answer was cut off
        return None
    bare = visible.strip(_EDGES)
    if len(bare) == 1 and bare.isalnum():
        return bare
    for pattern in (_BOXED, _STATED):
        found = pattern.findall(visible)
        if found:
            return str(found[-1])
    return None


def check_answer(canary: Canary, text: str) -> CanaryVerdict:
    answer = extract_answer(text)
    if answer is None:
        return "unclear"
    return "pass" if answer.casefold() == canary.answer.casefold() else "fail"
