"""GroupedAUC (QAUC / GAUC) against a per-group scikit-learn loop, plus the BinaryAUROC re-export."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import roc_auc_score

from lemur.metrics import BinaryAUROC, GroupedAUC, grouped_auc

WEIGHTINGS = ("uniform", "impressions", "clicks")


def reference(preds, target, groups, weighting="uniform", min_group_size=2):
    """Per-group sklearn AUC in a Python loop; single-class / small groups skipped."""
    preds, target, groups = (np.asarray(x) for x in (preds, target, groups))
    aucs, weights = [], []
    for g in np.unique(groups):
        m = groups == g
        y = target[m]
        if m.sum() < min_group_size or y.min() == y.max():
            continue
        aucs.append(roc_auc_score(y, preds[m]))
        weights.append({"uniform": 1.0, "impressions": float(m.sum()), "clicks": float(y.sum())}[weighting])
    if not aucs:
        return float("nan"), 0
    return float(np.average(aucs, weights=weights)), len(aucs)


def make_data(seed: int, n: int = 3000, n_groups: int = 300):
    """Random rows with heavy ties, shuffled non-contiguous int64 ids and many single-class groups."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(-(2**62), 2**62, (n_groups,), generator=gen, dtype=torch.long)
    groups = ids[torch.randint(0, n_groups, (n,), generator=gen)]
    # group-specific base rate: some groups mostly 0, some mostly 1 -> single-class groups happen
    rate = torch.rand(n_groups, generator=gen)[torch.searchsorted(ids.sort().values, groups)]
    target = (torch.rand(n, generator=gen) < rate).long()
    noise = torch.randn(n, generator=gen)
    preds = torch.sigmoid(noise + 0.8 * target).mul(10).round().div(10)  # 1 decimal -> many ties
    return preds, target, groups


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_per_group(weighting, seed):
    preds, target, groups = make_data(seed)
    expected, n_expected = reference(preds, target, groups, weighting)

    m = GroupedAUC(weighting=weighting)
    m.update(preds, target, groups)
    value, count = m.compute_with_count()

    assert value.shape == () and value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert int(count) == n_expected == int(m.num_valid_groups)
    # there really were single-class groups to skip, and ties
    assert n_expected < torch.unique(groups).numel()
    assert torch.unique(preds).numel() < 15

    fvalue, fcount = grouped_auc(preds, target, groups, weighting=weighting)
    assert fvalue.item() == pytest.approx(expected, abs=1e-6) and int(fcount) == n_expected


def test_exact_values_with_ties_and_skips():
    # group 10: pos scores {0.5, 0.9}, neg {0.5, 0.1} -> pairs: (0.5 vs 0.5) tie=0.5, others 1 -> 3.5/4
    # group -3: all positive -> skipped; group 2**40: all negative -> skipped; group 7: perfect inverse -> 0
    preds = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.3, 0.4, 0.2, 0.2, 0.8, 0.1])
    target = torch.tensor([1, 1, 0, 0, 1, 1, 0, 0, 0, 1])
    groups = torch.tensor([10, 10, 10, 10, -3, -3, 2**40, 2**40, 7, 7])
    assert grouped_auc(preds, target, groups)[0].item() == pytest.approx((0.875 + 0.0) / 2)
    assert grouped_auc(preds, target, groups)[1].item() == 2
    # impressions: (4 * 0.875 + 2 * 0) / 6 ; clicks: (2 * 0.875 + 1 * 0) / 3
    assert grouped_auc(preds, target, groups, "impressions")[0].item() == pytest.approx(3.5 / 6)
    assert grouped_auc(preds, target, groups, "clicks")[0].item() == pytest.approx(1.75 / 3)


def test_all_tied_group_is_half():
    preds = torch.full((6,), 0.3)
    target = torch.tensor([1, 0, 0, 1, 1, 0])
    groups = torch.zeros(6, dtype=torch.long)
    assert grouped_auc(preds, target, groups)[0].item() == pytest.approx(0.5)


def test_logits_and_probabilities_agree():
    preds, target, groups = make_data(3)
    logits = torch.logit(preds.clamp(0.01, 0.99))
    assert grouped_auc(logits, target, groups)[0].item() == pytest.approx(
        grouped_auc(preds.clamp(0.01, 0.99), target, groups)[0].item(), abs=1e-7
    )


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_batched_updates_equal_single_update(weighting):
    preds, target, groups = make_data(4)
    whole = GroupedAUC(weighting=weighting)
    whole.update(preds, target, groups)

    batched = GroupedAUC(weighting=weighting)
    # uneven batches; groups are split across batches since rows are not grouped
    for chunk in torch.tensor_split(torch.arange(preds.numel()), [1, 250, 251, 1700]):
        batched.update(preds[chunk], target[chunk], groups[chunk])
    assert batched.compute().item() == pytest.approx(whole.compute().item(), abs=1e-7)
    assert int(batched.num_valid_groups) == int(whole.num_valid_groups)


def test_merge_state_equals_single_update():
    """The ``cat`` reduction torchmetrics applies across DDP ranks, done locally via merge_state."""
    preds, target, groups = make_data(5)
    half = preds.numel() // 2
    a, b = GroupedAUC(weighting="impressions"), GroupedAUC(weighting="impressions")
    a.update(preds[:half], target[:half], groups[:half])
    b.update(preds[half:], target[half:], groups[half:])
    a.merge_state(b)
    expected, n_expected = reference(preds, target, groups, "impressions")
    assert a.compute().item() == pytest.approx(expected, abs=1e-6)
    assert int(a.num_valid_groups) == n_expected


