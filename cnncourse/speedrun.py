"""How fast can a CNN learn? Notebook 9's two speedruns, as functions a test and a script can call.

* :func:`speedrun_mnist`: MNIST on the machine a learner has (a laptop CPU): a narrow three-block
  CNN, the images as one normalised tensor in memory, large batches, one-cycle SGD, bfloat16
  autocast where the CPU computes bf16 natively, channels_last. ``train_seconds`` runs from the first
  to the last optimisation step (warm-up and compilation included; reading the files and the final
  evaluation excluded). :data:`TRICKS` lists what removing each trick means, so that its share can
  be measured one change at a time.
* :func:`speedrun_cifar10`: CIFAR-10 on a GPU, after the pieces airbench published (Jordan, 2024:
  94 % in 3.09 s on an A100): a patch-whitening first layer, derandomised flips, label smoothing,
  Nesterov SGD, test-time flips, the data resident on the device in half precision, channels_last.
  Left out: Lookahead, random translations, multi-crop test-time augmentation, identity-initialised
  convolutions and airbench's scaled BatchNorm biases; so this is not expected to reach 94 % as is.
  Written here from the paper's description, not from its code, and smaller in ambition: it runs
  on a CPU in quick mode so that it is tested; its GPU figure is recorded only where a GPU was lent.

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
           "decoding_loader", "use_bf16", "airbench_net",
           "whitening_weights", "alternating_flips", "speedrun_cifar10", "tta_logits", "quiet_stderr", "record"]


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


# -------------------------------------------------------------------------------------- CIFAR-10
def whitening_weights(images: torch.Tensor, patch: int = 2, eps: float = 5e-4) -> torch.Tensor:
    """Filters that whiten ``patch`` x ``patch`` patches of ``images`` (float, N x C x H x W): the
    eigenvectors of the patches' covariance (centred; airbench uses the uncentred second moment)
    divided by the square root of their eigenvalues plus ``eps``, and their negatives (so a ReLU-like
    activation keeps both signs): 2 x C x patch**2 filters, smallest eigenvalue first."""
    c = images.shape[1]
    patches = images.unfold(2, patch, 1).unfold(3, patch, 1)  # N, C, H', W', p, p
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * patch * patch).double()
    covariance = torch.cov(patches.T)
    values, vectors = torch.linalg.eigh(covariance)
    filters = (vectors / torch.sqrt(values + eps)).T.reshape(-1, c, patch, patch)
    return torch.cat([filters, -filters]).float()


def airbench_net(widths=(64, 256, 256), whiten_channels: int = 3, patch: int = 2) -> nn.Sequential:
    """A 2x2 whitening convolution (its weights frozen, its bias trained), then three blocks (3x3 conv, 2x2 max-pool, BN, GELU, 3x3
    conv, BN, GELU), global max-pooling and a linear layer whose output is scaled down by 9."""
    whiten = nn.Conv2d(whiten_channels, 2 * whiten_channels * patch * patch, patch, bias=True)
    whiten.weight.requires_grad_(False)
    layers, channels = [whiten, nn.GELU()], whiten.out_channels
    for out in widths:
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(out),
                   nn.GELU(), nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
        channels = out
    head = nn.Linear(channels, 10, bias=False)
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), head, _Scale(1 / 9))


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def alternating_flips(n: int, epoch: int, seed: int = 0, device=None) -> torch.Tensor:
    """Which of ``n`` images to mirror in ``epoch``: a seeded random half in even epochs, exactly the
    other half in odd ones, so every pair of epochs sees every image both ways (derandomised flips)."""
    first = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    return (first if epoch % 2 == 0 else ~first).to(device)


def _low_precision(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of the CIFAR-10 run: bfloat16 on a GPU that has it (no gradient scaler needed)
    or a CPU with native bf16, float16 on an older GPU, None (float32) elsewhere."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if use_bf16(True, device) else None


def speedrun_cifar10(epochs: int = 10, batch_size: int = 1024, lr: float = 0.4, momentum: float = 0.9,
                     weight_decay: float = 5e-4, label_smoothing: float = 0.2, widths=(64, 256, 256),
                     seed: int = 0, root=None, device=None, val_fraction: float = 0.0,
                     progress: bool = False, data=None, val_seed: int = 0) -> Dict[str, Any]:
    """Train :func:`airbench_net` on CIFAR-10 with the airbench pieces; return seconds and accuracies
    (with and without test-time flips). On a GPU the data live there in half precision (the autocast
    dtype of :func:`_low_precision`; float16 gets a gradient scaler); on a CPU in float32.
    Schedule: the rate rises linearly over the first fifth of the steps, then falls linearly to 0."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from cnncourse.data import get_dataset, to_tensors
    splits = ("train", "val", "test") if val_fraction else ("train", "test")
    source = "cifar10" if data is None else data  # an image-folder copy (train/, test/) may stand in for CIFAR-10
    data = {s: to_tensors(get_dataset(source, s, root=root, val_fraction=val_fraction, seed=val_seed))
            for s in splits}
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    amp = _low_precision(device)
    storage = amp if device.type == "cuda" else torch.float32
    x_train = normalise(data["train"][0], mean, std, device, True, storage)
    y_train = data["train"][1].to(device)
    torch.manual_seed(seed)
    model = airbench_net(widths).to(device).to(memory_format=torch.channels_last)
    with torch.no_grad():
        model[0].weight.copy_(whitening_weights(x_train[:5000].float().cpu()).to(device))
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
                                lr=lr, momentum=momentum, nesterov=True)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    steps_per_epoch = max(1, len(y_train) // batch_size)
    total = epochs * steps_per_epoch
    warm = max(1, total // 5)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    generator = torch.Generator().manual_seed(seed)
    from cnncourse.train import _progress_bar_class
    bar = _progress_bar_class()(total=total, disable=not progress, desc="airbench-style")
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for epoch in range(epochs):
        flips = alternating_flips(len(y_train), epoch, seed, device)
        images = torch.where(flips.view(-1, 1, 1, 1), x_train.flip(-1), x_train)
        order = torch.randperm(len(y_train), generator=generator).to(device)
        for step in range(steps_per_epoch):
            index = order[step * batch_size:(step + 1) * batch_size]
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = F.cross_entropy(model(images[index]), y_train[index], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            schedule.step()
            bar.update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    bar.close()
    result = {"train_seconds": train_seconds, "epochs": epochs, "device": str(device), "seed": seed,
              "autocast": str(amp), "num_train_images": len(y_train),
              "num_parameters": sum(p.numel() for p in model.parameters())}
    for split in splits[1:]:
        x = normalise(data[split][0], mean, std, device, True, storage)
        y = data[split][1].to(device)
        result[f"{split}_accuracy"] = _accuracy(model, x, y, amp, tta=True)
        result[f"{split}_accuracy_no_tta"] = _accuracy(model, x, y, amp, tta=False)
    return result


# ------------------------------------------------------------------------------------- recording
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
