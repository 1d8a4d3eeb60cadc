"""cnncourse.data: every loader on real files, quick-mode samples, clear errors, safe downloads.

Real data comes from ../shared/datasets (tests skip cleanly without it). Formats that are not
available there are rebuilt from real images: CIFAR-10's pickled batches from the exact first
200 training images, and a Galaxy10 ``.h5`` with astroNN's keys from the real Galaxy10 images.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import http.server
import os
import pickle
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import cnncourse
from cnncourse.data import (DATASETS, NORMALIZATION, ChecksumError, DataError, DataUnavailableError, DatasetInfo,
                            article_transform, class_names, dataset_info, default_transform, get_dataset,
                            make_loader, stratified_split, to_tensors)
from cnncourse.data import download as download_module
from cnncourse.data import galaxy10 as galaxy10_module
from cnncourse.data.samples import SAMPLES_DIR

QUICK_TITLES = {name: dataset_info(name).title for name in DATASETS}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Registry, names, transforms
# ---------------------------------------------------------------------------------------------

def test_registry_describes_every_dataset():
    assert DATASETS == ("mnist", "fashion-mnist", "cifar10", "galaxy10", "galaxy10-sdss")
    for name in DATASETS:
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo) and info.name == name
        assert info.num_classes == 10 == len(class_names(name)) == len(info.classes)
        assert (info.mean, info.std) == NORMALIZATION[name]
        assert len(info.mean) == len(info.std) == info.in_channels
        assert info.licence and info.citation and info.urls
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.name = "other"
    assert dataset_info("galaxy10").image_size == 256 and dataset_info("galaxy10-sdss").image_size == 69
    assert class_names("galaxy10")[3] == "In-between Round Smooth"
    assert class_names("galaxy10-sdss")[5] == "Disk, Edge-on, Boxy Bulge"
    assert dataset_info("CIFAR-10").name == "cifar10" and dataset_info("Fashion_MNIST").name == "fashion-mnist"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as caught:
        get_dataset("imagenet")
    message = str(caught.value)
    assert "'imagenet'" in message
    for name in DATASETS:
        assert name in message
    assert "image folder" in message
    with pytest.raises(ValueError, match="known data sets are mnist"):
        dataset_info("mnsit")
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'"):
        get_dataset("mnist", split="validation")


def test_stratified_split_keeps_rare_classes_and_is_seeded():
    # Class sizes like Galaxy10 SDSS's, with its 17-image class.
    counts = [3461, 6997, 6292, 394, 1534, 17, 589, 1121, 906, 519]
    labels = np.repeat(np.arange(10), counts)
    train, test = stratified_split(labels, test_fraction=0.1, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    test_counts = np.bincount(labels[test], minlength=10)
    assert test_counts[5] == 2 and (test_counts > 0).all()
    assert np.allclose(test_counts / np.array(counts), 0.1, atol=0.03)
    again, _ = stratified_split(labels, test_fraction=0.1, seed=0)
    other, _ = stratified_split(labels, test_fraction=0.1, seed=1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


# ---------------------------------------------------------------------------------------------
# Quick mode: packaged real samples, never the network
# ---------------------------------------------------------------------------------------------

def test_samples_are_small_and_carry_provenance():
    files = sorted(SAMPLES_DIR.glob("*.npz"))
    assert {f.stem for f in files} == {"mnist", "fashion-mnist", "cifar10", "galaxy10"}
    assert sum(f.stat().st_size for f in files) < 5_000_000
    for path in files:
        with np.load(path, allow_pickle=False) as archive:  # no pickle needed to read them
            meta = str(archive["meta"])
        assert "licence" in meta and "provenance" in meta


@pytest.mark.parametrize("name", DATASETS)
def test_quick_mode_returns_real_samples_offline(name, no_network, monkeypatch):
    monkeypatch.setenv("CNNCOURSE_QUICK", "1")
    assert cnncourse.quick_mode()
    info = dataset_info(name)
    train, test = get_dataset(name, "train"), get_dataset(name, "test")
    assert 50 <= len(train) <= 2000 and 20 <= len(test) <= 300
    for dataset in (train, test):
        image, label = dataset[0]
        assert isinstance(image, Image.Image)
        assert image.mode == ("L" if info.in_channels == 1 else "RGB")
        assert image.size == (info.image_size, info.image_size)
        assert dataset.classes == class_names(name) and isinstance(label, int)
        assert label == dataset.targets[0] and set(dataset.targets) <= set(range(10))
        images, labels = to_tensors(dataset)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert images.shape == (len(dataset), info.in_channels, info.image_size, info.image_size)
        for index in (0, len(dataset) - 1):
            pixels = torch.from_numpy(np.array(dataset[index][0])).reshape(info.image_size, info.image_size, -1)
            assert torch.equal(images[index], pixels.permute(2, 0, 1))
            assert labels[index] == dataset.targets[index]
    assert len(set(test.targets)) >= 8  # every split covers (nearly) every class
    if name == "galaxy10-sdss":
        assert "Stand-in" in train.note
    small = get_dataset(name, "train", image_size=24, transform=default_transform(name))
    assert small[0][0].shape == (info.in_channels, 24, 24)
    assert to_tensors(small)[0].shape[-2:] == (24, 24)


def test_quick_mode_python_switch_and_loader(no_network):
    with cnncourse.quick(True):
        dataset = get_dataset("cifar10", transform=article_transform("cifar10"))
        loader = make_loader(dataset, batch_size=50, shuffle=True, seed=3)
        assert loader.num_workers == 0  # quick mode and notebooks stay in-process
        first = [labels for _, labels in loader]
        again = [labels for _, labels in make_loader(dataset, batch_size=50, shuffle=True, seed=3)]
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        images, _ = next(iter(loader))
        assert images.shape == (50, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
        assert loader.pin_memory == torch.cuda.is_available()
    assert not cnncourse.quick_mode()


def test_quick_cifar10_train_starts_with_the_exact_first_200(shared_datasets):
    with cnncourse.quick(True):
        dataset = get_dataset("cifar10", "train")
    folder = shared_datasets / "cifar10-first200"
    with open(folder / "trainLabels.csv") as f:
        labels = [class_names("cifar10").index(row[1]) for row in csv.reader(f)]
    assert dataset.targets[:200] == labels and len(dataset) == 2000
    assert dataset.sources[199] == "data_batch_1[199]" and dataset.sources[200].startswith("cifar10-jpeg/train/")
    assert len(set(dataset.sources)) == len(dataset)  # the JPEG part skips the images already among the 200
    for index in (0, 57, 199):
        png = np.asarray(Image.open(folder / "train" / f"{index + 1}.png").convert("RGB"))
        assert np.array_equal(np.asarray(dataset[index][0]), png)


# ---------------------------------------------------------------------------------------------
# Full mode: torchvision's own classes on the real files
# ---------------------------------------------------------------------------------------------

def _link_raw(shared: Path, folder: str, root: Path) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for source in (shared / folder / "raw").glob("*.gz"):
        (raw / source.name).symlink_to(source)
    return raw


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_full_from_real_files(name, folder, shared_datasets, tmp_path, no_network):
    _link_raw(shared_datasets, folder, tmp_path)
    train = get_dataset(name, "train", root=tmp_path)
    test = get_dataset(name, "test", root=tmp_path)
    assert isinstance(train, getattr(torchvision.datasets, folder))
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.classes == class_names(name)
    images, labels = to_tensors(train)
    assert images.shape == (60_000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.min() == 0 and labels.max() == 9
    assert torch.bincount(labels).min() > 5000
    for index in (0, 1, 59_999):
        image, label = train[index]
        assert isinstance(image, Image.Image) and image.mode == "L"
        assert torch.equal(images[index, 0], torch.from_numpy(np.array(image))) and labels[index] == label
    resized = get_dataset(name, "test", root=tmp_path, image_size=32)
    small, _ = to_tensors(resized)
    assert small.shape == (10_000, 1, 32, 32)
    assert torch.equal(small[7, 0], torch.from_numpy(np.array(resized[7][0])))


def _pack_cifar_batches(shared: Path, root: Path) -> Path:
    """The exact first 200 CIFAR-10 images in torchvision's pickled batch layout.

    data_batch_1..5 hold 40 images each (in order, so the train split is images 0-199); the test
    batch reuses images 0-49. batches.meta is the real file.
    """
    source = shared / "cifar10-first200"
    names = class_names("cifar10")
    with open(source / "trainLabels.csv") as f:
        labels = [names.index(row[1]) for row in csv.reader(f)]
    images = np.stack([np.asarray(Image.open(source / "train" / f"{i}.png").convert("RGB")) for i in range(1, 201)])
    rows = images.transpose(0, 3, 1, 2).reshape(200, 3072)  # R plane, G plane, B plane per row
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def write(filename: str, part: slice, label: str) -> None:
        batch = {"batch_label": label, "labels": labels[part], "data": rows[part],
                 "filenames": [f"{i + 1}.png" for i in range(200)][part]}
        with open(folder / filename, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for k in range(5):
        write(f"data_batch_{k + 1}", slice(40 * k, 40 * (k + 1)), f"training batch {k + 1} of 5")
    write("test_batch", slice(0, 50), "testing batch 1 of 1")
    shutil.copy(source / "batches.meta", folder / "batches.meta")
    return folder


@pytest.fixture
def cifar_root(shared_datasets, tmp_path, monkeypatch):
    """A data root with the packed batches; torchvision's MD5 table points at them."""
    folder = _pack_cifar_batches(shared_datasets, tmp_path)
    cls = torchvision.datasets.CIFAR10
    assert md5(folder / "batches.meta") == cls.meta["md5"]  # the real file
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{k}", md5(folder / f"data_batch_{k}")] for k in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5(folder / "test_batch")]])
    return tmp_path


