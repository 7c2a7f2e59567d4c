"""The LiteLLM importer and the catalog TOML writer.

tests/data/litellm_prices_excerpt.json is a real 34-entry excerpt of
`litellm/model_prices_and_context_window_backup.json` from the litellm 1.109.1 wheel on PyPI (read
2026-11-23): chat entries with tiers, off-peak windows (one on an Asia/Shanghai weekday calendar), a
fractional `tpm`, zero prices, and entries of other modes or without prices. Synthetic entries below cover
what the real file happens not to contain.
"""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from collectors.prices.litellm import (
    LitellmImport,
    compress_mask,
    import_litellm,
    off_peak_mask,
    read_litellm_file,
)
from models.catalog import Catalog
from models.catalog_parse import parse_catalog
from models.errors import InputError
from models.pricing import rates_at
from quotascope import settings
from storage.catalog import load_catalog, read_catalog_file, render_toml, write_catalog_file

EXCERPT = Path(__file__).parent.parent / "data" / "litellm_prices_excerpt.json"
AS_OF = date(2026, 11, 23)
MONDAY = datetime(2026, 11, 23)


def d(text: str | int) -> Decimal:
    return Decimal(text)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return read_litellm_file(EXCERPT)


@pytest.fixture(scope="module")
def result(raw: dict[str, Any]) -> LitellmImport:
    return import_litellm(raw, as_of=AS_OF)


def one(entry: dict[str, Any], key: str = "test/model") -> LitellmImport:
    return import_litellm({key: entry}, as_of=AS_OF)


def chat(**fields: Any) -> dict[str, Any]:
    return {"litellm_provider": "test", "mode": "chat", **fields}


def skip_reason(result: LitellmImport) -> str:
    assert result.imported == 0, result.offers
    (skipped,) = result.skipped
    return skipped.reason


# --------------------------------------------------------------------------------------------- counts


def test_every_entry_is_imported_skipped_or_not_selected(raw: dict[str, Any], result: LitellmImport) -> None:
    entries = [k for k in raw if k != "sample_spec"]
    assert result.read == len(entries)
    assert result.imported + len(result.skipped) + result.not_selected == result.read
    chat_keys = {k for k in entries if raw[k].get("mode") == "chat"}
    imported_keys = {str(o["id"]).removeprefix("litellm/") for o in result.offers}
    assert imported_keys <= chat_keys
    assert set(result.catalog.offers) == {str(o["id"]) for o in result.offers}


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("gemini/gemini-embedding-001", "mode 'embedding' is not chat"),
        ("azure/codex-mini", "mode 'responses' is not chat"),
        ("deepgram/aura", "no mode (not known to be chat)"),
        ("twelvelabs.pegasus-1-2-v1:0", "only one of the input and output prices"),
        ("azure/container", "no per-token price and no limits"),
        ("fallback_generalizations", "no litellm_provider"),
        (
            "codestral/codestral-latest",
            "input and output prices are both 0 (free or not known) and no limits",
        ),
    ],
)
def test_skips_say_why(result: LitellmImport, key: str, reason: str) -> None:
    assert {s.key: s.reason for s in result.skipped}[key] == reason


def test_reasons_are_grouped_most_frequent_first(result: LitellmImport) -> None:
    groups = result.skipped_by_reason()
    assert sum(n for _, n, _ in groups) == len(result.skipped)
    assert [n for _, n, _ in groups] == sorted((n for _, n, _ in groups), reverse=True)
    assert all(1 <= len(examples) <= 3 for _, _, examples in groups)


def test_provider_filter_keeps_only_those_providers(raw: dict[str, Any]) -> None:
    only = import_litellm(raw, as_of=AS_OF, providers=["DeepSeek"])
    assert only.imported > 0
    assert {o.provider for o in only.catalog.offers.values()} == {"deepseek"}
    assert only.not_selected == sum(
        1 for k, v in raw.items() if k != "sample_spec" and v.get("litellm_provider") != "deepseek"
    )
    assert only.imported + len(only.skipped) + only.not_selected == only.read


# --------------------------------------------------------------------------------------------- mapping


