"""DataLoaders with defaults that work everywhere, and the raw-pixel fast path ``to_tensors``."""
from __future__ import annotations

import os
import platform
import sys
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cnncourse.config import quick_mode
from cnncourse.data.galaxy10 import Galaxy10Dataset
from cnncourse.data.imageops import ImageSize, resize_array, resize_pil
from cnncourse.data.samples import SampleDataset
from cnncourse.utils import seed_worker


def in_notebook() -> bool:
    """True inside a Jupyter/Colab kernel (worker processes are fragile there)."""
    return "ipykernel" in sys.modules or "google.colab" in sys.modules


def default_num_workers() -> int:
    """0 where worker processes cause trouble or do not pay off, else up to 4.

    0 on Windows and macOS (spawned workers re-import the notebook or script, the classic
    ``num_workers`` crash), in notebooks, and in quick mode; otherwise ``min(4, CPUs - 1)``.
    """
    if platform.system() in ("Windows", "Darwin") or in_notebook() or quick_mode():
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus - 1))


def make_loader(dataset: Dataset, batch_size: int = 64, shuffle: bool = False,
                num_workers: Optional[int] = None, seed: Optional[int] = None,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader with safe defaults: worker count per platform, pinned memory with CUDA,
    persistent workers, and reproducible shuffling and augmentation when ``seed`` is given."""
    workers = default_num_workers() if num_workers is None else int(num_workers)
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), drop_last=drop_last,
                      persistent_workers=workers > 0, worker_init_fn=seed_worker if workers > 0 else None,
                      generator=generator)


def _as_nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) -> a fresh (N, C, H, W) tensor that shares no memory with the data set."""
    images = images[:, None, :, :] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.array(images, order="C", copy=True))


def _resized_stack(images, image_size: ImageSize) -> np.ndarray:
    if image_size is None:
        return np.asarray(images)
    return np.stack([resize_array(np.asarray(image), image_size) for image in images])


def _raw(dataset: Dataset, image_size: ImageSize) -> Tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, Subset):
        base = dataset.dataset
        if getattr(base, "samples", None) is not None and getattr(base, "loader", None) is not None:
            size = image_size if image_size is not None else getattr(dataset, "image_size", None)
            size = size if size is not None else getattr(base, "image_size", None)
            chosen = [base.samples[i] for i in dataset.indices]
            images = [np.asarray(resize_pil(base.loader(path), size)) for path, _ in chosen]
            return _as_nchw(np.stack(images)), torch.as_tensor([t for _, t in chosen], dtype=torch.int64)
        images, labels = _raw(base, image_size)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        return images[index], labels[index]
    size = image_size if image_size is not None else getattr(dataset, "image_size", None)
    if isinstance(dataset, Galaxy10Dataset):
        return dataset.read_arrays(size)
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if data is not None and targets is not None and len(data) == len(targets) and (
            isinstance(dataset, SampleDataset) or type(dataset).__module__.startswith("torchvision.datasets")):
        array = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if array.dtype == np.uint8 and array.ndim in (3, 4):  # MNIST (N,H,W), CIFAR (N,H,W,3)
            labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
            return _as_nchw(_resized_stack(array, size)), labels
    samples, loader = getattr(dataset, "samples", None), getattr(dataset, "loader", None)
    if samples is not None and loader is not None:  # ImageFolder: decode the files, skip the transform
        images = [np.asarray(resize_pil(loader(path), size)) for path, _ in samples]
        labels = torch.as_tensor([label for _, label in samples], dtype=torch.int64)
        return _as_nchw(np.stack(images)), labels
    return _iterate_without_transform(dataset, size)


def _iterate_without_transform(dataset: Dataset, size: ImageSize) -> Tuple[torch.Tensor, torch.Tensor]:
    saved = getattr(dataset, "transform", None)
    if saved is not None:
        dataset.transform = None
    try:
        images, labels = [], []
        for index in range(len(dataset)):
            image, label = dataset[index]
            if isinstance(image, torch.Tensor):
                if image.dtype != torch.uint8:
                    raise TypeError("to_tensors needs raw uint8 pixels or PIL images; this data set gives "
                                    f"{image.dtype} tensors even without its transform.")
                image = image.numpy().transpose(1, 2, 0) if image.ndim == 3 else image.numpy()
                image = image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image
            images.append(resize_array(np.asarray(image), size))
            labels.append(int(label))
    finally:
        if saved is not None:
            dataset.transform = saved
    return _as_nchw(np.stack(images)), torch.as_tensor(labels, dtype=torch.int64)


def to_tensors(dataset: Dataset, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """All images of ``dataset`` as uint8 (N, C, H, W) and labels as int64 (N,), without its transform.

    The in-memory fast path for training: reads torchvision's ``.data`` arrays, the packaged
    samples' arrays and Galaxy10's file in blocks directly (no per-image PIL round trip unless a
    resize is asked for); image folders and other data sets are decoded one by one. ``image_size``
    (default: the size the dataset was created with) resizes exactly as the per-item path does.
    """
    return _raw(dataset, image_size)
