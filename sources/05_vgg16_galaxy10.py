# %% [markdown]
# # 5. VGG16 on Galaxy10: small filters, deep stacks, and a network that is mostly one dense layer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/05_vgg16_galaxy10.ipynb)
#
# Lesson 4 traced where a 28-pixel image goes inside ResNet-50. This lesson turns to real colour
# photographs, galaxies, and to the network a Japanese blog series on galaxy classification tried
# first: VGG16 (Simonyan and Zisserman, 2014), the network that made "stack 3x3 convolutions" the rule.
#
# *Retold from* 「Deep Learning (CNN) による銀河形状分類(その2)」, part 2 of that series: its
# VGG16, augmentation and remark on the learning rate; the learning-rate sweep and the costs are
# the course's. The full Galaxy10 (2.5 GB) was not available to our runs.
#
# 1. Galaxy10 DECaLS, and why its splits are stratified;
# 2. why small filters: receptive field and parameters of a stack, measured with autograd;
# 3. VGG16 written as data, where its 134 million parameters live, and the dropout that guards them;
# 4. the article's augmentation, and its remark that VGG16 is sensitive to the learning rate, measured;
# 5. the real run: a recipe for a Colab GPU, with an estimate (not a measurement) of its time.
#
# Nothing here trains: every cell runs in seconds on a laptop CPU. The evidence - the sweep in numbers,
# costs, the recorded quick-sample runs - is in [the lab](labs/05_vgg16_experiments.ipynb).

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

# %% tags=["nbval-ignore-output"]
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from torch import nn

import cnncourse
from cnncourse import reference
from cnncourse.data import article_transform, dataset_info, get_dataset, stratified_split
from cnncourse.models import make_layers, vgg16
from cnncourse.models.vgg import CONFIGS
from cnncourse.theory import output_size

print("torch", torch.__version__)
print(cnncourse.describe_device())

# %% [markdown]
# ## Galaxy10 DECaLS
#
# Galaxy10 DECaLS (astroNN, Henry Leung and Jo Bovy) holds **17,736** colour images of galaxies,
# 256x256 pixels, from the DESI Legacy Imaging Surveys, sorted into 10 morphology classes by the
# votes of Galaxy Zoo volunteers. It is one HDF5 file, `Galaxy10_DECals.h5` (about 2.5 GB, Zenodo
# record 10845026, licence CC BY 4.0): images under the key `images` (N, 256, 256, 3, uint8), labels
# under `ans`, plus sky position (`ra`, `dec`), `redshift` and pixel scale `pxscale`.

# %%
info = dataset_info("galaxy10")
print(f"{info.title}: {info.num_images:,} images of {info.image_size}x{info.image_size}x{info.in_channels}, "
      f"{info.num_classes} classes, licence {info.licence}")
CLASS_COUNTS = [1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873]   # images per class in the file
print(f"\n{'class':<28} {'images':>7} {'share':>7}")
for index, (name, count) in enumerate(zip(info.classes, CLASS_COUNTS)):
    print(f"{index} {name:<26} {count:>7,} {count / sum(CLASS_COUNTS):>7.1%}")
print(f"{'total':<28} {sum(CLASS_COUNTS):>7,}   equals num_images: {sum(CLASS_COUNTS) == info.num_images}")
print(f"always answering 'Round Smooth' scores {max(CLASS_COUNTS) / sum(CLASS_COUNTS):.1%}: the floor any model must beat")

# %% [markdown]
# The classes are unequal, and the file has no official train/test split. The older **Galaxy10
# SDSS** (21,785 images of 69x69) is worse: one class has 17 images. A random 10 % test split can then
# take 1 or 4 of them; a **stratified** split sends the same fraction of every class to the test set,
# and `cnncourse` always splits that way. Ten random splits against the stratified one:

# %%
labels = np.array([0] * 2000 + [1] * 17)   # a large class and a class of 17
random_counts = []
for seed in range(10):
    test = np.random.default_rng(seed).permutation(len(labels))[: round(0.1 * len(labels))]
    random_counts.append(int((labels[test] == 1).sum()))
_, stratified_test = stratified_split(labels, test_fraction=0.1, seed=0)
print("images of the small class in a random 10 % test split, ten seeds:", random_counts)
print("in the stratified split:", int((labels[stratified_test] == 1).sum()), "- always round(0.1 x 17) = 2")

# %% [markdown]
# The pictures come from the 120 real Galaxy10 DECaLS images that ship inside the package (quick mode's
# sample); `cnncourse.quick()` returns them whatever mode the notebook is in.

# %% tags=["nbval-ignore-output"]
with cnncourse.quick():
    sample = get_dataset("galaxy10", "train")
fig, axes = plt.subplots(2, 5, figsize=(13, 6))
for class_index, ax in enumerate(axes.ravel()):
    ax.imshow(sample[sample.targets.index(class_index)][0])
    ax.set_title(f"{class_index}: {sample.classes[class_index]}", fontsize=9)
    ax.axis("off")
fig.suptitle("Galaxy10 DECaLS: one image per class, 256x256 (quick sample: the images shipped with cnncourse)")
fig.tight_layout()

# %% [markdown]
# ### Exercise 5.1: A stratified split
#
# Write your own stratified split, `my_stratified_split(labels, test_fraction=0.1, seed=0)`: every class
# with $n \ge 2$ images sends $\mathrm{round}(f n)$ of them (at least 1, at most $n - 1$) to the test split,
# chosen at random by `np.random.default_rng(seed)`; a class of one image stays in training. Return
# `(train_indices, test_indices)`. The check tests the properties, so any random draw will do.

# %%
import numpy as np


