"""One data recipe per data set: the normalisation and augmentation that both loaders read.

The DataLoader path (torchvision transforms, :func:`cnncourse.data.default_transform`) and the
in-memory fast path (:func:`cnncourse.fastdata.fast_loaders`) are both built from the same
:class:`DataRecipe`, so choosing a loader changes the speed of an experiment, never the experiment.

Presets (:data:`RECIPE_PRESETS`):

* ``"course"``: the data set's own statistics (``NORMALIZATION``; an image folder's are measured
  from its training pixels by :func:`pixel_statistics`) and the course's augmentation: MNIST random
  crop with 2-pixel padding (no flip: a mirrored digit is not a digit); Fashion-MNIST the same plus
  horizontal flips; CIFAR-10 crop with 4-pixel padding plus flips; galaxies a rotation by a uniform
  angle plus horizontal flips; image folders crop with ``size // 8`` padding plus flips.
* ``"article"``: the source articles' preprocessing, ``Normalize(0.5, 0.5)`` per channel; only the
  galaxy article augmented (random rotation + horizontal flip); the LeNet/CIFAR-10 and the
  MNIST/Fashion-MNIST articles did not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import torch

from cnncourse.data.imageops import ImageSize, size_hw
from cnncourse.data.registry import NORMALIZATION, canonical_name, unknown_name_message

RECIPE_PRESETS = ("course", "article")
INTERPOLATIONS = ("bilinear", "nearest")

# Galaxies have no "up": a rotation by any angle plus a mirror image reaches every orientation.
# (A vertical flip would add nothing: it is a horizontal flip followed by a half turn.)
_GALAXY_AUGMENTATION = {"rotation": 180.0, "hflip": True}
_COURSE_AUGMENTATION = {
    "mnist": {"crop_padding": 2},
    "fashion-mnist": {"crop_padding": 2, "hflip": True},
    "cifar10": {"crop_padding": 4, "hflip": True},
    "galaxy10": _GALAXY_AUGMENTATION,
    "galaxy10-sdss": _GALAXY_AUGMENTATION,
}
_ARTICLE_AUGMENTATION = {"galaxy10": _GALAXY_AUGMENTATION, "galaxy10-sdss": _GALAXY_AUGMENTATION}


@dataclass(frozen=True)
class DataRecipe:
    """How images of one data set are normalised and augmented, on either loader.

    ``mean``/``std``: per-channel statistics on the 0-1 pixel scale. ``crop_padding``: random crop
    of the zero-padded image back to its size (0: no crop). ``hflip``/``vflip``: flips with
    probability 1/2. ``rotation``: rotation by a uniform angle in [-rotation, rotation] degrees
    about the centre, corners filled with black (0: none). ``interpolation``: of the rotation.
    Augmentation is applied only to training images, and only when asked for; order: crop,
    rotation, horizontal flip, vertical flip.
    """

    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    crop_padding: int = 0
    hflip: bool = False
    vflip: bool = False
    rotation: float = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel; got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive; got {self.std}")
        if int(self.crop_padding) != self.crop_padding or self.crop_padding < 0:
            raise ValueError(f"crop_padding must be a whole number >= 0; got {self.crop_padding}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be between 0 and 180 degrees; got {self.rotation}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {self.interpolation!r}")
        object.__setattr__(self, "crop_padding", int(self.crop_padding))
        object.__setattr__(self, "rotation", float(self.rotation))

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def augments(self) -> bool:
        """True when the recipe has any augmentation."""
        return bool(self.crop_padding or self.hflip or self.vflip or self.rotation)

    def without_augmentation(self) -> "DataRecipe":
        """The same normalisation with no augmentation (what test images get)."""
        return replace(self, crop_padding=0, hflip=False, vflip=False, rotation=0.0)


class PixelStats(NamedTuple):
    """Per-channel mean and std of pixels (0-1 scale) and the images' height and width."""

    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    height: int
    width: int


