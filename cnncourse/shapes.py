"""What a network does to one input, read off a real forward pass with forward hooks.

* :func:`trace_shapes`: the output shape of named submodules (which sizes survive the network);
* :func:`count_macs`: the multiply-accumulates of its convolutions and dense layers (what it costs).

A forward hook is a function PyTorch calls with a module's output each time the module runs; both
functions register hooks, push one all-zero input through the model and remove the hooks again.
On the ``meta`` device (``with torch.device("meta"): model = ...``) tensors have shapes but no
data, so both work on any network, however large, without memory or arithmetic. Notebooks 4 and 6
use them. This file needs torch alone: copy it into a project and it works.
"""
from __future__ import annotations

import difflib
import math
from typing import Dict, Iterable, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["count_macs", "trace_shapes"]

# The layers count_macs counts: those whose work is multiply-accumulates of weights with inputs.
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")


def _check_input_size(input_size: Sequence[int]) -> Tuple[int, ...]:
    """``input_size`` as a tuple of positive ints: the shape of ONE input, without the batch axis."""
    if isinstance(input_size, (int, str)) or not isinstance(input_size, Iterable):
        raise TypeError(f"input_size must be the shape of one input without the batch axis, e.g. (3, 224, 224); "
                        f"got {input_size!r}")
    size = tuple(input_size)
    if not size or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size):
        raise ValueError(f"input_size must be positive whole numbers, e.g. (3, 224, 224); got {input_size!r}")
    return size


def _device(model: nn.Module) -> torch.device:
    """Where the model's tensors live (the CPU for a model without any)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _forward_one(model: nn.Module, input_size: Tuple[int, ...]) -> None:
    """One all-zero input of ``input_size`` through ``model`` in eval mode, without gradients;
    the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=_device(model)))
    finally:
        model.train(was_training)


def _submodule(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``, or a ValueError that lists the names it could have been."""
    if not isinstance(name, str):
        raise TypeError(f"module names are strings such as 'layer1' or 'layer1.0.conv1'; got {name!r}")
    known = [n for n, _ in model.named_modules() if n]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        top = [n for n, _ in model.named_children()]
        raise ValueError(f"{type(model).__name__} has no submodule {name!r}."
                         + (f" Did you mean {', '.join(map(repr, close))}?" if close else "")
                         + f" Its top-level modules: {', '.join(top) if top else '(none)'}; deeper ones are named "
                           "by dotted paths, as model.named_modules() lists them (e.g. 'layer1.0.conv1').")
    return model.get_submodule(name)


def trace_shapes(model: nn.Module, names: Union[str, Sequence[str]],
                 input_size: Sequence[int]) -> Dict[str, Tuple[int, ...]]:
    """The output shape, without the batch axis, of each named submodule for one input.

    ``names`` are paths as in ``model.named_modules()`` (``"layer1"``, ``"stem.0"``,
    ``"layer1.0.conv1"``; one name may be passed as a plain string); ``input_size`` is the shape of
    one input without the batch axis, e.g. ``(1, 28, 28)``. Returns ``{name: (C, H, W)}`` in the
    order of ``names`` (a dense layer gives ``(features,)``). A module called more than once in a
    forward pass reports its last call. The model runs once on zeros in eval mode, without
    gradients, on its own device; its train/eval mode is restored.
    """
    _check_model(model)
    names = [names] if isinstance(names, str) else list(names)
    size = _check_input_size(input_size)
    modules = {name: _submodule(model, name) for name in names}
    shapes: Dict[str, Tuple[int, ...]] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if not isinstance(output, Tensor):
                raise TypeError(f"{name!r} ({type(module).__name__}) returns a {type(output).__name__}, not a "
                                "tensor: trace a module that returns one tensor")
            shapes[name] = tuple(output.shape[1:])
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    try:
        _forward_one(model, size)
    finally:
        for hook in hooks:
            hook.remove()
    missing = [name for name in names if name not in shapes]
    if missing:
        raise ValueError(f"the forward pass never called {', '.join(map(repr, missing))}: these modules exist but "
                         "the model's forward does not use them")
    return {name: shapes[name] for name in names}


def count_macs(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-accumulates (MACs) of all convolutions and dense layers for one input of ``input_size``.

    A convolution producing ``C_out`` maps of ``H' x W'`` from ``C_in`` channels with a
    ``k x k`` kernel does ``H' W' C_out (C_in / groups) k^2`` MACs (Conv1d and Conv3d likewise);
    a dense layer ``in_features x out_features`` per input vector. BatchNorm, activations,
    pooling, additions and biases are left out, as are layers whose weights are used without calling
    the module (``nn.MultiheadAttention``'s projections, for instance). One MAC is two
    floating-point operations. The model runs once on zeros in eval mode (on the ``meta`` device:
    no memory, no arithmetic); its train/eval mode is restored. ``input_size`` is the shape of one
    input without the batch axis, e.g. ``(3, 224, 224)``.
    """
    _check_model(model)
    size = _check_input_size(input_size)
    total = 0

    def hook(module: nn.Module, inputs, output: Tensor) -> None:
        nonlocal total
        if isinstance(module, _CONVOLUTIONS):   # every output value: a dot product over (C_in / groups) k^2
            total += output[0].numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:                                   # every output value: a dot product over in_features
            total += output[0].numel() * module.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONVOLUTIONS + (nn.Linear,))]
    try:
        _forward_one(model, size)
    finally:
        for h in hooks:
            h.remove()
    return total
