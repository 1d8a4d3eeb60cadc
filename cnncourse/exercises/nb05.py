"""Exercises of notebook 5 (VGG16 on Galaxy10): a stratified split, receptive fields with strides,
VGG configurations as data, the parameters of any VGG, and dropout of whole feature maps."""
from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from cnncourse.exercises.check import Exercise, Tester, checker, forbid
from cnncourse.models.vgg import CONFIGS, vgg16

MY_STRATIFIED_SPLIT = '''\
import numpy as np


def my_stratified_split(labels, test_fraction=0.1, seed=0):
    """Split the indices of labels into (train_indices, test_indices): each class with n >= 2 images
    puts round(test_fraction * n) of them (at least 1, at most n - 1), drawn at random with a generator
    seeded by seed, into test; a class of one image stays in train."""
    raise NotImplementedError
'''


def _counts(n: int, fraction: float, rounding: Any = round) -> int:
    return 0 if n < 2 else min(max(1, int(rounding(fraction * n))), n - 1)


@checker("my_stratified_split")
def check_my_stratified_split(t: Tester, answer: Any) -> None:
    """Properties, not indices (any generator will do): a partition, the right count per class, the
    same split for the same seed and another one for another seed."""
    rng = np.random.default_rng(13)
    for sizes, fraction in [([50, 17, 5, 2, 1], 0.1), ([40, 17, 6, 3], 0.25), ([10, 3], 0.5)]:
        labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
        t.case(f"my_stratified_split(<labels, classes of {sizes} images>, test_fraction={fraction}, seed=0)")
        got = t.call(answer, labels.copy(), test_fraction=fraction, seed=0)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            t.fail(f"got {type(got).__name__}", "return two index arrays: (train_indices, test_indices)")
        train, test = (np.asarray(part).ravel() for part in got)
        if any(part.dtype.kind not in "iu" for part in (train, test)):
            t.fail("the splits are not integer arrays", "return arrays of indices (np.flatnonzero turns a mask into them)")
        both = np.sort(np.concatenate([train, test]))
        if len(np.intersect1d(train, test)) or not np.array_equal(both, np.arange(len(labels))):
            t.fail(f"{len(np.intersect1d(train, test))} indices in both splits, {len(labels) - len(np.unique(both))} "
                   "in neither", "every index exactly once: train is everything that is not in test")
        counts = [int(np.sum(labels[test] == c)) for c in range(len(sizes))]
        t.equal(counts, [_counts(n, fraction) for n in sizes], "take round(test_fraction · n) images of every class "
                "(at least 1, at most n - 1) into test", alternatives=[
                    ([_counts(n, fraction, np.floor) for n in sizes], "round(test_fraction · n), not the floor: "
                     "int() cuts off the decimals"),
                    ([_counts(n, fraction) or int(n == 1) for n in sizes], "a class of a single image stays in train")])
        again = t.call(answer, labels.copy(), test_fraction=fraction, seed=0)
        if not np.array_equal(np.sort(np.asarray(again[1]).ravel()), np.sort(test)):
            t.fail("two calls with seed=0 gave different splits", "draw with np.random.default_rng(seed): the same "
                   "seed must give the same split")
        other = t.call(answer, labels.copy(), test_fraction=fraction, seed=1)
        if np.array_equal(np.sort(np.asarray(other[1]).ravel()), np.sort(test)):
            t.fail("seed=1 gave the same split as seed=0", "choose each class's test images at random with the "
                   "seeded generator, not the first ones")


RECEPTIVE_FIELD = '''\
def receptive_field(layers):
    """Receptive field (in input pixels, along one axis) of one output value of a stack of layers
    without padding; layers: a list of (kernel, stride) tuples, applied in order."""
    raise NotImplementedError
'''


def _field(layers: List[Tuple[int, int]], rule: str = "") -> int:
    field, jump = (0 if rule == "no +1" else 1), 1
    for k, s in layers:
        jump *= s if rule == "own stride" else 1
        field += (k - 1) * (1 if rule == "no strides" else jump)
        jump *= 1 if rule == "own stride" else s
    return field


def _vgg_layers(cfg: List[Any]) -> List[Tuple[int, int]]:
    return [(2, 2) if item == "M" else (3, 1) for item in cfg]


