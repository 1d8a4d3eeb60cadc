"""Colab, disconnects and Drive (issue 27, item 4): every notebook's set-up cell, run with Colab's
environment faked (a stub ``google.colab`` module, git and pip recorded instead of run), installs the
course, keeps data and checkpoints on the mounted Drive and says how to get a GPU when there is none;
outside Colab it changes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import cnncourse.colab as colab
from cnncourse.config import DATA_ENV, RUNS_ENV, data_root, runs_root

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(REPO.glob("notebooks/[0-9][0-9]_*.ipynb")) + sorted(REPO.glob("notebooks/labs/[0-9][0-9]_*.ipynb"))


def setup_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "google.colab" in "".join(c["source"]))


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A stub google.colab whose drive.mount records its calls and 'mounts' a folder under tmp_path."""
    mounted = []
    drive = types.SimpleNamespace(mount=lambda where: mounted.append(where))
    package = types.ModuleType("google.colab")
    package.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setattr(colab, "DRIVE_FOLDER", str(tmp_path / "MyDrive" / "cnncourse"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.delenv(RUNS_ENV, raising=False)
    monkeypatch.setattr(colab, "_has_gpu", lambda: False)
    return mounted


def test_every_notebook_has_the_same_set_up_cell_but_for_its_folder():
    cells = {p: setup_cell(p) for p in NOTEBOOKS}
    lesson = cells[NOTEBOOKS[0]]
    assert "USE_DRIVE = True" in lesson and "cnncourse.colab.setup(use_drive=USE_DRIVE)" in lesson
    for path, cell in cells.items():
        expected = lesson.replace('os.chdir("/content/cnncourse/notebooks")', 'os.chdir("/content/cnncourse/notebooks/labs")') \
            if path.parent.name == "labs" else lesson
        assert cell == expected, f"{path.name}: its set-up cell differs from the others'"


@pytest.mark.parametrize("path", [NOTEBOOKS[0], next(p for p in NOTEBOOKS if p.parent.name == "labs")],
                         ids=lambda p: p.name)
def test_the_set_up_cell_in_faked_colab_installs_mounts_drive_and_asks_for_a_gpu(path, fake_colab, monkeypatch,
                                                                                capsys, tmp_path):
    commands, folders = [], []
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    monkeypatch.setattr(os.path, "isdir", lambda folder: False)          # a fresh runtime: nothing cloned yet
    monkeypatch.setattr(os, "chdir", folders.append)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(setup_cell(path), str(path), "exec"), {"__name__": "__main__"})
    assert commands[0][:4] == ["git", "clone", "--depth", "1"] and commands[0][-1] == "/content/cnncourse"
    assert commands[1][-5:] == ["pip", "install", "-q", "-e", "/content/cnncourse"]
    assert folders == ["/content/cnncourse/notebooks" + ("/labs" if path.parent.name == "labs" else "")]
    assert fake_colab == ["/content/drive"]
    drive = tmp_path / "MyDrive" / "cnncourse"
    assert data_root() == drive / "data" and runs_root() == drive / "runs" and (drive / "runs").is_dir()
    out = capsys.readouterr().out
    assert "no GPU" in out and "Change runtime type" in out and "(Google Drive)" in out


def test_setup_keeps_the_users_own_folders_and_can_skip_drive(fake_colab, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "mine"))
    placed = colab.setup(use_drive=True)
    assert placed["drive"] and placed["data"] == tmp_path / "mine"                 # the user's setting wins
    assert placed["runs"] == tmp_path / "MyDrive" / "cnncourse" / "runs"
    monkeypatch.delenv(RUNS_ENV)
    fake_colab.clear()
    placed = colab.setup(use_drive=False)
    assert fake_colab == [] and not placed["drive"] and placed["runs"] == Path("runs")


def test_a_refused_mount_goes_on_without_drive_and_says_so(fake_colab, monkeypatch, capsys):
    def refuse(where):
        raise ValueError("mount failed")
    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount", refuse)
    placed = colab.setup()
    assert not placed["drive"] and placed["runs"] == Path("runs")
    assert "Google Drive not mounted (ValueError: mount failed)" in capsys.readouterr().out


def test_with_a_gpu_nothing_asks_to_switch(fake_colab, monkeypatch, capsys):
    monkeypatch.setattr(colab, "_has_gpu", lambda: True)
    assert colab.setup(use_drive=False)["gpu"]
    assert "no GPU" not in capsys.readouterr().out


def test_outside_colab_nothing_changes(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv(RUNS_ENV, raising=False)
    placed = colab.setup()
    assert placed["colab"] is False and placed["drive"] is False and placed["runs"] == Path("runs")
    assert RUNS_ENV not in os.environ and capsys.readouterr().out == ""
