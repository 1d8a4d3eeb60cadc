"""Exercises of notebook 3 (ResNet on MNIST): top-k error, a block without a shortcut, the projection
shortcuts of a whole network and their parameters, the parameter-free shortcut (option A), and ResNet-34's
parameter count by formula."""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from cnncourse.exercises.check import Exercise, Tester, checker, transfer
from cnncourse.models.resnet import BasicBlock, Bottleneck, NoShortcutBlock, make_stage, resnet34

TOPK_ERROR = '''\
import torch


def topk_error(logits, labels, k=5):
    """Share (0 to 1) of the images whose true label is NOT among the k highest of their logits.
    logits: (N, classes) tensor; labels: (N,) tensor of class indices."""
    raise NotImplementedError
'''


@checker("topk_error")
def check_topk_error(t: Tester, answer: Any) -> None:
    """Compared with torch.topk."""
    generator = torch.Generator().manual_seed(8)
    for n, classes, k in [(50, 20, 5), (50, 20, 1), (40, 10, 3), (30, 1000, 5)]:
        t.case(f"topk_error(<logits {n} x {classes}>, <labels>, k={k})")
        logits, labels = torch.randn(n, classes, generator=generator), torch.randint(0, classes, (n,), generator=generator)
        labels[: n // 2] = logits[: n // 2].argsort(1, descending=True)[:, min(k, classes) - 1]   # half in the top k
        def error(top: torch.Tensor) -> float:
            return 1 - (top == labels[:, None]).any(1).float().mean().item()
        expected = error(logits.topk(k, dim=1).indices)
        got = t.array(t.call(answer, logits.clone(), labels.clone(), k=k))
        t.close(got, expected, "error = share of images whose label is not among logits.topk(k, dim=1).indices",
                alternatives=[(1 - expected, "that is the top-k accuracy: the error is 1 - accuracy"),
                              (100 * expected, "return a fraction between 0 and 1, not a percentage"),
                              (error(logits.argmax(1, keepdim=True)), "take the k largest logits, not only the argmax"),
                              (error(logits.topk(k, dim=1, largest=False).indices), "take the k LARGEST logits: "
                               "argsort sorts in ascending order")], shape_hint="return one number")


MY_NO_SHORTCUT_BLOCK = '''\
from torch import nn


class MyNoShortcutBlock(nn.Module):
    """The block of He et al.'s plain networks: 3x3 conv (carries the stride, padding 1, no bias),
    BN, ReLU, 3x3 conv (padding 1, no bias), BN, ReLU; no shortcut."""

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError
'''


@checker("MyNoShortcutBlock")
def check_my_no_shortcut_block(t: Tester, answer: Any) -> None:
    """Parameter count and outputs (train and eval mode) against cnncourse's NoShortcutBlock with the
    same weights and random BatchNorm statistics."""
    generator = torch.Generator().manual_seed(9)
    for c, w, s in [(8, 8, 1), (8, 16, 2), (4, 8, 1)]:
        t.case(f"MyNoShortcutBlock({c}, {w}, stride={s})")
        reference, block = NoShortcutBlock(c, w, s), t.module(answer, c, w, s)
        params = sum(p.numel() for p in block.parameters())
        expected = sum(p.numel() for p in reference.parameters())
        t.equal(params, expected, "two 3x3 convolutions without bias and two BatchNorms: 9CW + 9W² + 4W",
                alternatives=[(expected + 2 * w, "no bias in convolutions that a BatchNorm follows (bias=False)"),
                              (expected - 4 * w, "a BatchNorm after each convolution")])
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        transfer(t, reference, block)
        x = torch.randn(4, c, 8, 8, generator=generator)
        for mode in ("train", "eval"):
            reference.train(mode == "train")
            block.train(mode == "train")
            t.case(f"MyNoShortcutBlock({c}, {w}, stride={s}) in {mode} mode, with NoShortcutBlock's weights")
            twin = copy.deepcopy(reference)   # for the alternatives: a forward in train mode moves BN's statistics
            with torch.no_grad():
                expected_out, got = reference(x), t.call(block, x.clone())
                no_relu = twin.bn2(twin.conv2(F.relu(twin.bn1(twin.conv1(x)))))
            t.close(got, expected_out, "conv1 (stride, padding 1), BN, ReLU, conv2 (padding 1), BN, ReLU",
                    alternatives=[(no_relu, "end with a ReLU after the second BatchNorm"),
                                  (lambda: F.relu(no_relu + x), "this block has no shortcut: don't add x")],
                    shape_hint="padding=1 keeps the size; only the first convolution has the stride", atol=1e-5)


SHORTCUT_PARAMETERS = '''\
def shortcut_parameters(in_channels, stages, expansion=1):
    """The parameters of every block's shortcut, block by block: 0 for an identity shortcut, else those
    of its 1x1 conv + BN projection. in_channels: the channels entering the first block; stages: a list
    of (width, num_blocks, stride); a block outputs expansion * width channels; only the first block of
    a stage carries the stride."""
    raise NotImplementedError
'''


def _shortcuts(c_in: int, stages: list, expansion: int, article: bool = False, bn: int = 2, bias: int = 0,
               stride_every: bool = False, out_expansion: bool = True, next_expansion: bool = True) -> list:
    """Each block's shortcut parameters by a rule, right (the defaults) or with one plausible mistake."""
    counts, channels = [], c_in
    for width, blocks, stride in stages:
        out = width * (expansion if out_expansion else 1)
        for index in range(blocks):
            s = stride if index == 0 or stride_every else 1
            project = channels != out if article else (s != 1 or channels != out)
            counts.append(channels * out + (bn + bias) * out if project else 0)
            channels = out if next_expansion else width
    return counts


@checker("shortcut_parameters")
def check_shortcut_parameters(t: Tester, answer: Any) -> None:
    """Compared with the shortcuts make_stage builds (on the meta device): ResNet-20, a network that halves
    the size at a constant width, a stem narrower than the first stage, a stage that widens without a
    stride, and bottleneck stages in ResNet-50's layout (narrower, so that the message stays readable)."""
    cases = [(16, [(16, 3, 1), (32, 3, 2), (64, 3, 2)], 1), (32, [(32, 2, 1), (32, 2, 2)], 1),
             (8, [(16, 2, 1), (16, 1, 2)], 1), (16, [(16, 1, 1), (32, 2, 1)], 1),
             (8, [(8, 3, 1), (16, 4, 2), (32, 2, 2)], 4)]
    for c_in, stages, expansion in cases:
        t.case(f"shortcut_parameters({c_in}, {stages}, expansion={expansion})")
        expected, channels = [], c_in
        with torch.device("meta"):
            for width, blocks, stride in stages:
                for block in make_stage(BasicBlock if expansion == 1 else Bottleneck, channels, width, blocks, stride):
                    expected.append(0 if block.downsample is None else sum(p.numel() for p in block.downsample.parameters()))
                channels = width * expansion
        got = t.call(answer, c_in, [tuple(stage) for stage in stages], expansion)
        if isinstance(got, tuple):
            got = list(got)
        def rule(**mistake: Any) -> list:
            return _shortcuts(c_in, stages, expansion, **mistake)
        t.equal(got, expected, "a projection where the stride is not 1 or the channels change: C·C' + 2C' "
                "(1x1 conv without bias, BatchNorm's gamma and beta), else 0",
                alternatives=[(rule(article=True), "a stride-2 block halves the size, so x no longer fits F(x) even "
                               "with equal channels: project when the stride is not 1 OR the channels differ"),
                              (rule(bn=0), "the projection is a 1x1 convolution AND a BatchNorm: C·C' + 2C'"),
                              (rule(bias=1), "no bias in a convolution that a BatchNorm follows: C·C' + 2C'"),
                              (rule(stride_every=True), "only the first block of a stage carries the stride; "
                               "the blocks after it keep the shape"),
                              (rule(out_expansion=False), "a block outputs expansion * width channels "
                               "(4 * width for a bottleneck), and its shortcut must match them"),
                              (rule(next_expansion=False), "a block outputs expansion * width channels: "
                               "that is the next block's input"),
                              (sum(expected), "return one number per block, in a list, not their total")])


OPTION_A_SHORTCUT = '''\
import torch


def option_a_shortcut(x, out_channels, stride):
    """The paper's parameter-free shortcut (option A): keep every stride-th pixel of x (N, C, H, W),
    starting at pixel 0, then append zero channels up to out_channels."""
    raise NotImplementedError
'''


@checker("option_a_shortcut")
def check_option_a_shortcut(t: Tester, answer: Any) -> None:
    """Compared with a 1x1 convolution whose weights are an identity matrix padded with zeros."""
    generator = torch.Generator().manual_seed(10)
    for shape, out, stride in [((2, 4, 8, 8), 8, 2), ((2, 4, 7, 7), 8, 2), ((1, 3, 6, 6), 3, 1), ((1, 2, 9, 9), 6, 3)]:
        t.case(f"option_a_shortcut(<x {shape}>, {out}, {stride})")
        x = torch.randn(shape, generator=generator)
        c = shape[1]
        eye = torch.zeros(out, c, 1, 1)
        eye[torch.arange(c), torch.arange(c)] = 1.0
        expected = F.conv2d(x, eye, stride=stride)
        zeros = torch.zeros(shape[0], out - c, *expected.shape[2:])
        t.close(t.call(answer, x.clone(), out, stride), expected, "x[:, :, ::stride, ::stride], then zero channels "
                "appended after the C channels", alternatives=[
                    (lambda: torch.cat([F.avg_pool2d(x, stride, ceil_mode=True), zeros], 1), "keep every stride-th "
                     "pixel (what a 1x1 convolution with that stride sees), don't average"),
                    (lambda: torch.cat([F.max_pool2d(x, stride, ceil_mode=True), zeros], 1), "keep every stride-th "
                     "pixel, don't take the maximum"),
                    (lambda: torch.cat([zeros, expected[:, :c]], 1), "append the zero channels after the input's ones")],
                shape_hint="the output is (N, out_channels, ceil(H / stride), ceil(W / stride))")


RESNET34_PARAMS = '''\
def resnet34_params(num_classes=1000, in_channels=3):
    """ResNet-34's parameter count by formula: stem 7x7 conv (no bias) + BN, stages of 3, 4, 6, 3 basic
    blocks with widths 64, 128, 256, 512 (projection 1x1 conv + BN where the width changes), dense layer."""
    raise NotImplementedError
'''


def _resnet34(classes: int, c_in: int, projection: bool = True, projection_bn: bool = True, bn: int = 2,
              fc_bias: bool = True) -> int:
    total, channels = 64 * c_in * 49 + bn * 64, 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for _ in range(blocks):
            total += 9 * channels * width + 9 * width * width + 2 * bn * width
            if channels != width and projection:
                total += channels * width + (bn * width if projection_bn else 0)
            channels = width
    return total + 512 * classes + (classes if fc_bias else 0)


@checker("resnet34_params")
def check_resnet34_params(t: Tester, answer: Any) -> None:
    """Compared with cnncourse.models.resnet34 (torchvision's count), built on the meta device."""
    for classes, c_in in [(1000, 3), (10, 3), (10, 1)]:
        t.case(f"resnet34_params({classes}, {c_in})")
        with torch.device("meta"):
            expected = sum(p.numel() for p in resnet34(num_classes=classes, in_channels=c_in).parameters())
        t.equal(t.call(answer, classes, c_in), expected, "stem + every block's 9CW + 9W² + 4W + projections + dense",
                alternatives=[(_resnet34(classes, c_in, projection=False), "the first block of stages 2, 3 and 4 "
                               "changes the width: add its 1x1 projection and BatchNorm, CW + 2W"),
                              (_resnet34(classes, c_in, projection_bn=False), "the projection is followed by a "
                               "BatchNorm: + 2W"),
                              (_resnet34(classes, c_in, bn=0), "every BatchNorm has 2C parameters (gamma and beta)"),
                              (_resnet34(classes, c_in, fc_bias=False), "the dense layer has a bias: 512·classes + classes"),
                              (_resnet34(classes, 3), "the stem's 7x7 filters have in_channels depth")])


EXERCISES = [
    Exercise("topk_error", "Top-k error", "ResNet in numbers", check_topk_error, TOPK_ERROR),
    Exercise("MyNoShortcutBlock", "A block without a shortcut", "The basic block", check_my_no_shortcut_block, MY_NO_SHORTCUT_BLOCK),
    Exercise("shortcut_parameters", "Which shortcuts of a network need a projection", "The shortcut",
             check_shortcut_parameters, SHORTCUT_PARAMETERS),
    Exercise("option_a_shortcut", "A shortcut without parameters (option A)", "The shortcut",
             check_option_a_shortcut, OPTION_A_SHORTCUT),
    Exercise("resnet34_params", "ResNet-34's parameters by formula", "The network we train: ResNet-20 for MNIST",
             check_resnet34_params, RESNET34_PARAMS),
]
