"""Convolution, pooling and dense layers from scratch in NumPy, for notebook 1.

Clarity first: plain loops that follow the formulas, each checked in the tests (and in the
notebook) against ``torch.nn.functional``. Images are arrays of shape (H, W) or (C, H, W).
Like PyTorch (and every deep-learning library), "convolution" here is cross-correlation:
the filter is not flipped.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import numpy as np

__all__ = [
    "output_size", "same_padding", "pad", "conv2d_single", "conv2d", "max_pool2d", "avg_pool2d",
    "relu", "sigmoid", "dense", "dense_with_bias_trick",
    "dense_param_count", "locally_connected_param_count", "conv_param_count", "dense_vs_conv_params",
    "VERTICAL_LINE_FILTER", "HORIZONTAL_LINE_FILTER",
]

#: The article's 3x3 vertical-line detector: responds to a bright one-pixel-wide vertical line.
VERTICAL_LINE_FILTER = np.array([[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]], dtype=float)
#: Its transpose, a horizontal-line detector.
HORIZONTAL_LINE_FILTER = VERTICAL_LINE_FILTER.T.copy()


def output_size(n: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Output length of a convolution or pooling along one axis: ``floor((n + 2p - k) / s) + 1``.

    ``n`` input length, ``kernel`` k, ``padding`` p zeros on each side, ``stride`` s. A window
    that would hang over the padded edge is dropped, hence the floor (PyTorch does the same).
    """
    if n + 2 * padding < kernel:
        raise ValueError(f"kernel {kernel} is larger than the padded input {n} + 2*{padding}")
    return (n + 2 * padding - kernel) // stride + 1


def same_padding(kernel: int) -> int:
    """Padding that keeps the size at stride 1 ("same" padding): ``p = (k - 1) / 2`` for odd ``k``.

    With it, ``output_size(n, k, p, 1) == n``; it is what ``nn.Conv2d(..., padding=p)`` needs
    (PyTorch's ``padding="same"`` computes the same for odd kernels). An even kernel would need
    one more zero on one side than on the other, so it is refused.
    """
    if kernel % 2 == 0:
        raise ValueError(f"'same' padding needs an odd kernel (an even one pads unevenly); got {kernel}")
    return (kernel - 1) // 2


def pad(image: np.ndarray, p: int) -> np.ndarray:
    """Zero padding: ``p`` rows/columns of zeros around the last two axes of (H, W) or (C, H, W)."""
    image = np.asarray(image)
    widths = [(0, 0)] * (image.ndim - 2) + [(p, p), (p, p)]
    return np.pad(image, widths, mode="constant", constant_values=0)


def conv2d_single(image: np.ndarray, filt: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Single-channel convolution (cross-correlation) of an (H, W) image with a (k, k) filter.

    For a filter of size k = 2N + 1 and the zero-padded image I (padding p), output pixel (x, y) is::

        I'[x, y] = sum_{i, j = -N..N} I[s*x + i, s*y + j] * F[i + N, j + N]

    where (s*x, s*y) is the window's centre in original-image coordinates when p = N ("same"
    padding). In padded coordinates the window's top-left corner is (s*x, s*y), which is how the
    loops below index it (this also works for even or rectangular filters).
    """
    image = pad(np.asarray(image, dtype=float), padding)
    filt = np.asarray(filt, dtype=float)
    kh, kw = filt.shape
    out_h = output_size(image.shape[0], kh, 0, stride)
    out_w = output_size(image.shape[1], kw, 0, stride)
    out = np.zeros((out_h, out_w))
    for x in range(out_h):
        for y in range(out_w):
            window = image[stride * x: stride * x + kh, stride * y: stride * y + kw]
            out[x, y] = np.sum(window * filt)
    return out


def conv2d(x: np.ndarray, filters: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: int = 1, padding: int = 0) -> np.ndarray:
    """Multi-channel convolution: ``x`` (K, H, W), ``filters`` (M, K, k, k), ``bias`` (M,) -> (M, H', W').

    Every filter has the input's depth K and produces one output channel, so M filters give
    depth M. With the zero-padded input I::

        out[m, x, y] = sum_{k=0..K-1} sum_{i, j} I[k, s*x + i, s*y + j] * F[m, k, i, j] + b[m]

    i.e. a single-channel convolution per input channel, summed over the channels, plus a bias.
    """
    x = np.asarray(x, dtype=float)
    filters = np.asarray(filters, dtype=float)
    num_filters, depth, kh, kw = filters.shape
    if x.ndim != 3 or x.shape[0] != depth:
        raise ValueError(f"input must be (K, H, W) with K = {depth} (the filters' depth); got {x.shape}")
    out = np.stack([
        sum(conv2d_single(x[k], filters[m, k], stride, padding) for k in range(depth))
        for m in range(num_filters)
    ])
    if bias is not None:
        out += np.asarray(bias, dtype=float).reshape(num_filters, 1, 1)
    return out


def _pool2d(image: np.ndarray, kernel: int, stride: Optional[int], reduce: Callable[[np.ndarray], float]) -> np.ndarray:
    image = np.asarray(image, dtype=float)
    if image.ndim == 3:  # pooling acts on each channel separately: the depth is unchanged
        return np.stack([_pool2d(channel, kernel, stride, reduce) for channel in image])
    stride = kernel if stride is None else stride
    out_h = output_size(image.shape[0], kernel, 0, stride)
    out_w = output_size(image.shape[1], kernel, 0, stride)
    out = np.zeros((out_h, out_w))
    for x in range(out_h):
        for y in range(out_w):
            out[x, y] = reduce(image[stride * x: stride * x + kernel, stride * y: stride * y + kernel])
    return out


def max_pool2d(image: np.ndarray, kernel: int = 2, stride: Optional[int] = None) -> np.ndarray:
    """Max pooling of (H, W) or (C, H, W): ``out[x, y] = max_{0 <= i, j < k} I[s*x + i, s*y + j]``.

    The stride defaults to the kernel size (non-overlapping windows), as in PyTorch.
    """
    return _pool2d(image, kernel, stride, np.max)


def avg_pool2d(image: np.ndarray, kernel: int = 2, stride: Optional[int] = None) -> np.ndarray:
    """Average pooling: ``out[x, y] = (1 / k^2) * sum_{0 <= i, j < k} I[s*x + i, s*y + j]``; stride defaults to k."""
    return _pool2d(image, kernel, stride, np.mean)


def relu(z: np.ndarray) -> np.ndarray:
    """Rectified linear unit, ``max(0, z)`` element-wise."""
    return np.maximum(z, 0.0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-z))`` element-wise."""
    return 1.0 / (1.0 + np.exp(-z))


