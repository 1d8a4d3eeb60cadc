"""``cnncourse speedrun``: one run of notebook 9's MNIST or CIFAR-10 speedrun, recorded in its folder
(metrics.json with the command that re-makes it; the CIFAR-10 network's float16 weights).
The command line itself (parser, errors, exit codes) is :mod:`cnncourse.cli`."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from cnncourse.cli import WEIGHTS_FILE, UsageError
from cnncourse.cli_train import _claim_out, _save_weights


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
    from dataclasses import asdict
    from cnncourse.cifar_speedrun import CifarRecipe
    kinds = {name: type(value) for name, value in asdict(CifarRecipe()).items() if type(value) in (bool, int, float, str)}
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
