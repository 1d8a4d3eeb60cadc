# %% [markdown]
# # 4. ResNet-50 on Fashion-MNIST: where a small image's pixels go
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/04_resnet50_fashion_mnist.ipynb)
#
# Lesson 3 built residual blocks and trained a ResNet on digits. This lesson follows a Japanese blog
# article that trained ResNet-50 (in Keras) on Fashion-MNIST's 28-pixel images and reported 91.3 %
# test accuracy after 400 epochs. We rebuild its network in PyTorch and ask what a parameter count
# hides: how large are the maps each layer sees?
#
# *Retold from* 「TensorFlow2.0を使ってFashion-MNISTをResNet-50で学習する」 (Qiita): its Keras
# network, counted to the parameter, and its settings; the PyTorch rebuild, the map sizes, the
# small-image stem and the 2 x 2 of runs are the course's.
#
# 1. Fashion-MNIST and the bottleneck block;
# 2. the article's ResNet-50, rebuilt and counted, against the paper's;
# 3. where the 28 pixels go, and the weights that never meet a pixel;
# 4. a stem for small images, its cost, and ResNet-20 trained live;
# 5. the recorded comparison, and a trained network's mistakes and feature maps.
#
# The evidence (controlled runs, audits, costs) is in [the lab](labs/04_resnet50_experiments.ipynb).

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
# **Scale.** At the laptop scale, the default, the notebook downloads Fashion-MNIST (30 MB) and its one
# training run takes ResNet-20 through 3 epochs of all of it, about 4 minutes on a 2-core CPU; the stored
# outputs are that run. `cnncourse.set_scale("sample")` at the top of the next cell (or `CNNCOURSE_QUICK=1`,
# which the tests set) swaps in a sample of 500 training and 200 test images shipped with the package;
# `"full"` runs the course's 15 epochs (about 20-30 minutes on a 2-core CPU). The trained network at the end comes
# from recorded weights at every scale.

# %% tags=["nbval-ignore-output"]
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnncourse
from cnncourse import plot, reference
from cnncourse.data import NORMALIZATION, dataset_info, get_dataset
from cnncourse.fastdata import fast_loaders
from cnncourse.models import Bottleneck, make_stage, resnet18, resnet20, resnet50, resnet50_keras_article
from cnncourse.theory import output_size
from cnncourse.train import fit, predict

QUICK = cnncourse.quick_mode()           # the sample scale
DEVICE = cnncourse.get_device()
RECIPE_EPOCHS = cnncourse.at_scale(sample=12, laptop=3, full=15)   # full: the course's recipe
RECIPE_BATCH_SIZE = cnncourse.at_scale(sample=32, laptop=128)  # 450 sample images make 15 steps at 32
RUN = "the package's sample" if QUICK else "the full data set"
RUNS = cnncourse.runs_root()             # checkpoints of the live run (in Colab on Drive; the sample writes none)
print("torch", torch.__version__, "|", cnncourse.describe_scale("04_resnet50_fashion_mnist", 15 / 3), "| epochs:", RECIPE_EPOCHS, "| batch:", RECIPE_BATCH_SIZE)
print(cnncourse.describe_device())

# %% [markdown]
# ## Fashion-MNIST
#
# Zalando Research (Xiao, Rasul and Vollgraf, 2017) made Fashion-MNIST as a drop-in replacement for
# MNIST: 28x28 grey-level images, 60,000 for training and 10,000 for testing, 10 balanced classes of
# clothing. It is harder: at this resolution shirts, T-shirts, pullovers and coats look alike.

# %% tags=["nbval-ignore-output"]
info = dataset_info("fashion-mnist")
print(f"{info.title}: {info.num_images:,} images of {info.in_channels}x{info.image_size}x{info.image_size}, "
      f"classes: {', '.join(info.classes)}")
train_set, test_set = get_dataset("fashion-mnist", "train"), get_dataset("fashion-mnist", "test")
print(f"here: {len(train_set):,} training and {len(test_set):,} test images")

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(2, 10, figsize=(12, 3))
for column in range(10):
    picks = [i for i, t in enumerate(train_set.targets) if t == column][:2]
    for row, index in enumerate(picks):
        axes[row, column].imshow(train_set[index][0], cmap="gray")
        axes[row, column].axis("off")
    axes[0, column].set_title(train_set.classes[column], fontsize=8)
