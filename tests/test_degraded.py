"""A small, fixed sample of the degraded-digits benchmark (benchmarks/degraded.py): MNIST test digits
handed in as thumbnails, blurred, faint, JPEG-compressed, thick and thin pictures. The shipped model
must read them through the real picture pipeline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BEST = ROOT / "models" / "mnist-best"
PER_KIND = 12
OVERALL_FLOOR = 0.96  # the shipped model reads ~98-99% of this sample; the whole benchmark is in the README
KIND_FLOOR = 10  # of PER_KIND, on every single degradation


def degraded():
    spec = importlib.util.spec_from_file_location("degraded", ROOT / "benchmarks" / "degraded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample(mnist):
    bench = degraded()
    _, (x, y) = mnist
    return bench.preprocess(bench.pictures(PER_KIND, x=x, y=y))


@pytest.mark.realdata
def test_sample_is_deterministic(mnist):
    bench = degraded()
    _, (x, y) = mnist
    a = list(bench.pictures(2, ("8px", "jpeg-30"), x=x, y=y))
    b = list(bench.pictures(2, ("8px", "jpeg-30"), x=x, y=y))
    assert [d for _, d, _ in a] == [d for _, d, _ in b]
    assert [k for k, _, _ in a] == ["8px", "8px", "jpeg-30", "jpeg-30"]


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_model_reads_degraded_digits(sample):
    from digitlab.inference.predictor import load_predictor, predict_proba

    kinds, inputs, labels, refused, _ = sample
    assert not refused.any(), "a degraded digit was refused as blank"
    hits = (predict_proba(load_predictor(BEST), inputs).argmax(1) == labels) & ~refused
    k = np.array(kinds)
    per_kind = {kind: int(hits[k == kind].sum()) for kind in dict.fromkeys(kinds)}
    assert hits.mean() >= OVERALL_FLOOR, per_kind
    assert min(per_kind.values()) >= KIND_FLOOR, per_kind
