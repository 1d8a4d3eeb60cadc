"""Notebook 9's speedruns: the MNIST network and recipe, each trick's removal, the airbench pieces
(test-time flips) and the `cnncourse speedrun` command."""
from __future__ import annotations

import math

import json
from dataclasses import asdict, replace

import pytest
import torch
from torch import nn

import cnncourse.config as config
from cnncourse import speedrun
from cnncourse.cli import main
from cnncourse.speedrun import MnistRecipe, TRICKS, mnist_net


@pytest.fixture
def quick():
    config.set_quick_mode(True)
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def mnist_sample():
    config.set_quick_mode(True)
    try:
        return speedrun.split_tensors("mnist", None, 0.1, 0)
    finally:
        config.set_quick_mode(None)


def test_mnist_net_shapes_and_parameters_by_formula():
    net = mnist_net(16)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    convs = 1 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9            # no bias before BatchNorm
    norms = 2 * (16 + 32 + 64)
    assert sum(p.numel() for p in net.parameters()) == convs + norms + 64 * 3 * 3 * 10 + 10 == 29178
    plain = mnist_net(16, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(p.numel() for p in plain.parameters()) == convs + 16 + 32 + 64 + 5770
    assert sum(p.numel() for p in mnist_net(32).parameters()) > 3 * 29178


def test_pooling_before_batchnorm_and_relu_gives_the_same_output():
    """The docstring's claim: max-pool commutes with an increasing BN (positive scale) and ReLU."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 4, 8, 8)
    pool = nn.MaxPool2d(2)
    assert torch.allclose(torch.relu(bn(pool(x))), pool(torch.relu(bn(x))), atol=1e-6)


def test_the_mnist_speedrun_learns_on_the_real_sample(quick, mnist_sample):
    result = speedrun.speedrun_mnist(MnistRecipe(epochs=3, batch_size=64, lr=0.1), data=mnist_sample)
    assert result["test_accuracy"] >= 0.8 and result["val_accuracy"] >= 0.75      # 10 classes: chance is 0.1
    assert result["steps"] == 3 * (450 // 64) and result["num_train_images"] == 450
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert 0 < result["train_seconds"] == pytest.approx(result["history"][-1]["seconds"], rel=0.5, abs=0.5)


@pytest.mark.parametrize("trick", list(TRICKS))
def test_every_trick_removal_changes_the_recipe_and_still_runs(quick, mnist_sample, trick):
    description, changes = TRICKS[trick]
    base = MnistRecipe(epochs=1, batch_size=64, lr=0.1)
    changed = replace(base, **{k: v for k, v in changes.items() if k not in ("batch_size", "lr")})
    assert changed != base or set(changes) <= {"batch_size", "lr"}, trick
    if trick == "torch.compile off":
        pytest.skip("compiling costs a minute; the flag is checked in test_compile_flag_wraps_the_model")
    result = speedrun.speedrun_mnist(base, data=mnist_sample, **changes)
    assert result["recipe"] == {**asdict(base), **changes}
    correct = result["test_accuracy"] * result["num_test_images"]   # a fraction of the test images
    assert correct == pytest.approx(round(correct), abs=1e-6) and result["num_test_images"] > 0
    assert math.isfinite(result["history"][-1]["train_loss"])


def _cpu_autocast_dtype():
    """The dtype that CPU autocast computes in right now (float32 when it is off); torch < 2.4 has
    only the CPU-specific functions, which newer torch deprecates."""
    try:
        enabled, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    except (TypeError, AttributeError):   # torch 2.3: is_autocast_enabled() takes no device
        enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return dtype if enabled else torch.float32


def test_bf16_and_layout_flags_are_applied(quick, mnist_sample, monkeypatch):
    nets, dtypes = [], set()
    original = mnist_net

    def spy(*args, **kwargs):
        net = original(*args, **kwargs)
        net.register_forward_pre_hook(lambda m, inputs: dtypes.add(_cpu_autocast_dtype()))
        nets.append(net)
        return net

    monkeypatch.setattr(speedrun, "mnist_net", spy)
    monkeypatch.setattr(speedrun, "use_bf16", lambda wanted, device: wanted)   # as on a CPU with native bf16
    result = speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64, width=4), data=mnist_sample)
    weight = nets[-1][4].weight                                                   # the second convolution
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert dtypes == {torch.bfloat16} and result["bf16_used"] is True
    dtypes.clear()
    result = speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64, width=4, bf16=False, channels_last=False),
                                     data=mnist_sample)
    assert nets[-1][4].weight.is_contiguous() and dtypes == {torch.float32} and result["bf16_used"] is False


def test_data_on_device_off_decodes_every_image_with_a_dataloader(quick, mnist_sample, monkeypatch):
    calls = []
    original = speedrun.decoding_loader
    monkeypatch.setattr(speedrun, "decoding_loader", lambda *a: calls.append(a) or original(*a))
    on = speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64), data=mnist_sample, seed=1)
    assert not calls
    off = speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64, data_on_device=False), data=mnist_sample, seed=1)
    assert len(calls) == 1 and off["steps"] == on["steps"]
    x, _ = next(iter(original(*calls[0])))
    images, labels = mnist_sample["train"]
    assert x.shape == (64, 1, 28, 28)
    mean, std = float(x.mean()), float(x.std())
    expected = (images.float() / 255 - 0.1307) / 0.3081
    assert abs(mean - float(expected.mean())) < 0.2 and abs(std - float(expected.std())) < 0.2


def test_onecycle_flag_sets_the_schedule(quick, mnist_sample, monkeypatch):
    built = []
    original = torch.optim.lr_scheduler.OneCycleLR
    monkeypatch.setattr(torch.optim.lr_scheduler, "OneCycleLR", lambda *a, **k: built.append(k) or original(*a, **k))
    speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64), data=mnist_sample)
    assert built and built[0]["total_steps"] == 450 // 64
    built.clear()
    speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64, onecycle=False), data=mnist_sample)
    assert not built


def test_compile_flag_wraps_the_model(quick, mnist_sample, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    speedrun.speedrun_mnist(MnistRecipe(epochs=1, batch_size=64, compile=True), data=mnist_sample)
    assert len(compiled) == 1 and isinstance(compiled[0], nn.Sequential)


def test_bad_recipes_are_refused_clearly(quick, mnist_sample):
    with pytest.raises(ValueError, match="larger than the 450 training images"):
        speedrun.speedrun_mnist(MnistRecipe(batch_size=1000), data=mnist_sample)
    with pytest.raises(ValueError, match="epochs"):
        speedrun.speedrun_mnist(MnistRecipe(epochs=0), data=mnist_sample)


def test_cli_speedrun_records_time_accuracy_and_cpu_capability(quick, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["speedrun", "--epochs", "1", "--seed", "2", "--without", "BatchNorm", "--threads", "1",
                 "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 2 and metrics["recipe"]["batchnorm"] is False and metrics["recipe"]["epochs"] == 1
    assert metrics["removed_trick"] == "BatchNorm" and metrics["quick_mode"] is True
    prov = metrics["provenance"]
    assert prov["command"] == f"cnncourse speedrun --task mnist --seed 2 --without BatchNorm --epochs 1 --out {out}"
    for key in ("cpu", "cores", "torch_threads", "torch_cpu_capability", "native_bf16", "flags", "git_commit"):
        assert key in prov
    assert "test accuracy" in capsys.readouterr().err


def test_cli_speedrun_names_the_tricks_for_a_wrong_one(tmp_path, capsys):
    assert main(["speedrun", "--without", "magic", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "'magic'" in err and "'BatchNorm'" in err and "'channels_last'" in err


def _fake_speedrun(folder, name, seed, seconds, test, trick=None):
    result = {"recipe": asdict(MnistRecipe()),
              "seed": seed, "train_seconds": seconds, "val_accuracy": test - 0.002, "test_accuracy": test,
              "removed_trick": trick}
    speedrun.record(result, folder / "speedrun-mnist" / name, f"cnncourse speedrun --seed {seed}")


def test_speedrun_tables_read_the_recorded_runs(tmp_path):
    from cnncourse import speedrun_records
    assert speedrun_records.speedrun_table(path=tmp_path) == "MNIST speedrun: not measured yet."
    for seed, (seconds, test) in enumerate([(20.0, 0.9905), (31.0, 0.9950), (22.0, 0.9890)]):
        _fake_speedrun(tmp_path, f"recipe-s{seed}", seed, seconds, test)
    _fake_speedrun(tmp_path, "without-batchnorm-s0", 0, 11.0, 0.95, trick="BatchNorm")
    table = speedrun_records.speedrun_table(path=tmp_path)
    assert "| 1 | 31.0 s | 99.30 % | 99.50 % |" in table
    assert "| median of 3 | 22.0 s | 98.85 % | 99.05 % |" in table        # medians, seed by seed
    assert "at most 30 s of training: met." in table and "native bf16" in table
    tricks = speedrun_records.trick_table(path=tmp_path)
    assert "| none (the recipe) | | 3 | 22.0 s | 1.00 | 99.05 % |" in tricks
    assert "| BatchNorm | no BatchNorm (convolutions with bias), rate 0.2 | 1 | 11.0 s | 0.50 | 95.00 % |" in tricks
    assert "| channels_last | the default NCHW memory layout | | not measured yet | | |" in tricks
    _fake_speedrun(tmp_path, "recipe-s2", 2, 40.0, 0.9890)                 # now the median misses the goal
    assert ": met" not in speedrun_records.speedrun_table(path=tmp_path)
    assert "Goal 99.0 % test accuracy in at most 30 s of training: missed: 1.0 s over." in speedrun_records.speedrun_table(path=tmp_path)


def test_quiet_stderr_silences_file_descriptor_2_and_restores_it(capfd):
    import os
    with speedrun.quiet_stderr():
        os.write(2, b"hidden\n")
    os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_pooling_last_is_the_usual_block_order():
    late = mnist_net(8, pool_first=False)
    assert [type(m).__name__ for m in late[:4]] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert [type(m).__name__ for m in mnist_net(8)[:4]] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert sum(p.numel() for p in late.parameters()) == sum(p.numel() for p in mnist_net(8).parameters())


def test_tta_logits_average_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.randn(5, 1, 6, 6)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1))) / 2
        assert torch.allclose(speedrun.tta_logits(model, x), expected)
        assert torch.allclose(speedrun.tta_logits(model, x.flip(-1)), expected, atol=1e-6)   # mirror-invariant
        labels = expected.argmax(1)
    assert speedrun._accuracy(model, x, labels, None, tta=True) == 1.0


def _search_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "speedrun_search.py"
    spec = importlib.util.spec_from_file_location("speedrun_search", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def test_search_check_agrees_with_the_recorded_choices_and_names_a_disagreement(tmp_path):
    """results/run_speedrun.sh stops unless the code's defaults are the choices the recorded searches made."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    script, path = _search_script()
    recorded = Path(__file__).resolve().parents[1] / "results" / "speedrun-mnist"
    assert script.disagreements(recorded) == {}
    for name in ("search-recipe.json", "search-rates.json"):
        shutil.copy(recorded / name, tmp_path / name)
    recipe = json.loads((tmp_path / "search-recipe.json").read_text())
    recipe["chosen"]["changes"]["width"] = MnistRecipe().width * 2
    (tmp_path / "search-recipe.json").write_text(json.dumps(recipe))
    rates = json.loads((tmp_path / "search-rates.json").read_text())
    trick = next(iter(rates["chosen"]))
    rates["chosen"][trick]["changes"]["lr"] = 0.123
    (tmp_path / "search-rates.json").write_text(json.dumps(rates))
    assert script.disagreements(tmp_path) == {"width": MnistRecipe().width * 2, trick: 0.123}
    done = subprocess.run([sys.executable, str(path), "check", "--out", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "set them in cnncourse/speedrun.py" in done.stderr
    assert subprocess.run([sys.executable, str(path), "check", "--out", str(recorded)]).returncode == 0


def test_start_recording_refuses_a_record_sets_threads_and_keeps_machine_options_apart(tmp_path):
    from cnncourse.speedrun import recording_parser, start_recording
    parser = recording_parser("prog", None)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit):                       # a record is never replaced by accident
        start_recording(parser, ["--out", str(tmp_path)])
    before = torch.get_num_threads()
    try:
        args = start_recording(parser, ["--out", str(tmp_path), "--overwrite", "--threads", "1",
                                        "--data-root", "/somewhere"])
        assert torch.get_num_threads() == 1 and args.overwrite and args.data_root == "/somewhere"
    finally:
        torch.set_num_threads(before)
    fresh = start_recording(parser, ["--out", str(tmp_path / "new")])
    assert not fresh.overwrite and fresh.threads is None and fresh.data_root is None
