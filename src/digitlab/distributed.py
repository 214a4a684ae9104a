"""Data-parallel training over several processes (torchrun): gloo on CPU, NCCL on CUDA.

``torchrun --nproc_per_node=N -m digitlab train ...`` sets RANK/WORLD_SIZE/MASTER_ADDR; each rank
trains on its shard of every global batch, DistributedDataParallel averages the gradients, only
rank 0 prints and writes the run folder. ``digitlab train --nproc N`` launches torchrun for you.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from digitlab.errors import DigitlabError

DEFAULT_TIMEOUT_S = 120


class DistributedError(DigitlabError):
    """A rank failed or a collective timed out."""


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        if self.backend == "nccl":
            return DistributedDataParallel(model, device_ids=[self.local_rank])
        return DistributedDataParallel(model)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=device)
        try:
            tdist.all_reduce(t)
        except RuntimeError as e:
            raise DistributedError(f"rank {self.rank}: another rank stopped answering ({e})") from None
        return t.tolist()

    def barrier(self) -> None:
        tdist.barrier()

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()


def context_from_env(timeout_s: float | None = None) -> Context | None:
    """Join the process group torchrun describes in the environment; None when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    timeout = timeout_s or float(os.environ.get("DIGITLAB_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    tdist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout))
    return Context(rank, world, local_rank, backend)


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``torchrun --nproc_per_node=nproc -m digitlab <argv without --nproc>``; return its exit code."""
    args: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "digitlab", *args]
    code = subprocess.call(cmd)
    if code != 0:
        print(f"error: distributed training failed (exit code {code}); see the messages above",
              file=sys.stderr)
    return code


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
