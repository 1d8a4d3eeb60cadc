"""cnncourse.plot: every figure is built headless from a tiny model and checked for its content."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from torch import nn

from cnncourse.plot import (confusion_matrix, feature_maps, plot_confusion_matrix, plot_feature_maps,
                            plot_filters, plot_learning_curves, plot_predictions, smooth_curve)
from cnncourse.train import History, Predictions

CLASSES = ["cat", "dog", "bird"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(6 * 4 * 4, 3))


@pytest.fixture
def history():
    return History([
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5 + 0.1 * e, "test_loss": 1.2 / e,
         "test_acc": 0.4 + 0.1 * e, "lr": 0.01} for e in range(1, 5)])


def test_learning_curves_draw_train_and_test_per_metric(history, tmp_path):
    figure = plot_learning_curves(history)
    assert isinstance(figure, Figure)
    loss_ax, acc_ax = figure.axes
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["train", "test"]
    train_line, test_line = acc_ax.get_lines()
    assert list(test_line.get_xdata()) == [1, 2, 3, 4]
    assert np.allclose(test_line.get_ydata(), [50, 60, 70, 80])  # fractions drawn in percent
    figure.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert figure._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # shows itself in a notebook without pyplot


def test_learning_curve_as_in_the_lenet_article(history):
    figure = plot_learning_curves(history, metrics=["acc"], splits=["test"], smooth=True, start_at_zero=True,
                                  xlim=(0, 10), ylim={"acc": (0, 100)})
    (ax,) = figure.axes
    smooth, points = ax.get_lines()
    assert ax.get_xlim() == (0, 10) and ax.get_ylim() == (0, 100)
    assert points.get_xdata()[0] == 0 and points.get_ydata()[0] == 0  # starts at 0 % at epoch 0
    assert len(smooth.get_xdata()) == 200 and smooth.get_xdata()[-1] == pytest.approx(4)
    x, y = smooth_curve([0, 1, 2, 3, 4], [0, 50, 60, 70, 80])
    assert np.interp([1, 2, 3], x, y) == pytest.approx([50, 60, 70], abs=0.5)  # passes through the points


@pytest.mark.parametrize("options", [{}, {"metrics": ["acc"], "splits": ["test"], "smooth": True,
                                      "start_at_zero": True}], ids=["plain", "article-style"])
def test_learning_curves_of_one_epoch_have_whole_epoch_ticks(options):
    """A one-epoch run (quick mode) used to get matplotlib's zoom onto 0.945-1.055 with fractional ticks."""
    figure = plot_learning_curves([{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "test_loss": 2.1,
                                    "test_acc": 0.15}], **options)
    for ax in figure.axes:
        low, high = ax.get_xlim()
        shown = [tick for tick in ax.get_xticks() if low <= tick <= high]
        assert shown and all(float(tick).is_integer() for tick in shown), shown
        assert 1 in shown and high - low >= 1  # the epoch itself is labelled, with room around the point
        assert low <= 1 - 0.5 and high >= 1 + 0.5
    if options.get("start_at_zero"):
        assert 0 in shown  # the article's curve starts from 0 % at epoch 0


def test_learning_curves_accept_a_dict_of_columns_and_reject_unknown_metrics():
    figure = plot_learning_curves({"test_acc": [0.5, 0.6]}, metrics=["acc"])
    assert len(figure.axes[0].get_lines()) == 1
    with pytest.raises(ValueError, match="unknown metric"):
        plot_learning_curves({"test_acc": [0.5]}, metrics=["f1"])


