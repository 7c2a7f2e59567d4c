"""The schedule config: what a good file means, and one sentence naming file, job and field for a bad one."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from collectors.scheduler import (
    CatalogJob,
    Cron,
    Interval,
    ProbeJob,
    ScheduleConfigError,
    WatchJob,
    load_schedule,
)
from collectors.scheduler.config import weekday_names

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "schedule.example.toml"

ENDPOINTS = """
[[endpoint]]
name = "emulator"
base_url = "http://127.0.0.1:8400/v1"
model = "quotascope-emulator"

[[endpoint]]
name = "ark"
base_url = "https://ark.example.com/api/v3"
model = "deepseek-r1"
api_key_env = "ARK_API_KEY"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "endpoints.toml").write_text(ENDPOINTS)
    (tmp_path / "incoming").mkdir()
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "schedule.toml"
    path.write_text('[scheduler]\nendpoints = "endpoints.toml"\n' + text)
    return path


def test_the_shipped_example_is_valid(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "schedule.toml")
    (tmp_path / "incoming").mkdir()
    (tmp_path / "endpoints.toml").write_text(ENDPOINTS)
    config = load_schedule(tmp_path / "schedule.toml", default_endpoints=tmp_path / "endpoints.toml")
    kinds = [job.kind for job in config.jobs]
    assert kinds == ["probe", "probe", "watch", "catalog"]
    light, sweep = config.probes
    assert light.id == "probe:emulator" and light.trigger == Interval(30.0)
    assert light.plan.profile == "sequential" and light.plan.requests == 4 and light.plan.max_duration_s == 60
    assert sweep.plan.profile == "sweep" and sweep.plan.concurrency == (1, 4) and sweep.plan.canary
    assert isinstance(sweep.trigger, Cron) and not sweep.run_on_start
    (watch,) = config.watches
    assert watch.folder == tmp_path / "incoming" and watch.tags == {"team": "platform"}
    assert config.jobs[-1] == CatalogJob("catalog", Interval(600.0))
    assert (config.misfire_grace_s, config.shutdown_grace_s, config.workers) == (60.0, 15.0, 4)


def test_jobs_read_their_fields(folder: Path) -> None:
    config = load_schedule(
        write(
            folder,
            """
[[probe]]
id = "ark-fast"
endpoint = "ark"
interval = { minutes = 1, seconds = 30 }
rate_per_s = 2.5
poisson = true
input_tokens = [100, 1000]

[[watch]]
folder = "incoming"
format = "anthropic"
settle_s = 0
cron = "*/5 9-17 * * 1-5"
""",
        )
    )
    probe, watch = config.jobs
    assert isinstance(probe, ProbeJob) and isinstance(watch, WatchJob)
    assert probe.id == "ark-fast" and probe.endpoint.api_key_env == "ARK_API_KEY"
    assert probe.trigger == Interval(90.0) and probe.trigger.describe() == "every 90 s"
    assert probe.plan.profile == "poisson" and probe.plan.rate_per_s == 2.5
    assert probe.plan.input_tokens == (100, 1000)
    assert probe.plan.warmup_requests == 1 and probe.plan.ramp_s is None  # the CLI's defaults
    assert watch.id == "watch:incoming" and watch.format == "anthropic" and watch.settle_s == 0
    assert isinstance(watch.trigger, Cron) and watch.trigger.day_of_week == "mon,tue,wed,thu,fri"
    assert watch.trigger.describe() == "cron '*/5 9-17 * * 1-5'"


def test_a_probe_may_ask_for_a_burst_and_no_warm_up(folder: Path) -> None:
    text = (
        "[[probe]]\nendpoint = 'ark'\ninterval = { seconds = 5 }\nconcurrency = 8\nramp_s = 0\nwarmup = 0\n"
    )
    (probe,) = load_schedule(write(folder, text)).jobs
    assert isinstance(probe, ProbeJob)
    assert probe.plan.ramp_s == 0 and probe.plan.warmup_requests == 0


