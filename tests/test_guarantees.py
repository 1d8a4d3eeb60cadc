"""Guarantees of README and of the public docstrings that no other test held (issue 28).

tests/GUARANTEES.md lists every guarantee with the test that holds it; the tests here are the ones
that were missing. Real behaviour throughout: small real tensors, the quick-mode samples packaged
with cnncourse, real PNG and HDF5 files under tmp_path, real subprocesses where a file is copied.
``test_guarantees_file_names_real_tests`` keeps GUARANTEES.md honest: every test it names exists.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import os
import platform
import random
import re
import runpy
import subprocess
import sys
import textwrap
import types
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnncourse
from cnncourse import checkpointing, config
from cnncourse.checkpointing import CheckpointError, atomic_write, load_checkpoint, remove_stale_temporaries
from cnncourse.data import (DATASETS, NORMALIZATION, ChecksumError, DataError, DataRecipe, DataUnavailableError,
                            SampleDataset, article_transform, data_recipe, dataset_info, default_num_workers,
                            default_transform, folder_info, folder_statistics, get_dataset, is_known_name,
                            make_loader, pixel_statistics, recipe_transform, stratified_split, to_tensors)
from cnncourse.data import galaxy10 as galaxy10_module
from cnncourse.fastdata import TensorLoader, fast_loaders
from cnncourse.train import (History, TrainingDiverged, TrainState, default_device, fit, make_optimizer,
                             make_scheduler, predict, resolve_amp, resolve_device, train_one_epoch)

REPO = Path(__file__).resolve().parents[1]
GUARANTEES = REPO / "tests" / "GUARANTEES.md"
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(classes: int = 4, channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, classes))


def toy_images(n: int = 64, size: int = 8, channels: int = 1, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 4, (n,), generator=generator)


def toy_loader(n: int = 64, batch_size: int = 16, **kwargs) -> TensorLoader:
    images, labels = toy_images(n)
    return TensorLoader(images, labels, batch_size=batch_size, mean=(0.5,), std=(0.25,), **kwargs)


def write_pngs(folder: Path, counts: dict, size=(6, 6), mode: str = "RGB", seed: int = 0) -> Path:
    """Real PNG files of random pixels: ``counts[class]`` of them per class folder; ``size`` is (width, height)."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / name / f"{i}.png")
    return folder


def write_galaxy_h5(path: Path, n: int = 60, size: int = 12, seed: int = 0) -> Path:
    """A small .h5 laid out like astroNN's Galaxy10 files: random uint8 images, labels 0-9."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                         chunks=(1, size, size, 3))
        f.create_dataset("ans", data=(np.arange(n) % 10).astype(np.uint8))
        for key in ("ra", "dec", "redshift", "pxscale"):
            f.create_dataset(key, data=np.full(n, np.nan))
    return path


def trust_galaxy_file(monkeypatch, name: str, path: Path, **changes) -> None:
    """The registry expects ``path``'s own SHA-256 (the test file is not Zenodo's)."""
    spec = galaxy10_module.GALAXY10_FILES[name]
    fields = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": None, **changes}
    monkeypatch.setitem(galaxy10_module.GALAXY10_FILES, name, dataclasses.replace(spec, **fields))


def same(a, b) -> bool:
    """Deep equality of nested state (dicts, lists, tuples, tensors, arrays, numbers)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# --------------------------------------------------------------------------------------- GUARANTEES.md itself
