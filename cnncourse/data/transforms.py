"""Transform presets: the source articles' own, and the course's per-data-set defaults."""
from __future__ import annotations

from typing import List, Optional

from torchvision import transforms as T

from cnncourse.data.imageops import ImageSize, size_hw
from cnncourse.data.registry import IMAGENET_NORMALIZATION, NORMALIZATION, canonical_name

GALAXIES = ("galaxy10", "galaxy10-sdss")
# Galaxies have no "up": any rotation of a galaxy image is another valid galaxy image.
GALAXY_ROTATION_DEGREES = 180


def _name_or_none(name: str) -> Optional[str]:
    """The registry name, or None for an image folder (a path)."""
    try:
        return canonical_name(name)
    except ValueError:
        return None


def article_transform(name: str, train: bool = True, image_size: ImageSize = None) -> T.Compose:
    """The preprocessing the source articles used.

    CIFAR-10 (LeNet article): ``ToTensor`` + ``Normalize((0.5,)*3, (0.5,)*3)``, train and test alike.
    MNIST and Fashion-MNIST: ``ToTensor`` + ``Normalize((0.5,), (0.5,))``.
    Galaxy10 (ResNet article, augmented run): random rotation + horizontal flip for training, then
    ``ToTensor`` + ``Normalize(0.5, 0.5)``; no augmentation for testing. ``image_size`` adds a
    ``Resize`` first (the galaxy articles fed 224x224 images to VGG16 and ResNet-50).
    """
    key = canonical_name(name)
    channels = 1 if key in ("mnist", "fashion-mnist") else 3
    steps: List = []
    if image_size is not None:
        steps.append(T.Resize(size_hw(image_size)))
    if key in GALAXIES and train:
        steps += [T.RandomRotation(GALAXY_ROTATION_DEGREES), T.RandomHorizontalFlip()]
    steps += [T.ToTensor(), T.Normalize((0.5,) * channels, (0.5,) * channels)]
    return T.Compose(steps)


def default_transform(name: str, train: bool = False, augment: bool = False,
                      image_size: ImageSize = None) -> T.Compose:
    """The course's preset: [Resize] + [augmentation when ``train and augment``] + ToTensor + Normalize.

    Normalisation uses the data set's own statistics (``NORMALIZATION``; ImageNet's for an image
    folder). Augmentation: CIFAR-10 random crop with 4-pixel padding + horizontal flip;
    MNIST random crop with 2-pixel padding (no flip: a mirrored digit is not a digit);
    Fashion-MNIST the same plus horizontal flip; galaxies random rotation + horizontal and vertical
    flips; image folders random resized crop + horizontal flip.
    """
    key = _name_or_none(name)
    mean, std = NORMALIZATION[key] if key is not None else IMAGENET_NORMALIZATION
    hw = size_hw(image_size)
    steps: List = []
    if hw is not None:
        steps.append(T.Resize(hw))
    if train and augment:
        if key == "cifar10":
            steps += [T.RandomCrop(hw or 32, padding=4), T.RandomHorizontalFlip()]
        elif key == "mnist":
            steps += [T.RandomCrop(hw or 28, padding=2)]
        elif key == "fashion-mnist":
            steps += [T.RandomCrop(hw or 28, padding=2), T.RandomHorizontalFlip()]
        elif key in GALAXIES:
            steps += [T.RandomRotation(GALAXY_ROTATION_DEGREES), T.RandomHorizontalFlip(), T.RandomVerticalFlip()]
        elif hw is not None:
            steps = [T.RandomResizedCrop(hw, scale=(0.5, 1.0)), T.RandomHorizontalFlip()]
        else:
            steps += [T.RandomHorizontalFlip()]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)
