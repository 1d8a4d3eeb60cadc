# %% [markdown]
# # 6. ResNet-50 on Galaxy10, and VGG16 against ResNet-50 on time and accuracy
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/06_resnet50_galaxy10.ipynb)
#
# Lesson 5 built VGG16 and found it fragile: in the course's sweep, Adam's usual learning rate left it at
# a uniform guess. Part 3 of the galaxy series replaced it with a ResNet-50 written by hand, and reported
# that the ResNet converged better and trained faster. This lesson rebuilds that network to the parameter
# and asks what "faster" can mean when one network has four times the arithmetic of the other.
#
# *Retold from* 「Deep Learning (CNN) による銀河形状分類(その3)」, part 3 of the galaxy series: its
# ResNet-50, results and times; the multiply-add costs and the estimates are the course's. The
# full Galaxy10 (2.5 GB) was not available to our runs.
#
# 1. the article's ResNet-50: its bottleneck blocks by formula, its shapes, and why it has 18,880
#    parameters more than torchvision's;
# 2. what the article measured;
# 3. what each network costs in multiply-adds, and why multiply-adds are not seconds;
# 4. the article's comparison as a recipe for a GPU, with estimates (not measurements) of its time.
#
# Nothing in this lesson trains: every cell runs in seconds on a laptop CPU. Costs, estimates, what can
# be compared with the article and the recorded quick-sample runs are in
# [the lab](labs/06_resnet50_galaxy_experiments.ipynb).

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
import torch
import torchvision
from torch import nn

import cnncourse
from cnncourse.models import resnet50, resnet50_galaxy_article, vgg16
from cnncourse.theory import output_size

print("torch", torch.__version__)
print(cnncourse.describe_device())

# %% [markdown]
# ## The article's ResNet-50
#
# The galaxy article wrote its ResNet-50 by hand in PyTorch, following the paper's layout:
#
# * **stem**: 7x7 convolution with stride 2 and padding 3 (3 → 64 channels), BatchNorm, ReLU,
#   3x3 max-pool with stride 2 and padding 1;
# * **four stages** of 3, 4, 6 and 3 bottleneck blocks (1x1, 3x3, 1x1 convolutions, each followed
#   by BatchNorm) with inner widths 64, 128, 256, 512 and four times as many output channels;
#   strides 1, 2, 2, 2;
# * the first block of each stage carries a 1x1 convolution (with the stage's stride) on its
#   shortcut, **without BatchNorm**; and **every convolution has a bias**;
# * adaptive average pooling to 1x1 and one dense layer 2048 → 10.
#
# `resnet50_galaxy_article()` is that network (see `cnncourse/models/article.py`).

# %%
cnncourse.seed_everything(0)
article = resnet50_galaxy_article(num_classes=10)
kinds = [type(m).__name__ for m in article.modules()]
print("convolutions:", kinds.count("Conv2d"), "| BatchNorms:", kinds.count("BatchNorm2d"),
      "| dense layers:", kinds.count("Linear"), "| bottleneck blocks:", kinds.count("ArticleBottleneck"))
print(f"parameters: {cnncourse.count_parameters(article):,}   (the article: 23,547,402)")

# %% [markdown]
# ## One bottleneck block, by formula
#
# A convolution from $C_{in}$ to $C_{out}$ channels with a $k \times k$ kernel and a bias has
# $C_{in} C_{out} k^2 + C_{out}$ parameters; a BatchNorm over $C$ channels $2C$ (scale and shift).
# The article's bottleneck with input $C_{in}$ and width $w$ (1x1 to $w$, 3x3 at $w$, 1x1 to $4w$,
# three BatchNorms) therefore has
#
# $$P = (C_{in} w + w) + (9 w^2 + w) + (4 w^2 + 4w) + 2(w + w + 4w) = C_{in} w + 13 w^2 + 18 w,$$
#
# plus $4 w C_{in} + 4w$ for the first block of a stage, whose shortcut is a biased 1x1 convolution.

# %%
def bottleneck_params(c_in, width, projection):
    return c_in * width + 13 * width ** 2 + 18 * width + (4 * width * c_in + 4 * width if projection else 0)


