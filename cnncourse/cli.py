"""The ``cnncourse`` command: train any course model on any course data set, headless.

    cnncourse train --model lenet --data cifar10 --quick --out runs/demo
    cnncourse train --model resnet20 --data fashion-mnist --epochs 15 --augment --schedule onecycle --lr 0.01
    cnncourse train --out runs/demo --resume          # continue where runs/demo stopped
    cnncourse models | datasets | info

``train`` writes ``DIR/metrics.json`` (history, final test accuracy, provenance), ``DIR/curves.png``,
``DIR/confusion.png``, ``DIR/checkpoint.pt`` (after every epoch) and ``DIR/run.json`` (the settings,
so that ``--resume`` needs nothing else).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# The settings of ``train`` and their defaults; None means "decided at run time" (see _resolve).
TRAIN_DEFAULTS: Dict[str, object] = {
    "model": None, "data": None, "epochs": None, "batch_size": 64, "lr": 1e-3, "optimizer": "adam",
    "weight_decay": 0.0, "momentum": 0.9, "schedule": "none", "label_smoothing": 0.0,
    "image_size": None, "augment": False, "quick": False, "seed": 0, "device": "auto",
    "amp": "auto", "channels_last": False, "compile": False, "grad_clip": None, "loader": "fast",
    "workers": None, "data_root": None, "small_input": None, "threads": None,
}
QUICK_EPOCHS, FULL_EPOCHS = 1, 10
PAPER_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

EPILOG = """examples:
  cnncourse train --model lenet --data cifar10 --quick --out runs/demo
  cnncourse train --model lenet --data cifar10 --epochs 10 --lr 0.01   # the LeNet article's run
  cnncourse train --model resnet20 --data mnist --epochs 3 --optimizer sgd --lr 0.1 --schedule onecycle
  cnncourse train --out runs/demo --resume
  cnncourse models
  cnncourse datasets

