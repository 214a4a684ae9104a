"""``digitlab compare``: variants side by side, each an ordinary run folder, with a table, JSON, CSV
and a figure."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import cli

from digitlab.errors import ConfigError
from digitlab.training.compare import Variant, summarise, variant_config, variant_grid


def test_the_grid_is_every_combination_with_readable_names():
    grid = variant_grid({"optimizer": ["adam", "sgd"], "hidden": [(32,), (128, 64)]})
    assert [v.name for v in grid] == ["h32_adam", "h32_sgd", "h128-64_adam", "h128-64_sgd"]
    assert grid[1].options == {"hidden": (32,), "optimizer": "sgd"}
    assert [v.name for v in variant_grid({"batch_size": [8, 256], "lr": [0.01]})] == ["lr0.01_b8", "lr0.01_b256"]
    with pytest.raises(ConfigError, match="repeat"):
        variant_grid({"optimizer": ["adam", "adam"]})


def test_a_variant_config_sets_its_options_seed_and_threads():
    c = variant_config({"val_split": 0.1}, {"optimizer": "sgd", "hidden": (32,), "batch_size": 8}, 3, 2, 1)
    assert (c.fit.optimizer, c.fit.batch_size, c.fit.seed, c.fit.epochs, c.fit.threads) == ("sgd", 8, 3, 2, 1)
    assert c.model_options["hidden"] == [32] and c.val_split == 0.1
    with pytest.raises(ConfigError, match="varies the MLP"):
        variant_config({}, {"model": "cnn", "hidden": (32,)}, 0, 1, 1)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        variant_config({}, {"optimizer": "lion"}, 0, 1, 1)


def test_summary_mean_spread_and_best_epoch():
    v = Variant("adam", {"optimizer": "adam"})
    for seed, acc, vl in ((0, 0.97, [0.3, 0.2, 0.25]), (1, 0.95, [0.32, 0.22, 0.21])):
        v.runs.append({"seed": seed, "test_accuracy": acc, "test_loss": 0.1, "train_time_s": 2.0,
                       "history": [{"epoch": e + 1, "loss": 0.1, "accuracy": 0.9, "val_loss": x,
                                    "val_accuracy": 1 - x} for e, x in enumerate(vl)]})
    summarise(v)
    assert v.test_accuracy_mean == pytest.approx(0.96)
    assert v.test_accuracy_std == pytest.approx(0.02 / 2 ** 0.5)
    assert (v.test_accuracy_min, v.test_accuracy_max) == (0.95, 0.97)
    assert v.best_epoch == 2  # mean val_loss 0.31, 0.21, 0.23
    assert v.curves["val_loss"]["min"] == [0.3, 0.2, 0.21]


def test_hidden_variants_are_space_separated():
    from digitlab.cli.compare import _hidden_variants

    assert _hidden_variants("32 128,64 512,256") == [[32], [128, 64], [512, 256]]


@pytest.mark.realdata
@pytest.mark.slow
def test_two_optimizers_one_epoch_on_real_mnist(data_dir, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "exp"
    code, stdout, stderr = cli(capsys, "compare", "--optimizer", "adam,sgd", "--epochs", "1", "--out", str(out),
                               "--data-dir", str(data_dir), "--tensorboard", str(tmp_path / "tb"))
    assert code == 0, stderr
    for name in ("adam", "sgd"):  # the table on screen, and progress for every variant
        assert name in stdout and f"{name} seed 0" in stderr
    assert "test accuracy" in stdout
    report = json.loads((out / "compare.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["adam", "sgd"]
    for v in report["variants"]:
        (run,) = v["runs"]
        assert run["run_dir"] == str(out / f"{v['name']}-seed0")
        metrics = json.loads((out / f"{v['name']}-seed0" / "metrics.json").read_text())
        config = json.loads((out / f"{v['name']}-seed0" / "config.json").read_text())
        assert config["fit"]["optimizer"] == v["name"] and config["fit"]["epochs"] == 1
        assert run["test_accuracy"] == metrics["test_accuracy"] == v["test_accuracy_mean"]
        assert run["test_loss"] == metrics["test_loss"]
        assert v["best_epoch"] == 1 and v["test_accuracy_std"] == 0.0
        assert metrics["test_accuracy"] > 0.85
        assert list((tmp_path / "tb" / f"{v['name']}-seed0").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["variant"] for r in rows] == ["adam", "sgd"]
    assert float(rows[0]["test_accuracy_mean"]) == report["variants"][0]["test_accuracy_mean"]
    from PIL import Image

    assert Image.open(out / "compare.png").size[0] >= 1000
    # each variant is an ordinary run folder: evaluate works on it
    code, stdout, _ = cli(capsys, "evaluate", str(out / "sgd-seed0"), "--data-dir", str(data_dir), "--json")
    assert code == 0
    assert json.loads(stdout)["accuracy"] == pytest.approx(report["variants"][1]["test_accuracy_mean"], abs=1e-6)
