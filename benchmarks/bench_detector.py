"""The "not a digit" detector on held-out data: rejection rates, ROC and AUROC.

    python benchmarks/bench_detector.py [--mnist 10000] [--workers 2] [--cache /tmp/bench-detector.npz]
                                        [--json out.json] [--roc roc.png] [--model models/mnist-best]

Nothing here chose the detector's threshold or was trained on: MNIST and Fashion-MNIST *test*
images, letters in fonts the training never used (:data:`detector_data.HELDOUT_FONTS`), letters,
scribbles, shapes and noise drawn with other seeds, degraded MNIST test digits (thumbnails, blur,
low contrast, gamma, JPEG, thick and thin), and ``tests/realworld``. Everything is handed in as a
picture through ``load_digit``, as users would; a picture the pipeline refuses (blank) counts as
rejected and is counted apart. ``--model`` also reports the AUROC of that model's own top
probability, for comparison.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_data as D  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REALWORLD = ROOT / "tests" / "realworld"
SEED = 7_000  # the training uses seeds below 1000 * 1_000_003 + chunks; these are far away

# set -> (is a digit, target: the largest share rejected for digits / the smallest for the rest)
TARGETS = {"mnist-test": (True, 0.005), "realworld": (True, 0.01), "degraded": (True, 0.01),
           "fashion-test": (False, 0.95), "font-letter": (False, 0.90), "stroke-letter": (False, 0.90),
           "junk": (False, 0.90)}


def _job(args: tuple[str, int, int, int]) -> tuple[str, np.ndarray, list[str]]:
    """(set, inputs (n, 28, 28) uint8 with refused pictures as zeros, kind of each)."""
    name, seed, start, n = args
    from digitlab.data.datasets import load_data
    from digitlab.data.pictures import load_digit
    from digitlab.errors import ImageError

    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    kinds: list[str] = []

    def add(ink, kind, **opts):
        x = D.hand_in(ink, rng, **opts)
        xs.append(np.zeros((28, 28), np.uint8) if x is None else x)
        kinds.append(kind)

    if name in ("mnist-test", "fashion-test", "degraded"):
        (_, _), (x, _) = load_data("fashion-mnist" if name == "fashion-test" else "mnist", quiet=True)
        for i in range(start, start + n):
            if name == "degraded":
                kind = D.DEGRADATIONS[i % len(D.DEGRADATIONS)]
                ink, opts = D.degrade(x[i], kind, rng)
                add(ink, kind, **opts)
            else:
                add(x[i].astype(np.float32) / 255.0, "picture", size=int(rng.integers(28, 160)))
    elif name == "font-letter":
        fonts = D.find_fonts(D.HELDOUT_FONTS)
        for i in range(start, start + n):
            font = fonts[i % len(fonts)]
            ink = None
            while ink is None:
                ink = D.font_glyph(D.LETTERS[(i // len(fonts) + int(rng.integers(len(D.LETTERS)))) % len(D.LETTERS)],
                                   font, rng)
            add(ink, font.stem)
    elif name == "stroke-letter":
        for i in range(start, start + n):
            g = D.LETTER_GLYPHS[i % len(D.LETTER_GLYPHS)]
            add(D.stroke_glyph(g, rng), g)
    elif name == "junk":
        for i in range(start, start + n):
            kind = D.JUNK_KINDS[i % len(D.JUNK_KINDS)]
            add(D.junk(kind, rng), kind)
    elif name == "realworld":
        with (REALWORLD / "labels.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            try:
                xs.append(load_digit(REALWORLD / "images" / r["file"]))
            except ImageError:
                xs.append(np.zeros((28, 28), np.uint8))
            kinds.append(r["kind"])
    return name, np.stack(xs), kinds


def build(n_mnist: int, n_other: int, workers: int) -> dict[str, tuple[np.ndarray, list[str]]]:
    sizes = {"mnist-test": n_mnist, "fashion-test": n_other, "degraded": len(D.DEGRADATIONS) * (n_other // 8),
             "font-letter": n_other, "stroke-letter": n_other, "junk": n_other}
    jobs = [("realworld", SEED, 0, 400)]
    for name, n in sizes.items():
        for k in range(0, n, 250):
            jobs.append((name, SEED + len(jobs), k, min(250, n - k)))
    parts: dict[str, list] = {}
    t0 = time.time()
    with ProcessPoolExecutor(workers) as pool:
        for i, (name, x, kinds) in enumerate(pool.map(_job, jobs)):
            parts.setdefault(name, []).append((x, kinds))
            print(f"\r{i + 1}/{len(jobs)} chunks, {time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {k: (np.concatenate([x for x, _ in v]), sum((kk for _, kk in v), [])) for k, v in parts.items()}


def timing(x: np.ndarray) -> dict[str, float]:
    """Time per image of digit_scores, one image per call and in batches of 1000: wall clock and CPU time
    of this process (on a loaded machine the wall clock mostly measures waiting for a core), medians
    and ranges over 7 repeats."""
    from digitlab.inference.detector import digit_scores

    rows: dict[str, list[float]] = {"one_wall": [], "one_cpu": [], "batch_wall": [], "batch_cpu": []}
    digit_scores(x[:1])
    for _ in range(7):
        t, c = time.perf_counter(), time.process_time()
        for i in range(200):
            digit_scores(x[i : i + 1])
        rows["one_wall"].append((time.perf_counter() - t) / 200 * 1e3)
        rows["one_cpu"].append((time.process_time() - c) / 200 * 1e3)
        t, c = time.perf_counter(), time.process_time()
        digit_scores(x[:1000])
        rows["batch_wall"].append((time.perf_counter() - t) / 1000 * 1e3)
        rows["batch_cpu"].append((time.process_time() - c) / 1000 * 1e3)
    out = {}
    for k, v in rows.items():
        out[f"{k}_ms_median"], out[f"{k}_ms_min"], out[f"{k}_ms_max"] = float(np.median(v)), min(v), max(v)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", type=int, default=3000, help="MNIST test digits handed in as pictures")
    p.add_argument("--n", type=int, default=600, help="pictures in each of the other sets")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", type=Path, default=None, help="keep the 28x28 inputs in this .npz")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument("--roc", type=Path, default=None, help="save the ROC curve as this PNG")
    p.add_argument("--model", type=Path, default=None, help="also score a model's own top probability")
    a = p.parse_args()

    if a.cache is not None and a.cache.exists():
        with np.load(a.cache) as f:
            data = {k[:-2]: (f[k], list(f[k[:-2] + "_k"])) for k in f.files if k.endswith("_x")}
    else:
        data = build(a.mnist, a.n, a.workers)
        if a.cache is not None:
            np.savez_compressed(a.cache, **{f"{k}_x": x for k, (x, _) in data.items()},
                                **{f"{k}_k": np.array(kk) for k, (_, kk) in data.items()})

    from sklearn.metrics import roc_auc_score, roc_curve

    from digitlab.inference.detector import THRESHOLD, digit_scores

    out: dict = {"threshold": THRESHOLD, "sets": {}}
    scores, truth = [], []
    print(f"threshold {THRESHOLD:.4f}")
    print(f"{'set':<15} {'n':>6} {'rejected':>9} {'refused':>8} {'target':>12}  worst kinds")
    for name, (x, kinds) in data.items():
        s = digit_scores(x)
        refused = x.reshape(len(x), -1).max(axis=1) == 0
        rej = s < THRESHOLD
        digit, target = TARGETS[name]
        met = rej.mean() <= target if digit else rej.mean() >= target
        by_kind = {}
        for k in sorted(set(kinds)):
            m = np.array([kk == k for kk in kinds])
            by_kind[k] = round(float(rej[m].mean()), 4)
        worst = sorted(by_kind.items(), key=lambda kv: kv[1], reverse=digit)[:4]
        out["sets"][name] = {"n": len(x), "rejected": round(float(rej.mean()), 4),
                             "refused_as_blank": round(float(refused.mean()), 4),
                             "target": ("<= " if digit else ">= ") + f"{target:.1%}", "met": bool(met),
                             "by_kind": by_kind}
        print(f"{name:<15} {len(x):>6} {rej.mean():>9.2%} {refused.mean():>8.2%} "
              f"{('<= ' if digit else '>= ') + f'{target:.1%}':>12}{'' if met else ' NOT MET'}  "
              + ", ".join(f"{k} {v:.1%}" for k, v in worst))
        ok = ~refused  # ROC over the pictures the pipeline takes
        scores.append(s[ok])
        truth.append(np.full(ok.sum(), digit))
    s, t = np.concatenate(scores), np.concatenate(truth)
    auroc = float(roc_auc_score(t, s))
    fpr, tpr, thr = roc_curve(t, s)
    out["auroc"] = auroc
    out["operating_point"] = {"threshold": THRESHOLD, "tpr": float((s[t] >= THRESHOLD).mean()),
                              "fpr": float((s[~t] >= THRESHOLD).mean())}
    op = out["operating_point"]
    print(f"AUROC {auroc:.5f} (digits vs the rest, refused pictures left out); at the threshold: "
          f"digits accepted {op['tpr']:.2%}, non-digits accepted {op['fpr']:.2%}")
    for name in ("fashion-test", "font-letter", "stroke-letter", "junk"):
        x, _ = data[name]
        m = x.reshape(len(x), -1).max(axis=1) > 0
        pos = np.concatenate([data[k][0] for k in ("mnist-test", "degraded", "realworld")])
        ss = np.concatenate([digit_scores(pos), digit_scores(x[m])])
        tt = np.concatenate([np.ones(len(pos), bool), np.zeros(m.sum(), bool)])
        out["sets"][name]["auroc"] = round(float(roc_auc_score(tt, ss)), 5)
    negatives = ("fashion-test", "font-letter", "stroke-letter", "junk")
    print("AUROC per set (vs all digits): " + ", ".join(f"{k} {out['sets'][k]['auroc']:.4f}" for k in negatives))
    if a.model is not None:
        from digitlab.inference.predictor import load_predictor, predict_proba

        pred = load_predictor(a.model)
        xs = np.concatenate([data[k][0] for k in data])
        tt = np.concatenate([np.full(len(data[k][0]), TARGETS[k][0]) for k in data])
        m = xs.reshape(len(xs), -1).max(axis=1) > 0
        top = predict_proba(pred, xs[m]).max(axis=1)
        out["model_top_probability_auroc"] = float(roc_auc_score(tt[m], top))
        print(f"AUROC of {a.model}'s own top probability: {out['model_top_probability_auroc']:.4f}")
    out["timing"] = timing(data["mnist-test"][0])
    tm = out["timing"]
    for k, what in (("one", "one image per call"), ("batch", "in batches of 1000")):
        print(f"digit_scores, {what}: {tm[k + '_cpu_ms_median']:.4f} ms CPU per image "
              f"({tm[k + '_cpu_ms_min']:.4f}-{tm[k + '_cpu_ms_max']:.4f}), wall {tm[k + '_wall_ms_median']:.4f} ms "
              f"({tm[k + '_wall_ms_min']:.4f}-{tm[k + '_wall_ms_max']:.4f})")
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=1))
    if a.roc is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr)
        ax.plot([out["operating_point"]["fpr"]], [out["operating_point"]["tpr"]], "o")
        ax.set_xscale("log")
        ax.set_xlabel("non-digits accepted")
        ax.set_ylabel("digits accepted")
        ax.set_title(f"not-a-digit detector, AUROC {auroc:.4f}")
        fig.tight_layout()
        fig.savefig(a.roc, dpi=100)


if __name__ == "__main__":
    main()
