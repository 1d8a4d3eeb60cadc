"""Exercises of notebook 2 (LeNet on CIFAR-10): BatchNorm by hand, the training loop, a one-cycle
schedule, batched crop-and-flip augmentation, and accuracy in eval mode."""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, forbid

BATCHNORM_FORWARD = '''\
import numpy as np


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    """BatchNorm2d in training mode, in NumPy. x: (N, C, H, W); gamma, beta, running_mean,
    running_var: (C,). Returns (y, new_running_mean, new_running_var), as nn.BatchNorm2d computes them."""
    raise NotImplementedError
'''


def _norm(x: np.ndarray, axes: tuple, ddof: int = 0, eps: float = 1e-5, outside: bool = False) -> np.ndarray:
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, ddof=ddof, keepdims=True)
    return (x - mean) / (np.sqrt(var) + eps if outside else np.sqrt(var + eps))


@checker("batchnorm_forward")
def check_batchnorm_forward(t: Tester, answer: Any) -> None:
    """Compared with F.batch_norm(training=True), output and running statistics."""
    rng = np.random.default_rng(4)
    for shape, momentum, eps in [((4, 3, 5, 5), 0.1, 1e-5), ((2, 2, 1, 2), 0.1, 1e-5), ((3, 4, 2, 3), 0.3, 0.1)]:
        c = shape[1]
        x = rng.normal(size=shape) * rng.uniform(0.5, 3, size=(1, c, 1, 1)) + rng.normal(size=(1, c, 1, 1))
        gamma, beta = rng.uniform(0.5, 2, size=c), rng.normal(size=c)
        mean0, var0 = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
        t.case(f"batchnorm_forward(<x {shape}>, ..., momentum={momentum}, eps={eps})")
        mean, var = torch.tensor(mean0), torch.tensor(var0)
        y = F.batch_norm(torch.tensor(x), mean, var, torch.tensor(gamma), torch.tensor(beta), True, momentum, eps).numpy()
        with forbid("batch_norm", hint="compute the mean and variance per channel with NumPy"):
            got = t.call(answer, x.copy(), gamma.copy(), beta.copy(), mean0.copy(), var0.copy(), momentum=momentum, eps=eps)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            t.fail("did not return three things", "return (y, new_running_mean, new_running_var)")
        b, g = beta.reshape(1, -1, 1, 1), gamma.reshape(1, -1, 1, 1)
        t.close(got[0], y, "y = gamma · (x - mean) / sqrt(var + eps) + beta, mean and var per channel", alternatives=[
            (lambda: g * _norm(x, (0, 2, 3), ddof=1, eps=eps) + b, "normalise with the biased variance (divide by "
             "N·H·W, np.var's default); only the running variance uses N·H·W - 1"),
            (lambda: g * _norm(x, (2, 3), eps=eps) + b, "statistics per channel over the batch and all positions: "
                                                        "axes (0, 2, 3), not per image"),
            (lambda: g * _norm(x, (0,), eps=eps) + b, "statistics per channel over axes (0, 2, 3), not per position"),
            (lambda: g * _norm(x, (0, 2, 3), eps=eps, outside=True) + b, "eps goes inside the square root: "
                                                                         "sqrt(var + eps)"),
            (lambda: b * _norm(x, (0, 2, 3), eps=eps) + g, "gamma scales and beta shifts: gamma · x̂ + beta")],
            shape_hint="y has the shape of x")
        batch_mean, n = x.mean(axis=(0, 2, 3)), x.size // c
        t.close(got[1], mean.numpy(), "new running mean = (1 - momentum) · running_mean + momentum · batch mean",
                alternatives=[((1 - momentum) * batch_mean + momentum * mean0, "momentum weighs the new batch: "
                               "(1 - momentum) · running + momentum · batch")], shape_hint="one value per channel")
        biased = x.var(axis=(0, 2, 3))
        t.close(got[2], var.numpy(), "new running var = (1 - momentum) · running_var + momentum · unbiased batch var",
                alternatives=[((1 - momentum) * var0 + momentum * biased, "the running variance is updated with the "
                               "unbiased batch variance (divide by N·H·W - 1), as PyTorch does"),
                              ((1 - momentum) * biased * n / (n - 1) + momentum * var0, "momentum weighs the new "
                               "batch: (1 - momentum) · running + momentum · batch")], shape_hint="one value per channel")


