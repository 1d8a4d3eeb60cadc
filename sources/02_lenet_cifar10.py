# %% [markdown]
# # 2. LeNet on CIFAR-10: reproduce the article, then do better
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/02_lenet_cifar10.ipynb)
#
# **What you will learn.** The CIFAR-10 data set and what its usual preprocessing does to the
# pixels; LeNet with BatchNorm, layer by layer, with every shape and every parameter count worked
# out by formula and checked against PyTorch and `torchsummary`; why the network ends in logits and
# not in a softmax; how to train it exactly as the source article did (Adam, learning rate 0.01,
# 10 epochs, batch 64) and plot its accuracy curve the article's way; how a better recipe for
# **the same network** - AdamW with a one-cycle schedule, the data set's own statistics, and
# augmentation - does better; and what the trained network has learned: which classes it confuses,
# which images it gets wrong, its first-layer filters and its feature maps, computed here from the
# weights of the recorded full-data run.
#
# Course: 1 theory · 2 LeNet on CIFAR-10 · 3 ResNet on MNIST · 4 ResNet-50 on Fashion-MNIST ·
# 5 VGG16 on Galaxy10 · 6 ResNet-50 on Galaxy10.

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
# with the package - 200 training and 200 test images of CIFAR-10 - and the live training runs make
# 40 short passes over those 200 images: the notebook runs in about a minute on a laptop CPU, and
# that is what the stored outputs show. Those live runs are a **quick sample**, labelled so: they
# show that the code learns, not how well LeNet does. The full runs (10 epochs on all 50,000
# images) are recorded in `results/` with their trained weights; the notebook shows their curves
# and computes every figure of a trained network from their weights, in quick mode too. Without
# quick mode (the default when you open the notebook in Jupyter or Colab) the notebook downloads
# CIFAR-10 (about 170 MB) and runs the article's 10 epochs - use a GPU for that. To choose in the
# notebook itself, call `cnncourse.set_quick_mode(True)` or `cnncourse.set_quick_mode(False)` at
# the top of the next cell; everything below reads `QUICK`.

# %%
# NBVAL_IGNORE_OUTPUT
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
import matplotlib.pyplot as plt

import cnncourse
from cnncourse import plot, reference
from cnncourse.data import NORMALIZATION, article_transform, dataset_info, get_dataset, make_loader, to_tensors
from cnncourse.fastdata import TensorLoader, fast_loaders
from cnncourse.models import LeNet
from cnncourse.train import evaluate, fit, predict

QUICK = cnncourse.quick_mode()
DEVICE = cnncourse.get_device()
EPOCHS = 40 if QUICK else 10      # the article trained for 10 epochs; 200 images need more passes
BATCH_SIZE = 32 if QUICK else 64  # the article's batch size is 64; 32 gives the quick sample 7 steps an epoch
WEIGHT_DECAY = 0.5 if QUICK else 0.05  # AdamW's pull towards small weights: stronger for 200 images
RUNS = Path("runs")               # checkpoints of the real runs (quick mode writes none)
if QUICK:
    torch.set_num_threads(1)      # batches this small train fastest on one thread, also on a busy CPU
print("torch", torch.__version__, "| quick mode:", QUICK, "| epochs:", EPOCHS)
print(cnncourse.describe_device())

# %% [markdown]
# ## What a real run costs
#
# Quick mode checks the code path. The real run (quick mode off: the article's run and three better
# recipes, 10 epochs each on all 50,000 training images) needs:
#
# * **download**: `cifar-10-python.tar.gz`, about 170 MB (163 MiB), once;
# * **time on a CPU**: measured for two of the four runs, printed below, each on one CPU thread (two
#   runs side by side on a 2-core CPU). The recorded runs trained on a JPEG copy of CIFAR-10 and the
#   notebook trains on the original, so expect close figures, not the same ones;
# * **time on a GPU**: not measured yet;
# * **memory**: the data set and LeNet's training state, computed below; the activations of a batch of
#   64 are not measured yet;
# * **accuracy to expect**: the recorded runs' test accuracy, printed below.
#
# In real mode every training run writes a checkpoint to `runs/` after each epoch, and when its cell
# is run again it continues from the last finished epoch, so a Colab disconnect costs at most the
# epoch in progress (in Colab `runs/` is on the runtime's disk: it survives a reconnection, not a new
# runtime).

# %%
RECORDED_RUNS = {"cifar10-lenet-article": "the article's settings (Adam, lr 0.01, batch 64): the first run below",
                 "cifar10-lenet-improved": "AdamW one-cycle, no augmentation: the first of the three recipes"}
for name, what in RECORDED_RUNS.items():
    run = reference.load_result(name)
    prov = run["provenance"]
    threads = prov["torch_threads"]
    print(f"{name}, {what}:")
    print(f"  {run['epochs']} epochs on {run['num_train_images']:,} images in {prov['wall_seconds'] / 60:.1f} min "
          f"on {threads} thread{'s' if threads > 1 else ''} of a {prov['cpu_count']}-core CPU ({prov['cpu']}); "
          f"test accuracy {100 * run['test_accuracy']:.2f} %")
