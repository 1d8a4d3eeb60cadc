"""Training speed: the articles' data pipeline against cnncourse's in-memory fast path, in one process.

For each case the same model is trained for the same number of steps, twice:

(a) the articles' way: a torchvision dataset decoded image by image with PIL, per-image
    transforms (``ToTensor`` + ``Normalize``, plus rotation and flip for galaxies), collated by a
    ``DataLoader``, float32, the classic ``zero_grad / forward / backward / step`` loop;
(b) cnncourse's fast path: the uint8 images held as one tensor on the device, normalised (and
    augmented) per batch there, trained with :func:`cnncourse.train.fit` — float32 on the CPU,
    so the model's arithmetic is the same as in (a); on CUDA fit's defaults (bf16 autocast) plus
    channels_last, since that is what the fast path is for.

It prints images/s for each, their ratio, and the hardware. Warm-up steps are excluded from the
timings; each measurement is repeated and the median is reported (the machine may be shared).

Cases:
  lenet-cifar10    LeNet (the article's, 62,050 parameters), CIFAR-10 (JPEG copy in
                   ../shared/datasets/cifar10-jpeg.tar.gz, extracted once to a cache folder),
                   batch 64, Adam lr 0.01, as in the LeNet article.
  resnet-fmnist    resnet20 (He et al.'s CIFAR ResNet, 0.27 M parameters: the ResNet a 2-core CPU
                   trains in minutes) on Fashion-MNIST 28x28, batch 128, Adam.
  resnet50-galaxy  torchvision-shaped ResNet-50 on 128-px Galaxy10 DECaLS images (the 120 real
                   images in ../shared/datasets/galaxy10 drawn with replacement), random rotation +
                   flip, batch 64, Adam. Runs only with CUDA unless named with --device cpu.

    python benchmarks/train_speed.py                          # lenet-cifar10,resnet-fmnist
    python benchmarks/train_speed.py --cases resnet50-galaxy --device cuda
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import statistics
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "datasets"
DEFAULT_CACHE = Path(os.environ.get("CNNCOURSE_BENCH_CACHE", Path.home() / ".cache" / "cnncourse" / "bench"))
CASES = ("lenet-cifar10", "resnet-fmnist", "resnet50-galaxy")


# --------------------------------------------------------------------------------------- hardware
def hardware() -> Dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_features": cpu_features(),
        "logical_cpus": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        info["load_average"] = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        pass
    return info


def cpu_features() -> str:
    """The vector and matrix units that decide CPU speed, and whether bf16 is native (it decides
    whether the bf16 rows help or hurt: emulated bf16 is about ten times slower)."""
    from cnncourse.train import cpu_has_native_bf16
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    units = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    native = {True: "yes", False: "no", None: "unknown"}[cpu_has_native_bf16()]
    return f"{', '.join(units) or 'unknown'}; native bf16: {native}"


# --------------------------------------------------------------------------------------- data preparation
def cifar_jpeg_folder(shared: Path, cache: Path, given: Optional[Path]) -> Path:
    """The extracted ``cifar10-jpeg`` folder (train/ and test/ in ImageFolder layout)."""
    if given is not None:
        return given
    target = cache / "cifar10-jpeg"
    if (target / "train").is_dir() and (target / ".complete").exists():
        return target
    archive = shared / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        raise SystemExit(f"{archive} not found: pass --shared DIR or --cifar-jpeg DIR")
    print(f"extracting {archive} to {cache} (once) ...", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    (target / ".complete").touch()
    return target


def fashion_folder(shared: Path, cache: Path) -> Path:
    """A torchvision-layout FashionMNIST root with the raw files unpacked (torchvision reads them unpacked)."""
    root = cache / "fmnist"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in sorted((shared / "FashionMNIST" / "raw").glob("*.gz")):
        out = raw / gz.name[:-3]
        if not out.exists():
            with gzip.open(gz, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return root


# --------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_article_loop(model: nn.Module, loader: DataLoader, device: torch.device, steps: int, warmup: int,
                      lr: float) -> float:
    """Images/s of the articles' loop over ``loader`` (fp32), after ``warmup`` untimed steps."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    images = 0
    running_loss = 0.0
    started = None
    iterator = iter(loader)
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            started = time.perf_counter()
        try:
            x, y = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            x, y = next(iterator)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()  # the articles accumulate loss.item() every step
        if step >= warmup:
            images += len(y)
    sync(device)
    return images / (time.perf_counter() - started)


