"""Train the "not a digit" detector shipped in ``src/digitlab/inference/detector.safetensors``.

    python benchmarks/train_detector.py [--seed 0] [--workers 2] [--cache /tmp/detector-train.npz]

Positives: MNIST *train* digits, as they are, softened at 28 px (blur, thick, thin, pixelated) and
handed in as pictures through ``load_digit`` (plain and degraded: thumbnails, blur, low contrast,
gamma, JPEG, thick/thin strokes), plus digits printed in the training fonts and drawn as strokes.
Negatives: Fashion-MNIST *train*, letters in the training fonts and drawn as strokes (the letters
written like digits left out), scribbles, shapes, noise, dots and flat lines; most of them handed in
as pictures too, the rest through a plain grey-level centring. The threshold is chosen on a
validation tenth of these (never on the held-out sets of ``bench_detector.py``). Needs torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_data as D  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "digitlab" / "inference" / "detector.safetensors"

# group name -> (label, weight in the loss: the groups are balanced by it, whatever their size)
GROUPS = {
    "mnist": (1, 1.0), "mnist-soft": (1, 1.0), "mnist-picture": (1, 1.0), "mnist-degraded": (1, 1.5),
    "font-digit": (1, 1.0), "stroke-digit": (1, 1.0),
    "fashion": (0, 0.5), "fashion-picture": (0, 4.0), "font-letter": (0, 2.0), "stroke-letter": (0, 2.0),
    "junk": (0, 4.5),
}


def _job(args: tuple[str, int, int]) -> tuple[str, np.ndarray]:
    """One chunk of one group (run in a worker): (group, (n, 28, 28) uint8; refused pictures dropped)."""
    group, seed, n = args
    from digitlab.data.datasets import load_data

    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []

    def add(ink: np.ndarray, picture: bool, **opts) -> None:
        x = D.hand_in(ink, rng, **opts) if picture else D.grey_mnist(ink)
        if x is not None:
            out.append(x)

    if group in ("mnist-picture", "mnist-degraded", "fashion-picture"):
        name = "fashion-mnist" if group.startswith("fashion") else "mnist"
        (x, _), _ = load_data(name, quiet=True)
        for i in rng.choice(len(x), n, replace=False):
            if group == "mnist-degraded":
                ink, opts = D.degrade(x[i], str(rng.choice(D.DEGRADATIONS)), rng)
                add(ink, True, **opts)
            else:
                add(x[i].astype(np.float32) / 255.0, True, size=int(rng.integers(28, 160)))
    elif group in ("font-digit", "font-letter"):
        fonts = D.find_fonts(D.TRAIN_FONTS)
        chars = "0123456789" if group == "font-digit" else D.LETTERS
        while len(out) < n:
            ink = D.font_glyph(str(rng.choice(list(chars))), fonts[rng.integers(len(fonts))], rng)
            if ink is not None:
                add(ink, rng.random() < 0.6)
    elif group in ("stroke-digit", "stroke-letter"):
        names = D.DIGIT_GLYPHS if group == "stroke-digit" else D.LETTER_GLYPHS
        for _ in range(n):
            add(D.stroke_glyph(str(rng.choice(names)), rng), rng.random() < 0.6)
    elif group == "junk":
        for _ in range(n):
            add(D.junk(str(rng.choice(D.JUNK_KINDS)), rng), rng.random() < 0.85)
    else:
        raise ValueError(group)
    return group, np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)


SIZES = {"mnist-picture": 12000, "mnist-degraded": 14000, "fashion-picture": 12000, "font-digit": 6000,
         "font-letter": 12000, "stroke-digit": 6000, "stroke-letter": 9000, "junk": 10000}
#: The shipped detector's data: --scale 0.12 (all groups, seed 0) plus this much more of these (seed 1).
EXTRA = {"font-letter": 2500, "stroke-letter": 2500, "junk": 6000, "font-digit": 1000, "stroke-digit": 1000,
         "fashion-picture": 4000, "mnist-degraded": 2000, "mnist-picture": 1000}


def build_pictures(seed: int, workers: int, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    jobs, chunk = [], 250
    for g, n in sizes.items():
        for k in range(0, n, chunk):
            jobs.append((g, seed * 1_000_003 + len(jobs) + 1, min(chunk, n - k)))
    parts: dict[str, list[np.ndarray]] = {}
    t0 = time.time()
    with ProcessPoolExecutor(workers) as pool:
        for i, (g, x) in enumerate(pool.map(_job, jobs)):
            parts.setdefault(g, []).append(x)
            print(f"\r{i + 1}/{len(jobs)} chunks, {time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {g: np.concatenate(v) for g, v in parts.items()}


def build(seed: int, workers: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    from digitlab.data.datasets import load_data

    rng = np.random.default_rng(seed)
    (mx, _), _ = load_data("mnist", quiet=True)
    (fx, _), _ = load_data("fashion-mnist", quiet=True)
    n_grey = int(15000 * scale)
    fashion_grey = np.stack([D.grey_mnist(a / 255.0) for a in fx[-n_grey:]])
    data = {"mnist": mx, "fashion": np.concatenate([fx[:30000], fashion_grey])}
    data["mnist-soft"] = np.stack([D.grey_degrade(mx[i], rng) for i in rng.choice(len(mx), 2 * n_grey, replace=False)])
    data.update(build_pictures(seed, workers, {g: int(n * scale) for g, n in SIZES.items()}))
    return data


def train(data: dict[str, np.ndarray], seed: int, steps: int, hidden: tuple[int, ...],
          cnn: bool = False, channels: tuple[int, int] = (16, 32)) -> tuple[dict, dict]:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    xs, ys, ws, gs, val = [], [], [], [], []
    names = list(GROUPS)
    for gi, g in enumerate(names):
        x = data[g]
        label, weight = GROUPS[g]
        is_val = rng.random(len(x)) < 0.1
        xs.append(x)
        ys.append(np.full(len(x), label, np.float32))
        ws.append(np.full(len(x), weight / len(x), np.float32))
        gs.append(np.full(len(x), gi))
        val.append(is_val)
    x = torch.from_numpy(np.concatenate(xs).reshape(-1, 784).astype(np.float32) / 255.0)
    y = torch.from_numpy(np.concatenate(ys))
    w = np.concatenate(ws)
    g = np.concatenate(gs)
    v = np.concatenate(val)
    tr = np.flatnonzero(~v)
    nn = torch.nn
    if cnn:  # conv 5x5/2 -> C1 x 12x12, conv 3x3/2 -> C2 x 5x5, dense, 1 (shipped: 16, 32, 64)
        c1, c2 = channels
        net = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, c1, 5, stride=2), nn.ReLU(),
                            nn.Conv2d(c1, c2, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(25 * c2, hidden[0]),
                            nn.ReLU(), nn.Linear(hidden[0], 1))
    else:
        layers: list[torch.nn.Module] = []
        d = 784
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, 1))
        net = nn.Sequential(*layers)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    # batches drawn with each group's weight (so a small group of hard negatives counts as much as
    # MNIST's 60000), each batch shifted by up to a pixel (centring is never exact)
    p = w[tr] / w[tr].sum()
    total = 0.0
    net.train()
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(tr, 256, p=p))
        xb = x[idx]
        sh = rng.integers(-1, 2, 2)
        if sh.any():
            xb = torch.roll(xb.view(-1, 28, 28), shifts=(int(sh[0]), int(sh[1])), dims=(1, 2)).reshape(-1, 784)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb).squeeze(1), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
        if (step + 1) % 200 == 0:
            print(f"step {step + 1}/{steps}: loss {total / 200:.4f}", file=sys.stderr, flush=True)
            total = 0.0
    net.eval()
    with torch.no_grad():
        score = torch.sigmoid(net(x).squeeze(1)).numpy()
    report = {}
    for gi, name in enumerate(names):
        m = (g == gi) & v
        report[name] = {"n": int(m.sum()), "scores": score[m]}
    weights = numpy_weights(net, cnn)
    from digitlab.inference.detector import as_layers, logits

    check = rng.choice(len(x), 500, replace=False)  # the NumPy forward pass must be the network's
    with torch.no_grad():
        want = net(x[check]).squeeze(1).numpy()
    got = logits(x[check].numpy() * 255.0, *as_layers(weights))
    assert np.abs(got - want).max() < 1e-3, np.abs(got - want).max()
    return weights, report


def numpy_weights(net, cnn: bool) -> dict[str, np.ndarray]:
    """The layers as the matrices digitlab.inference.detector multiplies (inputs in the rows)."""
    import torch

    weights = {}
    if cnn:
        c1, c2, f1, f2 = [m for m in net if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
        k1, k2 = c1.weight.shape[0], c2.weight.shape[0]
        weights["c1"] = c1.weight.detach().numpy().reshape(k1, 25).T.copy()      # patch (ky, kx)
        weights["c1b"] = c1.bias.detach().numpy().copy()
        weights["c2"] = c2.weight.detach().numpy().reshape(k2, 9 * k1).T.copy()  # patch (c, ky, kx)
        weights["c2b"] = c2.bias.detach().numpy().copy()
        h = f1.weight.shape[0]
        weights["w0"] = (f1.weight.detach().numpy().reshape(h, k2, 5, 5).transpose(0, 2, 3, 1)
                         .reshape(h, 25 * k2).T.copy())
        weights["b0"] = f1.bias.detach().numpy().copy()
        weights["w1"] = f2.weight.detach().numpy().T.copy()
        weights["b1"] = f2.bias.detach().numpy().copy()
        return weights
    li = 0
    for mod in net:
        if isinstance(mod, torch.nn.Linear):
            weights[f"w{li}"] = mod.weight.detach().numpy().T.copy()
            weights[f"b{li}"] = mod.bias.detach().numpy().copy()
            li += 1
    return weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=5000, help="Adam steps of 256 inputs")
    p.add_argument("--arch", choices=("cnn", "mlp"), default="cnn")
    p.add_argument("--hidden", default="64", help="dense layer widths (the CNN has one)")
    p.add_argument("--channels", default="16,32", help="the CNN's two convolutions' channels")
    p.add_argument("--scale", type=float, default=0.12, help="size of the picture groups (1 = the shipped run)")
    p.add_argument("--cache", type=Path, default=None, help="keep the generated inputs in this .npz")
    p.add_argument("--reject-rate", type=float, default=0.003,
                   help="the threshold rejects this share of the validation digits")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--extra", action="store_true", help="add the EXTRA pictures (seed + 1), as the shipped run")
    p.add_argument("--build-only", action="store_true", help="make the cached inputs and stop")
    a = p.parse_args()
    if a.cache is not None and a.cache.exists():
        with np.load(a.cache) as f:
            data = {k: f[k] for k in f.files}
    else:
        data = build(a.seed, a.workers, a.scale)
        if a.cache is not None:
            np.savez_compressed(a.cache, **data)
    if a.extra:
        extra_cache = None if a.cache is None else a.cache.with_name(a.cache.stem + "-extra.npz")
        if extra_cache is not None and extra_cache.exists():
            with np.load(extra_cache) as f:
                extra = {k: f[k] for k in f.files}
        else:
            extra = build_pictures(a.seed + 1, a.workers, EXTRA)
            if extra_cache is not None:
                np.savez_compressed(extra_cache, **extra)
        data = {k: np.concatenate([v, extra[k]]) if k in extra else v for k, v in data.items()}
    if a.build_only:
        return
    print({k: len(v) for k, v in data.items()}, file=sys.stderr)
    hidden = tuple(int(h) for h in a.hidden.split(","))
    channels = tuple(int(c) for c in a.channels.split(","))
    weights, report = train(data, a.seed, a.steps, hidden, a.arch == "cnn", channels)
    pos = np.concatenate([r["scores"] for k, r in report.items() if GROUPS[k][0] == 1])
    # the threshold: the given share of the validation digits (all digit groups together) rejected
    thr = float(np.quantile(pos, a.reject_rate))
    summary = {}
    for k, r in report.items():
        s = r["scores"]
        rate = float((s >= thr).mean()) if GROUPS[k][0] == 1 else float((s < thr).mean())
        summary[k] = {"n": r["n"], ("accepted" if GROUPS[k][0] == 1 else "rejected"): round(rate, 4)}
    print(json.dumps({"threshold": thr, "validation": summary}, indent=1))
    from safetensors.numpy import save_file

    meta = {"threshold": repr(thr), "arch": a.arch, "hidden": a.hidden, "channels": a.channels, "seed": str(a.seed),
            "trained_by": "benchmarks/train_detector.py"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.astype(np.float16) for k, v in weights.items()}, str(a.out), metadata=meta)
    print(f"saved {a.out} ({a.out.stat().st_size / 1024:.0f} KB)", file=sys.stderr)


if __name__ == "__main__":
    main()
