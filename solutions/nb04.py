"""Reference solutions of notebook 4's exercises (ResNet-50 on Fashion-MNIST), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb04`` checks them.
"""
import torch.nn.functional as F
from torch import nn


class KerasBottleneck(nn.Module):
    """The Keras article's bottleneck: biased 1x1, 3x3, 1x1 convolutions with BatchNorm; a biased
    1x1 convolution without BatchNorm on the shortcut when the channels change."""

    def __init__(self, in_channels, width, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def keras_param_total(model):
    """PyTorch's parameters plus every BatchNorm's running mean and variance."""
    statistics = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                     if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)))
    return sum(p.numel() for p in model.parameters()) + statistics


def global_avg_pool(x):
    """The mean of each channel over all positions: (N, C, H, W) -> (N, C)."""
    return x.mean(dim=(2, 3))


def live_taps(n, kernel, stride, padding):
    """Kernel positions j along one axis whose input index i*stride + j - padding is a real pixel
    (0 <= index < n) for at least one output i; there are (n + 2*padding - kernel) // stride + 1 outputs."""
    outputs = (n + 2 * padding - kernel) // stride + 1
    return sum(any(0 <= i * stride + j - padding < n for i in range(outputs)) for j in range(kernel))
