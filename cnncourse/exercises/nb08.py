"""Exercises of notebook 8 (a Vision Transformer against ResNet): images cut into patches, the class
token and the position embedding, scaled dot-product attention, a Transformer block's parameters by
formula, and attention rollout."""
from __future__ import annotations

import math
from typing import Any, List

import torch
import torch.nn.functional as F

from cnncourse.exercises.check import Exercise, Tester, checker, fmt, forbid
from cnncourse.models.vit import TransformerBlock

PATCHIFY = '''\
import torch


def patchify(images, patch_size):
    """Cut images (N, C, H, W) into non-overlapping patch_size x patch_size patches, in row-major
    order (left to right along the top row of patches first), each flattened in (C, P, P) order -
    the order of a convolution's weight. Returns (N, number of patches, C * P * P)."""
    raise NotImplementedError
'''


def _patches(images: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H/p, W/p, p, p): patch (i, j) of every image, channels first."""
    return images.unfold(2, p, p).unfold(3, p, p)


@checker("patchify")
def check_patchify(t: Tester, answer: Any) -> None:
    """Compared with F.unfold(images, p, stride=p), whose columns are the flattened patches."""
    generator = torch.Generator().manual_seed(80)
    for shape, p in [((2, 3, 8, 8), 4), ((1, 1, 6, 6), 2), ((3, 2, 12, 8), 4)]:
        n, c, h, w = shape
        t.case(f"patchify(<images {shape}>, {p})")
        images = torch.randn(shape, generator=generator)
        expected = F.unfold(images, p, stride=p).transpose(1, 2)
        patches = _patches(images, p)
        got = t.call(answer, images.clone(), p)
        t.close(got, expected, "patch (i, j) is images[:, :, i*P:(i+1)*P, j*P:(j+1)*P], flattened; patches in "
                "row-major order", alternatives=[
                    (patches.permute(0, 2, 3, 4, 5, 1).reshape(n, -1, c * p * p), "flatten each patch channels "
                     "first, in (C, P, P) order (the order of a conv weight), not (P, P, C)"),
                    (patches.permute(0, 3, 2, 1, 4, 5).reshape(n, -1, c * p * p), "patches in row-major order: "
                     "along the top row of patches first (j fastest), not down the first column"),
                    (images.reshape(n, -1, c * p * p), "a plain reshape mixes pixels of different patches and "
                     "channels: cut the patches out first (view to (N, C, H/P, P, W/P, P) and permute, or unfold)")],
                shape_hint=f"return (N, (H/P)·(W/P), C·P·P): here ({n}, {(h // p) * (w // p)}, {c * p * p})")


EMBED_TOKENS = '''\
import torch


def embed_tokens(patch_tokens, cls_token, pos_embed):
    """The Transformer's input: the class token cls_token (1, 1, D), repeated for every image, put in
    front of the patch tokens patch_tokens (N, T, D), then the position embedding pos_embed
    (1, T + 1, D) added. Returns (N, T + 1, D)."""
    raise NotImplementedError
'''


@checker("embed_tokens")
def check_embed_tokens(t: Tester, answer: Any) -> None:
    """Compared with cat([class token, patch tokens]) + position embedding, as the course's ViT does."""
    generator = torch.Generator().manual_seed(81)
    for n, tokens, dim in [(2, 4, 3), (3, 9, 5), (1, 16, 2)]:
        t.case(f"embed_tokens(<patch_tokens ({n}, {tokens}, {dim})>, <cls_token (1, 1, {dim})>, "
               f"<pos_embed (1, {tokens + 1}, {dim})>)")
        patch_tokens = torch.randn(n, tokens, dim, generator=generator)
        cls_token = torch.randn(1, 1, dim, generator=generator)
        pos_embed = torch.randn(1, tokens + 1, dim, generator=generator)
        cls = cls_token.expand(n, -1, -1)
        got = t.call(answer, patch_tokens.clone(), cls_token.clone(), pos_embed.clone())
        t.close(got, torch.cat([cls, patch_tokens], 1) + pos_embed, "torch.cat([class token for every image, "
                "patch tokens], dim=1) + pos_embed", alternatives=[
                    (torch.cat([patch_tokens, cls], 1) + pos_embed, "the class token goes first: it is token 0, "
                     "the one the classifier reads"),
                    (torch.cat([cls, patch_tokens + pos_embed[:, 1:]], 1), "the class token gets a position "
                     "embedding too: row 0 of pos_embed"),
                    (torch.cat([cls + pos_embed[:, -1:], patch_tokens + pos_embed[:, :-1]], 1), "row 0 of pos_embed "
                     "is the class token's; the patches take rows 1 to T"),
                    (torch.cat([cls, patch_tokens], 1), "add the position embedding: without it attention cannot "
                     "tell where a patch was")],
                shape_hint=f"return (N, T + 1, D): here ({n}, {tokens + 1}, {dim}); expand the class token to "
                           "every image before torch.cat")


