"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own classes, with clear failures.

torchvision downloads and checks MD5s itself. Around it we add: a check of the files already on
disk (so a corrupted file is named, not silently re-fetched or crashed on), a reachability test
and socket timeouts (so no network means an error within seconds, never a hang), and removal of
half-written files when a download is interrupted. When the files are present torchvision only
reads them: no network access at all.
"""
from __future__ import annotations

import errno
import pickle
import urllib.error
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Type

import numpy as np
import torch
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import calculate_md5, check_integrity

from cnncourse.data.download import describe_url_error, first_unreachable_reason, network_timeout
from cnncourse.data.errors import ChecksumError, DataUnavailableError
from cnncourse.data.galaxy10 import unavailable_message
from cnncourse.data.imageops import ImageSize, as_nchw, resize_stack
from cnncourse.data.registry import dataset_info


class _RawPixels:
    """Adds ``to_tensors`` to torchvision's classes: their uint8 ``.data`` and ``.targets`` as
    tensors (resized to ``image_size``, default the dataset's), never through the transform."""

    image_size: ImageSize = None

    def to_tensors(self, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
        size = image_size if image_size is not None else self.image_size
        data = self.data.numpy() if isinstance(self.data, torch.Tensor) else np.asarray(self.data)
        labels = torch.as_tensor(np.asarray(self.targets), dtype=torch.int64)
        return as_nchw(resize_stack(data, size)), labels


# The class names must stay torchvision's: MNIST and FashionMNIST find their files under root/<class name>/raw.
class MNIST(_RawPixels, tv_datasets.MNIST):
    """torchvision's MNIST with ``to_tensors``."""


class FashionMNIST(_RawPixels, tv_datasets.FashionMNIST):
    """torchvision's FashionMNIST with ``to_tensors``."""


class CIFAR10(_RawPixels, tv_datasets.CIFAR10):
    """torchvision's CIFAR10 with ``to_tensors``."""


TORCHVISION_CLASSES: Dict[str, Type] = {"mnist": MNIST, "fashion-mnist": FashionMNIST, "cifar10": CIFAR10}

# A folder we may read but not write: permission denied, or a read-only file system (errno 30).
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)

# Sizes of the decompressed idx files (header + pixels), identical for MNIST and Fashion-MNIST.
IDX_SIZES = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}

_LOAD_ERRORS = (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError, KeyError)


def _md5_ok(path: Path, md5: Optional[str]) -> bool:
    return path.is_file() and check_integrity(str(path), md5)


def inspect_files(name: str, root: Path) -> Tuple[List[str], List[str]]:
    """Check what torchvision needs under ``root``: (bad files with reasons, missing downloads)."""
    cls = TORCHVISION_CLASSES[name]
    bad: List[str] = []
    missing: List[str] = []
    if name == "cifar10":
        archive = root / cls.filename
        archive_ok = _md5_ok(archive, cls.tgz_md5)
        if archive.exists() and not archive_ok:
            bad.append(f"{archive} (MD5 {calculate_md5(archive)}, expected {cls.tgz_md5})")
        if archive_ok:
            return bad, missing
        folder = root / cls.base_folder
        entries = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
        present = 0
        for filename, md5 in entries:
            path = folder / filename
            if path.exists():
                present += 1
                digest = calculate_md5(path)
                if digest != md5:
                    bad.append(f"{path} (MD5 {digest}, expected {md5})")
        if present < len(entries) and not archive.exists():
            missing.append(cls.filename)
        return bad, missing
    raw = root / cls.__name__ / "raw"
    for filename, md5 in cls.resources:
        archive, extracted = raw / filename, raw / filename[:-3]
        if extracted.exists():
            size, expected = extracted.stat().st_size, IDX_SIZES[extracted.name]
            if size != expected:
                bad.append(f"{extracted} ({size:,} bytes, expected {expected:,})")
        elif archive.exists():
            digest = calculate_md5(archive)
            if digest != md5:
                bad.append(f"{archive} (MD5 {digest}, expected {md5})")
        else:
            missing.append(filename)
    return bad, missing


def source_urls(name: str, missing: Optional[List[str]] = None) -> List[str]:
    """The URLs torchvision fetches the (missing) files from, every mirror included."""
    cls = TORCHVISION_CLASSES[name]
    if name == "cifar10":
        return [cls.url]
    files = missing or [filename for filename, _ in cls.resources]
    return [f"{mirror}{filename}" for filename in files for mirror in cls.mirrors]


def expected_location(name: str, root: Path) -> Tuple[Path, List[str]]:
    """The folder and the file names a reader can put there by hand."""
    cls = TORCHVISION_CLASSES[name]
    if name == "cifar10":
        return root, [cls.filename]
    return root / cls.__name__ / "raw", [filename for filename, _ in cls.resources]


