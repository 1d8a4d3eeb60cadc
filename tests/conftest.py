"""Shared fixtures: real data from ../shared/datasets when present, a blocked network, a clean quick switch."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

import cnncourse.config as config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("CNNCOURSE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path_factory):
    """Every test starts at the full scale with an empty private data folder, whatever the caller set."""
    monkeypatch.setenv(config.QUICK_ENV, "0")
    monkeypatch.setenv(config.SCALE_ENV, "full")
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path_factory.mktemp("data_root")))
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # set for notebook kernels when notebooks are collected
    config.set_quick_mode(None)
    yield
    config.set_quick_mode(None)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The folder of real data sets beside the repository; the test is skipped when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


class NetworkBlocked(OSError):
    """Raised by the patched socket layer so tests can tell a blocked network from other errors."""


@pytest.fixture
def no_network(monkeypatch):
    """Block every outgoing connection and DNS look-up for the duration of the test (portable, no root)."""
    def refuse(*args, **kwargs):
        raise NetworkBlocked("network access is blocked in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


class Mounts:
    """Real small file systems (tmpfs) for fault tests: a full disk or a read-only folder is the
    kernel's own failure, not one our code raises. Needs root (CAP_SYS_ADMIN); skips otherwise."""

    def __init__(self, base: Path) -> None:
        self.base, self.mounted = base, []

    def mount(self, size: str = "64m") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small file system needs root (CAP_SYS_ADMIN)")
        folder = self.base / f"fs{len(self.mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {done.stderr.strip()}")
        self.mounted.append(folder)
        return folder

    def read_only(self, folder: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    m = Mounts(tmp_path)
    try:
        yield m
    finally:
        for folder in reversed(m.mounted):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def one_torch_thread():
    """Tiny models train fastest on one thread, and far faster when other programs share the CPU;
    the caller's thread count comes back afterwards. Test files use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
