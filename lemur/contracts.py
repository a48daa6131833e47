"""Slot contracts checked where a component's output enters the ranker.

A user's component that returns the wrong shape would otherwise fail several calls later, inside
``torch.stack`` or the backbone, with a message that names neither the component nor its recipe
key. ``check_output`` compares the shape (metadata only: no device sync, so it runs every step)
and names both::

    model.long_history (myplug.decoders.MaxPoolDecoder) returned [64, 22, 64]; a SequenceDecoder
    returns [B, out_dim] = [64, 64]
"""

from __future__ import annotations

import torch
from torch import nn


class ContractError(ValueError):
    """A component's output does not match its slot's contract (shape or dtype)."""


def class_path(module: object) -> str:
    kind = type(module)
    return f"{kind.__module__}.{kind.__qualname__}"


def _shape(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_output(
    out: object, key: str, module: nn.Module, slot: str, want: tuple[int, ...], named: str, floating: bool = True
) -> torch.Tensor:
    """``out`` if it is a tensor of shape ``want`` (floating point when ``floating``), else a ContractError:
    ``"<key> (<class path>) returned <shape>; a <slot> returns <named> = <want>"``."""
    head = f"{key} ({class_path(module)})"
    expected = f"a {slot} returns {named} = {_shape(want)}"
    if not isinstance(out, torch.Tensor):
        raise ContractError(f"{head} returned a {type(out).__name__}, not a tensor; {expected}")
    if tuple(out.shape) != tuple(want):
        raise ContractError(f"{head} returned {_shape(out.shape)}; {expected}")
    if floating and not out.is_floating_point():
        raise ContractError(f"{head} returned {out.dtype} values; {expected} of floating point values")
    return out


def check_vocabulary(module: nn.Module, key: str, vocab_size: int) -> None:
    """A text encoder that exposes ``vocab_size`` must cover every id of the tokenizer's vocabulary."""
    size = getattr(module, "vocab_size", None)
    if isinstance(size, int) and size < vocab_size:
        raise ContractError(
            f"{key} ({class_path(module)}) has vocab_size={size}, but the tokenizer (data.tokenizer) has "
            f"{vocab_size} token ids: token ids >= {size} would index past its embedding table. Leave "
            f"vocab_size unset in the recipe (lemur fills in the tokenizer's size) or set it to {vocab_size}"
        )
