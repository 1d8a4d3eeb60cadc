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
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from cnncourse.runconfig import RESUMABLE, TrainConfig, add_arguments

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
WEIGHTS_FILE = "model.pt"

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
class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong option ends in two short lines instead of the whole (long) usage text."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --epoch is not --epochs: a typo is an error, not a guess
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnncourse",
        description="Train and evaluate the course's CNNs headless: metrics (JSON) and plots (PNG).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnncourse {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a model on a data set and write metrics and plots",
        description="Train MODEL on DATA, evaluate on the test split after every epoch, and write "
                    "DIR/metrics.json (history, final test accuracy, provenance), DIR/curves.png, "
                    "DIR/confusion.png and DIR/checkpoint.pt (after every epoch; --resume continues "
                    "from it). Accuracies are fractions in metrics.json and percent in the plots.",
        epilog="example: cnncourse train --model lenet --data cifar10 --quick --out runs/demo",
        argument_default=argparse.SUPPRESS)
    add_arguments(train)
    out = train.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="output folder (default: runs/<model>-<data>)")
    out.add_argument("--resume", action="store_true",
                     help="continue from DIR/checkpoint.pt with the settings saved in DIR/run.json; only "
                          f"{', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} may be given again "
                          "(more --epochs continues training, except with a schedule)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace the run DIR holds (deletes only a run's files: run.json, checkpoint.pt, "
                          "metrics.json, model.pt and the plots); without it a folder holding a run is refused")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    out.add_argument("--debug", action="store_true",
                     help="show Python tracebacks for errors (also CNNCOURSE_DEBUG=1)")

    speed = commands.add_parser(
        "speedrun", help="notebook 9's speedruns: MNIST and CIFAR-10 (airbench's recipe) on a CPU or a GPU",
        description="Train the speedrun network and write DIR/metrics.json with train_seconds (first to last "
                    "optimisation step), validation and test accuracy and the CPU's capability. MNIST holds "
                    "out 10 %% of the training images for validation.",
        epilog="example: cnncourse speedrun --seed 0 --out results/speedrun-mnist/recipe-s0")
    speed.add_argument("--task", choices=("mnist", "cifar10"), default="mnist")
    speed.add_argument("--seed", type=int, default=0)
    speed.add_argument("--val-fraction", type=float, default=None, metavar="F",
                       help="hold out this fraction of every class of the training set for validation (CIFAR-10: "
                            "default 0, train on all 50,000 images; MNIST: always 0.1)")
    speed.add_argument("--val-seed", type=int, default=0, metavar="K",
                       help="seed of the validation hold-out (default 0, the same for every --seed)")
    speed.add_argument("--without", metavar="TRICK", default=None,
                       help="remove one trick of the recipe, by its name in cnncourse.speedrun.TRICKS (MNIST) or "
                            "cnncourse.cifar_speedrun.TRICKS (CIFAR-10), e.g. 'BatchNorm' (a wrong name lists them)")
    speed.add_argument("--epochs", type=float, default=None,
                       help="override the recipe's epochs (CIFAR-10 may take a fraction, e.g. 9.9)")
    speed.add_argument("--set", dest="recipe_set", metavar="FIELD=VALUE", action="append", default=[],
                       help="CIFAR-10: change one field of cnncourse.cifar_speedrun.CifarRecipe (repeatable), "
                            "e.g. --set whiten_sample=first")
    speed.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    speed.add_argument("--data-root", metavar="DIR", default=None, help="the data folder (as for train)")
    speed.add_argument("--data", metavar="PATH", default=None,
                       help="CIFAR-10 as an image folder (train/ and test/, one sub-folder per class), absolute "
                            "or relative to the data folder (default: CIFAR-10's own files in the data folder)")
    speed.add_argument("--out", metavar="DIR", required=True, help="output folder for metrics.json")
    speed.add_argument("--overwrite", action="store_true", help="replace the metrics.json DIR holds")
    speed.add_argument("--no-progress", action="store_true", help="no progress bar")

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


