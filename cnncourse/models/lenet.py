"""LeNet (LeCun et al. 1998) as the course's LeNet article builds it for CIFAR-10, with BatchNorm.

Two 5x5 convolutions, each followed by BatchNorm, ReLU and 2x2 max-pooling, then dense layers
120-84-num_classes. It returns logits (no softmax: ``nn.CrossEntropyLoss`` takes logits). For a
3x32x32 input and 10 classes it has 62,050 parameters. This file needs torch alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BUILDERS", "LeNet", "lenet", "lenet_nobn"]


class LeNet(nn.Module):
    """conv5x5(in_channels->6), BN, ReLU, pool; conv5x5(6->16), BN, ReLU, pool; dense 120, 84, num_classes.

    The flattened size ``flat_features`` (16 * 5 * 5 for 32 px) is computed from ``image_size``, so
    ``LeNet(in_channels=1, image_size=28)`` fits MNIST (16 * 4 * 4). Inputs must be exactly
    ``image_size`` square because the first dense layer's width depends on it (``min_input_size``
    is that one size). ``num_features`` is 84, the width entering the classifier ``fc3``. ReLU is
    applied functionally, as in the article, so torchsummary's table and memory estimate match its own.
    ``batchnorm=False`` replaces both BatchNorms by identities (62,006 parameters for CIFAR-10).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 batchnorm: bool = True) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2  # two valid 5x5 convs (-4 each), two 2x2 pools (//2 each)
        if side < 1:
            raise ValueError(f"LeNet needs image_size >= 16 (two 5x5 convs and two 2x2 pools); got {image_size}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.min_input_size = image_size
        self.flat_features = 16 * side * side
        self.num_features = 84
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.bn1 = nn.BatchNorm2d(6) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.bn2 = nn.BatchNorm2d(16) if batchnorm else nn.Identity()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(self.flat_features, 120)
        self.fc2 = nn.Linear(120, self.num_features)
        self.fc3 = nn.Linear(self.num_features, num_classes)

    def _size_hint(self, h: int, w: int) -> str:
        """What to do about an h x w input of the wrong size (used by ``_check_input``)."""
        s = self.image_size
        if h == w and h >= 16:
            return f"Build it with image_size={h} for {h}x{w} images, or resize them to {s}x{s}."
        return f"Resize or crop the images to {s}x{s}."

    def forward_features(self, x: Tensor) -> Tensor:
        """The two conv-BN-ReLU-pool stages: feature maps of shape (N, 16, side, side)."""
        _check_input(x, self, exact=True)
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        return self.pool(F.relu(self.bn2(self.conv2(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        """Flatten and the three dense layers: logits of shape (N, num_classes)."""
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

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


def lenet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> LeNet:
    """Builder with the same signature style as the other models (see :class:`LeNet`)."""
    return LeNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def lenet_nobn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> LeNet:
    """LeNet without its two BatchNorm layers (the control of the BatchNorm comparison)."""
    return LeNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size, batchnorm=False)


# The public builders; cnncourse.models registers them by name, in this order.
BUILDERS = (lenet, lenet_nobn)
