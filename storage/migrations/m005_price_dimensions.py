"""The price dimensions real bills have, as canonical usage columns.

- `service_tier`: the tier a response says served it (OpenAI `service_tier`: default, flex, priority,
  scale; Anthropic `usage.service_tier`: standard, priority, batch); NULL where the log does not say.
- `batch`: the request went through a batch API (OpenAI Batch output files, Anthropic Message Batches
  results, an OpenAI usage export's `batch` flag).
- `cache_write_1h_tokens`: the part of `cache_write_tokens` written for an hour (Anthropic's
  `cache_creation.ephemeral_1h_input_tokens`), priced apart from 5-minute writes.

Every stored row is kept: the new columns read as "not said" (NULL tier, not batch, no 1-hour writes), so
every row costs what it did before the migration.
"""

from __future__ import annotations

NUMBER = 5
NAME = "price_dimensions"

SQL = """
ALTER TABLE usage ADD COLUMN service_tier VARCHAR;
ALTER TABLE usage ADD COLUMN batch BOOLEAN DEFAULT false;
ALTER TABLE usage ADD COLUMN cache_write_1h_tokens BIGINT DEFAULT 0;
"""
