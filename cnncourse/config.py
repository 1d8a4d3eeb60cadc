"""The course's global settings: quick mode, the data folder and the runs folder.

Quick mode (``CNNCOURSE_QUICK=1`` or :func:`set_quick_mode`) makes every data set
call return the small real samples shipped inside the package, so that notebooks
and tests run in seconds on a CPU with no network.  The data folder is where full
data sets are downloaded: the ``root`` argument, else ``CNNCOURSE_DATA``, else
``~/.cache/cnncourse``. The runs folder is where the lessons' real runs keep their checkpoints:
``CNNCOURSE_RUNS``, else ``runs`` beside the notebook (in Colab, :mod:`cnncourse.colab` points both
folders at Google Drive, where they survive a disconnected runtime).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

QUICK_ENV = "CNNCOURSE_QUICK"
DATA_ENV = "CNNCOURSE_DATA"
RUNS_ENV = "CNNCOURSE_RUNS"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "cnncourse"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_quick_override: Optional[bool] = None


def quick_mode() -> bool:
    """Return True when quick mode is on (the Python setting wins over the environment)."""
    if _quick_override is not None:
        return _quick_override
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{QUICK_ENV}={value!r} is not understood: use 1 (quick) or 0 (full).")


def set_quick_mode(enabled: Optional[bool]) -> None:
    """Turn quick mode on or off for this process; ``None`` goes back to the environment."""
    global _quick_override
    _quick_override = None if enabled is None else bool(enabled)


@contextlib.contextmanager
def quick(enabled: bool = True) -> Iterator[None]:
    """Context manager that sets quick mode inside a ``with`` block and restores it after."""
    global _quick_override
    previous = _quick_override
    set_quick_mode(enabled)
    try:
        yield
    finally:
        _quick_override = previous


def data_root(root: "str | os.PathLike[str] | None" = None) -> Path:
    """The folder that holds downloaded data: ``root``, else ``$CNNCOURSE_DATA``, else the default."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_ROOT


def runs_root() -> Path:
    """The folder for the lessons' checkpoints and run folders: ``$CNNCOURSE_RUNS``, else ``runs``."""
    env = os.environ.get(RUNS_ENV)
    return Path(env).expanduser() if env else Path("runs")
