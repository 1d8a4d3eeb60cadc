"""Exercises of notebook 8 (a Vision Transformer): patches with a stride (overlapping, of non-square
images), position embeddings resized for a larger image, attention with a mask (causal among others),
and the parameters of a block with a gated MLP and an optional qkv bias. Each varies or transfers what
the lesson shows, so no answer is a cell above it."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, fmt, forbid

STRIDED_PATCHES = '''\
import torch


def strided_patches(images, patch_size, stride):
    """Cut images (N, C, H, W) into patch_size x patch_size patches whose top-left corners are
    `stride` pixels apart (they overlap when stride < patch_size; H and W need not be equal, and
    pixels left over at the right or bottom edge are dropped). Patches in row-major order (along
    the top row of patches first), each flattened in (C, P, P) order - the order of a convolution's
    weight. Returns (N, number of patches, C * P * P). F.unfold is off limits."""
    raise NotImplementedError
'''


def _strided(images: torch.Tensor, p: int, s: int) -> torch.Tensor:
    """(N, C, rows, columns, p, p): the patch at (row, column) of every image, channels first."""
    return images.unfold(2, p, s).unfold(3, p, s)


@checker("strided_patches")
def check_strided_patches(t: Tester, answer: Any) -> None:
    """Compared with F.unfold(images, p, stride=s), whose columns are the flattened patches."""
    generator = torch.Generator().manual_seed(80)
    for shape, p, s in [((2, 3, 8, 8), 4, 4), ((1, 2, 6, 10), 2, 2), ((2, 3, 9, 7), 3, 2), ((1, 1, 10, 10), 4, 3)]:
        n, c, h, w = shape
        rows, columns = (h - p) // s + 1, (w - p) // s + 1
        t.case(f"strided_patches(<images {shape}>, patch_size={p}, stride={s})")
        images = torch.randn(shape, generator=generator)
        expected = F.unfold(images, p, stride=s).transpose(1, 2)
        grid = _strided(images, p, s)
        with forbid("unfold", hint="Tensor.unfold(dimension, size, step) cuts windows along one axis; or "
                                   "slice images[:, :, i*S:i*S+P, j*S:j*S+P] in two loops"):
            got = t.call(answer, images.clone(), p, s)
        t.close(got, expected, "patch (i, j) is images[:, :, i*S:i*S+P, j*S:j*S+P] flattened, for i, j in "
                "row-major order", alternatives=[
                    (grid.permute(0, 2, 3, 4, 5, 1).reshape(n, -1, c * p * p), "flatten each patch channels first, "
                     "in (C, P, P) order (the order of a conv weight), not (P, P, C)"),
                    (grid.permute(0, 3, 2, 1, 4, 5).reshape(n, -1, c * p * p), "patches in row-major order: along "
                     "the top row of patches first (the column index changes fastest), not down the first column")],
                shape_hint=f"with stride S there are (H - P) // S + 1 rows and (W - P) // S + 1 columns of patches: "
                           f"here ({n}, {rows} * {columns} = {rows * columns}, {c * p * p})")


RESIZE_POS_EMBED = '''\
import torch
import torch.nn.functional as F


def resize_pos_embed(pos_embed, new_grid):
    """A position embedding (1, 1 + g * g, D) learned for a g x g grid of patches (row 0: the class
    token; row 1 + i * g + j: the patch in grid row i, column j) resized for a grid of
    new_grid = (rows, columns) patches: the class token's row kept as it is, the patches' rows laid
    out on their g x g grid and resized by bilinear interpolation (F.interpolate, mode="bilinear",
    align_corners=False), then put back in row-major order. Returns (1, 1 + rows * columns, D)."""
    raise NotImplementedError
'''


def _resized(pos_embed: torch.Tensor, rows: int, columns: int, transpose: bool = False,
             channels_last_view: bool = False, mode: str = "bilinear") -> torch.Tensor:
    d = pos_embed.shape[-1]
    g = math.isqrt(pos_embed.shape[1] - 1)
    patches = pos_embed[:, 1:]
    grid = patches.reshape(1, d, g, g) if channels_last_view else patches.reshape(1, g, g, d).permute(0, 3, 1, 2)
    if transpose:
        grid = grid.transpose(2, 3)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    grid = F.interpolate(grid, size=(rows, columns), mode=mode, **kwargs)
    if transpose:
        grid = grid.transpose(2, 3)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)


@checker("resize_pos_embed")
def check_resize_pos_embed(t: Tester, answer: Any) -> None:
    """Compared with the patch rows viewed as (1, g, g, D), moved to (1, D, g, g), F.interpolate'd."""
    generator = torch.Generator().manual_seed(81)
    for g, dim, (rows, columns) in [(4, 3, (8, 8)), (3, 5, (6, 4)), (8, 2, (4, 4)), (2, 4, (2, 2))]:
        t.case(f"resize_pos_embed(<pos_embed (1, {1 + g * g}, {dim})>, new_grid=({rows}, {columns}))")
        pos_embed = torch.randn(1, 1 + g * g, dim, generator=generator)
        expected = _resized(pos_embed, rows, columns)
        whole = F.interpolate(pos_embed.transpose(1, 2)[:, :, None], size=(1, 1 + rows * columns), mode="bilinear",
                              align_corners=False)[:, :, 0].transpose(1, 2)
        got = t.call(answer, pos_embed.clone(), (rows, columns))
        t.close(got, expected, "keep row 0; view rows 1: as (1, g, g, D), permute to (1, D, g, g), F.interpolate to "
                "(rows, columns), permute back and flatten", alternatives=[
                    (lambda: _resized(pos_embed, rows, columns, channels_last_view=True), "the rows are tokens of "
                     "width D: view them as (1, g, g, D) and permute to (1, D, g, g); reshaping straight to "
                     "(1, D, g, g) mixes the widths of different patches"),
                    (lambda: _resized(pos_embed, rows, columns, transpose=True), "row 1 + i*g + j is grid row i, column "
                     "j (row-major): the first g patch rows are the top row of the grid"),
                    (lambda: _resized(pos_embed, rows, columns, mode="nearest"), "interpolate bilinearly "
                     "(mode=\"bilinear\", align_corners=False), not by the nearest row"),
                    (whole, "the patches' rows are a 2D grid: interpolate on the grid, and keep the class "
                     "token's row out of it"),
                    (lambda: torch.cat([_resized(pos_embed, rows, columns)[:, 1:], pos_embed[:, :1]], 1),
                     "the class token's row stays first, row 0")],
                shape_hint=f"return (1, 1 + rows * columns, D): here (1, {1 + rows * columns}, {dim}); keep the class "
                           "token's row")


