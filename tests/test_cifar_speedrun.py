"""Notebook 9's CIFAR-10 speedrun (cnncourse.cifar_speedrun): each airbench piece against an independent
computation, each trick's removal reaching the run, and the `cnncourse speedrun --task cifar10` command."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnncourse.config as config
from cnncourse import cifar_speedrun as cs
from cnncourse.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(widths=(8, 16, 16), batch_size=128)


@pytest.fixture(scope="module")
def sample():
    """The shipped 2,000 + 200 CIFAR-10 sample, 10 % of the training part held out."""
    config.set_quick_mode(True)
    return cs.cifar_tensors(val_fraction=0.1)


def test_whitening_weights_whiten_the_patches():
    torch.manual_seed(0)
    mixing = torch.randn(3, 3)
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(200, 3, 8, 8))   # correlated channels
    weights = cs.whitening_weights(images, patch=2, eps=1e-6)
    assert weights.shape == (24, 3, 2, 2)
    out = F.conv2d(images, weights[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    assert torch.allclose(torch.cov(out.T.double()), torch.eye(12, dtype=torch.double), atol=1e-3)
    assert torch.equal(weights[12:], -weights[:12])


def test_the_whitening_sample_spreads_over_a_set_sorted_by_class():
    """A folder copy lists the images class by class: its first 5,000 are all airplanes."""
    labels = torch.arange(10).repeat_interleave(600)
    images = labels.view(-1, 1, 1, 1).float().expand(-1, 3, 4, 4)
    spread = cs.whitening_sample(images, "spread", n=500)[:, 0, 0, 0]
    assert torch.equal(torch.bincount(spread.long(), minlength=10), torch.full((10,), 50))
    assert torch.equal(cs.whitening_sample(images, "first", n=500), images[:500])
    assert len(cs.whitening_sample(images[:300], "spread", n=500)) == 300


def test_the_run_whitens_with_the_spread_sample():
    """The run's frozen first layer is whitening_weights of the sample its recipe names."""
    torch.manual_seed(0)
    labels = torch.arange(10).repeat_interleave(520)                 # 5,200 images, sorted by class
    images = (torch.rand(len(labels), 3, 32, 32) * 60 + labels.view(-1, 1, 1, 1) * 19).to(torch.uint8)
    tensors = {"train": (images, labels), "val": (images[::52], labels[::52])}
    from cnncourse.speedrun import normalise
    x = normalise(images, cs.MEAN, cs.STD, "cpu", channels_last=False)
    for how in ("spread", "first"):
        run = cs.speedrun_cifar10(epochs=0.05, tensors=tensors, keep_model=True, whiten_sample=how, bf16=False,
                                  translate=0, **TINY)
        expected = cs.whitening_weights(cs.whitening_sample(x, how))
        assert torch.allclose(run["model"][0].weight, expected, atol=1e-5), how


def test_alternating_flips_mirror_each_image_once_in_two_epochs():
    even, odd = cs.alternating_flips(1000, 0, seed=3), cs.alternating_flips(1000, 1, seed=3)
    assert torch.equal(even, ~odd) and torch.equal(even, cs.alternating_flips(1000, 2, seed=3))
    assert 400 < int(even.sum()) < 600


def test_airbench_net_shapes_frozen_parts_and_identity_start():
    net = cs.airbench_net((8, 16, 16))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert not net[0].weight.requires_grad and net[0].bias.requires_grad
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    assert all(n.momentum == 0.4 and n.eps == 1e-12 for n in norms)
    convs = [m for m in net[2:].modules() if isinstance(m, nn.Conv2d)]
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(convs[1](x), x, atol=1e-6)               # 8 -> 8: the identity
    x = torch.randn(2, 24, 5, 5)
    assert torch.allclose(convs[0](x)[:, :24], x, atol=1e-6) if convs[0].out_channels >= 24 else True
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(convs[2](x)[:, :8], x, atol=1e-6)         # 8 -> 16: the first 8 copy
    plain = cs.airbench_net((8, 16, 16), identity_init=False, whiten=False)
    assert not torch.allclose([m for m in plain[2:].modules() if isinstance(m, nn.Conv2d)][1](x), x, atol=1e-2)
    assert plain[0].weight.requires_grad
    assert sum(p.numel() for p in cs.airbench_net().parameters()) == 1_972_792


