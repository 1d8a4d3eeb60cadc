# %% [markdown]
# # 7. What the network looks at: saliency, Grad-CAM and transfer learning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/07_what_the_network_looks_at.ipynb)
#
# Lessons 2 to 6 measured accuracy. This one asks a trained network *which pixels* its answer depends
# on, and what its features are worth elsewhere:
#
# 1. **saliency**: the gradient of a class score with respect to the pixels;
# 2. **Grad-CAM** (Selvaraju et al., 2017): a layer's feature maps weighed by that gradient;
# 3. where a layer's map lies on the image;
# 4. the maps of a strong CIFAR-10 network (90 %) and of LeNet (68 %), and a test of what they are worth;
# 5. **transfer learning**, live: five new classes from 100 labelled images each.
#
# [The lab](labs/07_maps_experiments.ipynb) has the recorded transfer runs, the maps' captum cross-checks and
# audit for LeNet and lesson 4's ResNet-20, and the loading code for ImageNet's weights (not measured).
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
# **Scale.** The maps come from recorded networks; only the transfer experiment trains. At the **laptop
# scale** (the default) the maps cover CIFAR-10's 10,000 test images and the experiment trains on 25,000
# images: about 10 minutes on a 2-core CPU. The **sample scale** (`cnncourse.set_scale("sample")` at the
# top of the next cell, or `CNNCOURSE_QUICK=1`) uses the package's 2,000 training and 200 test images:
# seconds.

# %% tags=["nbval-ignore-output"]
from importlib.metadata import version

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam, Saliency

import cnncourse
from cnncourse import cifar_speedrun, reference
from cnncourse.data import cifar10_source, dataset_info
from cnncourse.maps import first_right_per_class, show_heat_maps, surest_mistakes, to_pictures
from cnncourse.speedrun import normalise
from cnncourse.train import cpu_has_native_bf16, predict

QUICK = cnncourse.quick_mode()   # the sample scale
CIFAR10 = cifar10_source()       # "cifar10", or where only that is at hand, a JPEG copy
DATA_NAME = "CIFAR-10's sample" if QUICK else "CIFAR-10" if CIFAR10 == "cifar10" else "CIFAR-10 (JPEG copy)"
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| captum", version("captum"))
print(cnncourse.describe_scale(), "| data:", DATA_NAME)
print(cnncourse.describe_device())

# %% [markdown]
# ## Two trained networks and their test images
#
# Lesson 9's speedrun network (`speedrun-cifar10/recipe-s0`: 91.0 % on test with lesson 9's six views;
# one view here) and lesson 2's LeNet (`cifar10-lenet-improved`), their weights checked against their
# recorded SHA-256. Each gets the test images normalised as in its training; `predict` keeps them with
# the logits.

# %% tags=["nbval-ignore-output"]
CIFAR = cifar_speedrun.cifar_tensors(CIFAR10)     # uint8 images and labels of both splits, decoded once
test_x, test_y = CIFAR["test"]
CIFAR_CLASSES = dataset_info("cifar10").classes
MEANS_STDS = {"speedrun": (cifar_speedrun.MEAN, cifar_speedrun.STD),
              "LeNet": (dataset_info("cifar10").mean, dataset_info("cifar10").std)}


def test_images(network):
    """The test images normalised as `network` was trained, in batches of 500 for predict."""
    x = normalise(test_x, *MEANS_STDS[network], "cpu", channels_last=False)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, test_y), batch_size=500)


air = reference.load_model("speedrun-cifar10/recipe-s0", device="cpu").eval()
airs = predict(air, test_images("speedrun"), keep_images=True)
lenet = reference.load_model("cifar10-lenet-improved", device="cpu")
cifar = predict(lenet, test_images("LeNet"), keep_images=True)
for name, shown in (("speedrun network", airs), ("LeNet", cifar)):
    right = int((shown.preds == shown.labels).sum())
    print(f"{name} on {DATA_NAME}: {len(shown.labels):,} test images, {right:,} right ({100 * right / len(shown.labels):.1f} %), "
          f"{len(shown.labels) - right:,} wrong")

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


