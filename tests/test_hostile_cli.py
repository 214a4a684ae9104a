"""Hostile and unlucky command lines: each gives one line on stderr, a non-zero exit, and leaves nothing behind.

Run in-process through :func:`digitlab.cli.main` (the entry point, with its error printing).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

from digitlab.cli import main
from digitlab.errors import FormatError, RunError


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``digitlab ARGS``."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, *args: str, code: int = 1) -> str:
    got, _, err = cli(capsys, *args)
    assert got == code, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    return lines[-1]


TRAIN = ("train", "--model", "mlp", "--epochs", "1", "--no-plots", "--quiet", "--engine", "torch",
         "--device", "cpu", "--threads", "1")


# -- run names and options ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escape", "..", ".", "a/b", "", "x\x1b[2J"])
def test_run_names_are_single_path_components(capsys, tmp_path, name):
    runs = tmp_path / "runs"
    line = one_line_error(capsys, *TRAIN, "--runs-dir", str(runs), "--name", name)
    assert "--name must be a single folder name" in line and "\x1b" not in line
    assert list(tmp_path.iterdir()) == []  # nothing made, inside --runs-dir or outside it


@pytest.mark.parametrize("option, value, phrase", [
    ("--lr", "inf", "finite"), ("--lr", "nan", "finite"), ("--weight-decay", "nan", "finite"),
    ("--momentum", "nan", "finite"), ("--momentum", "-5", "momentum must be in [0, 1)"),
    ("--seed", "-1", "seed must be between"), ("--epochs", "1000000000", "epochs must be at most"),
])
def test_non_finite_and_out_of_range_options(capsys, tmp_path, option, value, phrase):
    extra = ["--optimizer", "sgd"] if option == "--momentum" else []
    line = one_line_error(capsys, *TRAIN, *extra, "--runs-dir", str(tmp_path / "runs"), "--name", "x",
                          option, value)
    assert phrase in line
    assert not (tmp_path / "runs").exists()


def test_summary_hidden_abc(capsys):
    assert "--hidden takes comma-separated integers" in one_line_error(capsys, "summary", "--hidden", "abc")


def test_error_messages_are_not_rich_markup(capsys, tmp_path):
    weird = tmp_path / "data" / "[bold red]x"
    line = one_line_error(capsys, "data", "info", "--data-dir", str(weird))
    assert "[bold red]x" in line


def test_data_folder_without_read_permission(capsys, tmp_path, monkeypatch):
    # (as root, permissions do not stop reads: the refusal is simulated where the folder is first read)
    import digitlab.data.locate as locate

    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(locked / "mnist"))

    monkeypatch.setattr(locate, "_locate_data_dir", refuse)
    line = one_line_error(capsys, "data", "info", "--data-dir", str(locked))
    assert f"{locked / 'mnist'}: permission denied" in line


def _without_override() -> list[str] | None:
    """The prefix that runs a command without the power to read past permissions: nothing for a
    normal user; for root, ``setpriv`` without the DAC capabilities (None when that is not possible)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    probe = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", "true"], capture_output=True)
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if probe.returncode == 0 else None


@pytest.mark.parametrize("locked_part", ["folder", "file"])
def test_data_folder_or_file_really_unreadable(tmp_path, synth_dir, locked_part):
    """The same refusal with real permissions: ``data info`` and ``train`` give one line, no traceback."""
    prefix = _without_override()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    locked = data / "mnist" if locked_part == "folder" else data / "mnist" / "train-images-idx3-ubyte.gz"
    locked.chmod(0)
    try:
        for args in (["data", "info", "--data-dir", str(data)],
                     [*TRAIN, "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"), "--name", "x"]):
            proc = subprocess.run([*prefix, sys.executable, "-m", "digitlab", *args], capture_output=True,
                                  text=True, timeout=120)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 1, proc.stderr
            assert "Traceback" not in proc.stderr
            assert lines[-1].startswith("error: ") and "permission denied" in lines[-1].lower(), proc.stderr
            assert str(locked) in lines[-1]
        assert not (tmp_path / "runs" / "x").exists()
    finally:
        locked.chmod(0o755 if locked.is_dir() else 0o644)


# -- run folders ----------------------------------------------------------------------------------


