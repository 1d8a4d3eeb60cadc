# %% [markdown]
# # 7. What the network looks at: saliency, Grad-CAM and transfer learning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/07_what_the_network_looks_at.ipynb)
#
# Lessons 2 to 6 measured accuracy. This one asks a trained network *which pixels* its answer depends
# on:
#
# 1. **saliency**: the gradient of a class score with respect to the pixels;
# 2. **Grad-CAM** (Selvaraju et al., 2017): a layer's feature maps weighed by that gradient;
# 3. where a layer's map lies on the image, from its receptive fields;
# 4. the maps of LeNet (CIFAR-10) and ResNet-20 (Fashion-MNIST), right and wrong, and a test of them;
# 5. **transfer learning**: ImageNet's weights in the course's ResNet-50.
#
# The evidence (captum cross-checks, the maps' full audit, the transfer-learning recipe and cost) is in
# [the lab](labs/07_maps_experiments.ipynb).
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
# **Quick mode.** Nothing here trains: the maps come from networks recorded in `results/`. With
# `CNNCOURSE_QUICK=1` (set by the test suite and the notebook builder) they cover the 200 test images of
# each data set shipped with the package, a **quick sample**; without it, the whole test sets.
# `cnncourse.set_quick_mode(True)` at the top of the next cell chooses in the notebook itself.

# %% tags=["nbval-ignore-output"]
from importlib.metadata import version

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam, Saliency
from torch import nn

import cnncourse
from cnncourse import reference
from cnncourse.data import dataset_info
from cnncourse.fastdata import fast_loaders
from cnncourse.models import resnet50
from cnncourse.train import predict

QUICK = cnncourse.quick_mode()
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| captum", version("captum"),
      "| quick mode:", QUICK)
print(cnncourse.describe_device())

# %% [markdown]
# ## Two trained networks and their test images
#
# The LeNet of lesson 2 (CIFAR-10) and the ResNet-20 of lesson 4 (Fashion-MNIST), their weights checked
# against the SHA-256 in their `metrics.json`; `predict` keeps the normalised test images with the logits
# and predictions.

# %%
lenet = reference.load_model("cifar10-lenet-improved", device="cpu")
_, cifar_test = fast_loaders("cifar10", batch_size=100, val_fraction=0, seed=0)
cifar = predict(lenet, cifar_test, keep_images=True)
CIFAR_CLASSES = dataset_info("cifar10").classes

resnet20 = reference.load_model("fmnist-resnet20", device="cpu")
_, fmnist_test = fast_loaders("fashion-mnist", batch_size=100, val_fraction=0, seed=0)
fmnist = predict(resnet20, fmnist_test, keep_images=True)
FMNIST_CLASSES = dataset_info("fashion-mnist").classes
for name, shown in (("LeNet on CIFAR-10", cifar), ("ResNet-20 on Fashion-MNIST", fmnist)):
    right = int((shown.preds == shown.labels).sum())
    print(f"{name}: {len(shown.labels):,} test images, {right:,} right, {len(shown.labels) - right:,} wrong; "
          f"input {tuple(shown.images.shape[1:])}")

# %% [markdown]
# ## Saliency: the gradient with respect to the pixels
#
# A network's score for class $c$ is its logit $S_c(x)$. Near an image $x$,
# $S_c(x + \delta) \approx S_c(x) + \nabla_x S_c(x) \cdot \delta$: the gradient says how much each pixel
# moves the score. Simonyan, Vedaldi and Zisserman (2013) draw its size, the largest over the colour
# channels $k$, as a **saliency map**:
#
# $$M_{ij} = \max_k \left| \frac{\partial S_c}{\partial x_{kij}} \right| .$$
#
# One backward pass gives it for every pixel; below, checked against `captum.attr.Saliency`.

# %%
def saliency(model, images, targets):
    """|d S_target / d pixel|, the largest over the channels: (N, H, W)."""
    x = images.clone().requires_grad_(True)
    score = model(x).gather(1, targets[:, None]).sum()    # each image's own target logit; images don't interact
    (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)


