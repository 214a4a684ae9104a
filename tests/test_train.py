import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import default_sigint, synthetic_digits
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.config import OPTIMIZER_DEFAULTS, SCHEDULES, FitOptions, TrainConfig
from digitlab.errors import ConfigError
from digitlab.models import build_model, load_model
from digitlab.training.job import train
from digitlab.training.torch_engine import FastMLPStep, fit


def small_xy(n=512, seed=0):
    x, y = synthetic_digits(n, seed)
    return x.astype(np.float32) / 255, y.astype(np.int64)


def test_fast_mlp_gradients_equal_autograd():
    torch.manual_seed(0)
    a, b = build_model("mlp"), build_model("mlp")
    b.load_state_dict(a.state_dict())
    x, y = small_xy(32)
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    loss_sum, pred = FastMLPStep(a)(xb, yb)
    loss = F.cross_entropy(b(xb), yb)
    loss.backward()
    assert float(loss_sum) / 32 == pytest.approx(loss.item(), rel=1e-6)
    assert torch.equal(pred, b(xb).argmax(1))
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_fast_and_autograd_paths_train_alike():
    x, y = small_xy(640)
    h = []
    for fast in (True, False):
        torch.manual_seed(0)
        model = build_model("mlp")
        h.append(fit(model, x, y, epochs=2, batch_size=32, fast=fast, quiet=True).history["loss"])
    np.testing.assert_allclose(h[0], h[1], rtol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_one_step_lowers_the_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    model = build_model(name)
    x, y = small_xy(32)
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        before = float(F.cross_entropy(model(xb), yb))
    fit(model, x, y, epochs=1, batch_size=32, quiet=True)
    with torch.no_grad():
        after = float(F.cross_entropy(model(xb), yb))
    assert after < before


def test_same_seed_same_history_different_seed_different_history():
    x, y = small_xy(640)

    def run(seed):
        torch.manual_seed(seed)
        model = build_model("mlp", dropout=0.1)
        hist = fit(model, x, y, validation_data=small_xy(200, 5), epochs=2, batch_size=32, seed=seed, quiet=True)
        return [(r["loss"], r["accuracy"], r["val_loss"]) for r in hist.rows], model.state_dict()

    h1, w1 = run(3)
    h2, w2 = run(3)
    h3, _ = run(4)
    assert h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1 != h3


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_DEFAULTS))
def test_every_optimizer_learns(optimizer):
    torch.manual_seed(0)
    x, y = small_xy(1024)
    lr = {"sgd": 0.1, "adagrad": 0.05, "adadelta": 1.0}.get(optimizer)
    hist = fit(build_model("mlp"), x, y, epochs=2, batch_size=32, optimizer=optimizer, lr=lr, quiet=True)
    assert hist.rows[-1]["loss"] < hist.rows[0]["loss"] or hist.rows[-1]["accuracy"] > 0.9


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_runs_and_sets_the_lr(schedule):
    torch.manual_seed(0)
    x, y = small_xy(256)
    hist = fit(build_model("mlp"), x, y, validation_data=small_xy(64, 9), epochs=3, batch_size=32,
               schedule=schedule, quiet=True)
    lrs = hist.history["lr"]
    assert len(lrs) == 3
    if schedule == "constant":
        assert lrs == [1e-3] * 3
    if schedule in ("cosine", "onecycle"):
        assert lrs[-1] < 1e-5


def test_sgd_momentum_nesterov_and_keras_defaults():
    from digitlab.training.torch_engine import make_optimizer

    params = list(build_model("mlp").parameters())
    opt = make_optimizer(FitOptions(optimizer="sgd", momentum=0.9, nesterov=True), params)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] and opt.defaults["lr"] == 0.01
    adam = make_optimizer(FitOptions(), params)
    assert adam.defaults["lr"] == 1e-3 and adam.defaults["eps"] == 1e-7
    with pytest.raises(ConfigError, match="--nesterov needs --momentum"):
        make_optimizer(FitOptions(optimizer="sgd", nesterov=True), params)


def test_augmentation_and_label_smoothing_run_on_the_cnn():
    torch.manual_seed(0)
    x, y = small_xy(256)
    hist = fit(build_model("cnn"), x, y, epochs=1, batch_size=64, augment=True, label_smoothing=0.1, quiet=True)
    assert np.isfinite(hist.rows[0]["loss"])


