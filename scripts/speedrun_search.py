"""Choose the MNIST speedrun's recipe, and the rates of the runs without one-cycle or BatchNorm, on the
validation split (10 % of the training images held out; the test set is never looked at here).

``recipe``: a small grid of MnistRecipe settings, seed 0; the rule: the fastest setting whose
validation accuracy reaches 99.0 %. ``rates``: for each trick whose removal needs its own learning
rate (batches of 256, no one-cycle, no BatchNorm), the best of RATES on validation.
Writes OUT/search-<part>.json with every row and the hardware. ``check``: exits with an error that names
them when the recorded choices differ from the code's defaults (MnistRecipe, TRICKS), which must be
set to them before the speedrun is recorded.
Usage: python scripts/speedrun_search.py recipe|rates|check [--threads N] [--out DIR] [--data-root DIR]
"""
import argparse
import json
from pathlib import Path

import torch

from cnncourse.cli import git_commit
from cnncourse.speedrun import TRICKS, MnistRecipe, cpu_capability, speedrun_mnist, split_tensors

GRID = [dict(epochs=e, width=w) for e in (1, 2, 3) for w in (8, 16)] + [
    dict(epochs=2, batch_size=64, lr=0.2), dict(epochs=3, batch_size=64, lr=0.2), dict(epochs=2, batch_size=128, lr=0.1),
    dict(epochs=3, batch_size=512, lr=0.4), dict(epochs=4, width=8)]
RATES = (0.2, 0.05, 0.01)
# The removals that set a rate of their own in TRICKS, without that rate: the search chooses it.
NEEDS_RATE = {trick: {k: v for k, v in changes.items() if k != "lr"}
              for trick, (_, changes) in TRICKS.items() if "lr" in changes}


def disagreements(out) -> dict:
    """The settings the recorded searches in ``out`` chose that differ from the code's defaults:
    {MnistRecipe field: chosen value} and {removed trick: chosen learning rate}; empty when they agree."""
    out = Path(out)
    chosen = json.loads((out / "search-recipe.json").read_text())["chosen"]["changes"]
    differ = {k: v for k, v in chosen.items() if getattr(MnistRecipe(), k) != v}
    rates = json.loads((out / "search-rates.json").read_text())["chosen"]
    differ.update({trick: row["changes"]["lr"] for trick, row in rates.items()
                   if TRICKS[trick][1].get("lr", MnistRecipe().lr) != row["changes"]["lr"]})
    return differ


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("recipe", "rates", "check"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="results/speedrun-mnist")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    if args.part == "check":
        differ = disagreements(args.out)
        if differ:
            raise SystemExit(f"the search chose {differ}: set them in cnncourse/speedrun.py (MnistRecipe, TRICKS) first")
        raise SystemExit(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = split_tensors("mnist", args.data_root, 0.1, 0)
    commit = git_commit()
    rows = []
    runs = ([(None, changes) for changes in GRID] if args.part == "recipe" else
            [(trick, {**changes, "lr": lr}) for trick, changes in NEEDS_RATE.items() for lr in RATES])
    for trick, changes in runs:
        result = speedrun_mnist(MnistRecipe(**changes), seed=0, data=data)
        rows.append({"trick_removed": trick, "changes": changes, "val_accuracy": result["val_accuracy"],
                     "train_seconds": round(result["train_seconds"], 2)})
        print(rows[-1], flush=True)
    if args.part == "recipe":
        good = [row for row in rows if row["val_accuracy"] >= 0.99]
        chosen = (min(good, key=lambda row: row["train_seconds"]) if good
                  else max(rows, key=lambda row: row["val_accuracy"]))
        rule = "the fastest setting with validation accuracy >= 99.0 % (else the most accurate)"
    else:
        chosen = {trick: max((r for r in rows if r["trick_removed"] == trick), key=lambda r: r["val_accuracy"])
                  for trick in NEEDS_RATE}
        rule = "for each removed trick, the rate with the best validation accuracy"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"rule": rule, "rows": rows, "chosen": chosen, "threads": torch.get_num_threads(),
              "hardware": cpu_capability(), "git_commit": commit["commit"], "git_dirty": commit["dirty"],
              "command": f"python scripts/speedrun_search.py {args.part}"
                         + (f" --threads {args.threads}" if args.threads else "")}
    (out / f"search-{args.part}.json").write_text(json.dumps(report, indent=2) + "\n")
    print("chosen:", chosen)
