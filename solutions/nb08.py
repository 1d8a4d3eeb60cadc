"""Reference solutions of notebook 8's exercises (a Vision Transformer), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb08`` checks them.
"""
import math

import torch
import torch.nn.functional as F


def strided_patches(images, patch_size, stride):
    """Tensor.unfold cuts windows of P every S pixels along H, then along W: (N, C, rows, columns, P, P);
    the grid axes go in front, each (C, P, P) patch is flattened."""
    n, c = images.shape[:2]
    p = patch_size
    grid = images.unfold(2, p, stride).unfold(3, p, stride)          # (N, C, rows, columns, P, P)
    return grid.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * p * p)


def resize_pos_embed(pos_embed, new_grid):
    """The class token's row apart; the patches' rows as a (1, D, g, g) image, interpolated, flattened back."""
    rows, columns = new_grid
    dim = pos_embed.shape[-1]
    g = math.isqrt(pos_embed.shape[1] - 1)
    grid = pos_embed[:, 1:].reshape(1, g, g, dim).permute(0, 3, 1, 2)            # (1, D, g, g)
    grid = F.interpolate(grid, size=(rows, columns), mode="bilinear", align_corners=False)
    patches = grid.permute(0, 2, 3, 1).reshape(1, rows * columns, dim)
    return torch.cat([pos_embed[:, :1], patches], dim=1)


def masked_attention(q, k, v, mask):
    """The hidden scores become -inf, so the softmax gives them weight 0 and spreads 1 over the rest."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return weights @ v, weights


def gated_block_params(dim, mlp_dim, qkv_bias):
    """Two LayerNorms, qkv (bias optional), output projection, two gate layers D -> M and one M -> D."""
    norms = 2 * (2 * dim)
    qkv = 3 * dim * dim + (3 * dim if qkv_bias else 0)
    projection = dim * dim + dim
    mlp = 2 * (dim * mlp_dim + mlp_dim) + mlp_dim * dim + dim
    return norms + qkv + projection + mlp
