"""How much can click histories add on LEMUR-Synth at best? The data's own ceiling for history models.

LEMUR-Synth users like or dislike documents by hidden tastes (a text taste shown only by marker
words in OCR, a visual taste shown only by the cover hue; docs/synth.md). The click-model ceiling in
``synth.json`` compares the oracle (AUC 0.834 on ``small``) with the oracle without tastes (0.762),
but that oracle *knows* each user's preferences. A history model must estimate them from the
documents the user clicked before, which is all LEMUR's histories hold. This script measures how
much of the taste headroom such an estimate recovers when everything else is perfect:

* it re-simulates the preset with the click model's latent terms kept (same config and seed give
  the same events as ``lemur data synth``; checked against ``data/synth-<preset>`` when it exists);
* for every row it builds the same histories as the data module (the user's clicks strictly
  before the row's time, most recent first, long = 128 and short = 16 items) and counts the
  history documents whose **true** text (visual) taste equals the row's document's;
* a gradient-boosted classifier (scikit-learn ``HistGradientBoostingClassifier``; one row a logistic
  regression on the share of history documents with the target's taste, the one feature that
  mean pooling and a dot product can form) learns the click
  from the oracle-without-tastes logit plus those counts on the training days, and is scored on the
  test day (the last day, as in the recipes): AUC and QAUC (per-session AUC, averaged). Deltas are
  vs the same classifier given the logit alone ("no history"). On ``tiny`` (2,848 rows) the
  classifier overfits and the figures mean nothing; use it as a smoke run only.

The rows are lower bounds on what an ideal history model recovers (the classifier is strong, not
Bayes-optimal), with exact tastes, which a trained encoder only approximates. One row uses
*impression* histories (clicked and skipped documents with their labels), which LEMUR's click
histories do not have, to show what the data would allow a richer history to find. Two rows use no
history at all but the user's impressions of each taste on the recipes' training days (the row
itself left out): what a user-ID embedding can learn about the same tastes, since on LEMUR-Synth
every test user is also a training user.

    python diagnostics/history_ceiling.py                    # small, ~1 min on a CPU
    python diagnostics/history_ceiling.py --preset tiny      # smoke run

Needs scikit-learn (the `test` extra, which `make` installs).
Writes ``results/history-ceiling-<preset>-<date>-cpu.json`` + ``.csv`` + ``.png``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the shared script helpers
from common import REPO, add_run_args, machine, save_figure, set_threads, write  # noqa: E402

LONG_LEN, SHORT_LEN, IMPRESSIONS_LEN = 128, 16, 512  # recipes/lemur.yaml's history lengths


def taste_counts(history, rows, max_len: int, taste_of_doc, target_doc):
    """``(matches, length)``: how many of each row's last ``max_len`` history documents share the
    target document's taste, and how many history documents there are."""
    import numpy as np

    items, mask = history.gather(rows, max_len)
    same = mask & (taste_of_doc[items] == taste_of_doc[target_doc][:, None])
    return same.sum(1).astype(np.float64), mask.sum(1).astype(np.float64)


def impression_counts(history, rows, max_len: int, taste_of_doc, target_doc, label):
    """``(shown, clicked)``: earlier impressions (any label) of the target's taste, and the clicks among them."""
    items, mask = history.gather(rows, max_len)  # items are row indices here
    same = mask & (taste_of_doc[target_doc[items]] == taste_of_doc[target_doc][:, None])
    return same.sum(1).astype(float), (same & (label[items] == 1)).sum(1).astype(float)


def grouped_auc(scores, labels, groups=None) -> float:
    """AUC (``groups`` None) or the mean per-group AUC (QAUC by session) of numpy arrays, with
    ``lemur.metrics.grouped_auc`` (the metric the models are scored with)."""
    import numpy as np
    import torch

    from lemur.metrics import grouped_auc as metric

    groups = np.zeros(len(scores), np.int64) if groups is None else np.asarray(groups)
    value, _ = metric(
        torch.as_tensor(np.asarray(scores, np.float64)),
        torch.as_tensor(np.asarray(labels).astype(np.int64)),
        torch.as_tensor(groups.astype(np.int64)),
    )
    return float(value)


