"""``get_dataset``: one call for every data set of the course, full or quick, or any image folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from torch.utils.data import Dataset

from cnncourse.config import data_root, quick_mode, scale
from cnncourse.data.folders import FolderSplit, ImageFolderDataset, image_folder  # noqa: F401 - re-exported
from cnncourse.data.galaxy10 import GALAXY10_FILES, load_galaxy10
from cnncourse.data.holdout import split_training
from cnncourse.data.imageops import ImageSize, with_resize
from cnncourse.data.registry import DatasetInfo, canonical_name, dataset_info, unknown_name_message
from cnncourse.data.samples import SampleDataset
from cnncourse.data.torchvision_sets import TORCHVISION_CLASSES, load_torchvision

SPLITS = ("train", "val", "test")


def _looks_like_path(name: object) -> bool:
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    return isinstance(name, os.PathLike) or os.sep in text or "/" in text or text.startswith((".", "~"))


def resolve_data(name: "str | os.PathLike[str]", root: "str | os.PathLike[str] | None" = None) -> str:
    """What to read for the data set ``name``: a registered name as it is, a folder that exists as it
    is, else the folder of that name inside the data folder (``root``, ``$CNNCOURSE_DATA``...) when
    there is one, so that a record's ``--data cifar10-jpeg`` finds the copy on every machine."""
    text = os.fspath(name)
    if is_known_name(text) or Path(text).expanduser().is_dir() or Path(text).is_absolute():
        return text
    inside = data_root(root) / text
    return str(inside) if inside.is_dir() else text


#: The image-folder copy of CIFAR-10 (train/ and test/, one folder per class) a data folder may hold.
CIFAR10_JPEG = "cifar10-jpeg"


def cifar10_source(root: "str | os.PathLike[str] | None" = None) -> str:
    """What the lessons read as CIFAR-10: ``"cifar10"`` (torchvision's files, downloaded once), unless the
    data folder holds no copy of them but does hold the JPEG copy ``cifar10-jpeg/`` (lossy, 50,000 + 10,000
    images in the same classes, as on the machine the course's stored outputs come from): then that."""
    folder = data_root(root)
    real = (folder / "cifar-10-batches-py").is_dir() or (folder / "cifar-10-python.tar.gz").is_file()
    if quick_mode() or real or not (folder / CIFAR10_JPEG / "train").is_dir():
        return "cifar10"
    return CIFAR10_JPEG


def portable_data_name(name: "str | os.PathLike[str]", root: "str | os.PathLike[str] | None" = None) -> str:
    """How a run's record names its data: a registered name as it is; an image folder inside the data
    folder by its path relative to that folder (the data folder belongs to the machine, not to the
    experiment); any other folder as given."""
    text = os.fspath(name)
    if is_known_name(text):
        return text
    try:
        return Path(text).expanduser().resolve().relative_to(data_root(root).expanduser().resolve()).as_posix()
    except (ValueError, OSError):
        return text


def folder_info(path: "str | os.PathLike[str]") -> DatasetInfo:
    """Facts about an image folder: classes from its sub-folders, channels and size from its first
    training image. Its ``mean``/``std`` are 0.5 placeholders: both loaders normalise with
    ``data_recipe(path)``, which measures the real statistics from the training pixels."""
    train = image_folder(path, "train")
    first, _ = train[0]
    channels = len(first.getbands())
    root = Path(path).expanduser().resolve()
    return DatasetInfo(name=str(root), title=f"image folder {root.name}", num_classes=len(train.classes),
                       in_channels=channels, image_size=first.size[0], classes=tuple(train.classes),
                       mean=(0.5,) * channels, std=(0.5,) * channels, num_images=len(train), folder=str(root),
                       files=(), urls=(), homepage="", citation="", licence="")


def is_known_name(name: "str | os.PathLike[str]") -> bool:
    """True for a course data set's name (any accepted spelling), False for anything else."""
    try:
        canonical_name(os.fspath(name))
    except ValueError:
        return False
    return True


def get_dataset(name: "str | os.PathLike[str]", split: str = "train", root: "str | os.PathLike[str] | None" = None,
                transform: Optional[Callable] = None, download: bool = True, image_size: ImageSize = None,
                seed: int = 0, val_fraction: float = 0.0, subset: Optional[int] = None) -> Dataset:
    """The ``split`` ("train", "val" or "test") of a data set, as a torch Dataset of (image, label).

    ``name``: one of ``DATASETS`` (mnist, fashion-mnist, cifar10, galaxy10, galaxy10-sdss) or the
    path of an image folder, absolute, relative, or relative to the data folder (``cifar10-jpeg``). ``root``: the data folder (else ``$CNNCOURSE_DATA``, else
    ``~/.cache/cnncourse``). ``transform=None`` gives PIL images, as torchvision does.
    ``image_size`` resizes on the fly (Galaxy10 is 256x256 natively). ``seed`` fixes the
    stratified train/test split of Galaxy10 and of single image folders. In quick mode
    (``CNNCOURSE_QUICK=1`` or ``cnncourse.set_quick_mode(True)``) the small samples packaged with
    cnncourse are returned instead, without touching the network or the data folder. Every
    returned data set has ``.classes`` and ``.targets``.

    ``val_fraction``: hold out this fraction of every class of the training split (seeded by
    ``seed``); "val" is that hold-out and "train" the rest, so pass the same value for both (they
    never overlap). Choose recipes and epochs on "val"; look at "test" once, at the end.
    ``subset``: keep about this many training images, stratified (short experiments).

    Raises ``ValueError`` for an unknown name or split, :class:`DataUnavailableError` when the
    files are missing and cannot be downloaded, :class:`ChecksumError` for a corrupted file, and
    :class:`DataError` (a ``ValueError``) for data that cannot be used as it is (labels out of
    range, an image folder with empty or single-image classes or unreadable images).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if split != "test" and (val_fraction or subset is not None):
        full = get_dataset(name, "train", root, transform, download, image_size, seed)
        return split_training(full, split, val_fraction, subset, seed)
    if split == "val":
        split_training(None, "val")  # raises: a hold-out needs val_fraction
    try:
        key = canonical_name(os.fspath(name))
    except ValueError:
        found = resolve_data(name, root)  # an image folder by its path, or by its name inside the data folder
        if _looks_like_path(found) or Path(found).expanduser().is_dir():
            return image_folder(found, split, transform=transform, image_size=image_size, seed=seed)
        raise
    if quick_mode() or (key in GALAXY10_FILES and scale() != "full"):  # Galaxy10 (2.5 GB): its sample below "full"
        return SampleDataset(key, split, transform=transform, image_size=image_size)
    folder = data_root(root)
    if key in GALAXY10_FILES:
        return load_galaxy10(key, split, folder, transform, download, image_size, seed)
    if key in TORCHVISION_CLASSES:
        dataset = load_torchvision(key, split, folder, with_resize(transform, image_size), download)
        dataset.classes = list(dataset_info(key).classes)
        dataset.image_size = image_size
        dataset.title = dataset_info(key).title
        return dataset
    raise ValueError(unknown_name_message(name))  # pragma: no cover - every registry name is handled
