"""Galaxy10 (DECaLS and SDSS) as a lazy PyTorch Dataset over astroNN's ``.h5`` files.

The file holds ``images`` (N, H, W, 3) uint8 and ``ans`` (N,) labels, plus ``ra``, ``dec``,
``redshift`` and ``pxscale``. The 2.5 GB DECaLS file never lands in memory whole: labels are
read once, each image is read when asked for, and the file is opened lazily in every process
(so DataLoader workers each get their own handle). Train and test come from a stratified,
seeded split, because the files have no official split and the SDSS version has a class of 17.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from cnncourse.data.download import (check_reachable, describe_url_error, download_file, is_verified,
                                     sha256_file, write_verified_marker)
from cnncourse.data.errors import ChecksumError, DataUnavailableError
from cnncourse.data.imageops import ImageSize, resize_array, resize_pil, size_hw, stratified_split, to_pil
from cnncourse.data.loaders import check_labels
from cnncourse.data.registry import dataset_info


@dataclass(frozen=True)
class Galaxy10File:
    """Where a Galaxy10 file comes from and how to recognise the real one.

    ``sha256`` values are the ones astroNN's own loaders (``astroNN.datasets.galaxy10`` and
    ``galaxy10sdss``) check. The SDSS size is Zenodo's; the DECaLS size was not available offline,
    so only its checksum is checked (``size=None``).
    """

    name: str
    filename: str
    url: str
    sha256: Optional[str]
    size: Optional[int]


GALAXY10_FILES: Dict[str, Galaxy10File] = {
    "galaxy10": Galaxy10File(
        "galaxy10", "Galaxy10_DECals.h5", "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",
        sha256="19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571", size=None),
    "galaxy10-sdss": Galaxy10File(
        "galaxy10-sdss", "Galaxy10.h5", "https://zenodo.org/records/10844811/files/Galaxy10.h5",
        sha256="969a6b1cefcc36e09fffa86febd2f699a4aa19b837ba0427f01b0bc6ded458af", size=210_234_548),
}

H5_KEYS = ("images", "ans")


def _redownload_hint(name: str, spec: Galaxy10File) -> str:
    return (f"Delete it and call get_dataset({name!r}) again to download it afresh from {spec.url}, "
            "or put a good copy in its place.")


def check_h5_structure(path: "str | os.PathLike[str]", name: str = "galaxy10") -> int:
    """Open ``path`` with h5py and check astroNN's layout; return the number of images.

    Raises :class:`ChecksumError` naming the file when it cannot be opened (truncated files
    usually cannot) or lacks ``images``/``ans`` of matching length.
    """
    spec = GALAXY10_FILES[name]
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in H5_KEYS if key not in f]
            if missing:
                raise ValueError(f"the datasets {missing} are missing (it has {sorted(f.keys())})")
            images, labels = f["images"], f["ans"]
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise ValueError(f"'images' is {images.dtype} {images.shape}, expected uint8 (N, H, W, 3)")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"'ans' has shape {labels.shape} for {images.shape[0]} images")
            return int(images.shape[0])
    except (OSError, ValueError, KeyError) as error:
        raise ChecksumError(
            f"{dataset_info(name).title}: the file {path} is corrupted or incomplete: it cannot be read as "
            f"astroNN's HDF5 layout ({error}). {_redownload_hint(name, spec)}") from error


def verify_galaxy10_file(path: "str | os.PathLike[str]", name: str = "galaxy10") -> int:
    """Check an existing Galaxy10 file: size, SHA-256 (once; a marker remembers it), h5 layout.

    Returns the number of images. Raises :class:`ChecksumError` naming the file on any mismatch.
    """
    spec = GALAXY10_FILES[name]
    title = dataset_info(name).title
    actual = os.path.getsize(path)
    if spec.size is not None and actual != spec.size:
        raise ChecksumError(
            f"{title}: the file {path} is corrupted or incomplete: it has {actual:,} bytes, expected "
            f"{spec.size:,}. {_redownload_hint(name, spec)}")
    if spec.sha256 is not None and not is_verified(path, spec.sha256):
        digest = sha256_file(path, progress=actual > 100 * 2**20)
        if digest != spec.sha256.lower():
            raise ChecksumError(
                f"{title}: the file {path} is corrupted or incomplete: its SHA-256 is {digest}, expected "
                f"{spec.sha256}. {_redownload_hint(name, spec)}")
        write_verified_marker(path, digest)
    return check_h5_structure(path, name)


def unavailable_message(title: str, reason: str, urls: Sequence[str], folder: Path,
                        files: Sequence[str]) -> str:
    """The one wording every 'cannot get the data' error uses."""
    sources = "\n".join(f"    {url}" for url in urls)
    return (f"{title} is not available: {reason}.\n"
            f"  Download URL(s):\n{sources}\n"
            f"  The files belong in {folder}: {', '.join(files)}\n"
            "  (copy them there by hand if this machine is offline; pass root=... or set CNNCOURSE_DATA "
            "for another data folder).\n"
            "  Or set CNNCOURSE_QUICK=1 (or cnncourse.set_quick_mode(True)) to use the small bundled samples.")


def galaxy10_path(name: str, root: Path) -> Path:
    return Path(root) / dataset_info(name).folder / GALAXY10_FILES[name].filename


def ensure_galaxy10_file(name: str, root: Path, download: bool = True) -> Path:
    """Return the verified path of a Galaxy10 file under ``root``, downloading it when missing."""
    spec = GALAXY10_FILES[name]
    info = dataset_info(name)
    path = galaxy10_path(name, root)
    if path.exists():
        verify_galaxy10_file(path, name)
        return path

    def unavailable(reason: str) -> DataUnavailableError:
        return DataUnavailableError(unavailable_message(info.title, reason, [spec.url], path.parent, [path.name]))

    if not download:
        raise unavailable(f"{path.name} is missing and download=False")
    reason = check_reachable(spec.url)
    if reason is not None:
        raise unavailable(f"the network or the server is unreachable ({reason})")
    try:
        download_file(spec.url, path, sha256=spec.sha256, size=spec.size)
    except DataUnavailableError as error:
        raise unavailable(str(error)) from error
    except OSError as error:  # URLError, HTTPError, timeouts are all OSError
        raise unavailable(f"the download failed ({describe_url_error(error)})") from error
    check_h5_structure(path, name)
    return path


class Galaxy10Dataset(Dataset):
    """One split of a Galaxy10 ``.h5`` file, read image by image.

    ``image_size`` resizes on the fly (bilinear, antialiased); ``transform`` then receives a PIL
    RGB image, like torchvision's data sets. ``indices`` are the file rows of this split,
    ``targets`` their labels. Nothing but labels is held in memory, and the dataset pickles
    without its file handle.
    """

    def __init__(self, path: "str | os.PathLike[str]", split: str = "train", transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, image_size: ImageSize = None, seed: int = 0,
                 test_fraction: float = 0.1, classes: Optional[Sequence[str]] = None,
                 title: Optional[str] = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.path = Path(path)
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        self.image_size = image_size
        self.seed = seed
        self.classes = list(classes) if classes is not None else [str(i) for i in range(10)]
        self.title = title or f"Galaxy10 file {self.path.name}"
        with h5py.File(self.path, "r") as f:
            labels = np.asarray(f["ans"][:], dtype=np.int64)
            self.native_shape = tuple(int(v) for v in f["images"].shape[1:])
        check_labels(torch.from_numpy(labels), len(self.classes), f"{self.title} ({self.path}, 'ans' rows)")
        train, test = stratified_split(labels, test_fraction=test_fraction, seed=seed)
        self.indices = train if split == "train" else test
        self.targets = labels[self.indices].tolist()
        self.note = ""
        self._file: Optional[h5py.File] = None
        self._pid: Optional[int] = None

    def _images(self) -> "h5py.Dataset":
        if self._file is None or self._pid != os.getpid():  # a forked worker needs its own handle
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["images"]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image = resize_pil(to_pil(self._images()[int(self.indices[index])]), self.image_size)
        target = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def to_tensors(self, image_size: ImageSize = None, block: int = 256) -> "tuple[torch.Tensor, torch.Tensor]":
        """All images of the split as uint8 (N, 3, H, W) and int64 labels, read in blocks of file rows
        (resized to ``image_size``, default the dataset's; the transform is not applied)."""
        size = image_size if image_size is not None else self.image_size
        images = self._images()
        out = []
        indices = np.asarray(self.indices)
        for start in range(0, len(indices), block):
            rows = indices[start:start + block]
            first, last = int(rows[0]), int(rows[-1]) + 1
            if len(rows) * 3 >= last - first:  # dense: one contiguous read, then pick
                chunk = images[first:last][rows - first]
            else:
                chunk = images[rows.tolist()]
            out.extend(resize_array(image, size) for image in chunk)
        if not out:
            hw = size_hw(size) or self.native_shape[:2]
            return torch.zeros((0, 3, *hw), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
        array = np.stack(out).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(array)), torch.as_tensor(self.targets, dtype=torch.int64)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._pid = None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state

    def __repr__(self) -> str:
        size = f", image_size={self.image_size}" if self.image_size is not None else ""
        return (f"Galaxy10Dataset({self.path.name}, split={self.split!r}, {len(self)} images, "
                f"native {self.native_shape}{size}, seed={self.seed})")


def load_galaxy10(name: str, split: str, root: Path, transform: Optional[Callable], download: bool,
                  image_size: ImageSize, seed: int) -> Galaxy10Dataset:
    """The Galaxy10 split of ``get_dataset`` in full mode (download, verify, open lazily)."""
    path = ensure_galaxy10_file(name, root, download)
    return Galaxy10Dataset(path, split=split, transform=transform, image_size=image_size, seed=seed,
                           classes=dataset_info(name).classes, title=dataset_info(name).title)
