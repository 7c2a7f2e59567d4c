"""`quotascope catalog list|show|validate|update|import-litellm`: the catalog from the command line."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.prices.genai import update_base_layer
from collectors.prices.litellm import DEFAULT_ID_PREFIX, import_litellm, read_litellm_file
from models.catalog import Offer
from models.catalog_view import check_catalog, offer_document, offer_row, offer_text, summarize
from models.errors import InputError
from models.money import plain
from quotascope import settings
from quotascope.arguments import day, when
from quotascope.context import catalog_from, price_data_dir
from quotascope.output import emit, table
from storage.catalog import write_catalog_file


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "catalog",
        help="the provider catalog: offers, prices, limits, rules, FX",
        description="List, show and check the catalog of offers (data/catalog/*.toml plus your --catalog "
        "files), or import LiteLLM's price list as a catalog file.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", parents=[parent], help="one line per offer")
    ls.add_argument("--at", type=when, metavar="WHEN", help="show the versions in force then (default: now)")
    ls.add_argument(
        "--provider", action="append", default=[], metavar="NAME", help="only this provider (repeatable)"
    )
    ls.set_defaults(run=run_list)

    show = actions.add_parser("show", parents=[parent], help="every version of one offer, with sources")
    show.add_argument("offer_id", metavar="ID", help="an offer id from `quotascope catalog list`")
    show.add_argument("--at", type=when, metavar="WHEN", help="mark the version in force then")
    show.set_defaults(run=run_show)

    check = actions.add_parser(
        "validate", parents=[parent], help="load the shipped catalog and FILEs, report what was checked"
    )
    check.add_argument("files", nargs="*", type=Path, metavar="FILE", help="catalog files to check on top")
    check.set_defaults(run=run_validate)

    update = actions.add_parser(
        "update",
        parents=[parent],
        help="refresh the genai-prices base layer and print what changed",
        description="Refresh the base layer of prices (pydantic's genai-prices): its published latest data "
        "when the network allows, else the installed package. Prints added models and changed prices with "
        "their dates. A failed fetch never breaks pricing: the package's data is used, and says so.",
    )
    update.add_argument(
        "--offline", action="store_true", help="do not fetch: convert the installed package's data"
    )
    update.add_argument("--url", help="where the published data is fetched from (default: genai-prices')")
    update.set_defaults(run=run_update)

    imp = actions.add_parser(
        "import-litellm",
        parents=[parent],
        help="turn LiteLLM's model_prices_and_context_window.json into a catalog file",
    )
    imp.add_argument("file", type=Path, metavar="FILE", help="LiteLLM's JSON price file")
    imp.add_argument(
        "--out",
        type=Path,
        default=Path("litellm-catalog.toml"),
        metavar="FILE",
        help="TOML to write (default %(default)s)",
    )
    imp.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="NAME",
        help="only this litellm_provider (repeatable)",
    )
    imp.add_argument(
        "--id-prefix", default=DEFAULT_ID_PREFIX, help="prefix of every offer id (default %(default)s)"
    )
    imp.add_argument("--as-of", type=day, metavar="DATE", help="the day the file was read (default today)")
    imp.set_defaults(run=run_import)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def run_list(args: argparse.Namespace) -> int:
    catalog = catalog_from(args)
    wanted = {p.lower() for p in args.provider}
    offers = [o for o in catalog.offers.values() if not wanted or o.provider.lower() in wanted]
    rows = [offer_row(o, args.at or _now()) for o in sorted(offers, key=lambda o: o.id)]
    emit(args.json, {"offers": rows, "summary": asdict(summarize(catalog))}, lambda: _list_text(rows))
    return 0


def _num(value: Any) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else plain(value)


def _list_text(rows: list[dict[str, Any]]) -> str:
    headers = ["id", "provider", "model", "region", "cur", "input", "cached", "output", "period", "windows"]
    headers += ["TPM", "RPM", "conc", "scope", "vers", "as of"]
    body = [
        [
            r["id"],
            r["provider"],
            r["model"],
            r["region"],
            r["currency"],
            _num(r["input"]) if r["priced"] else "unpriced",
            _num(r["cached_input"]),
            _num(r["output"]),
            r["base_period"] if r["windows"] else "",
            ", ".join(r["windows"]),
            _num(r["tpm"])
            or (f"{r['rpm_per_tpm'][0]} RPM/{r['rpm_per_tpm'][1]:,}" if r["rpm_per_tpm"] else ""),
            _num(r["rpm"]),
            _num(r["max_concurrency"]),
            r["scope"] or "",
            r["versions"],
            r["as_of"].isoformat(),
        ]
        for r in rows
    ]
    note = "Prices per 1M tokens in the offer's currency, from the version in force (see `catalog show ID`)."
    right = [False] * 5 + [True] * 3 + [False] * 2 + [True] * 3 + [False, True, False]
    return table(headers, body, right) + "\n\n" + note


def run_show(args: argparse.Namespace) -> int:
    catalog = catalog_from(args)
    offer: Offer = catalog.get(args.offer_id)
    at = args.at or _now()
    emit(args.json, offer_document(catalog, offer), lambda: offer_text(catalog, offer, at))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    args.catalog = [*args.catalog, *(str(f) for f in args.files)]
    catalog = catalog_from(args)  # raises, naming file, offer and field, on the first problem
    summary = summarize(catalog)
    shipped = sorted(Path(settings.get("catalog_dir")).glob("*.toml"))
    files = [str(p) for p in shipped] + list(args.catalog)
    warnings = check_catalog(catalog)
    document = {"ok": True, "files": files, **asdict(summary), "warnings": warnings}

    def text() -> str:
        lines = [f"checked {len(files)} files ({len(shipped)} shipped, {len(args.catalog)} yours)"]
        lines += [f"  {f}" for f in args.catalog]
        lines.append(f"OK: {summary.sentence()}")
        lines += [f"warning: {w}" for w in warnings]
        return "\n".join(lines)

    emit(args.json, document, text)
    return 0


def run_update(args: argparse.Namespace) -> int:
    folder = price_data_dir()
    if folder is None:
        raise InputError("the price_data_dir setting is off: there is no base layer to update")
    result = update_base_layer(folder, _now().date(), fetch=not args.offline, url=args.url)
    document = {
        "base_layer": result.label,
        "offers": result.offers,
        "fetch_error": result.fetch_error,
        "changes": [asdict(c) for c in result.changes],
    }

    def text() -> str:
        lines = []
        if result.fetch_error:
            lines.append(
                f"could not fetch the published data ({result.fetch_error}); used the installed package"
            )
        lines.append(f"base layer: {result.label}, {result.offers:,} offers, in {folder}")
        if not result.changes:
            lines.append("no changes")
        counts = {
            w: sum(1 for c in result.changes if c.what == w)
            for w in ("added", "removed", "new price", "price changed")
        }
        if result.changes:
            lines.append(", ".join(f"{n:,} {w}" for w, n in counts.items() if n))
        lines += [f"  {c.what:<13} {c.offer_id}  {c.detail}".rstrip() for c in result.changes[:200]]
        if len(result.changes) > 200:
            lines.append(f"  ... and {len(result.changes) - 200:,} more (--json lists all)")
        return "\n".join(lines)

    emit(args.json, document, text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    raw = read_litellm_file(args.file)
    as_of = args.as_of or _now().date()
    result = import_litellm(
        raw,
        source_name=f"LiteLLM {args.file.name}",
        as_of=as_of,
        providers=args.provider,
        id_prefix=args.id_prefix,
    )
    write_catalog_file(args.out, result.document(), result.header())
    skipped = [{"reason": r, "count": n, "examples": ex} for r, n, ex in result.skipped_by_reason()]
    document = {
        "file": str(args.file),
        "out": str(args.out),
        "read": result.read,
        "imported": result.imported,
        "skipped": len(result.skipped),
        "not_selected": result.not_selected,
        "skipped_by_reason": skipped,
        "caveats": {k: list(v) for k, v in result.warnings.items()},
    }

    def text() -> str:
        lines = [
            f"read {result.read:,} entries from {args.file} = {result.imported:,} imported + "
            f"{len(result.skipped):,} skipped + {result.not_selected:,} of other providers",
            f"wrote {result.imported:,} offers to {args.out} (ids start with {args.id_prefix!r})",
        ]
        if result.skipped:
            lines.append("skipped:")
        lines += [f"  {n:>6,}  {r}  (e.g. {', '.join(ex)})" for r, n, ex in result.skipped_by_reason()]
        if result.warnings:
            lines.append(f"{len(result.warnings)} offers imported with caveats (in their notes)")
        lines.append(f"use it with: quotascope catalog list --catalog {args.out}")
        return "\n".join(lines)

    emit(args.json, document, text)
    return 0
