# %% [markdown]
# # 8. A Vision Transformer against ResNet
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/08_vision_transformer.ipynb)
#
# **Where we are.** The galaxy article of notebook 6 ends wanting to try a Vision Transformer (ViT).
# This lesson builds one from its pieces, each from its formula and checked against PyTorch:
# (1) patches as tokens, (2) the class token and position embedding, (3) self-attention, one head and
# many, (4) the Transformer block, (5) the whole network against torchvision's ViT-B/16. Then we train
# the course's `vit_tiny`, set it beside a strong CNN and draw where it looks. The recorded
# runs, costs and audits are in [the lab](labs/08_vit_experiments.ipynb).
#
# Course: 1 theory · 2 LeNet on CIFAR-10 · 3 ResNet on MNIST · 4 ResNet-50 on Fashion-MNIST ·
# 5 VGG16 on Galaxy10 · 6 ResNet-50 on Galaxy10 · 7 what the network looks at · 8 a Vision Transformer ·
# 9 speedrun.

# %%
# Setup. In Google Colab: fetch the course (package, notebooks, recorded results), install it, and keep
# data and checkpoints on Google Drive, where a disconnected runtime does not lose them (USE_DRIVE).
# Anywhere else this does nothing: install once with `pip install -e ".[dev]"` in the repository.
import os
import subprocess
import sys

USE_DRIVE = True
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/cnncourse"):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/cnncourse/cnncourse",
                        "/content/cnncourse"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/cnncourse"], check=True)
    sys.path.insert(0, "/content/cnncourse")
    os.chdir("/content/cnncourse/notebooks")
    import cnncourse.colab
    cnncourse.colab.setup(use_drive=USE_DRIVE)

# %% [markdown]
# **Scale.** At the laptop scale, the default, the notebook downloads CIFAR-10 (170 MB; the stored
# outputs read our JPEG copy of it) and its one training run takes the ViT through 2 epochs of 45,000
# images, about 4 minutes on a 2-core CPU. `cnncourse.set_scale("sample")` at the top of the next cell
# (or `CNNCOURSE_QUICK=1`, which the tests set) swaps in a sample shipped with the package: a **quick
# sample**, labelled so.

# %% tags=["nbval-ignore-output"]
import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam
from torch import nn

import cnncourse
from cnncourse import reference
from cnncourse.data import cifar10_source, dataset_info
from cnncourse.exercises.nb07 import map_geometry, place_heatmap
from cnncourse.fastdata import fast_loaders
from cnncourse.models import get_model
from cnncourse.models.vit import MultiHeadSelfAttention, PatchEmbedding, TransformerBlock, VisionTransformer
from cnncourse.train import fit

QUICK = cnncourse.quick_mode()   # the sample scale
DEVICE = cnncourse.get_device()
CIFAR10 = cifar10_source()       # "cifar10", or where only that is at hand, a JPEG copy
DATA_NAME = "the quick sample" if QUICK else "CIFAR-10" if CIFAR10 == "cifar10" else "CIFAR-10 (JPEG copy)"
RUNS = cnncourse.runs_root()     # checkpoints of real runs (in Colab on Drive; quick mode writes none)
if QUICK:
    torch.set_num_threads(1)      # batches this small train fastest on one thread, also on a busy CPU
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "|", cnncourse.describe_scale("08_vision_transformer", 10 / 2))
print(cnncourse.describe_device())

# %% [markdown]
# ## Patches and their embedding
#
# The Transformer (Vaswani et al., 2017) mixes a sentence's word vectors (tokens) by
# **self-attention**. Dosovitskiy et al. (2021) applied it to images with few changes: cut the image
# into patches and treat each as a word. An image of $C$ channels and $S \times S$ pixels gives
# $N = (S / P)^2$ patches of $P \times P$ pixels, each flattened into a vector $x_p^i$ of $C P^2$
# numbers; a learned matrix $E$ ($D \times C P^2$) and bias $b$ make each a token of width $D$:
#
# $$z^i = E\, x_p^i + b, \qquad i = 1, \dots, N.$$
#
# For CIFAR-10 with $P = 4$: 64 patches of 48 numbers. From scratch, a `reshape` splits each side into
# (patch index, pixel in the patch), a `permute` brings the patch indices forward, a `reshape`
# flattens each patch:

# %%
train_loader, val_loader, test_loader = fast_loaders(CIFAR10, batch_size=64 if QUICK else 128, augment=True,
                                                     device=DEVICE, seed=0, val_fraction=0.1,
                                                     subset=320 if QUICK else None)
