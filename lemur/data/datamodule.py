"""The LightningDataModule: a validated dataset folder -> batches of tensors.

Split is by day: the last ``test_days`` days are the test set, the ``val_days``
before them validation, everything earlier training. ``cold_docs`` > 0 also holds out
that share of the documents as cold-start ones (their rows before the test days are
dropped, histories included; :func:`cold_documents`). Text is tokenised once and
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
doc_image_status       [B] int8         0 = decoded or no image, 1 = undecodable bytes,
                                        2 = image file missing (1 and 2 are masked, counted)
=====================  ===============  ===========================================

Resuming: the training order of epoch ``e`` is a permutation drawn from ``(seed, e)``
(:class:`ResumableSampler`), and the DataModule's ``state_dict`` (saved in every checkpoint)
records the epoch and how many batches of it were trained, so a run resumed from a
mid-epoch checkpoint continues with exactly the batches an uninterrupted run would see.
Evaluation loaders draw no numbers from the global RNG, so validation does not shift the
random stream of training (dropout, p/q sampling).

Bad content is skipped, counted and logged rather than fatal: an undecodable image or a
missing image file makes that document image-less (``data/images_skipped`` in the logs and
MLflow, a warning naming the first one); a text value longer than ``MAX_CHARS_PER_TOKEN``
characters per token of its budget is cut before tokenisation (counted at set-up).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

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
MAX_CHARS_PER_TOKEN = 64
"""Text values are cut to this many characters per token of their field's budget before
tokenisation (a WordPiece token is rarely longer than a word): bounds the cost of huge fields."""
IMAGE_OK, IMAGE_BROKEN, IMAGE_MISSING = 0, 1, 2


@dataclass
class HistoryConfig:
    """Lengths of the history sequences built for every row."""

    short_len: int = 16
    """Most recent clicks in the short sequence (a paper gap; 16 by default)."""
    long_len: int = 128
    """Clicks in the long sequence (the paper goes up to 1,000)."""
    impressions_len: int = 0
    """Most recent earlier *impressions* (clicked or not) in a third sequence, with their labels: batch
    keys ``hist_imp``, ``hist_imp_label`` (1 = clicked) and ``hist_imp_mask``. Not in the LEMUR paper;
    read by a plug-in such as ``lemur.contrib.ImpressionHistoryToken``. 0 = not built."""

    def __post_init__(self) -> None:
        if self.short_len < 0 or self.long_len < 0 or self.impressions_len < 0:
            raise ValueError(
                f"HistoryConfig: lengths must be >= 0, got short_len={self.short_len}, long_len={self.long_len}, "
                f"impressions_len={self.impressions_len}"
            )
        if self.short_len > self.long_len:
            raise ValueError(f"HistoryConfig.short_len ({self.short_len}) must be <= long_len ({self.long_len})")


class ResumableSampler(DistributedSampler):
    """The training order: epoch ``e`` is a permutation seeded by ``seed + e`` and split across
    ``num_replicas`` ranks exactly like ``DistributedSampler`` (one replica on one device).

    ``start_at(epoch, batches_done)`` makes the next pass skip the rows of the batches this rank
    has already trained on, so a resumed run continues the interrupted epoch with the same
    batches; ``len()`` stays the full epoch (Lightning counts the batches already done).
    ``epoch_source`` (the trainer's ``current_epoch``) numbers the later passes: the value
    Lightning passes to ``set_epoch`` runs one ahead after resuming from an end-of-epoch checkpoint.
    """

    def __init__(
        self, dataset: Dataset, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0, epoch_source=None
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.epoch_source = epoch_source
        self._pinned: tuple[int, int] | None = None

    def start_at(self, epoch: int, batches_done: int) -> None:
        self._pinned = (epoch, batches_done * self.batch_size)
        self.epoch = epoch

    def __iter__(self):
        skip = 0
        if self._pinned is not None:
            (self.epoch, skip), self._pinned = self._pinned, None
        elif self.epoch_source is not None:
            self.epoch = int(self.epoch_source())
        indices = list(super().__iter__())
        return iter(indices[skip:])


class _Split(Dataset):
    """Rows of one split. ``__getitems__`` builds a whole batch with array ops (PyTorch's
    DataLoader calls it with the batch's indices), so no per-row Python runs."""

    def __init__(self, store: _Store, rows: np.ndarray) -> None:
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.store.batch(self.rows[np.asarray(indices, dtype=np.int64)])


class _Documents(Dataset):
    """Documents by dense index (for memory-bank warm start and refresh)."""

    def __init__(self, store: _Store, docs: np.ndarray) -> None:
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
    impressions: HistoryIndex | None
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
            out["doc_image"], out["doc_image_mask"], out["doc_image_status"] = self._images(doc)
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
        if self.impressions is not None:
            items, mask = self.impressions.gather(rows, self.history_config.impressions_len)
            labels = self.impressions.gather_labels(rows, self.history_config.impressions_len)
            width = max(int(mask.sum(1).max()), 1) if mask.shape[1] else 0
            out["hist_imp"] = torch.from_numpy(np.ascontiguousarray(items[:, :width]))
            out["hist_imp_label"] = torch.from_numpy(np.ascontiguousarray(labels[:, :width]))
            out["hist_imp_mask"] = torch.from_numpy(np.ascontiguousarray(mask[:, :width]))
        return out

    def _images(self, doc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode and resize the documents' covers: ``(pixels, present, status)``. A missing file
        or undecodable bytes (any decoder error: truncated, not an image, decompression bomb...)
        is masked like a document without an image and flagged in ``status`` for counting."""
        from PIL import Image

        size = self.image_size
        pixels = np.zeros((len(doc), 3, size, size), np.float32)
        present = np.zeros(len(doc), bool)
        status = np.full(len(doc), IMAGE_OK, np.int8)
        for i, d in enumerate(doc.tolist()):  # image decoding is inherently per image
            data = self.images[d].as_py() if self.images is not None else None
            if data is None:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("RGB")
                    if img.size != (size, size):
                        img = img.resize((size, size), Image.BILINEAR)
            except FileNotFoundError:
                status[i] = IMAGE_MISSING
                continue
            except Exception:  # noqa: BLE001 - whatever the decoder raises, the document goes on without its image
                status[i] = IMAGE_BROKEN
                continue
            pixels[i] = (np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0 - IMAGE_MEAN) / IMAGE_STD
            present[i] = True
        return torch.from_numpy(pixels), torch.from_numpy(present), torch.from_numpy(status)


def cold_documents(
    doc_id: np.ndarray, day: np.ndarray, test_days: int, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cold-start documents for an evaluation: ``round(share * n)`` of the ``n`` documents with a row before
    the last ``test_days`` days, drawn without replacement by ``numpy.random.default_rng(seed)`` from their
    sorted IDs. Returns the held-out IDs (sorted) and the rows to keep: all but the held-out documents' rows
    before the test days. ``LemurDataModule(cold_docs=...)`` and the MovieLens benchmark's baselines both
    call it, so they hold out the same documents."""
    days = np.unique(day)
    if not 0.0 <= share < 1.0:
        raise ValueError(f"cold_docs must be in [0, 1), got {share}")
    if len(days) <= test_days:
        raise ValueError(f"{len(days)} distinct days: need more than test_days = {test_days}")
    before = day < days[len(days) - test_days]
    candidates = np.unique(doc_id[before])
    held = np.sort(np.random.default_rng(seed).choice(candidates, int(round(share * len(candidates))), replace=False))
    return held, ~(before & np.isin(doc_id, held))


class LemurDataModule(L.LightningDataModule):
    """Loads ``root/docs.parquet`` + ``root/events.parquet`` (see :mod:`lemur.data.schema`).

    Args:
        root: dataset folder, e.g. made by ``lemur data synth --preset small --out data/synth-small``.
        batch_size: rows per batch (train; eval uses ``eval_batch_size``).
        num_workers: DataLoader worker processes (images are decoded there).
        val_days / test_days: how many final days are held out for validation / test.
        history: lengths of the short and long history sequences (and of the optional impression sequence).
        tokenizer: tokenizer and per-field token budgets.
        image_size: decode cover images to this square size; None = no images in batches.
        cold_docs: share of the documents rated before the test days held out as cold-start documents: their
            rows before the test days are dropped (from training, validation and every history), so the test
            scores them as documents no ID has seen. 0 = the plain split by day. The documents are drawn by
            :func:`cold_documents` with ``cold_docs_seed``, not the run's seed: every run of a comparison holds
            out the same ones.
        cold_docs_seed: the draw of ``cold_docs``.
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
        cold_docs: float = 0.0,
        cold_docs_seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
            ("val_days", val_days, 0),
            ("test_days", test_days, 0),
        ):
            if value < low:
                raise ValueError(f"data.{name} must be >= {low}, got {value}")
        if not 0.0 <= cold_docs < 1.0:
            raise ValueError(f"data.cold_docs must be in [0, 1), got {cold_docs}")
        if image_size is not None and image_size < 8:
            raise ValueError(f"data.image_size must be >= 8 or null, got {image_size}")
        self.save_hyperparameters(ignore=["history", "tokenizer"])
        # Loggers record hparams_initial: store the dataclasses as plain dicts there too.
        self.save_hyperparameters({**self.hparams, "history": asdict(history), "tokenizer": asdict(tokenizer)})
        self.root = Path(root)
        self.history_config, self.tokenizer_config = history, tokenizer
        self.data_issues: dict[str, int] = {}
        """Counts of skipped or cut input, e.g. ``images_skipped``, ``text_values_cut`` (logged as ``data/<name>``)."""
        self._broken_docs: set[int] = set()
        self._logged_step = -1
        self._resume: dict | None = None
        self._train_sampler: ResumableSampler | None = None
        self.shuffle_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # what seed_everything set; 0 otherwise
        self.store: _Store | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.days: dict[str, list[int]] = {}
        self._vocab_size: int | None = None
        self._tokenizer = None  # after setup: loads the tokenizer on demand (a valid token cache needs none)

    @property
    def vocab_size(self) -> int | None:
        """The tokenizer's number of token ids (after ``setup``): the text encoders' embedding tables must cover
        it (``LemurRanker.setup`` checks). None before ``setup``, or when the tokenizer no longer loads and its
        tokens come from the cache. Loaded on first use, so a run whose tokens are cached does not load it
        unless something asks."""
        if self._vocab_size is None and self._tokenizer is not None:
            try:
                self._vocab_size = len(self._tokenizer())
            except ValueError:
                self._tokenizer = None
        return self._vocab_size

    # ---------------------------------------------------------------- set-up
    def setup(self, stage: str | None = None) -> None:
        if self.store is not None:
            return
        docs, events = validate_dataset(self.root)
        all_days = np.unique(events["day"].to_numpy())
        self.cold_doc_ids = np.zeros(0, np.int64)
        if self.hparams.cold_docs > 0 and len(all_days) > self.hparams.val_days + self.hparams.test_days:
            self.cold_doc_ids, keep = cold_documents(
                events["doc_id"].to_numpy(),
                events["day"].to_numpy(),
                self.hparams.test_days,
                self.hparams.cold_docs,
                self.hparams.cold_docs_seed,
            )
            rank_zero_info(
                f"data.cold_docs={self.hparams.cold_docs}: {len(self.cold_doc_ids)} documents held out as cold-start, "
                f"{int((~keep).sum())} of their rows before the test days dropped"
            )
            events = events.filter(pa.array(keep))
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
        stamp = {
            "file": str(docs_file.resolve()),
            "size": docs_file.stat().st_size,
            "mtime": docs_file.stat().st_mtime_ns,
            "tokenizer": cfg.resolved_path(),
        }
        text = {
            f: self._cut(docs[f].to_pylist(), n, f"{DOCS_FILE} column '{f}'") if f in docs.column_names else None
            for f, n in cfg.fields.items()
        }
        absent = [f for f, v in text.items() if v is None]
        if absent:
            rank_zero_warn(
                f"{self.root / DOCS_FILE}: no column {absent} (data.tokenizer.fields): that field is empty in every "
                f"document (columns present: {docs.column_names})"
            )
        doc_tokens = cached(
            self.root / ".cache",
            "docs",
            {**stamp, "fields": cfg.fields, "max_chars_per_token": MAX_CHARS_PER_TOKEN},
            lambda: tokenize_documents(
                tok(), {k: v for k, v in text.items() if v is not None} or {"_": [""] * len(doc_ids)}, cfg.fields
            ),
        )
        queries_cut = self._cut(events["query"].to_pylist(), cfg.query_len, "events.parquet column 'query'")
        query_text, query_index = np.unique(np.asarray(queries_cut, dtype=object).astype(str), return_inverse=True)
        query_digest = hashlib.sha1("\n".join(query_text.tolist()).encode()).hexdigest()
        queries = cached(
            self.root / ".cache",
            "queries",
            {"tokenizer": cfg.resolved_path(), "queries": query_digest, "len": cfg.query_len},
            lambda: tokenize_queries(tok(), query_text.tolist(), cfg.query_len),
        )

        self._tokenizer = tok

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
                paths = docs["image_path"].to_pylist()
                images = pa.array([str(self.root / p) if p else None for p in paths])
                missing = [i for i, p in enumerate(paths) if p and not (self.root / p).is_file()]
                if missing:
                    self.data_issues["image_files_missing"] = len(missing)
                    rank_zero_warn(
                        f"{self.root / DOCS_FILE}: column 'image_path': {len(missing)} of {len(paths)} image files are "
                        f"missing (first: row {missing[0]}, {paths[missing[0]]!r}); "
                        "those documents train without an image"
                    )
        self.store = _Store(
            docs=doc_tokens,
            queries=queries,
            query_index=query_index.astype(np.int64),
            doc_index=doc_index,
            doc_ids=doc_ids.astype(np.int64),
            history=HistoryIndex.build(
                events["user_id"].to_numpy(), events["timestamp"].to_numpy(), doc_index, events["label"].to_numpy()
            ),
            history_config=self.history_config,
            impressions=HistoryIndex.build(
                events["user_id"].to_numpy(),
                events["timestamp"].to_numpy(),
                doc_index,
                events["label"].to_numpy(),
                impressions=True,
            )
            if self.history_config.impressions_len
            else None,
            label=events["label"].to_numpy(),
            user_id=events["user_id"].to_numpy().astype(np.int64),
            session_id=events["session_id"].to_numpy().astype(np.int64),
            is_new_doc=is_new,
            cat=np.stack([events[c].to_numpy().astype(np.int64) for c in cat_cols], 1)
            if cat_cols
            else np.zeros((n, 0), np.int64),
            dense=np.stack([events[c].to_numpy().astype(np.float32) for c in dense_cols], 1)
            if dense_cols
            else np.zeros((n, 0), np.float32),
            images=images,
            image_size=self.hparams.image_size,
        )
        self.cat_columns, self.dense_columns = cat_cols, dense_cols
        self.cat_cardinality = [int(self.store.cat[:, i].max()) + 1 for i in range(len(cat_cols))]
        self.num_docs = len(doc_ids)
        self._split_by_day(day, all_days)

    def _split_by_day(self, day: np.ndarray, days: np.ndarray) -> None:
        """``self.days`` from ``days`` (every day of the dataset, before ``cold_docs`` dropped rows) and
        ``self.splits``: the row indices of ``day`` in each."""
        n_val, n_test = self.hparams.val_days, self.hparams.test_days
        if len(days) <= n_val + n_test:
            raise SchemaError(
                self.root / "events.parquet",
                "day",
                f"only {len(days)} distinct days ({days.tolist()}): "
                f"need more than val_days + test_days = {n_val + n_test} to keep a training split",
            )
        self.days = {
            "train": days[: len(days) - n_val - n_test].tolist(),
            "val": days[len(days) - n_val - n_test : len(days) - n_test].tolist(),
            "test": days[len(days) - n_test :].tolist(),
        }
        self.splits = {k: np.flatnonzero(np.isin(day, v)) for k, v in self.days.items()}

    def _cut(self, values: list, tokens: int, where: str) -> list[str]:
        """``values`` with None as "" and each string cut to ``MAX_CHARS_PER_TOKEN * tokens`` characters (counted)."""
        limit = MAX_CHARS_PER_TOKEN * tokens
        out = [v or "" for v in values]
        long = [i for i, v in enumerate(out) if len(v) > limit]
        if long:
            for i in long:
                out[i] = out[i][:limit]
            self.data_issues["text_values_cut"] = self.data_issues.get("text_values_cut", 0) + len(long)
            rank_zero_warn(
                f"{self.root / where}: {len(long)} values longer than {limit} characters were cut to that length "
                f"before tokenisation (first: row {long[0]}); only the first {tokens} tokens are used anyway"
            )
        return out

    # ---------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rows = self.splits[split]
        workers = min(self.hparams.num_workers, os.cpu_count() or 1)
        dataset = _Split(self.store, rows)
        batch_size = self.hparams.batch_size if shuffle else self.hparams.eval_batch_size
        sampler = None
        if shuffle:
            trainer = self._trainer_or_none()
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = ResumableSampler(
                dataset,
                batch_size,
                num_replicas=world,
                rank=rank,
                seed=self.shuffle_seed,
                epoch_source=(lambda: trainer.current_epoch) if trainer is not None else None,
            )
            self._apply_resume(sampler, batch_size, world)
            self._train_sampler = sampler
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=False,
            collate_fn=_first,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            # the loader's own generator seeds its workers: iterating it draws nothing from the
            # global RNG, so evaluation never shifts training's random stream (exact resume)
            generator=torch.Generator().manual_seed(self.shuffle_seed),
        )

    def _trainer_or_none(self):
        return getattr(self, "trainer", None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    # ---------------------------------------------------------------- resuming
    def state_dict(self) -> dict:
        """Where training is in the data (saved in every checkpoint): epoch, batches done, seed."""
        trainer, sampler = self._trainer_or_none(), self._train_sampler
        if trainer is None or sampler is None or trainer.state.fn != "fit":
            return {}
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        return {
            "train_sampler": {
                "seed": sampler.seed,
                "epoch": int(sampler.epoch),
                "batches_done": done,
                "epoch_finished": done >= trainer.num_training_batches,
                "batch_size": sampler.batch_size,
                "world_size": sampler.num_replicas,
            }
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume = state_dict.get("train_sampler")

    def _apply_resume(self, sampler: ResumableSampler, batch_size: int, world: int) -> None:
        state, self._resume = self._resume, None
        if not state:
            return
        sampler.seed = int(state["seed"])
        if state["epoch_finished"]:
            sampler.start_at(int(state["epoch"]) + 1, 0)
        elif (state["batch_size"], state["world_size"]) == (batch_size, world):
            sampler.start_at(int(state["epoch"]), int(state["batches_done"]))
        else:
            sampler.start_at(int(state["epoch"]), 0)
            rank_zero_warn(
                f"resuming mid-epoch with batch_size={batch_size} x {world} device(s) instead of the checkpoint's "
                f"{state['batch_size']} x {state['world_size']}: the interrupted epoch restarts from its first batch "
                "(exact resume needs the same batch size and device count)"
            )

    # ---------------------------------------------------------------- skipped input
    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Count the batch's skipped images (``doc_image_status``); warn about the first one."""
        status = batch.get("doc_image_status")
        if status is not None:
            bad = torch.nonzero(status).squeeze(1)
            if len(bad):
                ids = batch["doc_id"][bad].tolist()
                new = [i for i in ids if i not in self._broken_docs]
                if new and not self._broken_docs:
                    reason = "image file missing" if int(status[bad[0]]) == IMAGE_MISSING else "undecodable image bytes"
                    rank_zero_warn(
                        f"{self.root / DOCS_FILE}: doc_id {ids[0]}: {reason}; such documents are used without "
                        "their image (counted in data/images_skipped)"
                    )
                self._broken_docs.update(new)
                self.data_issues["images_skipped"] = self.data_issues.get("images_skipped", 0) + len(ids)
                self.data_issues["documents_with_bad_images"] = len(self._broken_docs)
                self.log_data_issues()
        return batch

    def log_data_issues(self, force: bool = False) -> None:
        """Send ``data_issues`` to the trainer's logger as ``data/<name>`` (at most once per logging interval)."""
        trainer = self._trainer_or_none()
        if trainer is None or trainer.logger is None or not trainer.is_global_zero or not self.data_issues:
            return
        step = trainer.global_step
        if not force and (step == self._logged_step or step % max(trainer.log_every_n_steps, 1)):
            return
        self._logged_step = step
        trainer.logger.log_metrics({f"data/{k}": float(v) for k, v in self.data_issues.items()}, step=step)

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
        return DataLoader(
            _Documents(self.store, docs), batch_size=batch_size, shuffle=False, collate_fn=_first, num_workers=workers
        )

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
