"""The core tables: ingested sources, canonical usage rows, rejects, and a snapshot of the catalog's prices.

`usage` follows DESIGN.md's canonical usage record: `input_tokens` are all prompt tokens (cache hits and
writes included), `output_tokens` all generated tokens (reasoning included). Money is DECIMAL, timestamps
are naive UTC `TIMESTAMP`. There are no indexes: DuckDB scans columns fast, and the ingest deduplicates
with an anti-join inside its write transaction (one writer at a time is guaranteed by the file lock).
"""

from __future__ import annotations

NUMBER = 1
NAME = "core"

SQL = """
CREATE SEQUENCE sources_id_seq START 1;

-- One row per ingest of one file (a re-ingest of the same file is a new row; its records dedupe).
CREATE TABLE sources (
    source_id       BIGINT NOT NULL DEFAULT nextval('sources_id_seq'),
    path            VARCHAR NOT NULL,      -- absolute path as given
    size_bytes      BIGINT NOT NULL,       -- size when the ingest started
    content_hash    VARCHAR,               -- 'xxh3-128:<hex>' of the bytes read; NULL while running or killed
    format          VARCHAR NOT NULL,      -- the format the reader used (auto detection names it)
    tags            MAP(VARCHAR, VARCHAR),
    rows_read       BIGINT NOT NULL DEFAULT 0,
    rows_stored     BIGINT NOT NULL DEFAULT 0,
    rows_duplicate  BIGINT NOT NULL DEFAULT 0,
    rows_rejected   BIGINT NOT NULL DEFAULT 0,
    started_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP              -- NULL: interrupted; a re-run completes it
);

-- The canonical usage record (DESIGN.md). One row per request, or per bucket of an aggregated export.
CREATE TABLE usage (
    source_id            BIGINT NOT NULL,
    record_key           VARCHAR NOT NULL,  -- request id, or a hash of the normalised record: dedupes
    key_hash             UBIGINT,           -- unused by ingestion (NULL); kept for writers that fill it
    line_no              BIGINT,            -- where in the source it was read (record index for documents)
    ts                   TIMESTAMP NOT NULL,-- UTC; the bucket start for aggregated rows
    provider             VARCHAR,           -- NULL when the log does not say and the model name does not tell
    model                VARCHAR NOT NULL,
    endpoint             VARCHAR,
    team                 VARCHAR,
    project              VARCHAR,
    user_hash            VARCHAR,           -- salted hash of the user id, never the id
    key_id               VARCHAR,           -- provider key id or a short salted hash; never a key
    n_requests           BIGINT NOT NULL DEFAULT 1,
    input_tokens         BIGINT NOT NULL,   -- all prompt tokens: cache hits and writes included
    cached_input_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens        BIGINT NOT NULL,   -- all generated tokens: reasoning included
    reasoning_tokens     BIGINT NOT NULL DEFAULT 0,
    ttft_ms              DOUBLE,
    latency_ms           DOUBLE,
    status               VARCHAR,
    billed_cost          DECIMAL(20, 10),   -- what the log says it cost, kept beside the computed cost
    billed_currency      VARCHAR,
    tags                 MAP(VARCHAR, VARCHAR)
);

-- Input records that could not be stored, with why. rows read = stored + duplicates + rejected.
CREATE TABLE rejects (
    source_id  BIGINT NOT NULL,
    line_no    BIGINT NOT NULL,   -- 1-based line (or record index in a JSON document)
    reason     VARCHAR NOT NULL,
    excerpt    VARCHAR            -- short, with string values redacted
);

-- The catalog prices in force when data was last ingested, for SQL users and hand-written queries.
-- quotascope itself prices from the catalog files (models.pricing), never from this snapshot.
CREATE TABLE catalog_prices (
    offer_id                VARCHAR NOT NULL,
    provider                VARCHAR NOT NULL,
    model                   VARCHAR NOT NULL,
    version_id              VARCHAR NOT NULL,
    effective_from          TIMESTAMP NOT NULL,
    effective_to            TIMESTAMP,
    currency                VARCHAR NOT NULL,
    input_per_mtok          DECIMAL(20, 10),
    cached_input_per_mtok   DECIMAL(20, 10),
    cache_write_per_mtok    DECIMAL(20, 10),
    output_per_mtok         DECIMAL(20, 10),
    reasoning_per_mtok      DECIMAL(20, 10),
    source                  VARCHAR NOT NULL,
    as_of                   DATE NOT NULL
);
"""
