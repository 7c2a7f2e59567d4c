"""`quotascope export focus`: stored usage as FOCUS 1.0 cost and usage rows, for finance's FinOps tools."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.errors import InputError
from models.focus import focus_csv
from models.money import format_amount
from quotascope import settings
from quotascope.arguments import selection_from, selection_options
from quotascope.context import catalog_from, store_from
from quotascope.output import emit
from storage.reports import focus_export

FORMATS = (".csv", ".parquet")
MICRO = Decimal("0.000001")


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "export",
        parents=[parent],
        help="stored usage in a format other tools read (FOCUS 1.0 for FinOps tools)",
        description="Export stored usage for other tools.",
    )
    kinds = p.add_subparsers(dest="kind", metavar="FORMAT", required=True)
    focus = kinds.add_parser(
        "focus",
        parents=[parent, selection_options()],
        help="FOCUS 1.0 rows: per day x provider x model x token type x team/project/key",
        description="FOCUS 1.0 cost and usage rows (the FinOps Foundation's format): list, contracted "
        "(your catalog overrides) and effective (after promotions) cost of every token type.",
    )
    focus.add_argument("--out", required=True, type=Path, help="the file to write: FILE.csv or FILE.parquet")
    focus.add_argument(
        "--grain", choices=("day", "hour"), default="day", help="charge period: a UTC day (default) or hour"
    )
    focus.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.suffix.lower() not in FORMATS:
        raise InputError(f"--out names a .csv or .parquet file, got {str(out)!r}")
    selection = selection_from(args)
    catalog_dir = Path(settings.get("catalog_dir"))
    export = focus_export(store_from(args), catalog_from(args), catalog_dir, selection, args.grain)
    if out.suffix.lower() == ".csv":
        out.write_text(focus_csv(export.rows), encoding="utf-8")
    else:
        export.rows.write_parquet(out)
    billed = export.billed_per_currency()
    document = {
        "out": str(out),
        "rows": export.rows.height,
        "grain": args.grain,
        "billed": {currency: f"{amount.quantize(MICRO)}" for currency, amount in billed.items()},
        "unpriced": {"requests": export.unpriced_requests, "models": list(export.unpriced_models)},
    }

    def text() -> str:
        total = " + ".join(f"{format_amount(a, 2)} {c}" for c, a in sorted(billed.items())) or "nothing"
        lines = [
            f"wrote {export.rows.height:,} FOCUS 1.0 rows (one per {args.grain} x provider x model x token "
            f"type x team/project/key) to {out}",
            f"billed cost: {total}",
        ]
        if export.unpriced_requests:
            models = ", ".join(export.unpriced_models)
            lines.append(
                f"left out: {export.unpriced_requests:,} unpriced requests ({models}); never exported as free"
            )
        return "\n".join(lines)

    emit(args.json, document, text)
    return 0