RUN_OUTPUTS = ("metrics.json", "run.json", "curves.png", "confusion.png", WEIGHTS_FILE)


def git_commit(out: Optional[Path] = None, folder: Optional[Path] = None) -> Dict[str, Optional[object]]:
    """Commit of the git checkout holding cnncourse, if any, and whether its tracked files differ from
    it. Run outputs do not count: anything inside ``out`` (the run's own folder, e.g. results/<name>
    being re-recorded) and the output files of other runs (metrics.json, run.json, the plots, the
    weights, e.g. of a run going on beside this one) are results, not a change to the code."""
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
        changed = [name for name in changed if Path(name).name not in RUN_OUTPUTS]
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


def _provenance(argv: Sequence[str], config: TrainConfig, out: Path, device, started: float, resumed_from: int,
                git: Dict[str, Optional[object]], world_size: int) -> dict:
    """Where a run came from; ``git`` is read when the run starts, so it names the code that ran.
    ``command`` re-runs the whole experiment (also after a resume); ``argv`` is what was typed."""
    import torch
    import torchvision
    from cnncourse.config import quick_mode, scale
    return {
        "command": config.command(str(out)),
        "argv": list(argv),
        "settings": config.to_dict(),
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
        "world_size": world_size,
        "quick_mode": quick_mode(),
        "scale": scale(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "resumed_from_epoch": resumed_from,
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 3),
    }


def _write_json(path: Path, payload: dict) -> None:
    from cnncourse.checkpointing import atomic_write
    atomic_write(path, json.dumps(payload, indent=2, default=str).encode())


def _claim_out(out: Path, resume: bool, overwrite: bool, names=None, command: str = "cnncourse train") -> None:
    """Make ``out`` this run's folder (cnncourse.runfolder), before any data is loaded: a folder holding
    another run, or one another process is writing into, is refused. Under torchrun only rank 0 claims it."""
    from cnncourse.runfolder import RUN_FILES, RunFolderError, claim_run_folder
    if int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        claim_run_folder(out, resume=resume, overwrite=overwrite, names=names or RUN_FILES, command=command)
    except RunFolderError as error:
        raise UsageError(str(error)) from None


def _data_source(config: TrainConfig) -> str:
    """What the loaders read for --data: see cnncourse.data.resolve_data."""
    from cnncourse.data import resolve_data
    return resolve_data(config.data, config.data_root)


def _resolve(given: dict) -> Tuple[TrainConfig, Path, Optional[dict]]:
    """The run's settings, its folder, and with --resume the checkpoint to continue from.

    With --resume, the settings come from DIR/run.json and the length from the checkpoint; an option
    given again that would change what is trained is refused, before anything is written."""
    resume, out = given.pop("resume", False), given.pop("out", None)
    for key in ("no_progress", "debug", "overwrite"):
        given.pop(key, None)
    if not resume:
        config = TrainConfig.from_dict(given)
        if not config.model or not config.data:
            raise UsageError("train needs --model and --data (e.g. --model lenet --data cifar10); "
                             "see `cnncourse models` and `cnncourse datasets`")
        from cnncourse.data import portable_data_name
        config.data = portable_data_name(config.data, config.data_root)
        return config, Path(out) if out else Path("runs") / f"{config.model}-{Path(str(config.data)).name}", None
    if out is None:
        raise UsageError("--resume needs --out DIR (the folder of the run to continue)")
    out = Path(out)
    checkpoint, run_file = out / "checkpoint.pt", out / "run.json"
    if not checkpoint.exists():
        raise UsageError(f"nothing to resume: {checkpoint} does not exist (run the same command without "
                         "--resume to start)")
    try:
        config = TrainConfig.from_dict(json.loads(run_file.read_text())["settings"])
        config.check_types(str(run_file))
    except FileNotFoundError:
        raise UsageError(f"{run_file} is missing, so the run's settings are unknown: start the run again "
                         "without --resume") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(f"{run_file} is damaged ({type(error).__name__}: {error}): start the run again "
                         "without --resume, or restore the file") from None
    from cnncourse.checkpointing import load_checkpoint
    state = load_checkpoint(checkpoint, map_location="cpu", mmap=True)  # only its epochs: fit reads the weights
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise UsageError(f"{checkpoint} is not a cnncourse training checkpoint: delete it to start again")
    changed = [f"--{k.replace('_', '-')} {v} (the run used {getattr(config, k)})" for k, v in given.items()
               if k not in RESUMABLE and getattr(config, k) != v]
    if changed:
        raise UsageError("--resume continues a run with its own settings, but these options would change it: "
                         + "; ".join(changed) + ". Start a new run (another --out) to change them; only "
                         + ", ".join("--" + n.replace("_", "-") for n in RESUMABLE) + " may be given again")
    config.epochs = int(state.get("epochs", config.resolved_epochs()))
    if "epochs" in given and isinstance(given["epochs"], int) and given["epochs"] < state["epoch"]:
        raise UsageError(f"--epochs {given['epochs']} is fewer than the {state['epoch']} epoch(s) {out} has "
                         f"already trained: a resume can only train longer (--epochs {state['epoch']} or more); "
                         "start a new run (another --out) for a shorter one")
    for key in RESUMABLE:
        if key in given:
            setattr(config, key, given[key])
    return config, out, state