print(f"{'block':<10} {'C_in':>5} {'w':>4} {'shortcut':>10} {'formula':>10} {'counted':>10}")
for stage, c_in, width in (("layer1", 64, 64), ("layer2", 256, 128), ("layer3", 512, 256), ("layer4", 1024, 512)):
    for index, (cin, projection) in enumerate(((c_in, True), (4 * width, False))):
        block = article.get_submodule(f"{stage}.{index}")
        print(f"{stage}.{index:<3} {cin:>5} {width:>4} {'1x1 conv' if projection else 'identity':>10} "
              f"{bottleneck_params(cin, width, projection):>10,} {cnncourse.count_parameters(block):>10,}")

# %% [markdown]
# ### Exercise 6.1: A 1x1 convolution is a dense layer per pixel
#
# A $1 \times 1$ convolution is a dense layer applied to every pixel: each output pixel is
# $W x_{ij} + b$ with $W$ of shape $(M, C)$. Write `conv1x1_by_matmul(x, weight, bias)` with one matrix
# product and no convolution function: move the channels last, multiply, add the bias, move them back.

# %%
import torch


def conv1x1_by_matmul(x, weight, bias):
    """A 1x1 convolution as a dense layer applied to every pixel, with one matrix product and no
    convolution function. x: (N, C, H, W); weight: (M, C, 1, 1); bias: (M,). Returns (N, M, H, W)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb06

nb06.check_conv1x1_by_matmul(conv1x1_by_matmul)

# %% [markdown]
# ## Shapes for a 224-pixel image
#
# The article does not state its image size; the comments in its code give the shape after each layer,
# and those are the shapes of a 224-pixel input, so that is the size we take for "the article's settings".
#
# Each layer maps a side of $n$ pixels to $n' = \lfloor (n + 2p - k)/s \rfloor + 1$. From 224: the
# stem's convolution gives 112 and its max-pool 56; stage 1 keeps 56 (and widens to 256 channels);
# each later stage halves the size in its first block (stride 2 on the 3x3 convolution, $k = 3$,
# $p = 1$) and doubles the channels: $512 \times 28 \times 28$, $1024 \times 14 \times 14$,
# $2048 \times 7 \times 7$. The formula against forward hooks on a real forward pass, recorded by
# `cnncourse.trace_shapes` (from `cnncourse/shapes.py`; notebook 4 builds it up: a forward hook on each
# named module notes the shape of its output while one image of zeros goes through the network):

# %%
STEPS = [("stem.0", "conv 7x7, stride 2, padding 3", 7, 3, 2),
         ("stem.3", "max-pool 3x3, stride 2, padding 1", 3, 1, 2),
         ("layer1", "3 bottlenecks, stride 1", 3, 1, 1),
         ("layer2", "4 bottlenecks, stride 2", 3, 1, 2),
         ("layer3", "6 bottlenecks, stride 2", 3, 1, 2),
         ("layer4", "3 bottlenecks, stride 2", 3, 1, 2)]
recorded = cnncourse.trace_shapes(article, [name for name, *_ in STEPS] + ["avgpool", "fc"], (3, 224, 224))
n, agree = 224, True
print(f"{'module':<8} {'what it does':<36} {'formula':>8} {'hooks':>16}")
for name, what, k, p, s in STEPS:
    n = output_size(n, k, p, s)
    agree &= recorded[name][1:] == (n, n)
    print(f"{name:<8} {what:<36} {n:>8} {str(recorded[name]):>16}")
print(f"{'avgpool':<8} {'adaptive average pool to 1x1':<36} {1:>8} {str(recorded['avgpool']):>16}")
print(f"{'fc':<8} {'dense 2048 -> 10':<36} {'':>8} {str(recorded['fc']):>16}")
print("formula == hooks:", agree)

# %% [markdown]
# ## The stages at the recipe's 128 pixels
#
# The GPU recipe at the end trains on 128-pixel images (a third of the pixels of 224). Each stage's
# output shape, recorded by hooks, and its parameters: the last stage now works on 4x4 maps, where 224
# pixels leave 7x7. (Lesson 4's 28-pixel images left 1x1.)

# %%
STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
shapes = cnncourse.trace_shapes(article, STAGES, (3, 128, 128))
print(f"input 3x128x128\n{'stage':<8} {'output shape':>18} {'parameters':>12}")
for stage in STAGES:
    print(f"{stage:<8} {str(shapes[stage]):>18} {cnncourse.count_parameters(article.get_submodule(stage)):>12,}")

# %% [markdown]
# ## 18,880 parameters more than the paper's ResNet-50
#
# torchvision's `resnet50` - the paper's network - has 23,528,522 parameters for 10 classes, the
# article's 23,547,402. The layouts are the same; two details differ:
#
# * the article's convolutions have biases: one per output channel, $\sum C_{out}$ over all convolutions;
# * the paper puts a BatchNorm after each of the four projection shortcuts, with a scale and a
#   shift per channel: $2 \times (256 + 512 + 1024 + 2048) = 7{,}680$ parameters the article lacks.
#
# $$23{,}547{,}402 - 23{,}528{,}522 = \underbrace{\textstyle\sum C_{out}}_{\text{conv biases}} - 7{,}680$$

# %%
with torch.device("meta"):
    paper = torchvision.models.resnet50(weights=None, num_classes=10)
    ours = resnet50(num_classes=10)
print(f"cnncourse.models.resnet50 (the paper's), 10 classes: {cnncourse.count_parameters(ours):,}; "
      f"torchvision's: {cnncourse.count_parameters(paper):,}")
conv_biases = sum(m.bias.numel() for m in article.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)
shortcut_bn = sum(p.numel() for name, module in paper.named_modules() if name.endswith("downsample.1")
                  for p in module.parameters())
difference = cnncourse.count_parameters(article) - cnncourse.count_parameters(paper)
print(f"article's ResNet-50, 10 classes:   {cnncourse.count_parameters(article):,}")
print(f"difference:                        {difference:,}")
print(f"conv biases {conv_biases:,} - shortcut BatchNorm {shortcut_bn:,} = {conv_biases - shortcut_bn:,}; "
      f"equal: {conv_biases - shortcut_bn == difference}")

# %% [markdown]
# ## What the article measured
#
# The article trained its ResNet-50 on Galaxy10 for 30 epochs, once on the plain images and once with
# random rotations and horizontal flips (it gives no range of angles), and compared with its VGG16 run:
#
# * **without augmentation** the training loss kept falling, but the test loss turned upwards from
#   about epoch 8: over-fitting. The 30 epochs took 2,391 s, **86 %** of VGG16's time (which puts
#   VGG16 at about 2,780 s);
# * **with augmentation** there was no over-fitting through all 30 epochs, for 2,508 s;
# * its conclusion: ResNet-50 beat VGG16 on convergence and on time. As the next step it wanted to try a
#   **Vision Transformer** (lesson 8).
#
# It gives curves and times, not a final accuracy, and names neither its GPU nor its image size, batch
# size, optimizer or learning rate. The shape comments in its code are those of a 224-pixel input.

# %% [markdown]
# ## What each network costs
#
# A convolution producing an $H' \times W' \times C_{out}$ map from $C_{in}$ channels with a
# $k \times k$ kernel does $H' W' C_{out} C_{in} k^2$ multiply-accumulates (MACs); a dense layer
# $n_{in} n_{out}$. `cnncourse.count_macs` (built up in lesson 4) puts a forward hook on every
# convolution and dense layer and adds up their shares for one image, on the `meta` device (shapes, no
# data), so counting costs nothing even at 224 pixels.

# %%
with torch.device("meta"):
    networks = {"VGG16": vgg16(num_classes=10), "ResNet-50 (article)": resnet50_galaxy_article(num_classes=10)}
macs = {(name, size): cnncourse.count_macs(model, (3, size, size)) for name, model in networks.items() for size in (128, 224)}
print(f"{'network':<20} {'parameters':>12} {'GMACs at 224':>13} {'GMACs at 128':>13} {'layers with weights':>20}")
for name, model in networks.items():
    weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    print(f"{name:<20} {cnncourse.count_parameters(model):>12,} {macs[name, 224] / 1e9:>13.2f} "
          f"{macs[name, 128] / 1e9:>13.2f} {weighted:>20}")
ratio = macs["VGG16", 224] / macs["ResNet-50 (article)", 224]
print(f"VGG16 / ResNet-50 at 224: {cnncourse.count_parameters(networks['VGG16']) / cnncourse.count_parameters(networks['ResNet-50 (article)']):.1f}x "
      f"the parameters, {ratio:.1f}x the multiply-adds; time in proportion: ResNet-50 at {1 / ratio:.0%} of VGG16's")

# %% [markdown]
# VGG16 needs almost four times ResNet-50's multiply-adds, yet the article's ResNet-50 took 86 % of
# VGG16's time, not 26 %. **MACs are not seconds.** A likely explanation, not measured here: VGG16's
# few large convolutions keep a GPU's arithmetic units busy, while ResNet-50's 53 smaller convolutions,
# 49 BatchNorms, ReLUs and additions each read and write whole feature maps, limited by memory
# bandwidth rather than arithmetic; and loading and augmenting the images costs the same for both.

# %% [markdown]
# ### Exercise 6.2: Multiply-adds of a bottleneck block
#
# The formula above counts one convolution. Write `bottleneck_macs(in_channels, width, size, stride)`
# for one whole bottleneck block of the article's ResNet-50 on an `in_channels` x `size` x `size`
# input: the 1x1 to `width`, the 3x3 with the stride (padding 1), the 1x1 to `4 * width`, and the 1x1
# convolution with the stride on the shortcut when the block has one. Each convolution counts at the
# size of **its own** output. The check compares with `count_macs` on the real block, in every stage.

# %%
def bottleneck_macs(in_channels, width, size, stride):
    """Multiply-accumulates of one bottleneck block of the article's ResNet-50 on an in_channels x size x size
    input: 1x1 (in_channels -> width), 3x3 with the stride and padding 1 (width -> width), 1x1 (width -> 4 width),
    and, when the stride is not 1 or in_channels != 4 width, a 1x1 convolution with the stride on the
    shortcut (in_channels -> 4 width). Biases, BatchNorm, ReLU and the addition are left out."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb06

