from lemur.losses import AuxiliaryLoss


class DocNormLoss(AuxiliaryLoss):
    """Keeps document vectors near unit norm. forward(ranker, batch, content) -> [] (a scalar)."""

    def validate(self, ranker, key):
        if ranker.doc_encoder is None:
            raise ValueError(f"{key}: DocNormLoss needs model.doc_encoder")

    def forward(self, ranker, batch, content):
        return (content["doc"].norm(dim=-1) - 1).pow(2).mean()
