"""User histories derived from the events table, strictly before each row's time.

A row's history is the list of documents its user clicked in events whose
``timestamp`` is strictly smaller than the row's own. Rows of one session share a
timestamp, so clicks of the current session never leak into its own rows. An
*impression* history (``impressions=True``) holds every earlier event of the user,
clicked or not, with its label.

Built once with a few sorts (no per-row Python), then gathered per batch with one
vectorised ``take``: the cost of a batch does not depend on the history length in
Python terms. Histories are returned most recent first; the short history is the
first ``short_len`` entries of the long one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HistoryIndex:
    """Offsets into one array of clicked documents grouped by user, oldest to newest.

    ``clicked[start[r]:end[r]]`` are the documents row ``r``'s user clicked before the row (with
    ``impressions``: every document shown to the user before the row, and ``labels`` their labels).
    """

    clicked: np.ndarray  # int64 [n_items] dense document indices
    start: np.ndarray  # int64 [n_rows]
    end: np.ndarray  # int64 [n_rows]
    labels: np.ndarray | None = None  # int64 [n_items], only for an impression index

    @classmethod
    def build(
        cls,
        user_id: np.ndarray,
        timestamp: np.ndarray,
        doc_index: np.ndarray,
        label: np.ndarray,
        impressions: bool = False,
    ) -> HistoryIndex:
        """Index the clicks (or, with ``impressions``, all events and their labels) of an events
        table (arrays of equal length, any row order)."""
        _, user_rank = np.unique(user_id, return_inverse=True)
        _, time_rank = np.unique(timestamp, return_inverse=True)
        n_times = int(time_rank.max()) + 1 if len(time_rank) else 1
        # One int64 key that sorts by (user, time); ranks keep it far from overflow.
        key = user_rank.astype(np.int64) * n_times + time_rank.astype(np.int64)
        events = np.arange(len(label)) if impressions else np.flatnonzero(label == 1)
        order = events[np.argsort(key[events], kind="stable")]
        click_key = key[order]
        # 'left' = first click with a key >= the row's key: only strictly earlier times count.
        end = np.searchsorted(click_key, key, side="left")
        start = np.searchsorted(click_key, user_rank.astype(np.int64) * n_times, side="left")
        return cls(
            clicked=doc_index[order].astype(np.int64),
            start=start.astype(np.int64),
            end=end.astype(np.int64),
            labels=np.asarray(label)[order].astype(np.int64) if impressions else None,
        )

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        """Full history length (before truncation) of each row."""
        return self.end[rows] - self.start[rows]

    def gather(self, rows: np.ndarray, max_len: int, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Most recent ``max_len`` history items of ``rows``.

        Returns ``(items [B, max_len] int64, mask [B, max_len] bool)``; ``mask`` is True
        for real items, padded slots hold ``pad``. Item 0 is the most recent click.
        """
        end = self.end[rows][:, None]
        idx = end - 1 - np.arange(max_len, dtype=np.int64)[None, :]
        mask = idx >= self.start[rows][:, None]
        items = self.clicked[np.where(mask, idx, 0)] if len(self.clicked) else np.zeros(idx.shape, np.int64)
        return np.where(mask, items, pad), mask

    def gather_labels(self, rows: np.ndarray, max_len: int) -> np.ndarray:
        """The labels ``[B, max_len]`` int64 of what :meth:`gather` returns (0 on padding); needs an
        index built with ``impressions=True``."""
        if self.labels is None:
            raise ValueError("HistoryIndex.gather_labels: this index holds clicks only (built without impressions)")
        end = self.end[rows][:, None]
        idx = end - 1 - np.arange(max_len, dtype=np.int64)[None, :]
        mask = idx >= self.start[rows][:, None]
        labels = self.labels[np.where(mask, idx, 0)] if len(self.labels) else np.zeros(idx.shape, np.int64)
        return np.where(mask, labels, 0)
