"""`lemur run`: suite files load and every variant's recipe stack instantiates; bad suites fail with
the file and key; resume and lineage arguments; the report's numbers; one real suite end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from lemur.suite import Options, SuiteError, build_command, collect, load_suite, run_dir, write_report

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "recipes" / "suites").glob("*.yaml"))
# exploration suites of lemur.contrib plug-ins (experiments/<topic>/<topic>_suite.yaml)
EXPLORATION_SUITES = sorted((REPO / "experiments").glob("*/*_suite.yaml"))


def test_the_paper_tables_have_suites() -> None:
    names = {p.stem for p in SUITES}
    assert {
        "table2_ladder",
        "table3_two_stage_vs_e2e",
        "table4_sampling",
        "table5_ablations",
        "table6_temperature",
    } <= names


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_loads_and_is_self_describing(path: Path) -> None:
    suite = load_suite(path, root=REPO)
    assert suite.reference in [v.name for v in suite.variants]
    assert len(suite.seeds) == 3, "the committed suites report 3 seeds"
    text = path.read_text()
    assert text.startswith("#") and "Reproduces:" in text and f"lemur run recipes/suites/{path.name}" in text


def _variant_stacks() -> list[tuple[str, list[str]]]:
    stacks = []
    for path in SUITES + EXPLORATION_SUITES:
        suite = load_suite(path, root=REPO)
        for v in suite.variants:
            for st in v.stages:
                stacks.append((f"{path.stem}:{v.name}:{st.name}", suite.base + st.recipes, st.args))
    return stacks


@pytest.mark.parametrize("name,recipes,args", _variant_stacks(), ids=[s[0] for s in _variant_stacks()])
def test_every_variant_instantiates(
    name: str, recipes: list[str], args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stacked overrides of each variant make a valid model (dimensions agree, classes resolve)."""
    from lemur.cli import LemurCLI

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])
    cli_args = [a for r in recipes for a in ("-c", str(REPO / r))] + ["-c", str(REPO / "recipes/tiny.yaml")] + args
    cli = LemurCLI(args=[*cli_args, "--trainer.logger", "false"], run=False)
    assert isinstance(cli.model, L.LightningModule)
    assert sum(p.numel() for p in cli.model.parameters()) > 0


def test_variant_stacks_do_what_their_names_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lemur.cli import LemurCLI

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lemur"])
    suite = load_suite(REPO / "recipes/suites/table2_ladder.yaml", root=REPO)
    models = {}
    for v in suite.variants:
        args = [a for r in suite.base + v.stages[0].recipes for a in ("-c", str(REPO / r))]
        models[v.name] = LemurCLI(args=[*args, "--trainer.logger", "false"], run=False).model
    assert type(models["dlrm_mlp"].backbone).__name__ == "MLPBackbone" and not len(models["dlrm_mlp"].histories)
    assert type(models["rankmixer"].backbone).__name__ == "RankMixerBackbone" and not len(models["rankmixer"].histories)
    assert set(models["longer"].histories) == {"short", "long"} and models["longer"].doc_encoder is None
    assert models["lemur_sqdc"].doc_encoder is not None and models["lemur_sqdc"].memory_bank is None
    assert models["lemur_sqdc"].sqdc is not None
    assert models["lemur_sqdc_mb"].memory_bank is not None and models["lemur_sqdc_mb"].similarity is not None