MASKED_ATTENTION = '''\
import math

import torch


def masked_attention(q, k, v, mask):
    """Scaled dot-product attention with a mask: queries q (..., Tq, d), keys k (..., Tk, d), values
    v (..., Tk, dv), and a boolean mask that broadcasts to (..., Tq, Tk), True where query i may
    attend to key j (every query may attend to at least one key). A masked key gets weight exactly 0
    and each row of weights still sums to 1. Returns (output (..., Tq, dv), weights (..., Tq, Tk)).
    F.scaled_dot_product_attention is off limits."""
    raise NotImplementedError
'''


@checker("masked_attention")
def check_masked_attention(t: Tester, answer: Any) -> None:
    """Compared with F.scaled_dot_product_attention(q, k, v, attn_mask=mask), which it may not call."""
    generator = torch.Generator().manual_seed(82)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    random_mask = torch.rand(4, 6, generator=generator) < 0.5
    random_mask[:, 0] = True
    padding = torch.tensor([[True, True, True, True, False, False]])
    for what, q_shape, k_tokens, dv, mask in [
            ("a causal mask (5, 5)", (2, 5, 4), 5, 4, causal),
            ("a random mask (4, 6)", (2, 3, 4, 8), 6, 3, random_mask),
            ("a padding mask (1, 6): the last 2 keys hidden", (3, 4, 8), 6, 8, padding),
            ("a mask of all True (5, 5)", (1, 5, 16), 5, 16, torch.ones(5, 5, dtype=torch.bool))]:
        *batch, tq, d = q_shape
        t.case(f"masked_attention(<q {tuple(q_shape)}>, <k {(*batch, k_tokens, d)}>, <v {(*batch, k_tokens, dv)}>, "
               f"<{what}>)")
        q = torch.randn(q_shape, generator=generator) * 2
        k = torch.randn(*batch, k_tokens, d, generator=generator) * 2
        v = torch.randn(*batch, k_tokens, dv, generator=generator)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        with forbid("scaled_dot_product_attention", hint="scores q k^T / sqrt(d), masked_fill the hidden ones with "
                                                         "-inf, softmax, multiply by the values"):
            got = t.call(answer, q.clone(), k.clone(), v.clone(), mask.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            t.fail(f"got {fmt(got)}, not two things", "return (output, weights)")
        got_weights = t.array(got[1])
        if got_weights.shape == tuple(weights.shape) and not torch.isfinite(torch.as_tensor(got_weights)).all():
            t.fail("some weights are NaN or infinite", "True in the mask means the query MAY attend to the key: hide "
                   "the scores where the mask is False (masked_fill(~mask, float('-inf'))); hiding where it is True "
                   "can leave a row with no key at all")
        t.close(got_weights, weights, "weights = softmax(scores.masked_fill(~mask, float('-inf')), dim=-1), scores = "
                "q k^T / sqrt(d)", alternatives=[
                    (scores.softmax(-1) * mask, "hide the keys BEFORE the softmax (scores set to -inf), so that the "
                                                "remaining weights still sum to 1"),
                    (scores.masked_fill(~mask, 0.0).softmax(-1), "a score of 0 still gets the weight e^0 in the "
                                                                 "softmax: fill the hidden scores with float('-inf')"),
                    ((scores + mask).softmax(-1), "a boolean mask is not added to the scores: use it to choose which "
                                                  "scores become -inf"),
                    ((scores * math.sqrt(d)).masked_fill(~mask, float("-inf")).softmax(-1),
                     "divide the scores q k^T by sqrt(d) before the softmax")],
                shape_hint="the weights have one row per query and one column per key: (..., Tq, Tk)")
        t.close(got[0], F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "output = weights @ v",
                shape_hint="the output has one row per query, of the values' width: (..., Tq, dv)")


GATED_BLOCK_PARAMS = '''\
def gated_block_params(dim, mlp_dim, qkv_bias):
    """The number of parameters of a pre-norm Transformer block of width dim with two changes found in
    later models: the qkv projection (dim -> 3 * dim) has a bias only if qkv_bias is True (the
    output projection dim -> dim always has one), and the MLP is gated (SwiGLU): two layers
    dim -> mlp_dim whose outputs are multiplied element by element, then mlp_dim -> dim, all three
    with biases. Two LayerNorms of width dim, as in the lesson's block."""
    raise NotImplementedError
'''


class _GatedBlock(nn.Module):
    """A pre-norm block with an optional qkv bias and a SwiGLU MLP, built to count its parameters."""

    def __init__(self, dim: int, mlp_dim: int, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=qkv_bias), nn.Linear(dim, dim)
        self.gate, self.up, self.down = nn.Linear(dim, mlp_dim), nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)


