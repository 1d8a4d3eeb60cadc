"""Exercises of notebook 9 (speedrun: how fast can a CNN train): batches taken straight from a tensor,
the patch-whitening matrix, derandomised flips, and test-time augmentation."""
from __future__ import annotations

import math
from typing import Any, List

import numpy as np
import torch
from torch import nn

from cnncourse.exercises.check import Exercise, Mismatch, Tester, checker, fmt

TENSOR_BATCHES = '''\
import torch


def tensor_batches(images, labels, batch_size, generator):
    """One epoch of batches straight from tensors already in memory, without a DataLoader:
    images (N, ...) and labels (N,). Draw the order once, torch.randperm(N, generator=generator),
    cut it into consecutive chunks of batch_size indices, drop the last chunk if it is incomplete
    (every batch holds exactly batch_size images), and take each batch with one indexing
    operation: images[chunk], labels[chunk]. Returns a list of (x, y) pairs, one per batch."""
    raise NotImplementedError
'''


def _listed(values: torch.Tensor) -> str:
    """Up to 8 numbers of a 1-D tensor, as a list for a message."""
    numbers = [int(v) for v in values.tolist()]
    return fmt(numbers) if len(numbers) <= 8 else fmt(numbers[:6])[:-1] + f", ... ({len(numbers)} in all)]"


def _described(value: Any) -> str:
    """fmt, save for a tensor or a tuple or list of tensors (fmt would stack them): their shapes."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)) and any(isinstance(part, torch.Tensor) for part in value):
        return f"a {type(value).__name__} of {len(value)} items"
    return fmt(value)


def _rows(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The index in images of each row of x (its images are distinct), -1 where a row is none of them."""
    match = (x.reshape(len(x), 1, -1) == images.reshape(1, len(images), -1)).all(-1)
    return torch.where(match.any(1), match.int().argmax(1), torch.full((len(x),), -1))


@checker("tensor_batches")
def check_tensor_batches(t: Tester, answer: Any) -> None:
    """Every batch, x and y, exactly against randperm(N) from a generator seeded alike, cut into full chunks."""
    data = torch.Generator().manual_seed(93)
    pairs = "return a list of (x, y) pairs, one per batch: x = images[chunk], y = labels[chunk]"
    for n, size, shape in [(10, 3, (3, 2, 2)), (64, 16, (3, 4, 4)), (7, 7, (2, 3, 3)), (100, 32, (1, 4, 4))]:
        t.case(f"tensor_batches(<images ({n}, {', '.join(map(str, shape))})>, <labels ({n},)>, {size}, "
               f"<a torch.Generator seeded with {930 + n}>)")
        images = torch.randn((n, *shape), generator=data)
        labels = torch.randint(0, 10, (n,), generator=data)
        mine, theirs = torch.Generator().manual_seed(930 + n), torch.Generator().manual_seed(930 + n)
        untouched = theirs.get_state()
        order = torch.randperm(n, generator=mine)
        drawn = mine.get_state()
        chunks = order[:n // size * size].view(-1, size)
        got = t.call(answer, images.clone(), labels.clone(), size, theirs)
        if not isinstance(got, list):
            t.fail(f"got {_described(got)}, expected a list", pairs + (" (not a generator: build the list, or wrap it "
                   "in list(...))" if hasattr(got, "__next__") else ""))
        if len(got) != len(chunks):
            t.fail(f"got {len(got)} batches, expected {len(chunks)}",
                   f"drop the last incomplete batch: every batch holds exactly batch_size images, here "
                   f"{len(chunks)} of {size}" if n % size and len(got) == len(chunks) + 1 else
                   f"N // batch_size batches of batch_size images each, here {len(chunks)} of {size}")
        for i, batch in enumerate(got):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                    and all(isinstance(part, torch.Tensor) for part in batch)):
                t.fail(f"batch {i} is {_described(batch)}, expected an (x, y) pair of tensors", pairs)
            x, y = batch
            if tuple(x.shape) != (size, *shape) or tuple(y.shape) != (size,):
                t.fail(f"batch {i}: got x {tuple(x.shape)} and y {tuple(y.shape)}, expected x {(size, *shape)} "
                       f"and y {(size,)}", "x = images[chunk] and y = labels[chunk], chunk holding batch_size "
                       "indices of the permutation")
            if x.dtype != images.dtype or y.dtype != labels.dtype:
                t.fail(f"batch {i}: got x {x.dtype} and y {y.dtype}, expected x {images.dtype} and y {labels.dtype}",
                       "index, don't convert: images[chunk] and labels[chunk] keep their dtypes (cross_entropy "
                       "wants int64 labels)")
        wrong = [i for i, ((x, y), chunk) in enumerate(zip(got, chunks))
                 if not (torch.equal(x, images[chunk]) and torch.equal(y, labels[chunk]))]
        if not wrong:
            continue
        found = [_rows(x, images) for x, _ in got]
        for i, ((x, y), rows) in enumerate(zip(got, found)):
            if (rows < 0).any():
                t.fail(f"batch {i}: some of its images are not images of the input",
                       "take the images as they are: x = images[chunk], no copy changed along the way")
            if not torch.equal(y, labels[rows]):
                t.fail(f"batch {i}: got labels {_listed(y)}, but its images' labels are {_listed(labels[rows])}",
                       "index images and labels with the same permutation (the same chunk): with two different "
                       "ones, a label no longer belongs to its image")
        first = wrong[0]
        problem = f"batch {first} holds the images {_listed(found[first])}, expected {_listed(chunks[first])}"
        if torch.equal(torch.cat(found), torch.arange(len(chunks) * size)):
            t.fail(problem, "shuffle: the order is torch.randperm(N, generator=generator), not the images' "
                   "original order")
        if torch.equal(theirs.get_state(), untouched):
            t.fail(problem, "draw the permutation with the generator you are given: torch.randperm(N, "
                   "generator=generator); without it the order is not reproducible")
        if not torch.equal(theirs.get_state(), drawn):
            t.fail(problem, "draw from the generator exactly once: order = torch.randperm(N, generator=generator)")
        t.fail(problem, "cut the order into consecutive chunks: order[0:batch_size], order[batch_size:2 * "
               "batch_size], ...")


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