def test_guarantees_file_names_real_tests():
    """Every ``tests/...::test_name`` GUARANTEES.md names is a test function defined in that file, and
    every row of its tables names at least one."""
    text = GUARANTEES.read_text()
    references = re.findall(r"(tests/[\w/]+\.py)::(\w+)", text)
    assert len(references) >= 40, "GUARANTEES.md names too few tests"
    defined = {}
    for path in {p for p, _ in references}:
        source = REPO / path
        assert source.is_file(), f"GUARANTEES.md names {path}, which does not exist"
        tree = ast.parse(source.read_text())
        defined[path] = {node.name for node in ast.walk(tree)
                         if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")}
    missing = sorted(f"{path}::{name}" for path, name in references if name not in defined[path])
    assert not missing, f"GUARANTEES.md names tests that do not exist: {missing}"
    rows = [line for line in text.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    bodies = [row for row in rows if not row.startswith("| where")]
    assert bodies, "GUARANTEES.md has no table rows"
    bare = [row for row in bodies if not re.search(r"tests/[\w/]+\.py::\w+", row)]
    assert not bare, f"rows without a test: {bare}"


# --------------------------------------------------------------------------------------- README: quick mode
def test_set_quick_mode_true_gives_the_packaged_samples_for_every_data_set(no_network, tmp_path):
    assert os.environ[config.QUICK_ENV] == "0" and not cnncourse.quick_mode()
    cnncourse.set_quick_mode(True)  # the Python switch wins over the environment
    for name in DATASETS:
        for split in ("train", "test"):
            dataset = get_dataset(name, split, root=tmp_path / "nothing-here")
            assert isinstance(dataset, SampleDataset) and dataset.name == name and len(dataset) > 0
    cnncourse.set_quick_mode(None)
    assert not cnncourse.quick_mode()


def test_quick_mode_is_off_unless_turned_on(monkeypatch, tmp_path, no_network):
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    config.set_quick_mode(None)
    assert not config.quick_mode()
    with pytest.raises(DataUnavailableError):  # the real data set is asked for, not the sample
        get_dataset("mnist", root=tmp_path, download=False)
    monkeypatch.setenv(config.QUICK_ENV, "1")
    assert config.quick_mode()
    config.set_quick_mode(False)
    assert not config.quick_mode()


def test_the_root_conftest_turns_quick_mode_on_for_the_notebook_run(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "0")
    monkeypatch.setenv("TQDM_DISABLE", "0")  # recorded, so that the teardown restores both
    monkeypatch.delenv("TQDM_DISABLE")
    runpy.run_path(str(REPO / "conftest.py"))  # what `pytest --nbval notebooks` loads before any kernel starts
    assert os.environ[config.QUICK_ENV] == "1" and config.quick_mode()


def test_quick_mode_touches_neither_the_network_nor_the_data_folder(no_network, monkeypatch, tmp_path):
    root, env_root = tmp_path / "root-data", tmp_path / "env-data"
    monkeypatch.setenv(config.DATA_ENV, str(env_root))
    with cnncourse.quick(True):
        for name in DATASETS:
            for where in (root, None):
                images, _ = to_tensors(get_dataset(name, "test", root=where))
                assert images.dtype == torch.uint8 and len(images) > 0
            train, test = fast_loaders(name, batch_size=32, root=root)
            assert train.num_samples > 0 and test.num_samples > 0
    assert not root.exists() and not env_root.exists()


# --------------------------------------------------------------------------------------- README: data
# README's table: the files each data set needs, relative to the data folder.
DATA_FILES = {"mnist": ("MNIST/raw", "train-images-idx3-ubyte.gz"),
              "fashion-mnist": ("FashionMNIST/raw", "train-images-idx3-ubyte.gz"),
              "cifar10": (".", "cifar-10-python.tar.gz"),
              "galaxy10": ("galaxy10", "Galaxy10_DECals.h5"),
              "galaxy10-sdss": ("galaxy10", "Galaxy10.h5")}


def test_the_data_folder_is_root_else_cnncourse_data_else_the_cache(no_network, monkeypatch, tmp_path):
    for name, (folder, filename) in DATA_FILES.items():
        for given, env in ((tmp_path / "given", tmp_path / "env"), (None, tmp_path / "env")):
            monkeypatch.setenv(config.DATA_ENV, str(env))
            expected = ((given if given is not None else env) / folder).resolve()
            with pytest.raises(DataUnavailableError) as caught:
                get_dataset(name, root=given, download=False)
            message = str(caught.value)
            assert f"belong in {str(expected).rstrip('/.')}" in message.replace("/.:", ":") and filename in message
            assert dataset_info(name).location(given).resolve() == expected
    monkeypatch.delenv(config.DATA_ENV)
    assert config.data_root() == Path.home() / ".cache" / "cnncourse"
    assert config.data_root(tmp_path) == tmp_path


def test_the_quick_mode_samples_are_the_ones_readme_describes():
    from cnncourse.data.imageops import resize_array
    from cnncourse.data.samples import DECALS_TO_SDSS
    with cnncourse.quick(True):
        samples = {(name, split): get_dataset(name, split) for name in DATASETS for split in ("train", "test")}
    for name in ("mnist", "fashion-mnist"):  # 500 + 200 original images, balanced by class
        train, test = samples[name, "train"], samples[name, "test"]
        assert set(Counter(train.targets).values()) == {50} and set(Counter(test.targets).values()) == {20}
        assert all("-idx3-ubyte.gz[" in s for s in train.sources + test.sources)
    train, test = samples["cifar10", "train"], samples["cifar10", "test"]
    assert train.sources[:200] == [f"data_batch_1[{i}]" for i in range(200)]  # the exact first 200
    assert len(train) == 2000 and all(s.startswith("cifar10-jpeg/train/") for s in train.sources[200:])
    assert len(test) == 200 and all(s.startswith("cifar10-jpeg/test/") for s in test.sources)
    decals = [samples["galaxy10", split] for split in ("train", "test")]
    assert sum(len(d) for d in decals) == 120 and all(d.data.shape[1:] == (256, 256, 3) for d in decals)
    assert sum(s.startswith("exact10.npz") for d in decals for s in d.sources) == 10
    for split, source in zip(("train", "test"), decals):
        sdss = samples["galaxy10-sdss", split]
        assert sdss.data.shape[1:] == (69, 69, 3) and "Stand-in" in sdss.note
        by_source = {s: (image, label) for s, image, label in zip(source.sources, source.data, source.targets)}
        assert len(sdss) == sum(label in DECALS_TO_SDSS for label in source.targets)
        for s, image, label in zip(sdss.sources, sdss.data, sdss.targets):
            original, original_label = by_source[s]
            assert label == DECALS_TO_SDSS[original_label]
            assert np.array_equal(image, resize_array(original, 69))


def test_a_galaxy10_download_shows_a_progress_bar_and_lands_only_when_checked(no_network, monkeypatch, tmp_path,
                                                                             capsys):
    source = write_galaxy_h5(tmp_path / "zenodo" / "Galaxy10_DECals.h5")
    root = tmp_path / "data"
    target = root / "galaxy10" / "Galaxy10_DECals.h5"
    trust_galaxy_file(monkeypatch, "galaxy10", source, url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(ChecksumError, match="SHA-256"):
        get_dataset("galaxy10", root=root)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()
    capsys.readouterr()
    trust_galaxy_file(monkeypatch, "galaxy10", source, url=source.as_uri())
    train = get_dataset("galaxy10", "train", root=root)
    err = capsys.readouterr().err
    assert "Galaxy10_DECals.h5" in err and "100%" in err  # tqdm's bar, finished
    assert target.read_bytes() == source.read_bytes() and not target.with_name(target.name + ".part").exists()
    assert len(train) == 50 and train[0][0].size == (12, 12)  # 6 per class, 1 of them held out


# --------------------------------------------------------------------------------------- README: command line
def test_the_listings_name_every_model_data_set_and_the_machine(capsys, monkeypatch):
    from cnncourse.cli import main
    from cnncourse.models import MODELS, get_model
    from cnncourse.train import cpu_has_native_bf16
    from cnncourse.utils import count_parameters
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in MODELS:
        with torch.device("meta"):
            count = count_parameters(get_model(name, num_classes=10, in_channels=3))
        assert any(line.split() == [name, f"{count:,}"] for line in lines), name
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        info = dataset_info(name)
        assert f"{name} " in out and info.title in out and ", ".join(info.classes) in out
        assert f"files in {info.location()}" in out
    for scale in ("sample", "laptop", "full"):
        config.set_scale(scale)
        assert main(["info"]) == 0
        out = capsys.readouterr().out
        assert torch.__version__ in out and "device" in out and f"data folder {config.data_root()}" in out
        assert f"scale       {scale} ({config.SCALES[scale]})" in out
        assert ("native bf16 yes" in out) == bool(cpu_has_native_bf16())


def test_the_benchmark_reports_whether_this_cpu_has_native_bf16():
    import importlib.util

    from cnncourse.train import cpu_has_native_bf16
    spec = importlib.util.spec_from_file_location("train_speed", REPO / "benchmarks" / "train_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    native = {True: "yes", False: "no", None: "unknown"}[cpu_has_native_bf16()]
    assert bench.hardware()["cpu_features"].endswith(f"native bf16: {native}")


def test_cnncourse_debug_1_shows_the_traceback_like_debug(tmp_path, monkeypatch, capsys):
    from cnncourse.cli import main
    from cnncourse.runconfig import TrainConfig
    out = tmp_path / "run"
    out.mkdir()
    settings = TrainConfig(model="lenet", data="cifar10", quick=True).to_dict()
    (out / "run.json").write_text(json.dumps({"settings": settings}))
    (out / "checkpoint.pt").write_bytes(b"")  # a damaged checkpoint
    argv = ["train", "--out", str(out), "--resume", "--no-progress"]
    monkeypatch.delenv("CNNCOURSE_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is empty (0 bytes)" in err and "Traceback" not in err
    monkeypatch.setenv("CNNCOURSE_DEBUG", "1")
    with pytest.raises(CheckpointError, match="is empty"):
        main(argv)


def test_preset_and_loader_choose_the_same_images_on_the_command_line():
    from cnncourse.cli_train import _build_data
    from cnncourse.runconfig import TrainConfig
    config.set_quick_mode(True)
    firsts = {}
    for preset, mean in (("course", NORMALIZATION["cifar10"][0]), ("article", (0.5, 0.5, 0.5))):
        for loader in ("fast", "torch"):
            settings = TrainConfig(model="lenet", data="cifar10", loader=loader, preset=preset, workers=0, quick=True)
            train, _, test, _, _ = _build_data(settings, torch.device("cpu"), 0)
            if loader == "fast":
                assert train.mean == test.mean == mean
            else:
                normalize = train.dataset.transform.transforms[-1]
                assert tuple(normalize.mean) == mean
            firsts[preset, loader] = next(iter(test))[0][0]
        assert torch.allclose(firsts[preset, "fast"], firsts[preset, "torch"], atol=1e-5)
    assert not torch.allclose(firsts["course", "fast"], firsts["article", "fast"])


def test_resume_accepts_the_machine_options_and_more_epochs_and_shows_the_progress_bar(tmp_path, capsys):
    from cnncourse.cli import main
    from cnncourse.runconfig import RESUMABLE
    assert RESUMABLE == ("epochs", "device", "threads", "workers", "data_root")  # README's list
    out = tmp_path / "run"
    assert main(["train", "--model", "lenet", "--data", "mnist", "--quick", "--train-subset", "50", "--batch-size",
                 "25", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--batch-size", "10"]) == 2
    assert "--batch-size 10 (the run used 25)" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--device", "cpu", "--threads", "1",
                 "--workers", "0", "--data-root", str(tmp_path / "elsewhere")]) == 0
    assert "epoch 2/2" in capsys.readouterr().err  # the progress bar, without --no-progress
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_batches_are_made_on_the_device_that_holds_the_uint8_images():
    with cnncourse.quick(True):
        train, test = fast_loaders("cifar10", batch_size=32, augment=True)
    assert train.images.dtype == test.images.dtype == torch.uint8 and len(train.images) == 2000
    images, labels = toy_images(12, channels=3)
    for augment in (None, "crop-flip", "galaxy"):
        loader = TensorLoader(images, labels, batch_size=5, shuffle=True, augment=augment, mean=(0.5,) * 3,
                              std=(0.25,) * 3)
        assert loader.to("meta") is loader and loader.images.device.type == "meta"  # shapes only: no CPU copy
        x, y = next(iter(loader))
        assert x.device.type == y.device.type == "meta" and x.dtype == torch.float32 and x.shape == (5, 3, 8, 8)


def test_a_copied_train_py_uses_parallel_py_beside_it_and_asks_for_it_under_torchrun(tmp_path):
    both, alone = tmp_path / "both", tmp_path / "alone"
    for folder, names in ((both, ("train.py", "parallel.py")), (alone, ("train.py",))):
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes((REPO / "cnncourse" / name).read_bytes())
    script = tmp_path / "use_them.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util, os, sys
        sys.modules['cnncourse'] = None  # any 'import cnncourse...' now fails
        def load(folder, name):
            sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(name, os.path.join(folder, 'train.py'))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.path.remove(folder)
            return module
        alone = load({str(alone)!r}, 'train_alone')
        assert alone.parallel is None
        import torch
        os.environ['WORLD_SIZE'] = '2'
        try:
            alone.fit(torch.nn.Linear(4, 2), [(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))], epochs=1,
                      progress=False)
        except ImportError as error:
            assert 'parallel.py' in str(error), error
        else:
            raise AssertionError('torchrun without parallel.py was accepted')
        del os.environ['WORLD_SIZE']
        both = load({str(both)!r}, 'train_both')
        assert os.path.dirname(both.parallel.__file__) == {str(both)!r}, both.parallel
        print('OK')
    """))
    result = subprocess.run([sys.executable, "-s", "-E", str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")
def test_under_torchrun_only_rank_0_shows_the_progress_bar_and_writes_the_checkpoint(tmp_path):
    script = tmp_path / "fit_two.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import torch
        from cnncourse import checkpointing
        from cnncourse.fastdata import TensorLoader
        from cnncourse.train import fit

        real_save = checkpointing.save_checkpoint

        def save_and_log(path, state):  # the real write, and which process made it
            with open(sys.argv[1], "a") as log:
                log.write(os.environ["RANK"] + "\\n")
            return real_save(path, state)

        checkpointing.save_checkpoint = save_and_log
        torch.manual_seed(0)
        images, labels = torch.randint(0, 256, (32, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 2, (32,))
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        fit(model, TensorLoader(images, labels, batch_size=8), epochs=2, device="cpu", progress=True,
            checkpoint=sys.argv[2])
    """))
    log, checkpoint = tmp_path / "writes.log", tmp_path / "ck.pt"
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(script), str(log), str(checkpoint)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**env, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    starts = [len(re.findall(rf"epoch {e}/2: +0%", result.stderr)) for e in (1, 2)]  # each bar starts once
    assert starts == [1, 1], result.stderr[-3000:]
    assert log.read_text().split() == ["0", "0"] and load_checkpoint(checkpoint)["epoch"] == 2


# --------------------------------------------------------------------------------------- train.py
def test_on_batch_is_called_after_every_step_with_its_loss():
    loader = toy_loader(60, batch_size=16)
    model = tiny()
    seen = []
    result = train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss(),
                             on_batch=lambda step, loss: seen.append((step, float(loss))))
    assert [step for step, _ in seen] == list(range(len(loader))) == [0, 1, 2, 3]
    sizes = [16, 16, 16, 12]
    assert result["count"] == 60
    assert result["loss"] == pytest.approx(sum(loss * n for (_, loss), n in zip(seen, sizes)) / 60, rel=1e-6)


def test_make_optimizer_and_make_scheduler_pass_objects_and_callables_through():
    model = nn.Linear(3, 2)
    given = torch.optim.SGD(model.parameters(), lr=0.1)
    assert make_optimizer(model, given) is given
    called = []
    made = make_optimizer(model, lambda params: called.append(list(params)) or given)
    assert made is given and [p.shape for p in called[0]] == [p.shape for p in model.parameters()]
    group = make_optimizer(model, "sgd", lr=0.1, momentum=0.9).param_groups[0]
    assert group["nesterov"] is True and group["momentum"] == 0.9
    assert make_optimizer(model, "sgd", momentum=0.0).param_groups[0]["nesterov"] is False
    seen = []

    def schedule(optimizer, total_steps):
        seen.append((optimizer, total_steps))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    assert isinstance(make_scheduler(given, schedule, 40, 0.1), torch.optim.lr_scheduler.LambdaLR)
    assert seen == [(given, 40)]
    fit(tiny(), toy_loader(64, batch_size=16), epochs=3, optimizer="sgd", lr=0.01, schedule=schedule, device="cpu",
        progress=False)
    assert seen[-1][1] == 3 * 4  # stepped after every batch: epochs x batches


def test_resolve_device_takes_what_is_here_and_default_device_is_the_best():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert default_device().type == expected
    assert resolve_device(None) == resolve_device("auto") == default_device()
    assert resolve_device("cpu") == torch.device("cpu")
    for name, message in (("gpu7", "is not a device name"), ("meta", "holds shapes, not data")):
        with pytest.raises(ValueError, match=message):
            resolve_device(name)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda")


def test_a_history_record_has_every_column_and_no_test_data_means_no_predictions():
    loader = toy_loader(64, batch_size=16)
    history = fit(tiny(), loader, toy_loader(32), epochs=2, val_data=toy_loader(32), lr=0.01, device="cpu",
                  progress=False)
    assert history.columns == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                               "lr", "seconds", "train_images_per_s"]
    assert history.epoch == [1, 2] and history.test_acc[0] is None and history.val_acc[0] is not None
    for record in history:
        assert record["seconds"] > 0 and record["train_images_per_s"] > 64 / record["seconds"]
        assert all(0 <= record[k] <= 1 for k in ("train_acc", "val_acc"))
    assert 0 <= history.test_acc[-1] <= 1 and history.predictions is not None
    alone = fit(tiny(), loader, epochs=1, device="cpu", progress=False)
    assert alone.predictions is None and alone.test_acc == [None]