for name, model, shown in (("LeNet", lenet, cifar), ("ResNet-20", resnet20, fmnist)):
    theirs = Saliency(model).attribute(shown.images.clone().requires_grad_(True), target=shown.preds, abs=True)
    print(f"{name}: saliency maps equal to captum's:",
          torch.allclose(saliency(model, shown.images, shown.preds), theirs.amax(dim=1), rtol=1e-4, atol=1e-7))

# %% [markdown]
# ### Exercise 7.1: SmoothGrad: saliency averaged over noisy copies
#
# Saliency maps are speckled. Smilkov et al. (2017) average them over $S$ noisy copies of the image,
# $\bar M = \frac{1}{S}\sum_s M(x + \varepsilon_s)$ with $\varepsilon_s \sim \mathcal N(0, \sigma^2)$.
# Write `smoothgrad(model, images, targets, noise)`, the $S$ draws of noise being given in `noise`, of
# shape $(S, N, C, H, W)$.

# %%
import torch


def smoothgrad(model, images, targets, noise):
    """SmoothGrad: the saliency map averaged over noisy copies of the images. noise: (S, N, C, H, W),
    S draws of noise for the N images. For each draw s, the saliency map of images + noise[s] (the
    absolute gradient of each image's target logit, the largest over the channels); then the mean of
    the S maps. model: in eval mode; images: (N, C, H, W); targets: (N,) class indices.
    Returns (N, H, W)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_smoothgrad(smoothgrad)

# %% [markdown]
# ### Exercise 7.2: Integrated gradients by a Riemann sum
#
# The gradient describes the score only near $x$. **Integrated gradients** (Sundararajan, Taly and Yan,
# 2017) add it up along the straight path from a baseline $x'$, such as a black image, to $x$:
#
# $$\mathrm{IG}_i = (x_i - x'_i) \int_0^1 \frac{\partial S_c}{\partial x_i}\big(x' + \alpha (x - x')\big)\, d\alpha
# \approx (x_i - x'_i)\, \frac{1}{m} \sum_{k=1}^{m} \frac{\partial S_c}{\partial x_i}\Big(x' + \tfrac{k}{m}(x - x')\Big).$$
#
# The exact values add up to $S_c(x) - S_c(x')$ (**completeness**). Write
# `integrated_gradients(model, images, targets, baselines, steps)` with the sum on the right. Then guess,
# and measure, how many steps bring LeNet's sum within 1 % of $S_c(x) - S_c(x')$.

# %%
import torch


def integrated_gradients(model, images, targets, baselines, steps):
    """Integrated gradients by a right Riemann sum: the gradient of each image's target logit at the
    points baselines + (k / steps) * (images - baselines) for k = 1, ..., steps, averaged, times
    (images - baselines). model: in eval mode; images and baselines: (N, C, H, W); targets: (N,)
    class indices. Returns (N, C, H, W): one signed value per pixel and channel."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_integrated_gradients(integrated_gradients)

# %% [markdown]
# ## Grad-CAM: the gradient of a feature map
#
# A convolution layer outputs $K$ maps $A^k$ of $h \times w$ cells. Grad-CAM weighs map $k$ by the
# average of the score's gradient over it, and keeps the positive part of the weighted sum: the cells
# where the maps add up to evidence *for* class $c$.
#
# $$\alpha_k^c = \frac{1}{hw} \sum_{i,j} \frac{\partial S_c}{\partial A^k_{ij}}, \qquad
# L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big).$$

# %% [markdown]
# **Hooks** catch a layer's output and its gradient, which `model(x)` does not return:
# `layer.register_forward_hook(f)` calls `f(module, inputs, output)` in the forward pass,
# `layer.register_full_backward_hook(g)` calls `g(module, grad_inputs, grad_outputs)` in the backward
# pass, with $\partial S / \partial A$ in `grad_outputs[0]`; a handle's `remove()` takes its hook off. The
# layers: LeNet's `bn2` (16 maps of 10 x 10) and ResNet-20's last stage `layer3` (64 maps of 7 x 7).

