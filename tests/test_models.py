import pytest
import torch
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ConfigError
from digitlab.models import build_model, count_params, summary_rows, summary_text


def test_tutorial_parameter_counts_are_exact():
    assert count_params(build_model("mlp")) == 109_386
    assert count_params(build_model("cnn")) == 225_034


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_bn"])
def test_logits_shape(name):
    model = build_model(name).eval()
    assert model(torch.rand(7, 28, 28)).shape == (7, 10)


def test_mlp_options_change_the_architecture():
    model = build_model("mlp", hidden=[256, 128], activation="tanh", dropout=0.1)
    assert count_params(model) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert [type(m).__name__ for m in model][:4] == ["Flatten", "Linear", "Tanh", "Dropout"]


def test_keras_initialisation_glorot_uniform_and_zero_bias():
    torch.manual_seed(0)
    dense = build_model("mlp").dense.requires_grad_(False)
    limit = (6 / (784 + 128)) ** 0.5
    assert float(dense.weight.abs().max()) <= limit
    assert float(dense.weight.abs().max()) > 0.95 * limit
    assert torch.count_nonzero(dense.bias) == 0


def test_summary_matches_keras_shapes():
    rows = {r.name: r for r in summary_rows(build_model("cnn"))}
    assert rows["conv2d"].output_shape == (None, 26, 26, 32)
    assert rows["max_pooling2d_1"].output_shape == (None, 5, 5, 64)
    assert rows["flatten"].output_shape == (None, 1600)
    assert rows["dense"].params == 204_928
    text = summary_text(build_model("mlp"))
    assert "Total params: 109,386" in text and "(None, 64)" in text


def test_activations_per_hidden_layer():
    acts = build_model("mlp").activations(torch.rand(3, 28, 28))
    assert {k: tuple(v.shape) for k, v in acts.items()} == {"act": (3, 128), "act_1": (3, 64)}
    acts = build_model("cnn").activations(torch.rand(2, 28, 28))
    assert tuple(acts["act"].shape) == (2, 32, 26, 26)


@pytest.mark.parametrize("name,options,message", [
    ("resnet", {}, "unknown model 'resnet'"),
    ("mlp", {"activation": "swish"}, "unknown activation 'swish'"),
    ("mlp", {"hidden": [0]}, "hidden sizes must be positive"),
    ("cnn", {"hidden": [3]}, "bad options for model 'cnn'"),
])
def test_bad_model_options(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, **options)


def test_summary_cli_prints_the_tutorial_totals():
    result = CliRunner().invoke(app, ["summary", "--model", "cnn"])
    assert result.exit_code == 0, result.output
    assert "Total params: 225,034" in result.output
    assert "(None, 11, 11, 64)" in result.output


def test_pooling_before_relu_is_the_tutorials_function():
    """The CNN pools before its ReLU; Keras's Conv2D(relu) -> MaxPooling2D computes exactly the same."""
    torch.manual_seed(0)
    m = build_model("cnn").eval()
    x = torch.rand(8, 1, 28, 28)
    pool = torch.nn.functional.max_pool2d
    h = pool(torch.relu(m.conv2d(x)), 2)
    h = pool(torch.relu(m.conv2d_1(h)), 2)
    keras_order = m.dense_1(torch.relu(m.dense(h.flatten(1))))
    with torch.no_grad():
        assert torch.equal(m(x[:, 0]), keras_order)