for name, model, shown in (("speedrun network", air, airs), ("LeNet", lenet, cifar)):
    images, targets = shown.images[:500], shown.preds[:500]          # 500 test images suffice for a check
    theirs = Saliency(model).attribute(images.clone().requires_grad_(True), target=targets, abs=True)
    print(f"{name}: saliency maps (of at most 500 test images) equal to captum's:",
          torch.allclose(saliency(model, images, targets), theirs.amax(dim=1), rtol=1e-4, atol=1e-7))

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
# layers: the speedrun network's second block, `air[15]` (256 maps of 7 x 7; its last block's maps are
# 3 x 3, too coarse to show much), and LeNet's `bn2` (16 maps of 10 x 10).

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


CAM_LAYERS = {"speedrun network": (air, air[15], airs), "LeNet": (lenet, lenet.bn2, cifar)}
for name, (model, layer, shown) in CAM_LAYERS.items():
    ours = grad_cam(model, layer, shown.images[:500], shown.preds[:500])
    theirs = LayerGradCam(model, layer).attribute(shown.images[:500], target=shown.preds[:500], relu_attributions=True)
    print(f"{name}: Grad-CAM maps of {ours.shape[1]} x {ours.shape[2]} cells, equal to captum's LayerGradCam:",
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
# size (as captum's `LayerAttribution.interpolate` does) puts it on $3.2i + 1.1$ instead: 1.6 times too
# wide. The speedrun network's 2 x 2 first layer gives $s = 0.5$, and each 2 x 2 pooling adds half the
# current $J$ to $s$, then doubles $J$: after two blocks $J = 4$, $s = 2$. Below, the package's `map_geometry` gives the same;
# [the lab](labs/07_maps_experiments.ipynb) checks such geometry cell by cell with autograd.

# %%
from cnncourse.exercises.nb07 import map_geometry, place_heatmap, scaled

GEOMETRY = {"speedrun network": map_geometry([air[0], air[3], air[10]]),
            "LeNet": map_geometry([lenet.conv1, lenet.pool, lenet.conv2])}
print("(jump, start):", GEOMETRY)

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
# **What Grad-CAM's ReLU removes.** Below, the speedrun network's weighted sum before the ReLU for four
# test images, each cell a square centred where it looks (the last four rows and columns lie in none):
# yellow for the predicted class, blue against it. Both colours lie on object and background; the ReLU
# keeps the yellow. For the ship, the most extreme cell is blue, on the dark hull at the bottom left.
# Without the ReLU, a map drawn by its absolute value (as saliency is) would show the strongest
# evidence *against* the class, here the ship's blue cell, as its hottest spot.

# %%
def signed_cam(model, layer, images, targets):
    """Grad-CAM's weighted sum before the ReLU: (N, h, w)."""
    maps, grads = maps_and_gradients(model, layer, images, targets)
    return (grads.mean(dim=(2, 3))[:, :, None, None] * maps).sum(dim=1)


first = torch.stack([(airs.labels == c).nonzero()[0, 0] for c in (0, 2, 3, 8)])   # an airplane, bird, cat, ship
signed = signed_cam(air, air[15], airs.images[first], airs.preds[first])
signed = signed / signed.abs().amax(dim=(1, 2), keepdim=True)          # each map scaled to its largest |value|
grey = to_pictures(airs.images[first], *MEANS_STDS["speedrun"]).mean(dim=-1)
jump, start = GEOMETRY["speedrun network"]
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
                     + (f"\npredicted: {CIFAR_CLASSES[airs.preds[first[j]]]}" if row == 0 else ""), fontsize=8)
    axes[2, j].set_xlabel("x (pixels)", fontsize=8)
for row in range(3):
    axes[row, 0].set_ylabel("y (pixels)", fontsize=8)