CLASSES = dataset_info("cifar10").classes
images, labels = next(iter(test_loader))
images, labels = images[:8].cpu(), labels[:8].cpu()
n, c, s, _ = images.shape
P = 4
patches = images.reshape(n, c, s // P, P, s // P, P).permute(0, 2, 4, 1, 3, 5).reshape(n, (s // P) ** 2, c * P * P)
print(f"images {tuple(images.shape)} -> patches {tuple(patches.shape)}: {(s // P) ** 2} patches of {c * P * P} numbers")
print("equal to F.unfold(images, 4, stride=4).transpose(1, 2):",
      torch.equal(patches, F.unfold(images, P, stride=P).transpose(1, 2)))
print("patch 9 (row 1, column 1) is the pixel block [4:8, 4:8] of every channel:",
      torch.equal(patches[:, 9], images[:, :, 4:8, 4:8].reshape(n, -1)))

# %%
def to_pictures(batch, loader):
    """Normalised images (N, 3, H, W) back to 0..1 for imshow: (N, H, W, 3)."""
    mean = torch.tensor(loader.mean).view(1, -1, 1, 1)
    std = torch.tensor(loader.std).view(1, -1, 1, 1)
    return (batch.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


picture = to_pictures(images[:1], test_loader)[0]                                      # (32, 32, 3)
tiles = picture.permute(2, 0, 1).reshape(3, 8, 4, 8, 4).permute(1, 3, 0, 2, 4).reshape(64, 3, 4, 4)
spread = torchvision.utils.make_grid(tiles, nrow=8, padding=1, pad_value=1).permute(1, 2, 0)
fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.6))
left.imshow(picture)
left.set_title(f"test image 0 of {DATA_NAME}: {CLASSES[labels[0]]} (32 x 32 pixels)",
               fontsize=9)
right.imshow(spread)
right.set_title("its 64 patches of 4 x 4 pixels:\ntokens 1 to 64, row by row", fontsize=9)
for ax in (left, right):
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# Multiplying every patch by the same $E$ is what a convolution with kernel and stride $P$ does: its
# window visits each patch once, with weights $E$ reshaped to $(D, C, P, P)$. So the course's
# `PatchEmbedding` is one `nn.Conv2d(C, D, kernel_size=P, stride=P)`, its output flattened to 64
# tokens. Checked against the formula:

# %%
cnncourse.seed_everything(0)
embedding = PatchEmbedding(image_size=32, patch_size=P, in_channels=3, dim=128)
E, b = embedding.proj.weight.reshape(128, -1), embedding.proj.bias
with torch.no_grad():
    tokens = embedding(images)
    by_formula = patches @ E.T + b
print(f"E: {tuple(E.shape)}, b: {tuple(b.shape)}; tokens {tuple(tokens.shape)}")
print("the strided convolution equals E x_p + b for every patch:", torch.allclose(tokens, by_formula, atol=1e-5))
print(f"parameters: {cnncourse.count_parameters(embedding):,} = 3 * 4 * 4 * 128 + 128 = {3 * 4 * 4 * 128 + 128:,}")

# %% [markdown]
# ### Exercise 8.1: Patches with a stride
#
# Some later ViTs cut overlapping patches, corners $S < P$ pixels apart, so that what lies on a
# border is seen whole. Write `strided_patches(images, patch_size, stride)`, in the order above,
# without `F.unfold`, for images that need not be square. First work out on paper how many patches a
# 9 x 7 image gives with $P = 3$, $S = 2$: the check tries it. *Hint:* `Tensor.unfold(dim, size, step)`.

# %%
import torch


def strided_patches(images, patch_size, stride):
    """Cut images (N, C, H, W) into patch_size x patch_size patches whose top-left corners are
    `stride` pixels apart (they overlap when stride < patch_size; H and W need not be equal, and
    pixels left over at the right or bottom edge are dropped). Patches in row-major order (along
    the top row of patches first), each flattened in (C, P, P) order - the order of a convolution's
    weight. Returns (N, number of patches, C * P * P). F.unfold is off limits."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_strided_patches(strided_patches)

# %% [markdown]
# ## The class token and the position embedding
#
# A learned **class token** $x_\text{class}$ of width $D$ goes in front: after the last block, its
# vector is what the classifier reads. A learned **position embedding** $E_\text{pos}$, one row for
# each of the $N + 1$ places, is added, so that a token carries where its patch was:
#
# $$z_0 = [x_\text{class};\ z^1;\ z^2;\ \dots;\ z^N] + E_\text{pos}, \qquad E_\text{pos} \in \mathbb{R}^{(N + 1) \times D}.$$
#
# The course's `vit_tiny` does this in its method `tokens`; the formula on its own parameters:

# %%
cnncourse.seed_everything(0)
vit = get_model("vit_tiny").eval()
with torch.no_grad():
    z = vit.patch_embed(images)
    z0 = torch.cat([vit.cls_token.expand(len(images), -1, -1), z], dim=1) + vit.pos_embed
    print(f"class token {tuple(vit.cls_token.shape)}, position embedding {tuple(vit.pos_embed.shape)}")
    print(f"patch tokens {tuple(z.shape)} -> Transformer input {tuple(z0.shape)}")
    print("equal to vit.tokens(images):", torch.equal(z0, vit.tokens(images)))

# %% [markdown]
# **Why positions must be added.** Self-attention (next section) takes weighted means over all
# tokens, whatever their order: without a position embedding, shuffling the patches shuffles the
# outputs the same way, and the class token's output does not change. A convolution knows
# neighbourhoods by construction; the ViT must learn them, in $E_\text{pos}$. Checked on the
# model's four blocks:

# %%
def through_blocks(model, tokens):
    """The tokens through every block of the model and its last LayerNorm."""
    for block in model.blocks:
        tokens = block(tokens)
    return model.norm(tokens)


order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
cls = vit.cls_token.expand(len(images), -1, -1)
with torch.no_grad():
    plain = through_blocks(vit, torch.cat([cls, z], dim=1))
    shuffled = through_blocks(vit, torch.cat([cls, z[:, order]], dim=1))
    print("without positions: the class token's output is the same for the shuffled patches:",
          torch.allclose(plain[:, 0], shuffled[:, 0], atol=1e-4))
    print("  and the patch tokens' outputs are shuffled the same way:",
          torch.allclose(plain[:, 1:][:, order], shuffled[:, 1:], atol=1e-4))
    positioned = through_blocks(vit, torch.cat([cls, z], dim=1) + vit.pos_embed)
    positioned_shuffled = through_blocks(vit, torch.cat([cls, z[:, order]], dim=1) + vit.pos_embed)
    print("with positions: the class token's output changes when the patches are shuffled:",
          not torch.allclose(positioned[:, 0], positioned_shuffled[:, 0], atol=1e-3))

# %% [markdown]
# ### Exercise 8.2: Position embeddings for a larger image
#
# With one row per patch, a position embedding learned on an 8 x 8 grid does not fit a 64-pixel image
# (16 x 16 patches). The ViT paper fine-tunes at higher resolution by interpolating it in 2D, on the
# grid of patches. Write `resize_pos_embed(pos_embed, new_grid)` (its docstring gives the recipe).
# Think first: which row stays out, and where on the grid does row $1 + i g + j$ lie?

# %%
import torch
import torch.nn.functional as F


def resize_pos_embed(pos_embed, new_grid):
    """A position embedding (1, 1 + g * g, D) learned for a g x g grid of patches (row 0: the class
    token; row 1 + i * g + j: the patch in grid row i, column j) resized for a grid of
    new_grid = (rows, columns) patches: the class token's row kept as it is, the patches' rows laid
    out on their g x g grid and resized by bilinear interpolation (F.interpolate, mode="bilinear",
    align_corners=False), then put back in row-major order. Returns (1, 1 + rows * columns, D)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_resize_pos_embed(resize_pos_embed)

