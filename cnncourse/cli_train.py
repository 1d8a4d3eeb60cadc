"""``cnncourse train``: one run of any course model on any course data set, recorded in its run folder
(metrics.json, curves and confusion figures, checkpoint.pt, run.json); ``--resume`` continues it.
The command line itself (parser, errors, exit codes) is :mod:`cnncourse.cli`."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from cnncourse.runconfig import RESUMABLE, TrainConfig
from cnncourse.cli import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, WEIGHTS_FILE, UsageError, _cpu_name, _device_name,
                           _version, git_commit)


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
