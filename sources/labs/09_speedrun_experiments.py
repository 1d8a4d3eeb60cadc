# %% [markdown]
# # Lab 9: the speedruns' searches, every seed, and each trick's share
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnncourse/cnncourse/blob/main/notebooks/labs/09_speedrun_experiments.ipynb)
#
# The evidence behind [lesson 09](../09_speedrun.ipynb): where an MNIST training step spends its time;
# how the MNIST recipe was chosen and what its runs and removals measured, seed by seed; the CIFAR-10
# search for the number of epochs on a held-out validation set, the recorded runs, airbench's own code
# on the same data, and the removals; and the shipped CIFAR-10 network, checked. Every figure is read from `results/`; the only training
# here is eight steps, five of them profiled. Each time is printed beside the machine that measured it, and
# the recorded speedruns were timed on a quiet machine: other jobs beside a run slow it down.

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
import json
import math
import re
import statistics

import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

import cnncourse
from cnncourse import cifar_speedrun, reference, speedrun, speedrun_records
from cnncourse.speedrun import TRICKS, mnist_net

QUICK = cnncourse.quick_mode()
if QUICK:
    torch.set_num_threads(1)
print("torch", torch.__version__, "| quick mode:", QUICK)
print(cnncourse.describe_device())
capability = speedrun.cpu_capability()
threads = capability["torch_threads"]
print(f"CPU: {capability['cpu']}, {capability['cores']} cores, torch uses {threads} thread{'s' if threads > 1 else ''}; "
      f"torch's CPU kernels: {capability['torch_cpu_capability']}; native bfloat16: {capability['native_bf16']}")

# %% [markdown]
# ## Where an MNIST step spends its time
#
# PyTorch's profiler times every operation of five training steps (batches of 64, the speedrun's
# recipe). Convolutions (`mkldnn_convolution` forward, `convolution_backward`) do nearly all the
# multiply-adds; BatchNorm, ReLU (`clamp_min_`, `threshold_backward`) and max-pooling do almost none,
# yet each reads and writes every number of its map, forward and backward; `fill_` sets buffers to
# zero (max-pooling's gradient is written into one). On the course's CPU these took half a step's
# time or more. Your table, from your CPU:

# %% tags=["nbval-ignore-output"]
from torch.profiler import ProfilerActivity, profile

bf16 = speedrun.use_bf16(True, torch.device("cpu"))
model = mnist_net(16).to(memory_format=torch.channels_last)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
xb = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
yb = torch.randint(0, 10, (64,))


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(xb), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


for _ in range(3):
    step()                                   # warm-up: the first steps choose kernels and allocate
# quiet_stderr: the profiler's C++ layer prints log lines of its own to the kernel's stderr
with speedrun.quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(5):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=36))

# %% [markdown]
# ## The MNIST recipe and its seeds
#
# `results/run_speedrun.sh` made these runs with `cnncourse speedrun` on the course's 2-core CPU,
# with nothing else running. It first chose the recipe on the validation split with
# `scripts/speedrun_search.py` (a small grid of epochs, widths and batch sizes; the rule: the fastest
# setting whose validation accuracy reaches 99.0 %; the grid is in
# `results/speedrun-mnist/search-recipe.json`), then trained it with three seeds, each in a fresh
# process. The search's own times came out shorter than the recorded runs' for the same recipe (it
# ran its settings one after another in one process); its rule only compares settings within the
# search, and every figure quoted is from the recorded runs.

# %%
display(Markdown(speedrun_records.speedrun_table()))

# %% [markdown]
# ## Each MNIST trick removed
#
# One trick removed at a time, the same seeds, everything else as in the recipe. Where a removal may
# need its own learning rate (batches of 256, no one-cycle schedule, no BatchNorm) the rate is the best
# of 0.2, 0.05 and 0.01 on the validation split (`results/speedrun-mnist/search-rates.json`). The last
# row is the other way round: torch.compile is not in the recipe, and the row measures adding it,
# compilation included.

# %%
display(Markdown(speedrun_records.trick_table()))

# %% [markdown]
# Timings on a shared virtual machine vary from run to run (compare the recipe's three seeds), so the
# cell below asks of each trick two questions three seeds can answer: was *every* run without it
# slower than *every* run of the recipe, and was every run without it less accurate?

# %%
groups = speedrun_records.speedrun_results()
if "recipe" in groups:
    base_seconds = [r["train_seconds"] for r in groups["recipe"]]
    base_accuracy = [r["test_accuracy"] for r in groups["recipe"]]
    print(f"{'trick removed':<22}{'every run slower':>18}{'every run less accurate':>25}")
    for trick in (t for t in TRICKS if t in groups):
        seconds = [r["train_seconds"] for r in groups[trick]]
        accuracy = [r["test_accuracy"] for r in groups[trick]]
        print(f"{trick:<22}{str(min(seconds) > max(base_seconds)):>18}{str(max(accuracy) < min(base_accuracy)):>25}")

# %% [markdown]
# Data as one tensor, the narrow network, channels_last and leaving out torch.compile answer the
# first question yes; batches of 64, the one-cycle schedule and BatchNorm the second. Pooling first and
# bf16 answer neither: their savings per step (a quarter of the numbers to normalise; bf16 arithmetic
# on AMX) are smaller, over a 16-second run on two threads, than the run-to-run spread of the times.

# %% [markdown]
# ## The CIFAR-10 search: how many epochs
#
# `bash results/run_speedrun_cifar10.sh DATA search` trained the recipe for several numbers of
# epochs on 45,000 training images, each scored on the 5,000 held out (`--val-fraction 0.1`, the
# same hold-out for all). The rule, fixed before the runs: if validation accuracy still rises with the
# epochs, take the largest number searched whose training of all 50,000 images fits the 15-minute
# budget at the speed the benchmark below measures on a quiet machine; if it stops rising, the fewest
# epochs within 0.1 points of the best. These runs shared the machine with other work, two at a time
# on one thread each, so their times are longer than a quiet machine's and do not enter the rule.
# (The code of these runs also scored the test set; the choice never read it, and hold-out runs no
# longer do.)

# %%
search_dir = reference.results_dir() / "speedrun-cifar10" / "search"
search = sorted((json.loads(p.read_text()) for p in search_dir.glob("*/metrics.json")
                 if re.fullmatch(r"e\d+-s0", p.parent.name)),     # e<epochs>-s0: the search; others: checks below
                key=lambda r: r["recipe"]["epochs"])
rows = ["| epochs | validation, six views | validation, two views | validation, one view | training time (shared machine) |",
        "|---|---|---|---|---|"]
rows += [f"| {r['recipe']['epochs']:g} | {100 * r['val_accuracy']:.2f} % | {100 * r['val_accuracy_flip']:.2f} % "
         f"| {100 * r['val_accuracy_no_tta']:.2f} % | {r['train_seconds'] / 60:.1f} min on "
         f"{r['provenance']['torch_threads']} thread(s) |" for r in search]
display(Markdown("\n".join(rows) if search else "No search run recorded."))
choice = search_dir.parent / "search-choice.json"
if choice.exists():
    print("chosen:", json.loads(choice.read_text()))

# %% [markdown]
# ## The network's speed on a quiet CPU
#
# `python benchmarks/cifar_speedrun_speed.py` measures, in one process on a quiet machine, the bare
# training step of the network on one fixed batch of 1,024 (the no-data limit: nothing is faster per
# image) against the recipe's own clock over half an epoch (translations, flips, batch indexing, the
# schedule and Lookahead included), in bfloat16 where the CPU has it and in float32:

# %%
bench = json.loads((reference.results_dir() / "benchmarks" / "cifar_speedrun_cpu.json").read_text())
hw = bench["hardware"]
print(f"{hw['cpu']}, {hw['torch_threads']} threads; flags: {', '.join(hw['flags'])}; torch {bench['torch']}")
for row in bench["rows"]:
    print(f"{row['precision']:>7}: no-data limit {row['no_data_limit']:,.0f} images/s, the recipe {row['recipe']:,.0f} "
          f"images/s ({row['ratio']:.2f} of the limit): an epoch of 50,000 images in {50000 / row['recipe']:.0f} s")

# %% [markdown]
# ## The recorded CIFAR-10 runs, seed by seed
#
# `bash results/run_speedrun_cifar10.sh DATA recipe 2` trained the chosen recipe on all 50,000
# training images with seeds 0, 1 and 2, each in a fresh process with nothing else running, and read
# the test set once per run. Each run reports its test accuracy with six views (the headline), with
# the image and its mirror (two) and with the image alone (one); the time runs from the whitening
# set-up to the last step. The time holds for CPUs with native bfloat16 (AVX-512 BF16 or AMX); on one
# without it the speedrun trains in float32, whose speed on the course's CPU the benchmark above gives.
# The recorded runs turned out faster than the benchmark's half epoch (46-53 s an epoch against 57 s,
# probably because a half epoch still translates and flips all 50,000 images, for half the steps); at their speed 16 epochs would have
# fitted the budget too, but the rule was applied as it was fixed, with the benchmark's figure. Below
# the runs, each trick removed in turn where recorded.

# %%
display(Markdown(speedrun_records.recorded_tables()))

# %% [markdown]
# **Accuracy against time.** The search's validation accuracies, placed at the time each number of
# epochs takes on a quiet machine (the recorded runs' median seconds per epoch, times the epochs:
# an estimate, since the search runs themselves shared the machine), beside the recorded runs' test
# accuracies. The curve flattens: each epoch past 10 buys less, and the 93 % goal lies two points above it.

# %%
import matplotlib.pyplot as plt

cifar_groups = speedrun_records.speedrun_results("speedrun-cifar10")   # recipe-s*/ and without-*/, read once
recipe_runs = cifar_groups.get("recipe", [])
if search and recipe_runs:
    per_epoch = statistics.median(r["train_seconds"] / r["recipe"]["epochs"] for r in recipe_runs) / 60
    epochs = [r["recipe"]["epochs"] for r in search]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for key, label in [("val_accuracy", "validation, six views"), ("val_accuracy_no_tta", "validation, one view")]:
        ax.plot([e * per_epoch for e in epochs], [100 * r[key] for r in search], marker="o", label=label)
    ax.scatter([r["train_seconds"] / 60 for r in recipe_runs], [100 * r["test_accuracy"] for r in recipe_runs],
               color="black", marker="x", label="recorded runs: test, six views")
    ax.axhline(93, color="tab:red", linestyle=":", label="the 93 % goal")
    ax.axvline(15, color="tab:gray", linestyle="--", label="the 15-minute budget")
    ax.set_xlabel("training time on a quiet machine, minutes (search: estimated)")
    ax.set_ylabel("accuracy, %")
    ax.set_title("CIFAR-10 speedrun (JPEG copy): accuracy against training time")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)   # below: no legend over data
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## What limits it: airbench's own code on the same data
#
# Did something of airbench go missing when the course wrote its recipe anew? airbench's own
# `airbench94.py` (downloaded from its repository; not shipped) trained on the same CPU, on the same
# 45,000 images of the JPEG copy for the recipe's 12 epochs, and was scored on the same 5,000 held out,
# changed only where a CPU needs it: float32 weights under bfloat16 autocast for its float16 GPU weights,
# a clock for CUDA's (`python scripts/airbench_crosscheck.py`, run twice, since it seeds nothing).
# Beside it, the course's search run of 12 epochs, and the same run with one more change: the JPEG
# copy's folders list the images class by class, so the first 5,000 training images, from which the
# recipe sets its whitening, are nearly all airplanes (all of them in the full training set);
# `--set whiten_sample=spread` takes 5,000 from every class, as airbench's code does here (the script
# shuffles its images once).

# %%
compared = [("the course's recipe (whitening from the first 5,000 images)", search_dir / "e12-s0"),
            ("the same, whitening from 5,000 images spread over the classes", search_dir / "e12-spread-s0")]
compared += [(f"airbench's own code, run {p.parent.name.rsplit('r', 1)[1]}", p.parent)
             for p in sorted((search_dir.parent / "checks").glob("airbench-code-r*/metrics.json"))]
rows = ["| 12 epochs on the same 45,000 images (JPEG copy) | validation, six views | validation, one view |",
        "|---|---|---|"]
