# %% [markdown]
# # Lab 7: the maps' audits, captum cross-checks and the transfer-learning runs
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/labs/07_maps_experiments.ipynb)
#
# The evidence behind [lesson 7](../07_what_the_network_looks_at.ipynb) (what the network looks at):
# the maps of lesson 2's LeNet and lesson 4's ResNet-20 compared with captum's in full, where
# interpolating a layer's map to the image's size puts its cells (checked cell by cell with autograd),
# the hiding test with all its columns and standard errors, and the cost and
# recipe of the transfer-learning comparisons: the lesson's five-class experiment as recorded, and
# ImageNet's weights in ResNet-50. The maps are computed from the weights the course recorded in
# `results/`, in seconds on a CPU (the sample's 200 test images, or the first 1,000 of each test set at
# the laptop scale); the two ResNet-50 runs train only at the full scale, on a GPU, and have not been
# recorded yet.

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
    os.chdir("/content/cnncourse/notebooks/labs")
    import cnncourse.colab
    cnncourse.colab.setup(use_drive=USE_DRIVE)

# %% tags=["nbval-ignore-output"]
import dataclasses
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerAttribution, LayerGradCam, Saliency
from torch import nn

import cnncourse
from cnncourse import reference
from cnncourse.data import cifar10_source, data_recipe
from cnncourse.exercises.nb07 import map_geometry, place_heatmap
from cnncourse.fastdata import fast_loaders
from cnncourse.models import resnet50
from cnncourse.train import fit, predict

QUICK = cnncourse.quick_mode()
FULL = cnncourse.scale() == "full"       # only the full scale downloads ImageNet's weights and trains
LIMIT = None if QUICK else 1000          # test images for the maps: a backward pass through 10,000 needs ~20 GB
CIFAR10 = cifar10_source()               # "cifar10", or where only that is at hand, a JPEG copy
DEVICE = cnncourse.get_device()
RUNS = Path("../../runs")        # the repository's runs/ folder: checkpoints of the real runs
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| captum", version("captum"),
      "|", cnncourse.describe_scale())
print(cnncourse.describe_device())

# %% [markdown]
# ## The two networks and the lesson's maps
#
# Lesson 2's LeNet (CIFAR-10) and lesson 4's ResNet-20 (Fashion-MNIST), recorded, and the lesson's
# functions, repeated here so that the lab runs on its own: the saliency map, Grad-CAM through hooks,
# and each layer's geometry (jump and start) from `map_geometry`.

# %%
lenet = reference.load_model("cifar10-lenet-improved", device="cpu")
_, cifar_test = fast_loaders(CIFAR10, batch_size=100, val_fraction=0, seed=0)
cifar = predict(lenet, cifar_test, keep_images=True, limit=LIMIT)
resnet20 = reference.load_model("fmnist-resnet20", device="cpu")
_, fmnist_test = fast_loaders("fashion-mnist", batch_size=100, val_fraction=0, seed=0)
fmnist = predict(resnet20, fmnist_test, keep_images=True, limit=LIMIT)


def saliency(model, images, targets):
    """|d S_target / d pixel|, the largest over the channels: (N, H, W)."""
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grad.abs().amax(dim=1)


def grad_cam(model, layer, images, targets):
    """Grad-CAM of `layer` for each image's target class, at the layer's resolution: (N, h, w)."""
    caught = {}
    forward = layer.register_forward_hook(lambda module, inputs, output: caught.update(maps=output.detach()))
    backward = layer.register_full_backward_hook(
        lambda module, grad_inputs, grad_outputs: caught.update(grads=grad_outputs[0].detach()))
    try:
        model(images).gather(1, targets[:, None]).sum().backward()
    finally:
        forward.remove()
        backward.remove()
        model.zero_grad(set_to_none=True)
    return F.relu((caught["grads"].mean(dim=(2, 3))[:, :, None, None] * caught["maps"]).sum(dim=1))


NETWORKS = {"LeNet": (lenet, lenet.bn2, cifar, map_geometry([lenet.conv1, lenet.pool, lenet.conv2])),
            "ResNet-20": (resnet20, resnet20.layer3, fmnist,
                          map_geometry([resnet20.conv1, resnet20.layer2[0].conv1, resnet20.layer3[0].conv1]))}
for name, (model, layer, shown, geometry) in NETWORKS.items():
    right = int((shown.preds == shown.labels).sum())
    print(f"{name}: {len(shown.preds):,} test images ({right:,} right); input {tuple(shown.images.shape[1:])}; "
          f"(jump, start) of its Grad-CAM layer: {geometry}")

