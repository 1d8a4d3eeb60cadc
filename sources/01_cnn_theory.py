# %% [markdown]
# # 1. CNN theory: convolution, padding, stride, pooling and dense layers by hand
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/01_cnn_theory.ipynb)
#
# **What you will learn.** Where CNNs come from, why local receptive fields and weight sharing need
# so few parameters, and the exact arithmetic of every layer: padding, stride and the output size,
# single- and multi-channel convolution, the activation, max and average pooling, the dense layer,
# each computed from scratch in NumPy (`cnncourse.theory`) **and** checked against
# PyTorch. On the way: tensors and autograd.
#
# *Retold from* 「畳み込みニューラルネットワークの理論とPyTorchによるLeNetの実装」 (AGIRobots), its
# first half; the checks against PyTorch, the exercises and the training run are the course's.
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

# %% tags=["nbval-ignore-output"]
import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt

import cnncourse
from cnncourse import theory

# No GPU needed. The scale (cnncourse.set_scale("sample" / "laptop" / "full") here, or CNNCOURSE_SCALE;
# CNNCOURSE_QUICK=1 means "sample") sizes the one training run: at "laptop", the default, all of MNIST
# (an 11 MB download); at "sample", the images shipped with the package.
print("torch", torch.__version__, "|", cnncourse.describe_scale())
print(cnncourse.describe_device())

# %% [markdown]
# ## Where CNNs come from
#
# Hubel and Wiesel (1950s-60s) found **simple cells (S)** in the cat's visual cortex that fire for a
# bar at one orientation in one small patch of the visual field, their *receptive field*, and
# **complex cells (C)** that fire wherever in a larger area that bar appears. Fukushima's
# **neocognitron** (1980) stacked them as alternating S- and C-layers, trained without labels. LeCun's
# **LeNet** (1989-1998) kept that architecture but trained all of it end to end by
# **backpropagation**: the error is sent back through every layer to adjust every filter.

# %% [markdown]
# ## A CNN trained in a minute
#
# First, what it all builds. The next cell trains a small CNN - three convolutions, each
# with max-pooling, BatchNorm and ReLU, then a dense layer - on MNIST's handwritten digits (28 x 28):
# the 60,000 training images less a tenth held out, two passes, in float32. **Target:
# 99 % of the 10,000 test digits right, in at most 60 s of training on a 2-core CPU.** BatchNorm is
# lesson 2's, the recipe lesson 9's. At the sample scale: the package's 450 images, six passes, 80 %.

# %% tags=["nbval-ignore-output"]
from cnncourse.speedrun import mnist_net, speedrun_mnist

EPOCHS, TARGET = cnncourse.at_scale(sample=(6, 0.80), laptop=(2, 0.99))
print(mnist_net())
first = speedrun_mnist(epochs=EPOCHS, bf16=False)  # float32, on the CPU; MNIST downloads once
print(f"{first['num_train_images']:,} training images, {EPOCHS} passes, {torch.get_num_threads()} threads: "
      f"{first['train_seconds']:.1f} s of training; test accuracy {100 * first['test_accuracy']:.2f} % "
      f"on {first['num_test_images']:,} images ({cnncourse.scale()} scale)")

# %%
print("target reached (accuracy and time):", first["test_accuracy"] >= TARGET and first["train_seconds"] <= 60)

# %% [markdown]
# ## Local receptive fields and weight sharing
#
# A dense layer connects every input to every output. A convolutional layer restricts it:
#
# * **local receptive field**: an output value sees only a small $k \times k$ patch of the input;
# * **weight sharing**: every position uses the *same* $C \times k \times k$ filter (plus a bias) per
#   output channel, whatever the image size.
#
# With $C$ input channels and $M$ filters, a conv layer has $M(Ck^2 + 1)$ parameters. Take LeNet's
# first layer on a $3 \times 32 \times 32$ CIFAR-10 image: 6 filters of $5 \times 5$, output
# $6 \times 28 \times 28$. Three layers give that output: a **dense** layer, a **locally connected**
# layer (local receptive fields, each position with its own filter), and the **convolution** (both
# restrictions). The conv count, $6 \cdot (3 \cdot 25 + 1) = 456$, must be what PyTorch allocates for
# `nn.Conv2d(3, 6, 5)`, and the dense count that of an `nn.Linear` between the flattened shapes:

# %%
counts = theory.dense_vs_conv_params(height=32, width=32, in_channels=3, out_channels=6, kernel=5, padding=0)
for kind, n in counts.items():
    print(f"{kind.replace('_', ' '):>18}: {n:>12,} parameters")
print(f"dense / conv = {counts['dense'] / counts['conv']:,.0f} times more")
conv = torch.nn.Conv2d(3, 6, kernel_size=5)
dense = torch.nn.Linear(3 * 32 * 32, 6 * 28 * 28)
print("nn.Conv2d(3, 6, 5):", sum(p.numel() for p in conv.parameters()))
print("nn.Linear(3072, 4704):", f"{sum(p.numel() for p in dense.parameters()):,}")
print(conv(torch.zeros(1, 3, 32, 32)).shape)

# %% [markdown]
# ### Exercise 1.1: Parameters of a convolution layer
#
# Write `conv_params(in_channels, out_channels, kernel, bias=True)`: the number of parameters of
# `nn.Conv2d(in_channels, out_channels, kernel, bias=bias)`: $M(Ck^2 + 1)$ as above, $MCk^2$ without
# bias. The check compares your count with PyTorch's for unseen layers.

# %%
def conv_params(in_channels, out_channels, kernel, bias=True):
    """Number of parameters of nn.Conv2d(in_channels, out_channels, kernel, bias=bias)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb01

nb01.check_conv_params(conv_params)

# %% [markdown]
# ## Tensors: a batch of images as one array
#
# PyTorch keeps a batch of images in one tensor of shape $(N, C, H, W)$: $N$ images, $C$ channels,
# $H$ rows and $W$ columns. Element $[n, c, y, x]$ is channel $c$ of image $n$ at row $y$, column
# $x$, stored at position $((n C + c) H + y) W + x$ of the tensor's memory.
#
# **Indexing with `None` adds an axis of length 1.** `t[None]` puts a new axis in front, `t[None, None]`
# two, `t[:, None]` one in second place. That is how a single grey image of shape $(H, W)$ becomes the
# batch of one image with one channel, $(1, 1, H, W)$, that `conv2d` needs (below), and `[0, 0]` takes it out again.

# %%
batch = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)   # N = 2 images, C = 3 channels, 4 x 5 pixels
n, c, y, x = 1, 2, 3, 4
print("shape (N, C, H, W):", tuple(batch.shape))
print("element [1, 2, 3, 4] is number", batch[n, c, y, x].item(), "- the formula gives",
      ((n * 3 + c) * 4 + y) * 5 + x)
grey_image = torch.zeros(4, 4)
print(tuple(grey_image[None].shape), tuple(grey_image[None, None].shape), tuple(grey_image[:, None].shape))
print("the same as unsqueeze:", torch.equal(grey_image[None, None], grey_image.unsqueeze(0).unsqueeze(0)))

# %% [markdown]
# **Broadcasting.** An operation on two tensors of different shapes lines their axes up from the
# last one, and an axis of length 1 is repeated to match the other tensor. So subtracting a
# per-channel mean of shape $(C, 1, 1)$ from an $(N, C, H, W)$ batch computes
# $x'_{n,c,y,x} = x_{n,c,y,x} - \mu_c$ for every image and pixel, without a loop.

# %%
batch = torch.rand(2, 3, 4, 5)
mean = batch.mean(dim=(0, 2, 3))           # one mean per channel: shape (3,)
centred = batch - mean[:, None, None]      # (2, 3, 4, 5) - (3, 1, 1): repeated over N, H and W
by_loop = torch.stack([torch.stack([batch[n, c] - mean[c] for c in range(3)]) for n in range(2)])
print("broadcasting equals the loop:", torch.allclose(centred, by_loop))
print("every channel now has mean 0:", torch.allclose(centred.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-6))

# %% [markdown]
# ## The convolution formula
#
# For a single-channel image $I$ and a square filter $F$ of size $k = 2N + 1$, the output pixel
# at $(x, y)$ with stride $s$ is
#
# $$I'[x, y] = \sum_{i=-N}^{N} \sum_{j=-N}^{N} I[s x + i,\; s y + j]\; F[i + N,\; j + N]$$
#
# Here $I$ keeps the original image's indices and reads as 0 outside it: that is zero padding with
# $N$ rings, and the window of $x = y = 0$ is centred on the first pixel, $I[0, 0]$. (Without
# padding the first window would be centred on pixel $(N, N)$: read $I[s x + N + i,\; s y + N + j]$.)
# Deep-learning libraries do not flip the filter: strictly this is *cross-correlation*, as
# `torch.nn.functional.conv2d` computes it.
#
# **Worked example.** The vertical-line filter below responds to a bright one-pixel-wide
# vertical line. Put it, with one ring of zero padding, on the top-left corner of an image whose
# top-left $2 \times 2$ block is $\begin{smallmatrix}2 & 2\\1 & 0\end{smallmatrix}$:
#
# $$\begin{pmatrix}0&0&0\\0&2&2\\0&1&0\end{pmatrix} \odot \begin{pmatrix}-1&2&-1\\-1&2&-1\\-1&2&-1\end{pmatrix}
# \;\Rightarrow\; 0+0+0\;+\;0+4-2\;+\;0+2+0 = 4$$

# %%
F_vertical = theory.VERTICAL_LINE_FILTER
image = np.array([[2, 2, 5, 1],
                  [1, 0, 3, 2],
                  [4, 1, 0, 1],
                  [0, 2, 2, 3]], dtype=float)   # any image whose top-left 2x2 block is [[2, 2], [1, 0]]
by_hand = theory.conv2d_single(image, F_vertical, stride=1, padding=1)
by_torch = F.conv2d(torch.tensor(image)[None, None], torch.tensor(F_vertical)[None, None], padding=1)[0, 0].numpy()
print("top-left output by hand:", by_hand[0, 0])
print(by_hand)
print("equal to torch.nn.functional.conv2d:", np.allclose(by_hand, by_torch))

# %% [markdown]
# ## Padding and the output-size formula
#
# A $k \times k$ window fits $n - k + 1$ times along an axis of length $n$. Adding $p$ zeros on each
# side and moving the window $s$ pixels at a time gives
#
# $$n' = \left\lfloor \frac{n + 2p - k}{s} \right\rfloor + 1 .$$
#
# **Same padding** keeps $n' = n$ at stride 1: $p = (k - 1)/2$ for an odd kernel. That is the
# `padding=` PyTorch needs (`padding="same"` computes it for you, at stride 1 only). The formula
# against the shape PyTorch really produces:

# %%
print(f"{'n':>3} {'k':>2} {'p':>2} {'s':>2} | formula  torch")
for n, k, p, s in [(32, 5, 0, 1), (32, 5, 2, 1), (32, 3, 1, 2), (28, 7, 3, 2), (7, 3, 0, 3), (224, 7, 3, 2)]:
    formula = theory.output_size(n, k, p, s)
    actual = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), padding=p, stride=s).shape[-1]
    print(f"{n:>3} {k:>2} {p:>2} {s:>2} | {formula:>7} {actual:>6}")
print("same padding for k = 3, 5, 7:", [theory.same_padding(k) for k in (3, 5, 7)])

# %% [markdown]
# ### Exercise 1.2: Output size of a stack of layers
#
# Write `stack_output_size(n, layers)`: the side length after applying a stack of convolutions and
# poolings to an $n \times n$ input, `layers` being a list of `(kernel, padding, stride)` tuples. Apply
# the formula layer after layer. The hidden cases include LeNet and
# the ResNet stem.

# %%
def stack_output_size(n, layers):
    """Side length after a stack of convolutions or poolings applied to an n x n input.

    layers: a list of (kernel, padding, stride) tuples, applied in order.
    """
    raise NotImplementedError

# %%
from cnncourse.exercises import nb01

nb01.check_stack_output_size(stack_output_size)

# %% [markdown]
# ## Stride
#
# Stride $s$ moves the window $s$ pixels at a time: the output keeps every $s$-th position of the
# stride-1 output, so it shrinks by about $s$ along each axis.

# %%
stride1 = theory.conv2d_single(image, F_vertical, stride=1, padding=1)
stride2 = theory.conv2d_single(image, F_vertical, stride=2, padding=1)
print(stride2)
print("stride 2 = every 2nd stride-1 output:", np.array_equal(stride2, stride1[::2, ::2]))
print("equal to torch:", np.allclose(stride2, F.conv2d(torch.tensor(image)[None, None],
                                                       torch.tensor(F_vertical)[None, None], padding=1, stride=2)[0, 0].numpy()))

# %% [markdown]
# ### Exercise 1.3: Convolution with stride and padding in NumPy
#
# Write `conv2d_strided(image, filt, stride=1, padding=0)` in NumPy, from the formula above and without
# `cnncourse.theory`: pad the image with `padding` zeros on every side, then output $(x, y)$ is the sum of
# the window whose top-left corner is $(s x, s y)$, multiplied element-wise by the filter (not flipped).
# The check compares it with `F.conv2d`, for odd sizes, even filters and strides up to 3.

# %%
import numpy as np


def conv2d_strided(image, filt, stride=1, padding=0):
    """Single-channel convolution (cross-correlation, as in PyTorch) of an (H, W) NumPy image with a
    (kh, kw) filter, zero padding on every side and a stride; returns an (H', W') NumPy array."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb01

