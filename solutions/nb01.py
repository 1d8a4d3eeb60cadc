"""Reference solutions of notebook 1's exercises (CNN theory), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb01`` checks them.
"""
import numpy as np
import torch
import torch.nn.functional as F


def conv_params(in_channels, out_channels, kernel, bias=True):
    """Number of parameters of nn.Conv2d(in_channels, out_channels, kernel, bias=bias)."""
    return out_channels * in_channels * kernel * kernel + (out_channels if bias else 0)


def stack_output_size(n, layers):
    """Side length after a stack of convolutions or poolings applied to an n x n input."""
    for kernel, padding, stride in layers:
        n = (n + 2 * padding - kernel) // stride + 1
    return n


def conv2d_strided(image, filt, stride=1, padding=0):
    """Single-channel cross-correlation of an (H, W) image with a (kh, kw) filter, zero padding, stride."""
    image = np.pad(np.asarray(image, dtype=float), padding)
    kh, kw = filt.shape
    out_h = (image.shape[0] - kh) // stride + 1
    out_w = (image.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w))
    for x in range(out_h):
        for y in range(out_w):
            out[x, y] = np.sum(image[stride * x: stride * x + kh, stride * y: stride * y + kw] * filt)
    return out


def learn_filter(images, responses, steps=300, lr=0.1):
    """Find the 3x3 filter w with F.conv2d(images, w, padding=1) == responses by gradient descent."""
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(F.conv2d(images, w, padding=1), responses)
        loss.backward()
        optimizer.step()
    return w.detach()[0, 0]


def avg_pool_via_conv(x, kernel):
    """k x k average pooling (stride k) of (N, C, H, W) as one F.conv2d call."""
    channels = x.shape[1]
    weight = torch.full((channels, 1, kernel, kernel), 1.0 / kernel ** 2, dtype=x.dtype)
    return F.conv2d(x, weight, stride=kernel, groups=channels)