Quick mode (--quick, or CNNCOURSE_QUICK=1) uses the small real samples shipped with cnncourse:
no download, seconds on a CPU. Full data sets are downloaded to --data-root, else $CNNCOURSE_DATA,
else ~/.cache/cnncourse."""


class UsageError(Exception):
    """A problem the user can fix from the command line (printed without a traceback, exit 2)."""


# --------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnncourse",
        description="Train and evaluate the course's CNNs headless: metrics (JSON) and plots (PNG).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnncourse {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    train = commands.add_parser(
        "train", help="train a model on a data set and write metrics and plots",
        description="Train MODEL on DATA, evaluate on the test split after every epoch, and write "
                    "DIR/metrics.json (history, final test accuracy, provenance), DIR/curves.png, "
                    "DIR/confusion.png and DIR/checkpoint.pt (after every epoch; --resume continues "
                    "from it). Accuracies are fractions in metrics.json and percent in the plots.",
        epilog="example: cnncourse train --model lenet --data cifar10 --quick --out runs/demo",
        argument_default=argparse.SUPPRESS)
    what = train.add_argument_group("what to train")
    what.add_argument("--model", "-m", metavar="M",
                      help="model name (see `cnncourse models`), e.g. lenet, resnet20, resnet18, vgg16, "
                           "resnet50_keras_article (required unless --resume)")
    what.add_argument("--data", "-d", metavar="D",
                      help="data set: mnist, fashion-mnist, cifar10, galaxy10, galaxy10-sdss, or the path of "
                           "an image folder (one sub-folder per class, optionally in train/ and test/) "
                           "(required unless --resume)")
    what.add_argument("--image-size", type=int, metavar="S",
                      help="resize images to SxS (default: the data set's own size)")
    what.add_argument("--small-input", action=argparse.BooleanOptionalAction,
                      help="ResNet-18/34/50/...: 3x3 stride-1 stem for small images (default: on below 64 px)")
    how = train.add_argument_group("how to train")
    how.add_argument("--epochs", "-e", type=int, metavar="N",
                     help=f"epochs (default: {QUICK_EPOCHS} in quick mode, else {FULL_EPOCHS})")
    how.add_argument("--batch-size", "-b", type=int, metavar="B", help="training batch size (default: 64)")
    how.add_argument("--lr", type=float, metavar="X", help="(peak) learning rate (default: 0.001)")
    how.add_argument("--optimizer", "-o", choices=("sgd", "adam", "adamw"),
                     help="sgd is SGD with Nesterov momentum (default: adam)")
    how.add_argument("--momentum", type=float, metavar="X", help="momentum for sgd (default: 0.9)")
    how.add_argument("--weight-decay", type=float, metavar="X", help="weight decay (default: 0)")
    how.add_argument("--schedule", choices=("none", "step", "cosine", "onecycle"),
                     help="learning-rate schedule, stepped every batch (default: none)")
    how.add_argument("--label-smoothing", type=float, metavar="X", help="label smoothing (default: 0)")
    how.add_argument("--grad-clip", type=float, metavar="X", help="clip the gradient norm to X (default: off)")
    how.add_argument("--augment", action=argparse.BooleanOptionalAction,
                     help="augment training images: crops (+ flips) for MNIST, Fashion-MNIST and "
                          "CIFAR-10, rotations and flips for galaxies (default: off)")
    how.add_argument("--seed", type=int, metavar="K", help="random seed (default: 0)")
    run = train.add_argument_group("where and how fast")
    run.add_argument("--quick", action=argparse.BooleanOptionalAction,
                     help="quick mode: the small samples shipped with cnncourse, no network (default: off)")
    run.add_argument("--device", metavar="DEV",
                     help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps (default: auto)")
    run.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"),
                     help="mixed precision: auto = bf16/fp16 on CUDA, off on CPU; bf16 can speed "
                          "up ResNets on CPUs with native bf16 (default: auto)")
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                     help="NHWC memory format (faster convolutions on GPUs and many CPUs) (default: off)")
    run.add_argument("--compile", action=argparse.BooleanOptionalAction,
                     help="torch.compile the model (slow start, faster steps) (default: off)")
    run.add_argument("--loader", choices=("fast", "torch"),
                     help="fast: whole data set in memory, batches made on the device; torch: "
                          "DataLoader with per-image transforms (default: fast)")
    run.add_argument("--workers", type=int, metavar="W",
                     help="DataLoader worker processes for --loader torch (default: per platform)")
    run.add_argument("--threads", type=int, metavar="T",
                     help="CPU threads for torch (default: torch's choice, one per core); 1 is much "
                          "faster when several programs share the CPU")
    run.add_argument("--data-root", metavar="PATH",
                     help="where data sets are stored/downloaded (default: $CNNCOURSE_DATA or ~/.cache/cnncourse)")
    out = train.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="output folder (default: runs/<model>-<data>)")
    out.add_argument("--resume", action="store_true",
                     help="continue from DIR/checkpoint.pt with the settings saved in DIR/run.json "
                          "(options given again override them, e.g. more --epochs)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")

    commands.add_parser("models", help="list the models", description="List the model names for --model "
                        "with their parameter counts for 10 classes (3 input channels).")
    commands.add_parser("datasets", help="list the data sets", description="List the data sets for --data "
                        "with their classes, image size and where their files go.")
    commands.add_parser("info", help="versions and the device that would be used",
                        description="Print the versions of cnncourse, torch and torchvision, the "
                                    "device `train` would use, and whether quick mode is on.")
    return parser


# --------------------------------------------------------------------------------------- helpers
def _version() -> str:
    try:
        from cnncourse import __version__
        return __version__
    except Exception:  # pragma: no cover - only during a broken install
        return "unknown"


def _git_commit(out: Optional[Path] = None, folder: Optional[Path] = None) -> Dict[str, Optional[object]]:
    """Commit of the git checkout holding cnncourse, if any, and whether its tracked files differ from
    it. Changes inside ``out`` (the run's own folder, e.g. results/<name> being re-recorded) do not
    count: they are this run's outputs, not a change to the code that made them."""
    folder = Path(__file__).resolve().parent if folder is None else Path(folder)
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        changed = [line[3:].strip('"') for line in status.stdout.splitlines() if line.strip()]
        if out is not None and top:
            own = Path(out).resolve()
            changed = [name for name in changed if not (Path(top) / name).resolve().is_relative_to(own)]
        return {"commit": commit.stdout.strip(), "dirty": bool(changed)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device) -> str:
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return _cpu_name()


def _provenance(argv: Sequence[str], settings: dict, device, started: float, resumed_from: int,
                git: Dict[str, Optional[object]]) -> dict:
    """Where a run came from; ``git`` is read when the run starts, so it names the code that ran."""
    import torch
    import torchvision
    from cnncourse.config import quick_mode
    return {
        "command": "cnncourse " + " ".join(argv),
        "argv": list(argv),
        "settings": settings,
        "cnncourse_version": _version(),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": _device_name(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "quick_mode": quick_mode(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "resumed_from_epoch": resumed_from,
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 3),
    }


