"""Reference solutions of notebook 3's exercises (ResNet on MNIST), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb03`` checks them.
"""
import torch.nn.functional as F
from torch import nn


def topk_error(logits, labels, k=5):
    """Share of the images whose true label is not among the k highest logits."""
    top = logits.topk(k, dim=1).indices
    return 1.0 - (top == labels[:, None]).any(dim=1).float().mean().item()


class MyNoShortcutBlock(nn.Module):
    """3x3 conv (stride) - BN - ReLU - 3x3 conv - BN - ReLU, no shortcut."""

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def shortcut_parameters(in_channels, stages, expansion=1):
    """Each block's shortcut parameters: 0 for the identity, C·C' + 2C' for a 1x1 conv + BN projection,
    which a block needs when its stride is not 1 or its channels change."""
    counts, channels = [], in_channels
    for width, num_blocks, stride in stages:
        out_channels = expansion * width
        for index in range(num_blocks):
            block_stride = stride if index == 0 else 1
            identity = block_stride == 1 and channels == out_channels
            counts.append(0 if identity else channels * out_channels + 2 * out_channels)
            channels = out_channels
    return counts


def option_a_shortcut(x, out_channels, stride):
    """Every stride-th pixel of x, then zero channels appended up to out_channels."""
    kept = x[:, :, ::stride, ::stride]
    return F.pad(kept, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def resnet34_params(num_classes=1000, in_channels=3):
    """ResNet-34's parameter count by formula."""
    total = 64 * in_channels * 7 * 7 + 2 * 64          # stem conv (no bias) and its BatchNorm
    channels = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for _ in range(blocks):
            total += 9 * channels * width + 2 * width + 9 * width * width + 2 * width
            if channels != width:                          # projection: 1x1 conv + BatchNorm
                total += channels * width + 2 * width
            channels = width
    return total + 512 * num_classes + num_classes