def _checksum_error(name: str, bad: List[str]) -> ChecksumError:
    title = dataset_info(name).title
    return ChecksumError(
        f"{title}: corrupted or incomplete file(s): {'; '.join(bad)}. Delete them and call "
        f"get_dataset({name!r}) again to download them afresh, or replace them with good copies.")


def _snapshot(paths: List[Path]) -> Dict[Path, Optional[int]]:
    return {path: (path.stat().st_size if path.exists() else None) for path in paths}


def _remove_new_bad_files(name: str, root: Path, before: Dict[Path, Optional[int]]) -> None:
    """After an interrupted download, delete files it created that do not check out."""
    cls = TORCHVISION_CLASSES[name]
    for path, old_size in before.items():
        if not path.exists() or old_size == path.stat().st_size:
            continue
        if name == "cifar10" and path.name == cls.filename:
            good = _md5_ok(path, cls.tgz_md5)
        elif path.name in IDX_SIZES:
            good = path.stat().st_size == IDX_SIZES[path.name]
        else:
            md5 = dict(cls.resources).get(path.name)
            good = _md5_ok(path, md5)
        if not good:
            path.unlink(missing_ok=True)


def _watched_files(name: str, root: Path) -> List[Path]:
    cls = TORCHVISION_CLASSES[name]
    if name == "cifar10":
        return [root / cls.filename]
    raw = root / cls.__name__ / "raw"
    return [raw / f for f, _ in cls.resources] + [raw / f[:-3] for f, _ in cls.resources]


def _download(name: str, root: Path, missing: List[str]) -> None:
    """Run torchvision's download with timeouts; turn every network failure into DataUnavailableError."""
    cls = TORCHVISION_CLASSES[name]
    title = dataset_info(name).title
    folder, files = expected_location(name, root)
    urls = source_urls(name, missing)

    def unavailable(reason: str) -> DataUnavailableError:
        return DataUnavailableError(unavailable_message(title, reason, urls, folder, files))

    reason = first_unreachable_reason(urls)
    if reason is not None:
        raise unavailable(f"the network or the server is unreachable ({reason})")
    before = _snapshot(_watched_files(name, root))
    try:
        with network_timeout():
            cls(str(root), train=True, download=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        _remove_new_bad_files(name, root, before)
        raise unavailable(f"the download failed ({describe_url_error(error).splitlines()[0]})") from error
    except BaseException:
        _remove_new_bad_files(name, root, before)
        raise


def load_torchvision(name: str, split: str, root: Path, transform: Optional[Callable],
                     download: bool):
    """The torchvision data set for ``name``/``split`` under ``root``, downloading if allowed."""
    cls = TORCHVISION_CLASSES[name]
    train = split == "train"
    try:  # fast path: everything present and verified by torchvision itself, no network
        return cls(str(root), train=train, transform=transform, download=False)
    except _LOAD_ERRORS:
        pass
    bad, missing = inspect_files(name, root)
    if bad:
        raise _checksum_error(name, bad)
    if missing:
        if not download:
            folder, files = expected_location(name, root)
            raise DataUnavailableError(unavailable_message(
                dataset_info(name).title, f"{', '.join(missing)} missing and download=False",
                source_urls(name, missing), folder, files))
        _download(name, root, missing)
        bad, missing = inspect_files(name, root)
        if bad:
            raise _checksum_error(name, bad)
    folder, _ = expected_location(name, root)
    try:  # files present: torchvision only extracts and reads, no network
        return cls(str(root), train=train, transform=transform, download=True)
    except OSError as error:
        if error.errno not in _NOT_WRITABLE:
            raise _unreadable(name, folder, error) from error
        where = folder.relative_to(root).as_posix()
        raise DataUnavailableError(
            f"{dataset_info(name).title}: the files in {folder} passed their checks, but torchvision must "
            f"extract the archives next to them and that folder is read-only ({error}). Copy the files into "
            f"{'' if where == '.' else where + '/ in '}a writable data folder and point the data root there: "
            "get_dataset(..., root=...), --data-root on the command line, or the CNNCOURSE_DATA environment "
            "variable.") from error
    except _LOAD_ERRORS as error:
        raise _unreadable(name, folder, error) from error


def _unreadable(name: str, folder: Path, error: BaseException) -> ChecksumError:
    """The files passed their size and checksum tests yet cannot be read: say so, and suggest moving
    them aside (never deleting files that were not shown to be wrong)."""
    return ChecksumError(
        f"{dataset_info(name).title}: the files in {folder} passed their size and checksum tests but cannot "
        f"be read ({error}). Move that folder aside (keep it until the cause is known) and call "
        f"get_dataset({name!r}) again to download fresh copies, or pass root=... (CNNCOURSE_DATA) for "
        "another data folder.")
