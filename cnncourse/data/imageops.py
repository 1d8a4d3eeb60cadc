"""Resizing and splitting helpers shared by every data set (one resize rule everywhere)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

ImageSize = Union[int, Tuple[int, int], None]


def size_hw(image_size: ImageSize) -> Optional[Tuple[int, int]]:
    """``64`` or ``(64, 64)`` -> ``(64, 64)``; None stays None."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        return image_size, image_size
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return height, width


def resize_pil(image: Image.Image, image_size: ImageSize) -> Image.Image:
    """Resize a PIL image to ``image_size`` with bilinear filtering (antialiased when shrinking).

    This is exactly what ``torchvision.transforms.Resize((h, w))`` does to a PIL image, so the
    in-memory fast path and the per-item path give identical pixels.
    """
    hw = size_hw(image_size)
    if hw is None or image.size == (hw[1], hw[0]):
        return image
    return image.resize((hw[1], hw[0]), Image.BILINEAR)


def with_resize(transform: Optional[Callable], image_size: ImageSize) -> Optional[Callable]:
    """Prepend a bilinear ``Resize`` (what :func:`resize_pil` does) to ``transform``."""
    hw = size_hw(image_size)
    if hw is None:
        return transform
    resize = T.Resize(hw, interpolation=T.InterpolationMode.BILINEAR)
    return resize if transform is None else T.Compose([resize, transform])


def to_pil(array: np.ndarray) -> Image.Image:
    """A uint8 array (H, W) or (H, W, 3) as a PIL image ('L' or 'RGB')."""
    return Image.fromarray(np.ascontiguousarray(array))


def resize_array(array: np.ndarray, image_size: ImageSize) -> np.ndarray:
    """Resize one uint8 image array (H, W[, C]) through PIL, like :func:`resize_pil`."""
    hw = size_hw(image_size)
    if hw is None or tuple(array.shape[:2]) == hw:
        return array
    return np.asarray(resize_pil(to_pil(array), hw))


def resize_stack(images, image_size: ImageSize) -> np.ndarray:
    """A stack of uint8 images (N, H, W[, C]), each resized like :func:`resize_array`."""
    if image_size is None:
        return np.asarray(images)
    return np.stack([resize_array(np.asarray(image), image_size) for image in images])


def as_nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 -> a fresh (N, C, H, W) tensor that shares no memory with the data set."""
    images = images[:, None, :, :] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.array(images, order="C", copy=True))


def stratified_split(labels: Sequence[int], test_fraction: float = 0.1,
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, test), the same fraction of every class in test, reproducibly.

    Each class with at least two images puts ``round(test_fraction * n)`` of them (at least one,
    at most ``n - 1``) into test, chosen by a NumPy generator seeded with ``seed``; a class of 17
    images therefore gives 2 test images. Both index arrays are sorted (fast HDF5 reads).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        n_test = min(max(1, int(round(test_fraction * len(members)))), len(members) - 1)
        test_parts.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train.astype(np.int64), test.astype(np.int64)