def test_history_save_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("old")
    other_name = tmp_path / "link.json"
    os.link(path, other_name)  # a rewrite in place would change both names; a rename leaves the old file
    history = History([{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5}])
    history.save(path)
    assert History.load(path) == history and other_name.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "link.json"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(b"the previous checkpoint")

    def half_then_fail(handle):
        handle.write(b"half a new one")
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="went away"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # the temporary file is gone
    assert atomic_write(path, b"new") == path and path.read_bytes() == b"new"


def _live_state(loader):
    """A TrainState in the middle of a run: momentum buffers, a schedule half-way, one epoch of history."""
    model = tiny()
    optimizer = make_optimizer(model, "sgd", lr=0.05)
    scheduler = make_scheduler(optimizer, "cosine", 2 * len(loader), 0.05)
    options = dict(optimizer="sgd", lr=0.05, weight_decay=0.0, momentum=0.9, schedule="cosine", label_smoothing=0.0,
                   grad_clip=None, amp="None", seed=1)
    state = TrainState(model, optimizer, scheduler, None, 2, loader, options)
    result = train_one_epoch(model, loader, optimizer, nn.CrossEntropyLoss(), scheduler=scheduler)
    state.history.append({"epoch": 1, "train_loss": result["loss"]})
    state.epoch = 1
    return state


