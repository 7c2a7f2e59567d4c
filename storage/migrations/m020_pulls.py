"""The providers' own account of usage and cost, pulled from their admin APIs (`quotascope pull`).

`provider_usage` has the canonical usage columns (DESIGN.md) but is kept apart from `usage`: `usage` is what
your logs say, `provider_usage` what the provider counted, and reconciliation (`report reconcile`) compares
the two. `provider_costs` is the bill: one row per day and line item, in the provider's currency, DECIMAL.

A pull replaces what earlier pulls of the same kind and account stored for the days it covers, in one
transaction, so pulling a day again never doubles it. Every pull is a `pull_runs` row whose counts hold
`read = stored + duplicates + rejected` (`replaced` says how many earlier rows the pull superseded); every
rejected result keeps its reason in `pull_rejects`. No admin key is ever stored: `base_url` is kept without
credentials or query string.
"""

from __future__ import annotations

NUMBER = 20
NAME = "pulls"

SQL = """
CREATE SEQUENCE pull_runs_id_seq START 1;

CREATE TABLE pull_runs (
    run_id          BIGINT NOT NULL DEFAULT nextval('pull_runs_id_seq'),
    kind            VARCHAR NOT NULL,      -- openai-usage, openai-costs, anthropic-usage, anthropic-costs
    account         VARCHAR NOT NULL,      -- the API's base URL: pulls of one account replace each other
    since           TIMESTAMP NOT NULL,    -- UTC day start: the first day the pull covers
    until           TIMESTAMP NOT NULL,    -- UTC day start after the last day covered
    started_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP NOT NULL,
    pages           INTEGER NOT NULL,
    retries         INTEGER NOT NULL,      -- 429 / 5xx answers retried after waiting
    rows_read       BIGINT NOT NULL,
    rows_stored     BIGINT NOT NULL,
    rows_duplicate  BIGINT NOT NULL,
    rows_rejected   BIGINT NOT NULL,
    rows_replaced   BIGINT NOT NULL        -- rows of earlier pulls of these days, removed by this one
);

CREATE TABLE pull_rejects (
    run_id   BIGINT NOT NULL,
    item_no  BIGINT NOT NULL,      -- 1-based: the n-th result the pull read
    reason   VARCHAR NOT NULL,
    excerpt  VARCHAR              -- short, with string values redacted
);

CREATE TABLE provider_usage (
    run_id               BIGINT NOT NULL,
    kind                 VARCHAR NOT NULL,
    account              VARCHAR NOT NULL,
    record_key           VARCHAR NOT NULL,
    line_no              BIGINT,
    ts                   TIMESTAMP NOT NULL,   -- the bucket's start (UTC)
    provider             VARCHAR,
    model                VARCHAR NOT NULL,
    endpoint             VARCHAR,
    team                 VARCHAR,
    project              VARCHAR,              -- OpenAI project_id, Anthropic workspace_id
    user_hash            VARCHAR,
    key_id               VARCHAR,              -- the provider's API key id, never a key
    n_requests           BIGINT NOT NULL,
    requests_known       BOOLEAN NOT NULL,     -- false: the API gives no request count (Anthropic)
    input_tokens         BIGINT NOT NULL,      -- all prompt tokens, cache reads and writes included
    cached_input_tokens  BIGINT NOT NULL,
    cache_write_tokens   BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    reasoning_tokens     BIGINT NOT NULL,
    tags                 MAP(VARCHAR, VARCHAR) -- service_tier, cache_write_1h_tokens, ...
);

-- Provider usage in the shape the spend reads take (`storage.reports.read_spend_groups`), so it is summed
-- and priced by the same engine as logged usage; `_counted` keeps the rows whose request counts are known
-- (they tell how much of a gap unlogged requests explain).
CREATE VIEW provider_usage_all AS
    SELECT *, NULL::DECIMAL(20, 10) AS billed_cost, NULL::VARCHAR AS billed_currency FROM provider_usage;
CREATE VIEW provider_usage_counted AS SELECT * FROM provider_usage_all WHERE requests_known;

CREATE TABLE provider_costs (
    run_id        BIGINT NOT NULL,
    kind          VARCHAR NOT NULL,
    account       VARCHAR NOT NULL,
    record_key    VARCHAR NOT NULL,
    item_no       BIGINT NOT NULL,          -- the n-th result the pull read
    day           DATE NOT NULL,            -- the bucket's day (UTC)
    provider      VARCHAR NOT NULL,
    project       VARCHAR,                  -- OpenAI project_id, Anthropic workspace_id
    model         VARCHAR,                  -- from the line item; NULL for costs not of one model
    line_item     VARCHAR,                  -- OpenAI line_item, Anthropic description
    cost_type     VARCHAR,                  -- Anthropic: tokens, web_search, code_execution
    token_type    VARCHAR,                  -- Anthropic: uncached_input_tokens, output_tokens, ...
    service_tier  VARCHAR,
    amount        DECIMAL(20, 10) NOT NULL, -- in `currency`'s units (dollars, not cents)
    currency      VARCHAR NOT NULL
);
"""
