"""The in-memory fast path: a whole data set as one uint8 tensor, batched, normalised and augmented on the device.

Every data set of the course fits in memory at the sizes it uses (60,000 MNIST images are 47 MB
as uint8). Keeping them as one tensor on the training device removes the per-image work of a
classic ``DataLoader`` (PIL decode, ``ToTensor``, ``Normalize``, collate) that dominates small
models on a CPU and starves a GPU. :class:`TensorLoader` yields ``(images, labels)`` batches like
a ``DataLoader`` does, so :func:`cnncourse.train.fit` takes either.

Per batch it indexes the uint8 images, applies vectorised augmentation (random crop with zero
padding, rotation by a random angle, horizontal and vertical flips), converts to float and
normalises. What to do comes from the same recipe as the DataLoader path's transforms
(``cnncourse.data.data_recipe``), so both loaders run the same experiment. Shuffling and
augmentation draw from a generator seeded by ``(seed, epoch)``, one draw per image, so an epoch is
reproducible on its own (which makes resumed training exact) and is split across processes
(``rank``/``world_size``) without changing what any image gets.

The module needs only torch (copy it anywhere and :class:`TensorLoader` works);
:func:`fast_loaders` uses ``cnncourse.data`` to find and read the data sets.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

__all__ = ["AUGMENTATIONS", "TensorLoader", "fast_loaders"]

#: Named augmentations :class:`TensorLoader` knows besides a recipe's (``augment=True``).
#: ``"crop"``: random crop of the image padded by ``pad`` zero pixels on each side;
#: ``"flip"``: horizontal flip with probability 1/2; ``"crop-flip"``: both (the CIFAR recipe);
#: ``"galaxy"``: rotation by a uniform random angle plus horizontal flip (galaxies have no "up").
AUGMENTATIONS = (None, "crop", "flip", "crop-flip", "galaxy")
_NAMED = {None: {}, "crop": {"crop": True}, "flip": {"hflip": True}, "crop-flip": {"crop": True, "hflip": True},
          "galaxy": {"rotation": 180.0, "hflip": True}}

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
            default: the recipe's, else none (pixels only scaled to 0-1).
        augment: ``True`` for the recipe's augmentation, ``None``/``False`` for none, or a name
            from :data:`AUGMENTATIONS`.
        pad: padding in pixels for a named crop (default: the recipe's crop padding, else 4).
        device: where the images live and batches are made; ``None`` keeps them where they are
            (``fit`` then moves the loader to the model's device).
        seed: seed of the shuffling and augmentation; epoch ``e`` uses ``(seed, e)``.
        drop_last: drop the last incomplete batch.
        channels_last: return batches in ``torch.channels_last`` memory format.
        classes: class names, kept for plots; labels must then be below ``len(classes)``.
        recipe: a ``cnncourse.data.DataRecipe`` (or any object with ``mean``, ``std``,
            ``crop_padding``, ``hflip``, ``vflip``, ``rotation`` and optionally ``interpolation``).
        rank, world_size: this process's share of every epoch when ``world_size`` processes train
            together: the epoch's order (the same on every rank) split as ``order[rank::world_size]``;
            with shuffling it is first padded by wrapping to a multiple of ``world_size`` (every rank
            gets as many batches, as with ``DistributedSampler``), without it every image is seen once.

    Iterating yields ``(x, y)``: float32 ``[B, C, H, W]`` normalised images and int64 labels, both
    on ``device``. Each ``iter()`` uses the current epoch and then advances it; :meth:`set_epoch`
    chooses it explicitly (``fit`` does, which is what makes resuming exact). Augmentation draws
    belong to images, not positions: an image gets the same crop, flips and angle in an epoch
    whatever the order and however the epoch is split across processes.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
                 shuffle: bool = False, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, augment: Union[bool, str, None] = None,
                 pad: Optional[int] = None, device: DeviceLike = None, seed: int = 0, drop_last: bool = False,
                 channels_last: bool = False, classes: Optional[Sequence[str]] = None, *, recipe=None,
                 rank: int = 0, world_size: int = 1, erase: float = 0.0) -> None:
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
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        self.recipe = recipe
        self._set_augmentation(augment, pad)
        if not 0.0 <= float(erase) <= 1.0:
            raise ValueError(f"erase is the probability of erasing a rectangle of an image: 0 to 1; got {erase}")
        self.erase = float(erase)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.classes = list(classes) if classes is not None else None
        self.rank, self.world_size = int(rank), int(world_size)
        self._check_shard()
        self.epoch = 0
        channels = images.shape[1]
        mean = mean if mean is not None else getattr(recipe, "mean", None)
        std = std if std is not None else getattr(recipe, "std", None)
        self.mean = tuple(float(m) for m in mean) if mean is not None else (0.0,) * channels
        self.std = tuple(float(s) for s in std) if std is not None else (1.0,) * channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel); "
                             f"got {len(self.mean)} and {len(self.std)}")
        if not all(math.isfinite(s) and s > 0 for s in self.std) or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"std must be finite and > 0 and mean finite (they normalise: (x - mean) / std); got "
                             f"mean={self.mean}, std={self.std}")
        labels = labels.long()
        limit = len(self.classes) if self.classes is not None else None
        bad = (labels < 0) if limit is None else (labels < 0) | (labels >= limit)
        if bool(bad.any()):
            expected = "0 or more" if limit is None else f"0 to {limit - 1} (one per class of classes=)"
            raise ValueError(f"labels must be {expected}; found {sorted(set(labels[bad].tolist()))[:10]} at "
                             f"positions {bad.nonzero().flatten()[:5].tolist()}")
        self.images = images
        self.labels = labels
        self.to(device if device is not None else images.device)

    def _set_augmentation(self, augment: Union[bool, str, None], pad: Optional[int]) -> None:
        recipe = self.recipe
        recipe_pad = int(getattr(recipe, "crop_padding", 0) or 0)
        self.pad = int(pad) if pad is not None else (recipe_pad or 4)
        self.interpolation = getattr(recipe, "interpolation", "bilinear")
        if augment is True:
            if recipe is None:
                raise ValueError("augment=True means the recipe's augmentation, but no recipe= was given; "
                                 f"pass recipe=cnncourse.data.data_recipe(name) or name one of {AUGMENTATIONS}")
            chosen = {"crop": recipe_pad > 0, "hflip": bool(recipe.hflip), "vflip": bool(recipe.vflip),
                      "rotation": float(recipe.rotation)}
        elif augment is False or augment in _NAMED:
            chosen = _NAMED[None if augment is False else augment]
        else:
            raise ValueError(f"augment={augment!r} is not True, False or one of {AUGMENTATIONS}")
        self.crop = bool(chosen.get("crop", False))
        self.hflip = bool(chosen.get("hflip", False))
        self.vflip = bool(chosen.get("vflip", False))
        self.rotation = float(chosen.get("rotation", 0.0))

    @property
    def augment(self) -> Optional[str]:
        """The augmentation as a name: one of :data:`AUGMENTATIONS` when it is one, else its parts joined by '+'."""
        parts = (self.crop, self.hflip, self.vflip, self.rotation)
        for name, spec in _NAMED.items():
            if parts == (spec.get("crop", False), spec.get("hflip", False), False, spec.get("rotation", 0.0)):
                return name
        return "+".join(["crop"] * self.crop + ["hflip"] * self.hflip + ["vflip"] * self.vflip
                        + [f"rotate{self.rotation:g}"] * bool(self.rotation))

    def _check_shard(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size; got rank={self.rank}, "
                             f"world_size={self.world_size}")

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def from_dataset(cls, dataset, batch_size: int = 64, shuffle: bool = False,
                     image_size: Optional[int] = None, **kwargs) -> "TensorLoader":
        """Build a loader from a data set that can give its raw pixels: ``dataset.to_tensors(image_size=...)``
        returning uint8 ``[N, C, H, W]`` images and ``[N]`` labels (every data set from
        ``cnncourse.data.get_dataset`` has it). ``classes`` defaults to ``dataset.classes``; the
        other keywords go to :class:`TensorLoader`."""
        method = getattr(dataset, "to_tensors", None)
        if not callable(method):
            raise TypeError(
                f"TensorLoader.from_dataset needs a data set with a to_tensors(image_size=None) method that "
                f"returns uint8 [N, C, H, W] images and [N] labels; {type(dataset).__name__} has none. Use "
                "images, labels = cnncourse.data.to_tensors(dataset) (it reads any data set of images) and "
                "TensorLoader(images, labels, ...) instead.")
        images, labels = method(image_size=image_size)
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
        """Number of images held (all ranks together)."""
        return len(self.labels)

    @property
    def shard_size(self) -> int:
        """Images this rank yields per epoch (``num_samples`` in a single process)."""
        n, world = self.num_samples, self.world_size
        if world == 1:
            return n
        return math.ceil(n / world) if self.shuffle else len(range(self.rank, n, world))

    @property
    def dataset(self) -> TensorDataset:
        """The raw (uint8 image, label) pairs, so ``len(loader.dataset)`` works as with a DataLoader."""
        return TensorDataset(self.images, self.labels)

    def __len__(self) -> int:
        """Number of batches per epoch (of this rank)."""
        if self.drop_last:
            return self.shard_size // self.batch_size
        return math.ceil(self.shard_size / self.batch_size)

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
        self._check_shard()  # rank and world_size may be set after construction (fit does under torchrun)
        draws = self._draw_epoch(self.epoch)
        self.epoch += 1
        positions = self._positions(draws.pop("order", None))
        count = self.shard_size
        stop = len(self) * self.batch_size if self.drop_last else count
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, count)
            index = positions[start:end] if positions is not None else slice(start, end)
            yield self._make_batch(draws, index)

    # ----------------------------------------------------------------- batch making
    def _positions(self, order: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The image indices this rank yields this epoch, in order (None: all images, in storage order)."""
        if self.world_size == 1:
            return order
        n, world = self.num_samples, self.world_size
        order = order if order is not None else torch.arange(n, device=self.device)
        if self.shuffle and n % world:  # wrap around so every rank gets the same number of images
            total = math.ceil(n / world) * world
            order = order.repeat(math.ceil(total / n))[:total]
        return order[self.rank::world]

    def _draw_epoch(self, epoch: int) -> dict:
        """All random numbers of one epoch, one per image (not per position), drawn on the CPU (the
        same on every device and every rank) and moved once."""
        n = self.num_samples
        draws = {}
        if self.shuffle:
            draws["order"] = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(self.seed, epoch)))
        # A generator of its own, so an image's augmentation does not depend on shuffling being on.
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch) ^ 0x5DEECE66D)
        if self.crop:
            draws["offsets"] = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        if self.rotation:
            draws["angle"] = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(self.rotation)
        if self.hflip:
            draws["hflip"] = torch.rand(n, generator=generator) < 0.5
        if self.vflip:
            draws["vflip"] = torch.rand(n, generator=generator) < 0.5
        if self.erase:
            draws["erase"] = erase_boxes(n, self.images.shape[-2:], self.erase, generator)
        return {key: value.to(self.device, non_blocking=True) for key, value in draws.items()}

    def _make_batch(self, draws: dict, index) -> Tuple[torch.Tensor, torch.Tensor]:
        x, y = self.images[index], self.labels[index]
        if "offsets" in draws:
            x = random_crop(x, draws["offsets"][index], self.pad)
        if "angle" in draws:
            x = rotate(x.float().div_(255.0), draws["angle"][index], self.interpolation)
        for key, dim in (("hflip", -1), ("vflip", -2)):
            if key in draws:
                x = torch.where(draws[key][index].view(-1, 1, 1, 1), x.flip(dim), x)
        if "angle" in draws:
            x = x.mul_(255.0 * self._scale).add_(self._shift)
        else:
            x = torch.addcmul(self._shift, x.float(), self._scale)
        if "erase" in draws:
            x = erase(x, draws["erase"][index])
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format), y

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised batch back to the 0-1 pixel scale, for showing images."""
        return (x - self._shift.to(x.device)) / (255.0 * self._scale.to(x.device))

    def __repr__(self) -> str:
        shard = f", rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return (f"TensorLoader({self.num_samples} images {tuple(self.images.shape[1:])}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, augment={self.augment!r}, "
                f"device={self.device}{shard})")


def erase_boxes(n: int, size, probability: float, generator: torch.Generator,
                area=(0.02, 0.33), ratio=(0.3, 3.3)) -> torch.Tensor:
    """Random erasing's draws (Zhong et al., 2020; torchvision's RandomErasing defaults) for ``n``
    images of ``size`` (H, W): with ``probability`` a rectangle of ``area`` of the image (uniform) and
    aspect ratio h / w in ``ratio`` (log-uniform), at a uniform position. Returns (n, 4) long: top,
    left, height, width (height 0 for an image left alone)."""
    h_img, w_img = int(size[0]), int(size[1])
    chosen = torch.rand(n, generator=generator) < probability
    fraction = area[0] + (area[1] - area[0]) * torch.rand(n, generator=generator)
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(n, generator=generator)
    target = fraction * h_img * w_img
    h = torch.sqrt(target * log_ratio.exp()).round().clamp(1, h_img).long()
    w = torch.sqrt(target / log_ratio.exp()).round().clamp(1, w_img).long()
    top = (torch.rand(n, generator=generator) * (h_img - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (w_img - w + 1)).long()
    return torch.stack([top, left, h * chosen, w], dim=1)


def erase(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Set the rectangle ``boxes`` (top, left, height, width per image, from :func:`erase_boxes`) of each
    normalised image of ``x`` to 0, the data set's mean colour; vectorised, no loop over images."""
    rows = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1)
    top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return x.masked_fill(inside[:, None], 0.0)


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


