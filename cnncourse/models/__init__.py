"""The course's models, and a registry that builds any of them by name.

``get_model("resnet18", num_classes=10, in_channels=1, small_input=True)`` is what the notebooks
and the command line use; the classes and builders are importable directly too. Each model file
(``lenet.py``, ``resnet.py``, ``vgg.py``, ``article.py``) needs torch alone.
"""
from __future__ import annotations

from typing import Callable, Dict, Union

import torch
from torch import nn

from cnncourse.models.article import (ArticleBottleneck, GalaxyArticleResNet50, KerasArticleResNet50,
                                      resnet50_galaxy_article, resnet50_keras_article)
from cnncourse.models.lenet import LeNet, lenet
from cnncourse.models.resnet import (BasicBlock, Bottleneck, ResNet, cifar_resnet, make_stage, resnet18,
                                     resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101,
                                     resnet110, resnet152)
from cnncourse.models.vgg import (VGG, make_layers, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19,
                                  vgg19_bn)

MODELS: Dict[str, Callable[..., nn.Module]] = {
    "lenet": lenet,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "vgg11_bn": vgg11_bn,
    "vgg13_bn": vgg13_bn,
    "vgg16_bn": vgg16_bn,
    "vgg19_bn": vgg19_bn,
    "resnet50_keras_article": resnet50_keras_article,
    "resnet50_galaxy_article": resnet50_galaxy_article,
}


def _canonical(name: str) -> str:
    """"ResNet-50", "resnet_50" and "resnet50" all name the same model."""
    return name.strip().lower().replace("-", "").replace("_", "")


_CANONICAL_NAMES = {_canonical(name): name for name in MODELS}


def get_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build the model called ``name`` (case and "-"/"_" do not matter) with its default initialisation.

    Extra keyword arguments go to the builder, e.g. ``small_input=True`` or
    ``zero_init_residual=True`` for the ResNets, ``image_size=28`` for LeNet, ``dropout`` for VGG.
    """
    key = _CANONICAL_NAMES.get(_canonical(name))
    if key is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[key](num_classes=num_classes, in_channels=in_channels, **kwargs)


def min_input_size(model: Union[nn.Module, str], **kwargs) -> int:
    """Smallest height/width (px) the model accepts; for LeNet, the one size it accepts.

    ``model`` is a built model or a name for :func:`get_model` (built on the meta device, so free).
    ResNets with the 224-px stem and VGG need 32 px (their total stride), small-input ResNets 8,
    the CIFAR ResNets 4, the Keras-article ResNet-50 its 28 px.
    """
    if isinstance(model, str):
        with torch.device("meta"):
            model = get_model(model, **kwargs)
    return int(getattr(model, "min_input_size"))


__all__ = [
    "MODELS", "get_model", "min_input_size",
    "LeNet", "lenet",
    "ResNet", "BasicBlock", "Bottleneck", "make_stage", "cifar_resnet",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "VGG", "make_layers", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "ArticleBottleneck", "KerasArticleResNet50", "GalaxyArticleResNet50",
    "resnet50_keras_article", "resnet50_galaxy_article",
]
