"""LEMUR-Synth: schema, determinism, and that the simulated signals are really there."""

from __future__ import annotations

import colorsys
import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from lemur.data.schema import DOCS_FILE, EVENTS_FILE, TEXT_FIELDS, validate_dataset
from lemur.data.synth import PRESETS, SYNTH_FILE, SynthConfig, generate, preset, simulate, word_pool

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth-tiny")
    summary, latent, world = simulate(TINY, out, progress=False, keep_latent=True)
    docs, events = validate_dataset(out)
    return {"out": out, "summary": summary, "latent": latent, "world": world, "docs": docs, "events": events}


def test_output_passes_schema_and_has_expected_columns(tiny):
    docs, events = tiny["docs"], tiny["events"]
    assert set(TEXT_FIELDS) <= set(docs.column_names)
    assert {"image", "publish_day"} <= set(docs.column_names)
    assert {"cat_hour", "dense_position"} <= set(events.column_names)
    assert str(events.schema.field("dense_position").type) == "float"
    assert str(events.schema.field("label").type) == "int8"
    assert docs.num_rows == TINY.n_docs == 300
    assert 2_000 <= events.num_rows <= 4_500
    doc_id = docs["doc_id"].to_numpy()
    assert not np.array_equal(np.sort(doc_id), np.arange(len(doc_id)))  # IDs are not row numbers
    user_id = events["user_id"].to_numpy()
    assert len(np.unique(user_id)) <= TINY.n_users


def test_text_fields_present_and_made_of_single_vocab_tokens(tiny):
    docs = tiny["docs"]
    vocab = set(word_pool(None, 0))
    for f in ("title", "ocr", "cover_text"):
        texts = docs[f].to_pylist()
        assert all(t for t in texts), f"{f} has empty values"
    lengths = {f: np.array([len((t or "").split()) for t in docs[f].to_pylist()]) for f in TEXT_FIELDS}
    assert lengths["title"].min() >= 8 and lengths["title"].max() <= 14
    assert lengths["ocr"].min() >= 10 and lengths["ocr"].max() <= 25
    assert lengths["asr"].max() <= 4 and (lengths["asr"] == 0).mean() > 0.2
    assert docs["asr"].null_count > 0  # ASR is sometimes missing altogether
    assert lengths["cover_text"].min() >= 1 and lengths["cover_text"].max() <= 4
    words = {w for f in TEXT_FIELDS for t in docs[f].to_pylist() if t for w in t.split()}
    words |= {w for q in tiny["events"]["query"].to_pylist() for w in q.split()}
    assert words <= vocab


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(TINY, a, progress=False)
    generate(TINY, b, progress=False)
    generate(replace(TINY, seed=TINY.seed + 1), c, progress=False)
    for name in (DOCS_FILE, EVENTS_FILE, SYNTH_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / EVENTS_FILE).read_bytes() != (c / EVENTS_FILE).read_bytes()
    assert (a / DOCS_FILE).read_bytes() != (c / DOCS_FILE).read_bytes()


def test_ctr_and_histories_are_sane(tiny):
    label = tiny["events"]["label"].to_numpy()
    assert 0.15 <= label.mean() <= 0.35
    assert tiny["summary"]["ctr"] == pytest.approx(label.mean(), abs=1e-4)
    assert tiny["summary"]["mean_clicks_per_user"] >= 8