# %% [markdown]
# ## Cross-checks with captum
#
# The lesson checks its saliency map against `captum.attr.Saliency` and its Grad-CAM against
# `LayerGradCam` in one line each. In full: every image the lab reads, both networks, and captum's
# own way of bringing a Grad-CAM map to the image's size, `LayerAttribution.interpolate`, which is
# bilinear interpolation with `align_corners=False` (the lesson's first version drew its maps so).

# %%
for name, (model, layer, shown, geometry) in NETWORKS.items():
    size = tuple(shown.images.shape[-2:])
    ours = saliency(model, shown.images, shown.preds)
    theirs = Saliency(model).attribute(shown.images.clone().requires_grad_(True), target=shown.preds, abs=True)
    print(f"{name}: saliency {tuple(ours.shape)} equal to captum's Saliency (maximum over the channels):",
          torch.allclose(ours, theirs.amax(dim=1), rtol=1e-4, atol=1e-7))
    ours = grad_cam(model, layer, shown.images, shown.preds)
    theirs = LayerGradCam(model, layer).attribute(shown.images, target=shown.preds, relu_attributions=True)
    print(f"{name}: Grad-CAM {tuple(ours.shape)} equal to captum's LayerGradCam (relu_attributions=True):",
          torch.allclose(ours, theirs[:, 0], rtol=1e-4, atol=1e-6))
    interpolated = F.interpolate(ours[:, None], size=size, mode="bilinear", align_corners=False)
    print(f"{name}: LayerAttribution.interpolate equals bilinear interpolation to {size} (align_corners=False):",
          torch.allclose(LayerAttribution.interpolate(theirs, size, "bilinear"), interpolated, rtol=1e-4, atol=1e-6))

# %% [markdown]
# ## Where interpolation puts a layer's cells
#
# For each cell $i$ of LeNet's `bn2`: the input rows it depends on, found by autograd on one test image
# (its receptive field), their centre, the lesson's $J i + s$, and where a map whose only non-zero
# value is cell $i$ peaks once interpolated to 32 x 32 (captum's way) and once placed by
# `place_heatmap`. A peak spread over two rows is given as their middle.

# %%
def peak_row(maps):
    """The middle of the rows where a one-hot map, brought to the image's size, is largest."""
    rows = (maps == maps.max()).nonzero()[:, 0]
    return (rows.min() + rows.max()).item() / 2


for name, (model, layer, shown, (jump, start)) in NETWORKS.items():
    size = tuple(shown.images.shape[-2:])
    caught = {}
    hook = layer.register_forward_hook(lambda module, inputs, output: caught.update(out=output))
    image = shown.images[:1].clone().requires_grad_(True)
    model(image)
    hook.remove()
    cells = caught["out"].shape[-1]
    print(f"{name}: cell  receptive rows  centre  J i + s  interpolated peak  placed peak")
    for i in range(cells):
        (grad,) = torch.autograd.grad(caught["out"][0, :, i, i].sum(), image, retain_graph=True)
        rows = grad[0].abs().sum(dim=(0, 2)).nonzero()[:, 0]
        one_hot = torch.zeros(1, 1, cells, cells)
        one_hot[0, 0, i, i] = 1.0
        interpolated = F.interpolate(one_hot, size=size, mode="bilinear", align_corners=False)[0, 0]
        placed = place_heatmap(one_hot[:, 0], size, jump, start)[0]
        print(f"{'':>10}{i:>5}  {rows.min().item():>5} to {rows.max().item():<4} {(rows.min() + rows.max()).item() / 2:>7}"
              f"  {jump * i + start:>7}  {peak_row(interpolated):>17}  {peak_row(placed):>11}")

# %% [markdown]
# For LeNet every cell's receptive field is 14 rows wide and centred on $2i + 6.5$; the placed peak sits
# there (for the first and last cell the edge value also fills the border beyond, so the printed middle
# moves outwards), while the interpolated peak runs from 0.5 to 30.5: the map is drawn 1.6 times too
# wide. ResNet-20's cells see more than the whole 28-pixel image, so their rows reach both borders and
# their printed centre says nothing; its padded convolutions keep the centres on $4i$ (which a 96-pixel
# image confirms in `tests/test_nb07.py`), and interpolation draws every cell 1.5 pixels further down
# and to the right, at $4i + 1.5$ (the printed peaks of the first and last cell again move outwards,
# where the edge value fills the border).

