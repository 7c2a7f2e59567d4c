"""Every setting is declared once and documented in the README (datasette's test_docs habit)."""

from __future__ import annotations

from pathlib import Path

from quotascope.settings import SETTINGS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in README]
    assert missing == []


def test_setting_names_are_unique() -> None:
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