_ACTIVATIONS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {"relu": relu, "sigmoid": sigmoid, "tanh": np.tanh}
Activation = Union[None, str, Callable[[np.ndarray], np.ndarray]]


def _activation(activation: Activation) -> Callable[[np.ndarray], np.ndarray]:
    if activation is None:
        return lambda z: z
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; use None, a function or one of {list(_ACTIVATIONS)}")
    return _ACTIVATIONS[activation]


def dense(x: np.ndarray, W: np.ndarray, b: np.ndarray, activation: Activation = None) -> np.ndarray:
    """Dense (fully connected) layer ``x' = f(W x + b)``: ``x`` (n,), ``W`` (m, n), ``b`` (m,) -> (m,).

    ``activation`` f is None (identity), a function, or "relu", "sigmoid", "tanh".
    """
    x, W, b = (np.asarray(a, dtype=float) for a in (x, W, b))
    return _activation(activation)(W @ x + b)


def dense_with_bias_trick(x: np.ndarray, W: np.ndarray, b: np.ndarray, activation: Activation = None) -> np.ndarray:
    """The same layer with the bias folded into the weights: append a constant input 1 to ``x`` and
    ``b`` as an extra column of ``W``, then ``x' = f(W' x'')`` with ``W' = [W | b]``, ``x'' = [x; 1]``."""
    x, W, b = (np.asarray(a, dtype=float) for a in (x, W, b))
    x_ext = np.append(x, 1.0)
    W_ext = np.hstack([W, b.reshape(-1, 1)])
    return _activation(activation)(W_ext @ x_ext)


def dense_param_count(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of a dense layer: one weight per (input, output) pair plus one bias per output."""
    return in_features * out_features + (out_features if bias else 0)


def conv_param_count(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> int:
    """Parameters of a conv layer: ``M * (K * k * k) + M`` -- independent of the image size,
    because every output position shares the same M filters (weight sharing)."""
    return out_channels * in_channels * kernel * kernel + (out_channels if bias else 0)


def locally_connected_param_count(height: int, width: int, in_channels: int, out_channels: int,
                                  kernel: int, padding: int = 0, stride: int = 1, bias: bool = True) -> int:
    """Parameters with local receptive fields but *without* weight sharing: every output position
    has its own k x k x K filter per output channel."""
    positions = output_size(height, kernel, padding, stride) * output_size(width, kernel, padding, stride)
    return positions * conv_param_count(in_channels, out_channels, kernel, bias)


def dense_vs_conv_params(height: int, width: int, in_channels: int, out_channels: int, kernel: int,
                         padding: Optional[int] = None, stride: int = 1, bias: bool = True) -> Dict[str, int]:
    """Parameter counts of three layers mapping the same (in_channels, height, width) input to the
    same (out_channels, H', W') output: dense (every input to every output), locally connected
    (local receptive fields only) and convolutional (local receptive fields + weight sharing).
    ``padding`` defaults to "same" padding.
    """
    padding = same_padding(kernel) if padding is None else padding
    out_h = output_size(height, kernel, padding, stride)
    out_w = output_size(width, kernel, padding, stride)
    return {
        "dense": dense_param_count(in_channels * height * width, out_channels * out_h * out_w, bias),
        "locally_connected": locally_connected_param_count(height, width, in_channels, out_channels, kernel,
                                                           padding, stride, bias),
        "conv": conv_param_count(in_channels, out_channels, kernel, bias),
    }
