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
from cnncourse.checkpointing import load_checkpoint
from cnncourse.train import (History, TrainingDiverged, evaluate, fit, make_optimizer,
                             make_scheduler, predict, resolve_amp)

TIMING_COLUMNS = ("seconds", "train_images_per_s")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


# --------------------------------------------------------------------------------------- the core, option by option
def toy_loader(n=64, batch_size=16, shuffle=False, seed=0):
    images, labels = toy_data(n, seed=seed)
    return TensorLoader(images, labels, batch_size=batch_size, shuffle=shuffle, mean=(0.2,), std=(0.3,))


def test_train_one_epoch_is_the_loop_written_by_hand():
    from cnncourse.train import train_one_epoch
    loader = toy_loader()

    def run(by_hand):
        torch.manual_seed(0)
        model = small_cnn(size=12, classes=4)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        if not by_hand:
            return model, train_one_epoch(model, loader, optimizer, loss_fn)
        model.train()
        total, correct, count = 0.0, 0, 0
        for x, y in loader:
            optimizer.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
        return model, {"loss": total / count, "accuracy": correct / count, "count": count}

    (model_a, a), (model_b, b) = run(True), run(False)
    assert a == b
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters()))


def test_label_smoothing_is_in_the_training_loss():
    def first_loss(smoothing):
        torch.manual_seed(0)
        model = small_cnn(size=12, classes=4)
        expected = []
        with torch.no_grad():
            for x, y in toy_loader():
                expected.append(nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing).item() * len(y))
        history = fit(model, toy_loader(), epochs=1, optimizer="sgd", momentum=0.0, lr=1e-12,
                      label_smoothing=smoothing, device="cpu", progress=False)
        return history.train_loss[0], sum(expected) / 64

    for smoothing in (0.0, 0.3):
        recorded, expected = first_loss(smoothing)
        assert recorded == pytest.approx(expected, rel=1e-5)
    assert first_loss(0.3)[0] != pytest.approx(first_loss(0.0)[0], rel=1e-3)


def gradient_norms(grad_clip):
    torch.manual_seed(0)
    model = small_cnn(size=12, classes=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    norms = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: norms.append(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()))
    fit(model, toy_loader(), epochs=1, optimizer=optimizer, grad_clip=grad_clip, device="cpu", progress=False)
    return norms


def test_gradient_clipping_bounds_the_norm_the_optimizer_sees():
    unclipped, clipped = gradient_norms(None), gradient_norms(0.05)
    assert len(clipped) == 4 and min(unclipped) > 0.05
    assert max(clipped) == pytest.approx(0.05, rel=1e-4)


def test_channels_last_reaches_the_forward_pass():
    images, labels = toy_data(32)
    plain = DataLoader(TensorDataset(images.float().expand(-1, 3, -1, -1) / 255, labels), batch_size=16)
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = small_cnn(channels=3, size=12, classes=4)
        seen = []
        model[0].register_forward_pre_hook(lambda module, args: seen.append(
            (args[0].is_contiguous(memory_format=torch.channels_last),
             module.weight.is_contiguous(memory_format=torch.channels_last))))
        fit(model, plain, epochs=1, channels_last=channels_last, device="cpu", progress=False)
        assert seen and set(seen) == {(channels_last, channels_last)}, channels_last


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_reaches_the_optimizer(tmp_path, name):
    checkpoint = tmp_path / f"{name}.pt"
    fit(small_cnn(size=12, classes=4), toy_loader(32), epochs=1, optimizer=name, weight_decay=0.05, lr=0.01,
        checkpoint=checkpoint, device="cpu", progress=False)
    groups = load_checkpoint(checkpoint)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05]


def test_the_seed_decides_the_run():
    images, labels = toy_data(64)

    def run(seed):
        torch.manual_seed(0)
        loader = DataLoader(TensorDataset(images.float() / 255, labels), batch_size=16, shuffle=True)
        return without_timing(fit(small_cnn(size=12, classes=4, dropout=0.5), loader, epochs=2, seed=seed,
                                  device="cpu", progress=False))

    assert run(1) == run(1)
    assert run(1) != run(2)


