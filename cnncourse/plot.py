"""Plots for the course: learning curves, confusion matrices, predictions, filters and feature maps.

Every function builds a ``matplotlib.figure.Figure`` without pyplot and returns it, so nothing
needs a display and no figure is kept alive behind your back. In a notebook, a figure shows when
it is the cell's last value (or with ``display(fig)``); save one with ``fig.savefig("x.png")``.

Accuracies come in as fractions (as :class:`cnncourse.train.History` stores them) and are drawn
in percent.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

__all__ = ["plot_learning_curves", "smooth_curve", "confusion_matrix", "plot_confusion_matrix",
           "plot_predictions", "plot_filters", "feature_maps", "plot_feature_maps"]

_TRAIN_COLOR, _VAL_COLOR, _TEST_COLOR = "tab:blue", "tab:green", "tab:orange"


class CourseFigure(Figure):
    """A matplotlib ``Figure`` that shows itself as PNG when it is a notebook cell's value.

    Figures made without pyplot have no display hook until pyplot is imported; this one brings its
    own, so ``plot_learning_curves(history)`` as a cell's last line always shows the plot, once.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _figure(figsize: Tuple[float, float]) -> CourseFigure:
    return CourseFigure(figsize=figsize, layout="constrained")


# --------------------------------------------------------------------------------------- learning curves
def _records(history) -> List[dict]:
    """Per-epoch records from a History, a list of dicts, a dict of columns, or a metrics/history JSON file."""
    if isinstance(history, (str, Path)):
        data = json.loads(Path(history).read_text())
        history = data["history"] if isinstance(data, dict) and "history" in data else data
    if hasattr(history, "records"):
        return list(history.records)
    if isinstance(history, dict):
        columns = {k: list(v) for k, v in history.items()}
        length = max(len(v) for v in columns.values())
        rows = [{k: (v[i] if i < len(v) else None) for k, v in columns.items()} for i in range(length)]
        for i, row in enumerate(rows):
            row.setdefault("epoch", i + 1)
        return rows
    return [dict(r) for r in history]


def smooth_curve(x: Sequence[float], y: Sequence[float], points: int = 200) -> Tuple[np.ndarray, np.ndarray]:
    """A smooth line through the points ``(x, y)`` with SciPy's ``InterpolatedUnivariateSpline``
    (cubic where there are 4 points or more), as in the LeNet article's accuracy plot."""
    from scipy.interpolate import InterpolatedUnivariateSpline

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2:
        return x, y
    spline = InterpolatedUnivariateSpline(x, y, k=min(3, len(x) - 1))
    dense = np.linspace(x.min(), x.max(), points)
    return dense, spline(dense)


def _epoch_limits(epochs: np.ndarray) -> Tuple[float, float]:
    """x limits for epochs: matplotlib's 5 % margins, but at least half an epoch either side, so that
    a run of one or two epochs gets whole-epoch ticks instead of a zoom onto 0.945-1.055."""
    low, high = float(epochs.min()), float(epochs.max())
    margin = max(0.5, 0.05 * (high - low))
    return low - margin, high + margin


_LABELS = {"train": "train", "val": "validation", "test": "test"}


