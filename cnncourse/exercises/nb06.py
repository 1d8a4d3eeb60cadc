"""Exercises of notebook 6 (ResNet-50 on Galaxy10): a 1x1 convolution as a matrix product, the
multiply-adds of a bottleneck block, rotation-and-flip augmentation, and a confusion matrix."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, forbid

CONV1X1_BY_MATMUL = '''\
import torch


def conv1x1_by_matmul(x, weight, bias):
    """A 1x1 convolution as a dense layer applied to every pixel, with one matrix product and no
    convolution function. x: (N, C, H, W); weight: (M, C, 1, 1); bias: (M,). Returns (N, M, H, W)."""
    raise NotImplementedError
'''


@checker("conv1x1_by_matmul")
def check_conv1x1_by_matmul(t: Tester, answer: Any) -> None:
    """Compared with F.conv2d, which the learner's code may not call."""
    generator = torch.Generator().manual_seed(15)
    for shape, m in [((2, 8, 5, 6), 4), ((1, 3, 4, 4), 16), ((2, 4, 3, 3), 4)]:
        n, c, h, w = shape
        t.case(f"conv1x1_by_matmul(<x {shape}>, <weight ({m}, {c}, 1, 1)>, <bias ({m},)>)")
        x, weight, bias = (torch.randn(size, generator=generator) for size in (shape, (m, c, 1, 1), (m,)))
        expected, matrix = F.conv2d(x, weight, bias), weight[:, :, 0, 0]
        with forbid("conv2d", "conv1d", hint="move the channels last, multiply by the (C, M) matrix weight[:, :, 0, 0].T, "
                    "add the bias and move the channels back"):
            got = t.call(answer, x.clone(), weight.clone(), bias.clone())
        t.close(got, expected, "out[n, :, i, j] = W @ x[n, :, i, j] + b for every pixel (i, j)", alternatives=[
            (F.conv2d(x, weight), "add the bias, one per output channel"),
            (lambda: (x.reshape(n * h * w, c) @ matrix.T + bias).reshape(n, m, h, w), "the channels are axis 1: "
             "permute them last (x.permute(0, 2, 3, 1)) before reshaping to (pixels, channels), and back after"),
            (lambda: torch.einsum("nchw,cm->nmhw", x, matrix) + bias[:, None, None], "each output channel m is "
             "sum over c of W[m, c] · x[c]: multiply by W.T on the right (or by W on the left)")],
            shape_hint="the output is (N, M, H, W): only the channels change", atol=1e-5)


BOTTLENECK_MACS = '''\
def bottleneck_macs(in_channels, width, size, stride):
    """Multiply-accumulates of one bottleneck block of the article's ResNet-50 on an in_channels x size x size
    input: 1x1 (in_channels -> width), 3x3 with the stride and padding 1 (width -> width), 1x1 (width -> 4 width),
    and, when the stride is not 1 or in_channels != 4 width, a 1x1 convolution with the stride on the
    shortcut (in_channels -> 4 width). Biases, BatchNorm, ReLU and the addition are left out."""
    raise NotImplementedError
'''


def _bottleneck(c_in: int, w: int, size: int, s: int, rule: str = "") -> int:
    """A bottleneck's MACs by formula, or by one of the plausible wrong rules."""
    out = (size + 2 - 3) // s + 1
    conv1 = (out if rule == "stride on the first 1x1" else size) ** 2 * c_in * w
    at = size if rule == "input size" else out
    conv2, conv3 = at * at * 9 * w * w, at * at * 4 * w * w
    projection = (s != 1 if rule == "stride only" else s != 1 or c_in != 4 * w) and rule != "no shortcut"
    shortcut = at * at * c_in * 4 * w if projection else 0
    total = conv1 + conv2 + conv3 + shortcut
    return 2 * total if rule == "FLOPs" else total


@checker("bottleneck_macs")
def check_bottleneck_macs(t: Tester, answer: Any) -> None:
    """Compared with cnncourse.count_macs of the article's own block (ArticleBottleneck) on the meta device."""
    from cnncourse.models.article import ArticleBottleneck
    from cnncourse.shapes import count_macs

    cases = [("layer2.0", 256, 128, 56, 2), ("layer1.0", 64, 64, 56, 1), ("layer1.1", 256, 64, 56, 1),
             ("layer3.0", 512, 256, 28, 2), ("layer4.0", 1024, 512, 14, 2), ("layer4.2", 2048, 512, 7, 1),
             ("an odd size", 256, 128, 15, 2)]
    for title, c_in, w, size, s in cases:
        t.case(f"bottleneck_macs({c_in}, {w}, {size}, stride={s}), {title}")
        with torch.device("meta"):
            expected = count_macs(ArticleBottleneck(c_in, w, 4 * w, stride=s), (c_in, size, size))
        t.equal(t.call(answer, c_in, w, size, s), expected, "sum H'·W'·C_out·C_in·k² over the block's "
                "convolutions, each at the size of ITS output", alternatives=[
                    (_bottleneck(c_in, w, size, s, "input size"), "the 3x3 carries the stride: it, the last 1x1 and "
                     "the shortcut produce maps of floor((n + 2 - 3) / s) + 1, not n"),
                    (_bottleneck(c_in, w, size, s, "stride on the first 1x1"), "the stride sits on the 3x3: the "
                     "first 1x1 still runs on the whole size x size input"),
                    (_bottleneck(c_in, w, size, s, "stride only"), "the shortcut needs its 1x1 convolution also when "
                     "only the channels change (in_channels != 4 width), as in the first block of layer1"),
                    (_bottleneck(c_in, w, size, s, "no shortcut"), "a block whose stride or width changes has a 1x1 "
                     "convolution on its shortcut: count it"),
                    (_bottleneck(c_in, w, size, s, "FLOPs"), "one multiply-accumulate is one MAC; 2 · MACs would be "
                     "FLOPs")])