# %% [markdown]
# ## The hiding test in full
#
# The lesson hides three quarters of each image in turn: its own map's top quarter, another image's
# top quarter and its own bottom quarter. Here two more columns: a **random**, scattered quarter, and,
# for Grad-CAM, the map **interpolated** to the image's size (the old drawing) beside the map placed by
# the layer's geometry. Each entry is the mean probability of the predicted class after hiding; each
# difference is paired image by image, with its standard error (the standard deviation of the N
# per-image differences over $\sqrt{N}$).

# %%
def probability_after_hiding(model, shown, ranking, fraction=0.25):
    """Each image's probability of its predicted class after hiding (setting to 0, the mean colour after
    normalisation) the `fraction` of its pixels that `ranking` (N, H, W) rates highest."""
    n, height, width = ranking.shape
    order = ranking.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :int(fraction * height * width)]
    keep = torch.ones(n, height * width).scatter_(1, order, 0.0).view(n, 1, height, width)
    with torch.no_grad():
        return model(shown.images * keep).softmax(dim=1).gather(1, shown.preds[:, None])[:, 0]


def difference(after, before):
    """Mean of the paired differences and its standard error."""
    change = after - before
    return change.mean().item(), change.std().item() / len(change) ** 0.5


hiding = {}
for name, (model, layer, shown, geometry) in NETWORKS.items():
    size, n = tuple(shown.images.shape[-2:]), len(shown.preds)
    generator = torch.Generator().manual_seed(0)
    other = (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n   # never the image itself
    scattered = torch.rand(n, *size, generator=generator)
    cam = grad_cam(model, layer, shown.images, shown.preds)
    maps = {"Grad-CAM placed": place_heatmap(cam, size, *geometry),
            "Grad-CAM interpolated": F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0],
            "saliency": saliency(model, shown.images, shown.preds)}
    nothing = probability_after_hiding(model, shown, scattered, fraction=0)
    for method, heat in maps.items():
        rankings = {"own top": heat, "other top": heat[other], "own bottom": -heat, "random": scattered}
        hiding[name, method] = {"nothing": nothing} | {key: probability_after_hiding(model, shown, ranking)
                                                       for key, ranking in rankings.items()}

# %% tags=["nbval-ignore-output"]
print("mean probability of the predicted class after hiding a quarter of the pixels"
      f" ({'the sample' if QUICK else 'the first'} {len(cifar.preds):,} test images of each data set)")
columns = ("nothing", "own top", "other top", "own bottom", "random")
print(f"{'':32}" + "".join(f"{column:>11}" for column in columns))
for (name, method), row in hiding.items():
    print(f"{name + ', ' + method:<32}" + "".join(f"{row[column].mean():>11.3f}" for column in columns))
print("\nchange against hiding the own top quarter (mean ± standard error)")
for (name, method), row in hiding.items():
    print(f"{name + ', ' + method:<32}" + "".join(
        f"  {column}: {'%+.3f ± %.3f' % difference(row[column], row['own top'])}" for column in columns[2:]))
for name in NETWORKS:
    placed, interpolated = hiding[name, "Grad-CAM placed"], hiding[name, "Grad-CAM interpolated"]
    print(f"{name}, own top quarter, placed against interpolated: "
          f"{'%+.3f ± %.3f' % difference(placed['own top'], interpolated['own top'])}")

# %% [markdown]
# The same, as the questions the lesson asks: does hiding the own top quarter lower the probability
# more than each other quarter, by more than two standard errors (the smallest gap worth a word on a
# sample of this size)?

# %%
for (name, method), row in hiding.items():
    verdicts = []
    for column in ("other top", "own bottom", "random"):
        mean, error = difference(row[column], row["own top"])
        verdicts.append(f"{column}: {'yes' if mean > 2 * error else 'no'}")
    print(f"{name + ', ' + method:<32} " + ", ".join(verdicts))

# %% [markdown]
# What the audit says, read from the lines above (the tables give the sizes). Hiding the bottom
# quarter hurts less than hiding the top quarter for every map, by more than two standard errors: the
# maps do separate pixels that matter from pixels that matter little. None of them beats another
# image's top quarter by two standard errors, and for ResNet-20's Grad-CAM the other image's quarter
# hurts a little more: much of what the maps say is "the middle, where objects usually are". A gap of
# a hundredth or two between two columns, on 200 images, is inside the noise and no win for either
# map: LeNet's interpolated Grad-CAM, for one, leads another image's map by +0.008 ± 0.023. Placing
# Grad-CAM by the layer's geometry instead of interpolating makes its top quarter hurt a little more,
# for both networks, again by less than two standard errors: the correction changes where the maps
# are drawn far more than what this test can tell apart.
#
# Two warnings. A random, scattered quarter hurts more than Grad-CAM's top quarter (and, for ResNet-20,
# than saliency's), probably because
# holes all over an image break its edges everywhere, a change no training image had (the course has
# not tested that explanation); a fair deletion test compares masks of the same shape, as the "other
# top" column does. And a map that looks right is no evidence by itself: Adebayo et al. ("Sanity checks
# for saliency maps", 2018) found that some methods, guided backpropagation among them, draw much the
# same maps for a network with random weights as for the trained one. Plain gradients and Grad-CAM, the
# two used here, passed their randomisation test; passing it is necessary, not proof that a map
# explains a decision, which is why the maps are measured here.