def my_stratified_split(labels, test_fraction=0.1, seed=0):
    """Split the indices of labels into (train_indices, test_indices): each class with n >= 2 images
    puts round(test_fraction * n) of them (at least 1, at most n - 1), drawn at random with a generator
    seeded by seed, into test; a class of one image stays in train."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb05

nb05.check_my_stratified_split(my_stratified_split)

# %% [markdown]
# ## The VGG idea: small filters, stacked
#
# Simonyan and Zisserman built every convolution of their networks from 3x3 filters. Two stacked 3x3
# convolutions (stride 1) see a 5x5 patch of the input; three see 7x7. $L$ stacked $k \times k$
# convolutions have the receptive field
#
# $$r = 1 + L\,(k - 1).$$
#
# With $C$ channels in and out, $L$ layers of 3x3 cost $L \cdot 9C^2$ weights against $(2L+1)^2 C^2$
# for the one large filter of the same reach: $27C^2$ against $49C^2$ for 7x7, 45 % fewer. And every
# layer adds a ReLU: three non-linearities instead of one.

# %%
C = 64
for layers in (2, 3):
    k_large = 1 + layers * (3 - 1)
    stack = nn.Sequential(*[nn.Conv2d(C, C, 3, padding=1, bias=False) for _ in range(layers)])
    large = nn.Conv2d(C, C, k_large, padding=k_large // 2, bias=False)
    n_stack, n_large = cnncourse.count_parameters(stack), cnncourse.count_parameters(large)
    print(f"{layers} x 3x3: {n_stack:,} weights = {layers} * 9 * C^2 | one {k_large}x{k_large}: "
          f"{n_large:,} = {k_large ** 2} * C^2 | ratio {n_stack / n_large:.3f}")

# %% [markdown]
# The receptive field, measured rather than computed: autograd tells which input pixels one output
# pixel depends on. Backpropagate from the centre output of a stack with all weights and inputs equal
# to one (so that nothing cancels) and look at the input's gradient. Every coloured cell below has a
# non-zero gradient; grey cells have exactly zero, so nothing there can change that output. With all
# weights one, the gradient also counts the paths from an input pixel to the output (the number in
# each cell): a stack sees its centre through many more paths than its edge.

# %%
SIDE = 11                               # input of 11x11: room around the 7x7 of three layers
fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), layout="constrained")
for layers, ax in zip((1, 2, 3), axes):
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(layers)])
    for conv in stack:
        nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, SIDE, SIDE, requires_grad=True)
    stack(x)[0, 0, SIDE // 2, SIDE // 2].backward()
    paths = x.grad[0, 0]
    field = int((paths != 0).any(0).sum())
    print(f"{layers} stacked 3x3: formula {1 + 2 * layers}x{1 + 2 * layers}, measured by autograd {field}x{field}")
    ax.imshow(np.ma.masked_equal(paths.numpy(), 0), cmap="viridis", vmin=0, vmax=paths.max().item())
    ax.set_facecolor("0.85")
    for (row, col), value in np.ndenumerate(paths.int().numpy()):
        if value:
            ax.text(col, row, value, ha="center", va="center", fontsize=7,
                    color="white" if value < paths.max() / 2 else "black")
    ax.add_patch(plt.Rectangle((SIDE // 2 - 0.5, SIDE // 2 - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set(xlabel="input column (pixels)", ylabel="input row (pixels)", xticks=[], yticks=[])
    ax.set_title(f"{layers} x 3x3: receptive field {field}x{field}\n{layers * 9} C² weights "
                 f"(one {field}x{field} filter: {field * field} C²)", fontsize=10)
fig.suptitle("Input pixels that reach the centre output (red), and through how many paths")
plt.show()

# %% [markdown]
# ### Exercise 5.2: Receptive field of a stack of layers
#
# With strides the formula generalises: each layer adds $(k - 1)$ times the product of the strides
# of the layers **before** it, $r = 1 + \sum_i (k_i - 1) \prod_{j < i} s_j$. Write
# `receptive_field(layers)` for a list of `(kernel, stride)` tuples. The check measures the answer with
# autograd, for LeNet, the ResNet stem and all of VGG16.

# %%
def receptive_field(layers):
    """Receptive field (in input pixels, along one axis) of one output value of a stack of layers
    without padding; layers: a list of (kernel, stride) tuples, applied in order."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb05

nb05.check_receptive_field(receptive_field)

# %% [markdown]
# ## How VGG was scored: top-5 error
#
# VGG took second place in the 2014 ImageNet challenge, scored by the **top-5 error** of lesson 3: the
# share of images whose true class is not among the five highest scores. Over 1,000 classes, many of
# them fine-grained (about 120 breeds of dog), five guesses forgive a fair near-miss. Over Galaxy10's
# 10 classes they forgive far too much: a random guess has a top-5 error of $1 - 5/K$, 99.5 % for
# $K = 1000$ but 50 % for $K = 10$. So on galaxies the course reports the usual (top-1) accuracy.

# %%
for classes in (1000, 10):
    random_scores = torch.rand(20_000, classes, generator=torch.Generator().manual_seed(2))
    random_labels = torch.randint(0, classes, (20_000,), generator=torch.Generator().manual_seed(3))
    hit = (torch.topk(random_scores, k=5, dim=1).indices == random_labels.view(-1, 1)).any(dim=1)
    print(f"{classes:>5} classes: top-5 error of random scores {1 - hit.float().mean().item():.1%}, "
          f"formula 1 - 5/K = {1 - 5 / classes:.1%}")

# %% [markdown]
# ## Configuration D, as data
#
# VGG16 is the paper's configuration D: 13 convolutions in five blocks, each block ending in a 2x2
# max-pool that halves the size, then three dense layers (4096, 4096, classes) with dropout. The
# architecture fits in one list - a number is a 3x3 convolution with that many filters (padding 1,
# then ReLU), `"M"` a max-pool - and `make_layers` turns the list into modules:

