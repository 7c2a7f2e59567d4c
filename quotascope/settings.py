"""One table of settings. Each is declared once here; the CLI, the README and a test read this table."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    env: str
    default: str
    help: str

    def value(self) -> str:
        return os.environ.get(self.env) or self.default


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "db",
        "QUOTASCOPE_DB",
        str(PROJECT_ROOT / "data" / "quotascope.duckdb"),
        "DuckDB file every command reads and writes (`--db` overrides it).",
    ),
    Setting(
        "store",
        "QUOTASCOPE_STORE",
        "",
        "Where usage rows live (`--store` overrides it): empty for the DuckDB file, "
        "`clickhouse://user@host:8123/db` (`clickhouses://` for TLS) or `chdb://PATH`; the small tables "
        "stay in the DuckDB file.",
    ),
    Setting(
        "clickhouse_password",
        "QUOTASCOPE_CLICKHOUSE_PASSWORD",
        "",
        "Password of the ClickHouse user a `clickhouse://` store URL names (never put in the URL, never "
        "stored or shown).",
    ),
    Setting(
        "catalog_dir",
        "QUOTASCOPE_CATALOG_DIR",
        str(PROJECT_ROOT / "data" / "catalog"),
        "Folder of the shipped catalog: every `*.toml` in it is loaded.",
    ),
    Setting(
        "price_data_dir",
        "QUOTASCOPE_PRICE_DATA_DIR",
        str(PROJECT_ROOT / "data" / "prices"),
        "Folder of the converted genai-prices base layer (made on first use; `catalog update` refreshes "
        "it); `off`: price with the shipped catalog and your files alone.",
    ),
    Setting(
        "user_catalog",
        "QUOTASCOPE_USER_CATALOG",
        "",
        "Your own catalog TOML (several joined with ':'): adds offers and replaces shipped ones with "
        "the same id (`--catalog`).",
    ),
    Setting(
        "display_currency",
        "QUOTASCOPE_CURRENCY",
        "",
        "Currency every money figure is shown in; empty keeps each offer's own currency.",
    ),
    Setting(
        "salt_file",
        "QUOTASCOPE_SALT_FILE",
        str(PROJECT_ROOT / "data" / "salt"),
        "Local secret used to hash user ids before they are stored (created on first use).",
    ),
    Setting("dashboard_host", "QUOTASCOPE_HOST", "127.0.0.1", "Address the dashboard listens on."),
    Setting("dashboard_port", "QUOTASCOPE_PORT", "8501", "Port the dashboard listens on."),
    Setting(
        "session_hours",
        "QUOTASCOPE_SESSION_HOURS",
        "8",
        "How long a dashboard sign-in lasts before the viewer signs in again (hours).",
    ),
    Setting(
        "now",
        "QUOTASCOPE_NOW",
        "",
        "Pin the dashboard's idea of now (ISO date-time, UTC), e.g. to show a past month as current.",
    ),
    Setting(
        "endpoints_file",
        "QUOTASCOPE_ENDPOINTS",
        str(PROJECT_ROOT / "data" / "endpoints.toml"),
        "TOML file naming the endpoints `quotascope probe` can probe.",
    ),
    Setting(
        "reconcile_threshold",
        "QUOTASCOPE_GAP_THRESHOLD",
        "2%",
        "A day whose billed cost and computed cost differ by more than this share is flagged and alerted "
        "(`report reconcile`, the Reconcile page).",
    ),
    Setting(
        "reconcile_webhook",
        "QUOTASCOPE_GAP_WEBHOOK",
        "",
        "URL `report reconcile` POSTs each new billing-gap alert to, as JSON; empty sends none.",
    ),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


def get(name: str) -> str:
    return BY_NAME[name].value()
