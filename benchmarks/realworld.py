"""Accuracy of a model on the real-world digit set (tests/realworld/), overall, per kind and per label.

    python benchmarks/realworld.py RUN_OR_ONNX [--save-inputs DIR] [--errors] [--set FOLDER] [--numbers]

RUN_OR_ONNX is a run folder or an exported ``.onnx`` file. Every picture goes through
``digitlab.data.pictures.load_digit`` (the same preprocessing as the CLI and the server), then
``load_predictor(path).predict_proba``. ``--save-inputs DIR`` writes the 28x28 inputs the model saw
as PNGs (same names as the pictures) plus ``sheet.png``, a contact sheet of the misclassified ones;
``--errors`` lists every misclassified picture. ``--numbers`` reads every picture as what is written
(``digitlab.inference.numbers.read_number``, the default of the CLI and the API): a hit is the
picture read as exactly its one digit.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitlab.data.pictures import load_digit
from digitlab.errors import ImageError
from digitlab.inference.predictor import load_predictor

DEFAULT_SET = Path(__file__).resolve().parent.parent / "tests" / "realworld"


def load_set(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str], dict[str, str]]:
    """(file names, inputs (N, 28, 28) uint8, labels (N,) int64, kinds, {file: error}) of a labels.csv folder.

    A picture the preprocessing refuses becomes an all-black input (and so, almost surely, a miss).
    """
    with (folder / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    images = np.zeros((len(rows), 28, 28), np.uint8)
    errors: dict[str, str] = {}
    for i, r in enumerate(rows):
        try:
            images[i] = load_digit(folder / "images" / r["file"])
        except ImageError as e:
            errors[r["file"]] = str(e)
    labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    return [r["file"] for r in rows], images, labels, [r["kind"] for r in rows], errors


def _table(title: str, groups: dict[str, list[bool]]) -> None:
    print(f"\n{title:<18}{'n':>5}{'accuracy':>10}")
    for name in sorted(groups):
        hits = groups[name]
        print(f"{name:<18}{len(hits):>5}{100.0 * np.mean(hits):>9.1f}%")


def _sheet(pictures: list[Path], inputs: np.ndarray, captions: list[str], path: Path) -> None:
    cols, cell = 8, 120
    rows = max(1, (len(pictures) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 16)), (96, 96, 96))
    draw = ImageDraw.Draw(sheet)
    for i, (pic, x, caption) in enumerate(zip(pictures, inputs, captions, strict=True)):
        im = Image.open(pic)
        if im.mode in ("RGBA", "LA", "P"):
            im = Image.alpha_composite(Image.new("RGBA", im.size, (190, 120, 160, 255)), im.convert("RGBA"))
        im = im.convert("RGB")
        im.thumbnail((cell // 2 + 10, cell - 4))
        left, top = (i % cols) * cell, (i // cols) * (cell + 16)
        sheet.paste(im, (left + 2, top + 2))
        sheet.paste(Image.fromarray(x).resize((48, 48)).convert("RGB"), (left + cell - 50, top + 2))
        draw.text((left + 2, top + cell), caption, fill=(255, 255, 0))
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder or an exported .onnx file")
    parser.add_argument("--save-inputs", type=Path, metavar="DIR", help="write the 28x28 inputs here")
    parser.add_argument("--errors", action="store_true", help="list every misclassified picture")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="folder with labels.csv and images/")
    parser.add_argument("--numbers", action="store_true", help="read each picture as a number (one digit or more)")
    args = parser.parse_args(argv)
    if args.numbers:
        return _numbers(args)

    start = time.perf_counter()
    files, x, y, kinds, errors = load_set(args.set)
    prep = time.perf_counter() - start
    predictor = load_predictor(args.model)
    start = time.perf_counter()
    proba = predictor.predict_proba(x)
    infer = time.perf_counter() - start
    pred = proba.argmax(axis=1)
    hit = (pred == y) & np.array([f not in errors for f in files])

    print(f"model: {args.model} ({predictor.name})")
    print(f"pictures: {len(y)} from {args.set}")
    print(f"preprocessing: {1000 * prep / len(y):.1f} ms/picture; inference: {1000 * infer / len(y):.2f} ms/picture")
    print(f"accuracy: {100.0 * hit.mean():.1f}% ({int(hit.sum())}/{len(y)})")
    for message in errors.values():
        print(f"not preprocessed: {message}")
    by_kind: dict[str, list[bool]] = defaultdict(list)
    by_source: dict[str, list[bool]] = defaultdict(list)
    by_background: dict[str, list[bool]] = defaultdict(list)
    by_label: dict[str, list[bool]] = defaultdict(list)
    for k, h, label in zip(kinds, hit, y, strict=True):
        source, _, background = k.partition("-")
        by_kind[k].append(bool(h))
        by_source[source].append(bool(h))
        by_background[background or source].append(bool(h))
        by_label[str(label)].append(bool(h))
    _table("source", by_source)
    _table("background", by_background)
    _table("kind", by_kind)
    _table("label", by_label)

    wrong = np.flatnonzero(~hit)
    if args.errors:
        print("\nmisclassified:")
        for i in wrong:
            print(f"  {files[i]}: label {y[i]}, predicted {pred[i]} ({100 * proba[i, pred[i]]:.0f}%)")
    if args.save_inputs:
        args.save_inputs.mkdir(parents=True, exist_ok=True)
        for name, img in zip(files, x, strict=True):
            Image.fromarray(img).save(args.save_inputs / (Path(name).stem + ".png"))
        if len(wrong):
            _sheet([args.set / "images" / files[i] for i in wrong], x[wrong],
                   [f"{y[i]}->{pred[i]} {kinds[i]}" for i in wrong], args.save_inputs / "sheet.png")
        print(f"\ninputs written to {args.save_inputs}", file=sys.stderr)
    return 0


def _numbers(args) -> int:
    from digitlab.inference.numbers import read_number

    with (args.set / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    predictor = load_predictor(args.model)
    hits, split = [], 0
    by_kind: dict[str, list[bool]] = defaultdict(list)
    start = time.perf_counter()
    for r in rows:
        try:
            reading = read_number(args.set / "images" / r["file"], predictor)
            text, count = reading.text, len(reading.digits)
        except ImageError:
            text, count = None, 0
        hit = text == r["label"]
        hits.append(hit)
        split += count > 1
        by_kind[r["kind"]].append(hit)
        if args.errors and not hit:
            print(f"  {r['file']}: label {r['label']}, read {text}")
    spent = time.perf_counter() - start
    print(f"model: {args.model} ({predictor.name}), read as numbers")
    print(f"pictures: {len(rows)} from {args.set}; {1000 * spent / len(rows):.1f} ms/picture")
    print(f"accuracy: {100.0 * np.mean(hits):.1f}% ({int(np.sum(hits))}/{len(rows)}); read as several digits: {split}")
    _table("kind", by_kind)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
