"""Models: every registered model runs forward and backward at its smallest input, has its known
parameter count (the articles', the papers', torchvision's), its ``num_features``, and input checks
whose suggestions work when followed; the registry, name normalisation and standalone model files."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import cnncourse.models as models
from cnncourse.models import (MODELS, BasicBlock, Bottleneck, LeNet, builder_options, canonical_model_name,
                              get_model, min_input_size, resnet18, resnet50)

MODEL_DIR = Path(models.__file__).parent
MODEL_FILES = ["lenet.py", "resnet.py", "vgg.py", "article.py", "vit.py"]
PAPER_RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
VGGS = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
ARTICLES = ["resnet50_keras_article", "resnet50_galaxy_article"]
PLAIN = ["plain20", "plain56"]
VITS = ["vit_tiny"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_running_stats(model: nn.Module) -> int:
    return sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))


def on_meta(name: str, **kwargs) -> nn.Module:
    """Build a model without allocating or initialising its weights: enough for counts, shapes and input checks."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


def meta_batch(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """At the smallest input sizes these models are too small to gain from threads, and on a busy
    machine the threads' spin-waiting costs several times the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- every registered model: forward, backward, num_features, the too-small error ----------------

@pytest.mark.parametrize("name", MODELS)
def test_trains_at_its_smallest_input_and_num_features_enters_the_classifier(name):
    model = get_model(name, num_classes=7, in_channels=2).train()  # unusual numbers: the arguments are honoured
    size = min_input_size(model)
    assert model.in_channels == 2
    linear_calls = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, inputs, output: linear_calls.append((inputs[0].shape, output)))
    out = model(torch.randn(2, 2, size, size))
    assert out.shape == (2, 7)
    last_input_shape, last_output = linear_calls[-1]
    assert torch.equal(last_output, out), "the logits do not come from the last Linear layer"
    assert last_input_shape == (2, model.num_features)
    assert "num_features" in type(model).__doc__

    nn.functional.cross_entropy(out, torch.tensor([0, 6])).backward()
    # A NaN or inf anywhere makes the sum non-finite; summing is far cheaper than isfinite on 100M elements.
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad.sum())]
    assert not bad, f"no or non-finite gradient for {bad[:5]}"
    assert next(model.parameters()).grad.any(), "the gradient does not reach the first layer"
    assert sum(bool(p.grad.any()) for p in model.parameters()) > len(list(model.parameters())) // 2

    with torch.no_grad(), pytest.raises(ValueError, match=rf"with (H, W >= {size}|H = W = {size}); "
                                                          rf"got \(2, 2, {size - 1}, {size - 1}\)"):
        model(torch.randn(2, 2, size - 1, size - 1))


# --- parameter counts ---------------------------------------------------------------------------

PARAMETER_FACTS = [
    ("lenet", dict(num_classes=10, in_channels=3), 62_050),  # the LeNet article's torchsummary
    ("lenet_nobn", dict(num_classes=10, in_channels=3), 62_006),  # minus 2 x (6 + 16) BatchNorm weights
    ("resnet18", dict(num_classes=1000), 11_689_512),  # torchvision's
    ("resnet34", dict(num_classes=1000), 21_797_672),
    ("resnet50", dict(num_classes=1000), 25_557_032),
    ("resnet50", dict(num_classes=10), 23_528_522),
    ("resnet101", dict(num_classes=1000), 44_549_160),
    ("resnet152", dict(num_classes=1000), 60_192_808),
    ("resnet20", dict(num_classes=10), 272_474),  # He et al.'s CIFAR nets with projection shortcuts
    ("resnet32", dict(num_classes=10), 466_906),
    ("resnet44", dict(num_classes=10), 661_338),
    ("resnet56", dict(num_classes=10), 855_770),
    ("resnet110", dict(num_classes=10), 1_730_714),
    ("plain20", dict(num_classes=10), 269_722),  # resnet20 minus its two projections (2,752 weights)
    ("plain56", dict(num_classes=10), 853_018),
    ("vgg11", dict(num_classes=1000), 132_863_336),  # torchvision's
    ("vgg13", dict(num_classes=1000), 133_047_848),
    ("vgg16", dict(num_classes=1000), 138_357_544),
    ("vgg16", dict(num_classes=10), 134_301_514),  # the VGG article's
    ("vgg19", dict(num_classes=1000), 143_667_240),
    ("vgg11_bn", dict(num_classes=1000), 132_868_840),
    ("vgg13_bn", dict(num_classes=1000), 133_053_736),
    ("vgg16_bn", dict(num_classes=1000), 138_365_992),
    ("vgg19_bn", dict(num_classes=1000), 143_678_248),
    ("resnet50_keras_article", dict(num_classes=10, in_channels=1), 26_267_778),  # Keras's trainable params
    ("resnet50_galaxy_article", dict(num_classes=10, in_channels=3), 23_547_402),  # the article's
    ("vit_tiny", dict(num_classes=10), 809_354),  # by formula in vit.py; close to resnet56's 855,770
]


@pytest.mark.parametrize("name, kwargs, expected", PARAMETER_FACTS)
def test_parameter_counts_match_the_known_numbers(name, kwargs, expected):
    assert n_params(on_meta(name, **kwargs)) == expected


def test_every_registered_model_has_a_known_parameter_count():
    assert set(MODELS) - {name for name, _, _ in PARAMETER_FACTS} == set()


def test_lenet_per_layer_counts_match_the_article_summary():
    counts = [sum(p.numel() for p in m.parameters(recurse=False)) for m in LeNet().modules()]
    assert [c for c in counts if c] == [456, 12, 2_416, 32, 48_120, 10_164, 850]


def test_keras_article_batchnorm_statistics_match_keras():
    model = on_meta("resnet50_keras_article", num_classes=10, in_channels=1)
    assert n_running_stats(model) == 45_440
    assert n_params(model) + n_running_stats(model) == 26_313_218  # Keras's "Total params"


@pytest.mark.parametrize("depth, paper", [(20, "0.27"), (32, "0.46"), (44, "0.66"), (56, "0.85"), (110, "1.7")])
def test_cifar_resnets_have_the_papers_size_plus_two_projection_shortcuts(depth, paper):
    model = on_meta(f"resnet{depth}", num_classes=10)
    blocks = (depth - 2) // 6
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [blocks] * 3
    weighted = [m for m in model.modules()
                if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))]
    assert len(weighted) == depth  # the depth counts 3x3 convs and the dense layer, not projections
    projections = sum(n_params(m.downsample) for m in model.modules()
                      if isinstance(m, BasicBlock) and m.downsample is not None)
    assert projections == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64  # option B; the paper's option A has none
    decimals = len(paper.split(".")[1])
    assert f"{(n_params(model) - projections) / 1e6:.{decimals}f}" == paper  # the paper's table, in millions


def test_cifar_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n"):
        models.cifar_resnet(depth=21)


@pytest.mark.parametrize("name", [name for name in MODELS if hasattr(torchvision.models, name)])
def test_same_parameters_and_state_dict_layout_as_torchvision(name):
    with torch.device("meta"):
        ours = get_model(name, num_classes=10)
        theirs = getattr(torchvision.models, name)(weights=None, num_classes=10)
    assert n_params(ours) == n_params(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_torchvision_has_every_paper_resnet_and_vgg():
    assert [name for name in MODELS if hasattr(torchvision.models, name)] == PAPER_RESNETS + VGGS


@pytest.mark.parametrize("builder", [resnet18, resnet50])
def test_torchvision_weights_load_and_give_the_same_outputs(builder):
    theirs = getattr(torchvision.models, builder.__name__)(weights=None, num_classes=7).eval()
    ours = builder(num_classes=7).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


# --- architecture details -----------------------------------------------------------------------

def test_vgg_features_keep_one_pixel_per_32_and_the_pool_fits_any_size():
    model = on_meta("vgg16", num_classes=10).eval()
    for size in (32, 224):
        features = model.forward_features(meta_batch(1, 3, size, size))
        assert features.shape == (1, 512, size // 32, size // 32)
        assert model.forward_head(features).shape == (1, 10)


def test_galaxy_article_shapes_for_224_pixels():
    model = on_meta("resnet50_galaxy_article", num_classes=10).eval()
    modules = [model.stem[0], model.stem[3], model.layer1, model.layer2, model.layer3, model.layer4]
    shapes = []
    for m in modules:
        m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    assert model(meta_batch(1, 3, 224, 224)).shape == (1, 10)
    assert shapes == [(64, 112, 112), (64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]


def test_galaxy_article_shortcuts_are_biased_convs_without_batchnorm():
    model = on_meta("resnet50_galaxy_article")
    shortcuts = [m.shortcut for m in model.modules() if isinstance(m, models.ArticleBottleneck)
                 and m.shortcut is not None]
    assert [(s.in_channels, s.out_channels, s.stride) for s in shortcuts] == [
        (64, 256, (1, 1)), (256, 512, (2, 2)), (512, 1024, (2, 2)), (1024, 2048, (2, 2))]
    assert all(isinstance(s, nn.Conv2d) and s.bias is not None for s in shortcuts)
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_keras_article_maps_collapse_to_one_pixel_on_28px():
    model = on_meta("resnet50_keras_article", in_channels=1).eval()
    x = model.stem(meta_batch(1, 1, 28, 28))
    sizes = [tuple(x.shape[1:])]
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 7, 7), (256, 7, 7), (512, 4, 4), (1024, 2, 2), (2048, 1, 1)]


@pytest.mark.parametrize("name, blocks", [("resnet18", 8), ("resnet50", 16), ("resnet20", 9)])
def test_zero_init_residual_zeroes_the_last_batchnorm_of_every_block(name, blocks):
    for zero in (True, False):
        model = get_model(name, num_classes=10, zero_init_residual=zero)
        last_bns = [m.bn3 if isinstance(m, Bottleneck) else m.bn2 for m in model.modules()
                    if isinstance(m, (BasicBlock, Bottleneck))]
        assert len(last_bns) == blocks
        assert [bool((bn.weight == 0).all()) for bn in last_bns] == [zero] * blocks
        assert bool((model.bn1.weight == 1).all())  # the stem's BatchNorm is never zeroed


def test_compiles_with_torch_compile_and_still_checks_input():
    model = torch.compile(get_model("lenet", in_channels=1, image_size=28).eval(), backend="eager")
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        with pytest.raises(ValueError, match="expects input"):
            model(torch.randn(2, 3, 32, 32))


# --- input checks -------------------------------------------------------------------------------

def _function_source(path: Path, function: str) -> str:
    source = path.read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function)
    return ast.get_source_segment(source, node)


def test_every_model_file_has_the_same_input_check():
    copies = {filename: _function_source(MODEL_DIR / filename, "_check_input") for filename in MODEL_FILES}
    assert len(set(copies.values())) == 1, "the _check_input copies differ: keep them identical"


SUGGESTED_KEYWORD = re.compile(r"\b([a-z_]+)=([\w.]+)")


class InputAccepted(Exception):
    """Raised when the first layer is reached: the input passed the check (and nothing is computed)."""


def accepts(model: nn.Module, x: torch.Tensor) -> bool:
    def stop(module, inputs):
        raise InputAccepted
    hooks = [m.register_forward_pre_hook(stop) for m in model.children()]
    try:
        model(x)
    except InputAccepted:
        return True
    except ValueError:
        return False
    finally:
        for hook in hooks:
            hook.remove()
    raise AssertionError("the model called none of its layers")


@pytest.mark.parametrize("name", MODELS)
def test_input_errors_name_the_expected_input_and_their_suggestions_work(name):
    model = on_meta(name, num_classes=5, in_channels=3).eval()
    size = model.min_input_size
    shapes = [(2, 1, size, size), (2, 3, size - 1, size - 1), (2, 1, size - 1, size - 1), (2, 3, 1, 1),
              (2, 3, size, size - 1), (3, size, size)]
    rebuilt = {(): model}
    for shape in shapes:
        with pytest.raises(ValueError) as error:
            model(meta_batch(*shape))
        message = str(error.value)
        assert re.match(rf"{type(model).__name__} expects input of shape \(N, 3, H, W\) "
                        rf"with (H, W >= {size}|H = W = {size}); got {re.escape(str(shape))}\. \S", message), message
        if len(shape) != 4:
            assert "x.unsqueeze(0)" in message
            continue
        suggested = {key: ast.literal_eval(value) for key, value in SUGGESTED_KEYWORD.findall(message)}
        assert set(suggested) <= builder_options(name) | {"in_channels"}, message
        assert ("in_channels" in suggested) == (shape[1] != 3), message
        key = tuple(sorted(suggested.items()))
        if key not in rebuilt:
            rebuilt[key] = on_meta(name, **{"num_classes": 5, "in_channels": 3, **suggested})
        if not accepts(rebuilt[key], meta_batch(*shape)):  # what is left is the size, and the message said to resize
            assert "resize" in message.lower() and min(shape[2:]) < size, message


@pytest.mark.parametrize("name, kwargs, shape, message", [
    # Notebooks 3 and 4 print this one.
    ("resnet18", dict(in_channels=1), (1, 1, 28, 28),
     "ResNet expects input of shape (N, 1, H, W) with H, W >= 32; got (1, 1, 28, 28). "
     "For 28-32 px images build it with small_input=True (3x3 stride-1 stem), or resize them."),
    ("resnet18", {}, (2, 3, 4, 4),  # too small even for the 3x3 stem: small_input=True would not help
     "ResNet expects input of shape (N, 3, H, W) with H, W >= 32; got (2, 3, 4, 4). "
     "Resize or pad the images to at least 32 px."),
    ("resnet20", {}, (2, 3, 1, 1),  # a CIFAR ResNet has no small_input option to suggest
     "ResNet expects input of shape (N, 3, H, W) with H, W >= 4; got (2, 3, 1, 1). "
     "Resize or pad the images to at least 4 px."),
    ("resnet50", dict(small_input=True), (2, 3, 7, 7),
     "ResNet expects input of shape (N, 3, H, W) with H, W >= 8; got (2, 3, 7, 7). "
     "Resize or pad the images to at least 8 px."),
    ("lenet", {}, (2, 1, 28, 28),
     "LeNet expects input of shape (N, 3, H, W) with H = W = 32; got (2, 1, 28, 28). "
     "Build it with in_channels=1 for 1-channel images. "
     "Build it with image_size=28 for 28x28 images, or resize them to 32x32."),
    ("lenet", dict(image_size=28), (2, 3, 32, 32),
     "LeNet expects input of shape (N, 3, H, W) with H = W = 28; got (2, 3, 32, 32). "
     "Build it with image_size=32 for 32x32 images, or resize them to 28x28."),
    ("lenet", {}, (2, 3, 12, 12),
     "LeNet expects input of shape (N, 3, H, W) with H = W = 32; got (2, 3, 12, 12). "
     "Resize or crop the images to 32x32."),
    ("vgg16", dict(in_channels=1), (2, 3, 28, 28),
     "VGG expects input of shape (N, 1, H, W) with H, W >= 32; got (2, 3, 28, 28). "
     "Build it with in_channels=3 for 3-channel images. Resize or pad the images to at least 32 px."),
    ("resnet50_keras_article", dict(in_channels=1), (2, 1, 16, 16),
     "KerasArticleResNet50 expects input of shape (N, 1, H, W) with H, W >= 28; got (2, 1, 16, 16). "
     "Resize or pad the images to at least 28 px."),
    ("resnet50_galaxy_article", {}, (3, 224, 224),
     "GalaxyArticleResNet50 expects input of shape (N, 3, H, W) with H, W >= 32; got (3, 224, 224). "
     "Pass a batch (N, C, H, W); for a single image use x.unsqueeze(0)."),
    ("vit_tiny", {}, (2, 3, 28, 28),
     "VisionTransformer expects input of shape (N, 3, H, W) with H = W = 32; got (2, 3, 28, 28). "
     "Build it with image_size=28 for 28x28 images, or resize them to 32x32."),
    ("vit_tiny", {}, (2, 3, 30, 30),  # 30 px do not split into 4x4 patches: no image_size to suggest
     "VisionTransformer expects input of shape (N, 3, H, W) with H = W = 32; got (2, 3, 30, 30). "
     "Resize or crop the images to 32x32 (a whole number of 4x4 patches)."),
])
def test_input_error_messages(name, kwargs, shape, message):
    model = on_meta(name, num_classes=10, **kwargs)
    with pytest.raises(ValueError) as error:
        model(meta_batch(*shape))
    assert str(error.value) == message


@pytest.mark.parametrize("name, kwargs, size", [
    ("lenet", {}, 32), ("lenet", dict(image_size=28), 28), ("resnet18", {}, 32),
    ("resnet18", dict(small_input=True), 8), ("resnet20", {}, 4), ("vgg16", {}, 32),
    ("resnet50_keras_article", {}, 28), ("resnet50_galaxy_article", {}, 32),
    ("vit_tiny", {}, 32), ("vit_tiny", dict(image_size=28, patch_size=7), 28),
])
def test_min_input_size_by_name_and_by_model(name, kwargs, size):
    assert min_input_size(name, **kwargs) == size
    assert min_input_size(on_meta(name, **kwargs)) == size
    assert min_input_size(name.upper(), **kwargs) == size


def test_lenet_refuses_images_too_small_for_its_layers():
    assert LeNet(image_size=16).flat_features == 16
    with pytest.raises(ValueError, match="image_size >= 16"):
        LeNet(image_size=15)


def test_lenet_flattened_width_follows_image_size():
    assert [LeNet(image_size=s).flat_features for s in (32, 28)] == [16 * 5 * 5, 16 * 4 * 4]
    assert LeNet(image_size=28).fc1.in_features == 256 and LeNet().num_features == 84


# --- registry, names and options ----------------------------------------------------------------

def test_registry_is_filled_from_the_model_files_in_order():
    assert list(MODELS) == ["lenet", "lenet_nobn"] + PAPER_RESNETS + CIFAR_RESNETS + PLAIN + VGGS + ARTICLES + VITS
    files = [importlib.import_module(f"cnncourse.models.{f[:-3]}") for f in MODEL_FILES]
    assert list(MODELS.values()) == [builder for module in files for builder in module.BUILDERS]
    for module in files:
        assert set(b.__name__ for b in module.BUILDERS) <= set(module.__all__)


@pytest.mark.parametrize("alias, name", [
    ("ResNet-50", "resnet50"), ("resnet_50", "resnet50"), ("RESNET50", "resnet50"), (" resnet50 ", "resnet50"),
    ("VGG16-BN", "vgg16_bn"), ("vgg16bn", "vgg16_bn"), ("LeNet", "lenet"),
    ("ResNet-50-Keras-Article", "resnet50_keras_article"), ("resnet50 galaxy article", "resnet50_galaxy_article"),
])
def test_canonical_model_name(alias, name):
    assert canonical_model_name(alias) == name


def test_canonical_model_name_of_every_registered_name_is_itself():
    assert [canonical_model_name(name) for name in MODELS] == list(MODELS)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; known models: lenet, lenet_nobn, resnet18, ") as error:
        get_model("resnet19")
    assert all(name in str(error.value) for name in MODELS)
    for call in (canonical_model_name, builder_options, min_input_size):
        with pytest.raises(ValueError, match="unknown model 'vgg17'"):
            call("vgg17")


def test_get_model_normalises_names_and_passes_options():
    model = on_meta("ResNet-50-Keras-Article", in_channels=1)
    assert isinstance(model, models.KerasArticleResNet50) and model.in_channels == 1
    small = on_meta("RESNET18", num_classes=3, small_input=True)
    assert small.fc.out_features == 3 and small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
    assert on_meta("LeNet", image_size=28).fc1.in_features == 16 * 4 * 4
    assert [m.p for m in on_meta("vgg11", dropout=0.25).modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]


EXPECTED_OPTIONS = {
    **{name: {"small_input", "zero_init_residual"} for name in PAPER_RESNETS},
    **{name: {"zero_init_residual"} for name in CIFAR_RESNETS},
    **{name: {"dropout"} for name in VGGS},
    "resnet50_keras_article": {"keras_defaults"},
    "resnet50_galaxy_article": set(),
    **{name: set() for name in PLAIN},
    "lenet": {"image_size"},
    "lenet_nobn": {"image_size"},
    **{name: {"image_size", "patch_size"} for name in VITS},
}


@pytest.mark.parametrize("name", MODELS)
def test_builder_options(name):
    assert builder_options(name) == EXPECTED_OPTIONS[name]
    assert builder_options(name.upper().replace("_", "-")) == EXPECTED_OPTIONS[name]
    kinds = {p.kind for p in inspect.signature(MODELS[name]).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds, "a **kwargs builder hides its options from builder_options"


def test_get_model_rejects_an_option_the_builder_does_not_take():
    with pytest.raises(TypeError, match=r"resnet20 does not take small_input; its options: zero_init_residual"):
        get_model("resnet20", small_input=False)
    with pytest.raises(TypeError, match=r"resnet50_galaxy_article does not take dropout; its options: none"):
        get_model("resnet50_galaxy_article", dropout=0.1)


# --- standalone model files ---------------------------------------------------------------------

@pytest.mark.parametrize("filename", MODEL_FILES)
def test_model_files_need_torch_alone_and_work_when_copied(filename, tmp_path):
    path = MODEL_DIR / filename
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{filename} uses a relative import"
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "typing", "math", "torch"}, imported
    copy = tmp_path / filename
    copy.write_text(path.read_text())
    spec = importlib.util.spec_from_file_location(f"copied_{path.stem}", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [b.__name__ for b in module.BUILDERS] == [n for n in MODELS if MODELS[n].__module__.endswith(path.stem)]
    # Every builder of the copy, and a forward pass through every layer, on the meta device: each line of
    # the file runs, without the seconds that allocating VGG's weights again would take (the same code
    # runs for real, from the package, in test_trains_at_its_smallest_input_...).
    for builder in module.BUILDERS:
        with torch.device("meta"):
            model = builder(num_classes=3, in_channels=2).eval()
        assert type(model).__module__ == f"copied_{path.stem}"
        size = model.min_input_size
        assert model(meta_batch(2, 2, size, size)).shape == (2, 3)
        with pytest.raises(ValueError, match="expects input of shape"):
            model(meta_batch(2, 3, size, size))


def test_lenet_torchsummary_matches_the_article(capsys):
    torchsummary = pytest.importorskip("torchsummary")
    torchsummary.summary(LeNet(), (3, 32, 32), device="cpu")
    out = capsys.readouterr().out
    for line in ("Total params: 62,050", "Input size (MB): 0.01", "Forward/backward pass size (MB): 0.11",
                 "Params size (MB): 0.24", "Estimated Total Size (MB): 0.36"):
        assert line in out


# --- the Keras-matching option of the article's ResNet-50 ----------------------------------------

@pytest.mark.parametrize("size, kernel, stride, expected", [
    (28, 7, 2, (2, 3)), (27, 7, 2, (3, 3)), (14, 3, 2, (0, 1)), (28, 3, 1, (1, 1)), (28, 1, 2, (0, 0))])
def test_keras_same_padding_matches_tensorflows_rule(size, kernel, stride, expected):
    from cnncourse.models.article import keras_same_padding
    assert keras_same_padding(size, kernel, stride) == expected
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)  # ceil(size / stride) outputs


def test_keras_defaults_change_batchnorm_and_stem_padding_but_no_parameter():
    plain = models.resnet50_keras_article(in_channels=1)
    keras = models.resnet50_keras_article(in_channels=1, keras_defaults=True)
    assert n_params(keras) == n_params(plain) == 26_267_778
    assert list(keras.state_dict()) == list(plain.state_dict())
    norms = [m for m in keras.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.momentum, m.eps) for m in norms} == {(0.01, 1e-3)}
    assert {(m.momentum, m.eps) for m in plain.modules() if isinstance(m, nn.BatchNorm2d)} == {(0.1, 1e-5)}
    keras.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 28, 28)
    conv = keras.stem[0]
    # Keras pads 2 rows/columns before and 3 after; PyTorch's padding=3 shifts the sampling grid by one
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 3, 2, 3)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    assert not torch.allclose(conv(x), plain.stem[0](x), atol=1e-3)
    with torch.no_grad():
        assert keras.eval()(x).shape == (2, 10)
    pooled = keras.stem[3](torch.arange(14 * 14, dtype=torch.float32).view(1, 1, 14, 14) - 1000)
    assert pooled.shape[-1] == 7 and pooled.max().item() == 14 * 14 - 1 - 1000  # -inf padding never wins