ROTATE_FLIP = '''\
import torch


def rotate_flip(images, quarter_turns, flips):
    """Augment a batch of square images (N, C, H, H): image i is first mirrored left-right if
    flips[i], then turned counter-clockwise by quarter_turns[i] x 90 degrees."""
    raise NotImplementedError
'''


@checker("rotate_flip")
def check_rotate_flip(t: Tester, answer: Any) -> None:
    """Compared image by image with torch.flip and torch.rot90; all eight symmetries of the square."""
    generator = torch.Generator().manual_seed(16)
    turns, flips = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), torch.tensor([False] * 4 + [True] * 4)
    for order, shape in [("in order", (8, 2, 5, 5)), ("shuffled", (8, 3, 4, 4))]:
        t.case(f"rotate_flip(<images {shape}>, <quarter_turns>, <flips>), all 8 combinations {order}")
        images = torch.randn(shape, generator=generator)
        if order == "shuffled":
            pick = torch.randperm(8, generator=generator)
            turns, flips = turns[pick], flips[pick]

        def apply(rot: int = 1, flip_dim: int = -1, flip_last: bool = False, first: bool = False) -> torch.Tensor:
            out = []
            for i, image in enumerate(images):
                k, f = (int(turns[0]), bool(flips[0])) if first else (int(turns[i]), bool(flips[i]))
                image = image.flip(flip_dim) if f and not flip_last else image
                image = torch.rot90(image, rot * k, dims=(-2, -1))
                out.append(image.flip(flip_dim) if f and flip_last else image)
            return torch.stack(out)

        got = t.call(answer, images.clone(), turns.clone(), flips.clone())
        t.close(got, apply(), "mirror with image.flip(-1), then torch.rot90(image, k, dims=(-2, -1))", alternatives=[
            (apply(rot=-1), "turn counter-clockwise: torch.rot90(image, k, dims=(-2, -1)); dims=(-1, -2) turns the "
                            "other way"),
            (apply(flip_dim=-2), "mirror left-right: flip the last axis (flip(-1)), not upside down"),
            (apply(flip_last=True), "mirror first, then turn: the two don't commute"),
            (apply(first=True), "each image has its own quarter_turns[i] and flips[i]")],
            shape_hint="return a batch of the input's shape")


CONFUSION_MATRIX = '''\
def confusion_matrix(labels, preds, num_classes):
    """(num_classes, num_classes) counts: entry [i, j] is the number of images of true class i
    predicted as class j. labels, preds: 1-D integer tensors."""
    raise NotImplementedError
'''


@checker("confusion_matrix")
def check_confusion_matrix(t: Tester, answer: Any) -> None:
    """Compared with torch.bincount over label · classes + prediction."""
    generator = torch.Generator().manual_seed(17)
    for n, classes, present in [(6, 3, 3), (40, 6, 5), (100, 10, 10)]:
        t.case(f"confusion_matrix(<{n} labels>, <{n} predictions>, {classes})"
               + (f", class {classes - 1} never appears" if present < classes else ""))
        labels = torch.randint(0, present, (n,), generator=generator)
        preds = torch.where(torch.rand(n, generator=generator) < 0.5, labels,
                            torch.randint(0, present, (n,), generator=generator))
        expected = torch.bincount(labels * classes + preds, minlength=classes * classes).reshape(classes, classes)
        got = t.call(answer, labels.clone(), preds.clone(), classes)
        rows = expected.sum(1, keepdim=True).clamp(min=1)
        t.close(got, expected, "for every image add 1 at [label, prediction]", alternatives=[
            (expected.T, "row = true class, column = predicted class: matrix[label, pred] += 1"),
            (expected / rows, "count images, don't turn the rows into fractions")],
            shape_hint="the matrix is num_classes x num_classes, even when a class never turns up")


EXERCISES = [
    Exercise("conv1x1_by_matmul", "A 1x1 convolution is a dense layer per pixel", "One bottleneck block, by formula",
             check_conv1x1_by_matmul, CONV1X1_BY_MATMUL),
    Exercise("bottleneck_macs", "Multiply-adds of a bottleneck block", "What each network costs",
             check_bottleneck_macs, BOTTLENECK_MACS),
    Exercise("rotate_flip", "Rotations and flips for a whole batch",
             "The article's comparison, as a recipe for a GPU", check_rotate_flip, ROTATE_FLIP),
    Exercise("confusion_matrix", "The confusion matrix", "The article's comparison, as a recipe for a GPU",
             check_confusion_matrix, CONFUSION_MATRIX),
]
