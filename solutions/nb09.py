"""Reference solutions of notebook 9's exercises (speedrun: how fast can a CNN train), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb09`` checks them.
"""
import torch
import torch.nn.functional as F


def alternating_flip(images, first_mask, epoch):
    """first_mask in even epochs, its complement in odd ones; torch.where builds a new tensor."""
    mask = first_mask if epoch % 2 == 0 else ~first_mask
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def whitening_matrix(patches, eps=5e-4):
    """Eigenvectors of the covariance (eigh's columns), each divided by sqrt(eigenvalue + eps), as rows."""
    values, vectors = torch.linalg.eigh(torch.cov(patches.T))
    return (vectors / torch.sqrt(values + eps)).T


def shift_images(images, shifts, pad):
    """Pad once by reflection, then crop each image at (pad + dy, pad + dx)."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    crops = [image[:, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
             for image, (dy, dx) in zip(padded, shifts.tolist())]
    return torch.stack(crops)


def six_view_logits(model, images):
    """Half the flip mean of the images, a quarter each that of the two one-pixel shifts (reflected border)."""
    model.eval()
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    views = [images, padded[..., 2:, 2:], padded[..., :h, :w]]
    with torch.no_grad():
        means = [(model(x) + model(x.flip(-1))) / 2 for x in views]
    return means[0] / 2 + (means[1] + means[2]) / 4