nb01.check_conv2d_strided(conv2d_strided)

# %% [markdown]
# ## Multi-channel convolution
#
# A colour image has $C = 3$ channels, and every filter has the input's depth: filter $m$ is
# $C \times k \times k$. Its response sums the single-channel convolutions over the channels $c$
# and adds one bias:
#
# $$I'_m[x, y] = \sum_{c=0}^{C-1} \sum_{i=-N}^{N} \sum_{j=-N}^{N} I_c[s x + i,\; s y + j]\; F_{m,c}[i + N,\; j + N] + b_m$$
#
# $M$ filters give $M$ output channels. (The article's channel index $k$ is $c$ here: $k$ is the
# kernel size.)

# %%
rng = np.random.default_rng(0)
x = rng.normal(size=(3, 8, 8))             # C = 3 input channels
filters = rng.normal(size=(4, 3, 3, 3))    # M = 4 filters, each 3 deep
bias = rng.normal(size=4)
by_hand = theory.conv2d(x, filters, bias, stride=1, padding=1)
by_torch = F.conv2d(torch.tensor(x)[None], torch.tensor(filters), torch.tensor(bias), padding=1)[0].numpy()
print("input", x.shape, "-> output", by_hand.shape)
print("max |hand - torch| < 1e-12:", np.abs(by_hand - by_torch).max() < 1e-12)

