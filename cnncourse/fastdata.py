"""The in-memory fast path: a whole data set as one uint8 tensor, batched, normalised and augmented on the device.

Every data set of the course fits in memory at the sizes it uses (60,000 MNIST images are 47 MB
as uint8). Keeping them as one tensor on the training device removes the per-image work of a
classic ``DataLoader`` (PIL decode, ``ToTensor``, ``Normalize``, collate) that dominates small
models on a CPU and starves a GPU. :class:`TensorLoader` yields ``(images, labels)`` batches like
a ``DataLoader`` does, so :func:`cnncourse.train.fit` takes either.

Per batch it indexes the uint8 images, applies vectorised augmentation (random crop with zero
padding, horizontal flips, arbitrary rotations for galaxies), converts to float and normalises
with the data set's mean and std. Shuffling and augmentation draw from a generator seeded by
``(seed, epoch)``, so an epoch is reproducible on its own, which makes resumed training exact.

The module needs only torch; :func:`fast_loaders` and :meth:`TensorLoader.from_dataset` use
``cnncourse.data`` when it is there.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

__all__ = ["AUGMENTATIONS", "AUGMENT_PRESETS", "TensorLoader", "fast_loaders"]

#: Augmentations :class:`TensorLoader` knows.
#: ``"crop"``: random crop of the image padded by ``pad`` zero pixels on each side;
#: ``"flip"``: horizontal flip with probability 1/2; ``"crop-flip"``: both (the CIFAR recipe);
#: ``"galaxy"``: rotation by a uniform random angle plus horizontal flip (galaxies have no "up").
AUGMENTATIONS = (None, "crop", "flip", "crop-flip", "galaxy")

#: The augmentation ``augment=True`` means for each course data set (digits must not be mirrored).
AUGMENT_PRESETS = {
    "mnist": "crop",
    "fashion-mnist": "crop-flip",
    "cifar10": "crop-flip",
    "galaxy10": "galaxy",
    "galaxy10-sdss": "galaxy",
}

#: Crop padding per data set (the same as ``cnncourse.data.default_transform``); others use size // 8.
CROP_PADDING = {"mnist": 2, "fashion-mnist": 2, "cifar10": 4}

DeviceLike = Union[str, torch.device, None]


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch that differs for every (seed, epoch) pair."""
    return (int(seed) * 0x9E3779B97F4A7C15 + int(epoch) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (2**63)


class TensorLoader:
    """Batches of an in-memory image tensor, normalised and augmented on its device.

    Args:
        images: uint8 tensor ``[N, C, H, W]`` (``[N, H, W]`` is taken as one channel), raw pixels.
        labels: integer class labels ``[N]``.
        batch_size: images per batch.
        shuffle: draw a new order every epoch.
        mean, std: per-channel statistics in the 0-1 pixel scale (torchvision's convention);
            ``None`` only scales to 0-1.
        augment: one of :data:`AUGMENTATIONS` (``None`` for none).
        pad: padding in pixels for the random crop.
        device: where the images live and batches are made; ``None`` keeps them where they are
            (``fit`` then moves the loader to the model's device).
        seed: seed of the shuffling and augmentation; epoch ``e`` uses ``(seed, e)``.
        drop_last: drop the last incomplete batch.
        channels_last: return batches in ``torch.channels_last`` memory format.
        classes: class names, kept for plots.

    Iterating yields ``(x, y)``: float32 ``[B, C, H, W]`` normalised images and int64 labels, both
    on ``device``. Each ``iter()`` uses the current epoch and then advances it; :meth:`set_epoch`
    chooses it explicitly (``fit`` does, which is what makes resuming exact).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
                 shuffle: bool = False, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, augment: Optional[str] = None, pad: int = 4,
                 device: DeviceLike = None, seed: int = 0, drop_last: bool = False,
                 channels_last: bool = False, classes: Optional[Sequence[str]] = None) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels)
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W] (or [N, H, W]); got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 raw pixels (0-255); got {images.dtype}. "
                             "Convert with (x * 255).round().to(torch.uint8) if they are floats in 0-1.")
        if labels.dim() != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be [N] with N={len(images)}; got shape {tuple(labels.shape)}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment={augment!r} is not one of {AUGMENTATIONS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.pad = int(pad)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.classes = list(classes) if classes is not None else None
        self.epoch = 0
        channels = images.shape[1]
        self.mean = tuple(float(m) for m in mean) if mean is not None else (0.0,) * channels
        self.std = tuple(float(s) for s in std) if std is not None else (1.0,) * channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel); "
                             f"got {len(self.mean)} and {len(self.std)}")
        self.images = images
        self.labels = labels.long()
        self.to(device if device is not None else images.device)

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def from_dataset(cls, dataset, batch_size: int = 64, shuffle: bool = False,
                     image_size: Optional[int] = None, **kwargs) -> "TensorLoader":
        """Build a loader from a map-style dataset that returns PIL images (or raw tensors).

        Pixels come from ``cnncourse.data.to_tensors`` (no transform applied). ``classes`` defaults
        to ``dataset.classes``; the other keywords go to :class:`TensorLoader`.
        """
        from cnncourse.data import to_tensors
        images, labels = to_tensors(dataset, image_size=image_size)
        kwargs.setdefault("classes", getattr(dataset, "classes", None))
        return cls(images, labels, batch_size=batch_size, shuffle=shuffle, **kwargs)

    def to(self, device: DeviceLike) -> "TensorLoader":
        """Move the stored images and labels to ``device`` (in place; returns self)."""
        self.device = torch.device(device)
        self.images = self.images.to(self.device)
        self.labels = self.labels.to(self.device)
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=self.device)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=self.device)
        self._scale = scale.view(1, -1, 1, 1)
        self._shift = shift.view(1, -1, 1, 1)
        return self

    # ----------------------------------------------------------------- DataLoader-like protocol
    @property
    def num_samples(self) -> int:
        """Number of images held."""
        return len(self.labels)

    @property
    def dataset(self) -> TensorDataset:
        """The raw (uint8 image, label) pairs, so ``len(loader.dataset)`` works as with a DataLoader."""
        return TensorDataset(self.images, self.labels)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next ``iter()`` produces."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        """What a checkpoint needs to reproduce the next epochs."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        epoch_draws = self._draw_epoch(self.epoch)
        self.epoch += 1
        n = self.num_samples
        stop = len(self) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            yield self._make_batch(epoch_draws, start, end)

    # ----------------------------------------------------------------- batch making
    def _draw_epoch(self, epoch: int) -> dict:
        """All random numbers of one epoch, drawn on the CPU (same on every device) and moved once."""
        n = self.num_samples
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        draws = {}
        if self.shuffle:
            draws["order"] = torch.randperm(n, generator=generator)
        if self.augment in ("crop", "crop-flip"):
            draws["offsets"] = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        if self.augment in ("flip", "crop-flip", "galaxy"):
            draws["flip"] = torch.rand(n, generator=generator) < 0.5
        if self.augment == "galaxy":
            draws["angle"] = torch.rand(n, generator=generator) * (2 * math.pi)
        return {key: value.to(self.device, non_blocking=True) for key, value in draws.items()}

    def _make_batch(self, draws: dict, start: int, end: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if "order" in draws:
            index = draws["order"][start:end]
            x, y = self.images[index], self.labels[index]
        else:
            x, y = self.images[start:end], self.labels[start:end]
        if "offsets" in draws:
            x = random_crop(x, draws["offsets"][start:end], self.pad)
        if "flip" in draws:
            x = torch.where(draws["flip"][start:end].view(-1, 1, 1, 1), x.flip(-1), x)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if "angle" in draws:
            x = rotate(x.float().div_(255.0), draws["angle"][start:end])
            x = x.mul_(255.0 * self._scale).add_(self._shift)
        else:
            x = torch.addcmul(self._shift, x.float(), self._scale)
        return x.contiguous(memory_format=memory_format), y

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised batch back to the 0-1 pixel scale, for showing images."""
        return (x - self._shift.to(x.device)) / (255.0 * self._scale.to(x.device))

    def __repr__(self) -> str:
        return (f"TensorLoader({self.num_samples} images {tuple(self.images.shape[1:])}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, augment={self.augment!r}, "
                f"device={self.device})")


def random_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop each image of ``x`` [B, C, H, W] from its zero-padded copy at ``offsets`` [B, 2] (row, col in 0..2*pad).

    One gather for the whole batch: equivalent to torchvision's ``RandomCrop(H, padding=pad)`` per image.
    """
    batch, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(height, device=x.device)
    cols = offsets[:, 1:2] + torch.arange(width, device=x.device)
    batch_index = torch.arange(batch, device=x.device).view(-1, 1, 1)
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows.unsqueeze(2), cols.unsqueeze(1)]
    return cropped.permute(0, 3, 1, 2)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each float image of ``x`` about its centre by ``angles`` (radians), filling corners with 0."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def fast_loaders(name: str, batch_size: int = 64, augment: Union[bool, str, None] = False,
                 image_size: Optional[int] = None, device: DeviceLike = None, seed: int = 0,
                 root=None, download: bool = True, test_batch_size: Optional[int] = None,
                 drop_last: bool = False, channels_last: bool = False) -> Tuple[TensorLoader, TensorLoader]:
    """Train and test :class:`TensorLoader` for a course data set, normalised with its statistics.

    ``augment=True`` picks the data set's preset from :data:`AUGMENT_PRESETS`; a string names one
    of :data:`AUGMENTATIONS`. The test loader is never shuffled or augmented and uses batches of
    ``test_batch_size`` (default: twice ``batch_size``, at least 256).
    """
    from cnncourse.data import NORMALIZATION, dataset_info, get_dataset, is_known_name, to_tensors

    known = is_known_name(name)
    key = dataset_info(name).name if known else str(name)
    if augment is True:
        augment = AUGMENT_PRESETS.get(key, "crop-flip")
    elif augment is False:
        augment = None
    mean, std = NORMALIZATION[key] if known else (None, None)
    loaders = []
    for split in ("train", "test"):
        dataset = get_dataset(key, split=split, root=root, transform=None, download=download,
                              image_size=image_size, seed=seed)
        images, labels = to_tensors(dataset, image_size=image_size)
        train = split == "train"
        if mean is None:  # an image folder: its own statistics, measured on the training pixels
            pixels = images.float().div_(255).transpose(0, 1).flatten(1)
            mean, std = tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).tolist())
        loaders.append(TensorLoader(
            images, labels,
            batch_size=batch_size if train else (test_batch_size or max(2 * batch_size, 256)),
            shuffle=train, mean=mean, std=std, augment=augment if train else None,
            pad=CROP_PADDING.get(key, max(2, images.shape[-1] // 8)), device=device, seed=seed,
            drop_last=drop_last if train else False, channels_last=channels_last,
            classes=getattr(dataset, "classes", None)))
    return loaders[0], loaders[1]
