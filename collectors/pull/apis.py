"""The four admin reports `quotascope pull` reads, and how their pages become rows.

OpenAI (Authorization: Bearer <admin key>; start_time / end_time in Unix seconds, end exclusive;
bucket_width=1d; group_by repeated; limit buckets per page; page = the previous next_page):
- GET /v1/organization/usage/completions: buckets of results with `input_tokens` (cached included),
  `input_cached_tokens`, `output_tokens`, `num_model_requests`, `project_id`, `user_id`, `api_key_id`,
  `model`, `batch`, `service_tier` (platform.openai.com/docs/api-reference/usage/completions). Read with the
  same reader and normaliser as `quotascope ingest --format openai-usage-export`.
- GET /v1/organization/costs: buckets of results with `amount.value` (a number, in `amount.currency`,
  lowercase ISO 4217, "usd"), `line_item` and `project_id` when grouped by them; only 1d buckets, limit up to
  180 (platform.openai.com/docs/api-reference/usage/costs). Line items read "<model>, <input|output|...>".
  Newer references name a bucket's list `result`; answers we know name it `results`: both are read.

Anthropic (x-api-key: <admin key>, anthropic-version: 2023-06-01; starting_at / ending_at RFC 3339;
bucket_width=1d; group_by[] repeated; limit; page = the previous next_page):
- GET /v1/organizations/usage_report/messages: results with `uncached_input_tokens`,
  `cache_read_input_tokens`, `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`,
  `output_tokens`, and `model`, `workspace_id`, `api_key_id`, `service_tier` when grouped by them; 1d
  buckets: default 7, at most 31 a page
  (platform.claude.com/docs/en/api/admin/usage_report/retrieve_messages). It has no request counts.
- GET /v1/organizations/cost_report: results with `amount`, a decimal string in the currency's lowest unit
  (cents: "123.45" USD is $1.2345), `currency`, and `workspace_id`, `description`, `model`, `cost_type`,
  `token_type`, `service_tier` when grouped by workspace_id and description
  (platform.claude.com/docs/en/api/admin/cost_report/retrieve).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from collectors.ingest.formats import OPENAI_USAGE_EXPORT
from collectors.ingest.records import RecordBlock, usage_export_records
from collectors.pull.http import AdminKey, PageRequest, QueryValue
from models.billing import CostLine
from models.usage_record import RecordSpec, TokenField, redact_excerpt

ANTHROPIC_VERSION = "2023-06-01"  # the API version every Anthropic admin request names
OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
DAY_BUCKETS_PER_PAGE = 31  # the most both providers allow for 1d buckets on every one of these reports

Report = Literal["usage", "costs"]

# An Anthropic usage result flattened by `anthropic_usage_records`: input normalised to include the cache.
ANTHROPIC_USAGE_REPORT = RecordSpec(
    name="anthropic-usage-report",
    record_id=("$._key",),
    model=("$.model",),
    timestamp=("$.starting_at",),
    usage_block=("$.uncached_input_tokens", "$.output_tokens"),
    input=TokenField(("$.uncached_input_tokens",), "uncached_input_tokens"),
    output=TokenField(("$.output_tokens",), "output_tokens"),
    cached_input=TokenField(("$.cache_read_input_tokens",), "cache_read_input_tokens"),
    cache_write=TokenField(("$._cache_write_tokens",), "cache_creation (5m + 1h)"),
    input_excludes_cache=True,
    project=("$.workspace_id",),
    key_id=("$.api_key_id",),
    tags=("$._tags",),
    default_provider="anthropic",
)


def _openai_headers(key: AdminKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.value()}"}


def _anthropic_headers(key: AdminKey) -> dict[str, str]:
    return {"x-api-key": key.value(), "anthropic-version": ANTHROPIC_VERSION}


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


@dataclass(frozen=True)
class PullKind:
    """One admin report: where it is, how it is asked for, and whose account of what it is."""

    name: str
    provider: str
    report: Report
    path: str
    default_base_url: str
    headers: Callable[[AdminKey], dict[str, str]]
    query: Callable[[date, date], dict[str, QueryValue]]
    key_env_hint: str

    def request(self, base_url: str | None, since: date, until: date) -> PageRequest:
        base = (base_url or self.default_base_url).rstrip("/")
        return PageRequest(
            base + self.path, self.query(since, until), self.headers, decimal_numbers=self.report == "costs"
        )


def _openai_usage_query(since: date, until: date) -> dict[str, QueryValue]:
    return {
        "start_time": _unix(since),
        "end_time": _unix(until),
        "bucket_width": "1d",
        "limit": DAY_BUCKETS_PER_PAGE,
        # every dimension the export's record key is made of, so no two results share a key
        "group_by": ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"],
    }


def _openai_costs_query(since: date, until: date) -> dict[str, QueryValue]:
    return {
        "start_time": _unix(since),
        "end_time": _unix(until),
        "bucket_width": "1d",
        "limit": DAY_BUCKETS_PER_PAGE,
        "group_by": ["project_id", "line_item"],
    }


def _anthropic_usage_query(since: date, until: date) -> dict[str, QueryValue]:
    return {
        "starting_at": _rfc3339(since),
        "ending_at": _rfc3339(until),
        "bucket_width": "1d",
        "limit": DAY_BUCKETS_PER_PAGE,
        "group_by[]": ["model", "workspace_id", "api_key_id", "service_tier"],
    }


def _anthropic_costs_query(since: date, until: date) -> dict[str, QueryValue]:
    return {
        "starting_at": _rfc3339(since),
        "ending_at": _rfc3339(until),
        "bucket_width": "1d",
        "limit": DAY_BUCKETS_PER_PAGE,
        "group_by[]": ["workspace_id", "description"],
    }


KINDS: dict[str, PullKind] = {
    kind.name: kind
    for kind in (
        PullKind(
            "openai-usage",
            "openai",
            "usage",
            "/organization/usage/completions",
            OPENAI_BASE_URL,
            _openai_headers,
            _openai_usage_query,
            "OPENAI_ADMIN_KEY",
        ),
        PullKind(
            "openai-costs",
            "openai",
            "costs",
            "/organization/costs",
            OPENAI_BASE_URL,
            _openai_headers,
            _openai_costs_query,
            "OPENAI_ADMIN_KEY",
        ),
        PullKind(
            "anthropic-usage",
            "anthropic",
            "usage",
            "/organizations/usage_report/messages",
            ANTHROPIC_BASE_URL,
            _anthropic_headers,
            _anthropic_usage_query,
            "ANTHROPIC_ADMIN_KEY",
        ),
        PullKind(
            "anthropic-costs",
            "anthropic",
            "costs",
            "/organizations/cost_report",
            ANTHROPIC_BASE_URL,
            _anthropic_headers,
            _anthropic_costs_query,
            "ANTHROPIC_ADMIN_KEY",
        ),
    )
}


# ------------------------------------------------------------------------------------------ usage pages


def _results(bucket: Mapping[str, Any]) -> Any:
    return bucket.get("results", bucket.get("result"))


@dataclass(frozen=True, slots=True)
class PriceDimensions:
    """What of a usage result changes its price but has no canonical usage column: the service tier, the
    batch flag, and Anthropic's 1-hour cache writes (a part of `cache_write_tokens`)."""

    service_tier: str | None = None
    batch: bool = False
    cache_write_1h_tokens: int = 0


