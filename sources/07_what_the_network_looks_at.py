# %% [markdown]
# # 7. What the network looks at: saliency, Grad-CAM and transfer learning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/07_what_the_network_looks_at.ipynb)
#
# **What you will learn.** How to ask a trained network which pixels its answer depends on. A
# saliency map is the gradient of a class score with respect to the input pixels; Grad-CAM
# (Selvaraju et al., 2017) weighs the feature maps of a convolution layer by the gradient of the
# score and keeps where they raise it. Both are written here from scratch, with forward and backward
# hooks on a chosen layer, and checked in the same cell against the library `captum`. Then they are
# applied to two trained networks of the course, whose weights ship with it - LeNet on CIFAR-10
# (notebook 2) and ResNet-20 on Fashion-MNIST (notebook 4) - on images they get right and images
# they get wrong, and a masking test asks whether the maps point at what the network really uses.
# The last part is transfer learning: the course's ResNet-50 has torchvision's layout, so
# torchvision's ImageNet weights load into it, and a network that starts from them can be fine-tuned
# on CIFAR-10 and compared with the same network trained from scratch.
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
# with the package: the 200 bundled test images of CIFAR-10 and of Fashion-MNIST, 20 per class. The
# heat maps need no training - they are computed from the recorded networks' weights - so quick mode
# changes only how many test images they are computed on. The transfer-learning part does train: in
# quick mode it trains ResNet-50 from scratch for a few batches of a tiny sample, a **quick sample**
# that checks the code path, not what the network can do, and it does not download the ImageNet
# weights. Without quick mode (the default when you open the notebook in Jupyter or Colab) the
# notebook downloads CIFAR-10, Fashion-MNIST and the ImageNet weights and trains both ResNet-50s on
# all of CIFAR-10 - use a GPU for that. To choose in the notebook itself, call
# `cnncourse.set_quick_mode(True)` or `cnncourse.set_quick_mode(False)` at the top of the next cell;
# everything below reads `QUICK`.

# %% tags=["nbval-ignore-output"]
import dataclasses
from importlib.metadata import version
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerAttribution, LayerGradCam, Saliency
from torch import nn

import cnncourse
from cnncourse import reference
from cnncourse.data import data_recipe, dataset_info
from cnncourse.fastdata import fast_loaders
from cnncourse.models import resnet50
from cnncourse.train import fit, predict

QUICK = cnncourse.quick_mode()
DEVICE = cnncourse.get_device()
RUNS = Path("runs")               # checkpoints of the real runs (quick mode writes none)
if QUICK:
    torch.set_num_threads(1)      # batches this small run fastest on one thread, also on a busy CPU
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| captum", version("captum"),
      "| quick mode:", QUICK)
print(cnncourse.describe_device())

# %% [markdown]
# ## What a real run costs
#
# The heat maps cost seconds on a CPU in either mode: no network is trained for them. The real
# transfer-learning runs (quick mode off) need:
#
# * **downloads**: CIFAR-10 (`cifar-10-python.tar.gz`, about 170 MB) and Fashion-MNIST (about 30 MB)
#   once, into the course's data folder; torchvision's ImageNet weights of ResNet-50 once, into
#   torch's cache (`$TORCH_HOME/hub/checkpoints`, by default `~/.cache/torch/hub/checkpoints`), their
#   size computed below;
# * **time on a GPU**: not measured yet. Both runs see CIFAR-10 enlarged to the 224 x 224 pixels
#   the ImageNet weights were trained at, which multiplies the work per image; the multiply-adds are
#   computed below. On a CPU that is impractical: use a GPU;
# * **memory**: ResNet-50's training state, computed below; the activations of a batch of 224-pixel
#   images are not measured yet;
# * **accuracy to expect**: not measured yet.
#
# In real mode each training run writes a checkpoint to `runs/` after each epoch, and when its cell is
# run again it continues from the last finished epoch.