# %% [markdown]
# ## Self-attention by formula
#
# Each token $x_i$ makes a **query** $q_i = W_q x_i$ (what it looks for), a **key** $k_i = W_k x_i$
# (what it offers) and a **value** $v_i = W_v x_i$ (what it passes on). Token $i$ gives token $j$ the
# weight $\operatorname{softmax}_j(q_i \cdot k_j / \sqrt{d})$, each row summing to 1, and outputs
# the weighted mean of the values. For all tokens at once:
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V .$$
#
# On 5 random tokens of width 8, against PyTorch's `F.scaled_dot_product_attention`:

# %%
generator = torch.Generator().manual_seed(0)
X = torch.randn(5, 8, generator=generator)
W_q, W_k, W_v = (torch.randn(8, 8, generator=generator) / math.sqrt(8) for _ in range(3))
Q, K, V = X @ W_q.T, X @ W_k.T, X @ W_v.T
weights = torch.softmax(Q @ K.T / math.sqrt(8), dim=-1)
output = weights @ V
print(f"Q, K, V: {tuple(Q.shape)}; weights {tuple(weights.shape)} (one row per query, one column per key); "
      f"output {tuple(output.shape)}")
print("every row of weights sums to 1:", torch.allclose(weights.sum(dim=1), torch.ones(5)))
print("equal to F.scaled_dot_product_attention:",
      torch.allclose(output, F.scaled_dot_product_attention(Q[None], K[None], V[None])[0], atol=1e-5))

# %% [markdown]
# **Why divide by $\sqrt{d}$.** With independent components of mean 0 and variance 1, $q \cdot k$
# is a sum of $d$ terms of variance 1: its variance is $d$. Wide tokens give scores in the tens, and
# their softmax is nearly one-hot, its gradient almost zero. Dividing by $\sqrt{d}$ brings the
# variance back to 1. Checked on random pairs, and on a softmax over 65 keys at $d = 64$:

# %%
generator = torch.Generator().manual_seed(1)
for d in (4, 64, 1024):
    q, k = torch.randn(10_000, d, generator=generator), torch.randn(10_000, d, generator=generator)
    dots = (q * k).sum(dim=1)
    print(f"d = {d:>4}: variance of q.k within 10 % of d: {abs(dots.var().item() / d - 1) < 0.1}; "
          f"of q.k / sqrt(d) within 10 % of 1: {abs((dots / math.sqrt(d)).var().item() - 1) < 0.1}")
scores = torch.randn(1_000, 64, generator=generator)[:, None] @ torch.randn(1_000, 65, 64, generator=generator).transpose(1, 2)
print("unscaled, the largest of 65 weights is above 0.5 on average:", scores.softmax(-1).amax(-1).mean().item() > 0.5)
print("divided by sqrt(64), it is below 0.2 on average:", (scores / 8).softmax(-1).amax(-1).mean().item() < 0.2)

