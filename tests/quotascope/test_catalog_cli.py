"""`quotascope catalog list|show|validate|import-litellm`, driven through `quotascope.cli.main`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from models.catalog import Catalog, Prices
from quotascope import settings
from quotascope.cli import main
from quotascope.context import catalog_from
from storage.catalog import load_catalog, read_base_layer, write_base_layer

SHIPPED = load_catalog(Path(settings.BY_NAME["catalog_dir"].default))
EXCERPT = Path(__file__).parent.parent / "data" / "litellm_prices_excerpt.json"

GOOD_OFFER = """
[[offer]]
id = "mine/r1"
provider = "mine"
model = "deepseek-r1"

[[offer.versions]]
effective_from = 2025-01-01
as_of = 2025-01-02
source = "our contract, section 4"
currency = "EUR"

[offer.versions.prices]
input = 2
output = 8

[offer.versions.limits]
tpm = 20_000
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------- list


def test_list_shows_every_offer_with_current_prices_and_limits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "catalog", "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["id", "provider", "model", "region", "cur"]
    for offer_id in SHIPPED.offers:
        assert any(line.startswith(offer_id + " ") for line in lines), offer_id
    ark = next(line for line in lines if line.startswith("volcengine/deepseek-r1 "))
    assert "5,000,000" in ark and "30,000" in ark and " CNY " in ark
    flash = next(line for line in lines if line.startswith("deepseek/deepseek-flash "))
    assert "peak x2" in flash and "2,500" in flash and "account" in flash


@pytest.fixture
def layered() -> Catalog:
    """What every command prices with: the shipped catalog over the genai-prices base layer."""
    return catalog_from(argparse.Namespace(catalog=[]))


def test_list_json_and_filters(capsys: pytest.CaptureFixture[str], layered: Catalog) -> None:
    code, out, _ = run(
        capsys, "catalog", "list", "--json", "--provider", "deepseek", "--at", "2025-03-03T17:00"
    )
    assert code == 0
    document = json.loads(out)
    rows = {row["id"]: row for row in document["offers"]}
    assert set(rows) == {o.id for o in layered.offers.values() if o.provider == "deepseek"}
    assert {o.id for o in SHIPPED.offers.values() if o.provider == "deepseek"} <= set(rows)
    reasoner = rows["deepseek/deepseek-reasoner"]
    assert (reasoner["currency"], reasoner["input"], reasoner["output"], reasoner["windows"]) == (
        "CNY",
        "4",
        "16",
        ["off-peak x0.25"],
    )
    assert reasoner["version_id"] == "deepseek/deepseek-reasoner@2025-02-01"
    assert document["summary"]["offers"] == len(layered.offers)


def test_list_rejects_a_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["catalog", "list", "--at", "yesterday"])
    assert exit_.value.code == 2
    assert "like 2026-11-23" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- show


