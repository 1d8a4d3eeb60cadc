"""Validation hold-outs and training subsets: seeded, stratified views of a training split.

``get_dataset(name, "val", val_fraction=0.1)`` and ``get_dataset(name, "train", val_fraction=0.1)``
are the two disjoint parts of the same training split: both are computed from the labels and the
seed alone, so they never overlap, and every class keeps its share in both. ``subset=N`` keeps
about N training images, again stratified (for short controlled experiments).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from cnncourse.data.imageops import ImageSize, stratified_split


class DataSubset(Subset):
    """A seeded part of a course data set that keeps ``classes``, ``targets``, ``title``,
    ``image_size``, the parent's ``transform`` and the fast path's ``to_tensors``."""

    def __init__(self, dataset: Dataset, indices, part: str) -> None:
        super().__init__(dataset, [int(i) for i in indices])
        self.classes: List[str] = list(dataset.classes)
        targets = dataset.targets
        self.targets: List[int] = [int(targets[i]) for i in self.indices]
        self.image_size: ImageSize = getattr(dataset, "image_size", None)
        self.title = f"{getattr(dataset, 'title', type(dataset).__name__)} ({part})"

    @property
    def transform(self) -> Optional[Callable]:
        return getattr(self.dataset, "transform", None)

    def to_tensors(self, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """This part's uint8 images and int64 labels (the parent's, then picked)."""
        from cnncourse.data.loaders import to_tensors
        images, labels = to_tensors(self.dataset, image_size if image_size is not None else self.image_size)
        index = torch.as_tensor(self.indices, dtype=torch.int64)
        return images[index], labels[index]


def holdout_indices(targets, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a training split: ``val_fraction`` of every class held out, seeded."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (e.g. 0.1), got {val_fraction}")
    return stratified_split(np.asarray(targets), test_fraction=val_fraction, seed=seed)


def subset_indices(targets, size: int, seed: int) -> np.ndarray:
    """About ``size`` indices with every class in its share (rounded per class), seeded and sorted."""
    targets = np.asarray(targets)
    if size < len(np.unique(targets)):
        raise ValueError(f"subset must keep at least one image per class ({len(np.unique(targets))}); got {size}")
    if size >= len(targets):
        return np.arange(len(targets))
    return stratified_split(targets, test_fraction=size / len(targets), seed=seed + 1)[1]


def split_training(dataset: Dataset, split: str, val_fraction: float = 0.0, subset: Optional[int] = None,
                   seed: int = 0) -> Dataset:
    """The ``split`` ("train" or "val") part of a full training split ``dataset``."""
    if split == "val" and not val_fraction:
        raise ValueError("split='val' needs val_fraction > 0 (e.g. 0.1); pass the same val_fraction for the "
                         "'train' split too, so that the two parts do not overlap")
    if subset is not None and split != "train":
        raise ValueError(f"subset=... applies to the 'train' split only; got split={split!r}")
    if not val_fraction and subset is None:
        return dataset
    indices = np.arange(len(dataset))
    if val_fraction:
        train, val = holdout_indices(dataset.targets, val_fraction, seed)
        indices = val if split == "val" else train
    part = f"validation hold-out, {val_fraction:g}" if split == "val" else \
        (f"training part without the {val_fraction:g} hold-out" if val_fraction else "training")
    if subset is not None:
        labels = np.asarray(dataset.targets)[indices]
        indices = indices[subset_indices(labels, subset, seed)]
        part += f", stratified subset of {len(indices)}"
    return DataSubset(dataset, indices, part)