# ------------------------------------------------------------------------------ bad suites
BAD = {
    # jsonargparse's typed parsing of the suite dataclasses names the key and the value
    "unknown_key": ("name: x\nseedz: [0]\nvariants: [{name: a}]\n", "Option 'seedz' is not accepted"),
    "bad_seeds": (
        "name: x\nseeds: [zero]\nvariants: [{name: a}]\n",
        "key \"seeds\": Expected a <class 'int'>. Got value: zero",
    ),
    "no_seeds": ("name: x\nseeds: []\nvariants: [{name: a}]\n", "key 'seeds': expected a non-empty list"),
    "no_variants": ("name: x\nseeds: [0]\n", "required: variants"),
    "bad_flops": (
        "name: x\nflops: maybe\nvariants: [{name: a}]\n",
        "key \"flops\": Expected a <class 'bool'>. Got value: maybe",
    ),
    "missing_recipe": (
        "name: x\nvariants: [{name: a, recipes: [recipes/nope.yaml]}]\n",
        "recipe 'recipes/nope.yaml' not found",
    ),
    "bad_reference": ("name: x\nreference: b\nvariants: [{name: a}]\n", "key 'reference': 'b'"),
    "duplicate_variant": ("name: x\nvariants: [{name: a}, {name: a}]\n", "variant names must be unique"),
    "late_checkpoint": (
        "name: x\nvariants: [{name: a, stages: [{name: s1, checkpoint_from: s2}, {name: s2}]}]\n",
        "key 'checkpoint_from': 's2' is not an earlier stage",
    ),
    "variant_typo": (
        "name: x\nvariants: [{name: a, recipe: [recipes/lemur.yaml]}]\n",
        "variant 'a': Option 'recipe' is not accepted",
    ),
    "stage_typo": (
        "name: x\nvariants: [{name: a, stages: [{name: s, checkpoint_frm: s0}]}]\n",
        "variant 'a': Parser key \"stages\"",
    ),
    "stages_and_recipes": (
        "name: x\nvariants: [{name: a, recipes: [recipes/lemur.yaml], stages: [{name: s}]}]\n",
        "not both",
    ),
    "not_yaml": ("name: [x\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_suite_names_file_and_key(case: str, tmp_path: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError) as err:
        load_suite(path, root=REPO)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_recipe_paths_resolve_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From another folder, a suite's recipe paths are found under its repository root (and made absolute)."""
    monkeypatch.chdir(tmp_path)
    suite = load_suite(REPO / "recipes/suites/table3_two_stage_vs_e2e.yaml")
    assert suite.base == [str(REPO / "recipes/lemur.yaml")]
    assert all(Path(r).is_file() for v in suite.variants for st in v.stages for r in st.recipes)
    monkeypatch.chdir(REPO)  # from the repository root they stay as written
    assert load_suite(REPO / "recipes/suites/table3_two_stage_vs_e2e.yaml").base == ["recipes/lemur.yaml"]


def test_suite_and_config_paths_typed_outside_the_repository_are_found_in_it(tmp_path: Path) -> None:
    """`lemur run recipes/suites/X.yaml --config recipes/tiny.yaml` typed in another folder finds both in the clone."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lemur.cli",
            "run",
            "recipes/suites/table3_two_stage_vs_e2e.yaml",
            "--config",
            "recipes/tiny.yaml",
            "--seeds",
            "0",
            "--dry-run",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert str(REPO / "recipes" / "tiny.yaml") in done.stdout and "end_to_end" in done.stdout


def test_a_variant_can_start_from_another_variants_stage(tmp_path: Path) -> None:
    """Table 3's end_to_end starts from two_stage's pretrain checkpoint of the same seed: one chain runs both."""
    from lemur.suite import _chains

    suite = load_suite(REPO / "recipes/suites/table3_two_stage_vs_e2e.yaml", root=REPO)
    suite.seeds = [0, 1]
    opts = Options(out=tmp_path / "out")
    v = {x.name: x for x in suite.variants}
    cmd = build_command(suite, opts, v["end_to_end"], 1, v["end_to_end"].stages[0])
    checkpoint = run_dir(opts.out, v["two_stage"], 1, v["two_stage"].stages[0]) / "checkpoints" / "last.ckpt"
    assert cmd[cmd.index("--model.init_args.encoder_checkpoint") + 1] == str(checkpoint)
    chains = [[(variant.name, seed, stage.name) for _, variant, seed, stage in c] for c in _chains(suite)]
    assert [("two_stage", 0, "pretrain"), ("two_stage", 0, "rank"), ("end_to_end", 0, "joint")] in chains
    assert [("id_only", 1, "fit")] in chains and len(chains) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nvariants:\n  - {name: a, stages: [{name: x, checkpoint_from: b/y}]}\n  - {name: b}\n")
    with pytest.raises(SuiteError, match="earlier variant"):
        load_suite(bad, root=REPO)


def test_cli_reports_a_bad_suite_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD["unknown_key"][0])
    done = subprocess.run(
        [sys.executable, "-m", "lemur.cli", "run", str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2
    assert "lemur run: bad suite" in done.stderr and "seedz" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------ commands, resume, lineage
TWO_STAGE = """name: t
seeds: [3]
base: [recipes/lemur.yaml]
variants:
  - name: two_stage
    stages:
      - {name: pretrain, recipes: [recipes/two_stage/stage1_pretrain.yaml]}
      - {name: rank, recipes: [recipes/two_stage/stage2_frozen.yaml], checkpoint_from: pretrain}
"""


def test_commands_carry_seed_tags_lineage_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(TWO_STAGE)
    suite = load_suite(path, root=REPO)
    opts = Options(out=tmp_path / "out", extra_configs=["recipes/tiny.yaml"])
    variant = suite.variants[0]
    pretrain, rank = variant.stages
    first = build_command(suite, opts, variant, 3, pretrain)
    assert first[first.index("--seed_everything") + 1] == "3"
    folder = run_dir(opts.out, variant, 3, pretrain)
    assert first[-4:] == [
        "--summary.metrics_file",
        str(folder / "metrics.json"),
        "--summary.predictions_file",
        str(folder / "test_predictions.parquet"),
    ]
    tags = json.loads(first[first.index("--trainer.logger.init_args.tags") + 1])
    assert tags == {"suite": "t", "variant": "two_stage", "seed": "3", "stage": "pretrain"}
    assert "--ckpt_path" not in first and "--trainer.logger.init_args.run_id" not in first
    assert first.index("recipes/tiny.yaml") > first.index("recipes/two_stage/stage1_pretrain.yaml")

    # stage 1 finished: stage 2 gets its last.ckpt and records the lineage
    up = run_dir(opts.out, variant, 3, pretrain)
    up.mkdir(parents=True)
    (up / "metrics.json").write_text(json.dumps({"status": "tested", "run_id": "abc123", "metrics": {}}))
    second = build_command(suite, opts, variant, 3, rank)
    assert second[second.index("--model.init_args.encoder_checkpoint") + 1] == str(up / "checkpoints" / "last.ckpt")
    tags = json.loads(second[second.index("--trainer.logger.init_args.tags") + 1])
    assert tags["lineage.upstream_run_id"] == "abc123" and tags["lineage.upstream_stage"] == "pretrain"

    # stage 2 was interrupted after a checkpoint: it resumes into the same MLflow run
    here = run_dir(opts.out, variant, 3, rank)
    (here / "checkpoints").mkdir(parents=True)
    (here / "checkpoints" / "last.ckpt").write_bytes(b"")
    (here / "metrics.json").write_text(json.dumps({"status": "running", "run_id": "def456"}))
    again = build_command(suite, opts, variant, 3, rank)
    assert again[again.index("--ckpt_path") + 1] == str(here / "checkpoints" / "last.ckpt")
    assert again[again.index("--trainer.logger.init_args.run_id") + 1] == "def456"


# ------------------------------------------------------------------------------ report numbers
def _record(folder: Path, auc: float, qauc: float, gauc: float, rate: float = 100.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.joinpath("metrics.json").write_text(
        json.dumps(
            {
                "status": "tested",
                "run_id": folder.name,
                "params": {"total": 2_000_000, "trainable": 1_500_000},
                "metrics": {"test/auc": auc, "test/qauc": qauc, "test/gauc": gauc, "test/auc_new": auc - 0.1},
                "phases": {"train": {"rows_per_s": rate}},
            }
        )
    )


def test_report_aggregates_seeds_and_deltas(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: r\nreference: base\nseeds: [0, 1]\nvariants: [{name: base}, {name: other}, {name: missing}]\n"
    )
    suite = load_suite(path, root=REPO)
    out = tmp_path / "out"
    v = {x.name: x for x in suite.variants}
    _record(run_dir(out, v["base"], 0, v["base"].stages[0]), 0.70, 0.60, 0.50)
    _record(run_dir(out, v["base"], 1, v["base"].stages[0]), 0.72, 0.62, 0.52)
    _record(run_dir(out, v["other"], 0, v["other"].stages[0]), 0.77, 0.66, 0.55)
    run_dir(out, v["other"], 1, v["other"].stages[0]).mkdir(parents=True)  # unfinished: not counted
    rows = {r["variant"]: r for r in collect(suite, out)}
    assert rows["base"]["runs"] == 2 and rows["base"]["auc_mean"] == pytest.approx(0.71)
    assert rows["base"]["auc_std"] == pytest.approx(0.0141421, rel=1e-4)  # sample std of 0.70, 0.72
    assert rows["base"]["qauc_delta_pct"] == pytest.approx(0.0)
    assert rows["other"]["runs"] == 1 and math.isnan(rows["other"]["auc_std"])
    assert rows["other"]["qauc_delta_pct"] == pytest.approx((0.66 - 0.61) / 0.61 * 100)
    assert rows["missing"]["runs"] == 0 and math.isnan(rows["missing"]["auc_mean"])

    paths = write_report(suite, out, log_to_mlflow=False)
    md = paths["md"].read_text()
    assert "| base | 2 | 0.7100 ± 0.0141 | +0.00% | 0.6100 ± 0.0141 |" in md
    assert "| other | 1 | 0.7700 | +8.45% | 0.6600 | +8.20% |" in md
    assert "2.00M (1.50M)" in md
    assert "| +0.00% | 0.6100 ± 0.0141 | 2.00M (1.50M) |" in md  # ΔGAUC, then AUC on new documents (auc - 0.1 here)
    assert rows["base"]["auc_new_mean"] == pytest.approx(0.61)
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(paths["csv"])
    assert table.column("variant").to_pylist() == ["base", "other", "missing"]
    assert table.column("qauc_mean").to_pylist()[:2] == pytest.approx([0.61, 0.66])
    assert paths["png"].stat().st_size > 5_000


def test_report_has_paired_bootstrap_intervals_vs_the_reference(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from lemur.suite import PREDICTIONS_FILE

    path = tmp_path / "s.yaml"
    path.write_text("name: r\nreference: base\nseeds: [0, 1]\nvariants: [{name: base}, {name: better}, {name: same}]\n")
    suite = load_suite(path, root=REPO)
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    n = 4000
    y = (rng.random(n) < 0.3).astype(np.int8)
    session = np.repeat(np.arange(n // 10), 10)
    rows = {
        "label": y,
        "session_id": session,
        "user_id": session // 5,
        "doc_id": np.tile(np.arange(10), n // 10),
        "is_new_doc": rng.random(n) < 0.3,
    }
    for v in suite.variants:
        for seed in suite.seeds:
            folder = run_dir(out, v, seed, v.stages[0])
            _record(folder, 0.7, 0.6, 0.6)
            score = ({"better": 1.0}.get(v.name, 0.6)) * y + rng.normal(size=n)
            pq.write_table(pa.table({**rows, "score": score.astype(np.float32)}), folder / PREDICTIONS_FILE)
    paths = write_report(suite, out, log_to_mlflow=False)
    table = {r["variant"]: r for r in pacsv.read_csv(paths["csv"]).to_pylist()}
    for metric in ("auc", "qauc", "gauc", "auc_new"):
        better = table["better"]
        assert 0 < better[f"{metric}_delta_ci_low"] < better[f"{metric}_delta"] < better[f"{metric}_delta_ci_high"]
        same = table["same"]
        assert same[f"{metric}_delta_ci_low"] < 0 < same[f"{metric}_delta_ci_high"]  # same model: within noise
    md = paths["md"].read_text()
    assert "95% paired bootstrap interval" in md and "| better | 0 1 | **+0." in md


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_table3_suite_end_to_end_and_resume(tmp_path: Path) -> None:
    """The real Table 3 suite (two-stage hand-off included) on `tiny`, 1 seed, 2 steps per run;
    run again: nothing reruns."""
    from mlflow.tracking import MlflowClient

    from lemur.data.synth import PRESETS, generate

    generate(PRESETS["tiny"], tmp_path / "tiny")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    out = tmp_path / "suite"
    cmd = [
        sys.executable,
        "-m",
        "lemur.cli",
        "run",
        "recipes/suites/table3_two_stage_vs_e2e.yaml",
        "--config",
        "recipes/tiny.yaml",
        "--seeds",
        "0",
        "--max-steps",
        "2",
        "--data",
        str(tmp_path / "tiny"),
        "--out",
        str(out),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for suffix in ("md", "csv", "png"):
        assert (out / f"report.{suffix}").stat().st_size > 0
    md = (out / "report.md").read_text()
    for variant in ("id_only", "two_stage", "end_to_end"):
        assert f"| {variant} | 1 |" in md
    assert (out / "end_to_end" / "seed0" / "joint" / "test_predictions.parquet").exists()
    assert f"Data: `{tmp_path / 'tiny'}`" in md
    assert "qauc_delta_ci_low" in (out / "report.csv").read_text().splitlines()[0]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lemur-table3_two_stage_vs_e2e")
    runs = client.search_runs([exp.experiment_id])
    fits = [r for r in runs if r.data.tags.get("kind") != "report"]
    assert sorted((r.data.tags["variant"], r.data.tags["stage"]) for r in fits) == [
        ("end_to_end", "joint"),
        ("id_only", "fit"),
        ("two_stage", "pretrain"),
        ("two_stage", "rank"),
    ]
    by_stage = {r.data.tags["stage"]: r for r in fits if r.data.tags["variant"] == "two_stage"}
    assert by_stage["rank"].data.tags["lineage.upstream_run_id"] == by_stage["pretrain"].info.run_id
    joint = next(r for r in fits if r.data.tags["variant"] == "end_to_end")  # the same stage-1 run, shared
    assert joint.data.tags["lineage.upstream_run_id"] == by_stage["pretrain"].info.run_id
    assert all("test/qauc" in r.data.metrics for r in fits)
    report_runs = [r for r in runs if r.data.tags.get("kind") == "report"]
    assert len(report_runs) == 1
    assert {a.path for a in client.list_artifacts(report_runs[0].info.run_id, "report")} == {
        "report/report.md",
        "report/report.csv",
        "report/report.png",
    }

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished earlier, skipped") == 4 and "running" not in second.stdout.replace(
        "(resuming)", ""
    )
    assert len(client.search_runs([exp.experiment_id])) == len(runs), "a re-run adds no MLflow run"


def test_flops_per_row_follow_the_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`flops: true` counts a training step's FLOPs per row; fewer encoded rows, fewer FLOPs (cached per variant)."""
    from lemur.data.synth import PRESETS, generate
    from lemur.suite import measure_flops

    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    monkeypatch.chdir(REPO)
    suite = load_suite(REPO / "recipes/suites/table4_sampling.yaml", root=REPO)
    assert suite.flops
    opts = Options(
        out=tmp_path / "out",
        extra_configs=["recipes/tiny.yaml"],
        extra_args=["--data.init_args.root", str(tmp_path / "tiny")],
    )
    v = {x.name: x for x in suite.variants}
    full, sampled = measure_flops(suite, opts, v["no_sampling"]), measure_flops(suite, opts, v["p20_q20"])
    assert full["flops_per_row"] > 1.5 * sampled["flops_per_row"] > 0
    assert full["params"]["total"] == sampled["params"]["total"]
    assert json.loads((opts.out / "p20_q20" / "flops.json").read_text()) == sampled


# ------------------------------------------------------------------------------ --jobs
FAKE_FIT = """
import json, os, sys, time
folder, fail = sys.argv[1], sys.argv[2] == "1"
start = time.time()
time.sleep(1.0)
if fail:
    sys.exit(3)
record = {"status": "tested", "run_id": os.path.basename(folder), "metrics": {"test/auc": 0.5},
          "start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS")}
json.dump(record, open(os.path.join(folder, "metrics.json"), "w"))
"""


def test_jobs_run_chains_at_once_keeping_stage_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--jobs 2: two (variant, seed) chains overlap, stages of one chain stay in order, a failed stage
    skips its later stages only, each run gets cpu_count // 2 threads, and a re-run skips finished runs."""
    import lemur.suite as suite_mod

    path = tmp_path / "s.yaml"
    path.write_text(TWO_STAGE + "  - name: plain\n")
    suite = load_suite(path, root=REPO)
    suite.seeds = [0, 1]
    out = tmp_path / "out"

    def fake_command(suite, opts, variant, seed, stage):
        folder = run_dir(opts.out, variant, seed, stage)
        fail = variant.name == "two_stage" and seed == 1 and stage.name == "pretrain"
        return [sys.executable, "-c", FAKE_FIT, str(folder), "1" if fail else "0"]

    monkeypatch.setattr(suite_mod, "build_command", fake_command)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(suite_mod, "_ensure_experiment", lambda name: None)
    status = suite_mod.run_suite(suite, Options(out=out, jobs=2))
    v = {x.name: x for x in suite.variants}
    rec = lambda name, seed, stage: json.loads(
        (
            run_dir(out, v[name], seed, v[name].stages[[s.name for s in v[name].stages].index(stage)]) / "metrics.json"
        ).read_text()
    )
    assert (
        len(status["done"]) == 4 and len(status["failed"]) == 2 and not status["skipped"]
    )  # seed 1: pretrain failed, rank skipped
    assert not (run_dir(out, v["two_stage"], 1, v["two_stage"].stages[1]) / "metrics.json").exists()
    assert rec("two_stage", 0, "rank")["start"] >= rec("two_stage", 0, "pretrain")["end"]
    spans = [
        (rec(n, s, st)["start"], rec(n, s, st)["end"])
        for n, s, st in [
            ("two_stage", 0, "pretrain"),
            ("two_stage", 0, "rank"),
            ("plain", 0, "fit"),
            ("plain", 1, "fit"),
        ]
    ]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :]), (
        "no two runs overlapped"
    )
    assert rec("plain", 1, "fit")["threads"] == str(max(1, (os.cpu_count() or 1) // 2))

    again = suite_mod.run_suite(suite, Options(out=out, jobs=2))
    assert len(again["skipped"]) == 4 and len(again["failed"]) == 2 and not again["done"]


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lemur.cli",
            "run",
            "recipes/suites/table3_two_stage_vs_e2e.yaml",
            "--jobs",
            "0",
            "--dry-run",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--jobs: expected a positive integer, got 0" in done.stderr


# ------------------------------------------------------------------------------ progress
def test_progress_line_from_a_running_record() -> None:
    from lemur.suite import progress_line

    assert progress_line({"status": "running"}, 5.0) is None
    line = progress_line({"progress": {"step": 200, "total_steps": 800, "train_seconds": 100.0}}, 130.0)
    assert line == "step 200/800 (25%), 2m10s, ~5m00s of training left"
    assert progress_line({"progress": {"step": 900, "total_steps": 800, "train_seconds": 10.0}}, 1.0).startswith(
        "step 900/800 (99%)"
    )
    assert progress_line({"progress": {"step": 3, "total_steps": None}}, 61.0) == "step 3, 1m01s"


def test_run_summary_writes_progress_while_training(tmp_path: Path) -> None:
    """RunSummary refreshes `progress` in metrics.json during fit (what `lemur run` prints), then the test record."""
    from lemur.callbacks.summary import RunSummary
    from lemur.data.synth import PRESETS, generate
    from lemur.trainer_cli import LemurCLI

    generate(PRESETS["tiny"], tmp_path / "tiny", progress=False)
    metrics = tmp_path / "m.json"
    seen: list[dict] = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if metrics.exists():
                seen.append(json.loads(metrics.read_text()).get("progress"))

    cli = LemurCLI(
        args=[
            "-c",
            str(REPO / "recipes/lemur.yaml"),
            "-c",
            str(REPO / "recipes/tiny.yaml"),
            "--data.init_args.root",
            str(tmp_path / "tiny"),
            "--trainer.logger",
            "false",
            "--summary.metrics_file",
            str(metrics),
            "--summary.progress_every_s",
            "1e-6",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--checkpoint.dirpath",
            str(tmp_path / "ckpt"),
        ],
        run=False,
    )
    cli.trainer.callbacks.append(Spy())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    steps = [p["step"] for p in seen if p]
    assert steps == sorted(steps) and steps[-1] == cli.trainer.max_steps and len(set(steps)) > 1
    assert seen[-1]["total_steps"] == cli.trainer.max_steps and seen[-1]["train_seconds"] >= 0
    with pytest.raises(ValueError, match="progress_every_s must be > 0"):
        RunSummary(progress_every_s=0)
