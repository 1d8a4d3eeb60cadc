"""CIFAR-10 to 93 % on a laptop CPU: notebook 9's second speedrun, after the pieces airbench published
(Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024).

Written here from the paper's description, not from its code. The pieces, each one setting of
:class:`CifarRecipe` so that :data:`TRICKS` can remove it and measure its share:

* a first layer that whitens 2 x 2 patches (fixed filters from the training images' patch
  covariance; its bias trains only for the first epochs);
* three blocks of two 3 x 3 convolutions whose first filters start as the identity (the block first
  passes its input through); BatchNorm with fixed scale 1 and a bias that learns 64 times faster;
* per-image random translations of up to 2 pixels and derandomised flips (each image mirrored in
  every second epoch);
* Nesterov SGD on the summed loss with label smoothing, the rate rising from 0.2 to 1 of its peak
  over the first 23 % of the steps and falling to 0.07; weight decay given as the fraction of the
  weights removed per step (so it does not change with the rate);
* Lookahead: every 5 steps the weights are pulled back towards a slow average of themselves;
* multi-crop test-time augmentation: six views per image (itself, one pixel up-left and one down-right,
  each also mirrored);
* on a CPU with native bfloat16, autocast to bf16, the data stored once as one tensor, channels_last.

Why not torch's DataLoader: the images fit in memory as one tensor, and a per-image Python step
costs more than this network's arithmetic (the MNIST speedrun measures it). Why written by hand:
no library offers these pieces on a CPU; they are notebook 9's lesson.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.speedrun import normalise, use_bf16

__all__ = ["CifarRecipe", "TRICKS", "MEAN", "STD", "whitening_weights", "whitening_sample", "airbench_net", "alternating_flips",
           "random_translate", "triangle", "Lookahead", "tta_views_logits", "cifar_tensors", "speedrun_cifar10"]

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class CifarRecipe:
    """The CIFAR-10 speedrun's settings; ``replace(recipe, **TRICKS[name][1])`` removes one piece."""
    epochs: float = 12.0            # chosen on validation (results/speedrun-cifar10/search-choice.json); may be
    # fractional: the run stops after ceil(epochs x steps per epoch) steps
    batch_size: int = 1024
    lr: float = 1.5                 # peak rate for the loss averaged over a batch (the summed loss gets lr / batch)
    momentum: float = 0.85          # Nesterov
    decay: float = 0.002            # weights shrink by this fraction per step at the peak rate (batch 1024)
    bias_scale: float = 64.0        # BatchNorm biases learn this many times faster (1: as fast as the rest)
    label_smoothing: float = 0.2
    widths: tuple = (64, 256, 256)
    whiten: bool = True             # False: an ordinary trained 2 x 2 convolution first
    whiten_bias_epochs: float = 3.0  # the whitening layer's bias trains this long, then stays
    whiten_sample: str = "first"    # the 5,000 images that set the whitening: "first" the first 5,000 (in a
    # folder sorted by class: airplanes only), "spread" evenly through the training set (every class)
    identity_init: bool = True
    translate: int = 2              # pixels of random shift (0: none)
    alternating_flips: bool = True  # False: a fresh random half mirrored every epoch
    lookahead: bool = True
    warmup: float = 0.23            # fraction of steps to the peak rate
    bf16: bool = True               # autocast, only where the CPU has native bf16 (or on a GPU)
    channels_last: bool = True


# name: (what removing it means, the changes). Test-time augmentation is not here: every run reports
# its accuracy without it, with flips and with the six views (an evaluation choice, no retraining).
TRICKS: Dict[str, tuple] = {
    "whitening": ("a trained 2 x 2 convolution first, initialised as PyTorch does", {"whiten": False}),
    "whitening bias schedule": ("the whitening bias trains throughout", {"whiten_bias_epochs": 1e9}),
    "identity initialisation": ("PyTorch's default initialisation of every 3 x 3 convolution",
                                {"identity_init": False}),
    "scaled BatchNorm biases": ("BatchNorm biases learn at the same rate as the weights", {"bias_scale": 1.0}),
    "random translations": ("no translations (flips only)", {"translate": 0}),
    "derandomised flips": ("a fresh random half of the images mirrored in every epoch", {"alternating_flips": False}),
    "Lookahead": ("plain Nesterov SGD, no pull towards the slow weights", {"lookahead": False}),
    "label smoothing": ("plain cross-entropy", {"label_smoothing": 0.0}),
    "bf16 autocast": ("float32 throughout", {"bf16": False}),
    "channels_last": ("the default NCHW memory layout", {"channels_last": False}),
}