# %% [markdown]
# ### Exercise 8.3: Attention with a mask
#
# A language model must not look ahead: token $i$ may attend only to tokens $j \le i$ (a **causal**
# mask); padded sequences must hide their padding. Both are a boolean mask, True where query $i$ may
# attend to key $j$; a hidden key gets weight exactly 0, and rows still sum to 1. Write
# `masked_attention(q, k, v, mask)` without `F.scaled_dot_product_attention`. Predict first: what is
# row 0 of the weights under a causal mask?

# %%
import math

import torch


def masked_attention(q, k, v, mask):
    """Scaled dot-product attention with a mask: queries q (..., Tq, d), keys k (..., Tk, d), values
    v (..., Tk, dv), and a boolean mask that broadcasts to (..., Tq, Tk), True where query i may
    attend to key j (every query may attend to at least one key). A masked key gets weight exactly 0
    and each row of weights still sums to 1. Returns (output (..., Tq, dv), weights (..., Tq, Tk)).
    F.scaled_dot_product_attention is off limits."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_masked_attention(masked_attention)

# %% [markdown]
# ## Multi-head self-attention
#
# **Multi-head** attention looks in $h$ ways at once: one projection `qkv` ($D \to 3D$) makes all
# queries, keys and values, each head runs the formula on its own $d = D / h$ columns, and an output
# projection $W_o$ mixes the heads put side by side:
#
# $$\operatorname{MSA}(X) = [\operatorname{head}_1, \dots, \operatorname{head}_h]\, W_o, \qquad
# \operatorname{head}_j = \operatorname{Attention}(Q_j, K_j, V_j).$$
#
# Its parameters, $3D^2 + 3D$ plus $D^2 + D$, do not depend on $h$. The course's
# `MultiHeadSelfAttention` ($D = 16$, 4 heads) against the formula, head by head, and against
# `nn.MultiheadAttention`, whose `in_proj_weight` is our `qkv` weight:

# %%
cnncourse.seed_everything(0)
ours = MultiHeadSelfAttention(dim=16, num_heads=4)
theirs = nn.MultiheadAttention(16, 4, batch_first=True)
with torch.no_grad():
    theirs.in_proj_weight.copy_(ours.qkv.weight)
    theirs.in_proj_bias.copy_(ours.qkv.bias)
    theirs.out_proj.weight.copy_(ours.proj.weight)
    theirs.out_proj.bias.copy_(ours.proj.bias)
x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    out, attention_weights = ours(x, return_attention=True)
    q, k, v = ours.qkv(x).chunk(3, dim=-1)
    heads = []
    for j in range(4):
        part = slice(4 * j, 4 * j + 4)
        heads.append(torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(4), dim=-1) @ v[..., part])
    by_hand = ours.proj(torch.cat(heads, dim=-1))
    expected, expected_weights = theirs(x, x, x, average_attn_weights=False)
print(f"output {tuple(out.shape)}, attention weights {tuple(attention_weights.shape)} (images, heads, queries, keys)")
print("equal to the formula, head by head:", torch.allclose(out, by_hand, atol=1e-6))
print("equal to nn.MultiheadAttention: output", torch.allclose(out, expected, atol=1e-5),
      "| weights", torch.allclose(attention_weights, expected_weights, atol=1e-5))
print(f"parameters: {cnncourse.count_parameters(ours):,} = 4 * 16**2 + 4 * 16 = {4 * 16 ** 2 + 4 * 16:,}")

# %% [markdown]
# ## A Transformer block
#
# A block adds two things to its input, each computed from a normalised copy (**pre-norm**): the
# attention, then an MLP applied to each token alone ($D \to M \to D$, usually $M = 4D$, GELU between):
#
# $$x' = x + \operatorname{MSA}(\operatorname{LN}(x)), \qquad x'' = x' + \operatorname{MLP}(\operatorname{LN}(x')).$$
#
# The additions are residual connections, as in ResNet. **LayerNorm** normalises each token over its
# own $D$ numbers ($2D$ parameters), not a channel over the batch; the **GELU** $x\,\Phi(x)$ is a
# smooth ReLU. Both by formula, then the course's `TransformerBlock` against the formulas above:

# %%
tokens = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3)) * 3 + 1
mean, var = tokens.mean(dim=-1, keepdim=True), tokens.var(dim=-1, unbiased=False, keepdim=True)
print("LayerNorm by formula equals nn.LayerNorm:",
      torch.allclose((tokens - mean) / torch.sqrt(var + 1e-6), nn.LayerNorm(16, eps=1e-6)(tokens), atol=1e-5))
print("GELU x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2 equals nn.GELU:",
      torch.allclose(tokens * (1 + torch.erf(tokens / math.sqrt(2))) / 2, nn.GELU()(tokens), atol=1e-6))
cnncourse.seed_everything(0)
block = TransformerBlock(dim=16, num_heads=4, mlp_dim=64)
print(block)
with torch.no_grad():
    after_attention = tokens + block.attn(block.norm1(tokens))
    by_formula = after_attention + block.mlp(block.norm2(after_attention))
    print("block(x) equals x'' of the formula:", torch.allclose(block(tokens), by_formula, atol=1e-6))

# %% [markdown]
# **Its parameters.** Two LayerNorms, the attention and the MLP ($DM + M$ and $MD + D$):
#
# $$4D^2 + 2DM + 9D + M, \qquad = 12 D^2 + 13 D \ \text{ for } M = 4D .$$
#
# Against PyTorch for `vit_tiny`'s block and ViT-B/16's, on the meta device (shapes only):

# %%
def block_formula(D, M):
    return 4 * D * D + 2 * D * M + 9 * D + M


for D, heads, M in ((128, 4, 512), (768, 12, 3072)):
    with torch.device("meta"):
        counted = cnncourse.count_parameters(TransformerBlock(D, heads, M))
    print(f"D = {D}, M = {M}: by formula {block_formula(D, M):,}, PyTorch {counted:,}, "
          f"equal: {block_formula(D, M) == counted}")

# %% [markdown]
# ### Exercise 8.4: The parameters of a gated block
#
# Later Transformers often drop the qkv bias and use a **gated** MLP (SwiGLU, as in LLaMA): two
# layers $D \to M$ whose outputs are multiplied element by element, then $M \to D$. Write
# `gated_block_params(dim, mlp_dim, qkv_bias)`. Then, unchecked: for $D = 128$, how wide may the gated
# MLP be to keep the parameters of our block with $M = 512$?

# %%
def gated_block_params(dim, mlp_dim, qkv_bias):
    """The number of parameters of a pre-norm Transformer block of width dim with two changes found in
    later models: the qkv projection (dim -> 3 * dim) has a bias only if qkv_bias is True (the
    output projection dim -> dim always has one), and the MLP is gated (SwiGLU): two layers
    dim -> mlp_dim whose outputs are multiplied element by element, then mlp_dim -> dim, all three
    with biases. Two LayerNorms of width dim, as in the lesson's block."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_gated_block_params(gated_block_params)

