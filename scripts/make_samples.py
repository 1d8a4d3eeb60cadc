"""Make the small real samples that quick mode ships inside the package (run once, commit the output).

    python scripts/make_samples.py                   # writes cnncourse/data/samples/*.npz
    python scripts/make_samples.py --stats           # also recomputes the NORMALIZATION table

Input: the real data in ../shared/datasets (see its README); output is deterministic (no
randomness except the seeded stratified split). Each .npz holds, per split, either raw uint8
``{split}_images`` or encoded PNG/JPEG bytes (``{split}_blob`` cut at ``{split}_offsets``), the
labels, the source of every image, and a JSON ``meta`` string with provenance and licence.
Nothing needs pickle to load.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnncourse.data.imageops import stratified_split  # noqa: E402
from cnncourse.data.registry import dataset_info  # noqa: E402

FORMAT_VERSION = 1
MNIST_PER_CLASS = {"train": 50, "test": 20}
CIFAR_TEST_PER_CLASS = 20
CIFAR_EXTRA_TRAIN_PER_CLASS = 180  # from the JPEG copy, after the exact first 200: quick runs that learn
GALAXY_TEST_FRACTION = 0.25


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` images of every class, in file order."""
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def pack(blobs: list) -> "tuple[np.ndarray, np.ndarray]":
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def meta(name: str, provenance: str, **extra) -> np.ndarray:
    info = dataset_info(name)
    record = {"format": FORMAT_VERSION, "name": name, "title": info.title, "classes": list(info.classes),
              "provenance": provenance, "licence": info.licence, "citation": info.citation,
              "homepage": info.homepage, "made_by": "scripts/make_samples.py", **extra}
    return np.array(json.dumps(record, indent=1))


def make_mnist_like(name: str, folder: Path) -> dict:
    arrays = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        images = read_idx(folder / f"{stem}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{stem}-labels-idx1-ubyte.gz").astype(np.int64)
        chosen = first_per_class(labels, MNIST_PER_CLASS[split])
        arrays[f"{split}_images"] = images[chosen]
        arrays[f"{split}_labels"] = labels[chosen]
        arrays[f"{split}_sources"] = np.array([f"{stem}-images-idx3-ubyte.gz[{i}]" for i in chosen])
    arrays["meta"] = meta(
        name, f"the first {MNIST_PER_CLASS['train']} images of each class of the original training file "
              f"and the first {MNIST_PER_CLASS['test']} of each class of the original test file "
              "(exact pixels; files' MD5s equal torchvision's).")
    return arrays


