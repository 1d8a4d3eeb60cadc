"""One training loop for the whole course: :func:`train_one_epoch`, :func:`evaluate` and :func:`fit`.

Read it in this order:

* :func:`train_one_epoch` is the loop itself (forward, loss, backward, step, for every batch);
* :func:`evaluate` measures loss and accuracy in eval mode, and can return the predictions;
* :func:`fit` composes the two for several epochs and adds what a long run needs around them:
  a progress bar, a divergence guard, a checkpoint after every epoch that resumes exactly, Ctrl-C
  that keeps the last finished epoch, and several processes under ``torchrun``.
  :class:`TrainState` holds everything that changes during training; its ``state_dict()`` is
  what a checkpoint stores and ``load_state_dict()`` is how a run resumes.

This file needs torch, numpy and tqdm only: copy it into a project and call ``fit``. Checkpoint
files are written by its companion ``checkpointing.py`` (copy both to keep that feature).
Accuracies are fractions in 0-1 everywhere in this module (plots show percent).
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import nn

try:  # the companion modules: inside the package, or copied beside this file
    from . import checkpointing, parallel
except ImportError:
    try:
        import checkpointing  # type: ignore[no-redef]
    except ImportError:
        checkpointing = None  # type: ignore[assignment]
    try:
        import parallel  # type: ignore[no-redef]
    except ImportError:
        parallel = None  # type: ignore[assignment]

__all__ = ["History", "TrainState", "TrainingDiverged", "train_one_epoch", "evaluate", "predict", "fit",
           "Predictions", "make_optimizer", "make_scheduler", "resolve_amp", "check_options",
           "default_device", "resolve_device", "cpu_has_native_bf16", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = (None, "step", "cosine", "onecycle")
PathLike = Union[str, "os.PathLike[str]"]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message says where and what to try."""