bar = fig.colorbar(shown, ax=axes[1:, :], shrink=0.8, label="weighted sum / its largest |value|\n(< 0: against the class)")
title = fig.suptitle(f"Speedrun network, Grad-CAM of block 2 (7 x 7 cells) with and without its ReLU\n"
                     f"(the first test airplane, bird, cat and ship of {DATA_NAME})", fontsize=10)

# %% [markdown]
# ## What the speedrun network looks at
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


sample_note = f"{len(airs.labels):,} test images of {DATA_NAME}"
air_right, air_wrong = first_right_per_class(airs, 10), surest_mistakes(airs, 10)
show_heat_maps(airs, air_right, heat_rows(air, air[15], airs, air_right, ["predicted"], GEOMETRY["speedrun network"]),
               *MEANS_STDS["speedrun"], CIFAR_CLASSES, f"Speedrun network (recorded weights), right answers, the first of each class "
               f"({sample_note}); Grad-CAM of block 2, 7 x 7")

# %% [markdown]
# A strong network does not draw cleaner maps. Its saliency maps are still grainy, mostly a cloud in
# the middle of the image and darker towards the frame. Grad-CAM's brightest cells lie on the object for
# the automobile, cat, deer, dog (its front leg), horse (its head) and ship (the right end of its red
# hull), at its edge for the bird, and off it for the airplane (the bottom-left corner) and the frog (leaves at the left edge).
# Block 2's cells see 23 x 23 pixels, so a cell on the background also sees part of the object.

# %%
show_heat_maps(airs, air_wrong, heat_rows(air, air[15], airs, air_wrong, ["predicted", "true"],
                                          GEOMETRY["speedrun network"]),
               *MEANS_STDS["speedrun"], CIFAR_CLASSES, f"Speedrun network (recorded weights), surest mistakes ({sample_note})")

# %% [markdown]
# Most of its surest mistakes are between look-alikes: cars and trucks, a plane over the sea and a ship,
# a sailing boat, a bird in the sky. Predicted and true class light up different cells; for the parked
# cars called a truck, "automobile" sits on the red car and "truck" on the trees above. Other maps are
# blobs on object and background alike: a map suggests where to look, not why the network erred.

# %% [markdown]
# **LeNet, for contrast.** The same figure for lesson 2's LeNet and its `bn2` (10 x 10 cells):

# %%
lenet_right = first_right_per_class(cifar, 10)
show_heat_maps(cifar, lenet_right, heat_rows(lenet, lenet.bn2, cifar, lenet_right, ["predicted"], GEOMETRY["LeNet"]),
               *MEANS_STDS["LeNet"], CIFAR_CLASSES, f"LeNet (recorded weights), right answers, the first of each class ({sample_note}); "
               f"Grad-CAM of bn2, 10 x 10")

# %% [markdown]
# LeNet's saliency maps are speckle spread evenly over the image; its brightest Grad-CAM cells lie on
# the object for most images (the dog's face, the horse's neck) but beside it for others (the sky by the
# airplane). The maps alone do not say which network is better; the next test asks what they are worth.

# %% [markdown]
# ## Do the maps point at what matters?
#
# A heat map claims "these pixels carry the evidence". Hiding them tests it (Petsiuk et al.'s deletion
# test, 2018, in one step): set a quarter of the pixels to 0 (the mean colour after normalisation) and
# measure the probability of the original prediction. The quarters: the one the image's own map rates
# highest, the one **another image's** map rates highest, and the one its own map rates lowest. Each
# change against the own top quarter comes with its standard error (the per-image changes' spread over
# $\sqrt{N}$): a change under two standard errors cannot be told from none.

# %% tags=["nbval-ignore-output"]
def probability_after_hiding(model, shown, ranking, fraction=0.25):
    """Each image's probability of its predicted class after hiding (setting to 0) the `fraction` of its
    pixels that `ranking` (N, H, W) rates highest."""
    n, height, width = ranking.shape
    order = ranking.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :int(fraction * height * width)]
    keep = torch.ones(n, height * width).scatter_(1, order, 0.0).view(n, 1, height, width)
    with torch.no_grad():
        probabilities = torch.cat([model(x).softmax(dim=1) for x in (shown.images * keep).split(500)])
    return probabilities.gather(1, shown.preds[:, None])[:, 0]