# %%
def maps_and_gradients(model, layer, images, targets):
    """The output A of `layer` and the gradient dS/dA of each image's target score, caught by hooks."""
    caught = {}
    forward = layer.register_forward_hook(lambda module, inputs, output: caught.update(maps=output.detach()))
    backward = layer.register_full_backward_hook(
        lambda module, grad_inputs, grad_outputs: caught.update(grads=grad_outputs[0].detach()))
    try:
        model(images).gather(1, targets[:, None]).sum().backward()
    finally:
        forward.remove()
        backward.remove()
        model.zero_grad(set_to_none=True)                       # the weights' gradients are not needed
    return caught["maps"], caught["grads"]


def grad_cam(model, layer, images, targets):
    """Grad-CAM of `layer` for each image's target class, at the layer's resolution: (N, h, w)."""
    maps, grads = maps_and_gradients(model, layer, images, targets)
    weights = grads.mean(dim=(2, 3))                            # alpha: (N, K), the global average
    return F.relu((weights[:, :, None, None] * maps).sum(dim=1))


CAM_LAYERS = {"LeNet": (lenet, lenet.bn2, cifar), "ResNet-20": (resnet20, resnet20.layer3, fmnist)}
for name, (model, layer, shown) in CAM_LAYERS.items():
    ours = grad_cam(model, layer, shown.images, shown.preds)
    theirs = LayerGradCam(model, layer).attribute(shown.images, target=shown.preds, relu_attributions=True)
    print(f"{name}: Grad-CAM maps {tuple(ours.shape)}, equal to captum's LayerGradCam:",
          torch.allclose(ours, theirs[:, 0], rtol=1e-4, atol=1e-6))

# %% [markdown]
# ### Exercise 7.3: Grad-CAM without a backward pass
#
# After `layer3`, ResNet-20 has a global average pool and the dense layer `fc`:
# $S_c = \sum_k W_{ck} \frac{1}{hw} \sum_{i,j} A^k_{ij} + b_c$. Work out $\partial S_c / \partial A^k_{ij}$,
# and so $\alpha_k^c$, by hand: Grad-CAM becomes the class activation map (CAM) of Zhou et al. (2016),
# computed from the weights alone. Write `class_activation_map(features, fc_weight, targets)`; the check
# compares it with Grad-CAM through the backward pass.

# %%
import torch


def class_activation_map(features, fc_weight, targets):
    """Grad-CAM, without a backward pass, of the last convolution stage of a network that ends in
    global average pooling and one dense layer. features: that stage's output (N, K, h, w);
    fc_weight: the dense layer's weight (classes, K); targets: (N,) class indices.
    Returns (N, h, w), Grad-CAM's map for each image's target class."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_class_activation_map(class_activation_map)

# %% [markdown]
# ## Where a map's cells lie on the image
#
# A layer's cell must be drawn over the pixels it sees, its receptive field (lesson 5), centred on input
# coordinate $J i + s$: the **jump** $J$ (the product of the strides) separates neighbouring centres,
# the **start** $s$ is the first centre. From $J = 1, s = 0$, a layer of kernel
# $k$, stride $t$ and padding $p$ gives
#
# $$s \leftarrow s + \Big(\frac{k - 1}{2} - p\Big) J, \qquad J \leftarrow J\, t .$$
#
# LeNet's unpadded 5 x 5 convolution, 2 x 2 pooling and 5 x 5 convolution give $s = 2$, then $2.5$ with
# $J = 2$, then $6.5$: cell $i$ of `bn2` sits on pixel $2i + 6.5$. Bilinear interpolation to the image's
# size (as captum's `LayerAttribution.interpolate` does) puts it on $(i + 0.5) \cdot 32/10 - 0.5 = 3.2i + 1.1$
# instead: 1.6 times too wide, 5.4 pixels off at both ends. ResNet-20's padded convolutions keep the
# centres: $J = 4$, $s = 0$. Below, the package's `map_geometry`, checked by autograd.

# %%
from cnncourse.exercises.nb07 import map_geometry, place_heatmap, scaled

GEOMETRY = {"LeNet": map_geometry([lenet.conv1, lenet.pool, lenet.conv2]),
            "ResNet-20": map_geometry([resnet20.conv1, resnet20.layer2[0].conv1, resnet20.layer3[0].conv1])}
print("(jump, start):", GEOMETRY)

caught = {}
hook = lenet.bn2.register_forward_hook(lambda module, inputs, output: caught.update(bn2=output))
image = cifar.images[:1].clone().requires_grad_(True)
lenet(image)
hook.remove()
jump, start = GEOMETRY["LeNet"]
for i in (0, 4, 9):                    # which input rows does cell (i, i) of bn2 depend on?
    (grad,) = torch.autograd.grad(caught["bn2"][0, :, i, i].sum(), image, retain_graph=True)
    rows = grad[0].abs().sum(dim=(0, 2)).nonzero()[:, 0]
    print(f"bn2 cell {i}: depends on rows {rows.min()} to {rows.max()}, centred on {(rows.min() + rows.max()) / 2}; "
          f"J i + s = {jump * i + start}; interpolation draws it at {3.2 * i + 1.1:.1f}")

# %% [markdown]
# ### Exercise 7.4: A layer's heat map placed on its image
#
# Write `heatmap_on_image(cam, size, jump, start)`: maps $(N, h, w)$ drawn at `size` $= (H, W)$. Pixel
# $p$ reads the map at $u = (p - s)/J$, linearly between the two nearest cells, and takes the edge cell's
# value beyond the first and last centres (in both directions). Then scale each map to 0..1 by its own
# minimum and maximum, a constant map becoming zeros. Hint: along one axis the placement is an $(H, h)$
# matrix.

# %%
import torch


def heatmap_on_image(cam, size, jump, start):
    """Heat maps cam (N, h, w) of a layer drawn on the input image of size = (H, W): cell i of the map
    is centred on input pixel jump * i + start (in both directions). Pixel p reads the map at
    u = (p - start) / jump, linearly between the two nearest cells, and takes the edge cell's value
    where u < 0 or u > h - 1 (w - 1 across). Then each map scaled to 0..1 by its own minimum and
    maximum, a constant map becoming zeros. Returns (N, H, W)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_heatmap_on_image(heatmap_on_image)

