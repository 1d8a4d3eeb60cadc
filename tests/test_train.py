"""The training engine (cnncourse.train) and the in-memory fast path (cnncourse.fastdata)."""
from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnncourse.fastdata import TensorLoader, fast_loaders, random_crop, rotate
from cnncourse.train import (History, TrainingDiverged, evaluate, fit, load_checkpoint, make_optimizer,
                             make_scheduler, predict, resolve_amp)

TIMING_COLUMNS = ("seconds", "train_images_per_s")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models train fastest on one thread, and far faster when other programs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_idx(path) -> torch.Tensor:
    """An MNIST idx(.gz) file as a uint8 tensor (images [N, 28, 28] or labels [N])."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def small_cnn(channels: int = 1, size: int = 28, classes: int = 10, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Dropout(dropout), nn.Linear(32 * (size // 4) ** 2, classes))


def toy_data(n: int = 192, size: int = 12, seed: int = 0):
    """Learnable toy images: the class sets which quadrant is bright."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=generator)
    images = torch.randint(0, 60, (n, 1, size, size), generator=generator, dtype=torch.uint8)
    half = size // 2
    for k in range(4):
        rows, cols = divmod(k, 2)
        images[labels == k, :, rows * half:(rows + 1) * half, cols * half:(cols + 1) * half] += 150
    return images, labels


def without_timing(history: History):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in history]


# --------------------------------------------------------------------------------------- real data
def test_one_epoch_on_2000_real_mnist_images_reaches_90_percent(shared_datasets):
    raw = shared_datasets / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST files not found in {raw}")
    train_x = read_idx(raw / "train-images-idx3-ubyte.gz")[:2000]
    train_y = read_idx(raw / "train-labels-idx1-ubyte.gz")[:2000].long()
    test_x = read_idx(raw / "t10k-images-idx3-ubyte.gz")[:1000]
    test_y = read_idx(raw / "t10k-labels-idx1-ubyte.gz")[:1000].long()
    stats = dict(mean=(0.1307,), std=(0.3081,))
    train = TensorLoader(train_x, train_y, batch_size=16, shuffle=True, seed=0, **stats)
    test = TensorLoader(test_x, test_y, batch_size=500, **stats)
    torch.manual_seed(0)
    model = small_cnn()
    history = fit(model, train, test, epochs=1, optimizer="adam", lr=3e-3, seed=0, device="cpu",
                  progress=False)
    assert len(history) == 1
    record = history[-1]
    assert record["epoch"] == 1 and record["lr"] == pytest.approx(3e-3)
    assert record["test_acc"] >= 0.90, record
    assert 0 < record["train_loss"] < 2.3 and record["seconds"] > 0
    assert evaluate(model, test)["accuracy"] == pytest.approx(record["test_acc"])


