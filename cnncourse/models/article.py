"""The two ResNet-50 variants of the course's source articles, rebuilt in PyTorch to the parameter.

Both differ from the paper's ResNet-50 (see ``resnet.py``), and the course compares them with it:

* :class:`KerasArticleResNet50` (notebook 4): a TensorFlow/Keras article's model for 28x28
  Fashion-MNIST. It downsamples with standalone 1x1 stride-2 convolutions *between* stages and
  ends with an extra dense layer. Keras reported 26,313,218 parameters: 26,267,778 trainable
  plus 45,440 BatchNorm moving statistics; this rebuild has exactly the same numbers.
* :class:`GalaxyArticleResNet50` (notebook 6): a PyTorch article's model for Galaxy10; the paper's
  layout, but every convolution has a bias and the projection shortcuts have no BatchNorm
  (23,547,402 parameters for 10 classes).

Both return logits (the Keras article ended in a softmax; ``nn.CrossEntropyLoss`` applies it).
This file needs torch alone: copy it into a project and it works.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BUILDERS", "ArticleBottleneck", "KerasArticleResNet50", "GalaxyArticleResNet50", "keras_same_padding",
           "resnet50_keras_article", "resnet50_galaxy_article"]


class ArticleBottleneck(nn.Module):
    """1x1 (in -> width), 3x3 (carries the stride), 1x1 (width -> out), each with a bias and followed
    by BatchNorm, then ReLU(F(x) + shortcut(x)). The shortcut is the identity, or, when the shape
    changes, a biased 1x1 conv (with the stride) and no BatchNorm, as both articles wrote it."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: Optional[nn.Module] = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def keras_same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """(before, after) padding of Keras/TensorFlow's ``padding="same"`` along one axis of ``size``:
    the output has ceil(size / stride) positions, and an odd total puts the extra row after. At
    stride 2 on an even size that is asymmetric: 28 px, kernel 7 -> (2, 3), where PyTorch pads 3, 3."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """A convolution padded the Keras "same" way (same parameters and state_dict as nn.Conv2d)."""

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = keras_same_padding(x.shape[-2], kh, sh)
        left, right = keras_same_padding(x.shape[-1], kw, sw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class _SameMaxPool2d(nn.MaxPool2d):
    """Max-pooling padded the Keras "same" way: padded positions never win (they are -inf)."""

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = keras_same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = keras_same_padding(x.shape[-1], self.kernel_size, self.stride)
        return super().forward(F.pad(x, (left, right, top, bottom), value=float("-inf")))


def _stem(in_channels: int, keras_padding: bool = False) -> nn.Sequential:
    """The ImageNet stem both articles use: 7x7/2 conv 64 (biased), BN, ReLU, 3x3/2 max-pool;
    PyTorch's symmetric padding (3 and 1), or Keras's "same" padding with ``keras_padding``."""
    if keras_padding:
        conv, pool = _SameConv2d(in_channels, 64, kernel_size=7, stride=2), _SameMaxPool2d(kernel_size=3, stride=2)
    else:
        conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return nn.Sequential(conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True), pool)


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


class KerasArticleResNet50(nn.Module):
    """The Keras article's "ResNet-50" for 28x28 Fashion-MNIST, rebuilt layer for layer.

    Stem (7x7/2 conv 64, BN, ReLU, 3x3/2 max-pool); stage 1: a bottleneck 64 -> 256 (biased 1x1
    shortcut without BN) and 2 bottlenecks 256 -> 256; stages 2-4: a standalone 1x1 stride-2 conv
    to 512 / 1024 / 2048 channels, then 4 / 6 / 3 identity bottlenecks (widths 128 / 256 / 512);
    global average pool; dense 1000 + ReLU; dense num_classes (logits). Every convolution has a bias
    and Keras's Glorot-uniform initialisation. On 28x28 the maps shrink 14, 7, 4, 2, 1: the last
    stage sees a single pixel, which is why this network does poorly on small images.
    ``min_input_size`` is the article's 28 px; ``num_features`` is 1000, the width entering ``fc2``.

    ``keras_defaults=True`` also matches the Keras defaults a PyTorch rebuild otherwise changes:
    BatchNorm momentum 0.99 (PyTorch's ``momentum=0.01``) and epsilon 1e-3 (PyTorch: 0.1 and 1e-5),
    and "same" padding in the stride-2 stem, which pads 28-px inputs asymmetrically (2 before, 3
    after for the 7x7 convolution). The article's code is not published with it, so this follows
    Keras's defaults, not a line-by-line copy. Parameters and state_dict keys are the same either way.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, keras_defaults: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.min_input_size = 28  # the article's Fashion-MNIST images
        self.keras_defaults = keras_defaults
        self.stem = _stem(in_channels, keras_padding=keras_defaults)
        self.layer1 = nn.Sequential(ArticleBottleneck(64, 64, 256), ArticleBottleneck(256, 64, 256),
                                    ArticleBottleneck(256, 64, 256))
        self.layer2 = self._stage(256, 512, 128, 4)
        self.layer3 = self._stage(512, 1024, 256, 6)
        self.layer4 = self._stage(1024, 2048, 512, 3)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 1000
        self.fc1 = nn.Linear(2048, self.num_features)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d) and keras_defaults:
                m.momentum, m.eps = 0.01, 1e-3  # Keras: moving = 0.99 * moving + 0.01 * batch

    @staticmethod
    def _stage(in_channels: int, out_channels: int, width: int, num_blocks: int) -> nn.Sequential:
        """A biased 1x1 stride-2 conv that halves the size and changes the width, then identity blocks."""
        layers: List[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=2)]
        layers += [ArticleBottleneck(out_channels, width, out_channels) for _ in range(num_blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the four stages: (N, 2048, h, w), 1x1 for a 28x28 input."""
        _check_input(x, self)
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool, dense 1000 + ReLU, dense num_classes: logits."""
        return self.fc2(self.relu(self.fc1(torch.flatten(self.avgpool(x), 1))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class GalaxyArticleResNet50(nn.Module):
    """The Galaxy10 article's ResNet-50: the paper's layout with biased convolutions and BN-free
    projection shortcuts.

    Stem (7x7/2 conv 64, pad 3, BN, ReLU, 3x3/2 max-pool, pad 1); stages of 3, 4, 6, 3 bottlenecks
    with widths 64, 128, 256, 512 (x4 out) and strides 1, 2, 2, 2, the first block of each stage
    carrying a biased 1x1 conv(stride) shortcut; adaptive average pool; dense 2048 -> num_classes.
    For 224 px: 112 -> 56 -> 256x56x56 -> 512x28x28 -> 1024x14x14 -> 2048x7x7. The stride sits on
    the 3x3 conv as in torchvision; on the first 1x1 (the paper) the counts and shapes are the same.
    PyTorch's default initialisation, as the article used. Inputs need 32 px (``min_input_size``);
    ``num_features`` is 2048, the width entering ``fc``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.min_input_size = 32
        self.stem = _stem(in_channels)
        self.layer1 = self._stage(64, 64, 3, stride=1)
        self.layer2 = self._stage(256, 128, 4, stride=2)
        self.layer3 = self._stage(512, 256, 6, stride=2)
        self.layer4 = self._stage(1024, 512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 2048
        self.fc = nn.Linear(self.num_features, num_classes)

    @staticmethod
    def _stage(in_channels: int, width: int, num_blocks: int, stride: int) -> nn.Sequential:
        """``num_blocks`` bottlenecks with 4 * width outputs; the first carries the stride and the projection."""
        out_channels = 4 * width
        layers: List[nn.Module] = [ArticleBottleneck(in_channels, width, out_channels, stride)]
        layers += [ArticleBottleneck(out_channels, width, out_channels) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the four stages: (N, 2048, H/32, W/32)."""
        _check_input(x, self)
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool and the dense layer: logits."""
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def resnet50_keras_article(num_classes: int = 10, in_channels: int = 1,
                           keras_defaults: bool = False) -> KerasArticleResNet50:
    """Notebook 4's Keras-article ResNet-50: 26,267,778 parameters + 45,440 BN running statistics
    for 1x28x28 inputs and 10 classes; ``keras_defaults`` matches Keras's BatchNorm and padding."""
    return KerasArticleResNet50(num_classes=num_classes, in_channels=in_channels, keras_defaults=keras_defaults)


def resnet50_galaxy_article(num_classes: int = 10, in_channels: int = 3) -> GalaxyArticleResNet50:
    """Notebook 6's Galaxy10-article ResNet-50: 23,547,402 parameters for 10 classes."""
    return GalaxyArticleResNet50(num_classes=num_classes, in_channels=in_channels)


# The public builders; cnncourse.models registers them by name, in this order.
BUILDERS = (resnet50_keras_article, resnet50_galaxy_article)
