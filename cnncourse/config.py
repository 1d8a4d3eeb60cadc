"""The course's global settings: the scale, the data folder and the runs folder.

The scale (:data:`SCALES`; ``CNNCOURSE_SCALE`` or :func:`set_scale`) sizes what a lesson runs:
``"sample"`` (quick mode: ``CNNCOURSE_QUICK=1`` or :func:`set_quick_mode`) makes every data set call
return the small real samples shipped inside the package, so that notebooks and tests run in seconds
with no network; ``"laptop"``, the default, reads the full MNIST, Fashion-MNIST and CIFAR-10 (Galaxy10
stays on its sample) and sizes live runs for minutes on a CPU; ``"full"`` runs the articles' settings.
The data folder is where full data sets are downloaded: the ``root`` argument, else ``CNNCOURSE_DATA``,
else ``~/.cache/cnncourse``. The runs folder is where the lessons' real runs keep their checkpoints:
``CNNCOURSE_RUNS``, else ``runs`` beside the notebook (in Colab, :mod:`cnncourse.colab` points both
folders at Google Drive, where they survive a disconnected runtime).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

QUICK_ENV = "CNNCOURSE_QUICK"
SCALE_ENV = "CNNCOURSE_SCALE"
DATA_ENV = "CNNCOURSE_DATA"
RUNS_ENV = "CNNCOURSE_RUNS"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "cnncourse"

#: The three scales a lesson runs at, smallest first, with what each means.
SCALES = {
    "sample": "the small real samples shipped inside the package: seconds, no download (CI and nbval)",
    "laptop": "the full MNIST, Fashion-MNIST and CIFAR-10 (downloads of 11-170 MB; Galaxy10 stays on its "
              "shipped sample), every live run sized for minutes on a 2-core CPU",
    "full": "the articles' own settings and data (Galaxy10: a 2.5 GB download); hours on a CPU, a GPU advised",
}
DEFAULT_SCALE = "laptop"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_scale_override: Optional[str] = None


def _checked(name: str, source: str) -> str:
    value = str(name).strip().lower()
    if value not in SCALES:
        raise ValueError(f"{source}={name!r} is not a scale: use one of {', '.join(SCALES)}")
    return value


def scale() -> str:
    """The scale lessons and data run at: ``"sample"``, ``"laptop"`` (the default) or ``"full"``.

    The Python setting (:func:`set_scale`) wins; then ``CNNCOURSE_QUICK=1``, which keeps meaning the
    sample; then ``CNNCOURSE_SCALE``; else ``"laptop"``."""
    if _scale_override is not None:
        return _scale_override
    quick_value = os.environ.get(QUICK_ENV, "").strip().lower()
    if quick_value not in _TRUE | _FALSE:
        raise ValueError(f"{QUICK_ENV}={quick_value!r} is not understood: use 1 (the sample scale) or 0.")
    if quick_value in _TRUE:
        return "sample"
    value = os.environ.get(SCALE_ENV, "").strip()
    return _checked(value, SCALE_ENV) if value else DEFAULT_SCALE


def set_scale(name: Optional[str]) -> None:
    """Choose the scale for this process (``"sample"``, ``"laptop"``, ``"full"``); ``None`` goes back to
    the environment."""
    global _scale_override
    _scale_override = None if name is None else _checked(name, "scale")


def at_scale(sample, laptop, full=None):
    """The value of the current scale: ``sample``, ``laptop``, or ``full`` (default: the laptop's)."""
    return {"sample": sample, "laptop": laptop, "full": laptop if full is None else full}[scale()]


def describe_scale(lesson: Optional[str] = None, full_factor: Optional[float] = None) -> str:
    """One line a lesson prints: its scale and what that means. At the full scale, given the ``lesson``'s
    name (``"02_lenet_cifar10"``) and ``full_factor``, how many times the laptop scale's work its live
    runs do at the full scale (its epochs over the laptop's, say), it adds an estimate of the time before
    anything starts: the lesson's minutes at the laptop scale in ``results/laptop-scale.json`` times
    ``full_factor``, on the CPU that recorded them."""
    line = f"scale: {scale()} ({SCALES[scale()]})"
    if scale() != "full" or lesson is None or full_factor is None:
        return line
    import json
    try:
        from cnncourse.reference import results_dir
        record = json.loads((results_dir() / "laptop-scale.json").read_text())[lesson]
    except (FileNotFoundError, KeyError, ValueError):
        return line + f"; no laptop-scale time is recorded for {lesson}, so no estimate"
    minutes = record["minutes"] * full_factor
    return (line + f"; estimate: about {minutes:.0f} minutes on a {record['logical_cpus']}-core CPU like "
            f"{record['cpu']} ({record['minutes']:g} minutes at the laptop scale x {full_factor:g}), far less on a GPU")


def quick_mode() -> bool:
    """True at the sample scale (quick mode, the name the course used before it had three scales)."""
    return scale() == "sample"


def set_quick_mode(enabled: Optional[bool]) -> None:
    """Quick mode on (the sample scale) or off (the laptop scale) for this process; ``None`` goes back
    to the environment."""
    set_scale(None if enabled is None else ("sample" if enabled else "laptop"))


@contextlib.contextmanager
def quick(enabled: bool = True) -> Iterator[None]:
    """Context manager that sets quick mode (the sample scale) inside a ``with`` block and restores it after."""
    global _scale_override
    previous = _scale_override
    set_quick_mode(enabled)
    try:
        yield
    finally:
        _scale_override = previous


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
