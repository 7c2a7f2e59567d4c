"""The one token-counting rule quotascope uses where a provider reports no `usage`.

A token is a run of word characters or one punctuation mark: `re.findall(r"\\w+|[^\\w\\s]")`. For the
plain English the probe sends (common short words separated by spaces) this is within a few per cent of BPE
tokenizers, where a common word with its leading space is one token. The emulator counts with the same rule,
so a prompt the probe builds with N tokens is N tokens there too, and a probe estimate can be checked exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

TOKEN = re.compile(r"\w+|[^\w\s]")
ROLE_MARKER = "<|{role}|>"  # one token per message, as a chat template adds a few


def split_tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return sum(1 for _ in TOKEN.finditer(text))


def message_tokens(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The prompt as a token sequence: each message is its role marker, then its content's tokens."""
    tokens: list[str] = []
    for message in messages:
        tokens.append(ROLE_MARKER.format(role=message.get("role", "user")))
        content = message.get("content")
        if isinstance(content, str):
            tokens.extend(split_tokens(content))
        elif isinstance(content, list):  # content parts: count the text ones
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    tokens.extend(split_tokens(part["text"]))
    return tokens
