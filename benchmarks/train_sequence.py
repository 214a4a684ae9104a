"""Train the sequence reader shipped in ``src/digitlab/inference/sequence.safetensors``.

    python benchmarks/train_sequence.py [--count 60000] [--nothing 8000] [--workers 2] [--steps 16000]
                                        [--cache /tmp/seq.npz ...]

Lines of 1 to 8 digits are made from MNIST *train* digits (never the test digits, which
``bench_numbers.py`` uses), with digits drawn as pen strokes (two-stroke 4s, 5s and 7s among them)
and whole numbers printed in the training fonts of ``detector_data.py``. Neighbours touch, overlap
by up to 2.5 px, or stand 0.5 to 24 px apart; some lines have digits of different sizes, a slant and
a drifting baseline. Single digits are also handed in degraded (thumbnails, blur, low contrast, ...).
With ``--nothing``, pictures that hold no digit (Fashion-MNIST *train*, letters not written like
digits, scribbles and shapes) are lines with nothing to read.
Every line is handed in as an encoded picture (paper or screen, scaled, blurred, JPEG) and goes
through the number reader's own first steps (``ink_image``, then ``numbers.line_ink``), so the
network learns from exactly what it will see. The network is trained with CTC loss; a tenth of the
lines is held out to report the share of lines read exactly. Needs torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_numbers as N  # noqa: E402
import degraded as G  # noqa: E402
import detector_data as D  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "digitlab" / "inference" / "sequence.safetensors"
STROKE_NAMES = {str(d): [g for g in D.DIGIT_GLYPHS if g[0] == str(d)] for d in range(10)}


def _crop(a: np.ndarray) -> np.ndarray | None:
    rows, cols = np.flatnonzero(a.max(axis=1) > 0.05), np.flatnonzero(a.max(axis=0) > 0.05)
    if not len(rows):
        return None
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _to_height(a: np.ndarray, h: float) -> np.ndarray:
    return N._resize(a, h / a.shape[0])


def _part(d: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, by_digit) -> np.ndarray:
    r = rng.random()
    if r < 0.06:
        a = _crop(D.stroke_glyph(str(rng.choice(STROKE_NAMES[str(d)])), rng))
        if a is not None:
            return np.clip(_to_height(a, rng.uniform(17, 22)), 0, 1)
    elif r < 0.12 and d in (4, 5, 7):
        return N.stroke_digit(d, rng)
    return N.crop_digit(x[int(rng.choice(by_digit[d]))])


def _font_number(text: str, rng: np.random.Generator, fonts: list[Path]) -> np.ndarray | None:
    px = int(rng.integers(40, 100))
    try:
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), px)
    except OSError:
        return None
    img = Image.new("L", (px * (len(text) + 2), px * 3), 0)
    ImageDraw.Draw(img).text((px // 2, px // 2), text, font=font, fill=255)
    a = _crop(np.asarray(img, np.float32) / 255.0)
    if a is None or a.shape[0] < 8:
        return None
    return np.clip(_to_height(a, rng.uniform(18, 24)), 0, 1)


def make_line(rng: np.random.Generator, x, y, by_digit, fonts) -> tuple[bytes, str] | None:
    """One line of digits handed in as a picture: (picture bytes, its digits)."""
    r = rng.random()
    n = 1 if r < 0.2 else int(rng.integers(2, 7)) if r < 0.87 else int(rng.integers(7, 9))
    digits = [int(d) for d in rng.integers(0, 10, n)]
    text = "".join(map(str, digits))
    if n == 1 and rng.random() < 0.4:  # a single digit handed in degraded
        kind = str(rng.choice(G.KINDS))
        return G._make(kind)(x[int(rng.choice(by_digit[digits[0]]))], int(rng.integers(1000))), text
    if fonts and rng.random() < 0.12:
        ink = _font_number(text, rng, fonts)
        if ink is None:
            return None
    else:
        parts = [np.clip(_part(d, rng, x, y, by_digit), 0, 1) for d in digits]
        offsets = [0] * n
        style = rng.random()
        if style < 0.3:
            gaps = list(rng.choice([0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5], n - 1))
        elif style < 0.45:
            gaps = list(rng.uniform(0.5, 3, n - 1))
        elif style < 0.8:
            gaps = list(rng.uniform(3, 12, n - 1))
        else:
            gaps = list(rng.choice([1.5, 2, 3, 6, 12, 24], n - 1))
        if rng.random() < 0.3:  # sizes, slant, drifting baseline
            slant = rng.uniform(-0.3, 0.3)
            parts = [np.clip(N._shear(N._resize(p, rng.uniform(0.65, 1.35)), slant), 0, 1) for p in parts]
            drift = rng.uniform(-0.4, 0.4) * 20
            offsets = [round(drift * i / max(1, n - 1) + rng.normal(0, 1.5)) for i in range(n)]
            low = min(offsets)
            offsets = [o - low for o in offsets]
        ink = N.compose(parts, gaps, offsets)
    if rng.random() < 0.6:
        return N.render(ink, rng)[0], text
    h = rng.uniform(10, 120) if rng.random() < 0.8 else rng.uniform(120, 300)
    size = max(8, round(h * max(ink.shape) / ink.shape[0]))
    return D.to_picture(ink, rng, size=size), text


def make_nothing(rng: np.random.Generator, fashion: np.ndarray, fonts) -> bytes | None:
    """A picture that holds no digit (its text is empty): clothing, letters, scribbles, shapes."""
    r = rng.random()
    if r < 0.35:
        ink = fashion[int(rng.integers(len(fashion)))].astype(np.float32) / 255.0
    elif r < 0.6 and fonts:
        word = "".join(rng.choice(list(D.LETTERS), int(rng.integers(1, 5))))
        ink = _font_number(word, rng, fonts)
    elif r < 0.8:
        parts = [_crop(D.stroke_glyph(str(rng.choice(D.LETTER_GLYPHS)), rng)) for _ in range(int(rng.integers(1, 4)))]
        parts = [np.clip(_to_height(a, rng.uniform(17, 22)), 0, 1) for a in parts if a is not None]
        ink = N.compose(parts, list(rng.uniform(1, 8, len(parts) - 1)), [0] * len(parts)) if parts else None
    else:
        j = np.asarray(D.junk(str(rng.choice(D.JUNK_KINDS)), rng), np.float32)
        ink = _crop(j / max(1e-6, float(j.max())))
    if ink is None:
        return None
    if rng.random() < 0.6:
        return N.render(np.clip(ink, 0, 1), rng)[0]
    return D.to_picture(ink, rng, size=int(rng.integers(28, 200)))


def _job(args: tuple[int, int, int]) -> list[tuple[np.ndarray, str]]:
    from digitlab.data.datasets import load_data
    from digitlab.data.pictures import MAX_PIXELS, ink_image
    from digitlab.errors import ImageError
    from digitlab.inference.numbers import line_ink
    from digitlab.inference.sequence import line_input

    seed, chunk, count, nothing = args
    (x, y), _ = load_data("mnist", quiet=True)
    fashion = load_data("fashion-mnist", quiet=True)[0][0] if nothing else None
    by_digit = [np.flatnonzero(y == d) for d in range(10)]
    fonts = D.find_fonts(D.TRAIN_FONTS)
    rng = np.random.default_rng([seed, chunk])
    out = []
    while len(out) < count:
        if nothing:
            made = (make_nothing(rng, fashion, fonts), "")
        else:
            made = make_line(rng, x, y, by_digit, fonts)
        if made is None or made[0] is None:
            continue
        data, text = made
        try:
            ink, _ = ink_image(data, MAX_PIXELS)
        except ImageError:
            continue
        line = line_ink(ink)
        if line is None:
            continue
        inp, _, _ = line_input(line)
        out.append((np.round(inp * 255).astype(np.uint8), text))
    return out


def build(count: int, seed: int, workers: int, nothing: bool = False) -> tuple[list[np.ndarray], list[str]]:
    chunk = 500
    jobs = [(seed, i, min(chunk, count - i * chunk), nothing) for i in range((count + chunk - 1) // chunk)]
    images, texts = [], []
    t = time.time()
    with ProcessPoolExecutor(workers) as pool:
        for k, got in enumerate(pool.map(_job, jobs)):
            images += [a for a, _ in got]
            texts += [s for _, s in got]
            if (k + 1) % 10 == 0:
                print(f"built {len(images)}/{count} lines ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    return images, texts


def make_net(c=(12, 24, 32, 32), hidden=96):
    """The torch twin of digitlab.inference.sequence.column_logits: (N, 1, 32, W) -> (N, W // 2, 11)."""
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [1, *c]
            self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(4))
            self.pools = [(2, 2), (2, 1), (2, 1), (2, 1)]
            k = 9
            self.t1 = nn.Conv1d(2 * c[3], hidden, k, padding=k // 2)
            self.t2 = nn.Conv1d(hidden, hidden, k, padding=k // 2)
            self.out = nn.Linear(hidden, 11)

        def forward(self, x):
            f = nn.functional
            for conv, p in zip(self.convs, self.pools, strict=True):
                x = f.max_pool2d(f.relu(conv(x)), p)
            n, ch, h, t = x.shape
            x = x.permute(0, 2, 1, 3).reshape(n, h * ch, t)  # features (row, channel), as the NumPy reader
            x = f.relu(self.t2(f.relu(self.t1(x))))
            return self.out(x.transpose(1, 2))

    return Net()


def numpy_weights(net) -> dict[str, np.ndarray]:
    """The layers as the matrices digitlab.inference.sequence multiplies."""
    w = {}
    for i, conv in enumerate(net.convs):
        k = conv.weight.detach().numpy()
        w[f"c{i + 1}"] = k.transpose(2, 3, 1, 0).reshape(-1, k.shape[0]).copy()
        w[f"c{i + 1}b"] = conv.bias.detach().numpy().copy()
    for name in ("t1", "t2"):
        k = getattr(net, name).weight.detach().numpy()
        w[name] = k.transpose(2, 1, 0).reshape(-1, k.shape[0]).copy()
        w[name + "b"] = getattr(net, name).bias.detach().numpy().copy()
    w["out"] = net.out.weight.detach().numpy().T.copy()
    w["outb"] = net.out.bias.detach().numpy().copy()
    return w


def _numpy_features_match(net, w: dict[str, np.ndarray], images: list[np.ndarray]) -> float:
    """Largest difference between the torch and the NumPy forward passes on ``images``."""
    import torch

    from digitlab.inference.sequence import column_logits

    worst = 0.0
    for a in images:
        x = torch.from_numpy(a.astype(np.float32) / 255.0)[None, None]
        with torch.no_grad():
            want = net(x)[0].numpy()
        got = column_logits(a.astype(np.float32) / 255.0, w)
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def _decode(logits: np.ndarray) -> str:
    from digitlab.inference.sequence import best_path

    return "".join(str(c - 1) for c in best_path(logits)[0])


def train(images, texts, seed: int, steps: int, batch: int, threads: int):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    n = len(images)
    val = rng.random(n) < 0.1
    tr = np.flatnonzero(~val)
    widths = np.array([a.shape[1] for a in images])
    net = make_net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    order = tr[np.argsort(widths[tr], kind="stable")]  # batches of similar width: little padding
    buckets = [order[i : i + batch] for i in range(0, len(order), batch)]
    total, t0 = 0.0, time.time()
    net.train()
    for step in range(steps):
        idx = buckets[int(rng.integers(len(buckets)))]
        w = int(widths[idx].max())
        w += w % 2
        xb = np.zeros((len(idx), 1, 32, w), np.float32)
        for k, i in enumerate(idx):
            a = images[i].astype(np.float32) / 255.0
            if rng.random() < 0.3:  # a pixel or two of shift; a little fainter or bolder
                a = np.roll(a, int(rng.integers(-1, 2)), axis=0)
            if rng.random() < 0.2:
                a = np.clip(a * rng.uniform(0.7, 1.3), 0, 1)
            xb[k, 0, :, : a.shape[1]] = a
        targets = torch.tensor([int(c) + 1 for i in idx for c in texts[i]])
        target_len = torch.tensor([len(texts[i]) for i in idx])
        in_len = torch.tensor([int(widths[i]) // 2 for i in idx])
        out = net(torch.from_numpy(xb)).log_softmax(2).transpose(0, 1)  # (T, N, 11)
        loss = ctc(out, targets, in_len, target_len)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        total += float(loss.detach())
        if (step + 1) % 200 == 0:
            print(f"step {step + 1}/{steps}: loss {total / 200:.4f} ({time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
            total = 0.0
    net.eval()
    report: dict[str, list[int]] = {}
    with torch.no_grad():
        for i in np.flatnonzero(val):
            a = torch.from_numpy(images[i].astype(np.float32) / 255.0)[None, None]
            got = _decode(net(a)[0].numpy())
            key = f"{len(texts[i])} digit{'' if len(texts[i]) == 1 else 's'}"
            hit = report.setdefault(key, [0, 0])
            hit[0] += got == texts[i]
            hit[1] += 1
    return net, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=60000, help="lines to make")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--steps", type=int, default=16000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--nothing", type=int, default=0, help="pictures without a digit to make too (text empty)")
    p.add_argument("--cache", type=Path, action="append", default=[],
                   help="keep the made lines in this .npz; repeated: train on all of them (made beforehand)")
    p.add_argument("--build-only", action="store_true", help="make the cached lines and stop")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    if a.cache and all(c.exists() for c in a.cache):
        images, texts = [], []
        for cache in a.cache:
            with np.load(cache) as f:
                flat, widths, more = f["pixels"], f["widths"], [str(t) for t in f["texts"]]
            cuts = np.cumsum(widths)[:-1]
            images += [c.reshape(32, -1) for c in np.split(flat, cuts * 32)]
            texts += more
    elif len(a.cache) > 1:
        raise SystemExit("several --cache files are read, never made: make each with --build-only first")
    else:
        images, texts = build(a.count, a.seed, a.workers)
        if a.nothing:
            more_images, more_texts = build(a.nothing, a.seed + 1000, a.workers, nothing=True)
            images, texts = images + more_images, texts + more_texts
        if a.cache:
            np.savez_compressed(a.cache[0], pixels=np.concatenate([x.ravel() for x in images]),
                                widths=np.array([x.shape[1] for x in images]), texts=np.array(texts))
    print(f"{len(images)} lines", file=sys.stderr)
    if a.build_only:
        return
    net, report = train(images, texts, a.seed, a.steps, a.batch, a.threads)
    for key in sorted(report, key=lambda k: int(k.split()[0])):
        hit, count = report[key]
        print(f"held-out lines of {key}: {100 * hit / count:.1f}% read exactly ({count})")
    weights = numpy_weights(net)
    worst = _numpy_features_match(net, weights, images[:50])
    assert worst < 1e-3, worst
    from safetensors.numpy import save_file

    meta = {"trained_on": "MNIST train digits, stroke and font digits, as pictures (benchmarks/train_sequence.py)",
            "held_out": json.dumps({k: round(v[0] / v[1], 4) for k, v in report.items()}),
            "lines": str(len(images)), "steps": str(a.steps), "seed": str(a.seed)}
    save_file({k: v.astype(np.float16) for k, v in weights.items()}, str(a.out), metadata=meta)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