def _started_with(out: Path, config: TrainConfig) -> int:
    """The epochs a resumed run was first started with (its run.json says; older records: its settings)."""
    try:
        record = json.loads((out / "run.json").read_text())
        return int(record.get("epochs_started_with", record["settings"]["epochs"] or config.resolved_epochs()))
    except (OSError, ValueError, KeyError, TypeError):
        return config.resolved_epochs()


def _rerun(config: TrainConfig, out: Path) -> str:
    """The command that starts this run again in ``out`` (its files replaced), with this machine's data folder."""
    command = config.command(str(out)).replace(" --out ", " --overwrite --out ", 1)
    return command + (f" --data-root {shlex.quote(str(config.data_root))}" if config.data_root else "")


def _build_data(config: TrainConfig, device, seed: int):
    """(train, val, test, classes, info) for the chosen loader (val None without --val-fraction);
    both loaders read the same data recipe."""
    from cnncourse.data import default_transform, get_dataset, make_loader
    from cnncourse.fastdata import fast_loaders

    name, size = _data_source(config), config.image_size
    info = _data_info(name)
    if config.loader == "fast":
        loaders = fast_loaders(name, batch_size=config.batch_size, augment=config.augment, image_size=size,
                               device=device, seed=seed, root=config.data_root, channels_last=config.channels_last,
                               preset=config.preset, val_fraction=config.val_fraction, subset=config.train_subset,
                               val_seed=config.data_seed(), erase=config.random_erasing)
        train, val, test = loaders if len(loaders) == 3 else (loaders[0], None, loaders[1])
        return train, val, test, train.classes or list(info.classes), info
    splits = ("train", "val", "test") if config.val_fraction else ("train", "test")
    datasets = [get_dataset(name, split, root=config.data_root, seed=config.data_seed(),
                            val_fraction=config.val_fraction,
                            subset=config.train_subset if split == "train" else None,
                            transform=default_transform(name, train=split == "train", augment=config.augment,
                                                        image_size=size, preset=config.preset, seed=seed))
                for split in splits]
    train = make_loader(datasets[0], batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
                        seed=seed)
    held = [make_loader(d, batch_size=max(256, 2 * config.batch_size), shuffle=False, num_workers=config.workers)
            for d in datasets[1:]]
    val, test = held if len(held) == 2 else (None, held[0])
    return train, val, test, list(getattr(datasets[0], "classes", info.classes)), info


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


