"""Step time of one training step (forward + backward + optimizer) with stage costs (γ > 0)
against ordinary training (γ = 0), for the conv ResNet-v2 and the MLP ResNet.

Run:  python benchmarks/torch_step.py [--threads 1] [--repeats 7] [--steps 20] [--device cpu]

The two variants are timed interleaved (ABAB…) and the median of the repeats is reported, so
a noisy, shared machine biases both alike; on the CPU the default clock is the process's CPU
time (one thread), which other jobs on the machine disturb much less than wall time. Goal: ratio ≤ 1.3 for the conv net.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ocp_resnet.model.architecture import ArchSpec
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.torch import ConvSpec, ResNetMLP, ResNetV2, StageCostLoss, targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


CLOCK = time.perf_counter


def time_steps(model, x, y, objective, n_classes, steps: int, device: torch.device) -> float:
    """Seconds per training step (Adam), after a warm-up, on :data:`CLOCK`."""
    loss = StageCostLoss(objective, n_classes)
    T = targets(objective, y.cpu().numpy(), n_classes, x.dtype, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        J, _ = loss(model, x, T)
        J.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    t0 = CLOCK()
    for _ in range(steps):
        step()
    _sync(device)
    return (CLOCK() - t0) / steps


def compare(name: str, make_model, x, y, n_classes: int, loss: str, gamma: float, steps: int, repeats: int,
            device: torch.device) -> float:
    times = {0.0: [], gamma: []}
    objs = {g: ObjectiveSpec(loss=loss, gamma=g, weight_decay=1e-4) for g in times}
    models = {g: make_model() for g in times}
    for _ in range(repeats):
        for g in times:
            times[g].append(time_steps(models[g], x, y, objs[g], n_classes, steps, device))
    t0, t1 = statistics.median(times[0.0]), statistics.median(times[gamma])
    ratio = t1 / t0
    print(f"{name:<44} gamma=0: {t0 * 1e3:8.2f} ms   gamma={gamma:g}: {t1 * 1e3:8.2f} ms   ratio {ratio:.2f}x",
          flush=True)
    return ratio


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: robust on a shared machine)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--image", type=int, default=28, help="image side of the conv benchmark (default 28, MNIST)")
    ap.add_argument("--clock", default=None, choices=("process", "wall"),
                    help="process CPU time (default on cpu: robust when other jobs share the cores) or wall time "
                         "(default on cuda)")
    args = ap.parse_args(argv)
    global CLOCK
    clock = args.clock or ("process" if args.device == "cpu" else "wall")
    CLOCK = time.process_time if clock == "process" else time.perf_counter
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"median of {args.repeats} x {args.steps} Adam steps, float32, {clock} clock")

    ratios = {}
    s = args.image
    x = torch.rand(args.batch, 1, s, s, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    for ch, nb in (((16, 32, 64), (2, 2, 2)), ((8, 16, 32), (1, 1, 1))):
        spec = ConvSpec(1, (s, s), 10, channels=ch, stage_blocks=nb)
        ratios[f"conv {ch} x {nb}"] = compare(
            f"conv ResNet-v2 {s}x{s} ch={ch} blocks={nb}", lambda spec=spec: ResNetV2(spec, device=device), x, y, 10, "ce",
            args.gamma, args.steps, args.repeats, device)

    xm = torch.randn(args.batch * 4, 2, generator=g).to(device)
    ym = (xm[:, 0] * xm[:, 1] > 0).long().cpu()
    for width, N in ((16, 10), (64, 20)):
        spec = ArchSpec.uniform(2, 2, N, width, branch="single", activation="tanh")
        ratios[f"mlp w{width} N{N}"] = compare(
            f"MLP ResNet width {width}, N={N}, batch {args.batch * 4}",
            lambda spec=spec: ResNetMLP(spec, dtype=torch.float32, device=device), xm, ym, 2, "ce", args.gamma, args.steps,
            args.repeats, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
