"""The command line: thin, parses options and calls the library. Nothing is computed here."""

from __future__ import annotations

import sys

from rich.text import Text

from digitlab.cli import compare, data, evaluate, explain, export, plot, predict, serve, train  # noqa: F401  (register commands)
from digitlab.cli.app import app, err, visible
from digitlab.errors import DigitlabError, Interrupted


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``digitlab`` console script."""
    try:
        app(args=argv, prog_name="digitlab", standalone_mode=True)
    except DigitlabError as e:
        err.print(Text.assemble(("error:", "bold red"), " ", visible(e)), highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except PermissionError as e:  # a file or folder this user may not read or enter, wherever it was met
        where = f"{e.filename}: " if e.filename else ""
        err.print(Text.assemble(("error:", "bold red"), " ", visible(f"{where}permission denied ({e.strerror})")),
                  highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(Interrupted.exit_code)
