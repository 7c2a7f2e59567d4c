"""The schedule config: which jobs run, when, and with what, from one TOML file.

    [scheduler]
    endpoints = "endpoints.toml"       # relative to this file; default: the endpoints_file setting
    timezone = "UTC"                   # cron expressions are read in this zone
    misfire_grace_s = 60               # a run that could not start within this of its time is skipped
    shutdown_grace_s = 15              # on Ctrl-C/SIGTERM running jobs get this long, then probes stop
    workers = 4                        # jobs that can run at the same time

    [[probe]]
    endpoint = "ark-r1"                # a name from the endpoints file
    interval = { minutes = 15 }        # or: cron = "*/15 * * * *"
    requests = 5
    concurrency = 1                    # a list sweeps: [1, 4, 16]
    canary = true

    [[watch]]
    folder = "logs/incoming"           # relative to this file
    interval = { seconds = 30 }

    [[pull]]
    kind = "openai-costs"              # openai-usage, openai-costs, anthropic-usage, anthropic-costs
    admin_key_env = "OPENAI_ADMIN_KEY" # default: OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY by kind
    base_url = "https://api.openai.com/v1"  # optional: the provider's by default
    interval = { hours = 6 }           # the default; each run pulls from the last day held to today
    alert = true                       # costs: reconcile the days pulled, raise billing-gap alerts

    [catalog]
    interval = { minutes = 10 }

    [otlp]                             # the OTLP/HTTP receiver, running beside the jobs
    host = "127.0.0.1"
    port = 4318
    token_env = "OTLP_TOKEN"           # optional: require `Authorization: Bearer` with this variable's value
    attributes = { team = "service.name" }
    spool = "~/.local/state/quotascope/otlp-spool"  # optional: acknowledge once spooled, commit after

Every mistake is an `InputError` naming the file, the job and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collectors.ingest.formats import FORMATS
from collectors.probe.endpoints import Endpoint, load_endpoints
from collectors.pull.apis import KINDS as PULL_KINDS
from models.errors import InputError
from models.genai_spans import parse_attribution
from models.probe import DEFAULT_WARMUP_REQUESTS, LoadPlan

INGEST_FORMATS = ("auto", *FORMATS)
INTERVAL_UNITS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 and 7 are Sunday

_SCHEDULER_FIELDS = ("endpoints", "timezone", "misfire_grace_s", "shutdown_grace_s", "workers")
_COMMON_FIELDS = ("id", "interval", "cron", "run_on_start")
_PROBE_FIELDS = (
    *_COMMON_FIELDS,
    "endpoint",
    "requests",
    "concurrency",
    "rate_per_s",
    "poisson",
    "input_tokens",
    "max_tokens",
    "canary",
    "max_duration_s",
    "max_429_strikes",
    "max_retry_wait_s",
    "seed",
    "ramp_s",
    "warmup",
)
_WATCH_FIELDS = (*_COMMON_FIELDS, "folder", "format", "tags", "settle_s", "incomplete_line_s")
_CATALOG_FIELDS = _COMMON_FIELDS
_PULL_FIELDS = (*_COMMON_FIELDS, "kind", "admin_key_env", "base_url", "alert")
_OTLP_FIELDS = ("host", "port", "token_env", "attributes", "max_body_bytes", "spool")


class ScheduleConfigError(InputError):
    """A schedule config is malformed; the message names the file, the job and the field."""

    def __init__(self, message: str, *, origin: str = "", job: str = "", field: str = "") -> None:
        where = ", ".join(
            part
            for part in (origin and f"in {origin}", job and f"job {job!r}", field and f"field {field!r}")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Interval:
    seconds: float

    def describe(self) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if self.seconds >= size and self.seconds % size == 0:
                return f"every {self.seconds / size:g} {unit}"
        return f"every {self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class Cron:
    """A crontab expression, with the day of week already in APScheduler's names (see `weekday_names`)."""

    expression: str
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str

    def describe(self) -> str:
        return f"cron {self.expression!r}"


Trigger = Interval | Cron


@dataclass(frozen=True, slots=True)
class ProbeJob:
    id: str
    trigger: Trigger
    endpoint: Endpoint
    plan: LoadPlan
    run_on_start: bool = True
    kind: str = "probe"