def test_forward_returns_batch_value_and_accumulates():
    preds, target, groups = make_data(6)
    m = GroupedAUC()
    first = m(preds[:1500], target[:1500], groups[:1500])
    assert first.item() == pytest.approx(reference(preds[:1500], target[:1500], groups[:1500])[0], abs=1e-6)
    m(preds[1500:], target[1500:], groups[1500:])
    assert m.compute().item() == pytest.approx(reference(preds, target, groups)[0], abs=1e-6)


def test_min_group_size():
    preds, target, groups = make_data(7, n=2000, n_groups=400)
    for k in (2, 5, 9):
        expected, n_expected = reference(preds, target, groups, "uniform", min_group_size=k)
        m = GroupedAUC(min_group_size=k)
        m.update(preds, target, groups)
        value, count = m.compute_with_count()
        assert value.item() == pytest.approx(expected, abs=1e-6) and int(count) == n_expected


def test_all_groups_invalid_gives_nan():
    preds = torch.tensor([0.1, 0.7, 0.4, 0.2, 0.9])
    target = torch.tensor([1, 1, 0, 0, 1])
    groups = torch.tensor([1, 1, 2, 2, 3])  # every group has a single class
    m = GroupedAUC()
    m.update(preds, target, groups)
    value, count = m.compute_with_count()
    assert math.isnan(value.item()) and int(count) == 0
    # min_group_size larger than every group: also nan
    m = GroupedAUC(min_group_size=10)
    m.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]), torch.tensor([5, 5]))
    assert math.isnan(m.compute().item())


def test_empty_gives_nan_and_reset():
    m = GroupedAUC()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(m.compute().item())
    assert int(m.num_valid_groups) == 0
    m.update(torch.tensor([0.2, 0.8]), torch.tensor([0, 1]), torch.tensor([1, 1]))
    assert m.compute().item() == 1.0 and int(m.num_valid_groups) == 1
    m.reset()
    assert m.num_valid_groups is None
    assert math.isnan(
        grouped_auc(torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))[0]
    )


def test_accepts_bool_target_and_2d_inputs():
    preds, target, groups = make_data(8, n=1000, n_groups=50)
    expected = reference(preds, target, groups)[0]
    value = grouped_auc(preds.view(10, 100), target.bool().view(10, 100), groups.int().view(10, 100))[0]
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_input_validation():
    p, t, g = torch.rand(4), torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 2, 2])
    with pytest.raises(ValueError, match="weighting"):
        GroupedAUC(weighting="users")
    with pytest.raises(ValueError, match="min_group_size"):
        GroupedAUC(min_group_size=0)
    with pytest.raises(ValueError, match="same shape"):
        GroupedAUC().update(p, t, g[:3])
    with pytest.raises(TypeError, match="groups"):
        GroupedAUC().update(p, t, g.float())
    with pytest.raises(TypeError, match="target"):
        GroupedAUC().update(p, t.float(), g)
    with pytest.raises(ValueError, match="0 and 1"):
        grouped_auc(p, torch.tensor([0, 2, 0, 1]), g)
    with pytest.raises(ValueError, match="nan"):
        grouped_auc(torch.tensor([0.1, float("nan"), 0.3, 0.4]), t, g)


def test_large_number_of_groups_is_fast_and_correct():
    """~5*10^4 groups, 4*10^5 rows: vectorised path, checked against a numpy reference on a subset."""
    gen = torch.Generator().manual_seed(9)
    n, n_groups = 400_000, 50_000
    groups = torch.randint(0, n_groups, (n,), generator=gen) * 7919 + 3
    target = (torch.rand(n, generator=gen) < 0.3).long()
    preds = (torch.randn(n, generator=gen) + target).mul(10).round()
    value, count = grouped_auc(preds, target, groups, "impressions")
    sel = torch.isin(groups, torch.unique(groups)[:300])
    # subset check: compute the metric restricted to 300 groups both ways
    expected, n_expected = reference(preds[sel], target[sel], groups[sel], "impressions")
    sub_value, sub_count = grouped_auc(preds[sel], target[sel], groups[sel], "impressions")
    assert sub_value.item() == pytest.approx(expected, abs=1e-6) and int(sub_count) == n_expected
    assert 0.5 < value.item() < 1.0 and 40_000 < int(count) <= n_groups


def test_binary_auroc_reexport_matches_sklearn():
    from torchmetrics.classification import BinaryAUROC as TMBinaryAUROC

    assert BinaryAUROC is TMBinaryAUROC
    preds, target, _ = make_data(10)
    m = BinaryAUROC()
    m.update(preds[:1000], target[:1000])
    m.update(preds[1000:], target[1000:])
    assert m.compute().item() == pytest.approx(roc_auc_score(target.numpy(), preds.numpy()), abs=1e-6)


# ----------------------------------------------------------------------------------------------------
# Real 2-process DDP sync (gloo, CPU): each rank sees different rows, groups split across ranks.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, results) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        preds, target, groups = make_data(11)
        m = GroupedAUC(weighting="clicks")
        rows = torch.arange(preds.numel())[rank::world_size]
        if rank == 0:  # uneven number of updates / rows per rank
            m.update(preds[rows[:10]], target[rows[:10]], groups[rows[:10]])
            rows = rows[10:]
        m.update(preds[rows], target[rows], groups[rows])
        value, count = m.compute_with_count()
        results[rank] = (value.item(), int(count))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~8 s: spawns 2 fresh interpreters
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_sync_gathers_all_rows():
    world_size = 2
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(world_size, _free_port(), results), nprocs=world_size, join=True)
    expected, n_expected = reference(*make_data(11), weighting="clicks")
    for rank in range(world_size):
        assert results[rank][0] == pytest.approx(expected, abs=1e-6)
        assert results[rank][1] == n_expected