# ------------------------------------------------------------------------------------ the network
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


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with its scale fixed at 1 (only the bias learns); running statistics that follow the
    batches quickly (PyTorch momentum 0.4) for a run of a few hundred steps."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


def airbench_net(widths=(64, 256, 256), whiten_channels: int = 3, patch: int = 2,
                 identity_init: bool = True, whiten: bool = True) -> nn.Sequential:
    """A 2 x 2 first convolution (``whiten``: its weights frozen, set later by :func:`whitening_weights`;
    its bias trained), GELU, then three blocks (3 x 3 conv, 2 x 2 max-pool, BN, GELU, 3 x 3 conv, BN,
    GELU), global max-pooling and a linear layer whose output is scaled down by 9. 32 x 32 inputs give
    maps of 31, 15, 7 and 3 pixels. ``identity_init``: each 3 x 3 convolution's first filters (as
    many as it has input channels) copy their input channel, so a block starts close to passing its
    input through."""
    first = nn.Conv2d(whiten_channels, 2 * whiten_channels * patch * patch, patch, bias=True)
    first.weight.requires_grad_(not whiten)
    layers, channels = [first, nn.GELU()], first.out_channels
    for out in widths:
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.MaxPool2d(2), _norm(out),
                   nn.GELU(), nn.Conv2d(out, out, 3, padding=1, bias=False), _norm(out), nn.GELU()]
        channels = out
    net = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, 10, bias=False),
                        _Scale(1 / 9))
    if identity_init:
        with torch.no_grad():
            for conv in net[2:]:
                if isinstance(conv, nn.Conv2d):
                    nn.init.dirac_(conv.weight[:conv.in_channels])
    return net


