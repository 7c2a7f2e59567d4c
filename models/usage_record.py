"""The canonical usage record (DESIGN.md) and how a log format maps onto it.

A `RecordSpec` says, for one log format, where each canonical field is found in a record (JSON paths, the
first present wins) and which convention its token counts follow. The specs are plain values: the readers
in `collectors.ingest` choose one, and `storage.normalise` turns it into the SQL that extracts, checks and
normalises a batch of records inside DuckDB. Validation limits and the reject-excerpt redaction live here
too, so every format is judged by the same rules.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# A request with more tokens than this is a corrupt count, not a real request (the largest context windows
# are around 10M tokens). Aggregated rows may reach this many per request on average.
MAX_TOKENS_PER_REQUEST = 100_000_000
# Aggregated rows (an organisation usage export bucket) cannot plausibly stand for more requests than this.
MAX_REQUESTS_PER_ROW = 1_000_000_000


def count_bound(name: str) -> int:
    """The largest plausible value of count `name`: requests per row, else tokens per request."""
    return MAX_REQUESTS_PER_ROW if name == "requests" else MAX_TOKENS_PER_REQUEST


# Usage logs older than this are a unit mistake (milliseconds read as seconds), not LLM traffic.
EARLIEST_TIMESTAMP = datetime(2020, 1, 1)
# How far into the future a timestamp may be (clock skew) before it is rejected as implausible.
FUTURE_SLACK_DAYS = 2

# The token columns of a usage row (see the canonical record in DESIGN.md).
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
# The counts a report sums per group: requests, the tokens, and the 1-hour part of the cache writes.
SUMMED_COUNTS = ("requests", *TOKEN_FIELDS, "cache_write_1h_tokens")

# Two records are one request when their keys (request id, or a hash of the fields) are equal and their times
# within this of each other. The same file read again, or grown, gives each record the same time; one request
# logged by two tools (a gateway's start time, the response's `created`, a batch finished a day later) is well
# within it; an id seen again weeks later is another request.
SAME_REQUEST_WITHIN = timedelta(days=7)

EXCERPT_CHARS = 160


@dataclass(frozen=True)
class Reason:
    """A reject reason's words, `{name}` where a value of the record goes: one definition that both the
    SQL checks (`storage.normalise`, which render it as a SQL expression) and the checks over typed columns
    (`storage.columnar`, which format it in Python) read, so the two say the same thing."""

    template: str

    def text(self, **values: object) -> str:
        return self.template.format(**values)

    def names(self) -> list[str]:
        """The names of the record's values the words show, in order."""
        return [text for text, named in self.parts() if named]

    def parts(self) -> list[tuple[str, bool]]:
        """(literal text, False) and (value name, True), in order."""
        out: list[tuple[str, bool]] = []
        for i, part in enumerate(re.split(r"\{(\w+)\}", self.template)):
            if part:
                out.append((part, i % 2 == 1))
        return out


@dataclass(frozen=True)
class Pseudonym:
    """How an identifier is stored in place of its value: `prefix` and the first `digits` hex digits of
    sha256(salt, scope, ':', value). One definition, computed in Python (`of`, the checks over typed
    columns in `storage.columnar`) and rendered as DuckDB SQL (`sql`, the ingest's statement in
    `storage.normalise`), so the two paths give every user and key the same pseudonym."""

    prefix: str
    scope: str
    digits: int

    def of(self, salt: str, value: str) -> str:
        return self.prefix + hashlib.sha256(f"{salt}{self.scope}:{value}".encode()).hexdigest()[: self.digits]

    def sql(self, salt: str, value: str) -> str:
        """The SQL computing it from the SQL expressions `salt` and `value` (a NULL value gives NULL)."""
        return f"'{self.prefix}' || left(sha256({salt} || '{self.scope}:' || {value}), {self.digits})"


USER_HASH = Pseudonym("u", "user", 15)  # `user_hash`: a user id is never stored
KEY_HASH = Pseudonym("k", "key", 11)  # `key_id` from an API key (or a key's hash) a log carries


# Why a record is refused, for the checks every format shares (the format's own ones stay with its SQL).
NO_USAGE_BLOCK = Reason("no usage block ({path} is missing)")
NO_MODEL = Reason("no model name")
NO_COUNT = Reason("no {label}")
NEGATIVE_COUNT = Reason("{label} is negative ({value})")
LARGE_COUNT = Reason("{label} is implausibly large ({value})")
CACHE_OVER_INPUT = Reason(
    "cached ({cached}) and cache-write ({write}) tokens exceed all prompt tokens ({input})"
)
REASONING_OVER_OUTPUT = Reason("reasoning tokens ({reasoning}) exceed output tokens ({output})")
NO_TIMESTAMP = Reason("no timestamp (give one with --default-time ISO)")
TOO_EARLY = Reason("timestamp {ts} is implausible (before {year}: no LLM usage log is that old)")
IN_FUTURE = Reason("timestamp {ts} is implausible (in the future)")
# How a count is shown in a reason: its first characters (as the SQL checks show its JSON text); a time.
SHOWN_CHARS = 24
SHOWN_TIME = "%Y-%m-%d %H:%M:%S"