def _write_json(path: Path, payload: dict) -> None:
    from cnncourse.train import _atomic_write
    text = json.dumps(payload, indent=2, default=str).encode()
    _atomic_write(path, lambda handle: handle.write(text))


def _resolve(given: dict) -> dict:
    """Fill the settings not given on the command line: from DIR/run.json with --resume, else defaults."""
    resume = bool(given.pop("resume", False))
    given.pop("no_progress", None)
    out = given.get("out")
    saved: dict = {}
    if resume:
        if out is None:
            raise UsageError("--resume needs --out DIR (the folder of the run to continue)")
        run_file = Path(out) / "run.json"
        if not (Path(out) / "checkpoint.pt").exists():
            raise UsageError(f"nothing to resume: {Path(out) / 'checkpoint.pt'} does not exist "
                             "(run the same command without --resume to start)")
        if run_file.exists():
            saved = json.loads(run_file.read_text())["settings"]
    settings = dict(TRAIN_DEFAULTS)
    settings.update({k: v for k, v in saved.items() if k in TRAIN_DEFAULTS})
    settings.update({k: v for k, v in given.items() if k in TRAIN_DEFAULTS})
    if not settings["model"] or not settings["data"]:
        raise UsageError("train needs --model and --data (e.g. --model lenet --data cifar10); "
                         "see `cnncourse models` and `cnncourse datasets`")
    if settings["epochs"] is None:
        settings["epochs"] = QUICK_EPOCHS if settings["quick"] else FULL_EPOCHS
    settings["out"] = str(out) if out is not None else str(Path("runs") / f"{settings['model']}-"
                                                             f"{Path(str(settings['data'])).name}")
    settings["resume"] = resume
    return settings


# --------------------------------------------------------------------------------------- train
def _build_data(settings: dict, device, seed: int):
    """(train, test, classes, info) for the chosen loader."""
    from cnncourse.data import default_transform, get_dataset, make_loader
    from cnncourse.fastdata import fast_loaders

    name, size = settings["data"], settings["image_size"]
    info = _data_info(name)
    if settings["loader"] == "fast":
        train, test = fast_loaders(name, batch_size=settings["batch_size"], augment=settings["augment"],
                                   image_size=size, device=device, seed=seed, root=settings["data_root"],
                                   channels_last=settings["channels_last"])
        classes = train.classes or list(info.classes)
        return train, test, classes, info
    datasets = [get_dataset(name, split, root=settings["data_root"],
                            transform=default_transform(name, train=split == "train",
                                                        augment=settings["augment"], image_size=size),
                            seed=seed) for split in ("train", "test")]
    train = make_loader(datasets[0], batch_size=settings["batch_size"], shuffle=True,
                        num_workers=settings["workers"], seed=seed)
    test = make_loader(datasets[1], batch_size=max(256, 2 * settings["batch_size"]), shuffle=False,
                       num_workers=settings["workers"])
    return train, test, list(getattr(datasets[0], "classes", info.classes)), info


def _count(loader) -> int:
    """Number of images behind a TensorLoader or a DataLoader."""
    return loader.num_samples if hasattr(loader, "num_samples") else len(loader.dataset)


def _image_size(loader) -> int:
    """Width of the images a loader yields, without making a batch."""
    if hasattr(loader, "images"):
        return int(loader.images.shape[-1])
    return int(loader.dataset[0][0].shape[-1])


def _data_info(name: str):
    """The DatasetInfo of a course data set, or of an image folder given by its path."""
    from cnncourse.data import dataset_info, folder_info, is_known_name
    return dataset_info(name) if is_known_name(name) else folder_info(name)