def test_early_stopping_restores_the_best_weights():
    torch.manual_seed(0)
    x, y = small_xy(256)
    xv, yv = small_xy(128, 7)
    yv = np.random.default_rng(0).integers(0, 10, len(yv))  # noise labels: val_loss soon gets worse
    model = build_model("mlp")
    hist = fit(model, x, y, validation_data=(xv, yv), epochs=30, batch_size=32, lr=0.01,
               early_stopping=2, quiet=True)
    assert hist.stopped_early and len(hist.rows) < 30
    best = min(r["val_loss"] for r in hist.rows)
    assert hist.rows[hist.best_epoch - 1]["val_loss"] == best
    from digitlab.models import evaluate_tensors

    loss, _ = evaluate_tensors(model, torch.from_numpy(xv), torch.from_numpy(yv))
    assert loss == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": -1}, "epochs must be at least 1"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
    ({"schedule": "step"}, "unknown schedule 'step'"),
    ({"lr": -0.1}, "learning rate must be positive"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_fit_options(kwargs, message):
    x, y = small_xy(64)
    with pytest.raises(ConfigError, match=message):
        fit(build_model("mlp"), x, y, quiet=True, **kwargs)


def test_run_folder_is_complete_and_reloads_to_identical_predictions(synth_dir, tmp_path):
    cfg = TrainConfig.from_preset("tutorial", epochs=2)
    result = train(cfg, tmp_path / "run", data_dir=synth_dir, quiet=True)
    run = tmp_path / "run"
    for name in ["config.json", "model.safetensors", "history.csv", "history.json", "metrics.json",
                 "curves.png", "checkpoint/state.json"]:
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {"name": "mlp", "hidden": [128, 64], "activation": "relu", "dropout": 0.0}
    assert config["fit"]["batch_size"] == 32 and config["val_split"] == 0.2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["epoch_time_s"]) == 2 and metrics["params"] == 109_386
    assert metrics["test_accuracy"] > 0.9
    assert (run / "history.csv").read_text().splitlines()[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy")
    model, _ = load_model(run)
    x = torch.rand(50, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))


@pytest.mark.parametrize("engine", ["torch", "native"])
def test_resume_equals_uninterrupted(synth_dir, tmp_path, engine):
    """Stop a CNN run with Ctrl-C after its first epoch, resume it, and get the same bytes."""
    from digitlab.training import native

    if engine == "native" and not native.available():
        pytest.skip(f"native engine not built: {native.load_error()}")
    epochs = "3" if engine == "torch" else "30"  # the native engine is fast: give Ctrl-C time to land
    common = [sys.executable, "-m", "digitlab", "train", "--model", "cnn", "--epochs", epochs, "--batch-size", "16",
              "--threads", "1", "--data-dir", str(synth_dir), "--runs-dir", str(tmp_path), "--no-plots", "--quiet",
              "--engine", engine, "--device", "cpu"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*common, "--name", "whole"], check=True, env=env, timeout=300)
    proc = subprocess.Popen([*common, "--name", "cut"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    state = tmp_path / "cut" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    assert proc.returncode == 130, err  # Ctrl-C: 128 + SIGINT, as shells expect
    assert "interrupted during epoch" in err and "digitlab train --resume" in err
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < int(epochs)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "digitlab", "train", "--resume", str(tmp_path / "cut"),
                              "--data-dir", str(synth_dir), "--no-plots", "--json"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming {tmp_path / 'cut'} after epoch {done} of {epochs}" in resumed.stderr
    weights = [(tmp_path / name / "model.safetensors").read_bytes() for name in ("cut", "whole")]
    assert weights[0] == weights[1]
    a = json.loads((tmp_path / "whole" / "history.json").read_text())
    b = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [(r["loss"], r["val_loss"]) for r in a] == [(r["loss"], r["val_loss"]) for r in b]


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--epochs", "-2"], "epochs must be at least 1"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--hidden", "12,x"], "--hidden takes comma-separated integers"),
    (["--preset", "fastest"], "unknown preset 'fastest'"),
])
def test_cli_rejects_bad_options_in_one_line(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "digitlab", "train", *args, "--runs-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[7:]}"]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_cli_resume_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "junk").mkdir()
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "junk")])
    assert result.exit_code != 0
    assert "not a digitlab run" in str(result.exception) or "not a digitlab run" in result.output