def time_fast_path(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std, augment,
                   batch: int, device: torch.device, steps: int, warmup: int, lr: float,
                   fit_options: dict) -> float:
    """Images/s of :func:`cnncourse.train.fit` on a :class:`TensorLoader` (one epoch = ``steps`` batches)."""
    from cnncourse.fastdata import TensorLoader
    from cnncourse.train import fit

    def loader(count: int, seed: int) -> TensorLoader:
        pick = torch.randint(0, len(labels), (count * batch,), generator=torch.Generator().manual_seed(seed))
        return TensorLoader(images[pick], labels[pick], batch_size=batch, shuffle=True, mean=mean, std=std,
                            augment=augment, device=device, seed=seed, drop_last=True,
                            channels_last=fit_options.get("channels_last", False))

    fit(model, loader(warmup, 1), epochs=1, lr=lr, device=device, progress=False, **fit_options)
    timed = loader(steps, 2)
    sync(device)
    started = time.perf_counter()
    fit(model, timed, epochs=1, lr=lr, device=device, progress=False, **fit_options)
    sync(device)
    return steps * batch / (time.perf_counter() - started)


# --------------------------------------------------------------------------------------- cases
def case_lenet_cifar10(args, device) -> dict:
    from torchvision import datasets, transforms
    from cnncourse.data import to_tensors
    from cnncourse.models import get_model

    folder = cifar_jpeg_folder(args.shared, args.cache, args.cifar_jpeg)
    article = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    dataset = datasets.ImageFolder(str(folder / "train"), transform=article)
    started = time.perf_counter()
    images, labels = to_tensors(datasets.ImageFolder(str(folder / "train")))
    load_seconds = time.perf_counter() - started
    return run_case(
        "lenet-cifar10", "LeNet (62,050 params), CIFAR-10 JPEG copy 32x32, batch 64, Adam lr 0.01",
        lambda: get_model("lenet", num_classes=10, in_channels=3), dataset, images, labels,
        (0.5,) * 3, (0.5,) * 3, None, 64, 0.01, args, device, load_seconds)


def case_resnet_fmnist(args, device) -> dict:
    from torchvision import datasets, transforms
    from cnncourse.models import get_model

    root = fashion_folder(args.shared, args.cache)
    article = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    dataset = datasets.FashionMNIST(str(root), train=True, transform=article)
    started = time.perf_counter()
    images, labels = dataset.data.unsqueeze(1).clone(), dataset.targets.clone()
    load_seconds = time.perf_counter() - started
    return run_case(
        "resnet-fmnist", "resnet20 (0.27 M params), Fashion-MNIST 28x28, batch 128, Adam lr 0.001",
        lambda: get_model("resnet20", num_classes=10, in_channels=1), dataset, images, labels,
        (0.5,), (0.5,), None, 128, 1e-3, args, device, load_seconds)


