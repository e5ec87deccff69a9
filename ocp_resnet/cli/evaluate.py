"""``ocp-resnet evaluate RUN_DIR``: objective, gradient norm and stage numbers of stored weights."""
from __future__ import annotations

import argparse
import json

from ocp_resnet.runs import EVALUATION_BACKENDS as BACKENDS  # noqa: F401 (the choices of --backend)
from ocp_resnet.runs import evaluate_run  # noqa: F401 (importable from here, as before)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    p = sub.add_parser("evaluate", help="evaluate a run directory's weights on its problem",
                       description="Print JSON with objective, grad_norm, stage_losses and stage_accuracy.")
    p.add_argument("run_dir", help="a run directory written by solve or train")
    p.add_argument("--backend", default="casadi",
                   help="evaluation back-end: casadi (default) or torch (float64 autograd; conv runs need torch)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet evaluate`` with the parsed flags; returns the exit code."""
    print(json.dumps(evaluate_run(args.run_dir, args.backend), indent=2))
    return 0
