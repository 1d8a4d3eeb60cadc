# %% [markdown]
# # 2. LeNet on CIFAR-10: reproduce the article, then do better
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/02_lenet_cifar10.ipynb)
#
# **What you will learn.** The CIFAR-10 data set and what its usual preprocessing does to the
# pixels; LeNet with BatchNorm, layer by layer, with every shape and every parameter count worked
# out by formula and checked against PyTorch and `torchsummary`; why the network ends in logits and
# not in a softmax; how to train it exactly as the source article did (Adam, learning rate 0.01,
# 10 epochs, batch 64) and plot its accuracy curve the article's way; and then how a better
# recipe for **the same network** - AdamW with a one-cycle schedule, the data set's own statistics,
# and augmentation - does better, one change at a time, with all runs side by side.
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
# with the package and the notebook trains for one short epoch: it runs in seconds on a laptop CPU,
# and that is what the stored outputs show. Without it (the default when you open the notebook in
# Jupyter or Colab) the notebook downloads CIFAR-10 (about 170 MB) and runs the article's 10
# epochs - use a GPU for that. To choose in the notebook itself, call `cnncourse.set_quick_mode(True)` or
# `cnncourse.set_quick_mode(False)` at the top of the next cell; everything below reads `QUICK`.

# %%
# NBVAL_IGNORE_OUTPUT
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
import matplotlib.pyplot as plt

import cnncourse
from cnncourse import plot
from cnncourse.data import NORMALIZATION, article_transform, dataset_info, get_dataset, make_loader, to_tensors
from cnncourse.fastdata import fast_loaders
from cnncourse.models import LeNet
from cnncourse.train import fit, predict

