"""A reduced `make fuzz` sweep: a fixed sample of the generated bad inputs, 0 crashes allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lemur.fuzz import Base, build_cases, main, run_case, summarize, table


@pytest.mark.slow
def test_reduced_sweep_has_no_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = Base(tmp_path)
    cases = build_cases(base)
    assert len(cases) > 200, "the generated sweep covers every column and recipe setting"
    wanted = {
        "docs.parquet: every 3rd image undecodable",
        "docs.parquet: title huge (2 MB) at row 7",
        "events.parquet: timestamps go back across days",
        "memory_bank.dim != doc_encoder.out_dim (SQDC)",
        "events.parquet: empty queries",
    }
    sample = cases[::60] + [c for c in cases if c.name in wanted or c.name.startswith("memory_bank.dim")]
    results = [run_case(case, tmp_path / f"case{i}") for i, case in enumerate(sample)]
    report = table(results)
    counts = summarize(results)
    assert counts["crash"] == 0, report
    assert counts["rejected"] >= 5 and counts["skipped"] >= 2 and counts["accepted"] >= 1, report
    by_name = {r.case.name: r for r in results}
    assert by_name["docs.parquet: every 3rd image undecodable"].counts["images_skipped"] > 0
    assert by_name["docs.parquet: title huge (2 MB) at row 7"].counts["text_values_cut"] == 1
    rejected = by_name["events.parquet: timestamps go back across days"]
    assert rejected.outcome == "rejected" and "events.parquet: column 'timestamp', row" in rejected.detail


def test_fuzz_cli_lists_and_filters_cases(capsys: pytest.CaptureFixture) -> None:
    assert main(["--list", "--only", "label"]) == 0
    names = capsys.readouterr().out.splitlines()
    assert names and all("label" in n.lower() for n in names)
    assert any(n.startswith("data: events.parquet: label") for n in names)