print("the recipes with flips and with crops and flips: not measured yet on the full data")
print("time on a GPU: not measured yet")
cifar = dataset_info("cifar10")
one_copy = cifar.num_images * cifar.in_channels * cifar.image_size ** 2   # bytes, uint8
with torch.device("meta"):
    lenet_parameters = cnncourse.count_parameters(LeNet())
print(f"memory, computed: CIFAR-10 as uint8 is {one_copy / 1e6:.0f} MB; the notebook holds about five copies "
      f"(data sets, tensors, fast loaders), about {5 * one_copy / 1e9:.1f} GB; LeNet's training state "
      f"(float32 weights, gradients and Adam's two moments) {16 * lenet_parameters / 1e6:.1f} MB")

# %% [markdown]
# ## The CIFAR-10 data set
#
# CIFAR-10 (Krizhevsky, 2009) holds **60,000 colour images of 32 x 32 pixels** in **10 classes**,
# **6,000 per class**: 50,000 for training (5,000 per class) and 10,000 for testing (1,000 per
# class). The classes do not overlap: "automobile" is cars and SUVs, "truck" only big trucks. Its
# sibling **CIFAR-100** has the same 60,000-image format but 100 classes of 600 images each,
# grouped into 20 super-classes - a much harder task for the same image size.

# %%
info = dataset_info("cifar10")
print(f"{info.title}: {info.num_images:,} images of {info.in_channels} x {info.image_size} x {info.image_size}, "
      f"{info.num_classes} classes, {info.num_images // info.num_classes:,} per class")
train_count, test_count = 50_000, 10_000
print(f"train / test: {train_count:,} / {test_count:,}, that is {train_count // info.num_classes:,} / "
      f"{test_count // info.num_classes:,} per class")
for label, name in enumerate(info.classes):
    print(f"  {label}: {name}")

# %% [markdown]
# `get_dataset` returns the torchvision data set (downloaded once, MD5-checked) or, in quick mode,
# the real sample packaged with the course: the first 200 images of CIFAR-10's training set and
# 200 test images (20 per class). Without a transform each item is a PIL image and its label:

# %%
train_images = get_dataset("cifar10", "train")
test_images = get_dataset("cifar10", "test")
image, label = train_images[0]
print(f"train: {len(train_images):,} images, test: {len(test_images):,} images")
print(f"item 0: a {image.mode} {type(image).__name__} of {image.size[0]} x {image.size[1]} pixels, "
      f"label {label} = {train_images.classes[label]!r}")

# %%
# NBVAL_IGNORE_OUTPUT
fig, axes = plt.subplots(3, 8, figsize=(12, 5))
for index, ax in enumerate(axes.flat):
    picture, picture_label = train_images[index]
    ax.imshow(picture)
    ax.set_title(train_images.classes[picture_label], fontsize=9)
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# ## The article's preprocessing
#
# The article turns every image into a tensor with two transforms, for training and testing alike.
# `ToTensor` reorders the pixels to channels x height x width and divides the 0-255 integers by 255;
# `Normalize(mean=0.5, std=0.5)` then subtracts 0.5 and divides by 0.5 in each channel:
#
# $$x = \frac{p}{255} \in [0, 1], \qquad x' = \frac{x - 0.5}{0.5} = 2x - 1 \in [-1, 1].$$
#
# Black ($p = 0$) becomes $-1$, white ($p = 255$) becomes $+1$ and mid-grey lands near 0: the inputs
# are centred, which keeps the first layer's pre-activations in a range where training is easy.

# %%
article_tf = article_transform("cifar10", train=True)
print("transforms:", [type(step).__name__ for step in article_tf.transforms])
x = article_tf(image)
pixels = np.asarray(image)                                   # H x W x 3, uint8
by_formula = torch.tensor(pixels / 255.0 * 2 - 1, dtype=torch.float32).permute(2, 0, 1)
print("tensor:", tuple(x.shape), x.dtype, "| equal to 2 * p / 255 - 1:", torch.allclose(x, by_formula, atol=1e-6))
print(f"pixel range {pixels.min()}..{pixels.max()} -> {x.min().item():.4f}..{x.max().item():.4f}")
for p in (0, 128, 255):
    print(f"p = {p:>3} -> {article_tf.transforms[1](torch.full((3, 1, 1), p / 255.0))[0, 0, 0].item():+.4f}")

# %% [markdown]
# ## Loaders: batches of 64, training set shuffled
#
# A `DataLoader` stacks $B$ transformed images into one tensor of shape $B \times 3 \times 32 \times 32$
# and draws a new random order of the training set every epoch; the test set keeps its order.
# An epoch is $\lceil N / B \rceil$ batches: 782 for the 50,000 training images at the article's
# $B = 64$. (The quick sample uses $B = 32$, so that its 200 images make more than four steps.)
# (`make_loader` picks a safe number of worker processes for your platform and makes the shuffle
# reproducible with `seed`.)

# %%
train_set = get_dataset("cifar10", "train", transform=article_tf)
test_set = get_dataset("cifar10", "test", transform=article_transform("cifar10", train=False))
train_loader = make_loader(train_set, batch_size=BATCH_SIZE, shuffle=True, seed=0)
test_loader = make_loader(test_set, batch_size=BATCH_SIZE, shuffle=False)
images, labels = next(iter(train_loader))
print(f"{len(train_loader)} training batches = ceil({len(train_set)} / {BATCH_SIZE}), "
      f"{len(test_loader)} test batches")
