"""The OTLP/HTTP receiver on a real socket: encodings, answers as the OTLP specification says, exactly once,
nothing accepted dropped, no content stored."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collectors.otlp import OtlpOptions, OtlpServer
from storage.db import HOLD_S, open_read
from storage.store import Store
from storage.usage_reader import open_usage
from tests.collectors.otlp_support import START_NS, llm_attributes, request_of

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def db(store: Store) -> Store:
    """On each store: spans' usage into the DuckDB file, and into chdb beside it."""
    return store


@pytest.fixture
def server(db: Path) -> Iterator[OtlpServer]:
    with OtlpServer(db, "test-salt", OtlpOptions(port=0, attribution={"team": "service.name"})) as running:
        yield running


def post(
    server: OtlpServer, body: bytes, headers: dict[str, str], path: str = "/v1/traces"
) -> httpx.Response:
    return httpx.post(server.endpoint + path, content=body, headers=headers, timeout=30)


def rows(db: Store, sql: str = "SELECT * FROM usage ORDER BY ts") -> list[dict[str, Any]]:
    if " usage" in sql:  # wherever the store keeps usage (read FINAL in ClickHouse)
        with open_usage(db) as usage:
            return usage.frame(sql).to_dicts()
    with open_read(db.db) as con:  # waits its turn: the receiver keeps the file between close batches
        result = con.execute(sql)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def partial(response: httpx.Response) -> tuple[int, str]:
    message = ExportTraceServiceResponse.FromString(response.content)
    return message.partial_success.rejected_spans, message.partial_success.error_message


def test_protobuf_spans_are_stored_and_other_spans_ignored(server: OtlpServer, db: Path) -> None:
    body = request_of(
        [llm_attributes(1), {"http.request.method": "GET"}, llm_attributes(2)]
    ).SerializeToString()
    response = post(server, body, PROTOBUF)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert partial(response) == (0, "")
    stored = rows(db)
    assert [(r["model"], r["provider"], r["team"]) for r in stored] == [
        ("gpt-4o-2024-08-06", "openai", "checkout")
    ] * 2
    assert [(r["input_tokens"], r["cached_input_tokens"], r["output_tokens"]) for r in stored] == [
        (1201, 1024, 300),
        (1202, 1024, 300),
    ]
    assert stored[0]["latency_ms"] == pytest.approx(900.0)
    assert stored[0]["ts"].isoformat() == "2025-12-06T05:46:40"
    (source,) = rows(db, "SELECT * FROM sources")
    assert source["format"] == "otlp" and source["path"] == f"otlp://{server.address}"
    assert (source["rows_read"], source["rows_stored"]) == (2, 2)


def test_an_exporter_retry_stores_nothing_new(server: OtlpServer, db: Path) -> None:
    body = request_of([llm_attributes(n) for n in range(5)]).SerializeToString()
    assert post(server, body, PROTOBUF).status_code == 200
    assert post(server, body, PROTOBUF).status_code == 200
    assert len(rows(db)) == 5
    (source,) = rows(db, "SELECT * FROM sources")
    assert (source["rows_read"], source["rows_stored"], source["rows_duplicate"]) == (10, 5, 5)


def otlp_json(ids: str) -> dict[str, Any]:
    """A request in OTLP's JSON encoding: hex (or base64) ids, 64-bit integers as strings, camelCase."""
    trace_id, span_id = bytes.fromhex("5b8efff798038103d269b633813fc60c"), bytes.fromhex("eee19b7ec3c1b174")
    encode = (lambda b: b.hex()) if ids == "hex" else (lambda b: base64.b64encode(b).decode())
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "search"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "my.instrumentation"},
                        "spans": [
                            {
                                "traceId": encode(trace_id),
                                "spanId": encode(span_id),
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": str(START_NS),
                                "endTimeUnixNano": str(START_NS + 2_000_000_000),
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.system", "value": {"stringValue": "deepseek"}},
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "deepseek-chat"},
                                    },
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "1234567"},
                                    },
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 12}},
                                ],
                                "status": {"code": 2},
                                "futureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }


@pytest.mark.parametrize("ids", ["hex", "base64"])
def test_json_with_hex_or_base64_ids_and_string_integers(server: OtlpServer, db: Path, ids: str) -> None:
    response = post(server, json.dumps(otlp_json(ids)).encode(), JSON)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    (row,) = rows(db)
    assert row["record_key"] == "otlp:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert (row["input_tokens"], row["output_tokens"], row["status"]) == (1234567, 12, "error")
    assert (row["provider"], row["team"], row["latency_ms"]) == ("deepseek", "search", 2000.0)


