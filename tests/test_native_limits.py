"""What the native engine cannot run is told before it runs: in one line on the command line, with the
torch engine taking over under ``--engine auto`` where it can; the C library's answers are errors that
say what they mean."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import synthetic_digits

from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.training import native
from digitlab.training.job import choose_engine
from digitlab.training.native import NativeCNN, NativeMLP

if os.environ.get("DIGITLAB_REQUIRE_NATIVE") == "1" and not native.available():
    raise RuntimeError(f"DIGITLAB_REQUIRE_NATIVE=1 but the native engine is unavailable: {native.load_error()}")
pytestmark = pytest.mark.skipif(not native.available(), reason=f"native engine not built: {native.load_error()}")

TWENTY = ",".join(["8"] * 20)


def train_cli(tmp_path, data_dir, *args, timeout=300):
    cmd = [sys.executable, "-m", "digitlab", "train", "--epochs", "1", "--data-dir", str(data_dir),
           "--runs-dir", str(tmp_path / "runs"), "--name", "r", "--device", "cpu", "--quiet", "--json", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("args,message", [
    (["--hidden", TWENTY, "--engine", "native"],
     "error: the native engine cannot run this config: 20 hidden layers (the native engine runs at most 15)"),
    (["--model", "cnn", "--batch-size", "1000000000", "--engine", "native"],
     "error: the native engine cannot run this config: batch size 1000000000 (the native CNN takes 1 to 3176750)"),
    (["--batch-size", "3000000000", "--engine", "native"],
     "error: the native engine cannot run this config: batch size 3000000000 (the native engine takes 1 to "
     "2147483647)"),
])
def test_limits_are_one_line_errors_on_the_native_engine(synth_dir, tmp_path, args, message):
    assert one_line_error(train_cli(tmp_path, synth_dir, *args)) == message
    assert not (tmp_path / "runs" / "r").exists()


def test_a_batch_whose_buffers_do_not_fit_is_refused_for_its_memory(synth_dir, tmp_path):
    line = one_line_error(train_cli(tmp_path, synth_dir, "--batch-size", "1000000000", "--engine", "native"))
    assert line.startswith("error: the native engine cannot run this config: training at batch size 1000000000 "
                           "needs about 7,353.")
    assert " GiB of it for the batch) and " in line and line.endswith(" GiB are available")


@pytest.mark.parametrize("engine", ["auto", "native", "torch"])
def test_a_model_too_large_for_memory_is_refused_on_every_engine(synth_dir, tmp_path, engine):
    # 10^12 weights: more than any machine running these tests holds (and 100000,100000 past this one's)
    line = one_line_error(train_cli(tmp_path, synth_dir, "--hidden", "1000000,1000000", "--engine", engine))
    assert line.startswith("error: a model of 1,000,796,000,010 parameters needs at least 11,184.")
    assert line.endswith("GiB are available: choose smaller --hidden sizes")
    assert not (tmp_path / "runs" / "r").exists()


@pytest.mark.parametrize("engine", ["auto", "native"])
def test_hidden_100000_100000_is_a_one_line_error_about_memory(synth_dir, tmp_path, engine):
    have = native.available_memory()
    if have is None or have >= 12 * 10_079_600_010:
        pytest.skip("this machine has the memory to train it")
    line = one_line_error(train_cli(tmp_path, synth_dir, "--hidden", "100000,100000", "--engine", engine))
    assert line.startswith("error: a model of 10,079,600,010 parameters needs at least 112.6 GiB of memory to train")


def test_hidden_100000_100000_is_refused_for_its_memory(monkeypatch):
    monkeypatch.setattr(native, "available_memory", lambda: 64 * 2**30)
    for engine in ("auto", "native", "torch"):
        cfg = TrainConfig.from_preset("tutorial", device="cpu", engine=engine,
                                      model_options={"hidden": [100000, 100000]})
        cfg.validate()
        with pytest.raises(ConfigError, match=r"^a model of 10,079,600,010 parameters needs at least 112.6 GiB of "
                                              r"memory to train \(its weights and Adam's two moments\) and 64.0 GiB "
                                              r"are available: choose smaller --hidden sizes$"):
            choose_engine(cfg)


def test_auto_gives_what_the_native_engine_cannot_run_to_torch(monkeypatch):
    for overrides in ({"model_options": {"hidden": [8] * 20}}, {"model": "cnn", "batch_size": 10**9},
                      {"batch_size": 10**9}):
        cfg = TrainConfig.from_preset("tutorial", device="cpu", **overrides)
        cfg.validate()
        assert native.unsupported(cfg) is not None, overrides
        assert choose_engine(cfg) == "torch", overrides
    cfg = TrainConfig.from_preset("tutorial", device="cpu", model_options={"hidden": [8] * 15})
    cfg.validate()
    assert native.unsupported(cfg) is None and choose_engine(cfg) == "native"
    monkeypatch.setattr(native, "available_memory", lambda: 2**20)  # 1 MiB: the buffers do not fit
    assert "needs about" in native.unsupported(TrainConfig.from_preset("tutorial", device="cpu"))


def test_twenty_hidden_layers_train_on_torch_under_auto(synth_dir, tmp_path):
    proc = train_cli(tmp_path, synth_dir, "--hidden", TWENTY)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["engine"] == "torch"


def test_the_memory_need_counts_the_batch():
    small, big = native.train_memory([784, 128, 64, 10], 32), native.train_memory([784, 128, 64, 10], 3200)
    assert 12 * 109_386 < small < big
    # the buffers of a step: two copies of the pixels, each layer's output and its gradient, the labels
    assert big - small >= 3168 * 4 * (2 * 784 + 2 * (128 + 64 + 10))
    assert native.train_memory([784] + [8] * 20 + [10], 32) is None


def test_the_library_codes_are_errors_that_say_what_they_mean(monkeypatch):
    x, y = synthetic_digits(64, 3)
    net = NativeMLP([784, 16, 10], seed=0)
    lrs = np.full(2, 1e-3, np.float32)
    with pytest.raises(ConfigError, match=r"^the native engine cannot run batch size 0 \(the native engine takes 1"):
        net.train_steps(x, y, np.arange(64), 0, lrs)
    with pytest.raises(ConfigError, match=r"^the native engine cannot run 16 hidden layers \(the native engine runs "
                                          r"at most 15\)$"):
        NativeMLP([784] + [4] * 16 + [10])

    class Lib:  # a library whose allocations fail, then one that refuses its arguments
        def __init__(self, rc):
            self.rc = rc

        def __getattr__(self, name):
            return lambda *args: self.rc

    real = native.library()
    monkeypatch.setattr(native, "library", lambda: Lib(-1))
    monkeypatch.setattr(native, "train_memory", lambda dims, batch, cnn=False: 3 * 2**30)
    with pytest.raises(ConfigError, match=r"^the native engine could not allocate the 3.0 GiB it needs to train at "
                                          r"batch size 32: out of memory; try a smaller --batch-size$"):
        net.train_steps(x, y, np.arange(64), 32, lrs)
    with pytest.raises(ConfigError, match=r"^the native engine could not allocate its inference buffers: out of "
                                          r"memory$"):
        net.predict(x)
    monkeypatch.setattr(native, "library", lambda: Lib(-2))
    with pytest.raises(ConfigError, match=r"^the native engine cannot run layer widths \[784, 16, 10\] at batch "
                                          r"size 32$"):
        net.train_steps(x, y, np.arange(64), 32, lrs)
    monkeypatch.setattr(native, "library", lambda: Lib(-7))
    with pytest.raises(RuntimeError, match="failed with code -7"):
        net.evaluate(x, y)
    monkeypatch.setattr(native, "library", lambda: real)
    assert net.step == 0
    net.train_steps(x, y, np.arange(64), 32, lrs)
    assert net.step == 2


def test_the_kernels_refuse_what_they_cannot_run():
    """The C library checks its arguments itself: code -2 (DL_EINVAL), nothing run."""
    lib = native.library()

    def dims(*d):
        return (native.ctypes.c_int * len(d))(*d)

    assert lib.dl_train_bytes(17, dims(*([8] * 18)), 32) == -2
    assert lib.dl_train_bytes(2, dims(784, 0, 10), 32) == -2
    assert lib.dl_train_bytes(2, dims(784, 16, 10), 0) == -2
    assert lib.dl_train_bytes(16, dims(*([8] * 17)), 32) > 0
    assert lib.dl_train_bytes(1, dims(2**31 - 1, 10), 2**31 - 1) == -2  # its buffers' sizes would overflow
    assert lib.dl_cnn_train_bytes(4, dims(784, 32, 64, 128, 10), 3176750) > 0
    assert lib.dl_cnn_train_bytes(4, dims(784, 32, 64, 128, 10), 3176751) == -2
    assert lib.dl_cnn_train_bytes(3, dims(784, 32, 64, 128), 32) == -2
    assert NativeCNN(seed=0).dims == list(native.CNN_DIMS)


def test_a_library_from_older_sources_is_told_and_torch_takes_over(monkeypatch):
    from types import SimpleNamespace

    class OldLibrary:  # the functions of a build from before dl_train_bytes existed
        def __init__(self, path):
            for name in ("dl_train", "dl_evaluate", "dl_cnn_train", "dl_cnn_evaluate", "dl_kernels"):
                setattr(self, name, SimpleNamespace())

    monkeypatch.setattr(native, "_LIB", None)
    monkeypatch.setattr(native, "_LOAD_ERROR", None)
    monkeypatch.setattr(native.ctypes, "CDLL", OldLibrary)
    assert not native.available()
    assert native.load_error().endswith("is out of date: rebuild it with `python setup.py build_ext --inplace`")
    assert choose_engine(TrainConfig.from_preset("tutorial", device="cpu")) == "torch"