@dataclass(frozen=True, slots=True)
class WatchJob:
    id: str
    trigger: Trigger
    folder: Path
    format: str = "auto"
    tags: Mapping[str, str] = field(default_factory=dict)
    settle_s: float = 2.0  # a file must be unchanged this long before it is read
    incomplete_line_s: float = 60.0  # ...and end with a newline, unless unchanged this long
    run_on_start: bool = True
    kind: str = "watch"


@dataclass(frozen=True, slots=True)
class CatalogJob:
    id: str
    trigger: Trigger
    run_on_start: bool = True
    kind: str = "catalog"


@dataclass(frozen=True, slots=True)
class PullJob:
    """`quotascope pull KIND` on a schedule; the key is named by a variable read when the scheduler starts."""

    id: str
    trigger: Trigger
    pull_kind: str
    admin_key_env: str
    base_url: str | None = None
    run_on_start: bool = True
    alert: bool = True  # after a cost pull: reconcile the days pulled and raise billing-gap alerts
    kind: str = "pull"


Job = ProbeJob | WatchJob | CatalogJob | PullJob


@dataclass(frozen=True, slots=True)
class OtlpService:
    """The OTLP receiver, run for as long as the schedule runs (not a job: it has no runs)."""

    host: str = "127.0.0.1"
    port: int = 4318
    token_env: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # column -> span or resource attribute
    max_body_bytes: int = 16 << 20
    spool: Path | None = None  # acknowledge once spooled here, commit after (`collectors.otlp.spool`)


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    origin: str
    jobs: tuple[Job, ...]
    timezone: str = "UTC"
    misfire_grace_s: int = 60  # whole seconds (APScheduler's misfire_grace_time)
    shutdown_grace_s: float = 15.0
    workers: int = 4
    endpoints_file: Path | None = None
    otlp: OtlpService | None = None

    @property
    def probes(self) -> tuple[ProbeJob, ...]:
        return tuple(j for j in self.jobs if isinstance(j, ProbeJob))

    @property
    def watches(self) -> tuple[WatchJob, ...]:
        return tuple(j for j in self.jobs if isinstance(j, WatchJob))

    @property
    def pulls(self) -> tuple[PullJob, ...]:
        return tuple(j for j in self.jobs if isinstance(j, PullJob))


# --------------------------------------------------------------------------------------------- parsing


class _Table:
    """One TOML table being read, so every complaint names where it is."""

    def __init__(self, raw: Any, origin: str, job: str, allowed: tuple[str, ...], label: str) -> None:
        self.origin, self.job = origin, job
        if not isinstance(raw, Mapping):
            raise ScheduleConfigError("must be a table", origin=origin, field=label)
        self.raw = raw
        extra = sorted(set(raw) - set(allowed))
        if extra:
            self.fail(f"unknown field (allowed: {', '.join(allowed)})", extra[0])

    def fail(self, message: str, name: str) -> NoReturn:
        raise ScheduleConfigError(message, origin=self.origin, job=self.job, field=name)

    def number(self, name: str, default: float | None, *, minimum: float = 0.0, strict: bool = True) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"must be a number, got {value!r}", name)
        if value < minimum or (strict and value == minimum):
            self.fail(f"must be {'above' if strict else 'at least'} {minimum:g}, got {value!r}", name)
        return float(value)

    def optional_number(self, name: str) -> float | None:
        return None if name not in self.raw else self.number(name, None)

    def whole(self, name: str, default: int, minimum: int = 1) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"must be a whole number of at least {minimum}, got {value!r}", name)
        return int(value)

    def wholes(self, name: str, default: tuple[int, ...], minimum: int = 1) -> tuple[int, ...]:
        value = self.raw.get(name, default)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
            self.fail(f"must be a whole number of at least {minimum}, or a list of them; got {value!r}", name)
        return tuple(values)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            self.fail(f"must be true or false, got {value!r}", name)
        return value

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw.get(name, default)
        if not isinstance(value, str) or not value.strip():
            self.fail("is required and must be a non-empty string", name)
        return value.strip()

    def trigger(self, default: Interval | None) -> Trigger:
        has_interval, has_cron = "interval" in self.raw, "cron" in self.raw
        if has_interval and has_cron:
            self.fail("give interval or cron, not both", "cron")
        if has_cron:
            return _cron(self.text("cron"), self.fail)
        if not has_interval:
            if default is None:
                self.fail(
                    'a probe needs a schedule: interval = { minutes = 15 } or cron = "*/15 * * * *"',
                    "interval",
                )
            return default
        value = self.raw["interval"]
        if isinstance(value, bool) or not isinstance(value, Mapping) or not value:
            self.fail("must be a table like { seconds = 30 } or { minutes = 15 }", "interval")
        total = 0.0
        for unit, amount in value.items():
            if unit not in INTERVAL_UNITS:
                self.fail(f"unknown unit {unit!r} (use {', '.join(INTERVAL_UNITS)})", "interval")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                self.fail(f"{unit} must be a number of at least 0, got {amount!r}", "interval")
            total += amount * INTERVAL_UNITS[unit]
        if total <= 0:
            self.fail("must be longer than zero", "interval")
        return Interval(total)


