"""The native MLP engine: the same maths as torch, the same run folders, and the choice between them."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import synthetic_digits

from digitlab import runs
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.models import build_model, load_model
from digitlab.training import native
from digitlab.training.job import Interrupted, choose_engine, train
from digitlab.training.native import NativeCNN, NativeEngine, NativeMLP

if os.environ.get("DIGITLAB_REQUIRE_NATIVE") == "1" and not native.available():
    raise RuntimeError(f"DIGITLAB_REQUIRE_NATIVE=1 but the native engine is unavailable: {native.load_error()}")
pytestmark = pytest.mark.skipif(not native.available(), reason=f"native engine not built: {native.load_error()}")


def torch_twin(net: NativeMLP) -> torch.nn.Module:
    model = build_model("cnn") if isinstance(net, NativeCNN) else build_model("mlp", hidden=net.dims[1:-1])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    return model


@pytest.mark.parametrize("model,optimizer,weight_decay", [
    ("mlp", "adam", 0.0), ("mlp", "adam", 1e-3), ("mlp", "adamw", 1e-2), ("cnn", "adam", 0.0), ("cnn", "adamw", 1e-2)])
def test_steps_match_torch_autograd_and_adam(model, optimizer, weight_decay):
    """20 Adam steps (the last batch short) agree with autograd + torch.optim to float rounding."""
    x, y = synthetic_digits(20 * 32 - 7, 0)
    net = NativeMLP([784, 128, 64, 10], seed=3) if model == "mlp" else NativeCNN(seed=3)
    model = torch_twin(net)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    opt = cls(model.parameters(), lr=2e-3, eps=1e-7, weight_decay=weight_decay)
    idx = np.random.default_rng(0).permutation(len(x))
    losses, correct = net.train_steps(x, y, idx, 32, np.full(20, 2e-3, np.float32), weight_decay=weight_decay,
                                      decoupled=optimizer == "adamw", threads=2)
    xt = torch.from_numpy(x.astype(np.float32) / 255)
    yt = torch.from_numpy(y.astype(np.int64))
    for s in range(20):
        b = torch.from_numpy(idx[s * 32 : (s + 1) * 32])
        logits = model(xt[b])
        loss = F.cross_entropy(logits, yt[b], reduction="sum")
        assert losses[s] == pytest.approx(loss.item(), rel=1e-4, abs=1e-3)
        assert correct[s] == int((logits.argmax(1) == yt[b]).sum())
        opt.zero_grad()
        (loss / len(b)).backward()
        opt.step()
    assert net.step == 20
    for k, v in model.state_dict().items():
        # Adam turns rounding-level gradient differences on near-zero gradients into lr-sized steps;
        # the weights move by ~4e-2 over these steps, a wrong gradient anywhere by far more than this
        atol = 2e-5 if model == "mlp" else 1e-4
        np.testing.assert_allclose(net.state_dict()[k], v.detach().numpy(), rtol=0, atol=atol, err_msg=k)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_thread_count_does_not_change_a_single_bit(model):
    x, y = synthetic_digits(300, 4)
    idx = np.random.default_rng(1).permutation(len(x))
    results = []
    for threads in (1, 2, 3):
        net = NativeMLP([784, 96, 40, 10], seed=5) if model == "mlp" else NativeCNN(seed=5)
        losses, _ = net.train_steps(x, y, idx, 32, np.full(10, 1e-3, np.float32), threads=threads)
        probs = net.predict(x[:40], threads=threads)
        results.append((losses.tobytes(), probs.tobytes(), b"".join(v.tobytes() for v in net.state_dict().values())))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_inference_matches_torch(model):
    x, y = synthetic_digits(333, 6)
    net = NativeMLP([784, 128, 64, 10], seed=7) if model == "mlp" else NativeCNN(seed=7)
    net.train_steps(x, y, np.arange(len(x)), 32, np.full(11, 1e-3, np.float32))
    model = torch_twin(net).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x.astype(np.float32) / 255))
    np.testing.assert_allclose(net.predict(x, threads=2), torch.softmax(logits, 1).numpy(), atol=1e-6)
    loss, acc = net.evaluate(x, y, threads=2)
    assert loss == pytest.approx(F.cross_entropy(logits, torch.from_numpy(y.astype(np.int64))).item(), rel=1e-5)
    assert acc == (logits.argmax(1).numpy() == y).mean()


def test_portable_kernels_agree_with_the_vector_ones():
    """The plain-C kernels (CPUs without AVX2) give the same training, to float rounding."""
    code = (
        "import numpy as np, sys\n"
        "from digitlab.training.native import NativeMLP, kernels\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from conftest import synthetic_digits\n"
        "x, y = synthetic_digits(300, 8)\n"
        "from digitlab.training.native import NativeCNN\n"
        "nets = [NativeMLP([784, 50, 10], seed=1), NativeCNN(seed=1)]\n"
        "for net in nets:\n"
        "    net.train_steps(x, y, np.arange(300), 32, np.full(10, 1e-3, np.float32), threads=2)\n"
        "np.save(sys.argv[2], np.concatenate([v.ravel() for net in nets for v in net.state_dict().values()]))\n"
        "print(kernels())\n"
    )
    out = {}
    for generic in (False, True):
        env = {**os.environ, **({"DIGITLAB_NATIVE_GENERIC": "1"} if generic else {})}
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"native-{os.getpid()}-{generic}.npy"
        proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(path)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[generic] = (proc.stdout.strip(), np.load(path))
        path.unlink()
    assert out[True][0] == "portable C"
    np.testing.assert_allclose(out[True][1], out[False][1], atol=1e-5)


def test_saved_weights_are_byte_identical_to_torch_saving_the_same_model(tmp_path):
    net = NativeMLP([784, 128, 64, 10], seed=2)
    runs.save_tensors(tmp_path / "native.safetensors", net.state_dict(), {"format": "pt"})
    runs.save_weights(tmp_path, torch_twin(net))
    assert (tmp_path / "native.safetensors").read_bytes() == (tmp_path / runs.WEIGHTS).read_bytes()


def test_engine_choice():
    assert choose_engine(TrainConfig.from_preset("tutorial", device="cpu")) == "native"
    assert choose_engine(TrainConfig.from_preset("tutorial", device="cpu", engine="torch")) == "torch"
    assert choose_engine(TrainConfig.from_preset("tutorial", model="cnn", device="cpu")) == "native"
    for overrides in ({"model": "cnn_bn"}, {"optimizer": "sgd"}, {"augment": True}, {"label_smoothing": 0.1},
                      {"model": "cnn", "augment": True}):
        cfg = TrainConfig.from_preset("tutorial", device="cpu", **overrides)
        cfg.validate()
        assert choose_engine(cfg) == "torch", overrides
    cfg = TrainConfig.from_preset("tutorial", device="cpu", model_options={"activation": "tanh"})
    cfg.validate()
    assert choose_engine(cfg) == "torch"
    cfg = TrainConfig.from_preset("tutorial", model="cnn_bn", engine="native")
    with pytest.raises(ConfigError, match="the native engine cannot run this config: model cnn_bn needs the torch"):
        choose_engine(cfg)
    with pytest.raises(ConfigError, match="unknown engine 'jax'"):
        TrainConfig.from_preset("tutorial", engine="jax").validate()


@pytest.mark.parametrize("model,params", [("mlp", 109_386), ("cnn", 225_034)])
def test_native_run_folder_loads_in_torch_and_predicts_the_same(synth_dir, tmp_path, model, params):
    cfg = TrainConfig.from_preset("tutorial", model=model, epochs=2, device="cpu")
    result = train(cfg, tmp_path / "run", data_dir=synth_dir, quiet=True, plots=False)
    assert result.metrics["engine"] == "native" and result.metrics["params"] == params
    assert result.metrics["test_accuracy"] > 0.9
    model, config = load_model(tmp_path / "run")
    assert config["fit"]["engine"] == "auto"
    x, _ = synthetic_digits(64, 9)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x.astype(np.float32) / 255)), 1).numpy()
    np.testing.assert_allclose(probs, result.engine.net.predict(x), atol=1e-6)
    ckpt = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    layers = 3 if params == 109_386 else 4
    assert ckpt["epoch"] == 2 and ckpt["optimizer"]["param_groups"][0]["params"] == list(range(2 * layers))


def test_same_seed_same_history(synth_dir, tmp_path):
    def history(seed, name):
        cfg = TrainConfig.from_preset("tutorial", epochs=2, seed=seed, device="cpu")
        rows = train(cfg, tmp_path / name, data_dir=synth_dir, quiet=True, plots=False).history.rows
        return [(r["loss"], r["val_loss"]) for r in rows]

    assert history(1, "a") == history(1, "b")
    assert history(1, "a2") != history(2, "c")


def test_resume_equals_uninterrupted(synth_dir, tmp_path, monkeypatch, sigint_default):
    """Ctrl-C after epoch 1 of 3, then --resume: the same weights, byte for byte, as one whole run."""
    def config():
        return TrainConfig.from_preset("tutorial", epochs=3, device="cpu", schedule="cosine", batch_size=16)

    train(config(), tmp_path / "whole", data_dir=synth_dir, quiet=True, plots=False)
    original = NativeEngine.checkpoint

    def checkpoint_then_ctrl_c(self, run_path, state, best):
        original(self, run_path, state, best)
        if state.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(NativeEngine, "checkpoint", checkpoint_then_ctrl_c)
    with pytest.raises(Interrupted, match="interrupted during epoch 2; the checkpoint of epoch 1 is saved"):
        train(config(), tmp_path / "cut", data_dir=synth_dir, quiet=True, plots=False)
    monkeypatch.setattr(NativeEngine, "checkpoint", original)
    assert not (tmp_path / "cut" / runs.METRICS).exists()
    result = train(None, tmp_path / "cut", data_dir=synth_dir, resume=True, quiet=True, plots=False)
    assert result.metrics["epochs"] == 3
    assert (tmp_path / "cut" / runs.WEIGHTS).read_bytes() == (tmp_path / "whole" / runs.WEIGHTS).read_bytes()
    rows = [[{k: v for k, v in r.items() if k != "time"} for r in runs.read_history(tmp_path / name)]
            for name in ("cut", "whole")]
    assert rows[0] == rows[1] and len(rows[0]) == 3


def test_torch_engine_resumes_a_native_checkpoint(synth_dir, tmp_path):
    """The checkpoint files are the torch engine's: a native run can be finished by torch."""
    cfg = TrainConfig.from_preset("tutorial", epochs=1, device="cpu")
    train(cfg, tmp_path / "r", data_dir=synth_dir, quiet=True, plots=False)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    saved["fit"]["epochs"], saved["fit"]["engine"] = 2, "torch"
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    result = train(None, tmp_path / "r", data_dir=synth_dir, resume=True, quiet=True, plots=False)
    assert result.metrics["engine"] == "torch" and result.metrics["epochs"] == 2
    assert result.history.rows[1]["val_accuracy"] >= result.history.rows[0]["val_accuracy"] - 0.02