def test_per_token_usd_becomes_per_million(raw: dict[str, Any], result: LitellmImport) -> None:
    sonnet = result.catalog.get("litellm/claude-sonnet-4-5")
    version = sonnet.version_at()
    assert version.currency == "USD" and version.prices is not None
    assert (version.prices.input, version.prices.output) == (3, 15)
    assert (version.prices.cached_input, version.prices.cache_write) == (d("0.3"), d("3.75"))
    assert version.cache.enabled and version.cache.min_tokens == 1024
    assert version.effective_from == datetime(2026, 11, 23) and version.as_of == AS_OF
    assert version.source.startswith("https://platform.claude.com/docs/en/about-claude/pricing")
    assert (
        "deprecation_date 2026-11-30" in version.notes and "1-hour cache writes cost 6 USD" in version.notes
    )
    # every imported input price is the file's per-token figure x 1,000,000, exactly
    for offer in result.catalog.offers.values():
        entry = raw[offer.id.removeprefix("litellm/")]
        prices = offer.version_at().prices
        if prices is not None and "tiered_pricing" not in entry:
            assert prices.input == Decimal(str(entry["input_cost_per_token"])) * 1_000_000, offer.id


def test_model_and_aliases_come_from_the_key(result: LitellmImport) -> None:
    pro = result.catalog.get("litellm/gemini/gemini-2.5-pro")
    assert (pro.provider, pro.model, pro.aliases) == ("gemini", "gemini-2.5-pro", ("gemini/gemini-2.5-pro",))
    bedrock = result.catalog.get("litellm/us.deepseek.r1-v1:0")
    assert (bedrock.provider, bedrock.model, bedrock.aliases) == (
        "bedrock_converse",
        "us.deepseek.r1-v1:0",
        (),
    )