def test_confusion_matrix_equals_an_independent_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    preds = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 3, 200))
    expected = np.zeros((3, 3), dtype=int)
    for true, pred in zip(labels, preds):
        expected[true, pred] += 1
    matrix = confusion_matrix(torch.as_tensor(labels), torch.as_tensor(preds), num_classes=3)
    assert np.array_equal(matrix, expected)

    figure = plot_confusion_matrix(matrix, class_names=CLASSES)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    cells = np.array([int(t.get_text()) for t in ax.texts]).reshape(3, 3)
    assert np.array_equal(cells, expected)
    assert f"{100 * np.trace(expected) / 200:.1f} %" in ax.get_title()

    normalised = plot_confusion_matrix(matrix, class_names=CLASSES, normalize=True).axes[0]
    rows = np.array([float(t.get_text()) for t in normalised.texts]).reshape(3, 3)
    assert np.allclose(rows.sum(axis=1), 1, atol=0.02)


def test_confusion_matrix_from_predictions_of_a_tiny_model(tiny_model):
    from cnncourse.train import predict
    x = torch.randn(30, 3, 8, 8)
    y = torch.randint(0, 3, (30,))
    predictions = predict(tiny_model, [(x[:16], y[:16]), (x[16:], y[16:])])
    figure = plot_confusion_matrix(predictions, class_names=CLASSES)
    counts = np.array([int(t.get_text()) for t in figure.axes[0].texts])
    assert counts.sum() == 30
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(np.zeros((3, 3)), class_names=["a", "b"])


def test_prediction_grid_puts_errors_first_in_red():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    preds = torch.tensor([0, 1, 2, 1, 1, 0, 0, 1, 2, 0])  # wrong at 3 and 5
    figure = plot_predictions(images, labels, preds, class_names=CLASSES, n=8, ncols=4)
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == 8
    titles = [ax.title for ax in shown]
    red, green = to_rgba("red"), to_rgba("green")
    assert [to_rgba(t.get_color()) for t in titles[:2]] == [red, red]
    assert all(to_rgba(t.get_color()) == green for t in titles[2:])
    assert titles[0].get_text() == "dog\n(true: cat)" and titles[1].get_text() == "cat\n(true: bird)"
    assert "2 of 10 wrong" in figure._suptitle.get_text()


def test_prediction_grid_undoes_the_normalisation():
    pixels = torch.full((1, 1, 4, 4), 0.8)
    normalised = (pixels - 0.5) / 0.25
    figure = plot_predictions(Predictions(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([1]), normalised),
                              mean=(0.5,), std=(0.25,))
    shown = [ax for ax in figure.axes if ax.images]
    assert np.allclose(shown[0].images[0].get_array(), 0.8)


def test_first_layer_filters_one_panel_per_filter(tiny_model):
    figure = plot_filters(tiny_model)
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 6
    kernel = panels[0].images[0].get_array()
    assert kernel.shape == (3, 3, 3) and kernel.min() >= 0 and kernel.max() <= 1  # RGB, scaled per filter
    assert "0: 6 filters (3, 3, 3)" in figure._suptitle.get_text()
    assert len([ax for ax in plot_filters(tiny_model.state_dict()["0.weight"], max_filters=4).axes
                if ax.images]) == 4


def test_feature_maps_of_a_named_layer_come_from_a_forward_hook(tiny_model):
    image = torch.randn(3, 8, 8)
    maps = feature_maps(tiny_model, image, "1")
    with torch.no_grad():
        expected = torch.relu(tiny_model[0](image.unsqueeze(0)))[0]
    assert torch.allclose(maps, expected)
    figure = plot_feature_maps(tiny_model, image, "1", max_maps=4)
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 1 + 4  # the input, then the maps
    assert np.allclose(panels[1].images[0].get_array(), expected[0].numpy())
    with pytest.raises(KeyError, match="no layer named 'conv9'"):
        feature_maps(tiny_model, image, "conv9")


def test_plots_never_touch_pyplot(history, tiny_model):
    """Figures are built without pyplot, so none stays registered (no leaks, no double display in notebooks)."""
    import matplotlib.pyplot as plt
    before = set(plt.get_fignums())
    plot_learning_curves(history)
    plot_filters(tiny_model)
    plot_confusion_matrix(np.eye(3, dtype=int))
    assert set(plt.get_fignums()) == before
