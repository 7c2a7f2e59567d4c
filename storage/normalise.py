"""Turn blocks of JSON log records into canonical usage rows inside DuckDB, with a reason for every reject.

Each block is an Arrow table of lines (no Python object per line). One lean statement parses every line once
(`json_extract` with all the paths a format needs), computes the canonical columns and a cheap `ok` flag;
only the lines that fail get a second statement that says why, most specific reason first. The two agree
by construction: `ok` is true exactly when the reason is NULL (a property test holds them to it).

This runs on an in-memory DuckDB, not the database file, so blocks are normalised in parallel threads while
the file stays free for readers; `storage.usage.store_batch` writes the result.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.sql import sql_string
from models.usage_record import (
    CACHE_OVER_INPUT,
    EARLIEST_TIMESTAMP,
    FAILED_BATCH_MODEL,
    FUTURE_SLACK_DAYS,
    KEY_HASH,
    NO_TIMESTAMP,
    NO_USAGE_BLOCK,
    SHOWN_CHARS,
    SHOWN_TIME,
    USER_HASH,
    Check,
    Reason,
    RecordSpec,
    count_bound,
    redact_excerpt,
    shared_checks,
)
from storage.arrow import int64_array

RAW_CHARS = 1000  # how much of a rejected record travels to Python for its redacted excerpt

# Tag keys that fill a usage column instead of the free-form tags map.
COLUMN_TAGS = ("provider", "endpoint", "team", "project", "user", "key_id")


@dataclass(frozen=True, slots=True)
class Reject:
    line_no: int
    reason: str
    excerpt: str


NO_REASON = "rejected by a check that gave no reason (a quotascope bug)"


def _one_per_failure(explained: list[Reject], failing: list[int]) -> list[Reject]:
    """As many rejects per line number as records of that number failed. Records that share a number (the
    results of one page of an OpenAI usage export) are explained together; those of them that pass every
    check were stored, so they are no rejects: each number keeps its reasons first."""
    wanted = Counter(failing)
    kept = []
    for reject in sorted(explained, key=lambda r: (r.line_no, r.reason == NO_REASON)):
        if wanted[reject.line_no] > 0:
            wanted[reject.line_no] -= 1
            kept.append(reject)
    return kept


@dataclass(frozen=True)
class IngestContext:
    """What applies to every record of a run: the salt for hashing ids, and `--tag` values."""

    salt: str
    tags: Mapping[str, str] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    default_time: datetime | None = None  # `--default-time`: the time of records that give none (naive UTC)

    def free_tags(self) -> dict[str, str]:
        return {k: v for k, v in self.tags.items() if k not in COLUMN_TAGS}

    def params(self) -> dict[str, Any]:
        tags = self.free_tags()
        return {
            "salt": self.salt,
            **{f"tag_{name}": self.tags.get(name) for name in COLUMN_TAGS},
            "tag_keys": list(tags),
            "tag_values": list(tags.values()),
            "now": self.now,
            "default_ts": self.default_time,
        }


@dataclass(frozen=True)
class Normalised:
    rows: pa.Table  # canonical rows in `usage` column order (no source_id), not yet deduplicated
    rejects: list[Reject]


# ------------------------------------------------------------------------------------------ SQL


def _said(reason: Reason, **values: str) -> str:
    """A reason as a SQL expression, each `{name}` of its words the SQL expression `values[name]`."""
    return " || ".join(values[text] if named else sql_string(text) for text, named in reason.parts())


_EARLIEST_EPOCH_S = int(EARLIEST_TIMESTAMP.replace(tzinfo=UTC).timestamp())
# The most digits (a sign counts) a count may have to be read at all: 18 digits stay below 2**60, so the sums
# the checks make of up to four counts never overflow BIGINT; a longer count is rejected as too large
MAX_COUNT_CHARS = 18

_MACROS = (
    "CREATE OR REPLACE MACRO qs_is_int(x) AS json_type(x) IN ('UBIGINT', 'BIGINT')",
    # text without the spaces around it (trim: Unicode space separators), NULL when nothing is left; trim
    # decodes every character, so text that starts and ends with a visible ASCII character skips it. The
    # first character is tested by comparing the whole string (byte by byte: it sorts in ['!', chr(127))
    # exactly when its first byte, so its first character, is visible ASCII), the last by a pattern anchored
    # at the end: taking out x[1] and x[-1] cost a sixth of the JSON reader's statement on OpenAI responses
    "CREATE OR REPLACE MACRO qs_text(x) AS CASE WHEN x >= '!' AND x < chr(127) "
    "AND regexp_matches(x, '[!-~]$') THEN x ELSE nullif(trim(x), '') END",
    # a JSON value described for a reject reason, shortened
    "CREATE OR REPLACE MACRO qs_show(x) AS CASE json_type(x) "
    "WHEN 'VARCHAR' THEN 'the string \"' || left(x ->> '$', 24) || '\"' "
    "WHEN 'DOUBLE' THEN CASE WHEN regexp_full_match(x::VARCHAR, '-?[0-9]+') "
    "THEN 'the whole number ' || left(x::VARCHAR, 30) || ', more than a count can hold' "
    "WHEN contains(x::VARCHAR, '.') THEN 'the fraction ' || left(x::VARCHAR, 24) "
    "ELSE 'the number ' || left(x::VARCHAR, 24) END "
    "WHEN 'BOOLEAN' THEN x::VARCHAR WHEN 'ARRAY' THEN 'a list' WHEN 'OBJECT' THEN 'an object' "
    "ELSE left(x::VARCHAR, 24) END",
    # Unix time in seconds, milliseconds or microseconds, told apart by size: a number is read in the
    # smallest unit that puts it after EARLIEST_TIMESTAMP, so seconds of a far-off year (253402300799 is
    # 9999-12-31) stay seconds, and are then rejected as in the future, not read as milliseconds of 1978
    "CREATE OR REPLACE MACRO qs_epoch(x) AS TRY(CASE "
    f"WHEN x >= {_EARLIEST_EPOCH_S}e6 THEN to_timestamp(x / 1e6) "
    f"WHEN x >= {_EARLIEST_EPOCH_S}e3 THEN to_timestamp(x / 1e3) ELSE to_timestamp(x) END)::TIMESTAMP",
    # a JSON timestamp: a number (Unix time), a numeric string, or ISO 8601 text (UTC unless it has an offset)
    "CREATE OR REPLACE MACRO qs_ts(x) AS CASE "
    "WHEN TRY_CAST(x::VARCHAR AS DOUBLE) IS NOT NULL THEN qs_epoch(TRY_CAST(x::VARCHAR AS DOUBLE)) "
    "WHEN regexp_full_match(x ->> '$', '\\s*\\d+(\\.\\d+)?\\s*') "
    "THEN qs_epoch(TRY_CAST(trim(x ->> '$') AS DOUBLE)) "
    "ELSE TRY_CAST(trim(x ->> '$') AS TIMESTAMPTZ)::TIMESTAMP END",
)


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"@@P(\d+)([jt])@@")


class _Builder:
    """Builds both statements for one spec.

    Each record is parsed once, by `from_json` into a struct holding exactly the fields the spec reads:
    strings as VARCHAR, counts and timestamps as JSON text (so a string "5" or a fraction 5.5 is seen for
    what it is, not silently cast). Expressions refer to fields by placeholders until all fields are known.
    """

    def __init__(self, spec: RecordSpec) -> None:
        self.spec = spec
        self.paths: list[tuple[str, ...]] = []
        self.kinds: dict[tuple[str, ...], set[str]] = {}
        self.tokens = dict(spec.token_fields())

    def ref(self, path: str, kind: str = "j") -> str:
        """A placeholder for the field at `path`: as JSON text (kind j) or as a string (kind t)."""
        if not path.startswith("$."):
            raise ValueError(f"paths start with '$.': {path!r}")
        keys = tuple(path[2:].split("."))
        if not all(_KEY.match(k) for k in keys):
            raise ValueError(f"path {path!r} needs plain key names")
        if keys not in self.kinds:
            self.paths.append(keys)
            self.kinds[keys] = set()
        self.kinds[keys].add(kind)
        return f"@@P{self.paths.index(keys)}{kind}@@"

    def value(self, paths: Sequence[str]) -> str:
        """The first of `paths` present and not null, as JSON text."""
        if not paths:
            return "NULL::JSON"
        parts = [self.ref(p) for p in paths]
        return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"

    def text(self, paths: Sequence[str]) -> str:
        """The first present value as trimmed text (numbers as their digits), or NULL."""
        if not paths:
            return "NULL::VARCHAR"
        parts = [f"qs_text({self.ref(p, 't')})" for p in paths]
        return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"

    def raw_text(self, paths: Sequence[str]) -> str:
        """The first present value as text, untrimmed (for values only compared after normalising)."""
        if not paths:
            return "NULL::VARCHAR"
        parts = [self.ref(p, "t") for p in paths]
        return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"

    def structure(self) -> tuple[str, dict[str, str]]:
        """The from_json structure and the SQL that reads each placeholder from the parsed struct `s`.

        A field that other fields sit under, or that is read as JSON, becomes one JSON leaf; what is under
        it is read from that leaf with json functions.
        """
        registered = set(self.kinds)

        def json_leaf(keys: tuple[str, ...]) -> bool:
            has_children = any(len(o) > len(keys) and o[: len(keys)] == keys for o in registered)
            return keys in registered and ("j" in self.kinds[keys] or has_children)

        tree: dict[str, Any] = {}
        access: dict[str, str] = {}
        for index, keys in enumerate(self.paths):
            leaf = next((keys[:n] for n in range(1, len(keys)) if json_leaf(keys[:n])), None)
            for kind in self.kinds[keys]:
                token = f"@@P{index}{kind}@@"
                if leaf is not None:
                    rest = "$." + ".".join(keys[len(leaf) :])
                    function = "json_extract" if kind == "j" else "json_extract_string"
                    access[token] = f"{function}({_member(leaf)}, {sql_string(rest)})"
                elif json_leaf(keys):
                    access[token] = _member(keys) if kind == "j" else f"({_member(keys)} ->> '$')"
                else:
                    access[token] = _member(keys)
            if leaf is None:
                node = tree
                for key in keys[:-1]:
                    node = node.setdefault(key, {})
                node[keys[-1]] = "JSON" if json_leaf(keys) else "VARCHAR"
        return json.dumps(tree, separators=(",", ":")), access

    # canonical expressions over the `typed` relation
    def opt(self, name: str) -> str:
        if name == "cached_input_tokens" and "cached_input_tokens_fallback" in self.tokens:
            return "coalesce(v_cached_input_tokens, v_cached_input_tokens_fallback, 0)"
        return f"coalesce(v_{name}, 0)" if name in self.tokens else "0"

    @property
    def per(self) -> str:
        return "coalesce(v_requests, 1)" if "requests" in self.tokens else "1"

    @property
    def input_canon(self) -> str:
        if self.spec.input_excludes_cache:
            return f"(v_input_tokens + {self.opt('cached_input_tokens')} + {self.opt('cache_write_tokens')})"
        return "v_input_tokens"

    def typed_relation(self) -> str:
        spec = self.spec
        columns = {
            "id_text": self.text(spec.record_id),
            "model": self.text(spec.model),
            "ts_raw": self.value(spec.timestamp),
            "provider_raw": self.text(spec.provider),
            "endpoint_raw": self.text(spec.endpoint),
            "team_raw": self.text(spec.team),
            "project_raw": self.text(spec.project),
            "user_raw": self.text(spec.user),
            "key_id_raw": self.text(spec.key_id),
            "api_key_raw": self.text(spec.api_key),
            "tags_raw": self.value(spec.tags),
            "ttft_raw": self.text(spec.ttft_ms),
            "latency_raw": self.text(spec.latency_ms),
            "first_token_raw": self.value(spec.first_token_time),
            "end_raw": self.value(spec.end_time),
            "status": self.text(spec.status),
            "billed_raw": self.text(spec.billed_cost),
            "currency_raw": self.text(spec.billed_currency),
            # as written: the pricing engine lower-cases and maps it (trimming each row's text cost a fifth of
            # the statement on OpenAI responses, which all carry it)
            "service_tier_raw": self.raw_text(spec.service_tier),
            "batch_raw": self.text(spec.batch),
            "failed": self.failed(),
            **{f"r_{name}": self.value(f.paths) for name, f in self.tokens.items()},
        }
        evidence = " ".join(
            f"WHEN {self.ref(path)} IS NOT NULL THEN {sql_string(provider)}"
            for path, provider in spec.provider_evidence
        )
        flags = " ".join(
            f"WHEN {self.ref(path, 't')} = 'true' THEN {sql_string(endpoint)}"
            for path, endpoint in spec.endpoint_flags
        )
        columns["evidence"] = f"CASE {evidence} END" if evidence else "NULL::VARCHAR"
        columns["flag_endpoint"] = f"CASE {flags} END" if flags else "NULL::VARCHAR"
        raw_cols = ",\n        ".join(f"{expr} AS {name}" for name, expr in columns.items())
        ints = ",\n        ".join(
            f"TRY_CAST(CASE WHEN length(r_{name}::VARCHAR) <= {MAX_COUNT_CHARS} THEN r_{name}::VARCHAR END "
            f"AS BIGINT) AS v_{name}"
            for name in self.tokens
        )
        return f"""
