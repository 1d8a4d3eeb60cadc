# %% [markdown]
# # 8. A Vision Transformer against ResNet
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/08_vision_transformer.ipynb)
#
# **What you will learn.** The galaxy article of notebook 6 ends wanting to try a Vision Transformer
# (ViT). This notebook builds one from its pieces and puts it against a ResNet of the same size. An
# image is cut into patches, each patch becomes a vector (a token), a class token and position
# embeddings are added, and Transformer blocks of multi-head self-attention and small MLPs mix the
# tokens. Each piece is written from its formula and checked in the cell: the patch embedding
# against a convolution, self-attention against PyTorch's `scaled_dot_product_attention` and
# `nn.MultiheadAttention`, the parameters of every part against PyTorch, and the whole model against
# torchvision's `VisionTransformer`, from the paper's ViT-B/16 down to ours. Then the course's
# `vit_tiny` (0.81 million parameters) and ResNet-56 (0.86 million) train on CIFAR-10 with the same
# recipe for the same time, and what each looks at is drawn side by side: the ViT's attention maps
# beside the ResNet's Grad-CAM (notebook 7).
#
# Course: 1 theory · 2 LeNet on CIFAR-10 · 3 ResNet on MNIST · 4 ResNet-50 on Fashion-MNIST ·
# 5 VGG16 on Galaxy10 · 6 ResNet-50 on Galaxy10 · 7 what the network looks at · 8 a Vision Transformer ·
# 9 speedrun.

# %%
# Setup. In Google Colab: fetch the course (package, notebooks, recorded results) and install it.
# Anywhere else this does nothing: install once with `pip install -e ".[dev]"` in the repository.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    if not os.path.isdir("/content/cnncourse"):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/cnncourse/cnncourse",
                        "/content/cnncourse"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/cnncourse"], check=True)
    sys.path.insert(0, "/content/cnncourse")
    os.chdir("/content/cnncourse/notebooks")

# %% [markdown]
# **Quick mode or the real experiment.** With `CNNCOURSE_QUICK=1` in the environment (the test
# suite and the notebook builder set it) every data set call returns a small real sample shipped
# with the package: 2,000 training and 200 test images of CIFAR-10. Everything up to the training
# section needs no data beyond a few images and runs the same in both modes. The live comparison
# then trains the ViT for 5 passes and ResNet-56 for 2 passes over 320 of those images - a **quick
# sample**, labelled so, that shows the code runs and learns, not which network is better. The
# attention maps and Grad-CAM are drawn, in both modes, from the two recorded networks, whose
# weights ship with the course (from the live ones if those files are missing). Without quick mode (the
# default when you open the notebook in Jupyter or Colab) the notebook downloads CIFAR-10 (about
# 170 MB) and trains both networks for as many epochs as the recorded runs: use a GPU for that. To
# choose in the notebook itself, call `cnncourse.set_quick_mode(True)` or
# `cnncourse.set_quick_mode(False)` at the top of the next cell; everything below reads `QUICK`.

# %% tags=["nbval-ignore-output"]
import inspect
import math
import time
from importlib.metadata import version
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam
from torch import nn

import cnncourse
from cnncourse import reference
from cnncourse.data import dataset_info
from cnncourse.fastdata import fast_loaders
from cnncourse.models import get_model
from cnncourse.models.vit import MultiHeadSelfAttention, PatchEmbedding, TransformerBlock, VisionTransformer
from cnncourse.train import fit

QUICK = cnncourse.quick_mode()
DEVICE = cnncourse.get_device()
RUNS = Path("runs")               # checkpoints of the real runs (quick mode writes none)
if QUICK:
    torch.set_num_threads(1)      # batches this small train fastest on one thread, also on a busy CPU
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| captum", version("captum"),
      "| quick mode:", QUICK)
print(cnncourse.describe_device())

# %% [markdown]
# ## What a real run costs
#
# The first half of the notebook (the pieces and their checks) costs seconds on a CPU in either mode.
# The real comparison (quick mode off) trains the ViT and ResNet-56 on CIFAR-10, holding out a tenth of
# the training images for validation, and needs:
#
# * **download**: `cifar-10-python.tar.gz`, about 170 MB, once;
# * **time on a CPU**: the two recorded runs (see "Recorded results") took about half an hour each on
#   the course's 2-core CPU, one thread each, run side by side: 10 epochs of the ViT, 4 of ResNet-56,
#   a ratio chosen from a short timing of a few batches of each so that both get about the same
#   wall-clock time. The cell below times a few batches on your machine and estimates an epoch
#   from them: an estimate, not a measurement of a run;
# * **time on a GPU**: not measured yet;
# * **memory**: the training state of both networks, computed below; the activations of a batch are
#   not measured yet;
# * **accuracy to expect**: the recorded runs' (see "Recorded results" below).
#
# In real mode each training run writes a checkpoint to `runs/` after each epoch, and when its cell is
# run again it continues from the last finished epoch.

# %%
MODELS = ("vit_tiny", "resnet56")
REAL_EPOCHS = {"vit_tiny": 10, "resnet56": 4}                     # about the same time on one CPU thread
EPOCHS = {"vit_tiny": 5, "resnet56": 2} if QUICK else REAL_EPOCHS   # quick mode: 320 images, the same ratio
BATCH_SIZE = 64 if QUICK else 128
SUBSET = 320 if QUICK else None                                     # training images; None: all of them
RECIPE = dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="onecycle")
for name in MODELS:
    with torch.device("meta"):
        parameters = cnncourse.count_parameters(get_model(name))
    print(f"{name}: {parameters:,} parameters; training state (float32 weights, gradients and AdamW's two "
          f"moments) {16 * parameters / 1e6:.1f} MB; {REAL_EPOCHS[name]} epochs in the real run")