TRAIN_ONE_EPOCH = '''\
def train_one_epoch(model, loader, optimizer, loss_fn):
    """One pass over loader (batches of (images, labels)) in training mode: for each batch
    zero_grad, forward, loss, backward, step. Returns the mean loss over all images (a float)."""
    raise NotImplementedError
'''


def _epoch(model: nn.Module, loader: list, optimizer: torch.optim.Optimizer, loss_fn: Callable, mistake: str = "") -> List[float]:
    if mistake != "no train":
        model.train()
    losses = []
    for x, y in loader:
        if mistake != "no zero_grad":
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        if mistake == "step first":
            optimizer.step()
        loss.backward()
        if mistake != "step first":
            optimizer.step()
        losses.append(loss.item())
    return losses


def _params(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


@checker("train_one_epoch")
def check_train_one_epoch(t: Tester, answer: Any) -> None:
    """The weights after the learner's epoch and its mean loss, against the same epoch run here."""
    generator = torch.Generator().manual_seed(5)
    sizes = [5, 5, 2]
    for name, make_optimizer in [("SGD with momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
                                 ("Adam", lambda p: torch.optim.Adam(p, lr=0.01))]:
        t.case(f"train_one_epoch on a small network in eval mode, {name}, batches of {sizes}")
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
        loader = [(torch.randn(n, 4, generator=generator), torch.randint(0, 3, (n,), generator=generator)) for n in sizes]

        def run(mistake: str) -> tuple:
            twin = copy.deepcopy(model)
            losses = _epoch(twin, loader, make_optimizer(twin.parameters()), nn.CrossEntropyLoss(), mistake)
            return _params(twin), losses

        learner = copy.deepcopy(model)
        got = t.call(answer, learner, loader, make_optimizer(learner.parameters()), nn.CrossEntropyLoss())
        weights, losses = run("")
        t.close(_params(learner), weights, "per batch: optimizer.zero_grad(), loss = loss_fn(model(x), y), "
                "loss.backward(), optimizer.step()", alternatives=[
                    (lambda: run("no zero_grad")[0], "call optimizer.zero_grad() at every step: PyTorch adds "
                                                     "gradients up until they are zeroed"),
                    (lambda: run("no train")[0], "call model.train() first: the model came in eval mode, and "
                                                 "BatchNorm must use the batch statistics while training"),
                    (lambda: run("step first")[0], "order: zero_grad, forward, loss, backward, then step")],
                shape_hint="train the model you were given, without changing its layers")
        mean = float(np.dot(losses, sizes) / sum(sizes))
        t.close(t.array(got), mean, "return the mean loss over all images: sum of loss · batch size, "
                "divided by the number of images", alternatives=[
                    (losses[-1], "return the mean over the whole epoch, not the last batch's loss"),
                    (float(np.mean(losses)), "weight each batch's loss by its size: the last batch is smaller"),
                    (float(np.dot(losses, sizes)), "divide by the number of images")], shape_hint="return one number")


ONE_CYCLE_LR = '''\
import math


def one_cycle_lr(step, total_steps, max_lr, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """Learning rate of optimizer step `step` (0, 1, ..., total_steps - 1) under PyTorch's OneCycleLR
    (cosine annealing): from max_lr / div_factor up to max_lr, then down to
    max_lr / div_factor / final_div_factor."""
    raise NotImplementedError
'''


def _one_cycle(total: int, max_lr: float, pct: float, div: float, final: float, mistake: str = "") -> np.ndarray:
    initial, low = max_lr / div, (max_lr / final if mistake == "low" else max_lr / div / final)
    warm_end = pct * total - (0 if mistake == "ends" else 1)
    last = total - (0 if mistake == "ends" else 1)

    def anneal(start: float, end: float, frac: float) -> float:
        if mistake == "linear":
            return start + (end - start) * frac
        return end + (start - end) / 2 * (math.cos(math.pi * frac) + 1)

    return np.array([anneal(initial, max_lr, s / warm_end) if s <= warm_end
                     else anneal(max_lr, low, (s - warm_end) / (last - warm_end)) for s in range(total)])


@checker("one_cycle_lr")
def check_one_cycle_lr(t: Tester, answer: Any) -> None:
    """Every step's rate against torch.optim.lr_scheduler.OneCycleLR driving a real optimizer."""
    for total, max_lr, pct, div, final in [(100, 0.1, 0.3, 25.0, 1e4), (37, 3e-3, 0.25, 25.0, 1e4), (10, 1.0, 0.5, 10.0, 100.0)]:
        t.case(f"one_cycle_lr(step, {total}, {max_lr}, pct_start={pct}, div_factor={div}, final_div_factor={final}) "
               f"for every step")
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=total, pct_start=pct,
                                                       div_factor=div, final_div_factor=final, cycle_momentum=False)
        expected = []
        for _ in range(total):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        got = [t.call(answer, step, total, max_lr, pct_start=pct, div_factor=div, final_div_factor=final)
               for step in range(total)]
        t.close(got, expected, "warm up from max_lr / div_factor to max_lr over pct_start of the steps, then anneal "
                "to max_lr / div_factor / final_div_factor", alternatives=[
                    (_one_cycle(total, max_lr, pct, div, final, "linear"), "anneal along a half cosine: "
                     "end + (start - end) · (1 + cos(π · fraction)) / 2, not a straight line"),
                    (_one_cycle(total, max_lr, pct, div, final, "low"), "the final rate is the initial rate "
                     "(max_lr / div_factor) divided by final_div_factor"),
                    (_one_cycle(total, max_lr, pct, div, final, "ends"), "off by one: the warm-up ends at step "
                     "pct_start · total_steps - 1 and the cycle at total_steps - 1 (steps count from 0)")],
                rtol=1e-6, atol=1e-12)


RANDOM_CROP_FLIP = '''\
import torch
import torch.nn.functional as F


def random_crop_flip(images, pad):
    """Augment a batch (N, C, H, W): pad every image with `pad` zeros on each side, cut out a random
    H x W window (its own offset for each image) and mirror it left-right with probability 1/2."""
    raise NotImplementedError
'''


def _candidates(images: torch.Tensor, pad: int, mode: str = "constant") -> torch.Tensor:
    """(N, 2 (2p+1)^2, C, H, W): every crop of every image, plain and mirrored."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (pad,) * 4, mode=mode)
    crops = [padded[..., dy:dy + h, dx:dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    crops += [crop.flip(-1) for crop in crops]
    return torch.stack(crops, dim=1)


@checker("random_crop_flip")
def check_random_crop_flip(t: Tester, answer: Any) -> None:
    """Every output must be a crop of the zero-padded image, possibly mirrored; over four batches
    every offset from 0 to 2·pad and both flips must turn up, drawn per image."""
    pad, images = 2, torch.randn(32, 2, 5, 5, generator=torch.Generator().manual_seed(6))
    zero, draws = _candidates(images, pad), []
    for call in range(4):
        t.case(f"random_crop_flip(<batch of 32 images 2x5x5>, pad={pad}), batch {call + 1} of 4")
        got = t.array(t.call(answer, images.clone(), pad))
        if got.shape != tuple(images.shape):
            t.fail(f"got shape {got.shape}, expected {tuple(images.shape)}", "return a batch of the input's shape: "
                   "pad, then cut H x W windows")
        got = torch.as_tensor(got, dtype=images.dtype)
        hits = (got[:, None] - zero).abs().flatten(2).amax(2) < 1e-5          # (N, candidates)
        if not hits.any(1).all():
            reflect = ((got[:, None] - _candidates(images, pad, "reflect")).abs().flatten(2).amax(2) < 1e-5).any(1)
            upside = ((got[:, None] - _candidates(images.flip(-2), pad)).abs().flatten(2).amax(2) < 1e-5).any(1)
            hint = ("pad with zeros (F.pad(..., value=0)), not by reflection" if reflect.all() else
                    "mirror left-right (the last axis, flip(-1)), not upside down" if upside.all() else
                    "each output must be an H x W window of the zero-padded image, mirrored or not")
            t.fail(f"image {int((~hits.any(1)).nonzero()[0])} is not a crop of the padded image", hint)
        draws.append(hits.float().argmax(1))
    draws = torch.stack(draws)                                               # (calls, N) candidate index
    side, flip = 2 * pad + 1, draws // (2 * pad + 1) ** 2
    offsets = draws % side ** 2
    t.case("the offsets and flips drawn over the four batches")
    if all(len(row.unique()) == 1 for row in draws):
        t.fail("every image of a batch got the same crop and flip", "draw a new offset and flip for each image")
    for axis, values in (("vertical", offsets // side), ("horizontal", offsets % side)):
        if len(values.unique()) != side:
            t.fail(f"{axis} offsets {values.unique().tolist()}, expected all of 0..{2 * pad}",
                   "draw offsets from 0 to 2·pad inclusive: torch.randint(0, 2 * pad + 1, ...)")
    if not 0.3 < flip.float().mean().item() < 0.7:
        t.fail(f"{flip.float().mean().item():.0%} of the images mirrored", "mirror each image with probability 1/2")


EVAL_ACCURACY = '''\
import torch


def eval_accuracy(model, loader):
    """Share of correctly classified images (0 to 1) over all batches (images, labels) of loader,
    with the model in eval mode and without computing gradients."""
    raise NotImplementedError
'''


@checker("eval_accuracy")
def check_eval_accuracy(t: Tester, answer: Any) -> None:
    """A network with BatchNorm and dropout, handed over in training mode; compared with its
    predictions in eval mode."""
    generator = torch.Generator().manual_seed(7)
    for sizes in ([7, 7, 3], [16, 4]):
        t.case(f"eval_accuracy on a network in training mode with dropout and BatchNorm, batches of {sizes}")
        model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))
        model.get_submodule("1").running_mean.normal_(0, 2, generator=generator)
        batches = [torch.randn(n, 5, generator=generator) for n in sizes]
        with torch.no_grad():
            preds = [model.eval()(x).argmax(1) for x in batches]
        labels = [torch.where(torch.rand(len(p), generator=generator) < 0.7, p, (p + 1) % 4) for p in preds]
        right = [int((p == y).sum()) for p, y in zip(preds, labels)]
        expected = sum(right) / sum(sizes)
        model.train()
        got = t.call(answer, model, list(zip(batches, labels)))
        hint = ("call model.eval() first: in training mode dropout drops units at random and BatchNorm uses each "
                "batch's statistics" if model.training else "prediction = model(images).argmax(dim=1); count the "
                "right ones over all batches and divide by the number of images")
        t.close(t.array(got), expected, hint, alternatives=[
            (100 * expected, "return a fraction between 0 and 1, not a percentage"),
            (float(np.mean([r / n for r, n in zip(right, sizes)])), "count the right predictions over all images "
             "and divide once: averaging batch accuracies weighs the smaller last batch more")],
            shape_hint="return one number")


EXERCISES = [
    Exercise("batchnorm_forward", "BatchNorm's forward pass in training mode", "BatchNorm, by hand",
             check_batchnorm_forward, BATCHNORM_FORWARD),
    Exercise("train_one_epoch", "The training loop", "Three checks before a long run",
             check_train_one_epoch, TRAIN_ONE_EPOCH),
    Exercise("one_cycle_lr", "The one-cycle learning-rate schedule", "Four changes, one at a time",
             check_one_cycle_lr, ONE_CYCLE_LR),
    Exercise("random_crop_flip", "Random crops and flips for a whole batch", "The better recipes, live",
             check_random_crop_flip, RANDOM_CROP_FLIP),
    Exercise("eval_accuracy", "Accuracy in eval mode", "Side by side", check_eval_accuracy, EVAL_ACCURACY),
]