def test_gzip_bodies_and_limits(db: Path) -> None:
    options = OtlpOptions(port=0, max_body_bytes=200_000)
    with OtlpServer(db, "salt", options) as server:
        body = request_of([llm_attributes(n) for n in range(20)]).SerializeToString()
        gzipped = {**PROTOBUF, "Content-Encoding": "gzip"}
        assert post(server, gzip.compress(body), gzipped).status_code == 200
        assert len(rows(db)) == 20
        bomb = gzip.compress(b"\0" * 10_000_000)  # 10 kB that inflate to 10 MB
        assert len(bomb) < 200_000
        assert post(server, bomb, gzipped).status_code == 413
        assert post(server, b"\0" * 300_000, PROTOBUF).status_code == 413
        assert post(server, b"not gzip at all", gzipped).status_code == 400
        assert post(server, body, {**PROTOBUF, "Content-Encoding": "br"}).status_code == 415
        assert post(server, body, {"Content-Type": "text/plain"}).status_code == 415


def test_undecodable_bodies_get_400_without_quoting_them(server: OtlpServer, db: Path) -> None:
    secret = "my card number is 4111 1111"
    broken = otlp_json("hex")
    span = broken["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"].append({"key": "input.value", "value": {"intValue": secret}})
    for body, headers in (
        (b"\x0a\xff\xff\xff\xff\x0f" + secret.encode(), PROTOBUF),
        (json.dumps(broken).encode(), JSON),
        (b"{" + secret.encode(), JSON),
        (b"[1, 2]", JSON),
        (b"[" * 100_000 + b"]" * 100_000, JSON),
        (b'{"resourceSpans": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", JSON),
        (b"\x0a" * 200_000, PROTOBUF),
    ):
        response = post(server, body, headers)
        assert response.status_code == 400
        assert secret not in response.text and "4111" not in response.text
    bad_id = otlp_json("hex")
    bad_id["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "zz"
    assert post(server, json.dumps(bad_id).encode(), JSON).status_code == 400
    assert (db.clickhouse is None and not db.db.exists()) or rows(db) == []


def test_refused_spans_are_counted_in_partial_success_with_reasons(server: OtlpServer, db: Path) -> None:
    spans = [
        llm_attributes(1),
        llm_attributes(2, **{"gen_ai.usage.input_tokens": -5}),
        {k: v for k, v in llm_attributes(3).items() if "model" not in k},
        llm_attributes(4, **{"gen_ai.usage.output_tokens": 2.5}),
        llm_attributes(5, **{"gen_ai.usage.cache_read.input_tokens": 5000}),  # more cached than input
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
    ]
    response = post(server, request_of(spans).SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    rejected, message = partial(response)
    assert rejected == 5
    assert "no model name" in message and "negative" in message and "without token counts" in message
    assert len(rows(db)) == 1
    refused = rows(db, "SELECT * FROM rejects ORDER BY line_no")
    assert [r["line_no"] for r in refused] == [2, 3, 4, 5, 6]  # the span's place in what was received
    assert refused[0]["reason"].startswith("input token count is negative")
    assert refused[1]["reason"] == "no model name"
    assert refused[4]["reason"].startswith("an LLM span without token counts")
    (source,) = rows(db, "SELECT * FROM sources")
    read, stored, duplicates, refused = (
        source["rows_read"],
        source["rows_stored"],
        source["rows_duplicate"],
        source["rows_rejected"],
    )
    assert (read, stored, duplicates, refused) == (6, 1, 0, 5)


def test_a_count_no_column_can_hold_is_refused(server: OtlpServer, db: Path) -> None:
    spans = [llm_attributes(1, **{"gen_ai.usage.input_tokens": 2**62}), llm_attributes(2)]
    response = post(server, request_of(spans).SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    assert partial(response)[0] == 1
    assert [r["input_tokens"] for r in rows(db)] == [1202]


def test_bearer_token(db: Path) -> None:
    with OtlpServer(db, "salt", OtlpOptions(port=0, token="s3cr3t-token")) as server:
        body = request_of([llm_attributes(1)]).SerializeToString()
        assert post(server, body, PROTOBUF).status_code == 401
        assert post(server, body, {**PROTOBUF, "Authorization": "Bearer wrong"}).status_code == 401
        assert (
            post(server, b"", {**PROTOBUF, "Authorization": "Basic s3cr3t-token"}, "/v1/metrics").status_code
            == 401
        )
        ok = post(server, body, {**PROTOBUF, "Authorization": "Bearer s3cr3t-token"})
        assert ok.status_code == 200
        assert "s3cr3t" not in ok.text


def test_metrics_and_logs_are_answered_200(server: OtlpServer) -> None:
    assert post(server, b"\x0a\x00", PROTOBUF, "/v1/metrics").status_code == 200
    assert post(server, b"{}", JSON, "/v1/logs").json() == {}


class Held:
    """A lock held until the end of a `with` (released even when an assertion fails, so the writer and
    the server can stop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held = False

    def __enter__(self) -> Held:
        self.lock.acquire()
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_busy_writer_answers_429_with_retry_after_and_keeps_what_it_accepted(db: Path) -> None:
    held = Held()  # the writer cannot store, as if another writer had the database
    options = OtlpOptions(port=0, max_pending_spans=3, linger_s=0.0)
    with OtlpServer(db, "salt", options, lock=held.lock) as server, held:
        first_body = request_of([llm_attributes(n) for n in range(3)]).SerializeToString()
        first: list[httpx.Response] = []
        sender = threading.Thread(target=lambda: first.append(post(server, first_body, PROTOBUF)))
        sender.start()
        while server.writer.pending_spans < 3:
            threading.Event().wait(0.01)
        busy = post(server, request_of([llm_attributes(9)]).SerializeToString(), PROTOBUF)
        assert busy.status_code == 429
        assert int(busy.headers["retry-after"]) >= 1
        assert first == []  # not acknowledged before it is committed
        held.release()
        sender.join(timeout=30)
        assert first[0].status_code == 200
    assert len(rows(db)) == 3


def test_an_unwritable_database_answers_503_and_acknowledges_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with OtlpServer(folder, "salt", OtlpOptions(port=0, linger_s=0.0)) as server:
        response = post(server, request_of([llm_attributes(1)]).SerializeToString(), PROTOBUF)
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1


def test_content_never_reaches_the_database_or_the_log(
    server: OtlpServer, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "PATIENT-RECORD-7731"
    content = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.model_name": "gpt-4o",
        "llm.token_count.prompt": 12,
        "llm.token_count.completion": 3,
        "input.value": f"summarise {secret}",
        "output.value": f"{secret} is fine",
        "llm.input_messages.0.message.content": secret,
        "gen_ai.prompt.0.content": secret,
        "gen_ai.completion.0.content": secret,
        "gen_ai.input.messages": json.dumps([{"content": secret}]),
    }
    bad = dict(content, **{"llm.token_count.prompt": -1})
    with caplog.at_level(logging.DEBUG):
        response = post(server, request_of([content, bad]).SerializeToString(), PROTOBUF)
    assert response.status_code == 200 and partial(response)[0] == 1
    assert secret not in response.text
    server.stop()
    assert len(rows(db)) == 1
    for path in db.db.parent.iterdir():
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text


def test_attribute_refuses_content_and_unknown_columns() -> None:
    from collectors.otlp import parse_attribution
    from models.errors import InputError

    assert parse_attribution(["team=service.name", "project = app.project"]) == {
        "team": "service.name",
        "project": "app.project",
    }
    for bad in ("team=input.value", "user=gen_ai.prompt.0.content", "colour=service.name", "team"):
        with pytest.raises(InputError):
            parse_attribution([bad])


def test_span_ids_json_roundtrip_matches_protobuf(server: OtlpServer, db: Path) -> None:
    """The same span sent once as protobuf and once as JSON is one record (same key)."""
    ids = [(os.urandom(16), os.urandom(8))]
    request = request_of([llm_attributes(1)], ids=ids)
    assert post(server, request.SerializeToString(), PROTOBUF).status_code == 200
    document = json_format.MessageToDict(request)
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["traceId"], span["spanId"] = ids[0][0].hex(), ids[0][1].hex()
    assert post(server, json.dumps(document).encode(), JSON).status_code == 200
    assert len(rows(db)) == 1


def test_readers_take_their_turn_while_spans_keep_arriving(server: OtlpServer, db: Path) -> None:
    """The receiver keeps the database across back-to-back batches, yet a report's read-only queries get
    the file within a bound (a hold, a batch and the reader's next try; `storage.db.let_readers_in`), read
    after read, for as long as spans keep arriving: the sender stops only once the reader is done."""
    assert post(server, request_of([llm_attributes(0)]).SerializeToString(), PROTOBUF).status_code == 200
    answers: list[int] = []
    reading = threading.Event()
    done = threading.Event()

    def send() -> None:
        r = 0
        while not done.is_set() and r < 400:  # at most about 80,000 spans, should the reader never get in
            body = request_of([llm_attributes(r * 200 + i + 1) for i in range(200)]).SerializeToString()
            answers.append(post(server, body, PROTOBUF).status_code)
            r += 1
            if r == 3:
                reading.set()  # the receiver is storing back to back by now

    sender = threading.Thread(target=send)
    sender.start()
    assert reading.wait(60)
    seen: list[int] = []
    waits: list[float] = []
    try:
        for _ in range(5):
            asked = time.monotonic()
            with open_usage(db) as usage:
                waits.append(time.monotonic() - asked)
                seen.append(usage.rows("SELECT count(*) FROM usage")[0][0])
            time.sleep(0.1)  # a dashboard's queries, not a loop holding the file
    finally:
        done.set()
        sender.join()
    assert seen[-1] > seen[0], seen  # spans were stored between the first read and the last
    assert max(waits) < HOLD_S + 4.0, waits  # a hold, a batch (a fraction of a second) and a try, with room
    assert answers == [200] * len(answers) and seen == sorted(seen)
    assert rows(db, "SELECT count(*) AS n FROM usage")[0]["n"] == 1 + 200 * len(answers)


def test_requests_beyond_the_in_flight_limit_wait_at_the_exporter(db: Path) -> None:
    """Admission comes before reading: a flood is answered 429 at once rather than queued past the
    exporters' timeouts (their default is 10 s)."""
    held = Held()
    options = OtlpOptions(port=0, max_inflight_requests=1, linger_s=0.0)
    with OtlpServer(db, "salt", options, lock=held.lock) as server, held:
        first: list[httpx.Response] = []
        body = request_of([llm_attributes(1)]).SerializeToString()
        sender = threading.Thread(target=lambda: first.append(post(server, body, PROTOBUF)))
        sender.start()
        while server.receiver.inflight < 1:
            time.sleep(0.01)
        started = time.perf_counter()
        refused = post(server, request_of([llm_attributes(2)]).SerializeToString(), PROTOBUF)
        assert refused.status_code == 429 and time.perf_counter() - started < 5
        assert int(refused.headers["retry-after"]) >= 1
        held.release()
        sender.join(timeout=30)
        assert first[0].status_code == 200
        assert server.receiver.stats.refused_busy == 1
    assert len(rows(db)) == 1


def test_a_call_logged_and_traced_is_one_request(server: OtlpServer, db: Path, tmp_path: Path) -> None:
    """The response id keys a span as the ingest keys the logged response: counted once, whichever came
    first; so are two instrumentations' spans of one call."""
    from collectors.ingest import ingest_paths

    created = START_NS // 1_000_000_000
    response = {
        "id": f"chatcmpl-{7:024d}",  # as llm_attributes(7) names it
        "object": "chat.completion",
        "created": created,
        "model": "gpt-4o-2024-08-06",
        "usage": {"prompt_tokens": 1207, "completion_tokens": 300, "total_tokens": 1507},
    }
    log = tmp_path / "responses.jsonl"
    log.write_text(json.dumps(response) + "\n")
    (result,) = ingest_paths(db, [log], salt="test-salt")
    assert result.counts.stored == 1
    twice = request_of([llm_attributes(7), llm_attributes(7), llm_attributes(8)])  # 7: two instrumentations
    assert post(server, twice.SerializeToString(), PROTOBUF).status_code == 200
    keys = [r["record_key"] for r in rows(db, "SELECT record_key FROM usage ORDER BY record_key")]
    assert keys == [f"chatcmpl-{7:024d}", f"chatcmpl-{8:024d}"]


def test_the_future_is_judged_by_each_batchs_clock(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver runs for weeks: a span is in the future by the time its batch is checked, not by the time
    the receiver started."""
    import storage.normalise

    with OtlpServer(db, "salt", OtlpOptions(port=0, linger_s=0.0)) as server:
        later = datetime.now(UTC) + timedelta(days=10)

        class Later(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Later:
                return cls.fromtimestamp(later.timestamp(), tz)

        monkeypatch.setattr(storage.normalise, "datetime", Later)  # ten days after the receiver started
        start_ns = int((later - timedelta(hours=1)).timestamp()) * 1_000_000_000
        body = request_of([llm_attributes(1)], start_ns=start_ns).SerializeToString()
        answer = post(server, body, PROTOBUF)
        assert answer.status_code == 200
        assert b"future" not in answer.content
    assert len(rows(db)) == 1