def in_batches(function, shown, size=500):
    """function(images, targets) for the predicted classes, `size` images at a time (a backward pass
    through 10,000 images at once would keep about 20 GB of activations)."""
    return torch.cat([function(x, t) for x, t in zip(shown.images.split(size), shown.preds.split(size))])


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
print(f"{'':28} {'nothing':>8} {'own top':>8} {'another top':>22} {'own bottom':>22}")
for name, (model, layer, shown) in CAM_LAYERS.items():
    nothing = probability_after_hiding(model, shown, torch.zeros(shown.images[:, 0].shape), fraction=0).mean()
    size = tuple(shown.images.shape[-2:])
    cams = in_batches(lambda x, t: grad_cam(model, layer, x, t), shown)
    for method, heat in (("Grad-CAM", place_heatmap(cams, size, *GEOMETRY[name])),
                         ("saliency", in_batches(lambda x, t: saliency(model, x, t), shown))):
        top, other, bottom = hiding_test(model, shown, heat)
        print(f"{name + ', ' + method:<28} {nothing:>8.3f} {top:>8} {other:>22} {bottom:>22}")

# %% [markdown]
# Over all 10,000 test images, hiding a map's own top quarter hurts most on average, in all four rows.
# For the speedrun network it hurts more than another image's top quarter by 12 (saliency) to 18
# (Grad-CAM) standard errors: its maps say something about *this* image beyond "the middle". For LeNet
# the lead is smaller: about 8 standard errors for Grad-CAM, barely 2 for saliency. Method by method,
# the stronger network's maps are the more faithful, though they do not look cleaner. For the speedrun
# network, Grad-CAM's bottom quarter still hurts nearly as much as another image's top: its 7 x 7 cells
# rank pixels coarsely, and its ReLU leaves many pixels tied at zero, so that quarter is partly arbitrary.
# [The lab](labs/07_maps_experiments.ipynb) adds, for LeNet and ResNet-20, a random quarter and the
# interpolated drawing.

# %% [markdown]
# ## Transfer learning: five new classes from 100 images each
#
# **Transfer learning** starts a new task from a trained network's weights with a new last layer, then
# trains that layer alone (a **frozen backbone**) or everything (**fine-tuning**). Live: the speedrun
# network learns airplane, automobile, bird, cat and deer from their 25,000 training images; then dog,
# frog, horse, ship and truck from **100 labelled images each**, fine-tuned, with a frozen backbone, or
# from scratch (initialised as in lesson 9, the whitening layer from the 500 images). One recipe for all
# three (`transfer.FewShotRecipe`: 40 passes, SGD, cosine schedule, crops and flips; fixed before the
# runs); seeds 0-2 draw the images, the new layer and the order of training; each network is scored on the new classes' 5,000 test
# images (chance: 20 %).
#
# **Targets at the laptop scale**: the first network at least 85 % on its classes' test images in at most
# 5 minutes (where the CPU has native bf16; 15 without); fine-tuning at least 5 points ahead of training
# from scratch on the seeds' mean, the nine runs in at most 5 minutes (15). The sample scale asks less.

# %% tags=["nbval-ignore-output"]
from cnncourse import transfer

PRETRAIN = cnncourse.at_scale(sample=dict(pretrain_epochs=8, pretrain_changes=dict(batch_size=128, widths=(32, 64, 64)),
                                          per_class=10, recipe=transfer.FewShotRecipe(epochs=10)),
                              laptop=dict(pretrain_epochs=6))
print("first five:", [CIFAR_CLASSES[c] for c in transfer.FIRST_CLASSES],
      "| new five:", [CIFAR_CLASSES[c] for c in transfer.SECOND_CLASSES])