fig.suptitle(f"Fashion-MNIST: two training images per class ({RUN})")
fig.tight_layout()

# %% [markdown]
# ## The bottleneck block
#
# ResNet-50 is built from lesson 3's bottleneck block: a 1x1 convolution reduces $C$ channels to a
# width $w$, a 3x3 convolution works on those few, a 1x1 convolution expands them to $4w$, each
# followed by BatchNorm, and $y = \mathrm{ReLU}(F(x) + x)$. At $C = 256$ and $w = 64$ it holds
#
# $$P = Cw + 9w^2 + 4w^2 + 2(w + w + 4w) = 70{,}400$$
#
# parameters, where two 3x3 convolutions at 256 channels would hold over a million. A stage that
# halves the size gives its first block stride 2 and a 1x1 projection on the shortcut. **Where the
# stride sits** differs: He et al.'s ImageNet bottleneck strides in its first 1x1 convolution, which
# reads one pixel of every 2x2 square; torchvision's and this course's stride the 3x3 ("ResNet
# v1.5"), whose window covers every pixel. The 1x1 stride-2 projection reads one pixel in four in
# every version.

# %%
C, w = 256, 64
print(f"formula {C * w + 9 * w * w + 4 * w * w + 2 * (6 * w):,} | Bottleneck({C}, {w}): "
      f"{cnncourse.count_parameters(Bottleneck(C, w)):,} | two 3x3 convolutions: {2 * 9 * C * C:,} weights")
stage = make_stage(Bottleneck, 256, 128, num_blocks=4, stride=2)
print("stride-2 layers of a downsampling stage:",
      [name for name, m in stage.named_modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)])

# %% [markdown]
# ## The article's "ResNet-50", rebuilt in PyTorch
#
# The article built its network with Keras's functional API. In our words:
#
# * **stem**: 7x7 convolution with stride 2 (64 filters), BatchNorm, ReLU, 3x3 max-pool with stride 2;
# * **stage 1**: three bottleneck blocks (widths 64, 64, 256); the first has a 1x1 convolution on its
#   shortcut to go from 64 to 256 channels;
# * **stages 2-4**: a *standalone* 1x1 convolution with stride 2 that doubles the channels (512,
#   1024, 2048) and halves the size, then 4, 6 and 3 bottleneck blocks with identity shortcuts;
# * **head**: global average pooling, a dense layer of 1000 units with ReLU, and 10 outputs
#   (logits here: `nn.CrossEntropyLoss` applies the softmax).
#
# Every Keras convolution has a bias, so the rebuild's do too: `resnet50_keras_article()`.

# %%
cnncourse.seed_everything(0)
article_model = resnet50_keras_article(num_classes=10, in_channels=1)
layer_types = [type(m).__name__ for m in article_model.modules()]
print("convolutions:", layer_types.count("Conv2d"), "| BatchNorms:", layer_types.count("BatchNorm2d"),
      "| dense layers:", layer_types.count("Linear"), "| bottleneck blocks:", layer_types.count("ArticleBottleneck"))
print("output for a batch of two 1x28x28 images:", tuple(article_model(torch.zeros(2, 1, 28, 28)).shape))

# %% [markdown]
# ### Exercise 4.1: The article's bottleneck block
#
# Write the article's bottleneck block, `KerasBottleneck(in_channels, width, out_channels)`: 1x1, 3x3
# (padding 1) and 1x1 convolutions, **each with a bias** as Keras makes them, each followed by BatchNorm,
# the first two by ReLU; the shortcut is the identity, or a biased 1x1 convolution **without** BatchNorm
# when the channels change; the last ReLU comes after the addition. The check loads the weights of
# `cnncourse.models.article.ArticleBottleneck` into yours and compares the outputs.

# %%
from torch import nn