TTA_LOGITS = '''\
import torch


def tta_logits(model, images):
    """Test-time augmentation: the model's logits for images (N, C, H, W) averaged with its logits
    for their mirror images (flipped left-right, along the width axis), computed in eval mode
    under torch.no_grad(). Returns (N, K)."""
    raise NotImplementedError
'''


@checker("tta_logits")
def check_tta_logits(t: Tester, answer: Any) -> None:
    """Compared with (model(x) + model(x.flip(-1))) / 2 in eval mode, on a small conv net with BN and dropout."""
    generator = torch.Generator().manual_seed(92)
    for n, size, k in [(4, 6, 5), (3, 5, 3), (2, 4, 7)]:
        t.case(f"tta_logits(<a conv net with BatchNorm and dropout>, <images ({n}, 3, {size}, {size})>)")
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                              nn.Flatten(), nn.Linear(4 * size * size, k))
        model[1].running_mean.copy_(torch.randn(4, generator=generator))
        model[1].running_var.copy_(torch.rand(4, generator=generator) + 0.5)
        images = torch.randn(n, 3, size, size, generator=generator)
        with torch.no_grad():
            logits, mirrored, upside_down = (model.eval()(x) for x in (images, images.flip(-1), images.flip(-2)))
        modes: List[bool] = []
        model.train().register_forward_pre_hook(lambda module, args: modes.append(module.training))
        got = t.call(answer, model, images.clone())
        if any(modes):
            t.fail("the model ran in training mode", "call model.eval() first: in training mode BatchNorm uses "
                   "the batch's statistics and dropout zeroes activations at random")
        t.close(got, (logits + mirrored) / 2, "(model(images) + model(images.flip(-1))) / 2", alternatives=[
            ((logits + upside_down) / 2, "mirror left-right: flip the width axis (the last, -1), not the height"),
            (logits + mirrored, "average the two: divide their sum by 2"),
            ((logits.softmax(1) + mirrored.softmax(1)) / 2, "average the logits, not the softmax probabilities"),
            (mirrored, "average the logits of the images AND of their mirror images, not only the mirrored ones"),
            (logits, "average in the logits of the mirror images, images.flip(-1)")],
            shape_hint=f"one row of K logits per image: (N, K), here ({n}, {k})")
        if isinstance(got, torch.Tensor) and got.requires_grad:
            t.fail("the logits require grad", "compute them under torch.no_grad(): no graph is needed at test time")


EXERCISES = [
    Exercise("tensor_batches", "Batches from a tensor", "Data on the device, not through a DataLoader",
             check_tensor_batches, TENSOR_BATCHES),
    Exercise("whitening_matrix", "Whitening the patches", "The whitening layer", check_whitening_matrix,
             WHITENING_MATRIX),
    Exercise("alternating_flip", "Derandomised flips", "Derandomised flips", check_alternating_flip, ALTERNATING_FLIP),
    Exercise("tta_logits", "Test-time augmentation", "Test-time augmentation", check_tta_logits, TTA_LOGITS),
]
