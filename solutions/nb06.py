"""Reference solutions of notebook 6's exercises (ResNet-50 on Galaxy10), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb06`` checks them.
"""
import torch


def conv1x1_by_matmul(x, weight, bias):
    """A 1x1 convolution as one matrix product applied to every pixel."""
    pixels = x.permute(0, 2, 3, 1)                       # (N, H, W, C): channels last
    out = pixels @ weight[:, :, 0, 0].T + bias           # (N, H, W, M)
    return out.permute(0, 3, 1, 2)


def bottleneck_macs(in_channels, width, size, stride):
    """H'·W'·C_out·C_in·k² for each convolution of the block, at the size of its own output."""
    out = (size + 2 - 3) // stride + 1                    # the 3x3 (padding 1) carries the stride
    macs = size * size * in_channels * width              # first 1x1, on the input
    macs += out * out * 9 * width * width                 # 3x3
    macs += out * out * width * 4 * width                 # last 1x1
    if stride != 1 or in_channels != 4 * width:           # projection shortcut
        macs += out * out * in_channels * 4 * width
    return macs


def rotate_flip(images, quarter_turns, flips):
    """Mirror image i left-right if flips[i], then turn it by quarter_turns[i] x 90 degrees."""
    out = []
    for image, turns, flip in zip(images, quarter_turns, flips):
        if flip:
            image = image.flip(-1)
        out.append(torch.rot90(image, int(turns), dims=(-2, -1)))
    return torch.stack(out)


def confusion_matrix(labels, preds, num_classes):
    """Entry [i, j]: images of true class i predicted as class j."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for label, pred in zip(labels, preds):
        matrix[label, pred] += 1
    return matrix
