"""Render a run's ``curves.png`` in a helper process while training runs.

Importing matplotlib costs more than half a second of CPU. When training leaves a core idle (the
MLP trains on one thread), a child process imports it on that core during training and only draws
when the history arrives; otherwise, or if the child fails, the figure is drawn in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


class CurvesRenderer:
    def __init__(self, path: str | os.PathLike, background: bool = True):
        self.path = Path(path)
        self.proc: subprocess.Popen | None = None
        if background:
            try:
                self.proc = subprocess.Popen([sys.executable, "-m", "digitlab.curves_worker"],
                                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            except OSError:
                self.proc = None

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
    from digitlab.plots import save_figure, training_curves

    return save_figure(training_curves(history), path)


def main() -> None:
    if hasattr(os, "nice"):
        os.nice(19)  # training comes first: this runs in the gaps it leaves
    import digitlab.plots  # noqa: F401  (the slow import, done while the parent trains)

    job = json.loads(sys.stdin.buffer.read() or b"null")
    if job is None:
        return
    draw(job["history"], Path(job["path"]))


if __name__ == "__main__":
    main()