def pixel_statistics(images: torch.Tensor, block: int = 4096) -> PixelStats:
    """Mean and (population) std per channel of uint8 images ``[N, C, H, W]``, on the 0-1 scale.

    Sums are exact integers, accumulated block by block, so the result does not depend on the
    device or the order and needs little memory. A constant channel gets std 1 (nothing to scale).
    """
    if images.dim() != 4 or images.dtype != torch.uint8 or len(images) == 0:
        raise ValueError(f"pixel_statistics needs uint8 images [N, C, H, W] with N > 0; "
                         f"got {images.dtype} {tuple(images.shape)}")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    for start in range(0, len(images), block):
        chunk = images[start:start + block].to("cpu", torch.int64)
        total += chunk.sum(dim=(0, 2, 3))
        squares += (chunk * chunk).sum(dim=(0, 2, 3))
    count = images.numel() // channels
    mean = total.double() / count
    variance = (squares.double() / count - mean * mean).clamp_min(0)
    std = variance.sqrt() / 255
    std = torch.where(std > 0, std, torch.ones_like(std))
    return PixelStats(tuple((mean / 255).tolist()), tuple(std.tolist()), int(images.shape[2]), int(images.shape[3]))


def _fingerprint(root: Path) -> tuple:
    """Names, sizes and modification times of every file under ``root`` (cheap next to decoding)."""
    entries = []
    for folder, _, files in os.walk(root):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            entries.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


@lru_cache(maxsize=8)
def _measured(root: str, hw: Optional[Tuple[int, int]], seed: int, fingerprint: tuple) -> PixelStats:
    from cnncourse.data.core import get_dataset
    from cnncourse.data.loaders import to_tensors

    images, _ = to_tensors(get_dataset(root, "train", image_size=hw, seed=seed))
    return pixel_statistics(images)


def folder_statistics(path: "str | os.PathLike[str]", image_size: ImageSize = None, seed: int = 0) -> PixelStats:
    """:func:`pixel_statistics` of an image folder's training split (at ``image_size``; ``seed`` picks
    the split of a folder without train/ and test/). Remembered while the folder's files are unchanged."""
    root = Path(path).expanduser().resolve()
    return _measured(str(root), size_hw(image_size), int(seed), _fingerprint(root))


def _known(name: "str | os.PathLike[str]") -> Optional[str]:
    try:
        return canonical_name(os.fspath(name))
    except ValueError:
        return None


def data_recipe(name: "str | os.PathLike[str]", preset: str = "course",
                image_folder_stats: Optional[PixelStats] = None, image_size: ImageSize = None,
                seed: int = 0) -> DataRecipe:
    """The :class:`DataRecipe` of a data set (a registry name or an image folder) for ``preset``.

    For an image folder and the "course" preset, ``image_folder_stats`` (a :class:`PixelStats`)
    gives the statistics and image size; without it they are measured from the folder's training
    split at ``image_size`` with :func:`folder_statistics` (``seed`` as in ``get_dataset``).
    """
    if preset not in RECIPE_PRESETS:
        raise ValueError(f"preset must be one of {RECIPE_PRESETS}; got {preset!r} "
                         "(on the command line: --preset course or --preset article)")
    key = _known(name)
    if key is not None:
        mean, std = NORMALIZATION[key]
        if preset == "article":
            return DataRecipe((0.5,) * len(mean), (0.5,) * len(std), **_ARTICLE_AUGMENTATION.get(key, {}))
        return DataRecipe(mean, std, **_COURSE_AUGMENTATION[key])
    if not Path(os.fspath(name)).expanduser().is_dir():
        raise ValueError(unknown_name_message(name))
    if preset == "article":  # image folders are read as RGB
        return DataRecipe((0.5,) * 3, (0.5,) * 3)
    stats = image_folder_stats if image_folder_stats is not None else folder_statistics(name, image_size, seed)
    return DataRecipe(stats.mean, stats.std, crop_padding=max(1, min(stats.height, stats.width) // 8), hflip=True)