def _everything(state):
    return {"model": {k: v.clone() for k, v in state.model.state_dict().items()},
            "optimizer": copy.deepcopy(state.optimizer.state_dict()),
            "scheduler": copy.deepcopy(state.scheduler.state_dict()), "history": state.history.to_list(),
            "epoch": state.epoch, "python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(), "loader": state.loader.state_dict()}


def test_a_refused_checkpoint_changes_nothing_in_the_train_state(tmp_path):
    saved = tmp_path / "ck.pt"
    fit(tiny(), toy_loader(shuffle=True, seed=3), epochs=2, optimizer="sgd", lr=0.05, schedule="cosine", seed=1,
        checkpoint=saved, device="cpu", progress=False)
    good = load_checkpoint(saved)
    wrong_shape = {k: (v[:1] if k == "0.weight" else v) for k, v in good["model"].items()}
    spoiled = {
        "not ours": {"weights": good["model"]},
        "malformed epoch": {**good, "epoch": 7},
        "malformed rng": {**good, "rng": {"torch": 5}},
        "other settings": {**good, "options": {**good["options"], "lr": 0.5}},
        "other schedule length": {**good, "epochs": 5, "history": good["history"]},
        "other model": {**good, "model": wrong_shape},  # loaded in part before the error
        "broken optimizer": {**good, "optimizer": {"state": {}, "param_groups": "broken"}},  # after the model
        "broken scheduler": {**good, "scheduler": "broken"},  # after the model and the optimizer
        "broken loader state": {**good, "rng": {**good["rng"], "loader": {}}},  # after everything but the loader
    }
    loader = toy_loader(shuffle=True, seed=3)
    state = _live_state(loader)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    before = _everything(state)
    path = tmp_path / "spoiled.pt"
    for what, entries in spoiled.items():
        with pytest.raises(ValueError):  # TrainState alone: checked first, put back after a failure
            state.load_state_dict(copy.deepcopy(entries))
        assert same(_everything(state), before), what
        torch.save(entries, path)
        on_disk = path.read_bytes()
        with pytest.raises(CheckpointError):  # a ValueError that says why
            checkpointing.resume(state, path, quiet=True)
        assert same(_everything(state), before), what
        assert path.read_bytes() == on_disk, what
    assert checkpointing.resume(state, tmp_path / "absent.pt", quiet=True) is False and same(_everything(state), before)
    assert checkpointing.resume(state, saved, quiet=True) is True and state.epoch == 2 and len(state.history) == 2


def test_an_infinite_loss_also_stops_the_run():
    calls = []

    def infinite_at_the_third_step(logits, labels):
        calls.append(1)
        loss = nn.functional.cross_entropy(logits, labels)
        return loss + float("inf") if len(calls) == 3 else loss

    with pytest.raises(TrainingDiverged, match=r"loss became inf at epoch 1, step 3 \(global step 3\): try a lower"):
        fit(tiny(), toy_loader(64), epochs=2, loss_fn=infinite_at_the_third_step, device="cpu", progress=False)


def test_the_seed_seeds_python_numpy_and_torch():
    class Draws(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.draws = nn.Linear(64, 4), []

        def forward(self, x):
            if not self.draws:
                self.draws = [random.random(), float(np.random.rand()), float(torch.rand(()))]
            return self.linear(x.flatten(1))

    def first_draws(seed, disturb):
        random.seed(disturb), np.random.seed(disturb), torch.manual_seed(disturb)
        model = Draws()
        fit(model, toy_loader(32), epochs=1, seed=seed, device="cpu", progress=False)
        return model.draws

    assert first_draws(7, 1) == first_draws(7, 2)
    assert all(a != b for a, b in zip(first_draws(7, 1), first_draws(8, 1)))


def test_loss_fn_replaces_cross_entropy():
    loader = toy_loader(64, batch_size=16)
    model = tiny()
    with torch.no_grad():
        expected = sum(2 * nn.functional.cross_entropy(model(x), y).item() * len(y) for x, y in loader) / 64
    history = fit(model, loader, epochs=1, optimizer="sgd", momentum=0.0, lr=1e-12, device="cpu", progress=False,
                  loss_fn=lambda logits, labels: 2 * nn.functional.cross_entropy(logits, labels))
    assert history.train_loss[0] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------- checkpointing.py
def test_load_checkpoint_refuses_empty_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    fit(tiny(), toy_loader(32), epochs=1, checkpoint=good, device="cpu", progress=False)
    files = {"empty": b"", "truncated": good.read_bytes()[:2000], "foreign": b"not a checkpoint at all\n" * 40}
    for what, data in files.items():
        path = tmp_path / f"{what}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        assert isinstance(caught.value, ValueError) and str(path) in str(caught.value), what
        assert "delete it to start again" in str(caught.value)
    assert load_checkpoint(good)["epoch"] == 1


def test_stale_temporaries_of_a_live_process_are_kept(tmp_path):
    path = tmp_path / "ck.pt"
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = tmp_path / f".ck.pt.{finished.pid}.0123abcd.tmp"
    live = tmp_path / f".ck.pt.{os.getppid()}.4567cdef.tmp"  # the process that started pytest
    other = tmp_path / f".model.pt.{finished.pid}.89abcdef.tmp"  # another file's temporary
    for stale in (dead, live, other):
        stale.write_bytes(b"half")
    assert remove_stale_temporaries(path) == [dead]
    assert live.exists() and other.exists() and not dead.exists()


# --------------------------------------------------------------------------------------- fastdata.py
def test_tensor_loader_batches_are_float32_images_and_int64_labels():
    images = torch.randint(0, 256, (10, 6, 6), dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(10, dtype=torch.int32) % 3, batch_size=4)  # [N, H, W]: one channel
    assert loader.images.shape == (10, 1, 6, 6) and loader.pad == 4
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (4, 1, 6, 6)
    assert torch.allclose(x, images[:4, None].float() / 255, atol=1e-6)  # no statistics: pixels scaled to 0-1
    normalised = TensorLoader(images, torch.zeros(10), batch_size=10, mean=(0.4,), std=(0.2,), channels_last=True)
    x, _ = next(iter(normalised))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(normalised.unnormalize(x), images[:, None].float() / 255, atol=1e-6)
    recipe = data_recipe("mnist")
    assert TensorLoader(images, torch.zeros(10), recipe=recipe, augment=True).pad == recipe.crop_padding == 2


def test_fast_loaders_never_shuffle_or_augment_the_test_and_validation_loaders():
    recipe = DataRecipe((0.3,), (0.2,), crop_padding=3, hflip=True)
    with cnncourse.quick(True):
        named = fast_loaders("mnist", batch_size=16, augment="galaxy", val_fraction=0.2)
        by_recipe = fast_loaders("mnist", batch_size=200, augment=True, recipe=recipe)
        given = fast_loaders("mnist", batch_size=16, test_batch_size=10, val_fraction=0.2)
    train, val, test = named
    assert train.augment == "galaxy" and train.shuffle
    for held in (val, test, by_recipe[1], given[1], given[2]):
        assert held.augment is None and not held.shuffle
        first = next(iter(held))[0]
        assert torch.equal(first, next(iter(held))[0])
        assert torch.allclose(held.unnormalize(first), held.images[:len(first)].float() / 255, atol=1e-6)
    assert (val.batch_size, test.batch_size, by_recipe[1].batch_size) == (256, 256, 400)
    assert given[1].batch_size == given[2].batch_size == 10
    assert by_recipe[0].mean == by_recipe[1].mean == (0.3,)
    assert by_recipe[0].pad == 3 and by_recipe[0].augment == "crop-flip"


# --------------------------------------------------------------------------------------- cnncourse.data
def test_the_seed_fixes_the_split_of_galaxy10_and_of_a_single_image_folder(tmp_path, monkeypatch, no_network):
    path = write_galaxy_h5(tmp_path / "data" / "galaxy10" / "Galaxy10_DECals.h5")
    trust_galaxy_file(monkeypatch, "galaxy10", path)
    folder = write_pngs(tmp_path / "pictures", {"a": 10, "b": 10, "c": 10}, size=(4, 4))

    def tests(name, seed, **kwargs):
        return list(get_dataset(name, "test", seed=seed, **kwargs).indices)

    for name, kwargs in (("galaxy10", {"root": tmp_path / "data"}), (folder, {})):
        assert tests(name, 0, **kwargs) == tests(name, 0, **kwargs) != tests(name, 1, **kwargs)
        train = set(get_dataset(name, "train", seed=1, **kwargs).indices)
        assert not train & set(tests(name, 1, **kwargs))


def test_every_returned_data_set_has_classes_and_targets(tmp_path, monkeypatch, no_network):
    path = write_galaxy_h5(tmp_path / "data" / "galaxy10" / "Galaxy10_DECals.h5")
    trust_galaxy_file(monkeypatch, "galaxy10", path)
    flat = write_pngs(tmp_path / "flat", {"a": 3, "b": 3})
    split = tmp_path / "split"
    write_pngs(split / "train", {"a": 2, "b": 2})
    write_pngs(split / "test", {"a": 1, "b": 1})
    datasets = [get_dataset("galaxy10", s, root=tmp_path / "data") for s in ("train", "test")]
    datasets += [get_dataset(folder, s) for folder in (flat, split) for s in ("train", "test")]
    with cnncourse.quick(True):
        for name in DATASETS:
            datasets += [get_dataset(name, "train"), get_dataset(name, "test"),
                         get_dataset(name, "val", val_fraction=0.2), get_dataset(name, "train", val_fraction=0.2),
                         get_dataset(name, "train", subset=40)]
    for dataset in datasets:
        assert len(dataset.targets) == len(dataset) > 0, dataset
        assert set(int(t) for t in dataset.targets) <= set(range(len(dataset.classes))), dataset
        assert int(dataset[0][1]) == int(dataset.targets[0]), dataset


def test_the_data_errors_are_the_kinds_their_docstrings_say():
    assert issubclass(DataError, ValueError)
    for error in (DataUnavailableError, ChecksumError):  # not ValueErrors: callers can tell them apart
        assert issubclass(error, RuntimeError) and not issubclass(error, ValueError)
    assert issubclass(CheckpointError, ValueError) and issubclass(checkpointing.CheckpointWriteError, OSError)
    assert issubclass(TrainingDiverged, FloatingPointError)


def test_an_image_folder_reads_val_for_test_and_hands_the_transform_resized_rgb_images(tmp_path):
    root = tmp_path / "pictures"
    write_pngs(root / "train", {"a": 3, "b": 3}, size=(7, 9), mode="L")
    write_pngs(root / "val", {"a": 2, "b": 1}, size=(7, 9), mode="L")
    test = get_dataset(root, "test", image_size=5, transform=lambda image: (image.mode, image.size))
    assert len(test) == 3 and test.targets == [0, 0, 1] and test.root == str(root / "val")
    assert test[0] == (("RGB", (5, 5)), 0)


def test_stratified_split_is_sorted_and_bounded_per_class():
    labels = np.repeat([0, 1, 2, 3], [1, 2, 5, 17])
    train, test = stratified_split(labels, test_fraction=0.1, seed=0)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[test], minlength=4).tolist() == [0, 1, 1, 2]  # a class of 17 gives 2
    _, most = stratified_split(labels, test_fraction=0.9, seed=0)
    assert np.bincount(labels[most], minlength=4).tolist() == [0, 1, 4, 15]  # at most n - 1: train keeps one


def test_default_num_workers_is_zero_where_workers_cause_trouble(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if platform.system() == "Linux":
        assert default_num_workers() == max(0, min(4, len(os.sched_getaffinity(0)) - 1))
    with cnncourse.quick(True):
        assert default_num_workers() == 0
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert default_num_workers() == 0
    monkeypatch.delitem(sys.modules, "ipykernel")
    for system in ("Windows", "Darwin"):
        monkeypatch.setattr(platform, "system", lambda: system)
        assert default_num_workers() == 0


@pytest.mark.parametrize("workers", [
    0, 1])
def test_make_loader_with_a_seed_reproduces_shuffling_and_augmentation(workers):
    with cnncourse.quick(True):
        dataset = get_dataset("cifar10", "test", transform=default_transform("cifar10", train=True, augment=True))
    first = [make_loader(dataset, batch_size=8, shuffle=True, num_workers=workers, seed=3) for _ in range(2)]
    torch.manual_seed(123)
    x1, y1 = next(iter(first[0]))
    torch.rand(1000)                      # the training's own draws in between do not shift the augmentation
    x2, y2 = next(iter(first[1]))
    assert torch.equal(y1, y2) and torch.equal(x1, x2)
    before = torch.get_rng_state()
    next(iter(first[0]))
    assert torch.equal(before, torch.get_rng_state())   # nor does the loader shift the training's draws


def test_recipe_transform_order_and_overrides():
    recipe = DataRecipe((0.5,) * 3, (0.5,) * 3, crop_padding=2, hflip=True, vflip=True, rotation=30)

    def steps(transform):
        return [type(t).__name__ for t in transform.transforms]

    assert steps(recipe_transform(recipe, train=True, augment=True)) == [
        "SameSizeRandomCrop", "RandomRotation", "RandomHorizontalFlip", "RandomVerticalFlip", "ToTensor", "Normalize"]
    assert steps(recipe_transform(recipe, train=True)) == steps(recipe_transform(recipe, augment=True)) == [
        "ToTensor", "Normalize"]  # augmentation only for training images, and only when asked for
    assert steps(recipe_transform(recipe, image_size=8))[0] == "Resize"
    plain = recipe.without_augmentation()
    assert not plain.augments and (plain.mean, plain.std) == (recipe.mean, recipe.std) and recipe.augments
    override = DataRecipe((0.1,), (0.7,))
    normalize = default_transform("mnist", recipe=override).transforms[-1]
    assert tuple(normalize.mean) == (0.1,) and tuple(normalize.std) == (0.7,)
    assert steps(article_transform("galaxy10", image_size=64)) == [
        "Resize", "RandomRotation", "RandomHorizontalFlip", "ToTensor", "Normalize"]


def test_pixel_statistics_do_not_depend_on_the_order_or_the_block_size():
    images, _ = toy_images(50, size=5, channels=3)
    stats = pixel_statistics(images)
    assert pixel_statistics(images[torch.randperm(50)], block=7) == stats == pixel_statistics(images, block=1)


def test_folder_statistics_are_remembered_while_the_files_are_unchanged(tmp_path):
    root = write_pngs(tmp_path / "pictures", {"a": 3, "b": 3}, size=(5, 5))
    first = folder_statistics(root)
    assert folder_statistics(root) is first  # remembered, not measured again
    Image.new("RGB", (5, 5), (255, 255, 255)).save(root / "a" / "0.png")
    Image.new("RGB", (5, 5), (255, 255, 255)).save(root / "b" / "0.png")
    second = folder_statistics(root)
    assert second != first
    assert second == pixel_statistics(to_tensors(get_dataset(root, "train"))[0])


def test_sample_data_is_shared_read_only_and_carries_its_provenance():
    a, b = SampleDataset("mnist", "train"), SampleDataset("mnist", "train", image_size=14)
    assert np.shares_memory(a.data, b.data) and not a.data.flags.writeable
    with pytest.raises(ValueError):
        a.data[0, 0, 0] = 1
    assert b[0][0].size == (14, 14) and a[0][0].size == (28, 28)  # resized on the fly, .data untouched
    assert a.provenance["name"] == "mnist" and "licence" in a.provenance and len(a.sources) == len(a)


def test_folder_info_and_is_known_name(tmp_path):
    assert all(is_known_name(n) for n in ("CIFAR-10", "Fashion_MNIST", "fmnist", "galaxy10_decals", *DATASETS))
    root = write_pngs(tmp_path / "pictures", {"b": 2, "a": 2, "c": 2}, size=(6, 6), mode="L")
    assert not is_known_name("imagenet") and not is_known_name(root)
    info = folder_info(root)
    assert info.classes == ("a", "b", "c") and info.num_classes == 3 and info.in_channels == 3  # read as RGB
    assert info.image_size == 6 and info.mean == info.std == (0.5,) * 3  # placeholders
    assert data_recipe(root).mean != info.mean  # the loaders measure the real statistics


# --------------------------------------------------------------------------------------- on a GPU
@NEEDS_CUDA
def test_on_a_gpu_amp_is_automatic_loaders_follow_the_model_and_predictions_come_back_to_the_cpu():
    cuda = torch.device("cuda")
    assert resolve_amp(None, cuda) == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    loader = toy_loader(64)
    assert loader.device.type == "cpu"
    fit(tiny(), loader, epochs=1, device="cuda", progress=False)
    assert loader.images.device.type == "cuda"  # fit moved it to the model's device
    predictions = predict(tiny().to(cuda), toy_loader(32), keep_images=True)
    assert {t.device.type for t in predictions} == {"cpu"}
    x, y = next(iter(TensorLoader(*toy_images(8), batch_size=4, augment="crop-flip", device="cuda")))
    assert x.device.type == y.device.type == "cuda"
