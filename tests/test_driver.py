"""The epoch driver both engines share, on a fake engine: the epoch's permutation, the learning-rate
factors, the hook, early stopping and resume. No torch, no kernels."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.config import FitOptions
from digitlab.training.driver import Resume, permutation, run_epochs
from digitlab.training.loop import EpochState


class FakeSteps:
    """Records what the driver asks; its loss is a fixed sequence so early stopping can be steered."""

    chunk = 3

    def __init__(self, val_losses=None):
        self.calls: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.val_losses = list(val_losses or [])
        self.weights = 0
        self.restored = None
        self.epoch = -1

    def start_epoch(self, epoch):
        self.epoch, self.seen = epoch, 0

    def train(self, idx, lr_factors):
        self.calls.append((self.epoch, idx.copy(), np.asarray(lr_factors).copy()))
        self.seen += len(idx)
        self.weights += 1

    def totals(self, final=False):
        return float(self.seen), self.seen // 2, self.seen

    def validate(self):
        return (self.val_losses.pop(0), 0.5) if self.val_losses else None

    def lr(self):
        return 1e-3

    def snapshot(self):
        return self.weights

    def restore(self, weights):
        self.restored = weights


def epoch_indices(steps: FakeSteps, epoch: int) -> np.ndarray:
    return np.concatenate([idx for e, idx, _ in steps.calls if e == epoch])


def test_each_epoch_visits_every_sample_once_in_the_seeds_order():
    steps = FakeSteps()
    opts = FitOptions(epochs=3, batch_size=4, seed=7)
    history = run_epochs(steps, opts, 50, quiet=True)
    assert len(history.rows) == 3 and not history.interrupted
    for epoch in range(3):
        np.testing.assert_array_equal(epoch_indices(steps, epoch), permutation(7, epoch, 50))
    assert not np.array_equal(permutation(7, 0, 50), permutation(7, 1, 50))
    assert not np.array_equal(permutation(7, 0, 50), permutation(8, 0, 50))
    # 50 samples in batches of 4: 13 steps, handed over 3 at a time
    assert [len(idx) for e, idx, _ in steps.calls if e == 0] == [12, 12, 12, 12, 2]
    assert list(history.rows[0]) == ["epoch", "loss", "accuracy", "lr", "time"]


def test_stepwise_schedules_give_one_factor_per_step():
    steps = FakeSteps()
    run_epochs(steps, FitOptions(epochs=2, batch_size=10, schedule="cosine"), 100, quiet=True)
    factors = np.concatenate([f for _, _, f in steps.calls])
    assert len(factors) == 20 and factors[0] == 1.0 and np.all(np.diff(factors) <= 0)


def test_the_hook_gets_the_state_and_the_best_weights():
    seen = []
    steps = FakeSteps(val_losses=[1.0, 0.5, 0.7, 0.8])
    opts = FitOptions(epochs=4, batch_size=10, early_stopping=2)
    history = run_epochs(steps, opts, 30, quiet=True, on_epoch_end=lambda st, best: seen.append((st, best)))
    assert [st.epoch for st, _ in seen] == [1, 2, 3, 4]
    assert all(isinstance(st, EpochState) for st, _ in seen)
    assert [best for _, best in seen] == [1, 2, 2, 2]  # snapshots after epochs 1 and 2 (3 steps each)
    assert history.stopped_early and history.best_epoch == 2
    assert steps.restored == 2


def test_resume_continues_with_the_same_permutations():
    whole = FakeSteps()
    opts = FitOptions(epochs=3, batch_size=8, seed=1)
    states = []
    run_epochs(whole, opts, 40, quiet=True, on_epoch_end=lambda st, best: states.append(st))
    cut = FakeSteps()
    history = run_epochs(cut, opts, 40, quiet=True, resume=Resume(states[0]))
    assert [r["epoch"] for r in history.rows] == [1, 2, 3]
    assert {e for e, _, _ in cut.calls} == {1, 2}
    for epoch in (1, 2):
        np.testing.assert_array_equal(epoch_indices(cut, epoch), epoch_indices(whole, epoch))


@pytest.mark.parametrize("engine", ["torch", "native"])
def test_both_engines_train_through_the_driver(engine):
    """Neither engine keeps an epoch loop of its own."""
    import inspect

    from digitlab.training import native

    if engine == "native":
        source = inspect.getsource(native)
    else:
        torch_engine = pytest.importorskip("digitlab.training.torch_engine")
        source = inspect.getsource(torch_engine)
    assert "run_epochs(" in source
    assert "for epoch in range" not in source and "SigintGuard" not in source and "EpochBook" not in source


def test_both_engines_visit_the_samples_in_the_same_order(monkeypatch):
    """One RNG: the same seed gives the native and the torch engine the same batches, epoch by epoch."""
    torch_engine = pytest.importorskip("digitlab.training.torch_engine")
    from digitlab.models import build_model
    from digitlab.training import native

    seen: dict[str, list[np.ndarray]] = {"native": [], "torch": []}

    def spy(name, cls):
        train = cls.train

        def record(self, idx, lr_factors):
            seen[name].append(np.asarray(idx).copy())
            return train(self, idx, lr_factors)
        monkeypatch.setattr(cls, "train", record)

    spy("native", native.NativeSteps)
    spy("torch", torch_engine.TorchSteps)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (70, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 70)
    opts = dict(epochs=2, batch_size=8, seed=11)
    native.fit_native(native.NativeMLP([784, 16, 10], seed=11), x, y, None, FitOptions(**opts), quiet=True)
    torch_engine.fit(build_model("mlp", hidden=[16]), x, y, quiet=True, options=FitOptions(**opts))
    assert len(seen["native"]) == len(seen["torch"]) > 0
    for a, b in zip(seen["native"], seen["torch"], strict=True):
        np.testing.assert_array_equal(a, b)
    both = np.concatenate(seen["native"])
    np.testing.assert_array_equal(both, np.concatenate([permutation(11, 0, 70), permutation(11, 1, 70)]))