# %% [markdown]
# ## A line detector on a real image
#
# The vertical-line filter on a real CIFAR-10 photograph (a sample shipped with the
# package), in grey levels. A filter only sees its receptive field: a $3 \times 3$ filter answers
# to one-pixel lines, while the same pattern stretched to $9 \times 9$ (three columns of width 3)
# answers to lines about three pixels wide and ignores finer detail.

# %%
from cnncourse.data import SampleDataset

samples = SampleDataset("cifar10", split="train")
photo, label = samples[samples.targets.index(samples.classes.index("truck"))]   # the first truck
grey = np.asarray(photo.convert("L"), dtype=float) / 255.0
large_filter = np.kron(F_vertical, np.ones((3, 3))) / 9.0   # the same pattern over a 9x9 receptive field
small_response = theory.conv2d_single(grey, F_vertical, padding=theory.same_padding(3))
large_response = theory.conv2d_single(grey, large_filter, padding=theory.same_padding(9))
for name, filt, response in [("3x3", F_vertical, small_response), ("9x9", large_filter, large_response)]:
    reference = F.conv2d(torch.tensor(grey)[None, None], torch.tensor(filt)[None, None], padding="same")[0, 0].numpy()
    print(f"{name}: output {response.shape}, equal to torch padding='same': {np.allclose(response, reference)}")
print("image:", samples.classes[label])

