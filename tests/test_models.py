"""Models: output shapes, finite outputs and gradients, exact parameter counts (against the
articles' numbers and torchvision), input checks, the registry, and standalone model files."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import cnncourse.models as models
from cnncourse.models import (MODELS, BasicBlock, Bottleneck, LeNet, get_model, min_input_size, resnet18,
                              resnet50, vgg16)

MODEL_DIR = Path(models.__file__).parent


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_running_stats(model: nn.Module) -> int:
    return sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))


def on_meta(name: str, **kwargs) -> nn.Module:
    """Build a model without allocating or initialising its weights: enough for counts and input checks."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- parameter counts -------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, expected", [
    ("lenet", dict(num_classes=10, in_channels=3), 62_050),
    ("resnet18", dict(num_classes=1000), 11_689_512),
    ("resnet34", dict(num_classes=1000), 21_797_672),
    ("resnet50", dict(num_classes=1000), 25_557_032),
    ("resnet50", dict(num_classes=10), 23_528_522),
    ("vgg16", dict(num_classes=1000), 138_357_544),
    ("vgg16", dict(num_classes=10), 134_301_514),
    ("resnet50_keras_article", dict(num_classes=10, in_channels=1), 26_267_778),
    ("resnet50_galaxy_article", dict(num_classes=10, in_channels=3), 23_547_402),
])
def test_parameter_counts_match_the_articles(name, kwargs, expected):
    assert n_params(on_meta(name, **kwargs)) == expected


def test_lenet_per_layer_counts_match_the_article_summary():
    counts = [sum(p.numel() for p in m.parameters(recurse=False)) for m in LeNet().modules()]
    assert [c for c in counts if c] == [456, 12, 2_416, 32, 48_120, 10_164, 850]


def test_keras_article_batchnorm_statistics_match_keras():
    model = on_meta("resnet50_keras_article", num_classes=10, in_channels=1)
    assert n_running_stats(model) == 45_440
    assert n_params(model) + n_running_stats(model) == 26_313_218  # Keras's "Total params"


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "vgg11", "vgg13", "vgg16", "vgg19", "vgg16_bn"])
@pytest.mark.parametrize("num_classes", [1000, 10])
def test_same_parameters_and_state_dict_layout_as_torchvision(name, num_classes):
    with torch.device("meta"):
        ours = get_model(name, num_classes=num_classes)
        theirs = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    assert n_params(ours) == n_params(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("builder", [resnet18, resnet50])
def test_torchvision_weights_load_and_give_the_same_outputs(builder):
    theirs = getattr(torchvision.models, builder.__name__)(weights=None, num_classes=7).eval()
    ours = builder(num_classes=7).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_cifar_resnets_follow_depth_6n_plus_2():
    for depth, blocks in [(20, 3), (32, 5), (56, 9)]:
        model = on_meta(f"resnet{depth}")
        assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [blocks] * 3
        weighted = [m for m in model.modules()
                    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))]
        assert len(weighted) == depth  # the depth counts 3x3 convs and the dense layer, not projections
    assert n_params(on_meta("resnet20")) == 272_474
    with pytest.raises(ValueError, match="6n"):
        models.cifar_resnet(depth=21)


# --- forward shapes, finite outputs and gradients ----------------------------------------------

FORWARD_CASES = [
    ("lenet", {}, (3, 32, 32)),
    ("lenet", dict(in_channels=1, image_size=28), (1, 28, 28)),
    ("resnet18", dict(in_channels=1, small_input=True), (1, 28, 28)),
    ("resnet34", dict(small_input=True), (3, 32, 32)),
    ("resnet50", dict(in_channels=1, small_input=True), (1, 28, 28)),
    ("resnet18", {}, (3, 224, 224)),
    ("resnet50", {}, (3, 224, 224)),
    ("resnet34", {}, (3, 64, 64)),
    ("resnet20", dict(in_channels=1), (1, 28, 28)),
    ("resnet32", {}, (3, 32, 32)),
    ("resnet56", dict(in_channels=1), (1, 28, 28)),
    ("resnet50_keras_article", dict(in_channels=1), (1, 28, 28)),
]


