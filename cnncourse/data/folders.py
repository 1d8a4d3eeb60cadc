"""A user's own image folder (torchvision's ImageFolder layout) as a course data set, with clear errors.

Every problem a folder can have is a :class:`DataError` that names the file or folder and says
what to do: no class folders, an empty class folder, different classes in train/ and test/, a
class with one image (a train/test split needs two), an unreadable or truncated image, and images
of different sizes when no ``image_size`` was given.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnncourse.data.errors import DataError
from cnncourse.data.imageops import ImageSize, as_nchw, resize_pil, stratified_split, with_resize
from cnncourse.data.registry import unknown_name_message

_LAYOUT_HINT = ("an image folder needs one sub-folder of images per class ({root}/cat/1.png, {root}/dog/2.png, "
                "...), optionally inside train/ and test/")


def load_image(path: str) -> Image.Image:
    """Decode one image file as RGB; a damaged or truncated file raises :class:`DataError` naming it."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(
            f"cannot read the image {path} ({type(error).__name__}: {error}): the file is damaged, truncated "
            "or not an image. Replace it with a good copy, or move it out of the image folder, and try "
            "again.") from error


def class_folders(root: Path) -> List[str]:
    """The class sub-folders of ``root``, sorted as ImageFolder sorts them; DataError when there are none."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise DataError(f"the image folder {root} has no class folders: " + _LAYOUT_HINT.format(root=root) + ".")
    return classes


class ImageFolderDataset(tv_datasets.ImageFolder):
    """torchvision's ImageFolder read with :func:`load_image`, with ``to_tensors`` and layout checks."""

    def __init__(self, root: "str | os.PathLike[str]", transform: Optional[Callable] = None,
                 image_size: ImageSize = None) -> None:
        root = Path(root)
        class_folders(root)
        super().__init__(str(root), transform=transform, loader=load_image, allow_empty=True)
        counts = np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes))
        empty = [str(root / name) for name, count in zip(self.classes, counts) if count == 0]
        if empty:
            raise DataError(f"the class folder(s) {', '.join(empty)} hold no images (files ending in "
                            f"{', '.join(IMG_EXTENSIONS)}): add images to them or remove them.")
        self.image_size = image_size
        self.title = f"image folder {root}"

    def to_tensors(self, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every image decoded (no transform) as uint8 (N, 3, H, W), resized to ``image_size``
        (default the dataset's), and the labels as int64 (N,)."""
        size = image_size if image_size is not None else self.image_size
        return read_images(self.samples, size, self.title)


class FolderSplit(Subset):
    """One split of a single image folder; keeps ``classes`` and ``targets`` like the full set."""

    def __init__(self, dataset: ImageFolderDataset, indices, image_size: ImageSize = None, split: str = "") -> None:
        super().__init__(dataset, [int(i) for i in indices])
        self.classes: List[str] = list(dataset.classes)
        self.class_to_idx = dict(dataset.class_to_idx)
        self.targets: List[int] = [dataset.targets[i] for i in self.indices]
        self.image_size = image_size
        self.title = f"{dataset.title} ({split} split)" if split else dataset.title

    @property
    def transform(self) -> Optional[Callable]:
        return self.dataset.transform

    def to_tensors(self, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """This split's images and labels, like :meth:`ImageFolderDataset.to_tensors`."""
        size = image_size if image_size is not None else self.image_size
        return read_images([self.dataset.samples[i] for i in self.indices], size, self.title)


def _wxh(shape: Tuple[int, ...]) -> str:
    """Width x height, as image viewers say it."""
    return f"{shape[1]}x{shape[0]}"


def read_images(samples: Sequence[Tuple[str, int]], image_size: ImageSize,
                title: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode ``(path, label)`` samples into one uint8 (N, 3, H, W) tensor; the sizes must agree."""
    if not samples:
        raise DataError(f"{title} has no images.")
    images = [np.asarray(resize_pil(load_image(path), image_size)) for path, _ in samples]
    first = images[0].shape
    odd = next((i for i, image in enumerate(images) if image.shape != first), None)
    if odd is not None:
        raise DataError(
            f"{title}: the images have different sizes ({samples[0][0]} is {_wxh(first)}, {samples[odd][0]} is "
            f"{_wxh(images[odd].shape)}); pass image_size=... (on the command line --image-size N) to resize "
            "them all to one size.")
    return as_nchw(np.stack(images)), torch.as_tensor([label for _, label in samples], dtype=torch.int64)


def image_folder(path: "str | os.PathLike[str]", split: str = "train", transform: Optional[Callable] = None,
                 image_size: ImageSize = None, seed: int = 0, test_fraction: float = 0.1):
    """An image folder in torchvision's ImageFolder layout, as a train or test split.

    With ``train/`` and ``test/`` (or ``val/``) sub-folders, the split's sub-folder is used (both must
    have the same class folders); with class folders directly under ``path``, a stratified seeded
    split makes train and test (every class needs at least two images). ``transform`` receives a
    PIL RGB image, resized to ``image_size`` first when given.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(unknown_name_message(str(path)) + f" (the folder {root} does not exist)")
    transform = with_resize(transform, image_size)
    if (root / "train").is_dir():
        sub = root / split
        if split == "test" and not sub.is_dir() and (root / "val").is_dir():
            sub = root / "val"
        if not sub.is_dir():
            raise DataError(f"the image folder {root} has train/ but no {split}/ sub-folder: add {root / split} "
                            "with the same class folders, or put the class folders directly in "
                            f"{root} for an automatic split.")
        if sub.name != "train" and class_folders(sub) != class_folders(root / "train"):
            raise DataError(f"{sub} and {root / 'train'} must have the same class folders (labels are the "
                            f"folders' positions in sorted order); found {class_folders(sub)} and "
                            f"{class_folders(root / 'train')}.")
        return ImageFolderDataset(sub, transform=transform, image_size=image_size)
    dataset = ImageFolderDataset(root, transform=transform, image_size=image_size)
    counts = np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=len(dataset.classes))
    single = [str(root / name) for name, count in zip(dataset.classes, counts) if count == 1]
    if single:
        raise DataError(
            f"the class folder(s) {', '.join(single)} hold a single image, but the train/test split needs at "
            f"least two images of every class. Add images, or split the folder yourself into {root}/train/<class>/ "
            f"and {root}/test/<class>/.")
    train, test = stratified_split(dataset.targets, test_fraction=test_fraction, seed=seed)
    return FolderSplit(dataset, train if split == "train" else test, image_size=image_size, split=split)