# %% [markdown]
# **What Grad-CAM's ReLU removes.** Below, LeNet's weighted sum before the ReLU for the first four test
# images, each cell a square centred where it looks (no cell is centred on the outer 6 pixels): yellow
# for the predicted class, blue against it. Both colours lie on object and background alike; the ReLU
# keeps the yellow. In the third image most cells on the black airplane are blue, and nearly all that
# the ReLU keeps lies on the white background beside it. Without the ReLU, a map scaled by its largest
# absolute value can show the strongest evidence *against* the class as the hottest spot.

# %%
def signed_cam(model, layer, images, targets):
    """Grad-CAM's weighted sum before the ReLU: (N, h, w)."""
    maps, grads = maps_and_gradients(model, layer, images, targets)
    return (grads.mean(dim=(2, 3))[:, :, None, None] * maps).sum(dim=1)


def to_pictures(images, loader):
    """Normalised images (N, C, H, W) back to 0..1 for imshow: (N, H, W, C), or (N, H, W) if grey."""
    mean = torch.tensor(loader.mean).view(1, -1, 1, 1)
    std = torch.tensor(loader.std).view(1, -1, 1, 1)
    pictures = (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1)
    return pictures[..., 0] if pictures.shape[-1] == 1 else pictures


first = slice(0, 4)
signed = signed_cam(lenet, lenet.bn2, cifar.images[first], cifar.preds[first])
signed = signed / signed.abs().amax(dim=(1, 2), keepdim=True)          # each map scaled to its largest |value|
grey = to_pictures(cifar.images[first], cifar_test).mean(dim=-1)
jump, start = GEOMETRY["LeNet"]
low, high = start - jump / 2, start + jump * (signed.shape[-1] - 0.5)   # the cells' outer edges, in pixels
fig, axes = plt.subplots(3, 4, figsize=(8, 6.8), sharex=True, sharey=True, layout="constrained")
for j in range(4):
    for row, values in enumerate((None, signed[j], F.relu(signed[j]))):
        ax = axes[row, j]
        ax.imshow(grey[j], cmap="gray", vmin=0, vmax=1)
        if values is not None:
            shown = ax.imshow(values, cmap="cividis", vmin=-1, vmax=1, alpha=0.85, extent=(low, high, high, low))
        ax.set_xlim(-0.5, 31.5)
        ax.set_ylim(31.5, -0.5)
        ax.set_title(["image", "sum before the ReLU", "after the ReLU"][row]
                     + (f"\npredicted: {CIFAR_CLASSES[cifar.preds[j]]}" if row == 0 else ""), fontsize=8)
    axes[2, j].set_xlabel("x (pixels)", fontsize=8)
