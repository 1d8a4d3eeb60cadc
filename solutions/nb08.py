"""Reference solutions of notebook 8's exercises (a Vision Transformer against ResNet), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb08`` checks them.
"""
import math

import torch


def patchify(images, patch_size):
    """Split H and W into (blocks, P), bring the two block axes forward, flatten each (C, P, P) patch."""
    n, c, h, w = images.shape
    p = patch_size
    patches = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)   # (N, H/P, W/P, C, P, P)
    return patches.reshape(n, (h // p) * (w // p), c * p * p)


def embed_tokens(patch_tokens, cls_token, pos_embed):
    """The class token first, for every image, then the position embedding added to all T + 1 tokens."""
    cls = cls_token.expand(patch_tokens.shape[0], -1, -1)
    return torch.cat([cls, patch_tokens], dim=1) + pos_embed


def attention(q, k, v):
    """softmax(q k^T / sqrt(d)) over the keys, then the weighted sum of the values."""
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights


def block_params(dim, num_heads, mlp_dim):
    """Two LayerNorms, qkv, output projection, the MLP's two layers; the heads only split dim."""
    norms = 2 * (2 * dim)
    qkv = 3 * dim * dim + 3 * dim
    projection = dim * dim + dim
    mlp = dim * mlp_dim + mlp_dim + mlp_dim * dim + dim
    return norms + qkv + projection + mlp


def attention_rollout(attentions):
    """Each block: heads averaged, (A + I) normalised per row; multiplied with later blocks on the left."""
    rollout = None
    for weights in attentions:
        a = weights.mean(dim=1)
        a = a + torch.eye(a.shape[-1])
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout
