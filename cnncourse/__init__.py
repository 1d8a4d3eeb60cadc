"""cnncourse: the helper package of a notebook course on convolutional neural networks in PyTorch."""
from cnncourse.config import (at_scale, data_root, describe_scale, quick, quick_mode, runs_root, scale,
                              set_quick_mode, set_scale)
from cnncourse.utils import (count_parameters, describe_device, get_device, layer_summary,
                             seed_everything, seed_worker)
from cnncourse.shapes import count_macs, trace_shapes
from cnncourse import colab  # noqa: E402  (the notebooks' set-up cell: Drive and the GPU in Colab)

__version__ = "0.1.0"

__all__ = [
    "__version__", "count_parameters", "data_root", "describe_device", "get_device",
    "layer_summary", "quick", "quick_mode", "runs_root", "seed_everything", "seed_worker", "set_quick_mode",
    "at_scale", "describe_scale", "scale", "set_scale",
]
__all__ += ["count_macs", "trace_shapes"]
