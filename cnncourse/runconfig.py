"""The settings of a ``cnncourse train`` run, described once.

:class:`TrainConfig` lists every setting with its default and help text. The command line's
options are generated from it (:func:`add_arguments`), ``run.json`` stores it, and
:meth:`TrainConfig.fit_kwargs` is what goes to :func:`cnncourse.train.fit`.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

QUICK_EPOCHS, FULL_EPOCHS = 1, 10

# Settings that may be given again with --resume: they change where and how fast, not what is trained.
RESUMABLE = ("epochs", "device", "threads", "workers", "data_root")
# Settings of the machine, not of the experiment: a recorded command leaves them out, so that it re-runs
# elsewhere (the full argv stays in the provenance).
MACHINE_SETTINGS = ("threads", "workers", "data_root")
# Bounds beyond which a value is a typo, not an experiment (each with its reason for the message).
LIMITS = {"image_size": (1024, "larger images need more memory than a course run can use (1024 px is 16x "
                                "ImageNet's usual 224 px in pixels)"),
          "batch_size": (65_536, "no course data set needs batches beyond 65,536 images"),
          "epochs": (10_000, "more than 10,000 epochs is a typo for a course run"),
          "seed": (2**63 - 1, "torch seeds are 64-bit")}


def _opt(help: str, group: str = "how to train", short: Optional[str] = None, choices=None, metavar=None):
    return {"help": help, "group": group, "short": short, "choices": choices, "metavar": metavar}


@dataclass
class TrainConfig:
    """Every setting of a training run; ``None`` means "decided at run time" (see the help texts)."""
    model: Optional[str] = field(default=None, metadata=_opt(
        "model name (see `cnncourse models`), e.g. lenet, resnet20, resnet18, vgg16, resnet50_keras_article "
        "(required unless --resume)", "what to train", "-m", metavar="M"))
    data: Optional[str] = field(default=None, metadata=_opt(
        "data set: mnist, fashion-mnist, cifar10, galaxy10, galaxy10-sdss, or the path of an image folder (one "
        "sub-folder per class, optionally in train/ and test/) (required unless --resume)", "what to train", "-d",
        metavar="D"))
    image_size: Optional[int] = field(default=None, metadata=_opt(
        "resize images to SxS (default: the data set's own size)", "what to train", metavar="S"))
    small_input: Optional[bool] = field(default=None, metadata=_opt(
        "ResNet-18/34/50/...: 3x3 stride-1 stem for small images (default: on below 64 px)", "what to train"))
    preset: str = field(default="course", metadata=_opt(
        "preprocessing: course = the data set's own statistics and augmentation; article = the source "
        "articles' Normalize(0.5, 0.5) and their augmentation", "what to train", choices=("course", "article")))
    val_fraction: float = field(default=0.0, metadata=_opt(
        "hold out this fraction of every class of the training set (seeded) for validation: evaluated after "
        "every epoch, the test set only after the last (choose recipes and epochs on validation)", "what to train",
        metavar="F"))
    val_seed: Optional[int] = field(default=None, metadata=_opt(
        "seed of the validation hold-out and of --train-subset's draw (default: --seed); keep it fixed, e.g. 0, "
        "when comparing seeds, so that the seeds vary the training and not the images held out", "what to train",
        metavar="K"))
    train_subset: Optional[int] = field(default=None, metadata=_opt(
        "train on about N images, a seeded stratified subset of the training set (short experiments)",
        "what to train", metavar="N"))
    test_every_epoch: Optional[bool] = field(default=None, metadata=_opt(
        "evaluate the test set after every epoch (default: only without --val-fraction; with it, only after "
        "the last epoch); for reproducing an article's per-epoch test curve", "what to train"))
    epochs: Optional[int] = field(default=None, metadata=_opt(
        f"epochs (default: {QUICK_EPOCHS} in quick mode, else {FULL_EPOCHS})", short="-e", metavar="N"))
    batch_size: int = field(default=64, metadata=_opt("training batch size", short="-b", metavar="B"))
    lr: float = field(default=1e-3, metadata=_opt("(peak) learning rate", metavar="X"))
    optimizer: str = field(default="adam", metadata=_opt("sgd is SGD with Nesterov momentum", short="-o",
                                                         choices=("sgd", "adam", "adamw")))
    momentum: float = field(default=0.9, metadata=_opt("momentum for sgd", metavar="X"))
    weight_decay: float = field(default=0.0, metadata=_opt("weight decay", metavar="X"))
    schedule: str = field(default="none", metadata=_opt("learning-rate schedule, stepped every batch",
                                                        choices=("none", "step", "cosine", "onecycle")))
    label_smoothing: float = field(default=0.0, metadata=_opt("label smoothing, in [0, 1)", metavar="X"))
    grad_clip: Optional[float] = field(default=None, metadata=_opt("clip the gradient norm to X > 0 (default: off)",
                                                                   metavar="X"))
    augment: bool = field(default=False, metadata=_opt(
        "augment training images: crops (+ flips) for MNIST, Fashion-MNIST and CIFAR-10, rotations and flips "
        "for galaxies"))
    random_erasing: float = field(default=0.0, metadata=_opt(
        "probability of erasing a random rectangle (2 to 33 percent of the image) of each training image to the mean "
        "colour (Zhong et al., 2020), in [0, 1]; needs --loader fast (default: 0, off)", metavar="P"))
    seed: int = field(default=0, metadata=_opt("random seed", metavar="K"))
    quick: bool = field(default=False, metadata=_opt(
        "quick mode: the small samples shipped with cnncourse, no network", "where and how fast"))
    device: str = field(default="auto", metadata=_opt(
        "auto (the best accelerator, else the CPU), cpu, cuda, cuda:1, mps", "where and how fast", metavar="DEV"))
    amp: str = field(default="auto", metadata=_opt(
        "mixed precision: auto = bf16/fp16 on CUDA, off on CPU; bf16 speeds up ResNets only on CPUs with native "
        "bf16 (AVX-512 BF16 or AMX) and is ~10x slower elsewhere", "where and how fast",
        choices=("auto", "bf16", "fp16", "off")))
    channels_last: bool = field(default=False, metadata=_opt(
        "NHWC memory format (faster convolutions on GPUs and many CPUs)", "where and how fast"))
    compile: bool = field(default=False, metadata=_opt("torch.compile the model (slow start, faster steps)",
                                                       "where and how fast"))
    loader: str = field(default="fast", metadata=_opt(
        "fast: whole data set in memory, batches made on the device; torch: DataLoader with per-image "
        "transforms (same preprocessing)", "where and how fast", choices=("fast", "torch")))
    workers: Optional[int] = field(default=None, metadata=_opt(
        "DataLoader worker processes for --loader torch (default: per platform)", "where and how fast",
        metavar="W"))
    threads: Optional[int] = field(default=None, metadata=_opt(
        "CPU threads for torch (default: torch's choice, one per core); 1 is much faster when several programs "
        "share the CPU", "where and how fast", metavar="T"))
    data_root: Optional[str] = field(default=None, metadata=_opt(
        "where data sets are stored/downloaded (default: $CNNCOURSE_DATA or ~/.cache/cnncourse)",
        "where and how fast", metavar="PATH"))

    # ----------------------------------------------------------------- conversions
    @classmethod
    def names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        return cls(**{k: v for k, v in values.items() if k in cls.names()})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def check_types(self, where: str = "run.json") -> None:
        """ValueError, naming the setting, for a value of the wrong type (a hand-edited run.json)."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            if value is None and (value == f.default or "Optional" in kind):
                continue
            wanted = (bool,) if "bool" in kind else (int,) if "int" in kind else (int, float) if "float" in kind \
                else (str,)
            if not isinstance(value, wanted) or (wanted != (bool,) and isinstance(value, bool)):
                noun = {bool: "true or false", int: "whole number", float: "number", str: "text"}[wanted[-1]]
                raise ValueError(f"{where}: the setting {f.name} is {value!r}, not a {noun}")

    def data_seed(self) -> int:
        """The seed of the hold-out and the subset: --val-seed, else --seed."""
        return self.seed if self.val_seed is None else self.val_seed

    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else (QUICK_EPOCHS if self.quick else FULL_EPOCHS)

    def fit_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of :func:`cnncourse.train.fit` these settings mean."""
        return dict(epochs=self.resolved_epochs(), optimizer=self.optimizer, lr=self.lr,
                    weight_decay=self.weight_decay, momentum=self.momentum,
                    schedule=None if self.schedule == "none" else self.schedule,
                    label_smoothing=self.label_smoothing,
                    amp={"off": False, "auto": None}.get(self.amp, self.amp),
                    channels_last=self.channels_last, compile=self.compile, grad_clip=self.grad_clip,
                    seed=self.seed)

    def validate(self) -> None:
        """Raise ValueError, naming the option, for a value no run can use."""
        from cnncourse.train import check_options
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), e.g. 0.1; got {self.val_fraction}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"--random-erasing is a probability in [0, 1], e.g. 0.5; got {self.random_erasing}")
        if self.random_erasing and self.loader != "fast":
            raise ValueError("--random-erasing needs --loader fast (the in-memory loader erases on the device); "
                             "leave --loader out")
        for name, low in (("batch_size", 1), ("image_size", 1), ("threads", 1), ("workers", 0),
                          ("train_subset", 1), ("seed", 0), ("val_seed", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}; got {value}")
        for name, (high, reason) in LIMITS.items():
            for key in (name, "val_seed") if name == "seed" else (name,):
                value = getattr(self, key)
                if value is not None and value > high:
                    raise ValueError(f"--{key.replace('_', '-')} must be at most {high:,} ({reason}); got {value:,}")
        try:
            check_options(**self.fit_kwargs())
        except ValueError as error:
            name = str(error).split(" ", 1)[0]
            raise ValueError(f"--{name.replace('_', '-')}{str(error)[len(name):]}") from None

    def build_model(self, num_classes: int, in_channels: int, image_size: int):
        """The model these settings train on ``image_size``-px images (ResNet-18/34/50/...: the
        small-input stem by default below 64 px); ValueError, saying what to pass, when it cannot take them."""
        from cnncourse.models import builder_options, canonical_model_name, get_model, min_input_size

        name = canonical_model_name(str(self.model))
        options, kwargs = builder_options(name), {}
        if "image_size" in options:
            kwargs["image_size"] = image_size
        if "small_input" in options:
            kwargs["small_input"] = image_size < 64 if self.small_input is None else bool(self.small_input)
        elif self.small_input is not None:
            raise ValueError(f"--small-input applies to resnet18/34/50/101/152; {name} has no such option: "
                             "leave it out")
        needed = min_input_size(name, num_classes=num_classes, in_channels=in_channels, **kwargs)
        if image_size < needed:
            fixes = [f"--image-size {needed} (or larger)"]
            if "small_input" in options and not kwargs["small_input"]:
                fixes.append("--small-input")
            cause = (f"--image-size {image_size} is too small for {name}" if self.image_size is not None else
                     f"{self.data} has {image_size}-px images, too small for {name}")
            raise ValueError(f"{cause}: it needs at least {needed} px; pass " + " or ".join(fixes))
        return get_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)

    def command(self, out: str) -> str:
        """A ``cnncourse train`` command that runs this whole experiment again from the start."""
        parts = ["cnncourse", "train", "--model", str(self.model), "--data", str(self.data),
                 "--epochs", str(self.resolved_epochs())]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "data", "epochs") + MACHINE_SETTINGS or value == f.default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + flag[2:])
            else:
                parts += [flag, str(value)]
        return " ".join(parts + ["--out", str(out)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line option per :class:`TrainConfig` field, in its help group."""
    groups: Dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flags = ["--" + f.name.replace("_", "-")] + ([meta["short"]] if meta["short"] else [])
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        default = "" if f.default is None or "default:" in meta["help"] else f" (default: {f.default})"
        options: Dict[str, Any] = {"help": meta["help"] + default}
        if "bool" in kind:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = int if "int" in kind else float if "float" in kind else str
            if meta["choices"]:
                options["choices"] = meta["choices"]
            if meta["metavar"]:
                options["metavar"] = meta["metavar"]
        group.add_argument(*flags, **options)
