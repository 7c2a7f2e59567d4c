"""Pulled provider usage keeps what changes its price beyond the tokens: the service tier, the batch flag and
the 1-hour part of the cache writes, so the pricing engine prices it as the provider did (the spend read
groups by these columns where a table has them)."""

from __future__ import annotations

NUMBER = 22
NAME = "provider_usage_prices"

SQL = """
DROP VIEW provider_usage_counted;
DROP VIEW provider_usage_all;
ALTER TABLE provider_usage ADD COLUMN service_tier VARCHAR;          -- OpenAI default/flex/priority/scale,
                                                                     -- Anthropic standard/priority/batch
ALTER TABLE provider_usage ADD COLUMN batch BOOLEAN DEFAULT false;   -- OpenAI Batch API usage
ALTER TABLE provider_usage ADD COLUMN cache_write_1h_tokens BIGINT DEFAULT 0;  -- part of cache_write_tokens
CREATE VIEW provider_usage_all AS
    SELECT *, NULL::DECIMAL(20, 10) AS billed_cost, NULL::VARCHAR AS billed_currency FROM provider_usage;
CREATE VIEW provider_usage_counted AS SELECT * FROM provider_usage_all WHERE requests_known;
"""
