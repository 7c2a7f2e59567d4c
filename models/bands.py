"""The long-context band rule rendered for a SQL store, without polars.

`models.pricing` classifies requests (polars); a store aggregates by the same long-context band in SQL,
and the write path renders that SQL on an ingest's first batch. This module is that rule's one home (the
pricing engine re-exports it): it imports the standard library only, so rendering it costs an ingest
nothing (importing `models.pricing` brings polars, a third of a second of one core, on the writer's first
batch).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["band_input", "tier_band_sql"]


def tier_band_sql(bounds: Sequence[int], input_sql: str, requests_sql: str) -> str:
    """`Classifier.tier`'s rule for a SQL store: the band (0 below the smallest bound) a row's per-request
    input — the floor of input / requests — falls in, so rows on either side of a threshold are never summed.
    `band_input` gives a per-request input size inside each band."""
    if not bounds:
        return "0"
    arms = " ".join(
        f"WHEN ({input_sql}) // greatest({requests_sql}, 1) > {int(b)} THEN {i + 1}"
        for i, b in reversed(list(enumerate(bounds)))
    )
    return f"CASE {arms} ELSE 0 END"


def band_input(bounds: Sequence[int]) -> list[int]:
    """A per-request input size inside each band of `tier_band_sql`."""
    return [0, *(int(b) + 1 for b in bounds)]
