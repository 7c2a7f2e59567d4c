"""What every view shares: the database path, the catalog, the viewer's scope, the sidebar's filters, and
cached reads.

Every database read of a view goes through `read(call, ...)`, and that is where the viewer's teams are
applied, once for every page, chart, table, filter option, alert and download: a read that returns team data
takes `selection: UsageFilter`, and `read` replaces it with the selection cut down to the viewer's scope
(`UsageFilter.within`; a missing one becomes the whole scope). A read with no `selection` must be declared
in `TEAM_FREE` (data that belongs to no team), or `read` refuses to run it. So a new page or download gets
the scope by calling `state.read(its_storage_function, selection=...)`; calling storage directly from a
view is the one way around it (tests/dashboard/test_scope.py checks the views don't).

Reads are cached with `st.cache_data` keyed on the database's data version (its file's size and modification
time, and its write-ahead log's) and on their arguments, the scoped selection included, so reruns don't
re-query, a finished ingest shows up on the next rerun, and two viewers never share a cached answer of
another scope.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from dashboard.auth import VIEWER_KEY
from dashboard.tables import Column, in_words, number_formats
from models.access import Scope
from models.catalog import Catalog
from models.errors import QuotascopeError
from models.outside_text import display_frame
from quotascope import settings
from quotascope.context import price_data_dir, priced_catalog, user_catalogs
from storage.catalog import BASE_KEY, read_base_key
from storage.explore import usage_dimensions
from storage.probes import probe_percentiles, probe_rate_limits, probe_runs
from storage.replay import UsageFilter
from storage.store import Store, parse_store
from storage.usage_reader import usage_version

T = TypeVar("T")


def db_path() -> Path:
    return Path(settings.get("db"))


def store() -> Store:
    """The store of the `store` setting (usage in ClickHouse, if it names one) beside the DuckDB file."""
    return parse_store(settings.get("store"), db_path())


def data_version(path: Path | None = None) -> tuple[int, ...]:
    """Changes whenever the database file (or its WAL) changes, or usage in the store's ClickHouse does
    (its parts: `storage.clickhouse.ClickHouse.data_version`); part of every cached query's key."""
    path = path or db_path()
    stamp: list[int] = []
    for candidate in (path, path.with_name(path.name + ".wal")):
        try:
            info = candidate.stat()
            stamp += [info.st_size, info.st_mtime_ns]
        except FileNotFoundError:
            stamp += [0, 0]
    current = store()
    if current.clickhouse is not None:
        try:
            stamp += usage_version(current)
        except QuotascopeError:  # unreachable: the page's reads say so, each where it stands
            stamp.append(-1)
    return tuple(stamp)


def has_database() -> bool:
    """Whether there is anything to read: the DuckDB file, or a ClickHouse store (which may be fed by the
    OpenTelemetry Collector alone, with no file beside it yet)."""
    return db_path().exists() or store().clickhouse is not None


@st.cache_resource(show_spinner=False)
def _catalog(catalog_dir: str, user_catalogs: tuple[str, ...], base_key: str) -> Catalog:
    return priced_catalog(Path(catalog_dir), [Path(p) for p in user_catalogs])


def catalog() -> Catalog:
    base = price_data_dir()
    key = read_base_key(base) if base is not None else ""
    return _catalog(settings.get("catalog_dir"), tuple(str(p) for p in user_catalogs()), key)


def catalog_key() -> tuple[tuple[str, int], ...]:
    """Changes when any catalog file changes; part of the key of cached reads that price."""
    base = price_data_dir()
    files = sorted(Path(settings.get("catalog_dir")).glob("*.toml")) + user_catalogs()
    files += [base / BASE_KEY] if base is not None else []
    return tuple((str(f), f.stat().st_mtime_ns if f.exists() else 0) for f in files)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached(
    name: str,
    version: tuple[int, ...],
    db: str,
    store_url: str,
    catalog_version: tuple[tuple[str, int], ...] | None,
    _call: Callable[..., Any],
    kwargs: tuple[Any, ...],
) -> Any:
    extra = {"catalog": catalog()} if catalog_version is not None else {}
    where = parse_store(store_url, Path(db))
    return _call(where if _reads_usage(_call) else where.db, **extra, **dict(kwargs))


def _reads_usage(call: Callable[..., Any]) -> bool:
    """Whether `call` reads usage, so takes the whole store (its first parameter is a `StoreLike`); the
    others read the small tables of the DuckDB file and take its path."""
    first = next(iter(inspect.signature(call).parameters.values()))
    return "Store" in str(first.annotation)


# Reads of data that belongs to no team, shown to every signed-in viewer: probe results describe the
# endpoints themselves (latency, errors, limits announced), not any team's traffic or spend.
TEAM_FREE: frozenset[Callable[..., Any]] = frozenset({probe_runs, probe_percentiles, probe_rate_limits})


class ScopeError(RuntimeError):
    """A view asked for a read the viewer's scope cannot be applied to (a programming error)."""


