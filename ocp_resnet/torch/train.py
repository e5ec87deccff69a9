"""Mini-batch / full-batch training of the stage-cost objective with torch.

::

    trainer = Trainer(objective, n_classes, TrainOptions(optimizer="adam", lr=1e-2, epochs=100))
    trainer.fit(model, X, y, val=(X_val, y_val))
    trainer.history_          # one dict per epoch: loss, accuracy, val_loss, val_accuracy, lr, time_s

Optimizers: SGD with (Nesterov-free) momentum, Adam, AdamW and full-batch L-BFGS (strong-Wolfe
line search). The objective always contains λ Σ||w||², except for AdamW, where the penalty is
replaced by decoupled weight decay of the same strength (2λ per unit learning rate, the
gradient of λ||w||²). Same seed on the CPU → identical numbers.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.solvers.iteration import StopOnSigint
from ocp_resnet.status import Status
from ocp_resnet.torch.device import DTYPES, resolve_device, resolve_dtype
from ocp_resnet.torch.loss import StageCostLoss, predictions, targets


@contextlib.contextmanager
def _cpu_kernels(device: Any) -> Iterator[None]:
    """Training on the CPU runs without oneDNN (mkldnn) kernels.

    torch 2.13.0's CPU build corrupts the heap ("corrupted double-linked list", abort) when
    training the float32 conv ResNet-v2 on one thread with oneDNN convolutions
    (tests/test_torch_cli.py reproduced it every run); the native kernels are as fast for the
    net sizes trained on CPU here (20 digits epochs: 6.2 s without oneDNN, 5.7 s with it).
    """
    if torch.device(device).type != "cpu":
        yield
        return
    with warnings.catch_warnings():
        # setting the flags warns that TF32 on oneDNN needs an Intel GPU: nothing to act on here
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


OPTIMIZERS = ("sgd", "adam", "adamw", "lbfgs")
SCHEDULES = ("cosine", "constant")
#: Learning rate used when none is given.
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-2, "adamw": 1e-2, "lbfgs": 1.0}


@dataclass
class TrainOptions:
    """Training hyper-parameters, validated when set.

    ``batch_size`` 0 or None means full batch (L-BFGS is always full batch);
    ``lr`` None picks :data:`DEFAULT_LR`; ``lbfgs_iter`` is L-BFGS iterations per epoch and
    ``lbfgs_history`` the curvature pairs L-BFGS keeps.
    """

    optimizer: str = "adam"
    lr: float | None = None
    epochs: int = 100
    batch_size: int | None = 64
    momentum: float = 0.9
    schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    dtype: str = "float64"
    lbfgs_iter: int = 20
    lbfgs_history: int = 50
    progress: bool = True
    #: GPU throughput switches (see docs/scale.md): torch.compile the training step, bfloat16
    #: autocast ("bf16"; float32 models only), channels-last memory layout for conv nets.
    compile: bool = False
    amp: str | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            check_float("lr", self.lr, 0.0, strict=True)
        check_int("epochs", self.epochs, 1)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 0)
        check_float("momentum", self.momentum, 0.0, maximum=1.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("seed", self.seed, 0)
        check_choice("dtype", self.dtype, DTYPES)
        check_int("lbfgs_iter", self.lbfgs_iter, 1)
        check_int("lbfgs_history", self.lbfgs_history, 1)
        resolve_device(self.device)
        if self.amp not in (None, "none", "bf16"):
            raise ValidationError(f"amp must be bf16 or none, got {self.amp!r}")
        if self.amp == "bf16" and self.dtype != "float32":
            raise ValidationError("amp='bf16' autocasts float32 models: give dtype='float32'")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's :data:`DEFAULT_LR` when None."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)

    def to_dict(self) -> dict:
        """The options as written to a run's config (``lr`` resolved).

        ``lbfgs_history`` appears only when it is not the default 50, so that the configs and
        checkpoints of runs with the default read as they always have (resume compares them).
        """
        d = asdict(self)
        d["lr"] = self.learning_rate
        if d["lbfgs_history"] == _DEFAULT_LBFGS_HISTORY:
            del d["lbfgs_history"]
        return d


_DEFAULT_LBFGS_HISTORY = TrainOptions.lbfgs_history


def _optimizer(opts: TrainOptions, params: list, objective: ObjectiveSpec) -> torch.optim.Optimizer:
    lr = opts.learning_rate
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opts.momentum)
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=2.0 * objective.weight_decay)
    return torch.optim.LBFGS(params, lr=lr, max_iter=opts.lbfgs_iter, history_size=opts.lbfgs_history,
                             line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)


def history_csv(history: Sequence[dict]) -> str:
    """Per-epoch history as CSV text."""
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        for row in history:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


@dataclass(frozen=True)
class StepInfo:
    """One optimizer step of :meth:`Trainer.fit`, as its ``callback`` sees it.

    ``step`` counts optimizer steps so far (L-BFGS: its iterations); ``epoch`` is the epoch of
    the step, from 0; ``objective`` the J of the step's (global) batch of ``batch_size`` samples
    at the weights before the step, λ-term included (AdamW: the data term alone, its decoupled
    decay replaces the λ-term; L-BFGS: J at the iterate it accepted); ``lr`` the step's learning
    rate; ``wall_s`` the seconds of training so far (a resumed run counts its earlier time);
    ``model`` the model being trained, holding the weights after the step and, after SGD-type
    steps, the step's gradient in its parameters' ``.grad`` (read them, do not change them).
    """

    step: int
    epoch: int
    objective: float
    batch_size: int
    lr: float
    wall_s: float
    model: Any


#: A :meth:`Trainer.fit` callback: gets each :class:`StepInfo`; returning ``True`` stops training.
StepCallback = Callable[[StepInfo], bool | None]
#: What stopped a training early: Ctrl-C or the step callback.
StoppedBy = Literal["SIGINT", "callback"]


class Trainer:
    """Trains a model of this package (``ResNetMLP`` or ``ResNetV2``) on the stage-cost objective.

    ``fit`` returns ``self``; learned attributes: ``model_``, ``history_`` (list of per-epoch
    dicts), ``steps_`` (optimizer steps), ``train_time_s_``, ``stopped_`` (None, or why training
    stopped early, a :class:`~ocp_resnet.status.Status`: ``Status.NAN``, or
    ``Status.INTERRUPTED`` by Ctrl-C or the callback, checked once per step; the model
    keeps its weights of that step) and ``stopped_by_`` (``"SIGINT"`` or ``"callback"`` after
    such a stop, as a solve's ``stats["stopped_by"]``; else None).

    Under ``torchrun`` (:mod:`ocp_resnet.torch.distributed`) every rank calls ``fit`` with the
    whole data; each trains on its share of every global batch through DistributedDataParallel.
    ``checkpoint(state)`` is called every ``checkpoint_every`` epochs (and after the last) with
    the full training state; ``fit(..., resume=state)`` continues from such a state exactly.
    """

    # learned by fit (unset before it, as scikit-learn's trailing-underscore attributes)
    model_: Any
    history_: list[dict[str, Any]]
    steps_: int
    train_time_s_: float
    stopped_: Status | None
    stopped_by_: StoppedBy | None

    def __init__(self, objective: ObjectiveSpec, n_classes: int, options: TrainOptions | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.objective = objective
        self.n_classes = n_classes
        self.options = options or TrainOptions()
        self.log = log

    def _tensors(self, inputs: Any, y: Any, dtype: torch.dtype,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        X = torch.as_tensor(np.asarray(inputs, dtype=np.float64), dtype=dtype).to(device)
        yy = np.asarray(y, dtype=int)
        T = targets(self.objective, yy, self.n_classes, dtype, device)
        return X, T, torch.as_tensor(yy).to(device)

    @torch.no_grad()
    def score(self, model: Any, X: torch.Tensor, T: torch.Tensor, y: torch.Tensor,
              chunk: int = 1024) -> tuple[float, float]:
        """(objective J incl. λ-term, final-stage accuracy) of ``model`` in eval mode."""
        was = model.training
        model.eval()
        loss = StageCostLoss(self.objective, self.n_classes, regularization=False)
        n = X.shape[0]
        tot, correct = 0.0, 0
        for i in range(0, n, chunk):
            J, logits = loss(model, X[i:i + chunk], T[i:i + chunk])
            tot += float(J) * (min(n, i + chunk) - i)
            correct += int((predictions(self.objective, logits) == y[i:i + chunk]).sum())
        reg = float(model.regularization(self.objective))
        model.train(was)
        return tot / n + reg, correct / n

    def fit(self, model: Any, inputs: Any, y: Any, val: tuple[Any, Any] | None = None,
            checkpoint: Callable[[dict], None] | None = None, checkpoint_every: int = 0,
            resume: dict | None = None, callback: StepCallback | None = None) -> Trainer:
        """Train ``model`` in place on ``inputs`` (n, …) with labels ``y``; ``val`` = (inputs, labels).

        ``callback(info: StepInfo)`` is called after every optimizer step; returning ``True``
        stops training after that step, as Ctrl-C does (``stopped_`` interrupted, ``stopped_by_``
        ``"callback"``). Under torchrun every rank must pass one (the ranks agree on the stop).
        """
        from tqdm import tqdm

        opts = self.options
        run = _Fit(self, model, inputs, y, val, callback)
        start = run.restore(resume)
        bar = tqdm(range(start, opts.epochs), desc="train", unit="epoch",
                   disable=not (opts.progress and run.ctx.is_main), leave=False, dynamic_ncols=True)
        with StopOnSigint() as stop, _cpu_kernels(run.device):  # Ctrl-C ends training after the current step
            for epoch in bar:
                row = run.train_epoch(epoch, stop)
                if row is None:  # stopped: the model keeps its weights, the unfinished epoch is not recorded
                    break
                bar.set_postfix(_postfix(row))
                if not math.isfinite(row["loss"]):
                    self.stopped_ = Status.NAN
                    break
                if checkpoint is not None and checkpoint_every and ((epoch + 1) % checkpoint_every == 0
                                                                     or epoch + 1 == opts.epochs):
                    checkpoint(run.state(epoch + 1))
        bar.close()
        self.train_time_s_ = time.perf_counter() - run.t0
        self.model_ = model
        model.eval()
        return self


def _postfix(row: dict) -> dict[str, str]:
    """The progress bar's summary of an epoch's history row."""
    post = {"loss": f"{row['loss']:.4g}", "acc": f"{row['accuracy']:.3f}"}
    if "val_accuracy" in row:
        post["val_acc"] = f"{row['val_accuracy']:.3f}"
    return post


class _Fit:
    """One :meth:`Trainer.fit` call: its tensors, wrapped objective, optimizer, schedule and clock."""

    def __init__(self, trainer: Trainer, model: Any, inputs: Any, y: Any, val: tuple[Any, Any] | None,
                 callback: StepCallback | None) -> None:
        from ocp_resnet.torch import distributed

        self.trainer, self.model, self.callback = trainer, model, callback
        self.ctx = ctx = distributed.current()
        self.opts = opts = trainer.options
        self.device, self.dtype = ctx.device(opts.device), resolve_dtype(opts.dtype)
        model.to(device=self.device, dtype=self.dtype)
        self.X, self.T, self.Y = trainer._tensors(inputs, y, self.dtype, self.device)
        self.layout = torch.channels_last if opts.channels_last and self.X.dim() == 4 else torch.contiguous_format
        if opts.channels_last:
            model.to(memory_format=self.layout)
        self.n = n = self.X.shape[0]
        if n == 0:
            raise ValidationError("no training samples: lower val_fraction or give more data")
        self.val = None
        if val is not None and len(val[1]) > 0:
            self.val = trainer._tensors(val[0], val[1], self.dtype, self.device)
        bs = opts.batch_size
        self.full = opts.optimizer == "lbfgs" or not bs or bs >= n
        self.bs = int(bs) if bs and not self.full else n
        ctx.check_batches(n, self.bs)
        self.adamw = opts.optimizer == "adamw"
        # the model and its loss as one module: DDP averages its gradients over the ranks
        self.local = distributed.Objective(model, trainer.objective, regularization=not self.adamw)
        net = ctx.wrap(self.local, self.device)
        self.net = torch.compile(net) if opts.compile else net
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if opts.amp == "bf16" else None
        self.opt = _optimizer(opts, [p for p in model.parameters() if p.requires_grad], trainer.objective)
        self.sched = None
        if opts.schedule == "cosine" and opts.optimizer != "lbfgs":
            steps = opts.epochs * math.ceil(n / self.bs)
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=steps)
        self.gen = torch.Generator().manual_seed(opts.seed)
        self.t0 = time.perf_counter()
        self.by_callback = False

    def restore(self, resume: dict | None) -> int:
        """Fresh learned attributes, or the state of the checkpoint ``resume``; the first epoch to run."""
        tr, opts, sched = self.trainer, self.opts, self.sched
        tr.history_, tr.steps_ = [], 0
        tr.stopped_ = tr.stopped_by_ = None
        start, elapsed = 0, 0.0
        if resume is not None:  # continue exactly where the checkpoint left off
            if sched is not None and int(resume.get("epochs", opts.epochs)) != opts.epochs:
                raise ValidationError(
                    f"the checkpoint was trained for {resume['epochs']} epochs under the cosine schedule, which "
                    f"is tied to the number of epochs: resume with epochs={resume['epochs']}, or train with "
                    "schedule='constant' to extend runs")
            self.model.load_state_dict(resume["model"])
            self.opt.load_state_dict(resume["optimizer"])
            if sched is not None and resume.get("scheduler") is not None:
                sched.load_state_dict(resume["scheduler"])
            self.gen.set_state(resume["generator"])
            torch.set_rng_state(resume["torch_rng"])
            start, elapsed = int(resume["epoch"]), float(resume.get("time_s", 0.0))
            tr.history_, tr.steps_ = list(resume["history"]), int(resume["steps"])
        self.t0 = time.perf_counter() - elapsed
        return start

    def state(self, epoch: int) -> dict:
        """The full training state after ``epoch`` epochs (what ``fit(..., resume=)`` continues)."""
        tr, sched = self.trainer, self.sched
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": None if sched is None else sched.state_dict(), "generator": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(), "history": list(tr.history_), "steps": tr.steps_,
                "time_s": time.perf_counter() - self.t0, "world_size": self.ctx.world_size,
                "epochs": self.opts.epochs}

    def forward(self, xb: torch.Tensor, tb: torch.Tensor, m: int, total: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(J to differentiate, this shard's J, logits); bf16 autocast when asked."""
        if self.layout is torch.channels_last:
            xb = xb.contiguous(memory_format=self.layout)
        w = self.ctx.weight(m, total, self.X)
        if self.autocast is None:
            return self.net(xb, tb, w)
        with self.autocast:
            return self.net(xb, tb, w)

    def train_epoch(self, epoch: int, stop: StopOnSigint) -> dict | None:
        """One epoch of steps; its history row, or None when Ctrl-C or the callback stopped it."""
        self.model.train()
        lr = self.opt.param_groups[0]["lr"]
        steps = self._lbfgs_epoch if self.opts.optimizer == "lbfgs" else self._sgd_epoch
        loss_sum, correct, stopped = steps(epoch, stop)
        if stopped:
            self.trainer.stopped_ = Status.INTERRUPTED
            self.trainer.stopped_by_ = "callback" if self.by_callback else "SIGINT"
            return None
        return self._record(epoch, lr, loss_sum, correct)

    def _lbfgs_epoch(self, epoch: int, stop: StopOnSigint) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """One full-batch L-BFGS ``step`` (up to ``lbfgs_iter`` iterations): (Σ J·m, correct, stopped)."""
        ctx, opt, n = self.ctx, self.opt, self.n
        # one process: the data as given (its layout decides the rounding of the products)
        own = ctx.shard(torch.arange(n, device=self.device)) if ctx.active else slice(None)
        Xs, Ts, Ys = self.X[own], self.T[own], self.Y[own]
        m = Ys.shape[0]
        lr = opt.param_groups[0]["lr"]

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            J, _, _ = self.forward(Xs, Ts, m, n)
            J.backward()
            return ctx.mean(J.detach())  # the global J, the same on every rank

        opt.step(closure)  # type: ignore[arg-type]  # torch's stubs want a float closure; LBFGS takes a tensor one
        state: dict[str, Any] = next(iter(opt.state.values()), {})
        self.trainer.steps_ = int(state.get("n_iter", 0))
        with torch.no_grad():  # the record is at the accepted iterate, not a line-search trial
            _, J, logits = self.local(Xs, Ts)
        loss_sum, correct = J * m, (predictions(self.trainer.objective, logits) == Ys).sum()
        return loss_sum, correct, self._after_step(stop, epoch, lr, J, m, n)

    def _sgd_epoch(self, epoch: int, stop: StopOnSigint) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """One pass over the (shuffled unless full) batches: (Σ J·m, correct, stopped)."""
        ctx, opt, n, bs, device = self.ctx, self.opt, self.n, self.bs, self.device
        loss_sum = torch.zeros((), dtype=self.dtype, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        perm = torch.randperm(n, generator=self.gen).to(device) if not self.full else None
        for i in range(0, n, bs):
            idx: torch.Tensor | slice
            if perm is not None:
                idx = ctx.shard(perm[i:i + bs])
            else:
                idx = ctx.shard(torch.arange(n, device=device)) if ctx.active else slice(None)
            xb, tb, yb = self.X[idx], self.T[idx], self.Y[idx]
            lr = opt.param_groups[0]["lr"]
            opt.zero_grad(set_to_none=True)
            J, Jm, logits = self.forward(xb, tb, yb.shape[0], min(bs, n - i))
            J.backward()
            opt.step()
            if self.sched is not None:
                self.sched.step()
            self.trainer.steps_ += 1
            m = yb.shape[0]
            loss_sum = loss_sum + Jm.detach() * m
            correct = correct + (predictions(self.trainer.objective, logits.detach()) == yb).sum()
            if self._after_step(stop, epoch, lr, Jm.detach(), m, min(bs, n - i)):
                return loss_sum, correct, True
        return loss_sum, correct, False

    def _after_step(self, stop: StopOnSigint, epoch: int, lr: float, J: torch.Tensor, m: int, batch: int) -> bool:
        """Hand the step to the callback; True on every rank once any has Ctrl-C or a callback stop."""
        if self.callback is not None:
            # one process: J itself; ranks: the global batch mean of their shards' J (a collective)
            objective = float(J) if not self.ctx.active else float(self.ctx.sum(J * m)) / batch
            info = StepInfo(self.trainer.steps_, epoch, objective, batch, lr, time.perf_counter() - self.t0,
                            self.model)
            if self.callback(info):
                self.by_callback = True
        return self.ctx.any(stop.requested or self.by_callback, self.device)  # every rank stops after the same step

    def _record(self, epoch: int, lr: float, loss_sum: torch.Tensor, correct: torch.Tensor) -> dict:
        """Append the epoch's history row (global loss and accuracy, validation numbers, time)."""
        tr, ctx, n = self.trainer, self.ctx, self.n
        loss_sum, correct = ctx.sum(loss_sum), ctx.sum(correct)
        train_loss = float(loss_sum) / n
        if self.adamw:  # report the objective J, whose λ-term AdamW's decoupled decay replaces
            train_loss += float(self.model.regularization(tr.objective).detach())
        row = {"epoch": epoch + 1, "loss": train_loss, "accuracy": int(correct) / n, "lr": lr}
        if self.val is not None:
            row["val_loss"], row["val_accuracy"] = tr.score(self.model, *self.val)
        row["time_s"] = time.perf_counter() - self.t0
        tr.history_.append(row)
        return row


def split(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, val) index split; ``val_fraction`` in [0, 1)."""
    check_float("val_fraction", val_fraction, 0.0)
    if val_fraction >= 1.0:
        raise ValidationError(f"val_fraction must be < 1, got {val_fraction}: use e.g. 0.2")
    n_val = int(round(val_fraction * n))
    if n_val >= n - 1 and val_fraction > 0:
        raise ValidationError(f"val_fraction {val_fraction} leaves fewer than 2 training samples of {n}: lower it")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
