"""The validation hold-out and training subsets: disjoint, stratified, seeded, in every layer
(get_dataset, fast_loaders, fit, the command line); and the models of the controlled experiments."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from cnncourse.cli import main
from cnncourse.config import set_quick_mode
from cnncourse.data import get_dataset, to_tensors
from cnncourse.fastdata import TensorLoader, fast_loaders
from cnncourse.models import get_model
from cnncourse.models.resnet import NoShortcutBlock
from cnncourse.train import fit
from cnncourse.utils import count_parameters


def _pixels(dataset):
    images, labels = to_tensors(dataset)
    return {bytes(image.numpy().tobytes()) for image in images}, labels


@pytest.fixture
def quick():
    set_quick_mode(True)


def test_val_and_train_are_disjoint_stratified_and_cover_the_training_split(quick):
    full = get_dataset("mnist", "train")
    train = get_dataset("mnist", "train", val_fraction=0.2, seed=3)
    val = get_dataset("mnist", "val", val_fraction=0.2, seed=3)
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted(train.indices + val.indices) == list(range(len(full)))
    # the same pixels, not only different positions
    assert _pixels(train)[0].isdisjoint(_pixels(val)[0])
    counts, held = Counter(full.targets), Counter(val.targets)
    for label, n in counts.items():
        assert held[label] == min(max(1, round(0.2 * n)), n - 1)
    assert val.classes == full.classes and "validation hold-out" in val.title


def test_the_hold_out_depends_on_the_seed_only(quick):
    first = get_dataset("mnist", "val", val_fraction=0.1, seed=0).indices
    assert get_dataset("mnist", "val", val_fraction=0.1, seed=0).indices == first
    assert get_dataset("mnist", "val", val_fraction=0.1, seed=1).indices != first


def test_a_subset_is_stratified_and_drawn_from_the_training_part_only(quick):
    val = get_dataset("fashion-mnist", "val", val_fraction=0.1)
    part = get_dataset("fashion-mnist", "train", val_fraction=0.1, subset=100)
    assert abs(len(part) - 100) <= 10 and set(part.indices).isdisjoint(val.indices)
    assert set(Counter(part.targets)) == set(range(10))
    assert max(Counter(part.targets).values()) - min(Counter(part.targets).values()) <= 3


@pytest.mark.parametrize("call, message", [
    (dict(split="val"), "needs val_fraction > 0"),
    (dict(split="val", val_fraction=1.5), "between 0 and 1"),
    (dict(split="val", val_fraction=0.1, subset=50), "applies to the 'train' split only"),
    (dict(split="train", subset=3), "at least one image per class"),
])
def test_bad_hold_out_arguments_say_what_to_pass(quick, call, message):
    with pytest.raises(ValueError, match=message):
        get_dataset("mnist", **call)


def test_fast_loaders_give_train_val_test_with_the_same_images_as_get_dataset(quick):
    train, val, test = fast_loaders("mnist", batch_size=32, val_fraction=0.2, seed=3)
    assert (train.num_samples, val.num_samples, test.num_samples) == (
        len(get_dataset("mnist", "train", val_fraction=0.2, seed=3)),
        len(get_dataset("mnist", "val", val_fraction=0.2, seed=3)), len(get_dataset("mnist", "test")))
    expected, _ = to_tensors(get_dataset("mnist", "val", val_fraction=0.2, seed=3))
    assert torch.equal(val.images, expected)
    assert len(fast_loaders("mnist", batch_size=32)) == 2


def _tiny(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorLoader(x, y, batch_size=16, shuffle=True, seed=seed, mean=(0.5,), std=(0.25,))


def test_fit_with_val_data_evaluates_val_every_epoch_and_test_once():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))
    history = fit(model, _tiny(), _tiny(32, 1), epochs=3, val_data=_tiny(32, 2), progress=False, device="cpu")
    assert all(v is not None for v in history.val_acc)
    assert history.test_acc[:2] == [None, None] and history.test_acc[2] is not None
    assert history.predictions is not None and len(history.predictions.labels) == 32
    every = fit(model, _tiny(), _tiny(32, 1), epochs=2, val_data=_tiny(32, 2), test_every_epoch=True,
                progress=False, device="cpu")
    assert None not in every.test_acc
    without = fit(model, _tiny(), _tiny(32, 1), epochs=2, progress=False, device="cpu")
    assert None not in without.test_acc and without.val_acc == [None, None]


def test_cli_val_fraction_and_train_subset(tmp_path, no_network, capsys):
    out = tmp_path / "run"
    assert main(["train", "-m", "lenet", "-d", "cifar10", "--quick", "-e", "2", "--val-fraction", "0.2",
                 "--train-subset", "100", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_val_images"] == len(get_dataset("cifar10", "val", val_fraction=0.2)) and abs(metrics["num_train_images"] - 100) <= 10
    assert [r["test_acc"] is None for r in metrics["history"]] == [True, False]
    assert metrics["best_val_epoch"] in (1, 2) and metrics["val_accuracy"] == metrics["history"][-1]["val_acc"]
    assert "validation accuracy" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert "--val-fraction 0.2" in run["command"] and "--train-subset 100" in run["command"]


def test_cli_refuses_a_val_fraction_outside_0_1(tmp_path, capsys):
    assert main(["train", "-m", "lenet", "-d", "cifar10", "--quick", "--val-fraction", "1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--val-fraction must be in [0, 1)" in capsys.readouterr().err


def test_plain_networks_are_resnets_without_shortcuts():
    plain, residual = get_model("plain20"), get_model("resnet20")
    # the same convolutions and BatchNorms; the residual one adds two 1x1 projections (+ their BatchNorms)
    assert count_parameters(residual) - count_parameters(plain) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_parameters(get_model("plain56")) == 853_018
    assert sum(isinstance(m, NoShortcutBlock) for m in get_model("plain56").modules()) == 27
    # without shortcuts a block is F(x) alone: zeroing its last BatchNorm zeroes its output
    block = NoShortcutBlock(16, 16).eval()
    torch.nn.init.zeros_(block.bn2.weight)
    torch.nn.init.zeros_(block.bn2.bias)
    assert torch.count_nonzero(block(torch.randn(2, 16, 8, 8))) == 0
    with pytest.raises(ValueError, match="takes no downsample projection"):
        NoShortcutBlock(16, 32, 2, downsample=torch.nn.Identity())


def test_lenet_nobn_is_lenet_without_its_batchnorms():
    plain, normed = get_model("lenet_nobn"), get_model("lenet")
    assert count_parameters(normed) - count_parameters(plain) == 2 * (6 + 16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    normed_state = {k: v for k, v in normed.state_dict().items() if not k.startswith("bn")}
    plain.load_state_dict(normed_state)  # every other weight has the same name and shape
    np.testing.assert_equal(sorted(plain.state_dict()), sorted(normed_state))


def test_cli_test_every_epoch_evaluates_the_test_set_after_each_epoch(tmp_path, no_network):
    out = tmp_path / "run"
    assert main(["train", "-m", "lenet", "-d", "cifar10", "--quick", "-e", "2", "--val-fraction", "0.2",
                 "--train-subset", "100", "--test-every-epoch", "--out", str(out), "--no-progress"]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert all(r["test_acc"] is not None and r["val_acc"] is not None for r in history)


def test_fast_loaders_subset_keeps_about_that_many_training_images_only(quick):
    train, test = fast_loaders("cifar10", batch_size=32, subset=300)
    assert abs(train.num_samples - 300) <= 10 and test.num_samples == len(get_dataset("cifar10", "test"))
    assert torch.equal(train.images, to_tensors(get_dataset("cifar10", "train", subset=300))[0])
