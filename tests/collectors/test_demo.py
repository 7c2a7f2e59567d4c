"""The demo month is realistic where it matters: cache hits follow each provider's prefix rules."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest

from collectors.demo import generate
from quotascope.context import priced_catalog
from quotascope.settings import BY_NAME
from storage.db import open_read
from storage.reports import UsageFilter, spend_report


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, object]]]:
    folder = tmp_path_factory.mktemp("demo")
    written = generate(folder, datetime(2026, 11, 2), days=2, seed=3)
    assert written.malformed == 4
    out: dict[str, list[dict[str, object]]] = {}
    for path in written.paths:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        rows = []
        for line in data.splitlines():
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        out[path.name] = rows
    assert sum(len(v) for v in out.values()) >= written.records
    return out


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", datetime(2026, 11, 2), days=1, seed=5)
    b = generate(tmp_path / "b", datetime(2026, 11, 2), days=1, seed=5)
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]


def test_deepseek_hits_are_whole_64_token_units(files: dict[str, list[dict[str, object]]]) -> None:
    usages = [
        r["response"]["usage"]
        for r in files["deepseek.jsonl"]  # type: ignore[index]
        if isinstance(r.get("response"), dict) and "usage" in r["response"]
    ]  # type: ignore[operator]
    hits = [u["prompt_cache_hit_tokens"] for u in usages if "prompt_cache_hit_tokens" in u]
    assert hits and all(h % 64 == 0 for h in hits)
    assert any(h > 0 for h in hits)
    assert all(
        u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"] == u["prompt_tokens"]
        for u in usages
        if "prompt_cache_hit_tokens" in u and u["prompt_tokens"] >= 0
    )


def test_anthropic_reports_cache_apart_from_input(files: dict[str, list[dict[str, object]]]) -> None:
    usages = [r["response"]["usage"] for r in files["anthropic.jsonl"]]  # type: ignore[index]
    assert any(u["cache_read_input_tokens"] > 0 for u in usages)
    assert any(u["cache_creation_input_tokens"] > 0 for u in usages)
    assert all(u["input_tokens"] >= 0 for u in usages)


def test_batch_runs_off_peak_and_weekends_are_quieter(tmp_path: Path) -> None:
    written = generate(tmp_path, datetime(2026, 11, 6), days=3, seed=1)  # Friday, Saturday, Sunday
    rows = [json.loads(line) for line in (tmp_path / "deepseek.jsonl").read_bytes().splitlines()[:-4]]
    batch_hours = {
        datetime.fromisoformat(r["timestamp"][:19]).hour for r in rows if r["team"] == "batch-eval"
    }
    assert batch_hours <= set(range(12, 21))
    per_day: dict[int, int] = {}
    for r in rows:
        day = datetime.fromisoformat(r["timestamp"][:19]).day
        per_day[day] = per_day.get(day, 0) + 1
    assert per_day[6] > per_day[7] * 1.5
    assert written.records > 1000


def test_the_demos_claude_traffic_is_priced_on_every_day(demo_db: tuple[Path, Path]) -> None:
    """The demo's Anthropic traffic predates the shipped claude-sonnet-4-5 version: genai-prices' history
    prices it (it showed as unpriced before the base layer)."""
    db, user = demo_db
    catalog = priced_catalog(Path(BY_NAME["catalog_dir"].default), [user])
    rows = spend_report(db, catalog, UsageFilter(provider="anthropic"), ("model", "day"))
    with open_read(db) as con:
        days = {
            d
            for (d,) in con.execute(
                "SELECT DISTINCT ts::DATE FROM usage WHERE provider = 'anthropic'"
            ).fetchall()
        }
    # a week written up to now: just after midnight UTC, today has no Claude request yet (6 days, not 7)
    assert len(days) >= 6 and {r.keys["day"] for r in rows} == days
    assert all(r.cost is not None and r.cost.amount > 0 and r.unpriced_requests == 0 for r in rows), [
        (r.keys, r.unpriced_models) for r in rows if r.unpriced_requests
    ]
