"""Exercises of notebook 4 (ResNet-50 on Fashion-MNIST): the Keras article's bottleneck block,
Keras's parameter total, global average pooling, and the kernel positions that ever meet a pixel."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, forbid, transfer
from cnncourse.models.article import ArticleBottleneck, resnet50_keras_article

KERAS_BOTTLENECK = '''\
from torch import nn


class KerasBottleneck(nn.Module):
    """The article's bottleneck: 1x1 conv (in -> width), BN, ReLU, 3x3 conv (padding 1), BN, ReLU,
    1x1 conv (width -> out), BN; every conv with a bias. Shortcut: the identity, or a biased 1x1 conv
    without BN when in_channels != out_channels. Output: ReLU(F(x) + shortcut(x))."""

    def __init__(self, in_channels, width, out_channels):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError
'''


@checker("KerasBottleneck")
def check_keras_bottleneck(t: Tester, answer: Any) -> None:
    """Parameter count and outputs (train and eval mode) against cnncourse's ArticleBottleneck with
    the same weights and random BatchNorm statistics."""
    generator = torch.Generator().manual_seed(11)
    for c, w, out in [(16, 8, 32), (32, 8, 32), (8, 4, 16)]:
        t.case(f"KerasBottleneck({c}, {w}, {out})")
        reference, block = ArticleBottleneck(c, w, out), t.module(answer, c, w, out)
        expected = sum(p.numel() for p in reference.parameters())
        projection = c * out + out if c != out else 0
        t.equal(sum(p.numel() for p in block.parameters()), expected, "1x1, 3x3 and 1x1 convolutions with biases, "
                "three BatchNorms, and the 1x1 shortcut convolution when the channels change",
                alternatives=[(expected - 2 * w - out - (out if projection else 0), "every Keras convolution has a "
                               "bias (use_bias=True by default): keep bias=True"),
                              (expected + 2 * out, "the article's shortcut is a bare 1x1 convolution, no BatchNorm"),
                              (expected - projection, "when in_channels != out_channels the shortcut is a 1x1 "
                               "convolution to out_channels")])
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator).abs() + 0.2)
        transfer(t, reference, block)
        x = torch.randn(4, c, 6, 6, generator=generator)
        for mode in ("train", "eval"):
            reference.train(mode == "train")
            block.train(mode == "train")
            t.case(f"KerasBottleneck({c}, {w}, {out}) in {mode} mode, with ArticleBottleneck's weights")
            with torch.no_grad():
                expected_out, got = reference(x), t.array(t.call(block, x.clone()))
            negative = got.shape == tuple(expected_out.shape) and (got < 0).any()
            t.close(got, expected_out, "the last ReLU comes after adding the shortcut: relu(F(x) + shortcut(x))"
                    if negative else "conv, BN, ReLU twice, then conv, BN, add the shortcut, ReLU",
                    shape_hint="padding=1 on the 3x3 convolution keeps the size", atol=1e-4)


KERAS_PARAM_TOTAL = '''\
def keras_param_total(model):
    """What Keras's model.summary() reports as "Total params" for the same network: PyTorch's
    parameters plus every BatchNorm's running mean and running variance."""
    raise NotImplementedError
'''


@checker("keras_param_total")
def check_keras_param_total(t: Tester, answer: Any) -> None:
    """Small networks with BatchNorm layers (and a frozen layer), then the article's ResNet-50 on
    the meta device: 26,313,218 as Keras reported."""
    def conv_net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))

    def mixed_net() -> nn.Module:
        net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
        net[0].requires_grad_(False)
        return net

    for title, build in [("a conv net with two BatchNorm2d", conv_net), ("a net with a frozen layer and a "
                         "BatchNorm1d", mixed_net), ("a net without BatchNorm", lambda: nn.Linear(7, 2)),
                         ("resnet50_keras_article() on the meta device", resnet50_keras_article)]:
        t.case(f"keras_param_total({title})")
        with torch.device("meta"):
            model = build()
        bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))]
        params = sum(p.numel() for p in model.parameters())
        statistics = sum(2 * m.num_features for m in bns)
        t.equal(t.call(answer, model), params + statistics, "parameters + 2C for every BatchNorm over C channels",
                alternatives=[(params, "add BatchNorm's running mean and variance: 2C per BatchNorm (Keras's "
                               "non-trainable weights)"),
                              (params + statistics + len(bns), "num_batches_tracked is a step counter, not a Keras "
                               "weight: count only running_mean and running_var"),
                              (params + 2 * statistics, "gamma and beta are parameters already: add only the two "
                               "running statistics"),
                              (sum(p.numel() for p in model.parameters() if p.requires_grad) + statistics,
                               "count every parameter, trainable or not")])


GLOBAL_AVG_POOL = '''\
def global_avg_pool(x):
    """Global average pooling of x (N, C, H, W): the mean of each channel over all positions, (N, C)."""
    raise NotImplementedError