# %%
print("CONFIGS['D'] =", CONFIGS["D"])
features = make_layers(CONFIGS["D"])
kinds = [type(m).__name__ for m in features]
print(f"make_layers -> {len(features)} modules: {kinds.count('Conv2d')} Conv2d, {kinds.count('ReLU')} ReLU, "
      f"{kinds.count('MaxPool2d')} MaxPool2d; with 3 dense layers: {kinds.count('Conv2d') + 3} weight layers")
print(features[:5])

# %% [markdown]
# With padding 1 a 3x3 convolution keeps the size ($n' = \lfloor (n + 2 - 3)/1 \rfloor + 1 = n$);
# each max-pool halves it ($n' = \lfloor (n - 2)/2 \rfloor + 1$). A 224-pixel image leaves the
# five blocks as $512 \times 7 \times 7 = 25{,}088$ numbers: the input of the first dense layer.
# Formula against forward hooks, on the `meta` device (shapes without data, so free):

# %%
with torch.device("meta"):
    features = make_layers(CONFIGS["D"])
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    recorded = {}
    for i in pools:
        features[i].register_forward_hook(lambda m, inp, out, i=i: recorded.__setitem__(i, tuple(out.shape[1:])))
    features(torch.zeros(1, 3, 224, 224))
n = 224
for block, i in enumerate(pools, start=1):
    n = output_size(n, kernel=2, padding=0, stride=2)
    print(f"block {block}: after features[{i}] formula {n:>3}x{n:<3} hooks {recorded[i]}")
print("flattened:", math.prod(recorded[pools[-1]]))

# %% [markdown]
# ### Exercise 5.3: VGG configurations as data
#
# Write `vgg_config(convs_per_block)`: the configuration list of a VGG whose five blocks have widths 64,
# 128, 256, 512 and 512 and `convs_per_block[i]` convolutions each, every block ending with `"M"`.
# `vgg_config([2, 2, 3, 3, 3])` must give configuration D; the check also asks for VGG11, 13 and 19.

# %%
def vgg_config(convs_per_block):
    """The configuration list of a VGG with 5 blocks of widths 64, 128, 256, 512, 512:
    convs_per_block[i] convolutions of block i, each block ending with "M"."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb05

nb05.check_vgg_config(vgg_config)

# %% [markdown]
# ## 138 million parameters, and where they live
#
# torchvision's `vgg16` has **138,357,544** parameters for ImageNet's 1000 classes, and
# **134,301,514** with a 10-class output layer. `cnncourse.models.vgg16` must match to the parameter.
# A dense layer from $n_{in}$ to $n_{out}$ has $n_{in} n_{out} + n_{out}$ parameters, so the first
# one holds $25{,}088 \times 4{,}096 + 4{,}096 = 102{,}764{,}544$: three quarters of the network in one
# layer.

# %%
with torch.device("meta"):
    for num_classes in (1000, 10):
        ours = cnncourse.count_parameters(vgg16(num_classes=num_classes))
        theirs = cnncourse.count_parameters(torchvision.models.vgg16(weights=None, num_classes=num_classes))
        print(f"{num_classes:>4} classes: cnncourse {ours:,} | torchvision {theirs:,} | equal: {ours == theirs}")
    model = vgg16(num_classes=10)
total = cnncourse.count_parameters(model)
parts = [("13 convolutions (features)", model.features)] + [
    (f"dense {m.in_features:,} -> {m.out_features:,}", m) for m in model.classifier if isinstance(m, nn.Linear)]
print(f"\n{'part (10 classes)':<30} {'parameters':>12} {'share':>7}")
for name, part in parts:
    count = cnncourse.count_parameters(part)
    print(f"{name:<30} {count:>12,} {count / total:>7.1%}")

# %% [markdown]
# ### Exercise 5.4: Parameters of any VGG
#
# The table counts configuration D. Write `vgg_params(config, num_classes)` for **any** configuration
# list: its convolutions (3x3, each with a bias, on 3-channel images) and the classifier that follows
# the pool to 7x7, last width $\cdot$ 7 $\cdot$ 7 $\to 4096 \to 4096 \to$ `num_classes`. The hidden cases are
# VGG11, VGG13, VGG19 and a small configuration whose last block is not 512 wide, so track the channels
# from one convolution to the next.

# %%
def vgg_params(config, num_classes):
    """Parameters of the VGG built from config (numbers: 3x3 convolutions with a bias and that many
    filters, starting from 3 input channels; "M": a max-pool) followed by the classifier
    last_width * 7 * 7 -> 4096 -> 4096 -> num_classes (dense layers with biases)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb05