fields AS (
    SELECT line_no, line, s,
        {raw_cols}
    FROM parsed
),
typed AS (
    SELECT *,
        {ints},
        {self._ts()} AS ts,
        TRY_CAST(billed_raw AS DECIMAL(20, 10)) AS billed_cost
    FROM fields
)"""

    def _ts(self) -> str:
        """The record's time; `--default-time` where it gives none (a failed batch line: the ingest's)."""
        failed = (
            "WHEN failed THEN coalesce($default_ts::TIMESTAMP, $now::TIMESTAMP) "
            if self.spec.failures
            else ""
        )
        return f"CASE WHEN ts_raw IS NOT NULL THEN qs_ts(ts_raw) {failed}ELSE $default_ts::TIMESTAMP END"

    def failed(self) -> str:
        """Whether the line is a failed batch request (a request that cost nothing, stored without tokens)."""
        arms = []
        for failure in self.spec.failures:
            if failure.present:
                ref = self.ref(failure.path)
                arms.append(f"({ref} IS NOT NULL AND json_type({ref}) <> 'NULL')")
            text = f"qs_text({self.ref(failure.path, 't')})"
            if failure.values:
                arms.append(f"{text} IN ({', '.join(sql_string(v) for v in failure.values)})")
            if failure.not_values:
                arms.append(f"{text} NOT IN ({', '.join(sql_string(v) for v in failure.not_values)})")
        return f"coalesce({' OR '.join(arms)}, false)" if arms else "false"

    def ok(self) -> str:
        """True exactly when `reasons()` finds nothing wrong; cheap, evaluated on every line."""
        if not self.spec.failures:
            return self._ok()
        return f"(failed AND ts IS NOT NULL OR {self._ok()})"

    def _ok(self) -> str:
        spec = self.spec
        usage_present = " OR ".join(f"{self.ref(p)} IS NOT NULL" for p in spec.usage_block)
        raw_texts = ", ".join(f"r_{name}::VARCHAR" for name in self.tokens)
        conditions = [
            "s IS NOT NULL",
            f"({usage_present})",
            "model IS NOT NULL",
            "v_input_tokens IS NOT NULL",
            "v_output_tokens IS NOT NULL",
            # every count present is written as a non-negative whole number (no sign, point, exponent, quote)
            f"regexp_full_match(concat_ws(' ', {raw_texts}), '[0-9 ]*')",
            *(f"(r_{name} IS NULL OR v_{name} IS NOT NULL)" for name in self.tokens),
            *(f"coalesce(v_{name}, 0) <= {self._bound(name)}" for name in self.tokens),
            *self._consistency(),
            "ts IS NOT NULL",
            f"ts >= TIMESTAMP '{EARLIEST_TIMESTAMP.isoformat(sep=' ')}'",
            f"ts <= $now::TIMESTAMP + INTERVAL {FUTURE_SLACK_DAYS} DAY",
            "(billed_raw IS NULL OR billed_cost >= 0)",
        ]
        if "requests" in self.tokens:
            conditions.append("coalesce(v_requests, 1) > 0")
        return "coalesce(" + "\n        AND ".join(conditions) + ", false)"

    def _if_failed(self, then: str, otherwise: str) -> str:
        """`then` for a failed batch line, else `otherwise`; specs that have none skip the test per row."""
        return f"CASE WHEN failed THEN {then} ELSE {otherwise} END" if self.spec.failures else otherwise

    def _batch(self) -> str:
        if self.spec.always_batch:
            return "true"
        return "coalesce(lower(batch_raw) = 'true', false)" if self.spec.batch else "false"

    def _bound(self, name: str) -> str:
        """`count_bound` as SQL: a token bound is per request, so a row's bound is times its requests."""
        if name == "requests":
            return str(count_bound(name))
        return f"{count_bound(name)}::HUGEINT * {self.per}"

    def _consistency(self) -> list[str]:
        out = [
            f"{self.opt('cached_input_tokens')} + {self.opt('cache_write_tokens')} <= {self.input_canon}",
        ]
        if "reasoning_tokens" in self.tokens:
            out.append(f"{self.opt('reasoning_tokens')} <= v_output_tokens")
        if "cache_write_1h_tokens" in self.tokens:
            out.append(f"{self.opt('cache_write_1h_tokens')} <= {self.opt('cache_write_tokens')}")
        if "cache_miss_tokens" in self.tokens:
            out.append(
                "(v_cache_miss_tokens IS NULL OR v_cached_input_tokens IS NULL "
                "OR v_cached_input_tokens + v_cache_miss_tokens = v_input_tokens)"
            )
        if "total_tokens" in self.tokens:
            out.append("(v_total_tokens IS NULL OR v_total_tokens = v_input_tokens + v_output_tokens)")
        return out

    def reasons(self) -> str:
        """The first thing wrong with a line, most specific first; NULL when nothing is."""
        spec = self.spec
        usage_present = " OR ".join(f"{self.ref(p)} IS NOT NULL" for p in spec.usage_block)
        error_present = " OR ".join(f"{self.ref(p)} IS NOT NULL" for p in ("$.error", "$.response.error"))
        object_type = self.text(spec.object_type)
        no_usage = (
            f"NOT ({usage_present})",
            "CASE WHEN json_type(line) <> 'OBJECT' THEN 'not a JSON object' "
            f"WHEN {error_present} THEN 'an error response (no usage)' "
            f"WHEN {object_type} LIKE '%chunk' THEN 'a stream chunk without usage (only the final chunk "
            "carries it: stream with stream_options.include_usage)' "
            f"ELSE {_said(NO_USAGE_BLOCK, path=sql_string(spec.usage_block[0]))} END",
        )
        checks: list[tuple[str, str]] = [
            (
                "s IS NULL",
                "CASE WHEN regexp_full_match(line, '[\\s\\pZ\\x0b\\x1c-\\x1f\\x85]*') "
                "THEN 'not valid JSON (only white space JSON does not allow, such as a vertical tab or a "
                "no-break space)' "
                "WHEN NOT regexp_matches(rtrim(line, ' ' || chr(9) || chr(10) || chr(13)), '[}\\]]$') "
                "THEN 'not valid JSON (the record is cut short)' ELSE 'not valid JSON' END",
            ),
        ]
        # the checks every format shares (`models.usage_record.shared_checks`), this SQL's own between them
        for check in shared_checks(spec):
            if check.test == "negative":
                checks.append(self._not_whole(check.fields[0]))
            if check.reason is CACHE_OVER_INPUT and "requests" in self.tokens:
                checks.append(("v_requests = 0", "'a row of zero requests'"))
            if check.reason is NO_TIMESTAMP:
                checks += self._agreements()
            if check.test == "before":
                checks.append(("ts IS NULL", "'timestamp ' || qs_show(ts_raw) || ' is not a date-time'"))
            checks.append(no_usage if check.test == "no_usage" else self._shared(check))
        checks += [
            (
                "billed_raw IS NOT NULL AND billed_cost IS NULL",
                "'billed cost \"' || left(billed_raw, 24) || '\" is not a number'",
            ),
            ("billed_cost < 0", "'billed cost is negative (' || billed_raw || ')'"),
        ]
        if self.spec.failures:  # a failed batch request: stored, not rejected
            checks.insert(0, ("failed AND ts IS NOT NULL", "NULL"))
        return "CASE\n        " + "\n        ".join(f"WHEN {c} THEN {r}" for c, r in checks) + "\n    END"

    def _shared(self, check: Check) -> tuple[str, str]:
        """A shared check (`models.usage_record.Check`) as (condition, reason) over this spec's columns."""
        name = check.fields[0] if check.fields else ""
        raw, value = f"r_{name}", f"v_{name}"
        said: dict[str, str] = {"label": sql_string(self.tokens[name].label) if name in self.tokens else ""}
        if check.test in ("negative", "too_large"):
            said["value"] = f"left({raw}::VARCHAR, {SHOWN_CHARS})"
        if check.test in ("before", "after"):
            said["ts"] = f"strftime(ts, {sql_string(SHOWN_TIME)})"
        if check.test == "missing":
            condition = {"model": "model IS NULL", "ts": "ts_raw IS NULL"}.get(name, f"{raw} IS NULL")
        elif check.test == "negative":
            condition = f"{value} < 0 OR starts_with({raw}::VARCHAR, '-')"
        elif check.test == "too_large":
            condition = f"{raw} IS NOT NULL AND ({value} IS NULL OR {value} > {self._bound(name)})"
        elif check.test == "exceeds":
            operands = [self._operand(field) for field in check.fields]
            condition = f"{' + '.join(operands[:-1])} > {operands[-1]}"
            said = dict(zip(check.reason.names(), operands, strict=True))
        elif check.test == "before":
            assert isinstance(check.bound, datetime)
            condition = f"ts < TIMESTAMP '{check.bound.isoformat(sep=' ')}'"
            said["year"] = sql_string(str(check.bound.year))
        else:
            assert check.test == "after" and isinstance(check.bound, timedelta)
            condition = f"ts > $now::TIMESTAMP + INTERVAL {check.bound.days} DAY"
        return condition, _said(check.reason, **said)

    def _operand(self, name: str) -> str:
        """A count as the consistency checks compare it (absent counts as 0; input as the spec counts it)."""
        if name == "input_tokens":
            return self.input_canon
        if name == "output_tokens":
            return "v_output_tokens"
        return self.opt(name)

    def _not_whole(self, name: str) -> tuple[str, str]:
        label, raw = sql_string(self.tokens[name].label), f"r_{name}"
        return (
            f"{raw} IS NOT NULL AND NOT qs_is_int({raw})",
            f"{label} || ' is ' || qs_show({raw}) || CASE WHEN json_type({raw}) = 'DOUBLE' "
            f"AND regexp_full_match({raw}::VARCHAR, '-?[0-9]+') THEN '' "
            "ELSE ', not a whole number' END",
        )

    def _agreements(self) -> list[tuple[str, str]]:
        """This SQL's own checks of counts that must agree (1-hour writes, cache hit + miss, total)."""
        checks = []
        if "cache_write_1h_tokens" in self.tokens:
            hour, write = self.opt("cache_write_1h_tokens"), self.opt("cache_write_tokens")
            checks.append(
                (
                    f"{hour} > {write}",
                    f"'1-hour cache writes (' || {hour} || ') exceed all cache writes (' || {write} || ')'",
                )
            )
        if "cache_miss_tokens" in self.tokens:
            checks.append(
                (
                    "v_cache_miss_tokens IS NOT NULL AND v_cached_input_tokens IS NOT NULL "
                    "AND v_cached_input_tokens + v_cache_miss_tokens <> v_input_tokens",
                    "'cache hit (' || v_cached_input_tokens || ') + miss (' || v_cache_miss_tokens "
                    "|| ') tokens differ from the prompt tokens (' || v_input_tokens || ')'",
                )
            )
        total = self.tokens.get("total_tokens")
        if total is not None:
            checks.append(
                (
                    "v_total_tokens IS NOT NULL AND v_total_tokens <> v_input_tokens + v_output_tokens",
                    f"{sql_string(total.label)} || ' (' || v_total_tokens || ') is not "
                    f"{self.spec.input.label} + {self.spec.output.label} (' "
                    "|| (v_input_tokens + v_output_tokens) || ')'",
                )
            )
        return checks

    def _rows_select(
        self, tag_columns: frozenset[str] = frozenset(), extra: tuple[tuple[str, str], ...] = ()
    ) -> str:
        """The canonical columns; columns that neither the spec nor a --tag can fill are left out (NULL)."""
        spec = self.spec
        default_provider = sql_string(spec.default_provider) if spec.default_provider else "NULL"
        cached, write, reasoning = (
            self.opt("cached_input_tokens"),
            self.opt("cache_write_tokens"),
            self.opt("reasoning_tokens"),
        )
        hashed = ", ".join(
            (
                "strftime(ts, '%Y-%m-%dT%H:%M:%S.%f')",
                "coalesce(provider_raw, '')",
                "model",
                "coalesce(endpoint_raw, '')",
                "coalesce(team_raw, '')",
                "coalesce(project_raw, '')",
                "coalesce(user_raw, '')",
                "coalesce(key_id_raw, api_key_raw, '')",
                f"{self.per}::VARCHAR",
                "v_input_tokens::VARCHAR",
                f"({cached})::VARCHAR",
                f"({write})::VARCHAR",
                "v_output_tokens::VARCHAR",
                f"({reasoning})::VARCHAR",
            )
        )
        columns = [
            (f"{self.ok()}", "ok"),
            (f"coalesce(id_text, 'h:' || md5(concat_ws('|', {hashed})))", "record_key"),
            ("line_no", "line_no"),
            ("ts", "ts"),
            (f"lower(coalesce(provider_raw, $tag_provider, evidence, {default_provider}))", "provider"),
            (self._if_failed(f"coalesce(model, {sql_string(FAILED_BATCH_MODEL)})", "model"), "model"),
            (f"{self.per}::BIGINT", "n_requests"),
            *(
                (self._if_failed("0", f"({expr})::BIGINT"), name)  # a failed request: no tokens
                for expr, name in (
                    (self.input_canon, "input_tokens"),
                    (cached, "cached_input_tokens"),
                    (write, "cache_write_tokens"),
                    ("v_output_tokens", "output_tokens"),
                    (reasoning, "reasoning_tokens"),
                    (self.opt("cache_write_1h_tokens"), "cache_write_1h_tokens"),
                )
            ),
            ("service_tier_raw", "service_tier"),  # as the provider wrote it: the pricing engine normalises
            (self._batch(), "batch"),
        ]
        has = {
            "endpoint": bool(spec.endpoint or spec.endpoint_flags) or "endpoint" in tag_columns,
            "team": bool(spec.team) or "team" in tag_columns,
            "project": bool(spec.project) or "project" in tag_columns,
            "user_hash": bool(spec.user) or "user" in tag_columns,
            "key_id": bool(spec.key_id or spec.api_key) or "key_id" in tag_columns,
            "ttft_ms": bool(spec.ttft_ms or spec.first_token_time),
            "latency_ms": bool(spec.latency_ms or spec.end_time),
            "status": bool(spec.status or spec.failures),
            "billed": bool(spec.billed_cost),
            "tags": bool(spec.tags) or "free" in tag_columns,
        }
        optional = [
            ("endpoint", "coalesce(endpoint_raw, flag_endpoint, $tag_endpoint)"),
            ("team", "coalesce(team_raw, $tag_team)"),
            ("project", "coalesce(project_raw, $tag_project)"),
            (
                "user_hash",
                "CASE WHEN coalesce(user_raw, $tag_user) IS NOT NULL "
                f"THEN {USER_HASH.sql('$salt', 'coalesce(user_raw, $tag_user)')} END",
            ),
            (
                "key_id",
                "coalesce(key_id_raw, $tag_key_id, CASE WHEN api_key_raw IS NOT NULL "
                f"THEN {KEY_HASH.sql('$salt', 'api_key_raw')} END)",
            ),
            (
                "ttft_ms",
                "coalesce(TRY_CAST(ttft_raw AS DOUBLE), CASE WHEN first_token_raw IS NOT NULL "
                "THEN epoch_ms(qs_ts(first_token_raw)) - epoch_ms(ts) END)::DOUBLE",
            ),
            (
                "latency_ms",
                "coalesce(TRY_CAST(latency_raw AS DOUBLE), CASE WHEN end_raw IS NOT NULL "
                "THEN epoch_ms(qs_ts(end_raw)) - epoch_ms(ts) END)::DOUBLE",
            ),
            ("status", self._if_failed("coalesce(status, 'failed')", "status")),
        ]
        columns += [(expr, name) for name, expr in optional if has[name]]
        if has["billed"]:
            columns += [
                ("billed_cost", "billed_cost"),
                (
                    "CASE WHEN billed_cost IS NOT NULL "
                    f"THEN upper(coalesce(currency_raw, {sql_string(spec.default_currency)})) END",
                    "billed_currency",
                ),
            ]
        if has["tags"]:
            columns.append(
                (
                    "CASE WHEN tags_raw IS NOT NULL OR len($tag_keys) > 0 THEN map_concat("
                    "map($tag_keys::VARCHAR[], $tag_values::VARCHAR[]), "
                    "coalesce(TRY(json_transform(tags_raw, '\"MAP(VARCHAR, VARCHAR)\"')), "
                    "MAP {}::MAP(VARCHAR, VARCHAR))) END",
                    "tags",
                )
            )
        columns += list(extra)
        select = ",\n    ".join(f"{expr} AS {name}" for expr, name in columns)
        return f"SELECT\n    {select}\nFROM typed"


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a statement names (DuckDB refuses unused ones)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}


