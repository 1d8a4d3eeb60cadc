"""The ``cnncourse`` command: train any course model on any course data set, headless.

    cnncourse train --model lenet --data cifar10 --quick --out runs/demo
    cnncourse train --model resnet20 --data fashion-mnist --epochs 15 --augment --schedule onecycle --lr 0.01
    cnncourse train --out runs/demo --resume          # continue where runs/demo stopped
    cnncourse models | datasets | info

``train`` writes ``DIR/metrics.json`` (history, final test accuracy, provenance), ``DIR/curves.png``,
``DIR/confusion.png``, ``DIR/checkpoint.pt`` (after every epoch) and ``DIR/run.json`` (the settings,
so that ``--resume`` needs nothing else).

This module is the command line (parser, errors, exit codes, the listings); the commands that train
are :mod:`cnncourse.cli_train` and :mod:`cnncourse.cli_speedrun`.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from cnncourse.runconfig import RESUMABLE, add_arguments

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
    if args.command == "train":   # each command in its own module, imported when used
        from cnncourse.cli_train import train_command
        return train_command(args, argv)
    if args.command == "speedrun":
        from cnncourse.cli_speedrun import speedrun_command
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
