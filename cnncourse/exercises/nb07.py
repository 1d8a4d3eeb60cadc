"""Exercises of notebook 7 (what the network looks at): a saliency map, Grad-CAM's weights and its map,
a heat map brought up to the image's size, and a pretrained network prepared for fine-tuning."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Tester, checker, fmt
from cnncourse.models.resnet import BasicBlock, ResNet

SALIENCY_MAP = '''\
import torch


def saliency_map(model, images, targets):
    """Saliency of each image for its target class: the absolute gradient of the target's logit
    with respect to the input pixels, the largest over the colour channels. model: in eval mode;
    images: (N, C, H, W); targets: (N,) class indices. Returns (N, H, W)."""
    raise NotImplementedError
'''


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


@checker("saliency_map")
def check_saliency_map(t: Tester, answer: Any) -> None:
    """Compared with torch.autograd.grad of the target logits, for small networks in eval mode."""
    generator = torch.Generator().manual_seed(70)
    for channels, n, size, classes in [(3, 4, 8, 5), (1, 3, 6, 4), (3, 2, 10, 3)]:
        t.case(f"saliency_map(<a small network in eval mode>, <images ({n}, {channels}, {size}, {size})>, "
               f"<targets ({n},)>)")
        model = _small_convnet(channels, classes, generator)
        images = torch.randn(n, channels, size, size, generator=generator)
        targets = torch.randint(0, classes, (n,), generator=generator)

        def logit(out: torch.Tensor) -> torch.Tensor:
            return out.gather(1, targets[:, None]).sum()

        grad = _input_gradient(model, images, logit)
        got = t.call(answer, model, images.clone(), targets.clone())
        if model.training:
            t.fail("the model was left in training mode", "leave the model in eval mode: in training mode "
                   "BatchNorm uses the batch's statistics and the gradient changes")
        model.eval()
        t.close(got, grad.abs().amax(1), "saliency = |d logit[target] / d pixel|, the maximum over the channels",
                alternatives=[
                    (grad.amax(1), "take the absolute value of the gradient before the maximum over the channels"),
                    (grad.abs().sum(1), "the maximum over the channels, not the sum"),
                    (grad.abs().mean(1), "the maximum over the channels, not the mean"),
                    (lambda: _input_gradient(model, images, lambda out: out.sum()).abs().amax(1),
                     "differentiate the score of each image's own target class (out[i, targets[i]]), not the sum "
                     "of all logits"),
                    (lambda: _input_gradient(model, images, lambda out: logit(out.softmax(1))).abs().amax(1),
                     "differentiate the target's logit (the score before the softmax), not its probability"),
                    (lambda: _input_gradient(model, images, lambda out: F.cross_entropy(out, targets)).abs().amax(1),
                     "differentiate the target's logit (the score before the softmax), not a loss"),
                    (lambda: _input_gradient(model.train(), images, logit).abs().amax(1),
                     "leave the model in eval mode: in training mode BatchNorm uses the batch's statistics")],
                shape_hint="one map per image, (N, H, W): reduce the channel axis (dim 1) with its maximum")
        model.eval()


GRADCAM_WEIGHTS = '''\
def gradcam_weights(gradients):
    """Grad-CAM's weight of every channel: gradients (N, K, h, w) of the class score with respect
    to a layer's feature maps, averaged over the h x w positions. Returns (N, K)."""
    raise NotImplementedError
'''


@checker("gradcam_weights")
def check_gradcam_weights(t: Tester, answer: Any) -> None:
    """Compared with the mean over the last two axes."""
    generator = torch.Generator().manual_seed(71)
    for shape in [(2, 5, 4, 4), (1, 3, 7, 7), (3, 2, 5, 3)]:
        t.case(f"gradcam_weights(<gradients {shape}>)")
        gradients = torch.randn(shape, generator=generator)
        got = t.call(answer, gradients.clone())
        t.close(got, gradients.mean((2, 3)), "alpha[n, k] = (1 / (h·w)) · sum over the positions of gradients[n, k]",
                alternatives=[
                    (gradients.sum((2, 3)), "average, don't just add: divide the sum by h·w (or use .mean)"),
                    (gradients.amax((2, 3)), "a global AVERAGE of the gradients over the positions, not the maximum"),
                    (gradients.abs().mean((2, 3)), "average the gradients themselves, signs included: a channel "
                     "whose growth lowers the score gets a negative weight")],
                shape_hint="one weight per image and channel, (N, K): average over the last two axes (2, 3)")


GRADCAM_MAP = '''\
import torch


def gradcam_map(activations, weights):
    """Grad-CAM's map: the feature maps activations (N, K, h, w) summed over the channels with
    weights (N, K), then passed through a ReLU. Returns (N, h, w)."""
    raise NotImplementedError
