"""Training throughput (images/s) of the conv ResNet-v2 through ``Trainer.fit``, for γ = 0 and
γ > 0, against a minimal reference loop: the same net, plain ``torch.nn.CrossEntropyLoss``,
SGD with weight decay, nothing else.

Run (GPU, ResNet-18 size: channels 64,128,256,512, 2 blocks each, 32x32, batch 512)::

    python benchmarks/torch_throughput.py --device cuda [--compile] [--amp bf16] [--channels-last]

CPU variant at a small size (what docs/scale.md records)::

    OMP_NUM_THREADS=1 python benchmarks/torch_throughput.py --device cpu --channels 8,16,32,64 \\
        --batch 64 --size 16 --steps 4 --epochs 4

Each variant trains ``--epochs`` epochs of ``--steps`` batches on synthetic images
(:func:`ocp_resnet.data.vision.synthetic_images`); the first epoch is warm-up (compilation, cuDNN
autotuning) and images/s counts the others, timed at epoch ends (after a device sync). The
variants run interleaved ``--repeats`` times and the median is reported, so a shared machine
disturbs them alike. Goals: stage-cost overhead (γ>0 vs γ=0) ≤ 1.15x on the GPU, γ = 0 at
≥ 80 % of the reference's images/s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from ocp_resnet.data.vision import synthetic_images
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.torch import ConvSpec, ResNetV2, Trainer, TrainOptions
from ocp_resnet.torch.train import _cpu_kernels, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(spec: ConvSpec, X: np.ndarray, y: np.ndarray, gamma: float, a: argparse.Namespace) -> float:
    """images/s of Trainer.fit (stage-cost objective, γ for every stage)."""
    obj = ObjectiveSpec(loss="ce", gamma=gamma, weight_decay=a.weight_decay)
    opts = TrainOptions(optimizer="sgd", lr=0.01, momentum=0.9, epochs=a.epochs, batch_size=a.batch,
                        schedule="constant", device=a.device, dtype="float32", progress=False,
                        compile=a.compile, amp=a.amp, channels_last=a.channels_last)
    tr = Trainer(obj, spec.n_outputs, opts).fit(ResNetV2(spec, seed=0), X, y)
    t = [h["time_s"] for h in tr.history_]
    return len(y) * (len(t) - 1) / (t[-1] - t[0])


def reference(spec: ConvSpec, X: np.ndarray, y: np.ndarray, a: argparse.Namespace) -> float:
    """images/s of the minimal loop: model(x) → CrossEntropyLoss → SGD(weight_decay), same data flow."""
    device = resolve_device(a.device)
    model = ResNetV2(spec, seed=0).to(device)
    layout = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
    Yt = torch.as_tensor(y, device=device)
    # λ||w||² has gradient 2λw: SGD's weight_decay 2λ is the same penalty
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2 * a.weight_decay)
    ce = torch.nn.CrossEntropyLoss()
    fwd = torch.compile(model) if a.compile else model
    gen = torch.Generator().manual_seed(0)
    n, stamps = len(y), []
    with _cpu_kernels(device):
        t0 = time.perf_counter()
        for _ in range(a.epochs):
            perm = torch.randperm(n, generator=gen).to(device)
            for i in range(0, n, a.batch):
                idx = perm[i:i + a.batch]
                xb = Xt[idx].contiguous(memory_format=layout)
                opt.zero_grad(set_to_none=True)
                if a.amp == "bf16":
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        loss = ce(fwd(xb), Yt[idx])
                else:
                    loss = ce(fwd(xb), Yt[idx])
                loss.backward()
                opt.step()
            _sync(device)
            stamps.append(time.perf_counter() - t0)
    return n * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--channels", default="64,128,256,512")
    p.add_argument("--blocks", type=int, default=2, help="blocks per stage (default 2)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=10, help="batches per epoch (default 10)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per measurement; the first is warm-up")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gamma", type=float, default=0.1, help="the γ > 0 variant (default 0.1)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--amp", default=None, help="bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    a.device = str(device)
    channels = tuple(int(c) for c in a.channels.split(","))
    spec = ConvSpec(3, (a.size, a.size), 10, channels=channels, stage_blocks=(a.blocks,) * len(channels),
                    norm="batch", activation="relu")
    ds = synthetic_images(a.batch * a.steps, channels=3, size=a.size, n_classes=10, seed=0)
    X, y = ds.meta["images"].astype(np.float32), ds.y
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__}, {card}; channels {a.channels} x {a.blocks} blocks (N={spec.n_blocks}), "
          f"{a.size}x{a.size}, batch {a.batch}, {a.steps} steps/epoch, {a.epochs} epochs (1 warm-up), "
          f"compile={a.compile}, amp={a.amp}, channels_last={a.channels_last}", flush=True)
    runs: dict[str, list[float]] = {"reference (CrossEntropyLoss)": [], "ocp gamma=0": [], f"ocp gamma={a.gamma:g}": []}
    for r in range(a.repeats):
        runs["reference (CrossEntropyLoss)"].append(reference(spec, X, y, a))
        runs["ocp gamma=0"].append(ours(spec, X, y, 0.0, a))
        runs[f"ocp gamma={a.gamma:g}"].append(ours(spec, X, y, a.gamma, a))
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items()), flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    ref, g0, g1 = med.values()
    print(f"{'variant':<30} {'images/s':>10}")
    for k, v in med.items():
        print(f"{k:<30} {v:>10.1f}")
    print(f"gamma=0 / reference images/s: {g0 / ref:.3f}  (goal >= 0.80)")
    print(f"stage-cost overhead, time gamma>0 / gamma=0: {g0 / g1:.3f}  (goal <= 1.15 on the GPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
