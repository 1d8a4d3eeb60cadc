# %% [markdown]
# # Lab 4: ResNet-50 on Fashion-MNIST - the controlled runs, the article's details and the costs
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/labs/04_resnet50_experiments.ipynb)
#
# The evidence behind [lesson 4](../04_resnet50_fashion_mnist.ipynb), for reading after class. Every
# measured figure here is read from the recorded runs in `results/`; nothing is trained. In order:
#
# 1. what the recorded runs cost, in minutes and memory;
# 2. the article's training settings, stated and inferred;
# 3. the 2 x 2 of recorded runs that separates the network's share from the recipe's;
# 4. why two recordings of the article's set-up end a point and a half apart;
# 5. an audit of the rebuild: the layer summary, and the defaults in which Keras and PyTorch differ;
# 6. the reference results: the full-data runs against the article's figure, three seeds by the
#    course's rule, and one change to the recipe (random erasing) judged on validation.

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
import copy
import math
import statistics

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import cnncourse
import cnncourse.models.article
from cnncourse import reference
from cnncourse.data import dataset_info
from cnncourse.data.recipes import data_recipe
from cnncourse.models import resnet20, resnet50_keras_article

print("torch", torch.__version__, "| quick mode:", cnncourse.quick_mode())
print(cnncourse.describe_device())

# %% [markdown]
# ## What the recorded runs cost
#
# With quick mode off, the lesson trains one network: ResNet-20 with the course's recipe, 15 epochs on
# the 54,000 training images left after the hold-out, in float32 on a CPU (the package turns on
# bfloat16 autocast only on a GPU). The recorded runs below ran on 2-core CPUs, mostly two one-thread
# runs side by side, so their epochs took unequal times; the minutes per epoch are scaled to 54,000
# images. Time on a GPU: not measured yet.

# %%
REAL_EPOCHS, REAL_IMAGES = 15, 54_000   # the lesson's run with quick mode off
RECORDED = {"fmnist-2x2/resnet20-course-s0": "ResNet-20, the course's recipe, float32 (the 2 x 2)",
            "fmnist-resnet20": "ResNet-20, the course's recipe, bfloat16 autocast",
            "fmnist-2x2/resnet50-article-s0": "the article's network and recipe, float32 (the 2 x 2)",
            "fmnist-article-resnet50": "the article's network and recipe, float32"}
per_epoch = {}
for name, what in RECORDED.items():
    run = reference.load_result(name)
    minutes = reference.wall_minutes(run)
    per_epoch[name] = minutes / run["epochs"] * REAL_IMAGES / run["num_train_images"]
    print(f"{what}: {run['epochs']} epochs on {run['num_train_images']:,} images in {minutes:.0f} min on "
          f"{reference.hardware(run)}: {per_epoch[name]:.1f} min per epoch of {REAL_IMAGES:,}")
print(f"\nthe lesson's real run, {REAL_EPOCHS} epochs: about {REAL_EPOCHS * per_epoch['fmnist-2x2/resnet20-course-s0']:.0f} min "
      "on one CPU thread (from the first line)")
print("on a GPU:", reference.summary("fmnist-resnet50-gpu", missing="not measured yet"))

# %% [markdown]
# Memory, computed from the parameter counts: float32 weights take 4 bytes each, and training keeps
# the gradients and the optimizer's state beside them (SGD with momentum: one more copy; Adam: two).
# The activations of a batch are not measured yet.

# %%
fashion = dataset_info("fashion-mnist")
with torch.device("meta"):
    article_parameters = cnncourse.count_parameters(resnet50_keras_article(num_classes=10, in_channels=1))
    resnet20_parameters = cnncourse.count_parameters(resnet20(num_classes=10, in_channels=1))
print(f"Fashion-MNIST as uint8: {fashion.num_images * fashion.image_size ** 2 / 1e6:.0f} MB")
print(f"the article's network with Adam: training state (weights, gradients, two moments) "
      f"{16 * article_parameters / 1e6:.0f} MB, checkpoint (weights and moments) {12 * article_parameters / 1e6:.0f} MB")
print(f"ResNet-20 with SGD and momentum: training state {12 * resnet20_parameters / 1e6:.1f} MB, "
      f"checkpoint {8 * resnet20_parameters / 1e6:.1f} MB")