# ------------------------------------------------------------------------------------ the data
def whitening_sample(images: torch.Tensor, how: str = "spread", n: int = 5000) -> torch.Tensor:
    """The ``n`` images whose patches set the whitening: ``"spread"`` evenly spaced through ``images``
    (a sample of every class even when a folder copy lists the images class by class), ``"first"``
    the first ``n`` (a random sample only when the images come shuffled, as in CIFAR-10's own files)."""
    if how == "first" or len(images) <= n:
        return images[:n]
    return images[torch.arange(n) * len(images) // n]


def alternating_flips(n: int, epoch: int, seed: int = 0, device=None) -> torch.Tensor:
    """Which of ``n`` images to mirror in ``epoch``: a seeded random half in even epochs, exactly the
    other half in odd ones, so every pair of epochs sees every image both ways (derandomised flips)."""
    first = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    return (first if epoch % 2 == 0 else ~first).to(device)


def random_translate(padded: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``padded`` (N, C, H + 2 pad, W + 2 pad) cut back to H x W at its own random offset
    of 0..2 pad pixels in each direction: a shift of up to ``pad`` pixels, the border filled by the
    reflection padding. Done as one copy per offset (25 for pad 2), not one per image."""
    n, h, w = len(padded), padded.shape[-2] - 2 * pad, padded.shape[-1] - 2 * pad
    side = 2 * pad + 1
    offsets = torch.randint(0, side * side, (n,), generator=generator)
    out = torch.empty(padded.shape[:2] + (h, w), dtype=padded.dtype, device=padded.device)
    out = out.contiguous(memory_format=_layout(padded))
    for offset in range(side * side):
        index = (offsets == offset).nonzero().squeeze(1).to(padded.device)
        dy, dx = divmod(offset, side)
        out[index] = padded[index, :, dy:dy + h, dx:dx + w]
    return out


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


def cifar_tensors(data=None, root=None, val_fraction: float = 0.0, val_seed: int = 0) -> Dict[str, tuple]:
    """The uint8 images and labels of CIFAR-10's splits (``data``: an image-folder copy with train/ and
    test/ may stand in for CIFAR-10's own files): ``{"train": (x, y), "test": (x, y)}``, or with a
    hold-out (``val_fraction`` > 0) ``{"train": ..., "val": ...}`` and no test set: a run that chooses
    settings on validation never reads the test set."""
    from cnncourse.data import get_dataset, to_tensors
    splits = ("train", "val") if val_fraction else ("train", "test")
    source = "cifar10" if data is None else data
    return {s: to_tensors(get_dataset(source, s, root=root, val_fraction=val_fraction, seed=val_seed))
            for s in splits}


# ------------------------------------------------------------------------------------ the optimiser
def triangle(step: int, total: int, peak: float = 0.23, start: float = 0.2, end: float = 0.07) -> float:
    """The rate's multiplier at ``step`` of ``total``: linear from ``start`` to 1 at ``peak`` of the
    steps, then linear to ``end`` at the last step."""
    top = peak * total
    if step < top:
        return start + (1 - start) * step / top
    return 1 + (end - 1) * (step - top) / max(1e-9, total - top)


class Lookahead:
    """Keeps slow copies of a model's floating-point weights and buffers; :meth:`update` moves the slow
    copy towards the model by ``1 - decay`` and sets the model to it (decay 0: keep the model's
    weights; decay 1: go back to the slow copy)."""

    def __init__(self, model: nn.Module) -> None:
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for name, value in model.state_dict().items():
            if name in self.slow:
                self.slow[name].lerp_(value, 1 - decay)
                value.copy_(self.slow[name])


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def tta_views_logits(model: nn.Module, images: torch.Tensor, views: int = 6) -> torch.Tensor:
    """Test-time augmentation, in float32. ``views`` 1: the model's logits; 2: their mean with the
    mirror images' (flipped left-right); 6: half that flip mean, plus a quarter each of the flip means
    of the images shifted one pixel up-left and one pixel down-right (reflected border)."""
    if views not in (1, 2, 6):
        raise ValueError(f"views must be 1, 2 or 6; got {views}")

    def flip_mean(x):
        return model(x).float() if views == 1 else (model(x).float() + model(x.flip(-1)).float()) / 2

    logits = flip_mean(images)
    if views == 6:
        h, w = images.shape[-2:]
        padded = F.pad(images.float(), (1, 1, 1, 1), mode="reflect").to(images.dtype)
        shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]
        logits = logits / 2 + sum(flip_mean(x.contiguous(memory_format=_layout(images))) for x in shifted) / 4
    return logits


def _accuracies(model, x, y, amp, batch: int = 1000) -> Dict[str, float]:
    """Accuracy (a fraction) with 1, 2 and 6 test-time views, in eval mode under autocast to ``amp``."""
    model.eval()
    correct = {1: 0, 2: 0, 6: 0}
    for i in range(0, len(x), batch):
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            for views in correct:
                correct[views] += int((tta_views_logits(model, x[i:i + batch], views).argmax(1)
                                       == y[i:i + batch]).sum())
    model.train()
    return {"no_tta": correct[1] / len(x), "flip": correct[2] / len(x), "multicrop": correct[6] / len(x)}


def _low_precision(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype: bfloat16 on a GPU that has it (no gradient scaler needed) or a CPU with native
    bf16, float16 on an older GPU, None (float32) elsewhere."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if use_bf16(True, device) else None


# ------------------------------------------------------------------------------------ the run
def speedrun_cifar10(recipe: Optional[CifarRecipe] = None, seed: int = 0, data=None, root=None,
                     val_fraction: float = 0.0, val_seed: int = 0, device=None, progress: bool = False,
                     tensors: Optional[dict] = None, keep_model: bool = False, **changes) -> Dict[str, Any]:
    """Train :func:`airbench_net` on CIFAR-10 with ``recipe`` (default :class:`CifarRecipe`, ``changes``
    applied); return seconds and accuracies (fractions) without test-time augmentation, with flips
    and with six views (``test_accuracy`` is the six-view one). ``val_fraction``: hold out that
    fraction of every class for validation (the search's runs; the recorded ones train on all 50,000
    images). ``tensors``: the uint8 splits of :func:`cifar_tensors`, to reuse between runs.
    ``train_seconds`` runs from the whitening set-up (included) to the last step."""
    recipe = replace(recipe or CifarRecipe(), **changes)
    if recipe.epochs <= 0 or recipe.batch_size < 1 or recipe.lr <= 0 or not 0 <= recipe.momentum < 1:
        raise ValueError(f"epochs and lr must be > 0, batch_size >= 1 and momentum in [0, 1); got {recipe}")
    if recipe.whiten_sample not in ("spread", "first"):
        raise ValueError(f"whiten_sample must be 'spread' or 'first'; got {recipe.whiten_sample!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tensors = tensors or cifar_tensors(data, root, val_fraction, val_seed)
    (train_x, train_y) = tensors["train"]
    if len(train_y) < recipe.batch_size:
        raise ValueError(f"batch_size {recipe.batch_size} is larger than the {len(train_y)} training images")
    amp = _low_precision(device) if recipe.bf16 else None
    storage = amp or torch.float32
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    x_float = normalise(train_x, MEAN, STD, device, channels_last=False)
    pad = recipe.translate
    x_store = (F.pad(x_float, (pad,) * 4, mode="reflect") if pad else x_float).to(storage).contiguous(memory_format=fmt)
    y_train = train_y.to(device)
    torch.manual_seed(seed)
    model = airbench_net(recipe.widths, identity_init=recipe.identity_init, whiten=recipe.whiten).to(device)
    model = model.to(memory_format=fmt)
    steps_per_epoch = len(y_train) // recipe.batch_size
    total = math.ceil(recipe.epochs * steps_per_epoch)
    bias_steps = math.ceil(recipe.whiten_bias_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    from cnncourse.train import _progress_bar_class
    bar = _progress_bar_class()(total=total, disable=not progress, desc="CIFAR-10 speedrun")
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    if recipe.whiten:   # part of the timed run, as in airbench
        with torch.no_grad():
            model[0].weight.copy_(whitening_weights(whitening_sample(x_float, recipe.whiten_sample).cpu()).to(device))
    del x_float
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    others = [p for p in model.parameters() if p.requires_grad and all(p is not b for b in norm_biases)]
    decay = recipe.decay * recipe.batch_size / 1024
    lr = recipe.lr / recipe.batch_size      # for the summed loss
    groups = [{"params": norm_biases, "lr": lr * recipe.bias_scale, "weight_decay": decay / (lr * recipe.bias_scale)},
              {"params": others, "lr": lr, "weight_decay": decay / lr}]
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    for group in optimizer.param_groups:
        group["peak_lr"] = group["lr"]
    slow = Lookahead(model) if recipe.lookahead else None
    history, step = [], 0
    for epoch in range(math.ceil(total / steps_per_epoch)):
        images = random_translate(x_store, pad, generator) if pad else x_store
        flips = (alternating_flips(len(y_train), epoch, seed, device) if recipe.alternating_flips
                 else torch.rand(len(y_train), generator=generator).to(device) < 0.5)
        images = torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images).contiguous(memory_format=fmt)
        order = torch.randperm(len(y_train), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for i in range(min(steps_per_epoch, total - step)):
            index = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            if step == bias_steps and recipe.whiten:
                model[0].bias.requires_grad_(False)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = F.cross_entropy(model(images[index]), y_train[index], label_smoothing=recipe.label_smoothing,
                                       reduction="sum")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * triangle(step, total, recipe.warmup)
            optimizer.step()
            step += 1
            if slow is not None and step % 5 == 0:
                slow.update(model, decay=0.95 ** 5 * (step / total) ** 3)
            loss_sum += loss.detach().float()
            bar.update()
        history.append({"epoch": epoch + 1, "train_loss": float(loss_sum) / (i + 1) / recipe.batch_size,
                        "seconds": time.perf_counter() - started})
        if not math.isfinite(history[-1]["train_loss"]):
            break
    if slow is not None:
        slow.update(model, decay=1.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    bar.close()
    model[0].bias.requires_grad_(True)
    result = {"recipe": asdict(recipe), "seed": seed, "device": str(device), "train_seconds": train_seconds,
              "autocast": str(amp), "steps": step, "num_train_images": len(y_train), "history": history,
              "num_parameters": sum(p.numel() for p in model.parameters())}
    for split in [s for s in ("val", "test") if s in tensors]:
        x = normalise(tensors[split][0], MEAN, STD, device, recipe.channels_last, storage)
        scores = _accuracies(model, x, tensors[split][1].to(device), amp)
        result[f"{split}_accuracy"] = scores["multicrop"]
        result[f"{split}_accuracy_flip"] = scores["flip"]
        result[f"{split}_accuracy_no_tta"] = scores["no_tta"]
        result[f"num_{split}_images"] = len(x)
    if keep_model:
        result["model"] = model
    return result