def test_row_order_sessions_and_context(tiny):
    ev = tiny["events"]
    ts, sid, day = ev["timestamp"].to_numpy(), ev["session_id"].to_numpy(), ev["day"].to_numpy()
    pos = ev["dense_position"].to_numpy()
    order = np.lexsort((pos, sid, ts))
    assert np.array_equal(order, np.arange(len(ts)))
    assert np.array_equal(day, ts // 86_400)
    assert np.array_equal(ev["cat_hour"].to_numpy(), (ts % 86_400) // 3_600)
    k = TINY.docs_per_session
    assert len(ts) % k == 0
    for col in ("timestamp", "user_id", "query", "day"):
        values = np.asarray(ev[col].to_pylist(), dtype=object).reshape(-1, k)
        assert (values == values[:, :1]).all(), f"{col} differs within a session"
    assert (sid.reshape(-1, k) == sid.reshape(-1, k)[:, :1]).all()
    assert np.array_equal(pos.reshape(-1, k), np.tile(np.arange(k, dtype=np.float32), (len(ts) // k, 1)))
    assert len(np.unique(sid)) == len(ts) // k  # one session per block of rows
    # queries repeat across sessions
    assert len(set(ev["query"].to_pylist())) < len(np.unique(sid))


def test_images_decode_and_hue_follows_visual_taste(tiny):
    docs, world = tiny["docs"], tiny["world"]
    images = docs["image"].to_pylist()
    missing = sum(x is None for x in images)
    assert 0 <= missing <= 0.1 * len(images)
    hue_err = []
    for i, data in enumerate(images):
        if data is None:
            continue
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (TINY.image_size, TINY.image_size)
        r, g, b = np.asarray(img, np.float64).reshape(-1, 3).mean(0) / 255.0
        hue = colorsys.rgb_to_hsv(r, g, b)[0]
        target = (world.doc_visual_taste[i] + 0.5) / TINY.n_visual_tastes
        hue_err.append(min(abs(hue - target), 1 - abs(hue - target)))
    # the dominant hue identifies the visual taste (tastes are 1/n_visual_tastes of the circle apart)
    assert np.quantile(hue_err, 0.99) < 0.5 / TINY.n_visual_tastes


def test_text_taste_markers_only_in_ocr(tiny):
    docs, world = tiny["docs"], tiny["world"]
    markers = [set(world.words[row].tolist()) for row in world.markers]
    all_markers = set().union(*markers)
    ocr = [t.split() for t in docs["ocr"].to_pylist()]
    has_own = np.array([bool(set(words) & markers[k]) for words, k in zip(ocr, world.doc_text_taste)])
    has_other = np.array([bool(set(words) & (all_markers - markers[k])) for words, k in zip(ocr, world.doc_text_taste)])
    assert has_own.mean() > 0.8 and not has_other.any()
    assert np.array_equal(has_own, world.doc_marked)
    for f in ("title", "asr", "cover_text"):
        assert not any(set((t or "").split()) & all_markers for t in docs[f].to_pylist())
    meta = json.loads((tiny["out"] / SYNTH_FILE).read_text())
    assert [set(m) for m in meta["vocabulary"]["text_taste_markers"]] == markers


def test_taste_signal_is_real(tiny):
    lat = tiny["latent"]
    y = lat["label"].astype(float)
    world = tiny["world"]
    on = lat["same_topic"] > 0  # a same-topic slice: relevance is (almost) held fixed
    vis_match = world.doc_visual_taste[lat["doc"]] == lat["best_visual_taste"]
    txt_match = world.doc_text_taste[lat["doc"]] == lat["best_text_taste"]
    assert y[on & vis_match].mean() > y[on & ~vis_match].mean() + 0.1
    assert y[on & txt_match].mean() > y[on & ~txt_match].mean() + 0.1
    # an oracle that knows the tastes ranks clearly better than relevance alone
    ceiling = tiny["summary"]["click_model_ceiling"]
    assert ceiling["auc_oracle"] > ceiling["auc_oracle_without_tastes"] + 0.03
    assert ceiling["auc_oracle_without_tastes"] > ceiling["auc_relevance_only"]
    # relevance is the single strongest term
    terms = {k: roc_auc_score(y, lat[k]) for k in ("relevance", "text_term", "visual_term", "quality_term")}
    assert max(terms, key=terms.get) == "relevance"


def test_new_docs_every_day(tiny):
    docs, events = tiny["docs"], tiny["events"]
    publish = docs["publish_day"].to_numpy()
    assert (publish == 0).sum() == TINY.n_initial_docs
    assert np.array_equal(np.bincount(publish)[1:], np.full(TINY.n_days - 1, TINY.new_docs_per_day))
    publish_of = dict(zip(docs["doc_id"].to_numpy().tolist(), publish.tolist()))
    ev_pub = np.array([publish_of[d] for d in events["doc_id"].to_numpy().tolist()])
    day = events["day"].to_numpy()
    assert (ev_pub <= day).all()  # nothing is shown before it is published
    for d in range(1, TINY.n_days):
        assert (ev_pub[day == d] == d).any(), f"no fresh document shown on day {d}"
    assert 0.03 < tiny["summary"]["new_doc_row_share"] < 0.5


def test_synth_json(tiny):
    meta = json.loads((tiny["out"] / SYNTH_FILE).read_text())
    assert meta["config"]["seed"] == TINY.seed and meta["config"]["n_users"] == TINY.n_users
    s = meta["summary"]
    assert s["rows"] == tiny["events"].num_rows and s["docs"] == tiny["docs"].num_rows
    assert s["sessions"] == len(np.unique(tiny["events"]["session_id"].to_numpy()))
    assert sum(s["rows_per_day"]) == s["rows"] and len(s["rows_per_day"]) == TINY.n_days
    for key in ("ctr", "new_doc_row_share", "mean_clicks_per_user", "click_model_ceiling"):
        assert key in s


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_construct(name):
    cfg = PRESETS[name]
    assert isinstance(cfg, SynthConfig)
    assert replace(cfg) == cfg  # re-validates
    rows = cfg.n_users * cfg.n_days * cfg.sessions_per_user_per_day * cfg.docs_per_session
    expected = {
        "tiny": (2e3, 5e3, 250, 350),
        "small": (2.8e5, 3.2e5, 6e3, 8e3),
        "small-cold": (2.8e5, 3.2e5, 6e3, 8e3),  # nominal; users arriving later halve it
        "large": (1.8e7, 2.2e7, 4.9e5, 5.1e5),
    }[name]
    assert expected[0] <= rows <= expected[1]
    assert expected[2] <= cfg.n_docs <= expected[3]
    assert set(PRESETS) == {"tiny", "small", "small-cold", "large"}


def test_small_and_small_cold_share_their_documents_and_users_but_not_the_click_drivers():
    small, cold = PRESETS["small"], PRESETS["small-cold"]
    planted = ("w_text_taste", "w_visual_taste", "n_appeal_words", "w_appeal", "n_subtopics", "w_subtopic")
    assert replace(small, **{k: getattr(cold, k) for k in planted}) == cold
    assert small.w_appeal > 0 and small.w_subtopic > 0 and small.n_subtopics > 1 and small.new_user_share == 1.0


def test_new_users_have_no_session_before_their_first_day(tmp_path):
    cfg = replace(TINY, new_user_share=0.5)
    summary, latent, world = simulate(cfg, tmp_path, progress=False, keep_latent=True)
    first = world.user_first_day
    assert first.min() == 0 and first.max() <= cfg.n_days - 1
    assert 0.3 < (first > 0).mean() < 0.7  # about half the users arrive later, on days 1..n_days-1
    events = validate_dataset(tmp_path)[1]
    day = events["day"].to_numpy()
    assert (day >= first[latent["user"]]).all()  # nobody searches before arriving
    late = first >= 2
    assert late.any() and np.isin(np.flatnonzero(late), latent["user"][day >= 2]).any()
    # the same world otherwise: documents, users' tastes and ids do not depend on the arrival draw
    _, _, base = simulate(TINY, tmp_path / "base", progress=False, keep_latent=True)
    assert np.array_equal(base.user_id, world.user_id) and np.array_equal(base.text_pref0, world.text_pref0)
    assert np.array_equal(base.doc_id, world.doc_id) and not base.user_first_day.any()
    with pytest.raises(ValueError, match="new_user_share"):
        replace(TINY, new_user_share=1.5)


def test_preset_helper():
    assert preset("tiny", seed=3).seed == 3
    with pytest.raises(ValueError, match="unknown synth preset"):
        preset("huge")


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_users", 0),
        ("n_topics", 1),
        ("n_initial_docs", 3),
        ("new_docs_per_day", -1),
        ("n_days", 0),
        ("sessions_per_user_per_day", 0.0),
        ("sessions_per_user_per_day", float("nan")),
        ("docs_per_session", 0),
        ("n_text_tastes", 0),
        ("n_visual_tastes", 0),
        ("preference_drift", 1.5),
        ("preference_drift", -0.1),
        ("image_size", 4),
        ("seed", -1),
        ("n_users", 2.5),
        ("words_per_topic", 65),
        ("focus_words", 40),
        ("title_words", (5, 3)),
        ("ocr_words", (2, 5)),
        ("marker_prob", 2.0),
        ("on_topic_share", -0.5),
        ("null_image_prob", 1.1),
        ("recency_boost", -1.0),
        ("w_topic", float("inf")),
        ("click_bias", "x"),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    kwargs = {field: value}
    if field == "n_initial_docs":
        kwargs["n_topics"] = 6
    with pytest.raises(ValueError, match=field):
        replace(TINY, **kwargs)


def test_vocab_too_small_is_reported(tmp_path):
    with pytest.raises(ValueError, match="usable words"):
        generate(replace(TINY, n_topics=64, words_per_topic=64, n_filler_words=20_000), tmp_path, progress=False)


# ---------------------------------------------------------------------------- planted signals
PLANTED = replace(
    TINY,
    n_appeal_words=40,
    appeal_words_per_doc=4,
    w_appeal=1.0,
    n_subtopics=3,
    w_subtopic=1.0,
    words_per_topic=30,
    focus_words=8,
)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth-planted")
    summary, latent, world = simulate(PLANTED, out, progress=False, keep_latent=True)
    docs, events = validate_dataset(out)
    return {"out": out, "summary": summary, "latent": latent, "world": world, "docs": docs, "events": events}


def test_appeal_is_written_in_the_ocr_and_never_in_a_query(planted):
    world, docs, events = planted["world"], planted["docs"], planted["events"]
    valence = {str(world.words[i]): v for i, v in zip(world.appeal_words, world.appeal_valence)}
    assert len(valence) == PLANTED.n_appeal_words
    order = {d: i for i, d in enumerate(world.doc_id)}
    for doc_id, ocr, title in zip(docs["doc_id"].to_pylist(), docs["ocr"].to_pylist(), docs["title"].to_pylist()):
        found = [valence[w] for w in ocr.split() if w in valence]
        assert 1 <= len(found) <= PLANTED.appeal_words_per_doc
        assert not any(w in valence for w in title.split())  # only the OCR carries them
        # the document's appeal is the standardised sum of the valences its content shows
        assert world.doc_appeal[order[doc_id]] == pytest.approx(sum(found) / np.sqrt(len(found)))
    query_words = {w for q in events["query"].to_pylist() for w in q.split()}
    assert not query_words & set(valence)
    assert 0.6 < np.std(world.doc_appeal) < 1.4


def test_a_documents_topic_words_come_from_its_subtopic(planted):
    world = planted["world"]
    S = PLANTED.n_subtopics
    local_of = {int(w): k for t in range(PLANTED.n_topics) for k, w in enumerate(world.topic_words[t])}
    for i in range(len(world.doc_id)):
        words = [int(w) for w in np.concatenate([world.title[i], world.ocr[i], world.cover[i]]) if w >= 0]
        subs = {local_of[w] % S for w in words if w in local_of and w in set(world.topic_words[world.doc_topic[i]])}
        assert subs <= {int(world.doc_subtopic[i])}
    assert set(np.unique(world.doc_subtopic)) == set(range(S))
    assert world.subtopic_pref.shape == (PLANTED.n_users, PLANTED.n_topics, S)


def test_planted_terms_drive_clicks_and_their_ceilings_are_reported(planted):
    lat, world = planted["latent"], planted["world"]
    np.testing.assert_allclose(lat["appeal_term"], PLANTED.w_appeal * world.doc_appeal[lat["doc"]])
    pref = world.subtopic_pref[lat["user"], world.doc_topic[lat["doc"]], world.doc_subtopic[lat["doc"]]]
    np.testing.assert_allclose(lat["subtopic_term"], PLANTED.w_subtopic * pref)
    assert roc_auc_score(lat["label"], lat["appeal_term"]) > 0.6
    assert roc_auc_score(lat["label"], lat["subtopic_term"]) > 0.6
    signals = planted["summary"]["planted_signals"]
    assert set(signals) == {"appeal", "subtopic"}
    for entry in signals.values():
        assert entry["weight"] == 1.0
        for metric in ("auc", "qauc", "gauc", "auc_new"):
            assert entry[f"{metric}_ceiling"] == pytest.approx(
                entry[f"{metric}_oracle"] - entry[f"{metric}_oracle_without"], abs=2e-4
            )
        assert entry["auc_ceiling"] > 0.01
    assert json.loads((planted["out"] / SYNTH_FILE).read_text())["summary"]["planted_signals"] == signals


@pytest.mark.parametrize("weight", ["w_appeal", "w_subtopic"])
def test_a_control_keeps_the_content_and_drops_only_the_click_driver(planted, tmp_path, weight):
    summary, latent, _ = simulate(replace(PLANTED, **{weight: 0.0}), tmp_path, progress=False, keep_latent=True)
    assert (tmp_path / DOCS_FILE).read_bytes() == (planted["out"] / DOCS_FILE).read_bytes()
    term = {"w_appeal": "appeal_term", "w_subtopic": "subtopic_term"}[weight]
    assert not latent[term].any()
    name = {"w_appeal": "appeal", "w_subtopic": "subtopic"}[weight]
    assert summary["planted_signals"][name]["weight"] == 0.0
    assert summary["planted_signals"][name]["qauc_ceiling"] == 0.0
    assert not np.array_equal(latent["label"], planted["latent"]["label"])


def test_presets_without_planted_signals_report_zero_ceilings(tiny):
    for entry in tiny["summary"]["planted_signals"].values():
        assert entry["weight"] == 0.0 and entry["auc_ceiling"] == 0.0