@pytest.mark.parametrize(
    ("text", "job", "field", "words"),
    [
        ("[[probe]]\nendpoint = 'emulator'\n", "probe:emulator", "interval", "needs a schedule"),
        (
            "[[probe]]\nendpoint = 'nope'\ninterval = { seconds = 5 }\n",
            "probe:nope",
            "endpoint",
            "known: ark",
        ),
        ("[[probe]]\ninterval = { seconds = 5 }\n", "probe:probe[0]", "endpoint", "required"),
        (
            "[[probe]]\nendpoint = 'ark'\ninterval = { seconds = 5 }\nrequest = 3\n",
            "probe:ark",
            "request",
            "unknown",
        ),
        (
            "[[probe]]\nendpoint = 'ark'\ninterval = { seconds = 0 }\n",
            "probe:ark",
            "interval",
            "longer than zero",
        ),
        (
            "[[probe]]\nendpoint = 'ark'\ninterval = { fortnights = 1 }\n",
            "probe:ark",
            "interval",
            "unknown unit",
        ),
        ("[[probe]]\nendpoint = 'ark'\ninterval = 30\n", "probe:ark", "interval", "{ seconds = 30 }"),
        ("[[probe]]\nendpoint = 'ark'\ncron = '0 * * *'\n", "probe:ark", "cron", "5 fields"),
        ("[[probe]]\nendpoint = 'ark'\ncron = '61 * * * *'\n", "probe:ark", "cron", "not a valid crontab"),
        ("[[probe]]\nendpoint = 'ark'\ncron = '0 9 1 * 1'\n", "probe:ark", "cron", "not both"),
        (
            "[[probe]]\nendpoint = 'ark'\ncron = '0 * * * *'\ninterval = { seconds = 5 }\n",
            "probe:ark",
            "cron",
            "not both",
        ),
        (
            "[[probe]]\nendpoint = 'ark'\ncron = '0 * * * *'\nrequests = 0\n",
            "probe:ark",
            "requests",
            "at least 1",
        ),
        (
            "[[probe]]\nendpoint = 'ark'\ncron = '0 * * * *'\ncanary = 'yes'\n",
            "probe:ark",
            "canary",
            "true or false",
        ),
        (
            "[[probe]]\nendpoint = 'ark'\ncron = '0 * * * *'\npoisson = true\n",
            "probe:ark",
            "poisson",
            "rate_per_s",
        ),
        (
            "[[probe]]\nendpoint = 'ark'\ncron = '0 * * * *'\ninput_tokens = 8\n",
            "probe:ark",
            "input_tokens",
            "32",
        ),
        ("[[watch]]\nfolder = 'missing'\n", "watch:missing", "folder", "does not exist"),
        ("[[watch]]\nfolder = 'incoming'\nformat = 'xml'\n", "watch:incoming", "format", "unknown format"),
        (
            "[[watch]]\nfolder = 'incoming'\ntags = { team = 1 }\n",
            "watch:incoming",
            "tags",
            "table of strings",
        ),
        ("[[watch]]\nfolder = 'incoming'\nid = 'has space'\n", "has space", "id", "no spaces"),
        ("[catalog]\ninterval = { minutes = -1 }\n", "catalog", "interval", "at least 0"),
    ],
)
def test_a_mistake_names_file_job_and_field(
    folder: Path, text: str, job: str, field: str, words: str
) -> None:
    path = write(folder, text)
    with pytest.raises(ScheduleConfigError) as caught:
        load_schedule(path)
    message = str(caught.value)
    assert message.startswith(f"in {path}, job {job!r}, field {field!r}: ")
    assert words in message
    assert "\n" not in message and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[[probes]]\n", "probes", "unknown top-level key"),
        ("[scheduler]\ntimezone = 'Mars/Olympus'\n", "timezone", "unknown time zone"),
        ("[scheduler]\nworkers = 0\n", "workers", "at least 1"),
        ("[[catalog]]\n", "catalog", "not an array"),
    ],
)
def test_settings_mistakes_name_the_field(folder: Path, text: str, field: str, words: str) -> None:
    path = folder / "schedule.toml"
    path.write_text(text + "\n[[watch]]\nfolder = 'incoming'\n")
    with pytest.raises(ScheduleConfigError, match=rf"^in {path}, field '{field}': .*{words}"):
        load_schedule(path)


def test_whole_file_mistakes(folder: Path) -> None:
    with pytest.raises(ScheduleConfigError, match=r"nope\.toml: no such file"):
        load_schedule(folder / "nope.toml")
    bad = folder / "bad.toml"
    bad.write_text("[[probe]\n")
    with pytest.raises(ScheduleConfigError, match=r"bad\.toml: is not valid TOML"):
        load_schedule(bad)
    empty = folder / "empty.toml"
    empty.write_text("[scheduler]\nworkers = 2\n")
    with pytest.raises(ScheduleConfigError, match=r"empty\.toml: has no jobs"):
        load_schedule(empty)
    twice = write(folder, "[[watch]]\nfolder = 'incoming'\n[[watch]]\nfolder = 'incoming'\n")
    with pytest.raises(ScheduleConfigError, match=r"job 'watch:incoming', field 'id': is used by two jobs"):
        load_schedule(twice)


def test_probes_need_an_endpoints_file(folder: Path) -> None:
    path = folder / "schedule.toml"
    path.write_text("[[probe]]\nendpoint = 'ark'\ncron = '0 * * * *'\n")
    with pytest.raises(ScheduleConfigError, match="probes need an endpoints file"):
        load_schedule(path, default_endpoints=None)
    config = load_schedule(path, default_endpoints=folder / "endpoints.toml")
    assert config.probes[0].endpoint.name == "ark"


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("0,6", "sat,sun"),
        ("5-7", "fri,sat,sun"),
        ("*/2", "tue,thu,sat,sun"),
        ("mon-wed", "mon,tue,wed"),
        ("sat-sun", "sat,sun"),
        ("*", "*"),
    ],
)
def test_weekdays_keep_their_crontab_meaning(field: str, names: str) -> None:
    assert weekday_names(field) == names


def test_a_weekday_cron_fires_on_the_crontab_day() -> None:
    """`0 9 * * 1` is Monday 09:00 in crontab; APScheduler 3's own reading would be Tuesday (its #286)."""
    sunday = datetime(2026, 11, 22, 12, 0, tzinfo=ZoneInfo("UTC"))
    ours = CronTrigger(minute="0", hour="9", day_of_week=weekday_names("1"), timezone="UTC")
    fired = ours.get_next_fire_time(None, sunday)
    assert fired is not None and fired.strftime("%A %H:%M") == "Monday 09:00"
    theirs = CronTrigger.from_crontab("0 9 * * 1", timezone="UTC").get_next_fire_time(None, sunday)
    assert theirs is not None and theirs.strftime("%A") == "Tuesday"


@pytest.mark.parametrize("field", ["8", "fri-mon", "1-5/0", "funday"])
def test_bad_weekdays_are_refused(field: str) -> None:
    with pytest.raises(ValueError):
        weekday_names(field)