def scope() -> Scope:
    """The viewer's teams, set by the sign-in gate (`dashboard.auth.require_viewer`) before any view runs.
    Without a viewer (the gate did not run) nothing is visible: the scope fails closed."""
    viewer = st.session_state.get(VIEWER_KEY)
    return viewer.scope if viewer is not None else Scope(())


def sees_all_teams() -> bool:
    """Whether the viewer sees every team (figures that cannot be split by team, such as billed invoices,
    are for these viewers only)."""
    return scope().all_teams


def scoped(call: Callable[..., Any], kwargs: dict[str, Any], viewer: Scope) -> dict[str, Any]:
    """`kwargs` with `selection` cut down to `viewer` (added if missing); refused for a read that takes no
    selection unless it is `TEAM_FREE`."""
    if call in TEAM_FREE:
        return kwargs
    if "selection" not in inspect.signature(call).parameters:
        raise ScopeError(
            f"{call.__module__}.{call.__qualname__} takes no `selection`, so the viewer's teams cannot be "
            "applied to it: give it a `selection: UsageFilter` parameter, or list it in state.TEAM_FREE if "
            "its data belongs to no team"
        )
    selection = kwargs.get("selection") or UsageFilter()
    return {**kwargs, "selection": selection.within(viewer)}


def read(call: Callable[..., T], *, priced: bool = False, viewer: Scope | None = None, **kwargs: Any) -> T:
    """`call(store, **kwargs)` (a read of usage) or `call(db_path, **kwargs)` within the viewer's
    scope (`scoped`), through the cache, keyed on the data
    version (and, when `priced`, on the catalog files, and `call` gets `catalog=` the loaded catalog).

    `viewer` is the scope taken while the page ran, for a read done later outside it (a download's data,
    made when the button is clicked); by default the current viewer's."""
    kwargs = scoped(call, kwargs, viewer if viewer is not None else scope())
    db = db_path()
    key = f"{call.__module__}.{call.__qualname__}"
    result: T = _cached(
        key,
        data_version(db),
        str(db),
        settings.get("store"),
        catalog_key() if priced else None,
        call,
        tuple(sorted(kwargs.items())),
    )
    return result


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None
    until: datetime | None
    providers: tuple[str, ...]
    models: tuple[str, ...]
    teams: tuple[str, ...]
    display_currency: str | None


def filters() -> Filters:
    """The sidebar's choices (set in `dashboard/app.py`)."""
    state = st.session_state
    dates: tuple[Any, ...] = tuple(state.get("filter_dates") or ())
    since = datetime.combine(dates[0], time()) if len(dates) >= 1 and isinstance(dates[0], date) else None
    until = datetime.combine(dates[1], time.max) if len(dates) >= 2 and isinstance(dates[1], date) else None
    currency = state.get("display_currency") or None
    return Filters(
        since,
        until,
        _chosen(state.get("filter_provider")),
        _chosen(state.get("filter_model")),
        _chosen(state.get("filter_team")),
        None if currency in (None, "offer's own") else str(currency),
    )


def _chosen(value: object) -> tuple[str, ...]:
    return () if value in (None, "all") else (str(value),)


def now() -> datetime:
    """Naive UTC now to the minute, unless the `now` setting pins it (so 'this month' of a demo is
    reproducible). Whole minutes, because now is part of cached reads' keys: a rerun within the minute is
    answered from the cache instead of re-querying."""
    pinned = settings.get("now")
    if pinned:
        return datetime.fromisoformat(pinned)
    return datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)


def empty_state(what: str, command: str) -> None:
    st.info(f"{what}\n\nRun `{command}` to fill it.", icon=":material/info:")


def usage_selection(nothing: str = "No usage stored yet.") -> UsageFilter | None:
    """The sidebar's period and filters over stored usage; None (after saying what to run) when there is
    no database or no usage. The period defaults to all stored usage, whole UTC days."""
    if not has_database():
        empty_state("No database yet.", "quotascope demo --no-serve")
        return None
    try:
        dims = read(usage_dimensions)
    except QuotascopeError as e:
        st.error(str(e))
        return None
    if dims.requests == 0 or dims.first is None or dims.last is None:
        empty_state(nothing, "quotascope ingest PATH")
        return None
    f = filters()
    since = f.since or datetime.combine(dims.first.date(), time())
    until = f.until or datetime.combine(dims.last.date() + timedelta(days=1), time())
    return UsageFilter(
        since,
        until,
        provider=f.providers[0] if f.providers else None,
        model=f.models[0] if f.models else None,
        team=f.teams[0] if f.teams else None,
    )


def show_table(frame: Any, columns: list[Column], key: str) -> None:
    """`frame` as a table in words (`dashboard.tables.in_words`): labels with units, no empty cells."""
    shown = display_frame(in_words(frame, columns))  # text from logs shown, never obeyed
    formats = number_formats(columns)
    config = {
        label: st.column_config.NumberColumn(format=fmt)
        for label, fmt in formats.items()
        if shown.schema[label].is_numeric()
    }
    st.dataframe(shown, hide_index=True, key=key, column_config=config)
