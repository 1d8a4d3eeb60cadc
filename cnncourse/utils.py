"""Small helpers every notebook needs: device choice, seeding, parameter counts, a layer summary."""
from __future__ import annotations

import os
import random
from collections import OrderedDict
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn


def get_device(preferred: Optional[str] = None) -> torch.device:
    """Pick a device: ``preferred`` if given (and present), else the best one here: the current
    accelerator (``torch.accelerator``: CUDA, MPS, XPU, ...), else the CPU (``train.resolve_device``)."""
    from cnncourse.train import resolve_device
    return resolve_device(preferred)


def describe_device(device: Optional[torch.device] = None) -> str:
    """A one-line human description of ``device``, with advice when it is only a CPU."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "mps: Apple GPU"
    return ("cpu: no GPU found. The sample and laptop scales run fine on a CPU; for the full scale use a GPU "
            "(in Colab: Runtime > Change runtime type > GPU).")


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch Generator for DataLoaders.

    With ``deterministic=True`` cuDNN picks deterministic algorithms too (slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader: gives each worker's NumPy and ``random`` a distinct, reproducible seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_buffers(model: nn.Module) -> int:
    """Number of buffer elements (e.g. BatchNorm running statistics, not the step counters)."""
    return sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))


def layer_summary(model: nn.Module, input_size: Sequence[int], batch_size: int = 2,
                  device: Optional[torch.device] = None, print_fn=print) -> "OrderedDict[str, dict]":
    """Print a Keras/torchsummary-style table of every leaf layer's output shape and parameters.

    Runs one dummy batch of shape ``(batch_size, *input_size)`` on ``device`` (default: the
    model's own device, so it works on a CPU-only machine, unlike torchsummary's CUDA default).
    Returns the rows as a dict for tests. Memory figures follow torchsummary's conventions
    (float32, one image, forward and backward activations counted twice).
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    rows: "OrderedDict[str, dict]" = OrderedDict()
    hooks = []

    def hook(module: nn.Module, inputs, output) -> None:
        index = len(rows) + 1
        name = f"{type(module).__name__}-{index}"
        out = output[0] if isinstance(output, (tuple, list)) else output
        params = sum(p.numel() for p in module.parameters(recurse=False))
        trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
        rows[name] = {"output_shape": [-1] + list(out.shape[1:]), "params": params, "trainable": trainable}

    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(batch_size, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    line = "-" * 64
    print_fn(line)
    print_fn(f"{'Layer (type)':>25}  {'Output Shape':>25}  {'Param #':>10}")
    print_fn("=" * 64)
    for name, row in rows.items():
        print_fn(f"{name:>25}  {str(row['output_shape']):>25}  {row['params']:>10,}")
    input_mb = abs(np.prod(input_size) * 4.0 / 1024**2)
    activations_mb = abs(2.0 * sum(np.prod(r["output_shape"][1:]) for r in rows.values()) * 4.0 / 1024**2)
    params_mb = abs(total * 4.0 / 1024**2)
    print_fn("=" * 64)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn(line)
    print_fn(f"Input size (MB): {input_mb:.2f}")
    print_fn(f"Forward/backward pass size (MB): {activations_mb:.2f}")
    print_fn(f"Params size (MB): {params_mb:.2f}")
    print_fn(f"Estimated Total Size (MB): {input_mb + activations_mb + params_mb:.2f}")
    print_fn(line)
    return rows
