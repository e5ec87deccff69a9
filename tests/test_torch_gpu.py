"""CUDA checks of the torch back-end (skipped without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocp_resnet import ObjectiveSpec, Problem, load_dataset
from ocp_resnet.torch import ConvSpec, ResNetV2, StageCostLoss, objective_and_gradient, targets

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_float64_parity_cuda_vs_cpu():
    problem = Problem.build(load_dataset("spirals", n_samples=50), blocks=4, width=[2, 2, 3, 3, 2], loss="ce",
                            gamma=0.3)
    w = 0.5 * np.random.default_rng(0).standard_normal(problem.spec.n_params)
    Jc, gc = objective_and_gradient(problem, w)
    Jg, gg = objective_and_gradient(problem, w, device="cuda")
    assert abs(Jg - Jc) <= 1e-10 * abs(Jc)
    assert np.linalg.norm(gg - gc) <= 1e-10 * np.linalg.norm(gc)


def test_conv_stage_cost_on_cuda_matches_cpu():
    spec = ConvSpec(1, (8, 8), 10, channels=(4, 8), stage_blocks=(1, 1))
    obj = ObjectiveSpec(loss="ce", gamma=0.5)
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    T = targets(obj, np.arange(16) % 10, 10, torch.float64)
    Jc, _ = StageCostLoss(obj, 10)(ResNetV2(spec, seed=0, dtype=torch.float64), x, T)
    Jg, _ = StageCostLoss(obj, 10)(ResNetV2(spec, seed=0, dtype=torch.float64, device="cuda"), x.cuda(), T.cuda())
    assert abs(Jg.item() - Jc.item()) <= 1e-10 * abs(Jc.item())


def test_cli_train_on_cuda(tmp_path):
    from ocp_resnet.cli import main

    assert main(["train", "--dataset", "digits", "--arch", "conv", "--n-samples", "200", "--epochs", "1",
                 "--device", "cuda", "--quiet", "--out", str(tmp_path / "g")]) == 0


def test_cuda_throughput_switches_train(tmp_path):
    """--amp bf16, --channels-last and --compile together on the GPU (docs/scale.md)."""
    from ocp_resnet.cli import main

    assert main(["train", "--dataset", "synthetic-images", "--arch", "conv", "--n-samples", "256", "--epochs", "2",
                 "--batch-size", "64", "--gamma", "0.1", "--device", "cuda", "--amp", "bf16", "--channels-last",
                 "--compile", "--quiet", "--out", str(tmp_path / "fast")]) == 0


def test_throughput_benchmark_runs_on_cuda():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_throughput.py"
    spec = importlib.util.spec_from_file_location("torch_throughput", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--device", "cuda", "--channels", "8,16", "--batch", "32", "--steps", "2", "--epochs", "2",
                     "--repeats", "1"]) == 0