nb06.check_bottleneck_macs(bottleneck_macs)

# %% [markdown]
# ## The article's comparison, as a recipe for a GPU
#
# Four runs with identical settings, differing only in the network and in the augmentation: 30 epochs
# (the article's), Adam at $10^{-4}$ for both networks (lesson 5's sweep: VGG16 collapses at Adam's
# usual $10^{-3}$; the sweep did not test ResNet-50, so its rate is our choice, the same as VGG16's so
# that only the network differs), batches of 64, 128-pixel images, and a tenth of the training
# galaxies held out for validation. The article drew its test loss per epoch; the recipe draws the
# validation loss and looks at the test set once, at the end. Rotating by any angle from -180° to +180° is **our
# choice**: the article names no range.
#
# The expected times assume, as in lesson 5, that a Colab **T4** sustains $4 \times 10^{12}$
# multiply-adds per second in mixed precision, and that a training image costs three forward passes.
# They are estimates from arithmetic, not measurements - and "MACs are not seconds", above, is why
# ResNet-50's is the more optimistic of the two.

# %%
DRIVE = cnncourse.colab.DRIVE_FOLDER          # where the set-up cell keeps data and runs in Colab
COMMON = "--data galaxy10 --image-size 128 --epochs 30 --batch-size 64 --optimizer adam --lr 1e-4 --val-fraction 0.1 --seed 0"
T4_MACS_PER_S = 4e12                          # assumed sustained rate on a Colab T4 (mixed precision)
CLASS_COUNTS = [1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873]   # Galaxy10 DECaLS, lesson 5
test = sum(round(0.1 * n) for n in CLASS_COUNTS)                        # stratified 10 % test split
val = sum(round(0.1 * (n - round(0.1 * n))) for n in CLASS_COUNTS)      # a tenth of the rest for validation
train = sum(CLASS_COUNTS) - test - val
for model, title in (("vgg16", "VGG16"), ("resnet50_galaxy_article", "ResNet-50 (article)")):
    per_image = macs[title, 128]
    minutes = (30 * (3 * train + val) + test) * per_image / T4_MACS_PER_S / 60
    for augment in ("--no-augment", "--augment"):
        name = f"galaxy10-{model.split('_')[0]}-{augment.strip('-')}"
        print(f"# {title}, {augment.strip('-')}: estimate on a T4 about {minutes:.0f} minutes")
        print(f"cnncourse train --model {model} {COMMON} {augment} --data-root {DRIVE}/data --out {DRIVE}/runs/{name}")