# Canonical field names a generic CSV column may map to (`--csv-map column=field`).
CSV_FIELDS: dict[str, str] = {
    "request_id": "a unique id of the request (deduplicates re-ingestion)",
    "ts": "request time: ISO 8601 (UTC unless it has an offset) or Unix seconds/milliseconds",
    "provider": "who served it (deepseek, openai, anthropic, volcengine, ...)",
    "model": "model name as billed",
    "endpoint": "endpoint or route name",
    "team": "team the request is attributed to",
    "project": "project the request is attributed to",
    "user": "user id (stored only as a salted hash)",
    "key_id": "API key id (an id, not the key)",
    "api_key": "API key or key hash (stored only as a short salted hash)",
    "requests": "number of requests the row stands for (default 1)",
    "input_tokens": "all prompt tokens, cache hits and writes included",
    "cached_input_tokens": "prompt tokens served from cache",
    "cache_write_tokens": "prompt tokens written to cache (billed writes)",
    "cache_write_1h_tokens": "the part of cache_write_tokens written for an hour (Anthropic's 1-hour cache)",
    "output_tokens": "all generated tokens, reasoning included",
    "reasoning_tokens": "the reasoning part of output tokens",
    "ttft_ms": "time to first token, milliseconds",
    "latency_ms": "end-to-end latency, milliseconds",
    "status": "status or HTTP code",
    "billed_cost": "cost the log states",
    "billed_currency": "currency of billed_cost (default USD)",
    "service_tier": "the service tier that served it (default, flex, priority, scale, standard, batch)",
    "batch": "true when the request went through a batch API",
}

Paths = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenField:
    """Where one token count is found and what to call it in a reject reason."""

    paths: Paths
    label: str


@dataclass(frozen=True)
class Failure:
    """A failed request in a batch-results file: a value at `path` (`present`: any non-null value; else the
    text is one of `values`, or present and not one of `not_values`)."""

    path: str
    present: bool = False
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


# The model name a failed batch line without one is stored under: it cost nothing (models.pricing prices it
# at zero), and is counted among the requests.
FAILED_BATCH_MODEL = "(failed batch request)"


@dataclass(frozen=True)
class RecordSpec:
    """Where a format keeps each canonical field. Paths are DuckDB JSON paths (`$.usage.prompt_tokens`)."""

    name: str
    model: Paths
    timestamp: Paths
    input: TokenField
    output: TokenField
    usage_block: Paths  # a record with none of these has no usage at all
    record_id: Paths = ()
    provider: Paths = ()
    endpoint: Paths = ()
    team: Paths = ()
    project: Paths = ()
    user: Paths = ()
    key_id: Paths = ()  # ids that are not secrets (OpenAI `api_key_id`)
    api_key: Paths = ()  # keys or key hashes: stored only as a short salted hash
    tags: Paths = ()  # a JSON object of extra string tags
    requests: TokenField | None = None  # None: every record is one request
    cached_input: TokenField | None = None
    cached_input_fallback: TokenField | None = None  # used when `cached_input` is absent
    cache_write: TokenField | None = None
    cache_miss: TokenField | None = None  # DeepSeek: hit + miss must equal the prompt tokens
    total: TokenField | None = None  # when present, must equal input + output (as the log counts them)
    reasoning: TokenField | None = None
    ttft_ms: Paths = ()
    latency_ms: Paths = ()
    first_token_time: Paths = ()  # a timestamp: TTFT is it minus the request's timestamp (LiteLLM)
    end_time: Paths = ()  # a timestamp: latency is it minus the request's timestamp
    status: Paths = ()
    billed_cost: Paths = ()
    billed_currency: Paths = ()
    object_type: Paths = ()  # `object` of OpenAI responses: explains a stream chunk without usage
    # Anthropic: `input_tokens` excludes cache reads and writes, so canonical input adds them.
    input_excludes_cache: bool = False
    # The provider the format itself implies (an Anthropic Messages response), and evidence in the record
    # that names one (DeepSeek's `prompt_cache_hit_tokens`): (path, provider).
    default_provider: str | None = None
    provider_evidence: tuple[tuple[str, str], ...] = ()
    default_currency: str = "USD"
    # Values of `endpoint` named by a boolean field, e.g. OpenAI export `batch: true` -> "batch".
    endpoint_flags: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # The price dimensions (models.pricing): the service tier that served it, whether it went through a
    # batch API (boolean paths, or every record of a batch-results file), and 1-hour cache writes (part of
    # `cache_write`).
    service_tier: Paths = ()
    batch: Paths = ()
    always_batch: bool = False
    cache_write_1h: TokenField | None = None
    # How a line says its request failed (batch results: an error line, errored / canceled / expired): such
    # a line is a request that cost nothing, stored with no tokens, never a reject.
    failures: tuple[Failure, ...] = ()

    def token_fields(self) -> list[tuple[str, TokenField]]:
        """(canonical name, field) of every count the spec reads, in the order reasons check them."""
        named: list[tuple[str, TokenField | None]] = [
            ("requests", self.requests),
            ("input_tokens", self.input),
            ("output_tokens", self.output),
            ("cached_input_tokens", self.cached_input),
            ("cached_input_tokens_fallback", self.cached_input_fallback),
            ("cache_write_tokens", self.cache_write),
            ("cache_write_1h_tokens", self.cache_write_1h),
            ("cache_miss_tokens", self.cache_miss),
            ("reasoning_tokens", self.reasoning),
            ("total_tokens", self.total),
        ]
        return [(name, f) for name, f in named if f is not None]