def _cron(expression: str, fail: Callable[[str, str], NoReturn]) -> Cron:
    # Imported here so that parsing stays importable without the scheduler's optional machinery loaded.
    from apscheduler.triggers.cron import CronTrigger

    parts = expression.split()
    if len(parts) != 5:
        fail(
            f"must have 5 fields (minute hour day month weekday), got {len(parts)} in {expression!r}", "cron"
        )
    minute, hour, day, month, weekday = parts
    if day != "*" and weekday != "*":
        # classic cron runs when EITHER matches; APScheduler 3 would need BOTH: refuse the ambiguity
        fail("set the day of month or the day of week, not both", "cron")
    try:
        names = weekday_names(weekday)
        CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=names, timezone="UTC")
    except ValueError as e:
        fail(f"is not a valid crontab expression ({e})", "cron")
    return Cron(expression, minute, hour, day, month, names)


def weekday_names(text: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3 names (which count 0 = Monday).

    APScheduler 3's `from_crontab` reads `1-5` as Tuesday to Saturday (its issue #286); spelling the days
    out keeps the crontab meaning.
    """
    if text == "*":
        return "*"
    days: set[int] = set()
    for part in text.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad step in day of week {part!r}")
        if span == "*":
            first, last = 0, 6
        else:
            low, dash, high = span.partition("-")
            first = _weekday(low)
            last = _weekday(high) if dash else (6 if step else first)
            if dash and high in ("7", "sun") and first > 0:
                last = 7
            if last < first:
                raise ValueError(f"day-of-week range {span!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(WEEKDAYS[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def _weekday(token: str) -> int:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7 if int(token) != 7 else 7
    if token[:3] in WEEKDAYS and len(token) >= 3:
        return WEEKDAYS.index(token[:3])
    raise ValueError(f"unknown day of week {token!r}")


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$")


def parse_schedule(
    raw: Mapping[str, Any], origin: str, base: Path, default_endpoints: Path | None
) -> ScheduleConfig:
    """A parsed TOML document as a `ScheduleConfig`; paths are relative to `base` (the file's folder)."""
    allowed = ("scheduler", "probe", "watch", "pull", "catalog", "otlp")
    extra = sorted(set(raw) - set(allowed))
    if extra:
        raise ScheduleConfigError(
            "unknown top-level key (expected [scheduler], [[probe]], [[watch]], [[pull]], [catalog], [otlp])",
            origin=origin,
            field=extra[0],
        )
    settings = _Table(raw.get("scheduler", {}), origin, "", _SCHEDULER_FIELDS, "scheduler")
    timezone = settings.text("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        settings.fail(f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)", "timezone")
    endpoints_file = (
        _resolve(base, settings.text("endpoints")) if "endpoints" in settings.raw else default_endpoints
    )

    jobs: list[Job] = []
    probes = _tables(raw, "probe", origin)
    endpoints = _endpoints(endpoints_file, origin) if probes else {}
    for index, table in enumerate(probes):
        jobs.append(_probe(table, origin, index, endpoints, endpoints_file))
    for index, table in enumerate(_tables(raw, "watch", origin)):
        jobs.append(_watch(table, origin, index, base))
    for index, table in enumerate(_tables(raw, "pull", origin)):
        jobs.append(_pull(table, origin, index))
    if "catalog" in raw:
        table = raw["catalog"]
        if isinstance(table, list):
            raise ScheduleConfigError(
                "must be one table ([catalog]), not an array", origin=origin, field="catalog"
            )
        job_id = _job_id(table, "catalog", origin)
        t = _Table(table, origin, job_id, _CATALOG_FIELDS, "catalog")
        jobs.append(CatalogJob(job_id, t.trigger(Interval(600.0)), t.flag("run_on_start", True)))
    otlp = _otlp(raw["otlp"], origin) if "otlp" in raw else None
    if not jobs and otlp is None:
        raise ScheduleConfigError(
            "has no jobs: add a [[probe]], a [[watch]], a [[pull]], a [catalog] or an [otlp] table",
            origin=origin,
        )
    seen: set[str] = set()
    for job in jobs:
        if job.id in seen:
            raise ScheduleConfigError(
                "is used by two jobs; give one of them another id", origin=origin, job=job.id, field="id"
            )
        seen.add(job.id)
    return ScheduleConfig(
        origin=origin,
        jobs=tuple(jobs),
        timezone=timezone,
        misfire_grace_s=settings.whole("misfire_grace_s", 60),
        shutdown_grace_s=settings.number("shutdown_grace_s", 15.0, strict=False),
        workers=settings.whole("workers", 4),
        endpoints_file=endpoints_file,
        otlp=otlp,
    )


def _otlp(table: Any, origin: str) -> OtlpService:
    if isinstance(table, list):
        raise ScheduleConfigError("must be one table ([otlp]), not an array", origin=origin, field="otlp")
    t = _Table(table, origin, "otlp", _OTLP_FIELDS, "otlp")
    port = t.whole("port", 4318, minimum=0)
    if port > 65535:
        t.fail(f"must be a port number (0-65535), got {port}", "port")
    attributes = t.raw.get("attributes", {})
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        t.fail('must be a table of strings, e.g. { team = "service.name" }', "attributes")
    try:  # the rules of --attribute (known columns, no content attributes)
        checked = parse_attribution([f"{k}={v}" for k, v in attributes.items()])
    except InputError as e:
        t.fail(str(e).removeprefix("--attribute: "), "attributes")
    return OtlpService(
        host=t.text("host", "127.0.0.1"),
        port=port,
        token_env=t.text("token_env") if "token_env" in t.raw else None,
        attributes=checked,
        max_body_bytes=t.whole("max_body_bytes", 16 << 20, minimum=1024),
        spool=Path(t.text("spool")).expanduser() if "spool" in t.raw else None,
    )


def _tables(raw: Mapping[str, Any], key: str, origin: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ScheduleConfigError(f"must be an array of tables ([[{key}]])", origin=origin, field=key)
    return value


def _job_id(table: Any, default: str, origin: str) -> str:
    """The job's `id`, or a default made from what it runs (only a given id must follow the id rule)."""
    if not isinstance(table, Mapping) or "id" not in table:
        return default
    value = table["id"]
    if not isinstance(value, str) or not _ID.match(value):
        raise ScheduleConfigError(
            "must be letters, digits and _ . : @ / - (no spaces)", origin=origin, job=str(value), field="id"
        )
    return value


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def _endpoints(path: Path | None, origin: str) -> dict[str, Endpoint]:
    if path is None:
        raise ScheduleConfigError(
            'probes need an endpoints file: set endpoints = "FILE" here or QUOTASCOPE_ENDPOINTS',
            origin=origin,
            field="scheduler.endpoints",
        )
    return load_endpoints(path)


def _probe(
    table: Any, origin: str, index: int, endpoints: Mapping[str, Endpoint], endpoints_file: Path | None
) -> ProbeJob:
    name = table.get("endpoint") if isinstance(table, Mapping) else None
    label = name if isinstance(name, str) and name.strip() else f"probe[{index}]"
    job_id = _job_id(table, f"probe:{label}", origin)
    t = _Table(table, origin, job_id, _PROBE_FIELDS, f"probe[{index}]")
    endpoint_name = t.text("endpoint")
    if endpoint_name not in endpoints:
        known = ", ".join(sorted(endpoints)) or "none"
        t.fail(f"no endpoint {endpoint_name!r} in {endpoints_file} (known: {known})", "endpoint")
    rate = t.optional_number("rate_per_s")
    poisson = t.flag("poisson", False)
    if poisson and rate is None:
        t.fail("needs rate_per_s (Poisson arrivals at that mean rate)", "poisson")
    options: dict[str, Any] = {
        "requests": t.whole("requests", 5),
        "input_tokens": t.wholes("input_tokens", (100,), minimum=32),
        "max_tokens": t.whole("max_tokens", 128),
        "canary": t.flag("canary", False),
        "max_duration_s": t.optional_number("max_duration_s"),
        "max_429_strikes": t.whole("max_429_strikes", 3),
        "max_retry_wait_s": t.number("max_retry_wait_s", 60.0, strict=False),
        "seed": t.whole("seed", 0, minimum=0),
        # as the CLI: one warm-up request, workers started over its duration; ramp_s = 0 for a burst
        "ramp_s": None if "ramp_s" not in t.raw else t.number("ramp_s", None, strict=False),
        "warmup_requests": t.whole("warmup", DEFAULT_WARMUP_REQUESTS, minimum=0),
    }
    try:
        plan = LoadPlan.from_options(t.wholes("concurrency", (1,)), rate, poisson, **options)
    except InputError as e:
        raise ScheduleConfigError(str(e), origin=origin, job=job_id) from e
    return ProbeJob(job_id, t.trigger(None), endpoints[endpoint_name], plan, t.flag("run_on_start", True))


def _watch(table: Any, origin: str, index: int, base: Path) -> WatchJob:
    folder_text = table.get("folder") if isinstance(table, Mapping) else None
    label = Path(folder_text).name if isinstance(folder_text, str) and folder_text.strip() else f"{index}"
    job_id = _job_id(table, f"watch:{label}", origin)
    t = _Table(table, origin, job_id, _WATCH_FIELDS, f"watch[{index}]")
    folder = _resolve(base, t.text("folder"))
    if not folder.is_dir():
        state = "is a file" if folder.exists() else "does not exist"
        t.fail(f"{folder} {state}; give the folder the logs arrive in (create it first)", "folder")
    fmt = t.text("format", "auto")
    if fmt not in INGEST_FORMATS:
        t.fail(f"unknown format {fmt!r} (use {', '.join(INGEST_FORMATS)})", "format")
    tags = t.raw.get("tags", {})
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        t.fail('must be a table of strings, e.g. { team = "search" }', "tags")
    return WatchJob(
        job_id,
        t.trigger(Interval(30.0)),
        folder,
        fmt,
        dict(tags),
        t.number("settle_s", 2.0, strict=False),
        t.number("incomplete_line_s", 60.0, strict=False),
        t.flag("run_on_start", True),
    )


def _pull(table: Any, origin: str, index: int) -> PullJob:
    name = table.get("kind") if isinstance(table, Mapping) else None
    label = name if isinstance(name, str) and name.strip() else f"{index}"
    job_id = _job_id(table, f"pull:{label}", origin)
    t = _Table(table, origin, job_id, _PULL_FIELDS, f"pull[{index}]")
    kind = t.text("kind")
    if kind not in PULL_KINDS:
        t.fail(f"unknown pull {kind!r} (use {', '.join(PULL_KINDS)})", "kind")
    base_url = t.text("base_url") if "base_url" in t.raw else None
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        t.fail(f"must be an http:// or https:// URL, got {base_url!r}", "base_url")
    return PullJob(
        job_id,
        t.trigger(Interval(6 * 3600.0)),
        kind,
        t.text("admin_key_env", PULL_KINDS[kind].key_env_hint),
        base_url,
        t.flag("run_on_start", True),
        t.flag("alert", True),
    )


def load_schedule(path: Path, default_endpoints: Path | None = None) -> ScheduleConfig:
    """Read and check a schedule config file; every mistake names the file, the job and the field."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ScheduleConfigError(
            "no such file (see data/schedule.example.toml for a start)", origin=str(path)
        ) from None
    except IsADirectoryError:
        raise ScheduleConfigError("is a folder, not a TOML file", origin=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ScheduleConfigError(f"is not valid TOML: {e}", origin=str(path)) from e
    except UnicodeDecodeError as e:
        raise ScheduleConfigError("is not UTF-8 text", origin=str(path)) from e
    return parse_schedule(raw, str(path), path.resolve().parent, default_endpoints)
