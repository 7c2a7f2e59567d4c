"""`quotascope ingest PATH...`: load usage logs into the database, each record once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from collectors.ingest import FORMATS, FileResult, IngestOptions, ingest_paths, load_salt
from collectors.ingest.progress import Progress
from models.errors import CatalogError, InputError
from models.outside_text import for_terminal
from models.usage_record import CSV_FIELDS
from quotascope import settings
from quotascope.arguments import when
from quotascope.context import catalog_from, store_from
from quotascope.output import emit, say
from storage.usage import snapshot_catalog

SHOWN_REJECTS = 5


def tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"a tag looks like team=search, got {text!r}")
    return key.strip().lower(), value.strip()


def csv_map(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for part in (p for p in text.split(",") if p.strip()):
        column, sep, field = part.partition("=")
        if not sep or not column.strip() or not field.strip():
            raise argparse.ArgumentTypeError(
                f"a mapping looks like started=ts,tok_in=input_tokens; got {part!r}"
            )
        mapping[column.strip()] = field.strip()
    return mapping


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "ingest",
        parents=[parent],
        help="load usage logs (JSONL/JSON/CSV, .gz too) into the database, each record once",
        description="Read provider and gateway usage logs, normalise every record to the canonical usage "
        "record and store it once. Prints per file the format it read and read = stored + duplicates + "
        "rejected; exits 1 when a record was rejected unless --allow-rejects. A folder stands for its "
        "log files.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="log files or folders")
    p.add_argument(
        "--format",
        choices=("auto", *FORMATS),
        default="auto",
        help="the records' format (default: auto, which says what it chose)",
    )
    p.add_argument(
        "--tag",
        type=tag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute every record of this run (team, project, provider, endpoint, user, key_id fill "
        "columns where the log is silent; other keys go to tags); repeatable",
    )
    p.add_argument("--allow-rejects", action="store_true", help="exit 0 even when some records were rejected")
    p.add_argument(
        "--csv-map",
        type=csv_map,
        default={},
        metavar="COLUMN=FIELD,...",
        help=f"for --format csv: which column holds which field ({', '.join(CSV_FIELDS)})",
    )
    p.add_argument(
        "--default-time",
        type=when,
        metavar="ISO",
        help="the time of records that carry none (Anthropic responses, batch results), e.g. "
        "2025-05-20T14:00Z (UTC unless it has an offset); without it such records are rejected",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    options = IngestOptions(format=args.format, csv_map=args.csv_map, default_time=args.default_time)
    salt = load_salt(Path(settings.get("salt_file")))

    def notice(message: str) -> None:
        say(message, file=sys.stderr)

    def heard(result: FileResult) -> None:
        if not args.json:
            say(render(result), flush=True)

    results = ingest_paths(
        store,
        args.paths,
        salt=salt,
        tags=dict(args.tag),
        options=options,
        progress=Progress(),
        notice=notice,
        on_file=heard,
    )
    _snapshot(args, store.db, notice)
    if args.json:
        emit(True, [r.to_json() for r in results], lambda: "")
    rejected = sum(r.counts.rejected for r in results)
    if rejected and not args.allow_rejects:
        print(
            f"quotascope: {rejected:,} record(s) rejected (reasons above, all of them in the rejects table: "
            "`quotascope report rejects`); fix them, or pass --allow-rejects",
            file=sys.stderr,
        )
        return 1
    return 0


def _snapshot(args: argparse.Namespace, db: Path, notice: Any) -> None:
    """Keep `catalog_prices` in step with the catalog (for SQL users); a broken shipped catalog only warns."""
    try:
        snapshot_catalog(db, catalog_from(args))
    except CatalogError as e:
        if args.catalog:
            raise
        notice(f"note: catalog prices not copied into the database ({e})")
    except InputError as e:
        notice(f"note: catalog prices not copied into the database ({e})")


def render(result: FileResult) -> str:
    c = result.counts
    speed = result.size_bytes / result.seconds / 1e6 if result.seconds > 0 else 0.0
    shown = for_terminal  # every field below came from outside (a file's name, its records)
    lines = [
        f"{shown(result.path)}: {shown(result.format)} — {shown(result.description)}",
        f"  read {c.read:,} = stored {c.stored:,} + duplicates {c.duplicates:,} + rejected {c.rejected:,}"
        f"   ({result.seconds:.1f} s, {speed:.1f} MB/s)",
    ]
    for reject in result.sample_rejects[:SHOWN_REJECTS]:
        lines.append(f"  line {reject.line_no}: {shown(reject.reason)}")
        if reject.excerpt:
            lines.append(f"      {shown(reject.excerpt)}")
    if c.rejected > len(result.sample_rejects[:SHOWN_REJECTS]):
        others = ", ".join(
            f"{n:,} × {shown(reason)}" for reason, n in list(result.reject_reasons.items())[:5]
        )
        lines.append(f"  all rejects by reason: {others}")
    return "\n".join(lines)