# %% [markdown]
# ## The article's training settings
#
# What the article states: it trained on all 60,000 images with batches of 128 (the paper: 256) and Adam
# (the paper: SGD with momentum 0.9), and reports test accuracies after 400 epochs. What it does not
# state, and we had to infer: the **learning rate** - it names none, so we take Keras's default for
# Adam, $10^{-3}$ - and **augmentation** - it describes none, so we use none. By the author's own
# account, 91.3 % was below the result of a simpler model trained earlier (the course has no record
# of which model, or of its figure).

# %%
article_settings = {
    "input": ("28x28x1", "stated"),
    "batch size": ("128 (paper: 256)", "stated"),
    "optimizer": ("Adam (paper: SGD + momentum 0.9)", "stated"),
    "epochs": ("400", "stated"),
    "test accuracy, Adam": ("91.3 %", "reported"),
    "test accuracy, SGD + momentum": ("91.4 %", "reported"),
    "learning rate": ("1e-3, Keras's default for Adam", "inferred"),
    "augmentation": ("none", "inferred"),
}
for key, (value, source) in article_settings.items():
    print(f"{key:>30}: {value:<34} {source}")

# %% [markdown]
# ## The 2 x 2: the network's share and the recipe's
#
# The two full-data runs at the end of this lab differ in the network, the recipe, the number of
# epochs (10 and 15) and the precision at once, so their gap cannot be split between them. The 2 x 2
# changes one thing at a time: {the article's ResNet-50, ResNet-20 with its small-image stem} x {the
# article's recipe (Adam $10^{-3}$, batch 128, no augmentation, `Normalize(0.5, 0.5)`), the course's
# (SGD with Nesterov momentum, one-cycle to 0.1, weight decay $5 \cdot 10^{-4}$, label smoothing 0.1,
# crops and flips, normalised with the data set's own mean and standard deviation, batch 128)}, 10
# epochs each, float32, a tenth of every class held out for validation (`bash
# results/run_experiments.sh DATA 2 fmnist-2x2`). The **network's share** is the mean over the two
# recipes of ResNet-20's validation accuracy minus ResNet-50's; the **recipe's share** the mean over
# the two networks of the course's recipe minus the article's. One seed each, since the article's
# network costs 10-20 minutes an epoch on one thread of this course's CPU. In lesson 2, three seeds
# of one LeNet recipe ended between 1.3 and 4.4 points apart (11 for LeNet without BatchNorm), so a
# gap of a point or two between two single runs settles nothing.

# %%
cells = reference.controlled()["fmnist-2x2"]["groups"]
recorded = {label: reference.seed_runs(prefix)[0] for label, prefix in cells.items()}
(r50_article, r50_ours, r20_article, r20_ours) = (recorded[label]["val_accuracy"] for label in cells)
print(f"{'validation accuracy':<22}{'article recipe':>16}{'our recipe':>12}")
print(f"{'article ResNet-50':<22}{100 * r50_article:>15.2f}%{100 * r50_ours:>11.2f}%")
print(f"{'ResNet-20':<22}{100 * r20_article:>15.2f}%{100 * r20_ours:>11.2f}%")
print(f"ResNet-20 minus ResNet-50: {100 * (r20_article - r50_article):+.2f} points with the article's recipe, "
      f"{100 * (r20_ours - r50_ours):+.2f} with ours")
print(f"our recipe minus the article's: {100 * (r50_ours - r50_article):+.2f} points for ResNet-50, "
      f"{100 * (r20_ours - r20_article):+.2f} for ResNet-20")
network = ((r20_article - r50_article) + (r20_ours - r50_ours)) / 2
recipe = ((r50_ours - r50_article) + (r20_ours - r20_article)) / 2
print(f"network's share: {100 * network:+.2f} points; recipe's share: {100 * recipe:+.2f} points "
      f"(of {100 * (r20_ours - r50_article):+.2f} from the article's set-up to ours)")
best50 = max(r["val_acc"] for label in list(cells)[:2] for r in recorded[label]["history"])
print(f"the article's network's best epoch in either recipe ({100 * best50:.2f} %) is below ResNet-20's "
      "last epoch in both:", best50 < min(r20_article, r20_ours))
for label in cells:
    curve = [r["val_acc"] for r in recorded[label]["history"]]
    print(f"{label}: largest fall from one epoch to the next {100 * max(a - b for a, b in zip(curve, curve[1:])):.1f} points")

