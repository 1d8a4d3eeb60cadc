"""The two errors the data layer raises on purpose, so callers can tell them apart from bugs."""
from __future__ import annotations


class DataUnavailableError(RuntimeError):
    """A data set's files are not on disk and cannot be downloaded now (no network, download=False, ...)."""


class ChecksumError(RuntimeError):
    """A data file is on disk but corrupted or truncated: its size, checksum or structure is wrong."""
