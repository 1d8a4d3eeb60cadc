"""Every data set of the course through one small API.

    from cnncourse.data import get_dataset, make_loader, default_transform
    train = get_dataset("cifar10", "train", transform=default_transform("cifar10", train=True, augment=True))
    loader = make_loader(train, batch_size=64, shuffle=True, seed=0)

Data sets: ``mnist``, ``fashion-mnist``, ``cifar10`` (torchvision's classes: real download, MD5
checks), ``galaxy10`` (DECaLS) and ``galaxy10-sdss`` (astroNN's ``.h5`` files from Zenodo: SHA-256
checked, read lazily, stratified split), or the path of any image folder. Normalisation and
augmentation come from one recipe per data set (``data_recipe(name, preset)``, presets "course"
and "article") that the DataLoader path and the fast path (``cnncourse.fastdata``) both read. Files go to the data
folder (``root=``, else ``$CNNCOURSE_DATA``, else ``~/.cache/cnncourse``). In quick mode
(``CNNCOURSE_QUICK=1``) the same calls return small real samples shipped with the package.
"""
from cnncourse.data.core import (CIFAR10_JPEG, cifar10_source, folder_info, get_dataset, image_folder, is_known_name,
                                  portable_data_name, resolve_data)
from cnncourse.data.errors import ChecksumError, DataError, DataUnavailableError
from cnncourse.data.folders import FolderSplit, ImageFolderDataset
from cnncourse.data.galaxy10 import Galaxy10Dataset
from cnncourse.data.imageops import stratified_split
from cnncourse.data.loaders import default_num_workers, make_loader, to_tensors
from cnncourse.data.recipes import (RECIPE_PRESETS, DataRecipe, PixelStats, data_recipe, folder_statistics,
                                    pixel_statistics)
from cnncourse.data.registry import (DATASETS, NORMALIZATION, DatasetInfo, class_names, dataset_info)
from cnncourse.data.samples import SampleDataset
from cnncourse.data.transforms import article_transform, default_transform, recipe_transform

__all__ = [
    "CIFAR10_JPEG", "DATASETS", "NORMALIZATION", "cifar10_source", "RECIPE_PRESETS", "ChecksumError", "DataError", "DataRecipe",
    "DataUnavailableError", "DatasetInfo", "FolderSplit", "Galaxy10Dataset", "ImageFolderDataset", "PixelStats",
    "SampleDataset", "article_transform", "class_names", "data_recipe", "dataset_info", "default_num_workers",
    "default_transform", "folder_info", "folder_statistics", "get_dataset", "image_folder", "is_known_name",
    "make_loader", "pixel_statistics", "portable_data_name", "recipe_transform", "resolve_data",
    "stratified_split", "to_tensors",
]
