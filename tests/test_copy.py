"""Every module README says can be copied works when copied alone into an empty folder.

Each copy runs in a fresh Python process in which ``import cnncourse`` is impossible, and calls
one function of the copied file, so a hidden dependency on the package fails the test.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCK_CNNCOURSE = "import sys; sys.modules['cnncourse'] = None  # any 'import cnncourse...' now fails\n"

TINY_DATA = """
import torch
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
labels = torch.randint(0, 2, (64,))
images = torch.randn(64, 1, 8, 8) + labels.view(-1, 1, 1, 1).float()
loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))
"""

# file(s) copied -> code run beside them; it prints OK at the end
CASES = {
    "cnncourse/models/lenet.py": "import torch, lenet\n"
                                 "assert lenet.lenet()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)\n",
    "cnncourse/models/resnet.py": "import torch, resnet\n"
                                  "assert resnet.resnet20()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)\n",
    "cnncourse/models/vgg.py": "import torch, vgg\n"
                               "assert vgg.vgg11(num_classes=3)(torch.zeros(2, 3, 32, 32)).shape == (2, 3)\n",
    "cnncourse/models/article.py": "import torch, article\nmodel = article.resnet50_keras_article(in_channels=1)\n"
                                   "assert model.eval()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)\n",
    "cnncourse/models/vit.py": "import torch, vit\n"
                               "assert vit.vit_tiny()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)\n",
    "cnncourse/fastdata.py": "import torch, fastdata\n"
                             "images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)\n"
                             "loader = fastdata.TensorLoader(images, torch.zeros(10, dtype=torch.long), batch_size=4,"
                             " mean=(0.5,) * 3, std=(0.25,) * 3, augment='crop-flip', shuffle=True)\n"
                             "assert [len(x) for x, _ in loader] == [4, 4, 2]\n",
    "cnncourse/train.py": TINY_DATA + "import train\n"
                          "history = train.fit(model, loader, loader, epochs=3, lr=0.01, progress=False)\n"
                          "assert history.test_acc[-1] > 0.7, history\n"
                          "try:\n    train.fit(model, loader, epochs=1, checkpoint='ck.pt', progress=False)\n"
                          "except ImportError as error:\n    assert 'checkpointing.py' in str(error)\n"
                          "else:\n    raise AssertionError('a checkpoint without checkpointing.py was accepted')\n",
    "cnncourse/shapes.py": "import torch, shapes\n"
                           "model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())\n"
                           "assert shapes.count_macs(model, (1, 8, 8)) == 4 * 9 * 6 * 6\n"
                           "assert list(shapes.trace_shapes(model, ['0'], (1, 8, 8)).values())[0][-2:] == (6, 6)\n",
    "cnncourse/parallel.py": "import torch, parallel\n"
                             "assert parallel.setup('cpu') == (0, 1, torch.device('cpu'))  # one process: nothing to join\n",
    "cnncourse/train.py cnncourse/checkpointing.py": TINY_DATA + "import train\n"
                          "first = train.fit(model, loader, epochs=1, checkpoint='ck.pt', seed=1, progress=False)\n"
                          "resumed = train.fit(model, loader, epochs=2, checkpoint='ck.pt', resume=True, seed=1,\n"
                          "                    progress=False)\n"
                          "assert [r['epoch'] for r in resumed] == [1, 2] and resumed[0] == first[0]\n"
                          "import checkpointing\nassert checkpointing.load_checkpoint('ck.pt')['epoch'] == 2\n",
}


def readme_copyable() -> list:
    """The files README's "copy a single file" list names."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- copyable:start -->(.*?)<!-- copyable:end -->", text, re.S)
    assert block, "README lacks its <!-- copyable:start --> ... <!-- copyable:end --> list"
    return re.findall(r"`(cnncourse/[\w/]+\.py)`", block.group(1))


def test_readme_lists_exactly_the_files_tested_here():
    tested = {name for case in CASES for name in case.split()}
    assert set(readme_copyable()) == tested


@pytest.mark.parametrize("files", list(CASES))
def test_a_copied_module_works_without_the_package(tmp_path, files):
    for name in files.split():
        shutil.copy(REPO / name, tmp_path / Path(name).name)
    script = tmp_path / "use_it.py"
    script.write_text(BLOCK_CNNCOURSE + textwrap.dedent(CASES[files]) + "print('OK')\n")
    result = subprocess.run([sys.executable, "-s", "-E", str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]