def tag_columns(context: IngestContext) -> frozenset[str]:
    """Which --tag values reach a column (they change which columns a statement fills)."""
    names = {name for name in COLUMN_TAGS if context.tags.get(name)}
    if context.free_tags():
        names.add("free")
    return frozenset(names)


def build_sql(
    spec: RecordSpec,
    mode: Literal["rows", "reasons", "stage"],
    tag_columns: frozenset[str] = frozenset(),
    source: str = "src",
    *,
    json_reader: Callable[[str], str] | None = None,
) -> str:
    """The statement for one spec.

    "rows" and "reasons" read relation `src` (line, line_no) and skip blank lines. "stage" reads `source`
    (a relation of `line` only, one row per line of a file, blank ones included, in file order) and adds
    `blank` and `null_line` so that a row's position is its line number. With `json_reader`, "stage"
    reads records parsed by DuckDB's JSON reader instead: `json_reader(columns)` is a `read_json(...)` call
    given the `columns` it is to read (blank lines are then skipped by the reader, never seen).
    Parameters: $salt, $tag_provider, $tag_endpoint, $tag_team, $tag_project, $tag_user, $tag_key_id,
    $tag_keys, $tag_values and $now; "reasons" needs $now only.
    """
    builder = _Builder(spec)
    if mode == "reasons":
        select = f"SELECT line_no, {builder.reasons()} AS reason, left(line, {RAW_CHARS}) AS raw FROM typed"
    elif mode == "rows":
        select = builder._rows_select(tag_columns)
    else:
        flags = (
            (("false", "null_line"), ("false", "blank"))
            if json_reader is not None
            else (
                ("line IS NULL", "null_line"),
                ("coalesce(regexp_full_match(line, '\\s*'), false)", "blank"),
            )
        )
        select = builder._rows_select(tag_columns, extra=flags)
    relation = builder.typed_relation()
    structure, access = builder.structure()
    if mode == "stage" and json_reader is not None:
        # the reader's row is the record: the struct `s` that from_json would have made
        parsed = (
            "parsed AS (\n    SELECT NULL::BIGINT AS line_no, NULL::VARCHAR AS line, record AS s\n"
            f"    FROM {json_reader(_columns(json.loads(structure)))} AS record\n),"
        )
    else:
        lines = (
            f"(SELECT line, NULL::BIGINT AS line_no FROM {source})"
            if mode == "stage"
            else "(SELECT line, line_no FROM src WHERE NOT regexp_full_match(line, '\\s*'))"
        )
        parsed = (
            f"parsed AS (\n    SELECT line_no, line, TRY(from_json(line, {sql_string(structure)})) AS s\n"
            f"    FROM {lines}\n),"
        )
    sql = "WITH " + parsed + relation + "\n" + select
    return _PLACEHOLDER.sub(lambda m: access[m.group(0)], sql)