QUICK = cnncourse.quick_mode()
DEVICE = cnncourse.get_device()
EPOCHS = 1 if QUICK else 10     # the article trained for 10 epochs
BATCH_SIZE = 64                 # the article's batch size
print("torch", torch.__version__, "| quick mode:", QUICK, "| epochs:", EPOCHS)
print(cnncourse.describe_device())

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
# A `DataLoader` stacks 64 transformed images into one tensor of shape $64 \times 3 \times 32 \times 32$
# and draws a new random order of the training set every epoch; the test set keeps its order.
# An epoch is $\lceil N / 64 \rceil$ batches: 782 for the 50,000 training images.
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
print("the full training set:", -(-50_000 // BATCH_SIZE), "batches per epoch")

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
# * A convolution with $K$ input channels, $M$ filters of $k \times k$ and a bias: $M(Kk^2 + 1)$.
# * BatchNorm over $C$ channels learns a scale $\gamma$ and a shift $\beta$ per channel: $2C$. (Its
#   running mean and variance are *buffers*, updated by averaging, not parameters.)
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

# %%
# NBVAL_IGNORE_OUTPUT
cnncourse.seed_everything(0)
article_model = LeNet()
article_history = fit(article_model, train_loader, test_loader, epochs=EPOCHS,
                      optimizer="adam", lr=0.01, device=DEVICE)
for record in article_history:
    print(f"epoch {record['epoch']:>2}: train loss {record['train_loss']:.3f}, "
          f"test accuracy {100 * record['test_acc']:.1f} %")

# %% [markdown]
# ## The article's accuracy plot
#
# The article plots the test accuracy against the epoch, starting from 0 % at epoch 0, and draws a
# smooth line through the points with SciPy's `InterpolatedUnivariateSpline`: a piecewise cubic
# $s(t)$ that passes **exactly** through every measured point, $s(t_i) = a_i$, with continuous
# first and second derivatives. Axes: 0-10 epochs, 0-100 %. The smooth line is only a guide for
# the eye - between epochs nothing was measured, and a spline can overshoot.

# %%
# NBVAL_IGNORE_OUTPUT
plot.plot_learning_curves(article_history, metrics=["acc"], splits=["test"], smooth=True, start_at_zero=True,
                          xlim=(0, 10), ylim={"acc": (0, 100)}, title="the article's plot: LeNet on CIFAR-10")

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
#    $\eta \lambda w$ (we use $\lambda = 0.05$), a mild pull towards small weights.
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
from cnncourse.fastdata import TensorLoader

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
# statistics without augmentation; then with flips; then with crops and flips.

# %%
# NBVAL_IGNORE_OUTPUT
recipes = {"AdamW one-cycle, data set's statistics": None,
           "  + flips": "flip",
           "  + crops and flips": "crop-flip"}
histories = {"article: Adam 0.01, 0.5 / 0.5": article_history}
models = {}
for name, augment in recipes.items():
    train_data, test_data = fast_loaders("cifar10", batch_size=BATCH_SIZE, augment=augment, device=DEVICE, seed=0)
    cnncourse.seed_everything(0)
    models[name] = LeNet()
    histories[name] = fit(models[name], train_data, test_data, epochs=EPOCHS, optimizer="adamw", lr=3e-3,
                          weight_decay=0.05, schedule="onecycle", device=DEVICE)
    print(f"{name.strip():<40} test accuracy by epoch (%):",
          " ".join(f"{100 * acc:.1f}" for acc in histories[name].test_acc))

# %% [markdown]
# ## Side by side
#
# Final and best test accuracy, final training accuracy (measured on the augmented images while
# training) and time of the four runs. In quick mode these are one epoch on 200 images and say
# nothing yet: the reference results at the end hold the full 10-epoch runs. What to look for
# there: the better optimiser and normalisation give the biggest gain; flips add a little more;
# crops make the task harder still, and a network as small as LeNet trained for only 10 epochs may
# not have the capacity or the time to profit from them - when the training accuracy stays *below*
# the test accuracy, the model is under-fitting, and more augmentation will not help it.

# %%
# NBVAL_IGNORE_OUTPUT
print(f"{'recipe':<42} {'final %':>8} {'best %':>7} {'train %':>8} {'seconds':>8}")
for name, history in histories.items():
    print(f"{name:<42} {100 * history.test_acc[-1]:>8.1f} {100 * history.best()['test_acc']:>7.1f} "
          f"{100 * history.train_acc[-1]:>8.1f} {sum(history.seconds):>8.1f}")

fig, ax = plt.subplots(figsize=(7, 4))
for name, history in histories.items():
    ax.plot([0] + history.epoch, [0] + [100 * acc for acc in history.test_acc], "o-", label=name.strip())
ax.set(xlabel="epoch", ylabel="test accuracy (%)", xlim=(0, 10), ylim=(0, 100))
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Which classes get confused
#
# From here on we look at the run with the best final test accuracy. Row $i$, column $j$ of the
# confusion matrix counts the test images of class $i$ that the model labelled $j$; the diagonal
# holds the correct answers. On CIFAR-10 the usual suspects are cat and dog, and automobile and
# truck.

# %%
# NBVAL_IGNORE_OUTPUT
best_name = max(models, key=lambda name: histories[name].test_acc[-1])
print("best run:", best_name.strip())
predictions = predict(models[best_name], fast_test, keep_images=True)
plot.plot_confusion_matrix(predictions, class_names=info.classes)

# %% [markdown]
# Test images with the model's answers, mistakes first (title: predicted, and the truth when wrong):

# %%
# NBVAL_IGNORE_OUTPUT
plot.plot_predictions(predictions, class_names=info.classes, mean=mean, std=std, n=24, ncols=8)

# %% [markdown]
# ## What the first layer learned
#
# The six 5x5 filters of the first convolution, each shown as a tiny colour image (scaled to its
# own range). After full training they typically look like colour blobs and oriented edges - the
# simple-cell detectors of notebook 1, learned from the data.

# %%
# NBVAL_IGNORE_OUTPUT
plot.plot_filters(models[best_name])

# %% [markdown]
# ## Summary
#
# * CIFAR-10: 60,000 colour images of 32 x 32 in 10 classes, 6,000 per class.
# * `ToTensor` + `Normalize(0.5, 0.5)` maps pixels from $0..255$ to $[-1, 1]$.
# * The article's LeNet with BatchNorm has 62,050 parameters: 456 + 12 + 2,416 + 32 + 48,120 +
#   10,164 + 850, every one accounted for by a formula.
# * The model returns logits: `CrossEntropyLoss` = `log_softmax` + `NLLLoss`.
# * The same network trains better with AdamW, a one-cycle schedule and the data set's statistics.
#   Augmentation helps only as far as the network and the training budget can use it: compare
#   flips with crops and flips.
#
# Next: notebook 3 makes networks much deeper with residual blocks.

# %% [markdown]
# ## Reference results
#
# The full-length runs, recorded by `cnncourse train` on all 50,000 training and 10,000 test images
# of CIFAR-10 (the JPEG copy described in README: accuracies are close to, not equal to, those on the
# original files), 10 epochs each, batch 64. The first row is the article's recipe (Adam, learning
# rate 0.01); the second keeps the same LeNet and changes only the optimiser (AdamW with weight decay
# and a one-cycle schedule). The lines below are read from `results/*/metrics.json`, so they are the
# measured numbers, with the hardware and the commit that produced them; `results/run_all.sh` re-runs them.

# %%
from cnncourse import reference

print(reference.summary("cifar10-lenet-article"))
print(reference.summary("cifar10-lenet-improved"))

# %%
print(reference.history_table(['cifar10-lenet-article', 'cifar10-lenet-improved']))

# %%
print(reference.history_table(['cifar10-lenet-article', 'cifar10-lenet-improved'], column="train_acc"))

# %%
# NBVAL_IGNORE_OUTPUT
reference.plot_results(['cifar10-lenet-article', 'cifar10-lenet-improved']);

# %% [markdown]
# The tables give test and training accuracy per epoch, the plot the test curves. The article's
# recipe stalls from about the fifth epoch on: at a constant learning rate of 0.01 Adam keeps jumping
# around a minimum it cannot settle in. The one-cycle run keeps improving while its learning rate
# falls and ends several points higher with the very same 62,050 parameters. Its training accuracy,
# well above its test accuracy by the last epoch, shows where the next gain would come from:
# augmentation and more epochs, as the quick runs above tried.