# --------------------------------------------------------------------------------------- resume
class InterruptAtCall(nn.Module):
    """Cross-entropy that raises KeyboardInterrupt on its n-th call, like Ctrl-C in the middle of an epoch."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, logits, labels):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(logits, labels)


@pytest.mark.parametrize("loader_kind", ["fast", "dataloader"])
def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path, loader_kind):
    images, labels = toy_data()
    test_images, test_labels = toy_data(64, seed=1)

    def run(checkpoint=None, resume=False, loss_fn=None):
        torch.manual_seed(3)
        model = small_cnn(size=12, classes=4, dropout=0.3)
        if loader_kind == "fast":
            train = TensorLoader(images, labels, batch_size=32, shuffle=True, mean=(0.2,), std=(0.3,),
                                 augment="crop-flip", pad=2, seed=5)
            test = TensorLoader(test_images, test_labels, batch_size=50, mean=(0.2,), std=(0.3,))
        else:
            train = DataLoader(TensorDataset(images.float() / 255, labels), batch_size=32, shuffle=True)
            test = DataLoader(TensorDataset(test_images.float() / 255, test_labels), batch_size=50)
        history = fit(model, train, test, epochs=3, optimizer="sgd", lr=0.05, schedule="onecycle",
                      seed=11, device="cpu", checkpoint=checkpoint, resume=resume, progress=False,
                      loss_fn=loss_fn)
        return model, history

    reference_model, reference = run()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    _, partial = run(checkpoint, loss_fn=InterruptAtCall(6 + 3))  # 6 batches per epoch: stop in epoch 2
    assert partial.interrupted and len(partial) == 1
    assert load_checkpoint(checkpoint)["epoch"] == 1
    resumed_model, resumed = run(checkpoint, resume=True)
    assert not resumed.interrupted and len(resumed) == 3
    assert without_timing(resumed) == without_timing(reference)
    for (name, a), (_, b) in zip(reference_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint.pt"]  # no temporary files left


def test_resume_without_checkpoint_starts_fresh_and_finished_run_trains_no_more(tmp_path):
    images, labels = toy_data(64)
    train = TensorLoader(images, labels, batch_size=32, shuffle=True)
    checkpoint = tmp_path / "ck.pt"
    history = fit(small_cnn(size=12, classes=4), train, epochs=1, checkpoint=checkpoint, resume=True,
                  device="cpu", progress=False)
    assert len(history) == 1 and checkpoint.exists()
    state = load_checkpoint(checkpoint)
    assert {"model", "optimizer", "history", "rng", "epoch"} <= set(state)
    again = fit(small_cnn(size=12, classes=4), train, epochs=1, checkpoint=checkpoint, resume=True,
                device="cpu", progress=False)
    assert without_timing(again) == without_timing(history)


def test_resume_refuses_a_different_schedule_length(tmp_path):
    images, labels = toy_data(64)
    train = TensorLoader(images, labels, batch_size=32)
    checkpoint = tmp_path / "ck.pt"
    fit(small_cnn(size=12, classes=4), train, epochs=1, schedule="cosine", checkpoint=checkpoint,
        device="cpu", progress=False)
    with pytest.raises(ValueError, match="epochs=1"):
        fit(small_cnn(size=12, classes=4), train, epochs=2, schedule="cosine", checkpoint=checkpoint,
            resume=True, device="cpu", progress=False)


# --------------------------------------------------------------------------------------- divergence
def test_exploding_learning_rate_stops_with_an_explanation():
    images, labels = toy_data(128)
    train = TensorLoader(images, labels, batch_size=16, shuffle=True, mean=(0.2,), std=(0.3,))
    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged) as caught:
        fit(small_cnn(size=12, classes=4), train, epochs=2, optimizer="sgd", lr=1e10, device="cpu",
            progress=False)
    message = str(caught.value)
    assert isinstance(caught.value, FloatingPointError)
    assert "loss became nan at epoch 1, step" in message
    assert "learning rate (now 1e+10)" in message and "grad_clip" in message


class NanAfter(nn.Module):
    """A linear model whose output turns NaN from its n-th training call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.linear = nn.Linear(144, 4)
        self.n, self.calls = n, 0

    def forward(self, x):
        self.calls += 1
        out = self.linear(x.flatten(1))
        return out * float("nan") if self.calls >= self.n else out


def test_nan_output_names_the_exact_step():
    images, labels = toy_data(128)
    train = TensorLoader(images, labels, batch_size=16)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3 \(global step 11\)"):
        fit(NanAfter(11), train, epochs=3, device="cpu", progress=False)