print("one batch:", tuple(images.shape), images.dtype, "| labels:", tuple(labels.shape), labels.dtype)
print("the full training set at batch 64:", -(-50_000 // 64), "batches per epoch")

# %% [markdown]
# ## The article's LeNet
#
# Two convolution stages and three dense layers, with BatchNorm after each convolution (which the
# 1998 LeNet did not have):
#
# | layer | operation | output for a $3 \times 32 \times 32$ image |
# |---|---|---|
# | conv1 | 5x5 conv, 3 -> 6 channels, BatchNorm, ReLU | $6 \times 28 \times 28$ |
# | pool | 2x2 max-pool | $6 \times 14 \times 14$ |
# | conv2 | 5x5 conv, 6 -> 16 channels, BatchNorm, ReLU | $16 \times 10 \times 10$ |
# | pool | 2x2 max-pool | $16 \times 5 \times 5$ |
# | flatten | | $400$ |
# | fc1, fc2 | dense 120, ReLU; dense 84, ReLU | $120$, $84$ |
# | fc3 | dense 10: one **logit** per class | $10$ |
#
# A 5x5 convolution without padding shrinks each side by 4 ($n' = n - 5 + 1$), a 2x2 pool halves it:
# $32 \to 28 \to 14 \to 10 \to 5$, so the first dense layer sees $16 \cdot 5 \cdot 5 = 400$ numbers.
# `cnncourse.models.LeNet` computes that width from `image_size`; passing a batch through its
# layers one at a time confirms every row of the table:

# %%
model = LeNet(num_classes=10, in_channels=3, image_size=32)
print(model)
side = ((32 - 4) // 2 - 4) // 2
print(f"flattened width: 16 * {side} * {side} = {16 * side * side}, the model uses {model.flat_features}")
t = torch.zeros(2, 3, 32, 32)
steps = [("conv1 + bn1 + relu", lambda t: F.relu(model.bn1(model.conv1(t)))), ("pool", model.pool),
         ("conv2 + bn2 + relu", lambda t: F.relu(model.bn2(model.conv2(t)))), ("pool", model.pool),
         ("flatten", lambda t: torch.flatten(t, 1)), ("fc1 + relu", lambda t: F.relu(model.fc1(t))),
         ("fc2 + relu", lambda t: F.relu(model.fc2(t))), ("fc3 (logits)", model.fc3)]
model.eval()
with torch.no_grad():
    for name, step in steps:
        t = step(t)
        print(f"{name:>20}: {tuple(t.shape[1:])}")

# %% [markdown]
# ## Why the network ends without a softmax
#
# The last layer outputs raw scores $z_1, \dots, z_{10}$, the **logits**. The softmax turns them into
# probabilities, and the cross-entropy of the true class $y$ is its negative log-probability:
#
# $$p_j = \frac{e^{z_j}}{\sum_k e^{z_k}}, \qquad
# \mathcal{L}(z, y) = -\log p_y = -z_y + \log \sum_k e^{z_k}.$$
#
# `nn.CrossEntropyLoss` computes the right-hand side directly from the logits: it *is*
# `log_softmax` followed by the negative log-likelihood (`NLLLoss`), in one numerically stable step.
# So the model must return logits. The cell checks the three ways agree:

# %%
logits = torch.tensor([[2.0, 1.0, 0.1, -1.0],
                       [0.5, 2.5, -0.3, 0.0],
                       [-1.2, 0.3, 0.8, 3.0]])
targets = torch.tensor([0, 2, 3])
by_module = nn.CrossEntropyLoss()(logits, targets)
by_parts = F.nll_loss(F.log_softmax(logits, dim=1), targets)
by_formula = (-logits[torch.arange(3), targets] + torch.logsumexp(logits, dim=1)).mean()
print(f"CrossEntropyLoss: {by_module.item():.4f}  log_softmax + NLL: {by_parts.item():.4f}  "
      f"formula: {by_formula.item():.4f}")
print("all equal:", torch.allclose(by_module, by_parts) and torch.allclose(by_module, by_formula))

# %% [markdown]
# **What a softmax layer in the model would do.** The loss would then apply a second softmax to
# numbers already squeezed into $[0, 1]$. Even a perfect, one-hot answer could not get the loss
# near 0: with 10 classes its floor is $-\log \frac{e}{e + 9} \approx 1.46$, and the gradients shrink
# accordingly. Predictions do not need the softmax either: $\arg\max_j z_j = \arg\max_j p_j$.

# %%
one_hot = F.one_hot(torch.tensor([3]), num_classes=10).float()
print(f"loss of a perfect one-hot 'probability' output: {F.cross_entropy(one_hot, torch.tensor([3])).item():.4f}"
      f" = -log(e / (e + 9)) = {-np.log(np.e / (np.e + 9)):.4f}")
print("argmax of logits == argmax of softmax:", torch.equal(logits.argmax(1), logits.softmax(1).argmax(1)))

# %% [markdown]
# ## Parameter count, layer by layer
#
# * A convolution with $C$ input channels, $M$ filters of $k \times k$ and a bias: $M(Ck^2 + 1)$.
# * BatchNorm after it learns a scale $\gamma$ and a shift $\beta$ for each of the $M$ channels:
#   $2M$. (Its running mean and variance are *buffers*, updated by averaging, not parameters.)
# * A dense layer from $n$ to $m$ units: $m(n + 1)$.
# * ReLU and pooling have no parameters.

# %%
by_formula = {
    "conv1": 6 * (3 * 5 * 5 + 1),
    "bn1": 2 * 6,
    "conv2": 16 * (6 * 5 * 5 + 1),
    "bn2": 2 * 16,
    "fc1": 120 * (16 * 5 * 5 + 1),
    "fc2": 84 * (120 + 1),
    "fc3": 10 * (84 + 1),
}
for name, expected in by_formula.items():
    actual = cnncourse.count_parameters(getattr(model, name))
    print(f"{name:>6}: formula {expected:>6,}  PyTorch {actual:>6,}  {'ok' if expected == actual else 'MISMATCH'}")
print(f" total: formula {sum(by_formula.values()):,}  PyTorch {cnncourse.count_parameters(model):,}")
print("BatchNorm buffers (not parameters):", [name for name, _ in model.bn1.named_buffers()])

# %% [markdown]
# ## The layer summary
#
# The article printed the model with `torchsummary`. `cnncourse.layer_summary` prints the same table
# on any device. Its memory lines assume float32 (4 bytes a number) and one image, in MB of
# $1024^2$ bytes: the input, the forward/backward pass (every layer's output, counted twice: once
# for the forward values and once for their gradients), and the parameters.

# %%
rows = cnncourse.layer_summary(model, (3, 32, 32))

# %% [markdown]
# The four memory figures by hand, from the table's shapes:
#
# $$\text{input} = \frac{3 \cdot 32 \cdot 32 \cdot 4}{1024^2}, \qquad
# \text{forward/backward} = \frac{2 \cdot 4 \sum_{\text{layers}} \text{output size}}{1024^2}, \qquad
# \text{params} = \frac{62{,}050 \cdot 4}{1024^2}.$$

# %%
MB = 1024 ** 2
input_mb = 3 * 32 * 32 * 4 / MB
outputs = sum(int(np.prod(row["output_shape"][1:])) for row in rows.values())
activations_mb = 2 * outputs * 4 / MB
params_mb = cnncourse.count_parameters(model) * 4 / MB
print(f"numbers output by all layers: {outputs:,}")
print(f"input {input_mb:.2f} MB, forward/backward {activations_mb:.2f} MB, params {params_mb:.2f} MB, "
      f"total {input_mb + activations_mb + params_mb:.2f} MB")

# %% [markdown]
# `torchsummary` itself gives the same numbers. It runs its dummy batch on CUDA by default and fails
# on a machine without a GPU; `device="cpu"` fixes that (the model must be on the CPU too).

# %%
import torchsummary

torchsummary.summary(model, (3, 32, 32), device="cpu")

# %% [markdown]
# ## Training the article's way
#
# Cross-entropy loss, Adam with a learning rate of 0.01, batches of 64, 10 epochs, and the test
# accuracy measured after every epoch. `cnncourse.train.fit` runs the usual loop - for each batch:
# forward pass, loss, `zero_grad`, `backward`, `step` - shows a progress bar per epoch, evaluates
# the test set at the end of each epoch and returns the history.
#
# On the full data set that is 7,820 steps, best run on a GPU. The course has run it once, with
# `cnncourse train`, and recorded the result in `results/cifar10-lenet-article`: its per-epoch
# history, its settings, where it ran, and its trained weights. We look at that run first.

# %% [markdown]
# ## The article's accuracy plot
#
# The article plots the test accuracy against the epoch, starting from 0 % at epoch 0, and draws a
# smooth line through the points with SciPy's `InterpolatedUnivariateSpline`: a piecewise cubic
# $s(t)$ that passes **exactly** through every measured point, $s(t_i) = a_i$, with continuous
# first and second derivatives. Axes: 0-10 epochs, 0-100 %. The smooth line is only a guide for
# the eye - between epochs nothing was measured, and a spline can overshoot.
#
# The same plot, drawn from the recorded full-data run of the article's recipe (10 epochs on all
# 50,000 training images; tested on the 10,000 test images of the JPEG copy described in README):

# %%
article_result = reference.load_result("cifar10-lenet-article")
plot.plot_learning_curves(article_result["history"], metrics=["acc"], splits=["test"], smooth=True,
                          start_at_zero=True, xlim=(0, 10), ylim={"acc": (0, 100)},
                          title="the article's plot, redrawn from the recorded full-data run")

# %% [markdown]
# Where the curve ends, and the recorded settings. They are the article's (Adam, learning rate
# 0.01, batch 64, 10 epochs, no schedule, no augmentation) with one difference: `preset` `course`
# means the inputs were normalised with the data set's own mean and standard deviation per channel,
# not with the article's 0.5 / 0.5 (the section after next compares the two normalisations).

# %%
final, best = article_result["history"][-1], max(article_result["history"], key=lambda r: r["test_acc"])
print(f"recorded test accuracy: {100 * final['test_acc']:.2f} % after epoch {final['epoch']}, "
      f"best {100 * best['test_acc']:.2f} % after epoch {best['epoch']}")
settings = article_result["provenance"]["settings"]
print("settings:", ", ".join(f"{key} {settings[key]}" for key in
                             ("optimizer", "lr", "batch_size", "epochs", "schedule", "augment", "preset")))

# %% [markdown]
# ## A quick sample of the same training
#
# Now the article's recipe live, on the data loaded above. In quick mode this is a **quick sample**:
# the 200 bundled training images, 40 passes in batches of 32, tested on the 200 bundled test images
# after every pass. It takes seconds and shows that the loop learns; it cannot show how good LeNet
# gets, because 200 images (about 20 per class) are far too few. Without quick mode this cell is
# the article's full 10-epoch run.

# %%
# NBVAL_IGNORE_OUTPUT
cnncourse.seed_everything(0)
article_model = LeNet()
checkpoint = None if QUICK else RUNS / "cifar10-lenet-article.pt"   # real mode: resumable
article_history = fit(article_model, train_loader, test_loader, epochs=EPOCHS, optimizer="adam", lr=0.01,
                      device=DEVICE, checkpoint=checkpoint, resume=checkpoint is not None)
shown = [r for r in article_history if r["epoch"] == 1 or r["epoch"] % max(1, EPOCHS // 8) == 0]
print("test accuracy after epoch", ", ".join(f"{r['epoch']}: {100 * r['test_acc']:.1f} %" for r in shown))

# %% [markdown]
# The quick sample in the article's plot. The x-axis runs over the quick sample's own epochs, and the
# title says what it is:

# %%
# NBVAL_IGNORE_OUTPUT
sample_note = f"quick sample, {len(train_set)} images" if QUICK else f"{len(train_set):,} images"
plot.plot_learning_curves(article_history, metrics=["acc"], splits=["test"], smooth=True, start_at_zero=True,
                          xlim=(0, EPOCHS), ylim={"acc": (0, 100)},
                          title=f"the article's recipe live ({sample_note}, {EPOCHS} epochs)")

# %% [markdown]
# ## Doing better with the same LeNet
#
# The network stays exactly as it is (62,050 parameters), and so do the batch size and the number
# of epochs; only the recipe changes, one step at a time:
#
# 1. **Learning rate and schedule.** 0.01 is ten times Adam's usual default, and the article keeps
#    it constant. The one-cycle schedule warms the rate up to a peak ($3 \cdot 10^{-3}$ here) and
#    then anneals it towards zero, so the last epochs take small, careful steps.
# 2. **AdamW.** Adam with *decoupled* weight decay: every step also shrinks each weight by
#    $\eta \lambda w$ (we use $\lambda = 0.05$), a mild pull towards small weights. (The quick
#    sample uses $\lambda = 0.5$: with 200 images the network memorises them unless pulled harder.)
# 3. **The data set's own statistics.** Normalise each channel with CIFAR-10's mean and standard
#    deviation, $x' = (x - \mu_c) / \sigma_c$, so the inputs have mean 0 and standard deviation 1,
#    instead of the generic 0.5 / 0.5.
# 4. **Augmentation.** Show the network a slightly different version of each training image every
#    epoch: mirrored left-right with probability 1/2 (a mirrored cat is still a cat), and, the
#    standard CIFAR-10 recipe, also shifted by up to 4 pixels (a random 32 x 32 crop of the image
#    padded with 4 zero pixels on each side).
#
# What the two normalisations do to the training pixels: if a channel's values $x$ have mean
# $\mu_x$ and standard deviation $\sigma_x$, then $x' = (x - m)/s$ has mean $(\mu_x - m)/s$ and
# standard deviation $\sigma_x / s$. With $m = \mu_x$ and $s = \sigma_x$ that is exactly 0 and 1.

# %%
mean, std = NORMALIZATION["cifar10"]
print("CIFAR-10 mean per channel:", mean, "| std:", std)
pixels = to_tensors(train_images)[0]                      # all training images, uint8, N x 3 x 32 x 32
mu_x = torch.stack([pixels[:, c].float().div(255).mean() for c in range(3)])
sigma_x = torch.stack([pixels[:, c].float().div(255).std() for c in range(3)])
for title, m, s in [("article, 0.5 / 0.5", (0.5,) * 3, (0.5,) * 3), ("data set's statistics", mean, std)]:
    z_mean, z_std = (mu_x - torch.tensor(m)) / torch.tensor(s), sigma_x / torch.tensor(s)
    per_channel = [f"{z_mean[c].item():+.2f} / {z_std[c].item():.2f}" for c in range(3)]
    print(f"{title:>22}: mean / std after normalising (R, G, B) = {', '.join(per_channel)}")

# %% [markdown]
# ## Reference results
#
# The full-length runs, recorded by `cnncourse train` on all 50,000 training and 10,000 test images
# of CIFAR-10 (the JPEG copy described in README: accuracies are close to, not equal to, those on the
# original files), 10 epochs each, batch 64, both normalised with the data set's statistics. The first
# is the article's optimiser (Adam, learning rate 0.01, constant); the second keeps the same LeNet
# and changes only the optimiser: AdamW with weight decay and a one-cycle schedule (steps 1 and 2
# above). Neither uses augmentation. The lines below are read from `results/*/metrics.json`, so they
# are the measured numbers, with the hardware and the commit that produced them;
# `results/run_all.sh` re-runs them.

# %%
print(reference.summary("cifar10-lenet-article"))
print(reference.summary("cifar10-lenet-improved"))

# %%
print(reference.history_table(["cifar10-lenet-article", "cifar10-lenet-improved"]))

# %%
# NBVAL_IGNORE_OUTPUT
reference.plot_results(["cifar10-lenet-article", "cifar10-lenet-improved"]);

# %% [markdown]
# The article's recipe climbs for the first few epochs and then stalls, moving up and down by a
# point or so: at a constant learning rate of 0.01 Adam keeps jumping around a minimum it cannot
# settle in. The one-cycle run starts lower (its learning rate is still warming up) but keeps
# improving while the rate falls, and ends several points higher with the very same 62,050
# parameters.
#
# The training accuracy per epoch, as `fit` records it: the mean over the epoch's batches while the
# weights are still changing and BatchNorm uses each batch's own statistics. It is therefore a
# little behind what the model reaches by the end of the epoch:

# %%
print(reference.history_table(["cifar10-lenet-article", "cifar10-lenet-improved"], column="train_acc"))

# %% [markdown]
# In the one-cycle run the training accuracy pulls away from the test accuracy in the last epochs:
# the network starts to fit its training images better than new ones. That is where the next gain
# would come from: augmentation, which shows the network a different version of every image each
# epoch, and more epochs.
#
# Which classes the two recorded runs confuse, on all 10,000 test images (row: true class, column:
# predicted class; the figures the runs drew). First the article's recipe: cat is its weakest class,
# and its mistakes pile up in two columns - many images of other animals are called deer or bird.

# %%
reference.recorded_figure("cifar10-lenet-article", "confusion")

# %% [markdown]
# Then the one-cycle run. Its diagonal is darker for most classes. The largest errors are now the
# classic CIFAR-10 pairs: cat taken for dog and dog for cat, and truck for automobile and back;
# airplanes and ships are mistaken for each other (both often sit on a blue background).

# %%
reference.recorded_figure("cifar10-lenet-improved", "confusion")

# %% [markdown]
# ## The better recipes, live
#
# **The fast path.** For a network as small as LeNet, a classic `DataLoader` spends more time
# decoding and transforming images one by one than the network spends learning from them.
# `cnncourse.fastdata.fast_loaders` keeps the whole data set as one `uint8` tensor on the training
# device and makes each batch there: index, crop, flip and normalise the whole batch at once.
# The random crops and flips are drawn from a seed per epoch, so a run is reproducible.

# %%
fast_train, fast_test = fast_loaders("cifar10", batch_size=BATCH_SIZE, augment="crop-flip", device=DEVICE, seed=0)
batch, batch_labels = next(iter(fast_train))
print(f"training: {fast_train.num_samples} images, {len(fast_train)} batches of {fast_train.batch_size}, "
      f"augmentation {fast_train.augment!r} with {fast_train.pad}-pixel padding")
print(f"test: {fast_test.num_samples} images, {len(fast_test)} batch(es), no augmentation: {fast_test.augment}")
print("one batch:", tuple(batch.shape), batch.dtype)
print("normalised with", fast_train.mean, fast_train.std)

# %% [markdown]
# One training image as the network sees it in eight successive epochs of crop-and-flip:

# %%
# NBVAL_IGNORE_OUTPUT
one_image = TensorLoader(fast_train.images[:1].cpu(), fast_train.labels[:1].cpu(), batch_size=1,
                         mean=mean, std=std, augment="crop-flip", seed=0)
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
for epoch, ax in enumerate(axes):
    view = one_image.unnormalize(next(iter(one_image))[0])[0]
    ax.imshow(view.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(f"epoch {epoch + 1}", fontsize=9)
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# Three runs of the same LeNet, each adding one step: the better optimiser and the data set's
# statistics without augmentation; then with flips; then with crops and flips. In quick mode they
# are, like the article's run above, a quick sample: 40 passes over the 200 bundled images.

# %%
# NBVAL_IGNORE_OUTPUT
ARTICLE_RUN = "article: Adam 0.01, 0.5 / 0.5"
recipes = {"AdamW one-cycle, data set's statistics": None,
           "  + flips": "flip",
           "  + crops and flips": "crop-flip"}
histories = {ARTICLE_RUN: article_history}
models = {ARTICLE_RUN: article_model}
for name, augment in recipes.items():
    train_data, test_data = fast_loaders("cifar10", batch_size=BATCH_SIZE, augment=augment, device=DEVICE, seed=0)
    cnncourse.seed_everything(0)
    models[name] = LeNet()
    checkpoint = None if QUICK else RUNS / f"cifar10-lenet-adamw-{augment or 'plain'}.pt"   # real mode: resumable
    histories[name] = fit(models[name], train_data, test_data, epochs=EPOCHS, optimizer="adamw", lr=3e-3,
                          weight_decay=WEIGHT_DECAY, schedule="onecycle", device=DEVICE,
                          checkpoint=checkpoint, resume=checkpoint is not None)
    print(f"{name.strip():<40} final test accuracy {100 * histories[name].test_acc[-1]:.1f} %")

# %% [markdown]
# Random guessing gets one test image in ten right. The check below asks for two and a half times
# that from the run with crops and flips. It checks a threshold well below what the run reaches
# here, not the exact number: on another CPU the same training adds up its numbers in another order,
# ends a few images elsewhere, and with 200 training images a few images are several points.

# %%
reached = histories["  + crops and flips"].test_acc[-1] >= 0.25
print(f"{'quick run' if QUICK else 'run'} with crops and flips reached 25 % on the "
      f"{fast_test.num_samples:,} test images: {reached}")

# %% [markdown]
# ## Side by side
#
# The four live runs: final and best test accuracy, two training accuracies, and time. "train fit"
# is what `fit` records: the mean over the last epoch's batches, on the images as augmented in that
# epoch, with BatchNorm using each batch's statistics and the weights still changing. "train eval"
# is the finished model on the training images as they are - no augmentation, eval mode - which is
# what tells how well the network fits its training data.

# %%
# NBVAL_IGNORE_OUTPUT
plain_train = TensorLoader(fast_train.images, fast_train.labels, batch_size=256, mean=mean, std=std)
print(f"{'recipe':<42} {'final %':>8} {'best %':>7} {'train fit %':>12} {'train eval %':>13} {'seconds':>8}")
for name, history in histories.items():
    images = train_loader if name == ARTICLE_RUN else plain_train  # each run's own normalisation, no augmentation
    fitted = evaluate(models[name], images, device=DEVICE)["accuracy"]
    print(f"{name:<42} {100 * history.test_acc[-1]:>8.1f} {100 * history.best()['test_acc']:>7.1f} "
          f"{100 * history.train_acc[-1]:>12.1f} {100 * fitted:>13.1f} {sum(history.seconds):>8.1f}")

fig, ax = plt.subplots(figsize=(7, 4))
for name, history in histories.items():
    ax.plot([0] + history.epoch, [0] + [100 * acc for acc in history.test_acc], "-", label=name.strip())
ax.set(xlabel="epoch", ylabel="test accuracy (%)", xlim=(0, EPOCHS), ylim=(0, 100),
       title=f"the four recipes live ({sample_note}, {EPOCHS} epochs)")
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# What the quick sample shows. "train eval" is far above the test accuracy: with about 20 images
# per class the network learns its training images by heart, and what it learns about new images is
# modest - over-fitting, not under-fitting. Crops narrow that gap, because the network never sees
# exactly the same image twice, and they pull "train fit" below "train eval": the images it is scored
# on during the epoch are harder than the plain ones. So a training accuracy measured that way can
# even sit below the test accuracy without the model under-fitting; the eval column is the one to
# read. The order of the recipes here is that of the recorded runs, but it is a quick sample: one
# test image is half a point, and another seed moves each run by several points. Only the recorded
# full runs above compare recipes.

# %% [markdown]
# ## What the trained network learned
#
# The recorded runs kept their trained weights (`results/<run>/model.pt`, with its SHA-256 in
# metrics.json). `reference.load_model` rebuilds the LeNet from the run's settings, checks the file
# against that SHA-256, loads the weights and switches to eval mode. Everything below is computed
# from the one-cycle run's weights, on the CPU: no training, so the numbers are the same on every
# machine. The test images are the ones loaded above - in quick mode the 200 bundled test images, 20
# per class from the JPEG copy's test set: images the run was tested on but never trained on. (The run
# normalised its inputs with the JPEG copy's training statistics, which equal CIFAR-10's
# `NORMALIZATION` to four decimals, so `fast_test` gives it the inputs it was trained on.)

# %%
trained = reference.load_model("cifar10-lenet-improved", device="cpu")
shipped = predict(trained, fast_test, device="cpu", keep_images=True)
right = int((shipped.preds == shipped.labels).sum())
recorded = reference.load_result("cifar10-lenet-improved")
print(f"trained LeNet of results/cifar10-lenet-improved: {cnncourse.count_parameters(trained):,} parameters, "
      f"eval mode: {not trained.training}")
print(f"on the {len(shipped.labels):,} test images here: {right:,} right, {len(shipped.labels) - right:,} wrong, "
      f"accuracy {100 * right / len(shipped.labels):.1f} %")
print(f"recorded on all {recorded['num_test_images']:,} test images: {100 * recorded['test_accuracy']:.2f} %")

# %% [markdown]
# Row $i$, column $j$ of the confusion matrix counts the test images of class $i$ that the model
# labelled $j$; the diagonal holds the correct answers. First as text: the correct answers per class,
# and the most frequent mistakes.

# %%
matrix = plot.confusion_matrix(shipped.labels, shipped.preds, num_classes=info.num_classes)
print("right per class:", ", ".join(f"{name} {matrix[i, i]}" for i, name in enumerate(info.classes)))
mistakes = sorted(((matrix[i, j], info.classes[i], info.classes[j]) for i in range(info.num_classes)
                   for j in range(info.num_classes) if i != j), reverse=True)
print("most frequent mistakes:", ", ".join(f"{true} as {guess} {count}" for count, true, guess in mistakes[:6]))

# %% [markdown]
# The same as a picture. Cars, ships, trucks and frogs are mostly right; the animals are the hard part. Cats,
# deer and birds are recognised worst, and most mistakes stay among the animals: cats taken for
# dogs, deer for birds, dogs and horses for each other. With 20 images per class each cell is a
# handful of images; the recorded matrix on all 10,000 test images above is the reliable one, and
# its largest errors are the animal pairs too.

# %%
plot.plot_confusion_matrix(shipped, class_names=info.classes,
                           title=f"trained LeNet (recorded weights) on {len(shipped.labels):,} test images")

# %% [markdown]
# The mistakes the network was surest of, most confident first (title: the predicted class, and the
# true one). Many are understandable: a red sports car called a truck, an airplane low over blue
# water called a ship, close-ups of heads given to the wrong animal (a dog in a red hood called a
# horse, a horse's head called a cat). The network leans on colour and rough shape more than on
# details: blue backgrounds pull towards airplane and ship, green ones towards frog and bird.

# %%
confidence = shipped.logits.softmax(dim=1).max(dim=1).values
order = confidence.argsort(descending=True)
plot.plot_predictions(shipped.images[order], shipped.labels[order], shipped.preds[order], class_names=info.classes,
                      mean=mean, std=std, n=24, ncols=8,
                      title=f"trained LeNet: {len(shipped.labels) - right} of {len(shipped.labels)} wrong, "
                            "surest mistakes first")

# %% [markdown]
# The six 5x5 filters of the first convolution, each drawn as a tiny colour image and scaled to its
# own range, so that only its pattern shows, not its strength. Most are the edge and line detectors
# of notebook 1, learned from the data: a dark horizontal bar between lighter rows (third from the
# left), edges between a light and a dark side (the second and fourth: vertical, the sixth:
# diagonal), and one that weighs blue against red, a colour filter (the first). The fifth shows no
# clear pattern. Six filters of 5x5 pixels, pulled towards small weights by weight decay, are rough
# sketches of these detectors, not the clean edges of large networks trained longer.

# %%
plot.plot_filters(trained, title="conv1 of the trained LeNet: 6 filters of 3 x 5 x 5")

# %% [markdown]
# What those filters make of one test image, a horse the network got right. Each feature map is
# one filter's response at every position (yellow high, dark blue low; before the ReLU, which then
# zeroes the negative part), so map $m$ belongs to filter $m$ above. The edge filters trace the
# outline: the vertical ones (maps 1 and 3) answer along the legs and the chest, on the side where
# light and dark match their direction; the horizontal bar (map 2) marks the belly and the back,
# with opposite signs; map 4 follows the top of the back and the neck. Nothing here knows "horse"
# yet: these are edges and colours at fixed positions.

# %%
horse = next(i for i in range(len(shipped.labels))
             if info.classes[shipped.labels[i]] == "horse" and shipped.preds[i] == shipped.labels[i])
plot.plot_feature_maps(trained, shipped.images[horse], "bn1", mean=mean, std=std,
                       title="first layer (conv1 + BatchNorm, before ReLU): 6 maps of 28 x 28")

# %% [markdown]
# The second layer combines the six pooled maps over 5x5 windows, so each of its values sees a
# 14 x 14 patch of the image, and its 16 maps are 10 x 10. Some still follow the horse's main lines -
# horizontal bands where the back and the belly are (maps 5, 9 and 12), a vertical one along the
# legs and chest (map 11); the others combine edges in ways that are hard to name by eye. The dense
# layers after this one work on these 16 maps (pooled to 5 x 5), not on the pixels.

# %%
plot.plot_feature_maps(trained, shipped.images[horse], "bn2", mean=mean, std=std,
                       title="second layer (conv2 + BatchNorm, before ReLU): 16 maps of 10 x 10")

# %% [markdown]
# ## Summary
#
# * CIFAR-10: 60,000 colour images of 32 x 32 in 10 classes, 6,000 per class.
# * `ToTensor` + `Normalize(0.5, 0.5)` maps pixels from $0..255$ to $[-1, 1]$.
# * The article's LeNet with BatchNorm has 62,050 parameters: 456 + 12 + 2,416 + 32 + 48,120 +
#   10,164 + 850, every one accounted for by a formula.
# * The model returns logits: `CrossEntropyLoss` = `log_softmax` + `NLLLoss`.
# * The recorded full runs: the same network trains better with AdamW and a one-cycle schedule than
#   with the article's constant Adam 0.01, and starts to over-fit by the last epoch.
# * The trained network gets vehicles right far more often than animals, and confuses the animals
#   among themselves - cat and dog above all.
# * A training accuracy measured on augmented images, during the epoch, is not the model's fit to
#   its training data: evaluate the finished model on the plain training images for that.
#
# Next: notebook 3 makes networks much deeper with residual blocks.
