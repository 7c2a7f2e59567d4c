"""Numbered schema migrations, applied in order on open.

Each module here is named `mNNN_name.py` and defines `NUMBER: int` (equal to NNN), `NAME: str` and
`SQL: str` (one or more statements). Modules are discovered, so a feature adds its tables by adding a file.
Numbers are unique and applied in order; a database records which it has (`schema_migrations`), so a
number may be skipped by a feature that has not landed yet. Reserved: 1 core, 2 probes, 3 job runs,
4 budgets and alerts, 25 dashboard users.
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
    if len(set(numbers)) != len(numbers) or (numbers and numbers[0] < 1):
        raise RuntimeError(f"migration numbers must be unique and start from 1, found {numbers}")
    return found
