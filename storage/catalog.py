"""Catalog files: reading the shipped `data/catalog/*.toml` with a user's file on top, and writing one."""

from __future__ import annotations

import gc
import json
import os
import pickle
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.catalog import Catalog
from models.catalog_parse import parse_catalog
from models.errors import CatalogError
from models.money import FxTable, plain


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


BASE_FILE = "base-layer.pickle"  # the converted genai-prices offers (written by collectors.prices.genai)
BASE_KEY = "base-layer.key"  # what it was converted from, read without loading it


def read_base_layer(folder: Path) -> Catalog | None:
    """The converted base layer in `folder`, or None when there is none or it cannot be read (pricing then
    goes on with the shipped catalog alone: a broken cache never breaks pricing)."""
    collecting = gc.isenabled()
    gc.disable()  # thousands of small objects: the collector would run dozens of times for nothing
    try:
        with (folder / BASE_FILE).open("rb") as handle:
            document = pickle.load(handle)  # written by this program into its own data folder
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None
    finally:
        if collecting:
            gc.enable()
    catalog = document.get("catalog") if isinstance(document, dict) else None
    return catalog if isinstance(catalog, Catalog) else None


def read_base_key(folder: Path) -> str:
    try:
        return (folder / BASE_KEY).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def write_base_layer(folder: Path, catalog: Catalog, key: str) -> None:
    """Write the base layer atomically (a reader never sees half a file), then its key."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{BASE_FILE}.{os.getpid()}"
        with temporary.open("wb") as handle:
            pickle.dump({"key": key, "catalog": catalog}, handle, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(folder / BASE_FILE)
        (folder / BASE_KEY).write_text(key + "\n", encoding="utf-8")
    except OSError as e:
        raise CatalogError(f"cannot be written: {e.strerror or e}", origin=str(folder)) from e


def load_catalog(catalog_dir: Path, user_files: Sequence[Path] = (), base_dir: Path | None = None) -> Catalog:
    """Every `*.toml` of `catalog_dir` (an offer id may appear in only one), then each user file on top,
    all of it over the base layer in `base_dir` where one is given and has been converted."""
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
    base = read_base_layer(base_dir) if base_dir is not None else None
    return catalog.over(base) if base is not None else catalog


# --------------------------------------------------------------------------------------------- writing

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def render_toml(document: Mapping[str, Any], header: str = "") -> str:
    """A catalog document (plain mappings, as `tomllib` reads them) as TOML text.

    Scalars come first in each table, then sub-tables, then arrays of tables, so `[offer.limits]` and
    `[[offer.versions]]` always land under the offer they belong to. Decimals are written as plain numbers
    (never exponents), so `parse_catalog` reads back exactly the value that was written.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    _render_table(lines, "", document, array=False)
    return "\n".join(lines).strip() + "\n"


def write_catalog_file(path: Path, document: Mapping[str, Any], header: str = "") -> None:
    text = render_toml(document, header)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise CatalogError(f"cannot be written: {e.strerror or e}", origin=str(path)) from e


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _render_table(lines: list[str], path: str, table: Mapping[str, Any], *, array: bool) -> None:
    scalars = [(k, v) for k, v in table.items() if not _is_table(v) and not _is_table_array(v)]
    tables = [(k, v) for k, v in table.items() if _is_table(v)]
    arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
    if path and (array or scalars):
        if lines and lines[-1] != "":
            lines.append("")
        lines.append(f"[[{path}]]" if array else f"[{path}]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars)
    for key, sub in tables:
        if sub:
            _render_table(lines, f"{path}.{_key(key)}" if path else _key(key), sub, array=False)
    for key, items in arrays:
        for item in items:
            _render_table(lines, f"{path}.{_key(key)}" if path else _key(key), item, array=True)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, float):
        return plain(Decimal(str(value)))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
