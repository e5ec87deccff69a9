"""``ocp-resnet evaluate RUN_DIR``: objective, gradient norm and stage numbers of stored weights."""
from __future__ import annotations

import argparse
import json

BACKENDS = ("casadi", "torch")


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="evaluate a run directory's weights on its problem",
                       description="Print JSON with objective, grad_norm, stage_losses and stage_accuracy.")
    p.add_argument("run_dir", help="a run directory written by solve or train")
    p.add_argument("--backend", default="casadi", help="evaluation back-end: casadi (default) or torch (float64 autograd; conv runs need torch)")
    p.set_defaults(func=run)
    return p


def evaluate_run(run_dir: str, backend: str = "casadi") -> dict:
    """The numbers ``evaluate`` prints, as a dict."""
    from ..errors import check_choice
    from ..runs import Run
    from ..transcription import objective_and_gradient
    import numpy as np

    check_choice("backend", backend, BACKENDS)
    run = Run(run_dir)
    if run.config.get("architecture", {}).get("kind") == "conv":
        from ..torch.evaluate import evaluate_conv_run

        return evaluate_conv_run(run, backend)
    problem = run.problem()
    w = run.flat_weights(problem)
    if backend == "torch":
        from ..torch.evaluate import objective_and_gradient as torch_objective_and_gradient

        J, g = torch_objective_and_gradient(problem, w)
    else:
        J, g = objective_and_gradient(problem, w)
    ev = problem.evaluate(w)
    return {
        "backend": backend,
        "objective": J,
        "grad_norm": float(np.linalg.norm(g)),
        "stage_losses": ev.stage_losses,
        "stage_accuracy": ev.stage_accuracy,
        "final_loss": ev.final_loss,
        "block_norms": ev.block_norms,
    }


def run(args: argparse.Namespace) -> int:
    print(json.dumps(evaluate_run(args.run_dir, args.backend), indent=2))
    return 0