nb05.check_vgg_params(vgg_params)

# %% [markdown]
# ### Dropout, in the classifier
#
# So many weights in the classifier can learn the training images by heart. The VGG paper regularised
# its first two dense layers with **dropout** at ratio $p = 0.5$: in training, each input value is set
# to zero with probability $p$ and the survivors are multiplied by $1/(1-p)$; in evaluation nothing
# happens:
#
# $$y_i = \frac{m_i \, x_i}{1 - p}, \quad m_i \sim \text{Bernoulli}(1 - p) \;\text{(training)}; \qquad
#   y_i = x_i \;\text{(evaluation)}.$$
#
# The scaling keeps the expected value, $\mathbb{E}[y_i] = (1-p) \cdot x_i / (1-p) = x_i$, so the next
# layer sees inputs of the same size in training and in evaluation. Checked on `nn.Dropout(0.5)` with a
# million ones:

# %%
print(model.classifier[:3])
p, ones = 0.5, torch.ones(1_000_000)
torch.manual_seed(0)
y = nn.Dropout(p).train()(ones)
print("training: every output is 0 or 1 / (1 - p):", bool(torch.all((y == 0) | (y == 1 / (1 - p)))))
print(f"training: share of zeros within 0.01 of p: {abs((y == 0).float().mean().item() - p) < 0.01}; "
      f"mean within 0.01 of 1: {abs(y.mean().item() - 1) < 0.01}")
print("evaluation: the output is the input, exactly:", torch.equal(nn.Dropout(p).eval()(ones), ones))

# %% [markdown]
# ### Exercise 5.5: Dropout of whole feature maps
#
# Dropping single pixels of a convolution's output does little: the neighbours carry nearly the same
# value. **Channel dropout** (`nn.Dropout2d`) drops whole maps instead. Write `my_dropout(x, p, training)`
# for a batch `x` of shape (N, C, H, W), without `F.dropout` or `F.dropout2d`: in training, every map
# `x[n, c]` is zeroed with probability $p$, each image and channel drawing its own chance, and the maps
# kept are divided by $1 - p$; in evaluation, return `x` unchanged.

# %%
import torch


