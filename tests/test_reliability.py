"""Issue 28's cases, each reproduced as it was found, and tests for the bugs no test caught before
(the hand-made mutants of tests/mutants/ name the line each one guards)."""
from __future__ import annotations

import json
import pickle
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnncourse.checkpointing import load_checkpoint
from cnncourse.cli import main
from cnncourse.fastdata import TensorLoader
from cnncourse.train import evaluate, fit, make_optimizer, predict


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(classes=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, classes))


def toy_loader(n=64, batch_size=16, **kwargs):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (n, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 4, (n,), generator=generator)
    return TensorLoader(images, labels, batch_size=batch_size, **kwargs)


# --------------------------------------------------------------------------------------- 2. a failing device
def test_fit_on_the_meta_device_is_refused_before_the_model_or_the_data_move():
    model, loader = tiny(), toy_loader()
    weights = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="holds shapes, not data"):
        fit(model, loader, None, epochs=1, device="meta", progress=False)
    assert all(p.device.type == "cpu" and torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert loader.images.device.type == "cpu"
    model.to("cpu")  # still usable


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_on_a_missing_gpu_says_so_and_moves_nothing():
    model, loader = tiny(), toy_loader()
    with pytest.raises(ValueError, match="CUDA is not available here"):
        evaluate(model, loader, device="cuda")
    assert loader.images.device.type == "cpu" and next(model.parameters()).device.type == "cpu"


def test_the_command_with_the_meta_device_is_a_message(tmp_path, capsys):
    status = main(["train", "--model", "lenet", "--data", "mnist", "--quick", "--device", "meta", "--out",
                   str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "holds shapes, not data" in err and "Traceback" not in err


@pytest.mark.parametrize("images, message", [
    (torch.rand(8, 1, 8, 8, dtype=torch.float64), "the images are float64 but the model's parameters are float32"),
    (torch.randint(0, 255, (8, 1, 8, 8), dtype=torch.uint8), "the images are uint8, not floating point"),
])
def test_images_the_model_cannot_take_get_a_message(images, message):
    data = DataLoader(TensorDataset(images, torch.zeros(8, dtype=torch.long)), batch_size=4)
    for call in (lambda: evaluate(tiny(), data), lambda: fit(tiny(), data, epochs=1, progress=False)):
        with pytest.raises(ValueError, match=message):
            call()


def test_float64_images_are_fine_for_a_float64_model():
    data = DataLoader(TensorDataset(torch.rand(8, 1, 8, 8, dtype=torch.float64), torch.zeros(8, dtype=torch.long)),
                      batch_size=4)
    assert evaluate(tiny().double(), data)["count"] == 8


# --------------------------------------------------------------------------------------- 4. evaluate(limit=N)
@pytest.mark.parametrize("limit", [1, 10, 17, 64, 1000])
def test_limit_counts_exactly_n_images_in_accuracy_count_and_predictions(limit):
    model, loader = tiny(), toy_loader(batch_size=16)
    result = evaluate(model, loader, limit=limit, predictions=True)
    n = min(limit, 64)
    assert result["count"] == n and len(result["predictions"].preds) == n
    full = predict(model, loader)
    expected = (full.preds[:n] == full.labels[:n]).float().mean().item()
    assert result["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_a_limit_that_is_not_a_count_is_refused(limit):
    with pytest.raises(ValueError, match="limit must be a whole number of images >= 1"):
        evaluate(tiny(), toy_loader(), limit=limit)


# --------------------------------------------------------------------------------------- 6. a refused checkpoint
def spoil(checkpoint, **entries):
    state = load_checkpoint(checkpoint)
    state.update(entries)
    torch.save(state, checkpoint)


@pytest.mark.parametrize("entries, message", [
    (dict(history=[{"epoch": 1}, "nonsense"]), "history entry is not one record per finished epoch"),
    (dict(history=None), "history entry"),
    (dict(rng={"torch": 5}), r"random-number state \(rng entry\) is malformed"),
    (dict(rng=None), "rng entry"),
    (dict(epoch=-3), r"epoch entry \(-3 of 3\) is not a count of finished epochs"),
    (dict(epoch=7), r"epoch entry \(7 of 3\)"),
])
def test_a_malformed_checkpoint_is_refused_and_changes_nothing(tmp_path, entries, message):
    checkpoint = tmp_path / "ck.pt"
    fit(tiny(), toy_loader(), epochs=3, optimizer="sgd", lr=0.05, checkpoint=checkpoint, device="cpu",
        progress=False)
    spoil(checkpoint, **entries)
    model = tiny()
    model[0].weight.data.fill_(0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=message):
        fit(model, toy_loader(), epochs=3, optimizer="sgd", lr=0.05, checkpoint=checkpoint, resume=True,
            device="cpu", progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_failure_while_applying_puts_the_optimizer_and_weights_back(tmp_path):
    from cnncourse.train import TrainState
    checkpoint = tmp_path / "ck.pt"
    fit(tiny(), toy_loader(), epochs=1, optimizer="sgd", lr=0.05, checkpoint=checkpoint, device="cpu",
        progress=False)
    state = load_checkpoint(checkpoint)
    state["optimizer"] = {"state": {}, "param_groups": "broken"}
    model = tiny()
    optimizer = make_optimizer(model, "sgd", lr=0.05)
    target = TrainState(model, optimizer, epochs=1, loader=toy_loader(),
                        options={"optimizer": "sgd", "lr": 0.05})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError):
        target.load_state_dict(state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and target.epoch == 0


# --------------------------------------------------------------------------------------- 8. leftovers
def test_a_run_killed_after_its_last_checkpoint_writes_its_confusion_matrix_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "lenet", "--data", "mnist", "--quick", "--epochs", "1", "--out", str(out),
            "--no-progress", "--batch-size", "50"]
    assert main(argv) == 0
    for name in ("metrics.json", "confusion.png", "curves.png", "model.pt"):  # as if killed before writing them
        (out / name).unlink()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "confusion.png").is_file() and (out / "metrics.json").is_file()


# --------------------------------------------------------------------------------------- 10. messages, not tracebacks
@pytest.mark.parametrize("setting, value, message", [
    ("epochs", "ten", "the setting epochs is 'ten', not a whole number"),
    ("lr", "fast", "the setting lr is 'fast', not a number"),
    ("augment", "yes", "the setting augment is 'yes', not a true or false"),
    ("model", 5, "the setting model is 5, not a text"),
])
def test_a_run_json_with_wrong_types_gets_a_message(tmp_path, capsys, setting, value, message):
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet", "--data", "mnist", "--quick", "--out", str(out), "--no-progress",
                 "--batch-size", "50"]) == 0
    record = json.loads((out / "run.json").read_text())
    record["settings"][setting] = value
    (out / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize("std", [[0.0], [-1.0], [float("nan")]])
def test_a_tensor_loader_with_an_unusable_std_says_so(std):
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        toy_loader(mean=[0.5], std=std)


# --------------------------------------------------------------------------------------- bugs no test caught
def test_checkpoints_are_read_with_weights_only_so_a_pickle_cannot_run(tmp_path):
    """A pickle that would run code when loaded is refused, and never runs."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"epoch": 1, "payload": Payload()}, handle)
    with pytest.raises(Exception):
        load_checkpoint(path)
    assert not marker.exists()
    torch.save({"epoch": 1, "payload": Payload()}, tmp_path / "evil2.pt")
    marker.unlink(missing_ok=True)
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "evil2.pt")
    assert not marker.exists()


def test_sgd_is_nesterov_momentum():
    optimizer = make_optimizer(nn.Linear(2, 2), "sgd", lr=0.1, momentum=0.9)
    group = optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True


def test_evaluate_builds_no_graph():
    seen = []
    model = tiny()
    model.register_forward_hook(lambda module, args, out: seen.append(out.requires_grad))
    evaluate(model, toy_loader())
    assert seen and not any(seen)


def test_fit_tells_a_distributed_sampler_the_epoch(tmp_path):
    class Sampler(torch.utils.data.Sampler):
        def __init__(self, n):
            self.n, self.epochs = n, []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self):
            return self.n

    data = TensorDataset(torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,)))
    sampler = Sampler(16)
    fit(tiny(), DataLoader(data, batch_size=8, sampler=sampler), epochs=3, progress=False, device="cpu")
    assert sampler.epochs == [0, 1, 2]


def test_the_classic_loader_never_augments_validation_or_test_images(tmp_path, capsys):
    """--loader torch: the held-out and test images are the same at every read, the training ones are not."""
    from cnncourse import config
    from cnncourse.cli_train import _build_data
    from cnncourse.runconfig import TrainConfig
    config.set_quick_mode(True)
    settings = TrainConfig(model="lenet", data="cifar10", loader="torch", augment=True, val_fraction=0.2,
                           workers=0, quick=True)
    train, val, test, _, _ = _build_data(settings, torch.device("cpu"), 0)
    for loader in (val, test):
        first = next(iter(loader))[0]
        assert torch.equal(first, next(iter(loader))[0])
    dataset = train.dataset
    assert not torch.equal(dataset[0][0], dataset[0][0]) or not torch.equal(dataset[1][0], dataset[1][0])


def test_the_speedrun_clock_stops_before_the_final_evaluation(monkeypatch):
    """train_seconds covers the optimisation steps only: a slow evaluation does not count, and the
    steps themselves do (the clock is not started late)."""
    from cnncourse import config, speedrun
    config.set_quick_mode(True)
    original, calls = speedrun._accuracy, []

    def slow_accuracy(*args, **kwargs):
        calls.append(1)
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(speedrun, "_accuracy", slow_accuracy)
    started = time.perf_counter()
    result = speedrun.speedrun_mnist(epochs=1, seed=0)
    total = time.perf_counter() - started
    assert len(calls) == 2
    assert 0 < result["train_seconds"] <= total - 2.0
    assert result["train_seconds"] >= 0.9 * result["history"][-1]["seconds"]


def test_provenance_records_what_ran_not_what_was_asked(tmp_path, capsys):
    import os
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet", "--data", "mnist", "--quick", "--device", "auto",
                 "--out", str(out), "--no-progress", "--batch-size", "50"]) == 0  # threads: torch's choice
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    assert provenance["torch_threads"] == 1 == torch.get_num_threads()
    assert provenance["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert provenance["cpu_count"] == os.cpu_count() and provenance["world_size"] == 1
    assert provenance["torch_version"] == torch.__version__ and provenance["quick_mode"] is True
