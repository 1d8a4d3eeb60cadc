"""cnncourse.shapes: shapes traced by hooks against the output-size formula, MACs against a count
written out layer by layer from each architecture, and the errors a learner meets first."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnncourse
from cnncourse.models import lenet, resnet18, resnet50_keras_article
from cnncourse.shapes import count_macs, trace_shapes


def side(n, kernel, padding=0, stride=1):
    """n' = floor((n + 2p - k) / s) + 1, written here again so that the test does not trust the package."""
    return (n + 2 * padding - kernel) // stride + 1


def conv(h, w, c_in, c_out, k):
    """MACs of a k x k convolution producing c_out maps of h x w from c_in channels."""
    return h * w * c_out * c_in * k * k


def test_the_package_exports_them():
    assert cnncourse.trace_shapes is trace_shapes and cnncourse.count_macs is count_macs


def test_lenet_shapes_by_hand():
    n1 = side(32, 5)                  # 28 after the first 5x5
    p1 = side(n1, 2, stride=2)        # 14 after the pool
    n2 = side(p1, 5)                  # 10
    shapes = trace_shapes(lenet(), ["conv1", "bn1", "conv2", "fc1", "fc2", "fc3"], (3, 32, 32))
    assert shapes == {"conv1": (6, n1, n1), "bn1": (6, n1, n1), "conv2": (16, n2, n2),
                      "fc1": (120,), "fc2": (84,), "fc3": (10,)}
    assert list(shapes) == ["conv1", "bn1", "conv2", "fc1", "fc2", "fc3"]   # in the order asked for
    # the pool runs twice in LeNet's forward: the last call (16 x 5 x 5) is reported
    assert trace_shapes(lenet(), "pool", (3, 32, 32)) == {"pool": (16, side(n2, 2, stride=2), side(n2, 2, stride=2))}


def test_resnet18_shapes_by_hand_on_a_non_square_input():
    h, w = 96, 64
    sizes = []
    for n in (h, w):
        n = side(side(n, 7, 3, 2), 3, 1, 2)                      # the stem: 7x7/2 conv, 3x3/2 max-pool
        stages = [n]
        for _ in range(3):                                       # stride 2 on the 3x3 of each later stage
            stages.append(side(stages[-1], 3, 1, 2))
        sizes.append(stages)
    names = ["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    expected = {"maxpool": (64, sizes[0][0], sizes[1][0])}
    for i, channels in enumerate((64, 128, 256, 512)):
        expected[f"layer{i + 1}"] = (channels, sizes[0][i], sizes[1][i])
    expected.update(avgpool=(512, 1, 1), fc=(7,))
    assert trace_shapes(resnet18(num_classes=7), names, (3, h, w)) == expected
    assert expected["layer4"] == (512, 3, 2)


def test_dotted_names_and_the_meta_device():
    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None)
    shapes = trace_shapes(model, ["layer1.0.conv1", "layer2.0.downsample.0", "layer4"], (3, 224, 224))
    assert shapes == {"layer1.0.conv1": (64, 56, 56), "layer2.0.downsample.0": (512, 28, 28), "layer4": (2048, 7, 7)}


def test_the_train_eval_mode_is_restored_and_no_hook_is_left():
    model = lenet()
    for training in (True, False):
        model.train(training)
        trace_shapes(model, ["conv1"], (3, 32, 32))
        count_macs(model, (3, 32, 32))
        assert model.training is training
    assert all(not m._forward_hooks for m in model.modules())


def test_conv_and_dense_macs_by_formula():
    layer = nn.Conv2d(5, 7, kernel_size=3, stride=2, padding=1)
    n = side(20, 3, 1, 2)
    assert count_macs(layer, (5, 20, 20)) == conv(n, n, 5, 7, 3)
    assert count_macs(nn.Conv2d(8, 8, 3, groups=4), (8, 10, 10)) == conv(8, 8, 8 // 4, 8, 3)   # groups
    assert count_macs(nn.Conv2d(4, 6, (1, 5)), (4, 9, 9)) == 9 * 5 * 6 * 4 * 1 * 5                 # non-square kernel
    assert count_macs(nn.Conv1d(3, 4, 5), (3, 20)) == 16 * 4 * 3 * 5
    assert count_macs(nn.Linear(30, 12), (30,)) == 30 * 12
    assert count_macs(nn.Linear(30, 12), (6, 30)) == 6 * 30 * 12   # applied to 6 vectors
    assert count_macs(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), (3, 8, 8)) == 0


def test_lenet_macs_by_formula():
    expected = (conv(28, 28, 3, 6, 5) + conv(10, 10, 6, 16, 5)   # the two 5x5 convolutions
                + 16 * 5 * 5 * 120 + 120 * 84 + 84 * 10)          # the three dense layers
    assert count_macs(lenet(), (3, 32, 32)) == expected == 651_720


def test_resnet18_macs_by_formula():
    expected = conv(112, 112, 3, 64, 7) + 4 * conv(56, 56, 64, 64, 3)     # stem, stage 1 (4 convolutions)
    for c_in, c_out, n in ((64, 128, 28), (128, 256, 14), (256, 512, 7)):  # stages 2-4
        expected += conv(n, n, c_in, c_out, 3) + 3 * conv(n, n, c_out, c_out, 3) + conv(n, n, c_in, c_out, 1)
    expected += 512 * 1000
    with torch.device("meta"):
        ours, theirs = resnet18(), torchvision.models.resnet18(weights=None)
    assert count_macs(ours, (3, 224, 224)) == count_macs(theirs, (3, 224, 224)) == expected == 1_814_073_344


def test_resnet50_at_224_is_4_1_gmacs():
    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None)
    macs = count_macs(model, (3, 224, 224))
    published = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9   # 4.089 "GFLOPS" (MACs)
    assert macs == pytest.approx(published, rel=1e-3)
    assert round(macs / 1e9, 1) == 4.1


def test_the_keras_article_network_is_cheap_on_28_pixels():
    with torch.device("meta"):
        model = resnet50_keras_article()
    assert trace_shapes(model, ["layer4"], (1, 28, 28)) == {"layer4": (2048, 1, 1)}
    assert 70e6 < count_macs(model, (1, 28, 28)) < 80e6


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        trace_shapes(resnet18(), ["layer5"], (3, 64, 64))
    message = str(error.value)
    assert "'layer5'" in message and "Did you mean" in message and "'layer4'" in message
    assert "conv1, maxpool, bn1, relu, layer1, layer2, layer3, layer4, avgpool, fc" in message   # definition order


@pytest.mark.parametrize("input_size, error", [(28, TypeError), ((), ValueError), ((1, 0, 28), ValueError),
                                               ((1, 28.0, 28), ValueError), ("1x28x28", TypeError)])
def test_bad_input_sizes(input_size, error):
    with pytest.raises(error, match="input_size"):
        trace_shapes(lenet(in_channels=1, image_size=28), ["conv1"], input_size)
    with pytest.raises(error, match="input_size"):
        count_macs(lenet(in_channels=1, image_size=28), input_size)


def test_bad_models_and_names():
    with pytest.raises(TypeError, match="nn.Module"):
        count_macs(lambda x: x, (3, 8, 8))
    with pytest.raises(TypeError, match="module names are strings"):
        trace_shapes(lenet(), [0], (3, 32, 32))


def test_a_module_the_forward_never_calls():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.unused = nn.Conv2d(1, 2, 3), nn.Linear(2, 2)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="never called 'unused'"):
        trace_shapes(Net(), ["conv", "unused"], (1, 8, 8))
