"""The package's layers: imports flow one way (local imports counted), and the paths that need
neither torch nor matplotlib do not load them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import digitlab

PACKAGE = Path(digitlab.__file__).resolve().parent


def modules() -> dict[str, Path]:
    found = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["digitlab", *f.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = f
    return found


def import_edges() -> dict[str, set[str]]:
    """Every module's imports of other package modules, wherever they are in the file."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                # a module importing its own package's __init__ to reach a sibling is not an edge to it
                if n in mods and n != m and not (f.name != "__init__.py" and n == pkg):
                    edges[m].add(n)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_inside_the_package():
    edges = import_edges()
    assert "digitlab.training.job" in edges and edges["digitlab.training.job"]  # the parser sees imports
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(
        ", ".join(c) + " (" + ", ".join(f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c) + ")"
        for c in found)


def test_lower_layers_do_not_import_upper_ones():
    """config and runs are torch-free schemas and file formats: they build no model and train nothing."""
    edges = import_edges()
    for low in ("digitlab.config", "digitlab.runs"):
        assert not {e for e in edges[low] if e.startswith(("digitlab.models", "digitlab.training"))}, low
    assert not {e for e in edges["digitlab.models"] if e.startswith("digitlab.training")}


def test_every_model_has_an_option_schema():
    from digitlab.config import MODEL_OPTIONS
    from digitlab.models import MODELS

    assert MODELS.keys() == MODEL_OPTIONS.keys()


def loaded_after(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; which of torch and matplotlib it loaded."""
    probe = (code + "\nimport json, sys\n"
             "print(json.dumps({m: m in sys.modules for m in ('torch', 'matplotlib')}))\n")
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CLI = ("import sys\nfrom digitlab.cli import main\nsys.argv = ['digitlab'] + sys.argv[1:]\n"
       "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")


def test_cli_tutorial_training_loads_neither_torch_nor_matplotlib(synth_dir, tmp_path):
    from digitlab.training import native

    if not native.available():
        pytest.skip(f"native engine not built: {native.load_error()}")
    loaded = loaded_after(CLI, "train", "--epochs", "1", "--data-dir", str(synth_dir), "--runs-dir", str(tmp_path),
                          "--name", "r", "--device", "cpu", "--quiet")
    assert loaded == {"torch": False, "matplotlib": False}
    assert (tmp_path / "r" / "curves.png").is_file()  # drawn by the helper process


def test_onnx_predictor_loads_neither_torch_nor_matplotlib():
    loaded = loaded_after("import digitlab.inference.onnx_predictor, digitlab.inference.predictor\n"
                          "from digitlab.inference.predictor import load_predictor")
    assert loaded == {"torch": False, "matplotlib": False}


@pytest.mark.parametrize("command", [["info"], ["split"], ["extract", "--count", "3"]])
def test_data_commands_load_neither_torch_nor_matplotlib(synth_dir, tmp_path, command):
    args = ["data", *command, "--data-dir", str(synth_dir), "--quiet"]
    if command[0] == "extract":
        args += ["--output", str(tmp_path / "pngs")]
    assert loaded_after(CLI, *args) == {"torch": False, "matplotlib": False}


# What a function-local import may keep out of a path: the heavy stacks, and the optional extras.
GUARDED = ("torch", "matplotlib", "sklearn", "fastapi", "uvicorn", "onnx", "onnxruntime", "tensorboard",
           "safetensors.torch", "torch.distributed.elastic", "torch.distributed.launcher")


def _resolve(node: ast.Import | ast.ImportFrom, module: str, mods: dict[str, Path]) -> list[str]:
    pkg = module if mods[module].name == "__init__.py" else module.rpartition(".")[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]


def _top_level_imports(module: str, mods: dict[str, Path]) -> list[str]:
    found: list[str] = []

    def walk(body: list[ast.stmt]) -> None:
        for n in body:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                found.extend(_resolve(n, module, mods))
            elif isinstance(n, ast.If) and "TYPE_CHECKING" not in ast.unparse(n.test):
                walk(n.body)
                walk(n.orelse)
            elif isinstance(n, ast.Try):
                walk(n.body)
                for h in n.handlers:
                    walk(h.body)

    walk(ast.parse(mods[module].read_text()).body)
    return found


def _loads(name: str, mods: dict[str, Path], seen: set[str] | None = None) -> set[str]:
    """Every module that importing ``name`` loads at import time (the package's own top-level imports
    followed; third-party modules taken by name)."""
    seen = set() if seen is None else seen
    parts = name.split(".")
    for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
        if prefix not in seen:
            seen.add(prefix)
            if prefix in mods:
                for target in _top_level_imports(prefix, mods):
                    _loads(target, mods, seen)
    return seen


def _guarded(loaded: set[str]) -> set[str]:
    return {g for g in GUARDED if g in loaded}


def test_the_import_walker_sees_what_a_module_loads():
    mods = modules()
    assert "torch" in _loads("digitlab.models", mods)
    assert "matplotlib" in _loads("digitlab.plots", mods)
    assert not _guarded(_loads("digitlab.config", mods))


def test_every_local_import_keeps_something_heavy_out():
    """A function-local import is there only to keep torch, matplotlib, the server or sklearn stacks, torch's
    elastic launcher (out of the ranks), or an optional extra out of modules that do not load them already;
    every other import is at the top."""
    mods = modules()
    idle = []
    for module, path in mods.items():
        already = _guarded(_loads(module, mods))
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    kept_out = set().union(*(_guarded(_loads(t, mods)) for t in _resolve(node, module, mods)))
                    if not kept_out - already:
                        idle.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    assert not idle, "local imports that guard nothing: " + "; ".join(idle)


def test_cli_help_loads_no_heavy_stack():
    probe = ("import sys\nfrom digitlab.cli import main\nsys.argv = ['digitlab', '--help']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in " + repr(GUARDED) + " if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
