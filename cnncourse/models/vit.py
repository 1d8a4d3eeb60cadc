"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words") in plain PyTorch.

An image is cut into P x P patches; each patch is flattened and projected to a ``dim``-wide token
(one convolution with kernel = stride = P does both); a learned class token is put in front, a
learned position embedding is added, and ``depth`` pre-norm Transformer blocks mix the tokens:
multi-head self-attention, then an MLP with GELU, each added back to its input. The class token's
vector, after a last LayerNorm, goes to a linear classifier. Self-attention is written out (one qkv
projection, scaled dot products, softmax, heads concatenated, output projection) and can return its
attention weights, for attention maps.

Parameters, by formula, with D = dim, M = mlp_dim, L = depth, C = in_channels, P = patch_size,
N = (image_size / P)**2 patches and K classes::

    patch embedding   C*P*P*D + D
    class token       D
    position emb.     (N + 1) * D
    one block         4*D + (3*D*D + 3*D) + (D*D + D) + (D*M + M) + (M*D + D) = 4*D*D + 2*D*M + 9*D + M
                      (two LayerNorms, qkv, output projection, the MLP's two layers); 12*D*D + 13*D for M = 4*D
    final LayerNorm   2*D
    head              D*K + K

``vit_tiny`` (P = 4 on 32 px, D = 128, L = 4, 4 heads, M = 512) has 809,354 parameters for 10
classes, close to the CIFAR ResNet-56 (855,770). With torchvision's ViT-B/16 settings (P = 16 on
224 px, D = 768, L = 12, 12 heads, M = 3072, K = 1000) the same class has torchvision's 86,567,656.
The layers are the ones of torchvision's ``VisionTransformer`` (LayerNorm eps 1e-6, exact GELU),
so its weights can be copied in (names differ). This file needs torch alone.
"""
from __future__ import annotations

import math
from typing import List, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["BUILDERS", "PatchEmbedding", "MultiHeadSelfAttention", "TransformerBlock", "VisionTransformer",
           "vit_tiny"]


class PatchEmbedding(nn.Module):
    """(N, C, S, S) images -> (N, (S/P)**2, dim) tokens, one per P x P patch, in row-major order.

    A convolution with kernel = stride = P sees each patch once: it is a linear layer applied to every
    flattened patch (its weight, reshaped to (dim, C*P*P), is that layer's matrix).
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class MultiHeadSelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V for ``num_heads`` heads of d = dim / num_heads, concatenated and
    projected: the same function as ``nn.MultiheadAttention(dim, num_heads, batch_first=True)``
    called with query = key = value = x (``qkv.weight`` is its ``in_proj_weight``: rows q, k, v)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim must split into equal heads: {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, return_attention: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """x: (N, T, dim) -> (N, T, dim); with ``return_attention``, also the weights (N, heads, T, T),
        whose row i says how much token i takes from each token."""
        n, t, dim = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (N, heads, T, d)
        attention = (q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)).softmax(dim=-1)
        out = self.proj((attention @ v).transpose(1, 2).reshape(n, t, dim))  # heads side by side, then mixed
        return (out, attention) if return_attention else out


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)), MLP = dim -> mlp_dim, GELU, -> dim."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: Tensor, return_attention: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        mixed, attention = self.attn(self.norm1(x), return_attention=True)
        x = x + mixed
        x = x + self.mlp(self.norm2(x))
        return (x, attention) if return_attention else x