@checker("gated_block_params")
def check_gated_block_params(t: Tester, answer: Any) -> None:
    """Compared with the parameters of such a block built from nn.Linear and nn.LayerNorm on the meta device."""
    for dim, mlp, qkv_bias in [(128, 512, True), (192, 512, False), (10, 7, False), (768, 2048, True)]:
        t.case(f"gated_block_params({dim}, {mlp}, qkv_bias={qkv_bias})")
        with torch.device("meta"):
            expected = sum(p.numel() for p in _GatedBlock(dim, mlp, qkv_bias).parameters())
        norms, qkv_b = 4 * dim, 3 * dim if qkv_bias else 0
        attention = 3 * dim * dim + qkv_b + dim * dim + dim
        gated = 2 * (dim * mlp + mlp) + mlp * dim + dim
        got = t.call(answer, dim, mlp, qkv_bias)
        t.equal(got, expected, "two LayerNorms (2·D each); qkv 3·D·D (+ 3·D if qkv_bias); output projection D·D + D; "
                "two gate layers D·M + M each; the last layer M·D + D", alternatives=[
                    (norms + attention + dim * mlp + mlp + mlp * dim + dim, "a gated MLP has TWO layers D -> M (their "
                     "outputs are multiplied), then one M -> D"),
                    (norms + attention - qkv_b + 3 * dim + gated, "with qkv_bias=False the qkv projection has no "
                     "bias: 3·D fewer parameters"),
                    (norms + 3 * dim * dim + qkv_b + dim * dim + (dim if qkv_bias else 0) + gated,
                     "qkv_bias concerns the qkv projection only: the output projection keeps its bias of D"),
                    (attention + gated, "count the two LayerNorms: a weight and a bias of D each"),
                    (norms + attention + 2 * dim * mlp + mlp * dim,
                     "every layer of the MLP has a bias: M for each gate layer, D for the last")])


EXERCISES = [
    Exercise("strided_patches", "Patches with a stride", "Patches and their embedding", check_strided_patches,
             STRIDED_PATCHES),
    Exercise("resize_pos_embed", "Position embeddings for a larger image",
             "The class token and the position embedding", check_resize_pos_embed, RESIZE_POS_EMBED),
    Exercise("masked_attention", "Attention with a mask", "Self-attention by formula", check_masked_attention,
             MASKED_ATTENTION),
    Exercise("gated_block_params", "The parameters of a gated block", "A Transformer block",
             check_gated_block_params, GATED_BLOCK_PARAMS),
]
