"""Pure domain of quotascope: catalog values, pricing, capacity, cost.

Nothing in this package does I/O or imports duckdb, httpx or streamlit (a test checks it).

Frame columns carry their unit in their name (the frames passed between `models/`, `storage/` and the pages;
`tests/models/test_frame_units.py` holds the replay, pricing and traffic frames to it):

- token counts end in `_tokens`, with the usage record's kinds (`input_tokens` — all prompt tokens, cache
  hits and writes included —, `cached_input_tokens`, `cache_write_tokens`, `output_tokens` — reasoning
  included —, `reasoning_tokens`, `total_tokens` = input + output); a prefix says whose: `target_` (as a
  target offer would see them, `models.target`), `counted_` (what counts against a limit);
- request counts end in `_requests` or are `requests` (fractional where an aggregated row was spread):
  `throttled_requests`, `max_queue_requests`, `max_in_flight_requests`, `unpriced_requests`;
- durations end in `_s` or `_ms` (`delay_s`, `duration_s`, `ttft_ms`); `t_s` is seconds since an origin;
  points in time (`ts`, `at`, `minute`, `day`) are timestamps or dates and carry no unit;
- rates end in `_per_minute` or `_per_s` (`demand_per_minute`, `tokens_per_s_p50`); where the measure of a
  rate differs by row, a `measure` column names it (the column it counts), as `currency` does for money;
- prices per million tokens end in `_per_mtok`; money is DECIMAL with a `currency` column beside it (never
  `cost_usd`), so `cost`, `amount`, `cost_per_1k_questions` are money in that row's currency;
- shares are fractions from 0 to 1 and end in `_share` (`throttled_share`); `_percent` is 0–100;
- counts of other things say what they count (`minutes_over_limit`, `keys_needed`, `versions`).

Limit names (`tpm`, `rpm`, `itpm`, `otpm`, `tpd`, `rpd`, `max_concurrency`) are the catalog's and keep their
own units (tokens or requests per minute or day; concurrent requests). Pages show columns in words with their
unit (`dashboard.tables.in_words`).
"""