for label, folder in compared:
    if (folder / "metrics.json").exists():
        r = json.loads((folder / "metrics.json").read_text())
        rows.append(f"| {label} | {100 * r['val_accuracy']:.2f} % | {100 * r['val_accuracy_no_tta']:.2f} % |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# **Read.** airbench's own code scored 90.30 and 90.52 % with six views, the course's recipe 90.48 %,
# and 90.44 % with the whitening taken from every class: differences of a few tenths, the size of the
# spread between seeds (with one view they spread wider: 89.12-89.92 %). So the course's recipe scores
# as airbench's code does, and the distance to the 94 % airbench reports on CIFAR-10's own files is not in the
# recipe but in the data and the precision. Our copy is JPEG-compressed (quality 75, colour stored at
# half the resolution), which blurs the fine detail and colour the network reads; what that costs
# cannot be measured without the original files. bfloat16 costs a little too: float32 scored 0.49
# points above the recipe's median (one seed, below). Whitening from (nearly) airplanes only made no difference one seed can show,
# so the recorded runs keep it.

# %% [markdown]
# ## Each trick's share
#
# `bash results/run_speedrun_cifar10.sh DATA without 2 1` removed each piece of the recipe in turn with
# seed 0, nothing else changed, each a fresh process on a quiet machine with two threads, like the
# recipe's runs but mostly on other days. The five pieces whose removal cost accuracy then got seeds 1
# and 2 (`ONLY="whitening identity-initialisation scaled-batchnorm-biases random-translations lookahead"`
# before the same command with `3` at the end), and so did the three others that might move accuracy
# (the whitening bias schedule, derandomised flips, label smoothing); the two speed pieces kept one
# seed. Timings vary from run to run: the recipe's own seeds took 0.95-1.11 times their median and the removals whose time should not change 0.84-1.06 times it,
# so only a time ratio well outside that range is the piece's. A piece buys time if the run without it
# is slower; it buys accuracy if the run without it scores lower than the recipe's seeds do. One seed
# inside the recipe's spread over seeds (the grey band: ± twice its standard deviation) is not told
# apart from noise; with three seeds on each side, the difference of the means is set against two of
# its standard errors, lab 4's rule.

# %%
effects = speedrun_records.removal_effects(cifar_groups)
if effects:
    six = [100 * r["test_accuracy"] for r in recipe_runs]
    sd = statistics.stdev(six) if len(six) > 1 else 0.0
    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    ax.axhspan(-2 * sd, 2 * sd, color="0.85", label=f"recipe's {len(six)} seeds: ± 2 sd ({2 * sd:.2f} points)")
    for e in effects:
        line = (f"without {e['trick']:<25} {e['ratio']:4.2f} x the time, {e['change']:+.2f} points (six views, "
                + (f"median of {e['seeds']} seeds" if e["seeds"] > 1 else "one seed") + ")")
        if e["seeds"] > 1 and len(six) > 1:   # lab 4's rule: the difference of the means against 2 standard errors
            runs = [100 * r["test_accuracy"] for r in cifar_groups[e["trick"]]]
            se = math.sqrt(statistics.variance(runs) / len(runs) + statistics.variance(six) / len(six))
            line += f"; means differ by {statistics.mean(runs) - statistics.mean(six):+.2f}, 2 SE = {2 * se:.2f}"
        print(line)
        ax.scatter(e["ratio"], e["change"], color="tab:blue")
    for far in (False, True):      # labels of each cluster (near the recipe's time, far from it) spaced apart
        label_y = -math.inf
        for e in sorted((e for e in effects if (e["ratio"] >= 1.3) == far), key=lambda e: e["change"]):
            label_y = max(e["change"], label_y + 0.075)
            ax.annotate(e["trick"], (e["ratio"], e["change"]), xytext=(e["ratio"] + (0.05 if far else 0.25), label_y),
                        fontsize=7, va="center", arrowprops=dict(arrowstyle="-", color="0.6", linewidth=0.6))
    ax.axvline(1, color="0.5", linewidth=0.8)
    ax.set_xlabel("training time without the trick / the recipe's median time")
    ax.set_ylabel("test accuracy (six views) minus\nthe recipe's median, points")
    seeds = sorted({e["seeds"] for e in effects})
    ax.set_title("CIFAR-10 speedrun (JPEG copy): each trick removed, "
                 + ("one seed" if seeds == [1] else f"median of {seeds[0]}-{seeds[-1]} seeds"), fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# **Read.** channels_last and bf16 buy time: without them the run took 1.84 and 3.30 times as long
# (one seed each). Whitening, identity initialisation, the BatchNorm biases' rate, translations and
# Lookahead buy accuracy: without each, the median of three seeds scored 0.45-0.57 points lower (the
# figure), and each difference of the means (printed above it) exceeds two standard errors, a loose
# bar with three seeds a side: identity initialisation passes only just (0.38 against 0.31). Seed 0
# alone had put them 0.46-0.64 points down, up to 0.17 points from the median of three. The whitening
# bias schedule, derandomised flips and label smoothing stay inside the band with three seeds (medians
# -0.04, -0.05 and +0.05 points, the means within two standard errors): whatever they are worth on this
# data is less than three seeds can show. float32 is the one removal that scored above the band (+0.49
# points, one seed): part of the distance to 93 % is probably bfloat16's precision, but float32's 31.7
# minutes do not fit the budget.

# %% [markdown]
# ## The shipped network
#
# The weights of seed 0 are in the repository (`results/speedrun-cifar10/recipe-s0/model.pt`, float16,
# its SHA-256 in `metrics.json`); `reference.load_model` rebuilds the network from the recorded recipe
# and refuses an altered file. Checked on the 200 test images shipped with the package (from the JPEG
# copy's test set); it saw none of them in training:

# %%
from cnncourse.data import get_dataset, to_tensors

try:
    model = reference.load_model("speedrun-cifar10/recipe-s0").float()
except reference.WeightsError as error:
    model = None
    print("not available:", error)
except FileNotFoundError:
    model = None
    print("not available: no CIFAR-10 speedrun recorded yet")
if model is not None:
    cnncourse.set_quick_mode(True)                 # the sample shipped with the package
    images, labels = to_tensors(get_dataset("cifar10", "test"))
    cnncourse.set_quick_mode(None)
    x = speedrun.normalise(images, cifar_speedrun.MEAN, cifar_speedrun.STD, "cpu", channels_last=False)
    logits = cifar_speedrun.tta_views_logits(model, x, 6)
    print(f"the shipped network on {len(labels)} test images: {100 * (logits.argmax(1) == labels).float().mean():.1f} % "
          f"with six views")
