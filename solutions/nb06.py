"""Reference solutions of notebook 6's exercises (ResNet-50 on Galaxy10), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb06`` checks them.
"""
import torch


def conv1x1_by_matmul(x, weight, bias):
    """A 1x1 convolution as one matrix product applied to every pixel."""
    pixels = x.permute(0, 2, 3, 1)                       # (N, H, W, C): channels last
    out = pixels @ weight[:, :, 0, 0].T + bias           # (N, H, W, M)
    return out.permute(0, 3, 1, 2)


def conv_macs(in_channels, out_channels, kernel, size, stride=1, padding=0):
    """H' x W' x C_out x C_in x k x k multiply-accumulates."""
    out = (size + 2 * padding - kernel) // stride + 1
    return out * out * out_channels * in_channels * kernel * kernel


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
