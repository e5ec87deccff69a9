"""Flags and helpers shared by the sub-commands: problem, output and initial-weight flags, list
parsing, exit codes, tables and printing."""
from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocp_resnet.errors import ValidationError
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from pathlib import Path

    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers import Solver
    from ocp_resnet.training import DataSource

#: Defaults of a bare ``ocp-resnet solve``: the embedded two spirals, small enough to solve in
#: seconds, with stage costs on. Loss, γ and λ are the winners of the evidence table in
#: docs/defaults.md (benchmarks/defaults_table.py): no collapsed result over its problems, and a
#: vanished block with unchanged held-out accuracy on the most problems.
DEFAULTS = dict(
    dataset="spirals",
    n_samples=200,
    blocks=10,
    width="2",
    branch="single",
    activation="tanh",
    step=1.0,
    loss="mse",
    label_smoothing=0.1,
    gamma="1",
    weight_decay=1e-4,
)


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# ------------------------------------------------------------------ library messages in flags
#: API argument name → the CLI flag that sets it, for the messages the library writes (they name
#: API arguments: ``width >= 64``, ``stem='linear'``, ``max_iter``). A dict value differs per
#: sub-command (``None``: every other one; none: left as is). tests/test_messages.py checks every flag exists.
FLAGS: dict[str, str | dict[str | None, str]] = {
    "activation": "--activation", "amp": "--amp", "backend": "--backend", "batch_size": "--batch-size",
    "blocks": "--blocks", "branch": "--branch", "channels": "--channels", "checkpoint_every": "--checkpoint-every",
    "dataset": "--dataset", "device": "--device", "dim": "--dim", "directory": {"analyze": "--plot-dir"},
    "dtype": "--dtype", "epochs": "--epochs", "finetune": "--finetune", "force": "--force", "gamma": "--gamma",
    "gammas": {"path": "--gammas", None: "--gamma"}, "hessian": "--hessian", "hidden": "--hidden",
    "init": "--init", "init_seed": "--init-seed", "jobs": "--jobs", "label_smoothing": "--label-smoothing",
    "loss": "--loss", "lr": "--lr", "max_iter": "--max-iter", "method": "--method", "n_samples": "--n-samples", "out": "--out",
    "overwrite": "--overwrite", "plot_dir": "--plot-dir", "resolve": "--resolve", "restarts": "--restarts",
    "resume": "--resume", "schedule": "--schedule", "scheduler": "--scheduler", "seed": "--seed", "seeds": "--seeds",
    "stage_blocks": "--stage-blocks", "standardize": "--standardize", "stem": "--stem", "step": "--step",
    "threads": "--threads", "tol": {"analyze": "--vanish-tol", "prune": "--vanish-tol", None: "--tol"},
    "val_fraction": "--val-fraction", "vanish_tol": "--vanish-tol", "weight_decay": "--weight-decay",
    "width": "--width",
}

_command: str | None = None  # the running sub-command, for the per-command entries of FLAGS
_options: dict[str, set[str]] = {}  # sub-commands' flags, in --help order: all, or the running one's until _every
_every: Callable[[], dict[str, set[str]]] | None = None  # every sub-command's flags, when a flag is not in _options


def set_command(command: str | None, options: dict[str, set[str]] | None = None, *,
                every: Callable[[], dict[str, set[str]]] | None = None) -> None:
    """Make :func:`flags` use ``command``'s entries of :data:`FLAGS`; with ``options`` (each
    sub-command's flags) a flag the command lacks is named with the command that has it
    (``ocp-resnet solve --init RUN_DIR`` in ``train``'s output). ``main`` calls it. ``every``
    returns every sub-command's flags when a flag is missing from ``options`` (``main`` then
    passes only the running command's: most runs name no other command's flag)."""
    global _command, _options, _every
    _command, _options, _every = command, dict(options or {}), every


def _flag(name: str, command: str | None) -> str | None:
    global _options, _every
    f = FLAGS[name]
    flag = f if isinstance(f, str) else f.get(command, f.get(None))
    if flag is None or command is None or command != _command or not _options or flag in _options.get(command, ()):
        return flag
    if _every is not None:
        _options, _every = dict(_every()), None
    other = next((c for c, opts in _options.items() if flag in opts), None)
    return f"ocp-resnet {other} {flag}" if other else flag


