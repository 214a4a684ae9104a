"""TensorBoard logs of a training run (``digitlab train --tensorboard DIR``).

Standard event files written with PyTorch's ``SummaryWriter`` (it needs the ``tensorboard`` package:
``pip install "digitlab[tensorboard]"``): per epoch the scalars ``loss``, ``accuracy``, ``val_loss``,
``val_accuracy`` and ``lr``; once, the model's summary as text and a few test predictions as images
(``predictions/<i>``, captioned in the tag's text ``predictions/labels``). Both engines go through
:func:`digitlab.training.job.train`, which logs each history row here, so their logs are the same.
``tensorboard --logdir DIR`` shows the runs of DIR overlaid.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from digitlab.data.datasets import get_dataset
from digitlab.errors import ConfigError

SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
NEEDS = ("--tensorboard needs the tensorboard package: pip install 'digitlab[tensorboard]' "
         "(or pip install tensorboard)")


def available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class Board:
    """One run's TensorBoard writer."""

    def __init__(self, logdir: str | os.PathLike):
        if not available():
            raise ConfigError(NEEDS)
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = str(logdir)
        self.writer = SummaryWriter(log_dir=self.logdir)
        self.logged: set[int] = set()

    def epoch(self, row: dict[str, Any]) -> None:
        """Log one history row (``epoch`` is the step); a row already logged (resumed runs) is skipped."""
        step = int(row["epoch"])
        if step in self.logged:
            return
        self.logged.add(step)
        for key in SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(key, float(row[key]), step)
        self.writer.flush()

    def history(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.epoch(row)

    def summary(self, text: str, config: dict[str, Any] | None = None) -> None:
        self.writer.add_text("model/summary", "```\n" + text + "\n```", 0)
        if config is not None:
            self.writer.add_text("model/config", "```json\n" + json.dumps(config, indent=2) + "\n```", 0)

    def predictions(self, images: np.ndarray, probs: np.ndarray, labels: np.ndarray, names: list[str],
                    step: int) -> None:
        """A few test images, each with its prediction: ``predictions/<i>`` (ink white on black)."""
        lines = []
        for i, (img, p, y) in enumerate(zip(images, probs, labels, strict=True)):
            pred = int(np.argmax(p))
            self.writer.add_image(f"predictions/{i}", np.asarray(img, dtype=np.uint8)[None], step, dataformats="CHW")
            mark = "right" if pred == int(y) else "WRONG"
            lines.append(f"{i}: predicted {names[pred]} ({100 * float(p[pred]):.1f}%), true {names[int(y)]}, {mark}")
        self.writer.add_text("predictions/labels", "\n\n".join(lines), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def finish_run(board: Board, result: Any, config: Any, x_test: np.ndarray, y_test: np.ndarray, n: int = 8) -> None:
    """After training: the model summary, ``n`` test predictions, then close the writer."""
    import torch

    from digitlab.models import summary_text

    model = result.model
    try:
        board.summary(summary_text(model), config.to_json())
        x = torch.from_numpy(np.asarray(x_test[:n], dtype=np.float32) / 255.0)
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            probs = torch.softmax(model(x.to(device)).float(), dim=1).cpu().numpy()
        names = [str(c) for c in get_dataset(config.dataset).classes]
        board.predictions(x_test[:n], probs, y_test[:n], names, len(result.history.rows))
    finally:
        board.close()
