"""What the course knows about each data set: classes, sizes, statistics, sources and licences.

Everything here is plain data, so a notebook can show it and the loaders can build their error
messages from it. ``NORMALIZATION`` holds per-channel mean and standard deviation of pixel values
in [0, 1], measured on the training images (see each entry's comment for the files used;
``scripts/make_samples.py --stats`` recomputes them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

DATASETS: Tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "galaxy10", "galaxy10-sdss")

# Spellings people use for the same data set.
_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
    "galaxy10": "galaxy10", "galaxy10-decals": "galaxy10", "galaxy10_decals": "galaxy10",
    "galaxy10decals": "galaxy10",
    "galaxy10-sdss": "galaxy10-sdss", "galaxy10_sdss": "galaxy10-sdss", "galaxy10sdss": "galaxy10-sdss",
}

NORMALIZATION: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    # All 60,000 training images of the original idx files (MD5s equal torchvision's).
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    # All 50,000 training images of a JPEG copy of CIFAR-10 (the original files were not at hand).
    # The means agree with the values usually quoted for the original files (0.4914, 0.4822, 0.4465)
    # to 1e-4; JPEG smooths the pixels, so these std are about 0.5 % below the quoted
    # (0.2470, 0.2435, 0.2616). Either set works equally well for training.
    "cifar10": ((0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)),
    # Galaxy10 DECaLS: estimated from the 120 real images available offline (10 exact, 110 JPEG
    # re-encodes), not from the full 17,736, so only a rough estimate: mostly dark sky, hence low.
    "galaxy10": ((0.1689, 0.1632, 0.1596), (0.1286, 0.1203, 0.1121)),
    # Galaxy10 SDSS: no SDSS images were available to measure; the DECaLS estimate stands in
    # (both are gri colour composites of a galaxy on dark sky).
    "galaxy10-sdss": ((0.1689, 0.1632, 0.1596), (0.1286, 0.1203, 0.1121)),
}

GALAXY10_DECALS_CLASSES = (
    "Disturbed", "Merging", "Round Smooth", "In-between Round Smooth", "Cigar Shaped Smooth",
    "Barred Spiral", "Unbarred Tight Spiral", "Unbarred Loose Spiral", "Edge-on without Bulge",
    "Edge-on with Bulge",
)
GALAXY10_SDSS_CLASSES = (
    "Disk, Face-on, No Spiral", "Smooth, Completely round", "Smooth, in-between round",
    "Smooth, Cigar shaped", "Disk, Edge-on, Rounded Bulge", "Disk, Edge-on, Boxy Bulge",
    "Disk, Edge-on, No Bulge", "Disk, Face-on, Tight Spiral", "Disk, Face-on, Medium Spiral",
    "Disk, Face-on, Loose Spiral",
)


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one data set; ``folder`` and ``files`` say where its files go under the data root."""

    name: str
    title: str
    num_classes: int
    in_channels: int
    image_size: int
    classes: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    num_images: int
    folder: str
    files: Tuple[str, ...]
    urls: Tuple[str, ...]
    homepage: str
    citation: str
    licence: str

    def location(self, root: "str | os.PathLike[str] | None" = None) -> Path:
        """The folder under the data root where this data set's files belong."""
        from cnncourse.config import data_root
        return data_root(root) / self.folder


def _info(name: str, **fields) -> DatasetInfo:
    mean, std = NORMALIZATION[name]
    return DatasetInfo(name=name, mean=mean, std=std, num_classes=len(fields["classes"]), **fields)


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

_INFO: Dict[str, DatasetInfo] = {
    "mnist": _info(
        "mnist", title="MNIST", in_channels=1, image_size=28, num_images=70_000,
        classes=("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
                 "7 - seven", "8 - eight", "9 - nine"),
        folder="MNIST/raw", files=_MNIST_FILES,
        urls=tuple(f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}" for f in _MNIST_FILES),
        homepage="http://yann.lecun.com/exdb/mnist/",
        citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, 'Gradient-based learning applied to "
                 "document recognition', Proc. IEEE 86(11), 1998; data by Y. LeCun, C. Cortes, C. Burges.",
        licence="CC BY-SA 3.0"),
    "fashion-mnist": _info(
        "fashion-mnist", title="Fashion-MNIST", in_channels=1, image_size=28, num_images=70_000,
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"),
        folder="FashionMNIST/raw", files=_MNIST_FILES,
        urls=tuple(f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}" for f in _MNIST_FILES),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="H. Xiao, K. Rasul, R. Vollgraf, 'Fashion-MNIST: a Novel Image Dataset for Benchmarking "
                 "Machine Learning Algorithms', arXiv:1708.07747, 2017 (Zalando Research).",
        licence="MIT"),
    "cifar10": _info(
        "cifar10", title="CIFAR-10", in_channels=3, image_size=32, num_images=60_000,
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        folder=".", files=("cifar-10-python.tar.gz",),
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        citation="A. Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', technical "
                 "report, University of Toronto, 2009.",
        licence="no licence stated by the authors; cite the report above"),
    "galaxy10": _info(
        "galaxy10", title="Galaxy10 DECaLS", in_channels=3, image_size=256, num_images=17_736,
        classes=GALAXY10_DECALS_CLASSES,
        folder="galaxy10", files=("Galaxy10_DECals.h5",),
        urls=("https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",),
        homepage="https://astronn.readthedocs.io/en/latest/galaxy10.html",
        citation="H. Leung, J. Bovy, astroNN (Galaxy10 DECaLS), Zenodo record 10845026; images from the "
                 "DESI Legacy Imaging Surveys (Dey et al. 2019), labels from Galaxy Zoo DECaLS "
                 "(Walmsley et al. 2022, MNRAS 509, 3966) and Galaxy Zoo (Lintott et al. 2008).",
        licence="CC BY 4.0"),
    "galaxy10-sdss": _info(
        "galaxy10-sdss", title="Galaxy10 SDSS", in_channels=3, image_size=69, num_images=21_785,
        classes=GALAXY10_SDSS_CLASSES,
        folder="galaxy10", files=("Galaxy10.h5",),
        urls=("https://zenodo.org/records/10844811/files/Galaxy10.h5",),
        homepage="https://astronn.readthedocs.io/en/latest/galaxy10sdss.html",
        citation="H. Leung, J. Bovy, astroNN (Galaxy10 SDSS), Zenodo record 10844811; images from SDSS, "
                 "labels from Galaxy Zoo 2 (Willett et al. 2013, MNRAS 435, 2835).",
        licence="CC BY 4.0"),
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (case and common spellings ignored); ValueError if unknown."""
    key = str(name).strip().lower().replace(" ", "")
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(unknown_name_message(name))


def unknown_name_message(name: object) -> str:
    return (f"unknown data set {name!r}: known data sets are {', '.join(DATASETS)}; "
            "or pass the path of an image folder (torchvision ImageFolder layout: one sub-folder per "
            "class, optionally inside train/ and test/).")


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a data set (see ``DATASETS`` for the names)."""
    return _INFO[canonical_name(name)]


def class_names(name: str) -> list:
    """The class names of a data set, in label order (label ``i`` is ``class_names(name)[i]``)."""
    return list(dataset_info(name).classes)
