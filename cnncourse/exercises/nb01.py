"""Exercises of notebook 1 (CNN theory): parameter counts, output sizes, strided convolution,
pooling as a convolution, and learning a filter by gradient descent."""
from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, forbid

CONV_PARAMS = '''\
def conv_params(in_channels, out_channels, kernel, bias=True):
    """Number of parameters of nn.Conv2d(in_channels, out_channels, kernel, bias=bias)."""
    raise NotImplementedError
'''


@checker("conv_params")
def check_conv_params(t: Tester, answer: Any) -> None:
    """M filters of C x k x k weights, plus M biases; compared with nn.Conv2d's own count."""
    for c, m, k, bias in [(3, 6, 5, True), (6, 16, 5, True), (1, 4, 3, False), (64, 128, 3, False), (3, 64, 7, True)]:
        t.case(f"conv_params({c}, {m}, {k}, bias={bias})")
        with torch.device("meta"):
            expected = sum(p.numel() for p in nn.Conv2d(c, m, k, bias=bias).parameters())
        t.equal(t.call(answer, c, m, k, bias=bias), expected, "a conv layer has M(C·k² + 1) parameters with a bias",
                alternatives=[(m * c * k * k, "add one bias per filter (output channel) when bias=True"),
                              (m * c * k * k + m, "bias=False: the layer has no biases"),
                              (m * (k * k + int(bias)), "each filter has the input's depth C: C·k·k weights"),
                              (m * c * k + m * int(bias), "a k x k filter has k·k weights per channel")])


STACK_OUTPUT_SIZE = '''\
def stack_output_size(n, layers):
    """Side length after a stack of convolutions or poolings applied to an n x n input.

    layers: a list of (kernel, padding, stride) tuples, applied in order.
    """
    raise NotImplementedError
'''


