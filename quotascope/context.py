"""What commands share: the catalog and database path from options and settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.catalog import Catalog
from quotascope import settings
from storage.catalog import load_catalog


def catalog_from(args: argparse.Namespace) -> Catalog:
    user = [Path(p) for p in getattr(args, "catalog", [])]
    if not user and settings.get("user_catalog"):
        user = [Path(settings.get("user_catalog"))]
    return load_catalog(Path(settings.get("catalog_dir")), user)


def db_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "db", None) or settings.get("db"))
