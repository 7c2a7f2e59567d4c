"""Reading catalog files: the shipped `data/catalog/*.toml`, then a user's file on top."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

from models.catalog import Catalog, parse_catalog
from models.errors import CatalogError
from models.money import FxTable


def read_catalog_file(path: Path) -> Catalog:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise CatalogError("no such file", origin=str(path)) from None
    except IsADirectoryError:
        raise CatalogError("is a folder, not a TOML file", origin=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(f"is not valid TOML: {e}", origin=str(path)) from e
    except UnicodeDecodeError as e:
        raise CatalogError("is not UTF-8 text", origin=str(path)) from e
    return parse_catalog(raw, str(path))


def load_catalog(catalog_dir: Path, user_files: Sequence[Path] = ()) -> Catalog:
    """Every `*.toml` of `catalog_dir` (an offer id may appear in only one), then each user file on top."""
    catalog = Catalog({}, FxTable())
    files = sorted(catalog_dir.glob("*.toml")) if catalog_dir.is_dir() else []
    if not files:
        raise CatalogError("holds no *.toml catalog files", origin=str(catalog_dir))
    for path in files:
        part = read_catalog_file(path)
        for offer_id in part.offers:
            if offer_id in catalog.offers:
                raise CatalogError(
                    f"is also defined in {catalog.offers[offer_id].origin}",
                    origin=str(path),
                    offer=offer_id,
                    field="id",
                )
        catalog = catalog.merged(part)
    for path in user_files:
        catalog = catalog.merged(read_catalog_file(path))
    return catalog
