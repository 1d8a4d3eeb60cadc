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