'''


@checker("global_avg_pool")
def check_global_avg_pool(t: Tester, answer: Any) -> None:
    """Compared with F.adaptive_avg_pool2d(x, 1), which the learner's code may not call."""
    generator = torch.Generator().manual_seed(12)
    for shape in [(2, 3, 4, 5), (1, 8, 1, 1), (3, 2, 7, 7)]:
        t.case(f"global_avg_pool(<x {shape}>)")
        x = torch.randn(shape, generator=generator)
        expected = F.adaptive_avg_pool2d(x, 1).flatten(1)
        with forbid("adaptive_avg_pool2d", "avg_pool2d", hint="take the mean over the last two axes"):
            got = t.array(t.call(answer, x.clone()))
        t.close(got, expected, "the mean over the height and width axes, x.mean(dim=(2, 3))", alternatives=[
            (expected * shape[2] * shape[3], "divide by H·W: average, not sum"),
            (x.amax(dim=(2, 3)), "average, don't take the maximum"),
            (expected[..., None, None], "flatten to (N, C): one number per channel")],
            shape_hint="the output is (N, C): average over the last two axes only", atol=1e-5)


LIVE_TAPS = '''\
def live_taps(n, kernel, stride, padding):
    """How many of a kernel's `kernel` positions along one axis multiply a real pixel (not padding)
    for at least one output position, sliding over n pixels with this stride and padding."""
    raise NotImplementedError
'''


def _live_taps(n: int, kernel: int, stride: int, padding: int, every: bool = False) -> int:
    """Kernel positions j along one axis with input index i*stride + j - padding inside [0, n) for some
    output i (for every output i when ``every``), i in range((n + 2*padding - kernel) // stride + 1)."""
    outputs = range((n + 2 * padding - kernel) // stride + 1)
    test = all if every else any
    return sum(test(0 <= i * stride + j - padding < n for i in outputs) for j in range(kernel))


@checker("live_taps")
def check_live_taps(t: Tester, answer: Any) -> None:
    """Against a direct enumeration of the windows; the cases include the paper's layer4.0.conv2 on a
    2x2 map (stride 2: two of three taps per axis), 1x1 maps, the 28-pixel stem and a 5x5 window."""
    for n, k, s, p in [(1, 3, 1, 1), (2, 3, 2, 1), (7, 3, 1, 1), (2, 3, 1, 1), (1, 7, 2, 3), (28, 7, 2, 3),
                       (2, 5, 1, 2), (3, 3, 2, 1), (4, 1, 2, 0)]:
        t.case(f"live_taps({n}, {k}, {s}, {p})")
        expected = _live_taps(n, k, s, p)
        t.equal(t.call(answer, n, k, s, p), expected,
                "enumerate the outputs i = 0 .. (n + 2p - k) // s and count the positions j whose input "
                "index i·s + j - p lies in 0 .. n-1 for at least one of them",
                alternatives=[(_live_taps(n, k, 1, p), "the stride skips windows: output i starts at i·s - p, "
                               "and there are only (n + 2p - k) // s + 1 outputs"),
                              (expected ** 2, "count along one axis: the k x k kernel's live weights are "
                               "this number squared"),
                              (_live_taps(n, k, s, p, every=True), "a position is live if it meets a real pixel "
                               "at ANY output, not at every one"),
                              (min(k, n), "a short axis can still reach every tap (and a stride can skip "
                               "some): check each output window")])


EXERCISES = [
    Exercise("KerasBottleneck", "The article's bottleneck block", 'The article\'s "ResNet-50", rebuilt in PyTorch',
             check_keras_bottleneck, KERAS_BOTTLENECK),
    Exercise("keras_param_total", "Keras's total parameter count", "Keras's 26,313,218 against PyTorch's 26,267,778",
             check_keras_param_total, KERAS_PARAM_TOTAL),
    Exercise("global_avg_pool", "Global average pooling", "The paper's ResNet-50 is a different network",
             check_global_avg_pool, GLOBAL_AVG_POOL),
    Exercise("live_taps", "Which weights ever meet a pixel?", "What a 3x3 convolution sees on a tiny map",
             check_live_taps, LIVE_TAPS),
]
