"""How fast can a CNN learn? Notebook 9's two speedruns, as functions a test and a script can call.

* :func:`speedrun_mnist`: MNIST on the machine a learner has (a laptop CPU): a narrow three-block
  CNN, the images as one normalised tensor in memory, large batches, one-cycle SGD, bfloat16
  autocast where the CPU computes bf16 natively, channels_last. ``train_seconds`` runs from the first
  to the last optimisation step (warm-up and compilation included; reading the files and the final
  evaluation excluded). :data:`TRICKS` lists what removing each trick means, so that its share can
  be measured one change at a time.
* CIFAR-10's speedrun (airbench's recipe on a CPU) lives in :mod:`cnncourse.cifar_speedrun`.

Why not torch's DataLoader: per-image Python work costs more than these networks' arithmetic; that
is one of the tricks measured (``data_on_device``).
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MnistRecipe", "TRICKS", "mnist_net", "speedrun_mnist", "cpu_capability", "split_tensors", "normalise",
           "decoding_loader", "use_bf16", "tta_logits", "quiet_stderr", "record"]


# ----------------------------------------------------------------------------------------- MNIST
def mnist_net(width: int = 16, batchnorm: bool = True, pool_first: bool = True) -> nn.Sequential:
    """Three blocks of 3x3 convolution, 2x2 max-pool, BatchNorm, ReLU (widths w, 2w, 4w: 28 -> 14 ->
    7 -> 3 pixels), then one linear layer. Pooling first normalises 4x fewer numbers; for a given
    BatchNorm in evaluation mode with positive scales it computes the same function as pooling last
    (``pool_first=False``: convolution, BatchNorm, ReLU, max-pool). In training the BN statistics
    are those of the pooled maps, a slightly different model."""
    layers, channels = [], 1
    for out in (width, 2 * width, 4 * width):
        norm = [nn.BatchNorm2d(out)] if batchnorm else []
        conv = nn.Conv2d(channels, out, 3, padding=1, bias=not batchnorm)
        layers += ([conv, nn.MaxPool2d(2), *norm, nn.ReLU(inplace=True)] if pool_first else
                   [conv, *norm, nn.ReLU(inplace=True), nn.MaxPool2d(2)])
        channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 3 * 3, 10))


@dataclass(frozen=True)
class MnistRecipe:
    """The MNIST speedrun's settings; ``replace(recipe, **TRICKS[name][1])`` removes one trick."""
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.2              # peak of the one-cycle schedule (or the constant rate without it)
    momentum: float = 0.9        # Nesterov; one-cycle cycles it instead (0.95 -> 0.85 -> 0.95, its default)
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    width: int = 16
    batchnorm: bool = True
    pool_first: bool = True
    onecycle: bool = True
    channels_last: bool = True
    bf16: bool = True            # autocast, only where the CPU has native bf16 (or on a GPU)
    compile: bool = False
    data_on_device: bool = True


# name: (what removing it means, the changes). The rates of the runs with batches of 256, without
# one-cycle or without BatchNorm are the best of {0.2, 0.05, 0.01} on the validation split
# (scripts/speedrun_search.py rates: results/speedrun-mnist/search-rates.json).
TRICKS: Dict[str, tuple] = {
    "data as one tensor": ("a DataLoader builds every batch image by image (PIL image -> ToTensor -> "
                           "Normalize, then stacked)", {"data_on_device": False}),
    "batch size 64": ("batches of 256, rate 0.2", {"batch_size": 256, "lr": 0.2}),
    "one-cycle schedule": ("a constant rate of 0.05 and momentum 0.9", {"onecycle": False, "lr": 0.05}),
    "BatchNorm": ("no BatchNorm (convolutions with bias), rate 0.2", {"batchnorm": False, "lr": 0.2}),
    "narrow network": ("twice as wide (32, 64, 128 channels)", {"width": 32}),
    "pooling first": ("max-pooling after BatchNorm and ReLU", {"pool_first": False}),
    "channels_last": ("the default NCHW memory layout", {"channels_last": False}),
    "bf16 autocast": ("float32 throughout", {"bf16": False}),
    "torch.compile off": ("torch.compile on (its compilation counts as training time)", {"compile": True}),
}


