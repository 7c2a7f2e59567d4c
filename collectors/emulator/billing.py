"""The emulator's bill: every request it answered, and the providers' usage and cost reports built from them.

So the whole loop runs on one machine: traffic -> usage and cost APIs -> `quotascope pull` ->
reconcile.
A request is billed once the emulator has planned its reply (as a provider bills a request it served, even
when the stream is then cut or the client gave up: the `drop`, `stall` and `malformed` faults); a refused
request (401, 400, 429, 503) is not. Each billed request is priced with the project's one engine
(`models.pricing.rates_at`, the catalog version in force at its time, its own prompt size for long-context
tiers) of the provider it bills as, times `price_factor` (1 = list price; 1.05 bills 5 % over the catalog,
a discrepancy on purpose).

Four admin reports are served, in the providers' shapes (see `collectors.pull.apis` for the sources):
OpenAI `/v1/organization/usage/completions` and `/v1/organization/costs` (Bearer key), Anthropic
`/v1/organizations/usage_report/messages` and `/v1/organizations/cost_report` (`x-api-key` and
`anthropic-version`). Buckets are UTC days, every day of the range (empty ones too), `limit` a page, with
`has_more` / `next_page`. No key is kept: a request's key becomes a short hash, its `api_key_id`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.catalog import Catalog
from models.errors import InputError
from models.money import MILLION
from models.pricing import rates_at

MAX_BUCKETS = 31


@dataclass(frozen=True, slots=True)
class BilledRequest:
    at: datetime  # naive UTC
    model: str
    project_id: str | None
    api_key_id: str | None
    service_tier: str
    input_tokens: int  # all prompt tokens, cached included
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    lines: tuple[tuple[str, str, Decimal], ...]  # (OpenAI line kind, Anthropic token_type, amount in USD)


class Billing:
    """The ledger of billed requests and the catalog that prices them; safe to use from the server's loop."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        provider: str | None = "openai",
        price_factor: Decimal = Decimal(1),
        busy_answers: int = 0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
    ) -> None:
        if price_factor <= 0:
            raise InputError("--bill-price-factor must be above zero (1 bills the catalog's list price)")
        self.catalog = catalog
        self.provider = provider  # whose catalog offers price the traffic (None: any offer of the model)
        self.price_factor = price_factor
        self.busy_answers = busy_answers  # the first this many admin requests get 429 (to exercise retries)
        self.clock = clock
        self.requests: list[BilledRequest] = []
        self.unpriced: set[str] = set()
        self._lock = threading.Lock()

    def record(
        self,
        request: Request,
        model: str,
        prompt_tokens: int,
        cached_tokens: int,
        output_tokens: int,
        reasoning_tokens: int,
        service_tier: Any,
    ) -> None:
        at = self.clock()
        _, _, key = request.headers.get("authorization", "").partition(" ")
        key_id = "key_" + hashlib.sha256(key.strip().encode()).hexdigest()[:16] if key.strip() else None
        tier = service_tier if isinstance(service_tier, str) and service_tier != "auto" else "default"
        billed = BilledRequest(
            at,
            model,
            request.headers.get("openai-project"),
            key_id,
            tier,
            prompt_tokens,
            cached_tokens,
            output_tokens,
            reasoning_tokens,
            self._price(model, at, prompt_tokens, cached_tokens, output_tokens, reasoning_tokens),
        )
        with self._lock:
            self.requests.append(billed)

    def _price(
        self, model: str, at: datetime, prompt: int, cached: int, output: int, reasoning: int
    ) -> tuple[tuple[str, str, Decimal], ...]:
        offer = self.catalog.find(self.provider, model) if self.catalog is not None else None
        if offer is None:
            self.unpriced.add(model)
            return ()
        try:
            rates = rates_at(offer.version_at(at), at, prompt)
        except InputError:
            self.unpriced.add(model)
            return ()
        if rates.currency != "USD":
            self.unpriced.add(model)  # both providers bill in USD
            return ()
        f = self.price_factor
        return (
            ("input", "uncached_input_tokens", (prompt - cached) * rates.input * f / MILLION),
            ("cached input", "cache_read_input_tokens", cached * rates.cached_input * f / MILLION),
            (
                "output",
                "output_tokens",
                ((output - reasoning) * rates.output + reasoning * rates.reasoning_output) * f / MILLION,
            ),
        )

    def take_busy_answer(self) -> bool:
        with self._lock:
            if self.busy_answers <= 0:
                return False
            self.busy_answers -= 1
            return True

    def snapshot(self) -> list[BilledRequest]:
        with self._lock:
            return list(self.requests)


# ------------------------------------------------------------------------------------------ requests