# %% [markdown]
# To run them: in Colab choose *Runtime > Change runtime type > T4 GPU*, run the setup cell (it mounts your Google
# Drive: allow it), and run each printed command
# in a cell, preceded by `!`. The first downloads the 2.5 GB file into your Drive; each run reads it
# again, which adds minutes the estimate leaves out. After a disconnect, the same command with only
# `--out ... --resume` continues a run. Then set the curves side by side:
#
# ```python
# from cnncourse import reference
# runs = ["galaxy10-vgg16-no-augment", "galaxy10-resnet50-no-augment", "galaxy10-vgg16-augment", "galaxy10-resnet50-augment"]
# print(reference.history_table(runs, column="val_loss", path=f"{DRIVE}/runs"))
# reference.plot_results(runs, column="val_loss", path=f"{DRIVE}/runs")
# ```
#
# **What to look for.** Over-fitting shows as a validation loss that turns upwards while the training
# loss keeps falling. The article saw it from about epoch 8 without augmentation and not at all with it;
# where it starts depends on the image size, learning rate and split. The seconds per epoch in each
# `metrics.json` set the estimate against a measurement. Add `--image-size 224 --amp off` to all four
# for the article's set-up (224 pixels, float32), several times slower. None of these runs has been
# measured by the course.

# %% [markdown]
# ### Exercise 6.3: Rotations and flips for a whole batch
#
# A galaxy has no up or down. Rotations by multiples of $90°$ with mirroring give the eight symmetries of
# the square, and lose no pixels (a rotation by 30° must invent its corners). Write
# `rotate_flip(images, quarter_turns, flips)` for a batch of square images: image $i$ is mirrored
# left-right if `flips[i]`, then turned counter-clockwise by `quarter_turns[i]` quarter turns
# (`torch.flip`, `torch.rot90`).

