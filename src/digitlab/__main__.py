import os
import sys

from digitlab.cli import main

main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A rank of a data-parallel job (torchrun -m digitlab) whose work is done and whose process group
    # is closed: leave without the interpreter's teardown, where the communication library's
    # threads can abort an otherwise finished process.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
