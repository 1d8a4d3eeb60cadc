"""Figures of what a network looks at (lesson 7, its lab and lesson 8): which test images to show and a
grid of images with their heat maps below. The maps themselves (saliency, Grad-CAM, their placement)
are the lessons' own code; this is only the drawing, which matplotlib needs many lines for.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

__all__ = ["to_pictures", "first_right_per_class", "surest_mistakes", "show_heat_maps"]


def to_pictures(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised images (N, C, H, W) back to 0..1 for ``imshow``: (N, H, W, C)."""
    mean = torch.as_tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


def first_right_per_class(shown, num_classes: int) -> torch.Tensor:
    """The index of the first correctly classified image of every class, in class order (``shown``: a
    :class:`cnncourse.train.Predictions`); ValueError naming a class with no right answer."""
    right = (shown.preds == shown.labels).nonzero()[:, 0]
    picked = []
    for c in range(num_classes):
        of_class = right[shown.labels[right] == c]
        if len(of_class) == 0:
            raise ValueError(f"no image of class {c} is classified right; show fewer classes")
        picked.append(of_class[0])
    return torch.stack(picked)


def surest_mistakes(shown, count: int) -> torch.Tensor:
    """The indices of the ``count`` wrong predictions made with the highest softmax probability, surest first."""
    wrong = (shown.preds != shown.labels).nonzero()[:, 0]
    confidence = shown.logits[wrong].softmax(dim=1).amax(dim=1)
    return wrong[confidence.argsort(descending=True, stable=True)][:count]


def show_heat_maps(shown, index: torch.Tensor, rows: Dict[str, torch.Tensor], mean, std, classes, title: str):
    """The images ``index`` of ``shown`` on top (titled with the prediction: green when right, red with the
    true class when wrong), then one row per entry of ``rows`` (name: maps (len(index), H, W) in 0..1):
    a name starting with "saliency" drawn alone in grey, any other over a grey copy of the image.
    Draws the figure (a notebook shows it) and returns nothing, so it is not shown twice."""
    import matplotlib.pyplot as plt
    pictures = to_pictures(shown.images[index], mean, std)
    grey = pictures.mean(dim=-1)
    n = len(index)
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(1.25 * n + 0.6, 1.35 * (1 + len(rows)) + 0.5), squeeze=False)
    for j, i in enumerate(index.tolist()):
        right = bool(shown.preds[i] == shown.labels[i])
        axes[0, j].imshow(pictures[j].squeeze(-1), cmap="gray" if pictures.shape[-1] == 1 else None)
        text = classes[shown.preds[i]] if right else f"{classes[shown.preds[i]]}\n(true: {classes[shown.labels[i]]})"
        axes[0, j].set_title(text, fontsize=7, color="green" if right else "red")
        for row, (name, maps) in enumerate(rows.items(), start=1):
            if name.startswith("saliency"):
                axes[row, j].imshow(maps[j], cmap="gray", vmin=0, vmax=1)
            else:
                axes[row, j].imshow(grey[j], cmap="gray", vmin=0, vmax=1)
                axes[row, j].imshow(maps[j], cmap="viridis", alpha=0.45, vmin=0, vmax=1)
    for row, name in enumerate(["image", *rows]):
        axes[row, 0].text(-0.08, 0.5, name.replace(", ", ",\n"), transform=axes[row, 0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