'''


@checker("gradcam_map")
def check_gradcam_map(t: Tester, answer: Any) -> None:
    """Compared with ReLU(sum_k alpha_k A_k), on maps with positive and negative parts."""
    generator = torch.Generator().manual_seed(72)
    for shape, shift in [((2, 4, 5, 5), 0.0), ((1, 6, 7, 7), 0.0), ((3, 3, 4, 6), -3.0)]:
        n, k = shape[:2]
        t.case(f"gradcam_map(<activations {shape}>, <weights ({n}, {k})>)"
               + (", a weighted sum that is negative everywhere in one image" if shift else ""))
        activations = torch.randn(shape, generator=generator).abs()
        weights = torch.randn(n, k, generator=generator)
        if shift:
            weights[0] = -weights[0].abs() - 0.1
        summed = (weights[:, :, None, None] * activations).sum(1)
        got = t.call(answer, activations.clone(), weights.clone())
        t.close(got, F.relu(summed), "map = ReLU(sum over k of weights[:, k] · activations[:, k])", alternatives=[
            (summed, "apply a ReLU to the weighted sum: only the positions that raise the class score are kept"),
            (summed.abs(), "a ReLU, not the absolute value: positions that lower the score (evidence against the "
                           "class) are dropped, not counted"),
            (F.relu(summed / k), "sum over the channels, don't average them"),
            ((weights[:, :, None, None] * F.relu(activations)).sum(1), "apply the ReLU once, to the weighted sum")],
            shape_hint="one map per image, (N, h, w): weights[:, :, None, None] · activations, summed over dim 1")


UPSAMPLE_HEATMAP = '''\
import torch
import torch.nn.functional as F


def upsample_heatmap(cam, size):
    """Heat maps cam (N, h, w) brought to the image's size = (H, W) by bilinear interpolation
    (align_corners=False), then each map scaled to 0..1 by its own minimum and maximum
    ((map - min) / (max - min)); a map that is constant becomes all zeros. Returns (N, H, W)."""
    raise NotImplementedError
'''


def _scale_each(maps: torch.Tensor) -> torch.Tensor:
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    span = high - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-30), torch.zeros_like(maps))


def _upsample(cam: torch.Tensor, size: Tuple[int, int], **options: Any) -> torch.Tensor:
    return F.interpolate(cam[:, None], size=size, **options)[:, 0]


@checker("upsample_heatmap")
def check_upsample_heatmap(t: Tester, answer: Any) -> None:
    """Compared with F.interpolate(mode="bilinear", align_corners=False) and a min-max scaling per map."""
    generator = torch.Generator().manual_seed(73)
    for shape, size, constant in [((3, 5, 5), (20, 20), True), ((2, 7, 7), (28, 28), False),
                                  ((2, 4, 6), (10, 16), False)]:
        t.case(f"upsample_heatmap(<cam {shape}>, {size})" + (", one map all zeros" if constant else ""))
        cam = F.relu(torch.randn(shape, generator=generator)) * torch.arange(1, shape[0] + 1)[:, None, None]
        if constant:
            cam[1] = 0.0
        bilinear = _upsample(cam, size, mode="bilinear", align_corners=False)
        expected = _scale_each(bilinear)
        got = t.call(answer, cam.clone(), size)
        values = t.array(got)
        if values.shape == tuple(expected.shape) and np.isnan(values).any():
            t.fail("got NaN values", "a constant map (all zeros after the ReLU) has max - min = 0: return zeros for "
                   "it instead of dividing 0 by 0")
        t.close(values, expected, "F.interpolate(cam[:, None], size=size, mode='bilinear', align_corners=False), "
                "then (map - min) / (max - min) for each map", alternatives=[
                    (_scale_each(_upsample(cam, size, mode="nearest")), "interpolate with mode='bilinear': 'nearest' "
                     "repeats every value in a block"),
                    (_scale_each(_upsample(cam, size, mode="bilinear", align_corners=True)), "use "
                     "align_corners=False, as captum's LayerAttribution.interpolate does"),
                    (bilinear, "scale each map to 0..1: (map - min) / (max - min)"),
                    ((bilinear - bilinear.min()) / (bilinear.max() - bilinear.min()), "scale each map by its own "
                     "minimum and maximum, not by those of the whole batch"),
                    (lambda: _upsample(_scale_each(cam), size, mode="bilinear", align_corners=False), "upsample "
                     "first, then scale: interpolation can move the minimum and the maximum")],
                shape_hint="return (N, H, W): add a channel axis for F.interpolate (cam[:, None]) and drop it after")


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
    Exercise("saliency_map", "A saliency map", "Saliency: the gradient with respect to the pixels",
             check_saliency_map, SALIENCY_MAP),
    Exercise("gradcam_weights", "Grad-CAM's channel weights", "Grad-CAM: the gradient of a feature map",
             check_gradcam_weights, GRADCAM_WEIGHTS),
    Exercise("gradcam_map", "Grad-CAM's map and its ReLU", "Grad-CAM: the gradient of a feature map",
             check_gradcam_map, GRADCAM_MAP),
    Exercise("upsample_heatmap", "A heat map at the image's size", "What LeNet looks at on CIFAR-10",
             check_upsample_heatmap, UPSAMPLE_HEATMAP),
    Exercise("prepare_for_fine_tuning", "A new head for fine-tuning, and a frozen backbone",
             "Transfer learning: ImageNet weights in the course's ResNet-50", check_prepare_for_fine_tuning,
             PREPARE_FOR_FINE_TUNING),
]