def test_cifar10_through_torchvision_from_packed_batches(cifar_root, shared_datasets, no_network):
    train = get_dataset("cifar10", "train", root=cifar_root)
    test = get_dataset("cifar10", "test", root=cifar_root)
    assert isinstance(train, torchvision.datasets.CIFAR10)
    assert (len(train), len(test)) == (200, 50)
    assert train.classes == class_names("cifar10")
    images, labels = to_tensors(train)
    assert images.shape == (200, 3, 32, 32) and labels.tolist() == train.targets
    for index in (0, 1, 123, 199):
        png = np.asarray(Image.open(shared_datasets / "cifar10-first200" / "train" / f"{index + 1}.png").convert("RGB"))
        assert np.array_equal(np.asarray(train[index][0]), png)
        assert np.array_equal(images[index].permute(1, 2, 0).numpy(), png)


def test_cifar10_corrupted_batch_raises_checksum_error(cifar_root, no_network):
    batch = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    data = bytearray(batch.read_bytes())
    data[-100] ^= 0xFF
    batch.write_bytes(bytes(data))
    started = time.monotonic()
    with pytest.raises(ChecksumError) as caught:
        get_dataset("cifar10", root=cifar_root)
    assert time.monotonic() - started < 10
    assert str(batch) in str(caught.value) and "Delete" in str(caught.value)


