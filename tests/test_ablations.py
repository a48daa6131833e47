"""recipes/ablations/ holds paper rows only: each header names its paper table and row, and no paper
recipe mentions a lemur.contrib plug-in (those live under experiments/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = sorted((REPO / "recipes" / "ablations").glob("*.yaml"))
PAPER_RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.name)
def test_ablation_header_names_its_paper_table_and_row(path: Path) -> None:
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert re.search(r"Reproduces: paper Table \d, rows? \"[^\"]+\"", header) or re.search(
        r"Reproduces: the \"[^\"]+\" and \"[^\"]+\" steps of paper Table \d", header
    ), header


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_paper_recipes_never_mention_contrib(path: Path) -> None:
    assert "lemur.contrib" not in path.read_text() and "experiments/" not in path.read_text()


def test_contrib_experiments_are_under_experiments() -> None:
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        text = path.read_text()
        assert text.startswith("#") and "Command:" in text and "paper Table" not in text, path
