"""What commands share: the catalog and database path from options and settings."""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

from collectors.prices.genai import ensure_base_layer
from models.catalog import Catalog
from quotascope import settings
from storage.catalog import load_catalog
from storage.store import Store, parse_store


def catalog_from(args: argparse.Namespace) -> Catalog:
    """The shipped catalog and the user's files over the genai-prices base layer (converted on first use)."""
    user = [Path(p) for p in getattr(args, "catalog", [])] or user_catalogs()
    return priced_catalog(Path(settings.get("catalog_dir")), user)


def priced_catalog(catalog_dir: Path, user_files: list[Path]) -> Catalog:
    """The catalog files over the base layer, converting the installed genai-prices data on first use."""
    base = price_data_dir()
    if base is not None:
        ensure_base_layer(base, date.today())
    return load_catalog(catalog_dir, user_files, base)


def price_data_dir() -> Path | None:
    """The base layer's folder; None when the setting is `off` (the shipped catalog alone)."""
    value = settings.get("price_data_dir")
    return Path(value) if value and value.strip().lower() != "off" else None


def user_catalogs() -> list[Path]:
    """The `user_catalog` setting: one file, or several separated by the path separator (':' here)."""
    return [Path(p) for p in settings.get("user_catalog").split(os.pathsep) if p]


def db_path(args: argparse.Namespace) -> Path:
    """The embedded DuckDB file (`--db`): the small tables, and usage too unless a store URL is given."""
    return Path(getattr(args, "db", None) or settings.get("db"))


def store_from(args: argparse.Namespace) -> Store:
    """The store of `--store URL` (or the `store` setting) beside the DuckDB file of `--db`."""
    return parse_store(getattr(args, "store", None) or settings.get("store"), db_path(args))
