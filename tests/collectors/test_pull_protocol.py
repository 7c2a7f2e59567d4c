"""`quotascope pull` against `httpx.MockTransport`: the request shapes, pagination, retries, the key kept
secret, and the stored result (real DuckDB files): idempotent re-pulls, every result accounted for."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from collectors.pull import AdminKey, PullError, pull, pull_kind
from collectors.pull.http import MAX_ATTEMPTS, retry_after_s
from collectors.pull.run import days_to_pull
from models.errors import InputError

KEY = "sk-admin-0123456789abcdefSECRET"
DAY = 1_764_979_200  # 2025-12-06T00:00:00Z
NOW = datetime(2025, 12, 8, 1, 0)
Handler = Callable[[httpx.Request], httpx.Response]


def run_pull(db: Path, kind: str, handler: Handler, sleeps: list[float] | None = None, **options: Any) -> Any:
    sleeps = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            options.setdefault("since", date(2025, 12, 6))
            options.setdefault("until", date(2025, 12, 8))
            return await pull(
                db,
                pull_kind(kind),
                AdminKey("TEST_ADMIN_KEY", KEY),
                client,
                salt="s",
                now=NOW,
                sleep=sleep,
                **options,
            )

    return asyncio.run(main())


def openai_usage_result(model: str = "o1", requests: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 1000,
        "input_cached_tokens": 200,
        "output_tokens": 50,
        "num_model_requests": requests,
        "project_id": "proj_a",
        "user_id": None,
        "api_key_id": "key_1",
        "model": model,
        "batch": False,
        "service_tier": "default",
        **extra,
    }


def page(buckets: list[dict[str, Any]], next_page: str | None = None) -> dict[str, Any]:
    return {"object": "page", "data": buckets, "has_more": next_page is not None, "next_page": next_page}


def bucket(start: int, results: list[Any]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------------------------------ requests


def test_openai_usage_request_shape_and_pagination(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.params.get("page") is None:
            return httpx.Response(200, json=page([bucket(DAY, [openai_usage_result()])], "cursor-2"))
        return httpx.Response(
            200, json=page([bucket(DAY + 86400, [openai_usage_result("o1", 5, batch=True)])])
        )

    result = run_pull(tmp_path / "q.duckdb", "openai-usage", handler)
    assert len(seen) == 2 and result.pages == 2
    first = seen[0]
    assert first.url.path == "/v1/organization/usage/completions"
    assert first.url.host == "api.openai.com"
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.url.params["start_time"] == str(DAY)
    assert first.url.params["end_time"] == str(DAY + 2 * 86400)
    assert first.url.params["bucket_width"] == "1d"
    assert first.url.params.get_list("group_by") == [
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
    ]
    assert seen[1].url.params["page"] == "cursor-2"
    assert (result.counts.read, result.counts.stored) == (2, 2)
    stored = rows(
        tmp_path / "q.duckdb", "SELECT ts, n_requests, input_tokens, cached_input_tokens FROM provider_usage"
    )
    assert sorted(stored) == [
        (datetime(2025, 12, 6), 3, 1000, 200),
        (datetime(2025, 12, 7), 5, 1000, 200),
    ]
    # the price dimensions the canonical columns lack travel beside them, for the pricing engine
    assert rows(tmp_path / "q.duckdb", "SELECT service_tier, batch FROM provider_usage ORDER BY ts") == [
        ("default", False),
        ("default", True),
    ]


def test_anthropic_requests_carry_key_and_version_headers_and_bracketed_group_by(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "has_more": False, "next_page": None})

    run_pull(tmp_path / "q.duckdb", "anthropic-usage", handler)
    run_pull(tmp_path / "q.duckdb", "anthropic-costs", handler)
    usage, costs = seen
    assert usage.url.path == "/v1/organizations/usage_report/messages"
    assert costs.url.path == "/v1/organizations/cost_report"
    for request in seen:
        assert request.headers["x-api-key"] == KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in request.headers
        assert request.url.params["starting_at"] == "2025-12-06T00:00:00Z"
        assert request.url.params["ending_at"] == "2025-12-08T00:00:00Z"
    assert usage.url.params.get_list("group_by[]") == ["model", "workspace_id", "api_key_id", "service_tier"]
    assert costs.url.params.get_list("group_by[]") == ["workspace_id", "description"]


def test_base_url_replaces_the_providers_and_drops_credentials(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=page([]))

    result = run_pull(
        tmp_path / "q.duckdb", "openai-costs", handler, base_url="http://user:pw@gw.local:8080/v1/?x=1"
    )
    assert str(seen[0].url).startswith("http://gw.local:8080/v1/organization/costs?")
    assert result.account == "http://gw.local:8080/v1"
    assert rows(tmp_path / "q.duckdb", "SELECT account FROM pull_runs") == [("http://gw.local:8080/v1",)]


# ------------------------------------------------------------------------------------------ retries


def test_429_waits_as_retry_after_says_then_succeeds(tmp_path: Path) -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}}),
            httpx.Response(503, headers={"retry-after-ms": "250"}),
            httpx.Response(200, json=page([bucket(DAY, [openai_usage_result()])])),
        ]
    )
    sleeps: list[float] = []
    result = run_pull(tmp_path / "q.duckdb", "openai-usage", lambda request: next(answers), sleeps)
    assert sleeps == [7.0, 0.25]
    assert result.retries == 2 and result.counts.stored == 1


def test_5xx_without_retry_after_backs_off_exponentially_then_gives_up(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(502, json={"error": {"message": "bad gateway"}})

    with pytest.raises(PullError, match=f"kept failing after {MAX_ATTEMPTS} tries: HTTP 502: bad gateway"):
        run_pull(tmp_path / "q.duckdb", "openai-usage", handler)
    assert len(calls) == MAX_ATTEMPTS
    assert not (tmp_path / "q.duckdb").exists()  # nothing stored from a pull that did not finish


def test_backoff_grows(tmp_path: Path) -> None:
    answers = iter([httpx.Response(500)] * 3 + [httpx.Response(200, json=page([]))])
    sleeps: list[float] = []
    run_pull(tmp_path / "q.duckdb", "openai-usage", lambda request: next(answers), sleeps)
    first, second, third = sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 2.0 <= third <= 4.0


def test_client_errors_stop_at_once_and_never_show_the_key(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        # a provider echoing the key back must not make us show it
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}."}})

    with pytest.raises(PullError) as caught:
        run_pull(tmp_path / "q.duckdb", "openai-costs", handler)
    assert len(calls) == 1
    text = str(caught.value)
    assert KEY not in text and "***" in text
    assert "HTTP 401" in text and "$TEST_ADMIN_KEY" in text


def test_connection_failures_are_retried_and_the_message_names_no_key(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    where = re.escape("cannot reach https://api.openai.com/v1/organization/costs")
    with pytest.raises(PullError, match=where) as caught:
        run_pull(tmp_path / "q.duckdb", "openai-costs", handler)
    assert KEY not in str(caught.value)


def test_a_cursor_that_repeats_stops_the_pull(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=page([], "same"))

    with pytest.raises(PullError, match="page cursor it gave before"):
        run_pull(tmp_path / "q.duckdb", "openai-usage", handler)


def test_retry_after_as_http_date() -> None:
    response = httpx.Response(429, headers={"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"})
    assert retry_after_s(response, datetime.fromisoformat("2015-10-21T07:28:00+00:00")) == 30.0


def test_admin_key_never_in_repr_or_pickle() -> None:
    key = AdminKey.from_env("THE_VAR", {"THE_VAR": KEY})
    assert KEY not in repr(key) and KEY not in str(key) and KEY not in f"{[key]}"
    assert repr(key) == "AdminKey(from $THE_VAR)"
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(InputError, match="THE_VAR is not set"):
        AdminKey.from_env("THE_VAR", {})


# ------------------------------------------------------------------------------------------ storing


def test_pulling_a_day_again_replaces_it_and_never_doubles(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    requests = iter([3, 4])  # the day was incomplete at the first pull

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=page([bucket(DAY, [openai_usage_result(requests=next(requests))])]))

    first = run_pull(db, "openai-usage", handler)
    second = run_pull(db, "openai-usage", handler)
    assert (first.counts.stored, first.counts.replaced) == (1, 0)
    assert (second.counts.stored, second.counts.replaced) == (1, 1)
    assert rows(db, "SELECT sum(n_requests), count(*) FROM provider_usage") == [(4, 1)]


def test_other_days_and_other_accounts_are_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["start_time"])
        return httpx.Response(200, json=page([bucket(start, [openai_usage_result()])]))

    run_pull(db, "openai-usage", handler, since=date(2025, 12, 5), until=date(2025, 12, 6))
    run_pull(db, "openai-usage", handler)  # 6th and 7th
    run_pull(db, "openai-usage", handler, base_url="http://other.example/v1")
    assert rows(db, "SELECT account, count(*) FROM provider_usage GROUP BY ALL ORDER BY 1") == [
        ("http://other.example/v1", 1),
        ("https://api.openai.com/v1", 2),
    ]


def test_every_result_is_accounted_for(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    good = openai_usage_result()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") is None:
            return httpx.Response(
                200,
                json=page(
                    [bucket(DAY, [good, openai_usage_result("o1", input_tokens=-5), "junk"])],
                    "2",
                ),
            )
        # an overlapping page repeats a result, and a bucket lies outside the days asked for
        return httpx.Response(
            200, json=page([bucket(DAY, [good]), bucket(DAY - 3 * 86400, [openai_usage_result("gpt-x")])])
        )

    result = run_pull(db, "openai-usage", handler)
    c = result.counts
    assert c.read == c.stored + c.duplicates + c.rejected
    assert (c.read, c.stored, c.duplicates, c.rejected) == (5, 1, 1, 3)
    assert result.reject_reasons == {
        "a usage result that is not an object": 1,
        "input_tokens is negative (-5)": 1,
        "a bucket outside the days asked for": 1,
    }
    assert rows(db, "SELECT rows_read, rows_stored, rows_duplicate, rows_rejected FROM pull_runs") == [
        (5, 1, 1, 3)
    ]
    assert len(rows(db, "SELECT reason FROM pull_rejects")) == 3


def test_openai_costs_are_exact_decimals(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    text = json.dumps(
        page(
            [
                bucket(
                    DAY,
                    [
                        {
                            "object": "organization.costs.result",
                            "amount": {"value": 12345.0, "currency": "usd"},
                            "line_item": "o1, input",
                            "project_id": "proj_a",
                        },
                        {
                            "object": "organization.costs.result",
                            "amount": {"value": 0.1, "currency": "usd"},
                            "line_item": "web search tool calls",
                            "project_id": None,
                        },
                        {"object": "organization.costs.result", "amount": {"value": "lots"}},
                    ],
                )
            ]
        )
    ).replace("12345.0", "0.1234567891")  # more digits than a float carries exactly past 0.1 + 0.2
    result = run_pull(db, "openai-costs", lambda request: httpx.Response(200, text=text))
    assert (result.counts.stored, result.counts.rejected) == (2, 1)
    assert rows(db, "SELECT model, line_item, amount, currency FROM provider_costs ORDER BY amount") == [
        (None, "web search tool calls", Decimal("0.1000000000"), "USD"),
        ("o1", "o1, input", Decimal("0.1234567891"), "USD"),
    ]


def test_anthropic_costs_are_cents_and_usage_normalises_the_cache(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    bucket_ = {"starting_at": "2025-12-06T00:00:00Z", "ending_at": "2025-12-07T00:00:00Z"}
    costs = {
        "data": [
            {
                **bucket_,
                "results": [
                    {
                        "currency": "USD",
                        "amount": "123.45",
                        "workspace_id": "wrkspc_1",
                        "description": "Claude Sonnet 4.5 Usage - Input Tokens",
                        "cost_type": "tokens",
                        "model": "claude-sonnet-4-5",
                        "token_type": "uncached_input_tokens",
                        "service_tier": "standard",
                        "context_window": "0-200k",
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    usage = {
        "data": [
            {
                **bucket_,
                "results": [
                    {
                        "uncached_input_tokens": 100,
                        "cache_read_input_tokens": 1000,
                        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 20},
                        "output_tokens": 7,
                        "model": "claude-sonnet-4-5",
                        "workspace_id": "wrkspc_1",
                        "api_key_id": "apikey_1",
                        "service_tier": "standard",
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    run_pull(db, "anthropic-costs", lambda request: httpx.Response(200, json=costs))
    run_pull(db, "anthropic-usage", lambda request: httpx.Response(200, json=usage))
    assert rows(db, "SELECT day, project, model, amount FROM provider_costs") == [
        (date(2025, 12, 6), "wrkspc_1", "claude-sonnet-4-5", Decimal("1.2345000000"))
    ]
    assert rows(
        db,
        "SELECT provider, project, key_id, input_tokens, cached_input_tokens, cache_write_tokens, "
        "output_tokens, requests_known, cache_write_1h_tokens, service_tier, batch FROM provider_usage",
    ) == [("anthropic", "wrkspc_1", "apikey_1", 1150, 1000, 50, 7, False, 20, "standard", False)]


def test_incremental_pulls_start_at_the_last_day_held(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    kind = pull_kind("openai-costs")
    account = "https://api.openai.com/v1"
    today = date(2025, 12, 8)
    assert days_to_pull(db, kind, account, None, None, today) == (date(2025, 11, 8), date(2025, 12, 9))
    run_pull(db, "openai-costs", lambda request: httpx.Response(200, json=page([])))  # held: 6th and 7th
    assert days_to_pull(db, kind, account, None, None, today) == (date(2025, 12, 7), date(2025, 12, 9))
    with pytest.raises(InputError, match="must be after --since"):
        days_to_pull(db, kind, account, date(2025, 12, 8), date(2025, 12, 8), today)
