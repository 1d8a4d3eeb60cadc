"""The ``cnncourse`` command end to end, in quick mode, with the network blocked."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cnncourse.cli import build_parser, main
from cnncourse.runconfig import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_help_lists_every_command_and_every_setting(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("train", "models", "datasets", "info"):
        assert command in text
    assert main(["train", "--help"]) == 0
    train_help = capsys.readouterr().out
    for option in TRAIN_OPTIONS + tuple("--" + name.replace("_", "-") for name in TrainConfig.names()):
        assert option in train_help, option


def test_the_options_are_the_settings_passed_to_fit():
    """Every option lands in TrainConfig, and every setting fit knows reaches fit."""
    import inspect

    from cnncourse.train import fit
    args = build_parser().parse_args(["train", "--model", "resnet20", "--data", "mnist", "--lr", "0.2",
                                      "--optimizer", "sgd", "--momentum", "0.8", "--weight-decay", "5e-4",
                                      "--schedule", "step", "--label-smoothing", "0.1", "--grad-clip", "2",
                                      "--amp", "off", "--channels-last", "--seed", "7", "--epochs", "3"])
    config = TrainConfig.from_dict(vars(args))
    kwargs = config.fit_kwargs()
    assert kwargs == dict(epochs=3, optimizer="sgd", lr=0.2, weight_decay=5e-4, momentum=0.8, schedule="step",
                          label_smoothing=0.1, amp=False, channels_last=True, compile=False, grad_clip=2.0, seed=7)
    assert set(kwargs) <= set(inspect.signature(fit).parameters)
    assert TrainConfig().fit_kwargs()["epochs"] == 10 and TrainConfig(quick=True).fit_kwargs()["epochs"] == 1


@pytest.mark.parametrize("size, small_input, kernel", [(32, None, 3), (63, None, 3), (64, None, 7), (32, False, 7),
                                                       (64, True, 3)])
def test_the_small_input_stem_is_the_default_below_64_px(size, small_input, kernel):
    from cnncourse.cli_train import _build_model
    from cnncourse.data import dataset_info
    config = TrainConfig(model="resnet18", data="cifar10", small_input=small_input)
    with torch.device("meta"):
        model = _build_model(config, dataset_info("cifar10"), size)
    assert model.conv1.kernel_size == (kernel, kernel)


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
def test_provenance_dirty_ignores_run_outputs(tmp_path):
    """Re-recording results/<name> changes tracked files inside the run's folder, and a run going on beside
    it changes its own metrics.json: those are results, not a change to the code, so the provenance stays
    clean; a changed source file does not."""
    from cnncourse.cli import git_commit

    repo = tmp_path / "repo"
    for name in ("results/run/metrics.json", "results/run/notes.txt", "results/other/run.json", "code.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "start"], check=True)
    head = subprocess.run(git[:3] + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    (repo / "results" / "run" / "notes.txt").unlink()  # inside the run's own folder
    (repo / "results" / "other" / "run.json").write_text("2\n")  # another run's output
    assert git_commit(repo / "results" / "run", folder=repo) == {"commit": head, "dirty": False}
    assert git_commit(None, folder=repo)["dirty"] is True  # notes.txt is not a run output
    (repo / "code.py").write_text("2\n")
    assert git_commit(repo / "results" / "run", folder=repo) == {"commit": head, "dirty": True}
    assert git_commit(None, folder=tmp_path / "not-a-repo") == {"commit": None, "dirty": None}


def test_a_run_keeps_its_weights_and_load_model_checks_them(tmp_path, no_network, capsys):
    from cnncourse import quick
    from cnncourse.fastdata import fast_loaders
    from cnncourse.reference import WeightsError, load_model
    from cnncourse.train import evaluate

    out = tmp_path / "results" / "demo"
    assert main(["train", "--model", "resnet20", "--data", "mnist", "--quick", "--epochs", "2", "--out", str(out),
                 "--no-progress", "--batch-size", "32"]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"]["file"] == "model.pt" and len(metrics["weights"]["sha256"]) == 64
    model = load_model("demo", path=tmp_path / "results")
    with quick():
        _, test = fast_loaders("mnist", batch_size=32)
    assert evaluate(model, test)["accuracy"] == pytest.approx(metrics["test_accuracy"])
    data = bytearray((out / "model.pt").read_bytes())
    data[-30] ^= 0xFF
    (out / "model.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="has been altered: its SHA-256 is"):
        load_model("demo", path=tmp_path / "results")
    (out / "model.pt").unlink()
    with pytest.raises(WeightsError, match="model.pt is missing"):
        load_model("demo", path=tmp_path / "results")


# --------------------------------------------------------------------------------------- resume: refused means unchanged
def quick_run(out, *extra):
    return main(["train", "--model", "lenet", "--data", "cifar10", "--quick", "--out", str(out), "--no-progress",
                 "--batch-size", "50", *extra])


def snapshot(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("first, refused, message", [
    (["--epochs", "2"], ["--data", "mnist"], "--data mnist (the run used cifar10)"),
    (["--epochs", "2", "--schedule", "onecycle"], ["--epochs", "1"], "a resume can only train longer (--epochs 2"),
    (["--epochs", "1"], ["--epochs", "2", "--lr", "0.5", "--weight-decay", "0.1"],
     "--lr 0.5 (the run used 0.001); --weight-decay 0.1 (the run used 0.0)"),
    (["--epochs", "1"], ["--seed", "5"], "--seed 5 (the run used 0)"),
])
def test_a_refused_resume_changes_nothing_and_the_run_stays_resumable(tmp_path, capsys, first, refused, message):
    out = tmp_path / "run"
    assert quick_run(out, *first) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--no-progress", *refused]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert snapshot(out) == before
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--epochs", "3"]
                if "onecycle" not in first else ["train", "--out", str(out), "--resume", "--no-progress"]) == 0


def test_provenance_after_a_resume_describes_what_ran_and_reruns_the_whole_experiment(tmp_path, capsys):
    out = tmp_path / "run"
    assert quick_run(out, "--epochs", "1", "--lr", "0.002", "--optimizer", "sgd") == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    provenance = metrics["provenance"]
    assert provenance["settings"]["lr"] == 0.002 and provenance["settings"]["epochs"] == 2
    assert [r["lr"] for r in metrics["history"]] == [0.002, 0.002]
    assert provenance["command"] == (f"cnncourse train --model lenet --data cifar10 --epochs 2 --batch-size 50 "
                                     f"--lr 0.002 --optimizer sgd --quick --out {out}")
    assert provenance["argv"][-3:] == ["--epochs", "2", "--no-progress"] and provenance["resumed_from_epoch"] == 1
    again = build_parser().parse_args(provenance["command"].split()[1:])
    assert TrainConfig.from_dict(vars(again)).to_dict() == provenance["settings"]


# --------------------------------------------------------------------------------------- clear messages, no tracebacks
@pytest.mark.parametrize("option, message", [
    (["--batch-size", "0"], "--batch-size must be at least 1; got 0"),
    (["--image-size", "0"], "--image-size must be at least 1; got 0"),
    (["--threads", "0"], "--threads must be at least 1; got 0"),
    (["--label-smoothing", "2"], "--label-smoothing must be in [0, 1) (e.g. 0 or 0.1); got 2.0"),
    (["--grad-clip", "-1"], "--grad-clip must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0 (e.g. 1e-3); got nan"),
    (["--lr", "-0.1"], "--lr must be a finite number > 0"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1]"),
    (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    (["--epochs", "0"], "--epochs must be a whole number >= 1; got 0"),
    (["--device", "gpu7"], "device 'gpu7' is not a device name"),
    (["--image-size", "7", "--model", "resnet50"], "--image-size 7 is too small for resnet50: it needs at least 8 px"),
    (["--model", "resnet20", "--image-size", "2"], "--image-size 2 is too small for resnet20: it needs at least 4 px; "
                                                   "pass --image-size 4 (or larger)"),
    (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
])
def test_bad_values_end_in_one_clear_line_before_anything_is_done(tmp_path, capsys, option, message):
    out = tmp_path / "run"
    argv = ["train", "--model", "lenet", "--data", "cifar10", "--quick", "--out", str(out), "--no-progress"]
    if "--model" in option:
        argv[2] = option[option.index("--model") + 1]
        option = [o for i, o in enumerate(option) if o != "--model" and (i == 0 or option[i - 1] != "--model")]
    assert main(argv + option) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert not (out / "metrics.json").exists() and not (out / "run.json").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert quick_run(target) == 2
    assert "is an existing file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read as a checkpoint"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "is not a cnncourse training checkpoint"),
    (lambda p: p.write_text("not a checkpoint at all"), "cannot be read as a checkpoint"),
])
def test_a_damaged_checkpoint_gets_a_message_not_a_traceback(tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    assert quick_run(out) == 0
    damage(out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert "delete it" in err


def test_a_corrupt_run_json_gets_a_message(tmp_path, capsys):
    out = tmp_path / "run"
    assert quick_run(out) == 0
    (out / "run.json").write_text("{ not json")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "run.json is damaged" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    out = tmp_path / "run"
    assert quick_run(out) == 0
    (out / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        main(["train", "--out", str(out), "--resume", "--no-progress", "--debug"])


def test_a_failing_plot_is_a_warning_after_metrics_are_written(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "confusion.png").mkdir(parents=True)  # a real OS failure when the figure is saved
    assert quick_run(out) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "confusion.png was not written" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and (out / "curves.png").is_file()


# --------------------------------------------------------------------------------------- unusable image folders
def write_png(path, size=(8, 8), colour=(200, 30, 30)):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def image_folder(root, per_class=4, classes=("cat", "dog")):
    for name in classes:
        for i in range(per_class):
            write_png(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("spoil, message", [
    (lambda root: (root / "cat" / "0.png").write_bytes((root / "cat" / "0.png").read_bytes()[:40]), "0.png"),
    (lambda root: (root / "dog" / "1.png").write_bytes(b"this is not an image"), "1.png"),
    (lambda root: [p.unlink() for p in (root / "dog").iterdir()], "dog"),
    (lambda root: write_png(root / "cat" / "big.png", size=(12, 12)), "--image-size"),
    (lambda root: write_png(root / "bird" / "0.png"), "bird"),
])
def test_an_unusable_image_folder_gets_a_message_not_a_traceback(tmp_path, capsys, spoil, message):
    root = image_folder(tmp_path / "pictures")
    spoil(root)
    status = main(["train", "--model", "resnet20", "--data", str(root), "--epochs", "1", "--out",
                   str(tmp_path / "run"), "--no-progress", "--batch-size", "4"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert message in err and "Traceback" not in err, err


def test_no_class_folders_gets_a_message(tmp_path, capsys):
    root = tmp_path / "flat"
    write_png(root / "a.png")
    assert main(["train", "--model", "resnet20", "--data", str(root), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "class" in err, err


def test_python_advice_is_translated_for_the_command_line():
    from cnncourse.cli import for_command_line
    text = ("Delete it and call get_dataset('galaxy10') again to download it afresh; pass root=... or set "
            "CNNCOURSE_DATA to use another folder. Or set CNNCOURSE_QUICK=1 (or cnncourse.set_quick_mode(True)) "
            "to use the small bundled samples; or pass image_size=64.")
    assert for_command_line(text) == (
        "Delete it and run the same cnncourse train command again to download it afresh; pass --data-root DIR or "
        "set CNNCOURSE_DATA to use another folder. Or add --quick to use the small bundled samples; or pass "
        "--image-size 64.")


def test_a_damaged_galaxy_file_under_the_command_gives_command_line_advice(tmp_path, capsys, no_network):
    folder = tmp_path / "data" / "galaxy10"
    folder.mkdir(parents=True)
    (folder / "Galaxy10_DECals.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    status = main(["train", "--model", "resnet20", "--data", "galaxy10", "--data-root", str(tmp_path / "data"),
                   "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    assert "get_dataset(" not in err and "root=..." not in err, err