def _check_names(settings: dict) -> None:
    from cnncourse.data import DATASETS, is_known_name
    from cnncourse.models import MODELS
    data = str(settings["data"])
    if not is_known_name(data) and not Path(data).expanduser().is_dir():
        raise UsageError(f"unknown data set {data!r}; known: {', '.join(DATASETS)}, or the path of an image "
                         "folder (one sub-folder per class, optionally inside train/ and test/)")
    key = str(settings["model"]).strip().lower().replace("-", "").replace("_", "")
    if key not in {name.replace("_", "") for name in MODELS}:
        raise UsageError(f"unknown model {settings['model']!r}; known: {', '.join(MODELS)}")


def _build_model(settings: dict, info, image_size: int):
    from cnncourse.models import get_model, min_input_size

    name = settings["model"]
    kwargs = {}
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key == "lenet":
        kwargs["image_size"] = image_size
    elif key in PAPER_RESNETS:
        small = settings["small_input"]
        kwargs["small_input"] = image_size < 64 if small is None else bool(small)
    needed = min_input_size(name, num_classes=info.num_classes, in_channels=info.in_channels, **kwargs)
    if image_size < needed:
        raise UsageError(f"{name} needs images of at least {needed} px but {settings['data']} gives "
                         f"{image_size} px: pass --image-size {needed} (or larger)"
                         + (" or --small-input" if key in PAPER_RESNETS else ""))
    return get_model(name, num_classes=info.num_classes, in_channels=info.in_channels, **kwargs)


