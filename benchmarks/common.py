"""Shared helpers of the benchmark scripts: machine description, building a recipe's model, results files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def machine(device: str) -> dict:
    """Date, host, versions, load and device: recorded with every result."""
    from importlib.metadata import version

    import torch

    info = {
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": version("lightning"),  # not imported: a script that needs no Lightning starts in seconds
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def add_recipe_args(parser) -> None:
    """``--recipe`` (the recipe stack, default recipes/lemur.yaml) and ``--preset`` (LEMUR-Synth data)."""
    parser.add_argument("--recipe", nargs="+", default=[str(REPO / "recipes/lemur.yaml")])
    parser.add_argument("--preset", default="small")


def add_run_args(parser) -> None:
    """``--device``, ``--precision``, ``--out`` and ``--threads``: what every benchmark script takes."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    add_threads_arg(parser)


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Lay out, write and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def add_threads_arg(parser) -> None:
    """``--threads N``: torch intra-op threads (default: torch's own choice, one per core).

    On a CPU shared with other jobs, 1 thread gives steadier numbers: an OpenMP op whose second
    thread is descheduled waits for it (a 1024 x 128 cosine took 0.17 ms on 1 thread and 124 ms
    on 2 on the shared 2-core machine)."""
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")


def set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def device_label(device: str) -> str:
    return "cpu" if device == "cpu" else "gpu"


def ensure_data(preset: str) -> Path:
    """LEMUR-Synth ``preset`` under data/, generated if missing."""
    from lemur.data.synth import PRESETS, generate

    root = REPO / "data" / f"synth-{preset}"
    if not (root / "events.parquet").exists():
        generate(PRESETS[preset], root, progress=False)
    return root


def build(recipe: list[str], overrides: list[str]):
    """(model, datamodule) of a recipe, instantiated by the real CLI (no training)."""
    from lemur.trainer_cli import LemurCLI

    args = [x for r in recipe for x in ("-c", str(r))] + ["--trainer.logger", "false", *overrides]
    saved = sys.argv
    sys.argv = ["lemur"]
    try:
        cli = LemurCLI(args=args, run=False)
    finally:
        sys.argv = saved
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule


def write(name: str, payload: dict, device: str, out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{payload['machine']['date']}-{device_label(device)}.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def timed_step(model, opt, batch: dict, index: int, autocast, device: str) -> float:
    """Seconds of one training step of ``model`` (forward under ``autocast``, backward, optimizer step)."""
    with Timer(device) as t:
        with autocast:
            loss = model.training_step(batch, index)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return t.seconds


class Timer:
    """Wall time of a block; synchronises CUDA so GPU timings are real."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __enter__(self):
        self._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.seconds = time.perf_counter() - self.start

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
