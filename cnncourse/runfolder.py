"""One run, one folder: a new run never overwrites another, and two runs never write into one folder.

A folder *holds a run* when it has any of the files a run writes (:data:`RUN_FILES` for ``cnncourse
train``; ``metrics.json`` for ``cnncourse speedrun``). :func:`claim_run_folder` refuses a new run
into such a folder unless asked to ``overwrite`` (which deletes only those files, never anything
else), and takes an OS lock (``flock``) on the folder for as long as the process lives, so a second
run into it at the same time is refused; the system releases the lock on any exit, SIGKILL
included. It also deletes the temporaries that a killed process's atomic writes left there.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Optional, Sequence

try:  # POSIX; on Windows no lock is taken (said in claim_run_folder's docstring)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

RUN_FILES = ("run.json", "checkpoint.pt", "metrics.json", "model.pt", "curves.png", "confusion.png")
LOCK_FILE = ".cnncourse.lock"
_held = {}  # folder -> open lock file, kept open (and so locked) until the process ends


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message says what to do instead."""


def run_files(folder, names: Sequence[str] = RUN_FILES) -> list:
    """The files of ``names`` that ``folder`` holds, in that order."""
    folder = Path(folder)
    return [name for name in names if (folder / name).is_file()]


def remove_stale_temporaries(folder) -> list:
    """Delete the temporaries (``.NAME.PID.XXXX.tmp``) that killed processes' atomic writes left in
    ``folder``; those of a process still running are kept."""
    from cnncourse.checkpointing import remove_stale_temporaries as beside
    pattern = re.compile(r"^\.(.+)\.\d+\.[0-9a-f]+\.tmp$")
    targets = {m.group(1) for m in map(pattern.match, (p.name for p in Path(folder).glob(".*.tmp"))) if m}
    return [tmp for name in sorted(targets) for tmp in beside(Path(folder) / name)]


def claim_run_folder(folder, *, resume: bool = False, overwrite: bool = False, names: Sequence[str] = RUN_FILES,
                     command: str = "cnncourse train") -> Optional[object]:
    """Make ``folder`` this process's run folder, or raise :class:`RunFolderError` having changed nothing.

    - ``resume`` and ``overwrite`` together are refused (continue a run, or replace it: not both).
    - Another process holding the folder's lock is refused (POSIX ``flock``; none on Windows).
    - A folder that holds a run (any of ``names``) is refused for a new run, naming ``--resume``
      when there is a checkpoint to continue and ``--overwrite``; with ``overwrite`` only those
      files are deleted.

    Returns the open lock file (kept open until the process ends, which releases it)."""
    folder = Path(folder)
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in --out and --overwrite deletes it: give one of them")
    if folder.expanduser().resolve() == Path(folder.anchor or "/").resolve() or folder.expanduser().resolve() == Path.home():
        raise RunFolderError(f"--out {folder} is the file system's root or your home folder: a run needs a folder "
                             "of its own, e.g. --out runs/demo")
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--out {folder} is an existing file, not a folder: choose another --out DIR")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = _lock(folder)
    except OSError as error:
        raise RunFolderError(f"--out {folder} cannot be written ({error.strerror or error}): choose a folder you "
                             "can write to with --out DIR") from None
    if lock is False:
        raise RunFolderError(f"another run is writing into {folder} now: wait for it to end, or choose another "
                             "--out DIR")
    try:
        remove_stale_temporaries(folder)
        existing = [] if resume else run_files(folder, names)
        if existing and not overwrite:
            again = (f"continue it with `{command} --out {folder} --resume`, " if "checkpoint.pt" in existing
                     else "it has no checkpoint.pt to resume from; ")
            raise RunFolderError(f"{folder} already holds a run ({', '.join(existing)}): {again}replace it with "
                                 f"--overwrite (deletes only these files), or choose another --out DIR")
        for name in existing:
            (folder / name).unlink()
    except BaseException:
        release(folder)
        raise
    return lock


def _lock(folder: Path):
    """The folder's lock, taken; False if another process holds it; None where locks do not exist."""
    key = str(folder.resolve())
    if key in _held:
        return _held[key]
    if fcntl is None:  # pragma: no cover - Windows
        return None
    handle = open(folder / LOCK_FILE, "a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _held[key] = handle
    return handle


def release(folder) -> None:
    """Give up this process's lock on ``folder`` (it ends with the process anyway)."""
    handle = _held.pop(str(Path(folder).resolve()), None)
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()


def is_locked(folder) -> bool:
    """Whether some process (this one included) holds ``folder``'s run lock now."""
    if fcntl is None or not (Path(folder) / LOCK_FILE).exists():  # pragma: no cover - Windows
        return False
    if str(Path(folder).resolve()) in _held:
        return True
    with open(Path(folder) / LOCK_FILE, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


__all__ = ["RUN_FILES", "LOCK_FILE", "RunFolderError", "claim_run_folder", "release", "run_files", "is_locked",
           "remove_stale_temporaries"]
