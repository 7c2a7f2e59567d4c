"""What commands share: the catalog and database path from options and settings."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from models.catalog import Catalog
from quotascope import settings
from storage.catalog import load_catalog


def catalog_from(args: argparse.Namespace) -> Catalog:
    user = [Path(p) for p in getattr(args, "catalog", [])] or user_catalogs()
    return load_catalog(Path(settings.get("catalog_dir")), user)


def user_catalogs() -> list[Path]:
    """The `user_catalog` setting: one file, or several separated by the path separator (':' here)."""
    return [Path(p) for p in settings.get("user_catalog").split(os.pathsep) if p]


def db_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "db", None) or settings.get("db"))