# %% tags=["nbval-ignore-output"]
def seconds_per_batch(model, batch_size, repeats=2):
    """The time of one training step (forward, backward, AdamW) on random images: the fastest of
    `repeats` steps after a warm-up step (the least disturbed by other programs)."""
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


threads = torch.get_num_threads()
torch.set_num_threads(1)
for name in MODELS:
    cnncourse.seed_everything(0)
    per_image = seconds_per_batch(get_model(name), 128) / 128
    print(f"{name}: estimated {45_000 * per_image / 60:.1f} min per epoch of 45,000 images on one CPU thread of "
          f"this machine, {REAL_EPOCHS[name]} epochs: about {REAL_EPOCHS[name] * 45_000 * per_image / 60:.0f} min "
          f"(an estimate: the faster of 2 timed batches of 128, after a warm-up)")
torch.set_num_threads(threads)
print("time on a GPU: not measured yet")

# %% [markdown]
# ## From the galaxy article's wish to a Vision Transformer
#
# The Transformer (Vaswani et al., 2017) was made for sentences: a sequence of word vectors (tokens),
# mixed by **self-attention**, in which every token looks at every other token and takes a weighted
# mean of what they carry. Dosovitskiy et al. (2021, "An Image is Worth 16x16 Words") applied it to
# images with as few changes as possible: cut the image into square patches, treat each patch as a
# word, and use the Transformer as it is. There is no convolution after the first step and no pooling;
# nothing in the architecture says that neighbouring pixels belong together. The next sections build
# the pieces one at a time, each from its formula, then the whole network.

# %% [markdown]
# ## Patches and their embedding
#
# An image of $C$ channels and $S \times S$ pixels is cut into non-overlapping patches of
# $P \times P$ pixels: $N = (S / P)^2$ patches, each flattened into a vector $x_p^i$ of $C P^2$
# numbers. A learned matrix $E$ ($D \times C P^2$) and bias $b$ turn each into a token of width $D$:
#
# $$z^i = E\, x_p^i + b, \qquad i = 1, \dots, N.$$
#
# For CIFAR-10 with $P = 4$: $N = (32 / 4)^2 = 64$ patches of $3 \cdot 16 = 48$ numbers each. The
# paper's ViT-B/16 cuts a 224-pixel image into $14^2 = 196$ patches of $3 \cdot 256 = 768$ numbers.
#
# Below, a few CIFAR-10 test images, normalised as for training, cut into patches from scratch: a
# `reshape` splits each side into (patch index, pixel within the patch), a `permute` brings the two
# patch indices to the front, and a last `reshape` flattens each patch. `F.unfold` does the same (it
# returns the patches as columns).

# %%
train_loader, val_loader, test_loader = fast_loaders("cifar10", batch_size=BATCH_SIZE, augment=True,
                                                     device=DEVICE, seed=0, val_fraction=0.1, subset=SUBSET)
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

# %% [markdown]
# One image and its 64 patches, in the order the tokens take (row by row):