def test_failed_start_leaves_no_run_folder(capsys, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    one_line_error(capsys, *TRAIN, "--data-dir", str(empty), "--runs-dir", str(tmp_path / "runs"), "--name", "x")
    assert not (tmp_path / "runs" / "x").exists() and not (tmp_path / "runs").exists()


def test_runs_dir_that_is_a_file(capsys, tmp_path, synth_dir):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    line = one_line_error(capsys, *TRAIN, "--data-dir", str(synth_dir), "--runs-dir", str(blocker), "--name", "x")
    assert "is a file, not a folder" in line
    assert blocker.read_text() == "not a folder"


def test_runs_dir_that_cannot_be_created(capsys, tmp_path, synth_dir):
    line = one_line_error(capsys, *TRAIN, "--data-dir", str(synth_dir), "--runs-dir", "/proc/self/runs",
                          "--name", "x")
    assert "cannot create the run folder" in line


def test_full_disk_while_writing_the_run(capsys, tmp_path, synth_dir, monkeypatch):
    import digitlab.data.formats as formats

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(formats.os, "fsync", full)
    line = one_line_error(capsys, *TRAIN, "--data-dir", str(synth_dir), "--runs-dir", str(tmp_path / "runs"),
                          "--name", "x")
    assert "the disk is full" in line
    assert not (tmp_path / "runs" / "x").exists()


# -- tampered run folders -------------------------------------------------------------------------


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("change, phrase", [
    (lambda w: {k: np.full_like(v, np.nan) for k, v in w.items()}, "NaN or infinite"),
    (lambda w: {k: v.astype(np.int8) for k, v in w.items()}, "stored as int8"),
    (lambda w: {k: v.astype(np.float64) for k, v in w.items()}, "stored as float64"),
])
def test_unusable_weights_are_refused_at_load(capsys, tmp_path, mlp_run, change, phrase):
    run = _copy_run(mlp_run, tmp_path / "run")
    save_file(change(load_file(run / "model.safetensors")), run / "model.safetensors")
    line = one_line_error(capsys, "predict", str(run), str(tmp_path / "none.png"))
    assert phrase in line


@pytest.mark.parametrize("edit, phrase", [
    (lambda c: c["fit"].update(epochs="5"), "fit.epochs"),
    (lambda c: c.update(labels=["0", "1", "2"]), "labels"),
    (lambda c: c["model"].update(name=7), "model.name"),
])
def test_tampered_config_json(capsys, tmp_path, mlp_run, edit, phrase):
    run = _copy_run(mlp_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config.setdefault("fit", {})
    edit(config)
    (run / "config.json").write_text(json.dumps(config))
    line = one_line_error(capsys, "predict", str(run), str(tmp_path / "none.png"))
    assert phrase in line and "config.json" in line


def test_labels_shorter_than_the_classes_without_num_classes(tmp_path, mlp_run):
    from digitlab.inference.predictor import load_predictor

    run = _copy_run(mlp_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["model"].pop("num_classes", None)
    config["labels"] = ["a", "b"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="names 2 classes"):
        load_predictor(run)


def test_optimizer_state_of_the_wrong_shape_is_refused():
    import torch

    from digitlab.runs import check_optimizer_state

    params = [torch.zeros(4, 3), torch.zeros(3)]
    check_optimizer_state(params, {"state.0.exp_avg": torch.zeros(4, 3), "state.0.step": torch.tensor(3.0)}, "o")
    with pytest.raises(RunError, match="has shape"):
        check_optimizer_state(params, {"state.1.exp_avg": torch.zeros(1)}, "o")
    with pytest.raises(RunError, match="belongs to no parameter"):
        check_optimizer_state(params, {"state.5.exp_avg": torch.zeros(1)}, "o")


# -- output paths ---------------------------------------------------------------------------------


def test_data_samples_count_zero_and_output_folder_in_the_way(capsys, tmp_path, synth_dir):
    assert "--count must be at least 1" in one_line_error(capsys, "data", "samples", "--count", "0",
                                                          "--data-dir", str(synth_dir))
    folder = tmp_path / "out.png"
    folder.mkdir()
    line = one_line_error(capsys, "data", "samples", "-o", str(folder), "--data-dir", str(synth_dir), "-q")
    assert "cannot write it" in line and folder.is_dir()


def test_save_inputs_and_evaluate_out_that_are_files(capsys, tmp_path, mlp_run, synth_dir):
    picture = tmp_path / "one.png"
    a = np.zeros((28, 28), np.uint8)
    a[5:23, 12:16] = 255
    Image.fromarray(a).save(picture)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "is a file, not a folder" in one_line_error(capsys, "predict", str(mlp_run), str(picture),
                                                       "--save-inputs", str(blocker), "-q")
    assert "is a file, not a folder" in one_line_error(capsys, "evaluate", str(mlp_run), "--data-dir",
                                                       str(synth_dir), "--out", str(blocker), "-q")
    assert blocker.read_text() == "x"


def test_hostile_pictures_in_a_folder_do_not_stop_the_others(capsys, tmp_path, mlp_run, monkeypatch):
    from test_hostile_server import HOSTILE_PNGS, good_png

    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "good.png").write_bytes(good_png())
    for kind, data in HOSTILE_PNGS.items():
        (folder / f"{kind}.png").write_bytes(data)
    (folder / "=HYPERLINK(1).png").write_bytes(good_png())
    (folder / "esc\x1b[31mred.png").write_bytes(good_png())
    code, out, err = cli(capsys, "predict", str(mlp_run), str(folder), "--csv")
    assert code == 1 and "Traceback" not in err
    assert "3 of 6 images could not be read" in err
    assert len(out.strip().splitlines()) == 7
    monkeypatch.chdir(folder)
    code, out, err = cli(capsys, "predict", str(mlp_run), "=HYPERLINK(1).png", "good.png", "--csv")
    rows = out.strip().splitlines()[1:]
    assert code == 0 and rows[0].startswith("'=HYPERLINK") and rows[1].startswith("good.png")
    code, out, err = cli(capsys, "predict", str(mlp_run), str(folder))
    # the name's escape sequence is shown, not sent; the table may wrap a long path over lines
    cells = "".join(c for c in out if c not in " \u2502\n")
    assert "\x1b" not in out and "esc\\x1b[31mred" in cells


# -- data files: caps before the memory is spent --------------------------------------------------


def test_gzip_bomb_is_refused_early(monkeypatch, tmp_path):
    from digitlab.data.formats import read_idx

    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28)
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        f.write(header)
        f.write(bytes(10 * 784))
        for _ in range(64):
            f.write(bytes(1 << 20))  # 64 MB of zeros past the declared size
    with pytest.raises(FormatError, match="longer than its IDX header declares"):
        read_idx(bomb)
    monkeypatch.setenv("DIGITLAB_MAX_DATA_BYTES", "1000")
    with pytest.raises(FormatError, match="declares 7,856 bytes"):
        read_idx(bomb)


def test_idx_header_dimensions_overflowing_the_byte_count(tmp_path):
    from digitlab.data.formats import parse_idx, read_idx

    raw = struct.pack(">BBBBIII", 0, 0, 8, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(16)
    with pytest.raises(FormatError, match="truncated"):
        parse_idx(raw)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(FormatError, match="more than the"):
        read_idx(path)


def test_npz_declaring_730_gib_is_refused_before_reading(tmp_path):
    from digitlab.data.formats import parse_npz

    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (1_000_000_000, 28, 28)}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    with zipfile.ZipFile(buf, "w") as z:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(f"{key}.npy", npy.getvalue() + bytes(100))
    with pytest.raises(FormatError, match="declares a 1000000000x28x28"):
        parse_npz(buf.getvalue(), "big.npz")


def test_npz_zip_bomb_is_refused_from_its_directory(monkeypatch):
    from digitlab.data.formats import parse_npz

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x_train.npy", bytes(5_000_000))
    monkeypatch.setenv("DIGITLAB_MAX_DATA_BYTES", "1000000")
    with pytest.raises(FormatError, match="members declare 5,000,000 bytes"):
        parse_npz(buf.getvalue(), "bomb.npz")


def test_onnx_metadata_config_that_is_not_an_object():
    from digitlab.config import OnnxConfigSchema
    from digitlab.errors import ExportError
    from digitlab.schema import check

    with pytest.raises(ExportError, match="m.onnx: metadata 'config': must hold a JSON object, got list"):
        check(OnnxConfigSchema, [1, 2], "m.onnx: metadata 'config'", ExportError)
    check(OnnxConfigSchema, {}, "m.onnx", ExportError)  # sections may be left out
