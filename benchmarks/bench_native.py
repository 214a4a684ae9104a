"""The native engine's kernels alone, builds against each other: training steps on MNIST, timed per build.

    python benchmarks/bench_native.py                                   # the built library
    python benchmarks/bench_native.py --lib old=/tmp/old.so --lib new=/tmp/new.so --model cnn --steps 400

Each round trains the same steps (batch 32 over the tutorial's 54,000 training images, a whole
epoch unless --steps says fewer) from the same starting weights on every build in turn (the order
reversed every other round), in one process, then evaluates the 6,000 held-out images: the builds
see the same machine. Prints each
build's median wall and CPU time with their ranges, the medians of the per-round ratios to the first
build (on a loaded machine, trust the CPU ratio with one thread, and compare it with a copy of the
first build to see the noise), and whether the builds' weights agree bit for bit.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import statistics
import time
from pathlib import Path

import numpy as np

from digitlab.data.datasets import load_data
from digitlab.training import native

FUNCTIONS = ("dl_train", "dl_evaluate", "dl_cnn_train", "dl_cnn_evaluate", "dl_kernels")


def load(path: Path, like: ctypes.CDLL) -> ctypes.CDLL:
    """A build of the library with the signatures of the current one (older builds lack newer functions)."""
    lib = ctypes.CDLL(str(path.resolve()))
    for name in FUNCTIONS:
        mine, theirs = getattr(lib, name), getattr(like, name)
        mine.restype, mine.argtypes = theirs.restype, theirs.argtypes
    return lib


def run(model: str, x: np.ndarray, y: np.ndarray, steps: int | None, threads: int) -> tuple[float, float, str]:
    net = native.NativeCNN(seed=0) if model == "cnn" else native.NativeMLP([784, 128, 64, 10], seed=0)
    n_train = len(x) * 9 // 10
    idx = np.random.default_rng(0).permutation(n_train)
    steps = min(steps or n_train, -(-n_train // 32))
    lrs = np.full(steps, 1e-3, np.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    for s0 in range(0, steps, 256):  # as fit_native calls the kernels
        s1 = min(steps, s0 + 256)
        net.train_steps(x, y, idx[s0 * 32 : s1 * 32], 32, lrs[s0:s1], threads=threads)
    net.evaluate(x[n_train:], y[n_train:], threads)
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    digest = hashlib.sha256(b"".join(w.tobytes() for w in net.W + net.b)).hexdigest()[:12]
    return took, cpu, digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", action="append", default=[], help="NAME=PATH of a built library (repeatable)")
    ap.add_argument("--model", choices=["mlp", "cnn"], nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, help="training steps per round (default: one epoch, 1688)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    current = native.library()
    if current is None:
        raise SystemExit(native.load_error())
    paths = dict(item.split("=", 1) for item in args.lib) or {"built": str(native._library_path())}
    libs = {name: load(Path(path), current) for name, path in paths.items()}
    (x, y), _ = load_data("mnist", args.data_dir, quiet=True)
    x = x.reshape(len(x), 784)
    y = y.astype(np.int64)
    for model in args.model:
        times: dict[str, list[float]] = {name: [] for name in libs}
        cpus: dict[str, list[float]] = {name: [] for name in libs}
        digests: set[str] = set()
        for r in range(args.rounds):
            for name, lib in (list(libs.items())[::-1] if r % 2 else libs.items()):  # ABBA: no build always first
                native._LIB = lib
                took, cpu, digest = run(model, x, y, args.steps, args.threads)
                times[name].append(took)
                cpus[name].append(cpu)
                digests.add(digest)
        native._LIB = current
        base = next(iter(libs))
        for name, t in times.items():
            c = cpus[name]
            ratio = statistics.median(a / b for a, b in zip(t, times[base], strict=True))
            cpu_ratio = statistics.median(a / b for a, b in zip(c, cpus[base], strict=True))
            print(f"{model} {name:>8}: wall {statistics.median(t):6.2f} s median ({min(t):.2f}-{max(t):.2f}), "
                  f"CPU {statistics.median(c):6.2f} s ({min(c):.2f}-{max(c):.2f}); per-round ratio to {base}: "
                  f"wall x{ratio:.3f}, CPU x{cpu_ratio:.3f} ({args.rounds} rounds, {args.threads} thread(s))")
        print(f"{model}: weights {'identical' if len(digests) == 1 else 'DIFFER'} across builds and rounds")


if __name__ == "__main__":
    main()