class _Refused(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _openai_key(request: Request) -> None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _Refused(401, "You didn't provide an API key.")


def _anthropic_key(request: Request) -> None:
    if not request.headers.get("x-api-key", "").strip():
        raise _Refused(401, "x-api-key header is required", "authentication_error")
    if not request.headers.get("anthropic-version"):
        raise _Refused(400, "anthropic-version header is required")


def _int(request: Request, name: str, default: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None:
        if default is None:
            raise _Refused(400, f"{name} is required")
        return default
    try:
        return int(text)
    except ValueError:
        raise _Refused(400, f"{name} must be an integer") from None


def _instant(request: Request, name: str, default: datetime | None) -> datetime:
    text = request.query_params.get(name)
    if text is None:
        if default is None:
            raise _Refused(400, f"{name} is required")
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)
    except ValueError:
        raise _Refused(400, f"{name} must be an RFC 3339 timestamp") from None


def _days(
    first: datetime, end: datetime, request: Request, limit_default: int
) -> tuple[list[date], str | None]:
    """The page's days: from `first` (or the `page` cursor) to before `end`, at most `limit` of them."""
    if request.query_params.get("bucket_width", "1d") != "1d":
        raise _Refused(400, "this emulator serves bucket_width=1d only")
    limit = _int(request, "limit", limit_default)
    if not 1 <= limit <= MAX_BUCKETS:
        raise _Refused(400, f"limit must be between 1 and {MAX_BUCKETS} for 1d buckets")
    day = first.date()
    cursor = request.query_params.get("page")
    if cursor:
        try:
            day = date.fromisoformat(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("day:"))
        except ValueError:
            raise _Refused(400, "page is not a cursor this API gave") from None
    last = (end - timedelta(microseconds=1)).date()
    days: list[date] = []
    while day <= last and len(days) < limit:
        days.append(day)
        day += timedelta(days=1)
    more = day <= last
    return days, base64.urlsafe_b64encode(f"day:{day}".encode()).decode() if more else None


def _group(request: Request, name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(request.query_params.getlist(name))
    unknown = [g for g in chosen if g not in allowed]
    if unknown:
        raise _Refused(400, f"cannot group by {unknown[0]}")
    return chosen


def _money_json(document: Any) -> str:
    """JSON with Decimal amounts written as exact numbers (never through float)."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"@@DECIMAL:{value}@@"
        raise TypeError(type(value).__name__)

    text = json.dumps(document, default=mark)
    return re.sub(r'"@@DECIMAL:([-0-9.Ee+]+)@@"', r"\1", text)


def _sum_by(
    requests: Iterable[BilledRequest], key: Callable[[BilledRequest], tuple[Any, ...]]
) -> dict[tuple[Any, ...], list[BilledRequest]]:
    groups: dict[tuple[Any, ...], list[BilledRequest]] = {}
    for r in requests:
        groups.setdefault(key(r), []).append(r)
    return groups


def _on(day: date, requests: list[BilledRequest]) -> list[BilledRequest]:
    return [r for r in requests if r.at.date() == day]


# ------------------------------------------------------------------------------------------ OpenAI

_OPENAI_USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")


def _openai_range(request: Request) -> tuple[datetime, datetime]:
    start = _int(request, "start_time")
    end = _int(request, "end_time", start + 7 * 86400)
    return datetime.fromtimestamp(start, UTC).replace(tzinfo=None), datetime.fromtimestamp(end, UTC).replace(
        tzinfo=None
    )


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def openai_usage(billing: Billing, request: Request) -> dict[str, Any]:
    _openai_key(request)
    first, end = _openai_range(request)
    days, cursor = _days(first, end, request, 7)
    groups = _group(request, "group_by", _OPENAI_USAGE_GROUPS)
    fields: dict[str, Callable[[BilledRequest], Any]] = {
        "project_id": lambda r: r.project_id,
        "user_id": lambda r: None,
        "api_key_id": lambda r: r.api_key_id,
        "model": lambda r: r.model,
        "batch": lambda r: False,
        "service_tier": lambda r: r.service_tier,
    }
    requests = billing.snapshot()
    data = []
    for day in days:
        results = []
        for values, members in _sum_by(
            _on(day, requests), lambda r: tuple(fields[g](r) for g in groups)
        ).items():
            result: dict[str, Any] = {
                "object": "organization.usage.completions.result",
                "input_tokens": sum(r.input_tokens for r in members),
                "output_tokens": sum(r.output_tokens for r in members),
                "input_cached_tokens": sum(r.cached_tokens for r in members),
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": len(members),
            }
            result.update(dict.fromkeys(_OPENAI_USAGE_GROUPS))
            result.update(dict(zip(groups, values, strict=True)))
            results.append(result)
        data.append(_openai_bucket(day, results))
    return {"object": "page", "data": data, "has_more": cursor is not None, "next_page": cursor}


def _openai_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": _unix(day), "end_time": _unix(day) + 86400, "results": results}


def openai_costs(billing: Billing, request: Request) -> dict[str, Any]:
    _openai_key(request)
    _priced(billing)
    first, end = _openai_range(request)
    days, cursor = _days(first, end, request, 7)
    groups = _group(request, "group_by", ("project_id", "line_item"))
    requests = billing.snapshot()
    data = []
    for day in days:
        amounts: dict[tuple[Any, ...], Decimal] = {}
        for r in _on(day, requests):
            for kind, _, amount in r.lines:
                values = {"project_id": r.project_id, "line_item": f"{r.model}, {kind}"}
                key = tuple(values[g] for g in groups)
                amounts[key] = amounts.get(key, Decimal(0)) + amount
        results = []
        for key, amount in amounts.items():
            result: dict[str, Any] = {
                "object": "organization.costs.result",
                "amount": {"value": amount, "currency": "usd"},
                "line_item": None,
                "project_id": None,
            }
            result.update(dict(zip(groups, key, strict=True)))
            results.append(result)
        data.append(_openai_bucket(day, results))
    return {"object": "page", "data": data, "has_more": cursor is not None, "next_page": cursor}


# ------------------------------------------------------------------------------------------ Anthropic


def _anthropic_range(request: Request) -> tuple[datetime, datetime]:
    start = _instant(request, "starting_at", None)
    return start, _instant(request, "ending_at", start + timedelta(days=7))


def _anthropic_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "starting_at": f"{day.isoformat()}T00:00:00Z",
        "ending_at": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
        "results": results,
    }


def anthropic_usage(billing: Billing, request: Request) -> dict[str, Any]:
    _anthropic_key(request)
    first, end = _anthropic_range(request)
    days, cursor = _days(first, end, request, 7)
    groups = _group(request, "group_by[]", ("model", "workspace_id", "api_key_id", "service_tier"))
    fields: dict[str, Callable[[BilledRequest], Any]] = {
        "model": lambda r: r.model,
        "workspace_id": lambda r: r.project_id,
        "api_key_id": lambda r: r.api_key_id,
        "service_tier": lambda r: "standard" if r.service_tier == "default" else r.service_tier,
    }
    requests = billing.snapshot()
    data = []
    for day in days:
        results = []
        for values, members in _sum_by(
            _on(day, requests), lambda r: tuple(fields[g](r) for g in groups)
        ).items():
            result: dict[str, Any] = {
                "uncached_input_tokens": sum(r.input_tokens - r.cached_tokens for r in members),
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                "cache_read_input_tokens": sum(r.cached_tokens for r in members),
                "output_tokens": sum(r.output_tokens for r in members),
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": None,
                "workspace_id": None,
                "model": None,
                "service_tier": None,
                "context_window": None,
            }
            result.update(dict(zip(groups, values, strict=True)))
            results.append(result)
        data.append(_anthropic_bucket(day, results))
    return {"data": data, "has_more": cursor is not None, "next_page": cursor}


def anthropic_costs(billing: Billing, request: Request) -> dict[str, Any]:
    _anthropic_key(request)
    _priced(billing)
    first, end = _anthropic_range(request)
    days, cursor = _days(first, end, request, 7)
    groups = _group(request, "group_by[]", ("workspace_id", "description"))
    requests = billing.snapshot()
    data = []
    for day in days:
        amounts: dict[tuple[Any, ...], Decimal] = {}
        for r in _on(day, requests):
            for _, token_type, amount in r.lines:
                described = (r.model, token_type) if "description" in groups else (None, None)
                key = (r.project_id if "workspace_id" in groups else None, *described)
                amounts[key] = amounts.get(key, Decimal(0)) + amount
        results = []
        for (workspace, model, token_type), amount in amounts.items():
            results.append(
                {
                    "currency": "USD",
                    "amount": f"{amount * 100}",  # cents, as a decimal string
                    "workspace_id": workspace,
                    "description": f"{model} usage - {token_type}" if model else None,
                    "cost_type": "tokens" if model else None,
                    "context_window": "0-200k" if model else None,
                    "model": model,
                    "service_tier": "standard" if model else None,
                    "token_type": token_type,
                }
            )
        data.append(_anthropic_bucket(day, results))
    return {"data": data, "has_more": cursor is not None, "next_page": cursor}


def _priced(billing: Billing) -> None:
    if billing.catalog is None:
        raise _Refused(501, "this emulator was started without a catalog, so it bills nothing", "api_error")


# ------------------------------------------------------------------------------------------ routes


def _endpoint(report: Callable[[Billing, Request], dict[str, Any]], anthropic: bool) -> Callable[..., Any]:
    async def answer(request: Request) -> Response:
        billing: Billing = request.app.state.billing
        if billing.take_busy_answer():
            headers = {"retry-after": "1", "retry-after-ms": "20"}
            busy = {
                "error": {"message": "Rate limit reached for admin requests.", "type": "rate_limit_error"}
            }
            return JSONResponse(busy, 429, headers=headers)
        try:
            document = report(billing, request)
        except _Refused as e:
            if anthropic:
                body: dict[str, Any] = {"type": "error", "error": {"type": e.kind, "message": e.message}}
            else:
                body = {"error": {"message": e.message, "type": e.kind, "param": None, "code": None}}
            return JSONResponse(body, e.status)
        return Response(_money_json(document), 200, media_type="application/json")

    return answer


def billing_routes() -> list[Route]:
    return [
        Route("/v1/organization/usage/completions", _endpoint(openai_usage, False), methods=["GET"]),
        Route("/v1/organization/costs", _endpoint(openai_costs, False), methods=["GET"]),
        Route("/v1/organizations/usage_report/messages", _endpoint(anthropic_usage, True), methods=["GET"]),
        Route("/v1/organizations/cost_report", _endpoint(anthropic_costs, True), methods=["GET"]),
    ]
