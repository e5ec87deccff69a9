"""Data-parallel training over processes (``torchrun``) and training checkpoints.

Launch::

    torchrun --standalone --nproc-per-node K -m ocp_resnet train <flags>

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address;
:func:`init_from_env` then joins the process group (gloo on the CPU, nccl on CUDA with one GPU
per rank, ``cuda:LOCAL_RANK``) and :func:`current` hands the :class:`Context` to
:meth:`ocp_resnet.torch.Trainer.fit`.

**Same trajectory as one process.** ``--batch-size`` is the *global* batch: every rank draws
the same permutation (same seed), takes its contiguous share of each global batch
(:meth:`Context.shard`) and weights its mean data loss by ``K·m_r/B`` (m_r samples of B on
this rank), so that DDP's gradient *average* over the K ranks is the gradient of the mean
over the global batch plus λ∇Σ||w||² (computed on every rank, left unscaled). Losses and
accuracies are summed over ranks (all-reduce) before they are recorded, and Ctrl-C is agreed
on once per step (an all-reduce of the stop flag), so every rank stops after the same step.
In float64 on the CPU, K ranks and one process differ only by the summation order of the
batch sums (final weights agree to ~1e-13 in tests/test_scale.py).

**Batch norm** is *not* synchronised: each rank normalises with the statistics of its share
of the batch (plain DDP behaviour; ``torch.nn.SyncBatchNorm`` runs on CUDA only and does not
cover the functional batch norm of the stacked stage outputs). A ``--norm batch`` conv net
on K ranks therefore trains a slightly different model than on one; ``--norm group`` or
``none`` follow the one-process trajectory.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ocp_resnet.errors import ValidationError

if TYPE_CHECKING:
    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.torch.conv import ResNetV2
    from ocp_resnet.torch.mlp import ResNetMLP


@dataclass(frozen=True)
class Context:
    """This process' place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """More than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes files."""
        return self.rank == 0

    def device(self, requested: str | torch.device | None) -> torch.device:
        """``auto``/``cuda`` become this rank's GPU ``cuda:LOCAL_RANK`` (one GPU per rank)."""
        from ocp_resnet.torch.device import resolve_device

        dev = resolve_device(requested)
        if self.active and dev.type == "cuda":
            if dev.index not in (None, self.local_rank):
                raise ValidationError(f"device={requested}: under torchrun each rank uses cuda:LOCAL_RANK; "
                                      "give device='cuda' or device='auto'")
            dev = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(dev)
        return dev

    # --------------------------------------------------------------- data split
    def check_batches(self, n: int, batch: int) -> None:
        """Every global batch (also the last, shorter one) must give each rank at least one sample."""
        if not self.active:
            return
        last = n - (-(-n // batch) - 1) * batch
        if min(batch, last) < self.world_size:
            raise ValidationError(
                f"a batch of {min(batch, last)} samples cannot be split across {self.world_size} ranks "
                f"({n} samples, batch_size={batch}): choose a batch_size whose last batch has at least "
                f"{self.world_size} samples, or fewer ranks")

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of the global batch ``idx`` (sizes differ by at most one)."""
        if not self.active:
            return idx
        return torch.tensor_split(idx, self.world_size)[self.rank]

    def weight(self, m: int, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        """The factor K·m_r/B on this rank's mean data loss (None in one process: no rescaling)."""
        if not self.active:
            return None
        return torch.tensor(self.world_size * m / batch, dtype=like.dtype, device=like.device)

    # --------------------------------------------------------------- collectives
    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over all ranks (``t`` itself in one process)."""
        if not self.active:
            return t
        import torch.distributed as dist

        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return t if not self.active else self.sum(t) / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on any (the Ctrl-C agreement)."""
        if not self.active:
            return bool(flag)
        import torch.distributed as dist

        t = torch.tensor([int(bool(flag))], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``module`` under DistributedDataParallel (unchanged in one process)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(module, device_ids=ids, output_device=device.index if ids else None)


_CURRENT = Context()


def current() -> Context:
    """The active context (one process unless :func:`init_from_env` joined a group)."""
    return _CURRENT


def launched() -> bool:
    """This process was started by torchrun (or another launcher) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | None = "auto", timeout_s: float = 1800.0) -> Context:
    """Join the process group torchrun describes in the environment; returns the context.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing happens and the one-process context
    is returned. ``device`` picks the backend: nccl when it resolves to CUDA, else gloo.
    """
    global _CURRENT
    if not launched():
        return _CURRENT
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    from ocp_resnet.torch.device import resolve_device

    backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    _CURRENT = Context(rank=rank, world_size=world, local_rank=local, backend=backend)
    return _CURRENT


_LEFT_GROUP = False


def shutdown() -> None:
    """Leave the process group (after the last collective).

    The ranks meet at a barrier first, so that none tears its connections down while another
    is still inside a collective (rank 0 writes the run directory after the others are done).
    """
    global _CURRENT, _LEFT_GROUP
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:  # a peer already gone: nothing left to agree on, just leave
            pass
        dist.destroy_process_group()
        _LEFT_GROUP = True
    _CURRENT = Context()


def left_group() -> bool:
    """This process was one rank of a torchrun job.

    Such a process should end with ``os._exit`` after flushing its streams: the gloo worker
    threads and objects still referenced by DDP are otherwise destroyed during interpreter
    finalisation, which aborts the process now and then (``terminate called without an active
    exception``) although all its work is done and written.
    """
    return _LEFT_GROUP


class Objective(torch.nn.Module):
    """The model and its stage-cost loss as one module, so DDP and torch.compile see one forward.

    ``forward(x, t_rows, weight)`` → (J to differentiate, J of this shard unscaled, final
    logits): J = weight·mean(cost) + λΣ||w||² (``weight`` None: J = mean(cost) + λΣ||w||², the
    arithmetic of :class:`~ocp_resnet.torch.loss.StageCostLoss`).
    """

    def __init__(self, model: ResNetMLP | ResNetV2, objective: ObjectiveSpec, regularization: bool = True) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.regularization = regularization

    def forward(self, x: torch.Tensor, t_rows: torch.Tensor,
                weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cost, logits = self.model.cost(x, t_rows.T, self.objective)
        data = cost.mean()
        reg = self.model.regularization(self.objective) if self.regularization else None
        J = data if reg is None else data + reg
        if weight is None:
            return J, J, logits
        scaled = data * weight if reg is None else data * weight + reg
        return scaled, J, logits


# ------------------------------------------------------------------ checkpoints
CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` with torch.save atomically (temporary file, then rename)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir: str | os.PathLike) -> dict:
    """The training state in ``RUN_DIR/checkpoint.pt`` (written with ``--checkpoint-every``).

    Read with ``torch.load(..., weights_only=True)``: a checkpoint is data, and torch's
    restricted unpickler admits only tensors and plain containers/numbers/strings — all that
    :meth:`Trainer.fit`'s state holds (the RNG states are uint8 tensors) — so a tampered file is
    refused instead of running the code it names.
    """
    import pickle
    import zipfile
    from pathlib import Path

    p = Path(run_dir)
    p = p if p.suffix == ".pt" else p / CHECKPOINT
    if not p.exists():
        raise ValidationError(f"{p} does not exist: resume needs a run directory trained with checkpoint_every=E")
    not_checkpoint = f"{p}: not a training checkpoint: give a run directory trained with checkpoint_every=E"
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is no checkpoint of ours
        raise ValidationError(not_checkpoint)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: never retry with code enabled
        # torch's message wraps the one line that says what was refused in advice we do not want to echo
        what = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        raise ValidationError(
            f"{p}: refused to load: it holds objects other than tensors and plain data"
            f"{' (' + what[0] + ')' if what else ''}. A checkpoint is data, never code: only files written by "
            "training with checkpoint_every load; retrain the run") from None
    except (RuntimeError, EOFError, ValueError, KeyError) as exc:  # a damaged or truncated archive
        raise ValidationError(f"{not_checkpoint} ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(state, dict) or not {"epoch", "model", "optimizer", "generator", "torch_rng"} <= state.keys():
        raise ValidationError(not_checkpoint + " (no training state in it)")
    return state
