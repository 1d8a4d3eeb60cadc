"""cnncourse.maps: the images a maps figure shows and the figure itself."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cnncourse import maps  # noqa: E402
from cnncourse.speedrun import normalise  # noqa: E402
from cnncourse.train import Predictions  # noqa: E402


def _shown(labels, preds, logits=None, size=8):
    n = len(labels)
    images = torch.randn(n, 3, size, size)
    logits = logits if logits is not None else torch.nn.functional.one_hot(torch.tensor(preds), 3).float()
    return Predictions(labels=torch.tensor(labels), preds=torch.tensor(preds), logits=logits, images=images)


def test_first_right_per_class_and_its_error_for_a_class_never_right():
    shown = _shown(labels=[1, 0, 0, 2, 1, 2], preds=[0, 0, 0, 2, 1, 1])
    assert maps.first_right_per_class(shown, 3).tolist() == [1, 4, 3]
    with pytest.raises(ValueError, match="class 2"):
        maps.first_right_per_class(_shown(labels=[0, 1, 2], preds=[0, 1, 1]), 3)


def test_surest_mistakes_are_the_wrong_answers_by_falling_confidence():
    logits = torch.tensor([[3.0, 0, 0], [0, 1.0, 0], [0, 0, 5.0], [0, 2.0, 0]])
    shown = _shown(labels=[1, 0, 0, 1], preds=[0, 1, 2, 1], logits=logits)
    assert maps.surest_mistakes(shown, 5).tolist() == [2, 0, 1]       # image 3 is right
    assert maps.surest_mistakes(shown, 1).tolist() == [2]


def test_to_pictures_undoes_the_normalisation():
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    back = maps.to_pictures(normalise(pixels, mean, std, "cpu", channels_last=False), mean, std)
    assert back.shape == (2, 4, 4, 3)
    assert torch.allclose(back, pixels.permute(0, 2, 3, 1).float() / 255, atol=1e-6)


def test_show_heat_maps_draws_one_row_per_map_and_colours_the_titles():
    shown = _shown(labels=[0, 1], preds=[0, 2])
    rows = {"saliency, predicted class": torch.rand(2, 8, 8), "Grad-CAM, predicted class": torch.rand(2, 8, 8)}
    assert maps.show_heat_maps(shown, torch.tensor([0, 1]), rows, (0.5,) * 3, (0.25,) * 3, ["a", "b", "c"], "t") is None
    fig = plt.gcf()
    axes = fig.axes
    assert len(axes) == 6 and fig._suptitle.get_text() == "t"
    assert axes[0].get_title() == "a" and axes[0].title.get_color() == "green"
    assert axes[1].get_title() == "c\n(true: b)" and axes[1].title.get_color() == "red"
    assert len(axes[4].images) == 2 and len(axes[2].images) == 1       # Grad-CAM over the grey image; saliency alone
    plt.close(fig)
