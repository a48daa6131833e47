"""Paired bootstrap intervals of metric differences: point estimates equal the metrics' own differences,
identical runs give a zero-width interval, a real shift is found, and misaligned runs are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lemur.metrics import GroupedAUC
from lemur.metrics.bootstrap import _auc_matrix, paired_delta, read_predictions

N = 3000


def _runs(shift: float, seeds: int, rng: np.random.Generator, base: dict | None = None) -> list[dict]:
    base = base or {}
    y = base.get("label", (rng.random(N) < 0.3).astype(np.int8))
    session = np.repeat(np.arange(N // 10), 10)
    common = {
        "label": y,
        "session_id": session,
        "user_id": session // 4,
        "doc_id": np.tile(np.arange(10), N // 10),
        "is_new_doc": base.get("is_new_doc", rng.random(N) < 0.25),
    }
    return [{**common, "score": (shift * y + rng.normal(size=N)).astype(np.float32)} for _ in range(seeds)]


def test_row_auc_matches_sklearn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.4).astype(np.int8)
    s = np.round(rng.normal(size=500) + y, 1)  # ties
    assert _auc_matrix(s[None], y, np.ones(500))[0] == pytest.approx(roc_auc_score(y, s))
    counts = rng.integers(0, 3, 500).astype(float)
    assert _auc_matrix(s[None], y, counts)[0] == pytest.approx(roc_auc_score(y, s, sample_weight=counts))


@pytest.mark.parametrize("metric", ["auc", "qauc", "gauc", "auc_new"])
def test_point_estimate_is_the_difference_of_seed_averaged_metrics(metric: str) -> None:
    rng = np.random.default_rng(1)
    a = _runs(1.0, 2, rng)
    b = _runs(0.5, 2, rng, base=a[0])
    delta = paired_delta(a, b, metric, n_resamples=200)

    def value(run: dict) -> float:
        if metric == "auc":
            return roc_auc_score(run["label"], run["score"])
        if metric == "auc_new":
            keep = run["is_new_doc"]
            return roc_auc_score(run["label"][keep], run["score"][keep])
        m = GroupedAUC(weighting="uniform" if metric == "qauc" else "impressions")
        m.update(
            torch.as_tensor(run["score"]),
            torch.as_tensor(run["label"]).long(),
            torch.as_tensor(run["session_id" if metric == "qauc" else "user_id"]),
        )
        return float(m.compute())

    expected = np.mean([value(r) for r in a]) - np.mean([value(r) for r in b])
    assert delta.value == pytest.approx(expected, abs=1e-5)
    assert delta.low < delta.value < delta.high and delta.seeds == 2
    assert delta.excludes_zero and delta.low > 0  # a shift of 0.5 in the score of the clicked rows is real


def test_identical_runs_give_a_zero_interval_and_noise_gives_one_around_zero() -> None:
    rng = np.random.default_rng(2)
    a = _runs(1.0, 3, rng)
    same = paired_delta(a, a, "qauc", n_resamples=200)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    b = _runs(1.0, 3, rng, base=a[0])  # same model quality, other noise
    noise = paired_delta(a, b, "qauc", n_resamples=300)
    assert noise.low < 0 < noise.high and not noise.excludes_zero


def test_runs_on_different_rows_are_refused_and_one_class_is_undefined() -> None:
    rng = np.random.default_rng(3)
    a = _runs(1.0, 1, rng)
    b = _runs(1.0, 1, rng)  # other labels: not the same test rows
    with pytest.raises(ValueError, match="same test rows"):
        paired_delta(a, b, "auc")
    one_class = [{**a[0], "is_new_doc": a[0]["label"] == 1}]
    assert np.isnan(paired_delta(one_class, one_class, "auc_new").value)
    no_new = [{**a[0], "is_new_doc": np.zeros(len(a[0]["label"]), bool)}]  # no new-document row at all
    assert np.isnan(paired_delta(no_new, no_new, "auc_new").value)


def test_predictions_are_read_in_a_canonical_row_order(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    run = _runs(1.0, 1, rng)[0]
    perm = rng.permutation(N)
    pq.write_table(pa.table({k: v[perm] for k, v in run.items()}), tmp_path / "p.parquet")
    back = read_predictions(tmp_path / "p.parquet")
    for k in run:
        np.testing.assert_array_equal(back[k], run[k])
    with pytest.raises(FileNotFoundError, match="no test predictions"):
        read_predictions(tmp_path / "missing.parquet")
