"""Grouped AUC: ROC-AUC computed inside each group, then averaged over groups.

With the query / session id as the group this is the paper's **QAUC** ("AUC per query, averaged");
with the user id as the group it is the usual **GAUC**. The global AUC over all rows is plain
:class:`torchmetrics.classification.BinaryAUROC` (re-exported by :mod:`lemur.metrics`).

Why not :class:`torchmetrics.retrieval.RetrievalAUROC`? It does not fit exactly: a group whose
labels are all positive gets AUC ``0.0`` (and an all-negative group gets ``0.0`` by default, or is
skipped only with ``empty_target_action="skip"``), i.e. single-class groups are *counted* where they
must be *skipped* because AUC is undefined for them. It also loops over groups in Python.

The computation here is fully vectorised (two stable sorts plus cumulative sums, no per-group Python
loop) and exact: ranks are carried as doubled integers, so ties get the average rank
(Mann-Whitney U, the same 0.5 credit for a tied positive/negative pair as
``sklearn.metrics.roc_auc_score``); only the per-group division and the weighted mean are done in
floating point (float64, returned as float32 like torchmetrics' own AUROC).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

__all__ = ["GroupedAUC", "Weighting", "grouped_auc", "per_group_auc"]

Weighting = Literal["uniform", "impressions", "clicks"]
_WEIGHTINGS: tuple[str, ...] = ("uniform", "impressions", "clicks")


def _check_args(weighting: str, min_group_size: int) -> None:
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {_WEIGHTINGS}, got {weighting!r}")
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, int) or min_group_size < 1:
        raise ValueError(f"`min_group_size` must be a positive int, got {min_group_size!r}")


def _format_inputs(preds: Tensor, target: Tensor, groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes / dtypes and return flattened ``(preds, target, groups)`` (no device sync)."""
    if not (preds.shape == target.shape == groups.shape):
        raise ValueError(
            "`preds`, `target` and `groups` must have the same shape, got "
            f"{tuple(preds.shape)}, {tuple(target.shape)} and {tuple(groups.shape)}"
        )
    if preds.is_complex():
        raise TypeError("`preds` must be real-valued")
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"`target` must be an integer or bool tensor with values in {{0, 1}}, got {target.dtype}")
    if groups.is_floating_point() or groups.is_complex() or groups.dtype == torch.bool:
        raise TypeError(f"`groups` must be an integer tensor, got {groups.dtype}")
    preds = preds.detach().reshape(-1)
    if not preds.is_floating_point():
        preds = preds.float()
    return preds, target.detach().reshape(-1).long(), groups.detach().reshape(-1).long()


def grouped_auc(
    preds: Tensor,
    target: Tensor,
    groups: Tensor,
    weighting: Weighting = "uniform",
    min_group_size: int = 2,
) -> tuple[Tensor, Tensor]:
    """Functional grouped AUC; see :class:`GroupedAUC` for the definition.

    Args:
        preds: scores, any shape (flattened); logits or probabilities (AUC only uses their order).
        target: labels in ``{0, 1}`` (int or bool), same shape as ``preds``.
        groups: integer group id per row (query/session id for QAUC, user id for GAUC), same shape;
            ids may be arbitrary (negative, huge, non-contiguous), rows of a group need not be adjacent.
        weighting: ``"uniform"``, ``"impressions"`` or ``"clicks"``.
        min_group_size: groups with fewer rows are skipped.

    Returns:
        ``(auc, num_valid_groups)``: float32 scalar (``nan`` when no group is valid) and int64 scalar.
        Per-group AUCs and their weighted mean are computed in float64 (float32 on MPS).

    Raises:
        ValueError: on mismatched shapes, ``target`` outside ``{0, 1}`` or ``nan`` in ``preds``.
    """
    _check_args(weighting, min_group_size)
    preds, target, groups = _format_inputs(preds, target, groups)
    return _grouped_auc_compute(preds, target, groups, weighting, min_group_size)


