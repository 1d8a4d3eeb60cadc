"""Reference solutions of notebook 7's exercises (what the network looks at), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb07`` checks them.
"""
import torch
import torch.nn.functional as F
from torch import nn


def smoothgrad(model, images, targets, noise):
    """The mean of the saliency maps of the noisy copies images + noise[s]."""
    maps = []
    for sample in noise:
        x = (images + sample).requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(logits[torch.arange(len(targets)), targets].sum(), x)   # own target logit
        maps.append(grad.abs().amax(dim=1))
    return torch.stack(maps).mean(dim=0)


def integrated_gradients(model, images, targets, baselines, steps):
    """(x - x') times the mean gradient at x' + (k / steps)(x - x'), k = 1 .. steps."""
    total = torch.zeros_like(images)
    for k in range(1, steps + 1):
        x = (baselines + k / steps * (images - baselines)).requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(logits[torch.arange(len(targets)), targets].sum(), x)
        total += grad
    return (images - baselines) * total / steps


def class_activation_map(features, fc_weight, targets):
    """Grad-CAM's weights are fc_weight[c, k] / (h w) for a network that ends in average pooling + fc."""
    h, w = features.shape[-2:]
    alpha = fc_weight[targets] / (h * w)                                  # (N, K)
    return F.relu(torch.einsum("nk,nkhw->nhw", alpha, features))


def heatmap_on_image(cam, size, jump, start):
    """Each pixel p reads the map at u = (p - start) / jump (clamped), linearly between two cells; scaled 0..1."""
    def weights(pixels, cells):                                           # (pixels, cells) interpolation matrix
        u = ((torch.arange(pixels, dtype=cam.dtype) - start) / jump).clamp(0, cells - 1)
        return (1 - (u[:, None] - torch.arange(cells, dtype=cam.dtype)).abs()).clamp_min(0)

    placed = weights(size[0], cam.shape[1]) @ cam @ weights(size[1], cam.shape[2]).T
    low = placed.amin(dim=(1, 2), keepdim=True)
    span = placed.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (placed - low) / span.clamp_min(1e-12), torch.zeros_like(placed))


def prepare_for_fine_tuning(model, num_classes, freeze_backbone=False):
    """Freeze the backbone if asked, then a new, trainable classifier for num_classes."""
    if freeze_backbone:
        for parameter in model.parameters():
            parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)   # new parameters: requires_grad True
    return model
