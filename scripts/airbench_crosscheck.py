"""Is the course's CIFAR-10 speedrun airbench's recipe? Run airbench's own code on the same data and compare.

airbench94.py (Keller Jordan, github.com/KellerJordan/cifar10-airbench, legacy/airbench94.py, MIT licence)
is not shipped here: download it and pass its path. This script changes it, in memory, only where a CPU
needs it (the list PATCHES below: float32 weights with bfloat16 autocast instead of float16 weights on a
GPU, a clock instead of CUDA events, one run instead of 25, the epochs and threads from the environment),
writes the course's validation split in airbench's file format (45,000 training images shuffled once, since
airbench whitens with the first 5,000; the 5,000 held out as its "test" set: no test image is read) and
runs it. Compare the record with the course's runs of the same split, results/speedrun-cifar10/search/.

    python scripts/airbench_crosscheck.py --airbench airbench94.py --data-root DATA --run 0 \\
        --out results/speedrun-cifar10/checks/airbench-code-r0

The check is about accuracy; its seconds mean something only on a quiet machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (airbench's text, its CPU replacement): each must occur in the file, or the file is another version
PATCHES = [
    ("import torch\n", "import torch\nAMP = os.environ.get('AMP', '1') == '1'\n"
                       "torch.set_num_threads(int(os.environ.get('THREADS', '2')))\n"),
    ("'train_epochs': 9.9,", "'train_epochs': float(os.environ.get('EPOCHS', '9.9')),"),
    ("data = torch.load(data_path, map_location=torch.device(gpu))", "data = torch.load(data_path, map_location='cpu')"),
    ("self.images = (self.images.half() / 255)", "self.images = (self.images.float() / 255)"),
    ("    net = net.half().cuda()\n", "    net = net.float()\n"),
    ("    starter = torch.cuda.Event(enable_timing=True)\n    ender = torch.cuda.Event(enable_timing=True)\n",
     "    import time\n    class _Clock:\n        def record(self): self.t = time.perf_counter()\n"
     "        def elapsed_time(self, other): return 1e3 * (other.t - self.t)\n    starter, ender = _Clock(), _Clock()\n"),
    ("torch.cuda.synchronize()", "pass"),
    ("            outputs = model(inputs)\n",
     "            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=AMP):\n                outputs = model(inputs)\n"),
    ("loss = loss_fn(outputs, labels).sum()", "loss = loss_fn(outputs.float(), labels).sum()"),
    ("        return torch.cat([infer_fn(inputs, model) for inputs in test_images.split(2000)])",
     "        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=AMP):\n"
     "            return torch.cat([infer_fn(inputs, model).float() for inputs in test_images.split(2000)])"),
    ("accs = torch.tensor([main(run) for run in range(25)])", "accs = torch.tensor([main(run) for run in range(1)])"),
]


def patched(source: str) -> str:
    """airbench94.py's text with PATCHES applied; a clear error when a piece is missing."""
    for old, new in PATCHES:
        if old not in source:
            raise SystemExit(f"airbench_crosscheck: this airbench94.py lacks {old.strip()[:60]!r}; use legacy/"
                             "airbench94.py of github.com/KellerJordan/cifar10-airbench (commit f1c599c)")
        source = source.replace(old, new)
    return source


def write_split(folder: Path, data: str, root: str, val_seed: int = 0) -> None:
    """The course's hold-out split (cifar_tensors, --val-fraction 0.1) as airbench's train.pt and test.pt."""
    import torch
    from cnncourse.cifar_speedrun import cifar_tensors
    from cnncourse.data import class_names
    classes = class_names("cifar10")
    splits = cifar_tensors(data, root, val_fraction=0.1, val_seed=val_seed)
    x, y = splits["train"]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))   # the folder lists class by class
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"images": x[order].permute(0, 2, 3, 1).contiguous(), "labels": y[order], "classes": classes},
               folder / "train.pt")
    x, y = splits["val"]
    torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y, "classes": classes}, folder / "test.pt")


def main(argv=None) -> int:
    from cnncourse.speedrun import record, recording_parser, start_recording
    parser = recording_parser("scripts/airbench_crosscheck.py", __doc__.split("\n\n")[0])
    parser.add_argument("--airbench", required=True, help="path of legacy/airbench94.py (not recorded: a local path)")
    parser.add_argument("--data", default="cifar10-jpeg", help="the image folder in the data folder (the JPEG copy)")
    parser.add_argument("--epochs", type=float, default=12.0, help="default 12, the course's recipe")
    parser.add_argument("--run", type=int, default=0, help="a label only: airbench seeds nothing")
    args = start_recording(parser, argv)
    from cnncourse.data import portable_data_name, resolve_data
    data = resolve_data(args.data, args.data_root)
    source = patched(Path(args.airbench).read_text())
    threads = args.threads or 2
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp) / "cifar10", data, args.data_root)
        (Path(tmp) / "airbench94_cpu.py").write_text(source)
        env = dict(os.environ, EPOCHS=str(args.epochs), THREADS=str(threads), AMP="1")
        done = subprocess.run([sys.executable, "airbench94_cpu.py"], cwd=tmp, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"airbench_crosscheck: airbench stopped:\n{done.stderr[-2000:]}")
    row = [line for line in done.stdout.splitlines() if "|   eval  |" in line][-1]
    cells = [c.strip() for c in row.strip("|").split("|")]   # run, epoch, loss, train acc, val, tta val, seconds
    result = {"what": "airbench94.py (legacy, commit f1c599c) patched for a CPU by this script, trained on the "
                      "course's 45,000 training images, scored on its 5,000 held out",
              "run": args.run, "epochs": args.epochs, "device": "cpu", "autocast": "torch.bfloat16",
              "torch_threads": threads, "data": portable_data_name(data, args.data_root),
              "val_accuracy": float(cells[5]), "val_accuracy_no_tta": float(cells[4]),
              "train_seconds": float(cells[6]), "log": done.stdout.splitlines()[-8:-4]}
    epochs = int(args.epochs) if args.epochs == int(args.epochs) else args.epochs
    path = record(result, args.out, f"python scripts/airbench_crosscheck.py --airbench airbench94.py --data {args.data} "
                                    f"--epochs {epochs} --run {args.run} --out {args.out}")
    print(f"airbench's code: validation {100 * result['val_accuracy']:.2f} % (six views), "
          f"{100 * result['val_accuracy_no_tta']:.2f} % (one), {result['train_seconds']:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
