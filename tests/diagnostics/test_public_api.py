"""diagnostics/ uses lemur's public API only: no private names imported from lemur."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_diagnostics_import_no_private_lemur_names() -> None:
    scripts = sorted((REPO / "diagnostics").glob("*.py"))
    assert {p.stem for p in scripts} >= {"history_ceiling", "oracle_taste", "taste_probe"}
    private = []
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lemur"):
                private += [
                    f"{path.name}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")
                ]
                if any(part.startswith("_") for part in node.module.split(".")):
                    private.append(f"{path.name}: from {node.module}")
    assert not private, private