def rotate(x: torch.Tensor, angles: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate each float image of ``x`` about its centre by ``angles`` (radians), filling corners with 0."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def fast_loaders(name: str, batch_size: int = 64, augment: Union[bool, str, None] = False,
                 image_size: Optional[int] = None, device: DeviceLike = None, seed: int = 0,
                 root=None, download: bool = True, test_batch_size: Optional[int] = None,
                 drop_last: bool = False, channels_last: bool = False, preset: str = "course",
                 recipe=None, rank: int = 0, world_size: int = 1, val_fraction: float = 0.0,
                 subset: Optional[int] = None, val_seed: Optional[int] = None,
                 erase: float = 0.0) -> Tuple[TensorLoader, ...]:
    """Train and test :class:`TensorLoader` for a course data set or an image folder; with
    ``val_fraction > 0``, (train, val, test): a seeded stratified hold-out of the training split.

    Normalisation and ``augment=True`` follow ``cnncourse.data.data_recipe(name, preset)``, the
    recipe the DataLoader path's ``default_transform`` reads too: ``preset="course"`` (the data
    set's statistics, an image folder's measured from its training pixels, and the course's
    augmentation) or ``"article"`` (the articles' ``Normalize(0.5, 0.5)`` and augmentation);
    ``recipe`` overrides it. A string ``augment`` names one of :data:`AUGMENTATIONS` instead. The
    test loader is never shuffled or augmented and uses batches of ``test_batch_size`` (default:
    twice ``batch_size``, at least 256); the validation loader is built the same way.
    ``subset``: about that many training images, stratified. ``val_seed`` seeds the hold-out and the
    subset (default: ``seed``, which also seeds shuffling and augmentation): keep it fixed to vary the
    training and not the held-out images. ``rank``/``world_size`` shard the loaders (see :class:`TensorLoader`).
    ``erase``: random erasing's probability for the training loader (0: off).
    """
    try:
        from cnncourse.data import (data_recipe, get_dataset, is_known_name, pixel_statistics, resolve_data,
                                    to_tensors)
    except ImportError as error:
        raise ImportError(
            "fast_loaders needs the cnncourse package (cnncourse.data) to find and read data sets; install "
            "the course (pip install -e . in its folder), or build TensorLoader(images, labels, mean=..., "
            "std=...) from your own uint8 tensors, which needs only torch.") from error

    name = resolve_data(name, root)  # an image folder may be named by its path inside the data folder
    loaded = []
    splits = ("train", "val", "test") if val_fraction else ("train", "test")
    for split in splits:
        dataset = get_dataset(name, split=split, root=root, transform=None, download=download,
                              image_size=image_size, seed=seed if val_seed is None else val_seed,
                              val_fraction=val_fraction,
                              subset=subset if split == "train" else None)
        loaded.append((dataset, *to_tensors(dataset, image_size=image_size)))
    (train_set, train_x, train_y), (test_set, test_x, test_y) = loaded[0], loaded[-1]
    if recipe is None:
        stats = None if is_known_name(name) or preset != "course" else pixel_statistics(train_x)
        recipe = data_recipe(name, preset, image_folder_stats=stats)
    pad = recipe.crop_padding or max(1, min(train_x.shape[-2:]) // 8)
    common = dict(recipe=recipe, pad=pad, device=device, seed=seed, channels_last=channels_last,
                  rank=rank, world_size=world_size)
    train = TensorLoader(train_x, train_y, batch_size=batch_size, shuffle=True, augment=augment or None,
                         drop_last=drop_last, classes=getattr(train_set, "classes", None), erase=erase, **common)
    evaluation = [TensorLoader(x, y, batch_size=test_batch_size or max(2 * batch_size, 256), shuffle=False,
                               augment=None, classes=getattr(part, "classes", None), **common)
                  for part, x, y in loaded[1:]]
    return (train, *evaluation)
