"""The OpenTelemetry Collector's ClickHouse `otel_traces` table read as usage, with no quotascope process in
the write path: apps -> OTel Collector (`clickhouseexporter`) -> ClickHouse -> quotascope reads.

Everything here is ClickHouse SQL *generated* from the tables of `models.genai_spans` (`FIELDS` in their
order, `CACHE_RULES`, the operation / kind / request-type sets that say which spans are LLM calls,
`PROVIDER_ALIASES`, `FIRST_TOKEN_EVENTS`), so the receiver (`quotascope otlp`, Python) and this reader map a
span the same way, from one definition; a property test holds the two paths to the same rows
(tests/storage/test_otel_traces.py). The checks a usage row passes are those of the ingest
(`models.usage_record`'s bounds: whole non-negative counts below `MAX_TOKENS_PER_REQUEST`, cache reads and
writes within the input, reasoning within the output, a plausible time).

Two materialized views on the exporter's table carry every LLM span on as it is inserted:

- `quotascope_otel_usage_mv` TO the usage table: each LLM span with usage that passes the checks, keyed by
  its response id or `otlp:TRACE:SPAN` (as the receiver keys it). An exporter's retry inserts the same rows
  again: the usage table is a ReplacingMergeTree on that key and every read is `FINAL`, so it stores nothing
  new.
- `quotascope_otel_rejects_mv` TO `otel_traces_rejects`: each LLM span that is not stored, with the reason
  (an LLM call without token counts, a count that is not a whole number, ...), so nothing is silently lost.

Spans that were in `otel_traces` before the views existed are copied once by the same SELECT
(`backfill_sql`); `otel_traces_link` records that it ran. A span inserted between the view's creation and
the backfill is read by both and is one row by its key.

Only attributes the mapping names are ever read from the maps: prompts, answers and tool arguments
(`input.value`, `gen_ai.prompt*`, message content) are never selected, so never stored, logged or quoted in
a reason. The exporter writes every attribute value as a string (Go's `pcommon.Value.AsString`): counts
arrive as digit strings, which are read as the receiver reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from typing import Any, Literal, Protocol

import pyarrow as pa

from models.errors import InputError
from models.genai_spans import (
    CACHE_RULES,
    EMBEDDING_OPERATIONS,
    FIELDS,
    FIRST_TOKEN_EVENTS,
    INFERENCE_OPERATIONS,
    NO_USAGE_REASON,
    OPENINFERENCE_INFERENCE_KINDS,
    OPENLLMETRY_INFERENCE_TYPES,
    PROVIDER_ALIASES,
    SDK_NAME,
    SECONDS_PATTERN,
    is_content_attribute,
)
from models.usage_record import (
    EARLIEST_TIMESTAMP,
    FUTURE_SLACK_DAYS,
    MAX_TOKENS_PER_REQUEST,
    SAME_REQUEST_WITHIN,
)

TRACES_TABLE = "otel_traces"  # the exporter's default `traces_table_name`
REJECTS_TABLE = "otel_traces_rejects"
LINK_TABLE = "otel_traces_link"
USAGE_VIEW = "quotascope_otel_usage_mv"
REJECTS_VIEW = "quotascope_otel_rejects_mv"
SOURCE_ID = 0  # the `source_id` of usage rows read from otel_traces (an ingest run's is 1 or more)

# The counts a usage row has, each with the words a reject reason uses for it.
COUNTS: dict[str, str] = {
    "input_tokens": "input token count",
    "output_tokens": "output token count",
    "cached_input_tokens": "cache read token count",
    "cache_write_tokens": "cache write token count",
    "reasoning_tokens": "reasoning token count",
}
# Attribution columns the views may fill from an attribute; `user` is left out: the ingest stores a user id
# only as a salted hash, and the salt would have to be written into the view's definition for anyone with
# SHOW CREATE to read.
VIEW_ATTRIBUTION = ("team", "project", "key_id", "endpoint")
_MAX_COUNT_DIGITS = 18  # as the ingest: 18 digits stay below 2**60, so sums of four counts never overflow


class OtelTracesError(InputError):
    """An attribution the views cannot apply, or a link that would change one without being asked to."""


def lit(text: str) -> str:
    """A ClickHouse string literal (backslashes are escapes there, not only quotes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _array(values: Iterable[str]) -> str:
    return "[" + ", ".join(lit(v) for v in sorted(values)) + "]"


# Python's `str.strip()` removes what `str.isspace()` calls white space (the last is U+3000); the same set as
# an RE2 class, so a value padded with a no-break space is trimmed alike on both paths.
_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x3001)) if c.isspace()) + "]"


