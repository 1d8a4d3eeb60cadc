"""The course's recorded reference results: ``results/<experiment>/metrics.json`` written by ``cnncourse train``.

Notebooks show these next to their quick live runs, and README's results table is generated from
them (``python scripts/results_table.py``), so every figure the course quotes traces to a file.
``results/experiments.json`` describes each experiment: its title, notebook and the source
article's figure to compare with.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

RESULTS_ENV = "CNNCOURSE_RESULTS"
PathLike = Union[str, "os.PathLike[str]"]


def results_dir(path: Optional[PathLike] = None) -> Path:
    """The results folder: ``path``, else ``$CNNCOURSE_RESULTS``, else the ``results/`` folder of the
    repository this package or the current directory sits in."""
    if path is not None:
        return Path(path)
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "results" / "experiments.json").is_file():
                return folder / "results"
    raise FileNotFoundError("no results/ folder with experiments.json found: run from inside the cnncourse "
                            f"repository, or set {RESULTS_ENV} to the folder")


def experiments(path: Optional[PathLike] = None) -> Dict[str, dict]:
    """``results/experiments.json``: experiment name -> description (title, notebook, article figure)."""
    return json.loads((results_dir(path) / "experiments.json").read_text())


def load_result(name: str, path: Optional[PathLike] = None) -> dict:
    """The ``metrics.json`` of experiment ``name`` (history, final accuracy, provenance)."""
    folder = results_dir(path)
    file = folder / name / "metrics.json"
    if not file.is_file():
        known = sorted(p.parent.name for p in folder.glob("*/metrics.json"))
        raise FileNotFoundError(f"no recorded result {name!r} in {folder}; recorded: {', '.join(known) or 'none'}")
    return json.loads(file.read_text())


class WeightsError(ValueError):
    """A recorded run's weights file is missing or is not the file its metrics.json describes."""