# %% [markdown]
# ## The whole ViT and its parameters
#
# The course's `vit_tiny`: 4 x 4 patches (65 tokens), $D = 128$, $L = 4$ blocks of 4 heads,
# $M = 512$, a last LayerNorm, and a dense head on the class token. Its parts by formula against
# PyTorch, then the shapes of two images through it: the tokens keep their number and width, and only
# the class token reaches the head.

# %%
D, L, M, C, K, N = 128, 4, 512, 3, 10, 64
parts = {
    "patch embedding  C P^2 D + D": (C * P * P * D + D, vit.patch_embed),
    "class token      D": (D, vit.cls_token),
    "position emb.    (N + 1) D": ((N + 1) * D, vit.pos_embed),
    "4 blocks         L (4 D^2 + 2 D M + 9 D + M)": (L * block_formula(D, M), vit.blocks),
    "final LayerNorm  2 D": (2 * D, vit.norm),
    "head             D K + K": (D * K + K, vit.head),
}
for part, (formula, piece) in parts.items():
    counted = piece.numel() if isinstance(piece, nn.Parameter) else cnncourse.count_parameters(piece)
    print(f"{part:<48} {formula:>9,}  PyTorch: {counted:>9,}")
total = sum(formula for formula, _ in parts.values())
print(f"{'total':<48} {total:>9,}  PyTorch: {cnncourse.count_parameters(vit):>9,}")
print(f"ResNet-56 (notebook 3's CIFAR ResNet, 3 x 9 basic blocks): {cnncourse.count_parameters(get_model('resnet56')):,}")

# %%
shapes = []
hooks = [module.register_forward_hook(lambda module, inputs, output, name=name: shapes.append((name, output.shape)))
         for name, module in [("patch_embed", vit.patch_embed), *[(f"blocks.{i}", b) for i, b in enumerate(vit.blocks)],
                              ("norm", vit.norm), ("head", vit.head)]]
with torch.no_grad():
    vit(images[:2])
for hook in hooks:
    hook.remove()
print(f"{'input':<12} {tuple(images[:2].shape)}")
for name, shape in shapes:
    print(f"{name:<12} {tuple(shape)}")

# %% [markdown]
# **The work per image.** A block's dense layers cost $T (4D^2 + 2DM)$ multiply-adds for $T$ tokens,
# attention $2 T^2 D$ more ($Q K^\top$ and the weighted sum of values). Halve the patch size and $T$
# grows fourfold, the attention products sixteenfold, the parameters hardly at all:

