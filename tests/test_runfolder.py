"""What a run records: a run folder is never overwritten by accident, two runs never share one, and
the recorded command re-runs elsewhere (issues 26 and 28). Real processes, real files, real locks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnncourse.cli import build_parser, main
from cnncourse.runconfig import TrainConfig
from cnncourse.runfolder import LOCK_FILE, RUN_FILES, is_locked


@pytest.fixture
def quick():
    from cnncourse import config
    config.set_quick_mode(True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train(out, *extra, model="lenet"):
    return main(["train", "--model", model, "--data", "mnist", "--quick", "--out", str(out), "--no-progress",
                 "--batch-size", "50", *extra])


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK_FILE}


# --------------------------------------------------------------------------------------- never overwritten
def test_a_second_run_into_a_folder_holding_one_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "ow"
    assert train(out, "--epochs", "2") == 0
    before = files(out)
    capsys.readouterr()
    assert train(out, "--epochs", "1", model="resnet20") == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"cnncourse train --out {out} --resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert files(out) == before


def test_overwrite_deletes_only_a_runs_files(tmp_path, capsys):
    out = tmp_path / "ow"
    assert train(out, "--epochs", "1") == 0
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    assert train(out, "--epochs", "1", "--overwrite", model="resnet20") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "resnet20"
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub").is_dir()


def test_a_folder_without_a_checkpoint_says_there_is_nothing_to_resume(tmp_path, capsys):
    out = tmp_path / "half"
    out.mkdir()
    (out / "run.json").write_text("{}")
    assert train(out) == 2
    err = capsys.readouterr().err
    assert "no checkpoint.pt to resume from" in err and "--overwrite" in err and "--resume`" not in err


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    before = files(out)
    assert main(["train", "--out", str(out), "--resume", "--overwrite", "--no-progress"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert files(out) == before


@pytest.mark.parametrize("where", ["/", "~"])
def test_the_root_and_home_folders_are_refused(where, capsys):
    assert train(os.path.expanduser(where)) == 2
    assert "a run needs a folder of its own" in capsys.readouterr().err


def test_a_folder_another_process_is_writing_into_is_refused_until_it_dies(tmp_path, capsys):
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cnncourse.runfolder import claim_run_folder; "
         "claim_run_folder(sys.argv[1]); print('held', flush=True); time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_locked(out)
        assert train(out) == 2
        assert "another run is writing into" in capsys.readouterr().err
        assert not (out / "run.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # the system releases a flock on any exit
        holder.wait()
    assert not is_locked(out)
    assert train(out) == 0


def test_stale_temporaries_of_killed_writes_are_cleaned_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [out / f".{name}.{dead}.0123abcd.tmp" for name in ("metrics.json", "model.pt", "checkpoint.pt")]
    for path in stale:
        path.write_bytes(b"half")
    assert train(out) == 0
    assert not any(path.exists() for path in stale)


def test_the_speedrun_refuses_an_existing_record_and_replaces_it_with_overwrite(quick, tmp_path, capsys):
    out = tmp_path / "sr"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}')
    argv = ["speedrun", "--epochs", "1", "--threads", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run (metrics.json)" in err and "--overwrite" in err
    assert json.loads((out / "metrics.json").read_text()) == {"old": True}
    assert main(argv + ["--overwrite"]) == 0
    assert "recipe" in json.loads((out / "metrics.json").read_text())


# --------------------------------------------------------------------------------------- resume records its length
def test_a_resume_keeps_the_epochs_started_with_and_resumed_to(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--epochs", "1") == 0
    first = json.loads((out / "metrics.json").read_text())["provenance"]
    assert first["epochs_started_with"] == 1 and first["epochs_resumed_to"] is None
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "1", "--no-progress"]) == 2
    assert "a resume can only train longer (--epochs 2 or more)" in capsys.readouterr().err
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    assert provenance["epochs_started_with"] == 1 and provenance["epochs_resumed_to"] == 2
    assert json.loads((out / "run.json").read_text())["epochs_started_with"] == 1


# --------------------------------------------------------------------------------------- bounds and typos
@pytest.mark.parametrize("option, message", [
    (["--image-size", "100000"], "--image-size must be at most 1,024 (larger images need more memory"),
    (["--batch-size", "70000"], "--batch-size must be at most 65,536"),
    (["--epochs", "20000"], "--epochs must be at most 10,000"),
    (["--seed", str(2**70)], "--seed must be at most 9,223,372,036,854,775,807 (torch seeds are 64-bit)"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--val-seed", "-3"], "--val-seed must be at least 0"),
    (["--epoch", "1"], "unrecognized arguments: --epoch 1"),
])
def test_values_past_their_bounds_and_abbreviations_are_refused(tmp_path, capsys, option, message):
    out = tmp_path / "run"
    assert train(out, *option) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (out / "run.json").exists()


def test_no_command_accepts_abbreviations(capsys):
    assert main(["speedrun", "--epoch", "1", "--out", "x"]) == 2
    assert main(["--vers"]) == 2


# --------------------------------------------------------------------------------------- the hold-out's own seed
def test_val_seed_fixes_the_hold_out_while_the_seed_varies_the_training(quick):
    from cnncourse.fastdata import fast_loaders
    held = {}
    for seed in (1, 2):
        for val_seed in (None, 0):
            _, val, _ = fast_loaders("mnist", val_fraction=0.2, seed=seed, val_seed=val_seed)
            held[seed, val_seed] = val.images
    assert torch.equal(held[1, 0], held[2, 0])  # fixed hold-out
    assert not torch.equal(held[1, None], held[2, None])  # default: the training seed moves it


def test_val_seed_reaches_the_data_and_the_record(tmp_path, capsys):
    runs = {}
    for seed in (1, 2):
        out = tmp_path / f"s{seed}"
        assert train(out, "--val-fraction", "0.2", "--val-seed", "0", "--seed", str(seed), "--epochs", "1") == 0
        runs[seed] = json.loads((out / "metrics.json").read_text())
    assert runs[1]["num_val_images"] == runs[2]["num_val_images"] > 0
    assert "--val-seed 0" in runs[1]["provenance"]["command"]
    assert runs[1]["provenance"]["settings"]["val_seed"] == 0
    # the classic DataLoader path draws the same hold-out as the fast one
    from cnncourse.data import get_dataset
    from cnncourse.fastdata import fast_loaders
    a = get_dataset("mnist", "val", val_fraction=0.2, seed=0)
    _, val, _ = fast_loaders("mnist", val_fraction=0.2, seed=5, val_seed=0)
    assert sorted(int(t) for t in a.targets) == sorted(val.labels.tolist())


# --------------------------------------------------------------------------------------- commands without machine paths
def test_the_recorded_command_leaves_out_the_machine(tmp_path, capsys):
    data = tmp_path / "data"
    folder = data / "pictures"
    from PIL import Image
    for split in ("train", "test"):
        for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
            for i in range(6):
                (folder / split / name).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), colour).save(folder / split / name / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet20", "--data", str(folder), "--data-root", str(data), "--epochs", "1",
                 "--threads", "1", "--out", str(out), "--no-progress", "--batch-size", "4"]) == 0
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    command = provenance["command"]
    assert "--data pictures " in command and str(data) not in command.replace(f"--out {out}", "")
    assert "--threads" not in command and "--data-root" not in command
    assert str(folder) in provenance["argv"]  # what was typed stays
    # the portable name finds the folder again through the data folder, from anywhere
    again = tmp_path / "again"
    argv = command.split()[1:-2] + ["--out", str(again), "--data-root", str(data), "--no-progress"]
    assert main(argv) == 0
    parsed = TrainConfig.from_dict(vars(build_parser().parse_args(command.split()[1:])))
    assert parsed.data == "pictures"


def test_run_files_are_the_files_a_run_writes(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    written = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert written == set(RUN_FILES)


def test_ctrl_c_before_the_first_epoch_ends_names_a_command_that_works(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, CNNCOURSE_QUICK="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "cnncourse", "train", "--model", "resnet20", "--data", "cifar10",
               "--epochs", "1", "--batch-size", "2", "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 130, err
    assert not (out / "checkpoint.pt").exists()
    assert "no checkpoint to resume" in err and "--resume" not in err.split("start again with:")[-1]
    advice = err.split("start again with: ")[1].split("\n")[0]
    assert "--overwrite" in advice
    assert advice.startswith("cnncourse train ")
    again = subprocess.run([sys.executable, "-m", "cnncourse", *advice.split()[1:]],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr


def test_no_recorded_command_names_a_machine():
    """Every `command` under results/ re-runs on another machine (scripts/portable_commands.py rewrote
    the older ones; cnncourse train and speedrun write them so)."""
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "scripts" / "portable_commands.py"
    spec = importlib.util.spec_from_file_location("portable_commands", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.not_portable() == []
    assert module.portable_command("cnncourse train --data /d/cifar10-jpeg --threads 1 --data-root /d --out r") == \
        "cnncourse train --data cifar10-jpeg --out r"
    assert module.machine_paths("cnncourse train --data /d/x --out r") == ["/d/x"]
