"""VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image Recognition").

Stacks of 3x3 convolutions reach the receptive field of one large filter with fewer parameters
and more non-linearities. The architecture is data: a configuration list such as
``[64, 64, "M", 128, ...]`` (a number is a 3x3 conv with that many channels, "M" a 2x2 max-pool)
that ``make_layers`` turns into modules. ``vgg16`` has exactly torchvision's 138,357,544
parameters for 1000 classes. This file needs torch alone: copy it into a project and it works.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = ["BUILDERS", "CONFIGS", "VGG", "make_layers", "vgg11", "vgg13", "vgg16", "vgg19",
           "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]

# The paper's configurations A (VGG11), B (VGG13), D (VGG16) and E (VGG19).
CONFIGS: Dict[str, List[Union[int, str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: Sequence[Union[int, str]], batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    """Turn a configuration into modules: each number a 3x3 conv (padding 1) + [BatchNorm] + ReLU,
    each "M" a 2x2 max-pool that halves the size. Convolutions keep their bias even before BatchNorm,
    as torchvision's do, so that torchvision's state_dicts (pretrained weights included) load unchanged."""
    layers: List[nn.Module] = []
    channels = in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_channels = int(item)
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Convolutional ``features``, adaptive average pooling to 7x7 and the classifier
    25088-4096-4096-num_classes with ReLU and dropout; returns logits.

    The adaptive pool lets the same classifier take 32-224 px inputs (a 32 px input leaves a 1x1
    map after the five max-pools, which the pool repeats to 7x7); inputs need at least 32 px
    (``min_input_size``). ``num_features`` is 4096, the width entering the last dense layer.
    """

    def __init__(self, cfg: Sequence[Union[int, str]], num_classes: int = 1000, in_channels: int = 3,
                 batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.min_input_size = 2 ** sum(1 for item in cfg if item == "M")
        last_width = [item for item in cfg if item != "M"][-1]
        self.num_features = 4096
        self.features = make_layers(cfg, batch_norm=batch_norm, in_channels=in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(int(last_width) * 7 * 7, self.num_features), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(self.num_features, self.num_features), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(self.num_features, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The convolutional part: feature maps of shape (N, 512, H/32, W/32)."""
        _check_input(x, self)
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        """Pool to 7x7, flatten and classify: logits of shape (N, num_classes)."""
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


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


def _vgg(config: str, batch_norm: bool, num_classes: int, in_channels: int, dropout: float) -> VGG:
    return VGG(CONFIGS[config], num_classes=num_classes, in_channels=in_channels, batch_norm=batch_norm,
               dropout=dropout)


def vgg11(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG11, configuration A (8 conv + 3 dense layers)."""
    return _vgg("A", False, num_classes, in_channels, dropout)


def vgg13(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG13, configuration B (10 conv + 3 dense layers)."""
    return _vgg("B", False, num_classes, in_channels, dropout)


def vgg16(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG16, configuration D (13 conv + 3 dense layers); 138,357,544 parameters for 1000 classes,
    134,301,514 for 10."""
    return _vgg("D", False, num_classes, in_channels, dropout)


def vgg19(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG19, configuration E (16 conv + 3 dense layers)."""
    return _vgg("E", False, num_classes, in_channels, dropout)


def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG11 with BatchNorm after every convolution."""
    return _vgg("A", True, num_classes, in_channels, dropout)


def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG13 with BatchNorm after every convolution."""
    return _vgg("B", True, num_classes, in_channels, dropout)


def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG16 with BatchNorm after every convolution (trains with larger learning rates)."""
    return _vgg("D", True, num_classes, in_channels, dropout)


def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG19 with BatchNorm after every convolution."""
    return _vgg("E", True, num_classes, in_channels, dropout)


# The public builders; cnncourse.models registers them by name, in this order.
BUILDERS = (vgg11, vgg13, vgg16, vgg19, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn)
