"""ResNet (He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition") in plain PyTorch.

Each block learns a residual F(x) and adds it to its input, so an identity mapping is easy to
learn and very deep networks still train. ``resnet18/34/50`` follow the paper and have exactly the
parameter counts of torchvision's models; ``small_input=True`` swaps the 224-px stem for a 3x3
stride-1 stem for 28-32 px images; ``resnet20/32/44/56/110`` are the paper's CIFAR networks.
This file needs torch alone: copy it into a project and it works.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Type, Union

import torch
from torch import Tensor, nn

__all__ = [
    "BUILDERS", "BasicBlock", "Bottleneck", "NoShortcutBlock", "ResNet", "make_stage", "conv1x1", "conv3x3",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "cifar_resnet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "plain20", "plain56",
]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution that keeps the size at stride 1 (padding 1); no bias, a BatchNorm follows."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution that mixes channels (and subsamples at stride 2); no bias, a BatchNorm follows."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first carries the stride) plus a shortcut: ReLU(F(x) + shortcut(x))."""

    expansion: int = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand to ``4 * width``, plus a shortcut.

    The 1x1 convolutions make the expensive 3x3 work on a quarter of the channels, which is what
    lets ResNet-50 be deeper than ResNet-34 at a similar cost.
    """

    expansion: int = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class NoShortcutBlock(nn.Module):
    """A basic block without its shortcut, ReLU(F(x)): the "plain" network of He et al. (2016) that
    shows the degradation problem (deeper plain networks train worse). Never has a projection."""

    expansion: int = 1
    residual: bool = False

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        if downsample is not None:
            raise ValueError("a block without a shortcut takes no downsample projection")
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


Block = Type[Union[BasicBlock, Bottleneck, NoShortcutBlock]]


def make_stage(block: Block, in_channels: int, width: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    """``num_blocks`` blocks; the first one carries the stride and, when the stride or the number
    of channels changes, a 1x1 conv + BatchNorm projection on its shortcut (the paper's option B)."""
    out_channels = width * block.expansion
    downsample = None
    if getattr(block, "residual", True) and (stride != 1 or in_channels != out_channels):
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, width, stride, downsample)]
    blocks += [block(out_channels, width) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


# Repeated, identical, in every model file so that each file needs torch alone (a test compares the copies).
def _check_input(x: Tensor, model: nn.Module, exact: bool = False) -> None:
    """Raise a ValueError that names the expected input unless ``x`` is (N, model.in_channels, H, W)
    with H, W >= model.min_input_size (H = W = it when ``exact``); the hints name only options that
    the model's builder accepts. Reads only ``x.shape``: free, and safe under torch.compile."""
    channels, size = model.in_channels, model.min_input_size
    if x.dim() != 4:
        hints = ["Pass a batch (N, C, H, W); for a single image use x.unsqueeze(0)."]
    else:
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        size_ok = h == w == size if exact else (h >= size and w >= size)
        if c == channels and size_ok:
            return
        hints = [] if c == channels else [f"Build it with in_channels={c} for {c}-channel images."]
        if not size_ok:
            size_hint = getattr(model, "_size_hint", None)
            hints.append(size_hint(h, w) if size_hint else f"Resize or pad the images to at least {size} px.")
    expected = f"H = W = {size}" if exact else f"H, W >= {size}"
    raise ValueError(f"{type(model).__name__} expects input of shape (N, {channels}, H, W) with {expected}; "
                     f"got {tuple(x.shape)}. {' '.join(hints)}")


class ResNet(nn.Module):
    """A stem, one stage per entry of ``layers`` (stride 1, then 2 for each later stage), global
    average pooling and a linear classifier that returns logits.

    ``small_input=False``: the paper's ImageNet stem, 7x7/2 conv + 3x3/2 max-pool (total stride 32,
    inputs of at least 32 px, 224 px intended). ``small_input=True``: a 3x3 stride-1 conv and no
    max-pool, so 28-32 px images keep enough resolution (total stride 8 for four stages).
    ``widths`` are the stage widths (the stem has ``widths[0]`` channels); ``zero_init_residual``
    zeroes the last BatchNorm of every block so that each block starts as the identity.
    ``num_features`` is the width entering the classifier ``fc``: the last stage's channels (512 for
    ResNet-18/34, 2048 for ResNet-50/101/152, 64 for the CIFAR ResNets).
    """

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, zero_init_residual: bool = False,
                 widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        if len(widths) != len(layers):
            raise ValueError(f"need one width per stage: got layers={list(layers)} and widths={list(widths)}")
        self.in_channels = in_channels
        self.small_input = small_input
        stem_width = widths[0]
        if small_input:
            self.conv1 = conv3x3(in_channels, stem_width)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)

        # Stages are named layer1, layer2, ... as in the paper's tables and in torchvision, so that
        # torchvision's state_dict (pretrained weights included) loads into this model unchanged.
        self.stage_names: List[str] = []
        channels = stem_width
        for index, (width, num_blocks) in enumerate(zip(widths, layers)):
            name = f"layer{index + 1}"
            self.add_module(name, make_stage(block, channels, width, num_blocks, stride=1 if index == 0 else 2))
            self.stage_names.append(name)
            channels = width * block.expansion
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        # The smallest input whose last feature map is still at least 1x1 made of real pixels.
        self.min_input_size = (1 if small_input else 4) * 2 ** (len(layers) - 1)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _size_hint(self, h: int, w: int) -> str:
        """What to do about a too-small h x w input (used by ``_check_input``); the CIFAR ResNets'
        builders take no ``small_input``, but their stem is the small one already."""
        if not self.small_input and min(h, w) >= 2 ** (len(self.stage_names) - 1):  # enough for the 3x3 stem
            return "For 28-32 px images build it with small_input=True (3x3 stride-1 stem), or resize them."
        return f"Resize or pad the images to at least {self.min_input_size} px."

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and residual stages: the last feature map, shape (N, num_features, h, w)."""
        _check_input(x, self)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool and the linear classifier: logits of shape (N, num_classes)."""
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def resnet18(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters for 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, small_input, zero_init_residual)


