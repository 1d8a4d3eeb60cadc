"""One training loop for the whole course: :func:`fit`, :func:`evaluate`, :func:`predict` and :class:`History`.

``fit`` takes a ``torch.utils.data.DataLoader`` or a :class:`cnncourse.fastdata.TensorLoader`
(anything that yields ``(images, labels)`` batches and has a length) and trains with a tqdm bar per
epoch (text in a terminal, a widget in JupyterLab). It records a :class:`History` of per-epoch
loss, accuracy, seconds and learning rate, writes an atomic checkpoint after every epoch if asked,
and resumes from it exactly: on a CPU with the same seed, an interrupted and resumed run has the
same history and weights as an uninterrupted one.

Accuracies are fractions in 0-1 everywhere in this module (plots show percent).
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import nn

__all__ = ["History", "TrainingDiverged", "fit", "evaluate", "predict", "Predictions",
           "make_optimizer", "make_scheduler", "resolve_amp", "save_checkpoint", "load_checkpoint",
           "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = (None, "step", "cosine", "onecycle")
CHECKPOINT_FORMAT = "cnncourse-checkpoint-1"
PathLike = Union[str, "os.PathLike[str]"]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message says where and what to try."""


# --------------------------------------------------------------------------------------- History
class History:
    """Per-epoch records of a training run: a list of dicts with attribute access to columns.

    Each record has ``epoch`` (1-based), ``train_loss``, ``train_acc``, ``test_loss``,
    ``test_acc`` (``None`` without test data), ``lr`` (at the start of the epoch), ``seconds``
    (the whole epoch, evaluation included) and ``train_images_per_s``. Accuracies are fractions.
    ``train_loss``/``train_acc`` are running means over the epoch's training batches (augmented,
    model in training mode, label smoothing included); the test columns come from :func:`evaluate`.

    >>> history.test_acc          # one value per epoch
    >>> history[-1]["train_loss"]  # the last epoch's record
    >>> history.save("run.json"); History.load("run.json")
    """

    def __init__(self, records: Optional[Iterable[Dict[str, Any]]] = None) -> None:
        self.records: List[Dict[str, Any]] = [dict(r) for r in (records or [])]
        self.interrupted = False

    def append(self, record: Dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return History(self.records[index])
        return self.records[index]

    def __getattr__(self, name: str) -> List[Any]:
        if name.startswith("_") or name in ("records", "interrupted"):
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
        pick = max if mode == "max" else min
        return pick(rows, key=lambda r: r[column])

    def to_list(self) -> List[Dict[str, Any]]:
        return [dict(r) for r in self.records]

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.records, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "History":
        data = json.loads(text)
        if isinstance(data, dict):  # a metrics.json written by the command line
            data = data["history"]
        return cls(data)

    def save(self, path: PathLike) -> Path:
        payload = self.to_json(indent=1).encode()
        return _atomic_write(Path(path), lambda handle: handle.write(payload))

    @classmethod
    def load(cls, path: PathLike) -> "History":
        return cls.from_json(Path(path).read_text())


# --------------------------------------------------------------------------------------- building blocks
def make_optimizer(model: nn.Module, optimizer: Union[str, torch.optim.Optimizer, Callable] = "adam",
                   lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """An optimizer by name (``"sgd"`` with momentum, ``"adam"``, ``"adamw"``), or pass one through.

    A callable is called with the model's parameters.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(model.parameters())
    name = str(optimizer).lower()
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=momentum > 0)
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


def resolve_amp(amp: Union[str, bool, None], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``amp`` on ``device``, or ``None`` for full float32.

    ``None`` (auto): bfloat16 on CUDA GPUs that support it, else float16; float32 on the CPU and
    MPS (CPU bfloat16 helps only some models on CPUs with native bf16: ask for it with ``"bf16"``).
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
        return resolve_amp(None, device) if device.type == "cuda" else torch.bfloat16
    name = str(amp).lower()
    if name in ("bf16", "bfloat16"):
        return torch.bfloat16
    if name in ("fp16", "float16", "half"):
        if device.type == "cpu":
            raise ValueError("fp16 autocast on a CPU is slow and needs no gradient scaling tricks; "
                             "use amp='bf16' or amp=False on the CPU")
        return torch.float16
    raise ValueError(f"amp={amp!r} is not understood: use None (auto), 'bf16', 'fp16' or False")


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for running loss sums, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool):
    if channels_last and x.dim() == 4:
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
    else:
        x = x.to(device, non_blocking=True)
    return x, y.to(device, non_blocking=True)


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _prepare_data(data, device: torch.device):
    """Move a fast-path loader to ``device`` (a DataLoader's batches are moved one by one instead)."""
    if hasattr(data, "to") and hasattr(data, "images") and getattr(data, "device", None) != device:
        data.to(device)
    return data


# --------------------------------------------------------------------------------------- checkpoints
def _atomic_write(path: Path, write: Callable[[Any], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic, so an interruption never leaves a half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """``torch.save(state)`` to ``path`` atomically (temporary file, then ``os.replace``)."""
    return _atomic_write(Path(path), lambda handle: torch.save(state, handle))


def load_checkpoint(path: PathLike, map_location=None) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (tensors and plain Python values only)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def _rng_state(train_data) -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(train_data, "generator", None)
    if isinstance(generator, torch.Generator):
        state["loader_generator"] = generator.get_state()
    if hasattr(train_data, "state_dict") and hasattr(train_data, "set_epoch"):
        state["loader"] = train_data.state_dict()
    return state


def _python_state_to_plain(state):
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _set_rng_state(state: Dict[str, Any], train_data) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(train_data, "generator", None)
    if "loader_generator" in state and isinstance(generator, torch.Generator):
        generator.set_state(state["loader_generator"])
    if "loader" in state and hasattr(train_data, "load_state_dict"):
        train_data.load_state_dict(state["loader"])


# --------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, data, device=None, amp: Union[str, bool, None] = None,
             channels_last: bool = False) -> Dict[str, float]:
    """Mean cross-entropy and accuracy (fraction) of ``model`` on ``data``; the model's mode is restored.

    Returns ``{"loss": ..., "accuracy": ..., "count": N}``. ``device`` defaults to the model's.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    dtype = resolve_amp(amp, device)
    data = _prepare_data(data, device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    try:
        for x, y in data:
            x, y = _to_device(x, y, device, channels_last)
            with _autocast(device, dtype):
                logits = model(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no batches")
    return {"loss": float(loss_sum) / count, "accuracy": float(correct) / count, "count": count}


class Predictions(NamedTuple):
    """Outputs of :func:`predict`, all on the CPU: logits ``[N, K]``, predicted and true labels ``[N]``,
    and the (normalised) input images ``[N, C, H, W]`` when asked for."""
    logits: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor
    images: Optional[torch.Tensor] = None


@torch.no_grad()
def predict(model: nn.Module, data, device=None, amp: Union[str, bool, None] = None,
            keep_images: bool = False, limit: Optional[int] = None) -> Predictions:
    """Run ``model`` over ``data`` in eval mode and collect logits, predictions and labels (for
    confusion matrices and image grids). ``limit`` stops after that many images."""
    device = torch.device(device) if device is not None else _model_device(model)
    dtype = resolve_amp(amp, device)
    data = _prepare_data(data, device)
    was_training = model.training
    model.eval()
    logits_all, labels_all, images_all = [], [], []
    count = 0
    try:
        for x, y in data:
            x, y = _to_device(x, y, device, False)
            with _autocast(device, dtype):
                logits = model(x)
            logits_all.append(logits.float().cpu())
            labels_all.append(y.cpu())
            if keep_images:
                images_all.append(x.float().cpu())
            count += len(y)
            if limit is not None and count >= limit:
                break
    finally:
        model.train(was_training)
    logits = torch.cat(logits_all)[:limit]
    labels = torch.cat(labels_all)[:limit]
    images = torch.cat(images_all)[:limit] if keep_images else None
    return Predictions(logits, logits.argmax(1), labels, images)


# --------------------------------------------------------------------------------------- training
def _progress_bar_class():
    """tqdm's widget bar inside a Jupyter kernel with ipywidgets installed, else the text bar.

    Like ``tqdm.auto``, minus its warning when a notebook lacks ipywidgets (text bars work there too).
    """
    if "IPython" in sys.modules:
        try:
            shell = sys.modules["IPython"].get_ipython()
            if shell is not None and "IPKernelApp" in shell.config:
                import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
                from tqdm.notebook import tqdm as notebook_tqdm
                return notebook_tqdm
        except Exception:
            pass
    from tqdm.std import tqdm as text_tqdm
    return text_tqdm


def _progress_enabled(progress: bool) -> bool:
    if not progress:
        return False
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes", "on")


def _diverged_message(value: float, epoch: int, step: int, global_step: int, lr: float,
                      amp_dtype: Optional[torch.dtype], grad_clip: Optional[float], checkpoint) -> str:
    what = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    tips = [f"a lower learning rate (now {lr:g})"]
    if grad_clip is None:
        tips.append("gradient clipping (grad_clip=1.0)")
    if amp_dtype == torch.float16:
        tips.append("turning off fp16 (amp='bf16' or amp=False)")
    tips.append("checking the inputs for NaN")
    text = (f"loss became {what} at epoch {epoch}, step {step} (global step {global_step}): try "
            + ", ".join(tips[:-1]) + f", or {tips[-1]}.")
    if checkpoint is not None and Path(checkpoint).exists():
        text += f" The checkpoint {checkpoint} holds the last completed epoch."
    return text


def fit(model: nn.Module, train_data, test_data=None, epochs: int = 10, *,
        optimizer: Union[str, torch.optim.Optimizer, Callable] = "adam", lr: float = 1e-3,
        weight_decay: float = 0.0, momentum: float = 0.9,
        schedule: Union[str, Callable, None] = None, label_smoothing: float = 0.0,
        amp: Union[str, bool, None] = None, channels_last: bool = False, compile: bool = False,
        grad_clip: Optional[float] = None, device=None, checkpoint: Optional[PathLike] = None,
        resume: bool = False, seed: Optional[int] = None, progress: bool = True,
        loss_fn: Optional[nn.Module] = None) -> History:
    """Train ``model`` for ``epochs`` epochs on ``train_data``, evaluating on ``test_data`` after each.

    Args:
        model: any classifier that maps ``[B, C, H, W]`` images to ``[B, K]`` logits.
        train_data, test_data: a ``DataLoader`` or a :class:`~cnncourse.fastdata.TensorLoader`.
        optimizer: ``"sgd"`` (with ``momentum``, Nesterov), ``"adam"``, ``"adamw"``, a torch
            optimizer, or a callable taking the parameters.
        schedule: ``None``, ``"step"``, ``"cosine"``, ``"onecycle"`` (stepped every batch), or a
            callable ``(optimizer, total_steps) -> scheduler``.
        label_smoothing: for the training loss (test loss is plain cross-entropy).
        amp: ``None`` chooses (bf16/fp16 on CUDA, float32 on CPU), ``"bf16"``, ``"fp16"``, ``False``.
        channels_last: NHWC memory format for model and batches (faster convolutions on GPUs with
            AMP and on many CPUs).
        compile: wrap the model in ``torch.compile`` (slow first epoch, faster afterwards).
        grad_clip: clip the gradients' global norm to this value.
        device: default: the best available (CUDA, MPS, CPU); the model is moved there.
        checkpoint: file written atomically after every epoch (model, optimizer, schedule, RNG
            states, history); with ``resume=True`` training continues from it when it exists.
        seed: seed Python, NumPy and torch first (the model is already built: seed before that too).
        progress: show a tqdm bar per epoch (``TQDM_DISABLE=1`` also turns it off).
        loss_fn: replaces ``nn.CrossEntropyLoss(label_smoothing=...)``.

    Returns the :class:`History`. A NaN or infinite loss raises :class:`TrainingDiverged`.
    Ctrl-C (KeyboardInterrupt) stops cleanly: the partial history is returned with
    ``history.interrupted = True``, and the checkpoint holds the last completed epoch.
    """
    from cnncourse.utils import get_device, seed_everything

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0; got {epochs}")
    device = get_device(str(device)) if device is not None else get_device()
    if seed is not None:
        seed_everything(seed)
    amp_dtype = resolve_amp(amp, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_data = _prepare_data(train_data, device)
    if test_data is not None:
        test_data = _prepare_data(test_data, device)

    steps_per_epoch = len(train_data)
    if steps_per_epoch == 0:
        raise ValueError("train_data has no batches (too few images for the batch size with drop_last?)")
    opt = make_optimizer(model, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)
    scheduler = make_scheduler(opt, schedule, epochs * steps_per_epoch, lr)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    criterion = loss_fn if loss_fn is not None else nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history = History()
    start_epoch = 0

    if checkpoint is not None and resume:
        if Path(checkpoint).exists():
            state = load_checkpoint(checkpoint, map_location=device)
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{checkpoint} is not a cnncourse training checkpoint")
            if schedule is not None and state.get("epochs") != epochs:
                raise ValueError(f"{checkpoint} was made for {state.get('epochs')} epochs with schedule "
                                 f"{schedule!r}; resume with epochs={state.get('epochs')} (the schedule "
                                 "depends on the total length)")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler") is not None:
                scaler.load_state_dict(state["scaler"])
            history = History(state["history"])
            start_epoch = int(state["epoch"])
            _set_rng_state(state["rng"], train_data)
            if progress:
                print(f"Resuming from {checkpoint} after epoch {start_epoch} of {epochs}.", file=sys.stderr)
        elif progress:
            print(f"No checkpoint at {checkpoint} yet: starting from scratch.", file=sys.stderr)

    step_model = torch.compile(model) if compile else model
    check_every = 1 if device.type == "cpu" else 25
    show = _progress_enabled(progress)
    bar_class = _progress_bar_class()

    for epoch in range(start_epoch, epochs):
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epoch)
        sampler = getattr(train_data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        model.train()
        epoch_lr = opt.param_groups[0]["lr"]
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
        correct = torch.zeros((), device=device, dtype=torch.int64)
        first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        bad_value = torch.zeros((), device=device)
        step_counter = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        bar = bar_class(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not show, leave=True, dynamic_ncols=True, file=sys.stderr)
        last_postfix = 0.0
        try:
            for step, (x, y) in enumerate(train_data):
                x, y = _to_device(x, y, device, channels_last)
                with _autocast(device, amp_dtype):
                    logits = step_model(x)
                    loss = criterion(logits, y)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if grad_clip is not None:
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    if grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    opt.step()
                if scheduler is not None:
                    scheduler.step()
                batch = len(y)
                seen += batch
                detached = loss.detach()
                step_counter += 1
                newly_bad = (~torch.isfinite(detached)) & (first_bad < 0)
                first_bad = torch.where(newly_bad, step_counter, first_bad)
                bad_value = torch.where(newly_bad, detached.float(), bad_value)
                loss_sum += detached.to(loss_sum.dtype) * batch
                correct += (logits.detach().argmax(1) == y).sum()
                last = step + 1 == steps_per_epoch
                if (step + 1) % check_every == 0 or last:
                    bad = int(first_bad)
                    if bad >= 0:
                        raise TrainingDiverged(_diverged_message(
                            float(bad_value), epoch + 1, bad, epoch * steps_per_epoch + bad, epoch_lr,
                            amp_dtype, grad_clip, checkpoint))
                bar.update(1)
                now = time.perf_counter()
                if show and (now - last_postfix > 0.5 or last):
                    last_postfix = now
                    bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}",
                                    acc=f"{float(correct) / seen:.3f}", refresh=False)
            train_seconds = time.perf_counter() - started
            record = {"epoch": epoch + 1, "train_loss": float(loss_sum) / seen,
                      "train_acc": float(correct) / seen, "test_loss": None, "test_acc": None}
            if test_data is not None:
                result = evaluate(model, test_data, device=device, amp=amp_dtype or False,
                                  channels_last=channels_last)
                record["test_loss"], record["test_acc"] = result["loss"], result["accuracy"]
                bar.set_postfix(loss=f"{record['train_loss']:.4f}", acc=f"{record['train_acc']:.3f}",
                                test_acc=f"{record['test_acc']:.3f}", refresh=False)
            record["lr"] = epoch_lr
            record["seconds"] = time.perf_counter() - started
            record["train_images_per_s"] = seen / train_seconds if train_seconds > 0 else None
            history.append(record)
        except KeyboardInterrupt:
            bar.close()
            history.interrupted = True
            if checkpoint is None:
                where = "pass checkpoint=... to be able to resume"
            elif len(history):
                where = f"the checkpoint {checkpoint} holds epoch {len(history)}; resume=True continues"
            else:
                where = "no epoch was completed, so no checkpoint was written"
            print(f"\nInterrupted during epoch {epoch + 1}: returning the history of the {len(history)} "
                  f"completed epoch(s); the model keeps its current weights; {where}.", file=sys.stderr)
            return history
        finally:
            bar.close()
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "epochs": epochs,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "history": history.to_list(), "rng": _rng_state(train_data),
            })
    return history
