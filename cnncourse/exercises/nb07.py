"""Exercises of notebook 7 (what the network looks at): SmoothGrad, integrated gradients, Grad-CAM
without a backward pass (CAM), a heat map placed on its image, and a pretrained network prepared for
fine-tuning; and the course's placement of a layer's heat map on the input (``map_geometry``,
``place_heatmap``), which the lesson's figures use."""
from __future__ import annotations

from typing import Any, Iterable, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, fmt
from cnncourse.models.resnet import BasicBlock, ResNet

__all__ = ["map_geometry", "place_heatmap", "scaled"]

# ------------------------------------------------------------------ where a layer's cells sit on the input
Layer = Union[nn.Module, Tuple[int, int, int]]


def _kernel_stride_padding(layer: Layer) -> Tuple[int, int, int]:
    """(kernel, stride, padding) along one axis of a square convolution or pooling, or of a tuple;
    a dilated kernel counts with its span, dilation * (kernel - 1) + 1."""
    if isinstance(layer, tuple):
        return layer

    def first(value: Any) -> int:
        return int(value[0] if isinstance(value, (tuple, list)) else value)

    kernel, dilation = first(layer.kernel_size), first(getattr(layer, "dilation", 1))
    return dilation * (kernel - 1) + 1, first(layer.stride), first(layer.padding)


def map_geometry(layers: Iterable[Layer]) -> Tuple[int, float]:
    """Where a layer's output cells sit on the input: cell i is centred on input coordinate
    jump * i + start (pixel p's centre is coordinate p). ``layers``: the convolutions and poolings from
    the input to the layer, in order, as modules or (kernel, stride, padding) tuples; layers that keep
    the geometry (BatchNorm, ReLU, a stride-1 convolution padded by (kernel - 1) / 2) may be left out.
    Each layer moves the first centre by ((kernel - 1) / 2 - padding) input cells and multiplies the jump
    by its stride. Returns (jump, start)."""
    jump, start = 1, 0.0
    for layer in layers:
        kernel, stride, padding = _kernel_stride_padding(layer)
        start += ((kernel - 1) / 2 - padding) * jump
        jump *= stride
    return jump, start


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """Each map of (N, H, W) scaled to 0..1 by its own minimum and maximum; a constant map becomes zeros."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-30), torch.zeros_like(maps))


def _tent(pixels: int, cells: int, jump: float, start: float) -> torch.Tensor:
    """(pixels, cells) weights: pixel p reads the map at u = (p - start) / jump, clamped to the first and
    last cell, linearly between the two nearest cells."""
    u = ((torch.arange(pixels, dtype=torch.float64) - start) / jump).clamp(0, cells - 1)
    return (1 - (u[:, None] - torch.arange(cells, dtype=torch.float64)).abs()).clamp_min(0)


def place_heatmap(cam: torch.Tensor, size: Sequence[int], jump: float, start: float) -> torch.Tensor:
    """Heat maps cam (N, h, w) of a layer drawn on its input of size = (H, W): cell (i, j) is centred on
    input pixel (jump * i + start, jump * j + start) (``map_geometry``), pixels between centres are
    interpolated linearly, pixels beyond the first or last centre take the edge cell's value; then each
    map is scaled to 0..1 (a constant map becomes zeros). Returns (N, H, W) in cam's dtype."""
    rows = _tent(size[0], cam.shape[-2], jump, start)
    columns = _tent(size[1], cam.shape[-1], jump, start)
    return scaled(rows @ cam.double() @ columns.T).to(cam.dtype)


# ------------------------------------------------------------------------------------------ the exercises
def _small_convnet(in_channels: int, classes: int, generator: torch.Generator) -> nn.Module:
    """A small classifier with BatchNorm (random running statistics), in eval mode."""
    model = nn.Sequential(nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, classes))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
        model[1].running_var.abs_().add_(0.5)
    return model.eval()


