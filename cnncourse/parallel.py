"""Several processes for :func:`cnncourse.train.fit`: the same loop under ``torchrun``.

``torchrun --nproc-per-node N script.py`` starts N copies of a script; in each, ``fit`` calls
:func:`setup` to join the process group (gloo on CPUs, nccl on CUDA, one GPU per process),
:func:`shard` to give every process its own part of each epoch, :func:`reduce` to average the
losses and accuracies over all processes, and :func:`gather` to collect the test predictions.
DistributedDataParallel (in ``fit``) keeps the weights identical by averaging the gradients.

Needs torch alone; copy it beside ``train.py`` to use ``torchrun`` in a project of your own.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import torch

__all__ = ["setup", "shard", "reduce", "gather"]


def setup(device=None):
    """``(rank, world_size, device)``; under ``torchrun`` (``WORLD_SIZE`` > 1) this also joins the
    process group (gloo on CPUs, nccl on CUDA, one GPU per process by ``LOCAL_RANK``)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    import torch.distributed as dist
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shard(loader, rank: int, world: int, train: bool, seed: int):
    """This process's part of ``loader``: every epoch split across processes (training: padded to equal
    length, as DistributedSampler does; test: each image exactly once)."""
    if hasattr(loader, "world_size"):  # the fast path shards itself
        loader.rank, loader.world_size = rank, world
        return loader
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset
    if not isinstance(loader, DataLoader):
        raise ValueError("under torchrun, fit needs a DataLoader or a cnncourse TensorLoader to split the data")
    options = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                   pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn)
    if train:
        sampler = DistributedSampler(loader.dataset, world, rank, shuffle=isinstance(loader.sampler, RandomSampler),
                                     seed=seed)
        return DataLoader(loader.dataset, sampler=sampler, drop_last=loader.drop_last, **options)
    return DataLoader(Subset(loader.dataset, range(rank, len(loader.dataset), world)), **options)


def reduce(result: Dict[str, Any], world: int, device: torch.device) -> Dict[str, Any]:
    """Loss and accuracy over all processes, weighted by their image counts."""
    if world == 1:
        return result
    import torch.distributed as dist
    count = result["count"]
    sums = torch.tensor([result["loss"] * count, round(result["accuracy"] * count), count],
                        dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return {**result, "loss": float(sums[0] / sums[2]), "accuracy": float(sums[1] / sums[2]), "count": int(sums[2])}


def gather(predictions, world: int):
    """The test predictions of all processes (logits and labels), in rank order."""
    if world == 1:
        return predictions
    import torch.distributed as dist
    parts: List[Any] = [None] * world
    dist.all_gather_object(parts, (predictions.logits, predictions.labels))
    logits = torch.cat([p[0] for p in parts])
    return type(predictions)(logits, logits.argmax(1), torch.cat([p[1] for p in parts]))