# %% [markdown]
# ## The lesson's transfer experiment, recorded
#
# The lesson trains its five-to-five experiment live. The same settings, run by
# `python -m cnncourse.transfer` on a quiet machine, are recorded in
# `results/transfer-cifar10/laptop/metrics.json`: the first network (the speedrun network on the 25,000
# training images of airplane, automobile, bird, cat and deer), then for each seed 100 training images
# of each of dog, frog, horse, ship and truck and the three ways of learning them, each scored on the
# 5,000 test images of those classes.

# %%
from cnncourse import transfer

print(transfer.recorded_table())

# %% [markdown]
# The recorded runs match the lesson's stored live run to the digit (the same seeds, recipe and CPU). Fine-tuning
# leads training from scratch in each seed (by 9 to 11 points); the frozen backbone ends within three
# points of training from scratch, ahead in two seeds and level in one, and its runs are the cheapest,
# since no gradient flows through the backbone. The spread over seeds (a standard deviation of 0.4 to
# 1.8 points) is far below the fine-tuning lead. What the runs do not test: a recipe tuned for each arm (the rate, the epochs; chosen
# on held-out images of the new classes), more or fewer labelled images per class, and a first network
# trained longer. The recipe was fixed before the runs and not changed after.

# %% [markdown]
# ## What a real ImageNet transfer run costs
#
# The lesson's second comparison trains the same ResNet-50 on CIFAR-10 twice, from ImageNet's weights
# and from random ones (below). At the full scale it needs:
#
# * **downloads**: CIFAR-10 (`cifar-10-python.tar.gz`, about 170 MB) once into the course's data folder,
#   and torchvision's ImageNet weights of ResNet-50 once into torch's cache
#   (`$TORCH_HOME/hub/checkpoints`, by default `~/.cache/torch/hub/checkpoints`), their size computed below;
# * **time on a GPU**: not measured yet. Both runs see CIFAR-10 enlarged to the 224 x 224 pixels the
#   ImageNet weights were trained at, which multiplies the work per image (multiply-adds below). On a
#   CPU that is impractical: use a GPU;
# * **memory**: ResNet-50's training state, computed below; the activations of a batch of 224-pixel
#   images are not measured yet;
# * **accuracy to expect**: not measured yet.

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
# ## Fine-tuned against trained from scratch
#
# The controlled experiment: the same ResNet-50, the same data, recipe and seed; only the starting
# weights differ, ImageNet's or random. The recipe: CIFAR-10 with random crops and flips, enlarged to
# 224 x 224 on the device inside the model (the data set stays 32 x 32 in memory), normalised with
# ImageNet's statistics (those the weights were trained with, from `weights.transforms()`), SGD with
# Nesterov momentum and a one-cycle schedule for 5 epochs, validation on a stratified tenth of the
# training images after every epoch, and the test set once at the end. The same learning rate for both
# is a compromise: fine-tuning usually wants a smaller one than training from scratch. Each run keeps a
# checkpoint in the repository's `runs/` after every epoch and continues from it when run again.
#
# `ResNet50_Weights.IMAGENET1K_V2` is the second, improved training recipe of torchvision
# (`IMAGENET1K_V1` is the original one); it names the file, the ImageNet accuracy torchvision measured
# and the preprocessing.

# %%
IMAGENET_WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
print("file:", IMAGENET_WEIGHTS.url)
print("cached as: $TORCH_HOME/hub/checkpoints/" + IMAGENET_WEIGHTS.url.rsplit("/", 1)[1])
print("ImageNet accuracy stated by torchvision:", IMAGENET_WEIGHTS.meta["_metrics"]["ImageNet-1K"])
preprocessing = IMAGENET_WEIGHTS.transforms()
print(f"its preprocessing: resize to {preprocessing.resize_size}, centre crop {preprocessing.crop_size}, "
      f"mean {preprocessing.mean}, std {preprocessing.std}")