def resnet34(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters for 1000 classes."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, small_input, zero_init_residual)


def resnet50(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 25,557,032 parameters for 1000 classes, 23,528,522 for 10."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, zero_init_residual)


def resnet101(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
              zero_init_residual: bool = False) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]; 44,549,160 parameters for 1000 classes."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, small_input, zero_init_residual)


def resnet152(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
              zero_init_residual: bool = False) -> ResNet:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3], the ILSVRC 2015 winner's depth; 60,192,808 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, small_input, zero_init_residual)


def cifar_resnet(depth: int = 20, width: int = 16, num_classes: int = 10, in_channels: int = 3,
                 zero_init_residual: bool = False, block: Block = BasicBlock) -> ResNet:
    """The paper's CIFAR-10 ResNets: a 3x3 stem, three stages of (depth - 2) / 6 basic blocks with
    ``width``, 2x and 4x channels (16/32/64 in the paper), total stride 4; small and fast on a CPU.
    The stem is always the small one (there is no ``small_input`` option); inputs need 4 px.

    Shortcuts that change shape use a 1x1 conv + BatchNorm projection (option B), not the paper's
    zero-padding option A; resnet20 then has 272,474 parameters for 10 classes (the paper: 0.27M).
    ``block=NoShortcutBlock`` builds the paper's plain network of the same depth (no shortcuts).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...); got depth={depth}")
    n = (depth - 2) // 6
    return ResNet(block, [n, n, n], num_classes=num_classes, in_channels=in_channels, small_input=True,
                  zero_init_residual=zero_init_residual, widths=(width, 2 * width, 4 * width))


def resnet20(num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet-20 (3 x 3 basic blocks, widths 16/32/64); 272,474 parameters for 10 classes."""
    return cifar_resnet(20, 16, num_classes, in_channels, zero_init_residual)


def resnet32(num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet-32 (3 x 5 basic blocks, widths 16/32/64); 466,906 parameters for 10 classes."""
    return cifar_resnet(32, 16, num_classes, in_channels, zero_init_residual)


def resnet44(num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet-44 (3 x 7 basic blocks, widths 16/32/64); 661,338 parameters for 10 classes."""
    return cifar_resnet(44, 16, num_classes, in_channels, zero_init_residual)


def resnet56(num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet-56 (3 x 9 basic blocks, widths 16/32/64); 855,770 parameters for 10 classes."""
    return cifar_resnet(56, 16, num_classes, in_channels, zero_init_residual)


def resnet110(num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet-110 (3 x 18 basic blocks, widths 16/32/64); 1,730,714 parameters for 10 classes."""
    return cifar_resnet(110, 16, num_classes, in_channels, zero_init_residual)


def plain20(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-20 without shortcuts (He et al.'s plain-20): 19 conv layers + dense, no projections."""
    return cifar_resnet(20, 16, num_classes, in_channels, block=NoShortcutBlock)


def plain56(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-56 without shortcuts (He et al.'s plain-56), the network that trains worse than plain-20."""
    return cifar_resnet(56, 16, num_classes, in_channels, block=NoShortcutBlock)


# The public builders; cnncourse.models registers them by name, in this order.
BUILDERS = (resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, resnet110,
            plain20, plain56)
