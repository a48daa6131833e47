"""diagnostics/oracle_taste.py: the taste code follows the marker tokens; its recipe and suite train on tiny."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from lemur.data.synth import PRESETS, generate

    root = tmp_path_factory.mktemp("oracle") / "tiny"
    generate(PRESETS["tiny"], root, progress=False)
    return root


def _oracle(root: Path, scale: float = 2.0):
    from diagnostics.oracle_taste import TasteOracleTextEncoder
    from lemur.encoders import TransformerTextEncoder

    inner = TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32, num_types=5, out_dim=24)
    return TasteOracleTextEncoder(inner, str(root / "synth.json"), scale=scale)


def test_code_is_the_share_of_marker_tokens_per_taste(tiny: Path) -> None:
    from transformers import AutoTokenizer

    from lemur.data.tokenize import default_tokenizer_path

    oracle = _oracle(tiny)
    markers = json.loads((tiny / "synth.json").read_text())["vocabulary"]["text_taste_markers"]
    tok = AutoTokenizer.from_pretrained(default_tokenizer_path())
    a, b = (tok.convert_tokens_to_ids([m[0]])[0] for m in markers[:2])
    filler = tok.convert_tokens_to_ids(["house"])[0]
    tokens = torch.tensor([[101, a, filler, a, b, 102], [101, filler, filler, 102, a, b], [101, filler, 102, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    code = oracle.taste_code(tokens, mask)
    assert code.shape == (3, len(markers))
    torch.testing.assert_close(code[0, :2], torch.tensor([2 / 3, 1 / 3]))
    assert code[1].sum() == 0 and code[2].sum() == 0  # masked-out markers do not count; no marker = zeros
    out = oracle(tokens, mask, torch.zeros_like(tokens))
    assert out.shape == (3, 24)
    torch.testing.assert_close(out[:, -len(markers) :], 2.0 * code)
    out.sum().backward()  # the wrapped encoder still trains through the other outputs
    assert (
        oracle.encoder.proj.weight.grad is not None
        and oracle.encoder.proj.weight.grad[: 24 - len(markers)].abs().sum() > 0
    )


def test_missing_synth_json_is_named(tmp_path: Path) -> None:
    from diagnostics.oracle_taste import TasteOracleTextEncoder
    from lemur.encoders import TransformerTextEncoder

    with pytest.raises(FileNotFoundError, match="synth_json: no such file"):
        TasteOracleTextEncoder(
            TransformerTextEncoder(num_layers=1, hidden_dim=16, num_heads=2, ffn_dim=32), str(tmp_path / "none.json")
        )


@pytest.mark.slow
def test_oracle_suite_runs_on_tiny(tiny: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "lemur.cli",
        "run",
        "diagnostics/oracle_taste_suite.yaml",
        "--config",
        "recipes/tiny.yaml",
        "--seeds",
        "0",
        "--max-steps",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--data",
        str(tiny),
        "--model.init_args.doc_encoder.init_args.modalities.text.init_args.synth_json",
        str(tiny / "synth.json"),
    ]
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for variant in ("bank_history", "no_history"):
        record = json.loads((tmp_path / "out" / variant / "seed0" / "fit" / "metrics.json").read_text())
        assert record["status"] == "tested" and 0.0 <= record["metrics"]["test/auc"] <= 1.0
    assert (tmp_path / "out" / "report.md").read_text().count("bank_history") >= 1