Dimensions = dict[int, PriceDimensions]  # by the result's number


def _page_items(
    pages: Iterable[tuple[int, Mapping[str, Any]]], dimensions: Dimensions
) -> Iterator[tuple[int, Any, str, str]]:
    """One bucket per result, numbered in the order read, as the export reader takes them: each record needs a
    number of its own (the normaliser explains a refused record by its number)."""
    number = 0
    for _, page in pages:
        data = page.get("data")
        buckets = data if isinstance(data, list) else [page]  # not a page: the reader says why
        for bucket in buckets:
            results = _results(bucket) if isinstance(bucket, dict) else None
            if not isinstance(results, list) or not results:
                if not isinstance(results, list):
                    number += 1
                    yield number, bucket, "", json.dumps(bucket, default=str)[:1000]
                continue
            for result in results:
                number += 1
                if isinstance(result, dict):
                    tier = result.get("service_tier")
                    dimensions[number] = PriceDimensions(
                        tier if isinstance(tier, str) else None, result.get("batch") is True
                    )
                one = {**bucket, "object": "bucket", "results": [result]}
                one.pop("result", None)
                yield number, one, "", json.dumps(result, default=str)[:1000]


def openai_usage_records(
    pages: Iterable[tuple[int, Mapping[str, Any]]], dimensions: Dimensions
) -> Iterator[RecordBlock]:
    """OpenAI usage pages as the organisation-export reader flattens them (one record per result)."""
    return usage_export_records(_page_items(pages, dimensions))


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def anthropic_usage_records(
    pages: Iterable[tuple[int, Mapping[str, Any]]], dimensions: Dimensions
) -> Iterator[RecordBlock]:
    """Anthropic usage pages flattened to one record per result, cache writes summed over both TTLs."""
    block = RecordBlock()
    number = 0
    for _, page in pages:
        data = page.get("data")
        raw = json.dumps(page, default=str)[:1000]
        if not isinstance(data, list):
            number += 1
            block.reject(number, "not a usage report page (no data list of buckets)", raw)
            continue
        for bucket in data:
            results = _results(bucket) if isinstance(bucket, dict) else None
            if not isinstance(results, list):
                number += 1
                block.reject(number, "a usage bucket without a results list", json.dumps(bucket, default=str))
                continue
            for result in results:
                number += 1
                if not isinstance(result, dict):
                    block.reject(number, "a usage result that is not an object", raw)
                    continue
                record = _anthropic_record(bucket, result)
                if isinstance(record, str):
                    block.reject(number, record, json.dumps(result, default=str))
                else:
                    block.add(number, record)
                    tier = result.get("service_tier")
                    dimensions[number] = PriceDimensions(
                        tier if isinstance(tier, str) else None,
                        tier == "batch",
                        int(record["_tags"].get("cache_write_1h_tokens", 0)),
                    )
    if len(block):
        yield block


