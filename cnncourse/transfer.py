"""Transfer learning that runs on a laptop CPU (lesson 7): the CIFAR-10 speedrun's network learns five
classes from all their images, then the other five from a few labelled images each, three ways:

* **fine-tuned**: every weight starts from the first network's, a new last layer, all of it trains;
* **frozen backbone**: the first network's layers stay as they are (BatchNorm's statistics too), only
  a new last layer trains, on the features they compute;
* **from scratch**: the same network, its weights random (its whitening layer from the few images).

All three train with the same loop and recipe (:class:`FewShotRecipe`) and are scored on every test
image of the new classes. Why written here: the experiment is the lesson's; torchvision has no
CIFAR-10 network to start from, and the speedrun's pieces (:mod:`cnncourse.cifar_speedrun`) are reused.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.cifar_speedrun import (MEAN, STD, _low_precision, airbench_net, cifar_tensors, random_translate,
                                      speedrun_cifar10, whitening_weights)
from cnncourse.speedrun import normalise

__all__ = ["FIRST_CLASSES", "SECOND_CLASSES", "ARMS", "FewShotRecipe", "select_classes", "few_per_class",
           "with_new_head", "train_few_shot", "accuracy", "transfer_experiment", "recorded_table"]

FIRST_CLASSES = (0, 1, 2, 3, 4)     # airplane, automobile, bird, cat, deer: learnt from all their images
SECOND_CLASSES = (5, 6, 7, 8, 9)    # dog, frog, horse, ship, truck: learnt from a few images each
ARMS = ("fine-tuned", "frozen backbone", "from scratch")


@dataclass(frozen=True)
class FewShotRecipe:
    """The few-shot training of every arm: Nesterov SGD on the mean label-smoothed loss, the rate
    falling from ``lr`` to 0 along a cosine, crops (translations of up to 2 pixels) and flips."""
    epochs: int = 40
    batch_size: int = 50
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    translate: int = 2


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]):
    """The images of ``classes`` only, their labels renumbered 0, 1, ... in the order given."""
    classes = list(classes)
    keep = torch.isin(y, torch.tensor(classes))
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return x[keep], remap[y[keep]]


def few_per_class(x: torch.Tensor, y: torch.Tensor, per_class: int, seed: int):
    """``per_class`` images of every class, drawn at random (seeded), in class order."""
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for c in y.unique().tolist():
        members = (y == c).nonzero()[:, 0]
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} images, fewer than per_class={per_class}")
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    index = torch.cat(picked)
    return x[index], y[index]


def with_new_head(model: nn.Sequential, num_classes: int, freeze_backbone: bool, seed: int) -> nn.Sequential:
    """A copy of an :func:`airbench_net` whose last linear layer is new (``seed`` draws it); with
    ``freeze_backbone`` every other parameter stops learning (the whitening filters never learn)."""
    model = copy.deepcopy(model).float()
    index = _head(model)
    torch.manual_seed(seed)
    model[index] = nn.Linear(model[index].in_features, num_classes, bias=False)
    if freeze_backbone:
        for i, layer in enumerate(model):
            if i != index:
                layer.requires_grad_(False)
    return model


def _head(model: nn.Sequential) -> int:
    """The index of the network's last linear layer, its classifier."""
    return max(i for i, layer in enumerate(model) if isinstance(layer, nn.Linear))


def _backbone_frozen(model: nn.Sequential) -> bool:
    head = _head(model)
    return not any(p.requires_grad for i, layer in enumerate(model) if i != head for p in layer.parameters())


