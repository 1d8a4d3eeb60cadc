"""Every figure in README's results table traces to a metrics.json written by `cnncourse train`."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cnncourse import reference

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
RECORDED = sorted(RESULTS.glob("*/metrics.json"))


def _script():
    spec = importlib.util.spec_from_file_location("results_table", REPO / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_matches_the_json_files():
    readme = (REPO / "README.md").read_text()
    assert _script().render(readme) == readme, "run python scripts/results_table.py"


def test_every_experiment_is_described_and_every_description_recorded():
    described = set(reference.experiments(RESULTS))
    recorded = {p.parent.name for p in RECORDED}
    assert recorded <= described, f"undescribed results: {recorded - described}"


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.parent.name)
def test_recorded_result_has_history_provenance_and_plots(path):
    metrics = json.loads(path.read_text())
    history = metrics["history"]
    assert len(history) == metrics["epochs"] >= 1
    assert metrics["test_accuracy"] == history[-1]["test_acc"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    prov = metrics["provenance"]
    for key in ("command", "torch_version", "cnncourse_version", "git_commit", "wall_seconds", "device", "cpu"):
        assert prov.get(key) not in (None, ""), f"{path}: provenance lacks {key}"
    assert prov["command"].startswith("cnncourse train ")
    assert (path.parent / "curves.png").is_file() and (path.parent / "confusion.png").is_file()
    assert not (path.parent / "checkpoint.pt").exists(), "checkpoints stay out of git"


def test_summary_line_quotes_the_file():
    if not RECORDED:
        pytest.skip("no recorded results yet")
    name = RECORDED[0].parent.name
    metrics = reference.load_result(name, RESULTS)
    assert f"{100 * metrics['test_accuracy']:.2f} %" in reference.summary(name, RESULTS)


def test_unknown_result_names_the_recorded_ones():
    with pytest.raises(FileNotFoundError, match="recorded"):
        reference.load_result("no-such-experiment", RESULTS)
    with pytest.raises(FileNotFoundError, match="recorded"):
        reference.summary("no-such-experiment", RESULTS)
    assert reference.summary("no-such-experiment", RESULTS, missing="not measured yet") == "not measured yet"


def _fake_results(tmp_path, accuracies):
    """A results folder with one run whose test accuracy per epoch is ``accuracies``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "experiments.json").write_text(json.dumps({"run": {"title": "t", "notebook": "1"}}))
    (tmp_path / "run").mkdir()
    history = [{"epoch": i + 1, "test_acc": a} for i, a in enumerate(accuracies)]
    metrics = {"history": history, "epochs": len(history), "test_accuracy": accuracies[-1]}
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def test_a_goal_is_judged_on_the_final_test_accuracy_only(tmp_path):
    """The test set is looked at once: a better epoch in the middle does not count."""
    folder = _fake_results(tmp_path, [0.90, 0.9412, 0.9390, 0.9407])
    assert reference.goal("run", 0.94, within=15, path=folder) == (
        "run: >= 94.00 % test accuracy within 15 epochs: met: 94.07 % after 4 epochs (+0.07 points)")
    peaked = _fake_results(tmp_path / "peaked", [0.90, 0.9412, 0.9390])
    assert reference.goal("run", 0.94, path=peaked) == (
        "run: >= 94.00 % test accuracy: missed: 93.90 % after 3 epochs, 0.10 points short")


def test_a_run_longer_than_allowed_misses_its_goal(tmp_path):
    folder = _fake_results(tmp_path, [0.90, 0.93, 0.95])
    assert reference.goal("run", 0.94, within=2, path=folder) == (
        "run: >= 94.00 % test accuracy within 2 epochs: missed: the run trained 3 epochs, more than 2 "
        "(95.00 % at the end)")
    with pytest.raises(ValueError, match="fraction"):
        reference.goal("run", 94.0, path=folder)


NOTEBOOK_NUMBERS = sorted({int(e["notebook"]) for e in reference.experiments(RESULTS).values()})