def make_cifar10(shared: Path) -> dict:
    info = dataset_info("cifar10")
    with open(shared / "cifar10-first200" / "batches.meta", "rb") as f:
        label_names = pickle.load(f, encoding="latin1")["label_names"]
    assert tuple(label_names) == info.classes
    with open(shared / "cifar10-first200" / "trainLabels.csv") as f:
        rows = {r[0]: label_names.index(r[1]) for r in csv.reader(f)}
    train = np.stack([np.asarray(Image.open(shared / "cifar10-first200" / "train" / f"{i}.png").convert("RGB"))
                      for i in range(1, 201)])
    train_labels = np.array([rows[f"{i}.png"] for i in range(1, 201)], dtype=np.int64)

    # The train sample: the exact first 200 (lossless PNG bytes), then more training images of each
    # class from the JPEG copy (its original JPEG bytes). A class folder of the copy keeps the original
    # order, so the first images of class k there are the ones already among the first 200: skip them.
    train_blobs = [png_bytes(image) for image in train]
    train_labels, train_sources = list(train_labels), [f"data_batch_1[{i}]" for i in range(200)]
    blobs, labels, sources = [], [], []
    with tarfile.open(shared / "cifar10-jpeg.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for label, cls in enumerate(label_names):
            names = sorted(n for n in members if n.startswith(f"cifar10-jpeg/test/{cls}/"))[:CIFAR_TEST_PER_CLASS]
            for n in names:
                blobs.append(tar.extractfile(members[n]).read())
                labels.append(label)
                sources.append(n)
            seen = train_labels[:200].count(label)
            extra = sorted(n for n in members if n.startswith(f"cifar10-jpeg/train/{cls}/"))
            for n in extra[seen:seen + CIFAR_EXTRA_TRAIN_PER_CLASS]:
                train_blobs.append(tar.extractfile(members[n]).read())
                train_labels.append(label)
                train_sources.append(n)
    blob, offsets = pack(blobs)
    train_blob, train_offsets = pack(train_blobs)
    return {
        "train_blob": train_blob, "train_offsets": train_offsets,
        "train_labels": np.array(train_labels, dtype=np.int64), "train_sources": np.array(train_sources),
        "test_blob": blob, "test_offsets": offsets, "test_labels": np.array(labels, dtype=np.int64),
        "test_sources": np.array(sources),
        "meta": meta("cifar10",
                     "train: the first 200 images of CIFAR-10's data_batch_1 (exact pixels, stored as lossless "
                     f"PNG), then {CIFAR_EXTRA_TRAIN_PER_CLASS} more training images of each class from a JPEG "
                     "copy of CIFAR-10 (the next ones of each class in the original order), stored as the copy's "
                     f"original JPEG bytes; test: the first {CIFAR_TEST_PER_CLASS} images of each class of the "
                     "test set from the same JPEG copy (lossy: mean absolute pixel error about 4-7 of 255 "
                     "against the originals)."),
    }


def make_galaxy10(shared: Path) -> dict:
    folder = shared / "galaxy10"
    exact = np.load(folder / "exact10.npz")
    blobs, labels, sources, is_exact = [], [], [], []
    for i, (image, label) in enumerate(zip(exact["images"], exact["ans"])):
        blobs.append(png_bytes(image))
        labels.append(int(label))
        sources.append(f"exact10.npz[{i}]")
        is_exact.append(True)
    for path in sorted((folder / "jpeg").glob("*/*.jpg"), key=lambda p: (int(p.parent.name), p.name)):
        blobs.append(path.read_bytes())
        labels.append(int(path.parent.name))
        sources.append(f"jpeg/{path.parent.name}/{path.name}")
        is_exact.append(False)
    labels = np.array(labels, dtype=np.int64)
    train, test = stratified_split(labels, test_fraction=GALAXY_TEST_FRACTION, seed=0)
    arrays = {}
    for split, chosen in (("train", train), ("test", test)):
        blob, offsets = pack([blobs[i] for i in chosen])
        arrays.update({f"{split}_blob": blob, f"{split}_offsets": offsets, f"{split}_labels": labels[chosen],
                       f"{split}_sources": np.array([sources[i] for i in chosen]),
                       f"{split}_exact": np.array([is_exact[i] for i in chosen])})
    arrays["meta"] = meta(
        "galaxy10",
        "120 real Galaxy10 DECaLS images at the native 256x256: 10 with exact pixels (stored as lossless "
        "PNG) and 110 JPEG re-encodes of images from Galaxy10_DECals.h5 (quality 75, or 95 for the "
        "named_* files; stored as their original JPEG bytes, no further loss); split into train and test "
        f"by cnncourse.data.stratified_split(test_fraction={GALAXY_TEST_FRACTION}, seed=0). The "
        "galaxy10-sdss quick sample is derived from these images at load time (see cnncourse.data.samples).")
    return arrays


def normalization_stats(shared: Path) -> None:
    """Print per-channel mean/std of the training images (the NORMALIZATION table's source)."""
    for name, folder in (("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")):
        x = read_idx(shared / folder / "raw" / "train-images-idx3-ubyte.gz").astype(np.float64) / 255
        print(f"{name}: mean ({x.mean():.4f},) std ({x.std():.4f},)  [{len(x)} training images]")
    with tarfile.open(shared / "cifar10-jpeg.tar.gz") as tar:
        total, total_sq, count = np.zeros(3), np.zeros(3), 0
        for member in tar:
            if member.isfile() and member.name.startswith("cifar10-jpeg/train/"):
                x = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"), dtype=np.float64) / 255
                total += x.sum((0, 1))
                total_sq += (x ** 2).sum((0, 1))
                count += x.shape[0] * x.shape[1]
    mean = total / count
    std = np.sqrt(total_sq / count - mean ** 2)
    print(f"cifar10 (JPEG copy): mean {tuple(np.round(mean, 4))} std {tuple(np.round(std, 4))}")
    folder = shared / "galaxy10"
    images = list(np.load(folder / "exact10.npz")["images"])
    images += [np.asarray(Image.open(p).convert("RGB")) for p in sorted((folder / "jpeg").glob("*/*.jpg"))]
    x = np.stack(images).astype(np.float64) / 255
    print(f"galaxy10 ({len(x)} images): mean {tuple(np.round(x.mean((0, 1, 2)), 4))} "
          f"std {tuple(np.round(x.std((0, 1, 2)), 4))}")


def save_npz(path: Path, arrays: dict) -> None:
    """Like ``np.savez_compressed`` but byte-for-byte reproducible (fixed timestamps, fixed order)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(arrays[key]), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets",
                        help="folder of the real data (default: ../shared/datasets)")
    parser.add_argument("--out", type=Path, default=REPO / "cnncourse" / "data" / "samples")
    parser.add_argument("--stats", action="store_true", help="also print the normalisation statistics")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    samples = {
        "mnist": lambda: make_mnist_like("mnist", args.shared / "MNIST" / "raw"),
        "fashion-mnist": lambda: make_mnist_like("fashion-mnist", args.shared / "FashionMNIST" / "raw"),
        "cifar10": lambda: make_cifar10(args.shared),
        "galaxy10": lambda: make_galaxy10(args.shared),
    }
    total = 0
    for name, make in samples.items():
        path = args.out / f"{name}.npz"
        save_npz(path, make())
        size = path.stat().st_size
        total += size
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {size / 1e6:.2f} MB")
    print(f"total: {total / 1e6:.2f} MB")
    if args.stats:
        normalization_stats(args.shared)


if __name__ == "__main__":
    main()
