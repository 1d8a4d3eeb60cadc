"""One data recipe, two loaders: the fast path (cnncourse.fastdata) and the DataLoader path agree.

Every augmentation is checked by what it does to images (flipped fractions, crop offsets recovered
from the output, rotation angles of a bright spot), so disabling one in either loader fails a test.
Course data comes from the quick-mode samples packaged with cnncourse; image folders are written
as real PNG files.
"""
from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnncourse
from cnncourse.data import (DATASETS, NORMALIZATION, RECIPE_PRESETS, DataRecipe, article_transform,
                            data_recipe, default_transform, get_dataset, make_loader, pixel_statistics,
                            to_tensors)
from cnncourse.fastdata import TensorLoader, fast_loaders

FASTDATA = Path(cnncourse.__file__).resolve().parent / "fastdata.py"


def noise(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images: no two crops, flips or rotations of one are alike."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)


def to_pixels(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised float images back to uint8 pixels."""
    mean = torch.tensor(mean).view(-1, 1, 1)
    std = torch.tensor(std).view(-1, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


def crop_flip_draws(outputs: torch.Tensor, source: torch.Tensor, pad: int):
    """For each output image (uint8 [C, H, W]), the (row offset, col offset, flipped) that made it from
    ``source`` (one image, or one per output); None where no crop/flip of the source matches."""
    height, width = source.shape[-2:]
    found = []
    for k, out in enumerate(outputs):
        image = source if source.dim() == 3 else source[k]
        padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
        match = None
        for row in range(2 * pad + 1):
            for col in range(2 * pad + 1):
                window = padded[:, row:row + height, col:col + width]
                if torch.equal(out, window):
                    match = (row, col, False)
                elif torch.equal(out, window.flip(-1)):
                    match = (row, col, True)
                if match:
                    break
            if match:
                break
        found.append(match)
    return found


def spot_image(size: int = 33) -> torch.Tensor:
    """A black RGB image with one bright 3x3 spot right of the centre (its angle shows the rotation)."""
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    centre = size // 2
    image[:, centre - 1:centre + 2, centre + 9:centre + 12] = 255
    return image


def spot_angles(pixels: torch.Tensor) -> np.ndarray:
    """Angle (degrees, counter-clockwise from 'right') of the bright spot in each image [N, C, H, W]."""
    weight = pixels.float().mean(1)
    size = weight.shape[-1]
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    total = weight.sum((1, 2))
    x = (weight * coords.view(1, 1, -1)).sum((1, 2)) / total
    y = (weight * coords.view(1, -1, 1)).sum((1, 2)) / total
    return np.degrees(np.arctan2(-y.numpy(), x.numpy()))


# ---------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------

def test_course_and_article_presets():
    assert RECIPE_PRESETS == ("course", "article")
    course = {name: data_recipe(name) for name in DATASETS}
    for name, recipe in course.items():
        assert (recipe.mean, recipe.std) == NORMALIZATION[name]
        assert not recipe.vflip and recipe.interpolation == "bilinear"
    assert (course["mnist"].crop_padding, course["mnist"].hflip) == (2, False)  # a mirrored digit is no digit
    assert (course["fashion-mnist"].crop_padding, course["fashion-mnist"].hflip) == (2, True)
    assert (course["cifar10"].crop_padding, course["cifar10"].hflip) == (4, True)
    for name in ("galaxy10", "galaxy10-sdss"):
        assert (course[name].rotation, course[name].hflip, course[name].crop_padding) == (180, True, 0)
    for name in DATASETS:
        article = data_recipe(name, "article")
        channels = len(NORMALIZATION[name][0])
        assert article.mean == (0.5,) * channels and article.std == (0.5,) * channels
        assert article.augments == name.startswith("galaxy")  # only the galaxy article augmented
    assert data_recipe("galaxy10", "article").rotation == 180 and data_recipe("galaxy10", "article").hflip
    with pytest.raises(ValueError, match="preset must be one of"):
        data_recipe("mnist", "keras")
    with pytest.raises(ValueError, match="one value per channel"):
        DataRecipe((0.5,), (0.5, 0.5))


def test_article_transform_is_the_article_preset():
    white = Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8))
    assert torch.allclose(article_transform("cifar10")(white), torch.ones(3, 32, 32))  # (1 - 0.5) / 0.5
    black = Image.new("L", (28, 28))
    assert torch.allclose(article_transform("mnist")(black), -torch.ones(1, 28, 28))
    steps = [type(t).__name__ for t in article_transform("galaxy10", train=True).transforms]
    assert steps == ["RandomRotation", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    test_steps = article_transform("galaxy10", train=False).transforms
    assert [type(t).__name__ for t in test_steps] == ["ToTensor", "Normalize"]


def test_pixel_statistics_are_exact():
    images = noise(50, 3, 9)
    stats = pixel_statistics(images)
    pixels = images.double().div(255).transpose(0, 1).flatten(1)
    assert np.allclose(stats.mean, pixels.mean(1).numpy(), atol=1e-12)
    assert np.allclose(stats.std, pixels.std(1, unbiased=False).numpy(), atol=1e-12)
    assert (stats.height, stats.width) == (9, 9)
    assert pixel_statistics(torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)).std == (1.0,)  # nothing to scale


# ---------------------------------------------------------------------------------------------
# Both loaders give the same normalised tensor for the same image
# ---------------------------------------------------------------------------------------------

def write_pngs(folder: Path, counts: dict, size=(12, 10), seed: int = 0) -> None:
    """Real PNG files of random pixels, ``counts[class]`` per class folder; ``size`` is (width, height)
    or a list of sizes to cycle through."""
    rng = np.random.default_rng(seed)
    sizes = size if isinstance(size, list) else [size]
    k = 0
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            width, height = sizes[k % len(sizes)]
            k += 1
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def first_images_both_ways(name, preset, image_size=None):
    train_loader, _ = fast_loaders(name, batch_size=4, augment=False, preset=preset, image_size=image_size)
    train_loader.shuffle = False  # the first batch is then the first images, as stored
    fast, labels = next(iter(train_loader))
    dataset = get_dataset(name, "train", image_size=image_size,
                          transform=default_transform(name, train=True, augment=False, image_size=image_size,
                                                      preset=preset))
    image, label = dataset[0]
    return fast[0], image, train_loader, (int(labels[0]), label)


@pytest.mark.parametrize("preset", RECIPE_PRESETS)
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "galaxy10"])
def test_same_normalised_image_through_both_loaders(name, preset):
    with cnncourse.quick(True):
        fast, slow, loader, (fast_label, slow_label) = first_images_both_ways(name, preset)
        raw = to_tensors(get_dataset(name, "train"))[0][0].float() / 255
    assert fast.shape == slow.shape and fast_label == slow_label
    assert torch.allclose(fast, slow, atol=1e-5)
    mean, std = (NORMALIZATION[name] if preset == "course" else ((0.5,) * len(fast), (0.5,) * len(fast)))
    assert loader.mean == mean and loader.std == std
    expected = (raw - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    assert torch.allclose(fast, expected, atol=1e-5)


@pytest.mark.parametrize("preset", RECIPE_PRESETS)
@pytest.mark.parametrize("image_size", [None, 8])
def test_same_normalised_image_through_both_loaders_for_an_image_folder(tmp_path, preset, image_size):
    write_pngs(tmp_path, {"cats": 3, "dogs": 6}, size=[(12, 10)] if image_size is None else [(12, 10), (9, 15)])
    fast, slow, loader, (fast_label, slow_label) = first_images_both_ways(tmp_path, preset, image_size)
    assert fast.shape == slow.shape == (3, *((10, 12) if image_size is None else (8, 8)))
    assert fast_label == slow_label
    assert torch.allclose(fast, slow, atol=1e-5)
    train_pixels = to_tensors(get_dataset(tmp_path, "train", image_size=image_size))[0]
    stats = pixel_statistics(train_pixels)
    if preset == "course":  # measured from the training pixels, by the same helper on both paths
        assert loader.mean == stats.mean and loader.std == stats.std
        recipe = data_recipe(tmp_path, image_size=image_size)
        assert (recipe.mean, recipe.std, recipe.hflip) == (stats.mean, stats.std, True)
        assert recipe.crop_padding == max(1, min(train_pixels.shape[-2:]) // 8)
    else:
        assert loader.mean == (0.5,) * 3 and loader.std == (0.5,) * 3


# ---------------------------------------------------------------------------------------------
# Both loaders apply what the recipe says, and only that
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_fast_loaders_and_transforms_read_the_recipe(name):
    recipe = data_recipe(name)
    with cnncourse.quick(True):
        train, test = fast_loaders(name, batch_size=8, augment=True, image_size=24)
    assert (train.crop, train.hflip, train.vflip, train.rotation) == (
        recipe.crop_padding > 0, recipe.hflip, recipe.vflip, recipe.rotation)
    assert not recipe.crop_padding or train.pad == recipe.crop_padding
    assert (test.crop, test.hflip, test.vflip, test.rotation, test.shuffle) == (False, False, False, 0.0, False)
    assert train.shuffle and train.mean == recipe.mean and test.std == recipe.std
    steps = {type(t).__name__: t for t in default_transform(name, train=True, augment=True).transforms}
    assert ("SameSizeRandomCrop" in steps) == (recipe.crop_padding > 0)
    assert ("RandomHorizontalFlip" in steps) == recipe.hflip and "RandomVerticalFlip" not in steps
    assert ("RandomRotation" in steps) == (recipe.rotation > 0)
    if recipe.rotation:
        assert steps["RandomRotation"].degrees == [-180.0, 180.0]
        assert steps["RandomRotation"].interpolation.value == "bilinear"  # as the fast path's grid_sample
    plain = [type(t).__name__ for t in default_transform(name, train=True, augment=False).transforms]
    assert plain == ["ToTensor", "Normalize"]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_dataloader_path_crops_and_flips_as_the_recipe_says(name):
    recipe = data_recipe(name)
    channels, size = (1, 28) if "mnist" in name else (3, 32)
    source = noise(1, channels, size)[0]
    image = Image.fromarray(source.squeeze(0).numpy() if channels == 1 else source.permute(1, 2, 0).numpy())
    transform = default_transform(name, train=True, augment=True)
    torch.manual_seed(0)
    outputs = torch.stack([to_pixels(transform(image), recipe.mean, recipe.std) for _ in range(300)])
    draws = crop_flip_draws(outputs, source, recipe.crop_padding)
    assert None not in draws  # every output is a crop (and maybe a flip) of the image, nothing else
    rows = {row for row, _, _ in draws}
    assert rows == set(range(2 * recipe.crop_padding + 1))  # every offset, not only the centre
    flipped = np.mean([flip for _, _, flip in draws])
    assert 0.4 <= flipped <= 0.6 if recipe.hflip else flipped == 0


def test_fast_path_flips_about_half_the_images():
    images = noise(2000, 3, 6)
    loader = TensorLoader(images, torch.zeros(2000), batch_size=2000, augment="flip", seed=1)
    out = to_pixels(next(iter(loader))[0], loader.mean, loader.std)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0.4 <= mirrored.float().mean().item() <= 0.6


def test_fast_path_crops_at_every_offset():
    images = noise(1500, 2, 7)
    loader = TensorLoader(images, torch.zeros(1500), batch_size=500, augment="crop", pad=2, seed=2)
    out = torch.cat([to_pixels(x, loader.mean, loader.std) for x, _ in loader])
    draws = crop_flip_draws(out, images, 2)
    assert None not in draws and not any(flip for _, _, flip in draws)
    counts = np.zeros((5, 5))
    for row, col, _ in draws:
        counts[row, col] += 1
    assert (counts > 0).all() and counts[2, 2] < 0.2 * len(draws)  # not always centred


def test_vertical_flip_of_a_recipe_on_both_paths():
    recipe = DataRecipe((0.0,), (1.0,), vflip=True)
    images = noise(1000, 1, 5)
    loader = TensorLoader(images, torch.zeros(1000), batch_size=1000, recipe=recipe, augment=True)
    out = to_pixels(next(iter(loader))[0], recipe.mean, recipe.std)
    down = (out == images.flip(-2)).flatten(1).all(1)
    assert bool(((out == images).flatten(1).all(1) | down).all()) and 0.4 <= down.float().mean().item() <= 0.6
    from cnncourse.data import recipe_transform
    transform = recipe_transform(recipe, train=True, augment=True)
    torch.manual_seed(0)
    image = Image.fromarray(images[0, 0].numpy())
    flips = [torch.equal(to_pixels(transform(image), recipe.mean, recipe.std), images[0].flip(-2)) for _ in range(400)]
    assert 0.4 <= np.mean(flips) <= 0.6


def _assert_uniform_rotation(angles: np.ndarray) -> None:
    counts, _ = np.histogram(angles, bins=8, range=(-180, 180))
    assert counts.min() > 0.5 * len(angles) / 8, counts  # every direction, roughly equally often


def test_galaxy_rotation_on_the_fast_path_turns_by_any_angle():
    spot = spot_image()
    recipe = data_recipe("galaxy10")
    loader = TensorLoader(spot.expand(800, -1, -1, -1).contiguous(), torch.zeros(800), batch_size=800,
                          recipe=recipe, augment=True, seed=3)
    assert loader.augment == "galaxy"
    out = loader.unnormalize(next(iter(loader))[0])
    _assert_uniform_rotation(spot_angles(out))
    unrotated = TensorLoader(spot.expand(800, -1, -1, -1).contiguous(), torch.zeros(800), batch_size=800,
                             recipe=recipe, augment="flip", seed=3)
    assert set(np.abs(np.round(spot_angles(unrotated.unnormalize(next(iter(unrotated))[0]))))) == {0.0, 180.0}


def test_galaxy_rotation_on_the_dataloader_path_turns_by_any_angle():
    spot = Image.fromarray(spot_image().permute(1, 2, 0).numpy())
    transform = default_transform("galaxy10", train=True, augment=True)
    recipe = data_recipe("galaxy10")
    torch.manual_seed(0)
    out = torch.stack([transform(spot) for _ in range(400)])
    _assert_uniform_rotation(spot_angles(to_pixels(out, recipe.mean, recipe.std)))


# ---------------------------------------------------------------------------------------------
# Shuffling
# ---------------------------------------------------------------------------------------------

def epoch_order(loader) -> list:
    return torch.cat([y for _, y in loader]).tolist()


def test_fast_path_shuffles_every_epoch_reproducibly():
    images, labels = noise(100, 1, 4), torch.arange(100)
    loader = TensorLoader(images, labels, batch_size=32, shuffle=True, seed=5)
    first, second = epoch_order(loader), epoch_order(loader)
    assert sorted(first) == list(range(100)) and first != list(range(100)) and first != second
    loader.set_epoch(0)
    assert epoch_order(loader) == first
    assert epoch_order(TensorLoader(images, labels, batch_size=32, shuffle=True, seed=5)) == first
    assert epoch_order(TensorLoader(images, labels, batch_size=32, shuffle=True, seed=6)) != first
    assert epoch_order(TensorLoader(images, labels, batch_size=32)) == list(range(100))


def test_augmentation_follows_the_image_not_its_position():
    images, labels = noise(64, 3, 8), torch.arange(64)
    shuffled = TensorLoader(images, labels, batch_size=64, shuffle=True, augment="crop-flip", seed=9)
    in_order = TensorLoader(images, labels, batch_size=64, augment="crop-flip", seed=9)
    x, y = next(iter(shuffled))
    assert torch.equal(x[y.argsort()], next(iter(in_order))[0])
    assert not torch.equal(next(iter(shuffled))[0][0], x[0])  # the next epoch draws again


def test_dataloader_path_shuffles_every_epoch_reproducibly():
    dataset = torch.utils.data.TensorDataset(torch.zeros(100, 1), torch.arange(100))
    loader = make_loader(dataset, batch_size=32, shuffle=True, num_workers=0, seed=5)
    first, second = epoch_order(loader), epoch_order(loader)
    assert sorted(first) == list(range(100)) and first != list(range(100)) and first != second
    assert epoch_order(make_loader(dataset, batch_size=32, shuffle=True, num_workers=0, seed=5)) == first


# ---------------------------------------------------------------------------------------------
# Several processes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_split_each_training_epoch(world_size):
    n = 100
    images, labels = noise(n, 3, 8), torch.arange(n)
    kwargs = dict(batch_size=16, shuffle=True, augment="crop-flip", seed=4)
    single = TensorLoader(images, labels, **kwargs)
    single.set_epoch(2)
    whole_x, whole_y = (torch.cat(parts) for parts in zip(*single))
    by_image = dict(zip(whole_y.tolist(), whole_x))
    shards = []
    for rank in range(world_size):
        loader = TensorLoader(images, labels, rank=rank, world_size=world_size, **kwargs)
        loader.set_epoch(2)
        x, y = (torch.cat(parts) for parts in zip(*loader))
        assert len(y) == loader.shard_size == math.ceil(n / world_size)
        assert len(loader) == math.ceil(loader.shard_size / 16)
        for image, label in zip(x, y.tolist()):  # the same crop and flip as in the single-process epoch
            assert torch.equal(image, by_image[label])
        shards.append(y.tolist())
    total = sum(len(s) for s in shards)
    assert total == math.ceil(n / world_size) * world_size
    assert set().union(*shards) == set(range(n))
    # positions are disjoint: only the wrap-around padding repeats images, as DistributedSampler does
    assert sum(len(set(a) & set(b)) for i, a in enumerate(shards) for b in shards[i + 1:]) == total - n
    padded = whole_y.tolist() + whole_y.tolist()[:total - n]
    assert sorted(sum(shards, [])) == sorted(padded)


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_see_every_test_image_once(world_size):
    images, labels = noise(100, 1, 4), torch.arange(100)
    shards = []
    for rank in range(world_size):
        loader = TensorLoader(images, labels, batch_size=7, rank=rank, world_size=world_size)
        shards.append(epoch_order(loader))
        assert len(shards[-1]) == loader.shard_size
    assert sorted(sum(shards, [])) == list(range(100))


def test_shard_settings_are_checked_and_passed_through():
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(noise(4, 1, 4), torch.zeros(4), rank=2, world_size=2)
    loader = TensorLoader(noise(10, 1, 4), torch.arange(10), batch_size=3)
    loader.rank, loader.world_size = 1, 2  # what fit does under torchrun
    assert epoch_order(loader) == [1, 3, 5, 7, 9] and len(loader) == 2
    with cnncourse.quick(True):
        train, test = fast_loaders("mnist", batch_size=16, rank=1, world_size=3)
    assert (train.rank, train.world_size, test.rank, test.world_size) == (1, 3, 1, 3)
    assert test.shard_size == len(range(1, test.num_samples, 3))


# ---------------------------------------------------------------------------------------------
# The module on its own, and from_dataset
# ---------------------------------------------------------------------------------------------

def test_fastdata_works_copied_alone_with_torch_only(tmp_path, monkeypatch):
    shutil.copy(FASTDATA, tmp_path / "fastdata_alone.py")
    for module in [m for m in sys.modules if m == "cnncourse" or m.startswith("cnncourse.")]:
        monkeypatch.setitem(sys.modules, module, None)  # any import of cnncourse now fails
    spec = importlib.util.spec_from_file_location("fastdata_alone", tmp_path / "fastdata_alone.py")
    alone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alone)
    loader = alone.TensorLoader(noise(10, 1, 6), torch.arange(10) % 2, batch_size=4, shuffle=True,
                                augment="crop-flip", mean=(0.5,), std=(0.25,))
    assert sorted(epoch_order(loader)) == sorted((torch.arange(10) % 2).tolist())

    class Pixels:
        classes = ["a", "b"]

        def to_tensors(self, image_size=None):
            return noise(6, 3, 5), torch.tensor([0, 1, 0, 1, 0, 1])

    assert alone.TensorLoader.from_dataset(Pixels(), batch_size=6).classes == ["a", "b"]
    with pytest.raises(TypeError, match="to_tensors"):
        alone.TensorLoader.from_dataset(torch.utils.data.TensorDataset(noise(2, 1, 4)))
    with pytest.raises(ImportError, match="needs the cnncourse package"):
        alone.fast_loaders("mnist")


def test_from_dataset_reads_a_course_data_set_without_touching_its_transform():
    with cnncourse.quick(True):
        transform = default_transform("cifar10")
        dataset = get_dataset("cifar10", "test", transform=transform)
        loader = TensorLoader.from_dataset(dataset, batch_size=10, recipe=data_recipe("cifar10"))
        assert dataset.transform is transform and loader.classes == dataset.classes
        assert torch.allclose(next(iter(loader))[0][0], dataset[0][0], atol=1e-5)


def test_tensor_loader_rejects_labels_outside_the_classes():
    with pytest.raises(ValueError, match=r"0 to 1 .*\[2\]"):
        TensorLoader(noise(3, 1, 4), torch.tensor([0, 1, 2]), classes=["a", "b"])
    with pytest.raises(ValueError, match="0 or more"):
        TensorLoader(noise(2, 1, 4), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="no recipe"):
        TensorLoader(noise(2, 1, 4), torch.zeros(2), augment=True)


# --------------------------------------------------------------------------- random erasing
def test_erase_boxes_keep_torchvisions_area_and_ratio_and_the_probability():
    from cnncourse.fastdata import erase_boxes
    boxes = erase_boxes(20000, (28, 28), 0.5, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    chosen = h > 0
    assert 0.48 < chosen.float().mean() < 0.52
    area = (h[chosen] * w[chosen]).float() / 28 ** 2
    assert area.min() >= 0.01 and area.max() <= 0.36 and 0.15 < area.mean() < 0.20   # uniform 0.02-0.33: 0.175
    assert ((top + h) <= 28).all() and ((left + w) <= 28).all() and (top >= 0).all() and (left >= 0).all()
    assert torch.equal(boxes, erase_boxes(20000, (28, 28), 0.5, torch.Generator().manual_seed(0)))


def test_erase_zeroes_exactly_each_images_rectangle():
    from cnncourse.fastdata import erase
    x = torch.randn(3, 2, 6, 7) + 5.0                      # no pixel is 0 before
    boxes = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 5], [5, 6, 1, 1]])   # the second image: height 0, left alone
    out = erase(x, boxes)
    expected = x.clone()
    expected[0, :, 1:4, 2:6] = 0.0
    expected[2, :, 5:6, 6:7] = 0.0
    assert torch.equal(out, expected)


def test_a_loader_with_erasing_erases_about_that_share_of_its_images_and_resumes_exactly():
    images = torch.full((400, 1, 16, 16), 200, dtype=torch.uint8)
    labels = torch.zeros(400, dtype=torch.long)
    loader = TensorLoader(images, labels, batch_size=400, mean=(0.0,), std=(1.0,), erase=0.5, seed=3)
    x, _ = next(iter(loader))
    erased = (x == 0).flatten(1).any(dim=1)                 # 0 is the mean colour after normalisation
    assert 0.4 < erased.float().mean() < 0.6
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], x)            # the same epoch, the same rectangles
    plain = TensorLoader(images, labels, batch_size=400, mean=(0.0,), std=(1.0,), seed=3)
    assert not (next(iter(plain))[0] == 0).any()
    with pytest.raises(ValueError, match="0 to 1"):
        TensorLoader(images, labels, erase=1.5)


def test_the_train_command_passes_random_erasing_to_the_training_loader_only(monkeypatch):
    from cnncourse.runconfig import TrainConfig
    with pytest.raises(ValueError, match="--random-erasing is a probability"):
        TrainConfig(model="lenet", data="mnist", random_erasing=2.0).validate()
    with pytest.raises(ValueError, match="needs --loader fast"):
        TrainConfig(model="lenet", data="mnist", random_erasing=0.5, loader="torch").validate()
    assert "--random-erasing 0.5" in TrainConfig(model="lenet", data="mnist", random_erasing=0.5).command("out")
    cnncourse.set_quick_mode(True)
    train, test = fast_loaders("mnist", batch_size=32, erase=0.5)
    assert train.erase == 0.5 and test.erase == 0.0
    from cnncourse.cli_train import _build_data
    config = TrainConfig(model="lenet", data="mnist", random_erasing=0.5, val_fraction=0.1, quick=True)
    train, val, test, _, _ = _build_data(config, torch.device("cpu"), seed=0)
    assert (train.erase, val.erase, test.erase) == (0.5, 0.0, 0.0)