for row in range(3):
    axes[row, 0].set_ylabel("y (pixels)", fontsize=8)
bar = fig.colorbar(shown, ax=axes[1:, :], shrink=0.8, label="weighted sum / its largest |value|\n(< 0: against the class)")
title = fig.suptitle(f"LeNet, Grad-CAM of bn2 (10 x 10 cells) with and without its ReLU\n"
                     f"(the first 4 test images{' of the quick sample' if QUICK else ''})", fontsize=10)

# %% [markdown]
# ## What LeNet looks at on CIFAR-10
#
# Each figure shows the images, their saliency maps (white: the largest gradient) and Grad-CAM placed
# by the package's `place_heatmap` over a grey copy (yellow: the most evidence), each map scaled on its
# own. Titles give the prediction, green when right; red when wrong, with the true class.

# %%
def heat_rows(model, layer, shown, index, classes_for_cam, geometry):
    """Saliency and Grad-CAM maps (0..1, image size) of the images `index` of `shown`; one Grad-CAM row per
    entry of classes_for_cam: "predicted" or "true"."""
    images, size = shown.images[index], tuple(shown.images.shape[-2:])
    rows = {"saliency, predicted class": scaled(saliency(model, images, shown.preds[index]))}
    for which in classes_for_cam:
        targets = shown.preds[index] if which == "predicted" else shown.labels[index]
        rows[f"Grad-CAM, {which} class"] = place_heatmap(grad_cam(model, layer, images, targets), size, *geometry)
    return rows