class KerasBottleneck(nn.Module):
    """The article's bottleneck: 1x1 conv (in -> width), BN, ReLU, 3x3 conv (padding 1), BN, ReLU,
    1x1 conv (width -> out), BN; every conv with a bias. Shortcut: the identity, or a biased 1x1 conv
    without BN when in_channels != out_channels. Output: ReLU(F(x) + shortcut(x))."""

    def __init__(self, in_channels, width, out_channels):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError

# %%
from cnncourse.exercises import nb04

nb04.check_keras_bottleneck(KerasBottleneck)

# %% [markdown]
# ## Keras's 26,313,218 against PyTorch's 26,267,778
#
# Keras reported **26,313,218** parameters for this network, **26,267,778** of them trainable and
# **45,440** not. A BatchNorm layer over $C$ channels holds four vectors of length $C$: the scale
# $\gamma$ and shift $\beta$, learned, and the running mean and variance, averaged. Keras counts all
# four as weights; PyTorch keeps the last two as **buffers**, not parameters. With $\sum C$ the
# channels of all BatchNorm layers:
#
# $$\text{Keras total} = \text{PyTorch parameters} + 2 \textstyle\sum C.$$

# %%
bn_channels = sum(m.num_features for m in article_model.modules() if isinstance(m, nn.BatchNorm2d))
parameters = cnncourse.count_parameters(article_model)
print(f"PyTorch parameters {parameters:,} + 2 x {bn_channels:,} BatchNorm channels = {parameters + 2 * bn_channels:,}")
print("equal to Keras's trainable and total:", (parameters, parameters + 2 * bn_channels) == (26_267_778, 26_313_218))

# %% [markdown]
# ### Exercise 4.2: Keras's total parameter count
#
# Write `keras_param_total(model)`: the "Total params" that Keras's `model.summary()` would report for a
# PyTorch model - all its parameters (trainable or not) plus the running mean and variance of every
# BatchNorm layer. On `resnet50_keras_article()` it must give the article's 26,313,218.

# %%
def keras_param_total(model):
    """What Keras's model.summary() reports as "Total params" for the same network: PyTorch's
    parameters plus every BatchNorm's running mean and running variance."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb04

nb04.check_keras_param_total(keras_param_total)

# %% [markdown]
# ## The paper's ResNet-50 is a different network
#
# He et al.'s ResNet-50 (and torchvision's) has the same stem and 3, 4, 6, 3 bottleneck blocks, but
#
# * it downsamples **inside the first block of each stage**, so a shortcut runs around every change
#   of size; the article's standalone 1x1 stride-2 convolutions sit on the main path with none;
# * its projection shortcuts are followed by BatchNorm, and its convolutions have no bias (the
#   BatchNorm after each would subtract it again);
# * global average pooling goes straight to the classifier, with no extra dense layer.
#
# Our `cnncourse.models.resnet50` must agree with torchvision's to the parameter:

# %%
with torch.device("meta"):   # shapes only: no memory and no initialisation time
    for num_classes in (1000, 10):
        ours = cnncourse.count_parameters(resnet50(num_classes=num_classes))
        theirs = cnncourse.count_parameters(torchvision.models.resnet50(weights=None, num_classes=num_classes))
        print(f"{num_classes:>4} classes: cnncourse {ours:,} | torchvision {theirs:,} | equal: {ours == theirs}")
    grey = cnncourse.count_parameters(resnet50(num_classes=10, in_channels=1))
print(f"1-channel input: {grey:,}; the article's network has {parameters - grey:,} more, "
      f"{2048 * 1000 + 1000 + 1000 * 10 + 10 - (2048 * 10 + 10):,} of them from its larger dense head")

# %% [markdown]
# ### Exercise 4.3: Global average pooling
#
# The paper's ResNet-50 ends with global average pooling: each of the $C$ final maps becomes one number,
# its mean over all positions. Write `global_avg_pool(x)` for $x$ of shape $(N, C, H, W)$, returning
# $(N, C)$, without PyTorch's pooling functions.

# %%
def global_avg_pool(x):
    """Global average pooling of x (N, C, H, W): the mean of each channel over all positions, (N, C)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb04