# --------------------------------------------------------------------------------------- the core
def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    loss_fn: Callable, *, device=None, scheduler=None, amp_dtype: Optional[torch.dtype] = None,
                    scaler=None, channels_last: bool = False, grad_clip: Optional[float] = None,
                    on_batch: Optional[Callable[[int, torch.Tensor], None]] = None) -> Dict[str, float]:
    """Train ``model`` for one pass over ``loader``; return mean loss, accuracy and image count.

    For every batch: move it to the device, forward (under autocast when ``amp_dtype`` is set),
    loss, zero the old gradients, backward, clip, optimizer step, then the per-batch schedule.
    ``scaler`` is a ``torch.amp.GradScaler`` for float16; ``on_batch(step, loss)`` is called after
    every step (``fit`` uses it for the progress bar and the divergence guard).
    """
    device = torch.device(device) if device is not None else model_device(model)
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for step, (x, y) in enumerate(loader):
        if step == 0:
            check_inputs(x, model, amp_dtype)
        x, y = to_device(x, y, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().to(loss_sum.dtype) * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        count += len(y)
        if on_batch is not None:
            on_batch(step, loss.detach())
    if count == 0:
        raise ValueError("train_one_epoch() got no batches: the training data is empty")
    return {"loss": float(loss_sum) / count, "accuracy": float(correct) / count, "count": count}


class Predictions(NamedTuple):
    """Outputs of :func:`predict`, all on the CPU: logits ``[N, K]``, predicted and true labels ``[N]``,
    and the (normalised) input images ``[N, C, H, W]`` when asked for."""
    logits: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor
    images: Optional[torch.Tensor] = None


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device=None, amp: Union[str, bool, None] = None,
             channels_last: bool = False, predictions: bool = False, keep_images: bool = False,
             limit: Optional[int] = None) -> Dict[str, Any]:
    """Mean cross-entropy and accuracy (fraction) of ``model`` on ``loader``, in eval mode.

    Returns ``{"loss", "accuracy", "count"}``, plus ``"predictions"`` (:class:`Predictions`) when
    ``predictions=True`` (with the input images if ``keep_images``). ``limit`` stops after that
    many images. The model's train/eval mode is restored afterwards.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number of images >= 1 (or None for all); got {limit!r}")
    device = resolve_device(device) if device is not None else model_device(model)  # checked before moving
    dtype = resolve_amp(amp, device)
    loader = _prepare_data(loader, device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count, kept = 0, []
    try:
        for x, y in loader:
            if limit is not None and count + len(y) > limit:  # exactly `limit` images, not whole batches
                x, y = x[:limit - count], y[:limit - count]
            check_inputs(x, model, dtype)
            x, y = to_device(x, y, device, channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(x).float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").to(loss_sum.dtype)
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
            if predictions:
                kept.append((logits.cpu(), y.cpu(), x.float().cpu() if keep_images else None))
            if limit is not None and count >= limit:
                break
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no batches: the test data is empty")
    result: Dict[str, Any] = {"loss": float(loss_sum) / count, "accuracy": float(correct) / count,
                              "count": count}
    if predictions:
        logits = torch.cat([k[0] for k in kept])
        images = torch.cat([k[2] for k in kept]) if keep_images else None
        result["predictions"] = Predictions(logits, logits.argmax(1), torch.cat([k[1] for k in kept]), images)
    return result


def predict(model: nn.Module, data, device=None, amp: Union[str, bool, None] = None,
            keep_images: bool = False, limit: Optional[int] = None) -> Predictions:
    """The :class:`Predictions` of ``model`` on ``data`` (for confusion matrices and image grids)."""
    return evaluate(model, data, device=device, amp=amp, predictions=True, keep_images=keep_images,
                    limit=limit)["predictions"]


# --------------------------------------------------------------------------------------- small pieces
def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool = False):
    """Move a batch to ``device``; images in channels_last (NHWC) memory format if asked."""
    if channels_last and x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last), y.to(device, non_blocking=True)
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def check_inputs(x: torch.Tensor, model: nn.Module, amp_dtype: Optional[torch.dtype] = None) -> None:
    """Refuse a batch of images the model cannot take, with what to do instead (before any work)."""
    first = next(model.parameters(), None)
    if first is None or not isinstance(x, torch.Tensor):
        return
    if not x.is_floating_point():
        raise ValueError(f"the images are {str(x.dtype).replace('torch.', '')}, not floating point: scale and "
                         "normalise them first (TensorLoader and torchvision's ToTensor + Normalize do)")
    if amp_dtype is None and first.is_floating_point() and x.dtype != first.dtype:
        raise ValueError(f"the images are {str(x.dtype).replace('torch.', '')} but the model's parameters are "
                         f"{str(first.dtype).replace('torch.', '')}: convert the images (x.to({first.dtype})) or "
                         f"the model (model.to({x.dtype}))")


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for running loss sums, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _prepare_data(data, device: torch.device):
    """Move a fast-path loader (anything with ``images`` and ``to``) to ``device``; a DataLoader's
    batches are moved one by one instead."""
    if hasattr(data, "to") and hasattr(data, "images") and getattr(data, "device", None) != device:
        data.to(device)
    return data


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_device() -> torch.device:
    """The best device here: the current accelerator (CUDA, MPS, XPU, ...) if any, else the CPU."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return torch.device(accelerator.current_accelerator().type)
    if torch.cuda.is_available():  # torch < 2.6 has no torch.accelerator
        return torch.device("cuda")
    return torch.device("mps" if _mps_available() else "cpu")


def resolve_device(preferred=None) -> torch.device:
    """``preferred`` as a device if it names one that is here; ``None``/``"auto"``: :func:`default_device`."""
    if preferred is None or preferred == "auto":
        return default_device()
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {preferred!r} is not a device name: use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "meta":
        raise ValueError(f"device {preferred!r} holds shapes, not data: training or evaluating there would drop "
                         "the weights and the images; use cpu, or leave the device out to choose automatically.")
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}.get(device.type)
    if present is False:
        raise ValueError(f"device {preferred!r} was asked for but {device.type.upper()} is not available here; "
                         "use --device cpu or leave it out to choose automatically.")
    return device