def test_random_translate_cuts_each_image_at_one_offset_and_uses_them_all():
    images = torch.randn(600, 3, 8, 8)
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    out = cs.random_translate(padded, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    seen = set()
    for i in range(len(images)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 25
    assert not torch.equal(out, cs.random_translate(padded, 2, torch.Generator().manual_seed(1)))


def test_triangle_schedule_points():
    assert cs.triangle(0, 100) == pytest.approx(0.2)
    assert cs.triangle(23, 100) == pytest.approx(1.0)
    assert cs.triangle(100, 100) == pytest.approx(0.07)
    assert cs.triangle(10, 100) == pytest.approx(0.2 + 0.8 * 10 / 23)
    assert cs.triangle(50, 100, peak=0.5, start=0.0, end=0.0) == pytest.approx(1.0)


def test_lookahead_moves_the_slow_copy_and_resets_the_model():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    slow = cs.Lookahead(model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    moved = {k: v.clone() for k, v in model.state_dict().items()}
    slow.update(model, decay=0.75)      # slow = 0.75 start + 0.25 moved; the model takes it
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * start[name] + 0.25 * moved[name])
    assert model.state_dict()["1.num_batches_tracked"].dtype == torch.long   # integers left alone
    with torch.no_grad():
        model[0].weight.add_(5.0)
    slow.update(model, decay=1.0)       # back to the slow copy
    assert torch.allclose(model[0].weight, 0.75 * start["0.weight"] + 0.25 * moved["0.weight"])


def test_six_view_tta_against_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    x = torch.randn(5, 3, 8, 8)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :8, :8], padded[..., 2:, 2:]
    assert torch.equal(up_left[..., 1:, 1:], x[..., :7, :7])

    def both(v):
        return (model(v) + model(v.flip(-1))) / 2
    expected = both(x) / 2 + both(up_left) / 4 + both(down_right) / 4
    assert torch.allclose(cs.tta_views_logits(model, x, 6), expected, atol=1e-6)
    assert torch.allclose(cs.tta_views_logits(model, x, 2), both(x), atol=1e-6)
    assert torch.allclose(cs.tta_views_logits(model, x, 1), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="views must be 1, 2 or 6"):
        cs.tta_views_logits(model, x, 3)


def test_low_precision_dtype_on_this_cpu():
    from cnncourse.train import cpu_has_native_bf16
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert cs._low_precision(torch.device("cpu")) == expected


def test_the_cifar_run_learns_on_the_sample(sample):
    result = cs.speedrun_cifar10(epochs=3, tensors=sample, device="cpu", **TINY)
    assert result["num_train_images"] == 1800 and result["num_val_images"] == 200
    assert result["steps"] == 3 * (1800 // 128)
    for kind in ("", "_flip", "_no_tta"):
        assert result[f"val_accuracy{kind}"] > 0.15, kind     # chance: 0.1
    assert "test" not in sample and not any(key.startswith("test_") for key in result)   # a hold-out run: no test
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]


def test_fractional_epochs_stop_after_that_many_steps(sample):
    result = cs.speedrun_cifar10(epochs=1.5, tensors=sample, **TINY)
    assert result["steps"] == 21 and len(result["history"]) == 2      # 14 steps an epoch, ceil(1.5 x 14)


def _final_weights(sample, **changes):
    changes = {"whiten_bias_epochs": 1.0, **changes}      # the bias stops within this short run
    result = cs.speedrun_cifar10(epochs=1.5, tensors=sample, keep_model=True, **TINY, **changes)
    return result, torch.cat([v.flatten().float() for v in result["model"].state_dict().values()])


@pytest.mark.parametrize("trick", list(cs.TRICKS))
def test_each_removal_reaches_the_run(sample, trick):
    """Removing a trick changes what the run computes (or, for the speed tricks, how)."""
    changes = cs.TRICKS[trick][1]
    assert replace(cs.CifarRecipe(), **changes) != cs.CifarRecipe()
    base, base_weights = _final_weights(sample)
    removed, removed_weights = _final_weights(sample, **changes)
    if trick == "bf16 autocast":
        from cnncourse.train import cpu_has_native_bf16
        assert removed["autocast"] == "None"
        assert base["autocast"] == ("torch.bfloat16" if cpu_has_native_bf16() else "None")
    elif trick == "channels_last":
        conv = removed["model"][2].weight
        assert conv.is_contiguous() and base["model"][2].weight.is_contiguous(memory_format=torch.channels_last)
    else:
        assert not torch.allclose(base_weights, removed_weights, atol=1e-4), trick


def test_whitening_bias_stops_after_its_epochs(sample):
    torch.manual_seed(0)
    start = cs.airbench_net(TINY["widths"])[0].bias.detach().clone()
    frozen = cs.speedrun_cifar10(epochs=1, tensors=sample, keep_model=True, whiten_bias_epochs=0, **TINY)
    assert torch.equal(frozen["model"][0].bias.detach(), start)
    trained = cs.speedrun_cifar10(epochs=1, tensors=sample, keep_model=True, **TINY)
    assert not torch.equal(trained["model"][0].bias.detach(), start)


def test_bad_recipes_are_refused_clearly(sample):
    with pytest.raises(ValueError, match="larger than the 1800 training images"):
        cs.speedrun_cifar10(tensors=sample, batch_size=4096)
    with pytest.raises(ValueError, match="epochs and lr must be > 0"):
        cs.speedrun_cifar10(tensors=sample, epochs=0)
    with pytest.raises(ValueError, match="whiten_sample must be 'spread' or 'first'"):
        cs.speedrun_cifar10(tensors=sample, whiten_sample="random")


def test_cli_speedrun_cifar10_records_the_removal_and_a_portable_command(tmp_path, capsys):
    config.set_quick_mode(True)
    out = tmp_path / "run"
    assert main(["speedrun", "--task", "cifar10", "--epochs", "0.5", "--without", "Lookahead", "--val-fraction", "0.1",
                 "--set", "whiten_sample=first", "--set", "label_smoothing=0.1", "--threads", "1", "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_train_images"] == 1800 and metrics["device"] == "cpu" and metrics["recipe"]["epochs"] == 0.5
    assert metrics["recipe"]["lookahead"] is False and metrics["removed_trick"] == "Lookahead"
    assert metrics["recipe"]["whiten_sample"] == "first" and metrics["recipe"]["label_smoothing"] == 0.1
    assert {"val_accuracy", "val_accuracy_flip", "val_accuracy_no_tta", "train_seconds"} <= set(metrics)
    assert "test_accuracy" not in metrics and "validation accuracy" in capsys.readouterr().err   # chosen on validation
    assert metrics["provenance"]["command"] == ("cnncourse speedrun --task cifar10 --seed 0 --without Lookahead "
                                                f"--epochs 0.5 --val-fraction 0.1 --val-seed 0 --set whiten_sample=first "
                                                f"--set label_smoothing=0.1 --out {out}")
    weights = metrics["weights"]
    data = (out / "model.pt").read_bytes()
    assert weights["sha256"] == hashlib.sha256(data).hexdigest() and weights["dtype"] == "float16"
    state = torch.load(out / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    from cnncourse import reference
    model = reference.load_model("run", tmp_path)           # rebuilt from the recipe, hash checked
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    x, y = cs.cifar_tensors(val_fraction=0.1)["val"]
    from cnncourse.speedrun import normalise
    scores = cs._accuracies(model, normalise(x, cs.MEAN, cs.STD, "cpu", True), y, None)
    assert abs(scores["multicrop"] - metrics["val_accuracy"]) <= 0.02     # float16 weights, float32 here
    (out / "model.pt").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(reference.WeightsError, match="altered"):
        reference.load_model("run", tmp_path)
    assert main(["speedrun", "--task", "cifar10", "--without", "BatchNorm", "--out", str(tmp_path / "b")]) == 2
    assert "'Lookahead'" in capsys.readouterr().err
    assert main(["speedrun", "--task", "mnist", "--epochs", "1.5", "--out", str(tmp_path / "c")]) == 2
    assert "whole number of epochs" in capsys.readouterr().err
    for pair, message in (("colour=red", "FIELD one of epochs"), ("epochs=many", "epochs takes a float"),
                          ("lookahead=maybe", "lookahead takes a bool"), ("lookahead", "give FIELD=VALUE")):
        assert main(["speedrun", "--task", "cifar10", "--set", pair, "--out", str(tmp_path / "d")]) == 2
        assert message in capsys.readouterr().err, pair
    assert main(["speedrun", "--set", "epochs=2", "--out", str(tmp_path / "e")]) == 2
    assert "--set apply to --task cifar10" in capsys.readouterr().err


def _recorded(folder, name, seed, seconds, six, two, one, removed=None):
    run = {"seed": seed, "train_seconds": seconds, "test_accuracy": six, "test_accuracy_flip": two,
           "test_accuracy_no_tta": one, "removed_trick": removed, "data": "cifar10-jpeg", "autocast": "torch.bfloat16",
           "recipe": {"epochs": 12.0, "batch_size": 1024},
           "provenance": {"cpu": "Test CPU", "torch_threads": 2, "cores": 2, "torch_cpu_capability": "AVX512",
                          "native_bf16": True}}
    (folder / name).mkdir(parents=True)
    (folder / name / "metrics.json").write_text(json.dumps(run))


def test_recorded_tables_read_the_runs_medians_and_the_goal(tmp_path):
    from cnncourse.speedrun_records import recorded_tables
    assert "no run recorded" in recorded_tables(tmp_path)
    folder = tmp_path / "speedrun-cifar10"
    for seed, (seconds, six) in enumerate([(600, 0.931), (660, 0.925), (630, 0.934)]):
        _recorded(folder, f"recipe-s{seed}", seed, seconds, six, six - 0.002, six - 0.01)
    _recorded(folder, "without-lookahead-s0", 0, 590, 0.920, 0.918, 0.91, removed="Lookahead")
    (folder / "search" / "e8-s0").mkdir(parents=True)            # the search is not a recorded run
    text = recorded_tables(tmp_path)
    assert "| 1 | 11.0 min | 92.50 % | 92.30 % | 91.50 % |" in text
    assert "| median of 3 | 10.5 min | 93.10 % |" in text
    assert "| mean ± sd | | 93.00 ± 0.46 % |" in text
    assert "at most 15 minutes of training: met" in text and "the course's JPEG copy of CIFAR-10" in text
    assert "| Lookahead | plain Nesterov SGD, no pull towards the slow weights | 1 | 9.8 min | 0.94 | 92.00 % " \
        "| -1.10 points | 91.00 % |" in text
    assert "3 seeds differ by a standard deviation of 0.46 points" in text
    assert "the recipe's own seeds took 0.95-1.05 times their median" in text
    assert "missed: 0.40 points short" in recorded_tables(tmp_path, accuracy=0.935)


def test_removal_effects_are_medians_over_seeds_against_the_recipes_median(tmp_path):
    from cnncourse.speedrun_records import recorded_tables, removal_effects, speedrun_results
    folder = tmp_path / "speedrun-cifar10"
    _recorded(folder, "without-whitening-s0", 0, 500, 0.900, 0.89, 0.880, removed="whitening")
    assert removal_effects(speedrun_results("speedrun-cifar10", tmp_path)) == []     # no recipe run to compare with
    _recorded(folder, "recipe-s0", 0, 600, 0.930, 0.928, 0.920)
    for seed, (seconds, six, one) in enumerate([(540, 0.910, 0.900), (660, 0.920, 0.890)], start=1):
        _recorded(folder, f"without-whitening-s{seed}", seed, seconds, six, six, one, removed="whitening")
    _recorded(folder, "without-Lookahead-s0", 0, 720, 0.935, 0.93, 0.925, removed="Lookahead")
    effects = removal_effects(speedrun_results("speedrun-cifar10", tmp_path))
    assert [e["trick"] for e in effects] == ["whitening", "Lookahead"]               # in TRICKS' order
    whitening, lookahead = effects
    assert whitening["seeds"] == 3 and whitening["seconds"] == 540 and whitening["ratio"] == pytest.approx(0.9)
    assert whitening["six"] == 0.910 and whitening["one"] == 0.890
    assert whitening["change"] == pytest.approx(-2.0) and lookahead["change"] == pytest.approx(0.5)
    assert lookahead["ratio"] == pytest.approx(1.2)
    text = recorded_tables(tmp_path)     # one recipe seed: the table says there is no spread to judge by
    assert "| whitening | a trained 2 x 2 convolution first, initialised as PyTorch does | 3 | 9.0 min | 0.90 " \
        "| 91.00 % | -2.00 points | 89.00 % |" in text
    assert "one recipe seed: no spread to compare with." in text and "standard deviation" not in text


def test_the_recipe_is_the_recorded_choice_and_its_runs_used_it():
    """CifarRecipe's epochs are those the search chose on validation, and every recorded recipe run
    (results/speedrun-cifar10/recipe-s*) trained the recipe as the code defines it."""
    from pathlib import Path
    folder = Path(__file__).resolve().parents[1] / "results" / "speedrun-cifar10"
    choice = json.loads((folder / "search-choice.json").read_text())
    assert cs.CifarRecipe().epochs == choice["epochs"]
    searched = {json.loads(p.read_text())["recipe"]["epochs"] for p in folder.glob("search/*/metrics.json")}
    assert choice["epochs"] in searched
    from dataclasses import asdict
    added_later = {"whiten_sample": "first"}    # fields added after some runs, with what those runs did
    for run in folder.glob("recipe-s*/metrics.json"):
        recorded = json.loads(run.read_text())
        recipe = {**added_later, **recorded["recipe"]}
        assert recipe == json.loads(json.dumps(asdict(cs.CifarRecipe()))), run.parent.name
        assert recorded["removed_trick"] is None and "val_accuracy" not in recorded
