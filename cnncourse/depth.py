"""Residual learning that visibly works on a CPU (lesson 3): plain and residual networks of two depths,
trained alike for a short budget, where the deep plain network trains far worse than the shallow one
and the deep residual network at least as well.

He et al.'s CIFAR-10 networks (:func:`cnncourse.models.cifar_resnet`, ``NoShortcutBlock`` for the plain
ones), narrowed (``width`` channels in the first stage), on a stratified subset of MNIST, in float32
(lesson 3 measured bf16 autocast spoiling plain-56's gradients). Each network trains with the same
seed, batches and one-cycle SGD; the loop is written out (not :func:`cnncourse.train.fit`) to keep the
training loss of every step and each layer's gradient norm at the start, which the figure shows.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.models.resnet import BasicBlock, NoShortcutBlock, cifar_resnet

__all__ = ["NETWORKS", "build", "layer_gradient_norms", "train_steps", "depth_study", "plot_study", "recorded_table"]

#: name: (depth, block)
NETWORKS = {"plain-20": (20, NoShortcutBlock), "plain-56": (56, NoShortcutBlock),
            "ResNet-20": (20, BasicBlock), "ResNet-56": (56, BasicBlock)}


def build(name: str, width: int = 8, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """One of :data:`NETWORKS`, ``width`` channels in its first stage (16 in the paper)."""
    depth, block = NETWORKS[name]
    return cifar_resnet(depth, width, num_classes, in_channels, block=block)


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list:
    """The gradient norm of every 3 x 3 convolution's weights, input side first, for the loss on one
    batch (the model in training mode, its gradients cleared afterwards)."""
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    norms = [float(m.weight.grad.norm()) for m in model.modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    model.zero_grad(set_to_none=True)
    return norms


def train_steps(model: nn.Module, loader, epochs: int, lr: float = 0.1, weight_decay: float = 1e-4) -> list:
    """Nesterov SGD (momentum 0.9) with a one-cycle rate peaking at ``lr``; the training loss of every
    step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    losses = []
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def _accuracy(model: nn.Module, loader) -> float:
    model.eval()
    right = total = 0
    for x, y in loader:
        right += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return right / total


def depth_study(data: str = "mnist", seed: int = 0, width: int = 8, subset: Optional[int] = 10000,
                epochs: int = 1, batch_size: int = 128, lr: float = 0.1, root=None,
                networks: Sequence[str] = tuple(NETWORKS), progress: bool = False) -> Dict[str, Any]:
    """Train each of ``networks`` with ``seed`` on a stratified ``subset`` of ``data``'s training images
    (10 % of it held out for validation, the same for every seed), in float32; per network its
    step losses, final validation accuracy, gradient norms per layer at the start and seconds."""
    from cnncourse.fastdata import fast_loaders
    from cnncourse.train import _progress_bar_class
    train, val, _ = fast_loaders(data, batch_size=batch_size, seed=seed, val_fraction=0.1, val_seed=0,
                                 subset=subset, root=root, drop_last=True)
    first = next(iter(train))
    results = {}
    bar = _progress_bar_class()(total=len(networks), disable=not progress, desc="networks")
    for name in networks:
        torch.manual_seed(seed)
        model = build(name, width, in_channels=first[0].shape[1])
        norms = layer_gradient_norms(model, *first)
        train.set_epoch(0)
        started = time.perf_counter()
        losses = train_steps(model, train, epochs, lr)
        seconds = time.perf_counter() - started
        results[name] = {"step_losses": losses, "val_accuracy": _accuracy(model, val), "gradient_norms": norms,
                         "seconds": seconds, "parameters": sum(p.numel() for p in model.parameters())}
        bar.update()
    bar.close()
    return {"data": data, "seed": seed, "width": width, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "num_train_images": train.num_samples, "num_val_images": val.num_samples, "networks": results}


def plot_study(study: Dict[str, Any], smooth: int = 5):
    """Each network's training loss per step (a running mean of ``smooth`` steps) from
    :func:`depth_study`, its validation accuracy in the legend: plain networks dashed. Returns the axes."""
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for name, run in study["networks"].items():
        losses = np.convolve(run["step_losses"], np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(smooth, len(run["step_losses"]) + 1), losses, "--" if name.startswith("plain") else "-",
                label=f"{name}: validation {100 * run['val_accuracy']:.1f} %")
    ax.set(xlabel="training step", ylabel=f"training loss (running mean of {smooth} steps)",
           title=f"{study['num_train_images']:,} {study['data'].upper()} training digits, seed {study['seed']}, float32")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return ax


def recorded_table(path=None, name: str = "residual-mnist/study") -> str:
    """Markdown: the recorded study (``results/<name>/metrics.json``), each network's validation
    accuracy per seed and mean ± sd, and where it ran; one line when nothing is recorded."""
    import json
    import statistics

    from cnncourse.reference import results_dir, speedrun_hardware
    record = results_dir(path) / name / "metrics.json"
    if not record.exists():
        return f"Residual-learning study: not recorded yet ({name}/metrics.json)."
    run = json.loads(record.read_text())
    seeds = run["runs"]
    rows = ["| network | " + " | ".join(f"seed {r['seed']}" for r in seeds) + " | mean ± sd | seconds a run |",
            "|---|" + "---|" * (len(seeds) + 2)]
    for network in seeds[0]["networks"]:
        accuracy = [100 * r["networks"][network]["val_accuracy"] for r in seeds]
        spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
        seconds = statistics.mean(r["networks"][network]["seconds"] for r in seeds)
        rows.append(f"| {network} | " + " | ".join(f"{a:.1f} %" for a in accuracy)
                    + f" | {statistics.mean(accuracy):.1f} ± {spread:.1f} % | {seconds:.0f} |")
    first = seeds[0]
    return "\n".join(rows) + (
        f"\n\nValidation accuracy on {first['num_val_images']:,} held-out {first['data'].upper()} digits after "
        f"{first['epochs']} epoch(s) on {first['num_train_images']:,}, widths {first['width']}/{2 * first['width']}/"
        f"{4 * first['width']}, float32. {speedrun_hardware(run)}; command: `{run['provenance']['command']}`.")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``python -m cnncourse.depth --data-root DATA --out results/residual-mnist/study``: the study with
    seeds 0-2, recorded in OUT/metrics.json (refuses an OUT that holds a record, unless --overwrite)."""
    from cnncourse.speedrun import record, recording_parser, start_recording
    parser = recording_parser("python -m cnncourse.depth", main.__doc__)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    args = start_recording(parser, argv)
    runs = [depth_study(args.data, seed, args.width, args.subset, args.epochs, root=args.data_root, progress=True)
            for seed in range(args.seeds)]
    command = (f"python -m cnncourse.depth --data {args.data} --out {args.out} --seeds {args.seeds} "
               f"--width {args.width} --subset {args.subset} --epochs {args.epochs}")
    result = {"runs": runs, "device": "cpu"}
    print(record(result, args.out, command))
    return result


if __name__ == "__main__":
    main()