@pytest.mark.parametrize("number", NOTEBOOK_NUMBERS, ids=lambda n: f"{n:02d}")
def test_reference_prose_quotes_no_measured_number(number):
    """Measured figures in a notebook's reference section (in the lesson or its lab) come from code reading
    results/*.json; the markdown around them may quote only the articles' figures and the goals (in
    experiments.json)."""
    import re

    sources = sorted((REPO / "sources").glob(f"{number:02d}_*.py")) + sorted((REPO / "sources" / "labs").glob(f"{number:02d}_*.py"))
    sections = [path.read_text().split("## Reference results", 1)[1] for path in sources
                if "## Reference results" in path.read_text()]
    assert sections, f"notebook {number:02d} has no reference-results section in its lesson or lab"
    allowed = {float(x) for x in re.findall(r"\d+(?:\.\d+)?", (RESULTS / "experiments.json").read_text())}
    for section in sections:
        prose = "\n".join(line for line in section.splitlines() if line.startswith("#") and not line.startswith("# %%"))
        quoted = {float(x) for x in re.findall(r"(\d+(?:\.\d+)?) ?%", prose)}
        assert quoted <= allowed, f"notebook {number:02d}: measured figures typed into prose: {sorted(quoted - allowed)}"


def test_goals_lists_every_goal_of_experiments_json(tmp_path):
    folder = _fake_results(tmp_path, [0.95])
    described = {"run": {"title": "t", "notebook": "1", "goals": [{"target": 0.94, "within": 1}, {"target": 0.96}]},
                 "later": {"title": "u", "notebook": "2", "goals": [{"target": 0.5}]}}
    (folder / "experiments.json").write_text(json.dumps(described))
    assert reference.goals(folder).splitlines() == [
        "- run: >= 94.00 % test accuracy within 1 epochs: met: 95.00 % after 1 epochs (+1.00 points)",
        "- run: >= 96.00 % test accuracy: missed: 95.00 % after 1 epochs, 1.00 points short",
        "- later: not yet measured",
    ]


def test_plot_results_draws_the_runs_and_the_articles_figures(tmp_path):
    import matplotlib.pyplot as plt

    folder = _fake_results(tmp_path, [0.80, 0.85, 0.875])
    fig = reference.plot_results(["run"], path=folder, lines={"article, 400 epochs": 0.913, "goal": 0.94})
    try:
        ax = fig.axes[0]
        run, article, goal = ax.get_lines()
        assert list(run.get_xdata()) == [1, 2, 3]
        assert list(run.get_ydata()) == pytest.approx([80.0, 85.0, 87.5])
        assert list(article.get_ydata()) == pytest.approx([91.3, 91.3])
        assert list(goal.get_ydata()) == pytest.approx([94.0, 94.0])
        assert article.get_linestyle() != goal.get_linestyle()
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run", "article, 400 epochs", "goal"]
        with pytest.raises(ValueError, match="fraction"):
            reference.plot_results(["run"], path=folder, lines={"article": 91.3})
    finally:
        plt.close("all")


def test_history_table_puts_runs_side_by_side_in_percent(tmp_path):
    folder = _fake_results(tmp_path, [0.5, 0.875])
    (folder / "short").mkdir()
    (folder / "short" / "metrics.json").write_text(json.dumps({"history": [{"epoch": 1, "test_acc": 0.25}]}))
    assert reference.history_table(["run", "short"], path=folder).splitlines() == [
        "test accuracy (%) per epoch",
        "epoch     run  short",
        "    1   50.00  25.00",
        "    2   87.50       ",
    ]


def _fake_seeds(folder, prefix, finals):
    """Recorded runs prefix-s0, -s1, ... whose last validation accuracies are ``finals``."""
    for seed, final in enumerate(finals):
        run = folder / f"{prefix}-s{seed}"
        run.mkdir(parents=True)
        history = [{"epoch": 1, "val_acc": final / 2, "test_acc": None},
                   {"epoch": 2, "val_acc": final, "test_acc": final - 0.01}]
        run.joinpath("metrics.json").write_text(json.dumps({"history": history, "provenance": {"wall_seconds": 60}}))


def test_seed_statistics_are_the_mean_and_spread_of_the_last_epoch(tmp_path):
    (tmp_path / "experiments.json").write_text("{}")
    _fake_seeds(tmp_path, "ladder/a", [0.60, 0.62, 0.64])
    _fake_seeds(tmp_path, "ladder/ab", [0.50])  # a longer name with the same start is another group
    stats = reference.seed_stats("ladder/a", path=tmp_path)
    assert stats["n"] == 3 and stats["values"] == [0.60, 0.62, 0.64]
    assert stats["mean"] == pytest.approx(0.62) and stats["std"] == pytest.approx(0.02)
    assert reference.seed_stats("ladder/a", "test_acc", path=tmp_path)["mean"] == pytest.approx(0.61)
    assert reference.seed_stats("ladder/ab", path=tmp_path)["std"] == 0.0
    table = reference.seed_table({"first": "ladder/a", "second": "ladder/ab"}, path=tmp_path).splitlines()
    assert table[1].split() == ["first", "3", "62.00", "+-", "2.00", "61.00", "+-", "2.00", "1.0"]
    with pytest.raises(FileNotFoundError, match="ladder/c-s<seed>"):
        reference.seed_runs("ladder/c", path=tmp_path)