def case_resnet50_galaxy(args, device) -> dict:
    from torchvision import datasets, transforms
    from cnncourse.data import to_tensors
    from cnncourse.models import get_model

    folder = args.shared / "galaxy10" / "jpeg"
    size = 128
    article = transforms.Compose([
        transforms.Resize(size), transforms.RandomRotation(180), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    dataset = datasets.ImageFolder(str(folder), transform=article)
    started = time.perf_counter()
    images, labels = to_tensors(datasets.ImageFolder(str(folder)), image_size=size)
    load_seconds = time.perf_counter() - started
    return run_case(
        "resnet50-galaxy", "ResNet-50 (23.5 M params), Galaxy10 DECaLS 128x128, rotation + flip, batch 64, Adam",
        lambda: get_model("resnet50", num_classes=10, in_channels=3), dataset, images, labels,
        (0.5,) * 3, (0.5,) * 3, "galaxy", 64, 1e-3, args, device, load_seconds)


def run_case(name: str, title: str, build: Callable[[], nn.Module], dataset, images, labels, mean, std,
             augment, batch: int, lr: float, args, device: torch.device, load_seconds: float) -> dict:
    steps, warmup = args.steps, args.warmup
    sampler = RandomSampler(dataset, replacement=True, num_samples=(steps + warmup) * batch * 2)
    print(f"\n== {name}: {title}; {steps} timed steps after {warmup} warm-up, median of {args.repeats}",
          file=sys.stderr)
    fast_options = {"amp": False} if device.type == "cpu" else {"amp": None, "channels_last": True}
    results: Dict[str, List[float]] = {f"article, num_workers={w}": [] for w in args.workers}
    results["cnncourse fast path"] = []
    extra = None
    if device.type == "cpu" and args.cpu_bf16:
        extra = "cnncourse fast path, bf16 + channels_last"
        results[extra] = []
    for repeat in range(args.repeats):
        for workers in args.workers:
            loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                                pin_memory=device.type == "cuda", persistent_workers=False)
            torch.manual_seed(repeat)
            speed = time_article_loop(build(), loader, device, steps, warmup, lr)
            results[f"article, num_workers={workers}"].append(speed)
            print(f"  [{repeat + 1}] article, num_workers={workers}: {speed:8.0f} images/s", file=sys.stderr)
        torch.manual_seed(repeat)
        speed = time_fast_path(build(), images, labels, mean, std, augment, batch, device, steps, warmup, lr,
                               fast_options)
        results["cnncourse fast path"].append(speed)
        print(f"  [{repeat + 1}] cnncourse fast path: {speed:8.0f} images/s", file=sys.stderr)
        if extra:
            torch.manual_seed(repeat)
            speed = time_fast_path(build(), images, labels, mean, std, augment, batch, device, steps, warmup,
                                   lr, {"amp": "bf16", "channels_last": True})
            results[extra].append(speed)
            print(f"  [{repeat + 1}] {extra}: {speed:8.0f} images/s", file=sys.stderr)
    medians = {key: statistics.median(values) for key, values in results.items()}
    best_article = max(v for k, v in medians.items() if k.startswith("article"))
    return {"name": name, "title": title, "medians": medians, "best_article": best_article,
            "ratio": medians["cnncourse fast path"] / best_article, "load_seconds": load_seconds,
            "extra": extra}


# --------------------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--cases", default="lenet-cifar10,resnet-fmnist",
                        help=f"comma-separated, from {', '.join(CASES)} (default: %(default)s; "
                             "resnet50-galaxy is added on CUDA)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per measurement (default: 150 for LeNet, 30 for ResNets on CPU)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per path; median (default: %(default)s)")
    parser.add_argument("--workers", default="0,2",
                        help="DataLoader num_workers values for the article path (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="the shared datasets folder (default: ../shared/datasets beside the repo)")
    parser.add_argument("--cifar-jpeg", type=Path, default=None,
                        help="an already extracted cifar10-jpeg folder (skips extraction)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where to extract (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for both paths (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="on CPU also time the fast path with bf16 autocast + channels_last")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w != ""]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if device.type == "cuda" and "resnet50-galaxy" not in cases and args.cases == parser.get_default("cases"):
        cases.append("resnet50-galaxy")
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; choose from {', '.join(CASES)}")
    info = hardware()
    print("hardware: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    runners = {"lenet-cifar10": case_lenet_cifar10, "resnet-fmnist": case_resnet_fmnist,
               "resnet50-galaxy": case_resnet50_galaxy}
    reports = []
    for case in cases:
        if case == "resnet50-galaxy" and device.type != "cuda" and args.device is None:
            print("resnet50-galaxy: skipped (needs CUDA; pass --device cpu to force it)")
            continue
        default_steps = 150 if case == "lenet-cifar10" else (30 if device.type == "cpu" else 200)
        case_args = argparse.Namespace(**vars(args))
        case_args.steps = args.steps or default_steps
        reports.append(runners[case](case_args, device))
    print(f"\ndevice: {device}  ({info['gpu'] if device.type == 'cuda' else info['cpu']})")
    for report in reports:
        print(f"\n{report['name']}: {report['title']}")
        for key, value in report["medians"].items():
            print(f"  {key:<44} {value:9.0f} images/s")
        print(f"  ratio fast path / best article pipeline: {report['ratio']:.2f}x"
              f"  (fast path's one-off load: {report['load_seconds']:.1f} s)")
        if report["extra"]:
            print(f"  ratio {report['extra']} / best article: "
                  f"{report['medians'][report['extra']] / report['best_article']:.2f}x")
    if args.json is not None:
        import json
        import shlex

        from cnncourse.cli import git_commit

        git = git_commit(args.json.parent)
        command = "python benchmarks/train_speed.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        args.json.write_text(json.dumps({"hardware": info, "device": str(device), "steps": args.steps,
                                         "repeats": args.repeats, "command": command.strip(),
                                         "git_commit": git["commit"], "git_dirty": git["dirty"],
                                         "cases": reports}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
