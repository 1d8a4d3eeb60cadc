"""Notebook 9's speedruns as tables, read from the runs ``cnncourse speedrun`` recorded in
``results/speedrun-mnist/`` and ``results/speedrun-cifar10/`` (``*/metrics.json``): the recipe's seeds against
the goal, and each trick removed. README's speedrun sections (``python scripts/results_table.py``), notebook 9
and its lab show them."""
from __future__ import annotations

import json
import statistics
from typing import Dict, List, Optional

from cnncourse.cifar_speedrun import TRICKS
from cnncourse.reference import PathLike, results_dir, speedrun_hardware

__all__ = ["speedrun_results", "speedrun_table", "trick_table", "DATA_NAMES", "removal_effects", "recorded_tables"]


def speedrun_results(prefix: str = "speedrun-mnist", path: Optional[PathLike] = None) -> Dict[str, List[dict]]:
    """The runs of ``cnncourse speedrun`` recorded in ``results/<prefix>/*/metrics.json``, grouped:
    ``{"recipe": [...], "<trick removed>": [...]}``, each list in seed order; {} when none is recorded."""
    groups: Dict[str, List[dict]] = {}
    for file in sorted((results_dir(path) / prefix).glob("*/metrics.json")):
        run = json.loads(file.read_text())
        groups.setdefault(run.get("removed_trick") or "recipe", []).append(run)
    return {name: sorted(runs, key=lambda run: run["seed"]) for name, runs in groups.items()}


# ------------------------------------------------------------------------------------ MNIST
def speedrun_table(prefix: str = "speedrun-mnist", path: Optional[PathLike] = None, seconds: float = 30.0,
                   accuracy: float = 0.99) -> str:
    """Markdown: the recipe's runs seed by seed (training seconds, validation and test accuracy), their
    median, and whether the median meets the goal; "not measured yet" when nothing is recorded."""
    runs = speedrun_results(prefix, path).get("recipe")
    if not runs:
        return "MNIST speedrun: not measured yet."
    rows = ["| seed | training time | validation accuracy | test accuracy (10,000 images) |", "|---|---|---|---|"]
    rows += [f"| {r['seed']} | {r['train_seconds']:.1f} s | {100 * r['val_accuracy']:.2f} % | "
             f"{100 * r['test_accuracy']:.2f} % |" for r in runs]
    time_ = statistics.median([r["train_seconds"] for r in runs])
    test = statistics.median([r["test_accuracy"] for r in runs])
    rows.append(f"| median of {len(runs)} | {time_:.1f} s | {100 * statistics.median([r['val_accuracy'] for r in runs]):.2f} % "
                f"| {100 * test:.2f} % |")
    misses = ([f"{time_ - seconds:.1f} s over"] if time_ > seconds else []) + \
        ([f"{100 * (accuracy - test):.2f} points short"] if test < accuracy else [])
    verdict = f"missed: {', '.join(misses)}" if misses else "met"
    recipe = runs[0]["recipe"]
    return "\n".join(rows) + (
        f"\n\nGoal {100 * accuracy:.1f} % test accuracy in at most {seconds:.0f} s of training: {verdict}. "
        f"Recipe: {recipe['epochs']} epochs, batch {recipe['batch_size']}, width {recipe['width']}; "
        f"{speedrun_hardware(runs[0])}; torch {runs[0]['provenance']['torch_version']}, "
        f"commit {str(runs[0]['provenance']['git_commit'])[:7]}.")


