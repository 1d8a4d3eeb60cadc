"""The course's models, and a registry that builds any of them by name.

``get_model("resnet18", num_classes=10, in_channels=1, small_input=True)`` is what the notebooks
and the command line use; the classes and builders are importable directly too. Each model file
(``lenet.py``, ``resnet.py``, ``vgg.py``, ``article.py``, ``vit.py``) needs torch alone and lists its public
builders in ``BUILDERS``; :data:`MODELS` is filled from those lists, so a new builder is registered
by adding it there. Every model has ``in_channels``, ``min_input_size`` and ``num_features`` (the
width entering its final classifier layer).
"""
from __future__ import annotations

import inspect
from typing import Callable, Dict, Set, Union

import torch
from torch import nn

from cnncourse.models.article import BUILDERS as _ARTICLE_BUILDERS
from cnncourse.models.article import (ArticleBottleneck, GalaxyArticleResNet50, KerasArticleResNet50,
                                      resnet50_galaxy_article, resnet50_keras_article)
from cnncourse.models.lenet import BUILDERS as _LENET_BUILDERS
from cnncourse.models.lenet import LeNet, lenet, lenet_nobn
from cnncourse.models.resnet import BUILDERS as _RESNET_BUILDERS
from cnncourse.models.resnet import (BasicBlock, Bottleneck, NoShortcutBlock, ResNet, cifar_resnet, make_stage, plain20,
                                     plain56, resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56,
                                     resnet101, resnet110, resnet152)
from cnncourse.models.vgg import BUILDERS as _VGG_BUILDERS
from cnncourse.models.vgg import (VGG, make_layers, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19,
                                  vgg19_bn)
from cnncourse.models.vit import BUILDERS as _VIT_BUILDERS
from cnncourse.models.vit import (MultiHeadSelfAttention, PatchEmbedding, TransformerBlock, VisionTransformer,
                                  vit_tiny)

#: Model name -> builder ``(num_classes, in_channels, **options) -> nn.Module``, in the order listed.
MODELS: Dict[str, Callable[..., nn.Module]] = {
    builder.__name__: builder
    for builder in (*_LENET_BUILDERS, *_RESNET_BUILDERS, *_VGG_BUILDERS, *_ARTICLE_BUILDERS, *_VIT_BUILDERS)
}


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_BY_SQUASHED = {_squash(name): name for name in MODELS}
assert len(_BY_SQUASHED) == len(MODELS), "two registered model names differ only in case, '-' or '_'"


def canonical_model_name(name: str) -> str:
    """The registered name that ``name`` means: case, spaces, "-" and "_" do not matter, so
    "ResNet-50", "resnet_50" and "RESNET50" all give "resnet50". Unknown names raise a ValueError
    that lists the known ones."""
    key = _BY_SQUASHED.get(_squash(str(name)))
    if key is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return key


def builder_options(name: str) -> Set[str]:
    """The keyword arguments that model's builder accepts besides ``num_classes`` and ``in_channels``,
    e.g. ``{"small_input", "zero_init_residual"}`` for "resnet18", ``{"image_size"}`` for "lenet"."""
    parameters = inspect.signature(MODELS[canonical_model_name(name)]).parameters
    return set(parameters) - {"num_classes", "in_channels"}


def get_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build the model called ``name`` (see :func:`canonical_model_name`) with its default initialisation.

    Extra keyword arguments go to the builder (:func:`builder_options` lists them), e.g.
    ``small_input=True`` or ``zero_init_residual=True`` for the ResNets, ``image_size=28`` for LeNet,
    ``dropout`` for VGG, ``image_size=28, patch_size=7`` for the ViT.
    """
    key = canonical_model_name(name)
    unknown = set(kwargs) - builder_options(key)
    if unknown:
        options = ", ".join(sorted(builder_options(key))) or "none"
        raise TypeError(f"{key} does not take {', '.join(sorted(unknown))}; its options: {options}")
    return MODELS[key](num_classes=num_classes, in_channels=in_channels, **kwargs)


def min_input_size(name_or_model: Union[nn.Module, str], **kwargs) -> int:
    """Smallest height/width (px) the model accepts; for LeNet, the one size it accepts.

    ``name_or_model`` is a built model or a name for :func:`get_model` (built on the meta device, so
    free). ResNets with the 224-px stem and VGG need 32 px (their total stride), small-input ResNets 8,
    the CIFAR ResNets 4, the Keras-article ResNet-50 its 28 px, the ViT its one ``image_size``.
    """
    model = name_or_model
    if isinstance(model, str):
        with torch.device("meta"):
            model = get_model(model, **kwargs)
    return int(getattr(model, "min_input_size"))


__all__ = [
    "MODELS", "get_model", "min_input_size", "canonical_model_name", "builder_options",
    "LeNet", "lenet", "lenet_nobn",
    "ResNet", "BasicBlock", "Bottleneck", "NoShortcutBlock", "make_stage", "cifar_resnet", "plain20", "plain56",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "VGG", "make_layers", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "ArticleBottleneck", "KerasArticleResNet50", "GalaxyArticleResNet50",
    "resnet50_keras_article", "resnet50_galaxy_article",
    "PatchEmbedding", "MultiHeadSelfAttention", "TransformerBlock", "VisionTransformer", "vit_tiny",
]
