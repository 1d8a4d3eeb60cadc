"""Notebook 7's transfer-learning code: torchvision's ResNet-50 weights fit the course's resnet50, and
the notebook's own loading cell reads them from torch's hub cache without the network."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cnncourse.models import resnet50

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "sources" / "07_what_the_network_looks_at.py"
WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V2


def _loading_cell() -> dict:
    """Run the notebook's cell that defines load_imagenet_resnet50 (the very code the notebook runs)."""
    jupytext = pytest.importorskip("jupytext")
    cells = [c.source for c in jupytext.read(SOURCE).cells
             if c.cell_type == "code" and "def load_imagenet_resnet50(" in c.source]
    assert len(cells) == 1, "the notebook defines load_imagenet_resnet50 in one cell"
    namespace: dict = {}
    exec(compile(cells[0], str(SOURCE), "exec"), namespace)
    return namespace


def _cache(torch_home: Path) -> Path:
    """Where torch.hub.load_state_dict_from_url keeps the weights file under TORCH_HOME."""
    return torch_home / "hub" / "checkpoints" / WEIGHTS.url.rsplit("/", 1)[1]


def test_torchvision_resnet50_has_the_courses_state_dict_layout():
    with torch.device("meta"):
        theirs = torchvision.models.resnet50().state_dict()
        ours = resnet50(num_classes=1000).state_dict()
    assert list(theirs) == list(ours)
    assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}


def test_the_weights_file_name_is_the_last_part_of_the_url():
    assert WEIGHTS.url.endswith("/resnet50-11ad3fa6.pth")


def test_the_notebooks_loading_cell_reads_cached_weights_without_the_network(no_network, monkeypatch, tmp_path):
    """A stand-in weights file (torchvision's layout, random numbers) where the download would put it.
    torch.hub checks the hash in the file name only when it downloads: a cached file is read as it is,
    so the stand-in loads although its SHA-256 does not start with 11ad3fa6."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert Path(torch.hub.get_dir()) == tmp_path / "hub"
    torch.manual_seed(0)
    stand_in = torchvision.models.resnet50().state_dict()
    _cache(tmp_path).parent.mkdir(parents=True)
    torch.save(stand_in, _cache(tmp_path))

    model = _loading_cell()["load_imagenet_resnet50"](num_classes=10, progress=False)

    assert isinstance(model.fc, nn.Linear) and (model.fc.in_features, model.fc.out_features) == (2048, 10)
    state = model.state_dict()
    for name, value in stand_in.items():
        if not name.startswith("fc."):
            assert torch.equal(state[name], value), name
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_the_notebooks_loading_cell_fails_with_an_oserror_offline(no_network, monkeypatch, tmp_path):
    """No cached file and no network: an OSError (urllib's URLError), which the notebook catches and
    explains, and no partial file left in the cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(OSError):
        _loading_cell()["load_imagenet_resnet50"](num_classes=10, progress=False)
    assert not _cache(tmp_path).exists()
    assert not [p for p in _cache(tmp_path).parent.iterdir() if p.is_file()]
