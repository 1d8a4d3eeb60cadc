"""Notebook 7's code: a layer's heat map is placed on the input where its cells' receptive fields are
centred; torchvision's ResNet-50 weights fit the course's resnet50, and the notebook's own loading cell
reads them from torch's hub cache without the network."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cnncourse.exercises.nb07 import map_geometry, place_heatmap
from cnncourse.models import lenet, resnet20, resnet50

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "sources" / "labs" / "07_maps_experiments.py"   # the lab holds the loading code
WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V2


def _lenet_bn2():
    model = lenet(num_classes=10).eval()
    return model, [model.conv1, model.pool, model.conv2]


def _resnet20_layer3():
    model = resnet20(num_classes=10, in_channels=1).eval()
    return model, [model.conv1, model.layer2[0].conv1, model.layer3[0].conv1]


def _receptive_rows(model, layer, image_size, channels, row):
    """The input rows that cell (row, row) of `layer`'s maps depends on, found by autograd."""
    caught = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: caught.update(out=output))
    x = torch.randn(1, channels, image_size, image_size, requires_grad=True)
    try:
        model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(caught["out"][0, :, row, row].sum(), x)
    return grad[0].abs().sum(dim=(0, 2)).nonzero()[:, 0]


def test_the_geometry_of_lenets_bn2_and_resnet20s_layer3():
    """LeNet: 5x5 conv, 2x2 pool, 5x5 conv, no padding: cell i of bn2 is centred on pixel 2i + 6.5 and sees
    pixels 2i .. 2i + 13 (measured by autograd). ResNet-20: its padded 3x3 convs keep the centres, the two
    stride-2 stages make the jump 4: cell i of layer3 is centred on pixel 4i (measured on a 96-pixel image,
    where a middle cell's receptive field, 81 pixels wide, is not cut by the border)."""
    model, layers = _lenet_bn2()
    assert map_geometry(layers) == (2, 6.5)
    assert map_geometry([(5, 1, 0), (2, 2, 0), (5, 1, 0)]) == (2, 6.5)
    for i in (0, 4, 9):
        rows = _receptive_rows(model, model.bn2, 32, 3, i)
        assert rows.tolist() == list(range(2 * i, 2 * i + 14))
        assert (rows.min() + rows.max()).item() / 2 == 2 * i + 6.5
    model, layers = _resnet20_layer3()
    assert map_geometry(layers) == (4, 0.0)
    rows = _receptive_rows(model, model.layer3, 96, 1, 12)
    assert rows.tolist() == list(range(4 * 12 - 40, 4 * 12 + 41))


@pytest.mark.parametrize("shape, size, geometry, cell, pixels", [
    ((10, 10), (32, 32), (2, 6.5), (3, 7), ([12, 13], [20, 21])),       # LeNet's bn2: between two pixels
    ((7, 7), (28, 28), (4, 0.0), (2, 5), ([8], [20])),                 # ResNet-20's layer3: on a pixel
    ((10, 10), (32, 32), (2, 6.5), (0, 9), (list(range(0, 7)), list(range(25, 32)))),   # a corner cell
])
def test_one_hot_cell_lands_on_its_receptive_fields_centre(shape, size, geometry, cell, pixels):
    """A synthetic map with one hot cell: its peak (value 1 after scaling) covers exactly the input
    pixels nearest the cell's centre jump * i + start (at a corner cell, the border beyond it too)."""
    cam = torch.zeros(1, *shape)
    cam[0, cell[0], cell[1]] = 1.0
    placed = place_heatmap(cam, size, *geometry)[0]
    assert placed.shape == size and placed.min() == 0
    peak = (placed == placed.max()).nonzero()
    assert sorted(set(peak[:, 0].tolist())) == pixels[0] and sorted(set(peak[:, 1].tolist())) == pixels[1]
    jump, start = geometry
    weights_y, weights_x = placed.sum(dim=1), placed.sum(dim=0)
    if 0 < cell[0] < shape[0] - 1 and 0 < cell[1] < shape[1] - 1:      # a tent around an inner cell: its centre
        centre_y = (weights_y * torch.arange(size[0])).sum() / weights_y.sum()
        centre_x = (weights_x * torch.arange(size[1])).sum() / weights_x.sum()
        assert centre_y.item() == pytest.approx(jump * cell[0] + start)
        assert centre_x.item() == pytest.approx(jump * cell[1] + start)


def test_interpolating_to_the_image_size_misplaces_lenets_map():
    """The reported error: bilinear interpolation of bn2's 10 x 10 map to 32 x 32 (captum's
    LayerAttribution.interpolate does the same) puts cell i at 3.2 i + 1.1 instead of 2 i + 6.5."""
    cam = torch.zeros(1, 1, 10, 10)
    cam[0, 0, 0, 0] = 1.0
    up = torch.nn.functional.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert up.argmax().item() // 32 in (0, 1)                 # near 1.1, five pixels from the true 6.5
    assert place_heatmap(cam[:, 0], (32, 32), 2, 6.5)[0, 6, 6] == 1.0


def test_place_heatmap_agrees_with_grid_sample():
    torch.manual_seed(0)
    cam = torch.rand(3, 7, 9)
    h, w = cam.shape[1:]
    jump, start = 3, 2.5
    u_y = (torch.arange(30.0) - start) / jump
    u_x = (torch.arange(33.0) - start) / jump
    grid = torch.stack(torch.meshgrid(2 * u_x / (w - 1) - 1, 2 * u_y / (h - 1) - 1, indexing="xy"), dim=-1)
    sampled = torch.nn.functional.grid_sample(cam[:, None], grid[None].expand(3, -1, -1, -1), mode="bilinear",
                                              padding_mode="border", align_corners=True)[:, 0]
    low = sampled.amin(dim=(1, 2), keepdim=True)
    expected = (sampled - low) / (sampled.amax(dim=(1, 2), keepdim=True) - low)
    assert torch.allclose(place_heatmap(cam, (30, 33), jump, start), expected, atol=1e-6)


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
