"""Fine-tune a trained run on new augmentation: start from its weights, train a few more epochs.

    python scripts/finetune.py FROM_RUN NEW_RUN [--epochs 2] [--lr 5e-4] [--preset best]

The new run folder is a complete run (config.json, history, metrics, curves, model.safetensors);
its config is the preset's with the given epochs and learning rate (cosine schedule), and records
the run it started from as ``"init"``. ``digitlab evaluate`` and the predictors read it like any run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitlab import runs
from digitlab.config import TrainConfig
from digitlab.training import job
from digitlab.training.torch_engine import TorchEngine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the run folder to start from")
    parser.add_argument("run", type=Path, help="the new run folder")
    parser.add_argument("--preset", default="best")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    config = TrainConfig.from_preset(args.preset, epochs=args.epochs, lr=args.lr, schedule="cosine",
                                     threads=args.threads)
    weights = args.source / runs.WEIGHTS
    build = TorchEngine.build

    def build_from_source(self: TorchEngine) -> None:
        from safetensors.torch import load_file

        build(self)
        runs.load_state(self.model, load_file(str(weights)), weights)

    TorchEngine.build = build_from_source
    result = job.train(config, args.run, quiet=args.quiet)
    saved = json.loads((args.run / "config.json").read_text())
    saved["init"] = str(args.source)
    (args.run / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    print(json.dumps({k: result.metrics[k] for k in ("test_accuracy", "test_loss", "train_time_s")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
