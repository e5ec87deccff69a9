"""GPU check of the torch back-end: conv ResNet-v2 step time on CUDA (γ > 0 vs γ = 0), a float64
parity check cuda vs cpu, and a short digits training run. Skips cleanly without CUDA.

Run:  PYTHONPATH=. python benchmarks/gpu_check.py        (about a minute; needs torch, numpy, scikit-learn)
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch


def _step_time(model, x, T, objective, n_classes: int, steps: int = 30, repeats: int = 5) -> float:
    from ocp_resnet.torch import StageCostLoss

    loss = StageCostLoss(objective, n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        J, _ = loss(model, x, T)
        J.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; skipped")
        return 0
    from ocp_resnet import ObjectiveSpec, Problem, load_dataset
    from ocp_resnet.torch import ConvSpec, ResNetV2, Trainer, TrainOptions, images_of, objective_and_gradient, targets

    t_all = time.perf_counter()
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    torch.backends.cudnn.benchmark = True

    # 1. float64 parity: the same MLP objective and gradient on cuda and cpu
    problem = Problem.build(load_dataset("spirals", n_samples=200), blocks=10, width=[2] * 5 + [4] * 6,
                            loss="sce", gamma=0.5, weight_decay=1e-3)
    w = 0.5 * np.random.default_rng(0).standard_normal(problem.spec.n_params)
    Jc, gc = objective_and_gradient(problem, w)
    Jg, gg = objective_and_gradient(problem, w, device=dev)
    rel_J, rel_g = abs(Jg - Jc) / abs(Jc), np.linalg.norm(gg - gc) / np.linalg.norm(gc)
    print(f"parity float64 cuda vs cpu: |dJ|/J = {rel_J:.1e}, |dg|/|g| = {rel_g:.1e}"
          f"  {'OK' if rel_J < 1e-10 and rel_g < 1e-10 else 'FAILED'}")

    # 2. step time of the conv ResNet-v2, γ = 0.1 vs γ = 0
    for (ch, nb, batch, side) in (((32, 64, 128), (2, 2, 2), 256, 28), ((64, 128, 256), (3, 3, 3), 256, 32)):
        spec = ConvSpec(1, (side, side), 10, channels=ch, stage_blocks=nb)
        x = torch.rand(batch, 1, side, side, device=dev)
        y = np.arange(batch) % 10
        res = {}
        for g in (0.0, 0.1):
            obj = ObjectiveSpec(loss="ce", gamma=g, weight_decay=1e-4)
            res[g] = _step_time(ResNetV2(spec, device=dev), x, targets(obj, y, 10, torch.float32, dev), obj, 10)
        print(f"conv ResNet-v2 {side}x{side} channels {ch} blocks {nb} batch {batch} float32: "
              f"gamma=0 {res[0.0] * 1e3:.2f} ms/step, gamma=0.1 {res[0.1] * 1e3:.2f} ms/step, "
              f"ratio {res[0.1] / res[0.0]:.2f}x")

    # 3. a short training run on the 8x8 digits
    ds = load_dataset("digits")
    imgs = images_of(ds)
    spec = ConvSpec(1, (8, 8), 10, channels=(16, 32, 64), stage_blocks=(2, 2, 2))
    model = ResNetV2(spec, seed=0)
    obj = ObjectiveSpec(loss="ce", gamma=0.1, weight_decay=1e-4)
    t0 = time.perf_counter()
    tr = Trainer(obj, 10, TrainOptions(optimizer="adam", lr=3e-3, epochs=10, batch_size=128, dtype="float32",
                                       device="cuda", progress=False)).fit(model, imgs[:1500], ds.y[:1500],
                                                                          val=(imgs[1500:], ds.y[1500:]))
    h = tr.history_[-1]
    print(f"digits conv ResNet-v2 (16,32,64)x(2,2,2), 10 epochs Adam on cuda: {time.perf_counter() - t0:.1f} s, "
          f"train acc {h['accuracy']:.3f}, val acc {h['val_accuracy']:.3f}")
    print(f"gpu_check done in {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