def test_existing_run_is_not_overwritten(synth_dir, tmp_path):
    train(TrainConfig.from_preset(epochs=1), tmp_path / "r", data_dir=synth_dir, quiet=True, plots=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(TrainConfig.from_preset(epochs=1), tmp_path / "r", data_dir=synth_dir, quiet=True, plots=False)


@pytest.mark.realdata
@pytest.mark.parametrize("engine", ["native", "torch"])
def test_tutorial_mlp_one_epoch_on_real_mnist(data_dir, tmp_path, engine):
    from digitlab.training import native

    if engine == "native" and not native.available():
        pytest.skip(f"native engine not built: {native.load_error()}")
    result = train(TrainConfig.from_preset("tutorial", epochs=1, device="cpu", engine=engine), tmp_path / "mlp",
                   data_dir=data_dir, quiet=True, plots=False)
    assert result.metrics["engine"] == engine
    assert result.metrics["test_accuracy"] >= 0.95
    assert result.metrics["val_accuracy"] >= 0.95


@pytest.mark.realdata
def test_tutorial_cnn_one_epoch_on_real_mnist_natively(data_dir, tmp_path):
    from digitlab.training import native

    if not native.available():
        pytest.skip(f"native engine not built: {native.load_error()}")
    result = train(TrainConfig.from_preset("tutorial", model="cnn", epochs=1, device="cpu"), tmp_path / "cnn",
                   data_dir=data_dir, quiet=True, plots=False)
    assert result.metrics["engine"] == "native" and result.metrics["params"] == 225_034
    assert result.metrics["test_accuracy"] >= 0.975


@pytest.mark.realdata
def test_tutorial_protocol_on_real_mnist_natively(data_dir, tmp_path):
    """The whole tutorial protocol (5 epochs) is cheap on the native engine: hold its accuracy."""
    from digitlab.training import native

    if not native.available():
        pytest.skip(f"native engine not built: {native.load_error()}")
    result = train(TrainConfig.from_preset("tutorial", device="cpu"), tmp_path / "mlp", data_dir=data_dir,
                   quiet=True, plots=False)
    assert result.metrics["engine"] == "native" and result.metrics["epochs"] == 5
    assert result.metrics["test_accuracy"] >= 0.97
    assert [r["epoch"] for r in result.history.rows] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_fused_adam_equals_torch_optim_bit_for_bit(optimizer):
    from digitlab.training.torch_engine import FusedAdam

    x, y = small_xy(32 * 20)
    weights, states = [], []
    for ours in (True, False):
        torch.manual_seed(0)
        model = build_model("mlp")
        params = list(model.parameters())
        if ours:
            opt = FusedAdam(params, lr=2e-3, eps=1e-7, weight_decay=0.01, decoupled=optimizer == "adamw")
        else:
            cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
            opt = cls(params, lr=2e-3, eps=1e-7, weight_decay=0.01, fused=True)
        step = FastMLPStep(model)
        for i in range(20):
            step(torch.from_numpy(x[i * 32 : (i + 1) * 32]), torch.from_numpy(y[i * 32 : (i + 1) * 32]))
            opt.step()
        weights.append(model.state_dict())
        states.append(opt.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert all(torch.equal(states[0]["state"][i][k], states[1]["state"][i][k])
               for i in range(6) for k in ("step", "exp_avg", "exp_avg_sq"))
    torch.optim.Adam(list(build_model("mlp").parameters())).load_state_dict(states[0])  # loads as torch's


def test_keras_style_api_reads_like_the_tutorial():
    import digitlab as dl

    x, y = synthetic_digits(640, 3)
    (x_tr, y_tr), (x_val, y_val) = dl.train_val_split(x, y)
    assert len(x_tr) == 512 and len(x_val) == 128
    torch.manual_seed(0)
    model = dl.build_model("mlp")
    history = model.fit(x_tr, y_tr, epochs=2, batch_size=32, optimizer="adam", validation_data=(x_val, y_val),
                        quiet=True)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    loss, acc = model.evaluate(x_val, y_val)
    assert acc == pytest.approx(history.history["val_accuracy"][-1])
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    probs = model.predict(x_val)
    assert probs.shape == (128, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(probs, model.predict(dl.to_float(x_val)))  # uint8 and [0, 1] floats agree


def test_import_digitlab_does_not_import_torch():
    code = "import sys, digitlab; digitlab.load_digit; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