_NAME = "|".join(sorted(FLAGS, key=len, reverse=True))
_BEFORE = r"(?<![\w\-.'\"/])"  # not inside an identifier, a path, a quoted key, or a flag already
#: (pattern, how the value follows the flag): group 1 is the API name, group "v" the value if any.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(_BEFORE + rf"({_NAME})=True\b"), ""),  # overwrite=True -> --overwrite
    (re.compile(_BEFORE + rf"({_NAME})=(['\"])(?P<v>.*?)\2"), " "),  # stem='linear' -> --stem linear
    (re.compile(_BEFORE + rf"({_NAME})=\[(?P<v>[^\]]*)\]"), "list"),  # width=[2, 4] -> --width 2,4
    # ipopt={'max_wall_time': SECONDS} -> --ipopt max_wall_time=SECONDS
    (re.compile(r"(?<![\w\-])(ipopt)=\{'(?P<v>\w+)': (?P<w>[^}]+)\}"), "ipopt"),
    (re.compile(_BEFORE + rf"({_NAME})=(?P<v>[\w.+\-/]+)"), " "),  # init=RUN_DIR -> --init RUN_DIR
    (re.compile(_BEFORE + rf"({_NAME})(?= (?:>=|<=|>|<|==|!=) )"), ""),  # width >= 64 -> --width >= 64
    (re.compile(rf"(?:^|(?<=[:;] ))({_NAME})(?= must\b)"), ""),  # "threads must be >= 1" opening a clause
    # a bare name with an underscore is unambiguous (max_iter); one before ':' or ',' is a status value
    (re.compile(_BEFORE + rf"({'|'.join(n for n in FLAGS if '_' in n)})(?![\w\-=:,])"), ""),
]


def _rewrite(m: re.Match[str], how: str, command: str | None) -> str:
    """One match of a rule of :data:`_RULES` in the command's flags."""
    if how == "ipopt":
        return f"--ipopt {m.group('v')}={m.group('w')}"
    flag = _flag(m.group(1), command)
    if flag is None:  # an argument this command has no flag for
        return m.group(0)
    if how == "list":  # width=[2, 4] -> --width 2,4
        return f"{flag} {','.join(v.strip().strip(chr(39)) for v in m.group('v').split(','))}"
    return flag + (how + m.group("v") if how else "")


def flags(text: str, command: str | None = None) -> str:
    """A library message with CLI flags for API arguments (:data:`FLAGS`): ``width >= 64`` →
    ``--width >= 64``, ``stem='linear'`` → ``--stem linear``, ``overwrite=True`` → ``--overwrite``,
    ``init=RUN_DIR`` → ``--init RUN_DIR``, ``max_iter`` → ``--max-iter``,
    ``ipopt={'max_wall_time': SECONDS}`` → ``--ipopt max_wall_time=SECONDS``; the rest is unchanged.
    ``command`` picks per-command flags (default: the running one, :func:`set_command`)."""
    command = _command if command is None else command

    for rx, how in _RULES:
        text = rx.sub(functools.partial(_rewrite, how=how, command=command), text)
    return text


def exit_code(status: Status | str, *, training: bool = False) -> int:
    """The exit code of a command whose solve or training ended with ``status``.

    0 done, 130 interrupted (the run directory is written), 1 failed. With ``training`` a torch
    training that ran all its epochs (``max_iter``: the epochs are its budget) is done too.
    """
    status = Status(status)
    if status == Status.INTERRUPTED:
        return EXIT_INTERRUPTED
    if status.success or (training and status == Status.MAX_ITER):
        return EXIT_OK
    return EXIT_FAILED


_KINDS = {float: ("a number", "numbers", "0,0.1,1"), int: ("an integer", "integers", "2,4,8"),
          str: ("a name", "names", "adam,lbfgs")}


