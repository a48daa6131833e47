"""Paired bootstrap confidence intervals of the difference between two variants' test metrics.

Two variants scored on the same test rows are compared unit by unit: sessions for QAUC, users for
GAUC, rows for AUC and for AUC on new documents. Several seeds of each variant are pooled: the
statistic is the difference of the seed-averaged metrics, and one resample of the units is applied
to every seed, so seed noise and test-set noise both enter the interval. "Within noise" is an
interval that contains 0.

Sessions and users are resampled by ``scipy.stats.bootstrap`` (paired, percentile intervals) over
per-unit AUC differences from :func:`lemur.metrics.per_group_auc` (the same code as QAUC and GAUC).
Rows are resampled here, as row multiplicities of a weighted rank-sum (see ``paired_delta``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lemur.metrics.grouped_auc import per_group_auc

METRICS = ("auc", "qauc", "gauc", "auc_new")
PREDICTION_COLUMNS = ("score", "label", "session_id", "user_id", "doc_id", "is_new_doc")


@dataclass(frozen=True)
class Delta:
    """``value`` = variant minus reference (absolute), with its ``low``/``high`` interval bounds."""

    value: float
    low: float
    high: float
    units: int
    """Resampled units (sessions, users or rows) that carry the metric."""
    seeds: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


NAN_DELTA = Delta(math.nan, math.nan, math.nan, 0, 0)


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """A run's test predictions (``RunSummary(predictions_file=...)``), rows in a canonical order
    (session, document), so that two runs on the same test days line up row by row. Under DDP the
    per-rank files ``<stem>.rank<k>.parquet`` are read together."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    parts = [path] if path.exists() else sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))
    if not parts:
        raise FileNotFoundError(f"no test predictions at {path}")
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    missing = [c for c in PREDICTION_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: test predictions lack column(s) {missing}")
    out = {c: table[c].to_numpy() for c in PREDICTION_COLUMNS}
    order = np.lexsort((out["doc_id"], out["session_id"]))
    return {k: v[order] for k, v in out.items()}


def _check_aligned(runs: Sequence[dict[str, np.ndarray]]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if len(run["label"]) != len(first["label"]) or not all(
            np.array_equal(run[k], first[k]) for k in ("session_id", "doc_id", "label")
        ):
            raise ValueError(
                "the runs' test predictions are not on the same test rows (different data or test days); "
                "a paired comparison needs the same rows"
            )


def _group_aucs(runs: Sequence[dict[str, np.ndarray]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``[seeds, G]`` per-group AUC over the groups valid in every run, and their row counts ``[G]``."""
    per = [
        per_group_auc(
            torch.as_tensor(r["score"], dtype=torch.float64),
            torch.as_tensor(r["label"].astype(np.int64)),
            torch.as_tensor(r[key].astype(np.int64)),
        )
        for r in runs
    ]
    valid = per[0]["valid"].numpy()  # validity depends on the labels only, the same in every aligned run
    return np.stack([p["auc"].numpy()[valid] for p in per]), per[0]["rows"].numpy()[valid].astype(np.float64)


def _auc_matrix(scores: np.ndarray, label: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row-weighted AUC of each score row of ``scores`` ``[R, n]`` with weights ``counts`` ``[..., n]``
    (a bootstrap resample as row multiplicities); ties get half credit."""
    out = []
    for s in scores:
        order = np.argsort(s, kind="stable")
        s_sorted, y = s[order], label[order].astype(bool)
        w = counts[..., order]
        block = np.concatenate([[0], np.cumsum(s_sorted[1:] != s_sorted[:-1])])
        n_blocks = block[-1] + 1
        flat = (np.arange(w.reshape(-1, w.shape[-1]).shape[0])[:, None] * n_blocks + block[None, :]).ravel()
        size = w.reshape(-1, w.shape[-1]).shape[0] * n_blocks
        neg = np.bincount(flat, weights=(w.reshape(-1, w.shape[-1]) * ~y).ravel(), minlength=size).reshape(-1, n_blocks)
        pos = np.bincount(flat, weights=(w.reshape(-1, w.shape[-1]) * y).ravel(), minlength=size).reshape(-1, n_blocks)
        below = np.cumsum(neg, axis=1) - neg
        auc = (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))
        out.append(auc.reshape(w.shape[:-1]))
    return np.stack(out)


def paired_delta(
    variant: Sequence[dict[str, np.ndarray]],
    reference: Sequence[dict[str, np.ndarray]],
    metric: str,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Delta:
    """Seed-averaged ``metric`` of ``variant`` minus that of ``reference`` (lists of runs' predictions from
    :func:`read_predictions`, all on the same test rows) with a paired percentile bootstrap interval.

    ``metric``: ``auc`` (rows), ``qauc`` (sessions, uniform mean), ``gauc`` (users, row-weighted mean, as
    lemur's GAUC) or ``auc_new`` (rows whose document is new on the test day). NaN when undefined.
    """
    from scipy.stats import bootstrap

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not variant or not reference:
        return NAN_DELTA
    runs = list(variant) + list(reference)
    _check_aligned(runs)
    k = len(variant)
    rng = np.random.default_rng(seed)
    kwargs = {"n_resamples": n_resamples, "confidence_level": confidence, "method": "percentile", "random_state": rng}
    if metric in ("qauc", "gauc"):
        aucs, rows = _group_aucs(runs, "session_id" if metric == "qauc" else "user_id")
        if aucs.shape[1] < 2:
            return NAN_DELTA
        diff = aucs[:k].mean(0) - aucs[k:].mean(0)  # per unit: seed-averaged difference
        weights = np.ones_like(rows) if metric == "qauc" else rows
        value = float((diff * weights).sum() / weights.sum())
        res = bootstrap(
            (diff, weights),
            lambda d, w, axis=-1: (d * w).sum(axis) / w.sum(axis),
            paired=True,
            vectorized=True,
            **kwargs,
        )
        return Delta(value, float(res.confidence_interval.low), float(res.confidence_interval.high), len(diff), k)
    keep = np.ones(len(runs[0]["label"]), bool) if metric == "auc" else runs[0]["is_new_doc"].astype(bool)
    label = runs[0]["label"][keep]
    if len(label) == 0 or label.min() == label.max():  # no row or one class only: AUC undefined
        return NAN_DELTA
    scores = np.stack([r["score"][keep].astype(np.float64) for r in runs])
    full = _auc_matrix(scores, label, np.ones(len(label)))
    value = float(full[:k].mean() - full[k:].mean())
    # Row resamples as multiplicities (the rank-sum takes weights), so each run's rows are sorted once, not
    # once per resample: scipy.stats.bootstrap would re-sort every resample of every run.
    stats = []
    for start in range(0, n_resamples, 64):
        draws = rng.integers(0, len(label), (min(64, n_resamples - start), len(label)))
        counts = np.stack([np.bincount(d, minlength=len(label)) for d in draws]).astype(np.float64)
        boot = _auc_matrix(scores, label, counts)  # [runs, resamples]
        stats.append(boot[:k].mean(0) - boot[k:].mean(0))
    stats = np.concatenate(stats)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Delta(value, float(low), float(high), len(label), k)
