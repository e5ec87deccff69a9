"""Run directories: written atomically, never silently overwritten, readable by every command.

A run directory holds::

    config.json    the full resolved configuration + library versions
    solution.npz   the weights, by stable name
    data.npz       the exact data the run used (X, y, n_classes), so any command can re-evaluate
    metrics.json   objective, stage losses/accuracies, block norms, status, timings, sizes
    stats.json     the solver's statistics (IPOPT) or training history summary
    multipliers.npz  IPOPT runs: the full NLP iterate ``x`` and the multipliers ``lam_g``,
                   ``lam_x`` at it (costates, warm starts)
"""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ocp_resnet.errors import ValidationError
from ocp_resnet.files import config_kind, dump_json, load_weights, read_json, run_path

if TYPE_CHECKING:
    from ocp_resnet.data.arrays import Dataset
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers.base import Backend
    from ocp_resnet.solvers.solution import Solution

RUN_FILES = ("config.json", "solution.npz", "data.npz", "metrics.json")


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers."""
    from ocp_resnet.version import __version__

    out = {"ocp_resnet": __version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import casadi

        out["casadi"] = casadi.CasadiMeta.version()
        # IPOPT's version is only visible in the name of the library CasADi ships.
        libs = sorted(Path(casadi.__file__).parent.glob("libipopt.so.*.*"))
        if libs:
            out["ipopt"] = libs[-1].name.split(".so.")[-1]
    except ImportError:
        pass
    return out


RunKind = Literal["mlp", "conv"]


@dataclass(frozen=True)
class RunRecord:
    """``config.json`` as a typed record: what ran, on what, how, and with which libraries.

    ``command`` (solve, path, sweep, train, prune ...), ``architecture`` and ``objective`` (the
    spec's and the objective's ``to_dict``), ``solver`` (the solver's record and how it started),
    ``data`` (where the data came from), ``argv`` and ``versions`` (provenance), and ``extra``:
    whatever else a command records, kept verbatim. :attr:`kind` says whether the run holds an
    MLP (solved or trained) or a conv ResNet-v2 — the one place a run's kind is decided.
    """

    command: str
    architecture: dict[str, Any]
    objective: dict[str, Any]
    solver: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    argv: list[str] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> RunKind:
        """``"conv"`` for a conv ResNet-v2 (its spec says so, or ``train`` recorded ``arch: conv``), else ``"mlp"``."""
        # files.config_kind holds the rule, so the solvers (a layer below) decide it the same way
        return config_kind({**self.extra, "architecture": self.architecture, "solver": self.solver})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config.json") -> RunRecord:
        """The record of a ``config.json`` dict; one without an architecture is refused, naming ``where``."""
        if not isinstance(d, Mapping) or not isinstance(d.get("architecture"), dict):
            raise ValidationError(
                f"{where} has no 'architecture' section: it is not a run directory written by "
                "'ocp-resnet solve' or 'train' (or it was edited); re-run the command that wrote it"
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(command=str(d.get("command", "")), architecture=dict(d["architecture"]),
                   objective=dict(d.get("objective") or {}), solver=dict(d.get("solver") or {}),
                   data=dict(d.get("data") or {}), argv=d.get("argv"), versions=dict(d.get("versions") or {}),
                   extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict (the fields in a fixed order, then ``extra``)."""
        out: dict[str, Any] = {"command": self.command}
        if self.argv is not None:
            out["argv"] = list(self.argv)
        if self.data:
            out["data"] = self.data
        out.update(architecture=self.architecture, objective=self.objective, solver=self.solver)
        out.update(self.extra)
        out["versions"] = self.versions or versions()
        return out



def default_run_dir(label: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<timestamp>-<label>``, with a counter suffix if that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{label}"
    path, i = base, 2
    while path.exists():
        path = Path(f"{base}-{i}")
        i += 1
    return path


def check_target(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing ``out`` unless ``overwrite``; call before any long work."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValidationError(f"{out} already exists: choose another out=DIR, or pass overwrite=True to replace it")
    if out.exists() and not out.is_dir():
        raise ValidationError(f"{out} exists and is not a directory: choose another out=DIR")
    # The nearest existing ancestor must be a writable directory, or the run would be lost at the end.
    anc = out.absolute().parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ValidationError(f"cannot create {out}: {anc} is a file, not a directory; choose another out=DIR")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValidationError(f"cannot create {out}: {anc} is not writable; choose another out=DIR")
    return out


def write_run(
    out: str | os.PathLike,
    *,
    config: RunRecord | Mapping[str, Any],
    weights: Mapping[str, np.ndarray],
    metrics: Mapping[str, Any],
    data: Any,
    stats: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a run directory atomically: into a temporary sibling, then rename into place.

    ``config`` is the run's :class:`RunRecord` (or its dict, checked through it): the one writer of
    ``config.json``.

    ``extra_files`` maps a file name to bytes/str, to a dict (JSON), or to a callable
    ``f(path)`` that writes the file (e.g. a figure or a torch state_dict).
    """
    record = config if isinstance(config, RunRecord) else RunRecord.from_dict(config, f"{out}/config.json")
    files: dict[str, Any] = {
        "config.json": record.to_dict(),
        # numpy's stub lets a ** mapping fill savez's allow_pickle (bool) too, so any str-keyed dict fails it
        "solution.npz": lambda p: np.savez(p, **{k: np.asarray(v) for k, v in weights.items()}),  # type: ignore[arg-type]
        "data.npz": lambda p: np.savez(p, X=data.X, y=data.y, n_classes=data.n_classes),
        "metrics.json": dict(metrics),
    }
    if stats is not None:
        files["stats.json"] = dict(stats)
    files.update(extra_files or {})
    return write_directory(out, files, overwrite)


def multiplier_files(solution: Solution) -> dict[str, Any]:
    """``{"multipliers.npz": writer}`` for a solution that carries IPOPT's multipliers, else ``{}``
    (pass as ``extra_files`` of :func:`write_run`)."""
    x, lam_g = solution.x, solution.lam_g
    if lam_g is None or x is None:
        return {}
    lam_x = solution.lam_x if solution.lam_x is not None else np.zeros(0)
    return {"multipliers.npz": lambda p: np.savez(p, method=np.asarray(solution.method), x=x, lam_g=lam_g, lam_x=lam_x)}


# ------------------------------------------------------------------------------ reading
class Run:
    """A run directory read back: ``config``, ``metrics``, ``weights`` and the rebuilt ``problem``."""

    def __init__(self, path: str | os.PathLike):
        self.path = run_path(path)
        if not self.path.is_dir():
            raise ValidationError(f"{self.path} is not a directory: give a run directory")
        self.config = read_json(self.path / "config.json")
        self.record = RunRecord.from_dict(self.config, f"{self.path}/config.json")
        self.metrics = read_json(self.path / "metrics.json") if (self.path / "metrics.json").exists() else {}
        self.weights = load_weights(self.path)

    @property
    def kind(self) -> RunKind:
        """``"mlp"`` or ``"conv"`` (:attr:`RunRecord.kind`)."""
        return self.record.kind

    def multipliers(self) -> dict[str, Any] | None:
        """``{"method", "x", "lam_g", "lam_x"}`` from ``multipliers.npz`` (IPOPT runs), or ``None``."""
        f = self.path / "multipliers.npz"
        if not f.exists():
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                return {"method": str(z["method"]), **{k: np.asarray(z[k], dtype=float) for k in ("x", "lam_g", "lam_x")}}
        except Exception as exc:
            raise ValidationError(f"{f}: cannot read the multipliers ({exc}); the file is corrupt") from None

    def data(self) -> Dataset:
        """The run's data (``data.npz``) as a :class:`~ocp_resnet.data.datasets.Dataset`."""
        from ocp_resnet.data.arrays import Dataset

        f = self.path / "data.npz"
        if not f.exists():
            raise ValidationError(f"{f} is missing: the run directory is incomplete")
        try:
            with np.load(f, allow_pickle=False) as z:
                return Dataset(np.asarray(z["X"], float), np.asarray(z["y"], int), int(z["n_classes"]),
                               str(self.config.get("data", {}).get("dataset", "data")))
        except Exception as exc:
            raise ValidationError(f"{f}: cannot read the data ({exc}); the file is corrupt") from None

    def problem(self) -> Problem:
        """The run's problem (spec + objective + its own data)."""
        from ocp_resnet.model.architecture import ArchSpec
        from ocp_resnet.model.objective import ObjectiveSpec
        from ocp_resnet.model.problem import Problem

        try:
            spec = ArchSpec.from_dict(self.config["architecture"])
            obj = ObjectiveSpec.from_dict(self.config["objective"])
        except ValidationError as exc:
            raise ValidationError(f"{self.path}/config.json: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(
                f"{self.path}/config.json lacks a valid architecture/objective ({type(exc).__name__}: {exc}); "
                "the run directory is corrupt: re-run the command that wrote it"
            ) from None
        try:
            problem = Problem(spec, obj, self.data())
        except ValidationError as exc:
            raise ValidationError(f"{self.path}: config.json and data.npz do not fit together: {exc}") from None
        self.flat_weights(problem)  # every reader of the weights gets them checked against the spec
        return problem

    def flat_weights(self, problem: Problem | None = None) -> np.ndarray:
        """The weights as one flat vector, checked against the run's own architecture."""
        problem = problem if problem is not None else self.problem()
        try:
            extra = sorted(set(self.weights) - set(problem.spec.param_shapes()))
            if extra:
                raise ValidationError(f"weights {', '.join(extra[:5])} are not in this architecture")
            return problem.spec.flatten(self.weights)
        except ValidationError as exc:
            raise ValidationError(
                f"{self.path}: solution.npz does not match the architecture in config.json ({exc}); "
                "the run directory is corrupt or was edited: re-run the command that wrote it"
            ) from None


def write_directory(out: str | os.PathLike, files: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Write a directory of result files atomically (temp sibling, then rename into place).

    ``files`` maps a file name to bytes/str, to a dict (JSON), or to a callable ``f(path)``
    that writes the file. An existing ``out`` is refused unless ``overwrite``.
    """
    out = check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, content in files.items():
            target = tmp / name
            if callable(content):
                content(target)
            elif isinstance(content, Mapping):
                dump_json(target, content)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(str(content))
        if out.exists():  # overwrite: swap, then remove the old one only once the new is in place
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ------------------------------------------------------------------------------ evaluation
EVALUATION_BACKENDS = ("casadi", "torch")


def evaluate_run(run_dir: str | os.PathLike[str], backend: Backend = "casadi") -> dict[str, Any]:
    """Objective, gradient norm, stage losses/accuracies, final loss and block norms of a run
    directory's weights on its own problem (``ocp-resnet evaluate``), as a dict.

    MLP runs: :func:`ocp_resnet.model.evaluation.evaluate` with the gradient by CasADi or torch
    autograd (float64); conv runs: torch only.
    """
    from ocp_resnet.errors import check_choice
    from ocp_resnet.model.evaluation import evaluate

    check_choice("backend", backend, EVALUATION_BACKENDS)
    run = Run(run_dir)
    if run.kind == "conv":
        from ocp_resnet.torch.evaluate import evaluate_conv_run

        return evaluate_conv_run(run, backend)
    problem = run.problem()
    ev = evaluate(problem, run.flat_weights(problem), backend=backend)
    return {"backend": backend, **{k: getattr(ev, k) for k in ("objective", "grad_norm", "stage_losses",
                                                               "stage_accuracy", "final_loss", "block_norms")}}