def _strip(x: str) -> str:
    """`str.strip()` of a string value; a value that starts and ends with a visible ASCII character (nearly
    all) skips the regular expression."""
    return (
        f"if(ascii({x}) BETWEEN 33 AND 126 AND ascii(reverse({x})) BETWEEN 33 AND 126, {x}, "
        f"replaceRegexpAll({x}, {lit(f'^{_SPACE}+|{_SPACE}+$')}, ''))"
    )


def _select(columns: list[str], rest: str) -> str:
    joined = ",\n    ".join(columns)
    return f"SELECT\n    {joined}\n{rest}"


def _attr(name: str, column: str = "SpanAttributes") -> str:
    return f"if(mapContains({column}, {lit(name)}), {column}[{lit(name)}], NULL)"


def _first(names: tuple[str, ...]) -> str:
    """`genai_spans._first`: the first attribute of `names` the span has (every value is a string here)."""
    return f"coalesce({', '.join(_attr(n) for n in names)})" if len(names) > 1 else _attr(names[0])


@dataclass(frozen=True)
class SpanMapping:
    """The SELECT over `otel_traces` giving, per LLM span, the canonical usage columns and why it is not
    stored (`reason`, NULL for a row to store)."""

    attribution: Mapping[str, str]
    traces: str = TRACES_TABLE

    def picked(self) -> str:
        """Innermost: each field's raw value, read once from the maps; only spans that may be LLM calls."""
        fields = [f"{_first(names)} AS f_{field}" for field, names in FIELDS.items()]
        tokens = FIELDS["input_tokens"] + FIELDS["output_tokens"]
        has_tokens = " OR ".join(f"mapContains(SpanAttributes, {lit(n)})" for n in tokens)
        named = FIELDS["operation"] + FIELDS["openinference_kind"] + FIELDS["request_type"]
        may_be_llm = " OR ".join([has_tokens, *(f"mapContains(SpanAttributes, {lit(n)})" for n in named)])
        first_token = (
            f"arrayFilter((t, n) -> n IN {_array(FIRST_TOKEN_EVENTS)}, Events.Timestamp, Events.Name)"
        )
        attribution = [
            f"coalesce({_attr(name)}, {_attr(name, 'ResourceAttributes')}) AS a_{column}"
            for column, name in self.attribution.items()
        ]
        columns = [
            "TraceId AS trace_id",
            "SpanId AS span_id",
            "toUnixTimestamp64Nano(Timestamp) AS start_ns",
            "Duration AS duration_ns",
            "StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS error",  # current exporter, and before 0.9x
            "ScopeName AS scope",
            f"{_attr(SDK_NAME, 'ResourceAttributes')} AS f_sdk",
            f"({has_tokens}) AS has_tokens",
            f"if(empty({first_token}), NULL, toUnixTimestamp64Nano(arrayMin({first_token}))) "
            "AS first_token_ns",
            *fields,
            *attribution,
        ]
        return _select(columns, f"FROM {self.traces}\nWHERE {may_be_llm}")

    def stripped(self) -> str:
        """Each value trimmed as `str.strip()` trims, once (`t_...`)."""
        names = [f"f_{field}" for field in (*FIELDS, "sdk")] + [f"a_{column}" for column in self.attribution]
        columns = ["*", *(f"{_strip(name)} AS t{name[1:]}" for name in names)]
        return _select(columns, f"FROM ({self.picked()})")

    def typed(self) -> str:
        """The middle layer: `genai_spans.classify`, the texts, the counts as numbers, the cache rule."""
        inference = (
            f"multiIf(op IS NOT NULL, op IN {_array(INFERENCE_OPERATIONS)}, "
            f"oi_kind IS NOT NULL, upperUTF8(oi_kind) IN {_array(OPENINFERENCE_INFERENCE_KINDS)}, "
            f"request_type IS NOT NULL, request_type IN {_array(OPENLLMETRY_INFERENCE_TYPES)}, "
            "f_provider IS NOT NULL AND has_tokens)"
        )
        lowered = "lowerUTF8(provider_text)"
        aliases = (
            f"transform({lowered}, {_array(PROVIDER_ALIASES)}, "
            f"[{', '.join(lit(PROVIDER_ALIASES[k]) for k in sorted(PROVIDER_ALIASES))}], {lowered})"
        )
        counts = []
        for field in COUNTS:
            digits = f"replaceRegexpOne(t_{field}, '^0+([0-9])', '\\\\1')"  # int("007") is 7
            counts += [
                f"if(match({digits}, '^[0-9]{{1,{_MAX_COUNT_DIGITS}}}$'), toInt64({digits}), NULL) "
                f"AS n_{field}",
                f"match(t_{field}, '^[0-9]+$') AS whole_{field}",
            ]
        embedding_ops = _array(EMBEDDING_OPERATIONS)
        seconds = f"if(match(t_ttft_s, {lit(SECONDS_PATTERN)}), toFloat64OrNull(t_ttft_s), NULL)"
        columns = [
            "*",
            "nullIf(t_operation, '') AS op",
            "nullIf(t_openinference_kind, '') AS oi_kind",
            "nullIf(t_request_type, '') AS request_type",
            f"{inference} AS inference",
            "nullIf(t_provider, '') AS provider_text",
            f"nullIf({aliases}, '') AS provider",
            "nullIf(t_model, '') AS model",
            "nullIf(t_service_tier, '') AS service_tier",
            "nullIf(t_sdk, '') AS sdk",
            *counts,
            f"(coalesce(op, request_type) IN {embedding_ops} OR oi_kind IN {embedding_ops}) AS embedding",
            f"{self._excludes_cache()} AS excludes_cache",
            f"{seconds} AS ttft_s",
        ]
        return _select(columns, f"FROM ({self.stripped()})")

    def _excludes_cache(self) -> str:
        """`genai_spans.cache_rule`: whether the span's input count leaves cache reads and writes out."""
        arms = []
        for entry in CACHE_RULES:
            if entry.rule != "input_excludes_cache":
                continue
            by = []
            if entry.sdk:
                by.append(f"sdk = {lit(entry.sdk)}")
            if entry.scope_prefix:
                by.append(f"startsWith(scope, {lit(entry.scope_prefix)})")
            if by:
                arms.append(f"(provider = {lit(entry.provider)} AND ({' OR '.join(by)}))")
        return f"coalesce({' OR '.join(arms)}, false)" if arms else "false"

    def canonical(self) -> str:
        """The outer layer: the canonical columns and the reject reason of every LLM span."""
        input_canon = (
            "if(excludes_cache AND whole_input_tokens, n_input_tokens + if(whole_cached_input_tokens, "
            "coalesce(n_cached_input_tokens, 0), 0) + if(whole_cache_write_tokens, "
            "coalesce(n_cache_write_tokens, 0), 0), n_input_tokens)"
        )
        output = "if(f_output_tokens IS NULL AND embedding, 0, n_output_tokens)"
        ttft = (
            "if(ttft_s IS NOT NULL AND isFinite(ttft_s), if(ttft_s >= 0, ttft_s * 1000.0, NULL), "
            "if(first_token_ns IS NULL OR first_token_ns < start_ns, NULL, "
            "(first_token_ns - start_ns) / 1e6))"
        )
        attribution = [f"nullIf(t_{c}, '') AS {c}" for c in self.attribution]
        columns = [
            "coalesce(nullIf(t_response_id, ''), concat('otlp:', trace_id, ':', span_id)) AS record_key",
            "fromUnixTimestamp64Micro(intDiv(start_ns, 1000), 'UTC') AS ts",
            "provider",
            "model",
            f"{input_canon} AS input_tokens",
            "coalesce(n_cached_input_tokens, 0) AS cached_input_tokens",
            "coalesce(n_cache_write_tokens, 0) AS cache_write_tokens",
            f"{output} AS output_tokens",
            "coalesce(n_reasoning_tokens, 0) AS reasoning_tokens",
            f"{ttft} AS ttft_ms",
            "if(start_ns > 0 AND duration_ns < 9223372036854775808, duration_ns / 1e6, NULL) AS latency_ms",
            "if(error, 'error', 'ok') AS status",
            "service_tier",
            *attribution,
            "trace_id",
            "span_id",
            f"{self._reason(output, input_canon)} AS reason",
        ]
        verdict = "inference AND (has_tokens OR NOT error)"  # an error without usage: a failed call, ignored
        return _select(columns, f"FROM ({self.typed()})\nWHERE {verdict}")

    def _reason(self, output: str, input_canon: str) -> str:
        """Why an LLM span is not stored (NULL: stored), the ingest's checks in the ingest's order."""
        checks: list[tuple[str, str]] = [
            ("NOT has_tokens", lit(NO_USAGE_REASON)),
            (
                "model IS NULL",
                lit("no model name (gen_ai.response.model / gen_ai.request.model / llm.model_name)"),
            ),
            ("f_input_tokens IS NULL", lit(f"no {COUNTS['input_tokens']}")),
            (f"({output}) IS NULL AND f_output_tokens IS NULL", lit(f"no {COUNTS['output_tokens']}")),
        ]
        for field, label in COUNTS.items():
            raw = f"f_{field}"
            shown = f"leftUTF8({raw}, 24)"
            checks += [
                (
                    f"{raw} IS NOT NULL AND NOT whole_{field} AND match(t_{field}, '^-[0-9]+$')",
                    f"concat({lit(label + ' is negative (')}, {shown}, ')')",
                ),
                (
                    f"{raw} IS NOT NULL AND NOT whole_{field}",
                    f"concat({lit(label + ' is ')}, '\"', {shown}, '\", not a whole number')",
                ),
                (
                    f"{raw} IS NOT NULL AND (n_{field} IS NULL OR n_{field} > {MAX_TOKENS_PER_REQUEST})",
                    f"concat({lit(label + ' is implausibly large (')}, {shown}, ')')",
                ),
            ]
        checks += [
            (
                f"cached_input_tokens + cache_write_tokens > {input_canon}",
                "concat('cached (', toString(cached_input_tokens), ') and cache-write (', "
                "toString(cache_write_tokens), ') tokens exceed all prompt tokens (', "
                f"toString({input_canon}), ')')",
            ),
            (
                f"reasoning_tokens > {output}",
                "concat('reasoning tokens (', toString(reasoning_tokens), ') exceed output tokens (', "
                f"toString({output}), ')')",
            ),
            (
                f"start_ns < {int(EARLIEST_TIMESTAMP.replace(tzinfo=UTC).timestamp())}000000000",
                f"concat('span start time ', formatDateTime(ts, '%F %T'), ' is implausible (before "
                f"{EARLIEST_TIMESTAMP.year}: no LLM usage log is that old)')",
            ),
            (
                f"ts > now64(6, 'UTC') + INTERVAL {FUTURE_SLACK_DAYS} DAY",
                "concat('span start time ', formatDateTime(ts, '%F %T'), ' is implausible (in the future)')",
            ),
        ]
        arms = ", ".join(f"{condition}, {reason}" for condition, reason in checks)
        return f"multiIf({arms}, NULL)"


