"""Reference solutions of notebook 7's exercises (what the network looks at), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb07`` checks them.
"""
import torch
import torch.nn.functional as F
from torch import nn


def saliency_map(model, images, targets):
    """|d logit[target] / d pixel|, the largest over the colour channels."""
    x = images.clone().requires_grad_(True)
    score = model(x).gather(1, targets[:, None]).sum()     # each image's own target logit
    (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)


def gradcam_weights(gradients):
    """The global average of the gradients over the positions: one weight per channel."""
    return gradients.mean(dim=(2, 3))


def gradcam_map(activations, weights):
    """ReLU of the feature maps' sum weighted by channel."""
    return F.relu((weights[:, :, None, None] * activations).sum(dim=1))


def upsample_heatmap(cam, size):
    """Bilinear upsampling to size, then each map scaled to 0..1 (a constant map to zeros)."""
    up = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (up - low) / span.clamp_min(1e-12), torch.zeros_like(up))


def prepare_for_fine_tuning(model, num_classes, freeze_backbone=False):
    """Freeze the backbone if asked, then a new, trainable classifier for num_classes."""
    if freeze_backbone:
        for parameter in model.parameters():
            parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)   # new parameters: requires_grad True
    return model