# %%
for patch in (4, 2):
    T = (32 // patch) ** 2 + 1
    dense, products = L * T * (4 * D * D + 2 * D * M), L * 2 * T * T * D
    print(f"patches of {patch}: {T} tokens, blocks' dense layers {dense / 1e6:.1f} M + attention products "
          f"{products / 1e6:.1f} M = {(dense + products) / 1e6:.1f} M multiply-adds per image")

# %% [markdown]
# ## torchvision's ViT-B/16
#
# The paper's ViT-B/16 (224-pixel images, $P = 16$, $D = 768$, 12 blocks of 12 heads, $M = 3072$) is
# torchvision's `vit_b_16`. The course's `VisionTransformer` with these settings has the same layers
# under other names (`conv_proj` is our `patch_embed.proj`...), so torchvision's weights, renamed,
# load into it and give the same logits, checked on a small configuration (its head, zero at the
# start, gets random weights first):

# %%
def torchvision_to_ours(state, depth):
    """torchvision's VisionTransformer state_dict with our names."""
    names = {"conv_proj": "patch_embed.proj", "class_token": "cls_token", "encoder.pos_embedding": "pos_embed",
             "encoder.ln": "norm", "heads.head": "head"}
    for i in range(depth):
        names.update({f"encoder.layers.encoder_layer_{i}.{theirs}": f"blocks.{i}.{ours}" for theirs, ours in [
            ("ln_1", "norm1"), ("self_attention.in_proj_", "attn.qkv."), ("self_attention.out_proj", "attn.proj"),
            ("ln_2", "norm2"), ("mlp.0", "mlp.0"), ("mlp.3", "mlp.2")]})
    renamed = {}
    for key, value in state.items():
        prefix = max((p for p in names if key.startswith(p)), key=len)
        renamed[names[prefix] + key[len(prefix):]] = value
    return renamed


with torch.device("meta"):
    torchvision_b16 = torchvision.models.vit_b_16()
    ours_b16 = VisionTransformer(num_classes=1000, image_size=224, patch_size=16, dim=768, depth=12, num_heads=12,
                                 mlp_dim=3072)
b16_formula = 3 * 16 * 16 * 768 + 768 + 768 + 197 * 768 + 12 * block_formula(768, 3072) + 2 * 768 + 768 * 1000 + 1000
print(f"ViT-B/16: torchvision {cnncourse.count_parameters(torchvision_b16):,} parameters, "
      f"ours {cnncourse.count_parameters(ours_b16):,}, by formula {b16_formula:,}")
print("ViT-B/16's weights fit ours (names and shapes):",
      {k: v.shape for k, v in torchvision_to_ours(torchvision_b16.state_dict(), 12).items()}
      == {k: v.shape for k, v in ours_b16.state_dict().items()})
cnncourse.seed_everything(0)
small_theirs = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=4,
                                                    hidden_dim=32, mlp_dim=64, num_classes=10).eval()
nn.init.normal_(small_theirs.heads.head.weight, std=0.1)
small_ours = VisionTransformer(num_classes=10, image_size=32, patch_size=4, dim=32, depth=2, num_heads=4,
                               mlp_dim=64).eval()
small_ours.load_state_dict(torchvision_to_ours(small_theirs.state_dict(), depth=2))
with torch.no_grad():
    print("the same logits as torchvision's VisionTransformer with its weights:",
          torch.allclose(small_ours(images), small_theirs(images), atol=1e-5))

# %% [markdown]
# ## Training the ViT
#
# AdamW (learning rate 0.001, weight decay 0.05, one-cycle), random crops and flips, a tenth of the
# training images held out. The laptop scale: 2 epochs on 45,000 images, about 4 minutes on a 2-core CPU;
# **target: at least 35 % test accuracy** (chance: 10 %). The full scale: 10 epochs, about half an hour,
# about 66 % (the recorded run below), resumable from a checkpoint. The sample scale: 5 epochs on 320
# images, under a minute, and 15 % of its 200 test images (chance plus two standard errors).

# %% tags=["nbval-ignore-output"]
RECIPE = dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="onecycle")
EPOCHS = cnncourse.at_scale(sample=5, laptop=2, full=10)


def train(seed=0, **options):
    """vit_tiny (with `options` for get_model, e.g. patch_size=2) trained with the recipe; its history."""
    cnncourse.seed_everything(seed)
    model = get_model("vit_tiny", **options)
    checkpoint = None if QUICK else RUNS / f"cifar10-vit_tiny-{options.get('patch_size', 4)}px-s{seed}.pt"
    return model, fit(model, train_loader, test_loader, epochs=EPOCHS, device=DEVICE, val_data=val_loader,
                      checkpoint=checkpoint, resume=checkpoint is not None, **RECIPE)


vit_live, history = train()
print(f"{train_loader.num_samples:,} training images, {len(history)} epochs in {sum(history.seconds):.0f} s; "
      f"validation accuracy after each epoch: " + ", ".join(f"{100 * a:.1f} %" for a in history.val_acc))
print(f"test accuracy at the end: {100 * history.test_acc[-1]:.1f} % ({DATA_NAME})")

# %%
# the sample's 15 %: on 200 test images chance's standard error is sqrt(0.1 * 0.9 / 200) = 2.1 points
TARGET, LIMIT = cnncourse.at_scale(sample=(0.15, 300), laptop=(0.35, 300), full=(0.60, float("inf")))
print("target reached (test accuracy and time):", history.test_acc[-1] >= TARGET and sum(history.seconds) <= LIMIT)
print("learned: training accuracy of the last epoch above the first's:", history.train_acc[-1] > history.train_acc[0])

# %% [markdown]
# ## Against a strong CNN on the same CPU
#
# Is the ViT better than a CNN? Against ResNet-56, a network of its size trained with this recipe for
# the same half hour on one thread, it ends within a point ([the lab](labs/08_vit_experiments.ipynb)).
# Lesson 9's speedrun network is a CNN trained with a recipe tuned for speed. It and a longer ViT run
# were recorded under the same conditions: two threads of the same model of 2-core CPU, bf16 autocast,
# nothing else running, the course's JPEG copy of CIFAR-10. The ViT ran this lesson's recipe for a fixed
# 20 epochs on 45,000 images (its validation accuracy after each); the speedrun network trained on all
# 50,000 images, three seeds (their test accuracy with one view):

