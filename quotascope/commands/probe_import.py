"""`quotascope probe import FILE`: another tool's benchmark results stored as probe runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from collectors.probe.peers import PEER_TOOLS, Identity, PeerFile, import_peer_file
from models.outside_text import for_terminal
from models.probe import TTFT_DEFINITIONS, summarize
from quotascope.context import db_path
from quotascope.output import emit, table
from storage.probes import ImportCounts


def register(actions: Any, parent: argparse.ArgumentParser) -> None:
    p = actions.add_parser(
        "import",
        parents=[parent],
        help="store another tool's results as probe runs (AIPerf, GuideLLM, vLLM bench serve)",
        description="Read AIPerf's profile_export.jsonl, GuideLLM's benchmarks.json or the JSON of "
        "`vllm bench serve --save-result --save-detailed` and store each benchmark in it as a probe run, "
        "shown on the Endpoints page beside quotascope's own. Each tool's TTFT definition is stored with "
        "its runs; TTFT and E2E are the tool's, tokens/s and ITL are recomputed as quotascope defines them. "
        "Every record is stored, a duplicate of one already stored, or rejected with its reason "
        "(`quotascope report rejects`). Generated text is never stored.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the result file")
    p.add_argument("--tool", choices=PEER_TOOLS, help="which tool wrote FILE (default: recognised)")
    p.add_argument(
        "--endpoint",
        metavar="NAME",
        help="the endpoint name to file the runs under, e.g. one of your endpoints file (default: "
        "model@host, as an ad hoc `quotascope probe` names it)",
    )
    p.add_argument("--model", metavar="M", help="the model, where the file does not say")
    p.add_argument("--base-url", metavar="URL", help="the endpoint's URL, where the file does not say")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    db = db_path(args)
    peer, counts = import_peer_file(
        db, args.file, args.tool, Identity(args.endpoint, args.model, args.base_url)
    )
    document = {
        "file": str(args.file),
        "tool": peer.tool,
        "ttft_definition": TTFT_DEFINITIONS[peer.tool],
        "source_id": counts.source_id,
        "read": counts.read,
        "stored": counts.stored,
        "duplicates": counts.duplicates,
        "rejected": counts.rejected,
        "runs": [summarize(r) for r in peer.runs],
    }
    emit(args.json, document, lambda: render(peer, counts, db))
    return 0 if peer.runs else 1


def render(peer: PeerFile, counts: ImportCounts, db: Path) -> str:
    lines = [
        f"{peer.tool}: {counts.read} records read = {counts.stored} stored + {counts.duplicates} duplicates "
        f"+ {counts.rejected} rejected (import {counts.source_id} in {db})",
        f"TTFT as {peer.tool} times it: {TTFT_DEFINITIONS[peer.tool]}",
    ]
    rows = []
    for run in peer.runs:
        summary = summarize(run)
        ttft = summary["ttft_ms"]
        rows.append(
            [
                run.run_id[:20],
                for_terminal(run.endpoint),
                run.plan.profile,
                summary["requests"],
                summary["ok"],
                ttft["p50"],
                ttft["p99"],
                summary["output_tokens_per_s"]["p50"],
            ]
        )
    if rows:
        lines += [
            "",
            table(
                [
                    "run",
                    "endpoint",
                    "profile",
                    "requests",
                    "ok",
                    "TTFT p50 ms",
                    "TTFT p99 ms",
                    "tokens/s p50",
                ],
                rows,
            ),
        ]
    else:
        lines.append("no run in the file had a readable record")
    if counts.rejected:
        lines.append(
            f"{counts.rejected} rejected records: `quotascope report rejects` lists them with reasons"
        )
    return "\n".join(lines)
