"""Reference solutions of notebook 5's exercises (VGG16 on Galaxy10), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb05`` checks them.
"""
import numpy as np
import torch


def my_stratified_split(labels, test_fraction=0.1, seed=0):
    """(train_indices, test_indices) with round(test_fraction * n) of every class in test."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        n_test = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        test.extend(rng.choice(members, size=n_test, replace=False))
    test = np.sort(np.array(test, dtype=int))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def receptive_field(layers):
    """r = 1 + sum of (k - 1) times the product of the strides of the layers before."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def vgg_config(convs_per_block):
    """VGG's configuration list: each block's convolutions at its width, then "M"."""
    config = []
    for width, count in zip((64, 128, 256, 512, 512), convs_per_block):
        config += [width] * count + ["M"]
    return config


def vgg_params(config, num_classes):
    """Convolutions 9·C_in·C_out + C_out each (C_in: the previous width, 3 at first), then the
    classifier last_width·7·7 -> 4096 -> 4096 -> num_classes, n·m + m per dense layer."""
    total, channels = 0, 3
    for item in config:
        if item != "M":
            total += 9 * channels * item + item
            channels = item
    sizes = [channels * 7 * 7, 4096, 4096, num_classes]
    return total + sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))


def my_dropout(x, p, training):
    """Channel dropout: zero each map x[n, c] with probability p and scale the rest by 1 / (1 - p),
    in training only."""
    if not training:
        return x
    n, c = x.shape[:2]
    keep = torch.rand(n, c, 1, 1) >= p
    return x * keep / (1 - p)