# %%
vit_long = reference.load_result("vit-long/vit_tiny-20ep-s0")
strong = reference.seed_runs("speedrun-cifar10/recipe")
vit_minutes = torch.tensor([h["seconds"] for h in vit_long["history"]]).cumsum(0) / 60
strong_minutes = sorted(run["train_seconds"] / 60 for run in strong)[1]              # the median of three
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(vit_minutes, [100 * h["val_acc"] for h in vit_long["history"]], marker="o", ms=3,
        label="vit_tiny: validation after each epoch")
ax.plot(vit_minutes[-1], 100 * vit_long["test_accuracy"], "s", label="vit_tiny: test, at the end")
ax.plot([run["train_seconds"] / 60 for run in strong], [100 * run["test_accuracy_no_tta"] for run in strong],
        "*", ms=11, label="speedrun CNN: test, 3 seeds")
ax.set_xlabel("training time, minutes (two threads, bf16, quiet CPU)")
ax.set_ylabel("accuracy, %")
ax.set_title("Recorded: the ViT against the speedrun CNN, CIFAR-10 (JPEG copy)", fontsize=10)
ax.grid(alpha=0.3)
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()
vit_then = [h["val_acc"] for h, m in zip(vit_long["history"], vit_minutes) if m <= strong_minutes]
strong_tests = ", ".join(f"{100 * run['test_accuracy_no_tta']:.2f}" for run in strong)
strong_times = ", ".join(f"{run['train_seconds'] / 60:.1f}" for run in strong)
print(f"speedrun CNN ({strong[0]['num_parameters']:,} parameters): test accuracy with one view {strong_tests} %, "
      f"in {strong_times} min")
print(f"vit_tiny ({vit_long['num_parameters']:,} parameters): {vit_long['epochs']} epochs in "
      f"{vit_minutes[-1]:.1f} min, validation {100 * vit_long['val_accuracy']:.2f} %, "
      f"test {100 * vit_long['test_accuracy']:.2f} %")
print(f"vit_tiny after {len(vit_then)} epochs, within the CNN's median time ({strong_minutes:.1f} min): "
      f"validation {100 * vit_then[-1]:.2f} %")
print("the CNN beats the ViT's end on test, in less time:",
      all(r["test_accuracy_no_tta"] > vit_long["test_accuracy"] for r in strong) and strong_minutes < float(vit_minutes[-1]))

# %% [markdown]
# **Reading the curve.** Within the CNN's ten minutes the ViT reaches about 61 % on validation, midway
# through its schedule (the lab's 10-epoch run, annealed, ended near 66 %); after twice that time, 20
# epochs, it ends near 73 % on test, still 17 points behind. The CNN gets through about a quarter more
# images per second (the lab): far too little to explain the gap, which is in what each learns from an
# image. Part of it is the recipe, tuned for speed in lesson 9 and plain here, and the CNN's 2.4 times as
# many parameters. Part may be the convolution's **inductive bias**: nearby pixels belong together, and
# a pattern means the same anywhere; the ViT must learn both from the data. These runs do not separate
# the parts. Dosovitskiy et al. found ViTs trained on ImageNet alone behind ResNets of their size, level
# or ahead only after pre-training on far more images; CIFAR-10's 50,000 are few.

# %% [markdown]
# ## What the ViT looks at, beside Grad-CAM
#
# The class token's row of a block's weights, averaged over heads and laid on the 8 x 8 grid, is an
# **attention map**: where the class token took information from. **Attention rollout** (Abnar and
# Zuidema, 2020) follows the flow through all blocks: each block's head-averaged weights $A$ get the
# identity for the residual connection, $\hat{A} = (A + I) / 2$, and the blocks are chained:
#
# $$R = \hat{A}_L \hat{A}_{L-1} \cdots \hat{A}_1, \qquad \text{map}_j = R_{0j}, \ j = 1, \dots, 64.$$
#
# For the first test image of each class, from the lab's two equal-time runs (the ViT's 10 epochs,
# ResNet-56's 4): the ViT's last-block map
# and rollout, beside Grad-CAM of ResNet-56's last stage (also 8 x 8) for its predicted class, each
# scaled to 0..1 on its own. Each cell is drawn over the pixels it stands for, as in notebook 7: a
# ViT token on its patch, centred on pixel $4i + 1.5$; a cell of ResNet-56's `layer3`, whose padded
# convolutions keep the centres, on pixel $4i$.

# %%
def rollout(attentions):
    """Attention rollout: (mean over heads + I) / 2 per block, multiplied with the last block on the left."""
    result = None
    for weights in attentions:
        a = (weights.mean(dim=1) + torch.eye(weights.shape[-1])) / 2
        result = a if result is None else a @ result
    return result


vit_trained = reference.load_model("vit-vs-resnet/vit_tiny-s0")
resnet_trained = reference.load_model("vit-vs-resnet/resnet56-s0")
GEOMETRY = {"vit_tiny": map_geometry([vit_trained.patch_embed.proj]),
            "resnet56": map_geometry([resnet_trained.conv1, resnet_trained.layer2[0].conv1,
                                      resnet_trained.layer3[0].conv1])}


