"""The emulator's admin reports on the wire (a real uvicorn server, plain httpx): shapes, pagination, keys,
and what is billed (served requests, dropped streams included; refused ones not)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from collectors.emulator import Billing, EmulatorConfig, EmulatorServer
from quotascope import settings
from storage.catalog import load_catalog

BEARER = {"Authorization": "Bearer sk-admin-x"}
ANTHROPIC = {"x-api-key": "sk-ant-admin-x", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    catalog = load_catalog(Path(settings.get("catalog_dir")), [])
    config = EmulatorConfig(model="o1", ttft_ms=0, tokens_per_s=20_000, output_tokens=4, rpm=3, burst_s=60)
    with EmulatorServer(config, billing=Billing(catalog)) as emulator:
        client = openai.OpenAI(base_url=emulator.base_url, api_key="sk-app", max_retries=0)
        with client:
            for _ in range(4):  # the fourth is refused by the RPM limit: not billed
                with contextlib.suppress(openai.RateLimitError):
                    client.chat.completions.create(model="o1", messages=[{"role": "user", "content": "hi"}])
        yield emulator


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def test_usage_pages_cover_every_day_and_follow_the_cursor(server: EmulatorServer) -> None:
    start = today() - timedelta(days=4)
    params = {
        "start_time": int(start.timestamp()),
        "end_time": int((today() + timedelta(days=1)).timestamp()),
    }
    url = f"{server.base_url}/organization/usage/completions"
    pages = []
    cursor = None
    while True:
        query = {
            **params,
            "limit": 2,
            "group_by": ["model", "api_key_id"],
            **({"page": cursor} if cursor else {}),
        }
        body = httpx.get(url, params=query, headers=BEARER).json()
        pages.append(body)
        if not body["has_more"]:
            break
        cursor = body["next_page"]
    assert [len(p["data"]) for p in pages] == [2, 2, 1]  # five days, empty ones included
    last = pages[-1]["data"][-1]
    assert last["start_time"] == int(today().timestamp())
    (result,) = last["results"]
    assert result["num_model_requests"] == 3 and result["model"] == "o1"
    assert result["api_key_id"].startswith("key_") and "sk-app" not in result["api_key_id"]
    assert result["project_id"] is None  # not grouped by project


def test_costs_are_exact_and_split_into_line_items(server: EmulatorServer) -> None:
    params = {"start_time": int(today().timestamp()), "group_by": ["line_item"]}
    text = httpx.get(f"{server.base_url}/organization/costs", params=params, headers=BEARER).text
    assert '"value": 0.' in text  # a JSON number, written from the Decimal without a float between
    body = httpx.Response(200, text=text).json()
    items = {r["line_item"]: r["amount"] for r in body["data"][0]["results"]}
    assert set(items) == {"o1, input", "o1, cached input", "o1, output"}
    billed = server.billing.snapshot()
    assert len(billed) == 3
    expected_output = sum(Decimal(r.output_tokens) * 60 / 1_000_000 for r in billed)
    assert Decimal(str(items["o1, output"]["value"])) == expected_output


def test_anthropic_reports_want_their_headers_and_give_cents(server: EmulatorServer) -> None:
    since = {"starting_at": today().strftime("%Y-%m-%dT%H:%M:%SZ")}
    url = f"{server.base_url}/organizations/cost_report"
    assert httpx.get(url, params=since, headers={"x-api-key": "k"}).status_code == 400  # no version
    assert httpx.get(url, params=since).status_code == 401
    body = httpx.get(url, params={**since, "group_by[]": ["description"]}, headers=ANTHROPIC).json()
    results = body["data"][0]["results"]
    cents = sum(Decimal(r["amount"]) for r in results)
    dollars = sum((amount for r in server.billing.snapshot() for _, _, amount in r.lines), Decimal(0))
    assert cents == dollars * 100
    assert {r["token_type"] for r in results} == {
        "uncached_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    }


def test_refusals(server: EmulatorServer) -> None:
    url = f"{server.base_url}/organization/usage/completions"
    assert httpx.get(url, params={"start_time": 0}).status_code == 401
    bad = httpx.get(url, params={"start_time": 0, "bucket_width": "1h"}, headers=BEARER)
    assert bad.status_code == 400 and "bucket_width" in bad.json()["error"]["message"]
    assert httpx.get(url, params={"start_time": 0, "page": "forged"}, headers=BEARER).status_code == 400
    grouped = httpx.get(url, params={"start_time": 0, "group_by": "colour"}, headers=BEARER)
    assert grouped.status_code == 400


def test_without_a_catalog_nothing_is_billed() -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        answer = httpx.get(
            f"{emulator.base_url}/organization/costs", params={"start_time": 0}, headers=BEARER
        )
    assert answer.status_code == 501 and "without a catalog" in answer.json()["error"]["message"]