# %% [markdown]
# In the responses below, red marks a vertical line brighter than its left and right neighbours,
# blue a darker one, white no vertical line (each panel has its own scale, centred on 0). The
# $3 \times 3$ filter leaves short, faint marks scattered over the picture: one-pixel details. The
# $9 \times 9$ filter draws a few long bands: the bright pillar of the cab beside its dark windscreen
# gives a red band next to a blue one. The red columns along the borders come from the zero padding,
# whose black border looks like the dark side of a bright line.

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
axes[0].imshow(grey, cmap="gray")
axes[0].set_title(f"input ({samples.classes[label]})")
for ax, response, title in [(axes[1], small_response, "3x3 vertical-line filter"),
                            (axes[2], large_response, "9x9 vertical-line filter")]:
    limit = np.abs(response).max()
    shown = ax.imshow(response, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
for ax in axes:
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# **Then the activation.** A convolution layer does not hand its raw response on: it applies an
# activation function $f$ to every pixel, here ReLU, $f(z) = \max(z, 0)$:
#
# $$f(I')[x, y] = \max\big(I'[x, y],\; 0\big)$$
#
# The red of the response survives and the blue becomes 0: $f(I')$ says only *where the filter
# found a bright vertical line, and how strongly*. The next layer and the pooling below receive this
# activated map.

# %%
activated = theory.relu(small_response)
by_torch = F.relu(F.conv2d(torch.tensor(grey)[None, None], torch.tensor(F_vertical)[None, None], padding=1))
by_torch = by_torch[0, 0].numpy()
print("f(I') equal to torch's relu(conv2d(...)):", np.allclose(activated, by_torch))
print(f"pixels where the filter answers, f(I') > 0: {(activated > 0).sum()} of {activated.size}; "
      f"set to 0 by ReLU: {(small_response < 0).sum()}")

# %% [markdown]
# ## Gradients with autograd
#
# A tensor made with `requires_grad=True` records what is computed from it, and `loss.backward()`
# then fills its `.grad` with the derivative of the loss. For one weight $w$, inputs $x_i$ and
# targets $y_i$, the squared error $L = \sum_i (w x_i - y_i)^2$ has the derivative
# $\partial L / \partial w = \sum_i 2 (w x_i - y_i)\, x_i$; autograd must give the same number.

# %%
inputs = torch.tensor([1.0, 2.0, 3.0])
targets = torch.tensor([2.0, 4.0, 6.0])     # targets = 2 * inputs: the best weight is 2
weight = torch.tensor(0.5, requires_grad=True)
loss = ((weight * inputs - targets) ** 2).sum()
loss.backward()
by_formula = (2 * (weight.detach() * inputs - targets) * inputs).sum()
print("autograd:", weight.grad.item(), "| by the formula:", by_formula.item())

# %% [markdown]
# **A gradient step** moves the weight against its gradient, $w \leftarrow w - \eta\, \partial L/\partial w$,
# with a learning rate $\eta$. An optimizer such as `torch.optim.SGD` makes that step for every
# parameter it holds; `zero_grad()` comes first, because `backward` adds to `.grad` instead of
# overwriting it. A hundred steps find the best weight:

# %%
weight = torch.tensor(0.5, requires_grad=True)
optimizer = torch.optim.SGD([weight], lr=0.01)
for step in range(100):
    optimizer.zero_grad()
    loss = ((weight * inputs - targets) ** 2).sum()
    loss.backward()
    optimizer.step()                        # weight <- weight - 0.01 * dL/dweight
print(f"after 100 steps: weight = {weight.item():.4f}; within 0.001 of 2: {abs(weight.item() - 2) < 1e-3}")

# %% [markdown]
# ### Exercise 1.4: Learn the vertical-line filter by gradient descent
#
# Filters are not designed by hand in a CNN: they are learned. Write `learn_filter(images, responses)`:
# starting from a random $3 \times 3$ filter `w` (`requires_grad=True`), repeat: compute
# `F.conv2d(images, w, padding=1)`, the mean squared error to `responses`, its gradient, and a gradient
# step. The check makes responses with hidden filters (the vertical-line filter among them) and
# expects your loop to find each to within 0.02.

# %%
import torch
import torch.nn.functional as F


def learn_filter(images, responses, steps=300, lr=0.1):
    """Find the 3x3 filter w with F.conv2d(images, w, padding=1) == responses by gradient descent
    on the mean squared error, from a random start. images, responses: tensors (N, 1, H, W).
    Returns w as a (3, 3) tensor."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb01

nb01.check_learn_filter(learn_filter)

# %% [markdown]
# ## Pooling
#
# Pooling summarises each $k \times k$ window of every channel separately, so the number of channels
# does not change. As in the article, it pools the detector's activated map $f(I')$. Max pooling
# keeps the strongest response of each window, average pooling their mean:
#
# $$P_{\max}[x, y] = \max_{0 \le i, j < k} f(I')[s x + i,\; s y + j] \qquad
# P_{\text{avg}}[x, y] = \frac{1}{k^2} \sum_{0 \le i, j < k} f(I')[s x + i,\; s y + j]$$
#
# The stride defaults to the kernel size (windows side by side, no overlap), so a $2 \times 2$ pool
# halves each side and a $4 \times 4$ pool quarters it. Applied to the activated map of the truck:

# %%
for k in (2, 4):
    mx = theory.max_pool2d(activated, kernel=k)
    av = theory.avg_pool2d(activated, kernel=k)
    t = torch.tensor(activated)[None, None]
    print(f"{k}x{k}: {activated.shape} -> {mx.shape}; "
          f"max equal to torch: {np.allclose(mx, F.max_pool2d(t, k)[0, 0].numpy())}, "
          f"avg equal to torch: {np.allclose(av, F.avg_pool2d(t, k)[0, 0].numpy())}")
three_channels = torch.tensor(x)[None]
print("channels unchanged:", tuple(three_channels.shape), "->", tuple(F.max_pool2d(three_channels, 2).shape))

# %% [markdown]
# **What pooling does to a line.** Take a bright vertical line one pixel wide on a black image. The
# line detector answers $3 \cdot 2 = 6$ on the line and $3 \cdot (-1) = -3$ beside it, which ReLU
# turns into 0 (no padding here, so that the image border plays no part). A $k \times k$ window over
# the line holds one column of 6s and $k - 1$ columns of 0s:
#
# $$P_{\max} = 6, \qquad P_{\text{avg}} = \frac{k \cdot 6}{k^2} = \frac{6}{k} .$$
#
# Max pooling keeps the detector's response at full strength, average pooling dilutes it by the
# window's width: to 3 in a $2 \times 2$ window, to 1.5 in a $4 \times 4$ one.

# %%
line_image = np.zeros((10, 10))
line_image[:, 4] = 1.0                                      # a bright line, one pixel wide, in column 4
line_map = theory.relu(theory.conv2d_single(line_image, F_vertical))
print("f(I') in one row:", line_map[0])
for k in (2, 4):
    mx, av = theory.max_pool2d(line_map, k), theory.avg_pool2d(line_map, k)
    t = torch.tensor(line_map)[None, None]
    same_as_torch = (np.allclose(mx, F.max_pool2d(t, k)[0, 0].numpy())
                     and np.allclose(av, F.avg_pool2d(t, k)[0, 0].numpy()))
    print(f"{k}x{k} window over the line: max {mx.max():g} (= 6: {mx.max() == 6}), "
          f"average {av.max():g} (= 6/{k}: {av.max() == 6 / k}); both equal to torch: {same_as_torch}")

# %% [markdown]
# The same on the truck. Where a window holds a line response, max pooling passes on its strongest
# value by definition, while average pooling mixes it with the weak and zero responses around it:
# on the median window it keeps less than half of it at $2 \times 2$ and about a quarter at
# $4 \times 4$. Nothing is lost on average - the windows tile the map, so the mean of the
# average-pooled map equals the mean of $f(I')$ exactly - it is spread out: the peaks are what go.

# %%
for k in (2, 4):
    mx, av = theory.max_pool2d(activated, k), theory.avg_pool2d(activated, k)
    answered = mx > 0                                      # the windows holding a line response
    kept = np.median(av[answered] / mx[answered])
    print(f"{k}x{k}: {answered.sum()} of {answered.size} windows hold a response; average pooling keeps "
          f"{100 * kept:.0f} % of it on the median window, max pooling 100 %; "
          f"mean unchanged by average pooling: {np.isclose(av.mean(), activated.mean())}")

# %% [markdown]
# **Why the neocognitron's C cells are closer to max pooling.** A C cell fires when *any* of the S
# cells it collects fires: one S cell that finds the line is enough for a strong answer, as in max
# pooling. An average would make the answer depend on how much of the area the line covers.
#
# On the truck (one colour scale, white 0): max pooling keeps the strong
# responses strong while the map gets coarser; average pooling fades them, and at $4 \times 4$
# barely anything is left. The dark columns at the borders are the zero padding's artefact.

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 5, figsize=(14, 3.2), layout="constrained")
limit = activated.max()   # one colour scale for all five panels
for ax, (title, img) in zip(axes, [("f(I'), 3x3 detector", activated),
                                   ("max 2x2", theory.max_pool2d(activated, 2)),
                                   ("avg 2x2", theory.avg_pool2d(activated, 2)),
                                   ("max 4x4", theory.max_pool2d(activated, 4)),
                                   ("avg 4x4", theory.avg_pool2d(activated, 4))]):
    shown = ax.imshow(img, cmap="Reds", vmin=0, vmax=limit)
    ax.set_title(f"{title}: {img.shape[0]}x{img.shape[1]}")
    ax.axis("off")
fig.colorbar(shown, ax=axes, fraction=0.02, pad=0.02)
plt.show()

# %% [markdown]
# ### Exercise 1.5: Average pooling as a convolution
#
# Average pooling is a convolution with a fixed filter. Write `avg_pool_via_conv(x, kernel)` for a batch
# `x` of shape $(N, C, H, W)$ with a single `F.conv2d` call (no pooling function): a $k \times k$ filter of
# $1/k^2$, stride $k$. Pooling keeps the channels apart, so each channel needs its own filter: look at
# `F.conv2d`'s `groups` argument.

# %%
import torch
import torch.nn.functional as F


def avg_pool_via_conv(x, kernel):
    """k x k average pooling (stride k) of a batch x of shape (N, C, H, W), written as one
    F.conv2d call (no pooling functions); returns (N, C, H // k, W // k)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb01

nb01.check_avg_pool_via_conv(avg_pool_via_conv)

# %% [markdown]
# ## The dense layer
#
# After the convolutions, the feature maps are flattened into a vector $x$ and dense layers compute
#
# $$x' = f(Wx + b)$$
#
# with a weight matrix $W$ (outputs x inputs), a bias vector $b$ and an activation $f$ such as ReLU.
# **The bias trick:** append a constant 1 to $x$ and $b$ as an extra column of $W$; then
# $x' = f([W \mid b] \, [x; 1])$ is one matrix product, which is how the bias is often drawn as an
# extra input neuron.

# %%
x_vec = rng.normal(size=5)
W = rng.normal(size=(3, 5))
b = rng.normal(size=3)
plain = theory.dense(x_vec, W, b, activation="relu")
trick = theory.dense_with_bias_trick(x_vec, W, b, activation="relu")
linear = torch.nn.Linear(5, 3).double()
with torch.no_grad():
    linear.weight.copy_(torch.tensor(W))
    linear.bias.copy_(torch.tensor(b))
    by_torch = torch.relu(linear(torch.tensor(x_vec))).numpy()
print("f(Wx + b):        ", np.round(plain, 6))
print("bias trick equal: ", np.allclose(plain, trick))
print("nn.Linear + ReLU equal:", np.allclose(plain, by_torch))
print("parameters of nn.Linear(5, 3):", theory.dense_param_count(5, 3), "=", sum(p.numel() for p in linear.parameters()))

# %% [markdown]
# ## Experiment: learn the filter from a photograph
#
# Exercise 1.4's check learns from random noise. Give your `learn_filter` the truck instead:
# `images = torch.tensor(grey, dtype=torch.float32)[None, None]`, `responses = F.conv2d(images,
# torch.tensor(F_vertical, dtype=torch.float32)[None, None], padding=1)`. After `torch.manual_seed(0)`,
# run 100, 300 and 1000 steps at `lr=0.1`, then 300 at 0.01 and 0.5 (seconds each); record the mean
# squared error and the filter's largest error, `(w - torch.tensor(F_vertical)).abs().max()`. Then
# change one thing, `images = torch.randn(1, 1, 32, 32)`, and repeat. Which images teach the filter in
# fewer steps? Which learning rate blows up on which? A photograph's neighbouring pixels are nearly
# equal: why might that slow gradient descent?

# %% [markdown]
# ## Summary
#
# * A conv layer has $M(Ck^2 + 1)$ parameters, independent of the image size, thanks to local
#   receptive fields and weight sharing.
# * Output size: $\lfloor (n + 2p - k)/s \rfloor + 1$; same padding is $p = (k-1)/2$.
# * A detector, its activation, then pooling: pooling shrinks each channel by the stride and keeps
#   the channel count; max pooling keeps a line's response at full strength, average pooling dilutes it.
# * Dense layers finish the job: $x' = f(Wx + b)$.
# * PyTorch holds images as $(N, C, H, W)$ tensors; `None` adds an axis, broadcasting repeats axes of
#   length 1; autograd's `backward` gives the gradients, and an optimizer step moves every weight
#   against its gradient.
#
# Next: notebook 2 assembles these layers into LeNet and trains it on CIFAR-10.