def show_heat_maps(shown, index, rows, loader, classes, title):
    """The images `index` of `shown` on top, one row per map below: saliency alone, Grad-CAM over the image."""
    pictures = to_pictures(shown.images[index], loader)
    grey = pictures if pictures.dim() == 3 else pictures.mean(dim=-1)
    n = len(index)
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(1.25 * n + 0.6, 1.35 * (1 + len(rows)) + 0.5), squeeze=False)
    for j, i in enumerate(index.tolist()):
        right = shown.preds[i] == shown.labels[i]
        axes[0, j].imshow(pictures[j], cmap="gray" if pictures.dim() == 3 else None)
        text = classes[shown.preds[i]] if right else f"{classes[shown.preds[i]]}\n(true: {classes[shown.labels[i]]})"
        axes[0, j].set_title(text, fontsize=7, color="green" if right else "red")
        for row, (name, maps) in enumerate(rows.items(), start=1):
            if name.startswith("saliency"):
                axes[row, j].imshow(maps[j], cmap="gray", vmin=0, vmax=1)
            else:
                axes[row, j].imshow(grey[j], cmap="gray", vmin=0, vmax=1)
                axes[row, j].imshow(maps[j], cmap="viridis", alpha=0.45, vmin=0, vmax=1)
    for row, name in enumerate(["image", *rows], start=0):
        axes[row, 0].text(-0.08, 0.5, name.replace(", ", ",\n"), transform=axes[row, 0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()


def first_right_per_class(shown, num_classes):
    """The first correctly classified test image of every class, in class order."""
    right = (shown.preds == shown.labels).nonzero()[:, 0]
    return torch.stack([right[shown.labels[right] == c][0] for c in range(num_classes)])


def surest_mistakes(shown, count):
    """The `count` wrong predictions made with the highest softmax probability, surest first."""
    wrong = (shown.preds != shown.labels).nonzero()[:, 0]
    confidence = shown.logits[wrong].softmax(dim=1).amax(dim=1)
    return wrong[confidence.argsort(descending=True, stable=True)][:count]


sample_note = "quick sample of 200 test images" if QUICK else f"{len(cifar.labels):,} test images"
lenet_right, lenet_wrong = first_right_per_class(cifar, len(CIFAR_CLASSES)), surest_mistakes(cifar, 10)
show_heat_maps(cifar, lenet_right, heat_rows(lenet, lenet.bn2, cifar, lenet_right, ["predicted"], GEOMETRY["LeNet"]),
               cifar_test, CIFAR_CLASSES, f"LeNet (recorded weights), right answers, the first of each class "
               f"({sample_note}); Grad-CAM of bn2, 10 x 10")

# %% [markdown]
# Grad-CAM's 10 x 10 cells make soft blobs, not outlines, and an edge cell also colours the border beyond
# it. The brightest blob lies on the object for the car, the bird's head, the dog's face, the horse's
# neck, the ship's hull and the truck; partly or wholly beside it for the airplane (a dark spot on its
# body, and the sky right of it out to the edge), the frog (leaves at the left edge and in the top-left
# corner) and the deer (the bottom-left corner). The saliency maps are speckle
# over the whole image, darker only at the frame, where a pixel falls into fewer of the first layer's
# unpadded 5 x 5 windows.

# %%
show_heat_maps(cifar, lenet_wrong, heat_rows(lenet, lenet.bn2, cifar, lenet_wrong, ["predicted", "true"],
                                             GEOMETRY["LeNet"]),
               cifar_test, CIFAR_CLASSES, f"LeNet (recorded weights), surest mistakes ({sample_note})")

# %% [markdown]
# For a wrong answer the two Grad-CAM rows differ, and a few read plausibly. The airplane over water,
# called a ship: "ship" lies on the plane's long white body, "airplane" mostly higher up, on the water above it. The bird's
# head, called a dog: "dog" is a spot on the background in the top-left corner, "bird" lies on the top of
# the head. The bird in leaves, called a frog: "frog" spreads over the leaves. Others are blobs on object
# and background alike: such maps suggest where to look, not why the network erred.

# %% [markdown]
# ## What ResNet-20 looks at on Fashion-MNIST
#
# The same for ResNet-20: Grad-CAM of `layer3`, 7 x 7 cells centred on pixels 0, 4, ..., 24 of the
# 28 x 28 images.

# %%
fmnist_note = "quick sample of 200 test images" if QUICK else f"{len(fmnist.labels):,} test images"
resnet_right, resnet_wrong = first_right_per_class(fmnist, len(FMNIST_CLASSES)), surest_mistakes(fmnist, 10)
show_heat_maps(fmnist, resnet_right, heat_rows(resnet20, resnet20.layer3, fmnist, resnet_right, ["predicted"],
                                               GEOMETRY["ResNet-20"]),
               fmnist_test, FMNIST_CLASSES,
               f"ResNet-20 (recorded weights), right answers, the first of each class ({fmnist_note}); "
               f"Grad-CAM of layer3, 7 x 7")

# %% [markdown]
# For the class it chose, Grad-CAM is one broad blob on the garment: each of the 7 x 7 cells sees more
# than the whole image (its receptive field is 81 pixels wide). The saliency maps are sparser than
# LeNet's, specks mostly on the garment.

# %%
show_heat_maps(fmnist, resnet_wrong, heat_rows(resnet20, resnet20.layer3, fmnist, resnet_wrong, ["predicted", "true"],
                                               GEOMETRY["ResNet-20"]),
               fmnist_test, FMNIST_CLASSES, f"ResNet-20 (recorded weights), surest mistakes ({fmnist_note})")

# %% [markdown]
# Its mistakes are between similar shapes: shirt, dress, pullover and coat; sandal, sneaker and ankle
# boot. For the true class the map moves to a part or an edge, or nearly vanishes. For the three ankle
# boots taken for a sneaker or a sandal, "ankle boot" sits at the left edge above the toe (these shoes
# point left), not at the heel, where a boot's shaft would rise: the story "its shaft is low" finds no
# support here.

# %% [markdown]
# ## Do the maps point at what matters?
#
# A heat map claims "these pixels carry the evidence". Hiding them tests it (Petsiuk et al.'s deletion
# test, 2018, in one step): set a quarter of the pixels to 0, the mean colour after normalisation, and
# measure the probability of the original prediction. The quarters: the one the
# image's own map rates highest; the one **another image's** map rates highest (the same shape, not chosen
# for this image); the one its own map rates lowest. Each change against the own top quarter comes with
# its standard error (the spread of the per-image changes over $\sqrt{N}$): a change under two standard
# errors is no difference.

# %% tags=["nbval-ignore-output"]
def probability_after_hiding(model, shown, ranking, fraction=0.25):
    """Each image's probability of its predicted class after hiding (setting to 0) the `fraction` of its
    pixels that `ranking` (N, H, W) rates highest."""
    n, height, width = ranking.shape
    order = ranking.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :int(fraction * height * width)]
    keep = torch.ones(n, height * width).scatter_(1, order, 0.0).view(n, 1, height, width)
    with torch.no_grad():
        return model(shown.images * keep).softmax(dim=1).gather(1, shown.preds[:, None])[:, 0]


def hiding_test(model, shown, heat):
    """Own top, another image's top and own bottom quarter of `heat` hidden: the mean probability after each,
    and the last two's change against the own top quarter, with its standard error."""
    n = len(shown.preds)
    other = (torch.arange(n) + torch.randint(1, n, (n,), generator=torch.Generator().manual_seed(0))) % n
    top = probability_after_hiding(model, shown, heat)
    cells = [f"{top.mean():.3f}"]
    for ranking in (heat[other], -heat):                        # heat[other]: never the image's own map
        change = probability_after_hiding(model, shown, ranking) - top
        cells.append(f"{(top + change).mean():.3f} ({change.mean():+.3f} ± {change.std() / n ** 0.5:.3f})")
    return cells


print(f"mean probability of the predicted class ({sample_note}); in brackets, the change against the own top quarter")
print(f"{'':20} {'nothing':>8} {'own top':>8} {'another top':>22} {'own bottom':>22}")
for name, (model, layer, shown) in CAM_LAYERS.items():
    nothing = probability_after_hiding(model, shown, torch.zeros(shown.images[:, 0].shape), fraction=0).mean()
    size = tuple(shown.images.shape[-2:])
    for method, heat in (("Grad-CAM", place_heatmap(grad_cam(model, layer, shown.images, shown.preds), size,
                                                    *GEOMETRY[name])),
                         ("saliency", saliency(model, shown.images, shown.preds))):
        top, other, bottom = hiding_test(model, shown, heat)
        print(f"{name + ', ' + method:<20} {nothing:>8.3f} {top:>8} {other:>22} {bottom:>22}")

# %% [markdown]
# On this sample, hiding a map's bottom quarter hurts less than hiding its top quarter, by more than
# three standard errors everywhere: the maps separate pixels that matter from pixels that matter little.
# But no map beats another image's top quarter by two standard errors, and for ResNet-20's Grad-CAM the
# other quarter even hurts a little more: on these centred images the maps say mostly "the middle".
# [The lab](labs/07_maps_experiments.ipynb) adds a random quarter and the old, interpolated drawing.

# %% [markdown]
# ## Transfer learning: ImageNet weights in the course's ResNet-50
#
# A network trained on ImageNet (1.28 million images, 1000 classes) has learned edges, textures and
# parts that help elsewhere. **Transfer learning** starts a new task from its weights with a new last
# layer, then trains that layer alone (a frozen backbone) or everything with a small learning rate
# (**fine-tuning**); a frozen backbone trains far fewer numbers and computes no gradients through the
# backbone. The course's `resnet50` names and shapes its layers as torchvision does, so torchvision's
# weights fit it; checked on the meta device (shapes only):

# %%
with torch.device("meta"):
    theirs = torchvision.models.resnet50().state_dict()
    ours = resnet50(num_classes=1000).state_dict()
print(f"torchvision's resnet50: {len(theirs)} tensors; cnncourse's resnet50: {len(ours)} tensors")
print("same names in the same order:", list(theirs) == list(ours))
print("same shapes:", all(theirs[key].shape == ours[key].shape for key in theirs))
with torch.device("meta"):
    head_only = resnet50(num_classes=10).requires_grad_(False)
    head_only.fc.requires_grad_(True)                          # a frozen backbone: only the head trains
print(f"trainable parameters for 10 classes: {cnncourse.count_parameters(head_only):,} when fine-tuning, "
      f"{cnncourse.count_parameters(head_only, trainable_only=True):,} with a frozen backbone (2048 x 10 + 10)")

# %% [markdown]
# The loading code. `get_state_dict` downloads the weights (about 100 MB) once into torch's cache, checked against the hash
# in the file's name; `load_state_dict` is strict, so a name or shape that does not match raises an
# error. The new `fc` starts random. The lab calls it; quick mode never touches the network.

# %%
import torch
import torchvision
from torch import nn

from cnncourse.models import resnet50

IMAGENET_WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V2


def load_imagenet_resnet50(num_classes, progress=True):
    """The course's ResNet-50 with torchvision's ImageNet weights and a new classifier `fc` for
    num_classes classes. The first call downloads the weights into torch's cache
    ($TORCH_HOME/hub/checkpoints) and checks them against the hash in their file name; later calls
    read the cached file (without that check)."""
    model = resnet50(num_classes=1000)
    state = IMAGENET_WEIGHTS.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    model.load_state_dict(state)
    model.fc = nn.Linear(2048, num_classes)                    # ResNet-50's 2048 features: a new head
    return model

# %% [markdown]
# ### Exercise 7.5: A new head for fine-tuning, and a frozen backbone
#
# Write `prepare_for_fine_tuning(model, num_classes, freeze_backbone=False)` for any ResNet of the
# course: a new `nn.Linear` as `model.fc`, with the same input features, and with `freeze_backbone`
# every other parameter's `requires_grad` off. The check uses small ResNets whose weights stand for
# pretrained ones.

# %%
from torch import nn


def prepare_for_fine_tuning(model, num_classes, freeze_backbone=False):
    """A pretrained ResNet made ready for a new task: its classifier model.fc replaced by a new
    nn.Linear (with a bias) from the same number of features to num_classes; with freeze_backbone,
    every other parameter gets requires_grad = False, so that only the new fc trains. Keeps all
    other weights. Returns the model."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_prepare_for_fine_tuning(prepare_for_fine_tuning)

# %% [markdown]
# **Fine-tuned against trained from scratch.** The controlled comparison (the same ResNet-50, recipe and
# seed, on CIFAR-10 at 224 x 224 pixels, from ImageNet's weights or from random ones) needs a GPU and is
# not recorded yet: its recipe, cost and code are in [the lab](labs/07_maps_experiments.ipynb). Kornblith,
# Shlens and Le (2019) found that starting from ImageNet's weights helped most where the new data set is
# small.

# %% [markdown]
# ## Experiment: does SmoothGrad point better than the plain gradient?
#
# Put your `smoothgrad` of Exercise 7.1 through the hiding test, for LeNet in quick mode (seconds a run
# on a laptop CPU):
#
# 1. `noise = 0.5 * torch.randn(16, *cifar.images.shape, generator=torch.Generator().manual_seed(seed))`,
#    for `seed` 0 and 1;
# 2. `hiding_test(lenet, cifar, smoothgrad(lenet, cifar.images, cifar.preds, noise))`, beside
#    `hiding_test(lenet, cifar, saliency(lenet, cifar.images, cifar.preds))`.
#
# Record the three columns each time. Does SmoothGrad's top quarter hurt more than plain saliency's, its
# bottom quarter less? Does its lead over another image's map pass two standard errors? Do the two seeds
# differ by more than the standard errors? Then try noise 0.1 and 1.0.

# %% [markdown]
# ## Summary
#
# * A saliency map is the size of the score's gradient per pixel; SmoothGrad averages it over noisy
#   copies, integrated gradients add it up from a baseline.
# * Grad-CAM weighs a layer's maps by their average gradient, caught by hooks, and keeps the positive
#   part; after average pooling and one dense layer it is CAM.
# * Cell $i$ of a layer lies on input pixel $J i + s$; interpolating its map to the image's size
#   misplaces it.
# * Hiding pixels tests a map: here the maps' bottom quarter mattered least, but another image's map
#   did about as well as the image's own.
# * ImageNet weights load into the course's ResNet-50: replace `fc`, then fine-tune or train the head.
