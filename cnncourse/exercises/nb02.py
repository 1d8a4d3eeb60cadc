"""Exercises of notebook 2 (LeNet on CIFAR-10): GroupNorm by hand, gradient accumulation, accuracy in
eval mode, a one-cycle schedule, and batched crop-and-flip augmentation."""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, forbid

GROUP_NORM = '''\
import numpy as np


def group_norm(x, num_groups, gamma, beta, eps=1e-5):
    """GroupNorm in NumPy. x: (N, C, H, W), its C channels split into num_groups groups of consecutive
    channels; gamma, beta: (C,). Returns y, the shape of x."""
    raise NotImplementedError
'''


def _group_norm(x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray, eps: float,
                mistake: str = "") -> np.ndarray:
    """GroupNorm by formula, or with one named mistake (for the hints)."""
    n, c, h, w = x.shape
    if mistake == "strided":            # channel k in group k % G instead of k // (C / G)
        grouped, axes = x.reshape(n, c // groups, groups, h, w), (1, 3, 4)
    elif mistake == "batch":            # statistics over the batch as well, like BatchNorm
        grouped, axes = x.reshape(n, groups, c // groups, h, w), (0, 2, 3, 4)
    elif mistake == "per channel":      # InstanceNorm whatever G is
        grouped, axes = x.reshape(n, c, 1, h, w), (2, 3, 4)
    else:
        grouped, axes = x.reshape(n, groups, c // groups, h, w), (2, 3, 4)
    mean = grouped.mean(axis=axes, keepdims=True)
    var = grouped.var(axis=axes, ddof=1 if mistake == "unbiased" else 0, keepdims=True)
    scale = np.sqrt(var) + eps if mistake == "eps outside" else np.sqrt(var + eps)
    x_hat = ((grouped - mean) / scale).reshape(n, c, h, w)
    return gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)


@checker("group_norm")
def check_group_norm(t: Tester, answer: Any) -> None:
    """Compared with F.group_norm on batches whose channels differ in mean and scale, for G = C/2,
    G = 1 (LayerNorm), G = C (InstanceNorm) and a large eps."""
    rng = np.random.default_rng(4)
    for shape, groups, eps in [((3, 6, 4, 5), 3, 1e-5), ((2, 4, 3, 3), 1, 1e-5), ((2, 4, 2, 3), 4, 1e-5),
                               ((4, 6, 1, 3), 2, 0.1)]:
        c = shape[1]
        x = rng.normal(size=shape) * rng.uniform(0.5, 3, size=(1, c, 1, 1)) + rng.normal(size=(1, c, 1, 1))
        x += rng.normal(0, 2, size=(shape[0], 1, 1, 1))          # each image its own offset
        gamma, beta = rng.uniform(0.5, 2, size=c), rng.normal(size=c)
        t.case(f"group_norm(<x {shape}>, num_groups={groups}, gamma, beta, eps={eps})")
        expected = F.group_norm(torch.tensor(x), groups, torch.tensor(gamma), torch.tensor(beta), eps).numpy()
        with forbid("group_norm", "layer_norm", "instance_norm", "batch_norm",
                    hint="compute the mean and variance of each group with NumPy"):
            got = t.call(answer, x.copy(), groups, gamma.copy(), beta.copy(), eps=eps)

        def wrong(mistake: str) -> Callable[[], np.ndarray]:
            return lambda: _group_norm(x, groups, gamma, beta, eps, mistake)

        t.close(got, expected, "per image and group: reshape x to (N, G, C/G, H, W), mean and variance over "
                "axes (2, 3, 4), normalise, reshape back, then gamma · x̂ + beta per channel", alternatives=[
                    (wrong("batch"), "statistics per image: GroupNorm never mixes the images of a batch "
                                     "(average over the group's channels and positions, not over axis 0)"),
                    (wrong("strided"), "a group is C/G consecutive channels: channels 0 .. C/G - 1 form group 0; "
                                       "reshape to (N, G, C/G, H, W), not (N, C/G, G, H, W)"),
                    (wrong("per channel"), "a group spans C/G channels: take the mean and variance over all of "
                                           "them together, not channel by channel"),
                    (wrong("unbiased"), "use the biased variance (divide by the number of values, np.var's "
                                        "default), as GroupNorm does"),
                    (wrong("eps outside"), "eps goes inside the square root: sqrt(var + eps)"),
                    (lambda: beta.reshape(1, -1, 1, 1) * _group_norm(x, groups, np.ones(c), np.zeros(c), eps)
                     + gamma.reshape(1, -1, 1, 1), "gamma scales and beta shifts: gamma · x̂ + beta")],
                shape_hint="y has the shape of x")


TRAIN_ACCUMULATING = '''\
def train_accumulating(model, loader, optimizer, loss_fn, steps):
    """One pass over loader in training mode, one optimizer step per `steps` batches: each batch's loss
    divided by `steps` is backpropagated and the gradients add up; step (then zero the gradients) after
    every `steps`-th batch and after the last one. Returns the mean loss over all images (a float)."""
    raise NotImplementedError
'''


def _accumulate(model: nn.Module, loader: list, optimizer: torch.optim.Optimizer, loss_fn: Callable, steps: int,
                mistake: str = "") -> List[float]:
    """The epoch with gradient accumulation, or with one named mistake (for the hints)."""
    if mistake != "no train":
        model.train()
    optimizer.zero_grad()
    losses = []
    for k, (x, y) in enumerate(loader, 1):
        if mistake == "zero every batch":
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        (loss if mistake == "no scaling" else loss / steps).backward()
        if k % steps == 0 or (k == len(loader) and mistake != "no last step"):
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def _params(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


@checker("train_accumulating")
def check_train_accumulating(t: Tester, answer: Any) -> None:
    """The weights after the learner's epoch and its mean loss, against the same epoch run here; the
    first case also checks that two accumulated batches make the step of one batch twice their size."""
    generator = torch.Generator().manual_seed(5)
    for name, sizes, steps, make_optimizer in [
            ("SGD, 4 batches of 6, steps=2", [6, 6, 6, 6], 2, lambda p: torch.optim.SGD(p, lr=0.5)),
            ("SGD with momentum, 7 batches, steps=3", [4, 4, 4, 4, 4, 4, 3], 3,
             lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
            ("Adam, 5 batches, steps=2", [5, 5, 5, 5, 2], 2, lambda p: torch.optim.Adam(p, lr=0.01))]:
        equal = len(set(sizes)) == 1      # then without BatchNorm, to compare with one step on bigger batches
        t.case(f"train_accumulating on a small network {'' if equal else 'with BatchNorm '}in eval mode, {name}")
        norm = nn.Identity() if equal else nn.BatchNorm1d(8)
        model = nn.Sequential(nn.Linear(4, 8), norm, nn.Tanh(), nn.Linear(8, 3)).eval()
        loader = [(torch.randn(n, 4, generator=generator), torch.randint(0, 3, (n,), generator=generator)) for n in sizes]

        def run(mistake: str) -> tuple:
            twin = copy.deepcopy(model)
            losses = _accumulate(twin, loader, make_optimizer(twin.parameters()), nn.CrossEntropyLoss(), steps, mistake)
            return _params(twin), losses

        learner = copy.deepcopy(model)
        got = t.call(answer, learner, loader, make_optimizer(learner.parameters()), nn.CrossEntropyLoss(), steps)
        weights, losses = run("")
        if equal:     # accumulating 2 batches of 6 is one step on the 12 images together
            big = copy.deepcopy(model).train()
            big_optimizer = torch.optim.SGD(big.parameters(), lr=0.5)
            for i in (0, 2):
                big_optimizer.zero_grad()
                nn.CrossEntropyLoss()(big(torch.cat([loader[i][0], loader[i + 1][0]])),
                                      torch.cat([loader[i][1], loader[i + 1][1]])).backward()
                big_optimizer.step()
            weights = _params(big)
        t.close(_params(learner), weights, "backward loss / steps for every batch; optimizer.step() and "
                "optimizer.zero_grad() after every steps-th batch and after the last", alternatives=[
                    (lambda: run("no scaling")[0], "divide each batch's loss by steps before backward: summed "
                                                   "gradients of steps batches are steps times too large"),
                    (lambda: run("zero every batch")[0], "zero the gradients only after a step, not before every "
                                                         "batch: the gradients of the batches must add up"),
                    (lambda: run("no last step")[0], "take a step after the last batch too, even when fewer than "
                                                     "steps batches are left"),
                    (lambda: run("no train")[0], "call model.train() first: the model came in eval mode")],
                shape_hint="train the model you were given, without changing its layers", atol=1e-5)
        mean = float(np.dot(losses, sizes) / sum(sizes))
        t.close(t.array(got), mean, "return the mean loss over all images (each batch's loss before dividing by "
                "steps, weighted by the batch size)", alternatives=[
                    (mean / steps, "return the loss before dividing it by steps"),
                    (float(np.mean(losses)), "weight each batch's loss by its size: the last batch is smaller"),
                    (losses[-1], "return the mean over the whole epoch, not the last batch's loss")],
                shape_hint="return one number")


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
    Exercise("group_norm", "Normalise each image on its own (GroupNorm)", "BatchNorm, by hand",
             check_group_norm, GROUP_NORM),
    Exercise("train_accumulating", "Gradient accumulation", "The training loop, by hand",
             check_train_accumulating, TRAIN_ACCUMULATING),
    Exercise("eval_accuracy", "Accuracy in eval mode", "Training the article's way", check_eval_accuracy,
             EVAL_ACCURACY),
    Exercise("one_cycle_lr", "The one-cycle learning-rate schedule", "A better recipe for the same network",
             check_one_cycle_lr, ONE_CYCLE_LR),
    Exercise("random_crop_flip", "Random crops and flips for a whole batch", "A better recipe for the same network",
             check_random_crop_flip, RANDOM_CROP_FLIP),
]
