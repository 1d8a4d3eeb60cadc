"""Faults that must not lose work, produced for real: signals to a real process, a full disk
(a small tmpfs), a read-only folder (tmpfs remounted read-only)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from cnncourse.checkpointing import CheckpointWriteError, load_checkpoint
from cnncourse.cli import main

TRAINER = """
import sys, torch
from torch import nn
from cnncourse.fastdata import TensorLoader
from cnncourse.train import fit

class Ballast(nn.Module):
    '''A tiny classifier carrying a large buffer, so that writing its checkpoint takes a while.'''
    def __init__(self, floats):
        super().__init__()
        self.linear = nn.Linear(16, 2)
        self.register_buffer("ballast", torch.zeros(floats))
    def forward(self, x):
        return self.linear(x.flatten(1))

torch.manual_seed(0)
loader = TensorLoader(torch.randint(0, 255, (64, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 2, (64,)),
                      batch_size=16)
history = fit(Ballast(int(sys.argv[2])), loader, epochs=3, checkpoint=sys.argv[1], resume=True, device="cpu",
              progress=False)
print("interrupted" if history.interrupted else "finished", len(history), flush=True)
"""


def start_trainer(tmp_path, floats=100_000_000):
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(TRAINER))
    checkpoint = tmp_path / "ck.pt"
    process = subprocess.Popen([sys.executable, str(script), str(checkpoint), str(floats)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return process, checkpoint


def wait_for_temporary(process, checkpoint, timeout=120):
    """Block until the trainer is in the middle of writing its first checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(checkpoint.parent.glob(f".{checkpoint.name}.*.tmp")):
            return
        if process.poll() is not None:
            raise AssertionError(f"the trainer ended early: {process.communicate()}")
        time.sleep(0.002)
    process.kill()
    raise AssertionError("the trainer never wrote a checkpoint")


def test_ctrl_c_during_a_checkpoint_write_keeps_that_epoch(tmp_path):
    process, checkpoint = start_trainer(tmp_path)
    wait_for_temporary(process, checkpoint)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert out.split() == ["interrupted", "1"]
    assert f"the checkpoint {checkpoint} holds epoch 1; resume=True continues from it" in err
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert not list(tmp_path.glob(".ck.pt.*.tmp"))


def test_sigkill_during_a_write_leaves_a_temporary_file_that_the_next_start_removes(tmp_path):
    process, checkpoint = start_trainer(tmp_path)
    wait_for_temporary(process, checkpoint)
    process.kill()
    process.communicate(timeout=60)
    assert list(tmp_path.glob(".ck.pt.*.tmp")) and not checkpoint.exists()
    again, _ = start_trainer(tmp_path, floats=10)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert out.split() == ["finished", "3"]
    assert not list(tmp_path.glob(".ck.pt.*.tmp"))


class GrowingBallast(torch.nn.Module):
    """Its buffer grows after the first epoch, so the second checkpoint no longer fits on the disk."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 2)
        self.register_buffer("ballast", torch.zeros(100_000))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 5:
            self.ballast = torch.zeros(2_000_000)
        return self.linear(x.flatten(1))


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(mounts):
    from cnncourse.fastdata import TensorLoader
    from cnncourse.train import fit
    disk = mounts.mount("3m")
    checkpoint = disk / "ck.pt"
    loader = TensorLoader(torch.randint(0, 255, (64, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 2, (64,)),
                          batch_size=16)
    with pytest.raises(CheckpointWriteError) as caught:
        fit(GrowingBallast(), loader, epochs=3, checkpoint=checkpoint, device="cpu", progress=False)
    message = str(caught.value)
    assert f"no space left on device: {checkpoint} could not be written" in message
    assert "the previous checkpoint" in message and "resume" in message
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert sorted(p.name for p in disk.iterdir()) == ["ck.pt"]  # the partial temporary file is gone


def test_the_command_reports_a_full_disk_and_how_to_resume(mounts, capsys):
    out = mounts.mount("400k")
    status = main(["train", "--model", "lenet", "--data", "cifar10", "--quick", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert f"no space left on device: {out / 'checkpoint.pt'} could not be written (no checkpoint was kept)" in err
    assert f"cnncourse train --out {out} --resume" in err


def test_a_read_only_out_folder_is_refused_before_any_data_is_loaded(mounts, capsys):
    out = mounts.mount("1m")
    mounts.read_only(out)
    status = main(["train", "--model", "lenet", "--data", "mnist", "--out", str(out / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"--out {out / 'run'} cannot be written (Read-only file system)" in err
    assert "MNIST" not in err  # refused before the (missing, undownloadable) data was looked for