def train_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    given = vars(args).copy()
    given.pop("command", None)
    progress = not given.get("no_progress", False)
    settings = _resolve(given)
    out = Path(settings["out"])
    started = time.time()
    git = _git_commit(out)

    from cnncourse import config
    if settings["quick"]:
        config.set_quick_mode(True)
    from cnncourse.data import ChecksumError, DataUnavailableError
    from cnncourse.plot import plot_confusion_matrix, plot_learning_curves
    from cnncourse.train import TrainingDiverged, fit, predict
    from cnncourse.utils import count_parameters, get_device, seed_everything

    _check_names(settings)
    if int(settings["epochs"]) < 1:
        raise UsageError("--epochs must be at least 1")
    if settings["threads"]:
        import torch
        torch.set_num_threads(int(settings["threads"]))
    try:
        device = get_device(settings["device"])
    except ValueError as error:
        raise UsageError(str(error)) from None
    seed = int(settings["seed"])
    seed_everything(seed)
    try:
        train, test, classes, info = _build_data(settings, device, seed)
    except DataUnavailableError as error:
        raise UsageError(f"{error}\n\nOn the command line: --data-root DIR chooses the data folder; "
                         "--quick runs on the small real samples shipped with cnncourse (no network, no "
                         "download).") from None
    except ChecksumError as error:
        raise UsageError(str(error)) from None
    image_size = _image_size(test)
    model = _build_model(settings, info, image_size)

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    resumed_from = 0
    if settings["resume"]:
        from cnncourse.train import load_checkpoint
        resumed_from = int(load_checkpoint(checkpoint, map_location="cpu")["epoch"])
    saved_settings = {k: settings[k] for k in TRAIN_DEFAULTS}
    _write_json(out / "run.json", {"settings": saved_settings, "command": "cnncourse " + " ".join(argv)})

    print(f"cnncourse train: {settings['model']} ({count_parameters(model):,} parameters) on "
          f"{info.title}{' (quick-mode sample)' if config.quick_mode() else ''}, "
          f"{_count(train):,} training images "
          f"{image_size}x{image_size}, {settings['epochs']} epoch(s), device {device}"
          f" ({_device_name(device)})", file=sys.stderr)
    amp = False if settings["amp"] == "off" else (None if settings["amp"] == "auto" else settings["amp"])
    schedule = None if settings["schedule"] == "none" else settings["schedule"]
    try:
        history = fit(model, train, test, epochs=int(settings["epochs"]), optimizer=settings["optimizer"],
                      lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"]),
                      momentum=float(settings["momentum"]), schedule=schedule,
                      label_smoothing=float(settings["label_smoothing"]), amp=amp,
                      channels_last=bool(settings["channels_last"]), compile=bool(settings["compile"]),
                      grad_clip=settings["grad_clip"], device=device, checkpoint=checkpoint,
                      resume=settings["resume"], seed=None, progress=progress)
    except TrainingDiverged as error:
        print(f"cnncourse train: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as error:
        raise UsageError(str(error)) from None

    metrics = {
        "model": settings["model"], "data": settings["data"], "epochs": len(history),
        "accuracy_unit": "fraction (0-1)",
        "test_accuracy": history[-1]["test_acc"] if len(history) else None,
        "test_loss": history[-1]["test_loss"] if len(history) else None,
        "best_test_accuracy": history.best("test_acc")["test_acc"] if len(history) else None,
        "train_accuracy": history[-1]["train_acc"] if len(history) else None,
        "num_parameters": count_parameters(model),
        "num_train_images": _count(train), "num_test_images": _count(test),
        "image_size": image_size, "classes": list(classes), "interrupted": history.interrupted,
        "history": history.to_list(),
        "provenance": _provenance(argv, saved_settings, device, started, resumed_from, git),
    }
    if history.interrupted:
        _write_json(out / "metrics.json", metrics)
        print(f"cnncourse train: interrupted; continue with: cnncourse train --out {out} --resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    predictions = predict(model, test)
    matrix_figure = plot_confusion_matrix(predictions, class_names=classes,
                                          title=f"{settings['model']} on {info.title}: confusion matrix")
    matrix_figure.savefig(out / "confusion.png", dpi=100)
    if len(history):
        curves = plot_learning_curves(history, title=f"{settings['model']} on {info.title}")
        curves.savefig(out / "curves.png", dpi=100)
    metrics["provenance"] = _provenance(argv, saved_settings, device, started, resumed_from, git)
    _write_json(out / "metrics.json", metrics)
    accuracy = metrics["test_accuracy"]
    print(f"cnncourse train: test accuracy {100 * accuracy:.2f} % after {len(history)} epoch(s); wrote "
          f"{out / 'metrics.json'}, {out / 'curves.png'}, {out / 'confusion.png'}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------- listings
def models_command() -> int:
    import torch
    from cnncourse.models import MODELS, get_model
    from cnncourse.utils import count_parameters
    print(f"{'model':<26} {'parameters (10 classes)':>24}")
    for name in MODELS:
        with torch.device("meta"):
            model = get_model(name, num_classes=10, in_channels=3)
        print(f"{name:<26} {count_parameters(model):>24,}")
    print("\nResNet-18/34/50/...: --small-input (3x3 stem) is on by default below 64 px; resnet20/32/56 "
          "are He et al.'s CIFAR ResNets (cheap on a CPU).")
    return EXIT_OK


def datasets_command() -> int:
    from cnncourse.data import DATASETS, dataset_info
    for name in DATASETS:
        info = dataset_info(name)
        print(f"{name:<15} {info.title}: {info.num_images:,} images {info.image_size}x{info.image_size}x"
              f"{info.in_channels}, {info.num_classes} classes; files in {info.location()}")
        print(f"{'':<15} classes: {', '.join(info.classes)}")
    print("\nAny image folder (one sub-folder per class) works too: --data path/to/folder")
    return EXIT_OK


def info_command() -> int:
    import torch
    import torchvision
    from cnncourse.config import data_root, quick_mode
    from cnncourse.utils import describe_device
    print(f"cnncourse   {_version()}\ntorch       {torch.__version__}\ntorchvision {torchvision.__version__}")
    print(f"python      {platform.python_version()} ({platform.platform()})")
    print(f"device      {describe_device()}")
    print(f"cpu         {_cpu_name()} ({os.cpu_count()} logical CPUs, torch uses {torch.get_num_threads()} threads)")
    print(f"quick mode  {'on' if quick_mode() else 'off'}\ndata folder {data_root()}")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``cnncourse`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "train":
            return train_command(args, argv)
        if args.command == "models":
            return models_command()
        if args.command == "datasets":
            return datasets_command()
        return info_command()
    except UsageError as error:
        print(f"cnncourse {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cnncourse: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