nb04.check_global_avg_pool(global_avg_pool)

# %% [markdown]
# ## Where the 28 pixels go
#
# Every convolution and pooling layer maps a side of $n$ pixels to
#
# $$n' = \left\lfloor \frac{n + 2p - k}{s} \right\rfloor + 1$$
#
# (kernel $k$, padding $p$, stride $s$). The ImageNet stem was designed for $n = 224$: 112 after the
# 7x7/2 convolution, 56 after the 3x3/2 max-pool, then stages at 56, 28, 14, 7. We compute the
# sizes for $n = 28$ with the formula and record them on a real forward pass with **forward hooks**:
# functions PyTorch calls with a module's output each time it runs. `cnncourse.trace_shapes` registers
# one on each named module, runs one image of zeros and removes them. By hand, for the stem's convolution:

# %%
seen = {}
hook = article_model.stem[0].register_forward_hook(lambda module, inputs, output: seen.update(shape=output.shape))
with torch.no_grad():
    article_model.eval()(torch.zeros(1, 1, 28, 28))
hook.remove()
print("by hand:", tuple(seen["shape"][1:]), "| trace_shapes:", cnncourse.trace_shapes(article_model, ["stem.0"], (1, 28, 28)))

# %%
def compare_trace(model, steps, input_size):
    """Print formula and hook sizes side by side; ``steps`` = (module name, what it does, k, p, s)."""
    recorded = cnncourse.trace_shapes(model, [name for name, *_ in steps], input_size)
    n, agree = input_size[-1], True
    print(f"{'module':<10} {'what it does':<36} {'formula':>8} {'hooks':>14}")
    for name, what, k, p, s in steps:
        n = output_size(n, k, p, s)
        agree &= recorded[name][1:] == (n, n)
        print(f"{name:<10} {what:<36} {n:>8} {str(recorded[name]):>14}")
    print("formula == hooks:", agree)
    return recorded


ARTICLE_STEPS = [("stem.0", "conv 7x7, stride 2, padding 3", 7, 3, 2),
                 ("stem.3", "max-pool 3x3, stride 2, padding 1", 3, 1, 2),
                 ("layer1", "3 blocks, stride 1", 3, 1, 1),
                 ("layer2", "1x1 conv stride 2, then 4 blocks", 1, 0, 2),
                 ("layer3", "1x1 conv stride 2, then 6 blocks", 1, 0, 2),
                 ("layer4", "1x1 conv stride 2, then 3 blocks", 1, 0, 2)]
article_trace = compare_trace(article_model, ARTICLE_STEPS, (1, 28, 28))

# %% [markdown]
# **28 → 14 → 7 → 7 → 4 → 2 → 1.** The stem alone keeps $7 \times 7 = 49$ of the 784 positions,
# one in sixteen, before any residual block has looked at the image; the last stage works on a
# single pixel.

# %% [markdown]
# ## What a 3x3 convolution sees on a tiny map
#
# A 3x3 convolution with padding 1 on an $n \times n$ map makes $9n^2$ products of a weight and an
# input value. Along one axis, the $n - 2$ inner positions have 3 real neighbours and the two border
# positions 2, so the share of products that touch a real pixel rather than padding is
#
# $$\frac{(3n-2)^2}{9n^2}: \quad n = 56 \to 98\,\%, \quad n = 7 \to 82\,\%, \quad n = 2 \to 44\,\%, \quad n = 1 \to 11\,\%.$$
#
# Counted directly, by convolving a map of ones with a kernel of ones:

# %%
for n in (56, 7, 2, 1):
    formula = (3 * n - 2) ** 2 / (9 * n * n)
    counted = F.conv2d(torch.ones(1, 1, n, n), torch.ones(1, 1, 3, 3), padding=1).sum().item() / (9 * n * n)
    print(f"n = {n:>2}: formula {formula:.4f}, counted {counted:.4f}")

# %% [markdown]
# At $n = 1$ only the centre weight of each 3x3 kernel ever multiplies a pixel: the other eight
# multiply zeros, so **their gradient is always exactly zero** and they never learn. In the article's
# last stage that is 8/9 of every 3x3 convolution - about a quarter of the whole network. Autograd
# confirms it:

# %%
article_model.train().zero_grad()
x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
F.cross_entropy(article_model(x), torch.tensor([0, 1, 2, 3])).backward()
centre = torch.zeros(3, 3, dtype=torch.bool)
centre[1, 1] = True
blind = 0
for name, module in article_model.layer4.named_modules():
    if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
        grad = module.weight.grad
        print(f"layer4.{name}: largest |gradient| off the centre {grad[..., ~centre].abs().max().item()}, "
              f"at the centre > 0: {grad[..., centre].abs().max().item() > 0}")
        blind += module.weight[..., ~centre].numel()
print(f"weights that never meet a pixel: {blind / 1e6:.2f} M of {parameters / 1e6:.2f} M ({blind / parameters:.0%})")
article_model.zero_grad(set_to_none=True)

# %% [markdown]
# ### Exercise 4.4: Which weights ever meet a pixel?
#
# Generalise the count to any window. Write `live_taps(n, kernel, stride, padding)`: how many of a
# kernel's `kernel` positions along one axis multiply a real pixel (not a padding zero) at one output
# position at least, when it slides over $n$ pixels. Output $i$'s window starts at input index
# $is - p$. A $k \times k$ kernel then has `live_taps(...) ** 2` live weights.
#
# Predict one case with pencil first. The paper's ResNet-50 accepts 32-pixel images (Fashion-MNIST
# padded by 2); there its `layer4.0.conv2`, a 3x3 convolution with stride 2 and padding 1, reads a
# 2x2 map. How many of its nine weights per kernel ever meet a pixel? That case is among the hidden ones.