def _anthropic_record(bucket: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any] | str:
    creation = result.get("cache_creation") or {}
    if not isinstance(creation, dict):
        return "cache_creation is not an object"
    five, hour = creation.get("ephemeral_5m_input_tokens", 0), creation.get("ephemeral_1h_input_tokens", 0)
    if _whole(five) is None or _whole(hour) is None or five < 0 or hour < 0:
        return "cache_creation token counts are not whole numbers of zero or more"
    identity = [
        bucket.get("starting_at"),
        bucket.get("ending_at"),
        *(result.get(k) for k in ("model", "workspace_id", "api_key_id", "service_tier", "context_window")),
    ]
    key = hashlib.sha1(json.dumps(identity, default=str).encode()).hexdigest()
    tags = {"service_tier": result.get("service_tier"), "context_window": result.get("context_window")}
    if hour:
        tags["cache_write_1h_tokens"] = str(hour)
    record = dict(result)
    record.update(
        starting_at=bucket.get("starting_at"),
        ending_at=bucket.get("ending_at"),
        _cache_write_tokens=five + hour,
        _tags={k: str(v) for k, v in tags.items() if v is not None},
        _key=f"anthropic-usage:{key}",
    )
    if record.get("model") is None:
        record["model"] = "(all models)"  # not grouped by model: stored, left unpriced
    return record


def usage_spec(kind: PullKind) -> RecordSpec:
    return OPENAI_USAGE_EXPORT if kind.provider == "openai" else ANTHROPIC_USAGE_REPORT


def usage_records(
    kind: PullKind, pages: Iterable[tuple[int, Mapping[str, Any]]], dimensions: Dimensions
) -> Iterator[RecordBlock]:
    """The pages as blocks of records for the usage normaliser; each result's price dimensions go into
    `dimensions`, by the number its record carries."""
    if kind.provider == "openai":
        return openai_usage_records(pages, dimensions)
    return anthropic_usage_records(pages, dimensions)