# %% [markdown]
# The course's `resnet50` names and shapes its layers as torchvision's does, so torchvision's weights fit
# it; checked on the meta device (shapes only, nothing downloaded), with the numbers a frozen backbone
# trains:

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
# The loading code. `get_state_dict` downloads the weights (about 100 MB) once into torch's cache,
# checked against the hash in the file's name; `load_state_dict` is strict, so a name or shape that does
# not match raises an error. The new `fc` starts random.

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
# Called at the full scale only: no other scale touches the network. Without a network (or behind a
# firewall) the download fails, and the lab says so and goes on with the from-scratch run alone.

# %%
pretrained = None
if not FULL:
    print(f"scale {cnncourse.scale()}: the ImageNet weights are not downloaded and the runs below are not made "
          "(they run at the full scale: cnncourse.set_scale('full'), a GPU advised).")
else:
    try:
        cnncourse.seed_everything(0)
        pretrained = load_imagenet_resnet50(num_classes=10)
        print("ImageNet weights loaded into cnncourse's resnet50; new fc:", pretrained.fc)
    except (OSError, RuntimeError) as error:   # no network (URLError is an OSError), or a damaged download
        print(f"could not get the ImageNet weights ({type(error).__name__}: {error}).")
        print(f"Download {IMAGENET_WEIGHTS.url} by hand into $TORCH_HOME/hub/checkpoints/ and run this cell again.")

# %% [markdown]
# The data and the training function of both runs. Below the full scale nothing trains: eight training
# images go through an untrained ResNet-50, kept at 32 x 32 pixels (224 would be
# slow on a CPU), to check the data path.

# %%
IMAGE_SIZE, EPOCHS, BATCH_SIZE = 224, 5, 64
imagenet_recipe = dataclasses.replace(data_recipe("cifar10"), mean=preprocessing.mean, std=preprocessing.std)
train_loader, val_loader, test_loader = fast_loaders(CIFAR10, batch_size=BATCH_SIZE, augment=True,
                                                     recipe=imagenet_recipe, device=DEVICE, seed=0, val_fraction=0.1)
print(f"training: {train_loader.num_samples:,} images, validation: {val_loader.num_samples:,}, "
      f"test: {test_loader.num_samples:,}; normalised with ImageNet's statistics {train_loader.mean}, {train_loader.std}")


def at_size(model, size):
    """The model behind a bilinear resize of every batch to size x size."""
    return nn.Sequential(nn.Upsample(size=(size, size), mode="bilinear", align_corners=False), model)


def train_resnet50(model, name):
    """The recipe of both runs, with a resumable checkpoint in runs/."""
    checkpoint = RUNS / f"cifar10-resnet50-{name}.pt"
    return fit(at_size(model, IMAGE_SIZE), train_loader, test_loader, epochs=EPOCHS, optimizer="sgd", lr=0.01,
               momentum=0.9, weight_decay=5e-4, schedule="onecycle", device=DEVICE, val_data=val_loader,
               checkpoint=checkpoint, resume=True)


if not FULL:
    images = next(iter(train_loader))[0][:8].cpu()
    with torch.no_grad():
        logits = at_size(resnet50(num_classes=10), 32).eval()(images)
    print(f"data path: {tuple(images.shape)} training images, through the model's resize layer (here to "
          f"32 x 32, not {IMAGE_SIZE}), give logits {tuple(logits.shape)}")

# %% tags=["nbval-ignore-output"]
histories = {"from scratch": None, "fine-tuned from ImageNet (IMAGENET1K_V2)": None}
if FULL:
    cnncourse.seed_everything(0)
    histories["from scratch"] = train_resnet50(resnet50(num_classes=10), "scratch")
    if pretrained is not None:
        cnncourse.seed_everything(0)
        histories["fine-tuned from ImageNet (IMAGENET1K_V2)"] = train_resnet50(pretrained, "imagenet")
for run, history in histories.items():
    result = ("not measured yet" if history is None else
              f"validation {', '.join(f'{100 * a:.1f} %' for a in history.val_acc)}; test {100 * history.test_acc[-1]:.1f} %")
    print(f"{run + ', CIFAR-10 at 224 px, 5 epochs:':<70} {result}")

# %% [markdown]
# What to expect, and what to measure when you run it. The pretrained network should start far ahead,
# since its 2048 features were learned on ImageNet (Kornblith, Shlens and Le, 2019, fine-tuned many
# ImageNet networks on other data sets, CIFAR-10 among them, and found the gain largest where the new
# data set is small); whether the gap stays after five epochs, and how large it is, is what the runs
# measure. No real run of this comparison has been recorded for the course so far.