# %%
def to_pictures(batch, loader):
    """Normalised images (N, 3, H, W) back to 0..1 for imshow: (N, H, W, 3)."""
    mean = torch.tensor(loader.mean).view(1, -1, 1, 1)
    std = torch.tensor(loader.std).view(1, -1, 1, 1)
    return (batch.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


picture = to_pictures(images[:1], test_loader)[0]
fig = plt.figure(figsize=(7.5, 3.4))
fig.text(0.71, 0.93, "its 64 patches of 4 x 4 pixels, tokens 1 to 64", ha="center", fontsize=9)
whole = fig.add_axes([0.02, 0.1, 0.36, 0.8])
whole.imshow(picture)
whole.set_title(f"test image 0: {CLASSES[labels[0]]} (32 x 32)", fontsize=9)
whole.axis("off")
for index in range(64):
    row, column = divmod(index, 8)
    ax = fig.add_axes([0.45 + column * 0.066, 0.79 - row * 0.098, 0.06, 0.088])
    ax.imshow(picture[4 * row:4 * row + 4, 4 * column:4 * column + 4])
    ax.set_xticks([])
    ax.set_yticks([])

# %% [markdown]
# Multiplying every flattened patch by the same matrix $E$ is what a convolution with kernel size
# and stride $P$ does: its window visits each patch once and takes a weighted sum of its $C P^2$
# numbers per output channel, with weights that are $E$ reshaped to $(D, C, P, P)$. So the course's
# `PatchEmbedding` is one `nn.Conv2d(C, D, kernel_size=P, stride=P)`, whose $D \times 8 \times 8$
# output is flattened to 64 tokens. Checked against the formula, with the convolution's own weights:

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
# ### Exercise 8.1: Images cut into patches
#
# Write `patchify(images, patch_size)`: a batch $(N, C, H, W)$ cut into non-overlapping
# $P \times P$ patches in row-major order, each flattened in $(C, P, P)$ order, shape
# $(N, HW / P^2, C P^2)$. The check includes an image that is not square.

# %%
import torch


def patchify(images, patch_size):
    """Cut images (N, C, H, W) into non-overlapping patch_size x patch_size patches, in row-major
    order (left to right along the top row of patches first), each flattened in (C, P, P) order -
    the order of a convolution's weight. Returns (N, number of patches, C * P * P)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_patchify(patchify)

# %% [markdown]
# ## The class token and the position embedding
#
# Two learned additions turn the $N$ patch tokens into the Transformer's input. A **class token**
# $x_\text{class}$, one more learned vector of width $D$, is put in front: after the last block its
# vector is the one the classifier reads, a summary that every block could fill by attending to the
# patches (BERT's `[CLS]` token does the same for sentences). And a learned **position embedding**
# $E_\text{pos}$, one row of width $D$ for each of the $N + 1$ places, is added, so that a token
# carries where its patch was:
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
# **Why positions must be added.** Self-attention (next section) compares every token with every
# other and takes weighted means; nothing in it depends on the order of the tokens. Shuffle the
# patch tokens, and every output is the same, only shuffled the same way: the blocks see a *set* of
# patches. Without a position embedding the class token's output - all the classifier reads - would
# be the same for an image and for any shuffle of its patches. Checked on the model's four blocks:

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
# A convolution knows neighbourhoods by construction: its 3 x 3 window only ever sees neighbouring
# pixels, at every place the same way. The ViT must learn from the data which positions are near
# which, in $E_\text{pos}$ - the first of the things it has to learn that a CNN is given.

# %% [markdown]
# ### Exercise 8.2: The class token and the position embedding
#
# Write `embed_tokens(patch_tokens, cls_token, pos_embed)`: the class token $(1, 1, D)$ repeated
# for every image and put in front of the patch tokens $(N, T, D)$, then the position embedding
# $(1, T + 1, D)$ added.

# %%
import torch


def embed_tokens(patch_tokens, cls_token, pos_embed):
    """The Transformer's input: the class token cls_token (1, 1, D), repeated for every image, put in
    front of the patch tokens patch_tokens (N, T, D), then the position embedding pos_embed
    (1, T + 1, D) added. Returns (N, T + 1, D)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_embed_tokens(embed_tokens)

# %% [markdown]
# ## Self-attention by formula
#
# Self-attention makes three vectors of every token $x_i$ with three learned matrices: a **query**
# $q_i = W_q x_i$ (what it looks for), a **key** $k_i = W_k x_i$ (what it offers to be found by) and
# a **value** $v_i = W_v x_i$ (what it passes on). Token $i$ gives token $j$ the weight
# $a_{ij} = \operatorname{softmax}_j(q_i \cdot k_j / \sqrt{d})$ - the softmax over all $j$, so each
# row of weights is positive and sums to 1 - and its output is the weighted mean of the values. For
# all tokens at once, with the queries, keys and values as rows of $Q$, $K$, $V$:
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V .$$
#
# From scratch on 5 random tokens of width 8, against PyTorch's `F.scaled_dot_product_attention`:

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
# **Why divide by $\sqrt{d}$.** If the $d$ components of a query and a key are independent with mean
# 0 and variance 1, their dot product $q \cdot k = \sum_m q_m k_m$ is a sum of $d$ terms of variance
# 1: its variance is $d$. Wide tokens would then give scores in the tens, and the softmax of such
# scores is nearly one-hot - one token takes almost all the weight, and the gradient through the
# softmax almost vanishes. Dividing by $\sqrt{d}$ brings the variance back to 1, whatever $d$. Checked
# on 10,000 random pairs, and on the softmax over 65 keys (as many as the ViT's tokens) at $d = 64$:

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
# ### Exercise 8.3: Scaled dot-product attention
#
# Write `attention(q, k, v)` from the formula, for any leading batch axes: it returns the output and
# the weights. The queries and the keys need not be equally many, and the values may have another
# width than the keys (the check tries both); `F.scaled_dot_product_attention` is off limits.

# %%
import math

import torch


def attention(q, k, v):
    """Scaled dot-product attention, from the formula: queries q (..., Tq, d), keys k (..., Tk, d),
    values v (..., Tk, dv). Returns (output, weights): weights = softmax(q k^T / sqrt(d)) over the
    keys, shape (..., Tq, Tk), and output = weights v, shape (..., Tq, dv)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_attention(attention)

# %% [markdown]
# ## Multi-head self-attention
#
# With one set of attention weights, a token can look in one way only: one weighted mean of the
# values. **Multi-head** attention looks in several ways at once. It splits
# the width $D$ into $h$ heads of $d = D / h$: the queries, keys and values of the whole width are
# made by one projection (`qkv`, $D \to 3D$), each head runs the formula above on its own slice of
# $d$ columns, the heads' outputs are put side by side again (width $D$) and an output projection
# $W_o$ mixes them:
#
# $$\operatorname{MSA}(X) = [\operatorname{head}_1, \dots, \operatorname{head}_h]\, W_o, \qquad
# \operatorname{head}_j = \operatorname{Attention}(Q_j, K_j, V_j).$$
#
# The parameters are $3D^2 + 3D$ (qkv) plus $D^2 + D$ ($W_o$), whatever $h$: the heads divide the
# width, they do not add weights. The course's module, as it is written in `cnncourse/models/vit.py`:

# %%
print(inspect.getsource(MultiHeadSelfAttention.forward))

# %% [markdown]
# Checked twice on random tokens (2 images, 5 tokens, $D = 16$, 4 heads): against the formula, head by
# head, and against PyTorch's `nn.MultiheadAttention` given the same weights. PyTorch keeps $W_q$,
# $W_k$, $W_v$ stacked in one `in_proj_weight` of shape $(3D, D)$, in that order - exactly our `qkv`
# layer - and $W_o$ in `out_proj`. Its weights, with `average_attn_weights=False`, are per head.

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
# A block adds two things to its input, each computed from a normalised copy of it (the **pre-norm**
# layout of the ViT paper): first the multi-head self-attention, then a small MLP applied to each
# token on its own (width $D \to M \to D$, $M = 4D$ usually, with a GELU between):
#
# $$x' = x + \operatorname{MSA}(\operatorname{LN}(x)), \qquad x'' = x' + \operatorname{MLP}(\operatorname{LN}(x')).$$
#
# The additions are residual connections, as in ResNet (notebook 3): each block learns a change to
# the tokens, and the identity is easy. Attention is where tokens exchange information; the MLP works
# on each token alone.

# %% [markdown]
# **LayerNorm** normalises each token over its own $D$ numbers, not a channel over the batch as
# BatchNorm does (notebook 2): $\operatorname{LN}(x) = \gamma \odot (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta$
# with $\mu$ and $\sigma^2$ the mean and variance of that token's components ($\epsilon = 10^{-6}$ in
# the ViT). It does not depend on the other images of the batch, and it has $2D$ parameters. The
# **GELU** is $x\,\Phi(x)$, $\Phi$ the standard normal distribution function: a smooth ReLU. Both by
# formula, against PyTorch:

# %%
tokens = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3)) * 3 + 1
norm = nn.LayerNorm(16, eps=1e-6)
mean, var = tokens.mean(dim=-1, keepdim=True), tokens.var(dim=-1, unbiased=False, keepdim=True)
print("LayerNorm by formula equals nn.LayerNorm:",
      torch.allclose((tokens - mean) / torch.sqrt(var + 1e-6), norm(tokens), atol=1e-5))
print("GELU x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2 equals nn.GELU:",
      torch.allclose(tokens * (1 + torch.erf(tokens / math.sqrt(2))) / 2, nn.GELU()(tokens), atol=1e-6))

# %% [markdown]
# The course's block, `TransformerBlock`, and the two formulas above written out on its own layers:

# %%
cnncourse.seed_everything(0)
block = TransformerBlock(dim=16, num_heads=4, mlp_dim=64)
print(block)
with torch.no_grad():
    after_attention = tokens + block.attn(block.norm1(tokens))
    by_formula = after_attention + block.mlp(block.norm2(after_attention))
    print("block(x) equals x'' of the formula:", torch.allclose(block(tokens), by_formula, atol=1e-6))

# %% [markdown]
# **Its parameters.** Two LayerNorms ($2 \cdot 2D$), the attention ($3D^2 + 3D$ and $D^2 + D$) and
# the MLP ($DM + M$ and $MD + D$):
#
# $$4D^2 + 2DM + 9D + M, \qquad = 12 D^2 + 13 D \ \text{ for } M = 4D .$$
#
# Against PyTorch for the block of `vit_tiny` ($D = 128$, $M = 512$) and of ViT-B/16
# ($D = 768$, $M = 3072$), built on the meta device (shapes only, no memory):

# %%
def block_formula(D, M):
    return 4 * D * D + 2 * D * M + 9 * D + M


for D, heads, M in ((128, 4, 512), (768, 12, 3072)):
    with torch.device("meta"):
        counted = cnncourse.count_parameters(TransformerBlock(D, heads, M))
    print(f"D = {D}, M = {M}: by formula {block_formula(D, M):,}, PyTorch {counted:,}, "
          f"equal: {block_formula(D, M) == counted}; 12 D^2 + 13 D = {12 * D * D + 13 * D:,}")

# %% [markdown]
# ### Exercise 8.4: A Transformer block's parameters by formula
#
# Write `block_params(dim, num_heads, mlp_dim)`: the number of parameters of one block. (One of the
# three arguments does not change the answer.)

# %%
def block_params(dim, num_heads, mlp_dim):
    """The number of parameters of one pre-norm Transformer block of width dim: LayerNorm,
    multi-head self-attention (a qkv projection dim -> 3 * dim and an output projection
    dim -> dim, with biases), LayerNorm, and an MLP dim -> mlp_dim -> dim (with biases)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_block_params(block_params)

# %% [markdown]
# ## The whole ViT and its parameters
#
# The course's `vit_tiny`: patches of 4 x 4 pixels (64 tokens and the class token), width
# $D = 128$, $L = 4$ blocks of 4 heads ($d = 32$), MLP width $M = 512$; after the blocks a last
# LayerNorm, and a dense layer on the class token's vector gives the 10 logits. Its parts by formula,
# with $C$ input channels, $N$ patches and $K$ classes, against PyTorch:

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
resnet56_parameters = cnncourse.count_parameters(get_model("resnet56"))
print(f"ResNet-56 (notebook 3's CIFAR ResNet, 3 x 9 basic blocks): {resnet56_parameters:,} parameters; "
      f"the ViT has {100 * (1 - total / resnet56_parameters):.1f} % fewer")

# %% [markdown]
# Of the CIFAR ResNets, ResNet-56 is the closest in size (ResNet-44 has 661,338 parameters,
# ResNet-110 1,730,714). The shape of a batch of two images through the ViT: the tokens keep their
# number and width through every block, and only the class token's vector reaches the head.

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
# **Same size, not the same work.** Per image, a block's dense layers cost $T (4D^2 + 2DM)$
# multiply-adds for its $T = 65$ tokens, and attention $2 T^2 D$ more ($Q K^\top$ and the weighted
# sum of the values). ResNet-56 uses each of its 3 x 3 filters at every position of a 32 x 32, 16 x 16
# or 8 x 8 map, so its few weights are used many more times. Counted with hooks on the convolution and
# dense layers (the attention products by formula, as they are not layers):

# %%
def multiply_adds(model, size=32):
    """Multiply-adds of one image through the model's convolution and dense layers, on the meta device."""
    total = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            total.append(output.numel() * module.in_channels // module.groups * module.kernel_size[0]
                         * module.kernel_size[1])
        elif isinstance(module, nn.Linear):
            total.append(output.numel() * module.in_features)

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model.to("meta").eval()(torch.zeros(1, 3, size, size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return sum(total)


with torch.device("meta"):
    vit_macs = multiply_adds(get_model("vit_tiny")) + L * 2 * 65 ** 2 * D
    resnet_macs = multiply_adds(get_model("resnet56"))
print(f"vit_tiny: {vit_macs / 1e6:.1f} M multiply-adds per image (of which attention products "
      f"{L * 2 * 65 ** 2 * D / 1e6:.1f} M); ResNet-56: {resnet_macs / 1e6:.1f} M; ratio {resnet_macs / vit_macs:.2f}")

# %% [markdown]
# So at the same size the ViT does fewer than half of ResNet-56's multiply-adds per image, and in the
# same time it sees more images: that is why "the same time" below means more epochs for the ViT.

# %% [markdown]
# ## torchvision's ViT-B/16
#
# The paper's base model, ViT-B/16, is in torchvision as `vit_b_16`: 16 x 16 patches of 224-pixel
# images (196 tokens and the class token), $D = 768$, 12 blocks of 12 heads, MLP width 3072,
# 1000 classes. The course's `VisionTransformer` class built with the same settings, and torchvision's,
# both on the meta device:

# %%
with torch.device("meta"):
    torchvision_b16 = torchvision.models.vit_b_16()
    ours_b16 = VisionTransformer(num_classes=1000, image_size=224, patch_size=16, dim=768, depth=12, num_heads=12,
                                 mlp_dim=3072)
b16_formula = 3 * 16 * 16 * 768 + 768 + 768 + 197 * 768 + 12 * block_formula(768, 3072) + 2 * 768 + 768 * 1000 + 1000
print(f"torchvision's vit_b_16: {cnncourse.count_parameters(torchvision_b16):,} parameters")
print(f"cnncourse's VisionTransformer with its settings: {cnncourse.count_parameters(ours_b16):,}; "
      f"by formula {b16_formula:,}")
print(f"tensors: torchvision {len(torchvision_b16.state_dict())}, ours {len(ours_b16.state_dict())}")

# %% [markdown]
# The counts are equal because the layers are the same; only the names differ. torchvision calls the
# patch embedding `conv_proj`, the class token `class_token`, the position embedding
# `encoder.pos_embedding`, and builds its attention from `nn.MultiheadAttention`, whose
# `in_proj_weight` is our `qkv.weight`; both use LayerNorm with $\epsilon = 10^{-6}$ and the exact
# GELU. So torchvision's weights, renamed, load into our model - checked on a small configuration
# (32-pixel images, 4 x 4 patches, $D = 32$, 2 blocks of 4 heads): the same logits. (torchvision
# starts its head at zero, which would make every logit 0 and the check empty; the head gets random
# weights first.)

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
print("ViT-B/16's weights fit too (names and shapes):",
      {k: v.shape for k, v in torchvision_to_ours(torchvision_b16.state_dict(), 12).items()}
      == {k: v.shape for k, v in ours_b16.state_dict().items()})

# %% [markdown]
# ## ViT against ResNet-56 on CIFAR-10
#
# The controlled experiment: the same data (CIFAR-10, a stratified tenth of the training images held
# out for validation), the same recipe (AdamW, peak learning rate 0.001, weight decay 0.05, one-cycle
# schedule, random crops and flips, batch 128), the same seed, and **the same wall-clock time**. Only
# the network differs - and with it the number of epochs, which is what equal time means: the ViT's
# epochs are cheaper (the multiply-adds above), so it makes more of them. Equal time is the fair
# budget for someone with one machine and an afternoon; equal epochs would give ResNet-56 more than
# twice the computer time.
#
# In quick mode both train on 320 images of the quick sample, in batches of 64, for 5 and 2 epochs,
# on one CPU thread: a quick sample that shows the code runs, not which network is better.

# %%
print(f"training: {train_loader.num_samples:,} images, validation: {val_loader.num_samples:,}, "
      f"test: {test_loader.num_samples:,}; batches of {BATCH_SIZE}")
print("recipe:", RECIPE, "| epochs:", EPOCHS)


def train(name):
    """One network of the comparison, with the recipe of both; real mode keeps a resumable checkpoint."""
    cnncourse.seed_everything(0)
    model = get_model(name)
    checkpoint = None if QUICK else RUNS / f"cifar10-{name}-vs.pt"
    history = fit(model, train_loader, test_loader, epochs=EPOCHS[name], device=DEVICE, val_data=val_loader,
                  checkpoint=checkpoint, resume=checkpoint is not None, **RECIPE)
    return model, history

# %% tags=["nbval-ignore-output"]
trained, histories = {}, {}
for name in MODELS:
    trained[name], histories[name] = train(name)
    history = histories[name]
    print(f"{name}: {len(history)} epochs in {sum(history.seconds):.0f} s "
          f"({sum(history.seconds) / len(history):.1f} s an epoch); validation accuracy after each epoch: "
          + ", ".join(f"{100 * a:.1f} %" for a in history.val_acc))
    print(f"  test accuracy at the end: {100 * history.test_acc[-1]:.1f} %" + (" (quick sample)" if QUICK else ""))

# %% [markdown]
# The validation accuracy of both against the seconds they trained, each point an epoch:

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(6, 3.6))
for name, history in histories.items():
    seconds = torch.tensor(history.seconds).cumsum(0).tolist()
    ax.plot(seconds, history.val_acc, marker="o", label=f"{name} ({len(history)} epochs)")
ax.set_xlabel("seconds since the start (evaluation included)")
ax.set_ylabel("validation accuracy")
ax.set_xlim(left=0)
ax.set_ylim(0, 1)
ax.legend()
where = f"quick sample: {train_loader.num_samples} images" if QUICK else "CIFAR-10"
ax.set_title(f"ViT against ResNet-56 in the same time ({where})", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## Recorded results
#
# The full comparison: two runs of `cnncourse train` recorded on this course's 2-core CPU, one
# thread each, side by side: `vit_tiny` for 10 epochs and `resnet56` for 4, on the JPEG copy of
# CIFAR-10 (a lossy copy: close to, not the same as, the original), with `--val-fraction 0.1` and
# the recipe above, so that both get about the same wall-clock time (`bash
# results/run_experiments.sh DATA 2 vit-vs-resnet`). The lines and the figure below are read from
# their `metrics.json` in `results/vit-vs-resnet/`: validation accuracy against the seconds spent
# training, and the test set evaluated once at the end.

# %%
recorded = {}
for name in MODELS:
    print(f"{name}: {reference.summary(f'vit-vs-resnet/{name}-s0', missing='not measured yet')}")
    try:
        recorded[name] = reference.load_result(f"vit-vs-resnet/{name}-s0")
    except FileNotFoundError:
        pass
if len(recorded) == len(MODELS):
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, run in recorded.items():
        minutes = [sum(h["seconds"] for h in run["history"][:i + 1]) / 60 for i in range(len(run["history"]))]
        ax.plot(minutes, [100 * h["val_acc"] for h in run["history"]], marker="o",
                label=f"{name} ({run['epochs']} epochs)")
    ax.set_xlabel("training time, minutes (one CPU thread)")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title("Recorded: ViT against ResNet-56 in about the same time, CIFAR-10 (JPEG copy)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plt.show()
    vit, resnet = recorded["vit_tiny"], recorded["resnet56"]
    val_gap = 100 * (vit["val_accuracy"] - resnet["val_accuracy"])
    test_gap = 100 * (vit["test_accuracy"] - resnet["test_accuracy"])
    print(f"ViT minus ResNet-56: {val_gap:+.2f} points on validation, {test_gap:+.2f} points on the test set")
    print("ResNet-56 ends ahead on validation:", resnet["val_accuracy"] > vit["val_accuracy"])
    print("  and on the test set:", resnet["test_accuracy"] > vit["test_accuracy"])
    print("the two end within one point of each other on both:", abs(val_gap) < 1 and abs(test_gap) < 1)
    same = min(vit["epochs"], resnet["epochs"])
    print(f"validation accuracy after {same} epochs: ViT {vit['history'][same - 1]['val_acc']:.1%}, "
          f"ResNet-56 {resnet['history'][same - 1]['val_acc']:.1%}")
    vit_minutes, resnet_minutes = (reference.wall_minutes(r) for r in (vit, resnet))
    print("the two runs took about the same time (within 25 %):",
          abs(vit_minutes - resnet_minutes) <= 0.25 * max(vit_minutes, resnet_minutes))

# %% [markdown]
# **What the literature leads us to expect** - the published findings, not our measurement. In
# Dosovitskiy et al. (2021), ViTs trained on ImageNet alone (1.3 million images) ended a few points
# below ResNets of comparable size; pre-trained on 14 million (ImageNet-21k) or about 300 million
# images (JFT-300M) they approached or beat the state of the art on image benchmarks - "large scale
# training trumps inductive bias", in the paper's words. Their explanation is the **inductive bias**: a convolution
# builds in that nearby pixels belong together (locality) and that a pattern means the same anywhere
# in the image (translation equivariance: the same filter everywhere). The ViT is given neither - its
# only local step is the patch embedding, and it must learn from data which patches are near which and
# how to combine them. With little data, a built-in assumption that is right is worth a lot of
# examples; with enough data, a model that assumes less can learn more. Touvron et al. (2021, DeiT)
# then trained ViTs on ImageNet alone to accuracies comparable with convolutional networks, with
# strong augmentation and regularisation and long training (300 epochs). CIFAR-10's 50,000 images are
# small data in this sense.

# %% [markdown]
# **What the recorded runs show.** At this budget - about half an hour of one CPU thread each - the
# two networks end within a point of each other (the lines above), and which one
# is ahead differs between the validation and the test set: with one seed each, the runs do not rank
# them. What they do show is how differently the two spend the same time: the ViT makes two and a
# half times as many epochs, because each of its images costs fewer multiply-adds. After the same
# number of epochs ResNet-56 is far ahead (the last line above; the figure's markers are epochs), but
# that does not measure how much each learns per epoch: at epoch 4 ResNet-56's one-cycle schedule has
# annealed to its end while the ViT's rate is still high. The gap the
# literature describes - ResNets ahead on small data unless the ViT gets more data, augmentation and
# training - is about networks trained to convergence; these runs stop long before that, and whether
# a longer equal-time budget opens the gap is not measured here.

# %% [markdown]
# ## What the ViT looks at, beside Grad-CAM
#
# Attention weights say where each token takes its information from. The class token's row of a
# block's weights, $a_{0j}$ for the 64 patch tokens $j$, averaged over the heads and laid out on the
# 8 x 8 grid of patches, is an **attention map**: where the class token looked in that block. The last
# block's map shows only the last step, though: by then every token has already mixed with the others.
# **Attention rollout** (Abnar and Zuidema, 2020) follows the flow through all the blocks. Each block's
# head-averaged weights $A$ get the identity added for the residual connection and are renormalised,
# $\hat{A} = (A + I) / 2$ (each row of $A$ sums to 1), and the blocks are chained by multiplying,
# the last block on the left:
#
# $$R = \hat{A}_L \hat{A}_{L-1} \cdots \hat{A}_1, \qquad \text{map}_j = R_{0j}, \ j = 1, \dots, 64.$$

# %% [markdown]
# ### Exercise 8.5: Attention rollout
#
# Write `attention_rollout(attentions)`: from a list of attention weights, one $(N, h, T, T)$ tensor
# per block, the rollout $R$ of every image, $(N, T, T)$.

# %%
import torch


def attention_rollout(attentions):
    """Attention rollout (Abnar and Zuidema, 2020) of a list of attention weights, one tensor
    (N, heads, T, T) per block, first block first: each block's weights averaged over the heads,
    the identity added for the residual connection and every row divided by its sum (A + I) / 2,
    then these matrices multiplied, the last block's on the left. Returns (N, T, T)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb08

nb08.check_attention_rollout(attention_rollout)

# %% [markdown]
# The maps of the two recorded networks - trained for about half an hour each on CIFAR-10 (see
# "Recorded results"); their weights ship with the course in `results/vit-vs-resnet/` and
# `reference.load_model` checks and loads them - or, where those files are missing, of the two
# networks trained above. For the first test image of each class: the ViT's attention
# (`attention_maps` returns every block's weights), beside
# Grad-CAM of ResNet-56's last stage `layer3` - 64 maps of 8 x 8, the same grid as the ViT's patches -
# computed with captum's `LayerGradCam` (notebook 7 wrote it from scratch and checked it against
# captum) for the class each network predicted. Every map is enlarged to 32 x 32 and scaled to 0..1
# on its own, as in notebook 7.

# %%
def rollout(attentions):
    """The course's attention rollout: (mean over heads + I) / 2 per block, the last block on the left."""
    result = None
    for weights in attentions:
        a = (weights.mean(dim=1) + torch.eye(weights.shape[-1])) / 2
        result = a if result is None else a @ result
    return result


def scaled(maps):
    """Each map scaled to 0..1 by its own minimum and maximum; a constant map becomes zeros."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def enlarged(maps):
    """(N, 8, 8) maps to (N, 32, 32), bilinear, then scaled to 0..1."""
    return scaled(F.interpolate(maps[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0])


def recorded_or_live(name):
    """The recorded run's network when its weights are here, else the one trained in this notebook."""
    try:
        return reference.load_model(f"vit-vs-resnet/{name}-s0"), True
    except (FileNotFoundError, reference.WeightsError):
        return trained[name].cpu().eval(), False


(vit_trained, vit_recorded), (resnet_trained, resnet_recorded) = recorded_or_live("vit_tiny"), recorded_or_live("resnet56")
RECORDED_MAPS = vit_recorded and resnet_recorded
print("maps of the recorded networks:" if RECORDED_MAPS else "maps of the networks trained above:",
      f"vit_tiny {'recorded' if vit_recorded else 'live'}, resnet56 {'recorded' if resnet_recorded else 'live'}")
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
    rolled_map = rolled[:, 0, 1:].reshape(-1, 8, 8)
cam = LayerGradCam(resnet_trained, resnet_trained.layer3).attribute(x, target=preds["resnet56"],
                                                                    relu_attributions=True)[:, 0].detach()
print(f"attention weights: {len(attentions)} blocks of {tuple(attentions[0].shape)}; rollout {tuple(rolled.shape)}, "
      f"every row sums to 1: {torch.allclose(rolled.sum(-1), torch.ones(rolled.shape[:2]), atol=1e-5)}")
print(f"maps of 8 x 8: last block {tuple(last_block.shape)}, rollout {tuple(rolled_map.shape)}, "
      f"Grad-CAM of layer3 {tuple(cam.shape)}")

# %% tags=["nbval-ignore-output"]
pictures = to_pictures(x, test_loader)
grey = pictures.mean(dim=-1)
rows = {"ViT: last block's\nclass-token attention": enlarged(last_block), "ViT: attention\nrollout": enlarged(rolled_map),
        "ResNet-56:\nGrad-CAM of layer3": enlarged(F.relu(cam))}
fig, axes = plt.subplots(1 + len(rows), len(x), figsize=(12.5, 6.0))
for j in range(len(x)):
    axes[0, j].imshow(pictures[j])
    axes[0, j].set_title(f"{CLASSES[j]}\nViT: {CLASSES[preds['vit_tiny'][j]]}\n"
                         f"ResNet: {CLASSES[preds['resnet56'][j]]}", fontsize=7)
    for row, maps in enumerate(rows.values(), start=1):
        axes[row, j].imshow(grey[j], cmap="gray", vmin=0, vmax=1)
        axes[row, j].imshow(maps[j], cmap="viridis", alpha=0.45, vmin=0, vmax=1)
for row, text in enumerate(["image (true class,\npredictions)", *rows]):
    axes[row, 0].text(-0.1, 0.5, text, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center",
                      fontsize=7)
for ax in axes.flat:
    ax.axis("off")
trained_on = ("recorded runs, trained on CIFAR-10" if RECORDED_MAPS else
              f"quick sample: trained on {train_loader.num_samples} images" if QUICK else "trained on CIFAR-10")
fig.suptitle(f"What the ViT and ResNet-56 look at, for their predicted classes ({trained_on}; "
             f"the first test image of each class)", fontsize=10)
fig.tight_layout()

# %% [markdown]
# How to read these maps, and how not to. Each map is scaled to 0..1 on its own, which shows where a
# map is higher, not how much. The cell below measures two things on the first test images: how far
# the class token's attention in the last block is from uniform (a weight of 1/64 on every patch),
# and how closely it follows the brightness of the patches (the correlation, per image, between the
# map and the mean pixel value of each patch, its sign ignored).

# %% tags=["nbval-ignore-output"]
def correlation(a, b):
    """Pearson's correlation of every row of a with the same row of b."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


first_images = next(iter(test_loader))[0][:200].cpu()
with torch.no_grad():
    class_attention = vit_trained.attention_maps(first_images)[-1].mean(dim=1)[:, 0, 1:]
brightness = F.avg_pool2d(first_images.mean(dim=1, keepdim=True), P).flatten(1)      # one value per patch
print(f"{len(first_images)} test images: the class token's largest weight on a patch, on average "
      f"{class_attention.amax(dim=1).mean().item():.4f} (uniform: 1/64 = {1 / 64:.4f})")
print(f"correlation of the map with the patches' brightness, |r| on average: "
      f"{correlation(class_attention, brightness).abs().mean().item():.2f}")

# %% [markdown]
# What the recorded networks show. The class token's attention in the last block is far from uniform:
# its largest weight on a patch is several times 1/64 on average (the first line above), so the
# bright spots in the second row are real concentrations, not the scaling's doing. Some sit on the
# object (the horse's body, the deer, the frog, the dog's head); others sit at an edge or a corner
# away from it (the airplane's and the truck's bottom corners) - by the last block every token has
# mixed with the others, so a corner token can carry information gathered from the whole image. The
# rollout, which follows the flow through all four blocks, is broader and lies more on the objects.
# The maps follow the brightness of the patches only weakly (the second line). ResNet-56's Grad-CAM
# covers larger regions, mostly on the object; for the bird and the deer it lies on the background
# around them, and its deer is taken for a bird, as is the ViT's. Ten images show what the methods
# draw, not which network looks better: neither a map nor its agreement with our eye is proof of why
# a network answered as it did (notebook 7 tested Grad-CAM by hiding the pixels it points at).

# %% [markdown]
# Two differences hold whatever the training. The two kinds of map answer different questions:
# Grad-CAM is tied to one class (the gradient of its score), while attention is the same whatever class
# is asked about - it says where the class token took information from, not what counted for the
# answer. And the attention weights of a block are not an explanation by themselves (Jain and Wallace,
# 2019, showed for text models that quite different attention weights can give the same prediction);
# notebook 7's masking test is the way to check what a map is worth.

# %% [markdown]
# ## Summary
#
# * A ViT cuts an image into $P \times P$ patches and projects each to a token of width $D$ -
#   one convolution with kernel and stride $P$. A learned class token goes in front and a learned
#   position embedding is added: without it, self-attention sees the patches as a set.
# * Self-attention is $\operatorname{softmax}(Q K^\top / \sqrt{d})\, V$: each token takes a weighted
#   mean of all tokens' values; dividing by $\sqrt{d}$ keeps the softmax from saturating. Multi-head
#   attention splits the width into heads and adds no parameters for them; ours equals
#   `nn.MultiheadAttention` with the same weights.
# * A pre-norm block adds attention and a GELU MLP to the tokens, each after a LayerNorm:
#   $4D^2 + 2DM + 9D + M$ parameters. The course's `VisionTransformer` with ViT-B/16's settings has
#   torchvision's count, and torchvision's weights give the same outputs in it.
# * `vit_tiny` has slightly fewer parameters than ResNet-56 and fewer than half its multiply-adds per
#   image, so in the same time it trains more epochs. The literature expects the ResNet to win on
#   CIFAR-10-sized data unless the ViT gets more data, augmentation and training time; in the
#   recorded equal-time runs (about half an hour each on one CPU thread) the two end within a point
#   of each other, too close to rank with one seed.
# * Attention maps and rollout show where the class token took information from; Grad-CAM shows what
#   raised one class's score. Neither is proof of why a network answered as it did.
