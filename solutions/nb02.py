"""Reference solutions of notebook 2's exercises (LeNet on CIFAR-10), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb02`` checks them.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def group_norm(x, num_groups, gamma, beta, eps=1e-5):
    """GroupNorm in NumPy: each group of C / num_groups consecutive channels of each image normalised
    with its own mean and (biased) variance, then scaled and shifted per channel."""
    n, c, h, w = x.shape
    groups = x.reshape(n, num_groups, c // num_groups, h, w)
    mean = groups.mean(axis=(2, 3, 4), keepdims=True)
    var = groups.var(axis=(2, 3, 4), keepdims=True)
    x_hat = ((groups - mean) / np.sqrt(var + eps)).reshape(n, c, h, w)
    return gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)


def train_accumulating(model, loader, optimizer, loss_fn, steps):
    """One pass in training mode with one optimizer step per `steps` batches; the mean loss over all images."""
    model.train()
    optimizer.zero_grad()
    total, count = 0.0, 0
    for k, (images, labels) in enumerate(loader, 1):
        loss = loss_fn(model(images), labels)
        (loss / steps).backward()                    # gradients add up until the step
        if k % steps == 0 or k == len(loader):
            optimizer.step()
            optimizer.zero_grad()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / count


def one_cycle_lr(step, total_steps, max_lr, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """Learning rate of step `step` under PyTorch's OneCycleLR with cosine annealing."""
    initial = max_lr / div_factor
    final = initial / final_div_factor
    warm_end = pct_start * total_steps - 1
    last = total_steps - 1

    def anneal(start, end, fraction):
        return end + (start - end) / 2 * (math.cos(math.pi * fraction) + 1)

    if step <= warm_end:
        return anneal(initial, max_lr, step / warm_end)
    return anneal(max_lr, final, (step - warm_end) / (last - warm_end))


def random_crop_flip(images, pad):
    """Pad with zeros, cut a random H x W window per image, mirror it with probability 1/2."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    flip = torch.rand(n) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out


def eval_accuracy(model, loader):
    """Share of correctly classified images, in eval mode and without gradients."""
    model.eval()
    right, total = 0, 0
    with torch.no_grad():
        for images, labels in loader:
            right += (model(images).argmax(dim=1) == labels).sum().item()
            total += len(labels)
    return right / total
