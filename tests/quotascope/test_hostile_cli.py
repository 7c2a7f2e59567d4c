"""Hostile text and values through the CLI as a user meets them (issue #14): nothing a terminal obeys is
printed, absurd catalog values are refused when the catalog is read, and money never overflows Decimal.
Stored text comes back through the reports from either store (`store`: usage in the DuckDB file or chdb)."""

from __future__ import annotations

import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from models.money import Money
from quotascope.cli import main
from storage.store import Store

# what a terminal acts on: C0 controls but the newline, DEL, C1 controls, bidirectional overrides
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = "\x1b[2J\x1b]0;pwned\x07evil\u202e"


def record(key: str, model: str, **usage: object) -> str:
    return json.dumps(
        {
            "id": key,
            "object": "chat.completion",
            "created": int(time.time()) - 3600,
            "model": model,
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, **usage},
        }
    )


def test_no_command_prints_what_a_terminal_would_obey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store: Store
) -> None:
    log = tmp_path / f"log{HOSTILE}.jsonl"
    log.write_text(
        record("a", HOSTILE)
        + "\n"
        + record("b", "ok", prompt_tokens=f"{HOSTILE} sk-abcdef0123456789xyz")
        + "\n"
    )
    assert main(["ingest", str(log)]) == 1  # one record rejected
    assert main(["report", "spend", "--since", "30d", "--by", "model"]) == 0
    assert main(["report", "rejects"]) == 0
    assert main(["report", "usage", "--since", "30d", "--by", "model"]) == 0
    out, err = capsys.readouterr()
    assert not OBEYED.search(out) and not OBEYED.search(err), [m.group(0) for m in OBEYED.finditer(out + err)]
    assert "\\x1b[2J" in out  # shown, escaped
    assert "abcdef0123456789" not in out + err  # the key in the rejected count is not printed
    assert main(["report", "spend", "--since", "30d", "--by", "model", "--json"]) == 0
    document = capsys.readouterr().out
    assert not OBEYED.search(document.replace("\n", ""))
    assert any(row["model"] == HOSTILE for row in json.loads(document))  # JSON keeps the value


def test_an_error_naming_a_hostile_file_is_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(tmp_path / f"missing{HOSTILE}.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and not OBEYED.search(err)


ABSURD = """
[[offer]]
id = "evil/deepseek-chat"
provider = "deepseek"
model = "deepseek-chat"
currency = "USD"
[[offer.versions]]
effective_from = 2025-01-01
as_of = 2025-01-01
source = "test"
[offer.versions.prices]
input = {input}
output = 1
[offer.versions.limits]
tpm = {tpm}
"""


@pytest.mark.parametrize(
    ("value", "tpm", "field"),
    [
        ("1e30", "1000", "prices.input"),
        ("2_000_000_000", "1000", "prices.input"),
        ("1", str(2**70), "limits.tpm"),
    ],
)
def test_catalog_validate_refuses_absurd_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, tpm: str, field: str
) -> None:
    catalog = tmp_path / "absurd.toml"
    catalog.write_text(ABSURD.format(input=value, tpm=tpm))
    assert main(["catalog", "validate", str(catalog)]) == 2
    err = capsys.readouterr().err
    assert field in err and "implausibly large" in err
    assert (
        main(["plan", "--catalog", str(catalog), "--offer", "evil/deepseek-chat", "--input-tokens", "1"]) == 2
    )
    assert "Traceback" not in capsys.readouterr().err


def test_plan_refuses_an_absurd_price_and_money_never_overflows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(
            ["plan", "--input-tokens", "1000", "--output-tokens", "10", "--price-input", "1e30", "--tpm", "1"]
        )
    assert "implausibly large" in capsys.readouterr().err
    assert Money(Decimal("1e40"), "USD").quantize(10).amount == Decimal("1e40")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX only")
def test_an_unpriced_only_selection_reports_without_crashing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store: Store
) -> None:
    log = tmp_path / "unpriced.jsonl"
    log.write_text(record("u", "[x](http://evil.example)") + "\n")
    assert main(["ingest", str(log)]) == 0
    assert main(["report", "spend", "--since", "30d"]) == 0
    assert "unpriced" in capsys.readouterr().out