# %% [markdown]
# The four cells' validation accuracy per epoch, read from the same files: one colour per network,
# dashed for the article's recipe and solid for the course's.

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(9, 4.2))
for label, run in recorded.items():
    colour = "tab:blue" if label.startswith("article") else "tab:red"
    style = "--" if label.endswith("article's recipe") else "-"
    ax.plot([r["epoch"] for r in run["history"]], [100 * r["val_acc"] for r in run["history"]], style,
            color=colour, marker="o", markersize=3, label=label)
ax.set(xlabel="epoch", ylabel="validation accuracy (%)",
       title="Fashion-MNIST, the 2 x 2: 10 epochs, float32, one seed each (recorded full-data runs)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()

# %% [markdown]
# What the four runs support (one seed each, the last epoch's validation accuracy, checked by the
# lines printed above):
#
# * **On average over the four runs, the network matters more than the recipe.** ResNet-20 ends
#   above the article's ResNet-50 with both recipes, and the article's network never reaches, in any
#   epoch of either recipe, where ResNet-20 ends. The margin is small with the article's recipe (about
#   a point and a half, no more than one seed can move) and large with the course's (over six points).
# * **The course's recipe helped ResNet-20, and not the article's network.** It added about three
#   points to ResNet-20 and, in this seed, cost the article's network nearly two. The recipe's effect
#   depends on the network (an *interaction*, in the language of experimental design), so the single
#   "recipe's share" above, under a point, averages a clear gain with a change one seed cannot tell
#   from zero. Why a recipe chosen for small-image ResNets was no gain for this network, these runs do
#   not say.
# * **So most of the gap from the article's set-up to the course's is the network's**, about four of
#   its four and a half points by the two shares; with the interaction, that split summarises these
#   four runs rather than a law.
# * **A single epoch is a noisy measurement.** Validation accuracy can fall sharply from one epoch to
#   the next: by ten and a half points for ResNet-20 in its fifth epoch (its one-cycle rate peaked at
#   the end of the third), by six and nearly eight for the article's network (the next section looks
#   at those two falls). More seeds would tighten every statement above; the small margin under the
#   article's recipe most.

# %% [markdown]
# ## Two recordings of the article's set-up
#
# The article's network with the article's optimizer, learning rate, batch size, epochs and seed was
# recorded twice: once on all 60,000 training images (the full-data run of the reference results
# below), once in the 2 x 2. They ended a point and a half apart on the test set. What differs,
# read from their `metrics.json`:

# %%
full = reference.load_result("fmnist-article-resnet50")
held = recorded["article's ResNet-50, article's recipe"]


def settings_of(run):
    """The settings in which the two recordings can differ, from a run's metrics.json."""
    settings, prov = run["provenance"]["settings"], run["provenance"]
    return {"training images": f"{run['num_train_images']:,}",
            "held out for validation": f"{run.get('num_val_images', 0):,}",
            "normalisation preset": settings.get("preset", "none recorded"),
            "optimizer, learning rate, batch": f"{settings['optimizer']}, {settings['lr']:g}, {settings['batch_size']}",
            "epochs, seed": f"{run['epochs']}, {settings['seed']}",
            "autocast setting": settings["amp"],
            "machine": reference.hardware(run),
            "resumed after epoch": str(prov.get("resumed_from_epoch") or "-"),
            "test accuracy after the last epoch": f"{100 * run['test_accuracy']:.2f} %"}


print(f"{'':<36}{'all 60,000 images':>40}   the 2 x 2")
for key, value in settings_of(full).items():
    print(f"{key:<36}{value:>40}   {settings_of(held)[key]}")
for preset in ("course", "article"):
    recipe_of = data_recipe("fashion-mnist", preset)
    print(f"preset {preset!r} normalises with mean {recipe_of.mean}, std {recipe_of.std}")

# %% [markdown]
# So the two runs share their optimizer, learning rate, batch, epochs and seed, and both ran in float32
# (on a CPU the `auto` autocast setting means none). They differ in four ways: the hold-out (6,000
# fewer training images, and a different shuffle of the rest); the normalisation (the first run was
# recorded before the command line had presets, when it normalised every data set with its own
# mean and standard deviation, which the `course` preset does now; the 2 x 2 used the article's
# `Normalize(0.5, 0.5)`); the machine and the number of threads, which change the order of
# floating-point sums; and the 2 x 2 run was interrupted and resumed. Each of the first three alone
# makes a different network from the same seed. Their training losses side by side:

# %%
print(f"{'epoch':>5} {'train loss':>11} {'test acc':>9} | {'train loss':>11} {'val acc':>8}   (all images | the 2 x 2)")
for a, b in zip(full["history"], held["history"]):
    print(f"{a['epoch']:>5} {a['train_loss']:>11.3f} {100 * a['test_acc']:>8.2f}% | {b['train_loss']:>11.3f} "
          f"{100 * b['val_acc']:>7.2f}%")
losses = [r["train_loss"] for r in full["history"]]
print("all images: the training loss fell in every epoch:", all(b < a for a, b in zip(losses, losses[1:])))
held_loss = [r["train_loss"] for r in held["history"]]
print("the 2 x 2: training loss after epoch 10 above its level after epoch 5:", held_loss[-1] > held_loss[4])
for label, run in recorded.items():
    after = run["provenance"]["resumed_from_epoch"]
    loss = [r["train_loss"] for r in run["history"]]
    print(f"the 2 x 2, {label}: resumed after epoch {after}; training loss in epoch {after + 1} "
          f"{'rose' if loss[after] > loss[after - 1] else 'fell'} ({loss[after - 1]:.3f} -> {loss[after]:.3f})")

# %% [markdown]
# Up to epoch 5 the two recordings' training losses stay close, and their accuracies (test for one,
# validation for the other) within about a point. Then the 2 x 2 run's training loss jumps in epoch 6
# and is still above its epoch-5 level at epoch 10: it spent its last five epochs climbing back to
# where it stood after five, while the other run kept gaining. Both ResNet-50 runs of the 2 x 2 lost ground in the first epoch
# after they were resumed, and both ResNet-20 runs, resumed too, did not. The course's tests check
# that a resumed run continues exactly as an uninterrupted one would (on small networks); what set
# these two runs back, their records cannot say. A rerun without interruption, and more seeds, would.
# The lesson therefore quotes only the 2 x 2, whose four runs share every setting but the two changed.

# %% [markdown]
# ## The layer summary
#
# The torchsummary-style table (`cnncourse.layer_summary`, which also works without a GPU) for one
# 1x28x28 image. It has one row per layer call - 156 for this network - so we print its
# beginning and its end; look at the shapes in the last rows: 2048 channels of **1x1**.

# %%
cnncourse.seed_everything(0)
article_model = resnet50_keras_article(num_classes=10, in_channels=1)
summary_lines = []
rows = cnncourse.layer_summary(article_model, (1, 28, 28), print_fn=summary_lines.append)
print("\n".join(summary_lines[:12]))
print(f"{'... ' + str(len(rows) - 20) + ' more rows ...':>40}")
print("\n".join(summary_lines[-21:]))

# %% [markdown]
# ## What Keras does by default, and PyTorch does not
#
# Rebuilding a Keras model layer for layer in PyTorch gets the parameters right, but not every default
# behind them. The article does not publish its code, so these are the settings its layers had unless
# it changed them; the ones that touch this network:
#
# | | Keras's default | PyTorch's default | what a rebuild must set to match |
# |---|---|---|---|
# | BatchNorm running statistics | `momentum=0.99` | `momentum=0.1` | `nn.BatchNorm2d(C, momentum=0.01)` |
# | BatchNorm $\varepsilon$ | `epsilon=1e-3` | `eps=1e-5` | `nn.BatchNorm2d(C, eps=1e-3)` |
# | conv and dense weights | Glorot-uniform | Kaiming-uniform ($a = \sqrt{5}$) | `nn.init.xavier_uniform_` |
# | conv and dense biases | zeros | uniform | `nn.init.zeros_` |
# | `padding="same"` at stride 2 | asymmetric: the odd zero at the end | symmetric `padding=` | an explicit `F.pad` |
# | Adam's $\epsilon$ | `1e-7` | `1e-8` | `torch.optim.Adam(..., eps=1e-7)` |
#
# The next cells take them one by one, then check which of them `resnet50_keras_article()` follows,
# with and without its `keras_defaults=True` option.

# %% [markdown]
# **BatchNorm.** In training, BatchNorm normalises each channel with the batch's mean $\mu_B$ and variance
# $\sigma_B^2$, $\hat x = (x - \mu_B)/\sqrt{\sigma_B^2 + \varepsilon}$, and keeps running averages of them
# for evaluation. The two libraries write the same average with opposite meanings of "momentum":
#
# $$\text{Keras: } \mu \leftarrow m\,\mu + (1 - m)\,\mu_B, \quad m = 0.99; \qquad
#   \text{PyTorch: } \mu \leftarrow (1 - m)\,\mu + m\,\mu_B, \quad m = 0.1.$$
#
# So Keras's default is PyTorch's `momentum=0.01`: an average over roughly the last $1/0.01 = 100$
# batches instead of PyTorch's 10. Keras's $\varepsilon = 10^{-3}$ against PyTorch's $10^{-5}$ matters
# only for channels whose variance is that small, but there it changes the output. Both checked on
# one BatchNorm layer (train mode for the running mean, eval mode for $\varepsilon$):

# %%
batch = torch.randn(16, 3, 5, 5, generator=torch.Generator().manual_seed(0))
batch_mean = batch.mean(dim=(0, 2, 3))
for momentum in (0.1, 0.01):
    bn = nn.BatchNorm2d(3, momentum=momentum)
    bn.running_mean.fill_(1.0)                     # some earlier running mean
    bn.train()(batch)
    keras_m = 1 - momentum
    print(f"PyTorch momentum={momentum}: running mean == Keras's rule with momentum={keras_m:g} "
          f"({keras_m:g} * old + {1 - keras_m:.2g} * batch mean): "
          f"{torch.allclose(bn.running_mean, keras_m * 1.0 + (1 - keras_m) * batch_mean, atol=1e-6)}")
small_var = 1e-3                                   # a channel whose running variance is small
keras_bn, torch_bn = nn.BatchNorm2d(3, eps=1e-3).eval(), nn.BatchNorm2d(3).eval()
for layer in (keras_bn, torch_bn):
    layer.running_var.fill_(small_var)
by_formula = batch / (small_var + 1e-3) ** 0.5     # running mean 0, scale 1, shift 0
ratio = ((small_var + 1e-5) / (small_var + 1e-3)) ** 0.5
print("eps=1e-3 in eval mode == the formula with Keras's epsilon:",
      torch.allclose(keras_bn(batch), by_formula, atol=1e-5))
print(f"at variance {small_var:g}, Keras's output / PyTorch's = sqrt((1e-3 + 1e-5) / (1e-3 + 1e-3)) = {ratio:.4f}: "
      f"{torch.allclose(keras_bn(batch), torch_bn(batch) * ratio, atol=1e-5)}")
print("PyTorch's defaults:", {k: getattr(nn.BatchNorm2d(3), k) for k in ("momentum", "eps")})

# %% [markdown]
# **Initialisation.** Keras draws every convolution and dense weight from Glorot's uniform distribution
# and sets biases to zero; PyTorch's `nn.Conv2d` and `nn.Linear` draw weights and biases from a
# Kaiming-uniform distribution with $a = \sqrt 5$. With $f_{in}$ and $f_{out}$ the inputs and outputs of
# one weight (channels times kernel area), the bounds of the uniform distributions are
#
# $$\text{Glorot: } \pm\sqrt{\frac{6}{f_{in} + f_{out}}}, \qquad \text{PyTorch: } \pm\frac{1}{\sqrt{f_{in}}}.$$
#
# For the first 1x1 convolution of the second block of stage 1 (256 → 64) that is $\pm 0.137$ against
# $\pm 0.0625$: Keras starts with weights more than twice as large. The largest weight drawn against each
# bound:

# %%
fan_in, fan_out = 256, 64
glorot, kaiming = (6 / (fan_in + fan_out)) ** 0.5, 1 / fan_in ** 0.5
cnncourse.seed_everything(0)
pytorch_conv = nn.Conv2d(fan_in, fan_out, kernel_size=1)
rebuilt_conv = article_model.layer1[1].conv1
for title, layer, bound in (("nn.Conv2d, PyTorch's default", pytorch_conv, kaiming),
                            ("the rebuild's layer1.1.conv1", rebuilt_conv, glorot)):
    largest = layer.weight.abs().max().item()
    print(f"{title:<30} weights within +-{bound:.4f} and reaching it: {bound * 0.99 < largest <= bound}; "
          f"biases all zero: {bool((layer.bias == 0).all())}")

# %% [markdown]
# **"Same" padding at stride 2.** The rebuild's sizes, 28 → 14 → 7, are those of Keras's
# `padding="same"`, which makes $\lceil n/s \rceil$ outputs and pads just enough zeros for them:
#
# $$P = \max\big((\lceil n/s \rceil - 1)\,s + k - n,\; 0\big), \qquad
#   \text{before} = \lfloor P/2 \rfloor, \quad \text{after} = P - \lfloor P/2 \rfloor.$$
#
# When $P$ is odd the extra zero goes at the end. For $n = 28$, $k = 3$, $s = 2$: $\lceil 28/2 \rceil = 14$
# outputs, $P = 13 \cdot 2 + 3 - 28 = 1$: **no zero on the top and left, one on the bottom and right**.
# PyTorch's `padding=1` puts one zero on every side; it gives 14 outputs too, but output $i$ looks at rows
# $2i-1, 2i, 2i+1$ instead of $2i, 2i+1, 2i+2$: the sampling grid is shifted by one pixel. Seen on an
# image whose every pixel holds its row number, through a 3x3 kernel that picks its centre:

# %%
rows = torch.arange(28.0).view(1, 1, 28, 1).expand(1, 1, 28, 28)   # pixel value = its row number
centre = torch.zeros(1, 1, 3, 3)
centre[0, 0, 1, 1] = 1.0                                             # output = the pixel under the centre
n, k, s = 28, 3, 2
outputs = -(-n // s)                                                 # ceil(n / s)
pad = max((outputs - 1) * s + k - n, 0)
before, after = pad // 2, pad - pad // 2
keras_same = F.conv2d(F.pad(rows, (before, after, before, after)), centre, stride=s)
pytorch_symmetric = F.conv2d(rows, centre, stride=s, padding=1)
print(f"n={n}, k={k}, s={s}: Keras pads {before} before and {after} after; PyTorch's padding=1 pads 1 and 1")
print("rows sampled, Keras 'same':   ", keras_same[0, 0, :, 0].int().tolist())
print("rows sampled, PyTorch padding=1:", pytorch_symmetric[0, 0, :, 0].int().tolist())
print("same output size:", keras_same.shape == pytorch_symmetric.shape)

# %% [markdown]
# The article's stride-2 layers under that rule, against the rebuild's symmetric padding, with the
# formula above checked against `keras_same_padding` of `cnncourse/models/article.py`. The 1x1 stride-2
# convolutions need no padding at all, and the 3x3 convolutions of stride 1 pad one zero on each side in
# both libraries; the stem's 7x7 convolution and its max-pool are shifted by one pixel (if the article's
# max-pool also used `padding="same"`):

# %%
print(f"{'layer':<28} {'n':>3} {'k':>2} {'s':>2} {'Keras same':>11} {'rebuild':>8}  formula == keras_same_padding")
for title, n, k, s, symmetric in (("stem: conv 7x7/2", 28, 7, 2, 3), ("stem: max-pool 3x3/2", 14, 3, 2, 1),
                                  ("layer2.0: conv 1x1/2", 7, 1, 2, 0), ("layer3.0: conv 1x1/2", 4, 1, 2, 0),
                                  ("layer4.0: conv 1x1/2", 2, 1, 2, 0), ("a 3x3 conv in a block", 7, 3, 1, 1)):
    pad = max((-(-n // s) - 1) * s + k - n, 0)
    keras, rebuild = f"({pad // 2}, {pad - pad // 2})", f"({symmetric}, {symmetric})"
    print(f"{title:<28} {n:>3} {k:>2} {s:>2} {keras:>11} {rebuild:>8}  "
          f"{(pad // 2, pad - pad // 2) == cnncourse.models.article.keras_same_padding(n, k, s)}")

# %% [markdown]
# **What the rebuild follows.** `resnet50_keras_article()` (see `cnncourse/models/article.py`) always
# draws its weights the Keras way - Glorot-uniform, zero biases. By default it keeps PyTorch's BatchNorm
# settings and symmetric padding; `keras_defaults=True` switches both to Keras's (the stem then pads each
# input the "same" way before its convolution and its max-pool). The parameters are the same either way.
# The lesson's network and the recorded runs use the default build and PyTorch's Adam. Read from
# the two models, with the rows-image above pushed through each stem's convolution:

# %%
def rows_sampled(stem_conv):
    """The rows of the rows-image under the centres of a stem convolution's first outputs."""
    probe = copy.deepcopy(stem_conv)
    with torch.no_grad():
        probe.weight.zero_()
        probe.weight[0, 0, 3, 3] = 1.0                   # the 7x7 kernel's centre
        probe.bias.zero_()
        return probe(rows)[0, 0, :5, 0].int().tolist()


keras_model = resnet50_keras_article(num_classes=10, in_channels=1, keras_defaults=True)
for title, built in (("default", article_model), ("keras_defaults=True", keras_model)):
    bn_settings = {(m.momentum, m.eps) for m in built.modules() if isinstance(m, nn.BatchNorm2d)}
    zero_bias = all(bool((m.bias == 0).all()) for m in built.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    print(f"{title}: BatchNorm (momentum, eps) {bn_settings}; biases zero: {zero_bias}; "
          f"parameters: {cnncourse.count_parameters(built):,}; stem samples rows {rows_sampled(built.stem[0])} ...")


# %% [markdown]
# ## Reference results
#
# The full-data runs recorded by `cnncourse train` on all 60,000 training and 10,000 test images,
# each with the CPU it ran on (two different machines, so their times do not compare): the article's
# network with its settings (Adam, batch 128; the learning rate 0.001 and no augmentation inferred)
# for its first 10 epochs of 400, and ResNet-20 with the course's recipe (crop and flip, SGD with
# Nesterov momentum, one-cycle peaking at 0.1, weight decay 5e-4, label smoothing 0.1, batch 128,
# bfloat16 autocast) for 15 epochs. The article reports 91.3 % after 400 epochs with Adam and 91.4 %
# with SGD and momentum; the course's goal for its recipe is 94 % within 15 epochs.

# %%
FULL_RUNS = {"fmnist-article-resnet50": "the article's network and settings",
             "fmnist-resnet20": "ResNet-20, the course's recipe"}
for name, title in FULL_RUNS.items():
    print(f"{title}: {reference.summary(name)}")

# %% [markdown]
# These two runs held nothing out: they measured the **test** set after every epoch. The table and
# the figure show those measurements as they were recorded, but a test set watched during training is
# no longer an unbiased judge, so only the last epoch counts as each run's result, and no choice was
# made from these curves (the 2 x 2 above validates during training and tests once).

# %%
runs = {title: reference.load_result(name)["history"] for name, title in FULL_RUNS.items()}
print("test accuracy (%) after each epoch, watched during training (no hold-out)")
print(f"{'epoch':>5}" + "".join(f"{title:>40}" for title in runs))
for epoch in range(1, max(len(h) for h in runs.values()) + 1):
    print(f"{epoch:>5}" + "".join(f"{100 * h[epoch - 1]['test_acc']:>40.2f}" if epoch <= len(h) else f"{'':>40}"
                                  for h in runs.values()))

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(9, 4.2))
for title, history in runs.items():
    ax.plot([r["epoch"] for r in history], [100 * r["test_acc"] for r in history], marker="o", markersize=3,
            label=title)
for label, value, style in (("the article, 400 epochs (Adam)", 91.3, "--"), ("the course's goal", 94.0, ":")):
    ax.axhline(value, color="0.35", linestyle=style, linewidth=1.2, label=label)
ax.set(xlabel="epoch", ylabel="test accuracy (%)",
       title="Fashion-MNIST, full-data runs: test accuracy watched after each epoch (no hold-out)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()

# %% [markdown]
# The goals, checked against the recorded files (the last epoch of each run):

# %%
for name, title, target, within in (("fmnist-resnet20", "ResNet-20, the course's recipe", 0.94, 15),
                                    ("fmnist-resnet20", "ResNet-20, the course's recipe", 0.913, None),
                                    ("fmnist-article-resnet50", "the article's network", 0.913, None)):
    print(f"{title}: {reference.goal(name, target, within=within).split(': ', 1)[1]}")
article = runs["the article's network and settings"]
gaps = [100 * (r["train_acc"] - r["test_acc"]) for r in article]
print(f"the article's network, training minus test accuracy: {gaps[0]:+.2f} points after epoch 1, "
      f"{gaps[-1]:+.2f} after epoch {len(gaps)}")

# %% [markdown]
# ResNet-20 passes the article's 400-epoch figure within its 15 epochs, with about a hundredth of the
# article network's parameters, and ends just short of the course's own, higher goal. The article's
# network after its first 10 epochs stands below the article's final figure, and its training
# accuracy (measured while training) pulls ahead of its test accuracy over the epochs; with a
# constant learning rate and no augmentation, the article needed 400 epochs to end a little above
# where this run stands after 10.

# %% [markdown]
# ## The recipe by the course's rule: three seeds, a fixed hold-out
#
# The same recipe, 15 epochs, now with 6,000 training images held out (the same for every seed) and the
# test set read once after the last epoch, seeds 0-2 (`bash results/run_experiments.sh DATA 2 reference`;
# one thread each, two runs side by side; seed 0's time includes hours when it was paused). Its goal,
# set before the runs, is the mean test accuracy the last line checks.

# %%
print(reference.seed_table({"ResNet-20, the course's recipe": "reference-fmnist/resnet20"}))
fmnist_runs = reference.seed_runs("reference-fmnist/resnet20")
test_mean = statistics.fmean(run["test_accuracy"] for run in fmnist_runs)
print("each seed's test accuracy:", ", ".join(f"{100 * run['test_accuracy']:.2f} %" for run in fmnist_runs))
print(f"goal (mean >= 94.5 %): {'met' if test_mean >= 0.945 else f'missed by {100 * (0.945 - test_mean):.2f} points'}")

# %% [markdown]
# The mean misses the goal, by the margin the last line prints. The test set has not been used to
# change the recipe; a change must win on the validation images.
#
# ## One change, chosen on validation: random erasing
#
# **Random erasing** (Zhong et al., 2020) blanks a rectangle of a training image, with probability 0.5,
# to the data set's mean: from a fiftieth to a third of the image, aspect ratio 0.3-3.3 (torchvision's
# `RandomErasing` defaults; here `fast_loaders(erase=0.5)`, `cnncourse train --random-erasing 0.5`). A
# garment partly hidden (up to a third of the image) must be recognised from the rest. Everything else is the recipe above: the same hold-out,
# seeds 0-2 (`bash results/run_experiments.sh DATA 2 fmnist-erasing`). The rule, written in
# `results/controlled.json` before the runs: adopted only if the mean validation accuracy beats the
# recipe's by more than two standard errors of the difference of the means,
#
# $$\mathrm{SE} = \sqrt{s_1^2 / n_1 + s_2^2 / n_2},$$
#
# with $s$ the sample standard deviation (divisor $n - 1$) over a group's $n$ seeds.

# %%
erasing_groups = {"the course's recipe": "reference-fmnist/resnet20",
                  "the recipe + random erasing 0.5": "fmnist-erasing/resnet20-erase0.5"}
print(reference.seed_table(erasing_groups))
base, erased = (reference.seed_stats(prefix) for prefix in erasing_groups.values())
gain = erased["mean"] - base["mean"]
standard_error = math.sqrt(base["std"] ** 2 / base["n"] + erased["std"] ** 2 / erased["n"])
print("validation accuracy per seed:", {label: [f"{100 * v:.2f}" for v in stats["values"]]
                                       for label, stats in zip(erasing_groups, (base, erased))})
print(f"mean validation gain {100 * gain:+.2f} points; two standard errors of the difference {200 * standard_error:.2f} "
      f"points; adopted: {gain > 2 * standard_error}")

# %% [markdown]
# Random erasing does not win on validation: its mean is 0.11 points below the recipe's, less than one
# standard error, and it wins one seed of three (the line under the table), so the rule rejects it and
# the reference recipe stays as it is. Over these three seeds its validation spread is larger than the
# recipe's; its test spread is not. Its test accuracy, read once per run in the table, played no part in
# the decision. The minutes per run do not measure erasing's cost: the recipe's mean includes seed 0's
# paused hours, and the groups ran hours apart beside different work (even the recipe's unpaused seeds
# took about half an hour, erasing's about 18 minutes). Other changes, more width or label smoothing's
# strength, are not measured yet; the goal stays missed by the margin printed above.
