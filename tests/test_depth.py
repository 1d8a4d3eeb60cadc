"""Lesson 3's residual-learning study (cnncourse.depth): the four networks against the paper's sizes,
the per-layer gradient norms against autograd directly, and a short study on the shipped sample."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnncourse.config as config
from cnncourse import depth
from cnncourse.models import get_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name, registered", [("plain-20", "plain20"), ("plain-56", "plain56"),
                                              ("ResNet-20", "resnet20"), ("ResNet-56", "resnet56")])
def test_at_the_papers_width_the_networks_are_the_registered_ones(name, registered):
    ours = depth.build(name, width=16, in_channels=3)
    theirs = get_model(registered, num_classes=10, in_channels=3)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    narrow = depth.build(name, width=8)
    assert narrow(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_gradient_norms_are_one_per_3x3_convolution_and_match_autograd():
    torch.manual_seed(0)
    model = depth.build("plain-20", width=4)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    norms = depth.layer_gradient_norms(model, x, y)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(norms) == len(convs) == 19
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), [c.weight for c in convs])
    assert norms == pytest.approx([float(g.norm()) for g in grads], rel=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_the_study_on_the_shipped_sample_trains_every_network_on_the_same_batches(tmp_path):
    config.set_quick_mode(True)
    result = depth.depth_study(subset=None, epochs=2, batch_size=64, networks=("plain-20", "ResNet-20"))
    steps = 2 * (result["num_train_images"] // 64)            # full batches only
    for name, run in result["networks"].items():
        assert len(run["step_losses"]) == steps and 0.0 <= run["val_accuracy"] <= 1.0
        assert len(run["gradient_norms"]) == 19
    losses = result["networks"]["ResNet-20"]["step_losses"]
    assert sum(losses[-3:]) < sum(losses[:3])
    again = depth.depth_study(subset=None, epochs=2, batch_size=64, networks=("ResNet-20",))
    assert again["networks"]["ResNet-20"]["step_losses"] == result["networks"]["ResNet-20"]["step_losses"]


def test_the_command_refuses_to_overwrite_a_record(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({}))
    with pytest.raises(SystemExit):
        depth.main(["--out", str(tmp_path)])
