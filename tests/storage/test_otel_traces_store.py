"""Apps -> OTel Collector -> ClickHouse -> quotascope: `report spend` over a chdb store holding the exporter's
`otel_traces` agrees to the cent with the same spans sent to `quotascope otlp` on a DuckDB file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collectors.otlp import OtlpOptions, OtlpServer
from collectors.otlp.decode import spans_of
from models.genai_spans import NO_USAGE_REASON, Span
from quotascope import settings
from quotascope.cli import main
from storage.catalog import load_catalog
from storage.clickhouse import connect
from storage.otel_traces import REJECTS_TABLE
from storage.replay import UsageFilter
from storage.reports import spend_report
from storage.store import parse_store
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of
from tests.storage.otel_support import insert_spans, traces_table_ddl

ATTRIBUTION = {"team": "service.name"}


@pytest.fixture
def chdb_store(chdb_folder: Path) -> Iterator[str]:
    """A ClickHouse store (chdb) with a database of its own in the session's chdb folder."""
    store = parse_store(f"chdb://{chdb_folder}?database=otel_e2e", Path("unused.duckdb"))
    yield f"chdb://{chdb_folder}?database=otel_e2e"
    assert store.clickhouse is not None
    connect(store.clickhouse).command("DROP DATABASE IF EXISTS otel_e2e")


def as_exported(request: ExportTraceServiceRequest) -> list[Span]:
    """The request's spans with every attribute (the exporter writes them all, content included)."""
    keys = {
        kv.key
        for resource_spans in request.resource_spans
        for kv in list(resource_spans.resource.attributes)
        + [kv for scope in resource_spans.scope_spans for span in scope.spans for kv in span.attributes]
    }
    return list(spans_of(request, frozenset(keys)))


def traffic() -> list[ExportTraceServiceRequest]:
    """Three services' chat calls on three providers, some cached, one without counts, one HTTP span."""
    requests = []
    for n, (service, provider, model) in enumerate(
        [
            ("checkout", "openai", "gpt-4o-2024-08-06"),
            ("search", "deepseek", "deepseek-chat"),
            ("support", "anthropic", "claude-sonnet-4-5"),
        ]
    ):
        spans = [
            llm_attributes(
                100 * n + i,
                **{
                    "gen_ai.provider.name": provider,
                    "gen_ai.response.model": model,
                    "input.value": "a secret",
                },
            )
            for i in range(20)
        ]
        spans.append({"gen_ai.operation.name": "chat", "gen_ai.request.model": model})  # no counts
        spans.append({"http.request.method": "GET"})
        requests.append(
            request_of(spans, resource={"service.name": service}, start_ns=START_NS + n * 3_600_000_000_000)
        )
    return requests


def test_report_spend_over_otel_traces_agrees_with_the_otlp_receiver(
    tmp_path: Path, chdb_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = traffic()
    # DuckDB: the spans sent to `quotascope otlp`
    duck = tmp_path / "receiver.duckdb"
    with OtlpServer(duck, "salt", OtlpOptions(port=0, attribution=ATTRIBUTION)) as server:
        for request in requests:
            response = httpx.post(
                server.endpoint + "/v1/traces",
                content=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
                timeout=30,
            )
            assert response.status_code == 200
    # ClickHouse: the same spans as the Collector's exporter writes them, before and after quotascope links
    store = parse_store(chdb_store, tmp_path / "small.duckdb")
    assert store.clickhouse is not None
    clickhouse = connect(store.clickhouse)
    database = clickhouse.layout.database
    clickhouse.command(traces_table_ddl(f"{database}.otel_traces"))
    spans = [s for r in requests for s in as_exported(r)]
    assert any("input.value" in s.attributes for s in spans)  # content reaches otel_traces, as in production
    clickhouse.command(insert_spans(spans[:30], f"{database}.otel_traces"))
    assert (
        main(["traces", "--store", chdb_store, "--db", str(store.db), "--attribute", "team=service.name"])
        == 0
    )
    clickhouse.command(insert_spans(spans[30:], f"{database}.otel_traces"))
    clickhouse.command(insert_spans(spans[5:9], f"{database}.otel_traces"))  # a retry

    capsys.readouterr()
    reports = []
    for where in (["--db", str(duck)], ["--store", chdb_store, "--db", str(store.db)]):
        assert (
            main(["report", "spend", "--by", "provider,model,team", "--currency", "USD", "--json", *where])
            == 0
        )
        reports.append(json.loads(capsys.readouterr().out))
    receiver, otel_traces = reports
    assert otel_traces == receiver and len(receiver) == 3  # `quotascope report spend`, to the cent
    assert all(row["cost"] for row in receiver)

    catalog = load_catalog(Path(settings.get("catalog_dir")))
    selection = UsageFilter(datetime(2025, 1, 1), datetime(2026, 12, 31))
    for by in (("provider", "model"), ("team",)):
        expected = spend_report(duck, catalog, selection, by, "USD")
        got = spend_report(store, catalog, selection, by, "USD")
        assert [(r.keys, r.requests, r.cost) for r in got] == [(r.keys, r.requests, r.cost) for r in expected]
        assert sum(r.requests for r in got) == 60
    rejects = clickhouse.arrow(f"SELECT reason FROM {clickhouse.layout.database}.{REJECTS_TABLE} FINAL")
    assert rejects.column("reason").to_pylist() == [NO_USAGE_REASON] * 3  # the three calls without counts
    everything = clickhouse.arrow(f"SELECT toString(groupArray(tuple(*))) FROM {database}.usage FINAL")
    assert "a secret" not in everything.column(0)[0].as_py()


def test_traces_needs_a_clickhouse_store_with_the_exporters_table(
    chdb_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["traces", "--db", str(tmp_path / "q.duckdb")]) == 2
    assert "otel_traces lives in ClickHouse" in capsys.readouterr().err
    assert main(["traces", "--store", chdb_store, "--db", str(tmp_path / "q.duckdb")]) == 2
    assert "has no otel_traces table" in capsys.readouterr().err
    assert main(["traces", "--store", chdb_store, "--attribute", "user=enduser.id"]) == 2
    assert "salted hash" in capsys.readouterr().err