def make_optimizer(model: nn.Module, optimizer: Union[str, torch.optim.Optimizer, Callable] = "adam",
                   lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """An optimizer by name (``"sgd"`` with momentum, Nesterov; ``"adam"``; ``"adamw"``), or pass one
    through; a callable is called with the model's parameters."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(model.parameters())
    name = str(optimizer).lower()
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS} or pass a torch optimizer")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Union[str, Callable, None],
                   total_steps: int, lr: float):
    """A learning-rate schedule stepped after every batch, over ``total_steps`` batches.

    ``"step"``: divide by 10 at 50 % and 75 % of training (He et al.'s CIFAR recipe);
    ``"cosine"``: cosine decay to 0; ``"onecycle"``: warm up to ``lr`` then anneal (Smith's one-cycle).
    A callable is called as ``schedule(optimizer, total_steps)``.
    """
    if schedule is None or schedule == "none":
        return None
    if callable(schedule):
        return schedule(optimizer, total_steps)
    name = str(schedule).lower()
    total_steps = max(1, int(total_steps))
    if name == "step":
        milestones = sorted({max(1, int(total_steps * 0.5)), max(1, int(total_steps * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def cpu_has_native_bf16() -> Optional[bool]:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX on x86; None: unknown)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_SLOW_CPU = ("bf16 autocast was asked for, but this CPU has no native bfloat16 (no AVX-512 BF16, no "
                 "AMX), so every bf16 operation is emulated: expect training about 10x slower than float32 "
                 "(ResNet-20 on an AVX2-only CPU: 36 vs 395 images/s). Use amp=False (--amp off) here.")


def resolve_amp(amp: Union[str, bool, None, torch.dtype], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``amp`` on ``device``, or ``None`` for full float32.

    ``None``/``"auto"``: bfloat16 on CUDA GPUs that support it, else float16; float32 on the CPU and
    MPS. ``"bf16"`` on a CPU without native bf16 warns (it is about ten times slower there).
    """
    if isinstance(amp, torch.dtype):
        return amp
    if amp is None or amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if amp is False or amp in ("off", "none", "fp32", "false", "0"):
        return None
    if amp is True:
        return resolve_amp(None, device) if device.type == "cuda" else resolve_amp("bf16", device)
    name = str(amp).lower()
    if name in ("bf16", "bfloat16"):
        if device.type == "cpu" and cpu_has_native_bf16() is False:
            warnings.warn(BF16_SLOW_CPU, RuntimeWarning, stacklevel=2)
        return torch.bfloat16
    if name in ("fp16", "float16", "half"):
        if device.type == "cpu":
            raise ValueError("fp16 autocast on a CPU is slow and needs no gradient scaling tricks; "
                             "use amp='bf16' or amp=False on the CPU")
        return torch.float16
    raise ValueError(f"amp={amp!r} is not understood: use None (auto), 'bf16', 'fp16' or False")


def check_options(*, epochs: int = 1, lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
                  label_smoothing: float = 0.0, grad_clip: Optional[float] = None, **_ignored) -> None:
    """Refuse settings that would train wrongly or not at all, with a message saying what to pass."""
    def need(name, value, ok, what):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
            raise ValueError(f"{name} must be {what}; got {value!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1; got {epochs!r}")
    need("lr", lr, lambda v: v > 0, "a finite number > 0 (e.g. 1e-3)")
    need("weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0 (e.g. 0 or 5e-4)")
    need("momentum", momentum, lambda v: 0 <= v <= 1, "in [0, 1] (e.g. 0.9)")
    need("label_smoothing", label_smoothing, lambda v: 0 <= v < 1, "in [0, 1) (e.g. 0 or 0.1)")
    if grad_clip is not None:
        need("grad_clip", grad_clip, lambda v: v > 0, "a finite number > 0 (e.g. 1.0), or None for no clipping "
             "(a negative norm would flip every gradient)")


# --------------------------------------------------------------------------------------- history and state
class History:
    """Per-epoch records of a training run: a list of dicts with attribute access to columns.

    Each record has ``epoch`` (1-based), ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
    ``test_loss``, ``test_acc`` (``None`` where that set was not evaluated that epoch), ``lr`` (at the start of the epoch), ``seconds``
    (the whole epoch, evaluation included) and ``train_images_per_s``. Accuracies are fractions.
    ``train_loss``/``train_acc`` are running means over the epoch's training batches (augmented,
    model in training mode, label smoothing included); the val and test columns come from :func:`evaluate`.
    After :func:`fit`, ``predictions`` holds the last epoch's test :class:`Predictions` (or None).

    >>> history.test_acc          # one value per epoch
    >>> history[-1]["train_loss"]  # the last epoch's record
    >>> history.save("run.json"); History.load("run.json")
    """

    def __init__(self, records: Optional[Iterable[Dict[str, Any]]] = None) -> None:
        self.records: List[Dict[str, Any]] = [dict(r) for r in (records or [])]
        self.interrupted = False
        self.predictions: Optional[Predictions] = None

    def append(self, record: Dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index):
        return History(self.records[index]) if isinstance(index, slice) else self.records[index]

    def __getattr__(self, name: str) -> List[Any]:
        if name.startswith("_") or name in ("records", "interrupted", "predictions"):
            raise AttributeError(name)
        if not self.records or name not in self.records[0]:
            known = sorted(self.records[0]) if self.records else []
            raise AttributeError(f"History has no column {name!r}; columns: {known}")
        return [record.get(name) for record in self.records]

    def __eq__(self, other) -> bool:
        return isinstance(other, History) and self.records == other.records

    def __repr__(self) -> str:
        if not self.records:
            return "History([])"
        last = self.records[-1]
        parts = [f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float)]
        return f"History({len(self)} epochs; last: epoch={last.get('epoch')}, {', '.join(parts)})"

    @property
    def columns(self) -> List[str]:
        return list(self.records[0]) if self.records else []

    def best(self, column: str = "test_acc", mode: str = "max") -> Dict[str, Any]:
        """The record with the highest (``mode="max"``) or lowest value of ``column``."""
        rows = [r for r in self.records if r.get(column) is not None]
        if not rows:
            raise ValueError(f"no epoch has a value for {column!r}")
        return (max if mode == "max" else min)(rows, key=lambda r: r[column])

    def to_list(self) -> List[Dict[str, Any]]:
        return [dict(r) for r in self.records]

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.records, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "History":
        data = json.loads(text)
        return cls(data["history"] if isinstance(data, dict) else data)  # a dict: a CLI metrics.json

    def save(self, path: PathLike) -> Path:
        """Write the records as JSON (atomically when ``checkpointing`` is at hand)."""
        payload = self.to_json(indent=1).encode()
        if checkpointing is not None:
            return checkpointing.atomic_write(path, payload)
        Path(path).write_bytes(payload)
        return Path(path)

    @classmethod
    def load(cls, path: PathLike) -> "History":
        return cls.from_json(Path(path).read_text())


CHECKPOINT_FORMAT = "cnncourse-checkpoint-1"


class TrainState:
    """Everything that changes while training, so that a checkpoint can restore it exactly:
    weights, optimizer, schedule, gradient scaler, history, epochs done, and the random number
    generators (Python, NumPy, torch, the loader's). ``options`` are the settings the run was
    started with; resuming with other values is refused, because the restored optimizer would
    silently keep the old ones."""

    def __init__(self, model: nn.Module, optimizer, scheduler=None, scaler=None, epochs: int = 1,
                 loader=None, options: Optional[Dict[str, Any]] = None) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.epochs, self.loader, self.options = epochs, loader, dict(options or {})
        self.history, self.epoch = History(), 0

    def state_dict(self) -> Dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "epochs": self.epochs,
                "options": self.options, "optimizer_class": type(self.optimizer).__name__,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": _scheduler_state(self.scheduler) if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "history": self.history.to_list(), "rng": _rng_state(self.loader)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore ``state``; a refused one (ValueError, saying why) changes nothing: every entry is
        checked before any is applied, and a failure while applying puts everything back."""
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a cnncourse training checkpoint (no 'format' entry "
                             f"{CHECKPOINT_FORMAT!r})")
        _check_entries(state)
        before = self._snapshot()
        try:
            self._apply(state)
        except Exception as error:
            self._restore(before)
            if isinstance(error, ValueError):
                raise
            raise ValueError(f"its {type(error).__name__} entries cannot be applied ({error})") from None

    def _snapshot(self) -> Dict[str, Any]:
        import copy
        return {"model": {k: v.clone() for k, v in self.model.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
                "scaler": copy.deepcopy(self.scaler.state_dict()) if self.scaler is not None else None,
                "history": self.history, "epoch": self.epoch, "rng": _rng_state(self.loader)}

    def _restore(self, before: Dict[str, Any]) -> None:
        self.model.load_state_dict(before["model"])
        self.optimizer.load_state_dict(before["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(before["scheduler"])
        if self.scaler is not None:
            self.scaler.load_state_dict(before["scaler"])
        self.history, self.epoch = before["history"], before["epoch"]
        _set_rng_state(before["rng"], self.loader)

    def _apply(self, state: Dict[str, Any]) -> None:
        if self.scheduler is not None and state["epochs"] != self.epochs:
            raise ValueError(f"it was made for {state['epochs']} epochs with a learning-rate schedule, which "
                             f"depends on the total length: resume with epochs={state['epochs']}")
        unknown = [k for k in ("optimizer", "seed") if self.options.get(k) is None]  # an object, or not given
        changed = [f"{k}={self.options.get(k)!r} (the run used {v!r})" for k, v in state.get("options", {}).items()
                   if k in self.options and k not in unknown and self.options[k] != v]
        if changed:
            raise ValueError("a resumed run keeps its settings, but these differ: " + ", ".join(changed)
                             + "; resume with the run's own settings, or start a new run")
        if state.get("optimizer_class") != type(self.optimizer).__name__:
            raise ValueError(f"it holds a {state.get('optimizer_class')} optimizer, not a "
                             f"{type(self.optimizer).__name__}: resume with the run's own optimizer")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise ValueError(f"it holds the weights of a different model ({str(error).splitlines()[0]}): "
                             "resume with the same model, data set and image size") from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.history, self.epoch = History(state["history"]), int(state["epoch"])
        _set_rng_state(state["rng"], self.loader)


def _scheduler_state(scheduler) -> Dict[str, Any]:
    """The scheduler's state dict without functions: torch 2.3 keeps OneCycleLR's annealing function in
    it (``anneal_func``; newer torch keeps its name), which ``torch.load(..., weights_only=True)``
    refuses to read back. Loading keeps the function the scheduler was built with from the same options."""
    return {key: value for key, value in scheduler.state_dict().items() if not callable(value)}


def _check_entries(state: Dict[str, Any]) -> None:
    """ValueError, naming the entry, for a checkpoint whose entries cannot all be applied."""
    epoch, epochs = state.get("epoch"), state.get("epochs")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (epoch, epochs)) or not 0 <= epoch <= epochs:
        raise ValueError(f"its epoch entry ({epoch!r} of {epochs!r}) is not a count of finished epochs")
    history = state.get("history")
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise ValueError(f"its history entry is not one record per finished epoch ({epoch!r})")
    for key in ("model", "optimizer"):
        if not isinstance(state.get(key), dict):
            raise ValueError(f"its {key} entry is not a state dict")
    rng = state.get("rng")
    numpy_state, python_state = (rng.get("numpy"), rng.get("python")) if isinstance(rng, dict) else (None, None)
    well_formed = (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor)
                   and rng["torch"].dtype == torch.uint8 and isinstance(numpy_state, dict)
                   and isinstance(numpy_state.get("key"), torch.Tensor) and numpy_state["key"].numel() == 624
                   and all(isinstance(numpy_state.get(k), (int, float)) for k in ("pos", "has_gauss", "cached_gaussian"))
                   and isinstance(python_state, dict) and isinstance(python_state.get("internal"), torch.Tensor)
                   and isinstance(python_state.get("version"), int))
    if not well_formed:
        raise ValueError("its random-number state (rng entry) is malformed")


def _rng_state(loader) -> Dict[str, Any]:
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        state["loader_generator"] = generator.get_state()
    if hasattr(loader, "state_dict") and hasattr(loader, "set_epoch"):
        state["loader"] = loader.state_dict()
    return state


def _set_rng_state(state: Dict[str, Any], loader) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(loader, "generator", None)
    if "loader_generator" in state and isinstance(generator, torch.Generator):
        generator.set_state(state["loader_generator"])
    if "loader" in state and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(state["loader"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _all(result: Dict[str, Any], world: int, device: torch.device) -> Dict[str, Any]:
    """``result`` over all processes under torchrun; unchanged in a single process."""
    return parallel.reduce(result, world, device) if world > 1 else result


def _place(train_data, eval_data, device: torch.device, rank: int, world: int, seed: int):
    """The loaders on ``device``, each process's shard of them under torchrun, refused when empty;
    ``eval_data`` maps a name ("test", "val") to a loader or None."""
    train_data = _prepare_data(train_data, device)
    train_data = parallel.shard(train_data, rank, world, True, seed) if world > 1 else train_data
    if len(train_data) == 0:
        raise ValueError("train_data has no batches (too few images for the batch size with drop_last?)")
    placed = {}
    for name, data in eval_data.items():
        if data is not None:
            data = _prepare_data(data, device)
            data = parallel.shard(data, rank, world, False, 0) if world > 1 else data
            if len(data) == 0 and world == 1:
                raise ValueError(f"{name}_data has no batches: it is empty (check the {name} split)")
        placed[name] = data
    return train_data, placed


# --------------------------------------------------------------------------------------- around the core
def _progress_bar_class():
    """tqdm.auto's bar (a widget in Jupyter), or its text bar where ipywidgets is missing: there
    tqdm.auto's notebook bar raises instead of drawing."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm
        return tqdm
    from tqdm.auto import tqdm
    return tqdm


class _EpochMonitor:
    """Called after every training step: updates the progress bar and stops a diverging run.

    The NaN check reads the loss every step on a CPU (free) and every 25 steps on a GPU, with the
    step it first went bad remembered on the device, so the GPU is not synchronised at every step.
    """

    def __init__(self, epoch: int, epochs: int, steps: int, show: bool, device, advice: Dict[str, Any]) -> None:
        self.epoch, self.steps, self.advice = epoch, steps, advice
        self.bar = _progress_bar_class()(total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                                         disable=not show, leave=True, dynamic_ncols=True, file=sys.stderr)
        self.show, self.every = show, 1 if device.type == "cpu" else 25
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        self.bad_value = torch.zeros((), device=device)
        self.loss_sum, self.last_postfix = torch.zeros((), device=device), 0.0

    def __call__(self, step: int, loss: torch.Tensor) -> None:
        newly_bad = (~torch.isfinite(loss)) & (self.first_bad < 0)
        self.first_bad = torch.where(newly_bad, step + 1, self.first_bad)
        self.bad_value = torch.where(newly_bad, loss.float(), self.bad_value)
        last = step + 1 == self.steps
        if ((step + 1) % self.every == 0 or last) and int(self.first_bad) >= 0:
            raise TrainingDiverged(self.message(float(self.bad_value), int(self.first_bad)))
        self.bar.update(1)
        self.loss_sum += loss.float()
        now = time.perf_counter()
        if self.show and (now - self.last_postfix > 0.5 or last):
            self.last_postfix = now
            self.bar.set_postfix(loss=f"{float(self.loss_sum) / (step + 1):.4f}", refresh=False)

    def message(self, value: float, step: int) -> str:
        advice = self.advice
        what = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        tips = [f"a lower learning rate (now {advice['lr']:g})"]
        if advice["grad_clip"] is None:
            tips.append("gradient clipping (grad_clip=1.0)")
        if advice["amp_dtype"] == torch.float16:
            tips.append("turning off fp16 (amp='bf16' or amp=False)")
        tips.append("checking the inputs for NaN")
        text = (f"loss became {what} at epoch {self.epoch + 1}, step {step} (global step "
                f"{self.epoch * self.steps + step}): try " + ", ".join(tips[:-1]) + f", or {tips[-1]}.")
        if advice["checkpoint"] is not None and Path(advice["checkpoint"]).exists():
            text += f" The checkpoint {advice['checkpoint']} holds the last completed epoch."
        return text

    def close(self) -> None:
        self.bar.close()


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes", "on")


def _interrupted(history: History, epoch: int, checkpoint, saved: int, rank: int) -> History:
    history.interrupted = True
    if rank == 0:
        if checkpoint is None:
            kept = "pass checkpoint=... to be able to resume"
        elif saved:
            kept = f"the checkpoint {checkpoint} holds epoch {saved}; resume=True continues from it"
        else:
            kept = "no epoch was completed, so no checkpoint was written"
        print(f"\nInterrupted during epoch {epoch + 1}: returning the history of the {len(history)} completed "
              f"epoch(s); the model keeps its current weights; {kept}.", file=sys.stderr)
    return history


# --------------------------------------------------------------------------------------- fit
def fit(model: nn.Module, train_data, test_data=None, epochs: int = 10, *,
        optimizer: Union[str, torch.optim.Optimizer, Callable] = "adam", lr: float = 1e-3,
        weight_decay: float = 0.0, momentum: float = 0.9, schedule: Union[str, Callable, None] = None,
        label_smoothing: float = 0.0, amp: Union[str, bool, None] = None, channels_last: bool = False,
        compile: bool = False, grad_clip: Optional[float] = None, device=None,
        checkpoint: Optional[PathLike] = None, resume: bool = False, seed: Optional[int] = None,
        progress: bool = True, loss_fn: Optional[nn.Module] = None, val_data=None,
        test_every_epoch: Optional[bool] = None) -> History:
    """Train ``model`` for ``epochs`` epochs on ``train_data``, evaluating on ``test_data`` after each.

    With ``val_data`` (a hold-out of the training set, see ``get_dataset(..., val_fraction=)``) the
    model is evaluated on it after every epoch (``val_loss``/``val_acc``) and on ``test_data`` only
    after the last one, so that choices are made on validation and the test set is looked at once;
    ``test_every_epoch=True`` evaluates the test set after every epoch anyway (default: only without
    ``val_data``).

    ``train_data``/``test_data``: a ``DataLoader`` or a :class:`~cnncourse.fastdata.TensorLoader`.
    ``optimizer``: ``"sgd"`` (Nesterov, ``momentum``), ``"adam"``, ``"adamw"``, a torch optimizer or a
    callable taking the parameters. ``schedule``: ``None``, ``"step"``, ``"cosine"``, ``"onecycle"``
    (stepped every batch) or ``(optimizer, total_steps) -> scheduler``. ``label_smoothing``: for the
    training loss. ``amp``: ``None`` (bf16/fp16 on CUDA, float32 elsewhere), ``"bf16"``, ``"fp16"``,
    ``False``. ``channels_last``: NHWC model and batches. ``compile``: ``torch.compile``.
    ``grad_clip``: clip the gradients' global norm. ``device``: default the best available.
    ``checkpoint``: file written atomically after every epoch; with ``resume=True`` training
    continues from it exactly. ``seed``: seeds Python, NumPy and torch first (seed before building
    the model too). ``progress``: a tqdm bar per epoch. ``loss_fn`` replaces cross-entropy.

    Returns the :class:`History`. A NaN or infinite loss raises :class:`TrainingDiverged`; Ctrl-C
    returns the finished epochs with ``history.interrupted = True``. Under ``torchrun`` each process
    trains on its shard with DistributedDataParallel and only rank 0 writes the checkpoint.
    """
    options = dict(optimizer=optimizer if isinstance(optimizer, str) else None, lr=lr, weight_decay=weight_decay,
                   momentum=momentum, schedule=schedule if schedule is None or isinstance(schedule, str) else "custom",
                   label_smoothing=label_smoothing, grad_clip=grad_clip, amp=str(amp), seed=seed)
    check_options(epochs=epochs, **options)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file to continue from)")
    if checkpoint is not None and checkpointing is None:
        raise ImportError("checkpoint=... needs checkpointing.py beside train.py (copy it from cnncourse)")
    device = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and parallel is None:
        raise ImportError("training under torchrun needs parallel.py beside train.py (copy it from cnncourse)")
    rank, world, device = parallel.setup(device) if parallel is not None else (0, 1, device)
    if seed is not None:
        _seed_all(seed)
    amp_dtype = resolve_amp(amp, device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    train_data, evaluation = _place(train_data, {"val": val_data, "test": test_data}, device, rank, world, seed or 0)
    if test_every_epoch is None:
        test_every_epoch = val_data is None
    opt = make_optimizer(model, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)
    state = TrainState(model, opt, make_scheduler(opt, schedule, epochs * len(train_data), lr),
                       torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None,
                       epochs, train_data, options)
    if resume:
        checkpointing.resume(state, checkpoint, device, quiet=not progress or rank != 0)
    step_model = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = torch.compile(step_model) if compile else step_model
    criterion = loss_fn if loss_fn is not None else nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    advice = dict(lr=lr, grad_clip=grad_clip, amp_dtype=amp_dtype, checkpoint=checkpoint)
    history, saved = state.history, state.epoch
    for epoch in range(state.epoch, epochs):
        for setter in (train_data, getattr(train_data, "sampler", None)):
            if hasattr(setter, "set_epoch"):
                setter.set_epoch(epoch)
        epoch_lr, started = opt.param_groups[0]["lr"], time.perf_counter()
        monitor = _EpochMonitor(epoch, epochs, len(train_data), _progress_enabled(progress) and rank == 0,
                                device, advice)
        try:
            train = _all(train_one_epoch(step_model, train_data, opt, criterion, device=device,
                                            scheduler=state.scheduler, amp_dtype=amp_dtype, scaler=state.scaler,
                                            channels_last=channels_last, grad_clip=grad_clip, on_batch=monitor),
                            world, device)
            train_seconds = time.perf_counter() - started
            record = {"epoch": epoch + 1, "train_loss": train["loss"], "train_acc": train["accuracy"],
                      "val_loss": None, "val_acc": None, "test_loss": None, "test_acc": None}
            last = epoch + 1 == epochs
            for name, data in evaluation.items():
                if data is None or (name == "test" and not (last or test_every_epoch)):
                    continue
                keep = last and name == "test"
                result = _all(evaluate(model, data, device, amp_dtype or False, channels_last, predictions=keep),
                              world, device)
                record[f"{name}_loss"], record[f"{name}_acc"] = result["loss"], result["accuracy"]
                if keep:
                    history.predictions = parallel.gather(result["predictions"], world) if world > 1 \
                        else result["predictions"]
            record.update(lr=epoch_lr, seconds=time.perf_counter() - started,
                          train_images_per_s=train["count"] / train_seconds if train_seconds > 0 else None)
            history.append(record)
            state.epoch = epoch + 1
            if checkpoint is not None and rank == 0:
                checkpointing.save_checkpoint(checkpoint, state.state_dict())
                saved = state.epoch
        except KeyboardInterrupt as stop:  # a Ctrl-C held back during a checkpoint write counts that write
            return _interrupted(history, epoch, checkpoint, state.epoch if getattr(stop, "after_write", False)
                                else saved, rank)
        finally:
            monitor.close()
    if resume and history.predictions is None and len(history) == epochs and evaluation.get("test") is not None:
        # a run killed after its last checkpoint: its test predictions (for the confusion matrix) are made again
        result = _all(evaluate(model, evaluation["test"], device, amp_dtype or False, channels_last,
                               predictions=True), world, device)
        history.predictions = parallel.gather(result["predictions"], world) if world > 1 else result["predictions"]
    return history