def parse_list(flag: str, text: str, kind: type = float, *, scalar: bool = False, example: str | None = None) -> Any:
    """A comma-separated flag value as a list of ``kind`` (empty items are skipped).

    With ``scalar`` a value without a comma is returned as one ``kind`` ("0.5" -> 0.5,
    "0.1,0.2" -> [0.1, 0.2]). A bad or empty value raises ValidationError naming ``flag`` and the fix.
    """
    one, many, default_example = _KINDS[kind]
    example = example or default_example
    either = f"{one} or a comma list of {many}" if scalar else f"a comma list of {many}"
    try:
        vals = [kind(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValidationError(f"{flag} must be {either}, e.g. {example}; got {text!r}") from None
    if not vals:
        raise ValidationError(f"{flag} is empty: give {'a number or ' if scalar else ''}a comma list, e.g. {example}")
    return vals[0] if scalar and len(vals) == 1 and "," not in str(text) else vals


def add_problem_args(p: argparse.ArgumentParser) -> None:
    """The flags that define a problem (data, architecture, objective), shared by all commands."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=DEFAULTS["dataset"],
                   help="spirals, moons, circles, xor, digits, synthetic-images (3x32x32, 10 classes), or a path: "
                        ".npz/.csv file, MNIST/Fashion-MNIST IDX directory, CIFAR-10 python-batch directory "
                        "(default: spirals)")
    g.add_argument("--n-samples", type=int, default=None, help="number of samples (default 200 for generated sets)")
    g.add_argument("--noise", type=float, default=None, help="noise level of generated sets")
    g.add_argument("--dim", type=int, default=None, help="reduce features to this many PCA components (digits, files)")
    g.add_argument("--standardize", action="store_true", help="scale features to zero mean, unit variance")
    a = p.add_argument_group("architecture")
    a.add_argument("--blocks", type=int, default=DEFAULTS["blocks"], help="number of residual blocks N (default 10)")
    a.add_argument("--width", default=DEFAULTS["width"],
                   help="state width, or N+1 comma-separated widths of x_0..x_N (default 2)")
    a.add_argument("--branch", default=DEFAULTS["branch"], help="residual branch: single or basic (default single)")
    a.add_argument("--hidden", type=int, default=None, help="hidden width of basic branches (default: the width)")
    a.add_argument("--stem", default="pad", help="stem: pad (zero-pad input to width) or linear (default pad)")
    a.add_argument("--activation", default=DEFAULTS["activation"], help="tanh, softplus, smooth_relu (relu: torch only)")
    a.add_argument("--step", type=float, default=DEFAULTS["step"], help="step size h of single branches (default 1)")
    o = p.add_argument_group("objective")
    o.add_argument("--loss", default=DEFAULTS["loss"], help="ce, bce, mse or sce (default mse)")
    o.add_argument("--label-smoothing", type=float, default=DEFAULTS["label_smoothing"],
                   help="label smoothing ε of the sce loss (default 0.1)")
    o.add_argument("--gamma", default=DEFAULTS["gamma"],
                   help="stage-cost weight γ: one number, or N comma-separated values (default 1; 0 = ordinary training; "
                        "docs/defaults.md says why)")
    o.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"],
                   help="weight decay λ (default 1e-4, docs/defaults.md)")
    p.add_argument("--seed", type=int, default=0, help="seed of data generation and initial weights (default 0)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--out`` and ``--overwrite``."""
    p.add_argument("--out", default=None, help="run directory to write (default runs/<timestamp>-<label>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")


def data_source(args: argparse.Namespace) -> DataSource:
    """The :class:`~ocp_resnet.training.DataSource` of the data flags."""
    from ocp_resnet.training import DataSource

    return DataSource(args.dataset, n_samples=args.n_samples, noise=args.noise, dim=args.dim,
                      standardize=bool(args.standardize), seed=args.seed)


def data_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``data`` section of config.json."""
    return data_source(args).to_dict()


def problem_from_args(args: argparse.Namespace) -> Problem:
    """Build the (validated) Problem the flags describe."""
    from ocp_resnet.model.problem import Problem

    ds = data_source(args).load()
    return Problem.build(
        ds,
        blocks=args.blocks,
        width=parse_list("--width", args.width, int, scalar=True),
        branch=args.branch,
        hidden=args.hidden,
        stem=args.stem,
        activation=args.activation,
        step=args.step,
        loss=args.loss,
        gamma=parse_list("--gamma", args.gamma, float, scalar=True),
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
    )


def format_table(metrics: dict[str, Any]) -> str:
    """Per-block norms and per-stage losses/accuracies as a text table."""
    sl, sa = metrics["stage_losses"], metrics["stage_accuracy"]
    bn, rn = metrics["block_norms"], metrics["residual_norms"]
    top = max(bn) if bn else 0.0
    van = set(metrics.get("vanished", ()))  # marked as `analyze` marks them
    lines = [f"{'k':>3} {'|w_k|':>10} {'rel':>9} {'RMS|F_k|':>10} {'stage loss':>12} {'stage acc':>9}"]
    for k in range(len(sl)):
        if k < len(bn):
            rel = bn[k] / top if top > 0 else 0.0
            mark = "   vanished" if k in van else ""
            lines.append(f"{k:>3} {bn[k]:>10.3e} {rel:>9.2e} {rn[k]:>10.3e} {sl[k]:>12.5e} {sa[k]:>9.3f}{mark}")
        else:
            lines.append(f"{k:>3} {'':>10} {'':>9} {'':>10} {sl[k]:>12.5e} {sa[k]:>9.3f}   (final)")
    return "\n".join(lines)


def echo(msg: str = "", quiet: bool = False) -> None:
    """Print a progress line (flushed) unless ``quiet``; the library's log lines name API
    arguments, so they are printed with the command's flags (:func:`flags`)."""
    if not quiet:
        print(flags(msg), flush=True)


def warn(msg: str) -> None:
    """One line on stderr, with the command's flags for API arguments (:func:`flags`)."""
    print(flags(msg), file=sys.stderr, flush=True)


def run_config(args: argparse.Namespace, problem: Problem, command: str, solver: dict[str, Any]) -> dict[str, Any]:
    """The full resolved configuration written to ``config.json`` (one schema for all commands)."""
    return {
        "command": command,
        "argv": list(sys.argv),
        "data": data_config(args),
        "architecture": problem.spec.to_dict(),
        "objective": problem.objective.to_dict(),
        "solver": solver,
    }


def output_dir(args: argparse.Namespace, label: str) -> Path:
    """The run directory to write, checked before any work so a clash costs nothing."""
    from ocp_resnet.runs import check_target, default_run_dir

    if args.out is None:
        return default_run_dir(label)
    return check_target(args.out, args.overwrite)


# ------------------------------------------------------------------ initial weights and held-out data
def add_robust_args(p: argparse.ArgumentParser, restarts: bool = True) -> None:
    """``--init-seed``, ``--restarts`` (when ``restarts``) and ``--val-fraction`` (solve, path)."""
    g = p.add_argument_group("initial weights and held-out data")
    g.add_argument("--init-seed", type=int, default=None,
                   help="seed of the random initial weights alone (default: --seed); the data stay those of --seed")
    if restarts:
        g.add_argument("--restarts", type=int, default=1,
                       help="solve from K initial weights (init seeds S..S+K-1) and keep the best objective; "
                            "restart j is reproduced by a plain solve with --init-seed S+j (default 1)")
    g.add_argument("--val-fraction", type=float, default=None,
                   help="hold out this fraction of the data (stratified, seeded by --seed); the objective uses "
                        "the rest, validation loss/accuracy are reported per stage")
    add_collapse_retries(g)


def add_collapse_retries(g: Any) -> None:
    """``--collapse-retries`` (solve, path, sweep)."""
    from ocp_resnet.analysis.retry import COLLAPSE_RETRIES, RETRY_SEED_STRIDE

    g.add_argument("--collapse-retries", type=int, default=COLLAPSE_RETRIES,
                   help="after a solve that ends at the best linear classifier's loss (collapsed), solve again "
                        f"from the random weights of init seed S+{RETRY_SEED_STRIDE}·j, up to this many times; "
                        f"0 returns the first result (default {COLLAPSE_RETRIES})")


def with_retries(args: argparse.Namespace, solver: Any) -> Any:
    """``solver`` wrapped in :class:`~ocp_resnet.analysis.retry.RetryOnCollapse` with ``--collapse-retries``."""
    from ocp_resnet.analysis.retry import RetryOnCollapse

    return RetryOnCollapse(solver, args.collapse_retries)


def init_seed(args: argparse.Namespace) -> int:
    """The seed of the initial weights: ``--init-seed``, else ``--seed``."""
    from ocp_resnet.errors import check_int

    return check_int("--init-seed", args.seed if args.init_seed is None else args.init_seed, 0)


def split_problem(args: argparse.Namespace, problem: Problem) -> tuple[Any, Any]:
    """(training problem, validation Dataset or None) per ``--val-fraction``."""
    from ocp_resnet.solving import split_problem as split

    return split(problem, getattr(args, "val_fraction", None), seed=args.seed)


def warn_narrow(problem: Any) -> str | None:
    """Warn, before a solve, when the head has too few states for the classes
    (:func:`~ocp_resnet.analysis.collapse.narrow_head`): no start and no iteration count fixes
    that. Returns the reason, for :func:`report`'s collapse hint."""
    from ocp_resnet.analysis.collapse import narrow_head

    narrow = narrow_head(problem.spec, problem.data.n_classes)
    if narrow:
        warn(f"warning: {narrow}")
    return narrow


def report(metrics: dict[str, Any], narrow: str | None = None) -> None:
    """Print restarts, held-out table and collapse warning after the solve table; ``narrow``
    (:func:`~ocp_resnet.analysis.collapse.narrow_head`) is named as the collapse's cause."""
    if metrics.get("restarts"):
        best = min(metrics["restarts"], key=lambda r: (not Status(r["status"]).success, r["objective"]))
        def seed(r: dict, name: str = "seed") -> str:
            return "warm start" if r["init_seed"] is None else f"{name} {r['init_seed']:d}"

        print("restarts: " + ", ".join(
            f"{seed(r)}: {r['objective']:.8g} "
            f"({r['status']}, {len(r['vanished'])} vanished{', collapsed' if r.get('collapsed') else ''})"
            for r in metrics["restarts"]) + f"; kept {'the ' if best['init_seed'] is None else ''}{seed(best, 'init seed')}")
    if "val_stage_losses" in metrics:
        from ocp_resnet.data.validation import format_val_table

        print(format_val_table(metrics))
    if "second_order" in metrics:
        from ocp_resnet.analysis.certificate import describe_record

        where = "" if metrics.get("success") else " (at the last iterate, which is not a converged solution)"
        print(f"second-order: {describe_record(metrics['second_order'])}{where}")
    if not metrics.get("block_norms"):  # no blocks: nothing vanishes, and it is its own linear classifier
        print(f"a linear model (--blocks 0): final loss {metrics['final_loss']:.6g}")
    elif metrics.get("collapsed"):
        fix = f"cause: {narrow}" if narrow else "try --restarts 4, or ocp-resnet path"
        warn(f"collapsed: final loss {metrics['final_loss']:.6g} is no better than the best linear classifier's "
             f"{metrics['linear_loss']:.6g}: the small blocks are not a depth recommendation ({fix})")


def solver_from_args(args: argparse.Namespace) -> Solver:
    """The CasADi solver of a command's flags (``--method``, ``--tol``, ``--max-iter``, ``--hessian``,
    ``--ipopt`` and, where the command has them, ``--print-level``, ``--jit``, ``--threads``,
    ``--divergence-restarts``, ``--curvature``): the one place CLI flags become a solver. ``--method newton`` and
    ``newton-cg`` give the Newton solvers (they use ``--tol``, ``--max-iter`` and ``--quiet``;
    Newton–CG also ``--threads``), any other an
    :class:`~ocp_resnet.solvers.IpoptSolver`."""
    from ocp_resnet.solvers import make_solver

    given = {"method": args.method, "tol": args.tol, "max_iter": args.max_iter, "hessian": args.hessian,
             "ipopt": parse_ipopt(getattr(args, "ipopt", None) or [])}
    if hasattr(args, "print_level"):
        given["print_level"] = 0 if getattr(args, "quiet", False) else args.print_level
    if hasattr(args, "jit"):
        given["jit"] = {"auto": "auto", "yes": True, "no": False}[args.jit]
    for name in ("threads", "divergence_restarts", "curvature"):
        if hasattr(args, name):
            given[name] = getattr(args, name)
    if args.method in ("newton", "newton-cg"):
        given["print_level"] = 0 if getattr(args, "quiet", False) else 1
    if given.get("curvature") is not None and args.method not in ("auto", "newton"):
        from ocp_resnet.errors import ValidationError

        raise ValidationError(f"--curvature sets the Newton path's model Hessian; --method {args.method} does not "
                              "use it: drop --curvature, or use --method newton (or auto)")
    return make_solver("casadi", **given)


def parse_ipopt(items: list[str]) -> dict:
    """``["name=value", ...]`` → {name: int | float | str}."""
    from ocp_resnet.errors import ValidationError

    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValidationError(f"--ipopt needs NAME=VALUE, got {item!r} (e.g. --ipopt mumps_pivot_order=0)")
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                out[k.strip()] = conv(v)
                break
            except ValueError:
                continue
        else:
            out[k.strip()] = v.strip()
    return out


class _DeprecatedTol(argparse.Action):
    """``--tol`` of analyze/prune: the vanishing threshold's old name, kept one release with a warning
    (every other command's ``--tol`` is the KKT tolerance)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warn(f"{parser.prog}: --tol is deprecated here (it is the KKT tolerance elsewhere): use --vanish-tol")
        setattr(namespace, self.dest, values)


def add_vanish_tol(p: argparse.ArgumentParser) -> None:
    """``--vanish-tol`` (and the deprecated alias ``--tol``) of analyze and prune."""
    p.add_argument("--vanish-tol", type=float, default=1e-3, dest="vanish_tol",
                   help="a block has vanished when its norm relative to the largest is <= this (default 1e-3)")
    p.add_argument("--tol", type=float, dest="vanish_tol", action=_DeprecatedTol, help=argparse.SUPPRESS)
