"""The NumPy from-scratch layers of notebook 1 agree with torch.nn.functional and with the article."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse import theory


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def test_article_worked_example_gives_4():
    image = np.zeros((6, 6))
    image[:2, :2] = [[2, 2], [1, 0]]
    out = theory.conv2d_single(image, theory.VERTICAL_LINE_FILTER, padding=1)
    assert out.shape == (6, 6)
    assert out[0, 0] == 4


def test_output_size_formula_matches_real_convolutions():
    for n in (5, 7, 28, 32):
        for kernel in (1, 2, 3, 5):
            for padding in (0, 1, 2):
                for stride in (1, 2, 3):
                    out = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, kernel, kernel),
                                   stride=stride, padding=padding)
                    assert theory.output_size(n, kernel, padding, stride) == out.shape[-1], (n, kernel, padding, stride)
    with pytest.raises(ValueError):
        theory.output_size(2, 5)


def test_same_padding_keeps_the_size_like_pytorch_same(rng):
    for kernel in (1, 3, 5, 7):
        p = theory.same_padding(kernel)
        assert theory.output_size(28, kernel, p, 1) == 28
        x, w = t(rng.normal(size=(1, 1, 9, 9))), t(rng.normal(size=(1, 1, kernel, kernel)))
        torch.testing.assert_close(F.conv2d(x, w, padding=p), F.conv2d(x, w, padding="same"))
    with pytest.raises(ValueError, match="odd"):
        theory.same_padding(4)


def test_pad_adds_zeros_around_the_last_two_axes(rng):
    image = rng.normal(size=(2, 4, 5))
    padded = theory.pad(image, 2)
    assert padded.shape == (2, 8, 9)
    np.testing.assert_array_equal(padded, F.pad(t(image), (2, 2, 2, 2)).numpy())


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 0), (3, 1, 1), (5, 2, 2), (2, 1, 0), (3, 3, 1)])
def test_conv2d_single_matches_torch(rng, kernel, stride, padding):
    image, filt = rng.normal(size=(11, 13)), rng.normal(size=(kernel, kernel))
    ours = theory.conv2d_single(image, filt, stride=stride, padding=padding)
    theirs = F.conv2d(t(image)[None, None], t(filt)[None, None], stride=stride, padding=padding)[0, 0]
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)


def test_conv2d_single_follows_the_centred_formula(rng):
    """I'[x, y] = sum_{i,j=-N..N} I[s*x+i, s*y+j] F[i+N, j+N] with same padding, written out literally."""
    image, filt, s, N = rng.normal(size=(9, 9)), rng.normal(size=(3, 3)), 2, 1
    out = theory.conv2d_single(image, filt, stride=s, padding=N)
    I = lambda r, c: image[r, c] if 0 <= r < 9 and 0 <= c < 9 else 0.0  # zero padding
    for x in range(out.shape[0]):
        for y in range(out.shape[1]):
            expected = sum(I(s * x + i, s * y + j) * filt[i + N, j + N]
                           for i in range(-N, N + 1) for j in range(-N, N + 1))
            assert out[x, y] == pytest.approx(expected)


@pytest.mark.parametrize("stride, padding, with_bias", [(1, 0, True), (2, 1, True), (1, 1, False)])
def test_multichannel_conv2d_matches_torch(rng, stride, padding, with_bias):
    x, filters = rng.normal(size=(3, 10, 9)), rng.normal(size=(4, 3, 3, 3))
    bias = rng.normal(size=4) if with_bias else None
    ours = theory.conv2d(x, filters, bias, stride=stride, padding=padding)
    theirs = F.conv2d(t(x)[None], t(filters), None if bias is None else t(bias), stride=stride, padding=padding)[0]
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="depth"):
        theory.conv2d(x[:2], filters)


@pytest.mark.parametrize("kernel, stride", [(2, None), (4, None), (3, 1), (3, 2)])
def test_pooling_matches_torch(rng, kernel, stride):
    image = rng.normal(size=(3, 12, 10))
    torch_stride = kernel if stride is None else stride
    for ours_fn, torch_fn in [(theory.max_pool2d, F.max_pool2d), (theory.avg_pool2d, F.avg_pool2d)]:
        ours = ours_fn(image, kernel, stride)
        theirs = torch_fn(t(image)[None], kernel, torch_stride)[0]
        assert ours.shape[0] == 3  # pooling leaves the number of channels unchanged
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours_fn(image[0], kernel, stride), ours[0])


def test_vertical_line_filter_finds_a_vertical_line():
    image = np.zeros((7, 7))
    image[:, 3] = 1.0
    response = theory.conv2d_single(image, theory.VERTICAL_LINE_FILTER, padding=1)
    assert set(np.argmax(response, axis=1)) == {3}
    horizontal = theory.conv2d_single(image, theory.HORIZONTAL_LINE_FILTER, padding=1)
    assert horizontal[1:-1, 3].max() < response[1:-1, 3].min()


@pytest.mark.parametrize("activation, torch_fn", [(None, lambda z: z), ("relu", torch.relu),
                                                  ("sigmoid", torch.sigmoid), (np.tanh, torch.tanh)])
def test_dense_matches_torch_and_the_bias_trick_equals_wx_plus_b(rng, activation, torch_fn):
    x, W, b = rng.normal(size=5), rng.normal(size=(3, 5)), rng.normal(size=3)
    ours = theory.dense(x, W, b, activation)
    np.testing.assert_allclose(ours, torch_fn(F.linear(t(x), t(W), t(b))).numpy(), rtol=1e-12)
    np.testing.assert_allclose(theory.dense_with_bias_trick(x, W, b, activation), ours, rtol=1e-12)
    np.testing.assert_allclose(theory.dense_with_bias_trick(x, W, b), W @ x + b, rtol=1e-12)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation"):
        theory.dense(np.ones(2), np.ones((1, 2)), np.ones(1), "softplus")


def test_parameter_counts_match_pytorch_layers():
    assert theory.conv_param_count(3, 16, 5) == sum(p.numel() for p in nn.Conv2d(3, 16, 5).parameters())
    assert theory.conv_param_count(3, 16, 5, bias=False) == nn.Conv2d(3, 16, 5, bias=False).weight.numel()
    assert theory.dense_param_count(400, 120) == sum(p.numel() for p in nn.Linear(400, 120).parameters())


def test_weight_sharing_and_local_receptive_fields_cut_the_parameters():
    counts = theory.dense_vs_conv_params(32, 32, 3, 6, kernel=5, padding=0)
    assert counts["conv"] == 456  # LeNet's first layer
    assert counts["locally_connected"] == 28 * 28 * 456
    assert counts["dense"] == 3 * 32 * 32 * 6 * 28 * 28 + 6 * 28 * 28
    assert counts["dense"] > counts["locally_connected"] > counts["conv"]
    same = theory.dense_vs_conv_params(28, 28, 1, 8, kernel=3)
    assert same["dense"] == 28 * 28 * 8 * 28 * 28 + 8 * 28 * 28 and same["conv"] == 80
