"""Data-parallel training over several processes: gloo on the CPU, NCCL on CUDA GPUs.

``torchrun --nproc_per_node=N -m digitlab train ...`` starts N processes and describes the job in
their environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
:func:`context_from_env` joins that process group. Every rank draws the same permutation each
epoch and trains on its share (``idx[rank::world]``) of every global batch; DistributedDataParallel
averages the gradients, so all ranks keep identical weights. Only rank 0 prints and writes the run
folder (config, checkpoints, weights, metrics). ``digitlab train --nproc N`` does the launching for
you on one machine (:func:`launch`). Several machines: run torchrun on each with ``--nnodes`` and a
shared ``--rdzv-endpoint`` (the run folder must then be on storage every node sees for ``--resume``).

A rank that dies makes the others fail fast: the survivors' next collective reports the lost peer
(or gives up after ``$DIGITLAB_DIST_TIMEOUT`` seconds, default 120, when a peer hangs), the launcher
stops the job and exits non-zero, and the last completed epoch's checkpoint stays as it was.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import signal
import socket
import sys
import threading
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel

from digitlab.config import default_run_dir, threads_per_rank
from digitlab.errors import ConfigError, DigitlabError

DEFAULT_TIMEOUT_S = 120.0
ENV_TIMEOUT = "DIGITLAB_DIST_TIMEOUT"
LOCALHOST = "127.0.0.1"
TERM_GRACE_S = 3.0  # after SIGTERM a rank finishes what it writes (a checkpoint) for at most this long
# the launcher's wait for the ranks to leave after SIGTERM, then SIGKILL: a rank that is frozen (SIGSTOP)
# or hung in C code cannot answer SIGTERM, and torch's own default (30 s) would double the timeout
SHUTDOWN_S = int(TERM_GRACE_S) + 1


class DistributedError(DigitlabError):
    """A rank failed, a collective timed out, or the job could not start."""


def timeout_from_env() -> float:
    """Seconds a collective may wait for the other ranks: ``$DIGITLAB_DIST_TIMEOUT`` or 120."""
    value = os.environ.get(ENV_TIMEOUT, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"${ENV_TIMEOUT} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ConfigError(f"${ENV_TIMEOUT} must be positive, got {value!r}")
    return seconds


@dataclass
class Context:
    """This process's place in a data-parallel job, and the few collectives training needs."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    local_world_size: int = 1

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` inside DistributedDataParallel (which starts every rank from rank 0's weights).

        On CUDA, batch-norm layers become SyncBatchNorm (statistics over the global batch, in place:
        the state_dict keys do not change); gloo has no SyncBatchNorm, so on the CPU each rank
        normalises with its own shard's statistics and the running averages follow rank 0's.
        """
        if self.backend == "nccl":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ddp = DistributedDataParallel(model, device_ids=[self.local_rank], output_device=self.local_rank)
        else:
            ddp = DistributedDataParallel(model)
        ddp.register_forward_pre_hook(lambda module, args: self.check_stop())
        return ddp

    def check_stop(self) -> None:
        """Raise :class:`DistributedError` once this rank was asked to terminate (SIGTERM): the job
        stops at the next step, not in the middle of writing a checkpoint."""
        if _STOP.requested:
            raise DistributedError(f"rank {self.rank}: stopped by the launcher (another rank failed, or the job "
                                   "was cancelled); the last completed epoch's checkpoint is kept")

    def _fail(self, what: str, e: BaseException) -> DistributedError:
        return DistributedError(f"rank {self.rank}: {what} failed; another rank stopped or stopped answering "
                                f"({_first_sentence(e)})")

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        self.check_stop()
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        try:
            tdist.all_reduce(t)
        except RuntimeError as e:  # DistBackendError and friends are RuntimeErrors
            raise self._fail("all-reduce", e) from None
        return t.cpu().tolist()

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
        try:
            for b in model.buffers():
                if b.is_floating_point() or b.dtype in (torch.int64, torch.int32):
                    tdist.broadcast(b.data, src=0)
        except RuntimeError as e:
            raise self._fail("broadcast", e) from None

    def barrier(self) -> None:
        try:
            tdist.barrier()
        except RuntimeError as e:
            raise self._fail("barrier", e) from None

    def close(self, wait: bool = False) -> None:
        """Leave the process group. ``wait``: after a successful run, first wait for every rank (rank 0
        may still be writing the run folder), so no rank tears the group down under another."""
        if tdist.is_available() and tdist.is_initialized():
            if wait:
                try:
                    tdist.barrier()
                except RuntimeError:
                    pass  # a rank is gone: nothing left to wait for
            tdist.destroy_process_group()


def context_from_env(timeout_s: float | None = None) -> Context | None:
    """Join the process group torchrun describes in the environment; None when not under torchrun.

    NCCL when CUDA is available (one GPU per local rank), gloo otherwise. Sets this process's CPU
    threads to its share of the machine's cores, and reports uncaught distributed failures on one
    line (``error: rank R: ...``) instead of a traceback.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return None
    if not tdist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed; train in one process")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    backend = "nccl" if torch.cuda.is_available() and tdist.is_nccl_available() else "gloo"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                                   "use at most one process per GPU")
        torch.cuda.set_device(local_rank)
    timeout = timeout_s if timeout_s is not None else timeout_from_env()
    torch.set_num_threads(threads_per_rank(local_world))
    _install_excepthook(rank)
    _install_sigterm()
    try:
        tdist.init_process_group(backend, rank=rank, world_size=world,
                                 timeout=datetime.timedelta(seconds=timeout))
    except RuntimeError as e:
        raise DistributedError(f"rank {rank}: could not join the process group at "
                               f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} ({e})") from None
    return Context(rank, world, local_rank, backend, local_world)


def _first_sentence(e: BaseException) -> str:
    """The gist of a c10d/gloo/NCCL error: its first line, without the source location, first sentence."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    line = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0])
    line = re.split(r"(?<=\.)\s", line, maxsplit=1)[0]
    return line[:200]


def _install_excepthook(rank: int) -> None:
    """A rank that loses its peers says so on one line; other errors keep their traceback."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, tdist.DistError) or (isinstance(value, RuntimeError) and _looks_distributed(value)):
            print(f"error: rank {rank}: lost contact with the other ranks ({_first_sentence(value)})",
                  file=sys.stderr, flush=True)
            return
        previous(kind, value, tb)

    sys.excepthook = hook


def _looks_distributed(e: BaseException) -> bool:
    text = str(e).lower()
    return any(k in text for k in ("gloo", "nccl", "connection closed by peer", "connection reset", "c10d"))


class _Stop:
    requested = False


_STOP = _Stop()


def _install_sigterm() -> None:
    """On SIGTERM (torchrun stopping the job after another rank failed) finish the current step or
    checkpoint write, then stop; a rank stuck in a collective is ended after ``TERM_GRACE_S``."""
    def on_term(signum, frame):
        if _STOP.requested:
            os._exit(128 + signum)
        _STOP.requested = True
        timer = threading.Timer(TERM_GRACE_S, os._exit, args=(128 + signum,))
        timer.daemon = True
        timer.start()

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: keep the default
        pass


# --------------------------------------------------------------------------------------------
# launching on one machine


def _strip_nproc(argv: list[str]) -> list[str]:
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
    return args


def _option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _train_args(args: list[str]) -> tuple[list[str], str | None]:
    """Give every rank the same run folder name (the timestamped default is chosen once, here)."""
    if not args or args[0] != "train":
        return args, None
    if _option(args, "--resume"):
        return args, _option(args, "--resume")
    runs_dir = _option(args, "--runs-dir") or "runs"
    name = _option(args, "--name")
    if name is None:
        model = _option(args, "--model") or _option(args, "-m") or "mlp"
        name = os.path.basename(default_run_dir(model, runs_dir))
        args = [*args, "--name", name]
    return args, os.path.join(runs_dir, name)


def _agent_class(base: type) -> type:
    """torch's local agent (``base``), giving the ranks at most ``SHUTDOWN_S`` to leave whenever it
    stops them: after a rank fails, torch's process context stops the others with its own 30-second
    default, whatever the launch's ``shutdown_timeout`` says."""

    class Agent(base):
        def _start_workers(self, worker_group):
            started = super()._start_workers(worker_group)
            context = getattr(self, "_pcontext", None)
            if context is not None:
                close = context.close

                def close_soon(death_sig=None, timeout: float = SHUTDOWN_S) -> None:
                    close(death_sig, min(timeout, SHUTDOWN_S))

                context.close = close_soon
            return started

    return Agent


def launch(nproc: int, argv: list[str], *, port: int | None = None) -> int:
    """Run ``digitlab <argv without --nproc>`` in ``nproc`` processes on this machine, the way
    ``torchrun --nproc_per_node=nproc --master_addr 127.0.0.1 -m digitlab ...`` does; return the
    exit code (0, or 1 with a one-line ``error:`` on stderr when a rank failed)."""
    # torch's elastic launcher loads only in the process that launches, never in the ranks
    import torch.distributed.launcher.api as launcher_api
    from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} asks for more processes than GPUs ({torch.cuda.device_count()})")
    args, run_dir = _train_args(_strip_nproc(argv))
    # torchrun would set 1 and warn; give each rank its share of the cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_rank(nproc)))
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id="digitlab",
        rdzv_backend="static", rdzv_endpoint=f"{LOCALHOST}:{port or _free_port()}", rdzv_configs={"rank": 0},
        max_restarts=0, monitor_interval=0.1, shutdown_timeout=SHUTDOWN_S,
    )
    quiet_loggers = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.launcher")]
    levels = [lg.level for lg in quiet_loggers]
    for lg in quiet_loggers:
        lg.setLevel(logging.CRITICAL)
    existed = run_dir is not None and os.path.exists(run_dir)
    agent = getattr(launcher_api, "LocalElasticAgent", None)
    if agent is LocalElasticAgent:
        launcher_api.LocalElasticAgent = _agent_class(LocalElasticAgent)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "digitlab", *args)
    except ChildFailedError as e:
        rank, failure = _root_failure(e.failures)
        code = failure.exitcode
        how = (f"was killed by signal {failure.signal_name()}" if code < 0 else f"exited with code {code}")
        hint = ""
        if run_dir is not None and os.path.isfile(os.path.join(run_dir, "checkpoint", "state.json")):
            hint = (f"; continue from the last completed epoch with: "
                    f"digitlab train --nproc {nproc} --resume {run_dir}")
        elif run_dir is not None:
            hint = "; no epoch was completed, so there is nothing to resume: start the run again"
            if not existed:  # what the failed start made goes again
                shutil.rmtree(run_dir, ignore_errors=True)
        print(f"error: distributed training failed: rank {rank} of {nproc} {how}{hint}", file=sys.stderr, flush=True)
        return 1
    except SignalException as e:
        print(f"interrupted ({e.sigval.name}); the ranks were stopped", file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # rendezvous or start-up failures
        print(f"error: could not run {nproc} processes: {_first_sentence(e)}", file=sys.stderr, flush=True)
        return 1
    finally:
        if agent is LocalElasticAgent:
            launcher_api.LocalElasticAgent = agent
        for lg, level in zip(quiet_loggers, levels, strict=True):
            lg.setLevel(level)
    return 0


def _root_failure(failures: dict) -> tuple[int, object]:
    """The rank whose failure started it: the earliest (torch keeps whole seconds), and of those the
    one that was not a consequence of the stop (SIGTERM, an abort, or the peer-lost exit code 1)."""
    def consequence(f) -> int:
        code = f.exitcode
        if code in (-signal.SIGTERM, -signal.SIGABRT, 128 + signal.SIGTERM):
            return 2
        return 1 if code == 1 else 0

    rank = min(failures, key=lambda r: (failures[r].timestamp, consequence(failures[r]), r))
    return rank, failures[rank]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]