def test_show_prints_every_version_with_source_rules_and_fx(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalog", "show", "deepseek/deepseek-reasoner", "--at", "2025-03-01")
    assert code == 0
    offer = SHIPPED.get("deepseek/deepseek-reasoner")
    for version in offer.versions:
        assert f"version {version.effective_from.date().isoformat()}" in out
        assert version.source in out
    assert "version 2025-02-01 -> 2025-12-01  (in force)" in out
    assert "window:     off-peak x0.25 at 16:30-00:30 UTC, every day" in out
    assert "CNY per 1M tokens, standard: input 4, cached input 1, output 16" in out
    assert "cache:      from 64 tokens, in 64-token steps" in out
    assert "1 USD = 7.306 CNY" in out


def test_show_json_has_fees_limits_counting_cache(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalog", "show", "deepseek/deepseek-v4-pro", "--json")
    assert code == 0
    document = json.loads(out)
    current = document["versions"][-1]
    assert current["fees_per_1k_calls"] == {"web_search": "5"}
    assert current["limits"] == {"max_concurrency": 500, "scope": "account"}
    assert current["windows"] == [
        {
            "name": "peak",
            "hours_utc": ["01:00-04:00", "06:00-10:00"],
            "weekdays": [0, 1, 2, 3, 4],
            "multiplier": "2",
        }
    ]
    assert current["base_period"] == "off-peak" and current["prices_per_1m_tokens"]["input"] == "4.5"
    assert current["counting"]["window"] == "minute" and current["cache"]["enabled"] is True
    assert document["versions"][0]["priced"] is False
    assert {r["rate"] for r in document["fx_rates"]} == {"7.306", "6.818"}


def test_show_text_for_ptu_promotion_tier(capsys: pytest.CaptureFixture[str]) -> None:
    _, ptu, _ = run(capsys, "catalog", "show", "azure/deepseek-r1-ptu")
    assert "PTU:        4,000 input TPM per PTU, output weight 4, minimum 100, step 100" in ptu
    assert "unpriced" in ptu
    _, ark, _ = run(capsys, "catalog", "show", "volcengine/deepseek-r1")
    assert "promotion:  Feb 2025 half price x0.5 from 2025-02-01" in ark
    assert "cache storage 0.017 per hour" in ark
    _, gemini, _ = run(capsys, "catalog", "show", "google/gemini-2.5-pro")
    assert "tier:       input above 200,000 tokens: input 2.5, cached input 0.25, output 15" in gemini
    assert "TPM 800,000, RPM 2,000 (per project)" in gemini
    assert "input tokens count" in gemini


def test_show_unknown_offer_is_one_sentence_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "catalog", "show", "deepseek/deepseek-chta")
    assert (code, out) == (2, "")
    assert err.startswith(
        "quotascope: unknown offer 'deepseek/deepseek-chta'; did you mean deepseek/deepseek-chat"
    )
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------ validate / override


def test_validate_reports_what_it_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, layered: Catalog
) -> None:
    code, out, _ = run(capsys, "catalog", "validate")
    assert code == 0
    versions = sum(len(o.versions) for o in layered.offers.values())
    assert (
        f"OK: {len(layered.offers)} offers" in out
        and f"{versions} versions, {len(SHIPPED.fx.rates)} FX rates" in out
    )
    mine = write(tmp_path, GOOD_OFFER)
    code, out, _ = run(capsys, "catalog", "validate", str(mine), "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True
    assert document["offers"] == len(layered.offers) + 1 and str(mine) in document["files"]
    assert "no FX rate converts EUR: its figures cannot be shown in another currency" in document["warnings"]


def test_a_user_catalog_overrides_a_shipped_offer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, layered: Catalog
) -> None:
    override = write(tmp_path, GOOD_OFFER.replace('id = "mine/r1"', 'id = "volcengine/deepseek-r1"'))
    code, out, _ = run(
        capsys, "catalog", "show", "volcengine/deepseek-r1", "--catalog", str(override), "--json"
    )
    assert code == 0
    document = json.loads(out)
    assert document["file"] == str(override) and len(document["versions"]) == 1
    assert document["versions"][0]["limits"]["tpm"] == 20_000
    _, listed, _ = run(capsys, "catalog", "list", "--catalog", str(override), "--json")
    assert len(json.loads(listed)["offers"]) == len(layered.offers)


MALFORMED = {
    "truncated TOML": (GOOD_OFFER[: GOOD_OFFER.index("[offer.versions.prices]") + 10], "is not valid TOML"),
    "wrong type": (
        GOOD_OFFER.replace("tpm = 20_000", 'tpm = "lots"'),
        "offer 'mine/r1', field 'versions[0].limits.tpm': must be a whole number",
    ),
    "negative price": (
        GOOD_OFFER.replace("input = 2", "input = -2"),
        "offer 'mine/r1', field 'versions[0].prices.input': must be zero or more",
    ),
    "unknown field": (
        GOOD_OFFER.replace("tpm = 20_000", "tmp = 20_000"),
        "offer 'mine/r1', field 'versions[0].limits.tmp': unknown field",
    ),
    "missing source": (
        GOOD_OFFER.replace('source = "our contract, section 4"', ""),
        "offer 'mine/r1', field 'versions[0].source': is required",
    ),
    "overlapping versions": (
        GOOD_OFFER.replace("as_of = 2025-01-02", "as_of = 2025-01-02\neffective_to = 2025-07-01")
        + GOOD_OFFER[GOOD_OFFER.index("[[offer.versions]]") :].replace("2025-01-01", "2025-03-01"),
        "offer 'mine/r1', field 'versions.effective_to': versions overlap",
    ),
    "bad window": (
        GOOD_OFFER
        + '\n[[offer.versions.windows]]\nname = "night"\nhours_utc = ["25:00-02:00"]\nmultiplier = 0.5\n',
        "field 'versions[0].windows[0].hours_utc'",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("command", ["validate", "list"])
def test_a_malformed_catalog_names_file_offer_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, command: str
) -> None:
    text, expected = MALFORMED[case]
    bad = write(tmp_path, text, "bad.toml")
    argv = (
        ["catalog", "validate", str(bad)]
        if command == "validate"
        else ["catalog", "list", "--catalog", str(bad)]
    )
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"quotascope: in {bad}"), err
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_missing_catalog_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "catalog", "validate", str(tmp_path / "nope.toml"))
    assert code == 2 and err.strip() == f"quotascope: in {tmp_path / 'nope.toml'}: no such file"