# ------------------------------------------------------------------------------------------ the views

# The usage columns the views fill, each with its expression over `SpanMapping.canonical()`; the others
# take the usage table's defaults (no billed cost, not a batch, no tags).
_USAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source_id", str(SOURCE_ID)),
    ("record_key", "record_key"),
    ("ts", "ts"),
    ("provider", "provider"),
    ("model", "assumeNotNull(model)"),
    ("n_requests", "1"),
    ("input_tokens", "assumeNotNull(input_tokens)"),
    ("cached_input_tokens", "cached_input_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("output_tokens", "assumeNotNull(output_tokens)"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("ttft_ms", "ttft_ms"),
    ("latency_ms", "latency_ms"),
    ("status", "status"),
    ("service_tier", "service_tier"),
)


def check_attribution(attribution: Mapping[str, str]) -> None:
    """Refuse what the views cannot fill (`user`: see VIEW_ATTRIBUTION) and content attributes."""
    for column, name in attribution.items():
        if column not in VIEW_ATTRIBUTION:
            raise OtelTracesError(
                f"otel_traces can fill {', '.join(VIEW_ATTRIBUTION)} from an attribute, not {column!r} "
                "(a user id is stored only as a salted hash, and the salt would be readable in the view)"
            )
        if is_content_attribute(name):
            raise OtelTracesError(f"{name!r} holds prompts or answers, which quotascope never stores")


