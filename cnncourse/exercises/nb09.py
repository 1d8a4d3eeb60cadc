"""Exercises of notebook 9 (speedrun: how fast can a CNN train): the patch-whitening matrix, translations
with a reflected border, derandomised flips, and six-view test-time augmentation."""
from __future__ import annotations

import math
from typing import Any, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.exercises.check import Exercise, Mismatch, Tester, checker

SHIFT_IMAGES = '''\
import torch
import torch.nn.functional as F


def shift_images(images, shifts, pad):
    """Translate each image of images (N, C, H, W) by its own shift: shifts is an int tensor (N, 2) of
    (dy, dx), each between -pad and pad. Output pixel (r, c) of image i is input pixel (r + dy, c + dx),
    and where that falls outside the image the reflection of the image across its border fills in
    (F.pad(..., mode="reflect"), which does not repeat the edge pixel). Returns (N, C, H, W)."""
    raise NotImplementedError
'''


def _shifted(images: torch.Tensor, shifts: torch.Tensor, pad: int, mode: str = "reflect",
             sign: int = 1, swap: bool = False) -> torch.Tensor:
    """The reference (and, with mode, sign or swap changed, the mistakes): one crop per image."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (pad,) * 4, mode=mode)
    out = []
    for image, (dy, dx) in zip(padded, shifts.tolist()):
        dy, dx = (dx, dy) if swap else (dy, dx)
        top, left = pad + sign * dy, pad + sign * dx
        out.append(image[:, top:top + h, left:left + w])
    return torch.stack(out)


@checker("shift_images")
def check_shift_images(t: Tester, answer: Any) -> None:
    """Compared with a crop of the reflection-padded image at (pad + dy, pad + dx), image by image."""
    generator = torch.Generator().manual_seed(94)
    for n, shape, pad in [(4, (1, 5, 6), 1), (6, (3, 6, 6), 2), (5, (2, 7, 5), 2)]:
        t.case(f"shift_images(<images ({n}, {', '.join(map(str, shape))})>, <shifts ({n}, 2) in -{pad}..{pad}>, {pad})")
        images = torch.randn((n, *shape), generator=generator)
        shifts = torch.randint(-pad, pad + 1, (n, 2), generator=generator)
        shifts[0] = torch.tensor([pad, -pad])            # one image shifted as far as allowed, a corner
        shifts[1] = torch.tensor([0, pad])               # one shifted along the width only
        original = images.clone()
        got = t.call(answer, images, shifts.clone(), pad)
        t.close(got, _shifted(original, shifts, pad), "output pixel (r, c) is input pixel (r + dy, c + dx): the crop "
                "of the padded image that starts at row pad + dy, column pad + dx", alternatives=[
                    (lambda: _shifted(original, shifts, pad, sign=-1), "the sign of the shift: output (r, c) is input "
                     "(r + dy, c + dx), so the crop starts at pad + dy, not pad - dy"),
                    (lambda: _shifted(original, shifts, pad, swap=True), "shifts[i] is (dy, dx): the first number moves "
                     "the rows (height), the second the columns (width)"),
                    (lambda: _shifted(original, shifts, pad, mode="constant"), "fill the border by reflection "
                     "(mode=\"reflect\"), not with zeros"),
                    (lambda: _shifted(original, shifts, pad, mode="replicate"), "reflect (mode=\"reflect\"): the "
                     "reflection does not repeat the edge pixel, as replicate does"),
                    (lambda: _shifted(original, shifts[:1].expand(n, 2), pad), "each image has its own shift: "
                     "shifts[i] for image i, not the first one for all")],
                shape_hint=f"the same shape as images: ({n}, {', '.join(map(str, shape))})")
        if not torch.equal(images, original):
            t.fail("the input images were changed", "don't modify images in place: F.pad and the crops make new "
                   "tensors")


ALTERNATING_FLIP = '''\
import torch


def alternating_flip(images, first_mask, epoch):
    """Derandomised flips for a batch images (N, C, H, W): first_mask, a bool tensor (N,), says
    which images are mirrored (flipped left-right, along the width axis) in epoch 0; in every even
    epoch mirror those, in every odd epoch exactly the others. Returns new images (N, C, H, W);
    `images` itself stays unchanged."""
    raise NotImplementedError
'''


def _flip(images: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(dim), images)


@checker("alternating_flip")
def check_alternating_flip(t: Tester, answer: Any) -> None:
    """Compared with torch.where(mask, images.flip(-1), images), the mask inverted in odd epochs."""
    generator = torch.Generator().manual_seed(90)
    for epoch, shape in [(0, (6, 3, 4, 5)), (1, (6, 3, 4, 5)), (2, (8, 2, 3, 3)), (7, (5, 3, 6, 4))]:
        t.case(f"alternating_flip(<images {shape}>, <first_mask ({shape[0]},)>, {epoch})")
        images = torch.randn(shape, generator=generator)
        first_mask = torch.arange(shape[0]).remainder(2).bool()[torch.randperm(shape[0], generator=generator)]
        mask = first_mask if epoch % 2 == 0 else ~first_mask
        original = images.clone()
        got = t.call(answer, images, first_mask.clone(), epoch)
        t.close(got, _flip(original, mask), "mirror (images.flip(-1)) the images whose mask is True: first_mask "
                "in even epochs, ~first_mask in odd ones", alternatives=[
                    (_flip(original, mask, -2), "mirror left-right: flip the width axis (the last, -1), not the "
                     "height"),
                    (_flip(original, ~mask), ("in odd epochs mirror the OTHER images, ~first_mask, so that every "
                     "image is seen both ways in every two epochs") if epoch % 2 else ("epoch 0 and every even "
                     "epoch mirror the images whose first_mask is True, odd epochs the others (epoch % 2 decides)"))],
                shape_hint="return the whole batch (N, C, H, W), mirrored images in place of the originals")
        if not torch.equal(images, original):
            t.fail("the input images were changed", "don't modify images in place: build a new tensor "
                   "(images.flip(-1) and torch.where make copies)")


WHITENING_MATRIX = '''\
import torch


def whitening_matrix(patches, eps=5e-4):
    """The whitening matrix W (D, D) of patches (M, D), one flattened patch a row: its ROWS are the
    eigenvectors of the patches' covariance torch.cov(patches.T) (centred, M - 1 in the
    denominator), each divided by sqrt(its eigenvalue + eps), so that W @ cov @ W.T is the diagonal
    matrix of eigenvalue / (eigenvalue + eps)."""
    raise NotImplementedError
'''


def _eigen_rows(w: np.ndarray, c: np.ndarray) -> float:
    """0 when the rows of w, normalised, are an orthonormal basis of eigenvectors of c (relative)."""
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    q = u @ c @ u.T
    values = np.linalg.eigvalsh(c)
    return max(np.abs(u @ u.T - np.eye(len(c))).max(), np.abs(q - np.diag(np.diag(q))).max() / values.max(),
               np.abs(np.sort(np.diag(q)) - values).max() / values.max())


@checker("whitening_matrix")
def check_whitening_matrix(t: Tester, answer: Any) -> None:
    """The rows of W against the eigen-decomposition of the covariance in float64, up to sign and order."""
    generator = torch.Generator().manual_seed(91)
    for m, d, rank, eps in [(300, 12, 12, None), (200, 12, 9, 5e-4), (150, 4, 4, 1e-2)]:
        t.case(f"whitening_matrix(<patches ({m}, {d}), of rank {rank}>{'' if eps is None else f', eps={eps}'})")
        basis = torch.linalg.qr(torch.randn(d, d, generator=generator))[0][:, :rank]
        spread = torch.randn(m, rank, generator=generator) * torch.logspace(0, -1.5, rank)
        patches = (spread @ basis.T + torch.rand(d, generator=generator)).float()
        x = patches.double().numpy()
        c, keywords, eps = np.cov(x.T), ({} if eps is None else {"eps": eps}), eps or 5e-4
        values = np.linalg.eigvalsh(c)
        got = t.call(answer, patches.clone(), **keywords)
        w = t.array(got, "return W as a torch tensor (D, D)")
        if w.shape != (d, d):
            t.fail(f"got shape {w.shape}, expected {(d, d)}", "W is D x D, one eigenvector a row")
        add_eps = ("add eps to every eigenvalue before the square root: some are 0 (or slightly negative, from "
                   "rounding), and 1 / sqrt(0) is infinite")
        if not np.isfinite(w).all():
            t.fail("got values that are not finite", add_eps)
        norms = np.linalg.norm(w, axis=1)
        if not _eigen_rows(w, c) < 1e-3:
            problem = "the rows of W, normalised, are not the eigenvectors of the covariance"
            if _eigen_rows(w.T, c) < 1e-3:
                t.fail(problem, "torch.linalg.eigh returns the eigenvectors as COLUMNS: transpose, so that each "
                       "is a row of W")
            if _eigen_rows(w * np.sqrt(values + eps), c) < 1e-3:
                t.fail(problem, "vectors.T / sqrt(values + eps) divides the COLUMNS: divide each eigenvector "
                       "first, then transpose: (vectors / torch.sqrt(values + eps)).T")
            if _eigen_rows(w, x.T @ x / m) < 1e-3:
                t.fail(problem, "use the covariance: subtract each column's mean first (torch.cov(patches.T)), "
                       "not patches.T @ patches / M")
            t.fail(problem, "each row of W is an eigenvector of torch.cov(patches.T), divided by "
                   "sqrt(eigenvalue + eps)")
        u = w / norms[:, None]
        order = np.argsort(np.diag(u @ c @ u.T))
        try:   # 1 / |row|² is eigenvalue + eps; rows sorted by their eigenvalue
            t.close(1 / norms[order] ** 2, values + eps, add_eps if norms.max() > 10 / math.sqrt(eps) else
                    "divide each eigenvector by sqrt(eigenvalue + eps)",
                    alternatives=[(values, "add eps to every eigenvalue: divide by sqrt(eigenvalue + eps)"),
                                  ((values + eps) ** 2, "divide by the square ROOT of eigenvalue + eps"),
                                  (values * (m - 1) / m + eps, "the covariance divides by M - 1, as torch.cov "
                                   "does, not by M")], atol=1e-5 * values.max(), rtol=1e-5)
        except Mismatch as mismatch:
            t.fail("1 / |row|², rows sorted by eigenvalue: " + mismatch.problem, mismatch.hint)


SIX_VIEW_LOGITS = '''\
import torch
import torch.nn.functional as F


def six_view_logits(model, images):
    """Six-view test-time augmentation, in eval mode under torch.no_grad(), for images (N, C, H, W):
    the mean of the logits of the images and of their mirror images (flipped left-right) counts one
    half; the same flip mean of the images shifted one pixel up and left (output pixel (r, c) is input
    pixel (r + 1, c + 1)) counts a quarter, and of those shifted one pixel down and right (input pixel
    (r - 1, c - 1)) a quarter. Pixels from outside come from F.pad(..., mode="reflect"). Returns (N, K)."""
    raise NotImplementedError
'''


def _views(model: nn.Module, images: torch.Tensor, weights=(0.5, 0.25, 0.25), pad_mode: str = "reflect",
           flip_shifted: bool = True) -> torch.Tensor:
    """The six-view mean (and, with its options changed, the mistakes)."""
    h, w = images.shape[-2:]

    def flip_mean(x, flip=True):
        return (model(x) + model(x.flip(-1))) / 2 if flip else model(x)

    padded = F.pad(images, (1, 1, 1, 1), mode=pad_mode)
    up_left, down_right = padded[..., 2:, 2:], padded[..., :h, :w]
    return (weights[0] * flip_mean(images) + weights[1] * flip_mean(up_left, flip_shifted)
            + weights[2] * flip_mean(down_right, flip_shifted))


@checker("six_view_logits")
def check_six_view_logits(t: Tester, answer: Any) -> None:
    """Compared with cnncourse.cifar_speedrun.tta_views_logits(model, images, 6) in eval mode, computed apart."""
    generator = torch.Generator().manual_seed(92)
    for n, size, k in [(4, 6, 5), (3, 5, 3), (2, 7, 4)]:
        t.case(f"six_view_logits(<a conv net with BatchNorm and dropout>, <images ({n}, 3, {size}, {size})>)")
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                              nn.Flatten(), nn.Linear(4 * size * size, k))
        model[1].running_mean.copy_(torch.randn(4, generator=generator))
        model[1].running_var.copy_(torch.rand(4, generator=generator) + 0.5)
        images = torch.randn(n, 3, size, size, generator=generator)
        model.eval()
        with torch.no_grad():
            expected = _views(model, images)
            alternatives = [
                (_views(model, images, weights=(1 / 3, 1 / 3, 1 / 3)), "the views do not count alike: the unshifted "
                 "pair counts one half, each shifted pair one quarter"),
                (_views(model, images, pad_mode="constant"), "fill the shifted-in border by reflection "
                 "(mode=\"reflect\"), not with zeros"),
                (_views(model, images, pad_mode="replicate"), "reflect (mode=\"reflect\"): the reflection does not "
                 "repeat the edge pixel, as replicate does"),
                (_views(model, images, flip_shifted=False), "mirror the shifted images too: each shifted view is the "
                 "flip mean of its two images, six views in all"),
                ((model(images) + model(images.flip(-1))) / 2, "add the two shifted views, the images moved one "
                 "pixel up-left and one pixel down-right (a quarter each), to the flip mean (one half)")]
        modes: List[bool] = []
        model.train().register_forward_pre_hook(lambda module, args: modes.append(module.training))
        got = t.call(answer, model, images.clone())
        if any(modes):
            t.fail("the model ran in training mode", "call model.eval() first: in training mode BatchNorm uses "
                   "the batch's statistics and dropout zeroes activations at random")
        t.close(got, expected, "one half the flip mean of the images, a quarter each the flip means of the images "
                "shifted one pixel up-left and one pixel down-right", alternatives=alternatives,
                shape_hint=f"one row of K logits per image: (N, K), here ({n}, {k})")
        if isinstance(got, torch.Tensor) and got.requires_grad:
            t.fail("the logits require grad", "compute them under torch.no_grad(): no graph is needed at test time")


EXERCISES = [
    Exercise("whitening_matrix", "Whitening the patches", "The whitening layer", check_whitening_matrix,
             WHITENING_MATRIX),
    Exercise("shift_images", "Translations with a reflected border", "Random translations", check_shift_images,
             SHIFT_IMAGES),
    Exercise("alternating_flip", "Derandomised flips", "Derandomised flips", check_alternating_flip, ALTERNATING_FLIP),
    Exercise("six_view_logits", "Six-view test-time augmentation", "Test-time augmentation",
             check_six_view_logits, SIX_VIEW_LOGITS),
]