def _columns(structure: dict[str, Any]) -> str:
    """A from_json structure as read_json's `columns` argument (key names are plain: see `_KEY`)."""

    def sql_type(node: str | dict[str, Any]) -> str:
        if isinstance(node, str):
            return node
        return "STRUCT(" + ", ".join(f'"{key}" {sql_type(inner)}' for key, inner in node.items()) + ")"

    fields = (f"{sql_string(key)}: {sql_string(sql_type(node))}" for key, node in structure.items())
    return "{" + ", ".join(fields) + "}"


def _member(keys: tuple[str, ...]) -> str:
    return "s." + ".".join(f'"{k}"' for k in keys)


# ------------------------------------------------------------------------------------------ running


def lines_table(
    data: bytes | memoryview, first_line: int = 1, line_numbers: Sequence[int] | None = None
) -> tuple[pa.Table, list[Reject]]:
    """An Arrow table (line, line_no) over newline-terminated `data` without copying it; lines that are
    not UTF-8 become blank and come back as rejects."""
    if not len(data):
        empty = pa.LargeStringArray.from_buffers(
            0, pa.py_buffer(np.zeros(1, dtype=np.int64)), pa.py_buffer(b"")
        )
        return pa.table({"line": empty, "line_no": int64_array(np.empty(0))}), []
    if data[-1:] != b"\n":
        data = bytes(data) + b"\n"
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    count = len(ends)
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends
    numbers = (
        np.arange(first_line, first_line + count, dtype=np.int64)
        if line_numbers is None
        else np.asarray(line_numbers, dtype=np.int64)
    )
    if len(numbers) != count:
        raise ValueError(f"{len(numbers)} line numbers for {count} lines")
    lines = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        kept = []
        rejects = []
        for number, raw in zip(numbers.tolist(), bytes(data).split(b"\n")[:-1], strict=True):
            try:
                raw.decode("utf-8")
                kept.append(raw + b"\n")
            except UnicodeDecodeError as e:
                reason = f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                rejects.append(Reject(number, reason, redact_excerpt(raw.decode("utf-8", "replace"))))
                kept.append(b"\n")
        return lines_table(b"".join(kept), first_line, numbers.tolist())[0], rejects
    return pa.table({"line": lines, "line_no": int64_array(numbers)}), []