def test_mismatched_checkpoint_is_refused_in_one_line(synth_dir, tmp_path):
    cfg = TrainConfig.from_preset("tutorial", epochs=1, device="cpu")
    train(cfg, tmp_path / "r", data_dir=synth_dir, quiet=True, plots=False)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    saved["model"]["hidden"] = [100, 64]
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    from digitlab.errors import RunError

    with pytest.raises(RunError, match=r"weights do not match the model in config.json \(dense.weight has shape "
                                       r"\(128, 784\), config needs \(100, 784\)"):
        train(None, tmp_path / "r", data_dir=synth_dir, resume=True, quiet=True, plots=False)


def test_cli_tutorial_run_does_not_import_torch(synth_dir, tmp_path):
    code = ("import sys\nfrom digitlab.cli import main\nsys.argv = ['digitlab'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')\n")
    proc = subprocess.run([sys.executable, "-c", code, "train", "--epochs", "1", "--data-dir", str(synth_dir),
                           "--runs-dir", str(tmp_path), "--name", "r", "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "no torch"
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["engine"] == "native"


def test_bad_indices_and_labels_are_refused_before_the_kernels_run():
    x, y = synthetic_digits(64, 3)
    net = NativeMLP([784, 16, 10], seed=0)
    lrs = np.full(2, 1e-3, np.float32)
    with pytest.raises(ValueError, match=r"sample indices must lie in \[0, 64\)"):
        net.train_steps(x, y, np.arange(1, 65), 32, lrs)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        net.train_steps(x, np.full(64, 10), np.arange(64), 32, lrs)
    with pytest.raises(ValueError, match="expected 64 labels"):
        net.evaluate(x, y[:10])
    with pytest.raises(TypeError, match="uint8"):
        net.predict(x.astype(np.float32))
    assert net.step == 0
