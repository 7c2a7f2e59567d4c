"""The reconciliation loop for tests: SDK traffic to the emulator, logged by the client, billed by the
emulator, pulled back. Shared by the wire tests, the dashboard's and the scheduler's."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai

from collectors.emulator import Billing, EmulatorConfig, EmulatorServer
from collectors.ingest import ingest_paths
from collectors.pull import AdminKey, pull, pull_kind

ADMIN_KEY = "sk-admin-wire-test-NEVER-STORED-0123456789"
PRICES = {"input": Decimal(15), "cached": Decimal("7.5"), "output": Decimal(60)}  # openai/o1, USD per 1M


def send_traffic(server: EmulatorServer, log: Path, requests: int, provider: str) -> tuple[int, Decimal]:
    """Requests through the SDK; each answer that arrives is logged. Returns (failed, cost of the logged at
    o1's list price, computed here independently of the engine)."""
    failed = 0
    logged_cost = Decimal(0)
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-app-key", project="proj_a", max_retries=0)
    with client, log.open("w") as out:
        for i in range(requests):
            try:
                answer = client.chat.completions.create(
                    model=server.config.model,
                    messages=[{"role": "user", "content": f"question number {i} " * (5 + i)}],
                )
            except openai.APIError:
                failed += 1  # the provider billed it; the app never saw an answer to log
                continue
            stamp = datetime.now(UTC).isoformat()
            record = {
                "timestamp": stamp,
                "provider": provider,
                "project": "proj_a",
                "response": answer.model_dump(),
            }
            out.write(json.dumps(record) + "\n")
            usage = answer.usage
            assert usage is not None and usage.prompt_tokens_details is not None
            cached = usage.prompt_tokens_details.cached_tokens or 0
            logged_cost += (
                (usage.prompt_tokens - cached) * PRICES["input"]
                + cached * PRICES["cached"]
                + usage.completion_tokens * PRICES["output"]
            ) / 1_000_000
    return failed, logged_cost


def build_gap_db(db: Path, catalog: Any, folder: Path, requests: int = 24) -> tuple[int, EmulatorServer]:
    """A database holding logs with a known share of dropped (billed, never logged) requests and the
    provider's usage and cost reports pulled from the emulator. Returns (requests not logged, the server,
    stopped)."""
    config = EmulatorConfig(
        model="o1", ttft_ms=0, tokens_per_s=20_000, output_tokens=12, fault_drop_rate=0.3, seed=11
    )
    with EmulatorServer(config, billing=Billing(catalog, provider="openai")) as server:
        log = folder / "app.jsonl"
        failed, _ = send_traffic(server, log, requests, "openai")
        ingest_paths(db, [log], salt="test-salt")

        async def both() -> None:
            async with httpx.AsyncClient() as client:
                for kind in ("openai-usage", "openai-costs"):
                    await pull(
                        db,
                        pull_kind(kind),
                        AdminKey("K", ADMIN_KEY),
                        client,
                        base_url=server.base_url,
                        salt="s",
                    )

        asyncio.run(both())
    return failed, server