def cpu_capability() -> Dict[str, Any]:
    """What the CPU can do, to print beside any speed figure: name, cores, torch's threads, the vector
    instruction sets torch uses and whether bf16 is native."""
    from cnncourse.train import cpu_has_native_bf16
    try:
        from cnncourse.cli import _cpu_name
        name = _cpu_name()
    except ImportError:  # copied without the CLI
        import platform
        name = platform.processor() or platform.machine()
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "unknown")()
    return {"cpu": name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": capability, "native_bf16": cpu_has_native_bf16(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"})}


def split_tensors(name: str, root=None, val_fraction: float = 0.1, seed: int = 0):
    """The uint8 images and labels of a course data set's train, val (``val_fraction`` held out, seeded)
    and test splits: ``{"train": (x, y), "val": ..., "test": ...}``."""
    from cnncourse.data import get_dataset, to_tensors
    return {split: to_tensors(get_dataset(name, split, root=root, val_fraction=val_fraction, seed=seed))
            for split in ("train", "val", "test")}


def normalise(images: torch.Tensor, mean, std, device, channels_last: bool, dtype=torch.float32):
    """uint8 images -> (x / 255 - mean) / std as ``dtype`` on ``device``, channels_last if asked."""
    x = images.to(device).to(dtype).div_(255)
    mean = torch.tensor(mean, device=device, dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(std, device=device, dtype=dtype).view(1, -1, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def decoding_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, mean, std, seed: int,
                    shuffle: bool = True):
    """The usual tutorial path, for the ``data_on_device=False`` run: a PIL image from the uint8 array,
    ToTensor, Normalize, one image at a time in ``__getitem__``, batched by a DataLoader (no workers)."""
    from PIL import Image
    from torchvision import transforms
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    class Pictures(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return pipeline(Image.fromarray(images[i, 0].numpy(), mode="L")), labels[i]

    return torch.utils.data.DataLoader(Pictures(), batch_size=batch_size, shuffle=shuffle, drop_last=True,
                                       generator=torch.Generator().manual_seed(seed))


@contextmanager
def quiet_stderr():
    """Point the process's standard error (file descriptor 2) at /dev/null for a while: the C++ layer
    of torch.profiler prints log lines there ("USDT ... profiler_start") that no setting turns off."""
    import sys
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def use_bf16(wanted: bool, device: torch.device) -> bool:
    """bf16 autocast only where it is fast: a CUDA GPU or a CPU with native bf16 (AVX-512 BF16, AMX)."""
    from cnncourse.train import cpu_has_native_bf16
    return wanted and (device.type == "cuda" or cpu_has_native_bf16() is True)


@torch.no_grad()
def tta_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the mean of the model's logits for the images and for their mirror
    images (flipped left-right), in float32."""
    return (model(images).float() + model(images.flip(-1)).float()) / 2


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp_dtype: Optional[torch.dtype],
              tta: bool = False, batch: int = 2000) -> float:
    """Accuracy in eval mode, under autocast to ``amp_dtype`` (None: off), with test-time flips if ``tta``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = tta_logits(model, x[i:i + batch]) if tta else model(x[i:i + batch]).float()
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    model.train()
    return correct / len(x)


def speedrun_mnist(recipe: Optional[MnistRecipe] = None, seed: int = 0, root=None, val_fraction: float = 0.1,
                   device=None, progress: bool = False, data: Optional[dict] = None, **changes) -> Dict[str, Any]:
    """Train :func:`mnist_net` on MNIST with ``recipe`` (default :class:`MnistRecipe`, ``changes``
    applied); return seconds and accuracies (fractions). ``data``: the uint8 tensors of
    ``split_tensors`` to reuse between runs (reading them is not timed anyway)."""
    recipe = replace(recipe or MnistRecipe(), **changes)
    if recipe.epochs < 1 or recipe.batch_size < 1 or recipe.lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0; got {recipe}")
    device = torch.device(device or "cpu")
    data = data or split_tensors("mnist", root, val_fraction, seed)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = data["train"], data["val"], data["test"]
    if len(train_y) < recipe.batch_size:
        raise ValueError(f"batch_size {recipe.batch_size} is larger than the {len(train_y)} training images")
    mean, std = (0.1307,), (0.3081,)
    bf16 = use_bf16(recipe.bf16, device)
    torch.manual_seed(seed)
    model = mnist_net(recipe.width, recipe.batchnorm, recipe.pool_first).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if recipe.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                weight_decay=recipe.weight_decay)
    steps_per_epoch = len(train_y) // recipe.batch_size
    schedule = (torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch,
                                                    pct_start=0.25) if recipe.onecycle else None)
    if recipe.data_on_device:
        x_all = normalise(train_x, mean, std, device, recipe.channels_last)
        y_all = train_y.to(device)
    else:
        loader = decoding_loader(train_x, train_y, recipe.batch_size, mean, std, seed)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    history = []
    from cnncourse.train import _progress_bar_class
    bar = _progress_bar_class()(total=recipe.epochs * steps_per_epoch, disable=not progress, desc="speedrun")
    if device.type == "cuda":
        torch.cuda.synchronize()   # the data's upload and normalisation are not training time
    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        if recipe.data_on_device:
            order = torch.randperm(len(y_all), generator=generator).to(device)
            batches = ((x_all[i], y_all[i]) for i in order[:steps_per_epoch * recipe.batch_size]
                       .view(steps_per_epoch, recipe.batch_size))
        else:
            batches = loader
        loss_sum = torch.zeros((), device=device)
        for x, y in batches:
            if not recipe.data_on_device:
                x, y = x.to(device), y.to(device)
                x = x.contiguous(memory_format=torch.channels_last) if recipe.channels_last else x
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(run(x), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            loss_sum += loss.detach().float()
            bar.update()
        history.append({"epoch": epoch + 1, "train_loss": float(loss_sum) / steps_per_epoch,
                        "seconds": time.perf_counter() - started})
        if not math.isfinite(history[-1]["train_loss"]):
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    bar.close()
    evaluate = {name: normalise(x, mean, std, device, recipe.channels_last) for name, (x, _) in
                (("val", data["val"]), ("test", data["test"]))}
    return {"recipe": asdict(recipe), "seed": seed, "device": str(device), "train_seconds": train_seconds,
            "bf16_used": bf16,
            "steps": recipe.epochs * steps_per_epoch, "num_train_images": len(train_y),
            "val_accuracy": _accuracy(model, evaluate["val"], val_y.to(device), torch.bfloat16 if bf16 else None),
            "test_accuracy": _accuracy(model, evaluate["test"], test_y.to(device), torch.bfloat16 if bf16 else None),
            "num_test_images": len(test_y), "history": history,
            "num_parameters": sum(p.numel() for p in model.parameters())}


# ------------------------------------------------------------------------------------- recording
def recording_parser(prog: str, description: Optional[str]):
    """The options every recorded experiment's command takes (``python -m cnncourse.depth``,
    ``python -m cnncourse.transfer``): ``--data-root`` and ``--threads`` belong to the machine and stay
    out of the recorded command; ``--out`` is the run folder; ``--overwrite`` allows replacing a record."""
    import argparse
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data-root", default=None, help="the data folder (not recorded in the command)")
    parser.add_argument("--out", required=True, help="the run folder for metrics.json")
    parser.add_argument("--threads", type=int, default=None, help="torch's threads (not recorded in the command)")
    parser.add_argument("--overwrite", action="store_true", help="replace the record OUT holds")
    return parser


def start_recording(parser, argv=None):
    """Parse ``argv``, refuse an ``--out`` that already holds a record (unless ``--overwrite``: a run folder
    is never replaced by accident) and set torch's threads; returns the parsed options."""
    args = parser.parse_args(argv)
    if (Path(args.out) / "metrics.json").exists() and not args.overwrite:
        parser.error(f"{args.out} already holds a recorded run: choose another --out, or pass --overwrite")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def record(result: Dict[str, Any], out, command: str) -> Path:
    """Write ``out/metrics.json``: the result, the command that re-makes it and where it ran (the CPU's
    capability, torch, the commit)."""
    import datetime as _dt
    import json
    import platform
    import torchvision
    from cnncourse.cli import _version, git_commit
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    git = git_commit(out)
    payload = dict(result, accuracy_unit="fraction", provenance={
        "command": command, "cnncourse_version": _version(), "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__, "python": platform.python_version(),
        "platform": platform.platform(), **cpu_capability(),
        "device_name": torch.cuda.get_device_name() if str(result.get("device", "")).startswith("cuda") else None,
        "git_commit": git["commit"], "git_dirty": git["dirty"],
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    path = out / "metrics.json"
    from cnncourse.checkpointing import atomic_write
    atomic_write(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())
    return path