def _input_gradient(model: nn.Module, images: torch.Tensor, score) -> torch.Tensor:
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(model(x)), x)
    return grad


def _logit_of(targets: torch.Tensor):
    return lambda out: out.gather(1, targets[:, None]).sum()


def _left_in_training_mode(t: Tester, model: nn.Module) -> None:
    if model.training:
        t.fail("the model was left in training mode", "leave the model in eval mode: in training mode "
               "BatchNorm uses the batch's statistics and the gradient changes")


SMOOTHGRAD = '''\
import torch


def smoothgrad(model, images, targets, noise):
    """SmoothGrad: the saliency map averaged over noisy copies of the images. noise: (S, N, C, H, W),
    S draws of noise for the N images. For each draw s, the saliency map of images + noise[s] (the
    absolute gradient of each image's target logit, the largest over the channels); then the mean of
    the S maps. model: in eval mode; images: (N, C, H, W); targets: (N,) class indices.
    Returns (N, H, W)."""
    raise NotImplementedError
'''


@checker("smoothgrad")
def check_smoothgrad(t: Tester, answer: Any) -> None:
    """Compared with the mean of torch.autograd.grad's saliency maps of the noisy copies."""
    generator = torch.Generator().manual_seed(70)
    for channels, n, size, classes, draws in [(3, 4, 8, 5, 3), (1, 3, 6, 4, 4), (3, 2, 10, 3, 1)]:
        t.case(f"smoothgrad(<a small network in eval mode>, <images ({n}, {channels}, {size}, {size})>, "
               f"<targets ({n},)>, <noise ({draws}, {n}, {channels}, {size}, {size})>)")
        model = _small_convnet(channels, classes, generator)
        images = torch.randn(n, channels, size, size, generator=generator)
        targets = torch.randint(0, classes, (n,), generator=generator)
        noise = 0.5 * torch.randn(draws, n, channels, size, size, generator=generator)
        logit = _logit_of(targets)
        grads = torch.stack([_input_gradient(model, images + noise[s], logit) for s in range(draws)])
        got = t.call(answer, model, images.clone(), targets.clone(), noise.clone())
        _left_in_training_mode(t, model)
        t.close(got, grads.abs().amax(2).mean(0), "for each s, |d logit[target] / d pixel| at images + noise[s], "
                "the maximum over the channels; then the mean over the S maps", alternatives=[
                    (lambda: _input_gradient(model, images, logit).abs().amax(1), "add noise[s] to the images: "
                     "SmoothGrad averages the maps of the noisy copies, not the map of the image itself"),
                    (grads.mean(0).abs().amax(1), "take each copy's map (absolute value, maximum over the channels) "
                     "first, then average the maps: the signed gradients of different copies cancel"),
                    (grads.abs().mean(0).amax(1), "each copy's map is the maximum over its channels: take the "
                     "maximum for each copy, then the mean over the copies"),
                    (grads.abs().amax(2).sum(0), "average the S maps: divide their sum by S"),
                    (grads[0].abs().amax(1), "one map for every draw of noise: loop over all S draws, noise[0] "
                     "to noise[S - 1], not only the first"),
                    (lambda: torch.stack([_input_gradient(model.train(), images + noise[s], logit)
                                          for s in range(draws)]).abs().amax(2).mean(0),
                     "leave the model in eval mode: in training mode BatchNorm uses the batch's statistics")],
                shape_hint="one map per image, (N, H, W): the maximum over the channel axis, the mean over the draws")
        model.eval()


INTEGRATED_GRADIENTS = '''\
import torch


def integrated_gradients(model, images, targets, baselines, steps):
    """Integrated gradients by a right Riemann sum: the gradient of each image's target logit at the
    points baselines + (k / steps) * (images - baselines) for k = 1, ..., steps, averaged, times
    (images - baselines). model: in eval mode; images and baselines: (N, C, H, W); targets: (N,)
    class indices. Returns (N, C, H, W): one signed value per pixel and channel."""
    raise NotImplementedError
'''


