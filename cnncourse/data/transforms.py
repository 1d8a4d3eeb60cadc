"""torchvision transforms built from a :class:`~cnncourse.data.recipes.DataRecipe` (the DataLoader path).

The in-memory fast path (``cnncourse.fastdata``) reads the same recipe, so both give the same
normalised tensor for the same image and the same kinds of augmentation.
"""
from __future__ import annotations

from typing import List, Optional

from torchvision import transforms as T
from torchvision.transforms import functional as TF

from cnncourse.data.imageops import ImageSize, size_hw
from cnncourse.data.recipes import DataRecipe, data_recipe

_INTERPOLATION = {"bilinear": T.InterpolationMode.BILINEAR, "nearest": T.InterpolationMode.NEAREST}


def recipe_transform(recipe: DataRecipe, train: bool = False, augment: bool = False,
                     image_size: ImageSize = None) -> T.Compose:
    """[Resize] + [the recipe's augmentation when ``train and augment``] + ToTensor + Normalize.

    Augmentation order as on the fast path: crop of the zero-padded image, rotation (bilinear
    unless the recipe says otherwise, black corners), horizontal flip, vertical flip.
    """
    hw = size_hw(image_size)
    steps: List = [T.Resize(hw)] if hw is not None else []
    if train and augment:
        if recipe.crop_padding:
            steps.append(SameSizeRandomCrop(recipe.crop_padding))
        if recipe.rotation:
            steps.append(T.RandomRotation(recipe.rotation, interpolation=_INTERPOLATION[recipe.interpolation]))
        if recipe.hflip:
            steps.append(T.RandomHorizontalFlip())
        if recipe.vflip:
            steps.append(T.RandomVerticalFlip())
    steps += [T.ToTensor(), T.Normalize(recipe.mean, recipe.std)]
    return T.Compose(steps)


class SameSizeRandomCrop(T.RandomCrop):
    """``RandomCrop(padding=p)`` back to the image's own size, whatever that size is: the image,
    zero-padded by ``padding`` pixels on each side, cropped at a uniform random offset."""

    def __init__(self, padding: int) -> None:
        super().__init__(1, padding=padding)

    def forward(self, img):
        _, height, width = TF.get_dimensions(img)
        img = TF.pad(img, self.padding, fill=0)
        top, left, _, _ = self.get_params(img, (height, width))
        return TF.crop(img, top, left, height, width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(padding={self.padding})"


def default_transform(name: str, train: bool = False, augment: bool = False, image_size: ImageSize = None,
                      preset: str = "course", seed: int = 0, recipe: Optional[DataRecipe] = None) -> T.Compose:
    """The transform of ``data_recipe(name, preset)`` for the DataLoader path.

    ``preset="course"`` (the default) normalises with the data set's statistics (an image folder's
    measured from its training split at ``image_size``; ``seed`` as in ``get_dataset``) and, when
    ``train and augment``, applies the course's augmentation; ``preset="article"`` is the articles'
    ``Normalize(0.5, 0.5)`` and augmentation. ``recipe`` overrides both.
    """
    if recipe is None:
        recipe = data_recipe(name, preset, image_size=image_size, seed=seed)
    return recipe_transform(recipe, train=train, augment=augment, image_size=image_size)


def article_transform(name: str, train: bool = True, image_size: ImageSize = None) -> T.Compose:
    """The preprocessing the source articles used: the "article" preset, augmented for training.

    CIFAR-10 (LeNet article), MNIST and Fashion-MNIST: ``ToTensor`` + ``Normalize(0.5, 0.5)``,
    train and test alike. Galaxy10 (ResNet article, augmented run): random rotation + horizontal
    flip for training, then ``ToTensor`` + ``Normalize(0.5, 0.5)``; no augmentation for testing.
    ``image_size`` adds a ``Resize`` first (the galaxy articles fed 224x224 images to VGG16 and
    ResNet-50).
    """
    return default_transform(name, train=train, augment=train, image_size=image_size, preset="article")
