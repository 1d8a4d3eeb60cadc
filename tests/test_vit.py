"""The Vision Transformer of notebook 8: shapes, parameters by formula, the hand-written attention against
nn.MultiheadAttention, the same layers as torchvision's VisionTransformer (ViT-B/16's parameter count, and
equal outputs with its weights copied in), gradients, learning on real images, and its input errors."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnncourse
from cnncourse.fastdata import fast_loaders
from cnncourse.models import get_model
from cnncourse.models.vit import MultiHeadSelfAttention, PatchEmbedding, TransformerBlock, VisionTransformer, vit_tiny


@pytest.fixture(autouse=True)
def _one_thread_and_seeded():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vit_parameters(dim, depth, mlp_dim, image_size, patch_size, in_channels, num_classes):
    """The formula of vit.py's docstring."""
    patches = (image_size // patch_size) ** 2
    block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * mlp_dim + mlp_dim) + (mlp_dim * dim + dim)
    return (in_channels * patch_size ** 2 * dim + dim    # patch embedding
            + dim + (patches + 1) * dim                  # class token, position embedding
            + depth * block + 2 * dim                    # blocks, final LayerNorm
            + dim * num_classes + num_classes)           # head


# --- shapes --------------------------------------------------------------------------------------

def test_shapes_through_the_model():
    model = vit_tiny(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.patch_embed(x).shape == (2, 64, 128)      # (32 / 4)**2 patches of dim 128
        assert model.tokens(x).shape == (2, 65, 128)           # + the class token
        assert model.forward_features(x).shape == (2, 65, 128)
        assert model(x).shape == (2, 10)
        maps = model.attention_maps(x)
    assert len(maps) == 4 and all(m.shape == (2, 4, 65, 65) for m in maps)
    assert all(torch.allclose(m.sum(-1), torch.ones(2, 4, 65)) for m in maps)   # each row is a softmax
    assert (model.num_patches, model.num_features, model.min_input_size) == (64, 128, 32)


@pytest.mark.parametrize("kwargs, tokens", [(dict(image_size=28, patch_size=7, in_channels=1), 16),
                                             (dict(image_size=32, patch_size=8), 16),
                                             (dict(image_size=64, patch_size=4), 256)])
def test_other_image_and_patch_sizes(kwargs, tokens):
    model = get_model("vit_tiny", num_classes=5, **kwargs).eval()
    size, channels = kwargs["image_size"], kwargs.get("in_channels", 3)
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, channels, size, size)).shape == (2, tokens + 1, 128)
        assert model(torch.randn(2, channels, size, size)).shape == (2, 5)


def test_patch_embedding_is_a_linear_layer_on_flattened_patches():
    embed = PatchEmbedding(image_size=8, patch_size=4, in_channels=3, dim=5)
    x = torch.randn(2, 3, 8, 8)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)                      # (N, C, 2, 2, 4, 4)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 3 * 16)  # row-major patches, each (C, P, P) flattened
    linear = patches @ embed.proj.weight.reshape(5, -1).T + embed.proj.bias
    assert torch.allclose(embed(x), linear, atol=1e-6)


# --- parameters by formula ----------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    dict(dim=128, depth=4, num_heads=4, mlp_dim=512, image_size=32, patch_size=4, in_channels=3, num_classes=10),
    dict(dim=96, depth=6, num_heads=3, mlp_dim=384, image_size=32, patch_size=4, in_channels=3, num_classes=10),
    dict(dim=64, depth=2, num_heads=8, mlp_dim=100, image_size=28, patch_size=7, in_channels=1, num_classes=7),
])
def test_parameter_count_equals_the_formula(config):
    with torch.device("meta"):
        model = VisionTransformer(**config)
    formula = vit_parameters(*(config[k] for k in ("dim", "depth", "mlp_dim", "image_size", "patch_size",
                                                   "in_channels", "num_classes")))
    assert n_params(model) == formula
    assert n_params(model.blocks[0]) == 4 * config["dim"] ** 2 + 2 * config["dim"] * config["mlp_dim"] \
        + 9 * config["dim"] + config["mlp_dim"]


def test_vit_tiny_is_close_to_resnet56():
    with torch.device("meta"):
        ours, resnet = n_params(vit_tiny()), n_params(get_model("resnet56"))
    assert ours == vit_parameters(128, 4, 512, 32, 4, 3, 10) == 809_354
    assert resnet == 855_770 and abs(ours - resnet) / resnet < 0.06


# --- attention ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, heads, tokens", [(16, 4, 5), (12, 3, 9), (8, 1, 3)])
def test_attention_equals_nn_multihead_attention(dim, heads, tokens):
    ours = MultiHeadSelfAttention(dim, heads)
    theirs = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)   # rows: W_q, then W_k, then W_v
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, tokens, dim)
    out, weights = ours(x, return_attention=True)
    expected, expected_weights = theirs(x, x, x, need_weights=True, average_attn_weights=False)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-5)
    assert torch.equal(ours(x), out)