def test_plot_seeds_draws_the_mean_and_the_range(tmp_path):
    import matplotlib.pyplot as plt
    (tmp_path / "experiments.json").write_text("{}")
    _fake_seeds(tmp_path, "ladder/a", [0.60, 0.64])
    fig = reference.plot_seeds({"a": "ladder/a"}, path=tmp_path)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([31.0, 62.0])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(30.0) and band.max() == pytest.approx(64.0)
    assert ax.get_legend_handles_labels()[1] == ["a (2 seeds)"]
    plt.close(fig)


def test_seed_differences_pair_runs_by_seed(tmp_path):
    (tmp_path / "experiments.json").write_text("{}")
    for prefix, finals in (("x/a", [0.60, 0.70, 0.65]), ("x/b", [0.58, 0.69])):
        _fake_seeds(tmp_path, prefix, finals)
        for seed in range(len(finals)):
            file = tmp_path / f"{prefix}-s{seed}" / "metrics.json"
            metrics = json.loads(file.read_text())
            metrics["provenance"]["settings"] = {"seed": seed}
            file.write_text(json.dumps(metrics))
    assert reference.seed_differences("x/a", "x/b", path=tmp_path) == pytest.approx([0.02, 0.01])


SHIPPED_NESTED = sorted(p.parent for p in RESULTS.glob("*/*/model.pt"))


@pytest.mark.parametrize("folder", SHIPPED_NESTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_weights_of_controlled_runs_load_and_match_their_record(folder):
    """Weights kept beside a controlled experiment's metrics.json (e.g. the ViT and ResNet-56 of
    notebook 8) load through reference.load_model, checked against the recorded SHA-256."""
    name = f"{folder.parent.name}/{folder.name}"
    metrics = reference.load_result(name, RESULTS)
    model = reference.load_model(name, RESULTS)
    assert sum(p.numel() for p in model.parameters()) == metrics["num_parameters"]
    assert not model.training


def test_every_controlled_group_is_run_by_run_experiments_sh_with_valid_options():
    """results/run_experiments.sh runs every group of results/controlled.json (and nothing else), and
    each of its commands is one that `cnncourse train` accepts; a recorded run was made by its command."""
    import os
    import shlex
    import subprocess
    import shutil
    from cnncourse.cli import build_parser
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    listed = subprocess.run(["bash", str(RESULTS / "run_experiments.sh"), "/data"], env={**os.environ, "LIST": "1"},
                            capture_output=True, text=True, check=True).stdout.splitlines()
    runs = {line.split()[0]: shlex.split(line)[1:] for line in listed}
    assert len(runs) == len(listed) > 0, "two runs share a name"
    prefixes = {prefix for about in reference.controlled(RESULTS).values() for prefix in about["groups"].values()}
    for name, options in runs.items():
        assert name.rsplit("-s", 1)[0] in prefixes, f"{name} belongs to no group of controlled.json"
        args = build_parser().parse_args(["train", *options, "--out", "unused"])
        assert args.seed == int(name.rsplit("-s", 1)[1])
        metrics = RESULTS / name / "metrics.json"
        if metrics.exists():   # the recorded run used this command's settings (resumed or not)
            settings = json.loads(metrics.read_text())["provenance"]["settings"]
            given = {k: v for k, v in vars(args).items() if k not in ("command", "out", "data", "data_root")}
            assert {k: settings.get(k) for k in given} == given, name
    for prefix in prefixes:
        assert any(name.rsplit("-s", 1)[0] == prefix for name in runs), f"no command runs {prefix}"


def test_a_resumed_runs_wall_time_adds_the_epochs_before_it_resumed():
    """The provenance of a resumed run times only its last process (cnncourse train --resume)."""
    history = [{"epoch": e, "seconds": 100.0 * e} for e in range(1, 5)]
    fresh = {"history": history, "provenance": {"wall_seconds": 1200.0, "resumed_from_epoch": 0}}
    resumed = {"history": history, "provenance": {"wall_seconds": 720.0, "resumed_from_epoch": 2}}
    assert reference.wall_minutes(fresh) == pytest.approx(20.0)
    assert reference.wall_minutes(resumed) == pytest.approx((720 + 100 + 200) / 60)
    assert reference.wall_minutes({"history": history, "provenance": {"wall_seconds": 60.0}}) == pytest.approx(1.0)
