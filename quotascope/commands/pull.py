"""`quotascope pull KIND`: the provider's own usage or cost report, read through its admin API, stored."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from collectors.ingest import load_salt
from collectors.pull import KINDS, AdminKey, PullResult, new_client, pull, pull_kind
from models.outside_text import for_terminal
from quotascope import settings
from quotascope.arguments import day
from quotascope.context import db_path
from quotascope.output import emit


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "pull",
        parents=[parent],
        help="pull the provider's usage or cost report (admin API) for reconciliation",
        description="Read OpenAI's or Anthropic's organisation usage or cost report through the admin API "
        "and store it beside your logs (not in them): `quotascope report reconcile` compares the two. "
        "Pulling a day again replaces it; without --since a pull starts at the last day pulled before. "
        "The admin key is read from an environment variable and never stored, logged or shown.",
    )
    p.add_argument("kind", choices=list(KINDS), metavar="KIND", help=f"one of {', '.join(KINDS)}")
    p.add_argument(
        "--admin-key-env",
        metavar="VAR",
        help="environment variable holding the admin key (default OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY)",
    )
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="API base (default https://api.openai.com/v1 or https://api.anthropic.com/v1)",
    )
    p.add_argument("--since", type=day, metavar="DATE", help="first UTC day (default: the last day pulled)")
    p.add_argument("--until", type=day, metavar="DATE", help="day after the last one (default: tomorrow)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kind = pull_kind(args.kind)
    key = AdminKey.from_env(args.admin_key_env or kind.key_env_hint)
    salt = load_salt(Path(settings.get("salt_file")))

    async def main() -> PullResult:
        async with new_client() as client:
            return await pull(
                db_path(args),
                kind,
                key,
                client,
                base_url=args.base_url,
                since=args.since,
                until=args.until,
                salt=salt,
            )

    result = asyncio.run(main())
    emit(args.json, result.to_json(), lambda: render(result))
    return 0


def render(result: PullResult) -> str:
    c = result.counts
    lines = [
        f"{result.kind} {result.since}..{result.until} (to the day before) from {result.account}: "
        f"{result.pages} page(s){f', {result.retries} retried' if result.retries else ''}",
        f"read {c.read:,} = stored {c.stored:,} + duplicates {c.duplicates:,} + rejected {c.rejected:,}"
        + (f"; replaced {c.replaced:,} row(s) an earlier pull stored for these days" if c.replaced else ""),
    ]
    for reason, count in result.reject_reasons.items():
        lines.append(f"  rejected {count:,}: {for_terminal(reason)}")
    lines.append("compare with your logs: quotascope report reconcile --since " + result.since.isoformat())
    return "\n".join(lines)
