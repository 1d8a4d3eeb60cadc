"""Lesson 7's transfer experiment (cnncourse.transfer): the class split and the few-shot draw against
direct counts, the frozen backbone staying frozen, fine-tuning moving it, and the whole experiment on
the shipped CIFAR-10 sample learning above chance."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import cnncourse.config as config
from cnncourse import cifar_speedrun as cs
from cnncourse import transfer as tr

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = dict(widths=(32, 64, 64), batch_size=128)   # the lesson's sample scale


@pytest.fixture(scope="module")
def sample():
    """The shipped 2,000 + 200 CIFAR-10 sample."""
    config.set_quick_mode(True)
    try:
        return cs.cifar_tensors()
    finally:
        config.set_quick_mode(None)


def test_select_classes_keeps_those_classes_renumbered_in_the_order_given():
    x = torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 2, 2)
    y = torch.tensor([0, 5, 9, 5, 2, 7, 9, 1, 5, 7])
    xs, ys = tr.select_classes(x, y, (9, 5))
    assert ys.tolist() == [1, 0, 1, 0, 1]
    assert xs[:, 0, 0, 0].tolist() == [1, 2, 3, 6, 8]


def test_few_per_class_draws_exactly_that_many_of_each_class_by_seed():
    y = torch.arange(5).repeat_interleave(30)
    x = torch.arange(150).view(150, 1, 1, 1).float()
    xs, ys = tr.few_per_class(x, y, 7, seed=1)
    assert torch.bincount(ys).tolist() == [7] * 5
    assert torch.equal(y[xs[:, 0, 0, 0].long()], ys)                # each image keeps its label
    assert len(set(xs[:, 0, 0, 0].tolist())) == 35                  # no image twice
    again, _ = tr.few_per_class(x, y, 7, seed=1)
    other, _ = tr.few_per_class(x, y, 7, seed=2)
    assert torch.equal(xs, again) and not torch.equal(xs, other)
    with pytest.raises(ValueError, match="fewer than per_class=31"):
        tr.few_per_class(x, y, 31, seed=0)


def _trained_copy(freeze, seed=0):
    torch.manual_seed(0)
    base = cs.airbench_net((8, 16, 16))
    model = tr.with_new_head(base, 5, freeze_backbone=freeze, seed=seed)
    return base, model


def test_with_new_head_replaces_the_classifier_and_freezes_only_with_freeze_backbone():
    base, model = _trained_copy(freeze=True)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert base(torch.zeros(2, 3, 32, 32)).shape == (2, 10)                      # the original is untouched
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == [f"{tr._head(model)}.weight"]
    _, tuned = _trained_copy(freeze=False)
    assert sum(p.requires_grad for p in tuned.parameters()) == sum(p.requires_grad for p in base.parameters())
    assert torch.equal(tuned[2].weight, base[2].weight)                          # the backbone's weights kept
    _, other = _trained_copy(freeze=False, seed=1)
    assert not torch.equal(tuned[-2].weight, other[-2].weight)                   # the seed draws the new head


@pytest.mark.parametrize("freeze", [True, False])
def test_a_frozen_backbone_stays_as_it_was_and_fine_tuning_moves_it(freeze):
    _, model = _trained_copy(freeze)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, 32, 32, generator=g), torch.randint(0, 5, (40,), generator=g)
    tr.train_few_shot(model, x, y, tr.FewShotRecipe(epochs=2, batch_size=20), seed=0)
    head = str(tr._head(model))
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert f"{head}.weight" in moved
    backbone_moved = {k for k in moved if not k.startswith(head + ".")}
    if freeze:
        assert backbone_moved == set()              # weights and BatchNorm's running statistics alike
    else:
        assert any(k.endswith("running_mean") for k in backbone_moved) and "2.weight" in backbone_moved
    assert not model.training


def test_the_experiment_on_the_shipped_sample_learns_and_records(sample, tmp_path, monkeypatch):
    result = tr.transfer_experiment(tensors=sample, seeds=(0, 1), per_class=10, pretrain_epochs=8,
                                    recipe=tr.FewShotRecipe(epochs=10), pretrain_changes=SMALL)
    assert result["num_test_images"] == int(torch.isin(sample["test"][1], torch.tensor(tr.SECOND_CLASSES)).sum())
    assert result["first_network"]["num_train_images"] == int(
        torch.isin(sample["train"][1], torch.tensor(tr.FIRST_CLASSES)).sum())
    assert set(result["arms"]) == set(tr.ARMS)
    for arm in tr.ARMS:
        assert len(result["arms"][arm]["accuracy"]) == 2
    best = max(sum(result["arms"][arm]["accuracy"]) / 2 for arm in tr.ARMS)
    assert best > 0.3                                 # five classes: chance is 0.2


def test_the_command_refuses_to_overwrite_a_record(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({}))
    with pytest.raises(SystemExit):
        tr.main(["--out", str(tmp_path)])
    assert json.loads((tmp_path / "metrics.json").read_text()) == {}