def _path_gradients(model: nn.Module, images: torch.Tensor, baselines: torch.Tensor, targets: torch.Tensor,
                    fractions: Sequence[float], score=None) -> torch.Tensor:
    score = score or _logit_of(targets)
    return torch.stack([_input_gradient(model, baselines + a * (images - baselines), score) for a in fractions])


@checker("integrated_gradients")
def check_integrated_gradients(t: Tester, answer: Any) -> None:
    """Compared with captum's IntegratedGradients (method="riemann_right")."""
    from captum.attr import IntegratedGradients

    generator = torch.Generator().manual_seed(71)
    for channels, n, size, classes, steps, baseline in [(3, 2, 8, 4, 8, "zeros"), (1, 3, 6, 3, 2, "random"),
                                                        (3, 2, 7, 5, 20, "random")]:
        t.case(f"integrated_gradients(<a small network in eval mode>, <images ({n}, {channels}, {size}, {size})>, "
               f"<targets ({n},)>, <baselines: {baseline}>, {steps})")
        model = _small_convnet(channels, classes, generator)
        images = torch.randn(n, channels, size, size, generator=generator)
        targets = torch.randint(0, classes, (n,), generator=generator)
        baselines = (torch.zeros_like(images) if baseline == "zeros"
                     else 0.5 * torch.randn(images.shape, generator=generator))
        expected = IntegratedGradients(model).attribute(images, baselines=baselines, target=targets, n_steps=steps,
                                                        method="riemann_right").detach()
        got = t.call(answer, model, images.clone(), targets.clone(), baselines.clone(), steps)
        _left_in_training_mode(t, model)
        delta = images - baselines
        right = [k / steps for k in range(1, steps + 1)]
        t.close(got, expected, "(images - baselines) times the mean of the gradients at baselines + (k / steps) · "
                "(images - baselines), k = 1, ..., steps", alternatives=[
                    (lambda: delta * _path_gradients(model, images, baselines, targets,
                                                     [k / steps for k in range(steps)]).mean(0),
                     "k runs from 1 to steps (a right Riemann sum): the last point is the image itself and the "
                     "baseline is not among the points"),
                    (lambda: _path_gradients(model, images, baselines, targets, right).mean(0),
                     "multiply the mean gradient by (images - baselines)"),
                    (lambda: delta * _path_gradients(model, images, baselines, targets, right).sum(0),
                     "average the gradients: divide their sum by steps"),
                    (lambda: images * _path_gradients(model, images, baselines, targets, right).mean(0),
                     "multiply by (images - baselines), not by the images: here the baseline is not zero"),
                    (lambda: delta * _input_gradient(model, images, _logit_of(targets)),
                     "take the gradient at every point of the path from the baseline to the image, not only at "
                     "the image"),
                    (lambda: delta * _path_gradients(model, images, baselines, targets, right,
                                                     lambda out: _logit_of(targets)(out.softmax(1))).mean(0),
                     "differentiate the target's logit (the score before the softmax), not its probability")],
                shape_hint="one value per pixel and channel, (N, C, H, W), the images' shape")
        model.eval()


CLASS_ACTIVATION_MAP = '''\
import torch


def class_activation_map(features, fc_weight, targets):
    """Grad-CAM, without a backward pass, of the last convolution stage of a network that ends in
    global average pooling and one dense layer. features: that stage's output (N, K, h, w);
    fc_weight: the dense layer's weight (classes, K); targets: (N,) class indices.
    Returns (N, h, w), Grad-CAM's map for each image's target class."""
    raise NotImplementedError
'''


class _PooledNet(nn.Module):
    """body -> global average pool -> fc: the shape of ResNet-20's end."""

    def __init__(self, channels: int, classes: int, generator: torch.Generator) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(channels, classes)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


