"""The three scales (cnncourse.config): which one is chosen, and what each gives a lesson and the CLI."""
from __future__ import annotations

import json

import pytest

import cnncourse
from cnncourse import config
from cnncourse.cli import main
from cnncourse.data import DATASETS, DataUnavailableError, SampleDataset, get_dataset


@pytest.fixture
def plain_environment(monkeypatch):
    """What a learner's machine has: neither CNNCOURSE_QUICK nor CNNCOURSE_SCALE."""
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    monkeypatch.delenv(config.SCALE_ENV, raising=False)
    config.set_scale(None)


def test_laptop_is_the_default_and_each_switch_chooses(plain_environment, monkeypatch):
    assert cnncourse.scale() == "laptop" and not cnncourse.quick_mode()
    monkeypatch.setenv(config.SCALE_ENV, " Full ")
    assert cnncourse.scale() == "full"
    monkeypatch.setenv(config.QUICK_ENV, "1")  # CNNCOURSE_QUICK=1 keeps meaning the sample, whatever the scale says
    assert cnncourse.scale() == "sample" and cnncourse.quick_mode()
    cnncourse.set_scale("laptop")  # the Python call wins over both variables
    assert cnncourse.scale() == "laptop"
    cnncourse.set_quick_mode(True)
    assert cnncourse.scale() == "sample"
    cnncourse.set_quick_mode(False)  # quick mode off is the laptop scale, no longer the articles' full runs
    assert cnncourse.scale() == "laptop"
    with cnncourse.quick():
        assert cnncourse.scale() == "sample"
    assert cnncourse.scale() == "laptop"
    cnncourse.set_scale(None)
    assert cnncourse.scale() == "sample"  # back to the environment


@pytest.mark.parametrize("where, value", [("set_scale", "huge"), ("env", "gpu")])
def test_an_unknown_scale_is_refused_with_the_three_names(plain_environment, monkeypatch, where, value):
    with pytest.raises(ValueError, match="use one of sample, laptop, full"):
        if where == "env":
            monkeypatch.setenv(config.SCALE_ENV, value)
            cnncourse.scale()
        else:
            cnncourse.set_scale(value)


def test_at_scale_picks_the_current_scale_and_full_defaults_to_the_laptop(plain_environment):
    for name, expected in (("sample", 1), ("laptop", 2), ("full", 3)):
        cnncourse.set_scale(name)
        assert cnncourse.at_scale(1, 2, 3) == expected
        assert name in cnncourse.describe_scale()
    assert cnncourse.at_scale(1, 2) == 2  # full without its own value runs the laptop's


def test_the_laptop_scale_reads_the_real_data_but_galaxy10_stays_on_its_sample(plain_environment, tmp_path, no_network):
    cnncourse.set_scale("laptop")
    for name in DATASETS:
        if name.startswith("galaxy10"):  # 2.5 GB: the shipped sample, without touching the data folder
            dataset = get_dataset(name, "train", root=tmp_path / "empty")
            assert isinstance(dataset, SampleDataset) and len(dataset) > 0
        else:
            with pytest.raises(DataUnavailableError):
                get_dataset(name, "train", root=tmp_path / "empty", download=False)
    assert not (tmp_path / "empty").exists()
    cnncourse.set_scale("full")
    with pytest.raises(DataUnavailableError):  # the real Galaxy10 is asked for
        get_dataset("galaxy10", "train", root=tmp_path / "empty", download=False)


def test_the_command_line_trains_on_the_data_set_it_names_at_any_scale(plain_environment, tmp_path, no_network, capsys):
    # cnncourse train --data galaxy10 must not quietly train on the lessons' 80-image sample.
    status = main(["train", "--model", "lenet", "--data", "galaxy10", "--out", str(tmp_path / "run"),
                   "--data-root", str(tmp_path / "empty"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "--quick" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


# ------------------------------------------------------------------- the laptop-scale record
def _laptop_scale_script():
    import importlib.util
    import sys
    from pathlib import Path
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    sys.path.insert(0, str(scripts))
    try:
        spec = importlib.util.spec_from_file_location("laptop_scale", scripts / "laptop_scale.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(scripts))


def test_the_strict_lines_are_found_in_any_output_and_nothing_else_is():
    notebook = {"cells": [
        {"cell_type": "markdown", "source": "target reached: True"},
        {"cell_type": "code", "outputs": [{"output_type": "stream", "text": "20 s\ntarget reached (accuracy): True\n"}]},
        {"cell_type": "code", "outputs": [{"output_type": "stream", "text": ["target reached ", "(time): False\n"]}]},
        {"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {}}]},
    ]}
    assert _laptop_scale_script().target_lines(notebook) == ["target reached (accuracy): True",
                                                            "target reached (time): False"]


def test_each_lesson_in_the_laptop_scale_record_is_stored_at_that_scale_with_its_targets_met():
    import json
    import re
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    record = json.loads((repo / "results" / "laptop-scale.json").read_text())
    assert record, "results/laptop-scale.json records no lesson"
    script = _laptop_scale_script()
    for stem, entry in record.items():
        notebook = json.loads((repo / "notebooks" / f"{stem}.ipynb").read_text())
        assert notebook["metadata"]["cnncourse"]["scale"] == "laptop", stem  # what the reader sees is the laptop's
        assert script.target_lines(notebook) == entry["targets"], stem        # the record is of these outputs
        assert entry["all_targets_met"], stem
        code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
        trainers = r"\b(fit|speedrun_mnist|speedrun_cifar10|transfer_experiment|depth_study)\("
        trains = any(re.search(trainers, line) for text in code
                     for line in text.splitlines() if not line.strip().startswith("#"))
        assert bool(entry["targets"]) == trains, stem  # every lesson that trains live prints its strict line
        assert entry["minutes"] == round(notebook["metadata"]["cnncourse"]["executed_seconds"] / 60, 2)
        assert entry["minutes"] <= 15, stem  # each lesson's live runs together in at most 15 minutes


def test_the_lessons_read_cifar10_or_else_the_jpeg_copy_in_the_data_folder(plain_environment, tmp_path):
    from cnncourse.data import CIFAR10_JPEG, cifar10_source
    assert cifar10_source(tmp_path) == "cifar10"  # nothing there: torchvision's download
    (tmp_path / CIFAR10_JPEG / "train").mkdir(parents=True)
    assert cifar10_source(tmp_path) == CIFAR10_JPEG
    with cnncourse.quick():
        assert cifar10_source(tmp_path) == "cifar10"  # the sample is CIFAR-10's own
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert cifar10_source(tmp_path) == "cifar10"  # the real files win


def test_the_full_scale_prints_an_estimate_from_the_laptop_record_before_it_starts(plain_environment, tmp_path,
                                                                                 monkeypatch):
    (tmp_path / "experiments.json").write_text("{}")
    (tmp_path / "laptop-scale.json").write_text(json.dumps(
        {"02_lenet_cifar10": {"minutes": 3.6, "cpu": "Some CPU", "logical_cpus": 2}}))
    monkeypatch.setenv("CNNCOURSE_RESULTS", str(tmp_path))
    cnncourse.set_scale("laptop")
    assert "estimate" not in cnncourse.describe_scale("02_lenet_cifar10", 10 / 6)     # only the full scale
    cnncourse.set_scale("full")
    line = cnncourse.describe_scale("02_lenet_cifar10", 10 / 6)
    assert "estimate: about 6 minutes on a 2-core CPU like Some CPU (3.6 minutes at the laptop scale x 1.66667)" in line
    assert "no estimate" in cnncourse.describe_scale("03_resnet_mnist", 2.0)