@checker("receptive_field")
def check_receptive_field(t: Tester, answer: Any) -> None:
    """Measured by autograd: the input pixels whose gradient is non-zero for the first output of a
    stack of all-ones 1-D convolutions (a k-wide pool sees what a k-wide convolution sees)."""
    cases = [("two 3x3 convolutions", [(3, 1)] * 2), ("three 3x3 convolutions", [(3, 1)] * 3),
             ("LeNet: 5x5 conv, 2x2 pool, 5x5 conv, 2x2 pool", [(5, 1), (2, 2), (5, 1), (2, 2)]),
             ("ResNet's stem: 7x7/2 conv, 3x3/2 max-pool", [(7, 2), (3, 2)]),
             ("VGG16 up to its last convolution", _vgg_layers(CONFIGS["D"][:-1])),
             ("VGG16's five blocks", _vgg_layers(CONFIGS["D"]))]
    for title, layers in cases:
        t.case(f"receptive_field({title})")
        x = torch.ones(1, 1, 600, requires_grad=True)
        out = x
        for k, s in layers:
            out = F.conv1d(out, torch.ones(1, 1, k), stride=s)
        out[0, 0, 0].backward()
        expected = int((x.grad[0, 0] != 0).sum())
        t.equal(t.call(answer, list(layers)), expected, "r = 1 + sum over layers of (k - 1) · (product of the "
                "strides of the layers before it)",
                alternatives=[(_field(layers, "no strides"), "after a stride-s layer each step spans s input pixels: "
                               "multiply (k - 1) by the product of the earlier strides"),
                              (_field(layers, "own stride"), "the product runs over the strides of the layers "
                               "BEFORE this one, not its own"),
                              (_field(layers, "no +1"), "start from r = 1: one pixel sees itself")])


VGG_CONFIG = '''\
def vgg_config(convs_per_block):
    """The configuration list of a VGG with 5 blocks of widths 64, 128, 256, 512, 512:
    convs_per_block[i] convolutions of block i, each block ending with "M"."""
    raise NotImplementedError
'''


@checker("vgg_config")
def check_vgg_config(t: Tester, answer: Any) -> None:
    """The paper's configurations A, B, D and E from cnncourse.models.vgg, and one more."""
    def rule(counts: List[int], widths: Tuple[int, ...] = (64, 128, 256, 512, 512), last_pool: bool = True,
             pool_first: bool = False) -> List[Any]:
        cfg: List[Any] = []
        for index, (width, n) in enumerate(zip(widths, counts)):
            block = [width] * n
            pool = ["M"] if last_pool or index < 4 else []
            cfg += pool + block if pool_first else block + pool
        return cfg

    for name, counts in [("A (VGG11)", [1, 1, 2, 2, 2]), ("B (VGG13)", [2, 2, 2, 2, 2]), ("D (VGG16)", [2, 2, 3, 3, 3]),
                         ("E (VGG19)", [2, 2, 4, 4, 4]), ("a VGG8", [1, 1, 1, 1, 1])]:
        t.case(f"vgg_config({counts}), configuration {name}")
        expected = CONFIGS[name[0]] if name[0] in CONFIGS else rule(counts)
        got = t.call(answer, list(counts))
        got = list(got) if isinstance(got, (list, tuple)) else got
        t.equal(got, expected, "each block: its number of convolutions of its width, then 'M'", alternatives=[
            (rule(counts, (64, 128, 256, 512, 1024)), "the last block stays at 512: widths 64, 128, 256, 512, 512"),
            (rule(counts, last_pool=False), "the fifth block ends with an 'M' too: five max-pools, 224 -> 7"),
            (rule(counts, pool_first=True), "the 'M' closes a block: convolutions first, then the max-pool"),
            ([str(item) for item in expected], "channel counts are ints, only the max-pool is the string 'M'"),
            ([item.lower() if item == "M" else item for item in expected], "the max-pool is an uppercase 'M'")])


VGG_PARAMS = '''\
def vgg_params(config, num_classes):
    """Parameters of the VGG built from config (numbers: 3x3 convolutions with a bias and that many
    filters, starting from 3 input channels; "M": a max-pool) followed by the classifier
    last_width * 7 * 7 -> 4096 -> 4096 -> num_classes (dense layers with biases)."""
    raise NotImplementedError
'''


def _vgg_count(config: List[Any], num_classes: int, rule: str = "") -> int:
    """The parameters of a VGG by formula, or by one of the plausible wrong rules."""
    total, channels = 0, 3
    for item in config:
        if item == "M":
            continue
        c_in = item if rule == "square convs" else channels
        total += 9 * c_in * item + (0 if rule == "no conv bias" else item)
        channels = item
    first = {"first dense from 512": 512, "first dense fixed": 512 * 7 * 7}.get(rule, channels * 7 * 7)
    sizes = [first, 4096, 4096, num_classes]
    classifier = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    return total if rule == "no classifier" else total + classifier


