"""The scheduler (`quotascope schedule`): probes, folder ingestion and catalog reloads run unattended.

config = load_schedule(Path("schedule.toml"))
runner = ScheduleRunner(config, db, catalog=CatalogSource(catalog_dir), ingest=log_ingest(salt))
runner.prepare()
runner.run(stop_event)           # until stop_event is set; every run recorded in `job_runs`
"""

from __future__ import annotations

from collectors.scheduler.config import (
    CatalogJob,
    Cron,
    Interval,
    Job,
    OtlpService,
    ProbeJob,
    ScheduleConfig,
    ScheduleConfigError,
    WatchJob,
    load_schedule,
    parse_schedule,
)
from collectors.scheduler.runner import CatalogSource, Ingest, IngestCounts, ScheduleRunner, log_ingest

__all__ = [
    "CatalogJob",
    "CatalogSource",
    "Cron",
    "Ingest",
    "IngestCounts",
    "Interval",
    "Job",
    "OtlpService",
    "ProbeJob",
    "ScheduleConfig",
    "ScheduleConfigError",
    "ScheduleRunner",
    "WatchJob",
    "load_schedule",
    "log_ingest",
    "parse_schedule",
]