def parse_overrides(pairs: list[str]) -> dict:
    """``["preference_drift=0.3", ...]`` -> ``{"preference_drift": 0.3}``, values read as YAML scalars."""
    import dataclasses

    import yaml

    from lemur.data.synth import SynthConfig

    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(
                f"--set {pair!r}: expected FIELD=VALUE with FIELD a SynthConfig field ({', '.join(sorted(fields))})"
            )
        out[name] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="LEMUR-Synth preset (re-simulated with its latent terms)")
    parser.add_argument("--max-iter", type=int, default=200, help="boosting iterations of each classifier")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        dest="overrides",
        help="replace a SynthConfig field of the preset, e.g. --set preference_drift=0.3 (repeatable)",
    )
    add_run_args(parser)  # --device/--precision are accepted for make bench and ignored: numpy + scikit-learn only
    args = parser.parse_args()
    set_threads(args.threads)
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from lemur.data.history import HistoryIndex
    from lemur.data.synth import PRESETS, preset, simulate

    if args.preset not in PRESETS:
        raise SystemExit(f"--preset {args.preset!r}: expected one of {', '.join(PRESETS)}")
    overrides = parse_overrides(args.overrides)
    config = preset(args.preset, **overrides)
    # results of a modified preset get their own file name: history-ceiling-small-preference_drift0.3-...
    name = "-".join([args.preset, *(f"{k}{v}" for k, v in overrides.items())])
    start = time.perf_counter()
    print(f"simulating {args.preset} with its latent terms ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        summary, lat, world = simulate(config, tmp, progress=False, keep_latent=True)
        events = pq.read_table(Path(tmp) / "events.parquet", columns=["timestamp", "day", "label"])
    ts, day = events.column("timestamp").to_numpy(), events.column("day").to_numpy()
    label = lat["label"].astype(np.int64)
    assert np.array_equal(label, events.column("label").to_numpy()), "latent terms out of row order"
    shipped = REPO / "data" / f"synth-{args.preset}" / "events.parquet"
    same_as_shipped = None
    if shipped.exists() and not overrides:
        same_as_shipped = bool(
            np.array_equal(pq.read_table(shipped, columns=["label"]).column("label").to_numpy(), label)
        )
    user, doc, session = lat["user"], lat["doc"], lat["session"]
    rows = np.arange(len(doc))

    print("building histories ...", flush=True)
    clicks = HistoryIndex.build(user, ts, doc, label)
    impressions = HistoryIndex.build(user, ts, rows, np.ones_like(label))  # items = earlier rows of the user
    text_taste, visual_taste = world.doc_text_taste, world.doc_visual_taste
    text_long, n_long = taste_counts(clicks, rows, LONG_LEN, text_taste, doc)
    visual_long, _ = taste_counts(clicks, rows, LONG_LEN, visual_taste, doc)
    text_short, n_short = taste_counts(clicks, rows, SHORT_LEN, text_taste, doc)
    visual_short, _ = taste_counts(clicks, rows, SHORT_LEN, visual_taste, doc)
    text_shown, text_clicked = impression_counts(impressions, rows, IMPRESSIONS_LEN, text_taste, doc, label)
    visual_shown, visual_clicked = impression_counts(impressions, rows, IMPRESSIONS_LEN, visual_taste, doc, label)
    n_shown = np.minimum(impressions.lengths(rows), IMPRESSIONS_LEN).astype(float)

    without_tastes = lat["logit"] - lat["text_term"] - lat["visual_term"]
    test_day = int(day.max())
    train, test = day < test_day, day == test_day
    y, groups = label[test], session[test]

    def user_taste_counts(taste_of_doc):
        """``(shown, clicked)``: the row's user's impressions of the target's taste on the recipes'
        training days (all but the last two), and the clicks among them, leaving the row itself out:
        what a user-ID embedding trained on those days can learn about the user's tastes."""
        fit_days = day < test_day - 1
        key = user.astype(np.int64) * (int(taste_of_doc.max()) + 1) + taste_of_doc[doc]
        n_keys = int(key.max()) + 1
        shown = np.bincount(key[fit_days], minlength=n_keys)[key].astype(float)
        clicked = np.bincount(key[fit_days], weights=label[fit_days], minlength=n_keys)[key]
        return shown - fit_days, clicked - fit_days * label

    text_user_shown, text_user_clicked = user_taste_counts(text_taste)
    visual_user_shown, visual_user_clicked = user_taste_counts(visual_taste)

    def scored(name: str, score, kind: str, features: list[str] | None = None) -> dict:
        return {
            "scorer": name,
            "kind": kind,
            "features": features or [],
            "auc": round(grouped_auc(score[test], y), 4),
            "qauc": round(grouped_auc(score[test], y, groups), 4),
        }

    def learned(name: str, columns: dict[str, np.ndarray], linear: bool = False) -> dict:
        x = np.column_stack([without_tastes, *columns.values()])
        clf = (
            LogisticRegression(max_iter=1000)
            if linear
            else HistGradientBoostingClassifier(max_iter=args.max_iter, learning_rate=0.1, random_state=0)
        )
        clf.fit(x[train], label[train])
        return scored(name, clf.decision_function(x), "learned from histories", ["logit without tastes", *columns])

    results = [
        scored("relevance only", lat["relevance"], "oracle term"),
        scored("oracle without tastes", without_tastes, "oracle term"),
    ]
    print("fitting the history scorers ...", flush=True)
    results += [
        learned("same classifier, no history", {}),
        learned("+ text taste, click history 128", {"text matches": text_long, "history length": n_long}),
        learned("+ text taste, click history 16", {"text matches": text_short, "history length": n_short}),
        # The one taste feature a mean-pooled history and a dot product with the target can form:
        # the share of history documents with the target's taste (minus chance), used linearly.
        learned(
            "+ text taste share, click history 128, linear",
            {
                "text share": np.where(n_long > 0, text_long / np.maximum(n_long, 1), 0.0)
                - (n_long > 0) / (text_taste.max() + 1)
            },
            linear=True,
        ),
        learned(
            "+ text & visual taste, click history 128",
            {"text matches": text_long, "visual matches": visual_long, "history length": n_long},
        ),
        learned(
            "+ text & visual taste, click histories 16 + 128",
            {
                "text matches": text_long,
                "visual matches": visual_long,
                "history length": n_long,
                "short text matches": text_short,
                "short visual matches": visual_short,
                "short length": n_short,
            },
        ),
        learned(
            "+ text & visual taste, impression history 512",
            {
                "text shown": text_shown,
                "text clicked": text_clicked,
                "visual shown": visual_shown,
                "visual clicked": visual_clicked,
                "impressions": n_shown,
            },
        ),
        # No history at all: per-user statistics of the training days, as a user-ID embedding sees them.
        learned(
            "+ text taste, user's training-day impressions (user ID)",
            {"text shown": text_user_shown, "text clicked": text_user_clicked},
        ),
        learned(
            "+ text & visual taste, user's training-day impressions (user ID)",
            {
                "text shown": text_user_shown,
                "text clicked": text_user_clicked,
                "visual shown": visual_user_shown,
                "visual clicked": visual_user_clicked,
            },
        ),
        # What the click history adds on top of the user-ID statistics: the margin a history model
        # has over a model with user IDs but no history (recipes/ablations/no_history.yaml).
        learned(
            "+ text taste, user ID and click history 128",
            {
                "text shown": text_user_shown,
                "text clicked": text_user_clicked,
                "text matches": text_long,
                "history length": n_long,
            },
        ),
        learned(
            "+ text & visual taste, user ID and click history 128",
            {
                "text shown": text_user_shown,
                "text clicked": text_user_clicked,
                "visual shown": visual_user_shown,
                "visual clicked": visual_user_clicked,
                "text matches": text_long,
                "visual matches": visual_long,
                "history length": n_long,
            },
        ),
        scored("oracle with the true text preference", without_tastes + lat["text_term"], "oracle term"),
        scored("oracle (full click model)", lat["logit"], "oracle term"),
    ]
    base = results[2]  # the reference: the same classifier on the same logit without history features
    for r in results:
        r["delta_auc"] = round(r["auc"] - base["auc"], 4)
        r["delta_qauc"] = round(r["qauc"] - base["qauc"], 4)
        print(
            f"{r['scorer']:>52}: AUC {r['auc']:.4f} ({r['delta_auc']:+.4f})  QAUC {r['qauc']:.4f} "
            f"({r['delta_qauc']:+.4f})",
            flush=True,
        )

    payload = {
        "benchmark": "history_ceiling",
        "machine": machine("cpu"),
        "preset": args.preset,
        "overrides": overrides,
        "same_events_as_data_folder": same_as_shipped,
        "test_day": test_day,
        "test_rows": int(test.sum()),
        "train_rows": int(train.sum()),
        "mean_click_history_at_test": round(float(n_long[test].mean()), 2),
        "history_lengths": {"long": LONG_LEN, "short": SHORT_LEN, "impressions": IMPRESSIONS_LEN},
        "synth_click_model_ceiling": summary["click_model_ceiling"],
        "rows": results,
        "wall_s": round(time.perf_counter() - start, 1),
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:]),
    }
    path = write(f"history-ceiling-{name}", payload, "cpu", args.out)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=["scorer", "kind", "auc", "qauc", "delta_auc", "delta_qauc"], extrasaction="ignore"
        )
        w.writeheader()
        w.writerows(results)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"oracle term": "tab:gray", "learned from histories": "tab:blue"}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.barh(range(len(results)), [r["qauc"] for r in results], color=[colors[r["kind"]] for r in results])
    for i, r in enumerate(results):
        ax.text(r["qauc"] + 0.002, i, f"{r['qauc']:.3f} ({r['delta_qauc']:+.3f})", va="center", fontsize=8)
    ax.axvline(base["qauc"], color="black", lw=0.8, ls="--", label="reference: same classifier, no history")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_yticks(range(len(results)), [r["scorer"] for r in results], fontsize=8)
    ax.invert_yaxis()
    lo = min(r["qauc"] for r in results)
    ax.set_xlim(lo - 0.02, max(r["qauc"] for r in results) + 0.04)
    ax.set(
        xlabel=f"test-day QAUC (day {test_day})",
        title=f"LEMUR-Synth {name}: what histories can add (grey: oracle terms; blue: exact tastes of history "
        "documents)",
    )
    ax.title.set_fontsize(9)
    save_figure(fig, path.with_suffix(".png"))
    print(f"wrote {path} (+ .csv, .png) in {payload['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
