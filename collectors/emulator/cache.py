"""A real prefix cache in fixed-size token blocks, as DeepSeek's context disk cache works.

A prompt's tokens are cut into `unit`-token blocks from token 0; each block is keyed by a hash chained over
every block before it, so a key matches only if the whole prefix up to it matches. A request hits the longest
run of stored blocks from the start (under one unit is never cached), then stores all of its own blocks.
Least recently used blocks are evicted beyond `capacity`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    def __init__(self, unit: int = 64, capacity: int = 200_000) -> None:
        self.unit = unit
        self.capacity = capacity
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def _keys(self, tokens: Sequence[str]) -> list[bytes]:
        keys: list[bytes] = []
        previous = b""
        for start in range(0, len(tokens) - self.unit + 1, self.unit):
            block = "\x1f".join(tokens[start : start + self.unit]).encode()
            previous = hashlib.blake2b(previous + block, digest_size=16).digest()
            keys.append(previous)
        return keys

    def hit_and_store(self, tokens: Sequence[str]) -> int:
        """Tokens served from cache for this prompt; the prompt's blocks are stored for the next ones."""
        keys = self._keys(tokens)
        hits = 0
        for key in keys:
            if key not in self._blocks:
                break
            hits += 1
        for key in keys:
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return hits * self.unit

    def __len__(self) -> int:
        return len(self._blocks)
