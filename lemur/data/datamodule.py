"""The LightningDataModule: a validated dataset folder -> batches of tensors.

Split is by day: the last ``test_days`` days are the test set, the ``val_days``
before them validation, everything earlier training. Text is tokenised once and
cached under ``<root>/.cache``; histories come from :class:`HistoryIndex`; images
are decoded in the loader workers. A batch is a dict:

=====================  ===============  ===========================================
key                    shape, dtype     meaning
=====================  ===============  ===========================================
label                  [B] float32      click
user_id, session_id    [B] int64        raw IDs (session = query group for QAUC/SQDC)
doc_index              [B] int64        dense document index 0..num_docs-1
doc_id                 [B] int64        the raw doc_id (for predictions and exports)
is_new_doc             [B] bool         document published on the row's day
doc_tokens/types/mask  [B, Td]          target document's fields (see tokenize.py)
query_tokens/mask      [B, Tq]          query
hist_long, _mask       [B, Ll]          dense indices of earlier clicks, most recent first
                                        (Ll <= long_len: columns that are padding in every row are cut)
hist_short, _mask      [B, Ls]          the first Ls of hist_long
cat                    [B, C] int64     ``cat_*`` context features
dense                  [B, F] float32   ``dense_*`` context features
doc_image, _mask       [B,3,S,S], [B]   cover image (only when ``image_size`` is set)
=====================  ===============  ===========================================
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from lemur.data.history import HistoryIndex
from lemur.data.schema import CAT_PREFIX, DENSE_PREFIX, DOCS_FILE, SchemaError, validate_dataset
from lemur.data.tokenize import (
    TokenizedText,
    TokenizerConfig,
    cached,
    load_tokenizer,
    tokenize_documents,
    tokenize_queries,
)

IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


@dataclass
class HistoryConfig:
    """Lengths of the history sequences built for every row."""

    short_len: int = 16
    """Most recent clicks in the short sequence (a paper gap; 16 by default)."""
    long_len: int = 128
    """Clicks in the long sequence (the paper goes up to 1,000)."""

    def __post_init__(self) -> None:
        if self.short_len < 0 or self.long_len < 0:
            raise ValueError(f"HistoryConfig: lengths must be >= 0, got short_len={self.short_len}, long_len={self.long_len}")
        if self.short_len > self.long_len:
            raise ValueError(f"HistoryConfig.short_len ({self.short_len}) must be <= long_len ({self.long_len})")


class _Split(Dataset):
    """Rows of one split. ``__getitems__`` builds a whole batch with array ops (PyTorch's
    DataLoader calls it with the batch's indices), so no per-row Python runs."""

    def __init__(self, store: "_Store", rows: np.ndarray) -> None:
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.store.batch(self.rows[np.asarray(indices, dtype=np.int64)])


class _Documents(Dataset):
    """Documents by dense index (for memory-bank warm start and refresh)."""

    def __init__(self, store: "_Store", docs: np.ndarray) -> None:
        self.store, self.docs = store, docs

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.store.documents(self.docs[np.asarray(indices, dtype=np.int64)])


def _first(batch):
    """collate_fn: the dataset already returns a collated batch."""
    return batch


@dataclass
class _Store:
    """Everything needed to build batches, shared by the splits (and forked into workers)."""

    docs: TokenizedText
    queries: TokenizedText
    query_index: np.ndarray
    doc_index: np.ndarray
    doc_ids: np.ndarray
    history: HistoryIndex
    history_config: HistoryConfig
    label: np.ndarray
    user_id: np.ndarray
    session_id: np.ndarray
    is_new_doc: np.ndarray
    cat: np.ndarray
    dense: np.ndarray
    images: pa.Array | None
    image_size: int | None

    def documents(self, doc: np.ndarray) -> dict[str, torch.Tensor]:
        """The document fields (``doc_index``, ``doc_tokens/types/mask``, images) of dense indices ``doc``."""
        width = max(int(self.docs.mask[doc].sum(1).max()), 1) if len(doc) else 1
        out = {
            "doc_index": torch.from_numpy(np.ascontiguousarray(doc, dtype=np.int64)),
            "doc_tokens": torch.from_numpy(self.docs.ids[doc, :width].astype(np.int64)),
            "doc_types": torch.from_numpy(self.docs.types[doc, :width].astype(np.int64)),
            "doc_mask": torch.from_numpy(self.docs.mask[doc, :width]),
        }
        if self.image_size:
            out["doc_image"], out["doc_image_mask"] = self._images(doc)
        return out

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        doc = self.doc_index[rows]
        qry = self.query_index[rows]
        q_width = max(int(self.queries.mask[qry].sum(1).max()), 1)
        long_items, long_mask = self.history.gather(rows, self.history_config.long_len)
        # Trim the all-padding tail shared by the whole batch (keep >= 1 column).
        width = max(int(long_mask.sum(1).max()), 1) if long_mask.shape[1] else 0
        long_items, long_mask = long_items[:, :width], long_mask[:, :width]
        s = min(self.history_config.short_len, width)
        out = {
            "label": torch.from_numpy(self.label[rows].astype(np.float32)),
            "user_id": torch.from_numpy(self.user_id[rows]),
            "session_id": torch.from_numpy(self.session_id[rows]),
            **self.documents(doc),
            "doc_id": torch.from_numpy(self.doc_ids[doc]),
            "is_new_doc": torch.from_numpy(self.is_new_doc[rows]),
            "query_tokens": torch.from_numpy(self.queries.ids[qry, :q_width].astype(np.int64)),
            "query_mask": torch.from_numpy(self.queries.mask[qry, :q_width]),
            "hist_long": torch.from_numpy(long_items),
            "hist_long_mask": torch.from_numpy(long_mask),
            "hist_short": torch.from_numpy(np.ascontiguousarray(long_items[:, :s])),
            "hist_short_mask": torch.from_numpy(np.ascontiguousarray(long_mask[:, :s])),
            "cat": torch.from_numpy(self.cat[rows]),
            "dense": torch.from_numpy(self.dense[rows]),
        }
        return out

    def _images(self, doc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode and resize the documents' covers; a missing or undecodable image is masked."""
        from PIL import Image, UnidentifiedImageError

        size = self.image_size
        pixels = np.zeros((len(doc), 3, size, size), np.float32)
        present = np.zeros(len(doc), bool)
        for i, d in enumerate(doc.tolist()):  # image decoding is inherently per image
            data = self.images[d].as_py() if self.images is not None else None
            if data is None:
                continue
            try:
                img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("RGB")
            except (UnidentifiedImageError, OSError):
                continue
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            pixels[i] = (np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0 - IMAGE_MEAN) / IMAGE_STD
            present[i] = True
        return torch.from_numpy(pixels), torch.from_numpy(present)


class LemurDataModule(L.LightningDataModule):
    """Loads ``root/docs.parquet`` + ``root/events.parquet`` (see :mod:`lemur.data.schema`).

    Args:
        root: dataset folder, e.g. made by ``lemur data synth --preset small --out data/synth-small``.
        batch_size: rows per batch (train; eval uses ``eval_batch_size``).
        num_workers: DataLoader worker processes (images are decoded there).
        val_days / test_days: how many final days are held out for validation / test.
        history: lengths of the short and long history sequences.
        tokenizer: tokenizer and per-field token budgets.
        image_size: decode cover images to this square size; None = no images in batches.
    """

    def __init__(
        self,
        root: str = "data/synth-small",
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        num_workers: int = 1,
        val_days: int = 1,
        test_days: int = 1,
        history: HistoryConfig = HistoryConfig(),
        tokenizer: TokenizerConfig = TokenizerConfig(),
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1), ("num_workers", num_workers, 0), ("val_days", val_days, 0), ("test_days", test_days, 0)):
            if value < low:
                raise ValueError(f"data.{name} must be >= {low}, got {value}")
        if image_size is not None and image_size < 8:
            raise ValueError(f"data.image_size must be >= 8 or null, got {image_size}")
        self.save_hyperparameters(ignore=["history", "tokenizer"])
        # Loggers record hparams_initial: store the dataclasses as plain dicts there too.
        self.save_hyperparameters({**self.hparams, "history": asdict(history), "tokenizer": asdict(tokenizer)})
        self.root = Path(root)
        self.history_config, self.tokenizer_config = history, tokenizer
        self.store: _Store | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.days: dict[str, list[int]] = {}

    # ---------------------------------------------------------------- set-up
    def setup(self, stage: str | None = None) -> None:
        if self.store is not None:
            return
        docs, events = validate_dataset(self.root)
        cfg = self.tokenizer_config
        doc_ids = docs["doc_id"].to_numpy()
        sorter = np.argsort(doc_ids)
        doc_index = sorter[np.searchsorted(doc_ids, events["doc_id"].to_numpy(), sorter=sorter)].astype(np.int64)

        tokenizer = None

        def tok():
            nonlocal tokenizer
            tokenizer = tokenizer or load_tokenizer(cfg)
            return tokenizer

        docs_file = self.root / DOCS_FILE
        stamp = {"file": str(docs_file.resolve()), "size": docs_file.stat().st_size, "mtime": docs_file.stat().st_mtime_ns, "tokenizer": cfg.resolved_path()}
        text = {f: [s or "" for s in docs[f].to_pylist()] if f in docs.column_names else None for f in cfg.fields}
        doc_tokens = cached(self.root / ".cache", "docs", {**stamp, "fields": cfg.fields},
                            lambda: tokenize_documents(tok(), {k: v for k, v in text.items() if v is not None} or {"_": [""] * len(doc_ids)}, cfg.fields))
        query_text, query_index = np.unique(np.asarray(events["query"].to_pylist(), dtype=object).astype(str), return_inverse=True)
        query_digest = hashlib.sha1("\n".join(query_text.tolist()).encode()).hexdigest()
        queries = cached(self.root / ".cache", "queries", {"tokenizer": cfg.resolved_path(), "queries": query_digest, "len": cfg.query_len},
                         lambda: tokenize_queries(tok(), query_text.tolist(), cfg.query_len))

        day = events["day"].to_numpy()
        publish = docs["publish_day"].to_numpy() if "publish_day" in docs.column_names else None
        is_new = (publish[doc_index] == day) if publish is not None else np.zeros(len(day), bool)
        cat_cols = sorted(c for c in events.column_names if c.startswith(CAT_PREFIX))
        dense_cols = sorted(c for c in events.column_names if c.startswith(DENSE_PREFIX))
        n = events.num_rows
        images = None
        if self.hparams.image_size:
            if "image" in docs.column_names:
                images = docs["image"].combine_chunks()
            elif "image_path" in docs.column_names:
                images = pa.array([str(self.root / p) if p else None for p in docs["image_path"].to_pylist()])
        self.store = _Store(
            docs=doc_tokens,
            queries=queries,
            query_index=query_index.astype(np.int64),
            doc_index=doc_index,
            doc_ids=doc_ids.astype(np.int64),
            history=HistoryIndex.build(events["user_id"].to_numpy(), events["timestamp"].to_numpy(), doc_index, events["label"].to_numpy()),
            history_config=self.history_config,
            label=events["label"].to_numpy(),
            user_id=events["user_id"].to_numpy().astype(np.int64),
            session_id=events["session_id"].to_numpy().astype(np.int64),
            is_new_doc=is_new,
            cat=np.stack([events[c].to_numpy().astype(np.int64) for c in cat_cols], 1) if cat_cols else np.zeros((n, 0), np.int64),
            dense=np.stack([events[c].to_numpy().astype(np.float32) for c in dense_cols], 1) if dense_cols else np.zeros((n, 0), np.float32),
            images=images,
            image_size=self.hparams.image_size,
        )
        self.cat_columns, self.dense_columns = cat_cols, dense_cols
        self.cat_cardinality = [int(self.store.cat[:, i].max()) + 1 for i in range(len(cat_cols))]
        self.num_docs = len(doc_ids)
        self._split_by_day(day)

    def _split_by_day(self, day: np.ndarray) -> None:
        days = np.unique(day)
        n_val, n_test = self.hparams.val_days, self.hparams.test_days
        if len(days) <= n_val + n_test:
            raise SchemaError(self.root / "events.parquet", "day",
                              f"only {len(days)} distinct days ({days.tolist()}): need more than val_days + test_days = {n_val + n_test} to keep a training split")
        self.days = {
            "train": days[: len(days) - n_val - n_test].tolist(),
            "val": days[len(days) - n_val - n_test: len(days) - n_test].tolist(),
            "test": days[len(days) - n_test:].tolist(),
        }
        self.splits = {k: np.flatnonzero(np.isin(day, v)) for k, v in self.days.items()}

    # ---------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rows = self.splits[split]
        workers = min(self.hparams.num_workers, os.cpu_count() or 1)
        return DataLoader(
            _Split(self.store, rows),
            batch_size=self.hparams.batch_size if shuffle else self.hparams.eval_batch_size,
            shuffle=shuffle,
            drop_last=False,
            collate_fn=_first,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def document_dataloader(self, doc_index: np.ndarray | None = None, batch_size: int = 512) -> DataLoader:
        """Batches of document fields (see ``_Store.documents``) for ``doc_index`` (dense indices;
        default: every document), in order: what warm-starting or refreshing a memory bank encodes."""
        if self.store is None:
            self.setup("fit")
        docs = np.arange(self.num_docs, dtype=np.int64) if doc_index is None else np.asarray(doc_index, dtype=np.int64)
        workers = min(self.hparams.num_workers, os.cpu_count() or 1)
        return DataLoader(_Documents(self.store, docs), batch_size=batch_size, shuffle=False, collate_fn=_first, num_workers=workers)

    # ---------------------------------------------------------------- facts for the model
    def describe(self) -> dict:
        """Sizes the model may check itself against (rows per split, days, feature columns)."""
        return {
            "num_docs": self.num_docs,
            "rows": {k: int(len(v)) for k, v in self.splits.items()},
            "days": self.days,
            "cat_columns": self.cat_columns,
            "cat_cardinality": self.cat_cardinality,
            "dense_columns": self.dense_columns,
        }
