"""Numbered schema migrations, applied in order on open.

Each module here is named `mNNN_name.py` and defines `NUMBER: int` (equal to NNN), `NAME: str` and
`SQL: str` (one or more statements). Modules are discovered, so a feature adds its tables by adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def discover() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("m"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(module.NUMBER, module.NAME, module.SQL))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found
