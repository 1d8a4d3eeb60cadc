"""Shared fixtures: real data from ../shared/datasets when present, a blocked network, a clean quick switch."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import cnncourse.config as config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("CNNCOURSE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path_factory):
    """Every test starts in full mode with an empty private data folder, whatever the caller set."""
    monkeypatch.setenv(config.QUICK_ENV, "0")
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
