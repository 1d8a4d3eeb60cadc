"""The same loop under torchrun: two CPU processes (gloo) train one model together."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")

FIT_SCRIPT = """
import json, os, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
from cnncourse.fastdata import TensorLoader
from cnncourse.train import fit

out, kind = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
labels = torch.randint(0, 3, (90,))
images = (torch.rand(90, 1, 8, 8) * 80 + labels.view(-1, 1, 1, 1) * 60).to(torch.uint8)
test_labels = torch.randint(0, 3, (37,))
test_images = (torch.rand(37, 1, 8, 8) * 80 + test_labels.view(-1, 1, 1, 1) * 60).to(torch.uint8)
if kind == "fast":
    train = TensorLoader(images, labels, batch_size=8, shuffle=True, augment="flip")
    test = TensorLoader(test_images, test_labels, batch_size=10)
else:
    train = DataLoader(TensorDataset(images.float() / 255, labels), batch_size=8, shuffle=True)
    test = DataLoader(TensorDataset(test_images.float() / 255, test_labels), batch_size=10)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
history = fit(model, train, test, epochs=2, lr=0.01, seed=0, device="cpu", progress=False,
              checkpoint=os.path.join(out, "ck.pt"))
rank = int(os.environ["RANK"])
torch.save(model.state_dict(), os.path.join(out, f"weights{rank}.pt"))
with open(os.path.join(out, f"history{rank}.json"), "w") as handle:
    json.dump({"history": history.to_list(), "labels": history.predictions.labels.tolist(),
               "batches": len(train)}, handle)
"""


def torchrun(*args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("kind", ["fast", "dataloader"])
def test_fit_under_torchrun_trains_one_model_on_disjoint_shards(tmp_path, kind):
    script = tmp_path / "run_fit.py"
    script.write_text(textwrap.dedent(FIT_SCRIPT))
    result = torchrun(str(script), str(tmp_path), kind, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    weights = [torch.load(tmp_path / f"weights{r}.pt", weights_only=True) for r in (0, 1)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    runs = [json.loads((tmp_path / f"history{r}.json").read_text()) for r in (0, 1)]
    measured = [[{k: v for k, v in r.items() if k not in ("seconds", "train_images_per_s")} for r in run["history"]]
                for run in runs]
    assert measured[0] == measured[1]  # metrics reduced across the processes
    if kind == "fast":  # sharded in place: 90 images / 2 processes / batch 8, each process sees its half
        assert runs[0]["batches"] == 6
    # The test set (37 images) is evaluated once in all: every label exactly once across the ranks.
    torch.manual_seed(0)
    torch.randint(0, 3, (90,)), torch.rand(90, 1, 8, 8)
    expected = torch.randint(0, 3, (37,))
    assert sorted(runs[0]["labels"]) == sorted(expected.tolist())
    # Only rank 0 wrote a checkpoint, and it holds what both processes ended with.
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert state["epoch"] == 2 and all(torch.equal(state["model"][k], weights[0][k]) for k in weights[0])
    assert not list(tmp_path.glob(".ck.pt.*.tmp"))


def test_the_command_under_torchrun_writes_one_metrics_file_from_rank_0(tmp_path):
    out = tmp_path / "run"
    result = torchrun("-m", "cnncourse", "train", "--model", "lenet", "--data", "cifar10", "--quick", "--epochs",
                      "2", "--threads", "1", "--no-progress", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["world_size"] == 2
    assert metrics["num_test_images"] == 200 and len(metrics["history"]) == 2
    assert result.stderr.count("cnncourse train: lenet") == 1  # one header: rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == [".cnncourse.lock", "checkpoint.pt", "confusion.png", "curves.png",
                                                    "metrics.json", "model.pt", "run.json"]  # rank 0 held the lock
    again = torchrun("-m", "cnncourse", "train", "--out", str(out), "--resume", "--epochs", "3", "--no-progress",
                     "--threads", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    resumed = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3] and resumed["history"][:2] == metrics["history"]
