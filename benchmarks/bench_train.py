"""digitlab against the tutorial's own Keras code: the same protocol, the same machine, one table.

    python benchmarks/bench_train.py --model mlp --seeds 0 1 2
    python benchmarks/bench_train.py --model cnn --seeds 0 1 2
    python benchmarks/bench_train.py --model mlp --no-keras          # digitlab alone

Each run is a whole process (interpreter start, imports, data loading, 5 epochs of batch 32 with
validation, the test evaluation, writing results), timed from outside, with its peak memory. Keras
runs `../shared/reference/keras_seed.py` unchanged in a virtualenv holding tensorflow-cpu 2.21.0,
created on first use in benchmarks/.keras-venv. Runs of the two alternate, so both see the same
machine; compare ratios from one invocation only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "benchmarks" / ".keras-venv"
KERAS_SCRIPT = ROOT.parent / "shared" / "reference" / "keras_seed.py"
KERAS_PACKAGES = ["tensorflow-cpu==2.21.0", "scikit-learn", "numpy"]


def ensure_keras_venv() -> Path:
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {VENV} with {' '.join(KERAS_PACKAGES)} (one time, a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *KERAS_PACKAGES], check=True)
    return python


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, str]:
    """Run a command; return (wall seconds, peak RSS in MB, stdout, stderr)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss // 1024, stdout, stderr


def run_keras(python: Path, model: str, data: Path) -> dict:
    wall, rss, stdout, _ = timed([str(python), str(KERAS_SCRIPT), "--data", str(data / "mnist"), "--model", model],
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    res = json.loads(stdout.strip().splitlines()[-1])
    return {"who": "keras", "wall_s": wall, "peak_mb": rss, "fit_s": res["fit_s"], "epoch_s": res["epoch_s"],
            "test_acc": res["test_acc"], "version": res["framework"]}


def run_digitlab(model: str, seed: int, data: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "digitlab", "train", "--model", model, "--seed", str(seed),
               "--data-dir", str(data), "--runs-dir", runs, "--name", "bench", "--quiet", "--json", *extra]
        wall, rss, stdout, _ = timed(cmd)
    res = json.loads(stdout)
    return {"who": "digitlab", "wall_s": wall, "peak_mb": rss, "fit_s": res["train_time_s"],
            "epoch_s": res["epoch_time_s"], "test_acc": res["test_accuracy"], "seed": seed}


def describe(rows: list[dict]) -> str:
    walls = [r["wall_s"] for r in rows]
    accs = [r["test_acc"] for r in rows]
    epochs = [t for r in rows for t in r["epoch_s"]]
    return (f"whole {statistics.median(walls):6.1f} s (runs {', '.join(f'{w:.1f}' for w in walls)}) | "
            f"fit {statistics.median(r['fit_s'] for r in rows):6.1f} s | "
            f"epoch {min(epochs):.2f}-{max(epochs):.2f} s | test acc median {statistics.median(accs):.4f} "
            f"({', '.join(f'{a:.4f}' for a in accs)}) | peak {max(r['peak_mb'] for r in rows)} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    default_data = Path(os.environ.get("DIGITLAB_DATA_DIR", ROOT.parent / "shared" / "data"))
    ap.add_argument("--data-dir", type=Path, default=default_data)
    ap.add_argument("--keras-runs", type=int, default=None, help="Keras runs (default: one per seed)")
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--json", type=Path, help="also write all measurements to this file")
    ap.add_argument("extra", nargs="*", help="extra options for digitlab train (after --)")
    a = ap.parse_args()
    if not (a.data_dir / "mnist").is_dir():
        raise SystemExit(f"no MNIST files in {a.data_dir}/mnist (use --data-dir)")
    keras_python = None
    if not a.no_keras:
        if not KERAS_SCRIPT.is_file():
            raise SystemExit(f"the Keras reference script is missing: {KERAS_SCRIPT}")
        keras_python = ensure_keras_venv()
    n_keras = len(a.seeds) if a.keras_runs is None else a.keras_runs
    rows: list[dict] = []
    for i, seed in enumerate(a.seeds):
        if keras_python is not None and i < n_keras:
            rows.append(run_keras(keras_python, a.model, a.data_dir))
            k = rows[-1]
            print(f"keras    {a.model}: {k['wall_s']:.1f} s, test acc {k['test_acc']:.4f}", file=sys.stderr)
        rows.append(run_digitlab(a.model, seed, a.data_dir, a.extra))
        print(f"digitlab {a.model} seed {seed}: {rows[-1]['wall_s']:.1f} s, test acc {rows[-1]['test_acc']:.4f}",
              file=sys.stderr)
    import platform

    import torch

    print(f"\n{a.model} protocol: MNIST, 80/20 split, 5 epochs, batch 32, Adam, then the 10k test set")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    dl = [r for r in rows if r["who"] == "digitlab"]
    ks = [r for r in rows if r["who"] == "keras"]
    print(f"digitlab : {describe(dl)}")
    if ks:
        print(f"keras    : {describe(ks)}  [{ks[0]['version']}]")
        ratio = statistics.median(r["wall_s"] for r in ks) / statistics.median(r["wall_s"] for r in dl)
        fit_ratio = statistics.median(r["fit_s"] for r in ks) / statistics.median(r["fit_s"] for r in dl)
        print(f"speed-up : {ratio:.1f}x whole process, {fit_ratio:.1f}x fit (median over median)")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
