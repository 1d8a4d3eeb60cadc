"""Quick mode's data: small real samples shipped inside the package (made by scripts/make_samples.py).

Loading them reads only files inside the package, never the network. Each sample behaves like
the full data set: PIL images (``transform=None``), ``.classes``, ``.targets``, plus ``.data``
(uint8 array), ``.sources`` (where each image came from), ``.provenance`` and ``.note``.
"""
from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cnncourse.data.imageops import ImageSize, as_nchw, resize_array, resize_pil, resize_stack, size_hw, to_pil
from cnncourse.data.registry import dataset_info

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"

# Galaxy10 DECaLS label -> the nearest Galaxy10 SDSS label, for the SDSS stand-in sample.
# Disturbed (0) and Merging (1) have no SDSS counterpart and are left out; barred spirals (5),
# whose winding is not labelled, go to the middle spiral class. SDSS classes 0 (Disk, Face-on,
# No Spiral) and 5 (Disk, Edge-on, Boxy Bulge) get no images.
DECALS_TO_SDSS = {2: 1, 3: 2, 4: 3, 5: 8, 6: 7, 7: 9, 8: 6, 9: 4}

SDSS_STAND_IN_NOTE = (
    "Stand-in: no Galaxy10 SDSS images were available to build this sample. It reuses the real "
    "Galaxy10 DECaLS sample images, shrunk from 256x256 to SDSS's 69x69, with each DECaLS class mapped "
    "to the nearest SDSS class (Round Smooth -> Smooth, Completely round; In-between Round Smooth -> "
    "Smooth, in-between round; Cigar Shaped Smooth -> Smooth, Cigar shaped; Barred Spiral -> Disk, "
    "Face-on, Medium Spiral; Unbarred Tight Spiral -> Disk, Face-on, Tight Spiral; Unbarred Loose "
    "Spiral -> Disk, Face-on, Loose Spiral; Edge-on without Bulge -> Disk, Edge-on, No Bulge; Edge-on "
    "with Bulge -> Disk, Edge-on, Rounded Bulge). Disturbed and Merging galaxies are left out; SDSS "
    "classes 0 and 5 have no images. Good for running code, not for judging SDSS accuracy.")


def sample_path(name: str) -> Path:
    return SAMPLES_DIR / f"{name}.npz"


def _decode(blob: np.ndarray, offsets: np.ndarray, mode: str) -> np.ndarray:
    data = blob.tobytes()
    return np.stack([np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]])).convert(mode))
                     for i in range(len(offsets) - 1)])


@functools.lru_cache(maxsize=None)
def load_sample_arrays(name: str, split: str) -> Tuple[np.ndarray, np.ndarray, Tuple[str, ...], str]:
    """(images uint8 (N, H, W[, 3]), labels, sources, meta JSON) of a packaged sample; read-only."""
    if name == "galaxy10-sdss":
        images, labels, sources, meta = load_sample_arrays("galaxy10", split)
        keep = np.isin(labels, list(DECALS_TO_SDSS))
        small = np.stack([resize_array(image, dataset_info(name).image_size) for image in images[keep]])
        mapped = np.array([DECALS_TO_SDSS[int(label)] for label in labels[keep]], dtype=np.int64)
        record = json.loads(meta)
        record.update(name=name, title=dataset_info(name).title, classes=list(dataset_info(name).classes),
                      note=SDSS_STAND_IN_NOTE)
        picked = tuple(s for s, k in zip(sources, keep) if k)
        small.setflags(write=False)
        return small, mapped, picked, json.dumps(record)
    mode = "L" if dataset_info(name).in_channels == 1 else "RGB"
    with np.load(sample_path(name), allow_pickle=False) as archive:
        if f"{split}_images" in archive:
            images = archive[f"{split}_images"]
        else:
            images = _decode(archive[f"{split}_blob"], archive[f"{split}_offsets"], mode)
        labels = archive[f"{split}_labels"].astype(np.int64)
        sources = tuple(str(s) for s in archive[f"{split}_sources"])
        meta = str(archive["meta"])
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels, sources, meta


class SampleDataset(Dataset):
    """A packaged quick-mode sample of ``name``/``split``; images resized to ``image_size`` on the fly.

    ``.data`` holds the native uint8 pixels, shared read-only between instances.
    """

    def __init__(self, name: str, split: str = "train", transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, image_size: ImageSize = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        images, labels, sources, meta = load_sample_arrays(name, split)
        size_hw(image_size)  # reject a bad size now, not at the first item
        self.name = name
        self.split = split
        self.data = images
        self.targets = labels.tolist()
        self.sources = list(sources)
        self.provenance = json.loads(meta)
        self.classes = list(dataset_info(name).classes)
        self.title = f"{dataset_info(name).title} quick-mode sample ({split})"
        self.note = self.provenance.get("note", "")
        self.image_size = image_size
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image, target = resize_pil(to_pil(self.data[index]), self.image_size), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def to_tensors(self, image_size: ImageSize = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every image as uint8 (N, C, H, W) (resized to ``image_size``, default the dataset's) and
        the labels as int64 (N,); the transform is not applied."""
        size = image_size if image_size is not None else self.image_size
        return as_nchw(resize_stack(self.data, size)), torch.as_tensor(self.targets, dtype=torch.int64)

    def __repr__(self) -> str:
        return (f"SampleDataset({self.name!r}, split={self.split!r}, {len(self)} images of "
                f"{tuple(self.data.shape[1:])}, quick-mode sample)")