@pytest.mark.parametrize("name, kwargs, shape", FORWARD_CASES)
def test_output_shape_and_finite(name, kwargs, shape):
    model = get_model(name, num_classes=10, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1 if shape[-1] > 64 else 2, *shape))
    assert out.shape == (1 if shape[-1] > 64 else 2, 10)
    assert torch.isfinite(out).all()


def test_vgg16_on_32_and_224_pixels():
    model = vgg16(num_classes=10).eval()
    with torch.no_grad():
        for size in (32, 224):
            features = model.forward_features(torch.randn(1, 3, size, size))
            assert features.shape == (1, 512, size // 32, size // 32)
            out = model.forward_head(features)
            assert out.shape == (1, 10) and torch.isfinite(out).all()


GRADIENT_CASES = [
    ("lenet", dict(in_channels=1, image_size=28), (1, 28, 28)),
    ("resnet18", {}, (3, 32, 32)),
    ("resnet18", dict(in_channels=1, small_input=True), (1, 28, 28)),
    ("resnet34", {}, (3, 32, 32)),
    ("resnet50", {}, (3, 32, 32)),
    ("resnet20", dict(in_channels=1), (1, 28, 28)),
    ("vgg16_bn", dict(in_channels=1), (1, 32, 32)),
    ("resnet50_keras_article", dict(in_channels=1), (1, 28, 28)),
    ("resnet50_galaxy_article", {}, (3, 32, 32)),
]


@pytest.mark.parametrize("name, kwargs, shape", GRADIENT_CASES)
def test_every_parameter_gets_a_finite_gradient(name, kwargs, shape):
    model = get_model(name, num_classes=10, **kwargs).train()
    out = model(torch.randn(2, *shape))
    nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no or non-finite gradient for {missing[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_galaxy_article_shapes_for_224_pixels():
    model = get_model("resnet50_galaxy_article", num_classes=10).eval()
    modules = [model.stem[0], model.stem[3], model.layer1, model.layer2, model.layer3, model.layer4]
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for m in modules]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert shapes == [(64, 112, 112), (64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]
    assert out.shape == (1, 10)


def test_galaxy_article_shortcuts_are_biased_convs_without_batchnorm():
    model = on_meta("resnet50_galaxy_article")
    shortcuts = [m.shortcut for m in model.modules() if isinstance(m, models.ArticleBottleneck)
                 and m.shortcut is not None]
    assert [(s.in_channels, s.out_channels, s.stride) for s in shortcuts] == [
        (64, 256, (1, 1)), (256, 512, (2, 2)), (512, 1024, (2, 2)), (1024, 2048, (2, 2))]
    assert all(isinstance(s, nn.Conv2d) and s.bias is not None for s in shortcuts)
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_keras_article_maps_collapse_to_one_pixel_on_28px():
    model = get_model("resnet50_keras_article", in_channels=1).eval()
    with torch.no_grad():
        x = model.stem(torch.randn(1, 1, 28, 28))
        sizes = [tuple(x.shape[1:])]
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = stage(x)
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 7, 7), (256, 7, 7), (512, 4, 4), (1024, 2, 2), (2048, 1, 1)]


def test_zero_init_residual_zeroes_the_last_batchnorm_of_every_block():
    for builder in (resnet18, resnet50, models.resnet20):
        for zero in (True, False):
            model = builder(num_classes=10, zero_init_residual=zero)
            last_bns = [m.bn3 if isinstance(m, Bottleneck) else m.bn2 for m in model.modules()
                        if isinstance(m, (BasicBlock, Bottleneck))]
            assert last_bns
            assert all(bool((bn.weight == 0).all()) is zero for bn in last_bns)
            assert all(bool((bn.weight == 1).all()) for bn in [model.bn1])


def test_compiles_with_torch_compile_and_still_checks_input():
    model = torch.compile(get_model("lenet", in_channels=1, image_size=28).eval(), backend="eager")
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        with pytest.raises(ValueError, match="expects input"):
            model(torch.randn(2, 3, 32, 32))


# --- input checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, shape, message", [
    ("lenet", {}, (2, 1, 28, 28),
     r"LeNet expects input of shape \(N, 3, 32, 32\); got \(2, 1, 28, 28\)\. "
     r"Build it with LeNet\(in_channels=1, image_size=28\)"),
    ("lenet", dict(in_channels=1, image_size=28), (2, 1, 32, 32), r"image_size=32"),
    ("resnet18", {}, (2, 1, 224, 224), r"\(N, 3, H, W\).*got \(2, 1, 224, 224\).*in_channels=1"),
    ("resnet18", {}, (2, 3, 28, 28), r"H, W >= 32.*small_input=True"),
    ("resnet50", dict(small_input=True), (2, 3, 7, 7), r"H, W >= 8"),
    ("resnet20", dict(in_channels=1), (2, 3, 28, 28), r"\(N, 1, H, W\).*in_channels=3"),
    ("vgg16", {}, (2, 3, 28, 28), r"VGG expects .*H, W >= 32.*got \(2, 3, 28, 28\)"),
    ("vgg16", dict(in_channels=1), (2, 3, 64, 64), r"in_channels=3"),
    ("resnet50_keras_article", dict(in_channels=1), (2, 3, 28, 28), r"\(N, 1, H, W\).*in_channels=3"),
    ("resnet50_keras_article", dict(in_channels=1), (2, 1, 16, 16), r"H, W >= 28"),
    ("resnet50_galaxy_article", {}, (2, 3, 16, 16), r"H, W >= 32"),
    ("resnet18", {}, (3, 224, 224), r"got \(3, 224, 224\).*unsqueeze\(0\)"),
    ("lenet", {}, (3, 32, 32), r"unsqueeze\(0\)"),
])
def test_wrong_input_raises_an_informative_value_error(name, kwargs, shape, message):
    model = on_meta(name, num_classes=10, **kwargs)
    with pytest.raises(ValueError, match=message):
        model(torch.empty(shape, device="meta"))