@dataclass(frozen=True)
class Link:
    """How `otel_traces` feeds `usage` in one database: the tables' names and the attribution."""

    database: str | None = None  # None: the connection's current database
    usage_table: str = "usage"
    attribution: Mapping[str, str] | None = None  # None: as linked before (none at first)
    traces: str = TRACES_TABLE
    cluster: str | None = None  # create the views ON CLUSTER (each shard's otel_traces feeds usage)

    def mapping(self) -> SpanMapping:
        attribution = dict(self.attribution or {})
        check_attribution(attribution)
        return SpanMapping(attribution, self.name(self.traces))

    def name(self, table: str) -> str:
        return f"{self.database}.{table}" if self.database else table

    @property
    def database_expr(self) -> str:
        return lit(self.database) if self.database else "currentDatabase()"

    @property
    def attribution_text(self) -> str:
        """The attribution as `--attribute` takes it (`key_id=app.key,team=service.name`), sorted."""
        return ",".join(f"{c}={a}" for c, a in sorted((self.attribution or {}).items()))

    @property
    def attribution_json(self) -> str:
        return json.dumps(dict(sorted((self.attribution or {}).items())))

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def _engine(self, table: str) -> str:
        if not self.cluster:
            return "ReplacingMergeTree"
        path = f"/clickhouse/tables/{{shard}}/{self.database}/{table}"
        return f"ReplicatedReplacingMergeTree('{path}', '{{replica}}')"

    def usage_select(self) -> str:
        """The usage rows of every LLM span of the traces table to store (what the usage view inserts):
        the spans that pass the checks and whose request usage does not hold yet, by the ingest's rule
        (`models.usage_record.SAME_REQUEST_WITHIN`: the same key within a week of a stored row's time is
        the same request), once per key. So an exporter's retry, and a request a log file brought first,
        are never inserted again, and the rollups the usage table feeds (`storage.clickhouse_schema`), which
        see every inserted row, count each request once. In the view, `FROM` the traces table is the
        inserted block: the stored rows looked up are those of the block's keys only."""
        columns = [
            f"span.{expr} AS {name}" if expr == name else f"{expr} AS {name}" for name, expr in _USAGE_COLUMNS
        ]
        columns += [f"span.{column} AS {column}" for column in self.mapping().attribution]
        canonical = self.mapping().canonical()
        within_us = SAME_REQUEST_WITHIN // timedelta(microseconds=1)
        traces, week = self.name(self.traces), f"INTERVAL {within_us // 1_000_000 + 1} SECOND"
        stored = (  # the months and hours near the block's spans only (partitions, sort key)
            f"SELECT record_key, groupArray(ts) AS stored_ts FROM {self.name(self.usage_table)}\n"
            f"WHERE ts BETWEEN (SELECT min(Timestamp) FROM {traces}) - {week} "
            f"AND (SELECT max(Timestamp) FROM {traces}) + {week}\n"
            f"AND record_key IN (SELECT record_key FROM ({canonical}) WHERE reason IS NULL)\n"
            "GROUP BY record_key"
        )
        same = f"abs(dateDiff('microsecond', t, span.ts)) <= {within_us}"
        rest = (
            f"FROM ({canonical}) AS span\n"
            f"LEFT JOIN ({stored}) AS stored ON span.record_key = stored.record_key\n"
            f"WHERE span.reason IS NULL AND NOT arrayExists(t -> {same}, stored.stored_ts)\n"
            "LIMIT 1 BY span.record_key"
        )
        return _select(columns, rest)

    def rejects_select(self) -> str:
        """Every LLM span not stored, with why (what the rejects view inserts)."""
        columns = ["record_key", "ts", "trace_id", "span_id", "reason"]
        return _select(columns, f"FROM ({self.mapping().canonical()})\nWHERE reason IS NOT NULL")

    def tables_ddl(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.name(REJECTS_TABLE)}{self.on_cluster} (
    record_key String,
    ts DateTime64(6, 'UTC'),
    trace_id String,
    span_id String,
    reason String
) ENGINE = {self._engine(REJECTS_TABLE)}
PARTITION BY toYYYYMM(ts)
ORDER BY record_key""",
            f"""CREATE TABLE IF NOT EXISTS {self.name(LINK_TABLE)}{self.on_cluster} (
    view String,
    attribution String,
    backfilled_at DateTime64(6, 'UTC')
) ENGINE = {self._engine(LINK_TABLE)}
ORDER BY view""",
        ]

    def views_ddl(self) -> list[str]:
        usage, rejects = self.name(self.usage_table), self.name(REJECTS_TABLE)
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name(USAGE_VIEW)}{self.on_cluster} TO {usage} AS\n"
            + self.usage_select(),
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name(REJECTS_VIEW)}{self.on_cluster} "
            f"TO {rejects} AS\n" + self.rejects_select(),
        ]

    def backfill_sql(self) -> list[str]:
        """What the traces table held before the views existed, copied once (ReplacingMergeTree keys make a
        span read both by a view and by this one row), then the link recorded."""
        names = [name for name, _ in _USAGE_COLUMNS] + list(self.mapping().attribution)
        return [
            f"INSERT INTO {self.name(self.usage_table)} ({', '.join(names)})\n{self.usage_select()}",
            f"INSERT INTO {self.name(REJECTS_TABLE)} (record_key, ts, trace_id, span_id, reason)\n"
            + self.rejects_select(),
            f"INSERT INTO {self.name(LINK_TABLE)} (view, attribution, backfilled_at) "
            f"VALUES ({lit(USAGE_VIEW)}, {lit(self.attribution_json)}, now64(6, 'UTC'))",
        ]

    def unlink_sql(self) -> list[str]:
        """The views dropped and what they noted emptied, to link anew (the rows they stored are deleted
        next, by `Runner.delete_usage`)."""
        return [
            f"DROP VIEW IF EXISTS {self.name(USAGE_VIEW)}{self.on_cluster}",
            f"DROP VIEW IF EXISTS {self.name(REJECTS_VIEW)}{self.on_cluster}",
            f"TRUNCATE TABLE IF EXISTS {self.name(REJECTS_TABLE)}{self.on_cluster}",
            f"TRUNCATE TABLE IF EXISTS {self.name(LINK_TABLE)}{self.on_cluster}",
        ]


# ------------------------------------------------------------------------------------------ linking


class Runner(Protocol):
    """What linking needs of a ClickHouse connection (`storage.clickhouse.ClickHouse`, or chdb's)."""

    def command(self, sql: str) -> None: ...

    def arrow(self, sql: str) -> pa.Table: ...

    def delete_usage(self, where: str) -> None:
        """Delete usage rows and follow with the rollups (`storage.clickhouse.ClickHouse.delete_usage`)."""


def _scalar(runner: Runner, sql: str) -> Any:
    table = runner.arrow(sql)
    return table.column(0)[0].as_py() if table.num_rows else None


LinkOutcome = Literal["no otel_traces", "linked", "already linked", "relinked"]


def link_traces(runner: Runner, link: Link, *, relink: bool = False) -> LinkOutcome:
    """Create the views on the exporter's table if it is there, and copy what it held before, once.

    Safe to run again (and after a crash half-way): the tables and views are created IF NOT EXISTS, and the
    copy runs until `LINK_TABLE` records it, and again whenever the usage view was missing (a ClickHouse
    migration that redefines it drops it): the copy stores only spans not stored yet. Linked before with
    another attribution, it refuses unless `relink`: then the views are made anew and every row they stored
    is replaced (the attribution is part of a usage row's sort key, so the old rows would stay beside).
    """
    if link.attribution is not None:
        check_attribution(link.attribution)  # refused before anything is looked up or created
    present = _scalar(
        runner,
        "SELECT count() FROM system.tables "
        f"WHERE database = {link.database_expr} AND name = {lit(link.traces)}",
    )
    if not present:
        return "no otel_traces"
    for sql in link.tables_ddl():
        runner.command(sql)
    before = _scalar(
        runner,
        f"SELECT attribution FROM {link.name(LINK_TABLE)} FINAL WHERE view = {lit(USAGE_VIEW)} LIMIT 1",
    )
    if link.attribution is None:  # keep what is linked (nothing at first)
        link = replace(link, attribution=json.loads(before) if before else {})
    changed = before is not None and before != link.attribution_json
    if changed and not relink:
        linked = Link(attribution=json.loads(before)).attribution_text
        raise OtelTracesError(
            f"otel_traces is linked with the attribution {linked or 'none'}; to read it with "
            f"{link.attribution_text or 'none'} instead, relink (`quotascope traces --relink`: every span's "
            "usage row is written anew)"
        )
    if changed:
        for sql in link.unlink_sql():
            runner.command(sql)
        runner.delete_usage(f"source_id = {SOURCE_ID}")
    view = _scalar(
        runner,
        "SELECT count() FROM system.tables "
        f"WHERE database = {link.database_expr} AND name = {lit(USAGE_VIEW)}",
    )
    for sql in link.views_ddl():
        runner.command(sql)
    if before is not None and not changed and view:
        return "already linked"
    for sql in link.backfill_sql():
        runner.command(sql)
    return "relinked" if changed else "linked"


@dataclass(frozen=True, slots=True)
class TracesAccount:
    """Every LLM span row of otel_traces accounted for: rows = stored + duplicates + rejected."""

    llm_span_rows: int  # LLM span rows (an exporter's retry writes a span's row again)
    stored: int  # distinct records in usage from otel_traces
    duplicates: int  # rows repeating a record already counted
    rejected: int  # distinct records not stored, each with its reason
    reasons: tuple[tuple[str, int], ...]  # the most frequent reasons, with how many records

    @property
    def balanced(self) -> bool:
        return self.llm_span_rows == self.stored + self.duplicates + self.rejected


def account(runner: Runner, link: Link, *, reasons: int = 10) -> TracesAccount:
    """Count what became of otel_traces' LLM spans (reads the whole table: a command, not a page's read)."""
    canonical = link.mapping().canonical()
    rows, keys = (
        runner.arrow(f"SELECT count(), uniqExact(record_key) FROM ({canonical})").to_pylist()[0].values()
    )
    stored = _scalar(
        runner, f"SELECT count() FROM {link.name(link.usage_table)} FINAL WHERE source_id = {SOURCE_ID}"
    )
    rejects = link.name(REJECTS_TABLE)
    rejected = _scalar(runner, f"SELECT count() FROM {rejects} FINAL")
    top = runner.arrow(
        f"SELECT reason, count() AS n FROM {rejects} FINAL "
        f"GROUP BY reason ORDER BY n DESC, reason LIMIT {reasons}"
    ).to_pylist()
    return TracesAccount(
        llm_span_rows=int(rows),
        stored=int(stored or 0),
        duplicates=int(rows) - int(keys),
        rejected=int(rejected or 0),
        reasons=tuple((str(r["reason"]), int(r["n"])) for r in top),
    )


class Layout(Protocol):
    """Where a store keeps its tables (`storage.clickhouse_schema.Layout`)."""

    @property
    def database(self) -> str: ...

    @property
    def cluster(self) -> str | None: ...


def store_link(layout: Layout, attribution: Mapping[str, str] | None = None) -> Link:
    """The link of a ClickHouse store's database: its usage table (the Distributed one on a cluster)."""
    return Link(database=layout.database, attribution=attribution, cluster=layout.cluster)
