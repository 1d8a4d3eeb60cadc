"""scripts/airbench_crosscheck.py: its CPU patches of airbench94.py and the split it writes in airbench's
file format (the course's hold-out, never the test set)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import cnncourse.config as config
from cnncourse.cifar_speedrun import cifar_tensors

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("airbench_crosscheck", ROOT / "scripts" / "airbench_crosscheck.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_every_patch_applies_and_another_version_of_the_file_is_refused():
    source = "".join(old if old.endswith("\n") else old + "\n" for old, _ in check.PATCHES)   # airbench's pieces
    out = check.patched(source)
    assert all(new in out for _, new in check.PATCHES)
    for gpu_only in (".cuda()", "torch.cuda.Event", "torch.cuda.synchronize", ".half()", "range(25)",
                     "map_location=torch.device(gpu)"):
        assert gpu_only not in out, gpu_only
    with pytest.raises(SystemExit, match="lacks 'net = net.half"):
        check.patched(source.replace("    net = net.half().cuda()\n", ""))


def test_the_split_is_the_courses_hold_out_in_airbenchs_format(tmp_path):
    config.set_quick_mode(True)
    check.write_split(tmp_path, None, None)
    train, held_out = torch.load(tmp_path / "train.pt"), torch.load(tmp_path / "test.pt")
    split = cifar_tensors(val_fraction=0.1)
    (x, y), (vx, vy) = split["train"], split["val"]
    assert train["images"].shape == (len(y), 32, 32, 3) and train["images"].dtype == torch.uint8   # N, H, W, C
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    assert torch.equal(train["images"], x[order].permute(0, 2, 3, 1)) and torch.equal(train["labels"], y[order])
    assert not torch.equal(train["labels"], y)            # shuffled: airbench whitens with the first 5,000
    assert torch.equal(held_out["images"].permute(0, 3, 1, 2), vx) and torch.equal(held_out["labels"], vy)
    assert train["classes"][0] == "airplane" and len(train["classes"]) == 10
