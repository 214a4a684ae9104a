"""Render a run's ``curves.png`` in a helper process while training runs.

Importing matplotlib and drawing a first figure costs about a second of CPU. A child process does
that while the run starts and trains, says ``ready``, and then waits for the history, so only the
final drawing is left when training ends. Until the child is ready, :meth:`CurvesRenderer.busy` is
true: an engine that trains on every core leaves it one meanwhile. If the child fails, the figure
is drawn in this process.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
from pathlib import Path

WARM_UP = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5},
           {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.8}]


class CurvesRenderer:
    def __init__(self, path: str | os.PathLike, background: bool = True):
        self.path = Path(path)
        self.proc: subprocess.Popen | None = None
        if background:
            try:
                self.proc = subprocess.Popen([sys.executable, "-m", "digitlab.curves_worker"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL)
            except OSError:
                self.proc = None
        self._ready = self.proc is None

    def busy(self) -> bool:
        """Whether the child is still importing and warming up (it uses a core until then)."""
        if self._ready:
            return False
        try:
            if select.select([self.proc.stdout], [], [], 0)[0]:
                self.proc.stdout.readline()  # "ready", or end of file if it died: not busy either way
                self._ready = True
        except (OSError, ValueError):
            self._ready = True
        return not self._ready

    def render(self, history: list[dict]) -> Path:
        if self.proc is not None:
            try:
                self.proc.communicate(json.dumps({"history": history, "path": str(self.path)}).encode(), timeout=60)
                if self.proc.returncode == 0 and self.path.is_file():
                    return self.path
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
        return draw(history, self.path)

    def cancel(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def draw(history: list[dict], path: Path) -> Path:
    from digitlab.plots import save_figure, training_curves  # matplotlib: only where a figure is drawn

    return save_figure(training_curves(history), path)


def main() -> None:
    from digitlab.plots import training_curves  # matplotlib: the helper process's slow start

    # the slow part, done while the parent trains: imports, fonts, a first drawing
    training_curves(WARM_UP).savefig(io.BytesIO(), format="png")
    print("ready", flush=True)

    job = json.loads(sys.stdin.buffer.read() or b"null")
    if job is None:
        return
    draw(job["history"], Path(job["path"]))


if __name__ == "__main__":
    main()
