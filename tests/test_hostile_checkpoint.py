"""Crash-safe checkpoints: the writer is killed at every step of a checkpoint switch, and the run resumes.

Each step of :func:`digitlab.runs.save_checkpoint` (every file written, every rename, every folder
synced or removed) is a point where a training process is killed with ``os._exit`` while it saves
the checkpoint of epoch 2. Afterwards the run folder must hold a complete checkpoint (epoch 1 or 2,
never none, never a mixture) and ``--resume`` must finish the run with the same weights as a run
that was never interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from digitlab import runs
from digitlab.errors import RunError
from digitlab.training.job import train

pytestmark = pytest.mark.slow

# Run the CLI with every checkpoint step counted; at step KILL_AT of the epoch-2 checkpoint, die.
KILLER = textwrap.dedent("""
    import os, shutil, sys
    from digitlab import runs
    kill_at, seen, active = int(os.environ["KILL_AT"]), [0], [False]

    def step(fn):
        def wrapped(*a, **k):
            if active[0]:
                seen[0] += 1
                if seen[0] == kill_at:
                    os._exit(9)
            return fn(*a, **k)
        return wrapped

    save = runs.save_checkpoint
    def save_checkpoint(run_dir, weights, ot, om, state, best=None):
        active[0] = state["epoch"] == 2
        try:
            return save(run_dir, weights, ot, om, state, best)
        finally:
            active[0] = False
    runs.save_checkpoint = save_checkpoint
    runs.save_tensors = step(runs.save_tensors)
    runs.write_json = step(runs.write_json)
    runs._sync_dir = step(runs._sync_dir)
    os.replace = step(os.replace)
    shutil.rmtree = step(shutil.rmtree)
    from digitlab.cli import main
    main(sys.argv[1:])
""")


def _train(args, env=None, killer=False):
    cmd = [sys.executable, "-c", KILLER] if killer else [sys.executable, "-m", "digitlab"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_killed_at_every_checkpoint_step_resumes_to_the_same_weights(synth_dir, tmp_path):
    common = ["train", "--model", "mlp", "--epochs", "3", "--batch-size", "64", "--threads", "1",
              "--data-dir", str(synth_dir), "--runs-dir", str(tmp_path), "--no-plots", "--quiet",
              "--engine", "torch", "--device", "cpu"]
    whole = _train([*common, "--name", "whole"])
    assert whole.returncode == 0, whole.stderr
    want = (tmp_path / "whole" / "model.safetensors").read_bytes()
    step, finished = 0, False
    while not finished:
        step += 1
        assert step < 30, "save_checkpoint has more steps than expected"
        name = f"cut{step}"
        cut = _train([*common, "--name", name], {"KILL_AT": str(step)}, killer=True)
        run = tmp_path / name
        if cut.returncode == 0:  # step is past the last one: the run was never killed
            finished = True
            continue
        assert cut.returncode == 9, cut.stderr
        state = runs.check_checkpoint(run)  # a complete, consistent checkpoint is always there
        assert state["epoch"] in (1, 2)
        assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint"]
        train(None, run, resume=True, data_dir=synth_dir, quiet=True, plots=False)  # what --resume runs
        assert (run / "model.safetensors").read_bytes() == want, f"killed at step {step}"
    assert step >= 8  # 2 tensor files + state.json + sync + 2 renames + sync + removal of the old one


def _tensors(value: float) -> dict:
    return {"w": np.full((3, 2), value, np.float32)}


def _save(run, epoch: int) -> None:
    runs.save_checkpoint(run, _tensors(epoch), _tensors(-epoch), {"param_groups": []}, {"epoch": epoch})


def test_recovery_after_a_crash_between_the_two_renames(tmp_path):
    _save(tmp_path, 1)
    os.replace(tmp_path / runs.CHECKPOINT, tmp_path / runs.CKPT_OLD)  # as a crash right after the first rename
    (tmp_path / runs.CKPT_NEW).mkdir()  # ... with a new one half written
    (tmp_path / runs.CKPT_NEW / runs.CKPT_MODEL).write_bytes(b"half")
    state, model_t, *_ = runs.load_checkpoint(tmp_path, arrays=True)
    assert state["epoch"] == 1 and model_t["w"][0, 0] == 1
    assert not (tmp_path / runs.CKPT_OLD).exists() and not (tmp_path / runs.CKPT_NEW).exists()
    _save(tmp_path, 2)
    assert runs.load_checkpoint(tmp_path, arrays=True)[0]["epoch"] == 2


@pytest.mark.parametrize("edit, phrase", [
    (lambda s: s.update(epoch=7), "another epoch"),
    (lambda s: s.update(epoch="1"), "epoch: Input should be a valid integer"),
    (lambda s: s.update(optimizer=[1]), "optimizer: Input should be a valid dictionary"),
    (lambda s: s.pop("optimizer"), "optimizer: Field required"),
])
def test_a_tampered_state_json_is_one_line(tmp_path, edit, phrase):
    _save(tmp_path, 1)
    path = tmp_path / runs.CHECKPOINT / runs.CKPT_STATE
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    with pytest.raises(RunError, match=phrase):
        runs.check_checkpoint(tmp_path)
    assert (tmp_path / runs.CHECKPOINT / runs.CKPT_MODEL).is_file()  # refused, not deleted