@checker("class_activation_map")
def check_class_activation_map(t: Tester, answer: Any) -> None:
    """Compared with Grad-CAM of the pooled network's last stage, computed through autograd."""
    generator = torch.Generator().manual_seed(72)
    for n, channels, (h, w), classes in [(2, 6, (4, 4), 5), (3, 8, (7, 7), 10), (2, 5, (3, 5), 4)]:
        t.case(f"class_activation_map(<features ({n}, {channels}, {h}, {w})>, <fc_weight ({classes}, {channels})>, "
               f"<targets ({n},)>)")
        model = _PooledNet(channels, classes, generator)
        features = model.body(torch.randn(n, 3, h, w, generator=generator)).detach().requires_grad_(True)
        targets = torch.randint(0, classes, (n,), generator=generator)
        scores = model.fc(features.mean(dim=(2, 3))).gather(1, targets[:, None]).sum()
        (grads,) = torch.autograd.grad(scores, features)
        features = features.detach()
        weight = model.fc.weight.detach()
        grad_cam = F.relu((grads.mean(dim=(2, 3))[:, :, None, None] * features).sum(1))
        summed = torch.einsum("nk,nkhw->nhw", weight[targets], features)
        got = t.call(answer, features.clone(), weight.clone(), targets.clone())
        t.close(got, grad_cam, "Grad-CAM's weights are alpha[n, k] = fc_weight[targets[n], k] / (h·w): "
                "ReLU(sum over k of alpha[n, k] · features[n, k])", alternatives=[
                    (F.relu(summed), "divide by h·w: the average pool passes W[c, k] / (h·w) back to every position, "
                     "so that is Grad-CAM's weight alpha"),
                    (summed / (h * w), "keep only the positive part (a ReLU), as Grad-CAM does"),
                    (F.relu(summed) / (h * w) / channels, "sum over the channels k, don't average them"),
                    (F.relu(torch.einsum("k,nkhw->nhw", weight[targets[0]], features)) / (h * w),
                     "use each image's own target: the row fc_weight[targets[n]] for image n")],
                shape_hint="one map per image, (N, h, w): weight the K channels and sum over them (dim 1)")


HEATMAP_ON_IMAGE = '''\
import torch


def heatmap_on_image(cam, size, jump, start):
    """Heat maps cam (N, h, w) of a layer drawn on the input image of size = (H, W): cell i of the map
    is centred on input pixel jump * i + start (in both directions). Pixel p reads the map at
    u = (p - start) / jump, linearly between the two nearest cells, and takes the edge cell's value
    where u < 0 or u > h - 1 (w - 1 across). Then each map scaled to 0..1 by its own minimum and
    maximum, a constant map becoming zeros. Returns (N, H, W)."""
    raise NotImplementedError
'''


def _grid_placed(cam: torch.Tensor, size: Tuple[int, int], jump: float, start: float,
                 padding: str = "border", nearest: bool = False) -> torch.Tensor:
    """The placement by torch's grid_sample (align_corners=True: -1 and 1 are the first and last cells' centres)."""
    def coordinates(pixels: int, cells: int) -> torch.Tensor:
        u = (torch.arange(pixels, dtype=torch.float64) - start) / jump
        if nearest:
            u = u.clamp(0, cells - 1).round()
        return 2 * u / (cells - 1) - 1
    ys, xs = coordinates(size[0], cam.shape[-2]), coordinates(size[1], cam.shape[-1])
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None].expand(len(cam), -1, -1, -1)
    return F.grid_sample(cam[:, None].double(), grid, mode="bilinear", padding_mode=padding, align_corners=True)[:, 0]


def _upsample(cam: torch.Tensor, size: Tuple[int, int], **options: Any) -> torch.Tensor:
    return F.interpolate(cam[:, None].double(), size=size, **options)[:, 0]