def plot_learning_curves(history, metrics: Sequence[str] = ("loss", "acc"),
                         splits: Sequence[str] = ("train", "val", "test"), smooth: bool = False,
                         start_at_zero: bool = False, xlim: Optional[Tuple[float, float]] = None,
                         ylim: Optional[Dict[str, Tuple[float, float]]] = None,
                         title: Optional[str] = None, figsize: Optional[Tuple[float, float]] = None) -> Figure:
    """Loss and accuracy per epoch, train against validation and test, one panel per metric.

    Args:
        history: a :class:`~cnncourse.train.History`, a list of per-epoch dicts, a dict of
            columns such as ``{"test_acc": [...]}``, or the path of a ``metrics.json``.
        metrics: any of ``"loss"``, ``"acc"`` (drawn in percent).
        splits: which of ``"train"``, ``"val"``, ``"test"`` to draw (a split without values is
            skipped; a test set evaluated once, after the last epoch, is one point).
        smooth: draw a spline through the points (the points stay as markers).
        start_at_zero: begin accuracy curves at 0 % at epoch 0, as the LeNet article does.
        xlim: x-axis limits, e.g. ``(0, 10)``.
        ylim: per-metric y limits, e.g. ``{"acc": (0, 100)}``.

    The LeNet article's plot: ``plot_learning_curves(h, metrics=["acc"], splits=["test"],
    smooth=True, start_at_zero=True, xlim=(0, 10), ylim={"acc": (0, 100)})``.
    """
    records = _records(history)
    if not records:
        raise ValueError("the history is empty: nothing to plot")
    metrics = list(metrics)
    for metric in metrics:
        if metric not in ("loss", "acc"):
            raise ValueError(f"unknown metric {metric!r}; use 'loss' and/or 'acc'")
    figure = _figure(figsize or (5.0 * len(metrics), 3.8))
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(records)], dtype=float)
    drawn = [0.0] if start_at_zero and "acc" in metrics else []
    for ax, metric in zip(axes, metrics):
        scale = 100.0 if metric == "acc" else 1.0
        for split, color in (("train", _TRAIN_COLOR), ("val", _VAL_COLOR), ("test", _TEST_COLOR)):
            key = f"{split}_{metric}"
            if split not in splits or all(r.get(key) is None for r in records):
                continue
            pairs = [(e, r[key] * scale) for e, r in zip(epochs, records) if r.get(key) is not None]
            x = np.array([p[0] for p in pairs])
            y = np.array([p[1] for p in pairs])
            if start_at_zero and metric == "acc":
                x, y = np.concatenate([[0.0], x]), np.concatenate([[0.0], y])
            if smooth and len(x) >= 2:
                ax.plot(*smooth_curve(x, y), color=color, label=_LABELS[split])
                ax.plot(x, y, "o", color=color, markersize=4)
            else:
                ax.plot(x, y, "o-", color=color, markersize=4 if len(x) > 1 else 7, label=_LABELS[split])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs only
        ax.set_ylabel("accuracy (%)" if metric == "acc" else "loss")
        ax.set_title("accuracy" if metric == "acc" else "loss")
        ax.set_xlim(*(xlim if xlim is not None else _epoch_limits(np.concatenate([epochs, drawn]))))
        if ylim and metric in ylim:
            ax.set_ylim(*ylim[metric])
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------------------- confusion matrix
def confusion_matrix(labels, preds, num_classes: Optional[int] = None) -> np.ndarray:
    """Counts ``[K, K]``: row = true class, column = predicted class (no scikit-learn needed)."""
    labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64).ravel()
    preds = np.asarray(torch.as_tensor(preds).cpu(), dtype=np.int64).ravel()
    if labels.shape != preds.shape:
        raise ValueError(f"labels and preds differ in length: {labels.shape} vs {preds.shape}")
    if num_classes is None:
        num_classes = int(max(labels.max(initial=-1), preds.max(initial=-1))) + 1
    counts = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix, class_names: Optional[Sequence[str]] = None, normalize: bool = False,
                          title: Optional[str] = None, cmap: str = "Blues",
                          figsize: Optional[Tuple[float, float]] = None) -> Figure:
    """Draw a confusion matrix with class names on both axes and the counts in the cells.

    ``matrix`` is a ``[K, K]`` array from :func:`confusion_matrix`, or the
    :class:`~cnncourse.train.Predictions` of :func:`cnncourse.train.predict`.
    ``normalize=True`` shows each row as fractions of the true class (recall on the diagonal).
    """
    if hasattr(matrix, "labels") and hasattr(matrix, "preds"):
        num_classes = len(class_names) if class_names is not None else None
        if num_classes is None and getattr(matrix, "logits", None) is not None:
            num_classes = matrix.logits.shape[1]
        matrix = confusion_matrix(matrix.labels, matrix.preds, num_classes)
    counts = np.asarray(matrix)
    size = counts.shape[0]
    if counts.ndim != 2 or counts.shape[1] != size:
        raise ValueError(f"a confusion matrix must be square; got shape {counts.shape}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(size)]
    if len(names) != size:
        raise ValueError(f"{len(names)} class names for a {size}x{size} matrix")
    values = counts.astype(float)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    side = max(4.5, 0.55 * size + 2.5)
    figure = _figure(figsize or (side + 1.0, side))
    ax = figure.subplots()
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=values.max() if values.max() > 0 else 1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(size), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(size), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if size <= 25:
        threshold = values.max() / 2 if values.max() > 0 else 0.5
        for i in range(size):
            for j in range(size):
                text = f"{values[i, j]:.2f}" if normalize else f"{counts[i, j]:d}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > threshold else "black")
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else float("nan")
    ax.set_title(title or f"confusion matrix (accuracy {100 * accuracy:.1f} %)")
    return figure


# --------------------------------------------------------------------------------------- images
def _to_display(images: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """[N, C, H, W] uint8 or normalised float -> [N, H, W, C] floats in 0-1 for imshow."""
    images = torch.as_tensor(images).detach().cpu()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    else:
        images = images.float()
        if mean is not None and std is not None:
            mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
            std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
            images = images * std_t + mean_t
    return images.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def plot_predictions(images, labels=None, preds=None, class_names: Optional[Sequence[str]] = None,
                     mean=None, std=None, n: int = 16, ncols: int = 8, errors_first: bool = True,
                     title: Optional[str] = None) -> Figure:
    """A grid of images titled with the predicted label and, when wrong, the true one (errors in red).

    ``images`` are uint8, or normalised floats undone with ``mean``/``std``; or pass the
    :class:`~cnncourse.train.Predictions` of ``predict(..., keep_images=True)`` as the first
    argument. With ``errors_first`` the misclassified images come first.
    """
    if hasattr(images, "preds") and hasattr(images, "images"):
        predictions = images
        if predictions.images is None:
            raise ValueError("these predictions hold no images: call predict(..., keep_images=True)")
        images, labels, preds = predictions.images, predictions.labels, predictions.preds
    if labels is None or preds is None:
        raise ValueError("plot_predictions needs labels and preds (or a Predictions with images)")
    labels = np.asarray(torch.as_tensor(labels).cpu()).ravel()
    preds = np.asarray(torch.as_tensor(preds).cpu()).ravel()
    pixels = _to_display(images, mean, std)
    order = np.arange(len(labels))
    if errors_first:
        order = np.concatenate([order[labels != preds], order[labels == preds]])
    order = order[:n]
    ncols = max(1, min(ncols, len(order)))
    nrows = max(1, int(np.ceil(len(order) / ncols)))
    figure = _figure((1.6 * ncols, 1.9 * nrows))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()

    def name(k):
        return class_names[k] if class_names is not None else str(k)

    for ax, index in zip(axes, order):
        picture = pixels[index]
        if picture.shape[-1] == 1:
            ax.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(picture)
        right = labels[index] == preds[index]
        text = name(preds[index]) if right else f"{name(preds[index])}\n(true: {name(labels[index])})"
        ax.set_title(text, fontsize=8, color="green" if right else "red")
    for ax in axes:
        ax.axis("off")
    errors = int((labels != preds).sum())
    if title is None:
        title = f"predictions: {errors} of {len(labels)} wrong" + ("; errors first" if errors_first else "")
    figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------------------- filters and feature maps
def _first_conv(model: nn.Module, layer: Optional[str]) -> nn.Module:
    modules = dict(model.named_modules())
    if layer is not None:
        if layer not in modules:
            raise KeyError(f"no layer named {layer!r}; layers: {[k for k in modules if k][:40]}")
        return modules[layer]
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError("the model has no nn.Conv2d layer")


def plot_filters(model_or_weight, layer: Optional[str] = None, max_filters: int = 64,
                 ncols: int = 8, title: Optional[str] = None) -> Figure:
    """The kernels of the first convolution (or of ``layer``), one small image per filter.

    Filters with 3 input channels are shown in colour, others as grey images of their first
    input channel. Each filter is scaled to its own min-max range. Also takes a weight tensor
    ``[out, in, kH, kW]``.
    """
    if isinstance(model_or_weight, nn.Module):
        module = _first_conv(model_or_weight, layer)
        weight = module.weight
        label = layer or next(n for n, m in model_or_weight.named_modules() if m is module)
    else:
        weight, label = torch.as_tensor(model_or_weight), layer or "weights"
    weight = weight.detach().float().cpu()
    if weight.dim() != 4:
        raise ValueError(f"convolution weights must be [out, in, kH, kW]; got {tuple(weight.shape)}")
    count = min(max_filters, weight.shape[0])
    weight = weight[:count]
    low = weight.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = weight.flatten(1).max(1).values.view(-1, 1, 1, 1)
    scaled = (weight - low) / (high - low).clamp_min(1e-12)
    ncols = max(1, min(ncols, count))
    nrows = int(np.ceil(count / ncols))
    figure = _figure((1.1 * ncols, 1.1 * nrows + 0.5))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        ax.axis("off")
        if index >= count:
            continue
        kernel = scaled[index]
        if kernel.shape[0] == 3:
            ax.imshow(kernel.permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            ax.imshow(kernel[0].numpy(), cmap="gray", interpolation="nearest")
    figure.suptitle(title or f"{label}: {count} filters {tuple(weight.shape[1:])}")
    return figure


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor, layer: str) -> torch.Tensor:
    """The output ``[C, H, W]`` of the layer named ``layer`` for one (normalised) image ``[C, H, W]``.

    Uses a forward hook; the model runs in eval mode and its mode is restored.
    """
    module = _first_conv(model, layer)
    captured = []
    handle = module.register_forward_hook(lambda mod, inputs, output: captured.append(output))
    was_training = model.training
    model.eval()
    try:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        batch = torch.as_tensor(image)
        batch = batch.unsqueeze(0) if batch.dim() == 3 else batch[:1]
        model(batch.to(device).float())
    finally:
        handle.remove()
        model.train(was_training)
    output = captured[0]
    output = output[0] if isinstance(output, (tuple, list)) else output
    return output[0].detach().float().cpu()


def plot_feature_maps(model: nn.Module, image: torch.Tensor, layer: str, max_maps: int = 16,
                      ncols: int = 8, mean=None, std=None, title: Optional[str] = None) -> Figure:
    """The input image and the first ``max_maps`` feature maps of the layer named ``layer``.

    Layer names are those of ``model.named_modules()`` (e.g. ``"features.0"``, ``"layer1.0.conv1"``).
    ``mean``/``std`` undo the normalisation for showing the input.
    """
    maps = feature_maps(model, image, layer)
    if maps.dim() == 1:
        maps = maps.view(-1, 1, 1)
    count = min(max_maps, maps.shape[0])
    ncols = max(1, min(ncols, count + 1))
    nrows = int(np.ceil((count + 1) / ncols))
    figure = _figure((1.5 * ncols, 1.6 * nrows + 0.4))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    picture = _to_display(torch.as_tensor(image).unsqueeze(0) if torch.as_tensor(image).dim() == 3
                          else torch.as_tensor(image)[:1], mean, std)[0]
    axes[0].imshow(picture[..., 0] if picture.shape[-1] == 1 else picture,
                   cmap="gray" if picture.shape[-1] == 1 else None)
    axes[0].set_title("input", fontsize=8)
    for index in range(count):
        ax = axes[index + 1]
        ax.imshow(maps[index].numpy(), cmap="viridis")
        ax.set_title(f"map {index}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    figure.suptitle(title or f"{layer}: {count} of {maps.shape[0]} feature maps {tuple(maps.shape[1:])}")
    return figure
