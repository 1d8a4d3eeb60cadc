"""Checkpoint files for :func:`cnncourse.train.fit`: atomic writes, safe loading, exact resume.

* :func:`save_checkpoint` writes to a temporary file beside the target and renames it over the
  target (atomic), so an interruption never leaves half a checkpoint. Ctrl-C during the write is
  held back until the write is finished; a full disk raises :class:`CheckpointWriteError` saying
  what was kept.
* :func:`load_checkpoint` reads tensors and plain values only (``weights_only=True``: a
  checkpoint cannot run code) and says clearly when a file is empty, truncated or foreign.
* :func:`resume` restores a :class:`cnncourse.train.TrainState` from a file, or starts fresh when
  there is none yet.

Needs torch alone; copy it beside ``train.py`` to keep checkpoints in a project of your own.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Union

import torch

__all__ = ["CheckpointError", "CheckpointWriteError", "atomic_write", "save_checkpoint", "load_checkpoint",
           "remove_stale_temporaries", "resume"]

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, truncated, or not one of ours."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (e.g. the disk is full); the previous file is kept."""


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Hold back Ctrl-C (SIGINT) until the block is done, then raise KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        stop = KeyboardInterrupt()
        stop.after_write = True  # the block (a checkpoint write) was finished before stopping
        raise stop


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def atomic_write(path: PathLike, data: Union[bytes, Callable[[Any], None]]) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file) to ``path`` atomically.

    The data go to a temporary file beside ``path``, flushed to disk, then renamed over ``path``;
    on any failure the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    write = (lambda handle: handle.write(data)) if isinstance(data, (bytes, bytearray)) else data
    try:
        with _ctrl_c_deferred():
            with open(tmp, "xb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def _no_space(error: BaseException) -> bool:
    """True when ``error`` or one it arose from is ENOSPC (torch.save wraps it in a RuntimeError)."""
    while error is not None:
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """``torch.save(state)`` to ``path`` atomically; Ctrl-C waits for the write to finish."""
    try:
        return atomic_write(path, lambda handle: torch.save(state, handle))
    except (OSError, RuntimeError) as error:
        if not _no_space(error):
            raise
        kept = f"the previous checkpoint {path} is kept" if Path(path).exists() else "no checkpoint was kept"
        raise CheckpointWriteError(errno.ENOSPC, f"no space left on device: {path} could not be written "
                                   f"({kept}); free some space, then resume the run") from None


def load_checkpoint(path: PathLike, map_location=None, mmap: bool = False) -> Dict[str, Any]:
    """Read a checkpoint written by ``fit`` (tensors and plain Python values only). ``mmap=True``
    maps the tensors instead of reading them: cheap when only the plain values are wanted."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): it is not a usable checkpoint; delete it to start "
                              "again")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except OSError as error:
        if error.errno is not None:  # permissions and the like: the message is already right
            raise
        reason = error
    except Exception as error:  # EOFError, zip errors, a pickle that weights_only refuses...
        reason = error
    detail = str(reason).strip().splitlines()[0].split(". ")[0] if str(reason).strip() else "the file ends too early"
    raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(reason).__name__}: {detail}): it is "
                          "truncated, damaged or not a cnncourse checkpoint; delete it to start again")


def remove_stale_temporaries(path: PathLike) -> list:
    """Delete temporary files that a killed process left beside ``path`` (its pid no longer runs)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name[len(path.name) + 2:].split(".")[0])
            os.kill(pid, 0)
            if pid != os.getpid():
                continue  # another live process is writing it
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def resume(state, path: PathLike, device=None, quiet: bool = False) -> bool:
    """Load ``path`` into ``state`` (a ``TrainState``) if it exists; True if it did.

    Nothing in ``state`` changes when the file is refused (wrong model, other settings...): the
    error says why, and the checkpoint stays as it was.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    if not path.exists():
        if not quiet:
            print(f"No checkpoint at {path} yet: starting from scratch.", file=sys.stderr)
        return False
    saved = load_checkpoint(path, map_location=device)
    snapshot = {"model": {k: v.clone() for k, v in state.model.state_dict().items()},
                "optimizer": state.optimizer.state_dict()}
    try:
        state.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as error:
        state.model.load_state_dict(snapshot["model"])
        state.optimizer.load_state_dict(snapshot["optimizer"])
        raise CheckpointError(f"cannot resume from {path}: {error}") from None
    if not quiet:
        print(f"Resuming from {path} after epoch {state.epoch} of {state.epochs}.", file=sys.stderr)
    return True
