"""Every supported log format, read from real-shaped samples (tests/data/usage), with exact token totals and
exact costs under the test catalog (round prices, so each expected figure is worked out in the comment)."""

from __future__ import annotations

import gzip
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from models.money import Money
from storage.reports import UsageFilter, spend_report
from tests.collectors.ingest_support import SAMPLES, catalog, identity_holds, ingest, query, totals

BY_MODEL = ("provider", "model")


def cost_of(
    db: Path, by: tuple[str, ...] = BY_MODEL, currency: str | None = None
) -> dict[tuple, Money | None]:
    rows = spend_report(db, catalog(), UsageFilter(), by, currency)
    return {tuple(r.keys.values()): r.cost for r in rows}


def test_deepseek_responses_and_a_streamed_final_chunk(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, SAMPLES / "deepseek.jsonl")
    assert result.format == "openai" and "DeepSeek cache fields" in result.description
    assert (result.counts.read, result.counts.stored, result.counts.rejected) == (6, 6, 0)
    assert totals(db) == {
        "rows": 6,
        "requests": 6,
        "input_tokens": 1000 + 2000 + 2000 + 500 + 500 + 3000,
        "cached_input_tokens": 640
        + 1280
        + 1280
        + 0
        + 0
        + 2944,  # prompt_cache_hit_tokens, inside prompt_tokens
        "cache_write_tokens": 0,
        "output_tokens": 500 + 1000 + 1000 + 100 + 100 + 2000,  # reasoning inside, never added on top
        "reasoning_tokens": 300 + 800 + 800 + 60 + 60 + 1500,
    }
    assert query(db, "SELECT DISTINCT provider FROM usage") == [("deepseek",)]  # told by the cache fields
    (row,) = spend_report(db, catalog(), UsageFilter(), BY_MODEL)
    # per 1M: miss 4, hit 1, output 16 CNY; from 2025-03-03 16:30 a version with off-peak 16:30-00:30 at x0.25
    #   10:00      v1 peak  360*4 +  640*1 +  500*16 = 10080
    #   16:29:59   v1 peak  720*4 + 1280*1 + 1000*16 = 20160
    #   16:30:00   v2 off   20160 / 4                =  5040
    #   00:29 +1d  v2 off   (500*4 + 100*16) / 4     =   900
    #   00:30 +1d  v2 peak   500*4 + 100*16          =  3600
    #   09:00 +1d  v2 peak   56*4 + 2944*1 + 2000*16 = 35168
    assert row.cost == Money(Decimal("0.074948"), "CNY")
    # cached tokens at the miss price minus what they cost: (4-1) per 1M, off-peak ones at a quarter
    assert row.cache_savings == Money(Decimal("0.015552"), "CNY")
    assert row.price_versions == ("test/deepseek-reasoner@2025-01-01", "test/deepseek-reasoner@2025-03-03")
    assert row.periods == ("off-peak", "standard")
    by_day = cost_of(db, ("day",))
    assert [str(k[0]) for k in by_day] == ["2025-03-03", "2025-03-04"]
    assert list(by_day.values()) == [Money(Decimal("0.03528"), "CNY"), Money(Decimal("0.039668"), "CNY")]


def test_openai_responses_snapshot_names_and_stream_chunk(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, SAMPLES / "openai.jsonl")
    assert (result.format, result.counts.stored) == ("openai", 3)
    assert totals(db) == {
        "rows": 3,
        "requests": 3,
        "input_tokens": 2048 + 1500 + 1200,
        "cached_input_tokens": 1024,  # prompt_tokens_details.cached_tokens
        "cache_write_tokens": 0,
        "output_tokens": 300 + 4000 + 200,
        "reasoning_tokens": 3500,
    }
    costs = cost_of(db)
    # the log names no provider: the report shows the provider of the offer the snapshot name matched
    assert costs == {
        ("openai", "gpt-4o-2024-08-06"): Money(
            Decimal("0.01184"), "USD"
        ),  # 1024*2.5+1024*1.25+300*10 + 1200*2.5+200*10
        ("openai", "o1-2024-12-17"): Money(Decimal("0.2625"), "USD"),  # 1500*15 + 4000*60
    }


def test_openai_batch_output_lines(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, SAMPLES / "openai_batch_output.jsonl")
    assert "OpenAI Batch output" in result.description
    assert query(db, "SELECT record_key, input_tokens, output_tokens, status FROM usage ORDER BY 1") == [
        ("chatcmpl-BatchOut1", 100, 10, "200"),
        ("chatcmpl-BatchOut2", 200, 20, "200"),
    ]
    assert cost_of(db) == {
        ("openai", "gpt-4o-2024-08-06"): Money(Decimal("0.00105"), "USD")
    }  # 300*2.5 + 30*10