def placed(maps, network):
    """(N, 8, 8) maps drawn on the 32 x 32 image by the network's geometry (notebook 7), each scaled to 0..1."""
    return place_heatmap(maps, (32, 32), *GEOMETRY[network])


first_of_class = {}
for batch, batch_labels in test_loader:
    for image, label in zip(batch.cpu(), batch_labels.tolist()):
        first_of_class.setdefault(label, image)
    if len(first_of_class) == len(CLASSES):
        break
x = torch.stack([first_of_class[label] for label in range(len(CLASSES))])
with torch.no_grad():
    preds = {"vit_tiny": vit_trained(x).argmax(dim=1), "resnet56": resnet_trained(x).argmax(dim=1)}
    attentions = vit_trained.attention_maps(x)
    last_block = attentions[-1].mean(dim=1)[:, 0, 1:].reshape(-1, 8, 8)
    rolled = rollout(attentions)
cam = LayerGradCam(resnet_trained, resnet_trained.layer3).attribute(x, target=preds["resnet56"],
                                                                    relu_attributions=True)[:, 0].detach()
print(f"attention weights: {len(attentions)} blocks of {tuple(attentions[0].shape)}; rollout {tuple(rolled.shape)}, "
      f"every row sums to 1: {torch.allclose(rolled.sum(-1), torch.ones(rolled.shape[:2]), atol=1e-5)}")
print(f"maps of 8 x 8: last block {tuple(last_block.shape)}, Grad-CAM of layer3 {tuple(cam.shape)}")
print("cell i centred on pixel jump * i + start, (jump, start):", GEOMETRY)

# %% tags=["nbval-ignore-output"]
pictures = to_pictures(x, test_loader)
rows = {"ViT: last block's\nclass-token attention": placed(last_block, "vit_tiny"),
        "ViT: attention\nrollout": placed(rolled[:, 0, 1:].reshape(-1, 8, 8), "vit_tiny"),
        "ResNet-56:\nGrad-CAM of layer3": placed(F.relu(cam), "resnet56")}
fig, axes = plt.subplots(1 + len(rows), len(x), figsize=(12.5, 6.0))
for j in range(len(x)):
    axes[0, j].imshow(pictures[j])
    axes[0, j].set_title(f"{CLASSES[j]}\nViT: {CLASSES[preds['vit_tiny'][j]]}\n"
                         f"ResNet: {CLASSES[preds['resnet56'][j]]}", fontsize=7)
    for row, maps in enumerate(rows.values(), start=1):
        axes[row, j].imshow(pictures[j].mean(dim=-1), cmap="gray", vmin=0, vmax=1)
        axes[row, j].imshow(maps[j], cmap="viridis", alpha=0.45, vmin=0, vmax=1)
for row, text in enumerate(["image (true class,\npredictions)", *rows]):
    axes[row, 0].text(-0.1, 0.5, text, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center",
                      fontsize=7)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("What the ViT and ResNet-56 look at (Grad-CAM: ResNet-56's predicted class; recorded runs, trained on "
             f"{DATA_NAME}; the first test image of each class)",
             fontsize=10)
fig.tight_layout()

# %% [markdown]
# **Reading the maps.** The last-block maps are small spots, some on the object (the horse, the dog's
# head), some at the bottom edge (airplane, ship): by then a token anywhere can carry what it
# gathered from the whole image. The rollout is broader; Grad-CAM covers larger regions. Grad-CAM
# follows one class's score, attention is the same whatever the class; neither proves why a network
# answered (notebook 7's masking test checks that).

# %% [markdown]
# ## Experiment: patches of 2 pixels instead of 4
#
# `train(seed, patch_size=2)` trains a `vit_tiny` with 257 tokens instead of 65 and nearly the same
# parameters. Predict from the multiply-adds above how much longer an epoch takes. Then train, after
# `cnncourse.set_scale("sample")`, patch sizes 4 and 2 with seeds 0 and 1 (minutes on a CPU) and record per run the
# seconds per epoch, the validation accuracy after each epoch and the final test accuracy. Is the gap
# between patch sizes larger than between two seeds? Was the time predicted right, and if not, what do
# multiply-adds leave out? What run would decide whether smaller patches help?

# %% [markdown]
# ## Summary
#
# * Patches become tokens through one convolution with kernel and stride $P$; a class token goes in
#   front and a position embedding is added, without which attention sees a set of patches.
# * Self-attention, $\operatorname{softmax}(Q K^\top / \sqrt{d})\, V$, takes weighted means of all
#   tokens; heads split the width and add no parameters.
# * A pre-norm block has $4D^2 + 2DM + 9D + M$ parameters; ours with ViT-B/16's settings takes
#   torchvision's weights. Its work grows as $T (4D^2 + 2DM) + 2T^2 D$ with the tokens.
# * On the same CPU and threads, a CNN built for speed reaches about 90 % in ten minutes; `vit_tiny`
#   ends near 73 % after twenty: the recipe, the size and perhaps a convolution's built-in assumptions.
# * Attention maps show where the class token looked; Grad-CAM what raised one class's score.
