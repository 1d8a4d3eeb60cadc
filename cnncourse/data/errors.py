"""The errors the data layer raises on purpose, so callers can tell them apart from bugs."""
from __future__ import annotations


class DataUnavailableError(RuntimeError):
    """A data set's files are not on disk and cannot be downloaded now (no network, download=False, ...)."""


class ChecksumError(RuntimeError):
    """A data file is on disk but corrupted or truncated: its size, checksum or structure is wrong."""


class DataError(ValueError):
    """The data can be read but not used as it is: an unreadable image, labels out of range, an
    image folder with empty or single-image classes, images of mixed sizes. The message names the
    file or folder and says what to do."""