def trick_table(prefix: str = "speedrun-mnist", path: Optional[PathLike] = None) -> str:
    """Markdown: for each trick of ``cnncourse.speedrun.TRICKS``, the run without it against the recipe
    (medians over the seeds recorded): training seconds, how many times slower, test accuracy."""
    from cnncourse.speedrun import TRICKS as MNIST_TRICKS
    groups = speedrun_results(prefix, path)
    if "recipe" not in groups:
        return "Trick removal: not measured yet."
    base = statistics.median([r["train_seconds"] for r in groups["recipe"]])
    rows = ["| trick removed | instead | seeds | training time | x the recipe's | test accuracy |",
            "|---|---|---|---|---|---|",
            f"| none (the recipe) | | {len(groups['recipe'])} | {base:.1f} s | 1.00 | "
            f"{100 * statistics.median([r['test_accuracy'] for r in groups['recipe']]):.2f} % |"]
    for trick, (instead, _) in MNIST_TRICKS.items():
        runs = groups.get(trick)
        if not runs:
            rows.append(f"| {trick} | {instead} | | not measured yet | | |")
            continue
        seconds = statistics.median([r["train_seconds"] for r in runs])
        rows.append(f"| {trick} | {instead} | {len(runs)} | {seconds:.1f} s | {seconds / base:.2f} | "
                    f"{100 * statistics.median([r['test_accuracy'] for r in runs]):.2f} % |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------ CIFAR-10
DATA_NAMES = {"cifar10": "CIFAR-10's own files", "cifar10-jpeg": "the course's JPEG copy of CIFAR-10",
              None: "CIFAR-10's own files"}


def removal_effects(groups: Dict[str, list]) -> list:
    """Each trick removed against the recipe (``groups`` as :func:`speedrun_results` gives them): per
    trick its number of seeds, median training seconds, ``ratio`` (that over the recipe's median), median
    test accuracy with six views (``six``) and one (``one``), and ``change``, six views minus the recipe's
    median, in points. Empty without recipe runs."""
    base = groups.get("recipe")
    if not base:
        return []
    base_seconds, base_six = (statistics.median(r[key] for r in base) for key in ("train_seconds", "test_accuracy"))
    effects = []
    for trick in [t for t in TRICKS if t in groups]:
        seconds, six, one = (statistics.median(r[key] for r in groups[trick])
                             for key in ("train_seconds", "test_accuracy", "test_accuracy_no_tta"))
        effects.append({"trick": trick, "seeds": len(groups[trick]), "seconds": seconds, "ratio": seconds / base_seconds,
                        "six": six, "one": one, "change": 100 * (six - base_six)})
    return effects


def recorded_tables(path=None, minutes: float = 15.0, accuracy: float = 0.93) -> str:
    """Markdown: the recipe's recorded runs seed by seed (training time; test accuracy with six, two and
    one views), their median and mean ± sd, the goal's verdict, then each trick removed
    (:func:`removal_effects`). Read from ``results/speedrun-cifar10/*/metrics.json``."""
    groups = speedrun_results("speedrun-cifar10", path)
    runs = groups.get("recipe")
    if not runs:
        return "CIFAR-10 speedrun: no run recorded in results/speedrun-cifar10/ yet."

    def cells(values, unit="%"):
        return [f"{100 * v:.2f} %" if unit == "%" else f"{v / 60:.1f} min" for v in values]

    keys = ["train_seconds", "test_accuracy", "test_accuracy_flip", "test_accuracy_no_tta"]
    rows = ["| seed | training time | test, six views | test, two views | test, one view |", "|---|---|---|---|---|"]
    for r in runs:
        rows.append(f"| {r['seed']} | " + " | ".join(cells([r[keys[0]]], "min") + cells([r[k] for k in keys[1:]])) + " |")
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    rows.append(f"| median of {len(runs)} | " + " | ".join(cells([median[keys[0]]], "min")
                                                          + cells([median[k] for k in keys[1:]])) + " |")
    if len(runs) > 1:
        spread = [f"{100 * statistics.mean(r[k] for r in runs):.2f} ± {100 * statistics.stdev(r[k] for r in runs):.2f} %"
                  for k in keys[1:]]
        rows.append(f"| mean ± sd | | {' | '.join(spread)} |")
    misses = ([f"{median['train_seconds'] / 60 - minutes:.1f} min over"] if median["train_seconds"] > 60 * minutes
              else []) + ([f"{100 * (accuracy - median['test_accuracy']):.2f} points short"]
                          if median["test_accuracy"] < accuracy else [])
    recipe = runs[0]["recipe"]
    text = "\n".join(rows) + (
        f"\n\nGoal: median test accuracy (six views) at least {100 * accuracy:.1f} % in at most {minutes:.0f} minutes "
        f"of training: {'missed: ' + ', '.join(misses) if misses else 'met'}. {recipe['epochs']:g} epochs, batch "
        f"{recipe['batch_size']}, on {DATA_NAMES.get(runs[0].get('data'), runs[0].get('data'))}; "
        f"{speedrun_hardware(runs[0])}; autocast {runs[0]['autocast']}.")
    effects = removal_effects(groups)
    if effects:
        base = median["train_seconds"]
        table = ["| trick removed | instead | seeds | training time | x the recipe's | test, six views | change | "
                 "test, one view |", "|---|---|---|---|---|---|---|---|",
                 f"| none (the recipe) | | {len(runs)} | {base / 60:.1f} min | 1.00 | {100 * median['test_accuracy']:.2f} % "
                 f"| | {100 * median['test_accuracy_no_tta']:.2f} % |"]
        table += [f"| {e['trick']} | {TRICKS[e['trick']][0]} | {e['seeds']} | {e['seconds'] / 60:.1f} min | {e['ratio']:.2f} "
                  f"| {100 * e['six']:.2f} % | {e['change']:+.2f} points | {100 * e['one']:.2f} % |" for e in effects]
        noise = " one recipe seed: no spread to compare with."
        if len(runs) > 1:
            sd = 100 * statistics.stdev(r["test_accuracy"] for r in runs)
            noise = (f" the recipe's {len(runs)} seeds differ by a standard deviation of {sd:.2f} points, so a change "
                     f"within about twice that (±{2 * sd:.2f}) is not told apart from the seed.")
        text += "\n\n" + "\n".join(table) + "\n\nChange: the median test accuracy with six views minus the recipe's;" \
            + noise + (f" Time: above 1, training without the trick is slower; the recipe's own seeds took "
                       f"{min(r['train_seconds'] for r in runs) / base:.2f}-{max(r['train_seconds'] for r in runs) / base:.2f} "
                       "times their median, and a removal timed on another day can differ by more: a ratio near that "
                       "range is not the trick's.")
    return text
