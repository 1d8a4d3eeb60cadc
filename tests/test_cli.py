"""The ``cnncourse`` command end to end, in quick mode, with the network blocked."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cnncourse.cli import build_parser, main

@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Quick runs are fastest on one thread, and far faster when other programs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TRAIN_OPTIONS = ("--model", "--data", "--epochs", "--batch-size", "--lr", "--optimizer", "--image-size",
                 "--augment", "--quick", "--seed", "--device", "--out", "--resume")


def test_train_quick_writes_metrics_plots_and_checkpoint_then_resumes(tmp_path, no_network, capsys):
    out = tmp_path / "demo"
    status = main(["train", "--model", "lenet", "--data", "cifar10", "--quick", "--out", str(out),
                   "--seed", "1", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    for name in ("metrics.json", "curves.png", "confusion.png", "checkpoint.pt", "run.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "lenet" and metrics["data"] == "cifar10" and metrics["epochs"] == 1
    assert len(metrics["history"]) == 1
    assert metrics["test_accuracy"] == metrics["history"][-1]["test_acc"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["num_parameters"] == 62_050 and metrics["classes"][0] == "airplane"
    provenance = metrics["provenance"]
    for key in ("command", "argv", "settings", "cnncourse_version", "torch_version", "torchvision_version",
                "python", "platform", "device", "device_name", "git_commit", "started", "finished",
                "wall_seconds"):
        assert key in provenance, key
    assert provenance["quick_mode"] is True and provenance["settings"]["seed"] == 1
    assert provenance["command"].startswith("cnncourse train --model lenet")
    err = capsys.readouterr().err
    assert "test accuracy" in err

    # Continue the same run for a second epoch: only --epochs is given again, the rest comes from run.json.
    status = main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    resumed = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == metrics["history"][0]
    assert resumed["provenance"]["resumed_from_epoch"] == 1 and resumed["provenance"]["quick_mode"] is True


def test_missing_data_without_quick_explains_what_to_do(tmp_path, no_network, capsys):
    status = main(["train", "--model", "lenet", "--data", "mnist", "--out", str(tmp_path / "run"),
                   "--data-root", str(tmp_path / "empty"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert "--quick" in err and "MNIST" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "alexnet", "--data", "mnist", "--quick"], "unknown model 'alexnet'; known: lenet"),
    (["train", "--model", "lenet", "--data", "imagenet", "--quick"], "unknown data set 'imagenet'; known: mnist"),
    (["train", "--data", "mnist", "--quick"], "train needs --model and --data"),
    (["train", "--model", "vgg16", "--data", "mnist", "--quick"], "--image-size 32"),
])
def test_usage_errors_say_what_is_wrong(tmp_path, argv, message, capsys):
    assert main(argv + ["--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_help_lists_every_command_and_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for command in ("train", "models", "datasets", "info"):
        assert command in text
    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for option in TRAIN_OPTIONS:
        assert option in train_help, option


def test_listings(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "lenet" in text and "62,050" in text and "resnet50_galaxy_article" in text
    assert main(["datasets"]) == 0
    assert "galaxy10-sdss" in capsys.readouterr().out
    assert main(["info"]) == 0
    assert "torch" in capsys.readouterr().out


def test_python_dash_m_cnncourse_trains_in_a_fresh_process(tmp_path):
    out = tmp_path / "sub"
    env = dict(os.environ, TQDM_DISABLE="1")
    result = subprocess.run(
        [sys.executable, "-m", "cnncourse", "train", "--model", "lenet", "--data", "mnist", "--quick",
         "--epochs", "1", "--batch-size", "32", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["image_size"] == 28 and metrics["provenance"]["settings"]["batch_size"] == 32
    assert metrics["provenance"]["torch_threads"] == 1
    assert (out / "confusion.png").exists() and (out / "curves.png").exists()


@pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0, reason="git missing")
def test_provenance_dirty_ignores_the_runs_own_folder(tmp_path):
    """Re-recording results/<name> changes tracked files inside the run's folder: that is the run's
    output, not a change to the code, so the provenance stays clean; a changed source file does not."""
    from cnncourse.cli import _git_commit

    repo = tmp_path / "repo"
    (repo / "results" / "run").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "results" / "run" / "metrics.json").write_text("{}\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "start"], check=True)
    head = subprocess.run(git[:3] + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    (repo / "results" / "run" / "metrics.json").unlink()
    assert _git_commit(repo / "results" / "run", folder=repo) == {"commit": head, "dirty": False}
    assert _git_commit(None, folder=repo)["dirty"] is True
    (repo / "code.py").write_text("x = 2\n")
    assert _git_commit(repo / "results" / "run", folder=repo) == {"commit": head, "dirty": True}
    assert _git_commit(None, folder=tmp_path / "not-a-repo") == {"commit": None, "dirty": None}