def load_model(name: str, path: Optional[PathLike] = None, device="cpu"):
    """The trained model of recorded experiment ``name``, in eval mode, with the weights its run saved.

    The model is rebuilt from the run's own settings (``provenance.settings``) and the data it saw
    (classes, channels, image size); the weights file's SHA-256 must equal the one in metrics.json.
    Raises :class:`WeightsError` when the file is missing or altered.
    """
    import hashlib

    import torch
    from cnncourse.runconfig import TrainConfig

    metrics = load_result(name, path)
    recorded = metrics.get("weights")
    folder = results_dir(path) / name
    if not recorded:
        raise WeightsError(f"the recorded run {name!r} kept no weights (its metrics.json has no 'weights' entry); "
                           f"re-run its command to make them: {metrics['provenance']['command']}")
    file = folder / recorded["file"]
    if not file.is_file():
        raise WeightsError(f"{file} is missing: its run {name!r} saved it, but it is not here (a checkout without "
                           f"it?); re-run: {metrics['provenance']['command']}")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != recorded["sha256"]:
        raise WeightsError(f"{file} has been altered: its SHA-256 is {digest}, but the run recorded "
                           f"{recorded['sha256']}; restore it (git checkout -- {file}) or re-run the experiment")
    state = torch.load(file, map_location=device, weights_only=True)
    if "recipe" in metrics and "whiten" in metrics["recipe"]:   # a CIFAR-10 speedrun (cnncourse.cifar_speedrun)
        from cnncourse.cifar_speedrun import airbench_net
        model = airbench_net(tuple(metrics["recipe"]["widths"]), whiten=metrics["recipe"]["whiten"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return model.to(device).eval()
    config = TrainConfig.from_dict(metrics["provenance"]["settings"])
    in_channels = next(v.shape[1] for k, v in state.items() if v.dim() == 4)
    model = config.build_model(len(metrics["classes"]), int(in_channels), int(metrics["image_size"]))
    model.load_state_dict(state)
    return model.to(device).eval()


def recorded_figure(name: str, figure: str = "confusion", path: Optional[PathLike] = None):
    """The figure a recorded run drew (``"confusion"`` or ``"curves"``: ``results/<name>/<figure>.png``),
    to display in a notebook; it shows the full-data run, not a live quick one."""
    from IPython.display import Image

    file = results_dir(path) / name / f"{figure}.png"
    if not file.is_file():
        load_result(name, path)  # names the recorded runs when ``name`` is unknown
        raise FileNotFoundError(f"{file} does not exist: the run {name!r} drew no {figure} figure")
    return Image(filename=str(file))


def hardware(metrics: dict) -> str:
    """Where a run ran, in a few words: the GPU's name, or the CPU's, with the threads torch used of
    its cores (two one-thread runs side by side on a 2-core CPU each say "1 thread of 2 cores")."""
    prov = metrics["provenance"]
    if prov["device"].startswith("cuda"):
        return f"GPU: {prov['device_name']}"
    threads = prov.get("torch_threads")
    used = f"{threads} thread{'s' if threads != 1 else ''} of " if threads else ""
    return f"CPU: {prov['cpu']}, {used}{prov['cpu_count']} cores"


def wall_minutes(metrics: dict) -> float:
    """A recorded run's wall time in minutes. The provenance of a resumed run times only its last
    process; the epochs before it resumed count with their recorded seconds (the start-up of the
    earlier processes was not recorded, so this is a slight underestimate)."""
    prov = metrics["provenance"]
    earlier = metrics["history"][:prov.get("resumed_from_epoch") or 0]
    return (prov["wall_seconds"] + sum(record["seconds"] for record in earlier)) / 60


def summary(name: str, path: Optional[PathLike] = None, missing: Optional[str] = None) -> str:
    """One deterministic line about a recorded run, for the lessons (no run-folder name, no commit: the
    provenance stays in its metrics.json); ``missing`` (e.g. "not
    measured yet") is returned instead of raising FileNotFoundError when the run was never recorded."""
    try:
        metrics = load_result(name, path)
    except FileNotFoundError:
        if missing is None:
            raise
        return missing
    prov = metrics["provenance"]
    quick = " (quick-mode sample)" if prov.get("quick_mode") else ""
    resumed = f" (resumed after epoch {prov['resumed_from_epoch']})" if prov.get("resumed_from_epoch") else ""
    # No run-folder name and no commit: a lesson shows the result; the provenance stays in metrics.json.
    return (f"{metrics['model']} on {metrics['data']}{quick}, {metrics['epochs']} epoch(s): "
            f"{_validation(metrics)}test accuracy {100 * metrics['test_accuracy']:.2f} %, "
            f"{wall_minutes(metrics):.1f} min{resumed} on {hardware(metrics)}; torch {prov['torch_version']}")


def _validation(metrics: dict) -> str:
    """The validation part of a summary line, or "" for a run without a hold-out."""
    best = metrics.get("best_val_accuracy")
    if best is None:
        return ""
    return f"validation {100 * metrics['val_accuracy']:.2f} % (best {100 * best:.2f} % at epoch " \
           f"{metrics['best_val_epoch']}), "


def _check_fraction(what: str, value: float) -> None:
    """An accuracy given as a fraction of 1 (0.94, not 94), or a ValueError that says so."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{what} is a fraction of 1 (0.94 for 94 %), got {value}")


def goal(name: str, target: float, within: Optional[int] = None, path: Optional[PathLike] = None) -> str:
    """Whether recorded run ``name`` reached test accuracy ``target`` (a fraction, e.g. 0.94) at its
    end, in a run of at most ``within`` epochs if given, in one deterministic line with the margin in
    points. Only the final test accuracy counts: the test set is looked at once, after the epochs were
    chosen (on validation), never as the best of several epochs. Used for the course's goals and the
    articles' figures, so the prose around it need not quote a number."""
    _check_fraction("target", target)
    metrics = load_result(name, path)
    final, epochs = metrics["test_accuracy"], metrics["epochs"]
    wanted = f">= {100 * target:.2f} % test accuracy" + (f" within {within} epochs" if within else "")
    points = 100 * (final - target)
    if within is not None and epochs > within:
        verdict = f"missed: the run trained {epochs} epochs, more than {within} ({100 * final:.2f} % at the end)"
    elif final >= target:
        verdict = f"met: {100 * final:.2f} % after {epochs} epochs ({points:+.2f} points)"
    else:
        verdict = f"missed: {100 * final:.2f} % after {epochs} epochs, {-points:.2f} points short"
    return f"{name}: {wanted}: {verdict}"


def table(path: Optional[PathLike] = None) -> str:
    """README's results table (Markdown), one row per recorded experiment in experiments.json order."""
    rows: List[str] = [
        "| experiment | notebook | model | epochs | test accuracy | source article | wall time | hardware |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, about in experiments(path).items():
        try:
            metrics = load_result(name, path)
        except FileNotFoundError:
            rows.append(f"| {about['title']} | {about['notebook']} | | | not yet measured | "
                        f"{about.get('article', '')} | | |")
            continue
        prov = metrics["provenance"]
        quick = " (quick sample)" if prov.get("quick_mode") else ""
        rows.append(f"| [{about['title']}](results/{name}/metrics.json) | {about['notebook']} | "
                    f"{metrics['model']} | {metrics['epochs']} | {100 * metrics['test_accuracy']:.2f} %{quick} | "
                    f"{about.get('article', '')} | {wall_minutes(metrics):.1f} min | {hardware(metrics)} |")
    return "\n".join(rows)


def goals(path: Optional[PathLike] = None) -> str:
    """README's goal checks (Markdown bullets): ``goal(...)`` for every goal listed in experiments.json."""
    lines = []
    for name, about in experiments(path).items():
        for wanted in about.get("goals", []):
            try:
                lines.append(f"- {goal(name, wanted['target'], wanted.get('within'), path)}")
            except FileNotFoundError:
                lines.append(f"- {name}: not yet measured")
    return "\n".join(lines)


def _label(column: str) -> str:
    """A history column in words: ``test_acc`` -> ``test accuracy (%)``."""
    name = column.replace("val_", "validation_")
    return name.replace("_acc", " accuracy (%)").replace("_loss", " loss").replace("_", " ")


def _scale(column: str) -> int:
    """100 for accuracies (fractions in metrics.json, shown in percent), else 1."""
    return 100 if column.endswith("_acc") else 1


def history_table(names: List[str], column: str = "test_acc", path: Optional[PathLike] = None) -> str:
    """Per-epoch ``column`` (accuracies in percent) of several recorded runs, side by side, as text."""
    runs = {name: load_result(name, path)["history"] for name in names}
    width = max(len(name) for name in names) + 2
    scale = _scale(column)
    lines = [f"{_label(column)} per epoch", "epoch " + "".join(f"{name:>{width}}" for name in names)]
    for epoch in range(1, max(len(h) for h in runs.values()) + 1):
        cells = []
        for history in runs.values():
            value = history[epoch - 1][column] if epoch <= len(history) else None
            cells.append(f"{'':>{width}}" if value is None else f"{scale * value:>{width}.2f}")
        lines.append(f"{epoch:>5} " + "".join(cells))
    return "\n".join(lines)


def plot_results(names: List[str], column: str = "test_acc", path: Optional[PathLike] = None,
                 lines: Optional[Dict[str, float]] = None):
    """One matplotlib figure with ``column`` per epoch for several recorded runs (accuracy in percent).

    ``lines`` maps a label to a figure to compare with, drawn as a grey horizontal line (dashed,
    dotted, ...): an article's reported accuracy as a fraction, e.g. ``{"article, 400 epochs": 0.913}``."""
    import matplotlib.pyplot as plt

    scale, lines = _scale(column), lines or {}
    if scale == 100:
        for label, value in lines.items():
            _check_fraction(f"lines[{label!r}]", value)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in names:
        history = load_result(name, path)["history"]
        ax.plot([r["epoch"] for r in history], [scale * r[column] for r in history], marker="o", label=name)
    for (label, value), style in zip(lines.items(), itertools.cycle(("--", ":", "-."))):
        ax.axhline(scale * value, color="0.35", linestyle=style, linewidth=1.2, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(_label(column))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------- controlled experiments over seeds
def seed_runs(prefix: str, path: Optional[PathLike] = None) -> List[dict]:
    """The recorded runs ``<prefix>-s0``, ``<prefix>-s1``, ... (one per seed, in seed order), e.g.
    ``seed_runs("lenet-ladder/1-article")``; FileNotFoundError when none is recorded."""
    folder = results_dir(path)
    parent, stem = (folder / prefix).parent, Path(prefix).name
    seeds = sorted(int(p.parent.name[len(stem) + 2:]) for p in parent.glob(f"{stem}-s*/metrics.json")
                   if p.parent.name[len(stem) + 2:].isdigit())
    if not seeds:
        raise FileNotFoundError(f"no recorded run {prefix}-s<seed> in {folder}")
    return [load_result(f"{prefix}-s{seed}", path) for seed in seeds]


def seed_stats(prefix: str, column: str = "val_acc", path: Optional[PathLike] = None) -> Dict[str, object]:
    """Mean, sample standard deviation (0 for one seed), min, max and values over the seeds of the
    last epoch's ``column`` (fractions for accuracies); ``"test_acc"`` is the test set's one look."""
    return _stats([run["history"][-1][column] for run in seed_runs(prefix, path)])


def _stats(values: List[float]) -> Dict[str, object]:
    import statistics
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "values": values}


def _group(prefix: str, path: Optional[PathLike]) -> Tuple[List[dict], Dict[str, object], Dict[str, object], float]:
    """A run group read once: its runs, last-epoch validation and test statistics, minutes per run."""
    runs = seed_runs(prefix, path)
    val, test = (_stats([run["history"][-1][column] for run in runs]) for column in ("val_acc", "test_acc"))
    return runs, val, test, sum(wall_minutes(run) for run in runs) / len(runs)


def seed_differences(first: str, second: str, column: str = "val_acc",
                     path: Optional[PathLike] = None) -> List[float]:
    """Last-epoch ``column`` of ``first`` minus that of ``second``, seed by seed, for the seeds both
    recorded. Runs that share a seed share the validation split and the initialisation seed, so
    these paired differences compare recipes without the split's noise."""
    a = {run["provenance"]["settings"]["seed"]: run for run in seed_runs(first, path)}
    b = {run["provenance"]["settings"]["seed"]: run for run in seed_runs(second, path)}
    return [a[k]["history"][-1][column] - b[k]["history"][-1][column] for k in sorted(set(a) & set(b))]


def seed_table(groups: Dict[str, str], path: Optional[PathLike] = None) -> str:
    """A text table, one row per label -> run prefix: seeds, final validation and test accuracy as
    mean +- standard deviation over the seeds (in %), and the mean wall time of a run."""
    width = max(len(label) for label in groups) + 2
    lines = [f"{'':<{width}}{'seeds':>6}{'validation %':>17}{'test %':>17}{'min/run':>9}"]
    for label, prefix in groups.items():
        _, val, test, minutes = _group(prefix, path)
        lines.append(f"{label:<{width}}{val['n']:>6}{100 * val['mean']:>11.2f} +- {100 * val['std']:.2f}"
                     f"{100 * test['mean']:>11.2f} +- {100 * test['std']:.2f}{minutes:>9.1f}")
    return "\n".join(lines)


def plot_seeds(groups: Dict[str, str], column: str = "val_acc", path: Optional[PathLike] = None,
               title: Optional[str] = None, ax=None):
    """``column`` per epoch for each label -> run prefix: the mean over the seeds as a line, the range
    from the lowest to the highest seed as a band. Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 4))
    scale = _scale(column)
    for label, prefix in groups.items():
        curves = np.array([[scale * r[column] for r in run["history"]] for run in seed_runs(prefix, path)])
        epochs = np.arange(1, curves.shape[1] + 1)
        line, = ax.plot(epochs, curves.mean(0), marker="o", markersize=3, label=f"{label} ({len(curves)} seeds)")
        ax.fill_between(epochs, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # whole epochs only
    ax.set_ylabel(_label(column))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def controlled(path: Optional[PathLike] = None) -> Dict[str, dict]:
    """``results/controlled.json``: the controlled experiments (title, notebook, the part of
    ``results/run_experiments.sh`` that runs them, and label -> run prefix for each group)."""
    return json.loads((results_dir(path) / "controlled.json").read_text())


def controlled_table(path: Optional[PathLike] = None) -> str:
    """README's table of the controlled experiments: one row per group, mean +- standard deviation
    over its seeds of the final validation and test accuracy; "not measured yet" for a group not run."""
    rows = ["| experiment | notebook | runs | seeds | validation accuracy | test accuracy | min per run | hardware |",
            "|---|---|---|---|---|---|---|---|"]
    for name, about in controlled(path).items():
        for index, (label, prefix) in enumerate(about["groups"].items()):
            head = f"| {about['title']} | {about['notebook']} | {label}" if index == 0 else f"| | | {label}"
            try:
                runs, val, test, minutes = _group(prefix, path)
            except FileNotFoundError:
                rows.append(f"{head} | | not measured yet | | | |")
                continue
            rows.append(f"{head} | {len(runs)} | {100 * val['mean']:.2f} ± {100 * val['std']:.2f} % | "
                        f"{100 * test['mean']:.2f} ± {100 * test['std']:.2f} % | {minutes:.1f} | {hardware(runs[0])} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------- the speedruns' hardware
def speedrun_hardware(run: dict) -> str:
    """The CPU a speedrun ran on and what it can do, e.g. "Intel(R) Xeon(R) Processor, 2 threads of 2
    cores, AVX512 (native bf16: True)"."""
    prov = run["provenance"]
    threads = prov["torch_threads"]
    return (f"{prov['cpu']}, {threads} thread{'s' if threads != 1 else ''} of {prov['cores']} cores, torch CPU capability "
            f"{prov['torch_cpu_capability']} (native bf16: {prov['native_bf16']})")
