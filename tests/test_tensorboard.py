"""``--tensorboard DIR``: standard event files, read back with TensorBoard's own reader; both engines
log the same scalars."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from digitlab.config import TrainConfig  # noqa: E402
from digitlab.training.job import train  # noqa: E402

SCALARS = {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}


def _read(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def small_mnist(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return (x_train[:3000], y_train[:3000]), (x_test[:500], y_test[:500])


@pytest.mark.realdata
@pytest.mark.parametrize("engine", ["native", "torch"])
def test_event_files_hold_scalars_summary_and_predictions(small_mnist, tmp_path, engine):
    config = TrainConfig.from_preset("tutorial", epochs=2, engine=engine, threads=1)
    config.validate()
    logdir = tmp_path / "tb"
    result = train(config, tmp_path / "run", quiet=True, plots=False, data=small_mnist, tensorboard=logdir)
    assert list(logdir.glob("events.out.tfevents.*"))
    acc = _read(logdir)
    tags = acc.Tags()
    assert set(tags["scalars"]) == SCALARS
    for key in SCALARS:
        events = acc.Scalars(key)
        assert [e.step for e in events] == [1, 2]
        expected = [row[key] for row in result.history.rows]
        assert [e.value for e in events] == pytest.approx(expected, rel=1e-5)
    assert {"model/summary/text_summary", "predictions/labels/text_summary"} <= set(tags["tensors"])
    summary = acc.Tensors("model/summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "Total params: 109,386" in summary
    images = [t for t in tags["images"] if t.startswith("predictions/")]
    assert len(images) == 8
    img = acc.Images("predictions/0")[0]
    assert (img.width, img.height) == (28, 28)


def test_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    from digitlab.errors import ConfigError
    from digitlab.training import board

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match="pip install"):
        board.Board(tmp_path)
