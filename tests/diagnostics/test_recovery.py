"""diagnostics/recovery.py: planted minus control, as a share of the signal's ceiling, from suite report CSVs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "diagnostics"))
import recovery  # noqa: E402

COLUMNS = [f"{m}_{k}" for m in ("qauc", "auc_new") for k in ("delta", "delta_ci_low", "delta_ci_high")]


def _report(path: Path, rows: dict[str, tuple[float, float]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["variant", *COLUMNS])
        w.writeheader()
        w.writerow({"variant": "two_stage"})  # the reference row: no difference
        for name, (qauc, new) in rows.items():
            w.writerow(
                {
                    "variant": name,
                    "qauc_delta": qauc,
                    "qauc_delta_ci_low": qauc - 0.002,
                    "qauc_delta_ci_high": qauc + 0.002,
                    "auc_new_delta": new,
                    "auc_new_delta_ci_low": new - 0.004,
                    "auc_new_delta_ci_high": new + 0.004,
                }
            )
    return path


def test_recovered_share_is_planted_minus_control_over_the_ceiling(tmp_path: Path) -> None:
    data = tmp_path / "synth"
    data.mkdir()
    ceiling = {"qauc_ceiling": 0.05, "auc_new_ceiling": 0.04}
    (data / "synth.json").write_text(json.dumps({"summary": {"planted_signals": {"appeal": ceiling}}}))
    planted = _report(tmp_path / "planted.csv", {"end_to_end": (0.011, 0.032)})
    control = _report(tmp_path / "control.csv", {"end_to_end": (-0.002, 0.004)})
    path = recovery.main(
        ["--signal", "appeal", str(planted), str(control), "--data", str(data), "--out", str(tmp_path / "out")]
    )
    row = next(csv.DictReader(open(path.with_suffix(".csv"))))
    assert float(row["qauc_explained"]) == pytest.approx(0.013)
    assert float(row["qauc_recovered"]) == pytest.approx(0.013 / 0.05)
    assert float(row["auc_new_recovered"]) == pytest.approx(0.028 / 0.04)
    assert (
        "| appeal | end_to_end | +0.0110 [+0.0090, +0.0130] | -0.0020 [-0.0040, +0.0000] | +0.0130 |"
        in path.read_text()
    )
    with pytest.raises(SystemExit, match="no planted signal 'subtopic'"):
        recovery.main(["--signal", "subtopic", str(planted), str(control), "--data", str(data)])
