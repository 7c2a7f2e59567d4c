"""`[[pull]]` jobs: parsed from the schedule config, run by the real scheduler against the emulator's admin
reports, recorded in `job_runs`; the admin key stays out of every record."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from collectors.emulator import Billing, EmulatorConfig, EmulatorServer
from collectors.scheduler import CatalogSource, ScheduleRunner, load_schedule
from collectors.scheduler.config import Interval, PullJob, ScheduleConfigError
from models.errors import InputError
from quotascope.webhooks import gap_webhook
from storage.catalog import load_catalog
from tests.collectors.pull_support import ADMIN_KEY, send_traffic
from tests.quotascope.test_budget_cli import Receiver

ROOT = Path(__file__).resolve().parents[2]
CATALOG = CatalogSource(ROOT / "data" / "catalog")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedule.toml"
    path.write_text(text)
    return path


def test_pull_tables_parse_with_defaults(tmp_path: Path) -> None:
    config = load_schedule(
        write(
            tmp_path,
            '[[pull]]\nkind = "openai-costs"\n\n'
            '[[pull]]\nkind = "anthropic-usage"\nadmin_key_env = "MY_KEY"\n'
            'base_url = "http://127.0.0.1:9/v1"\ncron = "15 * * * *"\n',
        )
    )
    first, second = config.pulls
    assert first == PullJob("pull:openai-costs", Interval(6 * 3600.0), "openai-costs", "OPENAI_ADMIN_KEY")
    assert first.alert is True
    assert (second.id, second.admin_key_env, second.base_url) == (
        "pull:anthropic-usage",
        "MY_KEY",
        "http://127.0.0.1:9/v1",
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('kind = "openai-bills"', "unknown pull 'openai-bills'"),
        ('kind = "openai-costs"\nbase_url = "ftp://x"', "must be an http:// or https:// URL"),
        ('kind = "openai-costs"\nadmin_key = "sk-in-a-file"', "unknown field"),
    ],
)
def test_pull_table_mistakes_name_the_field(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ScheduleConfigError, match=message):
        load_schedule(write(tmp_path, f"[[pull]]\n{table}\n"))


def test_an_unset_key_variable_stops_the_start(tmp_path: Path) -> None:
    config = load_schedule(
        write(tmp_path, '[[pull]]\nkind = "openai-costs"\nadmin_key_env = "NOT_SET_HERE"\n')
    )
    runner = ScheduleRunner(config, tmp_path / "q.duckdb", catalog=CATALOG, salt="s")
    with pytest.raises(InputError, match="NOT_SET_HERE is not set"):
        runner.prepare()


@pytest.mark.slow
def test_pull_jobs_run_and_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_ADMIN_KEY", ADMIN_KEY)
    catalog = load_catalog(ROOT / "data" / "catalog", [])
    config = EmulatorConfig(model="o1", ttft_ms=0, tokens_per_s=20_000, output_tokens=8)
    with EmulatorServer(config, billing=Billing(catalog, busy_answers=1)) as server:
        send_traffic(server, tmp_path / "app.jsonl", 5, "openai")
        schedule = "".join(
            f'[[pull]]\nkind = "{kind}"\nadmin_key_env = "SCHED_ADMIN_KEY"\nbase_url = "{url}"\n'
            for kind, url in (
                ("openai-usage", server.base_url),
                ("openai-costs", server.base_url),
                ("anthropic-costs", server.base_url + "/nowhere"),  # 404: not retried
            )
        )
        db = tmp_path / "q.duckdb"
        with Receiver() as receiver:
            runner = ScheduleRunner(
                load_schedule(write(tmp_path, schedule)),
                db,
                catalog=CATALOG,
                salt="test-salt",
                deliver_gap_alerts=gap_webhook(receiver.url),
            )
            runner.prepare()
            runs = {run.job_id: run for run in runner.run_once(threading.Event())}
    usage, costs, refused = runs["pull:openai-usage"], runs["pull:openai-costs"], runs["pull:anthropic-costs"]
    assert (usage.outcome, costs.outcome) == ("ok", "ok")
    assert usage.summary["stored"] == 1 and costs.summary["stored"] == 3
    assert usage.summary["retries"] + costs.summary["retries"] == 1
    assert refused.outcome == "error" and "refused the request: HTTP 404" in (refused.error or "")
    # nothing was logged, so the whole bill is a gap: the cost pull raised today's alert and sent it
    assert costs.summary["gap_alerts"] == 1 and "gap_alerts" not in usage.summary
    (posted,) = receiver.received
    assert posted["kind"] == "billing_gap" and posted["provider"] == "openai"
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM provider_costs").fetchone() == (3,)
        assert con.execute("SELECT webhook_status FROM gap_alerts").fetchall() == [("delivered (HTTP 200)",)]
        recorded = con.execute("SELECT kind, outcome, coalesce(error, ''), summary FROM job_runs").fetchall()
    assert sorted(r[0] for r in recorded) == ["pull", "pull", "pull"]
    assert not any(ADMIN_KEY in " ".join(map(str, r)) for r in recorded)
    assert ADMIN_KEY.encode() not in db.read_bytes()
