"""Keras's verbs on a model: ``model = dl.build_model("mlp"); model.fit(x, y, epochs=5)``.

:class:`digitlab.models.Net` knows how to run (``evaluate``, ``predict``) but not how it is trained;
the :class:`Model` that ``dl.build_model`` gives is the same network with ``fit`` from the torch engine.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from digitlab import models
from digitlab.training.loop import History
from digitlab.training.torch_engine import fit


class Model(models.Net):
    """A :class:`~digitlab.models.Net` that also trains itself, Keras-style."""

    @classmethod
    def of(cls, net: models.Net) -> Model:
        """The same layers (and weights) as ``net``, with ``fit``."""
        return cls(OrderedDict(net.named_children()), net.name, net.options, net.image_input)

    def fit(self, x: Any, y: Any, **kwargs: Any) -> History:
        """:func:`digitlab.training.torch_engine.fit` on this model: ``epochs``, ``batch_size``,
        ``validation_data``, ``optimizer``... (uint8 images or floats in [0, 1])."""
        return fit(self, x, y, **kwargs)


def build_model(name: str, **options: Any) -> Model:
    """:func:`digitlab.models.build_model`, with ``fit``: ``dl.build_model("mlp", hidden=[256, 128])``."""
    return Model.of(models.build_model(name, **options))