def my_dropout(x, p, training):
    """Channel dropout of a batch x (N, C, H, W) without F.dropout or F.dropout2d: in training, zero
    each whole map x[n, c] with probability p (a new draw per image and channel) and divide the kept maps
    by (1 - p); in evaluation, return x unchanged."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb05

nb05.check_my_dropout(my_dropout)

# %% [markdown]
# ## The adaptive pool, at the sizes we train on
#
# The classifier begins with an **adaptive average pool to 7x7**: whatever the image size, the last
# feature map becomes 7x7, so the 25,088-input dense layer stays the same. At 224 pixels the map is
# already 7x7. At 128 pixels it is 4x4, and output $i$ (of 7) averages the map's positions from
# $\lfloor 4i/7 \rfloor$ to $\lceil 4(i+1)/7 \rceil - 1$: windows of one or two positions, overlapping.
# Only at 32 pixels, where the map is 1x1, is every output a copy of the same value.

# %%
with torch.device("meta"):
    for size in (224, 128, 32):
        shapes = cnncourse.trace_shapes(model, ["features", "avgpool"], (3, size, size))
        print(f"{size:>3} px: features {shapes['features']} -> avgpool {shapes['avgpool']}")
windows = [(i * 4 // 7, -(-(i + 1) * 4 // 7)) for i in range(7)]   # [start, end) along one axis
print("windows of a 4x4 map, along one axis:", windows)
fmap = torch.randn(1, 512, 4, 4, generator=torch.Generator().manual_seed(0))
by_hand = torch.stack([torch.stack([fmap[..., r0:r1, c0:c1].mean((-2, -1)) for c0, c1 in windows], -1)
                       for r0, r1 in windows], -2)
print("window means == nn.AdaptiveAvgPool2d(7):", torch.allclose(by_hand, model.avgpool.to("cpu")(fmap)))

# %% [markdown]
# ## The article's augmentation
#
# A galaxy has no "up": rotated by any angle or seen in a mirror, it is the same kind of galaxy. The
# galaxy article augmented its training images with a **random rotation** and a **random horizontal
# flip**, without saying by how many degrees: the range here, any angle from -180° to +180°, is **our
# choice**. `article_transform("galaxy10", train=True)` is that pipeline (test images are never
# augmented):

# %%
for split in (True, False):
    steps = article_transform("galaxy10", train=split).transforms
    print("train:" if split else "test: ", " -> ".join(type(step).__name__ for step in steps))
print("rotation range (degrees):", article_transform("galaxy10", train=True).transforms[0].degrees)

# %% tags=["nbval-ignore-output"]
augment = article_transform("galaxy10", train=True)
galaxy, label = sample[sample.targets.index(5)]
torch.manual_seed(0)
fig, axes = plt.subplots(1, 7, figsize=(14, 2.6))
axes[0].imshow(galaxy)
axes[0].set_title(f"original: {sample.classes[label]}", fontsize=8)
for ax in axes[1:]:
    ax.imshow((augment(galaxy).permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1))   # undo Normalize(0.5, 0.5)
    ax.set_title("rotated / flipped", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.suptitle("The article's augmentation: random rotation and horizontal flip (quick sample)")
fig.tight_layout()

# %% [markdown]
# ## VGG16 and the learning rate
#
# The galaxy article reports that VGG16 was sensitive to its learning rate. The course measured it on
# data it has: VGG16, and VGG16 with a BatchNorm after each convolution (`vgg16_bn`), trained for
# 3 epochs on 5,000 CIFAR-10 images at 32 pixels with Adam at $10^{-5}$, $10^{-4}$ and $10^{-3}$,
# one seed each, validated on 1,000 held-out images. Left: validation accuracy against the rate; right:
# the training loss per epoch, with the loss of a uniform guess, $\ln 10 \approx 2.303$, dotted.

# %%
RATES = ("1e-5", "1e-4", "1e-3")
sweep = {(net, lr): reference.seed_runs(f"vgg-lr/{net}-lr{lr}")[0] for net in ("vgg16", "vgg16_bn") for lr in RATES}
RATE_COLOURS = {lr: plt.cm.viridis(shade) for lr, shade in zip(RATES, (0.0, 0.45, 0.8))}   # right: colour = rate, dashes = BN
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
for net, style in (("vgg16", "-"), ("vgg16_bn", "--")):
    left.plot([float(lr) for lr in RATES], [100 * sweep[net, lr]["val_accuracy"] for lr in RATES],
              style, marker="o", color="black", label=net)
    for lr in RATES:
        history = sweep[net, lr]["history"]
        right.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], style, marker=".",
                   color=RATE_COLOURS[lr], label=f"{net}, Adam {lr}")
left.axhline(10, color="0.5", linestyle=":", label="chance (10 %)")
left.set(xscale="log", xlabel="Adam learning rate", ylabel="validation accuracy after 3 epochs (%)",
         title="accuracy against the rate", ylim=(0, 45))
right.axhline(math.log(10), color="0.5", linestyle=":", label="ln 10: a uniform guess")
right.set(xlabel="epoch", ylabel="training loss (cross-entropy)", xticks=[1, 2, 3], title="training loss per epoch")
left.legend(fontsize=8, loc="upper right")
right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
for ax in (left, right):
    ax.grid(alpha=0.3)
fig.suptitle("VGG16 with and without BatchNorm: 5,000 CIFAR-10 images, 3 epochs, one seed each")
fig.tight_layout()
val = {key: run["val_accuracy"] for key, run in sweep.items()}
print("highest on validation:", {net: max(RATES, key=lambda lr: val[net, lr]) for net in ("vgg16", "vgg16_bn")})
print("VGG16 at 1e-3 ends at a uniform guess (last loss within 0.01 of ln 10):",
      abs(sweep["vgg16", "1e-3"]["history"][-1]["train_loss"] - math.log(10)) < 0.01)

# %% [markdown]
# The article's remark holds here: a tenfold larger rate than the best one turns learning off. At Adam
# $10^{-3}$ VGG16's loss settles at exactly $\ln 10$ - every image gets the same answer - and BatchNorm
# did not rescue that rate. $10^{-4}$ scored highest for both networks, but one seed on 1,000 validation
# images separates the collapse from learning, not $10^{-4}$ from $10^{-5}$. The lab sets out the
# numbers and a one-batch probe of how a network collapses to $\ln 10$.

# %% [markdown]
# ## Training VGG16 on Galaxy10: a recipe for a GPU
#
# The real run trains on all of Galaxy10, which a laptop CPU would need days for. The recipe: 30
# epochs (the article's), Adam at $10^{-4}$ (the sweep's best; Adam's usual $10^{-3}$ is the rate
# at which VGG16 collapsed), batches of 64, the rotation and flip, 128-pixel images, and a tenth of the
# training galaxies held out for validation, so the test set is looked at once, at the end.
#
# Expected time, from arithmetic: one training image costs about three forward passes (the forward pass,
# and the backward pass through the activations and through the weights), and a validation image one.
# The estimate assumes that a Colab **T4** sustains $4 \times 10^{12}$ multiply-adds per second
# in mixed precision (8 TFLOPS, about an eighth of its fp16 peak; the lab says where that figure comes
# from). It is an estimate, not a measurement.

# %%
RECIPE = {"model": "vgg16", "data": "galaxy10", "image-size": 128, "epochs": 30, "batch-size": 64,
          "optimizer": "adam", "lr": "1e-4", "val-fraction": 0.1, "seed": 0}
DRIVE = cnncourse.colab.DRIVE_FOLDER          # where the set-up cell keeps data and runs in Colab
print("cnncourse train " + " ".join(f"--{key} {value}" for key, value in RECIPE.items())
      + f" --augment --data-root {DRIVE}/data --out {DRIVE}/runs/galaxy10-vgg16")
T4_MACS_PER_S = 4e12                          # assumed sustained rate on a Colab T4 (mixed precision)
test = [round(0.1 * n) for n in CLASS_COUNTS]                    # the stratified 10 % test split
val = [round(0.1 * (n - t)) for n, t in zip(CLASS_COUNTS, test)]  # a tenth of the rest for validation
train = sum(CLASS_COUNTS) - sum(test) - sum(val)
print(f"images: {train:,} training, {sum(val):,} validation, {sum(test):,} test")
for size in (128, 224):
    with torch.device("meta"):
        macs = cnncourse.count_macs(vgg16(num_classes=10), (3, size, size))
    total = RECIPE["epochs"] * (3 * train + sum(val)) * macs + sum(test) * macs
    print(f"{size} px: {macs / 1e9:.2f} GMACs per image forward; 30 epochs = {total / 1e15:.1f} x 10^15 MACs, "
          f"estimate on a T4: about {total / T4_MACS_PER_S / 60:.0f} minutes")

# %% [markdown]
# To run it: in Colab choose *Runtime > Change runtime type > T4 GPU*, run this notebook's setup cell
# (it mounts your Google Drive: allow it), and run the
# printed command in a cell, preceded by `!`. The first run downloads the 2.5 GB file into `data/` on
# your Drive; reading and resizing it, not counted above, takes extra minutes. After every epoch the run
# writes a checkpoint; should the runtime disconnect, `!cnncourse train --out .../runs/galaxy10-vgg16
# --resume` continues. The run folder gets `metrics.json`, the learning curves (`curves.png`) and the
# test confusion matrix (`confusion.png`).
#
# **What to expect.** A published VGG16 reaches about **79 %** test accuracy on Galaxy10 DECaLS (Wang,
# "Galaxy morphology classification with DenseNet", J. Phys.: Conf. Ser. 2580, 2023) - on 224-pixel
# images. This recipe's 128 pixels hold a third of those pixels, so it may land lower; add
# `--image-size 224` (about three times the time) to compare like with like. The course has not
# measured either: the full file could not be downloaded where it was built.

# %% [markdown]
# ## Summary
#
# * Galaxy10 DECaLS: 17,736 galaxies in 10 unequal classes; split it stratified.
# * Stacked 3x3 convolutions: receptive field $1 + 2L$ for $L$ layers at $9L C^2$ weights instead of
#   $(2L+1)^2 C^2$, with a ReLU after each - checked by counting and by autograd.
# * VGG16 is a list, `[64, 64, "M", ..., 512, "M"]`, turned into 13 convolutions by `make_layers`;
#   134,301,514 parameters for 10 classes, 103 million of them in the first dense layer, guarded by
#   dropout (zero with probability $p$, scale the rest by $1/(1-p)$, nothing at evaluation).
# * The adaptive pool to 7x7 keeps that layer for any image size; below 224 pixels it averages
#   overlapping windows of a smaller map.
# * The article found VGG16 sensitive to the learning rate, and so did the course's sweep: Adam
#   $10^{-3}$ left it at a uniform guess, $10^{-4}$ learned. The GPU recipe uses $10^{-4}$.
#
# Next: lesson 6 rebuilds the article's ResNet-50 and sets it against VGG16 on time and accuracy.

# %% [markdown]
# ## Experiment: does VGG16 collapse on galaxies too?
#
# The sweep found the collapse on CIFAR-10. Check it on galaxies in quick mode: the 80 training images
# of the shipped sample at 32 pixels (10 held out for validation), 8 epochs of 5 batches, a minute or
# two a run on a laptop CPU. In a new cell:
#
# ```python
# from cnncourse.fastdata import fast_loaders
# from cnncourse.train import fit
#
# with cnncourse.quick():
#     train_loader, val_loader, test_loader = fast_loaders("galaxy10", batch_size=16, image_size=32, seed=0,
#                                                          val_fraction=0.1)
# for lr in (1e-3, 1e-4):
#     for seed in (0, 1):
#         cnncourse.seed_everything(seed)
#         history = fit(vgg16(num_classes=10), train_loader, test_loader, epochs=8, optimizer="adam", lr=lr,
#                       seed=seed, progress=False, val_data=val_loader)
#         print(lr, seed, [round(r["train_loss"], 3) for r in history])
# ```
#
# For each run, record the training loss of every epoch and whether the last one lies within 0.01 of
# $\ln 10 = 2.303$. Does VGG16 collapse at $10^{-3}$ for both seeds, and learn at $10^{-4}$? Then change
# one thing, `vgg16` to `vgg16_bn` (from `cnncourse.models`), at $10^{-3}$: does BatchNorm rescue the
# rate on galaxies? With 10 validation and 30 test images, do not read the accuracies: the training
# loss is the signal here.