# %%
def multiply_adds(model, size):
    """Multiply-adds of one forward pass of a size x size image: each convolution and dense layer,
    counted on the meta device (shapes only, no numbers)."""
    total = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            total.append(output.numel() * module.in_channels // module.groups * module.kernel_size[0]
                         * module.kernel_size[1])
        elif isinstance(module, nn.Linear):
            total.append(module.in_features * module.out_features)

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model.to("meta").eval()(torch.zeros(1, 3, size, size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return sum(total)


with torch.device("meta"):
    resnet_for_cifar = resnet50(num_classes=10)
    resnet_for_imagenet = resnet50(num_classes=1000)
parameters = cnncourse.count_parameters(resnet_for_cifar)
print(f"ResNet-50 for 10 classes: {parameters:,} parameters")
print(f"ImageNet weights (1000 classes, float32): about "
      f"{4 * cnncourse.count_parameters(resnet_for_imagenet) / 1e6:.0f} MB to download")
for size in (32, 224):
    print(f"multiply-adds per image at {size} x {size}: {multiply_adds(resnet_for_cifar, size) / 1e9:.2f} G")
print(f"training state (float32 weights, gradients and two optimizer moments): {16 * parameters / 1e9:.2f} GB")
print("time on a GPU: not measured yet")

# %% [markdown]
# ## Two trained networks and their test images
#
# The course ships the weights of its small recorded runs (`results/<run>/model.pt`, checked
# against the SHA-256 in `metrics.json` when loaded). Two are used here: the LeNet of notebook 2
# trained with AdamW and one-cycle on CIFAR-10, and the ResNet-20 of notebook 4 trained on
# Fashion-MNIST. `fast_loaders` gives the test images normalised the way the runs were trained (in
# quick mode the 200 bundled ones), and `predict` keeps them with the predictions. Everything in the
# next sections runs on the CPU without training, so the numbers are the same on every machine.

# %%
lenet = reference.load_model("cifar10-lenet-improved", device="cpu")
_, cifar_test = fast_loaders("cifar10", batch_size=100, val_fraction=0, seed=0)
cifar = predict(lenet, cifar_test, keep_images=True)
CIFAR_CLASSES = dataset_info("cifar10").classes
print(f"LeNet on {len(cifar.labels):,} CIFAR-10 test images: {int((cifar.preds == cifar.labels).sum()):,} right, "
      f"{int((cifar.preds != cifar.labels).sum()):,} wrong; input {tuple(cifar.images.shape[1:])}")

resnet20 = reference.load_model("fmnist-resnet20", device="cpu")
_, fmnist_test = fast_loaders("fashion-mnist", batch_size=100, val_fraction=0, seed=0)
fmnist = predict(resnet20, fmnist_test, keep_images=True)
FMNIST_CLASSES = dataset_info("fashion-mnist").classes
print(f"ResNet-20 on {len(fmnist.labels):,} Fashion-MNIST test images: {int((fmnist.preds == fmnist.labels).sum()):,} "
      f"right, {int((fmnist.preds != fmnist.labels).sum()):,} wrong; input {tuple(fmnist.images.shape[1:])}")

# %% [markdown]
# ## Saliency: the gradient with respect to the pixels
#
# A network's score for class $c$ is its logit $S_c(x)$ (before the softmax). Near an image $x$,
# the score changes to first order as $S_c(x + \delta) \approx S_c(x) + \nabla_x S_c(x) \cdot \delta$:
# the gradient says how much each pixel value moves the score. Simonyan, Vedaldi and Zisserman (2013)
# draw its size as a **saliency map**, the largest over the colour channels $k$:
#
# $$M_{ij} = \max_k \left| \frac{\partial S_c}{\partial x_{kij}} \right| .$$
#
# One backward pass gives it for every pixel. Below, from scratch with `torch.autograd.grad`, then
# with `captum.attr.Saliency` (which returns the absolute gradient per channel; the maximum over the
# channels is taken after), for each image's predicted class.

# %%
def saliency(model, images, targets):
    """|d S_target / d pixel|, the largest over the channels: (N, H, W)."""
    x = images.clone().requires_grad_(True)
    score = model(x).gather(1, targets[:, None]).sum()    # each image's own target logit; images don't interact
    (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)


for name, model, shown in (("LeNet", lenet, cifar), ("ResNet-20", resnet20, fmnist)):
    ours = saliency(model, shown.images, shown.preds)
    theirs = Saliency(model).attribute(shown.images.clone().requires_grad_(True), target=shown.preds,
                                       abs=True).amax(dim=1)
    print(f"{name}: saliency maps {tuple(ours.shape)}, equal to captum's Saliency:",
          torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7))

# %% [markdown]
# ### Exercise 7.1: A saliency map
#
# Write `saliency_map(model, images, targets)` yourself: the absolute gradient of each image's
# target logit with respect to its pixels, the largest over the channels, shape $(N, H, W)$. The
# check uses small networks with BatchNorm, handed to you in eval mode.

# %%
import torch


def saliency_map(model, images, targets):
    """Saliency of each image for its target class: the absolute gradient of the target's logit
    with respect to the input pixels, the largest over the colour channels. model: in eval mode;
    images: (N, C, H, W); targets: (N,) class indices. Returns (N, H, W)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_saliency_map(saliency_map)

# %% [markdown]
# ## Grad-CAM: the gradient of a feature map
#
# Grad-CAM (Selvaraju et al., 2017) looks at a convolution layer instead of the pixels. Its output is
# $K$ feature maps $A^k$ of $h \times w$ positions. The weight of map $k$ for class $c$ is the global
# average of the score's gradient over that map, and the heat map is the weighted sum of the maps,
# of which only the positive part is kept:
#
# $$\alpha_k^c = \frac{1}{hw} \sum_{i,j} \frac{\partial S_c}{\partial A^k_{ij}}, \qquad
# L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big).$$
#
# $L^c$ has the layer's resolution ($h \times w$) and is enlarged to the image's size by bilinear
# interpolation to be drawn over it. A channel whose growth raises the score gets a positive weight;
# the ReLU keeps the positions where the weighted maps add up to evidence *for* class $c$.

# %% [markdown]
# The layer's output and the gradient arriving at it are not returned by `model(x)`, so we catch
# them with **hooks**: `layer.register_forward_hook(f)` calls `f(module, inputs, output)` on every
# forward pass, and `layer.register_full_backward_hook(g)` calls `g(module, grad_inputs,
# grad_outputs)` when the backward pass goes through the layer; `grad_outputs[0]` is
# $\partial S / \partial A$. Each returns a handle whose `remove()` takes the hook off again. For
# LeNet the layer is `bn2`, the second convolution's output after its BatchNorm (before the ReLU and
# the pooling): 16 maps of 10 x 10. For ResNet-20 it is `layer3`, its last stage: 64 maps of 7 x 7.
# Each is compared with captum's `LayerGradCam` (with `relu_attributions=True`; captum leaves the ReLU
# out by default), before and after the upsampling (captum's `LayerAttribution.interpolate`).

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


def upsample(maps, size):
    """(N, h, w) maps enlarged to size = (H, W) by bilinear interpolation."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


CAM_LAYERS = {"LeNet": (lenet, lenet.bn2, cifar), "ResNet-20": (resnet20, resnet20.layer3, fmnist)}
for name, (model, layer, shown) in CAM_LAYERS.items():
    ours = grad_cam(model, layer, shown.images, shown.preds)
    theirs = LayerGradCam(model, layer).attribute(shown.images, target=shown.preds, relu_attributions=True)
    size = tuple(shown.images.shape[-2:])
    print(f"{name}: Grad-CAM maps {tuple(ours.shape)}, equal to captum's LayerGradCam:",
          torch.allclose(ours, theirs[:, 0], rtol=1e-4, atol=1e-6))
    print(f"  upsampled to {size}: equal to LayerAttribution.interpolate:",
          torch.allclose(upsample(ours, size), LayerAttribution.interpolate(theirs, size, "bilinear")[:, 0],
                         rtol=1e-4, atol=1e-6))

# %% [markdown]
# **For ResNet-20, Grad-CAM is the older CAM.** After `layer3` ResNet-20 has only a global average
# pool and the dense layer `fc`: $S_c = \sum_k W_{ck} \frac{1}{hw} \sum_{i,j} A^k_{ij} + b_c$. So
# $\partial S_c / \partial A^k_{ij} = W_{ck} / (hw)$ at every position, $\alpha_k^c = W_{ck} / (hw)$,
# and Grad-CAM is the class activation map of Zhou et al. (2016), $\mathrm{ReLU}(\sum_k W_{ck} A^k)$,
# divided by $hw$: no gradient needed. LeNet has dense layers with ReLUs after its last convolution,
# so there the gradient differs from image to image and from position to position.

# %%
maps, _ = maps_and_gradients(resnet20, resnet20.layer3, fmnist.images, fmnist.preds)
cam = F.relu(torch.einsum("nk,nkhw->nhw", resnet20.fc.weight[fmnist.preds].detach(), maps)) / maps[0, 0].numel()
print(f"layer3: {maps.shape[1]} maps of {maps.shape[2]} x {maps.shape[3]};",
      "Grad-CAM equals ReLU(sum_k W[c, k] A_k) / (h w):",
      torch.allclose(grad_cam(resnet20, resnet20.layer3, fmnist.images, fmnist.preds), cam, rtol=1e-4, atol=1e-6))

# %% [markdown]
# ### Exercise 7.2: Grad-CAM's channel weights
#
# Write `gradcam_weights(gradients)`: from the gradients $\partial S_c / \partial A$ of shape
# $(N, K, h, w)$ that the backward hook catches, the weight $\alpha_k$ of every channel of every
# image, shape $(N, K)$.

# %%
def gradcam_weights(gradients):
    """Grad-CAM's weight of every channel: gradients (N, K, h, w) of the class score with respect
    to a layer's feature maps, averaged over the h x w positions. Returns (N, K)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_gradcam_weights(gradcam_weights)

# %% [markdown]
# ### Exercise 7.3: Grad-CAM's map and its ReLU
#
# Write `gradcam_map(activations, weights)`: the feature maps $(N, K, h, w)$ summed over the channels
# with the weights $(N, K)$, through a ReLU, shape $(N, h, w)$. The check includes an image whose
# weighted sum is negative everywhere.

# %%
import torch


def gradcam_map(activations, weights):
    """Grad-CAM's map: the feature maps activations (N, K, h, w) summed over the channels with
    weights (N, K), then passed through a ReLU. Returns (N, h, w)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_gradcam_map(gradcam_map)

# %% [markdown]
# **What the ReLU removes.** Without it the weighted sum is negative where the maps speak against the
# class: there the score would rise if those features were weaker, often because they belong to
# another class. Below, LeNet's sum before the ReLU for the first four test images (red: for the
# predicted class, blue: against it, each map scaled to its own largest absolute value), and what the
# ReLU keeps. Before the ReLU red and blue patches lie side by side, often on the object and the
# background alike; the ReLU leaves the red ones, a map of evidence *for* the class. A map drawn
# without it mixes the two, and a plot that scales it by its largest absolute value can show the
# strongest evidence *against* the class as the hottest spot. In the third image the black airplane
# itself is mostly blue and the white background around it red: what LeNet counts for "airplane" here
# is the light, even background more than the plane.

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
pictures = to_pictures(cifar.images[first], cifar_test)
fig, axes = plt.subplots(3, 4, figsize=(6.4, 5.5))
for j in range(4):
    limit = signed[j].abs().max().item()
    axes[0, j].imshow(pictures[j])
    axes[0, j].set_title(f"predicted: {CIFAR_CLASSES[cifar.preds[j]]}\n(true: {CIFAR_CLASSES[cifar.labels[j]]})",
                         fontsize=8)
    axes[1, j].imshow(signed[j], cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[2, j].imshow(F.relu(signed[j]), cmap="Reds", vmin=0, vmax=limit)
for row, text in enumerate(("image", "sum before the ReLU", "after the ReLU")):
    axes[row, 0].text(-0.08, 0.5, text, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center",
                      fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle(f"LeNet, layer bn2 (10 x 10): Grad-CAM with and without its ReLU\n"
             f"(the first 4 test images{' of the quick sample' if QUICK else ''})", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## What LeNet looks at on CIFAR-10
#
# To draw a heat map over its image, it is enlarged to the image's size and scaled to 0..1 - each map
# by its own minimum and maximum, so that the colours compare places within one image, not heat
# between images. (A map that is zero everywhere, where the ReLU left nothing, stays zero.)

# %% [markdown]
# ### Exercise 7.4: A heat map at the image's size
#
# Write `upsample_heatmap(cam, size)`: maps $(N, h, w)$ enlarged to `size` $= (H, W)$ by bilinear
# interpolation (`align_corners=False`, as captum does), then each scaled to 0..1 by its own minimum
# and maximum, a constant map becoming zeros. It is what the figures below draw.

# %%
import torch
import torch.nn.functional as F


def upsample_heatmap(cam, size):
    """Heat maps cam (N, h, w) brought to the image's size = (H, W) by bilinear interpolation
    (align_corners=False), then each map scaled to 0..1 by its own minimum and maximum
    ((map - min) / (max - min)); a map that is constant becomes all zeros. Returns (N, H, W)."""
    raise NotImplementedError

# %%
from cnncourse.exercises import nb07

nb07.check_upsample_heatmap(upsample_heatmap)

# %% [markdown]
# The figures use the course's own version of it, `scaled`, and draw each image three or four times:
# the image, its saliency map (white: the pixels with the largest gradient), and Grad-CAM in colour
# over a grey copy of the image (red: most evidence for the class). Titles give the prediction, in
# green when right; when wrong, in red, with the true class.

# %%
def scaled(maps):
    """Each map scaled to 0..1 by its own minimum and maximum; a constant map becomes zeros."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def heat_rows(model, layer, shown, index, classes_for_cam):
    """Saliency and Grad-CAM maps (0..1, image size) of the images `index` of `shown`; one Grad-CAM row per
    entry of classes_for_cam: "predicted" or "true"."""
    images, size = shown.images[index], tuple(shown.images.shape[-2:])
    rows = {"saliency, predicted class": scaled(saliency(model, images, shown.preds[index]))}
    for which in classes_for_cam:
        targets = shown.preds[index] if which == "predicted" else shown.labels[index]
        rows[f"Grad-CAM, {which} class"] = scaled(upsample(grad_cam(model, layer, images, targets), size))
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
lenet_right = first_right_per_class(cifar, len(CIFAR_CLASSES))
lenet_wrong = surest_mistakes(cifar, 10)
print("LeNet, right (first of each class):", lenet_right.tolist())
print("LeNet, wrong (surest first):", lenet_wrong.tolist())

# %% [markdown]
# LeNet's right answers, the first of each class among the test images:

# %%
show_heat_maps(cifar, lenet_right, heat_rows(lenet, lenet.bn2, cifar, lenet_right, ["predicted"]), cifar_test,
               CIFAR_CLASSES, f"LeNet (recorded weights), right answers ({sample_note}); Grad-CAM of bn2, 10 x 10")

# %% [markdown]
# What they show. Grad-CAM at `bn2` has 10 x 10 positions for 32 x 32 pixels, so each heat map is a
# few soft blobs, not an outline: at best it tells roughly *where* the class evidence sits. On some of
# these images the brightest (yellow) blob lies on the object - the bird's head, the dog's face, the truck's box,
# the ship's hull; on others it lies beside the object or on the background - for the airplane on the
# sky at the edges, for the frog partly on the green around it - and for the deer the map is nearly
# empty. The saliency maps show even less: speckle spread over the whole image with no visible shape
# of the object, only a darker frame (a pixel near the border falls into fewer of the first layer's
# 5 x 5 windows, which have no padding). A saliency map says which pixels would change the score
# most if they were changed a little, and for LeNet that is a little of everything.

# %% [markdown]
# LeNet's surest mistakes, with Grad-CAM for the class it chose and for the true class:

# %%
show_heat_maps(cifar, lenet_wrong, heat_rows(lenet, lenet.bn2, cifar, lenet_wrong, ["predicted", "true"]),
               cifar_test, CIFAR_CLASSES, f"LeNet (recorded weights), surest mistakes ({sample_note})")

# %% [markdown]
# For a wrong answer the two Grad-CAM rows differ, and some read plausibly: for the airplane over blue
# water called a ship, the evidence for "ship" lies along the water at the bottom and the evidence for
# "airplane" in the sky at the top; for the bird whose head fills the frame, called a dog, the map for
# "dog" is nearly empty and the one for "bird" lies on the head; for the bird in green leaves called a
# frog, the map for "frog" is spread over the leaves. Others are hard to read - blobs on parts of the
# object and of the background alike. Maps this coarse suggest where to look; they do not prove why
# the network erred.

# %% [markdown]
# ## What ResNet-20 looks at on Fashion-MNIST
#
# The same maps for ResNet-20: 28 x 28 grey images, Grad-CAM of its last stage `layer3` at 7 x 7,
# that is 4 x 4 pixels per position. It gets most test images right, so its mistakes are few.

# %%
resnet_right = first_right_per_class(fmnist, len(FMNIST_CLASSES))
resnet_wrong = surest_mistakes(fmnist, 10)
print("ResNet-20, right (first of each class):", resnet_right.tolist())
print("ResNet-20, wrong (surest first):", resnet_wrong.tolist())
fmnist_note = "quick sample of 200 test images" if QUICK else f"{len(fmnist.labels):,} test images"
show_heat_maps(fmnist, resnet_right, heat_rows(resnet20, resnet20.layer3, fmnist, resnet_right, ["predicted"]),
               fmnist_test, FMNIST_CLASSES,
               f"ResNet-20 (recorded weights), right answers ({fmnist_note}); Grad-CAM of layer3, 7 x 7")

# %% [markdown]
# For the class it chose, ResNet-20's Grad-CAM is one broad blob over the middle of the garment,
# much the same for every class: at 7 x 7 positions, each of which sees most of the image (its
# receptive field, notebook 5, is wider than 28 pixels), there is little room for detail. The saliency
# maps are sparser than LeNet's: their bright pixels fall mostly on the garment, as specks, without a
# clear outline.

# %%
show_heat_maps(fmnist, resnet_wrong, heat_rows(resnet20, resnet20.layer3, fmnist, resnet_wrong, ["predicted", "true"]),
               fmnist_test, FMNIST_CLASSES, f"ResNet-20 (recorded weights), surest mistakes ({fmnist_note})")

# %% [markdown]
# Its mistakes are between classes that share a shape: shirt, dress, pullover and coat; sandal, sneaker
# and ankle boot. For the class it chose the map is again the broad blob on the garment; for the true
# class it moves to a part or an edge. For the ankle boots taken for a sneaker or a sandal, the
# evidence for "ankle boot" sits behind and above the heel, where an ankle boot's shaft would rise. The
# reading "this boot was taken for a sneaker because its shaft is low" fits these pictures, but the
# maps alone cannot prove it; the next section tests what they claim.

# %% [markdown]
# ## Do the maps point at what matters?
#
# A heat map is a claim: "these pixels carry the evidence". It can be tested by hiding pixels and
# watching the score (the deletion test of Petsiuk et al., 2018, in one step). For every test image we
# hide a quarter of its pixels by setting them to 0, which after normalisation is the data set's mean
# colour, and measure the probability the network then gives its original prediction. Four quarters
# are hidden in turn: the one the image's own map rates highest; the one **another image's** map rates
# highest (a region of the same shape, but not chosen for this image); the one its own map rates
# lowest; and a random, scattered quarter. If a map knows where this image's evidence is, hiding its
# top quarter should hurt more than the other three.

# %%
def in_chunks(function, images, targets, size=500):
    """function(images, targets) on chunks of `size` images, concatenated (small memory in real mode)."""
    return torch.cat([function(images[i:i + size], targets[i:i + size]) for i in range(0, len(targets), size)])


def predicted_probability(model, images, targets):
    """The softmax probability of each image's target class."""
    with torch.no_grad():
        return in_chunks(lambda x, t: model(x).softmax(dim=1).gather(1, t[:, None])[:, 0], images, targets)


def probability_after_hiding(model, shown, ranking, fraction=0.25):
    """Mean probability of each image's predicted class after hiding the `fraction` of its pixels that
    `ranking` (N, H, W) rates highest: set to 0, the data set's mean colour after normalisation."""
    n, height, width = ranking.shape
    order = ranking.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :int(fraction * height * width)]
    keep = torch.ones(n, height * width).scatter_(1, order, 0.0).view(n, 1, height, width)
    return predicted_probability(model, shown.images * keep, shown.preds).mean().item()


HIDDEN = {"top": "its map's top quarter", "other": "another image's top quarter",
          "bottom": "its map's bottom quarter", "random": "a random quarter"}
hiding = {}
for name, (model, layer, shown) in CAM_LAYERS.items():
    size, n = tuple(shown.images.shape[-2:]), len(shown.preds)
    generator = torch.Generator().manual_seed(0)
    other = (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n   # never the image itself
    scattered = torch.rand(n, *size, generator=generator)
    maps = {"Grad-CAM": in_chunks(lambda x, t: upsample(grad_cam(model, layer, x, t), size), shown.images, shown.preds),
            "saliency": in_chunks(lambda x, t: saliency(model, x, t), shown.images, shown.preds)}
    hiding[name] = {"nothing": predicted_probability(model, shown.images, shown.preds).mean().item()}
    for method, heat in maps.items():
        rankings = {"top": heat, "other": heat[other], "bottom": -heat, "random": scattered}
        hiding[name][method] = {key: probability_after_hiding(model, shown, ranking)
                                for key, ranking in rankings.items()}

# %% tags=["nbval-ignore-output"]
print("mean probability of the predicted class, with nothing hidden and with a quarter of the pixels hidden")
print(f"{'':<20} {'nothing':>8} {'own top':>8} {'other top':>10} {'own bottom':>11} {'random':>7}")
for name, results in hiding.items():
    for method in ("Grad-CAM", "saliency"):
        row = results[method]
        print(f"{name + ', ' + method:<20} {results['nothing']:>8.3f} {row['top']:>8.3f} {row['other']:>10.3f} "
              f"{row['bottom']:>11.3f} {row['random']:>7.3f}")

# %%
for name, results in hiding.items():
    for method in ("Grad-CAM", "saliency"):
        row = results[method]
        print(f"{name}, {method}: hiding {HIDDEN['top']} lowers the score more than hiding")
        print("   ", ", ".join(f"{HIDDEN[key]}: {row['top'] < row[key]}" for key in ("bottom", "other", "random")))
        print("    its lead over another image's map is smaller than over its own bottom quarter:",
              row["other"] - row["top"] < row["bottom"] - row["top"])

# %% [markdown]
# What the test says, read from the checks above (the table gives the sizes). Hiding the quarter a map
# rates *lowest* hurts less than hiding the quarter it rates highest, for both maps and both networks:
# the maps do separate pixels that matter from pixels that matter little. Against another image's top
# quarter the picture is weaker: the image's own map does better for both saliency maps, by less
# than against its own bottom quarter; for LeNet's Grad-CAM the two lie within a hundredth of each
# other, a tie on 200 images; and for ResNet-20's Grad-CAM the other image's map even hurts more. On these centred images much of what the maps say is "the middle, where objects usually are",
# and little of it is specific to the image.

# %% [markdown]
# Two warnings about tests like this one. A random, scattered quarter hurts more than Grad-CAM's top
# quarter, probably because holes all over an image break its edges everywhere, a change no training
# image had (the course has not tested that explanation); so a
# fair deletion test compares masks of the same shape, as the "another image" column does. And a map
# that looks right is no evidence by itself: Adebayo et al. ("Sanity checks for saliency maps", 2018)
# found that some methods, guided backpropagation among them, give much the same maps for a network
# with random weights. Plain gradients and Grad-CAM, the two used here, passed their test; still, it
# is a test like the one above, not the look of a map, that speaks for a method. On small networks
# like these two, the maps are weak evidence of *why* an image got its label.

# %% [markdown]
# ## Transfer learning: ImageNet weights in the course's ResNet-50
#
# A network trained on ImageNet's 1.28 million images in 1000 classes has learned edges, textures and
# parts that help on other images too. **Transfer learning** starts a new task from those weights
# instead of random ones: replace the last dense layer (1000 classes) with a new one for the new
# classes, then train - either only the new layer (the rest frozen) or everything with a small
# learning rate (**fine-tuning**).
#
# The course's `resnet50` follows the paper, and names and shapes its layers as torchvision does
# (`conv1`, `bn1`, `layer1` ... `layer4`, `fc`), so torchvision's trained weights fit it unchanged.
# Checked on the meta device (shapes only, nothing allocated): the same tensor names in the same
# order, with the same shapes.

# %%
with torch.device("meta"):
    theirs = torchvision.models.resnet50().state_dict()
    ours = resnet50(num_classes=1000).state_dict()
print(f"torchvision's resnet50: {len(theirs)} tensors; cnncourse's resnet50: {len(ours)} tensors")
print("same names in the same order:", list(theirs) == list(ours))
print("same shapes:", all(theirs[key].shape == ours[key].shape for key in theirs))
print(f"parameters: {sum(v.numel() for k, v in ours.items() if 'running' not in k and 'batches' not in k):,}")

# %% [markdown]
# The weights come through torchvision's own download: `ResNet50_Weights.IMAGENET1K_V2` names the file
# (the second, improved training recipe of torchvision; `IMAGENET1K_V1` is the original one) and the
# ImageNet accuracy torchvision measured for it, and its `get_state_dict` downloads the file once into
# torch's cache and reads it from there afterwards. With `check_hash=True` the download is checked
# against the first digits of its SHA-256 written in the file name; a file already in the cache is
# read without that check.

# %%
weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
print("file:", weights.url)
print("cached as: $TORCH_HOME/hub/checkpoints/" + weights.url.rsplit("/", 1)[1])
print("ImageNet accuracy stated by torchvision:", weights.meta["_metrics"]["ImageNet-1K"])
preprocessing = weights.transforms()
print(f"its preprocessing: resize to {preprocessing.resize_size}, centre crop {preprocessing.crop_size}, "
      f"mean {preprocessing.mean}, std {preprocessing.std}")

# %% [markdown]
# The loading code, in one cell (`tests/test_nb07.py` runs this very cell, with a stand-in weights file
# in a cache folder of its own and the network blocked). `load_state_dict` is strict: a name or a shape
# that does not match raises an error instead of being skipped. The new `fc` is created after the
# weights are loaded, so it starts from random numbers like any new layer.

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
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model

# %% [markdown]
# Here it runs in real mode only: quick mode never touches the network. Without a network (or behind a
# firewall) the download fails, and the notebook says so and goes on with the from-scratch run alone.

# %%
pretrained = None
if QUICK:
    print("quick mode: the ImageNet weights are not downloaded (they need the network, about 100 MB);")
    print("the fine-tuning run below is skipped and its result is 'not measured yet'.")
else:
    try:
        cnncourse.seed_everything(0)
        pretrained = load_imagenet_resnet50(num_classes=10)
        print("ImageNet weights loaded into cnncourse's resnet50; new fc:", pretrained.fc)
    except (OSError, RuntimeError) as error:   # no network (URLError is an OSError), or a damaged download
        print(f"could not get the ImageNet weights ({type(error).__name__}: {error}).")
        print(f"Download {IMAGENET_WEIGHTS.url} by hand into $TORCH_HOME/hub/checkpoints/ and run this cell again;")
        print("the fine-tuning run below is skipped.")

# %% [markdown]
# Which parameters train decides how much of ImageNet's knowledge is kept. Fine-tuning trains all of
# them; a **frozen backbone** (every `requires_grad` off except the new head's) trains only the head, a
# linear classifier on 2048 fixed features - far fewer numbers to learn, and no gradients to compute
# through the backbone:

# %%
with torch.device("meta"):
    head_only = resnet50(num_classes=1000)
    for parameter in head_only.parameters():
        parameter.requires_grad = False
    head_only.fc = nn.Linear(head_only.fc.in_features, 10)
print(f"fine-tuning: {cnncourse.count_parameters(resnet_for_cifar, trainable_only=True):,} trainable parameters")
print(f"frozen backbone: {cnncourse.count_parameters(head_only, trainable_only=True):,} trainable parameters "
      f"(2048 x 10 weights + 10 biases)")

# %% [markdown]
# ### Exercise 7.5: A new head for fine-tuning, and a frozen backbone
#
# Write `prepare_for_fine_tuning(model, num_classes, freeze_backbone=False)` for any ResNet of the
# course: replace `model.fc` by a new `nn.Linear` from the same number of features to `num_classes`,
# and with `freeze_backbone` switch off `requires_grad` for every other parameter. The check uses small
# ResNets whose weights stand for pretrained ones, and looks at which parameters train and whether the
# backbone kept its weights.

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
# ## Fine-tuning against training from scratch
#
# The controlled experiment: the same ResNet-50, the same data, the same recipe, the same seed; only
# the starting weights differ - ImageNet's, or random. The recipe: CIFAR-10 with random crops and
# flips, enlarged to 224 x 224 pixels on the device inside the model (the data set stays 32 x 32 in
# memory), normalised with ImageNet's statistics (those the weights were trained with, from
# `weights.transforms()` above), SGD with Nesterov momentum and a one-cycle schedule, validation on a
# stratified tenth of the training images after every epoch, and the test set once at the end. The
# same learning rate for both is a compromise: fine-tuning usually wants a smaller one than training
# from scratch.
#
# In quick mode the from-scratch network trains for two passes over about 128 images at 32 x 32 (no
# enlarging), on one CPU thread: a quick sample that shows the code runs, nothing about accuracy.

# %%
IMAGE_SIZE = 32 if QUICK else 224
EPOCHS = 2 if QUICK else 5
BATCH_SIZE = 32 if QUICK else 64
SUBSET = 128 if QUICK else None
imagenet_recipe = dataclasses.replace(data_recipe("cifar10"), mean=preprocessing.mean, std=preprocessing.std)
train_loader, val_loader, test_loader = fast_loaders("cifar10", batch_size=BATCH_SIZE, augment=True,
                                                     recipe=imagenet_recipe, device=DEVICE, seed=0,
                                                     val_fraction=0.1, subset=SUBSET)
print(f"training: {train_loader.num_samples:,} images, validation: {val_loader.num_samples:,}, "
      f"test: {test_loader.num_samples:,}; seen by the network at {IMAGE_SIZE} x {IMAGE_SIZE}")
print("normalised with ImageNet's statistics:", train_loader.mean, train_loader.std)


def at_size(model, size):
    """The model behind a bilinear resize of every batch to size x size (nothing to do at 32)."""
    if size == 32:
        return model
    return nn.Sequential(nn.Upsample(size=(size, size), mode="bilinear", align_corners=False), model)


def train_resnet50(model, name):
    """The recipe of both runs; real mode keeps a resumable checkpoint in runs/."""
    checkpoint = None if QUICK else RUNS / f"cifar10-resnet50-{name}.pt"
    return fit(at_size(model, IMAGE_SIZE), train_loader, test_loader, epochs=EPOCHS, optimizer="sgd", lr=0.01,
               momentum=0.9, weight_decay=5e-4, schedule="onecycle", device=DEVICE, val_data=val_loader,
               checkpoint=checkpoint, resume=checkpoint is not None)

# %% [markdown]
# From scratch: random weights.

# %% tags=["nbval-ignore-output"]
cnncourse.seed_everything(0)
scratch_history = train_resnet50(resnet50(num_classes=10), "scratch")
print("validation accuracy after each epoch:", ", ".join(f"{100 * a:.1f} %" for a in scratch_history.val_acc))
print(f"test accuracy at the end: {100 * scratch_history.test_acc[-1]:.1f} %")

# %% [markdown]
# Fine-tuned: ImageNet's weights and a new head, when they could be loaded.

# %% tags=["nbval-ignore-output"]
fine_tuned_history = None
if pretrained is None:
    print("not run: no ImageNet weights here (quick mode, or the download failed above)")
else:
    cnncourse.seed_everything(0)
    fine_tuned_history = train_resnet50(pretrained, "imagenet")
    print("validation accuracy after each epoch:", ", ".join(f"{100 * a:.1f} %" for a in fine_tuned_history.val_acc))
    print(f"test accuracy at the end: {100 * fine_tuned_history.test_acc[-1]:.1f} %")

# %% [markdown]
# The result, run by run. The rows of a run this notebook did not make say "not measured yet": no real
# run of this comparison has been recorded for the course so far.

# %% tags=["nbval-ignore-output"]
def outcome(history):
    """A run's final test accuracy, or "not measured yet" for a run that was not made."""
    return "not measured yet" if history is None else f"{100 * history.test_acc[-1]:.1f} % test accuracy"


rows = {}
if QUICK:
    rows[f"from scratch, quick sample: {train_loader.num_samples} images, {EPOCHS} epochs at 32 px"] = \
        outcome(scratch_history) + " (quick sample)"
rows["from scratch, CIFAR-10 at 224 px, 5 epochs"] = outcome(None if QUICK else scratch_history)
rows["fine-tuned from ImageNet (IMAGENET1K_V2), the same recipe"] = outcome(fine_tuned_history)
for run, outcome in rows.items():
    print(f"{run:<68} {outcome}")

# %% [markdown]
# What to expect, and what to measure when you run it. We expect the pretrained network to start far
# ahead, since its 2048 features were learned on ImageNet (the study below is the evidence, not a run
# of ours); whether the gap stays after five epochs, and how large it is, is
# what the run measures. Kornblith, Shlens and Le (2019) compared many ImageNet networks fine-tuned on
# other data sets, CIFAR-10 among them, and found that fine-tuning beat training from scratch most
# where the new data set is small.

# %% [markdown]
# ## Summary
#
# * A saliency map is $\max_k |\partial S_c / \partial x_{kij}|$: one backward pass, fine (one value per
#   pixel) but noisy; it says which pixels would move the score most, not what the network "used".
# * Grad-CAM weighs a layer's maps by the global average of the score's gradient and keeps the positive
#   part: $L^c = \mathrm{ReLU}(\sum_k \alpha_k^c A^k)$. Its resolution is the layer's - 10 x 10 for
#   LeNet's `bn2`, 7 x 7 for ResNet-20's `layer3` - so its heat maps are coarse blobs, upsampled.
# * Forward and backward hooks catch a layer's output and its gradient without changing the model;
#   remove them afterwards. Our from-scratch versions equal captum's `Saliency` and `LayerGradCam`.
# * For a network that ends in global average pooling and one dense layer, Grad-CAM is CAM:
#   $\mathrm{ReLU}(\sum_k W_{ck} A^k) / (hw)$.
# * Test a map by hiding what it rates highest, against masks of the same shape: here the maps' lowest
#   quarter mattered least, but another image's map did about as well as the image's own - on small
#   centred images the maps say mostly "the middle". A map that looks plausible proves nothing; measure.
# * The course's ResNet-50 has torchvision's state_dict layout, so ImageNet weights load into it;
#   replace `fc` for the new classes, and train everything (fine-tuning) or only the head (frozen
#   backbone).