class RandomScale(nn.Module):
    """A model whose forward pass draws from Python's or NumPy's random numbers (like some augmentations)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source, self.linear = source, nn.Linear(144, 4)

    def forward(self, x):
        import random
        draw = random.random() if self.source == "python" else float(np.random.rand())
        return self.linear(x.flatten(1)) * (1 + draw)


@pytest.mark.parametrize("source", ["python", "numpy"])
def test_resume_restores_python_and_numpy_random_numbers(tmp_path, source):
    loader = toy_loader(64, shuffle=True)

    def run(checkpoint=None, resume=False, loss_fn=None):
        torch.manual_seed(0)
        model = RandomScale(source)
        return fit(model, loader, epochs=2, seed=3, lr=0.01, checkpoint=checkpoint, resume=resume,
                   loss_fn=loss_fn, device="cpu", progress=False)

    reference = run()
    checkpoint = tmp_path / "ck.pt"
    assert len(run(checkpoint, loss_fn=InterruptAtCall(4 + 2))) == 1
    assert without_timing(run(checkpoint, resume=True)) == without_timing(reference)


def test_the_schedule_sets_each_epochs_learning_rate():
    history = fit(small_cnn(size=12, classes=4), toy_loader(64), epochs=4, optimizer="sgd", lr=0.1,
                  schedule="step", device="cpu", progress=False)
    assert history.lr == pytest.approx([0.1, 0.1, 0.01, 0.001])
    constant = fit(small_cnn(size=12, classes=4), toy_loader(64), epochs=2, optimizer="sgd", lr=0.1,
                   device="cpu", progress=False)
    assert constant.lr == [0.1, 0.1]


def test_evaluation_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = small_cnn(size=12, classes=4, dropout=0.9).train()
    loader = toy_loader(64)
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])
    with torch.no_grad():
        expected = (model.eval()(x).argmax(1) == y).float().mean().item()
    model.train()
    results = {evaluate(model, loader)["accuracy"] for _ in range(3)}
    assert all(r == pytest.approx(expected) for r in results) and model.training
    history = fit(model, loader, loader, epochs=1, optimizer="sgd", lr=1e-12, momentum=0.0, device="cpu",
                  progress=False)
    assert history.test_acc[0] == pytest.approx(expected, abs=1e-6)


def test_fit_keeps_the_last_epochs_test_predictions():
    torch.manual_seed(0)
    model = small_cnn(size=12, classes=4)
    loader = toy_loader(64)
    history = fit(model, loader, loader, epochs=2, device="cpu", progress=False)
    again = predict(model, loader)
    assert torch.equal(history.predictions.preds, again.preds) and torch.equal(history.predictions.labels,
                                                                               again.labels)
    assert (history.predictions.preds == history.predictions.labels).float().mean().item() == \
        pytest.approx(history.test_acc[-1])


@pytest.mark.parametrize("option, value, message", [
    ("grad_clip", -1.0, "grad_clip must be a finite number > 0"),
    ("grad_clip", 0.0, "grad_clip must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("lr", float("inf"), "lr must be a finite number > 0"),
    ("weight_decay", -0.1, "weight_decay must be a finite number >= 0"),
    ("momentum", 1.5, "momentum must be in [0, 1]"),
    ("label_smoothing", 1.0, "label_smoothing must be in [0, 1)"),
    ("label_smoothing", 2, "label_smoothing must be in [0, 1)"),
    ("epochs", 0, "epochs must be a whole number >= 1"),
    ("device", "gpu7", "device 'gpu7' is not a device name"),
])
def test_fit_refuses_values_that_would_train_wrongly(option, value, message):
    model = small_cnn(size=12, classes=4)
    before = [p.clone() for p in model.parameters()]
    kwargs = {"epochs": 1, "device": "cpu", option: value}
    with pytest.raises(ValueError) as caught:
        fit(model, toy_loader(32), progress=False, **kwargs)
    assert message in str(caught.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing trained


def test_resume_without_a_checkpoint_path_and_an_empty_test_set_are_refused_before_training():
    model = small_cnn(size=12, classes=4)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        fit(model, toy_loader(32), epochs=1, resume=True, device="cpu", progress=False)
    empty = TensorLoader(torch.zeros(0, 1, 12, 12, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    loss = InterruptAtCall(10 ** 9)
    with pytest.raises(ValueError, match="test_data has no batches"):
        fit(model, toy_loader(32), empty, epochs=1, loss_fn=loss, device="cpu", progress=False)
    assert loss.calls == 0


def test_bf16_on_a_cpu_without_native_support_says_so(monkeypatch):
    import cnncourse.train as train_module
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"no native bfloat16 \(no AVX-512 BF16, no AMX\).*10x slower.*--amp off"):
        assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: True)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_amp("bf16", torch.device("cpu"))


def test_native_bf16_detection_agrees_with_the_cpu_flags():
    from pathlib import Path

    from cnncourse.train import cpu_has_native_bf16
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "flags" not in cpuinfo.read_text():
        pytest.skip("no /proc/cpuinfo flags on this system")
    flags = set(cpuinfo.read_text().split())
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_a_refused_resume_changes_neither_the_model_nor_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    fit(small_cnn(size=12, classes=4), toy_loader(32), epochs=1, optimizer="adam", checkpoint=checkpoint,
        device="cpu", progress=False)
    saved = checkpoint.read_bytes()
    cases = [
        (dict(optimizer="sgd"), 4, r"optimizer='sgd' \(the run used 'adam'\)"),
        (dict(lr=0.5), 4, r"lr=0.5 \(the run used 0.001\)"),
        (dict(optimizer=lambda params: torch.optim.SGD(params, lr=0.1)), 4, "holds a Adam optimizer, not a SGD"),
        (dict(), 5, "weights of a different model"),
    ]
    for kwargs, classes, message in cases:
        model = small_cnn(size=12, classes=classes)
        before = [p.clone() for p in model.parameters()]
        with pytest.raises(ValueError, match=message):
            fit(model, toy_loader(32), epochs=2, checkpoint=checkpoint, resume=True, device="cpu", progress=False,
                **kwargs)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert checkpoint.read_bytes() == saved
    assert len(fit(small_cnn(size=12, classes=4), toy_loader(32), epochs=2, checkpoint=checkpoint, resume=True,
                   device="cpu", progress=False)) == 2