def _stack(n: float, layers: List[Tuple[int, int, int]], rule: str) -> float:
    for k, p, s in layers:
        n = {"no floor": (n + 2 * p - k) / s + 1, "ceil": -(-(n + 2 * p - k) // s) + 1,
             "one p": (n + p - k) // s + 1, "no +1": (n + 2 * p - k) // s}[rule]
    return n


@checker("stack_output_size")
def check_stack_output_size(t: Tester, answer: Any) -> None:
    """Compared with the shape PyTorch's conv2d really produces, layer after layer."""
    cases = [(32, [(5, 0, 1)]), (32, [(5, 2, 1)]), (31, [(3, 1, 2)]), (7, [(3, 0, 3)]), (8, [(3, 0, 2)]),
             (32, [(5, 0, 1), (2, 0, 2), (5, 0, 1), (2, 0, 2)]), (224, [(7, 3, 2), (3, 1, 2)]),
             (28, [(7, 3, 2), (3, 1, 2), (1, 0, 2), (1, 0, 2), (1, 0, 2)])]
    for n, layers in cases:
        t.case(f"stack_output_size({n}, {layers})")
        x = torch.zeros(1, 1, n, n, device="meta")
        for k, p, s in layers:
            x = F.conv2d(x, torch.zeros(1, 1, k, k, device="meta"), padding=p, stride=s)
        t.equal(t.call(answer, n, list(layers)), x.shape[-1], "use n' = floor((n + 2p - k) / s) + 1 for every layer",
                alternatives=[(_stack(n, layers, "no floor"), "round down: (n + 2p - k) // s + 1, a whole number"),
                              (_stack(n, layers, "ceil"), "round down (floor), not up: a window that would hang "
                                                          "over the edge is dropped"),
                              (_stack(n, layers, "one p"), "padding adds p zeros on each side: n + 2p"),
                              (_stack(n, layers, "no +1"), "off by one: add 1 (a window that fits once gives 1)")])


CONV2D_STRIDED = '''\
import numpy as np


def conv2d_strided(image, filt, stride=1, padding=0):
    """Single-channel convolution (cross-correlation, as in PyTorch) of an (H, W) NumPy image with a
    (kh, kw) filter, zero padding on every side and a stride; returns an (H', W') NumPy array."""
    raise NotImplementedError
'''


@checker("conv2d_strided")
def check_conv2d_strided(t: Tester, answer: Any) -> None:
    """Compared with torch.nn.functional.conv2d in float64."""
    rng = np.random.default_rng(1)
    article = np.zeros((4, 4))
    article[:2, :2] = [[2, 2], [1, 0]]
    vertical = np.array([[-1, 2, -1]] * 3, dtype=float)
    cases = [(article, vertical, 1, 1), (rng.normal(size=(6, 7)), rng.normal(size=(3, 3)), 1, 1),
             (rng.normal(size=(7, 7)), rng.normal(size=(3, 3)), 2, 1), (rng.normal(size=(7, 6)), rng.normal(size=(3, 3)), 2, 0),
             (rng.normal(size=(6, 6)), rng.normal(size=(2, 2)), 2, 0), (rng.normal(size=(9, 8)), rng.normal(size=(5, 5)), 3, 2)]

    def torch_conv(image: np.ndarray, filt: np.ndarray, stride: int, padding: int) -> np.ndarray:
        return F.conv2d(torch.tensor(image)[None, None], torch.tensor(filt.copy())[None, None],
                        stride=stride, padding=padding)[0, 0].numpy()

    for image, filt, stride, padding in cases:
        t.case(f"conv2d_strided(<{image.shape[0]}x{image.shape[1]} image>, <{filt.shape[0]}x{filt.shape[1]} filter>, "
               f"stride={stride}, padding={padding})")
        got = t.call(answer, image.copy(), filt.copy(), stride=stride, padding=padding)
        t.close(got, torch_conv(image, filt, stride, padding), "output (x, y) is the sum of the window starting at "
                "(s·x, s·y) of the zero-padded image, times the filter",
                alternatives=[(lambda: torch_conv(image, filt[::-1, ::-1], stride, padding),
                               "don't flip the filter: deep learning's convolution is cross-correlation"),
                              (lambda: torch_conv(image, filt, 1, padding), "apply the stride: move the window s pixels"),
                              (lambda: torch_conv(image, filt, stride, 0), "pad the image with p zeros on every side "
                                                                           "first (np.pad)")],
                shape_hint="each side must have floor((n + 2p - k) / s) + 1 outputs")


AVG_POOL_VIA_CONV = '''\
import torch
import torch.nn.functional as F


def avg_pool_via_conv(x, kernel):
    """k x k average pooling (stride k) of a batch x of shape (N, C, H, W), written as one
    F.conv2d call (no pooling functions); returns (N, C, H // k, W // k)."""
    raise NotImplementedError
'''


@checker("avg_pool_via_conv")
def check_avg_pool_via_conv(t: Tester, answer: Any) -> None:
    """Compared with F.avg_pool2d, which the learner's code may not call."""
    generator = torch.Generator().manual_seed(2)
    for shape, k in [((2, 3, 8, 8), 2), ((1, 1, 9, 9), 3), ((2, 4, 8, 6), 4), ((1, 2, 4, 4), 4)]:
        t.case(f"avg_pool_via_conv(<tensor {shape}>, {k})")
        x = torch.randn(shape, generator=generator)
        expected, channels = F.avg_pool2d(x, k), shape[1]
        mixed = F.conv2d(x, torch.ones(channels, channels, k, k) / k ** 2, stride=k)
        alternatives = [(expected * k * k, "divide by k²: the filter's entries are 1/k², not 1"),
                        (F.avg_pool2d(x, k, stride=1), "pooling moves by the kernel size: stride=k"),
                        (mixed, "pool each channel on its own: a (C, C, k, k) filter sums over the channels; "
                                "use a (C, 1, k, k) filter with groups=C"),
                        (mixed / channels, "pool each channel on its own: use groups=C with a (C, 1, k, k) filter")]
        with forbid("avg_pool2d", "adaptive_avg_pool2d", hint="build the k x k averaging filter and call F.conv2d"):
            got = t.call(answer, x.clone(), k)
        t.close(got, expected, "a (C, 1, k, k) filter of 1/k², stride k, groups=C", alternatives,
                shape_hint="the output is (N, C, H // k, W // k): pooling keeps the channels (groups=C)", atol=1e-5)


LEARN_FILTER = '''\
import torch
import torch.nn.functional as F


def learn_filter(images, responses, steps=300, lr=0.1):
    """Find the 3x3 filter w with F.conv2d(images, w, padding=1) == responses by gradient descent
    on the mean squared error, from a random start. images, responses: tensors (N, 1, H, W).
    Returns w as a (3, 3) tensor."""
    raise NotImplementedError
'''


@checker("learn_filter")
def check_learn_filter(t: Tester, answer: Any) -> None:
    """Responses made by hidden filters (the article's vertical-line filter among them) must give the
    filter back to within 0.02."""
    generator = torch.Generator().manual_seed(3)
    vertical = torch.tensor([[-1.0, 2, -1], [-1, 2, -1], [-1, 2, -1]])
    for title, true in [("the vertical-line filter", vertical), ("a hidden random filter", torch.randn(3, 3, generator=generator))]:
        t.case(f"learn_filter on responses to {title}")
        images = torch.randn(8, 1, 10, 10, generator=generator)
        responses = F.conv2d(images, true[None, None], padding=1)
        got = t.array(t.call(answer, images.clone(), responses.clone()))
        if got.size == 9:
            got = got.reshape(3, 3)
        true = true.numpy()
        t.close(got, true, "not converged; the mean squared error should fall to almost 0: zero the gradient at "
                           "every step (optimizer.zero_grad()), use padding=1 as the responses did, and take more "
                           "steps or a larger learning rate",
                alternatives=[(true[::-1, ::-1], "the filter came out flipped: use F.conv2d (cross-correlation), "
                                                 "not a flipped convolution"),
                              (true.T, "rows and columns are swapped")],
                shape_hint="return the 3x3 filter itself", atol=0.02, rtol=0.0)


EXERCISES = [
    Exercise("conv_params", "Parameters of a convolution layer", "Local receptive fields and weight sharing",
             check_conv_params, CONV_PARAMS),
    Exercise("stack_output_size", "Output size of a stack of layers", "Padding and the output-size formula",
             check_stack_output_size, STACK_OUTPUT_SIZE),
    Exercise("conv2d_strided", "Convolution with stride and padding in NumPy", "Stride",
             check_conv2d_strided, CONV2D_STRIDED),
    Exercise("learn_filter", "Learn the vertical-line filter by gradient descent", "A line detector on a real image",
             check_learn_filter, LEARN_FILTER),
    Exercise("avg_pool_via_conv", "Average pooling as a convolution", "Pooling",
             check_avg_pool_via_conv, AVG_POOL_VIA_CONV),
]