@checker("heatmap_on_image")
def check_heatmap_on_image(t: Tester, answer: Any) -> None:
    """Compared with torch's grid_sample at the cells' coordinates (border padding), scaled per map."""
    generator = torch.Generator().manual_seed(73)
    for shape, size, jump, start, layer in [((3, 10, 10), (32, 32), 2, 6.5, "LeNet's bn2"),
                                            ((2, 7, 7), (28, 28), 4, 0.0, "ResNet-20's layer3"),
                                            ((2, 4, 6), (20, 30), 4, 1.5, "two 2 x 2 poolings")]:
        constant = shape[0] == 3
        t.case(f"heatmap_on_image(<cam {shape}>, {size}, jump={jump}, start={start}) ({layer})"
               + (", one map all zeros" if constant else ""))
        cam = F.relu(torch.randn(shape, generator=generator)) * torch.arange(1, shape[0] + 1)[:, None, None]
        if constant:
            cam[1] = 0.0
        expected = scaled(_grid_placed(cam, size, jump, start))
        got = t.call(answer, cam.clone(), size, jump, start)
        values = t.array(got)
        if values.shape == tuple(expected.shape) and np.isnan(values).any():
            t.fail("got NaN values", "a constant map (all zeros after the ReLU) has max - min = 0: return zeros for "
                   "it instead of dividing 0 by 0")
        placed = _grid_placed(cam, size, jump, start)
        t.close(values, expected, "pixel p reads the map at u = (p - start) / jump, clamped to 0 .. h - 1, linearly "
                "between cells floor(u) and floor(u) + 1; then (map - min) / (max - min) for each map", alternatives=[
                    (lambda: scaled(_upsample(cam, size, mode="bilinear", align_corners=False)), "cell i is centred "
                     "on pixel jump · i + start: interpolating the map to the image's size puts it at "
                     "(i + 0.5) · H / h - 0.5 instead, which stretches and shifts it"),
                    (lambda: scaled(_upsample(cam, size, mode="bilinear", align_corners=True)), "cell i is centred on "
                     "pixel jump · i + start: interpolating with align_corners=True puts the first and last cells on "
                     "the image's first and last pixels instead"),
                    (lambda: scaled(_grid_placed(cam, size, jump, 0.0)), "subtract start: pixel p reads the map at "
                     "u = (p - start) / jump"),
                    (lambda: scaled(_grid_placed(cam, size, jump, start, padding="zeros")), "beyond the first and the "
                     "last centre, take the edge cell's value (clamp u to 0 .. h - 1), don't fade to zero"),
                    (lambda: scaled(_grid_placed(cam, size, jump, start, nearest=True)), "interpolate linearly between "
                     "the two nearest cells instead of taking the nearest cell's value"),
                    (placed, "scale each map to 0..1: (map - min) / (max - min)"),
                    ((placed - placed.min()) / (placed.max() - placed.min()), "scale each map by its own minimum and "
                     "maximum, not by those of the whole batch"),
                    (lambda: _grid_placed(scaled(cam), size, jump, start), "place first, then scale: the placed "
                     "map's minimum and maximum can differ from the cells'")],
                shape_hint="return (N, H, W), one map per image at the image's size")


PREPARE_FOR_FINE_TUNING = '''\
from torch import nn


def prepare_for_fine_tuning(model, num_classes, freeze_backbone=False):
    """A pretrained ResNet made ready for a new task: its classifier model.fc replaced by a new
    nn.Linear (with a bias) from the same number of features to num_classes; with freeze_backbone,
    every other parameter gets requires_grad = False, so that only the new fc trains. Keeps all
    other weights. Returns the model."""
    raise NotImplementedError
'''


def _pretrained_resnet(widths: Tuple[int, int], generator: torch.Generator) -> ResNet:
    """A small ResNet with 1000 classes whose weights stand for pretrained ones."""
    model = ResNet(BasicBlock, [1, 1], num_classes=1000, small_input=True, widths=widths)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model