def per_group_auc(preds: Tensor, target: Tensor, groups: Tensor, min_group_size: int = 2) -> dict[str, Tensor]:
    """The AUC of every group (the building block of :func:`grouped_auc`, and of paired bootstraps that
    resample groups, ``lemur.metrics.bootstrap``).

    Returns a dict of ``[G]`` tensors over the distinct groups in ascending id order: ``group`` (the ids),
    ``auc`` (float64, float32 on MPS; ``nan`` where undefined), ``rows``, ``positives`` and ``valid``
    (both classes present and at least ``min_group_size`` rows).
    """
    _check_args("uniform", min_group_size)
    preds, target, groups = _format_inputs(preds, target, groups)
    device = preds.device
    n = preds.numel()
    fdtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return {"group": empty, "auc": empty.to(fdtype), "rows": empty, "positives": empty, "valid": empty.bool()}
    if bool(((target != 0) & (target != 1)).any()):
        raise ValueError("`target` must only contain values 0 and 1")
    if bool(torch.isnan(preds).any()):
        raise ValueError("`preds` contains nan; AUC is undefined")

    # Sort by (group, pred): stable sort by pred, then stable sort by group keeps pred order inside groups.
    order = torch.argsort(preds, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    g, p, t = groups[order], preds[order], target[order]

    idx = torch.arange(n, device=device)
    new_group = torch.ones(n, dtype=torch.bool, device=device)
    new_group[1:] = g[1:] != g[:-1]
    new_block = new_group.clone()  # a tie block = maximal run of equal preds inside one group
    new_block[1:] |= p[1:] != p[:-1]
    last_of_block = torch.ones(n, dtype=torch.bool, device=device)
    last_of_block[:-1] = new_block[1:]

    zero = torch.zeros((), dtype=torch.long, device=device)
    group_first = torch.cummax(torch.where(new_group, idx, zero), dim=0).values
    block_first = torch.cummax(torch.where(new_block, idx, zero), dim=0).values
    block_last = torch.cummin(torch.where(last_of_block, idx, torch.full_like(idx, n)).flip(0), dim=0).values.flip(0)
    # Twice the average 1-based rank within the group: (first + last) of the tie block, exact in int64.
    rank2 = (block_first - group_first + 1) + (block_last - group_first + 1)

    # Per-group segment sums via cumulative sums (deterministic on every backend, no atomics).
    starts = torch.nonzero(new_group).squeeze(1)
    ends = torch.cat([starts[1:], torch.tensor([n], device=device)])
    cs_pos = torch.cat([zero.view(1), torch.cumsum(t, 0)])
    cs_rank = torch.cat([zero.view(1), torch.cumsum(rank2 * t, 0)])
    n_rows = ends - starts
    n_pos = cs_pos[ends] - cs_pos[starts]
    n_neg = n_rows - n_pos
    sum_pos_rank2 = cs_rank[ends] - cs_rank[starts]

    valid = (n_pos > 0) & (n_neg > 0) & (n_rows >= min_group_size)
    # U / (n_pos * n_neg) with U = sum(pos ranks) - n_pos (n_pos + 1) / 2, everything doubled to stay integral.
    u2 = (sum_pos_rank2 - n_pos * (n_pos + 1)).to(fdtype)
    auc = torch.where(valid, u2 / (2 * n_pos * n_neg).clamp(min=1).to(fdtype), torch.full_like(u2, float("nan")))
    return {"group": g[starts], "auc": auc, "rows": n_rows, "positives": n_pos, "valid": valid}


def _grouped_auc_compute(
    preds: Tensor, target: Tensor, groups: Tensor, weighting: str, min_group_size: int
) -> tuple[Tensor, Tensor]:
    per = per_group_auc(preds, target, groups, min_group_size)
    valid = per["valid"]
    auc = per["auc"][valid]
    if weighting == "uniform":
        weights = torch.ones_like(auc)
    elif weighting == "impressions":
        weights = per["rows"][valid].to(auc.dtype)
    else:  # clicks
        weights = per["positives"][valid].to(auc.dtype)
    # Empty selection gives 0 / 0 = nan, as documented.
    value = (auc * weights).sum() / weights.sum()
    return value.float(), valid.sum()


class GroupedAUC(Metric):
    r"""ROC-AUC computed per group and averaged over groups (QAUC / GAUC).

    Use the query / session id as ``groups`` for **QAUC** and the user id for **GAUC**. For the global
    AUC over all rows use :class:`torchmetrics.classification.BinaryAUROC` (re-exported by
    :mod:`lemur.metrics`).

    For each group :math:`g` with :math:`P_g` positives and :math:`N_g` negatives,
    :math:`\mathrm{AUC}_g = (\sum_{i \in pos} r_i - P_g(P_g+1)/2) / (P_g N_g)` where :math:`r_i` is the
    1-based rank of row :math:`i` inside its group, tied scores receiving their average rank (this
    matches ``sklearn.metrics.roc_auc_score``, i.e. half credit for a tied positive/negative pair). The
    result is :math:`\sum_g w_g \mathrm{AUC}_g / \sum_g w_g` over the valid groups, with

    * ``weighting="uniform"``: :math:`w_g = 1`, plain mean over groups. **This is what the paper uses**
      for QAUC ("AUC per query, averaged"), hence the default.
    * ``weighting="impressions"``: :math:`w_g` = number of rows of the group (the common GAUC definition).
    * ``weighting="clicks"``: :math:`w_g = P_g`, number of positives of the group.

    **Skipped groups.** A group whose labels are all 0 or all 1 has no defined AUC; it is *excluded*
    (from both the numerator and the weights), never counted as 0, 0.5 or 1. Groups with fewer than
    ``min_group_size`` rows are excluded as well. If no group is valid (or nothing was ever updated),
    :meth:`compute` returns ``nan`` instead of raising. The number of groups actually used is available
    as :attr:`num_valid_groups` after :meth:`compute`, or together with the value via
    :meth:`compute_with_count`.

    **Inputs to** :meth:`update`: ``preds`` (float scores, logits or probabilities: AUC is rank-based so
    either gives the same result), ``target`` (int/bool in ``{0, 1}``) and ``groups`` (integer group
    ids; arbitrary int64, need not be contiguous nor sorted), all of the same shape (flattened).
    A group may be spread over several ``update`` calls and several processes: rows are accumulated in
    list states reduced with ``dist_reduce_fx="cat"``, so under DDP torchmetrics gathers all rows before
    :meth:`compute`. ``nan`` in ``preds`` raises ``ValueError`` at compute time.

    Args:
        weighting: how groups are averaged, see above.
        min_group_size: groups with fewer rows are skipped (a valid group has at least 2 rows anyway).
        kwargs: forwarded to :class:`torchmetrics.Metric` (``compute_on_cpu``, ``sync_on_compute``, ...).

    Example:
        >>> import torch
        >>> m = GroupedAUC()
        >>> m.update(torch.tensor([0.1, 0.9, 0.3, 0.2, 0.5]), torch.tensor([0, 1, 1, 0, 1]),
        ...          torch.tensor([7, 7, 3, 3, 42]))
        >>> m.compute()  # group 42 has a single class and is skipped
        tensor(1.)
        >>> m.num_valid_groups
        tensor(2)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    preds: list[Tensor]
    target: list[Tensor]
    groups: list[Tensor]

    def __init__(self, weighting: Weighting = "uniform", min_group_size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_args(weighting, min_group_size)
        self.weighting = weighting
        self.min_group_size = min_group_size
        self.num_valid_groups: Tensor | None = None
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, groups: Tensor) -> None:
        """Accumulate rows: ``preds`` scores, ``target`` labels in {0, 1}, ``groups`` integer group ids."""
        preds, target, groups = _format_inputs(preds, target, groups)
        self.preds.append(preds)
        self.target.append(target)
        self.groups.append(groups)

    def compute(self) -> Tensor:
        """Weighted mean of per-group AUCs (float32 scalar); ``nan`` if no group is valid.

        Also sets :attr:`num_valid_groups` (int64 scalar tensor).
        """
        if isinstance(self.preds, list) and len(self.preds) == 0:
            value = torch.tensor(float("nan"), device=self.device)
            self.num_valid_groups = torch.zeros((), dtype=torch.long, device=self.device)
            return value
        value, count = _grouped_auc_compute(
            dim_zero_cat(self.preds),
            dim_zero_cat(self.target),
            dim_zero_cat(self.groups),
            self.weighting,
            self.min_group_size,
        )
        self.num_valid_groups = count
        return value

    def compute_with_count(self) -> tuple[Tensor, Tensor]:
        """``(compute(), num_valid_groups)``; goes through :meth:`compute`, so it syncs under DDP."""
        value = self.compute()
        assert self.num_valid_groups is not None
        return value, self.num_valid_groups

    def reset(self) -> None:
        super().reset()
        self.num_valid_groups = None
