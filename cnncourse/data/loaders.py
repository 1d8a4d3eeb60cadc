"""DataLoaders with defaults that work everywhere, and the raw-pixel fast path ``to_tensors``."""
from __future__ import annotations

import copy
import os
import platform
import sys
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets.vision import StandardTransform

from cnncourse.config import quick_mode
from cnncourse.data.errors import DataError
from cnncourse.data.imageops import ImageSize, as_nchw, resize_array
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
    kind = _PrivateRandomLoader if generator is not None and workers == 0 else DataLoader
    return kind(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                pin_memory=torch.cuda.is_available(), drop_last=drop_last,
                persistent_workers=workers > 0, worker_init_fn=seed_worker if workers > 0 else None,
                generator=generator)


class _PrivateRandomLoader(DataLoader):
    """A seeded DataLoader without worker processes whose transforms draw from a stream of their own.

    In the main process, torchvision's random transforms draw from torch's global generator, which
    the loader's seed does not touch (worker processes are seeded by ``seed_worker`` instead). Here
    every pass seeds a private stream from the loader's generator and swaps it in only while a batch
    is made, so the augmentation is reproducible, and the training's own random draws (dropout,
    initialisation) neither shift it nor are shifted by it. A checkpoint that restores the loader's
    generator (``fit`` saves it) restores the next pass's augmentation too."""

    def __iter__(self):
        stream = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (), generator=self.generator)))
        private = stream.get_state()
        batches = super().__iter__()
        while True:
            outer = torch.get_rng_state()
            torch.set_rng_state(private)
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                private = torch.get_rng_state()
                torch.set_rng_state(outer)
            yield batch


def _num_classes(dataset: Dataset) -> Optional[int]:
    while True:
        classes = getattr(dataset, "classes", None)
        if classes is not None:
            return len(classes)
        if not isinstance(dataset, Subset):
            return None
        dataset = dataset.dataset


def describe(dataset: Dataset) -> str:
    """A short name for a data set in messages: its ``title`` when it has one, else its type and root."""
    title = getattr(dataset, "title", None)
    if title:
        return str(title)
    root = getattr(dataset, "root", None)
    return type(dataset).__name__ + (f" at {root}" if root is not None else "")


def check_labels(labels: torch.Tensor, num_classes: Optional[int], what: str) -> None:
    """Raise :class:`DataError` naming ``what`` when a label is outside ``[0, num_classes)``."""
    bad = labels < 0 if num_classes is None else (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        values = sorted(set(labels[bad].tolist()))
        where = torch.nonzero(bad).flatten()[:5].tolist()
        expected = "labels >= 0" if num_classes is None else f"labels 0-{num_classes - 1} ({num_classes} classes)"
        raise DataError(
            f"{what}: {int(bad.sum())} label(s) are out of range: values {values[:10]} at positions "
            f"{where}{' ...' if int(bad.sum()) > 5 else ''}; expected {expected}. The files are damaged "
            "or belong to another data set: replace them with the data set's original files.")


def _without_transform(dataset: Dataset) -> Dataset:
    """A shallow copy of ``dataset`` whose items skip the image transform (the caller's is untouched)."""
    if getattr(dataset, "transform", None) is None and getattr(dataset, "transforms", None) is None:
        return dataset
    clone = copy.copy(dataset)
    try:
        clone.transform = None
    except AttributeError as error:
        raise TypeError(f"to_tensors cannot read {describe(dataset)} without its transform ({error}); give it "
                        "a to_tensors(image_size=None) method returning uint8 [N, C, H, W] images and "
                        "int64 [N] labels") from error
    if isinstance(getattr(clone, "transforms", None), StandardTransform):
        clone.transforms = StandardTransform(None, getattr(clone, "target_transform", None))
    return clone


def _iterate_raw(dataset: Dataset, size: ImageSize) -> Tuple[torch.Tensor, torch.Tensor]:
    raw = _without_transform(dataset)
    images, labels = [], []
    for index in range(len(raw)):
        image, label = raw[index]
        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8:
                raise TypeError(f"to_tensors needs raw uint8 pixels or PIL images; {describe(dataset)} gives "
                                f"{image.dtype} tensors even without its transform.")
            image = image.numpy().transpose(1, 2, 0) if image.ndim == 3 else image.numpy()
            image = image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image
        images.append(resize_array(np.asarray(image), size))
        labels.append(int(label))
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise DataError(f"{describe(dataset)}: the images have different sizes ({', '.join(map(str, shapes[:4]))}); "
                        "pass image_size=... (on the command line --image-size) to resize them all to one size.")
    if not images:
        raise DataError(f"{describe(dataset)} has no images.")
    return as_nchw(np.stack(images)), torch.as_tensor(labels, dtype=torch.int64)


def to_tensors(dataset: Dataset, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """All images of ``dataset`` as uint8 (N, C, H, W) and labels as int64 (N,), without its transform.

    The in-memory fast path for training. The course's data sets do it themselves with their
    ``to_tensors`` method (torchvision's ``.data`` arrays, the packaged samples' arrays and
    Galaxy10's file are read in blocks; image folders are decoded file by file). Any other data set
    is read item by item through a shallow copy with its transform removed (``dataset`` itself is
    never changed). ``image_size`` (default: the size the dataset was created with) resizes exactly
    as the per-item path does. Labels outside ``[0, len(dataset.classes))`` raise :class:`DataError`.
    """
    method = getattr(dataset, "to_tensors", None)
    if callable(method):
        images, labels = method(image_size=image_size)
    elif isinstance(dataset, Subset):
        images, labels = to_tensors(dataset.dataset, image_size)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        images, labels = images[index], labels[index]
    else:
        size = image_size if image_size is not None else getattr(dataset, "image_size", None)
        images, labels = _iterate_raw(dataset, size)
    check_labels(labels, _num_classes(dataset), describe(dataset))
    return images, labels