ATTENTION = '''\
import math

import torch


def attention(q, k, v):
    """Scaled dot-product attention, from the formula: queries q (..., Tq, d), keys k (..., Tk, d),
    values v (..., Tk, dv). Returns (output, weights): weights = softmax(q k^T / sqrt(d)) over the
    keys, shape (..., Tq, Tk), and output = weights v, shape (..., Tq, dv)."""
    raise NotImplementedError
'''


@checker("attention")
def check_attention(t: Tester, answer: Any) -> None:
    """Compared with the formula and with F.scaled_dot_product_attention, which it may not call."""
    generator = torch.Generator().manual_seed(82)
    for q_shape, k_tokens, dv in [((2, 5, 4), 5, 4), ((2, 3, 4, 8), 6, 3), ((1, 7, 16), 7, 16)]:
        *batch, tq, d = q_shape
        t.case(f"attention(<q {tuple(q_shape)}>, <k {(*batch, k_tokens, d)}>, <v {(*batch, k_tokens, dv)}>)")
        q = torch.randn(q_shape, generator=generator) * 2
        k = torch.randn(*batch, k_tokens, d, generator=generator) * 2
        v = torch.randn(*batch, k_tokens, dv, generator=generator)
        scores = q @ k.transpose(-2, -1)
        weights = (scores / math.sqrt(d)).softmax(-1)
        with forbid("scaled_dot_product_attention", hint="multiply the queries by the keys, scale, softmax, "
                                                         "multiply by the values"):
            got = t.call(answer, q.clone(), k.clone(), v.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            t.fail(f"got {fmt(got)}, not two things", "return (output, weights)")
        alternatives = [
            (scores.softmax(-1), "divide the scores q k^T by sqrt(d) before the softmax"),
            ((scores / d).softmax(-1), "divide by the square ROOT of d, the size of a query"),
            ((scores / math.sqrt(d)).softmax(-2), "softmax over the keys, the last axis: each row of weights "
                                                  "sums to 1"),
            ((scores / math.sqrt(dv)).softmax(-1), "d is the size of the queries and keys, not of the values")]
        t.close(got[1], weights, "weights = softmax(q @ k.transpose(-2, -1) / sqrt(d), dim=-1)",
                alternatives=alternatives, shape_hint="the weights have one row per query and one column per key: "
                                                      "(..., Tq, Tk)")
        t.close(got[0], F.scaled_dot_product_attention(q, k, v), "output = weights @ v",
                shape_hint="the output has one row per query, of the values' width: (..., Tq, dv)")


BLOCK_PARAMS = '''\
def block_params(dim, num_heads, mlp_dim):
    """The number of parameters of one pre-norm Transformer block of width dim: LayerNorm,
    multi-head self-attention (a qkv projection dim -> 3 * dim and an output projection
    dim -> dim, with biases), LayerNorm, and an MLP dim -> mlp_dim -> dim (with biases)."""
    raise NotImplementedError
'''


@checker("block_params")
def check_block_params(t: Tester, answer: Any) -> None:
    """Compared with the parameters of the course's TransformerBlock, built on the meta device."""
    for dim, heads, mlp in [(128, 4, 512), (768, 12, 3072), (10, 2, 7)]:
        t.case(f"block_params({dim}, {heads}, {mlp})")
        with torch.device("meta"):
            expected = sum(p.numel() for p in TransformerBlock(dim, heads, mlp).parameters())
        attention, mlp_params, norms = 4 * dim * dim + 4 * dim, 2 * dim * mlp + mlp + dim, 4 * dim
        got = t.call(answer, dim, heads, mlp)
        t.equal(got, expected, "two LayerNorms (2·D each), qkv (3·D·D + 3·D), output projection (D·D + D), "
                "MLP (D·M + M + M·D + D)", alternatives=[
                    (attention + mlp_params, "count the two LayerNorms: a weight and a bias of D each"),
                    (4 * dim * dim + 2 * dim * mlp + norms, "every Linear layer has a bias"),
                    (dim * dim + dim + dim * dim + dim + mlp_params + norms, "queries, keys and values each have "
                     "their own D x D matrix and bias: the qkv projection is D -> 3·D"),
                    (heads * (4 * dim * dim + 4 * dim) + mlp_params + norms, "the heads split D into parts; they do "
                     "not multiply the weights: the number of heads does not change the count"),
                    (12 * dim * dim + 13 * dim, "use mlp_dim: the MLP is not always 4·D wide")])


ATTENTION_ROLLOUT = '''\
import torch


def attention_rollout(attentions):
    """Attention rollout (Abnar and Zuidema, 2020) of a list of attention weights, one tensor
    (N, heads, T, T) per block, first block first: each block's weights averaged over the heads,
    the identity added for the residual connection and every row divided by its sum (A + I) / 2,
    then these matrices multiplied, the last block's on the left. Returns (N, T, T)."""
    raise NotImplementedError
'''


def _rollout(attentions: List[torch.Tensor], reduce: str = "mean", identity: bool = True,
             reverse: bool = False) -> torch.Tensor:
    result = None
    for a in (reversed(attentions) if reverse else attentions):
        a = a.mean(1) if reduce == "mean" else a.amax(1)
        if identity:
            a = a + torch.eye(a.shape[-1])
            a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    return result


@checker("attention_rollout")
def check_attention_rollout(t: Tester, answer: Any) -> None:
    """Compared with the product of (mean over heads + I) / 2, later blocks on the left."""
    generator = torch.Generator().manual_seed(83)
    for n, blocks, heads, tokens in [(2, 3, 2, 5), (1, 4, 3, 4), (3, 2, 4, 6)]:
        t.case(f"attention_rollout(<{blocks} tensors ({n}, {heads}, {tokens}, {tokens})>)")
        attentions = [(torch.randn(n, heads, tokens, tokens, generator=generator) * 2).softmax(-1)
                      for _ in range(blocks)]
        got = t.call(answer, [a.clone() for a in attentions])
        t.close(got, _rollout(attentions), "R = Â_L @ ... @ Â_2 @ Â_1 with Â = (mean over the heads + I) / 2",
                alternatives=[
                    (lambda: _rollout(attentions, reverse=True), "the last block's matrix goes on the LEFT: "
                     "R = Â_L @ ... @ Â_1, as the tokens flow from block 1 to block L"),
                    (lambda: _rollout(attentions, identity=False), "add the identity for the residual connection, "
                     "then divide each row by its sum: (A + I) / 2"),
                    (lambda: _rollout(attentions, reduce="max"), "average over the heads (dim 1), not the maximum")],
                shape_hint="one T x T matrix per image: (N, T, T); average the heads (dim 1) away")


EXERCISES = [
    Exercise("patchify", "Images cut into patches", "Patches and their embedding", check_patchify, PATCHIFY),
    Exercise("embed_tokens", "The class token and the position embedding",
             "The class token and the position embedding", check_embed_tokens, EMBED_TOKENS),
    Exercise("attention", "Scaled dot-product attention", "Self-attention by formula", check_attention, ATTENTION),
    Exercise("block_params", "A Transformer block's parameters by formula", "A Transformer block",
             check_block_params, BLOCK_PARAMS),
    Exercise("attention_rollout", "Attention rollout", "What the ViT looks at, beside Grad-CAM",
             check_attention_rollout, ATTENTION_ROLLOUT),
]
