"""Count what a model costs: parameters by component and FLOPs per row of a training step.

Two functions, used by ``benchmarks/sampling_flops.py`` and by anything that reports the
cost of a recipe next to its metrics::

    from lemur.profiling import count_flops_per_row, count_params
    count_params(model)                     # {"ids": 4.5e6, "doc_encoder": ..., "total": ..., "trainable": ...}
    count_flops_per_row(model, batch)       # {"forward": ..., "backward": ..., "total": ...,
                                            #  "forward_by_component": {...}}

FLOPs are *counted* with :class:`torch.utils.flop_counter.FlopCounterMode`: matrix products
(``mm``/``addmm``/``bmm``), convolutions and attention (one multiply-add = 2 FLOPs). Element-wise
ops, norms, softmax, embedding lookups and the optimizer step are not counted (they are a small
share of the arithmetic, not of the time). PyTorch's counter has no formula for the CPU attention
kernel (``_scaled_dot_product_flash_attention_for_cpu``); this module adds it, so the count is the
same on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


EXTRA_FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}
"""Formulas PyTorch's ``FlopCounterMode`` lacks (passed as its ``custom_mapping``)."""


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts the CPU attention kernel."""
    return FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameters of each direct child module of ``model``, plus ``total`` and ``trainable``.

    Children without parameters are left out; parameters registered on ``model`` itself are
    ``"(own)"``. Shared parameters are counted once (in the first child that holds them).
    Memory-bank entries are not parameters (see ``bytes per entry`` in ``benchmarks/bank_ops.py``).
    """
    seen: set[int] = set()
    out: dict[str, int] = {}
    for name, child in model.named_children():
        n = 0
        for p in child.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        if n:
            out[name] = n
    own = sum(p.numel() for p in model.parameters(recurse=False) if id(p) not in seen)
    if own:
        out["(own)"] = own
    out["total"] = sum(p.numel() for p in model.parameters())
    out["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return out


def _default_step(model: nn.Module, batch, index: int) -> torch.Tensor:
    out = model.training_step(batch, index)
    return out["loss"] if isinstance(out, dict) else out


def _rows(batch) -> int:
    if isinstance(batch, dict):
        batch = batch.get("label", next(iter(batch.values())))
    return int(batch.shape[0])


def count_flops_per_row(
    model: nn.Module,
    batch,
    steps: int = 1,
    step: Callable[[nn.Module, object, int], torch.Tensor] | None = None,
    warm_bank: bool = True,
) -> dict:
    """FLOPs per row of one training step (forward + backward), averaged over ``steps`` calls.

    Args:
        model: in training mode; for a ``LightningModule`` the default ``step`` calls
            ``model.training_step(batch, i)`` (which returns the loss, or a dict with ``loss``).
        batch: what ``step`` takes; rows = ``len(batch["label"])`` for a dict batch, else ``len(batch)``.
        steps: how many steps to count and average. Row sampling (``LemurRanker.sampling``
            p/q < 1) draws random rows every step, so its FLOPs vary from step to step.
        step: ``step(model, batch, i) -> loss``; the backward is ``loss.backward()``.
        warm_bank: if ``model.memory_bank`` exists, first mark the batch's target documents as
            written (random vectors), so sampling takes effect: a document the bank has never
            seen is always encoded, whatever p is.

    Returns a dict of floats per row (``rows``, ``steps`` and ``per_step_total`` aside):
    ``forward``, ``backward``, ``total``, ``forward_by_component`` (FLOPs of the forward inside
    each direct child module, e.g. ``doc_encoder``, ``backbone``; ``other`` = outside any
    child), and ``per_step_total`` (total per row of each counted step, to show the spread).
    The backward is only given in total: autograd interleaves the children's backward ops,
    so PyTorch's per-module split of the backward is not reliable.

    The model is left as it was: parameters untouched (no optimizer step), gradients and the
    memory bank's state restored afterwards.
    """
    if steps < 1:
        raise ValueError(f"count_flops_per_row: steps must be >= 1, got {steps}")
    step = step or _default_step
    rows = _rows(batch)
    grads = {p: p.grad for p in model.parameters()}
    bank = getattr(model, "memory_bank", None)
    saved = {k: v.clone() for k, v in bank.state_dict().items()} if bank is not None else None
    children = dict(model.named_children())
    by_component = dict.fromkeys(children, 0)
    active: list[str] = []
    hooks = []
    counter: FlopCounterMode | None = None

    def enter(name):
        def hook(module, args):
            active.append((name, counter.get_total_flops()) if counter is not None else (name, 0))

        return hook

    def leave(name):
        def hook(module, args, output):
            top, start = active.pop()
            if not active and counter is not None:  # outermost child only: nested calls are inside it
                by_component[top] += counter.get_total_flops() - start

        return hook

    for name, child in children.items():
        hooks += [child.register_forward_pre_hook(enter(name)), child.register_forward_hook(leave(name))]
    forward = backward = 0
    per_step = []
    try:
        if bank is not None and warm_bank and isinstance(batch, dict) and "doc_index" in batch:
            docs = torch.unique(batch["doc_index"]).to(bank.table.device)
            fresh = docs[~bank.written(docs)]
            if len(fresh):
                bank.write(fresh, torch.randn(len(fresh), bank.dim, device=bank.table.device), step=0)
        for i in range(steps):
            counter = flop_counter()
            with counter:
                loss = step(model, batch, i)
            f = counter.get_total_flops()
            counter = None
            with flop_counter() as back:
                loss.backward()
            b = back.get_total_flops()
            forward, backward = forward + f, backward + b
            per_step.append((f + b) / rows)
            for p in model.parameters():
                p.grad = None
    finally:
        for h in hooks:
            h.remove()
        for p, g in grads.items():
            p.grad = g
        if bank is not None:
            bank.load_state_dict(saved)
    n = steps * rows
    forward_by_component = {k: v / n for k, v in by_component.items() if v}
    forward_by_component["other"] = max(forward / n - sum(forward_by_component.values()), 0.0)
    return {
        "rows": rows,
        "steps": steps,
        "forward": forward / n,
        "backward": backward / n,
        "total": (forward + backward) / n,
        "forward_by_component": forward_by_component,
        "per_step_total": per_step,
    }
