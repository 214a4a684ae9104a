"""The native engine's kernels alone, builds against each other: one epoch of training, timed per build.

    python benchmarks/bench_native.py                                   # the built library
    python benchmarks/bench_native.py --lib old=/tmp/old.so --lib new=/tmp/new.so

Each round trains one epoch of MNIST (54,000 images, batch 32, 10% held out as in the tutorial
protocol) from the same starting weights on every build, in turn, in one process: the builds see
the same machine. The MLP round also evaluates the held-out images. Prints each build's median
epoch time with its range, and whether the builds' weights agree bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

import numpy as np

from digitlab.data.datasets import load_data
from digitlab.training import native


def load(path: Path):
    native._LIB, native._LOAD_ERROR = None, None
    native._library_path = lambda: path
    lib = native.library()
    if lib is None:
        raise SystemExit(native.load_error())
    return lib


def epoch(model: str, x: np.ndarray, y: np.ndarray, threads: int) -> tuple[float, str]:
    net = native.NativeCNN(seed=0) if model == "cnn" else native.NativeMLP([784, 128, 64, 10], seed=0)
    n_train = len(x) * 9 // 10
    idx = np.random.default_rng(0).permutation(n_train)
    steps = -(-n_train // 32)
    lrs = np.full(steps, 1e-3, np.float32)
    t0 = time.perf_counter()
    for s0 in range(0, steps, 256):  # as fit_native calls the kernels
        s1 = min(steps, s0 + 256)
        net.train_steps(x, y, idx[s0 * 32 : s1 * 32], 32, lrs[s0:s1], threads=threads)
    net.evaluate(x[n_train:], y[n_train:], threads)
    took = time.perf_counter() - t0
    digest = hashlib.sha256(b"".join(w.tobytes() for w in net.W + net.b)).hexdigest()[:12]
    return took, digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", action="append", default=[], help="NAME=PATH of a built library (repeatable)")
    ap.add_argument("--model", choices=["mlp", "cnn"], nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    libs = dict(item.split("=", 1) for item in args.lib) or {"built": str(native._library_path())}
    libs = {name: load(Path(path)) for name, path in libs.items()}
    (x, y), _ = load_data("mnist", args.data_dir, quiet=True)
    x = x.reshape(len(x), 784)
    y = y.astype(np.int64)
    for model in args.model:
        times: dict[str, list[float]] = {name: [] for name in libs}
        digests: dict[str, set[str]] = {name: set() for name in libs}
        for _ in range(args.rounds):
            for name, lib in libs.items():
                native._LIB = lib
                took, digest = epoch(model, x, y, args.threads)
                times[name].append(took)
                digests[name].add(digest)
        for name in libs:
            t = times[name]
            print(f"{model} {name:>8}: epoch {statistics.median(t):6.2f} s median, range {min(t):.2f}-{max(t):.2f} "
                  f"({args.rounds} rounds, {args.threads} threads), weights {','.join(sorted(digests[name]))}")
        same = len({d for ds in digests.values() for d in ds}) == 1
        print(f"{model}: weights {'identical' if same else 'DIFFER'} across builds")


if __name__ == "__main__":
    main()