def test_above_threshold_keys_become_long_context_tiers(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/gemini/gemini-2.5-pro").version_at()
    (tier,) = version.tiers
    assert tier.above_input_tokens == 200_000
    assert (tier.prices.input, tier.prices.output, tier.prices.cached_input) == (d("2.5"), 15, d("0.25"))
    assert (version.limits.tpm, version.limits.rpm) == (800_000, 2_000)
    at = MONDAY + timedelta(hours=12)
    assert rates_at(version, at, 200_000).input == d("1.25")
    assert rates_at(version, at, 200_001).input == d("2.5")


def test_xai_tiers_apply_from_the_threshold_itself(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/xai/grok-4.3").version_at()
    (tier,) = version.tiers
    assert tier.above_input_tokens == 199_999
    assert rates_at(version, MONDAY, 200_000).input == d("2.5")


def test_tiered_pricing_ranges(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/dashscope/qwen-plus-2025-07-28").version_at()
    assert version.prices is not None
    assert (version.prices.input, version.prices.output, version.prices.reasoning_output) == (
        d("0.4"),
        d("1.2"),
        4,
    )
    (tier,) = version.tiers
    assert (tier.above_input_tokens, tier.prices.input, tier.prices.reasoning_output) == (
        256_000,
        d("1.2"),
        12,
    )


def test_fractional_tpm_that_is_whole_is_kept(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/gemini/deep-research-pro-preview-12-2025").version_at()
    assert (version.limits.tpm, version.limits.rpm) == (4_000_000, 1_000)


def test_zero_prices_with_limits_import_unpriced(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/gemini/gemini-exp-1114").version_at()
    assert version.prices is None and version.limits.tpm is not None
    assert "free, or not known" in version.notes
    assert "litellm/gemini/gemini-exp-1114" in result.warnings


def test_zero_cache_write_means_not_billed_apart(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/deepseek/deepseek-flash").version_at()
    assert version.prices is not None and version.prices.cache_write is None
    assert version.prices.cached_input == d("0.006")  # from cache_read_input_token_cost
    assert "cache-write price of 0" in version.notes


def test_fireworks_cached_input_defaults_to_half(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/fireworks_ai/accounts/fireworks/models/deepseek-r1").version_at()
    assert version.cache.enabled and version.cache.read_multiplier == d("0.5")
    assert rates_at(version, MONDAY).cached_input == d("1.5")


def test_deepseek_cache_hit_alias_field() -> None:
    version = one(
        chat(input_cost_per_token=1e-06, output_cost_per_token=2e-06, input_cost_per_token_cache_hit=1e-07)
    )
    prices = version.catalog.get("litellm/test/model").version_at().prices
    assert prices is not None and prices.cached_input == d("0.1")


# --------------------------------------------------------------------------------------------- off-peak


def test_off_peak_windows_match_litellms_rules_minute_by_minute(
    raw: dict[str, Any], result: LitellmImport
) -> None:
    """LiteLLM: Mon-Fri 00:00-01:00, 04:00-06:00, 10:00-00:00 and all weekend are off-peak at half price."""
    version = result.catalog.get("litellm/deepseek/deepseek-flash").version_at()
    expected = off_peak_mask(raw["deepseek/deepseek-flash"]["off_peak_pricing"])
    for minute in range(7 * 1440):
        period = rates_at(version, MONDAY + timedelta(minutes=minute)).period
        assert (period == "off-peak") == expected[minute], minute
    # the facts: peak = 01:00-04:00 and 06:00-10:00 UTC on weekdays; all other hours half price
    peak = {m for m in range(7 * 1440) if not expected[m]}
    assert peak == {day * 1440 + m for day in range(5) for m in (*range(60, 240), *range(360, 600))}
    off, on = rates_at(version, MONDAY), rates_at(version, MONDAY + timedelta(hours=2))
    assert (off.input, on.input, off.output, on.output) == (d("0.15"), d("0.3"), d("0.6"), d("1.2"))


def test_weekday_timezone_reads_the_weekday_on_that_calendar() -> None:
    # Saturday and Sunday in Shanghai (UTC+8): from Friday 16:00 UTC to Sunday 16:00 UTC
    rules = {
        "windows": [{"hours_utc": "00:00-00:00", "weekdays": [6, 7]}],
        "weekday_timezone": "Asia/Shanghai",
    }
    entry = chat(
        input_cost_per_token=1e-06,
        output_cost_per_token=2e-06,
        off_peak_pricing={**rules, "input_cost_per_token": 5e-07, "output_cost_per_token": 1e-06},
    )
    version = one(entry).catalog.get("litellm/test/model").version_at()
    friday = MONDAY + timedelta(days=4)
    assert rates_at(version, friday + timedelta(hours=15, minutes=59)).period == "standard"
    assert rates_at(version, friday + timedelta(hours=16)).period == "off-peak"
    assert rates_at(version, friday + timedelta(days=2, hours=15, minutes=59)).input == d("0.5")
    assert rates_at(version, friday + timedelta(days=2, hours=16)).period == "standard"


def test_a_real_shanghai_calendar_entry_imports(result: LitellmImport) -> None:
    version = result.catalog.get("litellm/tencent/deepseek-v4.1-flash").version_at()
    assert {w.multiplier for w in version.windows} == {d("0.5")}


def test_wrapping_span_and_weekday_names() -> None:
    rules = {"windows": [{"hours_utc": ["22:00-02:00"], "weekdays": ["sun"]}]}
    mask = off_peak_mask(rules)
    sunday = 6 * 1440
    assert mask[sunday + 22 * 60] and mask[sunday + 60]  # LiteLLM reads the time of day on the same day
    assert not mask[0 + 60]  # Monday 01:00 is not Sunday
    windows = compress_mask(mask)
    assert windows == [{"hours_utc": ["00:00-02:00", "22:00-24:00"], "weekdays": [6]}]


@pytest.mark.parametrize(
    ("off_peak", "reason"),
    [
        (
            {"input_cost_per_token": 5e-07, "output_cost_per_token": 1.5e-06, "hours_utc": "16:30-00:30"},
            "off-peak prices are not one multiple of the standard prices",
        ),
        (
            {"input_cost_per_token": 5e-07, "hours_utc": "16:30-00:30"},
            "off-peak prices are not one multiple of the standard prices",
        ),
        (
            {
                "input_cost_per_token": 5e-07,
                "output_cost_per_token": 1e-06,
                "weekday_timezone": "America/New_York",
                "windows": [{"hours_utc": "00:00-00:00", "weekdays": [6]}],
            },
            "off-peak weekday_timezone has daylight saving",
        ),
        (
            {
                "input_cost_per_token": 5e-07,
                "output_cost_per_token": 1e-06,
                "weekday_timezone": "Mars/Olympus",
                "windows": [],
            },
            "off-peak weekday_timezone is unknown",
        ),
        (
            {"input_cost_per_token": 5e-07, "output_cost_per_token": 1e-06, "hours_utc": "25:00-01:00"},
            "off_peak_pricing is malformed",
        ),
        (
            {
                "input_cost_per_token": 5e-07,
                "output_cost_per_token": 1e-06,
                "windows": [{"hours_utc": "01:00-02:00", "weekdays": [8]}],
            },
            "off_peak_pricing is malformed",
        ),
    ],
)
def test_off_peak_that_cannot_be_expressed_is_skipped(off_peak: dict[str, Any], reason: str) -> None:
    entry = chat(input_cost_per_token=1e-06, output_cost_per_token=2e-06, off_peak_pricing=off_peak)
    assert skip_reason(one(entry)) == reason


def test_off_peak_with_tiers_is_skipped() -> None:
    entry = chat(
        input_cost_per_token=1e-06,
        output_cost_per_token=2e-06,
        input_cost_per_token_above_200k_tokens=2e-06,
        off_peak_pricing={
            "input_cost_per_token": 5e-07,
            "output_cost_per_token": 1e-06,
            "hours_utc": "16:30-00:30",
        },
    )
    assert skip_reason(one(entry)) == "off_peak_pricing with long-context tiers"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {"input_cost_per_token": -1e-06, "output_cost_per_token": 2e-06},
            "a price is negative or not finite",
        ),
        ({"input_cost_per_token": "cheap", "output_cost_per_token": 2e-06}, "a price is not a number"),
        ({"input_cost_per_token": True, "output_cost_per_token": 2e-06}, "a price is not a number"),
        (
            {
                "tiered_pricing": [
                    {"range": [1000, 2000], "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
                ]
            },
            "tiered_pricing is malformed",
        ),
        ({"tiered_pricing": "flat"}, "tiered_pricing is malformed"),
    ],
)
def test_malformed_prices_are_skipped(fields: dict[str, Any], reason: str) -> None:
    assert skip_reason(one(chat(**fields))) == reason


def test_a_bad_limit_is_left_out_with_a_caveat() -> None:
    imported = one(chat(input_cost_per_token=1e-06, output_cost_per_token=2e-06, tpm=1.5, rpm=60))
    version = imported.catalog.get("litellm/test/model").version_at()
    assert (version.limits.tpm, version.limits.rpm) == (None, 60)
    assert "tpm 1.5 is not a positive whole number" in version.notes


def test_id_prefix_is_configurable() -> None:
    imported = import_litellm(
        {"m": chat(input_cost_per_token=1e-06, output_cost_per_token=2e-06)}, as_of=AS_OF, id_prefix="ll:"
    )
    assert list(imported.catalog.offers) == ["ll:m"]


# --------------------------------------------------------------------------------------------- the file


def test_written_file_reads_back_as_the_same_offers(result: LitellmImport, tmp_path: Path) -> None:
    out = tmp_path / "litellm.toml"
    write_catalog_file(out, result.document(), result.header())
    back = read_catalog_file(out)
    assert set(back.offers) == set(result.catalog.offers)
    for offer_id, offer in result.catalog.offers.items():
        assert back.offers[offer_id].versions == offer.versions, offer_id
    assert out.read_text().startswith("# Imported from")


def test_render_toml_escapes_strings_and_keeps_decimals_exact() -> None:
    tricky = 'a "quoted" back\\slash\nnew line, tab\t, 中文, DEL \x7f, emoji \U0001f600'
    document = {
        "offer": [
            {
                "id": "x/y",
                "provider": "x",
                "model": "y",
                "versions": [
                    {
                        "effective_from": date(2025, 1, 1),
                        "as_of": date(2025, 1, 1),
                        "source": tricky,
                        "currency": "USD",
                        "prices": {"input": Decimal("0.0000001"), "output": Decimal("12345678.90")},
                        "fees_per_1k_calls": {"web search (v2)": Decimal(5)},
                    }
                ],
            }
        ]
    }
    text = render_toml(document)
    assert "E-" not in text and "e-" not in text
    parsed = tomllib.loads(text)
    assert parsed["offer"][0]["versions"][0]["source"] == tricky
    version = parse_catalog(parsed, "t").get("x/y").version_at()
    assert version.prices is not None and version.prices.input == Decimal("0.0000001")
    assert version.prices.output == Decimal("12345678.9")
    assert version.fees_per_1k_calls == {"web search (v2)": 5}


def test_write_errors_are_one_sentence(tmp_path: Path, result: LitellmImport) -> None:
    with pytest.raises(InputError, match="cannot be written"):
        write_catalog_file(tmp_path / "missing" / "out.toml", result.document())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected LiteLLM's JSON object"),
        (b"\xff\xfe", "is not UTF-8"),
    ],
)
def test_unreadable_price_files_are_input_errors(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "prices.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_litellm_file(path)
    with pytest.raises(InputError, match="no such file"):
        read_litellm_file(tmp_path / "absent.json")


def test_import_does_not_modify_its_input(raw: dict[str, Any]) -> None:
    before = copy.deepcopy(raw)
    import_litellm(raw, as_of=AS_OF)
    assert raw == before
    assert json.dumps(raw, sort_keys=True) == json.dumps(before, sort_keys=True)


def test_imported_offers_load_beside_the_shipped_catalog(result: LitellmImport, tmp_path: Path) -> None:
    out = tmp_path / "litellm.toml"
    write_catalog_file(out, result.document())
    shipped = load_catalog(Path(settings.BY_NAME["catalog_dir"].default))
    both: Catalog = load_catalog(Path(settings.BY_NAME["catalog_dir"].default), [out])
    assert len(both.offers) == len(shipped.offers) + result.imported  # the prefix keeps ids apart