def test_mnist_truncated_files_raise_checksum_error(shared_datasets, tmp_path, no_network):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (shared_datasets / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(source, raw / source.name)
    archive = raw / "train-labels-idx1-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:1000])  # an interrupted download
    with pytest.raises(ChecksumError) as caught:
        get_dataset("mnist", root=tmp_path)
    assert str(archive) in str(caught.value) and "MD5" in str(caught.value)

    shutil.copy(shared_datasets / "MNIST" / "raw" / archive.name, archive)
    extracted = raw / "t10k-images-idx3-ubyte"
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz") as f:
        extracted.write_bytes(f.read()[:5000])  # an interrupted extraction
    with pytest.raises(ChecksumError) as caught:
        get_dataset("mnist", "test", root=tmp_path)
    assert str(extracted) in str(caught.value) and "bytes" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Galaxy10: a real-image .h5 with astroNN's keys
# ---------------------------------------------------------------------------------------------

def _galaxy_images(shared: Path):
    folder = shared / "galaxy10"
    exact = np.load(folder / "exact10.npz")
    images, labels = list(exact["images"]), [int(v) for v in exact["ans"]]
    for path in sorted((folder / "jpeg").glob("*/*.jpg")):
        images.append(np.asarray(Image.open(path).convert("RGB")))
        labels.append(int(path.parent.name))
    return np.stack(images), np.array(labels, dtype=np.uint8)


def write_galaxy_h5(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """An .h5 laid out like astroNN's (sky coordinates unknown here, so NaN)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    unknown = np.full(len(labels), np.nan)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
        f.create_dataset("ans", data=labels)
        for key in ("ra", "dec", "redshift", "pxscale"):
            f.create_dataset(key, data=unknown)
    return path


@pytest.fixture(scope="module")
def galaxy_h5(tmp_path_factory, shared_datasets) -> Path:
    images, labels = _galaxy_images(shared_datasets)
    return write_galaxy_h5(tmp_path_factory.mktemp("galaxy") / "Galaxy10_DECals.h5", images, labels)


def _trust(monkeypatch, name: str, path: Path, **changes) -> None:
    """Make the registry expect ``path``'s real SHA-256 and size (the test file is not Zenodo's)."""
    spec = galaxy10_module.GALAXY10_FILES[name]
    fields = {"sha256": sha256(path), "size": path.stat().st_size, **changes}
    monkeypatch.setitem(galaxy10_module.GALAXY10_FILES, name, dataclasses.replace(spec, **fields))


def test_galaxy10_lazy_stratified_resized(galaxy_h5, tmp_path, monkeypatch, no_network):
    target = tmp_path / "galaxy10" / "Galaxy10_DECals.h5"
    target.parent.mkdir()
    shutil.copy(galaxy_h5, target)
    _trust(monkeypatch, "galaxy10", target)
    train = get_dataset("galaxy10", "train", root=tmp_path, image_size=64)
    test = get_dataset("galaxy10", "test", root=tmp_path, image_size=64)
    assert train.classes == class_names("galaxy10")
    assert len(train) + len(test) == 120 and not set(train.indices) & set(test.indices)
    assert set(test.targets) == set(range(10))  # stratified: every class in test
    assert len(pickle.dumps(train)) < 20_000  # no image array inside, no open file handle
    assert train._file is None
    with h5py.File(target) as f:
        row = int(train.indices[5])
        expected = Image.fromarray(f["images"][row]).resize((64, 64), Image.BILINEAR)
        assert train.targets[5] == int(f["ans"][row])
    image, label = train[5]
    assert image.size == (64, 64) and np.array_equal(np.asarray(image), np.asarray(expected))
    images, labels = to_tensors(train)
    assert images.shape == (len(train), 3, 64, 64) and labels.tolist() == train.targets
    assert np.array_equal(images[5].permute(1, 2, 0).numpy(), np.asarray(expected))
    assert to_tensors(test, image_size=32)[0].shape == (len(test), 3, 32, 32)
    native = get_dataset("galaxy10", "test", root=tmp_path)
    assert native[0][0].size == (256, 256)
    # The SHA-256 is computed once; later loads trust the marker while size and mtime match.
    monkeypatch.setattr(galaxy10_module, "sha256_file", lambda *a, **k: pytest.fail("re-hashed"))
    assert len(get_dataset("galaxy10", "test", root=tmp_path)) == len(test)


def test_galaxy10_in_dataloader_workers(galaxy_h5, tmp_path, monkeypatch):
    """Each worker process opens the file itself (the dataset pickles without a handle).

    Not under ``no_network``: worker processes talk to the parent over local sockets.
    """
    target = tmp_path / "galaxy10" / "Galaxy10_DECals.h5"
    target.parent.mkdir()
    shutil.copy(galaxy_h5, target)
    _trust(monkeypatch, "galaxy10", target)
    dataset = get_dataset("galaxy10", "train", root=tmp_path, image_size=32, transform=article_transform("galaxy10"))
    dataset[0]  # the parent opens a handle first; the worker must not reuse it
    loader = make_loader(dataset, batch_size=16, shuffle=True, num_workers=1, seed=0)
    assert loader.persistent_workers
    sizes = [len(labels) for images, labels in loader]
    assert sum(sizes) == len(dataset)


def test_galaxy10_sdss_file_layout(galaxy_h5, tmp_path, monkeypatch, no_network):
    with h5py.File(galaxy_h5) as f:
        images = np.stack([np.asarray(Image.fromarray(im).resize((69, 69), Image.BILINEAR)) for im in f["images"]])
        labels = f["ans"][:]
    path = write_galaxy_h5(tmp_path / "galaxy10" / "Galaxy10.h5", images, labels)
    with pytest.raises(ChecksumError) as caught:  # not Zenodo's 210,234,548 bytes
        get_dataset("galaxy10-sdss", root=tmp_path)
    assert str(path) in str(caught.value) and "210,234,548" in str(caught.value)
    _trust(monkeypatch, "galaxy10-sdss", path)
    test = get_dataset("galaxy10-sdss", "test", root=tmp_path)
    assert test[0][0].size == (69, 69) and test.classes == class_names("galaxy10-sdss")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong keys"])
def test_galaxy10_corrupted_file_raises_checksum_error(damage, galaxy_h5, tmp_path, monkeypatch, no_network):
    path = tmp_path / "galaxy10" / "Galaxy10_DECals.h5"
    path.parent.mkdir()
    if damage == "garbage":
        path.write_bytes(b"not an hdf5 file" * 1000)
    elif damage == "truncated":
        path.write_bytes(galaxy_h5.read_bytes()[: galaxy_h5.stat().st_size // 2])
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset("pictures", data=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ChecksumError) as caught:  # the real SHA-256 does not match
        get_dataset("galaxy10", root=tmp_path)
    assert str(path) in str(caught.value) and "SHA-256" in str(caught.value)
    _trust(monkeypatch, "galaxy10", path, sha256=None, size=None)
    with pytest.raises(ChecksumError) as caught:  # and the layout check catches it on its own
        get_dataset("galaxy10", root=tmp_path)
    assert str(path) in str(caught.value) and "HDF5" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# No network, downloads that fail, hang or stop half-way
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_no_network_fails_fast_with_a_helpful_message(name, tmp_path, no_network):
    started = time.monotonic()
    with pytest.raises(DataUnavailableError) as caught:
        get_dataset(name, root=tmp_path)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    info = dataset_info(name)
    assert info.title in message and "unreachable" in message
    assert "https://" in message or "http://" in message
    assert str(tmp_path) in message and info.files[0] in message
    assert "CNNCOURSE_QUICK=1" in message and "set_quick_mode(True)" in message
    with pytest.raises(DataUnavailableError, match="download=False"):
        get_dataset(name, root=tmp_path, download=False)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-written


def test_hanging_dns_fails_within_the_timeout(tmp_path, monkeypatch):
    """A look-up that never returns (a socket timeout cannot stop it) still fails in seconds."""
    monkeypatch.setattr(download_module, "NETWORK_TIMEOUT", 1.0)
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)
        raise OSError("answered too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    try:
        with pytest.raises(DataUnavailableError, match="no answer from .* within 1 s"):
            get_dataset("mnist", root=tmp_path)  # two mirrors, tried at once
        assert time.monotonic() - started < 5
    finally:
        release.set()


class _FileServer:
    """A tiny HTTP server on 127.0.0.1 serving one payload, with Range, truncation and silence."""

    def __init__(self, payload: bytes, mode: str = "ok") -> None:
        self.payload, self.mode, self.ranges = payload, mode, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                start = 0
                header = self.headers.get("Range")
                server.ranges.append(header)
                if header and header.startswith("bytes=") and server.mode == "ok":
                    start = int(header[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(payload) - start))
                self.end_headers()
                body = payload[start:]
                if server.mode == "truncate":
                    body = body[: len(body) // 2]
                self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        if mode == "silent":  # accepts connections (the kernel does) but never answers
            self.httpd = None
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        else:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self.httpd.server_address[1]
            threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, filename: str) -> str:
        return f"http://127.0.0.1:{self.port}/{filename}"

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        else:
            self.sock.close()


@pytest.fixture
def serve(monkeypatch):
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(download_module, "NETWORK_TIMEOUT", 2.0)
    servers = []

    def start(payload: bytes, mode: str = "ok") -> _FileServer:
        servers.append(_FileServer(payload, mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_galaxy10_download_checks_and_resumes(galaxy_h5, tmp_path, monkeypatch, serve):
    payload = galaxy_h5.read_bytes()
    target = tmp_path / "galaxy10" / "Galaxy10_DECals.h5"
    part = target.with_name(target.name + ".part")

    broken = serve(payload, "truncate")
    _trust(monkeypatch, "galaxy10", galaxy_h5, url=broken.url("Galaxy10_DECals.h5"))
    with pytest.raises(DataUnavailableError) as caught:
        get_dataset("galaxy10", root=tmp_path)
    assert "interrupted" in str(caught.value) or "stopped" in str(caught.value)
    assert not target.exists() and 0 < part.stat().st_size < len(payload)  # never passes as complete
    with pytest.raises(DataUnavailableError, match="download=False"):
        get_dataset("galaxy10", root=tmp_path, download=False)

    good = serve(payload)
    _trust(monkeypatch, "galaxy10", galaxy_h5, url=good.url("Galaxy10_DECals.h5"))
    train = get_dataset("galaxy10", "train", root=tmp_path, image_size=32)
    assert good.ranges == [f"bytes={len(payload) // 2}-"]  # resumed where it stopped
    assert target.read_bytes() == payload and not part.exists()
    assert len(train) > 0 and train[0][0].size == (32, 32)


def test_galaxy10_download_with_wrong_checksum_keeps_nothing(galaxy_h5, tmp_path, monkeypatch, serve):
    server = serve(galaxy_h5.read_bytes())
    _trust(monkeypatch, "galaxy10", galaxy_h5, url=server.url("Galaxy10_DECals.h5"), sha256="0" * 64)
    with pytest.raises(ChecksumError) as caught:
        get_dataset("galaxy10", root=tmp_path)
    assert server.url("Galaxy10_DECals.h5") in str(caught.value) and "SHA-256" in str(caught.value)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_silent_server_times_out_instead_of_hanging(tmp_path, monkeypatch, serve):
    server = serve(b"", "silent")
    spec = galaxy10_module.GALAXY10_FILES["galaxy10-sdss"]
    monkeypatch.setitem(galaxy10_module.GALAXY10_FILES, "galaxy10-sdss",
                        dataclasses.replace(spec, url=server.url("Galaxy10.h5")))
    started = time.monotonic()
    with pytest.raises(DataUnavailableError) as caught:
        get_dataset("galaxy10-sdss", root=tmp_path)
    assert time.monotonic() - started < 10
    assert server.url("Galaxy10.h5") in str(caught.value) and "CNNCOURSE_QUICK=1" in str(caught.value)

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", server.url("cifar-10-python.tar.gz"))
    started = time.monotonic()
    with pytest.raises(DataUnavailableError, match="CIFAR-10 is not available"):
        get_dataset("cifar10", root=tmp_path)
    assert time.monotonic() - started < 10


def test_interrupted_torchvision_download_leaves_no_file(tmp_path, monkeypatch, serve):
    server = serve(b"\x1f\x8b" + bytes(4000), "truncate")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", server.url("cifar-10-python.tar.gz"))
    with pytest.raises(DataUnavailableError, match="CIFAR-10 is not available"):
        get_dataset("cifar10", root=tmp_path)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()


# ---------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------

def _image_tree(shared: Path, root: Path, per_class: int = 6) -> None:
    names = class_names("cifar10")
    with open(shared / "cifar10-first200" / "trainLabels.csv") as f:
        rows = list(csv.reader(f))
    counts: dict = {}
    for filename, label in rows:
        if label in ("cat", "dog", "ship") and counts.get(label, 0) < per_class:
            counts[label] = counts.get(label, 0) + 1
            (root / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(shared / "cifar10-first200" / "train" / filename, root / label / filename)
    assert names  # the folder names are class names, as ImageFolder expects


def test_image_folder_single_and_split(shared_datasets, tmp_path, no_network):
    _image_tree(shared_datasets, tmp_path / "flat")
    train = get_dataset(tmp_path / "flat", "train", seed=1)
    test = get_dataset(str(tmp_path / "flat"), "test", seed=1)
    assert train.classes == ["cat", "dog", "ship"] and len(train) + len(test) == 18
    assert set(test.targets) == {0, 1, 2} and not set(train.indices) & set(test.indices)
    images, labels = to_tensors(test)
    assert images.shape == (len(test), 3, 32, 32) and labels.tolist() == test.targets
    _image_tree(shared_datasets, tmp_path / "split" / "train")
    _image_tree(shared_datasets, tmp_path / "split" / "test", per_class=2)
    test = get_dataset(tmp_path / "split", "test", image_size=16,
                       transform=default_transform(tmp_path / "split", image_size=16))
    assert len(test) == 6 and test[0][0].shape == (3, 16, 16)
    assert to_tensors(test)[0].shape == (6, 3, 16, 16)


def _png(path: Path, size=(8, 8), seed: int = 0) -> Path:
    """A real PNG of random pixels; ``size`` is (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("damage", ["truncated", "not an image"])
def test_image_folder_with_a_damaged_image_names_the_file(damage, tmp_path):
    for split in ("train", "test"):
        for name in ("cats", "dogs"):
            for i in range(2):
                _png(tmp_path / split / name / f"{i}.png", seed=i)
    bad = tmp_path / "train" / "dogs" / "1.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:60])  # an interrupted copy: a real PNG header, then nothing
    else:
        bad.write_bytes(b"these are not pixels" * 10)
    dataset = get_dataset(tmp_path, "train")
    for read in (lambda: to_tensors(dataset), lambda: dataset[3], lambda: default_transform(tmp_path)):
        with pytest.raises(DataError) as caught:
            read()
        assert str(bad) in str(caught.value) and "Replace it" in str(caught.value)
    assert to_tensors(get_dataset(tmp_path, "test"))[0].shape == (4, 3, 8, 8)  # the good split still reads


def test_image_folder_layout_errors_say_what_to_do(tmp_path):
    _png(tmp_path / "loose" / "photo.png")
    with pytest.raises(DataError, match="has no class folders: .*one sub-folder of images per class"):
        get_dataset(tmp_path / "loose")
    for i in range(3):
        _png(tmp_path / "empty" / "cats" / f"{i}.png", seed=i)
    (tmp_path / "empty" / "dogs").mkdir()
    with pytest.raises(DataError) as caught:
        get_dataset(tmp_path / "empty", "test")
    message = str(caught.value)
    assert str(tmp_path / "empty" / "dogs") in message and "add images to them or remove them" in message
    for i in range(3):
        _png(tmp_path / "single" / "cats" / f"{i}.png", seed=i)
    _png(tmp_path / "single" / "dogs" / "0.png")
    with pytest.raises(DataError) as caught:
        get_dataset(tmp_path / "single")
    message = str(caught.value)
    assert str(tmp_path / "single" / "dogs") in message and "single image" in message and "train/<class>" in message
    for split, classes in (("train", ("cats", "dogs")), ("test", ("cats",))):
        for name in classes:
            _png(tmp_path / "mismatch" / split / name / "0.png")
    assert len(get_dataset(tmp_path / "mismatch", "train")) == 2
    with pytest.raises(DataError, match="must have the same class folders"):
        get_dataset(tmp_path / "mismatch", "test")
    _png(tmp_path / "no-test" / "train" / "cats" / "0.png")
    with pytest.raises(DataError, match="has train/ but no test/ sub-folder: add"):
        get_dataset(tmp_path / "no-test", "test")


def test_image_folder_of_mixed_sizes_needs_image_size(tmp_path):
    from cnncourse.fastdata import fast_loaders

    for i, size in enumerate([(8, 8), (8, 8), (12, 9), (8, 8)]):
        _png(tmp_path / ("cats" if i % 2 else "dogs") / f"{i}.png", size=size, seed=i)
    for i in range(4, 8):
        _png(tmp_path / ("cats" if i % 2 else "dogs") / f"{i}.png", size=(12, 9), seed=i)
    with pytest.raises(DataError) as caught:
        fast_loaders(tmp_path)
    message = str(caught.value)
    assert "different sizes" in message and "image_size=" in message and "--image-size" in message
    assert "12x9" in message and "8x8" in message
    train, test = fast_loaders(tmp_path, image_size=6)
    assert train.images.shape[1:] == (3, 6, 6) and train.num_samples + test.num_samples == 8


def test_to_tensors_never_touches_the_callers_transform():
    class Pictures(torch.utils.data.Dataset):
        classes = ["a", "b"]

        def __init__(self, labels):
            self.labels, self.transform = labels, self.refuse

        @staticmethod
        def refuse(image):
            raise AssertionError("to_tensors applied the transform")

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            image = Image.fromarray(np.full((4, 5), index, dtype=np.uint8))
            return (image if self.transform is None else self.transform(image)), self.labels[index]

    dataset = Pictures([0, 1, 1])
    images, labels = to_tensors(dataset)
    assert images.shape == (3, 1, 4, 5) and images[2].unique().tolist() == [2] and labels.tolist() == [0, 1, 1]
    assert dataset.transform == Pictures.refuse  # still the caller's
    subset = torch.utils.data.Subset(dataset, [2, 0])
    assert to_tensors(subset)[1].tolist() == [1, 0] and dataset.transform == Pictures.refuse
    with pytest.raises(DataError, match=r"Pictures: 1 label\(s\) are out of range: values \[2\].*labels 0-1"):
        to_tensors(Pictures([0, 2, 1]))


@pytest.mark.parametrize("bad_label", [12, 255])
def test_galaxy10_labels_out_of_range_are_refused_on_opening(bad_label, tmp_path, monkeypatch, no_network):
    images = np.random.default_rng(0).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 10
    labels[7] = bad_label
    path = write_galaxy_h5(tmp_path / "galaxy10" / "Galaxy10_DECals.h5", images, labels)
    _trust(monkeypatch, "galaxy10", path)
    with pytest.raises(DataError) as caught:
        get_dataset("galaxy10", "train", root=tmp_path)
    message = str(caught.value)
    assert "Galaxy10 DECaLS" in message and str(path) in message
    assert f"values [{bad_label}] at positions [7]" in message and "labels 0-9" in message


@pytest.fixture
def read_only_mount(mounts):
    """A real read-only file system (tmpfs remounted read-only): the owner's permissions do not help, even root's."""
    folder = mounts.mount("64m")
    return folder, lambda: mounts.read_only(folder)


def test_read_only_data_folder_is_not_called_corrupted(read_only_mount, shared_datasets, no_network):
    folder, make_read_only = read_only_mount
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (shared_datasets / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(source, raw / source.name)
    make_read_only()
    with pytest.raises(OSError):
        (raw / "probe").write_bytes(b"")  # really read-only, for root too
    with pytest.raises(DataUnavailableError) as caught:
        get_dataset("mnist", root=folder)
    message = str(caught.value)
    assert "read-only" in message and str(raw) in message
    assert "root=" in message and "CNNCOURSE_DATA" in message and "--data-root" in message
    assert "Delete" not in message and "corrupted" not in message
    originals = (shared_datasets / "MNIST" / "raw").glob("*.gz")
    assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in originals)  # nothing deleted