# %%
import torch


def rotate_flip(images, quarter_turns, flips):
    """Augment a batch of square images (N, C, H, H): image i is first mirrored left-right if
    flips[i], then turned counter-clockwise by quarter_turns[i] x 90 degrees."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb06

nb06.check_rotate_flip(rotate_flip)

# %% [markdown]
# ### Exercise 6.4: The confusion matrix
#
# Each run of the recipe draws its test confusion matrix in `confusion.png`. Write
# `confusion_matrix(labels, preds, num_classes)`: a `num_classes` x `num_classes` matrix of counts
# whose entry $[i, j]$ is the number of images of true class $i$ predicted as class $j$. It must have all
# `num_classes` rows even when a small test set misses a class.

# %%
def confusion_matrix(labels, preds, num_classes):
    """(num_classes, num_classes) counts: entry [i, j] is the number of images of true class i
    predicted as class j. labels, preds: 1-D integer tensors."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb06

nb06.check_confusion_matrix(confusion_matrix)

# %% [markdown]
# ## Summary
#
# * The article's ResNet-50 has 23,547,402 parameters: torchvision's 23,528,522, plus 26,560 conv
#   biases, minus the 7,680 parameters of the shortcut BatchNorms it leaves out.
# * For 224-pixel images its maps go 112, 56, then 256x56x56, 512x28x28, 1024x14x14, 2048x7x7; at the
#   recipe's 128 pixels the last stage works on 4x4.
# * VGG16 has 5.7 times the parameters and 3.8 times the multiply-adds of ResNet-50, but the article
#   measured ResNet-50 at 86 % of VGG16's time: multiply-adds are not seconds.
# * The article: without augmentation ResNet-50 over-fits from about epoch 8; rotations and flips
#   remove the over-fitting for 5 % more time.
# * Not stated by the article, and so ours: the image size, the rotation range, and the optimizer,
#   learning rate and batch size of the recipe.
#
# Next: lesson 7 opens a trained network and asks what it looks at.

# %% [markdown]
# ## Experiment: does time follow the multiply-adds on your CPU?
#
# On the article's GPU, ResNet-50 took 86 % of VGG16's time for a quarter of its multiply-adds. Measure
# the same share on your laptop in quick mode: the 90 sample images at 64 pixels, 2 epochs, on one CPU
# thread, a minute or two a run. In a new cell:
#
# ```python
# from cnncourse.fastdata import fast_loaders
# from cnncourse.train import fit
#
# torch.set_num_threads(1)
# with cnncourse.quick():
#     train_loader, test_loader = fast_loaders("galaxy10", batch_size=30, image_size=64, seed=0, device="cpu")
# for build in (vgg16, resnet50_galaxy_article):
#     for seed in (0, 1):
#         cnncourse.seed_everything(seed)
#         history = fit(build(num_classes=10), train_loader, test_loader, epochs=2, seed=seed, progress=False,
#                       device="cpu")
#         print(build.__name__, seed, [round(r["train_images_per_s"], 1) for r in history])
# ```
#
# Record the images per second of each epoch (the first may be slower: leave it out if so). Compute
# ResNet-50's time as a share of VGG16's, and set it beside the ratio of their multiply-adds at 64
# pixels (`cnncourse.count_macs`). Is your CPU closer to the multiply-adds or to the article's GPU? Then
# change one thing, `torch.set_num_threads` to your number of cores: does the share move?
