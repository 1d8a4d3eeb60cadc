"""The CIFAR-10 speedrun's training speed on this machine: the whole recipe against the no-data limit.

In one process, for bf16 autocast (only where the CPU has it natively) and for float32:

(a) the no-data limit: airbench_net's training step (forward, summed loss, backward, Nesterov SGD) on
    one fixed batch of 1,024 images already in the recipe's storage (dtype, channels_last), repeated;
    nothing else happens, so no run of this network can be faster per image;
(b) the recipe: ``cifar_speedrun.speedrun_cifar10`` for one epoch of 50,000 stored images (random
    uint8 pixels: the speed does not depend on them), with everything its clock counts - the whitening
    set-up, per-epoch translations and flips, indexing each batch, the schedule, Lookahead.

It prints images/s for each, their ratio, and the CPU's capability, and writes them as JSON with
--json. Run it on a quiet machine: anything else running changes the figures.

    python benchmarks/cifar_speedrun_speed.py --json results/benchmarks/cifar_speedrun_cpu.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnncourse import cifar_speedrun as cs
from cnncourse.speedrun import cpu_capability


def no_data_limit(amp, steps: int, batch: int = 1024) -> float:
    """Images/s of the bare training step on one fixed batch (median of ``steps`` after 3 warm-up steps)."""
    torch.manual_seed(0)
    model = cs.airbench_net().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.85,
                                nesterov=True)
    x = torch.randn(batch, 3, 32, 32).to(amp or torch.float32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 3):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return batch / statistics.median(times[3:])


def recipe(bf16: bool, epochs: float, n: int = 50000) -> float:
    """Images/s of the recipe's clock over ``epochs`` epochs of ``n`` random stored images."""
    g = torch.Generator().manual_seed(0)
    tensors = {"train": (torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                         torch.randint(0, 10, (n,), generator=g)),
               "test": (torch.randint(0, 256, (100, 3, 32, 32), generator=g, dtype=torch.uint8),
                        torch.randint(0, 10, (100,), generator=g))}
    result = cs.speedrun_cifar10(seed=0, tensors=tensors, device="cpu", epochs=epochs, bf16=bf16)
    return result["steps"] * 1024 / result["train_seconds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of the no-data limit")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of the recipe's run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hardware = cpu_capability()
    print(f"CPU: {hardware['cpu']}, {hardware['cores']} cores, {hardware['torch_threads']} torch threads; "
          f"flags: {', '.join(hardware['flags'])}; native bf16: {hardware['native_bf16']}; torch {torch.__version__}")
    rows = []
    for precision in (["bf16", "float32"] if hardware["native_bf16"] else ["float32"]):
        amp = torch.bfloat16 if precision == "bf16" else None
        limit = no_data_limit(amp, args.steps)
        whole = recipe(precision == "bf16", args.epochs)
        rows.append({"precision": precision, "no_data_limit": limit, "recipe": whole, "ratio": whole / limit})
        print(f"{precision:>7}: no-data limit {limit:,.0f} images/s, the recipe {whole:,.0f} images/s "
              f"({whole / limit:.2f} of the limit); 10 epochs of 50,000 images at that speed: "
              f"{500000 / whole / 60:.1f} min")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": "python benchmarks/cifar_speedrun_speed.py", "hardware": hardware,
                                         "torch": torch.__version__, "epochs": args.epochs, "steps": args.steps,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
