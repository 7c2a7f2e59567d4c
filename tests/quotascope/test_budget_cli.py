"""`quotascope budget` as a user runs it: usage in a real DuckDB file, alerts POSTed to a local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from quotascope.cli import main
from storage.store import Store
from tests.storage.usage_rows import insert_usage

AS_OF = "2026-11-11T00:00"


class Receiver:
    """A webhook endpoint on a loopback port: records each JSON body, answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []

        async def hook(request: Request) -> JSONResponse:
            self.received.append(await request.json())
            return JSONResponse({"ok": self.status < 400}, status_code=self.status)

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning", log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: self._server.run(sockets=[self._sock]), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the webhook receiver did not start"
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def db(store: Store) -> Path:
    """(On each store: the DuckDB file alone, and usage in chdb beside it, named by QUOTASCOPE_STORE.)"""
    """Ten days of 1M input tokens a day on DeepSeek-reasoner (2025-12 price: $0.28 per 1M) for team search,
    and the same on team support: $0.28 a day each."""
    path = store.db
    rows = [
        {
            "ts": datetime(2026, 11, 1, 12) + timedelta(days=i),
            "input_tokens": 1_000_000,
            "output_tokens": 0,
            "team": team,
        }
        for i in range(10)
        for team in ("search", "support")
    ]
    insert_usage(store, rows)
    return path


def budget(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> Any:
    assert main(["budget", *args, "--db", str(db), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_set_list_and_remove(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = budget(capsys, db, "set", "--scope", "total", "--amount", "100", "--currency", "usd")
    assert doc == {
        "budget_id": 1,
        "scope": "total",
        "month": None,
        "amount": {"amount": "100", "currency": "USD"},
        "webhook_url": None,
    }
    budget(
        capsys,
        db,
        "set",
        "--scope",
        "team=search",
        "--amount",
        "5",
        "--currency",
        "USD",
        "--month",
        "2026-11",
    )
    assert [b["scope"] for b in budget(capsys, db, "list")["budgets"]] == ["total", "team=search"]
    assert main(["budget", "list", "--db", str(db)]) == 0
    assert "team=search" in capsys.readouterr().out
    assert budget(capsys, db, "remove", "2") == {"removed": 2}
    assert main(["budget", "remove", "2", "--db", str(db)]) == 2
    assert capsys.readouterr().err.strip() == "quotascope: there is no budget 2; see `quotascope budget list`"


def test_status_forecasts_raises_alerts_once_and_posts_them(
    capsys: pytest.CaptureFixture[str], db: Path, receiver: Receiver
) -> None:
    budget(capsys, db, "set", "--scope", "total", "--amount", "5", "--currency", "USD")
    budget(
        capsys,
        db,
        "set",
        "--scope",
        "team=search",
        "--amount",
        "3",
        "--currency",
        "USD",
        "--webhook",
        receiver.url,
    )
    doc = budget(capsys, db, "status", "--as-of", AS_OF)
    total, search = doc["budgets"]
    # total: $0.56 a day for ten days = $5.60 of a $5 budget; 20 more days → $16.80
    assert total["spent"] == {"amount": "5.60", "currency": "USD"}
    assert total["forecast"]["amount"] == "16.80"
    assert total["exhausted_on"] == "2026-11-09"
    # search: $2.80 spent of $3 (93 %: the 80 % line), forecast $8.40: one alert, at 100 % by month end
    assert search["spent"]["amount"] == "2.80" and search["forecast"]["amount"] == "8.40"
    assert search["exhausted_on"] == "2026-11-11"
    assert [(a["threshold"], a["kind"]) for a in search["new_alerts"]] == [(1.0, "forecast")]
    assert {a["webhook"] for a in search["new_alerts"]} == {"delivered (HTTP 200)"}
    # the webhook got the budget's figures, nothing of the usage itself
    assert len(receiver.received) == 1
    assert receiver.received[0]["scope"] == "team=search" and receiver.received[0]["spent"] == "2.80"
    assert receiver.received[0]["threshold"] == 1.0 and receiver.received[0]["kind"] == "forecast"
    # a second look raises nothing new
    again = budget(capsys, db, "status", "--as-of", AS_OF)
    assert all(b["new_alerts"] == [] for b in again["budgets"]) and len(receiver.received) == 1
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT scope, kind, webhook_status FROM alerts ORDER BY alert_id").fetchall()
    assert ("team=search", "forecast", "delivered (HTTP 200)") in stored
    assert ("total", "spent", None) in stored  # no webhook on the total


def test_a_failing_webhook_never_fails_the_command(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    with Receiver(status=500) as broken:
        budget(
            capsys,
            db,
            "set",
            "--scope",
            "total",
            "--amount",
            "1",
            "--currency",
            "USD",
            "--webhook",
            broken.url,
        )
        assert main(["budget", "status", "--db", str(db), "--as-of", AS_OF]) == 0
        captured = capsys.readouterr()
        assert (
            "failed: HTTP 500" in captured.out
            and "quotascope: total: webhook failed: HTTP 500" in captured.err
        )
    # nobody listening at all
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    url = f"http://127.0.0.1:{port}/hook"
    budget(
        capsys, db, "set", "--scope", "team=support", "--amount", "1", "--currency", "USD", "--webhook", url
    )
    doc = budget(capsys, db, "status", "--as-of", AS_OF)
    support = next(b for b in doc["budgets"] if b["scope"] == "team=support")
    assert all(a["webhook"].startswith("failed:") for a in support["new_alerts"])


def test_status_text_and_empty_states(capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path) -> None:
    assert main(["budget", "status", "--db", str(tmp_path / "none.duckdb")]) == 0
    assert "No budgets for" in capsys.readouterr().out
    budget(capsys, db, "set", "--scope", "project=nobody", "--amount", "10", "--currency", "CNY")
    assert main(["budget", "status", "--db", str(db), "--as-of", AS_OF, "--month", "2026-11"]) == 0
    out = capsys.readouterr().out
    assert "Budgets for 2026-11 as of 2026-11-11 00:00 UTC" in out and "project=nobody" in out
    assert "fewer than 14 days of history" in out


def test_offpeak_advice(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    doc = budget(capsys, db, "offpeak", "--month", "2026-11")
    # deepseek-reasoner (2025-12 price) has no time-of-day window: nothing to save
    assert (
        doc["spend"] == {"amount": "5.60", "currency": "USD"} and doc["share"] == 0 and doc["by_period"] == []
    )


def test_mistakes_are_one_sentence(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    for args in (
        ["set", "--scope", "user=x", "--amount", "1", "--currency", "USD"],
        ["set", "--scope", "total", "--amount", "-1", "--currency", "USD"],
        ["set", "--scope", "total", "--amount", "1", "--currency", "dollars"],
        ["set", "--scope", "total", "--amount", "1", "--currency", "USD", "--month", "Nov"],
        ["set", "--scope", "total", "--amount", "1", "--currency", "USD", "--webhook", "mailto:x"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            code = main(["budget", *args, "--db", str(db)])
            raise SystemExit(code)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("quotascope: ") and err.count("\n") == 0, err