def test_smallest_accepted_input_runs():
    for name, kwargs, size in [("resnet18", {}, 32), ("resnet18", dict(small_input=True), 8), ("resnet20", {}, 4),
                               ("vgg16", {}, 32), ("resnet50_keras_article", dict(in_channels=3), 28)]:
        assert min_input_size(name, **kwargs) == size
        model = on_meta(name, **kwargs)
        assert model(torch.empty(2, 3, size, size, device="meta")).shape == (2, 10)


def test_lenet_refuses_images_too_small_for_its_layers():
    with pytest.raises(ValueError, match="image_size >= 16"):
        LeNet(image_size=12)


# --- registry and standalone files ---------------------------------------------------------------

def test_registry_has_the_course_models_and_normalises_names():
    required = {"lenet", "resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet56", "vgg11", "vgg13",
                "vgg16", "vgg19", "vgg16_bn", "resnet50_keras_article", "resnet50_galaxy_article"}
    assert required <= set(MODELS)
    assert isinstance(on_meta("ResNet-50"), models.ResNet) and isinstance(on_meta("vgg16-BN"), models.VGG)
    model = on_meta("ResNet-50-Keras-Article", in_channels=1)
    assert isinstance(model, models.KerasArticleResNet50) and model.in_channels == 1
    small = on_meta("RESNET18", num_classes=3, small_input=True)
    assert small.fc.out_features == 3 and small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*resnet18.*vgg16_bn"):
        get_model("resnet19")


@pytest.mark.parametrize("filename", ["lenet.py", "resnet.py", "vgg.py", "article.py"])
def test_model_files_need_torch_alone(filename, tmp_path):
    path = MODEL_DIR / filename
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{filename} uses a relative import"
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "typing", "torch"}, imported
    copy = tmp_path / filename
    copy.write_text(path.read_text())
    spec = importlib.util.spec_from_file_location(f"copied_{path.stem}", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert all(hasattr(module, name) for name in module.__all__)


def test_lenet_torchsummary_matches_the_article(capsys):
    torchsummary = pytest.importorskip("torchsummary")
    torchsummary.summary(LeNet(), (3, 32, 32), device="cpu")
    out = capsys.readouterr().out
    for line in ("Total params: 62,050", "Input size (MB): 0.01", "Forward/backward pass size (MB): 0.11",
                 "Params size (MB): 0.24", "Estimated Total Size (MB): 0.36"):
        assert line in out