# --------------------------------------------------------------------------------------------- import-litellm


def test_import_litellm_writes_a_catalog_the_other_commands_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "litellm.toml"
    code, out, err = run(
        capsys, "catalog", "import-litellm", str(EXCERPT), "--out", str(out_file), "--as-of", "2026-11-23"
    )
    assert code == 0 and err == ""
    raw = json.loads(EXCERPT.read_text())
    entries = len(raw) - 1  # without LiteLLM's sample_spec
    assert out.startswith(f"read {entries} entries from {EXCERPT} = ")
    assert "mode 'embedding' is not chat" in out
    code, listed, _ = run(
        capsys, "catalog", "list", "--catalog", str(out_file), "--provider", "gemini", "--json"
    )
    ids = {row["id"] for row in json.loads(listed)["offers"]}
    assert code == 0 and "litellm/gemini/gemini-2.5-pro" in ids
    code, shown, _ = run(
        capsys, "catalog", "show", "litellm/deepseek/deepseek-flash", "--catalog", str(out_file)
    )
    assert code == 0 and "window:     off-peak x0.5 at 00:00-24:00 UTC, Sat, Sun" in shown


def test_import_litellm_json_counts_add_up(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "ds.toml"
    code, out, _ = run(
        capsys,
        "catalog",
        "import-litellm",
        str(EXCERPT),
        "--out",
        str(out_file),
        "--provider",
        "deepseek",
        "--json",
    )
    document = json.loads(out)
    assert code == 0
    assert document["read"] == document["imported"] + document["skipped"] + document["not_selected"]
    assert document["imported"] >= 3 and document["not_selected"] > 0
    assert sum(group["count"] for group in document["skipped_by_reason"]) == document["skipped"]


def test_import_litellm_of_a_missing_file_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "catalog", "import-litellm", str(tmp_path / "absent.json"), "--out", str(tmp_path / "o.toml")
    )
    assert code == 2 and "no such file" in err and not (tmp_path / "o.toml").exists()


# ----------------------------------------------------------------------------- the installed script


def test_installed_script_lists_the_catalog() -> None:
    script = Path(sys.executable).parent / "quotascope"
    result = subprocess.run(
        [str(script), "catalog", "list"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "volcengine/deepseek-r1" in result.stdout and "5,000,000" in result.stdout


# ------------------------------------------------------------------------------- the genai-prices layer


def test_list_shows_at_least_1500_priced_chat_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalog", "list", "--json")
    rows = json.loads(out)["offers"]
    priced = [r for r in rows if r["priced"] and (Decimal(r["input"]) > 0 or Decimal(r["output"]) > 0)]
    assert code == 0 and len(priced) >= 1_500


def test_show_says_where_each_figure_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalog", "show", "google/gemini-2.5-pro")
    assert code == 0
    sources = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("  from:")]
    assert any(s.startswith("genai-prices ") for s in sources)  # the history before the shipped file
    assert sources[-1].endswith("google.toml")  # the shipped version wins from its date on


def test_update_without_network_keeps_pricing_and_says_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUOTASCOPE_PRICE_DATA_DIR", str(tmp_path / "prices"))
    code, out, _ = run(capsys, "catalog", "update", "--url", "http://127.0.0.1:9/data.json", "--json")
    document = json.loads(out)
    assert code == 0 and document["fetch_error"] and "installed package" in document["base_layer"]
    assert document["offers"] >= 2_000
    code, out, _ = run(capsys, "catalog", "show", "openai/o3", "--at", "2025-05-20")
    assert code == 0 and "input 10, cached input 0.5, output 40" in out


def test_update_prints_added_models_and_changed_prices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prices"
    monkeypatch.setenv("QUOTASCOPE_PRICE_DATA_DIR", str(folder))
    run(capsys, "catalog", "update", "--offline")
    current = read_base_layer(folder)
    assert current is not None
    # an older base layer: one model missing, and o3's first version at another price
    o3 = current.offers["openai/o3"]
    older_o3 = replace(
        o3, versions=(replace(o3.versions[0], prices=Prices(Decimal(20), Decimal(80))), *o3.versions[1:])
    )
    offers = {k: v for k, v in current.offers.items() if k != "openai/gpt-4o-mini"}
    write_base_layer(
        folder, Catalog({**offers, "openai/o3": older_o3}, current.fx, current.providers), "older"
    )
    code, out, _ = run(capsys, "catalog", "update", "--offline")
    assert code == 0
    assert "added         openai/gpt-4o-mini" in out
    assert (
        "price changed openai/o3  version from 2000-01-01: "
        "input 20, output 80 -> input 10, cached 0.5, output 40" in out
    )