def train_few_shot(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, recipe: FewShotRecipe = FewShotRecipe(),
                   seed: int = 0) -> nn.Sequential:
    """Train the parameters of ``model`` that require gradients on the normalised images ``x`` (float,
    N x 3 x 32 x 32) and labels ``y`` with ``recipe``. A model whose backbone is frozen keeps it in eval
    mode (BatchNorm's statistics stay the first network's). Returns the model, in eval mode."""
    device = next(model.parameters()).device
    amp = _low_precision(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                weight_decay=recipe.weight_decay)
    steps = recipe.epochs * math.ceil(len(y) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    frozen = _backbone_frozen(model)
    model.train(not frozen)
    model.to(memory_format=torch.channels_last)       # the fast layout for convolutions on a CPU
    pad = recipe.translate
    padded = F.pad(x, (pad,) * 4, mode="reflect") if pad else x
    padded = padded.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(recipe.epochs):
        images = random_translate(padded, pad, generator) if pad else x
        flips = torch.rand(len(y), generator=generator) < 0.5
        images = torch.where(flips.view(-1, 1, 1, 1).to(device), images.flip(-1), images)
        images = images.contiguous(memory_format=torch.channels_last)
        order = torch.randperm(len(y), generator=generator).to(device)
        for i in range(0, len(y), recipe.batch_size):
            index = order[i:i + recipe.batch_size]
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = F.cross_entropy(model(images[index]), y[index], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """The fraction of ``x`` (normalised) that ``model`` classifies as ``y``, one view, in eval mode."""
    model.eval()
    amp = _low_precision(next(model.parameters()).device)
    right = 0
    for i in range(0, len(y), batch):
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            right += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return right / len(y)


def transfer_experiment(data=None, root=None, seeds: Sequence[int] = (0, 1, 2), per_class: int = 100,
                        pretrain_epochs: float = 6, recipe: FewShotRecipe = FewShotRecipe(),
                        tensors: Optional[dict] = None, progress: bool = False,
                        pretrain_changes: Optional[dict] = None) -> Dict[str, Any]:
    """The whole experiment on CPU: the speedrun's network trained on every training image of
    :data:`FIRST_CLASSES` for ``pretrain_epochs`` (seed 0); then, for each seed, ``per_class``
    training images of each of :data:`SECOND_CLASSES` drawn with that seed and the three :data:`ARMS`
    trained on them with that seed; each scored on all test images of the second five classes.
    ``pretrain_changes``: settings of :class:`~cnncourse.cifar_speedrun.CifarRecipe` for the first
    network (the sample scale's smaller run). Returns the first network's record and, per arm, the
    seeds' accuracies (fractions) and seconds."""
    from cnncourse.train import _progress_bar_class
    tensors = tensors or cifar_tensors(data, root)
    first = {split: select_classes(*tensors[split], FIRST_CLASSES) for split in ("train", "test")}
    base = speedrun_cifar10(seed=0, tensors=first, device="cpu", keep_model=True, progress=progress,
                            **dict({"epochs": pretrain_epochs}, **(pretrain_changes or {})))
    pretrained = base.pop("model")
    test_x, test_y = select_classes(*tensors["test"], SECOND_CLASSES)
    test_x = normalise(test_x, MEAN, STD, "cpu", channels_last=False)
    second_x, second_y = select_classes(*tensors["train"], SECOND_CLASSES)
    arms: Dict[str, Dict[str, list]] = {arm: {"accuracy": [], "seconds": []} for arm in ARMS}
    bar = _progress_bar_class()(total=len(seeds) * len(ARMS), disable=not progress, desc="few-shot runs")
    for seed in seeds:
        x, y = few_per_class(second_x, second_y, per_class, seed)
        x = normalise(x, MEAN, STD, "cpu", channels_last=False)
        for arm in ARMS:
            started = time.perf_counter()
            if arm == "from scratch":
                torch.manual_seed(seed)
                model = airbench_net(base["recipe"]["widths"])
                model[-2] = nn.Linear(model[-2].in_features, len(SECOND_CLASSES), bias=False)
                with torch.no_grad():
                    model[0].weight.copy_(whitening_weights(x))
            else:
                model = with_new_head(pretrained, len(SECOND_CLASSES), arm == "frozen backbone", seed)
            train_few_shot(model, x, y, recipe, seed)
            arms[arm]["seconds"].append(time.perf_counter() - started)
            arms[arm]["accuracy"].append(accuracy(model, test_x, test_y))
            bar.update()
    bar.close()
    base.pop("history", None)
    return {"first_network": base, "first_classes": list(FIRST_CLASSES), "second_classes": list(SECOND_CLASSES),
            "per_class": per_class, "seeds": list(seeds), "few_shot_recipe": asdict(recipe),
            "num_test_images": len(test_y), "arms": arms}


def recorded_table(path=None, name: str = "transfer-cifar10/laptop") -> str:
    """Markdown: the recorded experiment (``results/<name>/metrics.json``): each arm's test accuracy
    per seed, mean ± sd and seconds, the first network's accuracy and time, and the CPU; one line when
    nothing is recorded."""
    import json
    import statistics

    from cnncourse.reference import results_dir, speedrun_hardware
    record = results_dir(path) / name / "metrics.json"
    if not record.exists():
        return f"Transfer experiment: not recorded yet ({name}/metrics.json)."
    run = json.loads(record.read_text())
    first = run["first_network"]
    rows = ["| arm | " + " | ".join(f"seed {s}" for s in run["seeds"]) + " | mean ± sd | seconds a run |",
            "|---|" + "---|" * (len(run["seeds"]) + 2)]
    for arm, runs in run["arms"].items():
        accuracy = [100 * a for a in runs["accuracy"]]
        spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
        rows.append(f"| {arm} | " + " | ".join(f"{a:.1f} %" for a in accuracy)
                    + f" | {statistics.mean(accuracy):.1f} ± {spread:.1f} % | {statistics.mean(runs['seconds']):.0f} |")
    return "\n".join(rows) + (
        f"\n\nNew classes: {run['per_class']} training images each, {run['num_test_images']:,} test images. First "
        f"network: {first['num_train_images']:,} images, {first['recipe']['epochs']:g} epochs, "
        f"{first['train_seconds'] / 60:.1f} min, {100 * first['test_accuracy']:.1f} % on its classes' test images. "
        f"{speedrun_hardware(run)}; command: `{run['provenance']['command']}`.")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``python -m cnncourse.transfer --data cifar10-jpeg --data-root DATA --out results/transfer-cifar10/laptop``:
    the experiment at the laptop scale's settings, recorded in OUT/metrics.json (refuses an OUT that
    holds a record, unless ``--overwrite``)."""
    from cnncourse.speedrun import record, recording_parser, start_recording
    parser = recording_parser("python -m cnncourse.transfer", main.__doc__)
    parser.add_argument("--data", default="cifar10", help="cifar10, or an image-folder copy (cifar10-jpeg)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--pretrain-epochs", type=float, default=6)
    parser.add_argument("--epochs", type=int, default=FewShotRecipe.epochs, help="few-shot epochs")
    args = start_recording(parser, argv)
    result = transfer_experiment(args.data, args.data_root, seeds=range(args.seeds), per_class=args.per_class,
                                 pretrain_epochs=args.pretrain_epochs, recipe=FewShotRecipe(epochs=args.epochs),
                                 progress=True)
    command = (f"python -m cnncourse.transfer --data {args.data} --out {args.out} --seeds {args.seeds} "
               f"--per-class {args.per_class} --pretrain-epochs {args.pretrain_epochs:g} --epochs {args.epochs}")
    result["data"] = args.data
    print(record(result, args.out, command))
    return result


if __name__ == "__main__":
    main()
