"""How long the picture pipeline takes: ``load_digit`` against a bare decode + resize to 28x28.

    python benchmarks/bench_pictures.py [--rounds 5] [--phone 3] [--ruled 0]

Pictures, all handed in as file bytes:

- ``small``: the real-world set (tests/realworld, 32-200 px) and degraded MNIST test digits
  (benchmarks/degraded.py, 8-256 px);
- ``large``: digits on photographed-paper pictures of 400-1000 px (PNG and JPEG);
- ``phone``: 12-megapixel (4000 x 3000) phone-style JPEGs, decoded at reduced scale (draft mode);
- ``ruled`` (only with ``--ruled N``): N digits of 224 px on 384-px sheets of squared or ruled paper
  (every other one), lines every 6-40 px, 1-3 px thick, 30-80% as dark as the ink; and ``unruled``,
  the same digits on the same sheets without the lines.

For every picture, ``load_digit`` and the bare ``Image.open(...).convert("L").resize((28, 28))``
are timed alternately in the same loop (``--rounds`` times each), as wall time and as this
process's CPU time (the latter is less disturbed by other processes on a loaded machine). Printed:
median, p90 and p99 per group, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.data.pictures import load_digit

ROOT = Path(__file__).resolve().parent.parent


def _degraded():
    spec = importlib.util.spec_from_file_location("degraded", ROOT / "benchmarks" / "degraded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(a: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, **options)
    return buf.getvalue()


def _photo(digit: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit written on a sheet of unevenly lit, grainy paper, RGB uint8 (H, W, 3)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], np.float32)[:, None, None]
    light = 1.0 - 0.3 * xx - 0.15 * yy
    paper = np.array([235, 228, 205], np.float32) * light[..., None]
    side = int(min(w, h) * rng.uniform(0.3, 0.7))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
    mask = np.zeros((h, w), np.float32)
    top, left = rng.integers(0, h - side), rng.integers(0, w - side)
    mask[top : top + side, left : left + side] = ink
    rgb = paper * (1 - mask[..., None]) + np.array([40, 40, 70], np.float32) * mask[..., None]
    rgb += rng.normal(0, 3, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _on_paper(digit: np.ndarray, rng: np.random.Generator, squared: bool | None) -> bytes:
    """An MNIST digit, 224 px, on a 384-px sheet: squared paper, ruled paper, or none (None)."""
    ink = np.zeros((384, 384), np.float32)
    top, left = rng.integers(20, 140, 2)
    ink[top : top + 224, left : left + 224] = np.kron(digit.astype(np.float32) / 255, np.ones((8, 8), np.float32))
    cell, thick, level = rng.uniform(6, 40), rng.uniform(1, 3), rng.uniform(0.3, 0.8)
    if squared is not None:
        ink = np.maximum(ink, _degraded().ruled_paper(ink.shape, cell, thick, level, rng, squared))
    return _encode((255 * (0.92 - 0.8 * ink)).clip(0, 255).astype(np.uint8), "PNG")


def pictures(phone: int, ruled: int = 0) -> dict[str, list[bytes]]:
    degraded = _degraded()
    x, y = degraded.mnist_test()
    small = [data for _, data, _ in degraded.realworld()]
    small += [data for _, data, _ in degraded.pictures(8, x=x, y=y)]
    rng = np.random.default_rng(0)
    large = []
    for i in range(24):
        side = int(rng.integers(400, 1001))
        size = (side, int(side * rng.uniform(0.6, 1.0))) if i % 2 else (int(side * rng.uniform(0.6, 1.0)), side)
        rgb = _photo(x[i], size, rng)
        large.append(_encode(rgb, "JPEG", quality=85) if i % 2 else _encode(rgb, "PNG"))
    phones = [_encode(_photo(x[100 + i], (4000, 3000), rng), "JPEG", quality=90) for i in range(phone)]
    groups = {"small": small, "large": large, "phone": phones}
    if ruled:
        groups["ruled"] = [_on_paper(x[200 + i], np.random.default_rng([1, i]), i % 2 == 0) for i in range(ruled)]
        groups["unruled"] = [_on_paper(x[200 + i], np.random.default_rng([1, i]), None) for i in range(ruled)]
    return groups


def bare(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L").resize((28, 28), Image.Resampling.BILINEAR))


def measure(items: list[bytes], rounds: int) -> dict[str, np.ndarray]:
    """Per call: wall and CPU milliseconds of load_digit and of the bare decode, alternated."""
    out: dict[str, list[float]] = {"wall": [], "cpu": [], "bare_wall": [], "bare_cpu": []}
    for _ in range(rounds):
        for data in items:
            for name, fn in (("", load_digit), ("bare_", bare)):
                w0, c0 = time.perf_counter(), time.process_time()
                try:
                    fn(data)
                except Exception:  # a refused picture costs what it costs
                    pass
                out[name + "cpu"].append(1000 * (time.process_time() - c0))
                out[name + "wall"].append(1000 * (time.perf_counter() - w0))
    return {k: np.array(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phone", type=int, default=3, help="number of 12-megapixel JPEGs")
    parser.add_argument("--ruled", type=int, default=0,
                        help="number of 384-px digits on squared or ruled paper (and the same without the lines)")
    args = parser.parse_args(argv)
    groups = pictures(args.phone, args.ruled)
    for data in groups["small"][:20]:  # warm up (imports, caches)
        load_digit(data)
    print(f"{'pictures':<8}{'n':>5}{'clock':>6} | {'load_digit ms: median':>22}{'p90':>7}{'p99':>7} | "
          f"{'bare ms: median':>16}{'p99':>7} | {'ratio':>6}")
    for name, items in groups.items():
        if not items:
            continue
        t = measure(items, args.rounds if name != "phone" else max(2, args.rounds // 2))
        for clock in ("cpu", "wall"):
            ours, base = t[clock], t["bare_" + clock]
            print(f"{name:<8}{len(items):>5}{clock:>6} | {np.median(ours):>22.2f}{np.percentile(ours, 90):>7.2f}"
                  f"{np.percentile(ours, 99):>7.2f} | {np.median(base):>16.2f}{np.percentile(base, 99):>7.2f} | "
                  f"{np.median(ours) / np.median(base):>6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
