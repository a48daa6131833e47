import torch

from lemur.sequence import SequenceDecoder


class MaxPoolDecoder(SequenceDecoder):
    """Masked max over history items. forward(query [B,D], items [B,L,D], mask [B,L]) -> [B,D]."""

    uses_query = False  # it ignores `query`: the ranker then builds no global token (unused parameters break DDP)

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, query, items, mask):
        filled = items.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return torch.where(mask.any(1, keepdim=True), filled, torch.zeros_like(filled))