def _unchecked(line: pa.Table, error: duckdb.Error) -> Reject:
    """The reject of one line that made the check statement itself fail."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    (row,) = line.to_pylist()
    return Reject(row["line_no"], f"could not be checked: {first}"[:300], redact_excerpt(row["line"] or ""))


class Normaliser:
    """Runs a spec's statements on blocks; safe to call from several threads at once."""

    def __init__(self) -> None:
        # one thread per statement: parallelism comes from normalising several blocks at once
        self._con = duckdb.connect(":memory:", config={"threads": 1})
        self._con.execute("SET TimeZone = 'UTC'")
        for macro in _MACROS:
            self._con.execute(macro)
        self._sql: dict[tuple[RecordSpec, str, frozenset[str]], str] = {}
        self._schemas: dict[tuple[RecordSpec, str, frozenset[str]], pa.Schema] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._con.cursor()
        cursor.execute("SET enable_progress_bar = false")
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def sql_for(
        self, spec: RecordSpec, mode: Literal["rows", "reasons"], tags: frozenset[str] = frozenset()
    ) -> str:
        with self._lock:
            key = (spec, mode, tags)
            if key not in self._sql:
                self._sql[key] = build_sql(spec, mode, tags)
            return self._sql[key]

    def schema(self, spec: RecordSpec, context: IngestContext) -> pa.Schema:
        """The columns and types of the rows `normalise` gives for `spec` under `context`'s tags."""
        key = (spec, "schema", tag_columns(context))
        with self._lock:
            known = self._schemas.get(key)
        if known is None:
            known = self.normalise(spec, b"", context).rows.schema
            with self._lock:
                self._schemas[key] = known
        return known

    def normalise(
        self,
        spec: RecordSpec,
        data: bytes | memoryview,
        context: IngestContext,
        *,
        first_line: int = 1,
        line_numbers: Sequence[int] | None = None,
    ) -> Normalised:
        """Canonical rows and redacted rejects of one block of newline-terminated JSON records."""
        source, rejects = lines_table(data, first_line, line_numbers)
        cursor = self._cursor()
        try:
            parts = self._lines(cursor, spec, source, context)
        finally:
            cursor.close()
        rows = [part.rows for part in parts if part.rows.num_rows] or [parts[0].rows]
        rejects += [r for part in parts for r in part.rejects]
        rejects.sort(key=lambda r: r.line_no)
        return Normalised(pa.concat_tables(rows), rejects)

    def _lines(
        self, cursor: duckdb.DuckDBPyConnection, spec: RecordSpec, source: pa.Table, context: IngestContext
    ) -> list[Normalised]:
        """Normalise these lines; if the statement itself fails on them (a record no check foresaw), halve
        them until the line that makes it fail stands alone, and reject that line with DuckDB's words."""
        try:
            return [self._checked(cursor, spec, source, context)]
        except duckdb.Error as e:
            if source.num_rows > 1:
                half = source.num_rows // 2
                return self._lines(cursor, spec, source.slice(0, half), context) + self._lines(
                    cursor, spec, source.slice(half), context
                )
            empty = self._checked(cursor, spec, source.slice(0, 0), context)
            return [Normalised(empty.rows, [_unchecked(source, e)] if source.num_rows else [])]

    def _checked(
        self, cursor: duckdb.DuckDBPyConnection, spec: RecordSpec, source: pa.Table, context: IngestContext
    ) -> Normalised:
        cursor.register("src", source)
        sql = self.sql_for(spec, "rows", tag_columns(context))
        staged = cursor.sql(sql, params=_used(sql, context.params())).to_arrow_table()
        ok = staged.column("ok")
        failed = pc.invert(ok)
        rejects: list[Reject] = []
        if pc.any(failed).as_py():
            failing = pc.filter(staged.column("line_no"), failed)
            explained = self._reasons(
                cursor, spec, source.filter(pc.is_in(source.column("line_no"), failing)), context
            )
            rejects = _one_per_failure(explained, failing.to_pylist())
            staged = staged.filter(ok)
        return Normalised(staged.drop_columns(["ok"]), rejects)

    def explain(
        self, spec: RecordSpec, data: bytes, line_numbers: Sequence[int], context: IngestContext
    ) -> list[Reject]:
        """Why each of these lines (which failed a check elsewhere) is rejected."""
        source, rejects = lines_table(data, line_numbers=line_numbers)
        cursor = self._cursor()
        try:
            try:
                rejects += self._reasons(cursor, spec, source, context)
            except duckdb.Error:  # one of them breaks the statement: each line on its own
                for index in range(source.num_rows):
                    line = source.slice(index, 1)
                    try:
                        rejects += self._reasons(cursor, spec, line, context)
                    except duckdb.Error as e:
                        rejects.append(_unchecked(line, e))
        finally:
            cursor.close()
        rejects.sort(key=lambda r: r.line_no)
        return rejects

    def _reasons(
        self, cursor: duckdb.DuckDBPyConnection, spec: RecordSpec, lines: pa.Table, context: IngestContext
    ) -> list[Reject]:
        cursor.register("src", lines)
        sql = self.sql_for(spec, "reasons")
        explained = cursor.sql(sql, params=_used(sql, context.params())).to_arrow_table()
        return [
            Reject(
                row["line_no"],
                row["reason"] or NO_REASON,
                redact_excerpt(row["raw"] or ""),
            )
            for row in explained.to_pylist()
        ]
