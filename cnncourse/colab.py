"""Google Colab: data and checkpoints on Google Drive, so that a disconnected runtime loses nothing,
and a clear word when the runtime has no GPU.

Every notebook's set-up cell calls :func:`setup` once the package is installed in Colab; outside
Colab it changes nothing. Written by hand because Colab offers no such switch: ``google.colab.drive``
mounts Drive, and the rest is where the course's own settings (``CNNCOURSE_DATA``,
``CNNCOURSE_RUNS``) point.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Optional

from cnncourse.config import DATA_ENV, RUNS_ENV, data_root, runs_root

DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "/content/drive/MyDrive/cnncourse"      # data/ and runs/ go here
NO_GPU = ("This Colab runtime has no GPU. The lesson's quick and laptop-scale runs work on its CPU; for "
          "a GPU choose Runtime > Change runtime type > Hardware accelerator: T4 GPU, then run the "
          "notebook again from the top (a new runtime starts empty, but Drive keeps the data and the runs).")


def in_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` module is loaded there)."""
    return "google.colab" in sys.modules


def _has_gpu() -> bool:
    import torch
    return torch.cuda.is_available()


def setup(use_drive: bool = True, folder: Optional[str] = None) -> Dict[str, object]:
    """In Colab: with ``use_drive``, mount Google Drive and keep the downloaded data
    (``$CNNCOURSE_DATA``) and the lessons' checkpoints (``$CNNCOURSE_RUNS``) in ``folder`` (default
    :data:`DRIVE_FOLDER`), so a run resumes after a disconnect; settings the user made are kept. Say
    how to switch to a GPU runtime where there is none. Outside Colab nothing changes.
    Returns where data and runs go, and whether a GPU is there."""
    colab = in_colab()
    drive = False
    if colab and use_drive:
        target = Path(folder or DRIVE_FOLDER)
        try:
            from google.colab import drive as google_drive   # only importable in Colab
            google_drive.mount(DRIVE_MOUNT)
            (target / "data").mkdir(parents=True, exist_ok=True)
            (target / "runs").mkdir(parents=True, exist_ok=True)
            os.environ.setdefault(DATA_ENV, str(target / "data"))
            os.environ.setdefault(RUNS_ENV, str(target / "runs"))
            drive = True
        except Exception as error:   # the user declined, or Drive is unreachable: go on without it
            print(f"Google Drive not mounted ({type(error).__name__}: {error}); data and runs stay on the "
                  "runtime's disk and are lost when it disconnects. Set USE_DRIVE = False to skip this.")
    gpu = _has_gpu()
    if colab and not gpu:
        print(NO_GPU)
    if drive:
        print(f"data in {data_root()}, checkpoints in {runs_root()} (Google Drive)")
    return {"colab": colab, "drive": drive, "data": data_root(), "runs": runs_root(), "gpu": gpu}