def test_attention_by_the_formula_and_torch_sdpa():
    attention = MultiHeadSelfAttention(8, 2)
    x = torch.randn(3, 5, 8)
    q, k, v = attention.qkv(x).chunk(3, dim=-1)
    heads = [slice(0, 4), slice(4, 8)]
    by_formula = torch.cat([torch.softmax(q[..., h] @ k[..., h].transpose(1, 2) / 2.0, dim=-1) @ v[..., h]
                            for h in heads], dim=-1)                       # sqrt(head_dim) = sqrt(4) = 2
    split = [t.view(3, 5, 2, 4).transpose(1, 2) for t in (q, k, v)]
    sdpa = torch.nn.functional.scaled_dot_product_attention(*split).transpose(1, 2).reshape(3, 5, 8)
    assert torch.allclose(attention(x), attention.proj(by_formula), atol=1e-6)
    assert torch.allclose(by_formula, sdpa, atol=1e-6)


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="not a multiple of num_heads"):
        MultiHeadSelfAttention(10, 3)


# --- torchvision's VisionTransformer ------------------------------------------------------------

def torchvision_names(depth: int) -> dict:
    """Our state_dict names -> torchvision's VisionTransformer's, tensor for tensor."""
    names = {"patch_embed.proj.weight": "conv_proj.weight", "patch_embed.proj.bias": "conv_proj.bias",
             "cls_token": "class_token", "pos_embed": "encoder.pos_embedding",
             "norm.weight": "encoder.ln.weight", "norm.bias": "encoder.ln.bias",
             "head.weight": "heads.head.weight", "head.bias": "heads.head.bias"}
    for i in range(depth):
        ours, theirs = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        for a, b in [("norm1", "ln_1"), ("attn.qkv.weight", "self_attention.in_proj_weight"),
                     ("attn.qkv.bias", "self_attention.in_proj_bias"), ("attn.proj", "self_attention.out_proj"),
                     ("norm2", "ln_2"), ("mlp.0", "mlp.0"), ("mlp.2", "mlp.3")]:
            for suffix in ("",) if a.startswith("attn.qkv") else (".weight", ".bias"):
                names[ours + a + suffix] = theirs + b + suffix
    return names


def test_vit_b_16_configuration_has_torchvisions_parameter_count_and_shapes():
    """ViT-B/16: 16x16 patches of 224 px, dim 768, 12 blocks of 12 heads, MLP 3072, 1000 classes. Built on
    the meta device (no memory); every tensor has its counterpart in torchvision's, of the same shape."""
    with torch.device("meta"):
        theirs = torchvision.models.vit_b_16()
        ours = VisionTransformer(num_classes=1000, image_size=224, patch_size=16, dim=768, depth=12, num_heads=12,
                                 mlp_dim=3072)
    assert n_params(ours) == n_params(theirs) == 86_567_656
    assert n_params(ours) == vit_parameters(768, 12, 3072, 224, 16, 3, 1000)
    names = torchvision_names(12)
    theirs_state, ours_state = theirs.state_dict(), ours.state_dict()
    assert set(names) == set(ours_state) and set(names.values()) == set(theirs_state)
    assert all(ours_state[k].shape == theirs_state[v].shape for k, v in names.items())


def test_same_outputs_as_torchvision_with_its_weights():
    theirs = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=4,
                                                  hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    with torch.no_grad():
        theirs.heads.head.weight.normal_(0, 0.1)   # torchvision starts its head at zero: every output equal
    ours = VisionTransformer(num_classes=10, image_size=32, patch_size=4, dim=32, depth=2, num_heads=4,
                             mlp_dim=64).eval()
    state = theirs.state_dict()
    ours.load_state_dict({k: state[v] for k, v in torchvision_names(2).items()})
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


# --- training -----------------------------------------------------------------------------------

def test_every_parameter_receives_a_gradient():
    model = vit_tiny(num_classes=10).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_learns_on_a_real_cifar10_batch():
    """Quick mode's real CIFAR-10 sample: 30 AdamW steps on one batch of 32 images lower the loss."""
    with cnncourse.quick(True):
        train, _ = fast_loaders("cifar10", batch_size=32, seed=0)
    images, labels = next(iter(train))
    model = vit_tiny(num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 2.0 and losses[-1] < 0.5 * losses[0], losses


def test_block_is_pre_norm_with_residuals():
    block = TransformerBlock(dim=8, num_heads=2, mlp_dim=16)
    x = torch.randn(2, 3, 8)
    after_attention = x + block.attn(block.norm1(x))
    assert torch.allclose(block(x), after_attention + block.mlp(block.norm2(after_attention)), atol=1e-6)
    out, attention = block(x, return_attention=True)
    assert torch.equal(out, block(x)) and attention.shape == (2, 2, 3, 3)


# --- errors -------------------------------------------------------------------------------------

def test_image_size_must_be_a_whole_number_of_patches():
    with pytest.raises(ValueError, match="image_size must be a multiple of patch_size.*got image_size 30 and "
                                         "patch_size 4"):
        vit_tiny(image_size=30)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        vit_tiny(image_size=2, patch_size=4)


@pytest.mark.parametrize("shape, hint", [
    ((2, 3, 30, 30), "Resize or crop the images to 32x32 (a whole number of 4x4 patches)."),
    ((2, 3, 64, 64), "Build it with image_size=64 for 64x64 images, or resize them to 32x32."),
    ((2, 3, 32, 28), "Resize or crop the images to 32x32"),
    ((2, 1, 32, 32), "Build it with in_channels=1 for 1-channel images."),
])
def test_wrong_input_sizes_are_refused_with_a_hint(shape, hint):
    model = vit_tiny()
    with pytest.raises(ValueError) as error:
        model(torch.zeros(shape))
    message = str(error.value)
    assert message.startswith(f"VisionTransformer expects input of shape (N, 3, H, W) with H = W = 32; got {shape}.")
    assert hint in message