# --------------------------------------------------------------------------------------- options
def test_optimizers_and_schedules_follow_their_shapes():
    model = nn.Linear(3, 2)
    assert isinstance(make_optimizer(model, "sgd", lr=0.1), torch.optim.SGD)
    assert isinstance(make_optimizer(model, "adam"), torch.optim.Adam)
    assert isinstance(make_optimizer(model, "adamw", weight_decay=0.05), torch.optim.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model, "rmsprop")

    def lrs(name):
        optimizer = make_optimizer(model, "sgd", lr=0.1)
        scheduler = make_scheduler(optimizer, name, total_steps=100, lr=0.1)
        values = []
        for _ in range(100):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return values

    step = lrs("step")
    assert step[0] == pytest.approx(0.1) and step[49] == pytest.approx(0.1)
    assert step[50] == pytest.approx(0.01) and step[75] == pytest.approx(0.001)
    cosine = lrs("cosine")
    assert cosine[0] == pytest.approx(0.1) and cosine[50] == pytest.approx(0.05, rel=0.05) and cosine[-1] < 1e-3
    one_cycle = lrs("onecycle")
    assert one_cycle[0] < 0.01 and max(one_cycle) == pytest.approx(0.1, rel=0.01) and one_cycle[-1] < 1e-3
    assert make_scheduler(make_optimizer(model), None, 10, 0.1) is None


def test_amp_choice():
    cpu = torch.device("cpu")
    assert resolve_amp(None, cpu) is None
    assert resolve_amp(False, cpu) is None
    assert resolve_amp("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        resolve_amp("fp16", cpu)
    with pytest.raises(ValueError, match="not understood"):
        resolve_amp("int8", cpu)


def test_bf16_channels_last_clipping_and_label_smoothing_train():
    images, labels = toy_data(128)
    train = TensorLoader(images, labels, batch_size=32, shuffle=True, mean=(0.2,), std=(0.3,),
                         channels_last=True)
    torch.manual_seed(0)
    history = fit(small_cnn(size=12, classes=4), train, train, epochs=3, optimizer="adamw", lr=3e-3,
                  amp="bf16", channels_last=True, grad_clip=1.0, label_smoothing=0.1,
                  schedule="cosine", device="cpu", progress=False)
    assert all(math.isfinite(v) for v in history.train_loss)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.lr[0] == pytest.approx(3e-3) and history.lr[-1] < 3e-3


def test_progress_bar_writes_to_stderr_and_respects_tqdm_disable(capsys, monkeypatch):
    images, labels = toy_data(64)
    train = TensorLoader(images, labels, batch_size=32)
    fit(small_cnn(size=12, classes=4), train, epochs=1, device="cpu", progress=True)
    assert "epoch 1/1" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    fit(small_cnn(size=12, classes=4), train, epochs=1, device="cpu", progress=True)
    assert "epoch 1/1" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------- history
def test_history_columns_json_and_files(tmp_path):
    history = History([
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.2, "test_acc": 0.4, "lr": 0.1},
        {"epoch": 2, "train_loss": 0.5, "train_acc": 0.8, "test_loss": 0.9, "test_acc": 0.7, "lr": 0.1},
    ])
    assert history.test_acc == [0.4, 0.7] and history.epoch == [1, 2]
    assert history.best("test_acc")["epoch"] == 2 and history.best("test_loss", "min")["epoch"] == 2
    assert History.from_json(history.to_json()) == history
    path = history.save(tmp_path / "h.json")
    assert History.load(path) == history
    assert len(history[:1]) == 1 and history[-1]["lr"] == 0.1
    with pytest.raises(AttributeError, match="no column 'accuracy'"):
        history.accuracy


# --------------------------------------------------------------------------------------- evaluate / predict
def test_evaluate_and_predict_match_a_manual_pass():
    images, labels = toy_data(100)
    torch.manual_seed(0)
    model = small_cnn(size=12, classes=4).eval()
    loader = TensorLoader(images, labels, batch_size=32, mean=(0.2,), std=(0.3,))
    x = (images.float() / 255 - 0.2) / 0.3
    with torch.no_grad():
        logits = model(x)
    result = evaluate(model, loader)
    assert result["count"] == 100
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    predictions = predict(model, loader, keep_images=True, limit=70)
    assert predictions.logits.shape == (70, 4) and predictions.images.shape == (70, 1, 12, 12)
    assert torch.allclose(predictions.logits, logits[:70], atol=1e-5)
    assert torch.equal(predictions.labels, labels[:70])