def _check_names(config: TrainConfig) -> None:
    from cnncourse.data import DATASETS, is_known_name
    from cnncourse.models import MODELS, canonical_model_name
    data = _data_source(config)
    if not is_known_name(data) and not Path(data).expanduser().is_dir():
        raise UsageError(f"unknown data set {data!r}; known: {', '.join(DATASETS)}, or the path of an image "
                         "folder (one sub-folder per class, optionally inside train/ and test/)")
    try:
        canonical_model_name(str(config.model))
    except ValueError:
        raise UsageError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}") from None


def _build_model(config: TrainConfig, info, image_size: int):
    try:
        return config.build_model(info.num_classes, info.in_channels, image_size)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _save_weights(out: Path, model, half: bool = False) -> dict:
    """The trained weights as ``DIR/model.pt`` (a state_dict: ``torch.load(..., weights_only=True)``), with
    their SHA-256 for metrics.json, so that ``cnncourse.reference.load_model`` can check them. ``half``:
    floating-point tensors stored as float16 (half the bytes; the speedrun's shipped weights)."""
    import hashlib
    import io

    import torch
    from cnncourse.checkpointing import atomic_write
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_write(out / WEIGHTS_FILE, data)
    entry = {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return dict(entry, dtype="float16") if half else entry


def _save_figures(out: Path, history, predictions, classes, title: str) -> List[str]:
    """Draw curves.png and confusion.png; a failure is a warning (metrics.json is already written)."""
    from cnncourse.plot import plot_confusion_matrix, plot_learning_curves
    jobs = []
    if len(history):
        jobs.append(("curves.png", lambda: plot_learning_curves(history, title=title)))
    if predictions is not None:
        jobs.append(("confusion.png", lambda: plot_confusion_matrix(predictions, class_names=classes,
                                                                    title=f"{title}: confusion matrix")))
    written = []
    for filename, draw in jobs:
        try:
            draw().savefig(out / filename, dpi=100)
            written.append(str(out / filename))
        except (OSError, ValueError, RuntimeError) as error:
            print(f"cnncourse train: warning: {out / filename} was not written ({error}); metrics.json is "
                  "complete", file=sys.stderr)
    return written


def train_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    given = vars(args).copy()
    given.pop("command", None)
    progress = not given.get("no_progress", False)
    overwrite = bool(given.get("overwrite", False))
    config, out, resumed_state = _resolve(given)
    _check_names(config)
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    _claim_out(out, resume=resumed_state is not None, overwrite=overwrite)
    try:
        return _train(config, out, resumed_state, progress, argv)
    finally:
        from cnncourse.runfolder import release
        release(out)


def _train(config: TrainConfig, out: Path, resumed_state: Optional[dict], progress: bool, argv: Sequence[str]) -> int:
    started, git = time.time(), git_commit(out)

    from cnncourse import config as course_config
    if config.quick:
        course_config.set_quick_mode(True)
    elif not course_config.quick_mode():  # the command trains on the data set --data names, Galaxy10 included:
        course_config.set_scale("full")   # the laptop scale's Galaxy10 sample is for the lessons
    from cnncourse.parallel import setup as parallel_setup
    from cnncourse.train import TrainingDiverged, fit
    from cnncourse.utils import count_parameters, get_device, seed_everything

    if config.threads:
        import torch
        torch.set_num_threads(int(config.threads))
    try:
        rank, world, device = parallel_setup(get_device(config.device))
    except ValueError as error:
        raise UsageError(str(error)) from None
    seed_everything(config.seed)
    train, val, test, classes, info = _build_data(config, device, config.seed)
    image_size = _image_size(test)
    model = _build_model(config, info, image_size)
    resumed_from = int(resumed_state["epoch"]) if resumed_state is not None else 0
    run_record = {"settings": config.to_dict(), "command": config.command(str(out)),
                  "epochs_started_with": _started_with(out, config) if resumed_state is not None
                  else config.resolved_epochs()}
    if rank == 0:
        if resumed_state is None:
            _write_json(out / "run.json", run_record)
        print(f"cnncourse train: {config.model} ({count_parameters(model):,} parameters) on {info.title}"
              f"{' (quick-mode sample)' if course_config.quick_mode() else ''}, {_count(train):,} training "
              f"images {image_size}x{image_size}, {config.resolved_epochs()} epoch(s), device {device} "
              f"({_device_name(device)}){f', {world} processes' if world > 1 else ''}", file=sys.stderr)
    try:
        history = fit(model, train, test, **config.fit_kwargs(), device=device, checkpoint=out / "checkpoint.pt",
                      resume=resumed_state is not None, progress=progress and rank == 0, val_data=val,
                      test_every_epoch=config.test_every_epoch)
    except TrainingDiverged as error:
        print(f"cnncourse train: {error}", file=sys.stderr)
        return EXIT_FAILED
    if rank != 0:
        return EXIT_OK
    if resumed_state is not None:  # the resume was accepted: only now may the run's record change
        _write_json(out / "run.json", run_record)
    last = history[-1] if len(history) else {}
    metrics = {
        "model": config.model, "data": config.data, "epochs": len(history), "accuracy_unit": "fraction (0-1)",
        "test_accuracy": last.get("test_acc"), "test_loss": last.get("test_loss"),
        "val_accuracy": last.get("val_acc"), "val_loss": last.get("val_loss"),
        "best_val_accuracy": history.best("val_acc")["val_acc"] if val is not None and len(history) else None,
        "best_val_epoch": history.best("val_acc")["epoch"] if val is not None and len(history) else None,
        "train_accuracy": last.get("train_acc"), "num_parameters": count_parameters(model),
        "num_train_images": _count(train), "num_val_images": _count(val) if val is not None else 0,
        "num_test_images": _count(test),
        "image_size": image_size, "classes": list(classes), "interrupted": history.interrupted,
        "history": history.to_list(),
        "weights": None if history.interrupted else _save_weights(out, model),
        "provenance": {**_provenance(argv, config, out, device, started, resumed_from, git, world),
                       "epochs_started_with": run_record["epochs_started_with"],
                       "epochs_resumed_to": config.resolved_epochs() if resumed_state is not None else None},
    }
    _write_json(out / "metrics.json", metrics)  # first: a failing plot must not lose the run
    if history.interrupted:
        if (out / "checkpoint.pt").exists():
            print(f"cnncourse train: interrupted; {out / 'checkpoint.pt'} holds epoch {len(history)}; continue "
                  f"with: cnncourse train --out {out} --resume", file=sys.stderr)
        else:
            print(f"cnncourse train: interrupted before the first epoch ended, so there is no checkpoint to "
                  f"resume; start again with: {_rerun(config, out)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    figures = _save_figures(out, history, history.predictions, classes, f"{config.model} on {info.title}")
    accuracy, held = metrics["test_accuracy"], metrics["val_accuracy"]
    print(f"cnncourse train: {f'validation accuracy {100 * held:.2f} %, ' if held is not None else ''}"
          f"test accuracy {100 * accuracy:.2f} % after {len(history)} epoch(s); wrote "
          + ", ".join([str(out / "metrics.json")] + figures), file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------- listings
def speedrun_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run one speedrun and record it (see cnncourse.speedrun)."""
    import torch
    from cnncourse import speedrun
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.task == "mnist" and args.epochs is not None and args.epochs != int(args.epochs):
        raise UsageError(f"--epochs {args.epochs}: MNIST's speedrun takes a whole number of epochs")
    changes = {} if args.epochs is None else {"epochs": args.epochs if args.task == "cifar10" else int(args.epochs)}
    if args.without is not None:
        tricks = speedrun.TRICKS if args.task == "mnist" else _cifar_tricks()
        if args.without not in tricks:
            raise UsageError(f"--without {args.without!r}: for --task {args.task} choose one of "
                             f"{', '.join(map(repr, tricks))}")
        changes.update(tricks[args.without][1])
    if args.task == "mnist" and (args.data is not None or args.val_fraction is not None or args.recipe_set):
        raise UsageError("--data, --val-fraction and --set apply to --task cifar10 (MNIST's speedrun always reads "
                         "MNIST and holds out 10 %)")
    changes.update(_recipe_set(args.recipe_set))
    from cnncourse.runconfig import LIMITS  # the same bounds as `train`
    for name, value, high in (("--seed", args.seed, LIMITS["seed"][0]), ("--val-seed", args.val_seed, LIMITS["seed"][0]),
                              ("--epochs", args.epochs, LIMITS["epochs"][0])):
        if value is not None and not 0 <= value <= high:
            raise UsageError(f"{name} must be within 0..{high:,}; got {value}")
    if args.val_fraction is not None and not 0.0 <= args.val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), e.g. 0.1; got {args.val_fraction}")
    out = Path(args.out)
    _claim_out(out, resume=False, overwrite=args.overwrite, names=("metrics.json", WEIGHTS_FILE),
               command="cnncourse speedrun")
    try:
        if args.task == "mnist":
            result = speedrun.speedrun_mnist(seed=args.seed, root=args.data_root, progress=not args.no_progress,
                                             **changes)
            result["removed_trick"] = args.without
        else:
            from cnncourse.data import portable_data_name, resolve_data
            data = None if args.data is None else resolve_data(args.data, args.data_root)
            if data is not None and not Path(data).is_dir():
                raise UsageError(f"--data {args.data}: no such folder, nor inside the data folder; give an image "
                                 "folder with train/ and test/ (e.g. the CIFAR-10 JPEG copy)")
            from cnncourse.cifar_speedrun import speedrun_cifar10
            result = speedrun_cifar10(seed=args.seed, root=args.data_root, progress=not args.no_progress,
                                      data=data, val_fraction=args.val_fraction or 0.0,
                                      val_seed=args.val_seed, keep_model=True, **changes)
            result["weights"] = _save_weights(out, result.pop("model"), half=True)
            result["data"] = "cifar10" if data is None else portable_data_name(data, args.data_root)
            result["removed_trick"] = args.without
        result["quick_mode"] = _quick()
        path = speedrun.record(result, out, _speedrun_command(args, result.get("data")))
    finally:
        from cnncourse.runfolder import release
        release(out)
    split, key = ("test", "test_accuracy") if "test_accuracy" in result else ("validation", "val_accuracy")
    print(f"cnncourse speedrun: {result['train_seconds']:.1f} s of training, {split} accuracy "    # a CIFAR-10
          f"{100 * result[key]:.2f} %; wrote {path}", file=sys.stderr)                          # hold-out: no test
    return 0


def _recipe_set(pairs: Sequence[str]) -> dict:
    """--set FIELD=VALUE pairs as CifarRecipe changes, each value read as its field's type."""
    from dataclasses import fields
    from cnncourse.cifar_speedrun import CifarRecipe
    kinds = {f.name: type(getattr(CifarRecipe(), f.name)) for f in fields(CifarRecipe)}
    kinds = {name: kind for name, kind in kinds.items() if kind in (bool, int, float, str)}
    changes = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in kinds or not text:
            raise UsageError(f"--set {pair!r}: give FIELD=VALUE with FIELD one of {', '.join(kinds)}")
        kind = kinds[name]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError
                changes[name] = text.lower() == "true"
            else:
                changes[name] = kind(text)
        except ValueError:
            raise UsageError(f"--set {pair!r}: {name} takes a {kind.__name__}") from None
    return changes


def _cifar_tricks() -> dict:
    from cnncourse.cifar_speedrun import TRICKS
    return TRICKS


def _speedrun_command(args: argparse.Namespace, data: Optional[str]) -> str:
    """The command that re-runs a speedrun on any machine: no --threads, --data-root or absolute data path."""
    parts = ["cnncourse", "speedrun", "--task", args.task, "--seed", str(args.seed)]
    epochs = None if args.epochs is None else (int(args.epochs) if args.epochs == int(args.epochs) else args.epochs)
    for flag, value in (("--without", args.without), ("--epochs", epochs),
                        ("--data", data if data not in (None, "cifar10") else None),
                        ("--val-fraction", args.val_fraction or None),
                        ("--val-seed", args.val_seed if args.val_fraction else None)):
        if value is not None:
            parts += [flag, str(value)]
    for pair in args.recipe_set:
        parts += ["--set", pair]
    return " ".join(shlex.quote(p) for p in parts + ["--out", str(args.out)])


def _quick() -> bool:
    from cnncourse.config import quick_mode
    return quick_mode()


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
    from cnncourse.config import SCALES, data_root, scale
    from cnncourse.utils import describe_device
    print(f"cnncourse   {_version()}\ntorch       {torch.__version__}\ntorchvision {torchvision.__version__}")
    print(f"python      {platform.python_version()} ({platform.platform()})")
    print(f"device      {describe_device()}")
    from cnncourse.train import cpu_has_native_bf16
    print(f"cpu         {_cpu_name()} ({os.cpu_count()} logical CPUs, torch uses {torch.get_num_threads()} threads)")
    bf16 = {True: "yes (--amp bf16 can speed up ResNets)", False: "no (--amp bf16 would be ~10x slower: keep it off)",
            None: "unknown"}[cpu_has_native_bf16()]
    print(f"native bf16 {bf16}")
    print(f"scale       {scale()} ({SCALES[scale()]})\ndata folder {data_root()}")
    return EXIT_OK


def for_command_line(message: str) -> str:
    """Rewrite advice meant for Python callers into its command-line equivalent."""
    for pattern, replacement in (
            (r"call get_dataset\([^)]*\) again", "run the same cnncourse train command again"),
            (r"get_dataset\(\.\.\., root=\.\.\.\)", "--data-root DIR"),
            (r"pass root=\.\.\. or set CNNCOURSE_DATA", "pass --data-root DIR or set CNNCOURSE_DATA"),
            (r"root=\.\.\.", "--data-root DIR"),
            (r"set CNNCOURSE_QUICK=1 \(or cnncourse\.set_quick_mode\(True\)\)", "add --quick"),
            (r"image_size=\.\.\. \(on the command line (--image-size[^)]*)\)", r"\1"),
            (r"image_size=(\d+)", r"--image-size \1"), (r"image_size=\.\.\.", "--image-size S"),
            (r"resume=True", "--resume"), (r"epochs=(\d+)", r"--epochs \1")):
        message = re.sub(pattern, replacement, message)
    return message


def _debugging(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("CNNCOURSE_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``cnncourse`` command; returns the exit status.

    Errors a user can cause end in a short message and exit status 2, without a traceback
    (``--debug`` or ``CNNCOURSE_DEBUG=1`` shows it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a wrong option (already explained)
        return int(stop.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from cnncourse.checkpointing import CheckpointWriteError
    from cnncourse.data import ChecksumError, DataUnavailableError
    try:
        status = _dispatch(args, argv)
    except UsageError as error:
        print(f"cnncourse {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cnncourse: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CheckpointWriteError as error:
        if _debugging(argv):
            raise
        out = getattr(args, "out", None)
        print(f"cnncourse {args.command}: {error.strerror}"
              + (f"; continue with: cnncourse train --out {out} --resume" if out else ""), file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, OSError, DataUnavailableError, ChecksumError) as error:  # the message says what to do
        if _debugging(argv):
            raise
        print(f"cnncourse {args.command}: {for_command_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    _leave_process_group()  # only after a clean end: a process that failed just exits, and torchrun stops the rest
    return status


def _dispatch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.command == "train":
        return train_command(args, argv)
    if args.command == "speedrun":
        return speedrun_command(args, argv)
    if args.command == "models":
        return models_command()
    if args.command == "datasets":
        return datasets_command()
    return info_command()


def _leave_process_group() -> None:
    """Under torchrun, all processes meet at a barrier, then leave the group together. Without the barrier,
    rank 1 left while rank 0 still wrote metrics.json and the figures, and rank 0's destroy_process_group
    then hung now and then under torch 2.3 (gloo; pytorch/pytorch#75097)."""
    if "torch" in sys.modules:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