@dataclass(frozen=True)
class Check:
    """One check every format's records pass, as data: `storage.normalise` renders it as SQL over a JSON
    record, `storage.columnar` as numpy over typed columns; both take `shared_checks`' order, in which the
    first check a record fails is its reason. A record fails when (`test`):

    - "no_usage": the spec's usage block is missing;
    - "missing": `fields[0]` is not given;
    - "negative": the count `fields[0]` is below zero; "too_large": above `bound` (per request);
    - "exceeds": the sum of `fields[:-1]` is above `fields[-1]` (the reason names them in that order);
    - "before": the time is before `bound`; "after": more than `bound` past now.
    """

    reason: Reason
    test: str
    fields: tuple[str, ...] = ()
    bound: int | datetime | timedelta | None = None


def shared_checks(spec: RecordSpec) -> list[Check]:
    """The checks of `spec`'s records every format shares, in order (a format's own, such as a count that
    is not a whole number, come between them in its SQL)."""
    counts = dict(spec.token_fields())
    checks = [
        Check(NO_USAGE_BLOCK, "no_usage"),
        Check(NO_MODEL, "missing", ("model",)),
        Check(NO_COUNT, "missing", ("input_tokens",)),
        Check(NO_COUNT, "missing", ("output_tokens",)),
    ]
    for name in counts:
        checks.append(Check(NEGATIVE_COUNT, "negative", (name,)))
        checks.append(Check(LARGE_COUNT, "too_large", (name,), count_bound(name)))
    checks.append(
        Check(CACHE_OVER_INPUT, "exceeds", ("cached_input_tokens", "cache_write_tokens", "input_tokens"))
    )
    if "reasoning_tokens" in counts:
        checks.append(Check(REASONING_OVER_OUTPUT, "exceeds", ("reasoning_tokens", "output_tokens")))
    return [
        *checks,
        Check(NO_TIMESTAMP, "missing", ("ts",)),
        Check(TOO_EARLY, "before", ("ts",), EARLIEST_TIMESTAMP),
        Check(IN_FUTURE, "after", ("ts",), timedelta(days=FUTURE_SLACK_DAYS)),
    ]


def rooted(roots: Paths, *suffixes: str) -> Paths:
    """Every suffix under every root: rooted(("$", "$.r"), "usage.x") -> ("$.usage.x", "$.r.usage.x")."""
    return tuple(f"{root}.{suffix}" if suffix else root for suffix in suffixes for root in roots)


# ------------------------------------------------------------------------------------------ excerpts

_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?')
_KEEP_VALUES = frozenset(
    {"object", "type", "model", "finish_reason", "stop_reason", "role", "status", "service_tier"}
)
_NUMBERISH = re.compile(r"^-?[\d.]+$")


def redact_excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short excerpt of a rejected record that shows its shape but no content, ids or secrets.

    JSON keys and numbers stay; string values become "…" except a few harmless descriptors (model names,
    object types). Plain text (a CSV row) keeps only numbers and separators.
    """
    head = text[: limit * 4].strip()
    stripped = head.lstrip()
    if stripped.startswith(("{", "[")):
        out: list[str] = []
        last_key = ""
        pos = 0
        for match in _STRING.finditer(head):
            out.append(head[pos : match.start()])
            content, colon = match.group(1), match.group(2)
            if colon:
                out.append(match.group(0))
                last_key = content
            elif last_key in _KEEP_VALUES and len(content) <= 64:
                out.append(f'"{content}"')
            else:
                out.append('"…"')
            pos = match.end()
        rest = head[pos:]
        if rest.count('"') % 2:  # an unterminated string (truncated record): hide its tail
            rest = rest[: rest.index('"')] + '"…'
        out.append(rest)
        redacted = "".join(out)
    else:
        redacted = ",".join(
            cell if _NUMBERISH.match(cell.strip()) or not cell.strip() else "…" for cell in head.split(",")
        )
    redacted = redacted.replace("\r", "").replace("\n", " ")
    return redacted if len(redacted) <= limit else redacted[: limit - 1] + "…"