@checker("prepare_for_fine_tuning")
def check_prepare_for_fine_tuning(t: Tester, answer: Any) -> None:
    """The new head's shape, which parameters train, and that the backbone kept its weights."""
    generator = torch.Generator().manual_seed(74)
    for widths, classes, freeze in [((8, 16), 3, False), ((8, 16), 5, True), ((4, 32), 10, True)]:
        t.case(f"prepare_for_fine_tuning(<a ResNet with {widths[-1]} features and 1000 classes>, {classes}, "
               f"freeze_backbone={freeze})")
        model = _pretrained_resnet(widths, generator)
        backbone = {name: value.clone() for name, value in model.state_dict().items() if not name.startswith("fc.")}
        got = t.call(answer, model, classes, freeze_backbone=freeze)
        if not isinstance(got, nn.Module) or not isinstance(getattr(got, "fc", None), nn.Linear):
            what = "a model without an nn.Linear fc" if isinstance(got, nn.Module) else fmt(got)
            t.fail(f"got {what}", "replace model.fc with a new nn.Linear and return the model")
        fc = got.fc
        t.equal([fc.in_features, fc.out_features], [widths[-1], classes], "nn.Linear(model.fc.in_features, "
                "num_classes)", alternatives=[([2048, classes], "read the number of features from "
                                                "model.fc.in_features: only ResNet-50 has 2048")])
        if fc.bias is None:
            t.fail("the new fc has no bias", "build the new head as nn.Linear(in_features, num_classes): it has a bias")
        state = got.state_dict()
        changed = sorted(name for name, value in backbone.items() if name not in state
                         or state[name].shape != value.shape or not torch.equal(state[name], value))
        if changed:
            t.fail(f"{len(changed)} backbone tensors changed, {changed[0]!r} first", "keep the pretrained weights: "
                   "change model.fc only, don't build a new model")
        trainable = {name for name, parameter in got.named_parameters() if parameter.requires_grad}
        head = {"fc.weight", "fc.bias"}
        every = {name for name, _ in got.named_parameters()}
        if not head <= trainable:
            t.fail("the new fc does not train (requires_grad is False)", "the new fc must train: freeze the backbone "
                   "first and replace fc after, or leave the new fc's requires_grad True")
        if freeze and trainable != head:
            t.fail(f"{len(trainable - head)} backbone parameters still train", "with freeze_backbone=True set "
                   "requires_grad = False on every parameter except the new fc's weight and bias")
        if not freeze and trainable != every:
            t.fail(f"{len(every - trainable)} parameters frozen", "with freeze_backbone=False every parameter "
                   "trains: freeze nothing")
        with torch.no_grad():
            out = got.eval()(torch.randn(2, 3, 8, 8, generator=generator))
        t.equal(list(out.shape), [2, classes], "the model's logits have one column per new class")


EXERCISES = [
    Exercise("smoothgrad", "SmoothGrad: saliency averaged over noisy copies",
             "Saliency: the gradient with respect to the pixels", check_smoothgrad, SMOOTHGRAD),
    Exercise("integrated_gradients", "Integrated gradients by a Riemann sum",
             "Saliency: the gradient with respect to the pixels", check_integrated_gradients, INTEGRATED_GRADIENTS),
    Exercise("class_activation_map", "Grad-CAM without a backward pass", "Grad-CAM: the gradient of a feature map",
             check_class_activation_map, CLASS_ACTIVATION_MAP),
    Exercise("heatmap_on_image", "A layer's heat map placed on its image", "Where a map's cells lie on the image",
             check_heatmap_on_image, HEATMAP_ON_IMAGE),
    Exercise("prepare_for_fine_tuning", "A new head for fine-tuning, and a frozen backbone",
             "Transfer learning: five new classes from 100 images each", check_prepare_for_fine_tuning,
             PREPARE_FOR_FINE_TUNING),
]