# --------------------------------------------------------------------------------------- fast path
def test_tensor_loader_normalises_like_to_tensor_and_normalize():
    images, labels = toy_data(70)
    loader = TensorLoader(images, labels, batch_size=32, mean=(0.2,), std=(0.3,))
    batches = list(loader)
    assert len(loader) == 3 == len(batches) and batches[-1][0].shape == (6, 1, 12, 12)
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32
    assert torch.allclose(x, (images.float() / 255 - 0.2) / 0.3, atol=1e-5)
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)
    assert len(TensorLoader(images, labels, batch_size=32, drop_last=True)) == 2
    assert len(loader.dataset) == 70 and loader.num_samples == 70


def test_tensor_loader_shuffles_reproducibly_per_epoch():
    images, labels = toy_data(64)
    loader = TensorLoader(images, labels, batch_size=64, shuffle=True, augment="crop-flip", seed=7)
    first = next(iter(loader))[0]
    second = next(iter(loader))[0]  # the next epoch: a different order and augmentation
    assert not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], first)
    other = TensorLoader(images, labels, batch_size=64, shuffle=True, augment="crop-flip", seed=7)
    assert torch.equal(next(iter(other))[0], first)


def test_random_crop_equals_cropping_the_zero_padded_image():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=generator)
    offsets = torch.randint(0, 2 * 3 + 1, (5, 2), generator=generator)
    out = random_crop(x, offsets, pad=3)
    padded = nn.functional.pad(x, (3, 3, 3, 3))
    for i, (row, col) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, row:row + 8, col:col + 8])


def test_rotation_by_quarter_turns_moves_pixels_exactly():
    x = torch.rand(2, 3, 6, 6)
    assert torch.allclose(rotate(x, torch.zeros(2)), x, atol=1e-6)
    quarter = rotate(x, torch.full((2,), math.pi / 2))
    assert any(torch.allclose(quarter, torch.rot90(x, k, dims=(2, 3)), atol=1e-5) for k in (1, 3))


def test_galaxy_and_flip_augmentations_keep_shape_and_statistics():
    images = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    labels = torch.zeros(16, dtype=torch.long)
    for augment in ("galaxy", "flip", "crop"):
        x, _ = next(iter(TensorLoader(images, labels, batch_size=16, augment=augment, shuffle=True)))
        assert x.shape == (16, 3, 20, 20) and torch.isfinite(x).all()
    flipped, _ = next(iter(TensorLoader(images, labels, batch_size=16, augment="flip")))
    plain = images.float() / 255
    assert all(torch.allclose(f, p) or torch.allclose(f, p.flip(-1)) for f, p in zip(flipped, plain))


def test_tensor_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(torch.rand(4, 1, 5, 5), torch.zeros(4))
    with pytest.raises(ValueError, match="augment"):
        TensorLoader(torch.zeros(4, 1, 5, 5, dtype=torch.uint8), torch.zeros(4), augment="mixup")
    with pytest.raises(ValueError, match="mean and std"):
        TensorLoader(torch.zeros(4, 3, 5, 5, dtype=torch.uint8), torch.zeros(4), mean=(0.5,), std=(0.5,))


def test_fast_loaders_serve_the_quick_samples_with_the_data_sets_statistics():
    from cnncourse import quick
    from cnncourse.data import NORMALIZATION, get_dataset, to_tensors

    with quick():
        train, test = fast_loaders("fashion-mnist", batch_size=32, augment=True, seed=0)
        images, labels = to_tensors(get_dataset("fashion-mnist", "test"))
    assert train.augment == "crop-flip" and test.augment is None and not test.shuffle
    assert train.mean == NORMALIZATION["fashion-mnist"][0]
    x, y = next(iter(test))
    mean, std = NORMALIZATION["fashion-mnist"]
    expected = (images[:len(y)].float() / 255 - mean[0]) / std[0]
    assert torch.allclose(x, expected, atol=1e-5) and torch.equal(y, labels[:len(y)])
    assert len(train.classes) == 10