# %%
def live_taps(n, kernel, stride, padding):
    """How many of a kernel's `kernel` positions along one axis multiply a real pixel (not padding)
    for at least one output position, sliding over n pixels with this stride and padding."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb04

nb04.check_live_taps(live_taps)

# %% [markdown]
# ## A proposed fix: a stem for small images
#
# The paper's model refuses 28-pixel images outright, and says what to do. With `small_input=True`
# the stem is a 3x3 convolution with stride 1 and no max-pool, so the stages work at 28, 14, 7 and 4
# pixels. The paper's CIFAR-10 networks (ResNet-20, -32, -56, ...) were built that way from the
# start: a 3x3 stem and three stages of basic blocks with 16, 32 and 64 channels. In both, the
# stride of a stage's first block sits on a 3x3 convolution.

# %%
try:
    resnet50(num_classes=10, in_channels=1)(torch.zeros(1, 1, 28, 28))
except ValueError as error:
    print("ValueError:", error)
SMALL_STEPS = [("conv1", "conv 3x3, stride 1, padding 1", 3, 1, 1),
               ("layer1", "3 bottlenecks, stride 1", 3, 1, 1),
               ("layer2", "4 bottlenecks, stride 2 in the first", 3, 1, 2),
               ("layer3", "6 bottlenecks, stride 2 in the first", 3, 1, 2),
               ("layer4", "3 bottlenecks, stride 2 in the first", 3, 1, 2)]
print("\nResNet-50, small_input=True")
small_trace = compare_trace(resnet50(num_classes=10, in_channels=1, small_input=True), SMALL_STEPS, (1, 28, 28))
print("\nResNet-20, the paper's CIFAR network")
cifar_steps = SMALL_STEPS[:1] + [(f"layer{i}", f"3 basic blocks, stride {s}", 3, 1, s) for i, s in ((1, 1), (2, 2), (3, 2))]
cifar_trace = compare_trace(resnet20(num_classes=10, in_channels=1), cifar_steps, (1, 28, 28))

# %% [markdown]
# ## What each choice costs
#
# Resolution is not free. A convolution producing an $H' \times W' \times C_{out}$ map from $C_{in}$
# channels with a $k \times k$ kernel does
#
# $$\text{MACs} = H' \, W' \, C_{out} \, C_{in} \, k^2$$
#
# multiply-accumulates (a dense layer: inputs x outputs). `cnncourse.count_macs` adds up each layer's
# share with forward hooks, on the `meta` device (shapes without data). The stem's convolution,
# $14 \cdot 14 \cdot 64 \cdot 1 \cdot 7^2$, then whole networks:

# %%
stem_macs = cnncourse.count_macs(article_model.stem[0], (1, 28, 28))
print(f"stem: formula {14 * 14 * 64 * 1 * 7 ** 2:,} | count_macs {stem_macs:,}\n")
candidates = [("article ResNet-50 (224-px stem)", lambda: resnet50_keras_article(10, 1), 28, "layer4"),
              ("paper ResNet-50, images padded to 32", lambda: resnet50(10, 1), 32, "layer4"),
              ("paper ResNet-50, small_input=True", lambda: resnet50(10, 1, small_input=True), 28, "layer4"),
              ("ResNet-18, small_input=True", lambda: resnet18(10, 1, small_input=True), 28, "layer4"),
              ("ResNet-20 (CIFAR-style)", lambda: resnet20(10, 1), 28, "layer3")]
print(f"{'model':<38} {'input':>5} {'parameters':>12} {'MMACs/image':>12} {'last map':>14}")
for title, build, size, last in candidates:
    with torch.device("meta"):
        model = build()
    last_shape = cnncourse.trace_shapes(model, [last], (1, size, size))[last]
    print(f"{title:<38} {size:>5} {cnncourse.count_parameters(model):>12,} "
          f"{cnncourse.count_macs(model, (1, size, size)) / 1e6:>12.1f} {'x'.join(map(str, last_shape)):>14}")

# %% [markdown]
# Read the table as a menu. The article's network spends 77 million MACs per image, almost all on
# maps of 7x7 and smaller. ResNet-50 with the small stem keeps the resolution at **13 times** the
# compute. **ResNet-20** sees the image at 28, 14 and 7 pixels with 1 % of the parameters and 40 % of
# the article's compute: our bet for 28-pixel images is resolution over size, and this is the network
# we train.

# %% [markdown]
# ## Training ResNet-20 with the course's recipe
#
# Three changes to the article's recipe (Adam at $10^{-3}$, batches of 128, no augmentation), each
# standard for small-image ResNets:
#
# * **augmentation**: a random crop of the image padded by 2 pixels, and horizontal flips;
# * **SGD with Nesterov momentum and the one-cycle schedule**: the learning rate climbs to 0.1 over
#   the first 30 % of the steps, then anneals towards zero; weight decay $5 \cdot 10^{-4}$;
# * **label smoothing 0.1**: the target puts 0.9 on the true class and spreads 0.1 over all ten.
#
# A tenth of every class is held out for validation after each epoch; the test set is looked at once,
# at the end. The laptop scale: 3 epochs on 54,000 images, about 4 minutes on a 2-core CPU (the full
# scale: the recipe's 15, 20-30 minutes); a checkpoint in `runs/` lets an interrupted run continue. The sample
# scale: 12 epochs at batches of 32 on 450 images without augmentation (our choice for so short a run).

# %% tags=["nbval-ignore-output"]
train_loader, val_loader, test_loader = fast_loaders("fashion-mnist", batch_size=RECIPE_BATCH_SIZE,
                                                     augment=not QUICK, seed=0, val_fraction=0.1)
cnncourse.seed_everything(0)
small_model = resnet20(num_classes=10, in_channels=1)
checkpoint = None if QUICK else RUNS / "fmnist-resnet20-sgd-onecycle.pt"   # resumable
history = fit(small_model, train_loader, test_loader, epochs=RECIPE_EPOCHS, optimizer="sgd", lr=0.1,
              momentum=0.9, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
              device=DEVICE, seed=0, checkpoint=checkpoint, resume=checkpoint is not None, val_data=val_loader)
for record in history:
    print(f"epoch {record['epoch']:>2}: train loss {record['train_loss']:.3f}, train acc {record['train_acc']:.1%}, "
          f"validation acc {record['val_acc']:.1%}, {record['seconds']:.1f} s")
seconds = sum(record["seconds"] for record in history)
print(f"{seconds:.0f} s for {len(history)} epochs on {torch.get_num_threads()} threads; "
      f"test accuracy after the last epoch: {history[-1]['test_acc']:.2%}")

# %% [markdown]
# **Target at the laptop scale: at least 90 % test accuracy in at most 5 minutes** (guessing: 10 %). The
# sample scale asks for 70 % of its 200 test images, below what it reaches, so that CPUs that round
# differently pass too; the full scale, one run, 94 % (below: the three-seed goal). Validation accuracy beats training accuracy in the first
# epochs: the training figure is the mean over an epoch of a network still improving, on augmented images.

# %%
TARGET, LIMIT = cnncourse.at_scale(sample=(0.70, 300), laptop=(0.90, 300), full=(0.94, float("inf")))
print("target reached (test accuracy and time):", history[-1]["test_acc"] >= TARGET and seconds <= LIMIT)

# %% [markdown]
# The full recipe, 15 epochs with the same hold-out, was recorded for seeds 0, 1 and 2 (one CPU thread
# each, two runs side by side, in bfloat16 autocast); the course's goal for their mean test accuracy is
# 94.5 %:

# %%
val, test = (reference.seed_stats("reference-fmnist/resnet20", column=column) for column in ("val_acc", "test_acc"))
runs = reference.seed_runs("reference-fmnist/resnet20")
print(f"ResNet-20, {runs[0]['epochs']} epochs, {test['n']} seeds: validation {100 * val['mean']:.2f} ± "
      f"{100 * val['std']:.2f} %, test {100 * test['mean']:.2f} ± {100 * test['std']:.2f} % "
      f"(seeds: {', '.join(f'{100 * r:.2f}' for r in test['values'])} %)")
print("goal met (mean test accuracy >= 94.5 % within 15 epochs):",
      test["mean"] >= 0.945 and all(run["epochs"] <= 15 for run in runs))

# %% [markdown]
# The goal is missed by about three quarters of a point, and not by chance: the three seeds lie within
# 0.3 points of each other. Random erasing, the one change tried, did not win on the validation images,
# so the recipe stays. [The lab](labs/04_resnet50_experiments.ipynb) has the seeds and the erasing runs.

# %% [markdown]
# ## The controlled comparison
#
# Is ResNet-20 better because of the network or the recipe? The lab's 2 x 2 of recorded runs trains
# each network with each recipe: 10 epochs on 54,000 images, one seed each, judged on 6,000 held-out
# images. The last epoch of each:

# %%
cells = reference.controlled()["fmnist-2x2"]["groups"]
final = {label: reference.seed_runs(prefix)[0]["val_accuracy"] for label, prefix in cells.items()}
r50_article, r50_ours, r20_article, r20_ours = final.values()
print(f"{'validation accuracy':<22}{'article recipe':>16}{'our recipe':>12}")
print(f"{'article ResNet-50':<22}{100 * r50_article:>15.2f}%{100 * r50_ours:>11.2f}%")
print(f"{'ResNet-20':<22}{100 * r20_article:>15.2f}%{100 * r20_ours:>11.2f}%")
print("ResNet-20 ends above the article's network with both recipes:", r20_article > r50_article and r20_ours > r50_ours)
print("the course's recipe raises ResNet-20:", r20_ours > r20_article, "| the article's network:", r50_ours > r50_article)

# %% [markdown]
# ResNet-20, with a hundredth of the parameters, ended above the article's network with both
# recipes, by a point and a half with the article's and by over six with ours. The course's recipe
# helped ResNet-20 only: its effect depends on the network. One seed cannot settle a gap of a point
# or two; [the lab](labs/04_resnet50_experiments.ipynb) has the curves, the shares and the full-data runs.

# %% [markdown]
# ## The trained network, computed here
#
# The article's network is too large to ship (about 100 MB of weights). Seed 0 of the recorded runs
# above saved its weights; `reference.load_model` checks them against their recorded checksum
# (evaluated here in float32, not the run's bfloat16, it gets one test image fewer right). Everything below is computed from them on this
# notebook's test images (all 10,000; at the sample scale, the sample's 200).

# %% tags=["nbval-ignore-output"]
trained = reference.load_model("reference-fmnist/resnet20-s0", device=DEVICE)
predictions = predict(trained, test_loader, keep_images=True)
wrong, total = int((predictions.preds != predictions.labels).sum()), len(predictions.labels)
print(f"trained ResNet-20: {total - wrong:,} of {total:,} test images right ({100 * (total - wrong) / total:.2f} %)")

# %% [markdown]
# Its confusion matrix (rows: true class, columns: prediction). The largest confusions are shirts and
# T-shirts taken for each other (92 and 70); with shirts, coats and pullovers mistaken among themselves
# (208) they make 370 of its 614 mistakes. A shoe is taken for another shoe, bar one ankle boot called a
# bag, and trousers and bags are right 988 and 996 times in 1,000.

# %%
figure = plot.plot_confusion_matrix(predictions, class_names=info.classes, cmap="viridis",
                                    title=f"trained ResNet-20 (recorded weights): {total:,} test images ({RUN})")
figure.axes[0].set(xlabel="predicted class", ylabel="true class")
figure.axes[1].set_ylabel("test images")
figure

# %% [markdown]
# Its feature maps for the first test image, an ankle boot, at the end of each stage (the first 7 of
# each). At 28x28 (`layer1`) they trace the boot's outline and sole; at 14x14 (`layer2`) they light up
# on parts; at 7x7 (`layer3`) they are coarse grids of where a pattern was found. The article's
# network is down to 2x2 in its third stage.

# %%
mean, std = NORMALIZATION["fashion-mnist"]
test_image = next(iter(test_loader))[0][0]
for layer in ("layer1", "layer2", "layer3"):
    maps = plot.feature_maps(trained, test_image, layer)
    display(plot.plot_feature_maps(trained, test_image, layer, max_maps=7, mean=mean, std=std,
                                   title=f"trained ResNet-20 (recorded weights): {layer}, first 7 of {maps.shape[0]} maps of "
                                         f"{maps.shape[1]}x{maps.shape[2]}, first Fashion-MNIST test image"))

# %% [markdown]
# ## Experiment: ResNet-20 on the article's 7x7 maps
#
# The article's stem leaves 7x7 maps before its first block. Is it the lost resolution that costs
# accuracy, or the network that follows? Keep ResNet-20 and the recipe, and take the resolution away:
# `nn.Sequential(nn.AvgPool2d(4), resnet20(num_classes=10, in_channels=1))` sees each image as 7x7
# pixels. Train it like the run above (or at the sample scale, for speed) with seeds 0 and 1 (`seed=` in `fast_loaders`,
# `seed_everything` and `fit`), and the unchanged ResNet-20 with the same seeds. Record each run's
# last validation and test accuracy and its seconds per epoch. Does the gap between 28 and 7 pixels
# exceed the spread between the two seeds? Then try `nn.AvgPool2d(2)` (14 pixels).

# %% [markdown]
# ## Summary
#
# * ResNet-50's bottleneck block puts a 3x3 convolution between two 1x1s; the course's and
#   torchvision's carry a stage's stride on the 3x3 (ResNet v1.5), He et al.'s on the first 1x1.
# * The article's network has exactly Keras's 26,267,778 trainable parameters; Keras's 45,440 more
#   are BatchNorm's running statistics, which PyTorch keeps as buffers.
# * Through a stem designed for 224-pixel photos a 28-pixel image shrinks to 14, 7, 7, 4, 2 and **1**
#   pixels: the formula and the hooks agree. In the last stage 8 of 9 weights of every 3x3
#   convolution meet only padding, a quarter of the network, and get no gradient.
# * A stem for small images keeps the resolution: ResNet-50 with it costs 13 times the compute;
#   ResNet-20 keeps 28-14-7 maps with a hundredth of the parameters, and in the recorded 2 x 2 it
#   ended above the article's network with both recipes.
#
# Next: lesson 5 leaves 28-pixel images for 256-pixel galaxies, and VGG16.