result = transfer.transfer_experiment(tensors=CIFAR, seeds=(0, 1, 2), progress=not QUICK, **PRETRAIN)
first = result["first_network"]
print(f"first network: {first['num_train_images']:,} images, {first['train_seconds']:.0f} s of training; "
      f"test accuracy on the first five classes {100 * first['test_accuracy']:.1f} % (six views, as in lesson 9)")
few_seconds = sum(sum(arm["seconds"]) for arm in result["arms"].values())
print(f"new five classes, {result['per_class']} images each, {result['num_test_images']:,} test images "
      f"({few_seconds:.0f} s for the {3 * len(result['seeds'])} runs):")
for arm, runs in result["arms"].items():
    print(f"  {arm:<16} " + "  ".join(f"seed {s}: {100 * a:5.1f} %" for s, a in zip(result["seeds"], runs["accuracy"]))
          + f"   mean {100 * sum(runs['accuracy']) / len(runs['accuracy']):5.1f} %")

# %%
FIRST_TARGET, LEAD = cnncourse.at_scale(sample=(0.50, 0.0), laptop=(0.85, 0.05))
LIMIT = cnncourse.at_scale(sample=300, laptop=300 if cpu_has_native_bf16() else 900, full=float("inf"))
mean = {arm: sum(runs["accuracy"]) / len(runs["accuracy"]) for arm, runs in result["arms"].items()}
print("target reached (the first network's accuracy and time):",
      first["test_accuracy"] >= FIRST_TARGET and first["train_seconds"] <= LIMIT)
print("target reached (fine-tuning's lead over training from scratch, and time):",
      mean["fine-tuned"] - mean["from scratch"] >= LEAD and few_seconds <= LIMIT)

# %% [markdown]
# Fine-tuning wins in every seed, by 9 to 11 points over training from scratch: with only 500 labelled
# images, the first network's weights are worth ten points. The frozen backbone trains only the new
# layer's 1,280 numbers (256 features x 5 classes) and gains about one point: features learned for
# airplanes, cars, birds, cats and deer serve the new classes only in part as they are; letting them
# adjust is what pays. A rate tuned for training from scratch might narrow its gap.

# %% [markdown]
# ### The same with ImageNet's weights
#
# A network trained on ImageNet (1.28 million images) serves the same way: the course's `resnet50` names
# and shapes its layers as torchvision's does, so its weights load and only `fc` is new.
# [The lab](labs/07_maps_experiments.ipynb) checks the layout and has the loading code and a recipe
# comparing ImageNet's weights with random ones on CIFAR-10 (a GPU job, not measured yet).

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
# ## Experiment: does SmoothGrad point better than the plain gradient?
#
# Put your `smoothgrad` of Exercise 7.1 through the hiding test, for LeNet at the sample scale (seconds a
# run on a laptop CPU):
#
# 1. `noise = 0.5 * torch.randn(16, *cifar.images.shape, generator=torch.Generator().manual_seed(seed))`,
#    for `seed` 0 and 1;
# 2. `hiding_test(lenet, cifar, smoothgrad(lenet, cifar.images, cifar.preds, noise))`, beside
#    `hiding_test(lenet, cifar, saliency(lenet, cifar.images, cifar.preds))`.
#
# Does SmoothGrad's top quarter hurt more than plain saliency's, its bottom quarter less? Does its lead
# over another image's map pass two standard errors? Do the two seeds differ by more than the standard
# errors? Then try noise 0.1 and 1.0.

# %% [markdown]
# ## Summary
#
# * A saliency map is the size of the score's gradient per pixel; SmoothGrad averages it over noisy
#   copies, integrated gradients add it up from a baseline.
# * Grad-CAM weighs a layer's maps by their average gradient, caught by hooks, and keeps the positive
#   part; after average pooling and one dense layer it is CAM.
# * Cell $i$ of a layer lies on input pixel $J i + s$; interpolating its map misplaces it.
# * Hiding pixels tests a map: the strong network's maps beat another image's by 12-18 standard errors,
#   LeNet's by less, though neither network's maps outline the objects.
# * Transfer learning: from 100 images a class, fine-tuning beat training from scratch by about ten
#   points; a frozen backbone gained about one.