class VisionTransformer(nn.Module):
    """Patch embedding, class token, position embedding, ``depth`` Transformer blocks, LayerNorm and a
    linear classifier ``head`` on the class token: logits of shape (N, num_classes).

    The position embedding has one row per patch (and one for the class token), so inputs must be
    exactly ``image_size`` square (``min_input_size`` is that size), and ``image_size`` a multiple of
    ``patch_size``. ``num_features`` is ``dim``, the width entering ``head``.
    Initialisation: linear weights and the position embedding from a normal distribution of standard
    deviation 0.02 cut at +-2, biases and the class token zero (as timm does), the patch convolution
    PyTorch's default.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, patch_size: int = 4,
                 dim: int = 128, depth: int = 4, num_heads: int = 4, mlp_dim: int = 512) -> None:
        super().__init__()
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ValueError(f"image_size must be a multiple of patch_size, so that the image splits into whole "
                             f"patches; got image_size {image_size} and patch_size {patch_size}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.patch_size = patch_size
        self.min_input_size = image_size
        self.num_features = dim
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, dim)
        self.num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _size_hint(self, h: int, w: int) -> str:
        """What to do about an h x w input of the wrong size (used by ``_check_input``)."""
        s, p = self.image_size, self.patch_size
        if h == w and h >= p and h % p == 0:
            return f"Build it with image_size={h} for {h}x{w} images, or resize them to {s}x{s}."
        return f"Resize or crop the images to {s}x{s} (a whole number of {p}x{p} patches)."

    def tokens(self, x: Tensor) -> Tensor:
        """The Transformer's input: class token, then one token per patch, plus the position embedding."""
        _check_input(x, self, exact=True)
        patches = self.patch_embed(x)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens through every block and the last LayerNorm: shape (N, 1 + num_patches, dim)."""
        x = self.tokens(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: Tensor) -> Tensor:
        """The class token's vector (token 0) through the linear classifier: logits (N, num_classes)."""
        return self.head(x[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def attention_maps(self, x: Tensor) -> List[Tensor]:
        """Every block's attention weights for the images x: a list of ``depth`` tensors of shape
        (N, heads, 1 + num_patches, 1 + num_patches); token 0 is the class token."""
        x = self.tokens(x)
        maps = []
        for block in self.blocks:
            x, attention = block(x, return_attention=True)
            maps.append(attention)
        return maps


# Repeated, identical, in every model file so that each file needs torch alone (a test compares the copies).
def _check_input(x: Tensor, model: nn.Module, exact: bool = False) -> None:
    """Raise a ValueError that names the expected input unless ``x`` is (N, model.in_channels, H, W)
    with H, W >= model.min_input_size (H = W = it when ``exact``); the hints name only options that
    the model's builder accepts. Reads only ``x.shape``: free, and safe under torch.compile."""
    channels, size = model.in_channels, model.min_input_size
    if x.dim() != 4:
        hints = ["Pass a batch (N, C, H, W); for a single image use x.unsqueeze(0)."]
    else:
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        size_ok = h == w == size if exact else (h >= size and w >= size)
        if c == channels and size_ok:
            return
        hints = [] if c == channels else [f"Build it with in_channels={c} for {c}-channel images."]
        if not size_ok:
            size_hint = getattr(model, "_size_hint", None)
            hints.append(size_hint(h, w) if size_hint else f"Resize or pad the images to at least {size} px.")
    expected = f"H = W = {size}" if exact else f"H, W >= {size}"
    raise ValueError(f"{type(model).__name__} expects input of shape (N, {channels}, H, W) with {expected}; "
                     f"got {tuple(x.shape)}. {' '.join(hints)}")


def vit_tiny(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, patch_size: int = 4) -> VisionTransformer:
    """A ViT for 32-px images: 4x4 patches (64 tokens + the class token), dim 128, 4 blocks of 4 heads,
    MLP 512; 809,354 parameters for 10 classes at 32 px, close to ResNet-56's 855,770. (Smaller than
    timm's vit_tiny, DeiT-Ti: dim 192, 12 blocks, 5.7 M parameters.)"""
    return VisionTransformer(num_classes, in_channels, image_size, patch_size, dim=128, depth=4, num_heads=4,
                             mlp_dim=512)


# The public builders; cnncourse.models registers them by name, in this order.
BUILDERS = (vit_tiny,)