def test_volcano_ark_with_a_provider_tag(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    ingest(db, SAMPLES / "volcengine_ark.jsonl", tags={"provider": "volcengine", "team": "kb"})
    assert totals(db) == {
        "rows": 3,
        "requests": 3,
        "input_tokens": 3000,
        "cached_input_tokens": 3 * 512,
        "cache_write_tokens": 0,
        "output_tokens": 401 + 402 + 403,
        "reasoning_tokens": 3 * 350,
    }
    assert query(db, "SELECT DISTINCT provider, team FROM usage") == [("volcengine", "kb")]
    # deepseek-r1-250120 is priced as deepseek-r1 of Volcano Ark: 488*4 + 512*0.8 + out*16 per request
    assert cost_of(db) == {("volcengine", "deepseek-r1-250120"): Money(Decimal("0.0263808"), "CNY")}


def test_vllm_self_hosted_model_is_listed_unpriced(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    ingest(db, SAMPLES / "vllm.jsonl")
    assert (
        totals(db)["input_tokens"] == 20 + 40 and totals(db)["cached_input_tokens"] == 0
    )  # prompt_tokens_details: null
    (row,) = spend_report(db, catalog(), UsageFilter(), BY_MODEL)
    assert row.cost is None
    assert row.unpriced_models == ("?/deepseek-ai/DeepSeek-R1 (no catalog offer sells this model)",)
    assert row.unpriced_requests == 2


def test_envelope_carries_time_attribution_and_timing(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    ingest(db, SAMPLES / "envelope.jsonl")
    rows = query(
        db,
        "SELECT strftime(ts, '%Y-%m-%d %H:%M'), provider, team, project, user_hash, key_id, ttft_ms,"
        " latency_ms,"
        " status, tags['env'] FROM usage ORDER BY team",
    )
    assert [r[:4] for r in rows] == [
        ("2025-03-09 10:00", "deepseek", "ads", None),  # epoch seconds; team from the envelope's tags
        ("2025-03-09 10:00", "deepseek", "search", "faq"),  # 18:00+08:00 is 10:00 UTC
    ]
    assert all(r[4].startswith("u") and "@" not in r[4] for r in rows)  # a salted hash, never the user id
    assert [r[5:] for r in rows] == [
        (None, 380.0, 4380.0, None, "staging"),
        ("key-prod-1", 420.0, 9420.0, "200", "prod"),
    ]
    # peak (10:00 UTC): 32*4 + 3968*1 + 1000*16 = 20096, and 1000*4 + 200*16 = 7200
    assert cost_of(db, ("team",)) == {
        ("ads",): Money(Decimal("0.0072"), "CNY"),
        ("search",): Money(Decimal("0.020096"), "CNY"),
    }


def test_anthropic_input_is_normalised_without_double_counting(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, SAMPLES / "anthropic.jsonl")
    assert result.format == "anthropic"
    assert query(
        db,
        "SELECT input_tokens, cached_input_tokens, cache_write_tokens, output_tokens FROM usage ORDER BY ts",
    ) == [
        (50 + 2000, 0, 2000, 500),  # input_tokens excludes cache writes: added
        (30 + 2000, 2000, 0, 100),  # and cache reads: added
        (250_000, 0, 0, 1000),
    ]
    assert query(db, "SELECT DISTINCT provider FROM usage") == [("anthropic",)]
    (row,) = spend_report(db, catalog(), UsageFilter(), ("model",))
    #   50*3 + 2000*3.75 + 500*15     = 15150
    #   30*3 + 2000*0.3  + 100*15     =  2190
    #   above 200K input: 250000*6 + 1000*22.5 = 1522500 (the long-context tier, per request)
    assert row.cost == Money(Decimal("1.53984"), "USD")
    assert row.cache_savings == Money(Decimal("0.0054"), "USD")  # 2000 * (3 - 0.3)


def test_openai_organization_usage_export(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, SAMPLES / "openai_usage_export.json")
    assert result.format == "openai-usage-export"
    assert (result.counts.read, result.counts.stored) == (3, 3)
    assert query(
        db,
        "SELECT strftime(ts, '%Y-%m-%d'), model, n_requests, input_tokens, cached_input_tokens,"
        " output_tokens,"
        " project, key_id, endpoint FROM usage ORDER BY ts, model",
    ) == [
        ("2025-03-11", "gpt-4o-2024-08-06", 50, 100_000, 40_000, 20_000, "proj_abc", "key_xyz", None),
        ("2025-03-11", "o1-2024-12-17", 10, 60_000, 0, 90_000, "proj_abc", "key_xyz", "batch"),
        ("2025-03-12", "(all models)", 4, 8_000, 0, 1_000, "proj_def", "key_uvw", None),
    ]
    rows = {r.keys["model"]: r for r in spend_report(db, catalog(), UsageFilter(), BY_MODEL)}
    assert rows["gpt-4o-2024-08-06"].cost == Money(Decimal("0.4"), "USD")  # 60000*2.5+40000*1.25+20000*10
    assert rows["o1-2024-12-17"].cost == Money(Decimal("6.3"), "USD")  # 60000*15 + 90000*60
    assert rows["(all models)"].cost is None and rows["(all models)"].unpriced_requests == 4


@pytest.mark.parametrize("name", ["litellm_spendlogs.json", "litellm_spendlogs.csv"])
def test_litellm_spend_logs(tmp_path: Path, name: str) -> None:
    db = tmp_path / "q.duckdb"
    (result,) = ingest(db, SAMPLES / name)
    assert result.format == "litellm-spend" and result.counts.stored == 3
    assert query(
        db,
        "SELECT record_key, provider, team, input_tokens, cached_input_tokens, cache_write_tokens,"
        " output_tokens,"
        " ttft_ms, latency_ms, billed_cost::VARCHAR, billed_currency FROM usage ORDER BY record_key",
    ) == [
        ("chatcmpl-litellm-1", "openai", "team-blue", 1000, 0, 0, 200, 400.0, 2500.0, "0.0045000000", "USD"),
        (
            "chatcmpl-litellm-2",
            "openai",
            "team-blue",
            3000,
            2048,
            0,
            500,
            900.0,
            6000.0,
            "0.0081250000",
            "USD",
        ),
        (
            "chatcmpl-litellm-3",
            "anthropic",
            "team-red",
            2100,
            0,
            2000,
            100,
            1000.0,
            3000.0,
            "0.0110000000",
            "USD",
        ),
    ]
    keys = query(db, "SELECT DISTINCT key_id, user_hash FROM usage")
    assert (
        len(keys) == 1 and keys[0][0].startswith("k") and len(keys[0][0]) == 12
    )  # a short hash, not the key
    rows = {r.keys["team"]: r for r in spend_report(db, catalog(), UsageFilter(), ("team",))}
    # 1000*2.5+200*10 = 4500; 952*2.5+2048*1.25+500*10 = 9940 | 100*3 + 2000*3.75 + 100*15 = 9300
    assert rows["team-blue"].cost == Money(Decimal("0.01444"), "USD")
    assert rows["team-blue"].billed_cost == Money(
        Decimal("0.012625"), "USD"
    )  # what LiteLLM said, kept beside
    assert rows["team-red"].cost == Money(Decimal("0.0093"), "USD")
    # message content never stored
    for column in ("record_key", "model", "endpoint", "status", "team", "key_id", "user_hash"):
        assert query(
            db, f"SELECT count(*) FROM usage WHERE {column} LIKE '%France%' OR {column} LIKE '%Paris%'"
        ) == [(0,)]


def test_generic_csv_with_a_column_map(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    mapping = {
        "req": "request_id",
        "started": "ts",
        "vendor": "provider",
        "llm": "model",
        "dept": "team",
        "prompt_tok": "input_tokens",
        "cache_tok": "cached_input_tokens",
        "completion_tok": "output_tokens",
        "think_tok": "reasoning_tokens",
        "ms": "latency_ms",
    }
    (result,) = ingest(db, SAMPLES / "gateway.csv", fmt="csv", csv_map=mapping)
    assert result.counts.stored == 3 and identity_holds(result)
    assert totals(db) == {
        "rows": 3,
        "requests": 3,
        "input_tokens": 3000,
        "cached_input_tokens": 640,
        "cache_write_tokens": 0,
        "output_tokens": 1400,
        "reasoning_tokens": 1050,
    }
    # 560*4+640+300*16 = 7680; 800*4+100*16 = 4800; off-peak 17:00: (1000*4+1000*16)/4 = 5000
    assert cost_of(db, ("team",)) == {
        ("ads",): Money(Decimal("0.005"), "CNY"),
        ("search",): Money(Decimal("0.01248"), "CNY"),
    }


def test_gzip_reads_like_the_plain_file(tmp_path: Path) -> None:
    plain, packed = tmp_path / "plain.duckdb", tmp_path / "packed.duckdb"
    archive = tmp_path / "deepseek.jsonl.gz"
    with (SAMPLES / "deepseek.jsonl").open("rb") as src, gzip.open(archive, "wb") as out:
        shutil.copyfileobj(src, out)
    ingest(plain, SAMPLES / "deepseek.jsonl")
    (result,) = ingest(packed, archive)
    assert result.counts.stored == 6
    assert totals(packed) == totals(plain)
    assert cost_of(packed) == cost_of(plain)


def test_display_currency_converts_and_names_the_rate(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    ingest(db, SAMPLES / "deepseek.jsonl", SAMPLES / "openai.jsonl")
    rows = spend_report(db, catalog(), UsageFilter(), ("day",), "CNY")
    day = {str(r.keys["day"]): r for r in rows}
    # 2025-03-05 holds only the OpenAI traffic: 0.27434 USD at 7 CNY per USD
    assert day["2025-03-05"].cost == Money(Decimal("1.92038"), "CNY")
    assert day["2025-03-05"].fx == ("1 USD = 7 CNY (test rate, 2025-01-01)",)
    assert day["2025-03-03"].fx == ()  # already CNY: no rate used


def test_rows_mixing_currencies_pick_the_newest_and_say_so(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    ingest(db, SAMPLES / "deepseek.jsonl", SAMPLES / "openai.jsonl")
    rows = spend_report(db, catalog(), UsageFilter(), ("team",))
    mixed = [r for r in rows if r.currency_note]
    assert mixed and all(r.cost is not None and r.cost.currency == "USD" for r in mixed)
    assert all("CNY converted to USD" in r.currency_note and r.fx for r in mixed)