# ------------------------------------------------------------------------------------------ cost pages


@dataclass(frozen=True, slots=True)
class CostReject:
    item_no: int
    reason: str
    excerpt: str


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _bucket_day(bucket: Mapping[str, Any], provider: str) -> date | None:
    start = bucket.get("start_time") if provider == "openai" else bucket.get("starting_at")
    try:
        if isinstance(start, int) and not isinstance(start, bool):
            return datetime.fromtimestamp(start, UTC).date()
        if isinstance(start, str):
            return datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(UTC).date()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a JSON number (parsed as Decimal) or a decimal string; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(value) if isinstance(value, (str, int, Decimal)) else None
    except (InvalidOperation, ValueError):
        return None
    return number if number is not None and number.is_finite() else None


def openai_model(line_item: str | None) -> str | None:
    """The model of an OpenAI cost line item: "gpt-4o-mini-2024-07-18, input" -> the part before the comma."""
    if line_item is None or "," not in line_item:
        return None
    model = line_item.split(",", 1)[0].strip()
    return model or None


def cost_lines(
    kind: PullKind, pages: Iterable[tuple[int, Mapping[str, Any]]]
) -> tuple[list[CostLine], list[CostReject]]:
    """Every billed amount of the pages (parsed with Decimal numbers), and every result refused, with why."""
    lines: list[CostLine] = []
    rejects: list[CostReject] = []
    item = 0

    def refuse(reason: str, raw: Any) -> None:
        rejects.append(CostReject(item, reason, redact_excerpt(json.dumps(raw, default=str))))

    for _, page in pages:
        data = page.get("data")
        if not isinstance(data, list):
            item += 1
            refuse("not a cost report page (no data list of buckets)", page)
            continue
        for bucket in data:
            results = _results(bucket) if isinstance(bucket, dict) else None
            day = _bucket_day(bucket, kind.provider) if isinstance(bucket, dict) else None
            if not isinstance(results, list) or day is None:
                item += 1
                refuse("a cost bucket without a start time and a results list", bucket)
                continue
            for result in results:
                item += 1
                if not isinstance(result, dict):
                    refuse("a cost result that is not an object", result)
                    continue
                parsed = _cost_line(kind, day, item, result)
                if isinstance(parsed, str):
                    refuse(parsed, result)
                else:
                    lines.append(parsed)
    return lines, rejects


def _cost_line(kind: PullKind, day: date, item: int, result: Mapping[str, Any]) -> CostLine | str:
    if kind.provider == "openai":
        amount = result.get("amount")
        if not isinstance(amount, dict):
            return "no amount object"
        value, currency = _decimal(amount.get("value")), _text(amount.get("currency"))
        if value is None:
            return "amount.value is not a number"
        line_item, project = _text(result.get("line_item")), _text(result.get("project_id"))
        model, cost_type, token_type, tier = openai_model(line_item), None, None, None
    else:
        cents = result.get("amount")
        value = _decimal(cents) if isinstance(cents, str) else None
        if value is None:
            return "amount is not a decimal string (of cents)"
        value = value / 100
        currency = _text(result.get("currency"))
        line_item, project = _text(result.get("description")), _text(result.get("workspace_id"))
        model = _text(result.get("model"))
        cost_type, token_type = _text(result.get("cost_type")), _text(result.get("token_type"))
        tier = _text(result.get("service_tier"))
    if currency is None or len(currency) != 3 or not currency.isalpha():
        return "no ISO 4217 currency"
    identity = [kind.name, day.isoformat(), project, line_item, model, cost_type, token_type, tier]
    key = hashlib.sha1(json.dumps(identity).encode()).hexdigest()
    return CostLine(
        f"{kind.name}:{key}",
        item,
        day,
        kind.provider,
        project,
        model,
        line_item,
        cost_type,
        token_type,
        tier,
        value,
        currency.upper(),
    )