@checker("vgg_params")
def check_vgg_params(t: Tester, answer: Any) -> None:
    """Compared with cnncourse's VGG built from the same configuration on the meta device."""
    from cnncourse.models.vgg import VGG

    cases = [("A (VGG11)", CONFIGS["A"], 1000), ("B (VGG13)", CONFIGS["B"], 10), ("E (VGG19)", CONFIGS["E"], 10),
             ("D (VGG16)", CONFIGS["D"], 2), ("a small VGG", [32, "M", 64, 64, "M", 128, "M"], 10)]
    for name, config, classes in cases:
        t.case(f"vgg_params(<configuration {name}>, {classes})")
        with torch.device("meta"):
            expected = sum(p.numel() for p in VGG(list(config), num_classes=classes).parameters())
        t.equal(t.call(answer, list(config), classes), expected, "each 3x3 convolution has 9·C_in·C_out + C_out "
                "parameters, with C_in the width of the convolution before it (3 for the first); then the three "
                "dense layers, n·m + m each", alternatives=[
                    (_vgg_count(config, classes, "no conv bias"), "each convolution has a bias: + C_out"),
                    (_vgg_count(config, classes, "square convs"), "a convolution goes from the previous width (3 "
                     "for the first) to its own: 9·C_in·C_out, not 9·C_out²"),
                    (_vgg_count(config, classes, "first dense fixed"), "the first dense layer sees last_width x 7 x 7 "
                     "numbers: the last convolution's width, which is not always 512"),
                    (_vgg_count(config, classes, "first dense from 512"), "the first dense layer sees the "
                     "last_width x 7 x 7 numbers the adaptive pool leaves, not last_width"),
                    (_vgg_count(config, classes, "no classifier"), "add the classifier: three dense layers")])


MY_DROPOUT = '''\
import torch


def my_dropout(x, p, training):
    """Channel dropout of a batch x (N, C, H, W) without F.dropout or F.dropout2d: in training, zero
    each whole map x[n, c] with probability p (a new draw per image and channel) and divide the kept maps
    by (1 - p); in evaluation, return x unchanged."""
    raise NotImplementedError
'''


@checker("my_dropout")
def check_my_dropout(t: Tester, answer: Any) -> None:
    """Evaluation is the identity; in training every map is either all zero or all x / (1 - p), the
    share of zeroed maps is p (within 4 points on 2,000 maps), the images of a batch draw their own
    masks, and every call draws new ones."""
    x = torch.rand(40, 50, 4, 5, generator=torch.Generator().manual_seed(14)) + 0.5
    hint = "in training zero each whole map x[n, c] with probability p and divide the others by (1 - p)"
    with forbid("dropout", "dropout_", "dropout2d", "feature_dropout", "feature_dropout_",
                hint="draw one number per map: torch.rand(N, C, 1, 1) >= p broadcasts over H and W"):
        t.case("my_dropout(<x 40 x 50 x 4 x 5>, 0.3, training=False)")
        t.close(t.call(answer, x.clone(), 0.3, False), x, "at evaluation time return x unchanged", alternatives=[
            (x * 0.7, "inverted dropout scales in training only: at evaluation time return x unchanged")],
            shape_hint="return a tensor of x's shape")
        masks = []
        for p in (0.3, 0.5, 0.5, 0.0):
            t.case(f"my_dropout(<x 40 x 50 x 4 x 5>, {p}, training=True)")
            got = t.array(t.call(answer, x.clone(), p, True))
            if got.shape != tuple(x.shape):
                t.fail(f"got shape {got.shape}, expected {tuple(x.shape)}", "return a tensor of x's shape")
            zero = got == 0
            partly = int(np.sum(zero.any(axis=(2, 3)) & ~zero.all(axis=(2, 3))))
            if partly:
                t.fail(f"{partly} maps are only partly zeroed", "drop whole maps: one random draw per image and "
                       "channel, a mask of shape (N, C, 1, 1), not one per value")
            kept = ~zero.all(axis=(2, 3))
            if 0 < p and all(np.array_equal(kept[0], row) for row in kept[1:]):
                t.fail("every image of the batch dropped the same channels", "each image draws its own mask: "
                       "N x C draws, not C")
            share = 1 - float(np.mean(kept))
            if abs(share - p) > 0.04:
                t.fail(f"{share:.1%} of the maps zeroed, expected {p:.0%}", "p is the probability of dropping a "
                       "map: keep it with probability 1 - p" if abs(share - (1 - p)) <= 0.04 else hint)
            t.close(got[kept], x.numpy()[kept] / (1 - p), hint, alternatives=[
                (x.numpy()[kept], "scale the kept maps by 1 / (1 - p), so that the expected value stays x"),
                (x.numpy()[kept] * (1 - p), "divide the kept maps by (1 - p), don't multiply")])
            masks.append(kept)
        if np.array_equal(masks[1], masks[2]):
            t.fail("two calls dropped the same maps", "draw a new random mask at every call")


EXERCISES = [
    Exercise("my_stratified_split", "A stratified split", "Galaxy10 DECaLS", check_my_stratified_split,
             MY_STRATIFIED_SPLIT),
    Exercise("receptive_field", "Receptive field of a stack of layers", "The VGG idea: small filters, stacked",
             check_receptive_field, RECEPTIVE_FIELD),
    Exercise("vgg_config", "VGG configurations as data", "Configuration D, as data", check_vgg_config, VGG_CONFIG),
    Exercise("vgg_params", "Parameters of any VGG", "138 million parameters, and where they live",
             check_vgg_params, VGG_PARAMS),
    Exercise("my_dropout", "Dropout of whole feature maps", "138 million parameters, and where they live",
             check_my_dropout, MY_DROPOUT),
]
